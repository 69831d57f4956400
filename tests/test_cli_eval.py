"""`studio eval` in-process on the tiny model: a real run through every variant, and every user error.

studio/cli.py is wired separately, so these tests build the same subcommand parser and dispatch the
way `cli.main` does (settings, StudioError -> exit 2 with error:/fix:).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from studio import cli
from studio.cli_eval import VARIANTS, add_eval_parser, run_eval
from studio.core.evaluation import store
from studio.errors import StudioError

EXAMPLES = [
    {"question": "How long is the warranty?", "reference": "Two years.", "facts": ["two years"]},
    {"question": "How do I reset the device?", "reference": "Hold reset for ten seconds.", "facts": ["ten seconds"],
     "schema": {"type": "object"}},
    {"question": "When are invoices sent?", "reference": "On the first day of each month."},
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="studio")
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return run_eval(args, cli._settings(args))
    except StudioError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.fix:
            print(f"fix: {err.fix}", file=sys.stderr)
        return 2


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one small knowledge base, built through RagService (its embedder ships offline)."""
    from studio.core.rag.service import RagService
    from studio.storage.workspace import Workspace

    root = tmp_path_factory.mktemp("cli-eval")
    docs = root / "docs"
    docs.mkdir()
    (docs / "warranty.txt").write_text("The warranty covers two years of repairs.")
    (docs / "reset.md").write_text("# Reset\n\nHold the reset button for ten seconds.")
    rag = RagService(Workspace(root / "ws"))
    rag.create("support")
    *_, report = rag.ingest("support", [docs])
    assert not report.failed
    (root / "eval.jsonl").write_text("\n".join(json.dumps(e) for e in EXAMPLES) + "\n")
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_every_variant_is_scored_saved_and_printed(home: Path, tiny_model_dir: Path, adapter_dirs: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["eval", "--data", str(home / "eval.jsonl"), "--model", str(tiny_model_dir), "--device", "cpu",
                          "--workspace", str(home / "ws"), "--variants", ",".join(VARIANTS), "--adapter", str(adapter_dirs[0]),
                          "--collection", "support", "--limit", "2", "--batch-size", "4", "--max-new-tokens", "4",
                          "--name", "all-five"], capsys)
    assert code == 0, err
    assert "evaluating: " in err and "/10 answers" in err  # 2 examples × 5 variants
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", *VARIANTS]
    for metric in ("n", "exact_match", "rouge_l", "fact_recall", "schema_valid", "latency_s", "corpus_chrf"):
        assert any(line.split()[0] == metric for line in out.splitlines()), metric
    assert "Saved to " in out
    run_ = store.load_run(home / "ws" / "evals" / "all-five")
    assert [v.name for v in run_.variants] == list(VARIANTS) and len(run_.results) == 2
    assert run_.variants[3].adapter and run_.variants[4].knowledge_base == "support"
    assert all(a.sources for a in (run_.results[0].answers["rag"], run_.results[0].answers["tuned+rag"]))


