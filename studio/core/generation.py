"""The one generation API every tab uses: messages + params (+ adapter) -> text chunks, then stats.

`stream()` runs `model.generate` in a worker thread while holding the model manager for the
request (so the chosen adapter stays active), and yields `Chunk`s as tokens arrive, then one
`Completion`. Closing the iterator (a UI Stop button, Ctrl-C) cancels the generation.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from studio.config import GenerationParams
from studio.core.models import ModelManager
from studio.errors import GenerationError

Message = dict[str, str]
FinishReason = Literal["eos", "length", "stop", "cancelled"]

# Used when a tokenizer has no chat template; the prompt view labels it as such.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}### System:\n{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


@dataclass
class RenderedPrompt:
    text: str  # exactly what the model receives, special tokens included
    token_ids: list[int]
    template: Literal["model", "fallback"]

    @property
    def token_count(self) -> int:
        return len(self.token_ids)

    @property
    def template_label(self) -> str:
        if self.template == "model":
            return "the model's own chat template"
        return "the studio's fallback template (this model has no chat template)"


@dataclass
class Chunk:
    text: str


@dataclass
class GenerationStats:
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float
    total_s: float
    finish_reason: FinishReason

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0

    def line(self) -> str:
        return (f"{self.completion_tokens} tokens · {self.tokens_per_s:.1f} tok/s · first token "
                f"{self.time_to_first_token_s * 1000:.0f} ms · prompt {self.prompt_tokens} tokens · "
                f"finished: {self.finish_reason}")


@dataclass
class Completion:
    text: str
    stats: GenerationStats


def render_prompt(tokenizer: Any, messages: list[Message]) -> RenderedPrompt:
    """Apply the tokenizer's chat template (or the labelled fallback) and tokenize the result."""
    _check_messages(messages)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    template = None if has_template else FALLBACK_TEMPLATE
    try:
        text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # noqa: BLE001  (jinja errors: e.g. a template that rejects system messages)
        raise GenerationError(f"The chat template rejected these messages: {err}",
                              "remove the system prompt or alternate user/assistant turns.") from None
    bos = getattr(tokenizer, "bos_token", None)
    # A template that writes the BOS token itself must not get a second one from the tokenizer.
    add_special = not (bos and text.startswith(bos))
    ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return RenderedPrompt(text=text, token_ids=list(ids), template="model" if has_template else "fallback")


