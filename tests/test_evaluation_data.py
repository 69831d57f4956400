"""Loading held-out evaluation sets: both shapes, and errors that name the bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.core.evaluation.data import EvalExample, load_examples, parse_example
from studio.errors import StudioError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "eval.jsonl"


def write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "held-out.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_sample_eval_set_loads_with_facts_and_schema() -> None:
    examples = load_examples(SAMPLE)
    assert len(examples) == 110
    first = examples[0]
    assert first.line == 1 and first.messages == [{"role": "user", "content": first.question}]
    assert json.loads(first.reference)["escalate"] is False
    assert first.facts == ["24 hours", "Learning your home"]
    assert first.schema["required"] == ["answer", "steps", "escalate"]
    assert first.extra == {"source": "getting-started.md"}
    assert len(load_examples(SAMPLE, limit=5)) == 5


def test_messages_shape_uses_the_last_assistant_turn_as_reference(tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."}]
    (ex,) = load_examples(write(tmp_path, {"messages": chat, "facts": ["Paris"]}))
    assert ex.reference == "Paris."
    assert ex.question == "Capital of France?"
    assert ex.system == "Be brief."
    assert ex.history == chat[1:3]
    assert ex.facts == ["Paris"]
    assert EvalExample.from_dict(json.loads(json.dumps(ex.to_dict()))) == ex


def test_question_shape_with_system_and_structured_reference(tmp_path: Path) -> None:
    (ex,) = load_examples(write(tmp_path, {"question": "Q?", "reference": {"answer": "A"}, "system": "S"}))
    assert ex.messages == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}]
    assert json.loads(ex.reference) == {"answer": "A"}
    assert ex.schema is None and ex.facts == []


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write(tmp_path,
                 {"question": "fine", "reference": "ok"},
                 {"question": "no reference"},
                 "{not json",
                 {"messages": [{"role": "user", "content": "Q"}]},
                 {"question": "Q", "reference": "R", "facts": "not a list"},
                 {"question": "Q", "reference": "R", "schema": {"type": "no-such-type"}},
                 ["an", "array"],
                 {"prompt": "Q", "completion": "A"})
    with pytest.raises(StudioError) as err:
        load_examples(path)
    text = str(err.value)
    assert "7 unusable line(s)" in text
    assert "line 2: `reference` should be non-empty text, got None" in text
    assert "line 3:" in text
    assert "line 4: the last message should be the assistant's reference answer" in text
    assert "line 5: `facts` should be a list of non-empty strings" in text
    assert "line 6: `schema` is not a valid JSON Schema" in text
    assert "line 7: expected a JSON object, got list" in text
    assert "line 8: no `messages` and no `question`/`reference` (keys: completion, prompt)" in text
    assert "line 1:" not in text
    assert "Fix:" in text


def test_system_message_in_the_middle_is_refused() -> None:
    chat = [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]
    with pytest.raises(StudioError, match="line 4: message 2 is a system message"):
        parse_example({"messages": chat}, line=4)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(StudioError):
        load_examples(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(StudioError, match="empty"):
        load_examples(empty)
