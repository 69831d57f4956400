"""The forgetting probe: general-knowledge questions answered by the base and a tuned adapter.

A fine-tune that teaches a format can quietly cost the model what it knew. `probe.jsonl` (shipped
with this package) holds simple facts any small instruction model gets right; running base vs
tuned on it and comparing the means shows whether the adapter lost any, and which questions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from studio.config import GenerationParams
from studio.core.evaluation.data import EvalExample, load_examples
from studio.core.evaluation.runner import EvaluationRun, Progress, Variant, evaluate
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.core.models import ModelManager
    from studio.core.prompting import PromptSpec

PROBE_FILE = Path(__file__).with_name("probe.jsonl")
# Higher is better for each; a drop larger than the threshold (absolute, on a 0..1 scale) is a regression.
PROBE_METRICS = ("fact_recall", "rouge_l")
BASE_VARIANT, TUNED_VARIANT = "base", "tuned"


@dataclass
class MetricChange:
    metric: str
    base: float
    tuned: float

    @property
    def drop(self) -> float:
        return self.base - self.tuned


@dataclass
class ForgettingReport:
    """Base vs tuned on the probe: every compared metric, those that dropped beyond the threshold, and
    the probe questions (by line) whose facts the base found but the tuned model no longer does."""

    run: EvaluationRun
    threshold: float
    changes: list[MetricChange]
    lost: list[int] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricChange]:
        return [c for c in self.changes if c.drop > self.threshold]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def summary(self) -> str:
        parts = [f"{c.metric} {c.base:.2f} → {c.tuned:.2f}" for c in self.changes]
        verdict = ("regression: " + ", ".join(c.metric for c in self.regressions) if self.regressed
                   else f"no drop beyond {self.threshold:.2f}")
        lost = f"; facts lost on {len(self.lost)} question(s)" if self.lost else ""
        return f"Forgetting probe ({len(self.run.results)} questions): " + "; ".join(parts) + f" — {verdict}{lost}"


def load_probe(path: str | Path | None = None) -> list[EvalExample]:
    """The probe questions (the packaged file unless `path` is given)."""
    return load_examples(path or PROBE_FILE)


def compare_forgetting(run: EvaluationRun, threshold: float = 0.1, metrics: tuple[str, ...] = PROBE_METRICS,
                       base: str = BASE_VARIANT, tuned: str = TUNED_VARIANT) -> ForgettingReport:
    """Compare two variants of a finished run; raises StudioError when either is missing from it."""
    for name in (base, tuned):
        if name not in run.aggregates:
            raise StudioError(f"The run has no variant named {name!r}.", f"use one of: {', '.join(run.aggregates)}.")
    changes = [MetricChange(m, run.aggregates[base][m] or 0.0, run.aggregates[tuned][m] or 0.0) for m in metrics]
    lost = [r.example.line for r in run.results
            if (r.answers[base].scores.fact_recall or 0.0) > (r.answers[tuned].scores.fact_recall or 0.0)]
    return ForgettingReport(run, threshold, changes, lost)


def forgetting_probe(manager: ModelManager, adapter: str, gen_params: GenerationParams | None = None,
                     threshold: float = 0.1, prompt: PromptSpec | None = None, batch_size: int = 8,
                     progress: Progress | None = None, cancel: threading.Event | None = None,
                     examples: list[EvalExample] | None = None) -> ForgettingReport:
    """Run the probe through the base and `adapter` (same prompt, params and seed) and compare them.

    Raises what `evaluate` raises (no model, adapter not attached...).
    """
    if not adapter:
        raise StudioError("The forgetting probe needs a tuned adapter to compare with the base.", "attach and pick an adapter.")
    variants = [Variant(BASE_VARIANT, None, prompt), Variant(TUNED_VARIANT, adapter, prompt)]
    run = evaluate(manager, examples or load_probe(), variants, gen_params, batch_size=batch_size, progress=progress,
                   cancel=cancel, name=f"forgetting-{adapter}", dataset=str(PROBE_FILE.name))
    return compare_forgetting(run, threshold)
