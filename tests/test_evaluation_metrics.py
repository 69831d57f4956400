"""Answer metrics checked against values worked out by hand on tiny cases."""

from __future__ import annotations

import json
import math

import pytest

from studio.core.evaluation import metrics as m

HOUSE_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "steps": {"type": "array", "items": {"type": "string"}},
                                                 "escalate": {"type": "boolean"}},
                "required": ["answer", "steps", "escalate"], "additionalProperties": False}


def test_exact_match_ignores_case_whitespace_and_punctuation() -> None:
    assert m.exact_match("The answer is: Paris!", "the answer   is paris") == 1.0
    assert m.exact_match("  It\u2019s  ON.\n", "its on") == 1.0
    assert m.exact_match("Paris", "Paris, France") == 0.0


def test_rouge_l_is_the_lcs_f_measure() -> None:
    # LCS("the cat on the mat", "the cat sat on the mat") = 5 words: P = 5/5, R = 5/6, F = 2PR/(P+R) = 10/11.
    assert m.rouge_l("the cat on the mat", "the cat sat on the mat") == pytest.approx(10 / 11)
    assert m.rouge_l("dog", "the cat") == 0.0


def test_bleu_sentence_and_corpus() -> None:
    # Every n-gram precision is 1; the brevity penalty is exp(1 - 5/4).
    assert m.sentence_bleu("a b c d", "a b c d e") == pytest.approx(100 * math.exp(-0.25))
    assert m.sentence_bleu("the cat sat", "the cat sat") == pytest.approx(100.0)
    # Corpus: 9 hypothesis words against 10 reference words, all n-grams match: 100 * exp(1 - 10/9).
    assert m.corpus_bleu(["a b c d", "a b c d e"], ["a b c d e", "a b c d e"]) == pytest.approx(100 * math.exp(-1 / 9))
    assert m.corpus_bleu([], []) == 0.0


def test_chrf_sentence_and_corpus() -> None:
    # "ab" vs "abc": 1-grams P=1 R=2/3, 2-grams P=1 R=1/2; averaged P=1, R=7/12; F2 = 5PR/(4P+R) = 7/11.
    assert m.sentence_chrf("ab", "abc") == pytest.approx(100 * 7 / 11)
    assert m.sentence_chrf("ab c", "ab c") == pytest.approx(100.0)
    # Corpus counts add up: recalls 5/6, 3/4, 1/2 (orders 1-3), precision 1: R = 25/36, F2 = 125/169.
    assert m.corpus_chrf(["ab", "abc"], ["abc", "abc"]) == pytest.approx(100 * 125 / 169)


def test_fact_recall_normalises_case_whitespace_and_dashes() -> None:
    answer = "The fan runs at 2,000\n  rpm and the code C\u2013101 is shown."
    assert m.fact_recall(answer, ["2,000 rpm", "c-101", "Learning your home"]) == pytest.approx(2 / 3)
    assert m.fact_recall(answer, []) is None
    assert m.fact_recall(answer, None) is None


def test_json_validity_accepts_the_whole_answer_or_the_first_object_in_it() -> None:
    assert m.extract_json('{"a": 1}') == (True, {"a": 1})
    assert m.extract_json('Sure! Here it is: {"a": [1, 2]} Hope that helps {"b": 2}') == (True, {"a": [1, 2]})
    assert m.extract_json("[1, 2]") == (True, [1, 2])
    assert m.extract_json("no json {here, sorry") == (False, None)
    assert m.extract_json("{not json} then {\"ok\": true}") == (True, {"ok": True})


def test_schema_validity_against_the_house_format() -> None:
    good = json.dumps({"answer": "Yes.", "steps": [], "escalate": False})
    extra = json.dumps({"answer": "Yes.", "steps": [], "escalate": False, "mood": "happy"})
    assert m.score_example(good, good, schema=HOUSE_SCHEMA).schema_valid == 1.0
    assert m.score_example(extra, good, schema=HOUSE_SCHEMA).schema_valid == 0.0
    assert m.score_example("Yes.", good, schema=HOUSE_SCHEMA).schema_valid == 0.0  # not JSON at all
    assert m.score_example(good, good).schema_valid is None  # no schema: does not apply


@pytest.mark.parametrize("text", ["I don't know.", "I do not know the answer", "Sorry, I\u2019m not sure.",
                                  "I cannot answer that from the context.", "There is not enough information.",
                                  "The context does not contain the warranty period.", "i dont know"])
def test_refusals_are_recognised(text: str) -> None:
    assert m.is_refusal(text)


@pytest.mark.parametrize("text", ["The warranty lasts ten years.", "I know the answer: 42.", "Do not unplug it."])
def test_answers_are_not_refusals(text: str) -> None:
    assert not m.is_refusal(text)


def test_length_and_latency() -> None:
    scores = m.score_example("one two  three", "x", latency_s=0.25)
    assert (scores.tokens, scores.chars, scores.latency_s) == (3, 14, 0.25)
    assert m.score_example("one two three", "x", tokens=7).tokens == 7


def test_aggregate_means_skip_metrics_that_do_not_apply() -> None:
    a = m.score_example("Paris", "Paris", facts=["paris"], latency_s=1.0, tokens=2)
    b = m.score_example("London", "Paris", latency_s=3.0, tokens=4)  # no facts: left out of fact_recall's mean
    summary = m.aggregate([a, b], ["Paris", "London"], ["Paris", "Paris"])
    assert summary["n"] == 2
    assert summary["exact_match"] == 0.5
    assert summary["fact_recall"] == 1.0
    assert summary["schema_valid"] is None
    assert (summary["tokens"], summary["latency_s"]) == (3.0, 2.0)
    assert summary["corpus_bleu"] == pytest.approx(m.corpus_bleu(["Paris", "London"], ["Paris", "Paris"]))
    assert 0 < summary["corpus_chrf"] < 100
