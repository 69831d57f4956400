"""Compare: one user message answered by 2-4 panes at once, from the one resident base.

Each pane is an evaluation `Variant` (adapter, prompt preset, knowledge base). `compare_stream`
retrieves for the RAG panes, renders every pane's prompt and sends them all through ONE batched
`model.generate`: rows are left-padded, and peft's per-row `adapter_names` picks each row's LoRA
adapter ("__base__" = none), so the base weights are shared, never copied. A streamer splits every
generated step by row, so each pane streams its own text. Every pane gets the same sampling params
and seed; under greedy decoding a pane's answer equals the one it gets alone (left padding is
masked). With sampling, a pane's draw also depends on which panes share the batch.

Blind mode: `shuffle_panes` gives a seeded display order and `blind_labels` the letters shown
instead of the variant names until a vote (see `studio.storage.votes`) unmasks them.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from studio.config import GenerationParams
from studio.core.evaluation.runner import BASE, Variant, check_variants, left_padded, mixed_batches_supported
from studio.core.generation import (
    CancelCriteria, GenerationStats, Message, _Decoder, _QueueStreamer, eos_ids, generation_kwargs, render_prompt, seed_everything)
from studio.core.prompting import build_messages
from studio.errors import GenerationError, StudioError

if TYPE_CHECKING:
    from studio.core.models import ModelManager
    from studio.core.rag.answer import RagAnswer, RagPrompt
    from studio.core.rag.params import AnswerParams, RetrievalParams
    from studio.core.rag.service import RagService

MIN_PANES, MAX_PANES = 2, 4
# Prompts are prefilled this many tokens at a time: the activations of 4 long RAG prompts at once were
# most of what a compare added to the base's own peak (a 0.5B model: 290 MB, 80 MB in chunks); same answers.
PREFILL_CHUNK = 128
Pane = Variant  # a pane is a variant: name, adapter, prompt preset, knowledge base


class PaneEvent(NamedTuple):
    """(pane index, kind, payload): kind "sources" → SearchResult, "text" → str delta, "done" → PaneAnswer."""

    pane: int
    kind: str
    payload: Any


@dataclass
class PaneAnswer:
    """A pane's finished answer: its text and stats, its updated history and (RAG) citations."""

    text: str
    stats: GenerationStats
    history: list[Message]  # the history passed in + this user message + this answer
    messages: list[Message]  # exactly what the model received
    rag: RagAnswer | None = None  # RAG panes: search result, prompt, citations
    no_context: bool = False  # RAG pane with nothing relevant: answered NO_CONTEXT without generating


@dataclass
class _Row:
    pane: int
    token_ids: list[int]
    adapter: str | None
    decoder: _Decoder
    first_at: float | None = None
    end_at: float | None = None
    finish: str | None = None


@dataclass
class _Prepared:
    messages: list[Message]
    rag_prompt: RagPrompt | None = None
    search: Any = None
    no_context: bool = False


def check_panes(manager: ModelManager, panes: Sequence[Pane], histories: Sequence[Sequence[Message]] | None) -> None:
    """Raise StudioError for a compare that cannot run: pane count, names, adapters, presets, histories."""
    if not MIN_PANES <= len(panes) <= MAX_PANES:
        raise StudioError(f"Compare needs {MIN_PANES} to {MAX_PANES} panes, got {len(panes)}.",
                          f"add or remove panes so there are {MIN_PANES}-{MAX_PANES}.")
    if histories is not None and len(histories) != len(panes):
        raise StudioError(f"Got {len(histories)} histories for {len(panes)} panes.", "pass one history per pane ([] for none).")
    check_variants(manager, panes, batch_size=1)  # names, model loaded, adapters attached, presets valid


def pane_messages(pane: Pane, history: Sequence[Message], message: str, tokenizer: Any, rag: RagService | None = None,
                  retrieval: RetrievalParams | None = None, answer_params: AnswerParams | None = None) -> _Prepared:
    """What `pane` sends for `message` after `history`: RAG panes wrap the message in the grounded prompt
    (the RAG core's), a preset then dresses it; without a preset the history and message are sent as they are."""
    from studio.core.rag.params import AnswerParams

    answer_params = answer_params or AnswerParams()
    content, prepared = message, _Prepared([])
    if pane.knowledge_base:
        if rag is None:
            raise StudioError(f"Pane {pane.name!r} uses knowledge base {pane.knowledge_base!r} but no RAG service was given.",
                              "pass the studio's RAG service, or remove the knowledge base from the pane.")
        from studio.core.rag.answer import build_prompt

        prepared.search = rag.search(pane.knowledge_base, message, retrieval)
        if prepared.search.empty and not answer_params.answer_without_context:
            prepared.no_context = True
        prepared.rag_prompt = build_prompt(message, prepared.search.chunks, tokenizer, answer_params)
        content = prepared.rag_prompt.messages[-1]["content"]
    clean = [{"role": m["role"], "content": m["content"]} for m in history if m.get("role") in ("user", "assistant")]
    prepared.messages = (build_messages(pane.prompt, clean, content) if pane.prompt is not None
                         else clean + [{"role": "user", "content": content}])
    return prepared


