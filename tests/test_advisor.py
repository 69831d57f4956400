"""The decision advisor: questionnaire archetypes → rungs with reasons, evaluation numbers cited and
overruling, and the full / LoRA / QLoRA memory table on the tiny model's real shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.config import GenerationParams
from studio.core.advisor import (MARGIN, Answers, compare_sentence, load_evaluations, memory_table, memory_text,
                                 recommend)
from studio.core.evaluation import store
from studio.core.evaluation.runner import EvaluationRun, Variant
from studio.core.prompting import PromptSpec
from studio.errors import ConfigError


def agg(n: int = 20, **metrics: float | None) -> dict:
    base = {"n": n, "exact_match": 0.0, "rouge_l": 0.3, "fact_recall": 0.2, "json_valid": 0.5, "schema_valid": 0.4}
    return {**base, **metrics}


def make_run(aggregates: dict[str, dict], name: str = "run-1") -> EvaluationRun:
    variants = {"base": Variant("base"), "prompt": Variant("prompt", prompt=PromptSpec()),
                "rag": Variant("rag", knowledge_base="kb"), "tuned": Variant("tuned", adapter="a"),
                "tuned+rag": Variant("tuned+rag", adapter="a", knowledge_base="kb")}
    return EvaluationRun(name=name, model="tiny", variants=[variants[k] for k in aggregates], params=GenerationParams(),
                         batch_size=8, results=[], aggregates=aggregates)


# Questionnaire archetypes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("answers, rungs, label, cited", [
    (Answers(), ["prompting"], "Prompting", "unsure"),
    (Answers(gap="knowledge", facts_change="daily", citations=True), ["rag"], "RAG", "change daily"),
    (Answers(gap="behaviour", dataset_size="100-1000", hardware="gpu-large"), ["lora"], "LoRA", "100-1000 examples"),
    (Answers(gap="behaviour", dataset_size="100-1000", hardware="gpu-small"), ["qlora"], "QLoRA", "small (<12 GB)"),
    (Answers(gap="behaviour", dataset_size=">1000", hardware="gpu-large"), ["full"], "Full fine-tuning", "more than 1000"),
    (Answers(gap="behaviour", dataset_size="<100"), ["prompting"], "Prompting", "fewer than 100 examples"),
    (Answers(gap="both", dataset_size="100-1000", hardware="gpu-large", facts_change="monthly"), ["rag", "lora"],
     "RAG + LoRA", "fluent and wrong"),
    (Answers(gap="both", dataset_size=">1000", hardware="gpu-large"), ["rag", "lora"], "RAG + LoRA", "right and off-brand"),
    (Answers(gap="both", dataset_size="none"), ["rag"], "RAG", "no examples"),
])
def test_each_archetype_gets_its_rung_with_reasons(answers: Answers, rungs: list[str], label: str, cited: str) -> None:
    rec = recommend(answers)
    assert rec.rungs == rungs and rec.label == label
    assert any(cited in r for r in rec.reasons), rec.reasons
    assert rec.reasons[0].startswith("Prompting is the baseline")
    assert not rec.overruled and not rec.evidence
    assert rec.text().startswith(f"Recommendation: {label}\n- ")


def test_reasons_cite_citations_latency_and_cpu() -> None:
    rec = recommend(Answers(gap="knowledge", citations=True, latency="strict"))
    assert any("You need citations" in r for r in rec.reasons)
    assert any("strict" in r and "top-k small" in r for r in rec.reasons)
    rec = recommend(Answers(gap="behaviour", dataset_size="100-1000", hardware="cpu", latency="strict"))
    assert rec.rungs == ["lora"] and any("QLoRA needs a CUDA GPU" in r for r in rec.reasons)
    assert any("into the weights" in r for r in rec.reasons)


def test_a_bad_answer_names_the_field() -> None:
    with pytest.raises(ConfigError, match="`dataset_size` should be one of none, <100, 100-1000, >1000, got 'lots'"):
        Answers(dataset_size="lots")


# Evaluation evidence -------------------------------------------------------------------------------------------
def test_the_numbers_are_cited_with_their_values() -> None:
    run = make_run({"base": agg(), "prompt": agg(), "tuned+rag": agg(fact_recall=0.6, schema_valid=0.9, rouge_l=0.5,
                                                                      json_valid=0.5, exact_match=0.0)})
    rec = recommend(Answers(gap="both", dataset_size="100-1000", hardware="gpu-large"), [run])
    assert ("tuned+rag beats the prompt baseline by 0.40 on fact recall, 0.50 on schema validity, 0.00 on JSON validity, "
            "0.20 on ROUGE-L and 0.00 on exact match on 20 examples (run 'run-1').") in rec.evidence
    assert rec.rungs == ["rag", "lora"] and not rec.overruled
    assert any("confirms the fine-tune" in r for r in rec.reasons)


def test_mixed_and_losing_comparisons_read_plainly() -> None:
    run = make_run({"base": agg(), "tuned": agg(fact_recall=0.1, schema_valid=0.6)})
    assert compare_sentence(run, "tuned", run.variants[0]) == (
        "tuned against the base model on 20 examples (run 'run-1'): -0.10 on fact recall, +0.20 on schema validity, "
        "+0.00 on JSON validity, +0.00 on ROUGE-L and +0.00 on exact match.")
    run = make_run({"prompt": agg(fact_recall=None, json_valid=None, schema_valid=None, exact_match=None),
                    "tuned": agg(n=7, rouge_l=0.1, fact_recall=None)})
    assert compare_sentence(run, "tuned", run.variants[0]) == ("tuned trails the prompt baseline by 0.20 on ROUGE-L "
                                                                "on 7 examples (run 'run-1').")


def test_a_fine_tune_that_does_not_beat_the_prompt_overrules_the_questionnaire() -> None:
    small = MARGIN / 2
    run = make_run({"prompt": agg(), "rag": agg(fact_recall=0.5),
                    "tuned+rag": agg(fact_recall=0.5, schema_valid=0.4 + small)})
    rec = recommend(Answers(gap="both", dataset_size="100-1000", hardware="gpu-small"), [run])
    assert rec.overruled and rec.rungs == ["rag"]
    assert any(e.startswith("tuned+rag beats the prompt baseline by 0.30 on fact recall") for e in rec.evidence)
    assert any(e.startswith("tuned+rag beats rag by 0.00 on fact recall") for e in rec.evidence)  # the adapter's own share
    assert any("have not yet earned the complexity" in r and "Stay with RAG" in r for r in rec.reasons)
    rec = recommend(Answers(gap="behaviour", dataset_size=">1000", hardware="gpu-large"),
                    [make_run({"prompt": agg(), "tuned": agg(schema_valid=0.9, rouge_l=0.1)})])
    assert rec.overruled and rec.rungs == ["prompting"]  # a big schema gain does not excuse a ROUGE-L collapse


def test_a_winning_variant_earns_its_rung_even_against_the_questionnaire() -> None:
    rec = recommend(Answers(gap="knowledge", hardware="gpu-small"),
                    [make_run({"prompt": agg(), "rag": agg(fact_recall=0.7), "tuned": agg(schema_valid=0.8)})])
    assert rec.rungs == ["rag", "qlora"] and rec.overruled
    assert any("earned its complexity" in r for r in rec.reasons) and any("confirms RAG" in r for r in rec.reasons)
    rec = recommend(Answers(gap="behaviour", dataset_size="<100"), [make_run({"base": agg(), "rag": agg(fact_recall=0.3)})])
    assert rec.rungs == ["rag"] and rec.overruled and any("lacks knowledge" in r for r in rec.reasons)
    rec = recommend(Answers(gap="knowledge"), [make_run({"prompt": agg(), "tuned": agg(rouge_l=0.32)})])
    assert rec.rungs == ["rag"] and not rec.overruled
    assert any(r.startswith("Your evaluation agrees") and "not yet earned" in r for r in rec.reasons)


def test_the_newest_run_decides_and_runs_without_a_baseline_are_skipped() -> None:
    newest = make_run({"prompt": agg(), "tuned": agg()}, "new")
    older = make_run({"prompt": agg(), "tuned": agg(schema_valid=0.9)}, "old")
    no_baseline = make_run({"rag": agg(), "tuned": agg()}, "odd")
    rec = recommend(Answers(gap="behaviour", dataset_size="100-1000"), [newest, older, no_baseline])
    assert rec.rungs == ["prompting"] and rec.overruled and len(rec.evidence) == 2
    assert "(run 'new')" in rec.evidence[0] and "(run 'old')" in rec.evidence[1]


def test_saved_runs_are_read_back_from_the_workspace(tmp_path: Path) -> None:
    store.save_run(make_run({"prompt": agg(), "tuned": agg(schema_valid=0.9)}, "saved"), tmp_path)
    (tmp_path / "evals" / "broken").mkdir()
    (tmp_path / "evals" / "broken" / "config.json").write_text("{")
    runs = load_evaluations(tmp_path)
    assert [r.name for r in runs] == ["saved"]
    rec = recommend(Answers(gap="behaviour", dataset_size="100-1000"), runs)
    assert rec.evidence == ["tuned beats the prompt baseline by 0.00 on fact recall, 0.50 on schema validity, 0.00 on "
                            "JSON validity, 0.00 on ROUGE-L and 0.00 on exact match on 20 examples (run 'saved')."]


# Memory table --------------------------------------------------------------------------------------------------
def test_memory_table_matches_hand_arithmetic(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    h, i, layers, vocab = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], config["vocab_size"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    attention = h * h * 2 + h * kv * 2  # q, o: h×h; k, v: h×kv
    per_layer = attention + 3 * h * i + 2 * h  # + gate/up/down, two RMSNorms
    total = 2 * vocab * h + layers * per_layer + h  # untied embeddings and lm_head, final norm
    lora = layers * 16 * (2 * (h + h) + 2 * (h + kv) + 2 * (h + i) + (i + h))  # r × (in + out) per linear
    rows = memory_table(str(tiny_model_dir), rank=16, batch_size=4, seq_len=1024, device="cpu",
                        memory={"system_available": 2**40})
    full, lo, qlo = rows
    assert [r.method for r in rows] == ["full", "lora", "qlora"]
    assert full.params.trainable == full.params.total == total
    activations = 4 * 1024 * (h * layers * 34 * 2 + vocab * 8)  # fp32 compute on CPU doubles the 34 bytes
    assert (full.memory.weights, full.memory.gradients, full.memory.optimizer, full.memory.activations) == (
        total * 4, total * 4, total * 8, activations)
    assert lo.params.trainable == qlo.params.trainable == lora and lo.params.total == total + lora
    assert lo.memory.weights == total * 4 + lora * 4 and qlo.memory.weights == total * 0.5 + lora * 4
    assert lo.memory.optimizer == lora * 8 and lo.memory.activations == activations
    assert full.memory.total > lo.memory.total >= qlo.memory.total
    assert all(r.fits and r.verdict.startswith("fits") for r in rows)
    assert memory_text(rows).splitlines()[0].startswith("Full fine-tuning")


def test_memory_table_says_what_does_not_fit(tiny_model_dir: Path) -> None:
    rows = memory_table(str(tiny_model_dir), rank=4, target_modules=["q_proj", "v_proj"], device="cpu",
                        memory={"cuda_total": 10 * 2**20, "cuda_reserved": 0, "system_available": 0})
    assert [r.fits for r in rows] == [False, False, False]
    assert "will not fit" in rows[0].verdict and "free GPU memory" in rows[0].verdict
    assert rows[1].params.trainable == 2 * 4 * (64 + 64) * 2  # two layers × (q, v) × r × (in + out)
