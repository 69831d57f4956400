"""Prompt-engineering techniques as editable templates: zero-shot, few-shot and chain-of-thought.

A `PromptSpec` says how the user's message is dressed before it reaches the model;
`build_messages` turns it, the conversation so far and the new message into the role/content
messages the chat template receives. Plain Python: the Playground, the CLI and the evaluation
all build prompts the same way.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from studio.errors import ConfigError

Message = dict[str, str]

FREE_CHAT = "Free chat"
ZERO_SHOT = "Zero-shot"
FEW_SHOT = "Few-shot"
COT_ZERO_SHOT = "Chain-of-thought (zero-shot)"
COT_FEW_SHOT = "Chain-of-thought (few-shot)"
TECHNIQUES = (FREE_CHAT, ZERO_SHOT, FEW_SHOT, COT_ZERO_SHOT, COT_FEW_SHOT)

# Which editable parts each technique uses (the UI shows only these).
USES_INSTRUCTION = {ZERO_SHOT, FEW_SHOT, COT_ZERO_SHOT, COT_FEW_SHOT}
USES_EXAMPLES = {FEW_SHOT, COT_FEW_SHOT}
USES_TRIGGER = {COT_ZERO_SHOT}

DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_TEMPLATE = "{instruction}\n\n{input}"
DEFAULT_TRIGGER = "Let's think step by step."
_PLACEHOLDERS = ("instruction", "input")

_SENTIMENT = "Classify the sentiment of the review as positive, negative or neutral. Answer with one word."
_SENTIMENT_EXAMPLES = [
    ("The battery lasts all day and the screen is gorgeous.", "positive"),
    ("It stopped working after a week and support never answered.", "negative"),
    ("It arrived on Tuesday in a plain cardboard box.", "neutral"),
]
_MATH = "Solve the problem. End with a line of the form 'The answer is X.'"
_MATH_EXAMPLES = [
    ("A shop sells pens at 3 for $2. How much do 12 pens cost?",
     "12 pens are 12 / 3 = 4 packs of 3. Each pack costs $2, so 4 × $2 = $8.\nThe answer is $8."),
    ("Tom has 5 apples, gives 2 away and buys 4 more. How many apples does he have?",
     "He starts with 5. After giving 2 away he has 5 − 2 = 3. Buying 4 more gives 3 + 4 = 7.\nThe answer is 7."),
]


@dataclass
class PromptSpec:
    """One prompting technique with its editable parts.

    `template` combines the instruction and a message ({instruction}, {input}); few-shot
    techniques format every example input with it too, so the examples look like the real query.
    """

    technique: str = FREE_CHAT
    system: str = DEFAULT_SYSTEM
    instruction: str = ""
    examples: list[tuple[str, str]] = field(default_factory=list)
    cot_trigger: str = DEFAULT_TRIGGER
    template: str = DEFAULT_TEMPLATE

    def validate(self) -> PromptSpec:
        """Return self, or raise ConfigError naming the part to fix."""
        if self.technique not in TECHNIQUES:
            raise ConfigError(f"Unknown prompting technique {self.technique!r}.", f"pick one of: {', '.join(TECHNIQUES)}.")
        if self.technique == FREE_CHAT:
            return self
        _check_template(self.template)
        if self.technique in (ZERO_SHOT, FEW_SHOT) and not self.instruction.strip():
            raise ConfigError(f"{self.technique} needs an instruction that tells the model the task.",
                              "write the instruction, or pick Free chat.")
        if self.technique in USES_EXAMPLES:
            _check_examples(self.examples, self.technique)
        if self.technique in USES_TRIGGER and not self.cot_trigger.strip():
            raise ConfigError("Chain-of-thought (zero-shot) needs a trigger phrase such as \"Let's think step by step.\"",
                              "write the trigger, or pick Zero-shot.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"technique": self.technique, "system": self.system, "instruction": self.instruction,
                "examples": [list(e) for e in self.examples], "cot_trigger": self.cot_trigger, "template": self.template}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptSpec:
        """Rebuild a spec saved with `to_dict`; missing parts take the technique's defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"A prompt spec should be a mapping, got {type(data).__name__}.", "save the preset again.")
        base = default_spec(str(data.get("technique", FREE_CHAT)))
        examples = data.get("examples", base.examples)
        if not isinstance(examples, list) or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in examples):
            raise ConfigError("Few-shot examples should be a list of [input, output] pairs.", "save the preset again.")
        return replace(base, **{k: str(data[k]) for k in ("system", "instruction", "cot_trigger", "template") if k in data},
                       examples=[(str(i), str(o)) for i, o in examples])