def compare_stream(manager: ModelManager, rag: RagService | None, panes: Sequence[Pane],
                   histories: Sequence[Sequence[Message]] | None, message: str, gen_params: GenerationParams | None = None,
                   cancel: threading.Event | None = None, *, retrieval: RetrievalParams | None = None,
                   answer_params: AnswerParams | None = None) -> Iterator[PaneEvent]:
    """Answer `message` in every pane at once; yields PaneEvents and ends with one "done" per pane.

    RAG panes first yield their SearchResult ("sources"). Then all panes stream "text" deltas from
    one batched generation, and each ends with "done" → PaneAnswer (stats, updated history,
    citations). `histories` (one per pane, or None) are not modified. Setting `cancel`, or closing
    the iterator, stops every pane at the next token (finish_reason "cancelled"). Raises StudioError
    (GenerationError) before generating: wrong pane count, adapter not attached, invalid preset, no
    model, or panes with different adapters when an attached adapter is not LoRA.
    """
    params = gen_params or GenerationParams()
    histories = histories if histories is not None else [[] for _ in panes]
    check_panes(manager, panes, histories)
    if not message.strip():
        raise GenerationError("There is nothing to send.", "type a message first.")
    cancel = cancel or threading.Event()
    started = time.perf_counter()
    tokenizer = manager.tokenizer
    prepared: list[_Prepared] = []
    for i, (pane, history) in enumerate(zip(panes, histories)):
        prepared.append(pane_messages(pane, history, message, tokenizer, rag, retrieval, answer_params))
        if prepared[-1].search is not None:
            yield PaneEvent(i, "sources", prepared[-1].search)
    rows = [_Row(i, render_prompt(tokenizer, p.messages).token_ids, panes[i].adapter or None, _Decoder(params.stop))
            for i, p in enumerate(prepared) if not p.no_context]
    for row in rows:
        row.decoder.tokenizer = tokenizer
    if rows:
        for pane, piece in _stream_rows(manager, rows, params, cancel):
            yield PaneEvent(pane, "text", piece)
    by_pane = {r.pane: r for r in rows}
    end = time.perf_counter()
    for i, prep in enumerate(prepared):
        yield PaneEvent(i, "done", _finish(prep, by_pane.get(i), histories[i], message, started, end, cancel))


def _finish(prep: _Prepared, row: _Row | None, history: Sequence[Message], message: str, started: float,
            end: float, cancel: threading.Event) -> PaneAnswer:
    from studio.core.generation import Completion

    if row is None:  # RAG pane with nothing relevant
        from studio.core.rag.answer import NO_CONTEXT, RagAnswer

        stats = GenerationStats(0, 0, end - started, end - started, "stop")
        return PaneAnswer(NO_CONTEXT, stats, [*history, {"role": "user", "content": message},
                                              {"role": "assistant", "content": NO_CONTEXT}],
                          prep.messages, RagAnswer(NO_CONTEXT, prep.search, no_context=True), no_context=True)
    text = row.decoder.text
    reason = "stop" if row.decoder.stopped else ("cancelled" if cancel.is_set() else (row.finish or "length"))
    done_at = row.end_at or end
    stats = GenerationStats(prompt_tokens=len(row.token_ids), completion_tokens=row.decoder.count,
                            time_to_first_token_s=(row.first_at or done_at) - started, total_s=done_at - started,
                            finish_reason=reason)  # type: ignore[arg-type]
    rag_answer = None
    if prep.rag_prompt is not None:
        from studio.core.rag.answer import RagAnswer, cite

        citations, unknown = cite(text, prep.rag_prompt.blocks)
        rag_answer = RagAnswer(text, prep.search, prep.rag_prompt, Completion(text, stats), citations, unknown,
                               no_context=prep.search.empty)
    new_history = [*history, {"role": "user", "content": message}, {"role": "assistant", "content": text}]
    return PaneAnswer(text, stats, new_history, prep.messages, rag_answer)


