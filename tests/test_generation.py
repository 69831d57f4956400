"""generation.stream / generate / render_prompt on a tiny real model: chunks, stats, seeds, cancel, stops."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from studio.config import GenerationParams, LoadParams
from studio.core import generation
from studio.core.generation import Chunk, Completion, generation_kwargs, render_prompt, seed_everything
from studio.core.models import ModelManager
from studio.errors import GenerationError

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello, how can I reset the router?"}]
LONG = 2000  # far more tokens than any test lets run: reaching it means cancelling failed


@pytest.fixture(scope="module")
def manager(tiny_model_dir: Path) -> ModelManager:
    manager = ModelManager()
    manager.load(LoadParams(model=str(tiny_model_dir)))
    return manager


@pytest.fixture(scope="module")
def greedy(manager: ModelManager) -> Completion:
    """The unconstrained greedy answer (24 tokens) that the stop-string tests cut."""
    completion = generation.generate(manager, MESSAGES, GenerationParams(temperature=0, max_new_tokens=24))
    assert completion.stats.finish_reason == "length"
    return completion


def params(**overrides: object) -> GenerationParams:
    return GenerationParams(**{"temperature": 0.0, "max_new_tokens": 24, **overrides})


def split(events: list[Chunk | Completion]) -> tuple[list[str], Completion]:
    *chunks, last = events
    assert all(isinstance(c, Chunk) for c in chunks), "only Chunks before the end"
    assert isinstance(last, Completion), "the stream ends with one Completion"
    return [c.text for c in chunks], last


def no_worker_alive() -> bool:
    return not any(t.name == "studio-generate" and t.is_alive() for t in threading.enumerate())


# Streaming and stats ----------------------------------------------------------------------------
def test_stream_yields_chunks_then_one_completion(manager: ModelManager) -> None:
    chunks, done = split(list(generation.stream(manager, MESSAGES, params())))
    assert len(chunks) >= 3
    assert all(chunks), "no empty chunks"
    assert done.text == "".join(chunks)
    with manager.use() as (_model, tokenizer):
        prompt = render_prompt(tokenizer, MESSAGES)
    stats = done.stats
    assert stats.prompt_tokens == prompt.token_count
    assert 1 <= stats.completion_tokens <= 24
    assert 0 < stats.time_to_first_token_s <= stats.total_s
    assert stats.tokens_per_s > 0
    assert f"{stats.completion_tokens} tokens" in stats.line() and stats.finish_reason in stats.line()
    assert no_worker_alive()


def test_max_new_tokens_ends_with_length(manager: ModelManager) -> None:
    done = generation.generate(manager, MESSAGES, params(max_new_tokens=5))
    assert (done.stats.completion_tokens, done.stats.finish_reason) == (5, "length")


def test_eos_ends_with_eos(manager: ModelManager) -> None:
    """Make a token of the greedy answer the EOS token: generation stops right there, reason eos."""
    with manager.use() as (model, tokenizer):
        prompt = torch.tensor([render_prompt(tokenizer, MESSAGES).token_ids])
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), **generation_kwargs(params(), tokenizer))
        new = out[0, prompt.shape[1]:].tolist()
        at = next(i for i in range(1, len(new)) if new[i] not in new[:i])  # its first appearance
        saved = model.generation_config.eos_token_id
    try:
        model.generation_config.eos_token_id = new[at]
        done = generation.generate(manager, MESSAGES, params())
    finally:
        model.generation_config.eos_token_id = saved
    assert (done.stats.completion_tokens, done.stats.finish_reason) == (at + 1, "eos")


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_output_equals_bare_generate(manager: ModelManager, temperature: float) -> None:
    """The streamed text is exactly what model.generate returns for the same params and seed."""
    p = params(temperature=temperature, seed=123)
    with manager.use() as (model, tokenizer):
        prompt = torch.tensor([render_prompt(tokenizer, MESSAGES).token_ids])
        seed_everything(p.seed)
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), **generation_kwargs(p, tokenizer))
        expected = tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True).rstrip("\ufffd")
    done = generation.generate(manager, MESSAGES, p)
    assert done.text == expected
    assert done.stats.completion_tokens == out.shape[1] - prompt.shape[1]


# Reproducibility --------------------------------------------------------------------------------
def test_same_seed_same_output_different_seed_different_output(manager: ModelManager) -> None:
    def run(seed: int) -> str:
        return generation.generate(manager, MESSAGES, params(temperature=1.0, top_k=0, top_p=1.0, seed=seed)).text

    first = run(1)
    assert run(1) == first
    assert run(2) != first
    assert run(3) != first


def test_temperature_zero_is_deterministic_whatever_the_seed(manager: ModelManager, greedy: Completion) -> None:
    assert generation.generate(manager, MESSAGES, params(seed=1)).text == greedy.text
    assert generation.generate(manager, MESSAGES, params(seed=99)).text == greedy.text


# Cancelling -------------------------------------------------------------------------------------
def test_cancel_event_stops_midway(manager: ModelManager, greedy: Completion) -> None:
    cancel = threading.Event()
    events = generation.stream(manager, MESSAGES, params(max_new_tokens=LONG), cancel=cancel)
    first = next(events)
    assert isinstance(first, Chunk)
    cancel.set()
    chunks, done = split([first, *events])
    assert done.stats.finish_reason == "cancelled"
    assert done.stats.completion_tokens < LONG
    assert done.text == "".join(chunks)
    assert no_worker_alive()
    # The caller's event is only read: cleared, it serves the next request, which runs normally.
    cancel.clear()
    done = generation.generate(manager, MESSAGES, params())
    assert done.text == greedy.text and done.stats.finish_reason == "length"


def test_a_finished_stream_leaves_the_callers_event_alone(manager: ModelManager) -> None:
    cancel = threading.Event()
    *_, done = generation.stream(manager, MESSAGES, params(max_new_tokens=3), cancel=cancel)
    assert done.stats.finish_reason == "length" and not cancel.is_set()


def test_cancelled_before_it_starts(manager: ModelManager) -> None:
    cancel = threading.Event()
    cancel.set()
    chunks, done = split(list(generation.stream(manager, MESSAGES, params(max_new_tokens=LONG), cancel=cancel)))
    assert done.stats.finish_reason == "cancelled"
    assert done.stats.completion_tokens <= 1 and done.text == "".join(chunks)


def test_closing_the_iterator_cancels(manager: ModelManager, greedy: Completion, monkeypatch: pytest.MonkeyPatch) -> None:
    produced: list[int] = []
    real_put = generation._QueueStreamer.put

    def counting_put(self: generation._QueueStreamer, value: torch.Tensor) -> None:
        produced.append(value.numel())
        real_put(self, value)

    monkeypatch.setattr(generation._QueueStreamer, "put", counting_put)
    events = generation.stream(manager, MESSAGES, params(max_new_tokens=LONG))
    assert isinstance(next(events), Chunk)
    events.close()  # what the UI's Stop button (or a closed browser tab) does
    assert no_worker_alive(), "the worker thread should end when the iterator is closed"
    assert sum(produced) - produced[0] < LONG  # the first put carries the prompt
    # The manager is free again: another request runs (in a thread, so a stuck lock fails, not hangs).
    result: list[Completion] = []
    runner = threading.Thread(target=lambda: result.append(generation.generate(manager, MESSAGES, params())))
    runner.start()
    runner.join(timeout=30)
    assert result and result[0].text == greedy.text


# Stop strings -----------------------------------------------------------------------------------
def pick_stop(text: str) -> str:
    """A word from the greedy answer that first occurs after its start, so something precedes it."""
    for match in re.finditer(r"[A-Za-z]{3,}", text):
        if text.index(match.group()) > 0:
            return match.group()
    pytest.fail(f"no usable stop word in {text!r}")


def test_stop_string_cuts_the_answer(manager: ModelManager, greedy: Completion) -> None:
    stop = pick_stop(greedy.text)
    expected = greedy.text[:greedy.text.index(stop)]
    chunks, done = split(list(generation.stream(manager, MESSAGES, params(stop=[stop]))))
    assert done.text == expected == "".join(chunks)
    assert stop not in "".join(chunks)
    assert done.stats.finish_reason == "stop"
    assert done.stats.completion_tokens < greedy.stats.completion_tokens


def test_earliest_stop_string_wins_and_absent_ones_change_nothing(manager: ModelManager, greedy: Completion) -> None:
    stop = pick_stop(greedy.text)
    cut = greedy.text.index(stop)
    later = greedy.text[cut + 1:cut + 4]
    done = generation.generate(manager, MESSAGES, params(stop=[later, stop]))
    assert done.text == greedy.text[:cut] and done.stats.finish_reason == "stop"
    absent = "\u2603never-there\u2603"
    done = generation.generate(manager, MESSAGES, params(stop=[absent]))
    assert done.text == greedy.text and done.stats.finish_reason == "length"


# Decoding -----------------------------------------------------------------------------------------
def feed_one_by_one(tokenizer: object, text: str, stops: list[str]) -> tuple[list[str], str, bool]:
    decoder = generation._Decoder(stops)
    decoder.tokenizer = tokenizer
    pieces = [decoder.feed([i]) for i in tokenizer.encode(text, add_special_tokens=False)]
    pieces.append(decoder.flush())
    return [p for p in pieces if p], decoder.text, decoder.stopped


def test_decoder_never_emits_half_a_character(manager: ModelManager) -> None:
    text = "héllo 🙂 wörld — ünïcode ✓ done"
    with manager.use() as (_model, tokenizer):
        pieces, full, stopped = feed_one_by_one(tokenizer, text, [])
        assert "".join(pieces) == full == text and not stopped
        assert not any("\ufffd" in p for p in pieces)
        pieces, full, stopped = feed_one_by_one(tokenizer, text, ["wörld"])
        assert "".join(pieces) == full == "héllo 🙂 " and stopped


# Prompts and errors --------------------------------------------------------------------------------
def test_model_template_is_used_and_labelled(manager: ModelManager) -> None:
    with manager.use() as (_model, tokenizer):
        prompt = render_prompt(tokenizer, MESSAGES)
    assert prompt.template == "model" and "own chat template" in prompt.template_label
    assert prompt.text.startswith("<|im_start|>system\nYou are terse.<|im_end|>")
    assert prompt.text.endswith("<|im_start|>assistant\n")
    assert prompt.token_count == len(prompt.token_ids) > 10


def test_fallback_template_is_labelled(no_template_model_dir: Path) -> None:
    manager = ModelManager()
    info = manager.load(LoadParams(model=str(no_template_model_dir)))
    assert not info.has_chat_template
    with manager.use() as (_model, tokenizer):
        prompt = render_prompt(tokenizer, MESSAGES)
    assert prompt.template == "fallback" and "fallback" in prompt.template_label
    assert prompt.text == "### System:\nYou are terse.\n\n### User:\nHello, how can I reset the router?\n\n### Assistant:\n"
    done = generation.generate(manager, MESSAGES, params(max_new_tokens=4))
    assert done.stats.prompt_tokens == prompt.token_count and done.stats.completion_tokens == 4


def test_template_that_rejects_the_messages(manager: ModelManager) -> None:
    with manager.use() as (_model, tokenizer):
        strict = copy.deepcopy(tokenizer)
    strict.chat_template = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    with pytest.raises(GenerationError, match="rejected these messages: System role not supported") as info:
        render_prompt(strict, MESSAGES)
    assert "remove the system prompt" in str(info.value)


@pytest.mark.parametrize(("messages", "words"), [
    ([], "There is nothing to send"),
    ([{"role": "robot", "content": "hi"}], "Message 1 is malformed"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant"}], "Message 2 is malformed"),
    ([{"role": "user", "content": 42}], "Message 1 is malformed"),
    (["hi"], "Message 1 is malformed"),
    ("hi", "should be a list"),
])
def test_malformed_messages(manager: ModelManager, messages: object, words: str) -> None:
    with pytest.raises(GenerationError, match=words) as info:
        generation.generate(manager, messages, params())  # type: ignore[arg-type]
    assert info.value.fix
    with manager.use() as (_model, tokenizer), pytest.raises(GenerationError, match=words):
        render_prompt(tokenizer, messages)  # type: ignore[arg-type]
    assert no_worker_alive()


def test_no_model_loaded() -> None:
    with pytest.raises(GenerationError, match="No model is loaded") as info:
        generation.generate(ModelManager(), MESSAGES, params())
    assert "Models tab" in str(info.value)


def test_out_of_memory_while_generating(manager: ModelManager, greedy: Completion, monkeypatch: pytest.MonkeyPatch) -> None:
    def generate(*args: object, **kwargs: object) -> Iterator[int]:
        raise torch.OutOfMemoryError("CUDA out of memory")

    with manager.use() as (model, _tokenizer):
        monkeypatch.setattr(model, "generate", generate)
    with pytest.raises(GenerationError, match="Out of memory while generating") as info:
        generation.generate(manager, MESSAGES, params())
    assert "4bit" in str(info.value)
    monkeypatch.undo()
    assert generation.generate(manager, MESSAGES, params()).text == greedy.text