def _check_messages(messages: list[Message]) -> None:
    if not isinstance(messages, (list, tuple)):
        raise GenerationError(f"Messages should be a list of {{role, content}} dicts, got {type(messages).__name__}.",
                              "pass [{'role': 'user', 'content': '...'}].")
    if not messages:
        raise GenerationError("There is nothing to send.", "type a message first.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise GenerationError(f"Message {i + 1} is malformed: {m!r}.", "each message needs role system/user/assistant and text content.")


class _QueueStreamer:
    """transformers streamer that only hands token ids over, as (kind, ids of this step: one per row);
    decoding happens in the consumer."""

    def __init__(self, out: queue.Queue, kind: str = "ids") -> None:
        self.out, self.kind = out, kind
        self.skip_prompt = True

    def put(self, value: torch.Tensor) -> None:
        if self.skip_prompt:  # the first call carries the prompt
            self.skip_prompt = False
            return
        self.out.put((self.kind, value.reshape(-1).tolist()))

    def end(self) -> None:
        pass


class CancelCriteria:
    """Stops `generate` at the next token once any of the events is set."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        stop = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def generation_kwargs(params: GenerationParams, tokenizer: Any) -> dict[str, Any]:
    """Keyword arguments for `model.generate` equivalent to `params` (also used by the benchmark)."""
    kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "repetition_penalty": params.repetition_penalty,
                              "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    if params.temperature > 0:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def stream(manager: ModelManager, messages: list[Message], params: GenerationParams,
           adapter: str | None = None, cancel: threading.Event | None = None) -> Iterator[Chunk | Completion]:
    """Yield the answer as `Chunk`s while it is generated, then a final `Completion`.

    The Completion's text is exactly the concatenation of the chunks. Raises GenerationError when
    no model is loaded, the adapter is not attached or the messages are malformed. Setting
    `cancel` (or closing the iterator) stops generation at the next token; `cancel` is only read,
    so one event can serve a whole session (clear it before the next request).
    """
    _check_messages(messages)
    cancel = cancel or threading.Event()
    halt = threading.Event()  # set by us: stop string found, or the consumer went away
    events: queue.Queue = queue.Queue()
    started = time.perf_counter()
    worker = threading.Thread(target=_generate_worker, args=(manager, messages, params, adapter, (cancel, halt), events),
                              name="studio-generate", daemon=True)
    worker.start()
    decoder = _Decoder(params.stop)
    prompt_tokens, first_token_at, finish = 0, None, None
    try:
        while finish is None:
            kind, payload = events.get()
            if kind == "ids":
                ids = list(payload)
                kind, payload = _drain_ids(events, ids)  # decode once per batch of already-queued ids
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                piece = decoder.feed(ids)
                if piece:
                    yield Chunk(piece)
                if decoder.stopped:
                    halt.set()
            if kind == "prompt":
                prompt_tokens, decoder.tokenizer = payload
            elif kind == "done":
                finish = payload
            elif kind == "error":
                raise payload
        tail = decoder.flush()
        if tail:
            yield Chunk(tail)
        reason: FinishReason = "stop" if decoder.stopped else ("cancelled" if cancel.is_set() else finish)
        end = time.perf_counter()
        stats = GenerationStats(prompt_tokens=prompt_tokens, completion_tokens=decoder.count,
                                time_to_first_token_s=(first_token_at or end) - started, total_s=end - started,
                                finish_reason=reason)
        yield Completion(text=decoder.text, stats=stats)
    finally:
        halt.set()  # a closed iterator (Stop button) ends the worker at its next token
        worker.join(timeout=30)


def _drain_ids(events: queue.Queue, ids: list[int]) -> tuple[str | None, Any]:
    """Append every queued batch of ids to `ids`; return the first non-ids event, or (None, None)."""
    while True:
        try:
            kind, payload = events.get_nowait()
        except queue.Empty:
            return None, None
        if kind != "ids":
            return kind, payload
        ids.extend(payload)


def generate(manager: ModelManager, messages: list[Message], params: GenerationParams,
             adapter: str | None = None) -> Completion:
    """Run `stream` to the end and return the Completion (raises what `stream` raises)."""
    with contextlib.closing(stream(manager, messages, params, adapter)) as events:
        for event in events:
            if isinstance(event, Completion):
                return event
    raise GenerationError("Generation ended without a result.", "retry; if it persists, reload the model.")


def _generate_worker(manager: ModelManager, messages: list[Message], params: GenerationParams, adapter: str | None,
                     stops: tuple[threading.Event, ...], events: queue.Queue) -> None:
    try:
        with manager.use(adapter) as (model, tokenizer):
            prompt = render_prompt(tokenizer, messages)
            eos = eos_ids(model, tokenizer)
            events.put(("prompt", (prompt.token_count, tokenizer)))
            if any(e.is_set() for e in stops):  # cancelled while waiting for the model
                events.put(("done", "cancelled"))
                return
            device = next(model.parameters()).device
            input_ids = torch.tensor([prompt.token_ids], device=device)
            seed_everything(params.seed)
            from transformers import StoppingCriteriaList

            with torch.inference_mode():
                out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                     streamer=_QueueStreamer(events), stopping_criteria=StoppingCriteriaList([CancelCriteria(*stops)]),
                                     **generation_kwargs(params, tokenizer))
            new = out[0, input_ids.shape[1]:].tolist()
            events.put(("done", "eos" if new and new[-1] in eos else "length"))
    except torch.OutOfMemoryError:
        events.put(("error", GenerationError("Out of memory while generating.", "lower max new tokens, shorten the prompt, or load the model in 4bit.")))
    except BaseException as err:  # noqa: BLE001  (handed to the consumer, which re-raises it)
        events.put(("error", err))


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = ids if isinstance(ids, list) else [ids]
    return {i for i in [*ids, tokenizer.eos_token_id] if i is not None}


class _Decoder:
    """Incremental detokenisation that never emits half a UTF-8 character or part of a stop string.

    Each step decodes only a short window of recent ids (the standard prefix/read-offset scheme),
    so the cost per token stays constant however long the answer gets; the text only ever grows,
    so the emitted pieces add up to `text`.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.tokenizer: Any = None
        self.ids: list[int] = []
        self.prefix_offset = 0  # ids[prefix_offset:read_offset] give context for the next piece
        self.read_offset = 0
        self.emitted = 0
        self.text = ""
        self.stopped = False

    @property
    def count(self) -> int:
        return len(self.ids)

    def feed(self, ids: list[int]) -> str:
        """Take newly generated ids; return the text that is now safe to show (maybe "")."""
        if self.stopped:
            return ""
        self.ids.extend(ids)
        piece = self._decode_new()
        if piece:
            self._append(piece)
        return self._emit()

    def _decode_new(self, final: bool = False) -> str:
        decode = self.tokenizer.decode
        prefix = decode(self.ids[self.prefix_offset:self.read_offset], skip_special_tokens=True)
        full = decode(self.ids[self.prefix_offset:], skip_special_tokens=True)
        if len(full) <= len(prefix) or (full.endswith("\ufffd") and not final):
            return ""  # nothing new yet, or the last bytes are half a character
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return full[len(prefix):]

    def _append(self, piece: str) -> None:
        # Only a stop string that ends inside the new piece can be new; earlier ones were found before.
        start = max(0, len(self.text) - self.hold)
        self.text += piece
        hits = [at for stop in self.stops if (at := self.text.find(stop, start)) != -1]
        if hits:
            self.text, self.stopped = self.text[:min(hits)], True

    def _emit(self) -> str:
        safe = len(self.text) if self.stopped else len(self.text) - self.hold
        if safe <= self.emitted:
            return ""
        piece, self.emitted = self.text[self.emitted:safe], safe
        return piece

    def flush(self) -> str:
        """The rest of the text once generation has ended (a cut-off character is dropped)."""
        if not self.stopped and self.tokenizer is not None:
            piece = self._decode_new(final=True).rstrip("\ufffd")
            if piece:
                self._append(piece)
        piece, self.emitted = self.text[self.emitted:], len(self.text)
        return piece
