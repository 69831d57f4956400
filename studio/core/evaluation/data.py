"""Held-out evaluation sets: read a .jsonl/.json file into `EvalExample`s, or say which lines are wrong.

Two shapes are accepted per line (they may be mixed):

- chat: `{"messages": [...]}`: the last assistant turn is the reference, the turns before it the prompt;
- question/reference: `{"question": ..., "reference": ...}` with optional `system`.

Either may carry `facts` (strings a correct answer contains) and `schema` (a JSON Schema the answer
should satisfy); extra keys (`source`, ids...) are kept in `extra`. Files are read by the dataset
checker's reader, so encodings, JSON arrays and broken lines are reported the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.datasets.reading import read_records
from studio.errors import StudioError

Message = dict[str, str]
SHOWN_PROBLEMS = 10
_ROLES = ("system", "user", "assistant")
_KNOWN = {"messages", "question", "reference", "system", "facts", "schema"}


@dataclass
class EvalExample:
    """One held-out example: the prompt as chat messages (ending with a user turn) and what to score against."""

    line: int
    messages: list[Message]
    reference: str
    facts: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The final user turn: what a prompt preset dresses and what RAG searches for."""
        return self.messages[-1]["content"]

    @property
    def system(self) -> str | None:
        return self.messages[0]["content"] if self.messages[0]["role"] == "system" else None

    @property
    def history(self) -> list[Message]:
        """Earlier user/assistant turns, between the system prompt and the final question."""
        return [m for m in self.messages[:-1] if m["role"] != "system"]

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "messages": self.messages, "reference": self.reference, "facts": self.facts,
                "schema": self.schema, "extra": self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalExample:
        return cls(int(data["line"]), list(data["messages"]), str(data["reference"]), list(data.get("facts") or []),
                   data.get("schema"), dict(data.get("extra") or {}))


class _Bad(Exception):
    pass


def load_examples(path: str | Path, limit: int | None = None) -> list[EvalExample]:
    """Every example of the file, in order (the first `limit` when given).

    Raises StudioError when the file cannot be read or any line is malformed; the message lists the
    bad lines by number (the first ten), so the file can be fixed in one go.
    """
    path = Path(path).expanduser()
    records, issues = read_records(path)
    problems = [str(i) for i in issues]
    examples: list[EvalExample] = []
    for record in records:
        try:
            examples.append(_parse(record.value, record.line))
        except _Bad as err:
            problems.append(f"line {record.line}: {err}")
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else "")
        raise StudioError(f"{path.name} has {len(problems)} unusable line(s): {shown}",
                          'give each line {"question": ..., "reference": ...} (optional "facts", "schema", "system") '
                          'or {"messages": [..., {"role": "assistant", "content": REFERENCE}]}.')
    if not examples:
        raise StudioError(f"{path.name} holds no examples.", "add one JSON object per line.")
    return examples[:limit] if limit else examples


def parse_example(value: Any, line: int = 0) -> EvalExample:
    """One example from a decoded JSON value; raises StudioError naming `line` and the problem."""
    try:
        return _parse(value, line)
    except _Bad as err:
        raise StudioError((f"line {line}: " if line else "") + str(err), "fix the example.") from None


def _parse(value: Any, line: int) -> EvalExample:
    if not isinstance(value, dict):
        raise _Bad(f"expected a JSON object, got {type(value).__name__}.")
    if "messages" in value:
        messages, reference = _split_messages(value["messages"])
    elif "question" in value or "reference" in value:
        question, reference = _text(value, "question"), _reference(value.get("reference"))
        system = value.get("system")
        if system is not None and not isinstance(system, str):
            raise _Bad(f"`system` should be text, got {type(system).__name__}.")
        messages = ([{"role": "system", "content": system}] if system and system.strip() else [])
        messages.append({"role": "user", "content": question})
    else:
        raise _Bad(f"no `messages` and no `question`/`reference` (keys: {', '.join(sorted(value)) or 'none'}).")
    extra = {k: v for k, v in value.items() if k not in _KNOWN}
    return EvalExample(line, messages, reference, _facts(value.get("facts")), _schema(value.get("schema")), extra)


def _text(value: dict[str, Any], key: str) -> str:
    text = value.get(key)
    if not isinstance(text, str) or not text.strip():
        raise _Bad(f"`{key}` should be non-empty text, got {text!r}.")
    return text


def _reference(ref: Any) -> str:
    if isinstance(ref, (dict, list)):  # a structured reference is compared as the JSON the model should write
        return json.dumps(ref, ensure_ascii=False)
    if not isinstance(ref, str) or not ref.strip():
        raise _Bad(f"`reference` should be non-empty text, got {ref!r}.")
    return ref


def _split_messages(messages: Any) -> tuple[list[Message], str]:
    if not isinstance(messages, list) or not messages:
        raise _Bad("`messages` should be a non-empty list of {role, content} objects.")
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise _Bad(f"message {i} should have role system/user/assistant and text content, got {m!r}.")
        if m["role"] == "system" and i != 1:
            raise _Bad(f"message {i} is a system message; only the first message may be one.")
    *prompt, last = [{"role": m["role"], "content": m["content"]} for m in messages]
    if last["role"] != "assistant" or not last["content"].strip():
        raise _Bad("the last message should be the assistant's reference answer.")
    if not prompt or prompt[-1]["role"] != "user":
        raise _Bad("the reference answer should follow a user message.")
    return prompt, last["content"]


def _facts(facts: Any) -> list[str]:
    if facts is None:
        return []
    if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
        raise _Bad(f"`facts` should be a list of non-empty strings, got {facts!r}.")
    return list(facts)


def _schema(schema: Any) -> dict[str, Any] | None:
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise _Bad(f"`schema` should be a JSON Schema object, got {type(schema).__name__}.")
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        raise _Bad(f"`schema` is not a valid JSON Schema: {err.message}.") from None
    return schema
