"""The evaluation runner end to end on the tiny Llama: variants, batching, saving, cancelling."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import pytest

from studio.config import GenerationParams, LoadParams
from studio.core import generation
from studio.core.evaluation import runner
from studio.core.evaluation.data import EvalExample, parse_example
from studio.core.evaluation.runner import Variant, evaluate
from studio.core.evaluation.store import list_runs, load_run, save_run
from studio.core.models import ModelManager
from studio.core.prompting import FEW_SHOT, default_spec
from studio.errors import StudioError

SCHEMA = {"type": "object", "required": ["answer"]}
QUESTIONS = ["Hi", "How do I reset the router and check the cable?", "What does the warranty cover?",
             "Please restart the device", "Numbers 1 2 3", "A user asks a question and the assistant answers it. Why?",
             "Update the firmware", "ok"]
PARAMS = GenerationParams(temperature=0.0, max_new_tokens=6)


@pytest.fixture(scope="module")
def manager(tiny_model_dir: Path, adapter_dirs: tuple[Path, Path]) -> ModelManager:
    mm = ModelManager()
    mm.load(LoadParams(model=str(tiny_model_dir), device="cpu"))
    mm.attach_adapter(adapter_dirs[0], "style-a")
    mm.attach_adapter(adapter_dirs[1], "style-b")
    return mm


@pytest.fixture(scope="module")
def examples() -> list[EvalExample]:
    return [parse_example({"question": q, "reference": json.dumps({"answer": q}), "facts": [q.split()[0]], "schema": SCHEMA},
                          line=i + 1) for i, q in enumerate(QUESTIONS)]


VARIANTS = [Variant("base"), Variant("tuned", adapter="style-a"), Variant("few-shot", prompt=default_spec(FEW_SHOT)),
            Variant("tuned-b", adapter="style-b")]


@pytest.mark.slow
def test_end_to_end_run_is_saved_and_reloads(manager: ModelManager, examples: list[EvalExample], tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    run = evaluate(manager, examples, VARIANTS, PARAMS, batch_size=4, progress=lambda d, t: seen.append((d, t)),
                   name="smoke", dataset="held-out.jsonl")
    assert [len(r.answers) for r in run.results] == [4] * len(QUESTIONS)
    assert seen[-1] == (32, 32) and len(seen) == 8
    assert not run.cancelled and run.model.endswith("tiny-llama")
    # The adapters change the answers: the comparison is not comparing one model with itself.
    first = run.results[1].answers
    assert len({first["base"].answer, first["tuned"].answer, first["tuned-b"].answer}) == 3
    assert first["few-shot"].prompt_tokens > first["base"].prompt_tokens
    for name in ("base", "tuned", "few-shot", "tuned-b"):
        summary = run.aggregates[name]
        assert summary["n"] == len(QUESTIONS)
        assert 0 < summary["tokens"] <= PARAMS.max_new_tokens and summary["latency_s"] > 0
        assert summary["schema_valid"] is not None and "corpus_bleu" in summary

    folder = save_run(run, tmp_path)
    assert folder == tmp_path / "evals" / "smoke"
    assert list_runs(tmp_path) == ["smoke"]
    again = load_run(folder)
    assert again.aggregates == json.loads(json.dumps(run.aggregates))
    assert [r.answers["tuned"].answer for r in again.results] == [r.answers["tuned"].answer for r in run.results]
    assert again.variants[2].prompt.technique == FEW_SHOT and again.params == PARAMS
    assert again.results[0].example == run.results[0].example
    rows = list(csv.DictReader(io.StringIO((folder / "results.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 32 and rows[0]["variant"] == "base" and rows[0]["question"] == "Hi"
    summary_rows = list(csv.DictReader(io.StringIO((folder / "summary.csv").read_text(encoding="utf-8"))))
    assert [r["variant"] for r in summary_rows] == ["base", "tuned", "few-shot", "tuned-b"]
    with pytest.raises(StudioError, match="already exists"):
        save_run(run, tmp_path)
    (folder / "results.json").write_text("[{}]", encoding="utf-8")
    with pytest.raises(StudioError, match="Evaluation 'smoke' cannot be read .*KeyError"):
        load_run(folder)
    with pytest.raises(StudioError, match="Evaluation 'gone' cannot be read"):
        load_run(tmp_path / "evals" / "gone")


@pytest.mark.slow
def test_batched_answers_equal_one_at_a_time_greedy_answers(manager: ModelManager, examples: list[EvalExample]) -> None:
    batched = evaluate(manager, examples, VARIANTS, PARAMS, batch_size=8)
    single = evaluate(manager, examples, VARIANTS, PARAMS, batch_size=1)
    for b, s in zip(batched.results, single.results):
        assert {k: a.answer for k, a in b.answers.items()} == {k: a.answer for k, a in s.answers.items()}
    # ...and equal what the chat path (stream(), no padding at all) answers.
    for result in batched.results[:4]:
        for variant in ("base", "tuned"):
            adapter = "style-a" if variant == "tuned" else None
            alone = generation.generate(manager, result.example.messages, PARAMS, adapter=adapter)
            assert result.answers[variant].answer == alone.text


@pytest.mark.slow
def test_one_adapter_per_batch_when_mixed_batches_are_unavailable(manager: ModelManager, examples: list[EvalExample],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mixed = evaluate(manager, examples[:3], VARIANTS, PARAMS, batch_size=4)
    monkeypatch.setattr(runner, "mixed_batches_supported", lambda _m: False)
    grouped = evaluate(manager, examples[:3], VARIANTS, PARAMS, batch_size=4)
    for a, b in zip(mixed.results, grouped.results):
        assert {k: v.answer for k, v in a.answers.items()} == {k: v.answer for k, v in b.answers.items()}


@pytest.mark.slow
def test_cancel_stops_early_and_keeps_whole_examples(manager: ModelManager, examples: list[EvalExample]) -> None:
    cancel = threading.Event()
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        cancel.set()

    run = evaluate(manager, examples, VARIANTS[:2], PARAMS, batch_size=2, progress=progress, cancel=cancel)
    assert run.cancelled
    assert calls == [2]  # nothing was generated after the cancel
    assert len(run.results) == 1 and set(run.results[0].answers) == {"base", "tuned"}
    assert run.aggregates["base"]["n"] == 1


def test_bad_variants_are_refused_before_generating(manager: ModelManager, examples: list[EvalExample]) -> None:
    with pytest.raises(StudioError, match="adapter 'nope', which is not attached.*style-a, style-b"):
        evaluate(manager, examples, [Variant("x", adapter="nope")], PARAMS)
    with pytest.raises(StudioError, match="must be unique"):
        evaluate(manager, examples, [Variant("x"), Variant("x", adapter="style-a")], PARAMS)
    with pytest.raises(StudioError, match="no RAG service was given"):
        evaluate(manager, examples, [Variant("rag", knowledge_base="docs")], PARAMS)
    with pytest.raises(StudioError, match="No variants"):
        evaluate(manager, examples, [], PARAMS)
    with pytest.raises(StudioError, match="no examples"):
        evaluate(manager, [], [Variant("base")], PARAMS)
    with pytest.raises(StudioError, match="No model is loaded"):
        evaluate(ModelManager(), examples, [Variant("base")], PARAMS)


def test_running_out_of_memory_says_to_lower_the_batch_size() -> None:
    import torch

    class Tokenizer:
        pad_token_id, eos_token_id = 0, 1

    class Model:
        def parameters(self):
            return iter([torch.zeros(1)])

        def generate(self, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(StudioError, match="Out of memory while generating a batch of 2 prompts of up to 3 tokens.*lower the batch size"):
        runner.generate_batch(Model(), Tokenizer(), [[5, 6, 7], [5]], PARAMS)


def test_saved_run_names_are_checked(manager: ModelManager, examples: list[EvalExample], tmp_path: Path) -> None:
    run = evaluate(manager, examples[:1], [Variant("base")], GenerationParams(temperature=0.0, max_new_tokens=1), name="../up")
    with pytest.raises(StudioError, match="not usable"):
        save_run(run, tmp_path)
