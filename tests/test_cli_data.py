"""`studio data check`: the dataset report in the terminal, with exit codes a script can use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.cli import main

GOOD = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Question {i} about the weather?"},
                      {"role": "assistant", "content": f"Answer {i}: it will be sunny and warm all afternoon."}]}
        for i in range(6)]


def write(path: Path, rows: list, extra: str = "") -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n" + extra, encoding="utf-8")
    return path


def test_a_clean_file_passes_with_token_lengths(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", str(write(tmp_path / "good.jsonl", GOOD)), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "6 valid examples" in out and "p95 72" in out and "need a tokenizer" not in out


def test_line_errors_exit_1_and_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path / "bad.jsonl", GOOD[:2], extra='{"messages": [{"role": "robot", "content": "x"}]}\n')
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "line 3:" in out and "robot" in out and "Fix:" in out


def test_an_unreadable_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fix: " in err


def test_overlap_with_the_eval_set_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write(tmp_path / "train.jsonl", GOOD)
    leak = write(tmp_path / "eval.jsonl", [{"question": "x", "reference": "Answer 3: it will be sunny and warm all afternoon."}])
    assert main(["data", "check", str(data), "--eval", str(leak)]) == 1
    assert "line 4" in capsys.readouterr().out
    clean = write(tmp_path / "clean.jsonl", [{"question": "How tall is the tower in the old town square?"}])
    assert main(["data", "check", str(data), "--eval", str(clean)]) == 0
