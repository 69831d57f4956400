"""Prompting techniques: seed templates, validation messages, message building, presets, JSONL export."""

from __future__ import annotations

import json

import pytest

from studio.core.prompting import (
    COT_FEW_SHOT,
    COT_ZERO_SHOT,
    FEW_SHOT,
    FREE_CHAT,
    TECHNIQUES,
    ZERO_SHOT,
    PromptSpec,
    build_messages,
    conversation_to_jsonl,
    default_spec,
    examples_from_rows,
    save_conversation,
)
from studio.errors import ConfigError

HISTORY = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}]


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_every_seed_is_valid_and_builds_messages_ending_with_the_input(technique: str) -> None:
    spec = default_spec(technique)
    assert spec.technique == technique
    messages = build_messages(spec, HISTORY, "the new question")
    assert messages[0] == {"role": "system", "content": spec.system}
    assert messages[-1]["role"] == "user" and "the new question" in messages[-1]["content"]
    assert messages[-3:-1] == HISTORY


def test_free_chat_sends_the_input_as_typed() -> None:
    messages = build_messages(default_spec(FREE_CHAT), [], "  just this  ")
    assert messages == [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": "  just this  "}]


def test_zero_shot_prepends_the_instruction_through_the_template() -> None:
    spec = PromptSpec(ZERO_SHOT, system="", instruction="Translate to French.", template="{instruction}\nText: {input}")
    assert build_messages(spec, [], "cat") == [{"role": "user", "content": "Translate to French.\nText: cat"}]


def test_few_shot_examples_become_alternating_turns_before_history_and_input() -> None:
    spec = PromptSpec(FEW_SHOT, system="S", instruction="Sentiment?", examples=[("good", "positive"), ("bad", "negative")])
    messages = build_messages(spec, HISTORY, "meh")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == "Sentiment?\n\ngood" and messages[2]["content"] == "positive"
    assert messages[4]["content"] == "negative"
    assert messages[5:7] == HISTORY
    assert messages[-1]["content"] == "Sentiment?\n\nmeh"


def test_zero_shot_cot_appends_the_trigger() -> None:
    spec = PromptSpec(COT_ZERO_SHOT, system="", instruction="", cot_trigger="Think it through.")
    assert build_messages(spec, [], "2+2?")[-1]["content"] == "2+2?\n\nThink it through."


def test_few_shot_cot_seed_examples_contain_reasoning() -> None:
    spec = default_spec(COT_FEW_SHOT)
    assert spec.examples and all("The answer is" in out and len(out) > 40 for _, out in spec.examples)
    messages = build_messages(spec, [], "How many legs do 3 cats have?")
    assert messages[2]["content"] == spec.examples[0][1]


def test_history_system_messages_are_dropped_in_favour_of_the_spec() -> None:
    messages = build_messages(default_spec(FREE_CHAT), [{"role": "system", "content": "old"}, *HISTORY], "x")
    assert [m["content"] for m in messages if m["role"] == "system"] == ["You are a helpful assistant."]


@pytest.mark.parametrize(("spec", "message"), [
    (PromptSpec("Tree of thought"), "Unknown prompting technique 'Tree of thought'"),
    (PromptSpec(ZERO_SHOT, instruction=" "), "Zero-shot needs an instruction"),
    (PromptSpec(FEW_SHOT, instruction="x", examples=[]), "Few-shot needs at least one example"),
    (PromptSpec(FEW_SHOT, instruction="x", examples=[("a", "b"), ("c", " ")]), "Few-shot example 2 has an input but no output"),
    (PromptSpec(COT_FEW_SHOT, instruction="x", examples=[("", "b")]), "Few-shot example 1 has an output but no input"),
    (PromptSpec(COT_ZERO_SHOT, cot_trigger=""), "needs a trigger phrase"),
    (PromptSpec(ZERO_SHOT, instruction="x", template="{instruction}"), "has no {input}"),
    (PromptSpec(ZERO_SHOT, instruction="x", template="{input} {context}"), "uses {context}"),
    (PromptSpec(ZERO_SHOT, instruction="x", template="{input} {"), "is malformed"),
])
def test_invalid_specs_say_what_to_fix(spec: PromptSpec, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_messages(spec, [], "hello")
    assert message in str(err.value)
    assert err.value.fix


def test_literal_braces_in_the_template_and_braces_in_the_input_are_kept() -> None:
    spec = PromptSpec(ZERO_SHOT, system="", instruction="Fill {x}", template="{{json}} {instruction}: {input}")
    assert build_messages(spec, [], "{y}")[-1]["content"] == "{json} Fill {x}: {y}"


def test_examples_from_rows_skips_blank_rows_and_names_the_incomplete_one() -> None:
    assert examples_from_rows([["a", "b"], ["", ""], [None, None], [" c ", "d"]]) == [("a", "b"), ("c", "d")]
    assert examples_from_rows(None) == []
    with pytest.raises(ConfigError, match="example 3 has an input but no output"):
        examples_from_rows([["a", "b"], ["", ""], ["c", ""]])


def test_to_dict_from_dict_round_trip_and_defaults_for_missing_parts() -> None:
    spec = default_spec(FEW_SHOT)
    spec.system = "Be brief."
    again = PromptSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    partial = PromptSpec.from_dict({"technique": COT_ZERO_SHOT})
    assert partial == default_spec(COT_ZERO_SHOT)
    with pytest.raises(ConfigError, match="Unknown prompting technique"):
        PromptSpec.from_dict({"technique": "nope"})
    with pytest.raises(ConfigError, match=r"\[input, output\] pairs"):
        PromptSpec.from_dict({"technique": FEW_SHOT, "examples": [["only one"]]})


def test_conversation_to_jsonl_is_one_line_a_training_set_accepts() -> None:
    messages = [{"role": "system", "content": "S"}, *HISTORY, {"role": "user", "content": "unanswered"}]
    line = conversation_to_jsonl([{**m, "metadata": None} for m in messages])
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {"messages": [{"role": "system", "content": "S"}, *HISTORY]}


@pytest.mark.parametrize(("messages", "message"), [
    ([], "no answered message"),
    ([{"role": "user", "content": "q"}], "no answered message"),
    ([{"role": "tool", "content": "q"}], "Message 1 is malformed"),
])
def test_conversation_to_jsonl_refuses_what_cannot_train(messages: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        conversation_to_jsonl(messages)


def test_save_conversation_writes_a_new_file_each_time(tmp_path) -> None:
    first = save_conversation(HISTORY, tmp_path / "exports")
    second = save_conversation(HISTORY, tmp_path / "exports")
    assert first != second and first.suffix == ".jsonl"
    assert json.loads(first.read_text())["messages"] == HISTORY
