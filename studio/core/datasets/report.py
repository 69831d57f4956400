"""What a dataset check returns: the valid examples, per-line errors and warnings, and statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Message = dict[str, str]
Severity = Literal["error", "warning"]

FORMAT_NAMES = {
    "messages": "messages (role/content)",
    "sharegpt": "ShareGPT conversations (from/value)",
    "alpaca": "Alpaca (instruction/input/output)",
    "prompt_completion": "prompt/completion",
}


@dataclass
class Issue:
    """One problem found in a file. `line` is 1-based (the line an example starts on in a JSON array);
    group warnings (duplicates) list every line concerned in `lines` instead."""

    severity: Severity
    kind: str  # encoding, invalid_json, not_object, unknown_format, mixed_formats, malformed, unknown_role, ...
    message: str  # what is wrong
    fix: str = ""  # how to fix it
    line: int | None = None
    lines: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message}" + (f" Fix: {self.fix}" if self.fix else "")


@dataclass
class Example:
    """One valid training example, normalised to chat messages."""

    line: int
    messages: list[Message]
    format: str = "messages"


@dataclass
class LengthStats:
    """Token lengths of the valid examples as the chat template renders them (EOS included)."""

    lengths: list[int]  # one per example, in the order of DatasetReport.examples
    p50: int
    p90: int
    p95: int
    max: int
    suggested_max_length: int  # p95 rounded up to a multiple of 64, capped by DataParams.max_suggested_length
    max_length: int
    policy: str  # truncate | drop
    over_length: int  # examples longer than max_length (truncated or dropped, as the policy says)
    untrainable: int = 0  # truncated examples that lose every assistant token (they train nothing)


@dataclass
class DatasetStats:
    records: int  # examples read, valid or not (lines that are not UTF-8 or not JSON included)
    examples: int  # valid examples
    turns_mean: float  # messages per example, system prompt excluded
    turns_max: int
    system_prompts: int  # distinct system prompts ("" not counted)
    duplicates: int  # extra copies of an identical example
    near_duplicates: int  # extra variants in near-duplicate groups (texts that differ only in case/spacing/punctuation)
    tokens: LengthStats | None = None  # None without a tokenizer


@dataclass
class DatasetReport:
    """The result of `check_dataset`: `examples` holds only the valid lines; `has_errors` says whether any
    line was rejected (the CLI exits non-zero then; training may still use the valid examples)."""

    path: Path
    format: str | None  # the file's (majority) format
    formats: dict[str, int]  # lines detected per format
    examples: list[Example]
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    stats: DatasetStats | None = None

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    def issues(self, kind: str) -> list[Issue]:
        return [i for i in self.errors + self.warnings if i.kind == kind]

    def text(self, limit: int = 20) -> str:
        """The report for a terminal: summary, errors, warnings (at most `limit` each), statistics."""
        name = FORMAT_NAMES.get(self.format or "", "no recognised format")
        skipped = self.stats.records - self.stats.examples if self.stats else 0
        out = [f"{self.path.name}: {len(self.examples)} valid examples, format {name}"
               + (f"; {skipped} line(s) rejected" if skipped else "")]
        for title, issues in (("Errors", self.errors), ("Warnings", self.warnings)):
            if issues:
                out.append(f"{title} ({len(issues)}):")
                out += [f"  {issue}" for issue in issues[:limit]]
                if len(issues) > limit:
                    out.append(f"  ... and {len(issues) - limit} more")
        if self.stats:
            out += _stats_lines(self.stats)
        out.append("Result: " + ("errors found (fix the lines above)" if self.has_errors else "OK"))
        return "\n".join(out)


def _stats_lines(stats: DatasetStats) -> list[str]:
    out = ["Stats:",
           f"  examples {stats.examples} (of {stats.records} read); turns per example mean {stats.turns_mean:.1f}, "
           f"max {stats.turns_max}; distinct system prompts {stats.system_prompts}",
           f"  duplicates {stats.duplicates}, near duplicates {stats.near_duplicates}"]
    tokens = stats.tokens
    if tokens is None:
        out.append("  token lengths: " + ("need a tokenizer (pass a model)" if stats.examples else "no valid example"))
        return out
    out.append(f"  tokens per example p50 {tokens.p50}, p90 {tokens.p90}, p95 {tokens.p95}, max {tokens.max}")
    action = "truncated" if tokens.policy == "truncate" else "dropped"
    out.append(f"  over max_length {tokens.max_length}: {tokens.over_length} (would be {action}); "
               f"suggested max_length {tokens.suggested_max_length}")
    return out
