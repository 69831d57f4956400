"""The `studio` command line: chat streams an answer; every user error exits 2 with message and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from studio import cli


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_chat_streams_an_answer_and_stats(tiny_model_dir: Path, workspace_dir: Path, capsys) -> None:
    code, out, err = run(["chat", "--model", str(tiny_model_dir), "--max-new-tokens", "8", "--seed", "3", "Hello"], capsys)
    assert code == 0
    assert out.strip(), "the answer is printed on stdout"
    assert "tokens" in err and "tok/s" in err and "prompt" in err
    again = run(["chat", "--model", str(tiny_model_dir), "--max-new-tokens", "8", "--seed", "3", "Hello"], capsys)
    assert again[1] == out, "same seed and params give the same answer"


def test_chat_with_adapter(tiny_model_dir: Path, adapter_dirs, workspace_dir: Path, capsys) -> None:
    code, out, err = run(["chat", "--model", str(tiny_model_dir), "--adapter", str(adapter_dirs[0]),
                          "--max-new-tokens", "6", "--temperature", "0", "Hi"], capsys)
    assert code == 0, err
    assert "adapters: style-a" in err


@pytest.mark.parametrize(
    "model, expected",
    [
        ("no-such-org/no-such-model", "not in the local Hugging Face cache"),
        ("bad id with spaces", "neither an existing folder nor a valid hub id"),
        ("./does/not/exist", "does not exist"),
    ],
)
def test_chat_model_errors(model: str, expected: str, workspace_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(["chat", "--model", model, "Hi"], capsys)
    assert code == 2
    assert expected in err and "fix:" in err


def test_chat_folder_that_is_not_a_model(tmp_path: Path, workspace_dir: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run(["chat", "--model", str(tmp_path), "Hi"], capsys)
    assert code == 2 and "not a model" in err and "config.json" in err


def test_chat_adapter_for_another_base(tiny_model_dir: Path, foreign_adapter_dir: Path, workspace_dir: Path, capsys) -> None:
    code, _, err = run(["chat", "--model", str(tiny_model_dir), "--adapter", str(foreign_adapter_dir), "Hi"], capsys)
    assert code == 2
    assert "foreign" in err and ("another base" in err or "does not fit" in err)


def test_chat_without_model(workspace_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("STUDIO_MODEL", raising=False)
    code, _, err = run(["chat", "Hi"], capsys)
    assert code == 2 and "--model" in err


@pytest.mark.parametrize("argv", [["--host", "0.0.0.0"], ["--share"]])
def test_public_serving_needs_auth(argv: list[str], workspace_dir: Path, capsys) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2 and "--auth user:password" in err


def test_public_serving_with_auth_warns() -> None:
    from studio.config import Settings

    warning = cli.check_exposure(Settings(host="0.0.0.0", auth="ann:secret"))
    assert warning and "WARNING" in warning
    assert cli.check_exposure(Settings()) is None


def test_bad_setting_in_environment(workspace_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_PORT", "eighty")
    code, _, err = run(["chat", "--model", "x", "Hi"], capsys)
    assert code == 2 and "STUDIO_PORT" in err


def test_console_script_help_runs() -> None:
    done = subprocess.run([sys.executable, "launch.py", "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 0 and "chat" in done.stdout and "--workspace" in done.stdout
