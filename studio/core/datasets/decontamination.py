"""Decontamination: training examples that share a word n-gram with an evaluation set.

An example that contains n consecutive words (lowercase \\w+ tokens; n = 8 by default) of an
evaluation question or answer may have taught the model the test: its scores would not measure
generalisation. Each text field is n-grammed on its own, so no n-gram spans two fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.datasets.reading import read_records
from studio.core.datasets.report import Example
from studio.errors import StudioError

EVAL_TEXT_FIELDS = ("question", "prompt", "instruction", "input", "reference", "output", "answer", "completion")
EVAL_TURN_FIELDS = {"messages": "content", "conversations": "value"}
_WORD = re.compile(r"\w+")


@dataclass
class Overlap:
    line: int  # training example's line
    ngram: str  # the first shared n-gram found
    eval_line: int  # the evaluation example it comes from


@dataclass
class ContaminationReport:
    eval_path: Path
    n: int
    eval_examples: int
    train_examples: int
    overlaps: list[Overlap] = field(default_factory=list)  # one per contaminated training example, in file order

    @property
    def count(self) -> int:
        return len(self.overlaps)

    @property
    def lines(self) -> list[int]:
        return [o.line for o in self.overlaps]

    def text(self, limit: int = 20) -> str:
        against = f"{self.eval_path.name} ({self.eval_examples} examples)"
        if not self.overlaps:
            return f"No training example shares a {self.n}-word sequence with {against}."
        head = f"{self.count} of {self.train_examples} training examples share a {self.n}-word sequence with {against}"
        rows = [f"  line {o.line}: {o.ngram!r} (eval line {o.eval_line})" for o in self.overlaps[:limit]]
        more = [f"  ... and {self.count - limit} more"] if self.count > limit else []
        return "\n".join([head + ":", *rows, *more, "Fix: remove these examples from the training data, or the "
                          "evaluation scores will overstate the model."])


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterable[str]:
    tokens = words(text)
    return (" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def read_eval_texts(path: str | Path) -> list[tuple[int, list[str]]]:
    """(line, text fields) of each example of an evaluation .jsonl/.json file. Raises StudioError when the file
    cannot be read or no example has any of the text fields."""
    records, issues = read_records(path)
    if issues:
        raise StudioError(f"{Path(path).name}: {issues[0]}", "fix the evaluation file first.")
    out = [(r.line, texts) for r in records if (texts := _eval_texts(r.value))]
    if not out:
        fields = ", ".join((*EVAL_TEXT_FIELDS, *EVAL_TURN_FIELDS))
        raise StudioError(f"{Path(path).name} has no text to compare with: no example has any of the fields {fields}.",
                          "point at the evaluation set (JSON lines with e.g. question and reference fields).")
    return out


def check_contamination(examples: Sequence[Example], eval_path: str | Path, n: int = 8) -> ContaminationReport:
    """Training examples (every message, system prompt included) sharing an n-gram with the evaluation file."""
    if n < 1:
        raise StudioError(f"The n-gram size should be at least 1, got {n}.", "use the default, 8.")
    evaluation = read_eval_texts(eval_path)
    index: dict[str, int] = {}
    for line, texts in evaluation:
        for text in texts:
            for gram in ngrams(text, n):
                index.setdefault(gram, line)
    report = ContaminationReport(Path(eval_path), n, len(evaluation), len(examples))
    for example in examples:
        hit = next((g for m in example.messages for g in ngrams(m["content"], n) if g in index), None)
        if hit is not None:
            report.overlaps.append(Overlap(example.line, hit, index[hit]))
    return report


def _eval_texts(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    texts = [value[k] for k in EVAL_TEXT_FIELDS if isinstance(value.get(k), str) and value[k].strip()]
    for key, text_key in EVAL_TURN_FIELDS.items():
        turns = value.get(key)
        if isinstance(turns, list):
            texts += [t[text_key] for t in turns if isinstance(t, dict) and isinstance(t.get(text_key), str)]
    return texts
