"""Evaluation runs on disk: `<workspace>/evals/<name>/` with JSON for the studio and CSV for spreadsheets.

    config.json      model, dataset, variants, generation params, batch size, cancelled, timings
    results.json     one entry per example: the example and every variant's answer and metrics
    aggregates.json  variant -> metric -> value
    results.csv      one row per (example, variant)
    summary.csv      one row per variant (the aggregates)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from studio.config import GenerationParams
from studio.core.evaluation.data import EvalExample
from studio.core.evaluation.metrics import MEAN_METRICS, ExampleScores
from studio.core.evaluation.runner import EvaluationRun, ExampleResult, Variant, VariantAnswer
from studio.errors import StudioError
from studio.storage.workspace import check_name, write_atomic

EVALS = "evals"
FILES = ("config.json", "results.json", "aggregates.json", "results.csv", "summary.csv")


def evals_dir(workspace: Any) -> Path:
    """Where evaluation runs live in a Workspace (or a workspace root folder)."""
    if isinstance(workspace, (str, Path)):
        return Path(workspace) / EVALS
    return Path(workspace.evals_dir)


def save_run(run: EvaluationRun, workspace: Any, overwrite: bool = False) -> Path:
    """Write `run` to `<workspace>/evals/<run.name>/` and return that folder.

    Raises StudioError when the name is not usable as a folder name, or the run exists and
    `overwrite` is False.
    """
    folder = evals_dir(workspace) / check_name(run.name, "Evaluation")
    if folder.exists() and not overwrite:
        raise StudioError(f"An evaluation named {run.name!r} already exists.", "choose another name or delete the old one.")
    config, results = _config(run), _results(run)
    write_atomic(folder / "config.json", json.dumps(config, indent=2, ensure_ascii=False))
    write_atomic(folder / "results.json", json.dumps(results, indent=1, ensure_ascii=False))
    write_atomic(folder / "aggregates.json", json.dumps(run.aggregates, indent=2))
    write_atomic(folder / "results.csv", results_csv(run))
    write_atomic(folder / "summary.csv", summary_csv(run))
    return folder


def run_document(run: EvaluationRun) -> dict[str, Any]:
    """The whole run as one JSON-ready dict (config fields, aggregates, per-example results): the studio's JSON export."""
    return {**_config(run), "aggregates": run.aggregates, "results": _results(run)}


def _config(run: EvaluationRun) -> dict[str, Any]:
    return {"name": run.name, "model": run.model, "dataset": run.dataset, "created": run.created,
            "batch_size": run.batch_size, "params": run.params.to_dict(), "variants": [v.to_dict() for v in run.variants],
            "cancelled": run.cancelled, "elapsed_s": run.elapsed_s, "examples": len(run.results)}


def _results(run: EvaluationRun) -> list[dict[str, Any]]:
    return [{"example": r.example.to_dict(),
             "answers": {name: {"answer": a.answer, "prompt_tokens": a.prompt_tokens, "sources": a.sources,
                                "scores": a.scores.to_dict()} for name, a in r.answers.items()}}
            for r in run.results]


def load_run(folder: str | Path) -> EvaluationRun:
    """Read a run written by `save_run`; StudioError when a file is missing or unreadable."""
    folder = Path(folder)
    try:
        return _read_run(folder)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StudioError(f"Evaluation {folder.name!r} cannot be read ({type(err).__name__}: {err}).",
                          "run the evaluation again, or restore its files.") from None


def _read_run(folder: Path) -> EvaluationRun:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    aggregates = json.loads((folder / "aggregates.json").read_text(encoding="utf-8"))
    return EvaluationRun(
        name=config["name"], model=config["model"], variants=[Variant.from_dict(v) for v in config["variants"]],
        params=GenerationParams.from_dict(config["params"]), batch_size=config["batch_size"],
        results=[ExampleResult(EvalExample.from_dict(r["example"]),
                               {name: VariantAnswer(a["answer"], ExampleScores(**a["scores"]), a["prompt_tokens"], a["sources"])
                                for name, a in r["answers"].items()}) for r in results],
        aggregates=aggregates, created=config.get("created", ""), dataset=config.get("dataset", ""),
        cancelled=config.get("cancelled", False), elapsed_s=config.get("elapsed_s", 0.0))


def list_runs(workspace: Any) -> list[str]:
    """Names of the saved evaluation runs, newest first."""
    root = evals_dir(workspace)
    runs = [p for p in root.iterdir() if (p / "config.json").is_file()] if root.is_dir() else []
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def results_csv(run: EvaluationRun) -> str:
    """One row per example and variant: the question, reference, answer and every metric."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "question", "reference", "variant", "answer", *MEAN_METRICS])
    for r in run.results:
        for name, a in r.answers.items():
            scores = a.scores.to_dict()
            writer.writerow([r.example.line, r.example.question, r.example.reference, name, a.answer,
                             *("" if scores[m] is None else scores[m] for m in MEAN_METRICS)])
    return out.getvalue()


def summary_csv(run: EvaluationRun) -> str:
    """One row per variant: its aggregates."""
    columns = ["n", *MEAN_METRICS, "corpus_bleu", "corpus_chrf"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["variant", *columns])
    for name, values in run.aggregates.items():
        writer.writerow([name, *("" if values.get(c) is None else values[c] for c in columns)])
    return out.getvalue()