def _stream_rows(manager: ModelManager, rows: list[_Row], params: GenerationParams,
                 cancel: threading.Event) -> Iterator[tuple[int, str]]:
    """Run the rows as one batch in a worker thread; yield (pane, text piece) as tokens arrive."""
    events: queue.Queue = queue.Queue()
    halt = threading.Event()  # the consumer went away
    stopped = [False] * len(rows)  # rows whose stop string appeared: generate ends them at the next step
    worker = threading.Thread(target=_batch_worker, args=(manager, rows, params, (cancel, halt), stopped, events),
                              name="studio-compare", daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = events.get()
            if kind == "error":
                raise payload
            if kind == "done":
                eos = payload
                break
            if kind != "step":
                eos = payload
                continue
            now = time.perf_counter()
            for r, (row, token) in enumerate(zip(rows, payload)):
                if row.end_at is not None:
                    continue
                row.first_at = row.first_at or now
                piece = row.decoder.feed([token])
                if piece:
                    yield row.pane, piece
                if token in eos or row.decoder.stopped:
                    row.end_at, row.finish, stopped[r] = now, "eos" if token in eos else "stop", True
        for row in rows:
            tail = row.decoder.flush()
            if tail:
                yield row.pane, tail
            row.end_at = row.end_at or time.perf_counter()
    finally:
        halt.set()
        worker.join(timeout=30)


class _RowStops:
    """Ends a row once its stop string appeared (per-row), and every row on cancel."""

    def __init__(self, stopped: list[bool], events: tuple[threading.Event, ...]) -> None:
        self.stopped, self.cancel = stopped, CancelCriteria(*events)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        rows = torch.tensor(self.stopped, dtype=torch.bool, device=input_ids.device)
        return rows | self.cancel(input_ids, scores)


def _batch_worker(manager: ModelManager, rows: list[_Row], params: GenerationParams, stops: tuple[threading.Event, ...],
                  stopped: list[bool], events: queue.Queue) -> None:
    from transformers import StoppingCriteriaList

    try:
        adapters = {r.adapter for r in rows}
        mixed = len(adapters) > 1 or any(adapters)
        if mixed and not mixed_batches_supported(manager):
            raise StudioError("Panes with different adapters share one batch only when every attached adapter is LoRA.",
                              "detach the non-LoRA adapters, or compare panes that use the same adapter.")
        active = next((a for a in adapters if a), None)
        with manager.use(active) as (model, tokenizer):
            eos = eos_ids(model, tokenizer)
            events.put(("eos", eos))
            if any(e.is_set() for e in stops):
                events.put(("done", eos))
                return
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            device = next(model.parameters()).device
            ids, mask = (t.to(device) for t in left_padded([r.token_ids for r in rows], pad))
            kwargs = generation_kwargs(params, tokenizer)
            if ids.shape[1] > PREFILL_CHUNK:
                kwargs["prefill_chunk_size"] = PREFILL_CHUNK
            if mixed:
                kwargs["adapter_names"] = [r.adapter or BASE for r in rows]
            seed_everything(params.seed)
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, streamer=_QueueStreamer(events, "step"),
                               stopping_criteria=StoppingCriteriaList([_RowStops(stopped, stops)]), **kwargs)
            events.put(("done", eos))
    except torch.OutOfMemoryError:
        events.put(("error", GenerationError(f"Out of memory while answering {len(rows)} panes at once.",
                                             "lower max new tokens, use fewer panes, or load the model in 4bit.")))
    except BaseException as err:  # noqa: BLE001  (handed to the consumer, which re-raises it)
        events.put(("error", err))


# Blind mode -------------------------------------------------------------------------------------------
def shuffle_panes(panes: Sequence[Any], seed: int) -> list[int]:
    """The display order for blind mode: order[k] = index of the pane shown at position k (same seed, same order)."""
    order = list(range(len(panes)))
    random.Random(seed).shuffle(order)
    return order


def blind_labels(count: int) -> list[str]:
    """The letters shown instead of pane names before a vote: A, B, C, D."""
    return [chr(ord("A") + k) for k in range(count)]


def in_display_order(items: Sequence[Any], order: Sequence[int]) -> list[Any]:
    """`items` (one per pane) rearranged as `shuffle_panes` shows them."""
    return [items[i] for i in order]
