"""The forgetting probe: its packaged questions, and the base-vs-tuned comparison that flags regressions."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.config import GenerationParams, LoadParams
from studio.core.evaluation.data import parse_example
from studio.core.evaluation.metrics import aggregate, score_example
from studio.core.evaluation.probe import compare_forgetting, forgetting_probe, load_probe
from studio.core.evaluation.runner import EvaluationRun, ExampleResult, Variant, VariantAnswer
from studio.core.models import ModelManager
from studio.errors import StudioError


def test_probe_questions_are_general_knowledge_with_checkable_facts() -> None:
    probe = load_probe()
    assert 25 <= len(probe) <= 40
    assert len({e.question for e in probe}) == len(probe)
    for example in probe:
        assert example.facts, example.question
        assert score_example(example.reference, example.reference, example.facts).fact_recall == 1.0


def _run(base_answers: list[str], tuned_answers: list[str]) -> EvaluationRun:
    examples = [parse_example({"question": "Capital of France?", "reference": "Paris.", "facts": ["Paris"]}, 1),
                parse_example({"question": "Largest planet?", "reference": "Jupiter.", "facts": ["Jupiter"]}, 2)]
    results, aggregates = [], {}
    for ex, b, t in zip(examples, base_answers, tuned_answers):
        results.append(ExampleResult(ex, {name: VariantAnswer(text, score_example(text, ex.reference, ex.facts), 5)
                                          for name, text in (("base", b), ("tuned", t))}))
    for name in ("base", "tuned"):
        answers = [r.answers[name] for r in results]
        aggregates[name] = aggregate([a.scores for a in answers], [a.answer for a in answers], [r.example.reference for r in results])
    return EvaluationRun("probe", "m", [Variant("base"), Variant("tuned", "a")], GenerationParams(temperature=0.0), 8,
                         results, aggregates)


def test_a_lost_fact_is_flagged_as_a_regression() -> None:
    report = compare_forgetting(_run(["Paris.", "Jupiter."], ["Paris.", "Saturn, I think."]), threshold=0.1)
    recall = report.changes[0]
    assert (recall.metric, recall.base, recall.tuned, recall.drop) == ("fact_recall", 1.0, 0.5, 0.5)
    assert report.regressed and [c.metric for c in report.regressions] == ["fact_recall", "rouge_l"]
    assert report.lost == [2]
    assert "fact_recall 1.00 → 0.50" in report.summary() and "regression" in report.summary()


def test_no_regression_within_the_threshold() -> None:
    report = compare_forgetting(_run(["Paris.", "Jupiter."], ["Paris.", "Jupiter!"]), threshold=0.1)
    assert not report.regressed and report.lost == []
    assert "no drop beyond 0.10" in report.summary()
    with pytest.raises(StudioError, match="no variant named 'other'"):
        compare_forgetting(report.run, tuned="other")


@pytest.mark.slow
def test_probe_runs_base_against_the_adapter(tiny_model_dir: Path, adapter_dirs: tuple[Path, Path]) -> None:
    manager = ModelManager()
    manager.load(LoadParams(model=str(tiny_model_dir), device="cpu"))
    manager.attach_adapter(adapter_dirs[0], "style-a")
    report = forgetting_probe(manager, "style-a", GenerationParams(temperature=0.0, max_new_tokens=4),
                              examples=load_probe()[:4])
    assert [v.name for v in report.run.variants] == ["base", "tuned"]
    assert len(report.run.results) == 4 and [c.metric for c in report.changes] == ["fact_recall", "rouge_l"]
    with pytest.raises(StudioError, match="needs a tuned adapter"):
        forgetting_probe(manager, "")
