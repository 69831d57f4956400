"""Read a .jsonl / .json file into JSON values with their line numbers, reporting bad lines instead of failing.

Lines are decoded one by one, so a line that is not UTF-8 is reported (line number and byte offset)
and the rest of the file is still read. A file whose first character is `[` is read as one JSON
array, each element numbered by the line it starts on; anything else is read as JSON lines.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.datasets.report import Issue
from studio.errors import StudioError

SUFFIXES = (".jsonl", ".json")
_ONE_PER_LINE = "each line must hold one complete JSON object (an example may not span several lines in a .jsonl file)."


@dataclass
class Record:
    line: int  # 1-based line the value starts on
    value: Any


@dataclass
class _Line:
    number: int
    text: str | None  # None when the line is not valid UTF-8


def read_records(path: str | Path) -> tuple[list[Record], list[Issue]]:
    """Every JSON value of the file with its line number, and the lines that could not be read.

    Raises StudioError when the file is missing, is not .jsonl/.json, is UTF-16, or holds no data.
    """
    path = check_path(path)
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise StudioError(f"{path.name} is UTF-16 encoded.", "re-save it as UTF-8 (e.g. `iconv -f utf-16 -t utf-8`).")
    lines, issues = _decode_lines(data)
    if not any(line.text and line.text.strip() for line in lines) and not issues:
        raise StudioError(f"{path.name} is empty.", 'add examples, one JSON object per line, e.g. '
                          '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}.')
    text = "\n".join(line.text or "" for line in lines)
    bad = {line.number for line in lines if line.text is None}
    if text.lstrip().startswith("["):
        records, errors = _array_records(text, bad)
        if errors and _every_line_parses(lines):
            records, errors = _json_lines(lines)
    else:
        records, errors = _single_object(text, lines) or _json_lines(lines)
    if not records and not issues and not errors:
        raise StudioError(f"{path.name} holds no examples (an empty JSON array).", "add examples to the array.")
    return records, issues + errors


def check_path(path: str | Path) -> Path:
    """The path, if it names an existing .jsonl or .json file; StudioError naming the file and the fix otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise StudioError(f"Dataset file not found: {path}.", "check the path; give a .jsonl or .json file.")
    if path.is_dir():
        raise StudioError(f"{path} is a folder, not a dataset file.", "give the .jsonl or .json file inside it.")
    if path.suffix.lower() not in SUFFIXES:
        raise StudioError(f"{path.name}: unsupported file type {path.suffix or '(no extension)'!r}.",
                          "use JSON lines (.jsonl, one example per line) or a JSON array (.json); from pandas: "
                          "df.to_json('data.jsonl', orient='records', lines=True).")
    return path


def _decode_lines(data: bytes) -> tuple[list[_Line], list[Issue]]:
    lines: list[_Line] = []
    issues: list[Issue] = []
    offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    for number, raw in enumerate(data[offset:].split(b"\n"), start=1):
        try:
            lines.append(_Line(number, raw.decode("utf-8").removesuffix("\r")))
        except UnicodeDecodeError as err:
            lines.append(_Line(number, None))
            issues.append(Issue("error", "encoding", f"not valid UTF-8: byte 0x{raw[err.start]:02x} at byte offset "
                                f"{offset + err.start} of the file (offset {err.start} in the line); the line is skipped.",
                                "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.jsonl > out.jsonl`).",
                                line=number))
        offset += len(raw) + 1
    return lines, issues


def _json_lines(lines: list[_Line]) -> tuple[list[Record], list[Issue]]:
    records: list[Record] = []
    issues: list[Issue] = []
    for line in lines:
        if line.text is None or not line.text.strip():
            continue
        try:
            records.append(Record(line.number, json.loads(line.text)))
        except json.JSONDecodeError as err:
            issues.append(Issue("error", "invalid_json", f"invalid JSON: {err.msg} at column {err.colno}.",
                                f"fix the JSON; {_ONE_PER_LINE}", line=line.number))
    return records, issues


def _every_line_parses(lines: list[_Line]) -> bool:
    try:
        for line in lines:
            if line.text and line.text.strip():
                json.loads(line.text)
    except json.JSONDecodeError:
        return False
    return True


def _single_object(text: str, lines: list[_Line]) -> tuple[list[Record], list[Issue]] | None:
    """A pretty-printed file holding one JSON object is one example (JSON lines would call every line invalid)."""
    if sum(1 for line in lines if line.text and line.text.strip()) < 2:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    first = next(line.number for line in lines if line.text and line.text.strip())
    return ([Record(first, value)], []) if isinstance(value, dict) else None


def _array_records(text: str, bad_lines: set[int]) -> tuple[list[Record], list[Issue]]:
    """The elements of a JSON array, each with the line it starts on; elements on undecodable lines are dropped
    (those lines are already reported). A syntax error ends the array: it is reported with its line and column."""
    decoder = json.JSONDecoder()
    records: list[Record] = []
    pos = _skip_space(text, text.index("[") + 1)
    line, counted = 1, 0
    while pos < len(text) and text[pos] != "]":
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            return records, [_array_error(err.msg, err.lineno, err.colno)]
        line += text.count("\n", counted, pos)
        last = line + text.count("\n", pos, end)
        counted = pos
        if not bad_lines & set(range(line, last + 1)):
            records.append(Record(line, value))
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        elif pos >= len(text) or text[pos] != "]":
            return records, [_array_error("expected ',' or ']' after an element", *_line_col(text, pos))]
    if pos >= len(text):
        return records, [_array_error("the array is not closed with ']'", *_line_col(text, pos))]
    if text[pos + 1:].strip():
        return records, [_array_error("extra data after the array", *_line_col(text, _skip_space(text, pos + 1)))]
    return records, []


def _array_error(message: str, line: int, column: int) -> Issue:
    return Issue("error", "invalid_json", f"invalid JSON: {message} at column {column}; the rest of the array is not read.",
                 "fix the JSON there, or write one example per line in a .jsonl file.", line=line)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_col(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
