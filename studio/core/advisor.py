"""The decision advisor: which rung of the escalation ladder a use case needs, and why, in plain English.

The ladder is prompting → RAG → PEFT (LoRA/QLoRA) → full fine-tuning, and rungs combine (RAG + LoRA).
The studio's thesis decides the questionnaire's answer: fine-tuning changes behaviour (format, tone,
skill), RAG changes knowledge (facts, freshness, citations), and prompting is the baseline every
other method must beat. Behaviour without knowledge is fluent and wrong; knowledge without behaviour
is right and off-brand.

Saved evaluation runs (studio/core/evaluation/store.py) then confirm or overrule it: a fine-tune that
does not beat the prompt baseline by MARGIN on the held-out set has not earned its complexity, and a
variant that does beat it earns its rung even if the questionnaire did not ask for it.

`memory_table` puts numbers on the fine-tuning rungs: full, LoRA and QLoRA memory for a real model's
layer shapes (training/estimate.py) and whether each fits this machine (training/planning.fit_verdict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from studio.config import check_choice, param_field

if TYPE_CHECKING:
    from studio.core.evaluation.runner import EvaluationRun, Variant
    from studio.core.training.estimate import MemoryEstimate, ParamCount

Gap = Literal["knowledge", "behaviour", "both", "unsure"]
FactsChange = Literal["rarely", "monthly", "daily"]
DatasetSize = Literal["none", "<100", "100-1000", ">1000"]
Latency = Literal["strict", "moderate", "none"]
Hardware = Literal["cpu", "gpu-small", "gpu-large"]
Rung = Literal["prompting", "rag", "lora", "qlora", "full"]

MARGIN = 0.05  # absolute gain on a 0-1 metric that counts as "clearly beats"
EARNED = ("If the fine-tune does not clearly beat a well-prompted base model on your held-out set, "
          "you have not yet earned the complexity.")
KNOWLEDGE_METRICS = ("fact_recall",)
BEHAVIOUR_METRICS = ("schema_valid", "json_valid", "rouge_l", "exact_match")
METRIC_NAMES = {"fact_recall": "fact recall", "schema_valid": "schema validity", "json_valid": "JSON validity",
                "rouge_l": "ROUGE-L", "exact_match": "exact match"}
SIZES = {"none": "no", "<100": "fewer than 100", "100-1000": "100-1000", ">1000": "more than 1000"}
LABELS = {"prompting": "Prompting", "rag": "RAG", "lora": "LoRA", "qlora": "QLoRA", "full": "Full fine-tuning"}


@dataclass
class Answers:
    """The questionnaire. Every field is a choice; a bad value raises ConfigError naming the field."""

    gap: str = param_field("unsure", "What the base model lacks: knowledge (facts it does not know, or that change) or "
                           "behaviour (format, tone, skill); both; or unsure.")
    facts_change: str = param_field("rarely", "How often the facts it must know change: rarely, monthly or daily.")
    dataset_size: str = param_field("none", "Labelled examples of the behaviour you want (input → ideal answer): "
                                    "none, <100, 100-1000 or >1000.")
    citations: bool = param_field(False, "Must answers point at their sources?")
    latency: str = param_field("moderate", "Your limit on latency and cost per request: strict, moderate or none.")
    hardware: str = param_field("cpu", "Where you would train: cpu, gpu-small (under 12 GB) or gpu-large.")

    def __post_init__(self) -> None:
        for name, kind in (("gap", Gap), ("facts_change", FactsChange), ("dataset_size", DatasetSize),
                           ("latency", Latency), ("hardware", Hardware)):
            check_choice(self, name, get_args(kind))
        self.citations = bool(self.citations)


@dataclass
class Recommendation:
    """What to do: the rungs (in ladder order), their label ("RAG + LoRA"), and why."""

    rungs: list[str]
    reasons: list[str]
    evidence: list[str] = field(default_factory=list)  # one sentence per comparison read from evaluation runs
    overruled: bool = False  # the evaluation numbers changed the questionnaire's answer

    @property
    def label(self) -> str:
        return " + ".join(LABELS[r] for r in self.rungs)

    def text(self) -> str:
        lines = [f"Recommendation: {self.label}", *(f"- {r}" for r in self.reasons)]
        if self.evidence:
            lines += ["Evidence from your evaluations:", *(f"- {e}" for e in self.evidence)]
        return "\n".join(lines)


# Questionnaire ---------------------------------------------------------------------------------------------
def recommend(answers: Answers, evaluations: Sequence[EvaluationRun] | None = None) -> Recommendation:
    """The rung(s) the answers call for, with reasons citing them; then the evaluation runs (newest first,
    e.g. `load_evaluations(workspace)`) confirm or overrule it. Never raises on runs that lack a variant."""
    rungs, reasons = _from_answers(answers)
    rec = Recommendation(rungs, reasons)
    if evaluations:
        _apply_evidence(rec, answers, list(evaluations))
    return rec


def _from_answers(a: Answers) -> tuple[list[str], list[str]]:
    reasons = ["Prompting is the baseline every other method must beat: write a good system prompt "
               "(and a few examples) first, and score it on a held-out set."]
    knowledge = a.gap in ("knowledge", "both") or a.citations or a.facts_change != "rarely"
    behaviour = a.gap in ("behaviour", "both")
    if a.gap == "unsure":
        reasons.append("You are unsure whether the model lacks knowledge or behaviour: run `studio eval` with the base "
                       "and prompt variants first; low fact recall points to RAG, wrong format or tone to fine-tuning.")
    rungs: list[str] = []
    if knowledge:
        rungs.append("rag")
        reasons += _knowledge_reasons(a)
    if behaviour:
        tuned = _tuning_rung(a)
        reasons += _behaviour_reasons(a, tuned)
        if tuned:
            rungs.append(tuned)
    if not rungs:
        rungs = ["prompting"]
    if a.gap == "both" and len(rungs) == 2:
        reasons.append("You need both: behaviour without knowledge is fluent and wrong; knowledge without behaviour "
                       "is right and off-brand. Train the adapter on prompts that include retrieved context, so it "
                       "learns to use it.")
    if a.latency == "strict" and "rag" in rungs:
        reasons.append("Your latency/cost limit is strict: retrieval adds a search and a longer prompt to every "
                       "request, so keep top-k small and the chunks short.")
    return rungs, reasons


def _knowledge_reasons(a: Answers) -> list[str]:
    why = []
    if a.gap in ("knowledge", "both"):
        why.append(f"The gap is {_gap(a)}: RAG changes what the model knows; fine-tuning facts into weights is costly "
                   "and still hallucinates.")
    if a.facts_change != "rarely":
        why.append(f"Your facts change {a.facts_change}: a knowledge base is re-ingested in minutes, a fine-tune "
                   "would be stale after every change.")
    if a.citations:
        why.append("You need citations: RAG answers from retrieved passages it can point to; a fine-tuned model cannot "
                   "say where a fact came from.")
    return why


def _gap(a: Answers) -> str:
    return "knowledge and behaviour" if a.gap == "both" else a.gap


def _tuning_rung(a: Answers) -> str | None:
    """The fine-tuning rung for a behaviour gap, or None when there is too little data to fine-tune."""
    if a.dataset_size in ("none", "<100"):
        return None
    if a.dataset_size == ">1000" and a.hardware == "gpu-large" and a.gap == "behaviour":
        return "full"
    return "qlora" if a.hardware == "gpu-small" else "lora"


def _behaviour_reasons(a: Answers, tuned: str | None) -> list[str]:
    if tuned is None:
        size = "no examples" if a.dataset_size == "none" else "fewer than 100 examples"
        return [f"The gap is {_gap(a)}, but with {size} a fine-tune would overfit: put a few of them in the prompt "
                "(few-shot) and collect 100+ before training an adapter."]
    why = [f"The gap is {_gap(a)} and you have {SIZES[a.dataset_size]} examples: fine-tuning changes behaviour "
           "(format, tone, skill) in a way prompting only approximates."]
    if tuned == "full":
        why.append("With more than 1000 examples and a large GPU, full fine-tuning is affordable and can learn more "
                   "than a low-rank update; keep a LoRA run as the cheaper comparison.")
    elif tuned == "qlora":
        why.append("Your GPU is small (<12 GB): QLoRA keeps the base in 4-bit and trains only a LoRA adapter.")
    elif a.hardware == "cpu":
        why.append("You train on CPU: LoRA on a small model (QLoRA needs a CUDA GPU); expect hours, not minutes.")
    else:
        why.append("LoRA (PEFT) trains well under 1% of the weights and leaves the base intact, so one base serves "
                   "every adapter.")
    if a.latency == "strict":
        why.append("Your latency/cost limit is strict: a fine-tune moves long instructions and few-shot examples "
                   "out of every prompt and into the weights.")
    return why


# Evaluation evidence ---------------------------------------------------------------------------------------
def load_evaluations(workspace: Any, limit: int = 5) -> list[EvaluationRun]:
    """The newest `limit` saved evaluation runs of `workspace` (a Workspace or its folder); unreadable ones are skipped."""
    from studio.core.evaluation import store
    from studio.errors import StudioError

    runs = []
    for name in store.list_runs(workspace)[:limit]:
        try:
            runs.append(store.load_run(store.evals_dir(workspace) / name))
        except StudioError:
            continue
    return runs


def variant_kind(variant: Variant) -> str:
    """baseline (no adapter, no retrieval), rag, tuned or tuned+rag."""
    if variant.adapter and variant.knowledge_base:
        return "tuned+rag"
    return "tuned" if variant.adapter else ("rag" if variant.knowledge_base else "baseline")


def baseline_of(run: EvaluationRun) -> Variant | None:
    """The variant every other is measured against: a prompted base model, else the bare base model."""
    plain = [v for v in run.variants if variant_kind(v) == "baseline" and run.aggregates.get(v.name, {}).get("n")]
    return next((v for v in plain if v.prompt is not None), plain[0] if plain else None)


def deltas(run: EvaluationRun, name: str, baseline: str) -> dict[str, float]:
    """metric -> (variant - baseline) for the metrics both scored, in KNOWLEDGE then BEHAVIOUR order."""
    ours, theirs = run.aggregates.get(name, {}), run.aggregates.get(baseline, {})
    return {m: ours[m] - theirs[m] for m in (*KNOWLEDGE_METRICS, *BEHAVIOUR_METRICS)
            if ours.get(m) is not None and theirs.get(m) is not None}


def clearly_beats(diff: dict[str, float], metrics: Sequence[str]) -> bool:
    """Gains at least MARGIN on one of `metrics` and loses no more than MARGIN on any scored metric."""
    return any(diff.get(m, 0.0) >= MARGIN for m in metrics) and all(d > -MARGIN for d in diff.values())


def compare_sentence(run: EvaluationRun, name: str, reference: Variant) -> str:
    """Variant `name` against `reference` (the baseline, or e.g. rag for tuned+rag), with every shared metric's gap:
    "tuned+rag beats the prompt baseline by 0.40 on fact recall and 0.50 on schema validity on 20 examples (run 'x')."."""
    diff = deltas(run, name, reference.name)
    who = reference.name
    if variant_kind(reference) == "baseline":
        who = "the prompt baseline" if reference.prompt is not None else "the base model"
    n, where = run.aggregates[name].get("n", len(run.results)), f"(run {run.name!r})"
    if not diff:
        return f"{name} shares no scored metric with {who} on {n} examples {where}."
    parts = [f"{abs(d):.2f} on {METRIC_NAMES[m]}" for m, d in diff.items()]
    if all(d >= 0 for d in diff.values()):
        return f"{name} beats {who} by {_join(parts)} on {n} examples {where}."
    if all(d <= 0 for d in diff.values()):
        return f"{name} trails {who} by {_join(parts)} on {n} examples {where}."
    signed = [f"{d:+.2f} on {METRIC_NAMES[m]}" for m, d in diff.items()]
    return f"{name} against {who} on {n} examples {where}: {_join(signed)}."


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _retrieval_only(run: EvaluationRun) -> Variant | None:
    return next((v for v in run.variants if variant_kind(v) == "rag" and run.aggregates.get(v.name, {}).get("n")), None)


def _apply_evidence(rec: Recommendation, answers: Answers, runs: list[EvaluationRun]) -> None:
    """Cite every run's comparisons; let the newest run that measured a kind decide about its rung."""
    verdicts: dict[str, bool] = {}  # kind -> clearly beats the baseline (newest run first)
    for run in runs:
        baseline = baseline_of(run)
        if baseline is None:
            continue
        for variant in run.variants:
            kind = variant_kind(variant)
            if kind == "baseline" or not run.aggregates.get(variant.name, {}).get("n"):
                continue
            rec.evidence.append(compare_sentence(run, variant.name, baseline))
            reference = baseline
            if kind == "tuned+rag" and (rag := _retrieval_only(run)) is not None:
                # The adapter's own contribution: against the same retrieval without it, or RAG's gain would count.
                reference = rag
                rec.evidence.append(compare_sentence(run, variant.name, rag))
            metrics = {"rag": KNOWLEDGE_METRICS, "tuned": BEHAVIOUR_METRICS}.get(kind, (*KNOWLEDGE_METRICS, *BEHAVIOUR_METRICS))
            verdicts.setdefault(kind, clearly_beats(deltas(run, variant.name, reference.name), metrics))
    tuned_runs = [verdicts[k] for k in ("tuned", "tuned+rag") if k in verdicts]
    tuning = [r for r in rec.rungs if r in ("lora", "qlora", "full")]
    if tuning and tuned_runs and not any(tuned_runs):
        rec.rungs = [r for r in rec.rungs if r not in tuning] or ["prompting"]
        rec.overruled = True
        rec.reasons.append(f"Your evaluation overrules the questionnaire: no fine-tuned variant beats the baseline by "
                           f"{MARGIN:.2f} or more. {EARNED} Stay with {rec.label} and improve the prompt or the data.")
    elif not tuning and any(tuned_runs):
        rung = _tuning_rung(Answers(**{**vars(answers), "gap": "behaviour", "dataset_size": "100-1000"})) or "lora"
        rec.rungs = [r for r in rec.rungs if r != "prompting"] + [rung]
        rec.overruled = True
        rec.reasons.append(f"Your evaluation overrules the questionnaire: a fine-tuned variant beats the baseline by "
                           f"{MARGIN:.2f} or more, so it has earned its complexity; keep {LABELS[rung]}.")
    elif tuning and any(tuned_runs):
        rec.reasons.append("Your evaluation confirms the fine-tune: it beats the baseline on your held-out set.")
    elif tuned_runs:
        rec.reasons.append(f"Your evaluation agrees: the fine-tuned variant does not beat the baseline. {EARNED}")
    if "rag" in verdicts:
        _rag_evidence(rec, verdicts["rag"])


