"""check_dataset(path, tokenizer, params) → DatasetReport: every example normalised, every problem located.

Errors reject a line (the report keeps only valid examples); warnings keep it. Per line: bad
encoding, invalid JSON, not an object, unknown or mixed format, malformed turns, unknown role,
empty or non-string content, misplaced system prompt, no assistant turn, a template that rejects
the conversation. Over the file: exact and near duplicates, varying system prompts, examples over
max_length, a template that does not end replies with EOS. With a tokenizer: token statistics.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from studio.core.datasets.formats import FORMATS, LineProblem, detect_format, normalise, unknown_format
from studio.core.datasets.params import DataParams
from studio.core.datasets.reading import read_records
from studio.core.datasets.report import FORMAT_NAMES, DatasetReport, DatasetStats, Example, Issue, LengthStats
from studio.core.datasets.tokenization import encode_many, render, require_chat_template, tokenize_example
from studio.errors import StudioError

_PUNCTUATION = re.compile(r"[^\w\s]|_")  # anything but letters, digits and spaces


def check_dataset(path: str | Path, tokenizer: Any = None, params: DataParams | None = None) -> DatasetReport:
    """Read, normalise and check a .jsonl/.json chat dataset; token statistics when a tokenizer is given.

    Raises StudioError only for problems with the file as a whole (missing, wrong extension, empty,
    UTF-16) or a tokenizer without a chat template; everything else is an Issue in the report.
    """
    params = params or DataParams()
    if tokenizer is not None:
        require_chat_template(tokenizer)
    records, read_issues = read_records(path)
    report = DatasetReport(path=Path(path), format=None, formats={}, examples=[], errors=list(read_issues))
    _normalise_records(records, report)
    duplicates, near = _duplicates(report, params.near_duplicates)
    _system_prompts(report)
    tokens = _token_stats(report, tokenizer, params) if tokenizer is not None and report.examples else None
    unreadable = sum(1 for i in read_issues if i.kind in ("encoding", "invalid_json"))
    report.stats = _stats(report, len(records) + unreadable, (duplicates, near), tokens)
    report.errors.sort(key=_issue_order)
    report.warnings.sort(key=_issue_order)
    return report


def normalise_text(text: str) -> str:
    """Lowercase, punctuation stripped, whitespace collapsed: the near-duplicate comparison key."""
    return " ".join(_PUNCTUATION.sub("", text.lower()).split())


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def suggest_max_length(lengths: list[int], cap: int) -> int:
    """p95 of the lengths rounded up to a multiple of 64, at most `cap` (and at least 64)."""
    p95 = percentile(sorted(lengths), 95) if lengths else 64
    return max(64, min(cap, math.ceil(p95 / 64) * 64))


def _normalise_records(records: list[Any], report: DatasetReport) -> None:
    detected = [(record, detect_format(record.value)) for record in records]
    counts = Counter(fmt for _, fmt in detected if fmt)
    report.formats = {fmt: counts[fmt] for fmt in FORMATS if counts[fmt]}
    major = max(report.formats, key=lambda f: (counts[f], -FORMATS.index(f))) if counts else None
    report.format = major
    for record, fmt in detected:
        try:
            if fmt is None:
                raise unknown_format(record.value)
            if fmt != major:
                raise LineProblem("mixed_formats", f"mixed formats: this line is {FORMAT_NAMES[fmt]}, but {counts[major]} "
                                  f"lines of the file are {FORMAT_NAMES[major]}.",
                                  f"convert it to {FORMAT_NAMES[major]}, or keep each format in its own file.")
            messages, warnings = normalise(record.value, fmt)
        except LineProblem as problem:
            report.errors.append(Issue("error", problem.kind, problem.message, problem.fix, line=record.line))
            continue
        report.examples.append(Example(record.line, messages, fmt))
        report.warnings += [Issue("warning", "trailing_turn", w, "end the conversation with the assistant's reply.",
                                  line=record.line) for w in warnings]


def _duplicates(report: DatasetReport, near: bool) -> tuple[int, int]:
    """Warn about exact and near duplicates; returns (extra exact copies, extra near variants)."""
    exact: dict[str, list[int]] = defaultdict(list)
    similar: dict[str, set[str]] = defaultdict(set)  # near key -> the exact keys that share it
    similar_lines: dict[str, list[int]] = defaultdict(list)
    for example in report.examples:
        key = json.dumps(example.messages, ensure_ascii=False)
        exact[key].append(example.line)
        near_key = "\n".join(f"{m['role']}: {normalise_text(m['content'])}" for m in example.messages)
        similar[near_key].add(key)
        similar_lines[near_key].append(example.line)
    extra = sum(len(lines) - 1 for lines in exact.values())
    for lines in exact.values():
        if len(lines) > 1:
            report.warnings.append(Issue(
                "warning", "duplicate", f"exact duplicates: lines {_line_list(lines)} hold the same example.",
                "remove the extra copies: a duplicate weighs more in training and can leak into the validation split.",
                lines=tuple(lines)))
    if not near:
        return extra, 0
    for near_key, variants in similar.items():
        if len(variants) > 1:
            lines = similar_lines[near_key]
            report.warnings.append(Issue(
                "warning", "near_duplicate", f"near duplicates: lines {_line_list(lines)} hold the same text once case, "
                "spacing and punctuation are ignored.", "keep one of them, unless the differences matter.", lines=tuple(lines)))
    return extra, sum(len(variants) - 1 for variants in similar.values())


def _system_prompts(report: DatasetReport) -> None:
    systems = Counter(e.messages[0]["content"] if e.messages[0]["role"] == "system" else "" for e in report.examples)
    if len(systems) < 2:
        return
    distinct = sum(1 for s in systems if s)
    common, uses = next((s, n) for s, n in systems.most_common() if s)
    none = f"; {systems['']} example(s) have none" if systems.get("") else ""
    shown = common if len(common) <= 60 else common[:57] + "..."
    report.warnings.append(Issue(
        "warning", "system_prompts", f"{distinct} distinct system prompt(s){none}; the most common, {shown!r}, is used by "
        f"{uses} of {len(report.examples)} examples.",
        "use one system prompt everywhere and the same one at inference, unless the variation is intended (varied "
        "prompts make the tuned behaviour hold under any prompt, or none)."))


def _token_stats(report: DatasetReport, tokenizer: Any, params: DataParams) -> LengthStats | None:
    texts: list[str] = []
    kept: list[Example] = []
    for example in report.examples:
        try:
            texts.append(render(tokenizer, example.messages))
            kept.append(example)
        except StudioError as err:
            report.errors.append(_template_error(err, example.line))
    report.examples = kept
    if not kept:
        return None
    eos_appended = _check_template(report, tokenizer)
    if eos_appended is None:
        return None
    lengths = [len(ids) + (_replies(e) if eos_appended else 0) for ids, e in zip(encode_many(tokenizer, texts), kept)]
    ordered = sorted(lengths)
    stats = LengthStats(lengths, percentile(ordered, 50), percentile(ordered, 90), percentile(ordered, 95), ordered[-1],
                        suggest_max_length(lengths, _cap(tokenizer, params)), params.max_length, params.truncation, 0)
    _over_length(report, tokenizer, params, stats)
    return stats


def _check_template(report: DatasetReport, tokenizer: Any) -> bool | None:
    """Tokenize a sample (the first example, the first with several replies): a template that cannot be trained
    through is an error; one that does not end replies with EOS a warning. Returns whether EOS is appended."""
    multi = next((e for e in report.examples if _replies(e) > 1), None)
    appended = False
    for example in [report.examples[0]] + ([multi] if multi else []):
        try:
            flags = tokenize_example(example.messages, tokenizer).template_eos
        except StudioError as err:
            report.errors.append(_template_error(err, example.line))
            return None
        appended = appended or not all(flags)
    if appended:
        report.warnings.append(Issue("warning", "no_eos", "the chat template does not end every assistant turn with an "
                                     "end-of-turn token; the EOS token is appended to each reply so the model learns to stop.",
                                     "nothing to do, unless the model should not stop after each reply."))
    return appended


def _over_length(report: DatasetReport, tokenizer: Any, params: DataParams, stats: LengthStats) -> None:
    over = [(e, n) for e, n in zip(report.examples, stats.lengths) if n > params.max_length]
    stats.over_length = len(over)
    if not over:
        return
    if params.truncation == "truncate":
        stats.untrainable = sum(1 for e, _ in over if _trains_nothing(report, e, tokenizer, params))
        fate = f"they will be truncated to {params.max_length} tokens"
        if stats.untrainable:
            fate += f", and {stats.untrainable} of them lose every assistant token and will be dropped"
        other = "drop"
    else:
        fate, other = "they will be dropped", "truncate"
    report.warnings.append(Issue(
        "warning", "too_long", f"{len(over)} example(s) are longer than max_length {params.max_length} tokens "
        f"(longest {max(n for _, n in over)}; lines {_line_list([e.line for e, _ in over])}): {fate}.",
        f"raise max_length (suggested: {stats.suggested_max_length}), shorten those examples, or use the "
        f"'{other}' policy.", lines=tuple(e.line for e, _ in over)))


def _trains_nothing(report: DatasetReport, example: Example, tokenizer: Any, params: DataParams) -> bool:
    try:
        return tokenize_example(example.messages, tokenizer, params.max_length, params.train_on_prompt).trained_tokens == 0
    except StudioError as err:
        report.errors.append(_template_error(err, example.line))
        return False


def _template_error(err: StudioError, line: int) -> Issue:
    return Issue("error", "template", err.message, err.fix or "", line=line)


def _stats(report: DatasetReport, records: int, duplicates: tuple[int, int], tokens: LengthStats | None) -> DatasetStats:
    turns = [sum(1 for m in e.messages if m["role"] != "system") for e in report.examples]
    systems = {e.messages[0]["content"] for e in report.examples if e.messages[0]["role"] == "system"}
    return DatasetStats(records=records, examples=len(report.examples),
                        turns_mean=sum(turns) / len(turns) if turns else 0.0, turns_max=max(turns, default=0),
                        system_prompts=len(systems), duplicates=duplicates[0], near_duplicates=duplicates[1],
                        tokens=tokens)


def _replies(example: Example) -> int:
    return sum(1 for m in example.messages if m["role"] == "assistant")


def _cap(tokenizer: Any, params: DataParams) -> int:
    context = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a known context report a huge sentinel (1e30): ignore it.
    return min(params.max_suggested_length, context) if isinstance(context, int) and context < 10**7 else params.max_suggested_length


def _line_list(lines: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _issue_order(issue: Issue) -> tuple[int, int]:
    if issue.line is not None:
        return 0, issue.line
    return 1, min(issue.lines, default=0)
