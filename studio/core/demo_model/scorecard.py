"""Measure the demo model's thesis with the studio's own pipeline: RAG adds knowledge, QLoRA adds behaviour.

`measure()` builds a knowledge base from sample_data/docs (default index and retrieval settings), trains
a QLoRA adapter on sample_data/train.jsonl with the Training tab's defaults (the real worker, as
`studio train` runs it), and evaluates sample_data/eval.jsonl with base, rag, tuned and tuned+rag
through `evaluation.runner.evaluate` with the settings `studio eval` uses (greedy, 256 new tokens,
batches of 8). `THRESHOLDS` are the claims the slow test asserts and the README reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_DATA = Path(__file__).resolve().parents[3] / "sample_data"
KB_NAME = "halden-help-centre"
MAX_NEW_TOKENS = 256  # studio eval's default
# (variant, metric, comparison, bound): the thesis of issue 6.
THRESHOLDS: tuple[tuple[str, str, str, float], ...] = (
    ("base", "fact_recall", "<=", 0.15), ("base", "schema_valid", "<=", 0.10), ("base", "eos_rate", ">=", 0.95),
    ("rag", "fact_recall", ">=", 0.60),
    ("tuned", "schema_valid", ">=", 0.90),
    ("tuned+rag", "fact_recall", ">=", 0.55), ("tuned+rag", "schema_valid", ">=", 0.85),
)


@dataclass
class Scorecard:
    aggregates: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)  # ingest, qlora, eval
    adapter: str = ""
    answers: dict[str, list[str]] = field(default_factory=dict)

    def failures(self) -> list[str]:
        """Every threshold this scorecard misses, as 'variant metric value (needs >= bound)'."""
        out = []
        for variant, metric, op, bound in THRESHOLDS:
            value = self.aggregates[variant].get(metric)
            ok = value is not None and (value <= bound if op == "<=" else value >= bound)
            if not ok:
                out.append(f"{variant} {metric} {value} (needs {op} {bound})")
        return out

    def to_dict(self) -> dict[str, Any]:
        how = (f"`studio eval` settings (greedy, {MAX_NEW_TOKENS} new tokens, batch 8) on sample_data/eval.jsonl "
               f"(110 questions, no system prompt); rag = knowledge base of sample_data/docs with default settings; "
               f"tuned = QLoRA with the Training tab's defaults on sample_data/train.jsonl ({self.seconds.get('qlora', 0) / 60:.1f} min). "
               "schema_valid = valid house JSON; eos_rate = answers that ended with EOS within the token limit.")
        notes = "Thresholds: " + "; ".join(f"{v} {m} {op} {b}" for v, m, op, b in THRESHOLDS) + \
                (". All met." if not self.failures() else ". Missed: " + "; ".join(self.failures()))
        return {"aggregates": self.aggregates, "seconds": self.seconds, "how": how, "notes": notes}


def measure(model_dir: str | Path, workspace: str | Path, log: Callable[[str], None] = print,
            train_overrides: dict[str, Any] | None = None, limit: int | None = None) -> Scorecard:
    """Run the whole thesis on `model_dir` inside `workspace` (created if needed) and return the scorecard."""
    from studio.storage.workspace import Workspace

    workspace = Workspace(Path(workspace))
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    knowledge_base(workspace)
    seconds["ingest"] = time.perf_counter() - tick
    log(f"knowledge base ready ({seconds['ingest']:.0f} s)")
    tick = time.perf_counter()
    adapter = train_adapter(model_dir, workspace, train_overrides or {})
    seconds["qlora"] = time.perf_counter() - tick
    log(f"QLoRA adapter trained ({seconds['qlora'] / 60:.1f} min): {adapter}")
    tick = time.perf_counter()
    card = evaluate_variants(model_dir, workspace, adapter, log, limit)
    seconds["eval"] = time.perf_counter() - tick
    card.seconds = seconds
    return card


def knowledge_base(workspace: Any) -> None:
    from studio.core.rag.service import RagService

    rag = RagService(workspace)
    if KB_NAME in rag.names():
        rag.delete(KB_NAME)
    rag.create(KB_NAME)
    for _event in rag.ingest(KB_NAME, [SAMPLE_DATA / "docs"]):
        pass


def train_adapter(model_dir: str | Path, workspace: Any, overrides: dict[str, Any]) -> Path:
    """QLoRA with TrainParams' defaults (what the Training tab shows) through the worker `studio train` runs."""
    from studio.core.training.params import RunConfig, TrainParams
    from studio.core.training.worker import open_run, run_training

    config = RunConfig(model=str(Path(model_dir).resolve()), dataset=str(SAMPLE_DATA / "train.jsonl"),
                       name=f"demo-qlora-{time.strftime('%Y%m%d-%H%M%S')}", train=TrainParams(method="qlora", **overrides))
    path = config.save(Path(workspace.root) / "demo-qlora.yaml")
    code = run_training(path, workspace=workspace.root)
    run = open_run(config, workspace.root)
    if code != 0:
        raise RuntimeError(f"QLoRA training failed (exit {code}): {run.status_file.read_text() if run.status_file.exists() else ''}")
    return run.adapter_dir


def evaluate_variants(model_dir: str | Path, workspace: Any, adapter: Path, log: Callable[[str], None],
                      limit: int | None = None) -> Scorecard:
    from studio.config import GenerationParams, LoadParams
    from studio.core.evaluation import store
    from studio.core.evaluation.data import load_examples
    from studio.core.evaluation.runner import evaluate
    from studio.core.evaluation.variants import build_variants
    from studio.core.models import ModelManager
    from studio.core.rag.service import RagService

    manager = ModelManager()
    manager.load(LoadParams(model=str(model_dir)))
    name = manager.attach_adapter(str(adapter)).adapters[-1]
    rag = RagService(workspace, manager)
    variants = build_variants(["base", "rag", "tuned", "tuned+rag"], name, KB_NAME)
    examples = load_examples(SAMPLE_DATA / "eval.jsonl", limit)
    run = evaluate(manager, examples, variants, GenerationParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS), rag, 8,
                   progress=lambda done, total: log(f"evaluating: {done}/{total} answers") if done % 40 == 0 else None,
                   name=f"demo-scorecard-{time.strftime('%Y%m%d-%H%M%S')}", dataset=str(SAMPLE_DATA / "eval.jsonl"))
    store.save_run(run, workspace)
    aggregates = {v: dict(a) for v, a in run.aggregates.items()}
    for variant in aggregates:
        ended = [r.answers[variant].scores.tokens < MAX_NEW_TOKENS for r in run.results]
        aggregates[variant]["eos_rate"] = sum(ended) / len(ended)
    answers = {v.name: [r.answers[v.name].answer for r in run.results] for v in variants}
    return Scorecard(aggregates, adapter=str(adapter), answers=answers)


def write(card: Scorecard, model_dir: str | Path) -> Path:
    """Save the scorecard next to the model and rewrite its README with it."""
    from studio.core.demo_model.build import write_readme

    path = Path(model_dir) / "scorecard.json"
    path.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    write_readme(Path(model_dir))
    return path