@pytest.mark.slow
def test_json_output_and_a_preset_for_the_prompt_variant(home: Path, tiny_model_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from studio.storage.workspace import Workspace

    Workspace(home / "ws").save_preset("terse", {"prompt": {"technique": "Free chat", "system": "Answer in five words."}})
    code, out, err = run(["eval", "--data", str(home / "eval.jsonl"), "--model", str(tiny_model_dir), "--device", "cpu",
                          "--workspace", str(home / "ws"), "--variants", "base,prompt", "--preset", "terse",
                          "--max-new-tokens", "3", "--name", "json-run", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["examples"] == 3 and set(data["aggregates"]) == {"base", "prompt"}
    assert data["folder"].endswith("json-run")
    saved = store.load_run(data["folder"])
    assert saved.variants[1].prompt is not None and saved.variants[1].prompt.system == "Answer in five words."


@pytest.mark.parametrize("extra, message, fix", [
    (["--variants", "base,tuned"], "Variant tuned needs a fine-tuned adapter.", "--adapter"),
    (["--variants", "rag,tuned+rag", "--adapter", "."], "Variants rag, tuned+rag need a knowledge base", "--collection"),
    (["--variants", "base,lora,prompt"], "Unknown variant: lora.", "base, prompt, rag, tuned, tuned+rag"),
    (["--variants", ","], "Unknown variant: (none given).", "comma-separated"),
    (["--limit", "0"], "--limit should be at least 1, got 0.", "positive"),
    (["--variants", "tuned", "--adapter", "/no/such/adapter"], "Adapter folder /no/such/adapter does not exist.", "--adapter"),
])
def test_option_errors_exit_2_before_loading(home: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str],
                                            extra: list[str], message: str, fix: str) -> None:
    code, out, err = run(["eval", "--data", str(home / "eval.jsonl"), "--model", str(tiny_model_dir),
                          "--workspace", str(home / "ws"), *extra], capsys)
    assert code == 2 and out == ""
    assert f"error: {message}" in err and "fix: " in err and fix in err.split("fix: ")[1]
    assert "Loading" not in err


def test_missing_data_file(home: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["eval", "--data", str(home / "nope.jsonl"), "--model", str(tiny_model_dir),
                        "--workspace", str(home / "ws")], capsys)
    assert code == 2 and f"error: Evaluation data {home / 'nope.jsonl'} does not exist." in err and "fix: pass --data" in err


def test_unknown_collection_and_preset_and_missing_model(home: Path, tiny_model_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--data", str(home / "eval.jsonl"), "--workspace", str(home / "ws")]
    code, _, err = run([*base, "--model", str(tiny_model_dir), "--variants", "rag", "--collection", "nothing"], capsys)
    assert code == 2 and "error: There is no knowledge base named 'nothing'." in err
    code, _, err = run([*base, "--model", str(tiny_model_dir), "--preset", "missing"], capsys)
    assert code == 2 and "error: No preset named 'missing'" in err
    code, _, err = run(base, capsys)
    assert code == 2 and "error: No model to evaluate." in err


@pytest.mark.slow
def test_ctrl_c_stops_at_the_next_batch_and_saves_what_finished(home: Path, tiny_model_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal

    from studio import cli_eval

    shown = cli_eval._progress

    def interrupt_once(done: int, total: int) -> None:
        shown(done, total)
        if done == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the handler sets the cancel event; the run stops before batch 2

    monkeypatch.setattr(cli_eval, "_progress", interrupt_once)
    code, out, err = run(["eval", "--data", str(home / "eval.jsonl"), "--model", str(tiny_model_dir), "--device", "cpu",
                          "--workspace", str(home / "ws"), "--variants", "base", "--batch-size", "1",
                          "--max-new-tokens", "2", "--name", "stopped"], capsys)
    assert code == 130 and "stopping at the next safe point" in err and err.rstrip().endswith("[cancelled]")
    assert "1 example (cancelled)" in out and "Saved to " in out
    saved = store.load_run(home / "ws" / "evals" / "stopped")
    assert saved.cancelled and len(saved.results) == 1


def test_scorecard_lists_every_metric_per_variant_with_a_dash_where_none_applies() -> None:
    from studio.cli_eval import scorecard
    from studio.config import GenerationParams
    from studio.core.evaluation.metrics import MEAN_METRICS
    from studio.core.evaluation.runner import EvaluationRun, Variant

    values = {"n": 2, **{m: 0.5 for m in MEAN_METRICS}, "schema_valid": None, "corpus_bleu": 12.25, "corpus_chrf": 30.0}
    run = EvaluationRun(name="card", model="tiny", variants=[Variant("base"), Variant("tuned", adapter="a")],
                        params=GenerationParams(), batch_size=8, results=[], aggregates={"base": values, "tuned": values})
    lines = scorecard(run).splitlines()
    assert lines[0] == "card · tiny · 0 examples"
    assert lines[1].split() == ["metric", "base", "tuned"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == ["n", *MEAN_METRICS, "corpus_bleu", "corpus_chrf"]
    assert rows["n"] == ["2", "2"] and rows["schema_valid"] == ["-", "-"] and rows["corpus_bleu"] == ["12.250", "12.250"]