def default_spec(technique: str) -> PromptSpec:
    """The seed template of `technique`, ready to edit; raises ConfigError for an unknown one."""
    seeds = {
        FREE_CHAT: PromptSpec(FREE_CHAT),
        ZERO_SHOT: PromptSpec(ZERO_SHOT, instruction=_SENTIMENT),
        FEW_SHOT: PromptSpec(FEW_SHOT, instruction=_SENTIMENT, examples=list(_SENTIMENT_EXAMPLES)),
        COT_ZERO_SHOT: PromptSpec(COT_ZERO_SHOT, instruction=_MATH),
        COT_FEW_SHOT: PromptSpec(COT_FEW_SHOT, instruction=_MATH, examples=list(_MATH_EXAMPLES)),
    }
    if technique not in seeds:
        raise ConfigError(f"Unknown prompting technique {technique!r}.", f"pick one of: {', '.join(TECHNIQUES)}.")
    return seeds[technique]


def examples_from_rows(rows: Iterable[Sequence[Any]] | None) -> list[tuple[str, str]]:
    """(input, output) pairs from an editable table; blank rows are skipped.

    Raises ConfigError naming the table row (1-based) whose input or output is missing.
    """
    pairs = []
    for number, row in enumerate(rows or [], start=1):
        cells = [("" if c is None else str(c)).strip() for c in list(row)[:2]] + ["", ""]
        given, wanted = cells[0], cells[1]
        if given or wanted:
            pairs.append(_check_pair(number, given, wanted))
    return pairs


def build_messages(spec: PromptSpec, history: Sequence[Message], user_input: str) -> list[Message]:
    """The messages the model receives: system, few-shot turns, the conversation so far, the new input.

    `history` holds earlier user/assistant turns as they were shown; the technique dresses only
    the new input (and the examples). Raises ConfigError when the spec is invalid.
    """
    spec.validate()
    messages: list[Message] = [{"role": "system", "content": spec.system}] if spec.system.strip() else []
    if spec.technique in USES_EXAMPLES:
        for given, wanted in spec.examples:
            messages.append({"role": "user", "content": _dress(spec, given)})
            messages.append({"role": "assistant", "content": wanted})
    messages += [{"role": m["role"], "content": m["content"]} for m in history if m.get("role") in ("user", "assistant")]
    content = user_input if spec.technique == FREE_CHAT else _dress(spec, user_input)
    if spec.technique in USES_TRIGGER:
        content = f"{content}\n\n{spec.cot_trigger.strip()}"
    messages.append({"role": "user", "content": content})
    return messages


def _dress(spec: PromptSpec, text: str) -> str:
    return spec.template.format(instruction=spec.instruction.strip(), input=text).strip()


def _check_template(template: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ConfigError(f"The template {template!r} is malformed ({err}).", "write literal braces as {{ and }}.") from None
    unknown = sorted({n for n in names if n not in _PLACEHOLDERS})
    if unknown:
        raise ConfigError(f"The template uses {', '.join('{' + n + '}' for n in unknown)}; only {{instruction}} and {{input}} are filled in.",
                          "remove the other placeholders, or write literal braces as {{ and }}.")
    if "input" not in names:
        raise ConfigError(f"The template {template!r} has no {{input}}, so the user's message would be dropped.",
                          "add {input} where the message goes, e.g. \"{instruction}\\n\\n{input}\".")


def _check_examples(examples: Sequence[tuple[str, str]], technique: str) -> None:
    if not examples:
        raise ConfigError(f"{technique} needs at least one example.", "add an input → output row, or pick Zero-shot.")
    for number, (given, wanted) in enumerate(examples, start=1):
        _check_pair(number, str(given).strip(), str(wanted).strip())


def _check_pair(number: int, given: str, wanted: str) -> tuple[str, str]:
    if not wanted:
        raise ConfigError(f"Few-shot example {number} has an input but no output.", "fill in its output or delete the row.")
    if not given:
        raise ConfigError(f"Few-shot example {number} has an output but no input.", "fill in its input or delete the row.")
    return given, wanted


def conversation_to_jsonl(messages: Sequence[Message]) -> str:
    """One JSONL line `{"messages": [...]}` that chat-format training sets accept.

    Keeps only role/content, drops a trailing unanswered user turn, and raises ConfigError when
    no user message is followed by an answer.
    """
    clean = []
    for i, m in enumerate(messages, start=1):
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise ConfigError(f"Message {i} is malformed: {m!r}.", "each message needs role system/user/assistant and text content.")
        clean.append({"role": role, "content": content})
    while clean and clean[-1]["role"] == "user":
        clean.pop()
    if not any(m["role"] == "user" for m in clean) or not clean or clean[-1]["role"] != "assistant":
        raise ConfigError("The conversation has no answered message to export.", "chat with the model first, then export.")
    return json.dumps({"messages": clean}, ensure_ascii=False) + "\n"


def save_conversation(messages: Sequence[Message], folder: Path) -> Path:
    """Write `conversation_to_jsonl(messages)` to a new time-stamped file in `folder`; return its path."""
    line = conversation_to_jsonl(messages)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"conversation-{stamp}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"conversation-{stamp}-{n}.jsonl"
    path.write_text(line, encoding="utf-8")
    return path
