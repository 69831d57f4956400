"""Per-example answer metrics and their per-variant aggregates, computed with maintained libraries.

ROUGE-L comes from `rouge-score`, BLEU and chrF from `sacrebleu` (sentence-level per example,
corpus-level per variant, on sacrebleu's usual 0-100 scale), schema validity from `jsonschema`.
The rest are string checks simple enough to state in their docstrings. A metric that does not
apply to an example (no `facts`, no `schema`) is None and is left out of that metric's mean.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Typographic dashes and minus signs a model may write for the ASCII hyphen in a fact ("C‑101", "3–5").
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"})
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_PUNCTUATION = str.maketrans("", "", string.punctuation + "\u2018\u2019\u201c\u201d\u2026")
_SPACE = re.compile(r"\s+")
# "I don't know" and its close variants, matched on lower-cased text with straight apostrophes.
_REFUSAL = re.compile(
    r"\b(i\s*(do\s*not|don't|dont)\s*know"
    r"|i'?m\s*not\s*sure|i\s*am\s*not\s*sure"
    r"|i\s*(cannot|can't|can\s*not|am\s*unable\s*to|'m\s*unable\s*to)\s*(answer|say|tell|help\s*with\s*that)"
    r"|i\s*(do\s*not|don't)\s*have\s*(enough\s*)?(the\s*)?(information|context|details)"
    r"|(there\s*is\s*)?not\s*enough\s*(information|context)"
    r"|the\s*(context|documents?|passages?)\s*(does|do)\s*not\s*(contain|say|mention))"
)


@dataclass
class ExampleScores:
    """Every metric of one answer. Rates are 0/1 per example; None = does not apply to this example."""

    exact_match: float
    rouge_l: float  # ROUGE-L F-measure, 0..1
    bleu: float  # sentence BLEU, 0..100
    chrf: float  # sentence chrF, 0..100
    fact_recall: float | None  # share of the example's facts found in the answer
    json_valid: float
    schema_valid: float | None
    refusal: float
    tokens: int
    chars: int
    latency_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MEAN_METRICS = ("exact_match", "rouge_l", "bleu", "chrf", "fact_recall", "json_valid", "schema_valid", "refusal",
                "tokens", "chars", "latency_s")
SCORECARD_METRICS = ("n", *MEAN_METRICS, "corpus_bleu", "corpus_chrf")  # a scorecard's rows, in order (CLI and UI)


def format_score(value: Any) -> str:
    """A scorecard cell: '-' (does not apply), an integer, or 3 decimals; the CLI and the UI print the same."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def normalize_answer(text: str) -> str:
    """Lower-case, straight quotes, no punctuation, whitespace collapsed: the exact-match form."""
    text = text.translate(_QUOTES).translate(_DASHES).lower().translate(_PUNCTUATION)
    return _SPACE.sub(" ", text).strip()


def exact_match(answer: str, reference: str) -> float:
    """1.0 when the answer equals the reference after `normalize_answer`, else 0.0."""
    return float(normalize_answer(answer) == normalize_answer(reference))


_ROUGE: Any = None


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score's default tokenizer: lower-cased alphanumeric words, no stemming)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return float(_ROUGE.score(reference, answer)["rougeL"].fmeasure)


def sentence_bleu(answer: str, reference: str) -> float:
    """sacrebleu's sentence BLEU (exp smoothing, effective order), 0..100."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(answer, [reference]).score)


def sentence_chrf(answer: str, reference: str) -> float:
    """sacrebleu's sentence chrF (character 6-grams, beta 2), 0..100."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(answer, [reference]).score)


def corpus_bleu(answers: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU over paired answers and references, 0..100 (0 for no pairs)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(answers), [list(references)]).score) if answers else 0.0


def corpus_chrf(answers: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(answers), [list(references)]).score) if answers else 0.0


def _fact_form(text: str) -> str:
    return _SPACE.sub(" ", text.translate(_DASHES).translate(_QUOTES)).strip().casefold()


def fact_recall(answer: str, facts: Sequence[str] | None) -> float | None:
    """Share of `facts` found in the answer (case-insensitive, whitespace collapsed, dashes and quotes
    made ASCII); None when the example has no facts."""
    if not facts:
        return None
    text = _fact_form(answer)
    return sum(_fact_form(f) in text for f in facts) / len(facts)


def extract_json(answer: str) -> tuple[bool, Any]:
    """(True, value) when the whole answer, or else the first {...} object in it, parses as JSON."""
    decoder = json.JSONDecoder()
    text = answer.strip()
    try:
        return True, json.loads(text)
    except ValueError:
        pass
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return True, value
    return False, None


def schema_valid(value: Any, schema: dict[str, Any]) -> bool:
    """True when `value` validates against `schema` (its own $schema draft, else the latest)."""
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    return cls(schema).is_valid(value)


def is_refusal(answer: str) -> bool:
    """True for "I don't know" and close variants ("I'm not sure", "I cannot answer that", "there is not
    enough information", "the context does not contain ..."), anywhere in the answer."""
    return bool(_REFUSAL.search(answer.translate(_QUOTES).lower()))


def score_example(answer: str, reference: str, facts: Sequence[str] | None = None,
                  schema: dict[str, Any] | None = None, latency_s: float = 0.0, tokens: int | None = None) -> ExampleScores:
    """Every metric of one answer against its reference. `tokens` defaults to the answer's word count
    (the runner passes the generated token count)."""
    parsed, value = extract_json(answer)
    return ExampleScores(
        exact_match=exact_match(answer, reference),
        rouge_l=rouge_l(answer, reference),
        bleu=sentence_bleu(answer, reference),
        chrf=sentence_chrf(answer, reference),
        fact_recall=fact_recall(answer, facts),
        json_valid=float(parsed),
        schema_valid=None if not schema else float(parsed and schema_valid(value, schema)),
        refusal=float(is_refusal(answer)),
        tokens=len(answer.split()) if tokens is None else int(tokens),
        chars=len(answer),
        latency_s=float(latency_s),
    )


def aggregate(scores: Sequence[ExampleScores], answers: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Per-variant summary: the mean of every metric over the examples it applies to, the corpus
    BLEU/chrF, and `n` (examples scored). A metric that applies to none is None."""
    out: dict[str, Any] = {"n": len(scores)}
    for name in MEAN_METRICS:
        values = [v for s in scores if (v := getattr(s, name)) is not None]
        out[name] = sum(values) / len(values) if values else None
    out["corpus_bleu"] = corpus_bleu(answers, references)
    out["corpus_chrf"] = corpus_chrf(answers, references)
    return out
