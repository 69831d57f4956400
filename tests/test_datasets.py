"""Chat datasets: formats, every validation message, rendering through the chat template, split, decontamination."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from studio.core.datasets import (
    IGNORE_INDEX,
    ChatTemplateError,
    DataParams,
    Example,
    check_contamination,
    check_dataset,
    check_eos,
    detect_format,
    make_split,
    normalise_text,
    preview,
    split_examples,
    suggest_max_length,
    to_messages,
    tokenize_dataset,
    tokenize_example,
)
from studio.core.tiny_model import CHAT_TEMPLATE
from studio.errors import ConfigError, StudioError

SYSTEM = {"role": "system", "content": "You are a support agent."}
HELLO = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi! How can I help?"}]
TWO_TURNS = [SYSTEM, *HELLO, {"role": "user", "content": "My router is broken."},
             {"role": "assistant", "content": "Please restart the router and try again."}]


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def fresh_tokenizer(tiny_model_dir: Path, template: str | None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = template
    return tokenizer


def write(tmp_path: Path, rows: list[Any], name: str = "data.jsonl") -> Path:
    """One line per row: dicts/lists as JSON, strings as they are."""
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(question: str, answer: str, system: str | None = None) -> dict[str, Any]:
    head = [{"role": "system", "content": system}] if system else []
    return {"messages": [*head, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


# Two valid lines per format, so that a bad line is judged in a file of its own format.
GOOD = {"messages": [chat("a", "b"), chat("c", "d")],
        "sharegpt": [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": "x"}]} for q in "ab"],
        "alpaca": [{"instruction": q, "output": "x"} for q in "ab"]}


def only_issue(report: Any, kind: str) -> Any:
    found = report.issues(kind)
    assert len(found) == 1, [str(i) for i in report.errors + report.warnings]
    return found[0]


# Formats ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("record, expected", [
    ({"messages": TWO_TURNS}, TWO_TURNS),
    ({"conversations": [{"from": "system", "value": "You are a support agent."}, {"from": "human", "value": "Hello there"},
                        {"from": "gpt", "value": "Hi! How can I help?"}]}, [SYSTEM, *HELLO]),
    ({"conversations": [{"from": "user", "value": "Hello there"}, {"from": "model", "value": "Hi! How can I help?"}],
      "system": "You are a support agent."}, [SYSTEM, *HELLO]),
    ({"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour", "system": "Be terse."},
     [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Translate to French.\n\nGood morning"},
      {"role": "assistant", "content": "Bonjour"}]),
    ({"instruction": "Hello there", "input": "", "output": "Hi! How can I help?"}, HELLO),
    ({"prompt": "Hello there", "completion": "Hi! How can I help?"}, HELLO),
    ({"prompt": [HELLO[0]], "completion": [HELLO[1]]}, HELLO),
], ids=["messages", "sharegpt", "sharegpt-system-key", "alpaca", "alpaca-no-input", "prompt-completion", "trl-conversational"])
def test_each_format_normalises_to_chat_messages(tmp_path: Path, record: dict, expected: list) -> None:
    assert to_messages(record) == expected
    report = check_dataset(write(tmp_path, [record]))
    assert not report.has_errors and [e.messages for e in report.examples] == [expected]


def test_a_json_array_numbers_each_example_by_the_line_it_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([chat("a", "b"), chat("c", "d"), {"prompt": "e", "completion": "f"}], indent=2), encoding="utf-8")
    report = check_dataset(path)
    assert report.format == "messages"
    assert [e.line for e in report.examples] == [2, 14]
    assert only_issue(report, "mixed_formats").line == 26


def test_a_broken_json_array_reports_where_and_keeps_what_came_before(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('[\n' + json.dumps(chat("a", "b")) + ',\n{"messages": [}\n]', encoding="utf-8")
    report = check_dataset(path)
    issue = only_issue(report, "invalid_json")
    assert issue.line == 3 and "column" in issue.message
    assert len(report.examples) == 1


def test_json_lines_in_a_json_file_a_bom_crlf_and_one_pretty_printed_object_are_read(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.json"
    crlf.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(chat(q, "x")) for q in "ab").encode() + b"\r\n")
    assert [e.messages[0]["content"] for e in check_dataset(crlf).examples] == ["a", "b"]
    single = tmp_path / "one.json"
    single.write_text(json.dumps(chat("a", "b"), indent=2), encoding="utf-8")
    assert [e.line for e in check_dataset(single).examples] == [1]


# Errors, each with its line and a message that says what to do -------------------------------------------
@pytest.mark.parametrize("row, kind, words", [
    ('{"messages": [', "invalid_json", ["invalid JSON", "column", "one complete JSON object"]),
    ('["a", "b"]', "not_object", ["a list, not a JSON object"]),
    ({"question": "q", "answer": "a"}, "unknown_format", ["keys answer, question", "instruction + output"]),
    ({"instruction": "q"}, "unknown_format", ["needs `output`"]),
    ({"messages": [{"role": "bot", "content": "x"}]}, "unknown_role", ["'bot'", "system, user, assistant"]),
    ({"conversations": [{"from": "robot", "value": "x"}]}, "unknown_role", ["'robot'", "human, user, gpt"]),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no_assistant", ["no assistant turn"]),
    ({"messages": [HELLO[0], {"role": "assistant", "content": "  "}]}, "empty_content", ["messages[2] (assistant)", "empty"]),
    ({"messages": [HELLO[0], {"role": "assistant", "content": ["x"]}]}, "non_string_content", ["a list, not a string"]),
    ({"instruction": "q", "output": 3}, "non_string_content", ["`output`", "a number 3"]),
    ({"messages": "hello"}, "malformed", ["non-empty list", "got str"]),
    ({"messages": [{"content": "x"}]}, "malformed", ["`role` and `content`"]),
    ({"messages": [*HELLO, SYSTEM]}, "system_position", ["message 3 is a system message", "come first"]),
    ({"messages": [HELLO[1], *HELLO]}, "assistant_first", ["starts with an assistant turn"]),
], ids=lambda v: v if isinstance(v, str) and v.isidentifier() else None)
def test_every_line_error_names_its_line_and_the_problem(tmp_path: Path, row: Any, kind: str, words: list[str]) -> None:
    good = GOOD.get(detect_format(row) if isinstance(row, dict) else None, GOOD["messages"])
    report = check_dataset(write(tmp_path, [*good, row]))
    issue = only_issue(report, kind)
    assert issue.severity == "error" and issue.line == 3 and issue.fix
    for word in words:
        assert word in str(issue)
    assert report.has_errors and [e.line for e in report.examples] == [1, 2]
    assert f"line 3: {issue.message}" in report.text()


def test_lines_in_a_minority_format_are_mixed_format_errors(tmp_path: Path) -> None:
    report = check_dataset(write(tmp_path, [chat("a", "b"), {"instruction": "c", "output": "d"}, chat("e", "f")]))
    issue = only_issue(report, "mixed_formats")
    assert issue.line == 2 and "Alpaca" in issue.message and "2 lines of the file are messages" in issue.message
    assert report.formats == {"messages": 2, "alpaca": 1}


def test_turns_after_the_last_reply_are_dropped_with_a_warning(tmp_path: Path) -> None:
    report = check_dataset(write(tmp_path, [{"messages": [*HELLO, {"role": "user", "content": "Thanks"}]}]))
    issue = only_issue(report, "trailing_turn")
    assert issue.severity == "warning" and issue.line == 1 and "user turn(s) after the last assistant reply" in issue.message
    assert not report.has_errors and report.examples[0].messages == HELLO


def test_a_line_that_is_not_utf8_is_reported_with_its_byte_offset_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    first = (json.dumps(chat("a", "b")) + "\n").encode()
    path.write_bytes(first + b'{"messages": "caf\xe9"}\n' + json.dumps(chat("c", "d")).encode())
    report = check_dataset(path)
    issue = only_issue(report, "encoding")
    assert issue.line == 2 and "0xe9" in issue.message
    assert f"byte offset {len(first) + 17} of the file (offset 17 in the line)" in issue.message and "UTF-8" in issue.fix
    assert [e.line for e in report.examples] == [1, 3]
    array = tmp_path / "data.json"
    array.write_bytes(b"[\n" + first.strip() + b',\n{"messages": "caf\xe9"},\n' + json.dumps(chat("c", "d")).encode() + b"\n]")
    report = check_dataset(array)
    assert only_issue(report, "encoding").line == 3 and [e.line for e in report.examples] == [2, 4]


@pytest.mark.parametrize("name, content, words", [
    ("empty.jsonl", b"", ["empty.jsonl is empty", "one JSON object per line"]),
    ("blank.jsonl", b"\n  \n", ["blank.jsonl is empty"]),
    ("none.json", b"[ ]", ["none.json holds no examples"]),
    ("data.csv", b"a,b\n", ["data.csv: unsupported file type '.csv'", "orient='records', lines=True"]),
    ("wide.jsonl", "\n".join(["{}"]).encode("utf-16"), ["UTF-16", "UTF-8"]),
])
def test_file_level_problems_raise_with_the_file_name_and_a_fix(tmp_path: Path, name: str, content: bytes, words: list) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(StudioError) as err:
        check_dataset(tmp_path / name)
    assert err.value.fix
    for word in words:
        assert word in str(err.value)


def test_a_missing_file_or_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StudioError, match="Dataset file not found: .*nope.jsonl"):
        check_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(StudioError, match="is a folder"):
        check_dataset(tmp_path)


def test_to_messages_raises_a_studio_error_for_a_bad_record() -> None:
    with pytest.raises(StudioError, match="Unknown format: the object has keys text"):
        to_messages({"text": "x"})


# File-level warnings -----------------------------------------------------------------------------------------
def test_exact_and_near_duplicates_list_their_lines(tmp_path: Path) -> None:
    rows = [chat("Hello there", "Hi!"), chat("Other", "x"), chat("Hello there", "Hi!"), chat("hello,  THERE", "hi"),
            chat("Unrelated", "y")]
    report = check_dataset(write(tmp_path, rows))
    assert only_issue(report, "duplicate").lines == (1, 3)
    near = only_issue(report, "near_duplicate")
    assert near.lines == (1, 3, 4) and "lines 1, 3, 4" in near.message
    assert (report.stats.duplicates, report.stats.near_duplicates) == (1, 1)
    off = check_dataset(write(tmp_path, rows), params=DataParams(near_duplicates=False))
    assert not off.issues("near_duplicate") and off.issues("duplicate")
    assert not report.has_errors


def test_near_duplicate_text_ignores_case_spacing_and_punctuation() -> None:
    assert normalise_text("  Hello,\tWORLD!! It's  me. ") == normalise_text("hello world its me")


def test_varying_system_prompts_are_counted(tmp_path: Path) -> None:
    rows = [chat("a", "b", "Be brief."), chat("c", "d", "Be brief."), chat("e", "f", "Be verbose."), chat("g", "h")]
    report = check_dataset(write(tmp_path, rows))
    issue = only_issue(report, "system_prompts")
    assert "2 distinct system prompt(s); 1 example(s) have none" in issue.message and "'Be brief.'" in issue.message
    assert report.stats.system_prompts == 2
    assert not check_dataset(write(tmp_path, rows[:2])).issues("system_prompts")


# Token statistics and max length ------------------------------------------------------------------------
def test_token_stats_and_the_over_length_count_under_both_policies(tmp_path: Path, tok: Any) -> None:
    long_answer = " ".join(["restart the device and try again"] * 20)
    rows = [chat("Hello", "Hi!"), chat("Hello there", "Hi! How can I help?"), chat("Reset", long_answer)]
    path = write(tmp_path, rows)
    truncate = check_dataset(path, tok, DataParams(max_length=64, truncation="truncate"))
    lengths = truncate.stats.tokens.lengths
    assert lengths == [len(tokenize_example(r["messages"], tok).input_ids) for r in rows]
    assert lengths[2] > 64 >= max(lengths[:2])
    tokens = truncate.stats.tokens
    assert (tokens.p50, tokens.max, tokens.over_length, tokens.untrainable) == (sorted(lengths)[1], lengths[2], 1, 0)
    issue = only_issue(truncate, "too_long")
    assert issue.lines == (3,) and "truncated to 64 tokens" in issue.message and f"longest {lengths[2]}" in issue.message
    drop = only_issue(check_dataset(path, tok, DataParams(max_length=64, truncation="drop")), "too_long")
    assert "1 example(s) are longer than max_length 64" in drop.message and "will be dropped" in drop.message
    assert f"suggested max_length {tokens.suggested_max_length}" in truncate.text()


def test_truncation_that_leaves_no_reply_counts_the_example_as_untrainable(tmp_path: Path, tok: Any) -> None:
    rows = [chat(" ".join(["a long question about the router"] * 10), "Yes."), chat("Hi", "Hello!")]
    report = check_dataset(write(tmp_path, rows), tok, DataParams(max_length=32))
    assert report.stats.tokens.untrainable == 1
    assert "1 of them lose every assistant token" in only_issue(report, "too_long").message


def test_suggested_max_length_is_p95_rounded_up_to_64_and_capped() -> None:
    lengths = list(range(1, 101))  # p95 = 95
    assert suggest_max_length(lengths, cap=4096) == 128
    assert suggest_max_length([1000] * 10, cap=512) == 512
    assert suggest_max_length([3], cap=4096) == 64


def test_a_template_that_rejects_a_conversation_is_a_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    strict = ("{% for m in messages %}{% if m['role'] == 'user' and 'forbidden' in m['content'] %}"
              "{{ raise_exception('no forbidden words') }}{% endif %}{% endfor %}" + CHAT_TEMPLATE)
    report = check_dataset(write(tmp_path, [chat("Hi", "Hello"), chat("forbidden", "x")]), fresh_tokenizer(tiny_model_dir, strict))
    issue = only_issue(report, "template")
    assert issue.line == 2 and "no forbidden words" in issue.message
    assert [e.line for e in report.examples] == [1]


def test_no_chat_template_is_refused_with_a_fix(tmp_path: Path, tiny_model_dir: Path) -> None:
    bare = fresh_tokenizer(tiny_model_dir, None)
    with pytest.raises(StudioError, match="has no chat template") as err:
        tokenize_example(HELLO, bare, 64)
    assert "chat/instruct model" in err.value.fix
    with pytest.raises(StudioError, match="has no chat template"):
        check_dataset(write(tmp_path, [chat("a", "b")]), bare)


# Rendering for training ------------------------------------------------------------------------------------------
def trained_text(example: Any, tok: Any) -> list[str]:
    return [tok.decode(example.input_ids[a:b]) for a, b in example.trained_spans]


def test_labels_cover_exactly_the_reply_and_its_eos(tok: Any) -> None:
    example = tokenize_example([SYSTEM, *HELLO], tok, max_length=512)
    trained = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert tok.decode(trained) == "Hi! How can I help?<|im_end|>"
    assert trained[-1] == tok.eos_token_id
    rendered = tok.apply_chat_template([SYSTEM, *HELLO], tokenize=False)
    assert example.input_ids == tok(rendered, add_special_tokens=False)["input_ids"]
    assert example.attention_mask == [1] * len(example.input_ids)
    untrained = [t for t, label in zip(example.input_ids, example.labels) if label == IGNORE_INDEX]
    assert tok.decode(untrained) == rendered.replace("Hi! How can I help?<|im_end|>", "", 1)


def test_every_assistant_turn_of_a_multi_turn_conversation_is_trained(tok: Any) -> None:
    example = tokenize_example(TWO_TURNS, tok)
    assert trained_text(example, tok) == ["Hi! How can I help?<|im_end|>", "Please restart the router and try again.<|im_end|>"]
    assert example.trained_tokens == sum(b - a for a, b in example.trained_spans)
    assert check_eos(TWO_TURNS, tok) == [True, True]


def test_train_on_prompt_trains_every_token(tok: Any) -> None:
    example = tokenize_example(TWO_TURNS, tok, train_on_prompt=True)
    assert example.labels == example.input_ids


def test_truncation_keeps_the_first_tokens(tok: Any) -> None:
    full = tokenize_example(TWO_TURNS, tok)
    cut = tokenize_example(TWO_TURNS, tok, max_length=20)
    assert cut.truncated and cut.full_length == len(full.input_ids)
    assert cut.input_ids == full.input_ids[:20] and cut.labels == full.labels[:20] and len(cut.attention_mask) == 20


def test_preview_marks_the_trained_segments(tok: Any) -> None:
    segments = preview(TWO_TURNS, tok)
    assert "".join(text for text, _ in segments) == tok.apply_chat_template(TWO_TURNS, tokenize=False)
    assert [text for text, trained in segments if trained] == ["Hi! How can I help?<|im_end|>",
                                                               "Please restart the router and try again.<|im_end|>"]
    assert all(trained for _, trained in preview(TWO_TURNS, tok, train_on_prompt=True))


def test_a_template_without_eos_gets_the_eos_appended_and_trained(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The generation prompt ends in a space, so the reply's first token would merge with it: the pieces are
    # tokenized apart, as inference does.
    plain = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n\n' }}{% endfor %}"
             "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    tokenizer = fresh_tokenizer(tiny_model_dir, plain)
    example = tokenize_example(HELLO, tokenizer)
    assert check_eos(HELLO, tokenizer) == [False]
    assert trained_text(example, tokenizer) == ["Hi! How can I help?\n\n<|im_end|>"]
    assert example.input_ids[-1] == tokenizer.eos_token_id
    report = check_dataset(write(tmp_path, [chat("a", "b")]), tokenizer)
    assert "EOS token is appended" in only_issue(report, "no_eos").message


def test_a_template_that_is_not_prefix_stable_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    counting = "{{ messages | length }}" + CHAT_TEMPLATE
    tokenizer = fresh_tokenizer(tiny_model_dir, counting)
    with pytest.raises(ChatTemplateError, match="not prefix-stable") as err:
        tokenize_example(HELLO, tokenizer)
    assert "renders earlier turns unchanged" in err.value.fix
    report = check_dataset(write(tmp_path, [chat("a", "b")]), tokenizer)
    assert "not prefix-stable" in only_issue(report, "template").message and report.has_errors


def test_tokenize_dataset_applies_the_policy_and_says_what_it_left_out(tok: Any) -> None:
    long = {"role": "assistant", "content": " ".join(["restart the device"] * 30)}
    examples = [Example(1, HELLO), Example(2, [HELLO[0], long]), Example(3, [{"role": "user", "content": "a " * 80}, HELLO[1]])]
    kept, issues = tokenize_dataset(examples, tok, DataParams(max_length=48, truncation="truncate"))
    assert [k.line for k in kept] == [1, 2] and kept[1].truncated
    assert [(i.kind, i.line) for i in issues] == [("untrainable", 3)]
    kept, issues = tokenize_dataset(examples, tok, DataParams(max_length=48, truncation="drop"))
    assert [k.line for k in kept] == [1] and [(i.kind, i.line) for i in issues] == [("too_long", 2), ("too_long", 3)]
    assert set(kept[0].features()) == {"input_ids", "labels", "attention_mask"}


# Split -----------------------------------------------------------------------------------------------------------
def test_the_split_is_deterministic_and_disjoint() -> None:
    examples = [Example(n, HELLO) for n in range(1, 101)]
    train, val = split_examples(examples, 0.1, seed=42)
    again = split_examples(examples, 0.1, seed=42)
    assert (train, val) == again and len(val) == 10 and len(train) == 90
    assert {e.line for e in train}.isdisjoint({e.line for e in val})
    assert {e.line for e in train} | {e.line for e in val} == set(range(1, 101))
    assert split_examples(examples, 0.1, seed=7)[1] != val
    assert split_examples(examples, 0.0, seed=42) == (examples, [])
    assert [len(part) for part in split_examples(examples[:3], 0.01, seed=1)] == [2, 1]
    with pytest.raises(ConfigError, match="val_ratio"):
        split_examples(examples, 1.0, seed=1)


def test_a_validation_file_replaces_the_ratio_and_leaks_are_listed(tmp_path: Path) -> None:
    train = check_dataset(write(tmp_path, [chat(f"q{n}", "a") for n in range(10)], "train.jsonl"))
    params = DataParams(val_ratio=0.2, seed=3)
    by_ratio = make_split(train, params)
    assert len(by_ratio.validation) == 2 and "20% of train.jsonl (seed 3)" == by_ratio.source
    val = check_dataset(write(tmp_path, [chat("new", "a"), chat("q4", "a")], "val.jsonl"))
    split = make_split(train, params, val)
    assert len(split.train) == 10 and len(split.validation) == 2 and split.leaked == [2] and split.source == "val.jsonl"


# Decontamination --------------------------------------------------------------------------------------------------
PLANTED = "the quick brown fox jumps over the lazy dog"


def test_decontamination_finds_a_planted_ngram(tmp_path: Path) -> None:
    evals = write(tmp_path, [{"question": "What colour is the sky?", "reference": "Blue."},
                             {"question": f"Complete: {PLANTED.upper()} tonight", "reference": "ok"}], "eval.jsonl")
    examples = [Example(1, HELLO), Example(2, [{"role": "user", "content": f"Say: {PLANTED}, please."}, HELLO[1]]),
                Example(3, TWO_TURNS)]
    report = check_contamination(examples, evals, n=8)
    assert report.count == 1 and report.lines == [2]
    overlap = report.overlaps[0]
    assert overlap.eval_line == 2 and overlap.ngram in PLANTED and len(overlap.ngram.split()) == 8
    assert "1 of 3 training examples" in report.text() and "line 2" in report.text()


def test_decontamination_is_clean_on_unrelated_data_and_reads_message_fields(tmp_path: Path) -> None:
    evals = write(tmp_path, [{"messages": [{"role": "user", "content": PLANTED}]}, {"instruction": "x", "output": "y"}], "e.jsonl")
    report = check_contamination([Example(1, TWO_TURNS)], evals)
    assert report.count == 0 and report.eval_examples == 2 and report.text().startswith("No training example")
    shorter = " ".join(PLANTED.split()[:7])  # 7 shared words is below the 8-gram threshold
    assert check_contamination([Example(1, [{"role": "user", "content": shorter}, HELLO[1]])], evals).count == 0


def test_an_eval_file_without_text_fields_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StudioError, match="no text to compare with"):
        check_contamination([Example(1, HELLO)], write(tmp_path, [{"id": 1}], "eval.jsonl"))


# Params -------------------------------------------------------------------------------------------------------------
def test_data_params_defaults_and_validation() -> None:
    params = DataParams()
    assert (params.max_length, params.truncation, params.train_on_prompt, params.val_ratio, params.seed,
            params.near_duplicates, params.decontam_ngram) == (1024, "truncate", False, 0.1, 42, True, 8)
    assert DataParams.from_dict({**params.to_dict(), "unknown": 1}) == params
    with pytest.raises(ConfigError, match="`truncation` should be one of truncate, drop"):
        DataParams(truncation="cut")
    with pytest.raises(ConfigError, match="`val_ratio` should be a number between 0.0 and 0.5"):
        DataParams(val_ratio=0.9)
    with pytest.raises(ConfigError, match="`max_length` should be a number between 16"):
        DataParams(max_length=0)


def test_the_report_text_summarises_errors_warnings_and_stats(tmp_path: Path, tok: Any) -> None:
    report = check_dataset(write(tmp_path, [chat("a", "b"), "{oops", chat("a", "b")]), tok)
    text = report.text()
    assert text.startswith("data.jsonl: 2 valid examples, format messages (role/content); 1 line(s) rejected")
    assert "Errors (1):" in text and "Warnings (1):" in text and "tokens per example p50" in text
    assert text.endswith("Result: errors found (fix the lines above)")
    assert check_dataset(write(tmp_path, [chat("a", "b")])).text().endswith("Result: OK")