def _rag_evidence(rec: Recommendation, rag_wins: bool) -> None:
    if rag_wins and "rag" not in rec.rungs:
        rec.rungs = ["rag", *(r for r in rec.rungs if r != "prompting")]
        rec.overruled = True
        rec.reasons.append(f"Your evaluation overrules the questionnaire: RAG raises fact recall by {MARGIN:.2f} or more, "
                           "so the model lacks knowledge your documents have.")
    elif rag_wins:
        rec.reasons.append("Your evaluation confirms RAG: it raises fact recall over the baseline.")
    elif "rag" in rec.rungs:
        rec.reasons.append("Your evaluation shows RAG not yet raising fact recall: check retrieval with `studio rag eval` "
                           "(are the right chunks found?) before giving up on it.")


# Memory ---------------------------------------------------------------------------------------------------
@dataclass
class MethodMemory:
    method: str  # full | lora | qlora
    params: ParamCount
    memory: MemoryEstimate
    fits: bool
    verdict: str


def memory_table(model: str, rank: int = 16, target_modules: str | list[str] = "all-linear", batch_size: int = 4,
                 seq_len: int = 1024, device: str = "auto", memory: dict[str, int] | None = None) -> list[MethodMemory]:
    """Full fine-tuning, LoRA and QLoRA on `model`'s real layer shapes (built on the meta device, no weights
    read): trainable parameters, memory by what holds it, and whether it fits `memory` (default: this
    machine's device_memory()). Compute precision follows `device` as training would (fp32 on CPU).
    Raises ModelLoadError when the model cannot be resolved, ConfigError for a bad rank, batch size or seq_len."""
    import torch

    from studio.core import hub
    from studio.core.models import device_memory, pick_device
    from studio.core.training.estimate import count_parameters, estimate_memory
    from studio.core.training.params import RunConfig, TrainParams
    from studio.core.training.planning import fit_verdict

    model_config = hub.resolve(model).config
    text = getattr(model_config, "text_config", None) or model_config
    device = pick_device(device)
    compute = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device == "cuda" else "fp32"
    memory = memory if memory is not None else device_memory()
    rows = []
    for method in ("full", "lora", "qlora"):
        train = TrainParams(method=method, lora_r=rank, lora_alpha=2 * rank, target_modules=target_modules,
                            per_device_batch_size=batch_size, max_length=seq_len)  # validates seq_len too
        counts = count_parameters(RunConfig(model=model, dataset="(estimate)", train=train), model_config)
        estimate = estimate_memory(counts.total, counts.trainable, method, "4bit" if method == "qlora" else compute,
                                   batch_size, seq_len, int(text.hidden_size), int(text.num_hidden_layers),
                                   int(getattr(text, "vocab_size", 0) or 0), compute)
        fits, verdict = fit_verdict(estimate.total, memory)
        rows.append(MethodMemory(method, counts, estimate, fits, verdict))
    return rows


def memory_text(rows: Sequence[MethodMemory]) -> str:
    """The table as aligned text: one line per method."""
    return "\n".join(f"{LABELS[r.method]:<16} {r.params.trainable:>14,} trainable  {r.memory.text()}  · {r.verdict}"
                     for r in rows)
