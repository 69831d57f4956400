"""Detect which of the four supported formats a JSON object is in, and normalise it to chat messages.

messages           {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
sharegpt           {"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}, ...], "system"?: "..."}
alpaca             {"instruction": "...", "input"?: "...", "output": "...", "system"?: "..."}
prompt_completion  {"prompt": "...", "completion": "..."} (or both as message lists, as TRL writes them)

Structure rules (the same for every format): a system prompt comes first and only once; the first
other message is the user's; there is at least one assistant turn. Turns after the last assistant
reply are dropped with a warning: they would never be trained, and a trailing user turn usually
means a truncated conversation, which is worth knowing but not worth rejecting the example for.
"""

from __future__ import annotations

from typing import Any

from studio.errors import StudioError

Message = dict[str, str]
FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion")
EXPECTED = ("messages | conversations | instruction + output (+ input, system) | prompt + completion")
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system"}


class LineProblem(Exception):
    """Why one example cannot be used; becomes an error Issue on its line."""

    def __init__(self, kind: str, message: str, fix: str):
        super().__init__(message)
        self.kind, self.message, self.fix = kind, message, fix


def detect_format(record: Any) -> str | None:
    """The format of one JSON value (one of FORMATS), or None when it is none of them."""
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    if "prompt" in record and "completion" in record:
        return "prompt_completion"
    return None


def unknown_format(record: Any) -> LineProblem:
    """The error for a value `detect_format` does not recognise: what it is, and which keys were expected."""
    if not isinstance(record, dict):
        return LineProblem("not_object", f"this is {_kind(record)}, not a JSON object.",
                           'write each example as an object, e.g. {"messages": [...]}.')
    keys = ", ".join(sorted(record)) or "none"
    missing = ""
    if "instruction" in record:
        missing = " (Alpaca needs `output` next to `instruction`)"
    elif "prompt" in record or "completion" in record:
        missing = " (prompt/completion needs both keys)"
    return LineProblem("unknown_format", f"unknown format: the object has keys {keys}{missing}.",
                       f"use one of the supported layouts: {EXPECTED}.")


def normalise(record: dict[str, Any], fmt: str) -> tuple[list[Message], list[str]]:
    """Chat messages for a record in format `fmt`, and warnings about it. Raises LineProblem."""
    if fmt == "messages":
        messages = _message_list(record["messages"], "messages", "role", "content", {r: r for r in ROLES})
    elif fmt == "sharegpt":
        messages = _message_list(record["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
        system = _optional_text(record, "system")
        if system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
    elif fmt == "alpaca":
        messages = _alpaca(record)
    else:
        messages = _prompt_completion(record)
    return check_structure(messages)


def to_messages(record: Any) -> list[Message]:
    """One example (any supported format) as chat messages. Raises StudioError saying what is wrong."""
    fmt = detect_format(record)
    try:
        if fmt is None:
            raise unknown_format(record)
        return normalise(record, fmt)[0]
    except LineProblem as problem:
        raise StudioError(problem.message[:1].upper() + problem.message[1:], problem.fix) from None


def check_structure(messages: list[Message]) -> tuple[list[Message], list[str]]:
    """Apply the structure rules above; returns the messages (trailing turns dropped) and warnings."""
    for i, m in enumerate(messages):
        if m["role"] == "system" and i > 0:
            raise LineProblem("system_position", f"message {i + 1} is a system message; the system prompt must come "
                              "first, and only once.", "move it to the start, or merge the system prompts.")
    rest = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not any(m["role"] == "assistant" for m in rest):
        raise LineProblem("no_assistant", "no assistant turn: there is nothing to train on.",
                          "add the assistant's reply (role assistant, from gpt, output or completion).")
    if rest[0]["role"] != "user":
        raise LineProblem("assistant_first", "the conversation starts with an assistant turn; chat templates expect "
                          "the user to speak first.", "add the user message the assistant is answering, or drop the turn.")
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    warnings = []
    if last < len(messages) - 1:
        roles = ", ".join(m["role"] for m in messages[last + 1:])
        warnings.append(f"the conversation ends with {roles} turn(s) after the last assistant reply; they are "
                        "dropped (only assistant turns are trained).")
    return messages[:last + 1], warnings


def _message_list(value: Any, key: str, role_key: str, text_key: str, roles: dict[str, str]) -> list[Message]:
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else type(value).__name__
        raise LineProblem("malformed", f"`{key}` should be a non-empty list of {{{role_key}, {text_key}}} objects, "
                          f"got {got}.", f'write "{key}": [{{"{role_key}": ..., "{text_key}": ...}}, ...].')
    messages = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict) or role_key not in item or text_key not in item:
            raise LineProblem("malformed", f"{key}[{number}] should be an object with `{role_key}` and `{text_key}`, "
                              f"got {_short(item)}.", f"give every turn a `{role_key}` and a `{text_key}`.")
        raw_role = item[role_key]
        role = roles.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise LineProblem("unknown_role", f"{key}[{number}] has unknown {role_key} {raw_role!r}.",
                              f"use one of: {', '.join(roles)}.")
        messages.append({"role": role, "content": _text(item[text_key], f"{key}[{number}] ({role})")})
    return messages


def _alpaca(record: dict[str, Any]) -> list[Message]:
    instruction = _text(record["instruction"], "`instruction`")
    extra = _optional_text(record, "input")
    messages = [{"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction},
                {"role": "assistant", "content": _text(record["output"], "`output`")}]
    system = _optional_text(record, "system")
    return [{"role": "system", "content": system}, *messages] if system else messages


def _prompt_completion(record: dict[str, Any]) -> list[Message]:
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, list) and isinstance(completion, list):  # TRL's conversational prompt/completion
        roles = {r: r for r in ROLES}
        return (_message_list(prompt, "prompt", "role", "content", roles)
                + _message_list(completion, "completion", "role", "content", roles))
    return [{"role": "user", "content": _text(prompt, "`prompt`")},
            {"role": "assistant", "content": _text(completion, "`completion`")}]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise LineProblem("non_string_content", f"{what} content is {_short(value)}, not a string.",
                          "put the text in a JSON string.")
    if not value.strip():
        raise LineProblem("empty_content", f"{what} content is empty.", "write the text, or remove the example.")
    return value


def _optional_text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LineProblem("non_string_content", f"`{key}` is {_short(value)}, not a string.", "put the text in a JSON string.")
    return value.strip()


def _kind(value: Any) -> str:
    return {list: "a list", dict: "an object", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    """The JSON type of a value, with the value itself when it is short and scalar."""
    if isinstance(value, (list, dict)):
        return _kind(value)
    text = repr(value)
    return f"{_kind(value)} {text[:40]}{'...' if len(text) > 40 else ''}"
