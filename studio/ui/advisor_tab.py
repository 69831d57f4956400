"""Advisor tab: the decision framework as a tool (which rung of the escalation ladder, and why, checked against
the workspace's evaluation runs) and a memory calculator for full fine-tuning, LoRA and QLoRA on a real model."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.config import field_help
from studio.core.advisor import LABELS, Answers, Recommendation
from studio.core.training.params import TrainParams
from studio.errors import StudioError
from studio.ui.widgets import (
    HIDDEN, count, model_choices, short_name, size, slider, target_module_choices, user_errors)

if TYPE_CHECKING:
    from studio.services import Services

INTRO = ("Which method does your use case need? Climb the **escalation ladder** only as far as you must: "
         "prompting is the baseline, **RAG** changes what the model *knows*, fine-tuning (**PEFT**, then **full**) "
         "changes how it *behaves*, and the rungs combine. Answer the questions, then check the advice against your own "
         "evaluation runs and what each fine-tuning method costs in memory.")
CHOICES: dict[str, list[tuple[str, str]]] = {
    "gap": [("Knowledge (facts)", "knowledge"), ("Behaviour (format, tone, skill)", "behaviour"), ("Both", "both"),
            ("Unsure", "unsure")],
    "facts_change": [("Rarely", "rarely"), ("Monthly", "monthly"), ("Daily", "daily")],
    "dataset_size": [("None", "none"), ("Fewer than 100", "<100"), ("100-1000", "100-1000"), ("More than 1000", ">1000")],
    "latency": [("Strict", "strict"), ("Moderate", "moderate"), ("No limit", "none")],
    "hardware": [("CPU only", "cpu"), ("GPU under 12 GB", "gpu-small"), ("GPU 12 GB or more", "gpu-large")],
}
QUESTIONS = {"gap": "What does the base model lack?", "facts_change": "How often do the facts change?",
             "dataset_size": "How many labelled examples do you have?", "citations": "Answers must cite their sources",
             "latency": "Latency and cost limit", "hardware": "Hardware for training"}
LADDER = (("prompting", "Prompting", "system prompt, few-shot"), ("rag", "RAG", "retrieve your documents"),
          ("peft", "PEFT", "LoRA / QLoRA adapter"), ("full", "Full fine-tuning", "every weight"))
MEMORY_HEADERS = ["Method", "Trainable params", "Trainable share", "Weights", "Gradients", "Optimizer", "Activations",
                  "Total", "Fits this machine"]
PARTS = (("weights", "#6366f1"), ("gradients", "#f59e0b"), ("optimizer", "#ef4444"), ("activations", "#10b981"))
GPU_SMALL = 12 * 2**30


def build_advisor_tab(services: Services) -> gr.Tab:
    """The Advisor panel: questionnaire → recommendation (api "recommend"), memory calculator (api "memory")."""
    on = AdvisorHandlers(services)
    with gr.Tab("Advisor") as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340):
                answers = _questionnaire(detected_hardware(services.runtime.memory()))
                recommend = gr.Button("Recommend", variant="primary")
            with gr.Column(scale=3, min_width=420):
                ladder = gr.HTML(ladder_html(None), elem_id="advisor-ladder")
                advice = gr.Markdown("Answer the questions and press **Recommend**.", elem_id="advisor-recommendation")
        calc = _calculator(on.default_model)

    recommend.click(on.recommend, None, [ladder, advice], inputs_kwargs=answers, api_name="recommend")
    # The lookup and Calculate may run at once (a model typed, then Calculate): Services resolved transformers'
    # lazy names at start-up, whose first import from two threads at once had failed here.
    calc["run"].click(on.memory, [calc["model"], calc["rank"], calc["targets"], calc["batch_size"], calc["seq_len"]],
                      [calc["table"], calc["verdicts"], calc["plot"]], api_name="memory")
    calc["model"].change(on.modules, calc["model"], calc["targets"], show_progress="hidden", **HIDDEN)
    tab.select(on.show, calc["model"], calc["model"], show_progress="hidden", **HIDDEN)
    return tab


def _questionnaire(hardware: str) -> dict[str, Any]:
    gr.Markdown("### 1. Your use case")
    defaults, inputs = Answers(), {}
    for name in ("gap", "facts_change", "dataset_size", "latency", "hardware"):
        info = field_help(Answers, name) + (" Pre-set from this machine." if name == "hardware" else "")
        inputs[name] = gr.Radio(CHOICES[name], value=hardware if name == "hardware" else getattr(defaults, name),
                                label=QUESTIONS[name], info=info)
        if name == "dataset_size":
            inputs["citations"] = gr.Checkbox(defaults.citations, label=QUESTIONS["citations"],
                                              info=field_help(Answers, "citations"))
    return inputs


def _calculator(default_model: Any) -> dict[str, Any]:
    gr.Markdown("### 2. What fine-tuning costs in memory\nFull fine-tuning, LoRA and QLoRA on the model's real layer "
                "shapes (read from its config; no weights are loaded), compared with this machine's free memory.")
    with gr.Row(equal_height=False):
        model = gr.Dropdown([], value=default_model, allow_custom_value=True, label="Model", scale=3,
                            info="Hub id or local model folder (defaults to the loaded model). Offline, a hub id must "
                                 "already be in the Hugging Face cache.")
        targets = gr.Dropdown(["all-linear"], value=["all-linear"], multiselect=True, allow_custom_value=True, scale=2,
                              label="Target modules", info=field_help(TrainParams, "target_modules"))
    with gr.Row(equal_height=False):
        rank = slider(TrainParams, "lora_r", "LoRA rank r", maximum=256)
        batch_size = slider(TrainParams, "per_device_batch_size", "Batch size", maximum=64)
        seq_len = gr.Number(1024, label="Sequence length (tokens)", minimum=16, maximum=131072, step=16, precision=0,
                            info="Tokens per example (padded batch length); activations grow with batch × length.")
    run = gr.Button("Calculate memory", variant="primary")
    table = gr.Dataframe(headers=MEMORY_HEADERS, value=[], interactive=False, label="Training memory by method",
                         elem_id="advisor-memory")
    with gr.Row(equal_height=False):
        verdicts = gr.Markdown(elem_id="advisor-verdicts")
        plot = gr.Plot(label="Memory by what holds it", elem_id="advisor-plot")
    return {"model": model, "targets": targets, "rank": rank, "batch_size": batch_size, "seq_len": seq_len, "run": run,
            "table": table, "verdicts": verdicts, "plot": plot}


# Handlers ------------------------------------------------------------------------------------------------------
class AdvisorHandlers:
    """Each handler calls the advisor core once and renders its result; StudioErrors become popups."""

    def __init__(self, services: Services) -> None:
        self.runtime, self.workspace = services.runtime, services.workspace

    def recommend(self, **values: Any) -> tuple[str, str]:
        from studio.core.advisor import load_evaluations, recommend

        with user_errors():
            answers = Answers(**values)
        runs = load_evaluations(self.workspace)
        rec = recommend(answers, runs)
        return ladder_html(rec), recommendation_markdown(rec, [r.name for r in runs], self.workspace.evals_dir)

    def memory(self, model: str | None, rank: float, target_modules: list[str] | str | None, batch_size: float,
               seq_len: float | None) -> tuple[Any, str, Any]:
        from studio.core.advisor import memory_table

        with user_errors():
            model = (model or "").strip()
            if not model:
                raise StudioError("No model given.", "pick the loaded model, or type a hub id or a local model folder.")
            if seq_len is None:
                raise StudioError("The sequence length is empty.", "enter the tokens per example, e.g. 1024.")
            rows = memory_table(model, int(rank), _targets(target_modules), int(batch_size), int(seq_len),
                                memory=self.runtime.memory())
        return memory_rows(rows), verdicts_markdown(rows, model), memory_figure(rows)

    def modules(self, model: str | None) -> Any:
        """The target-module picker offers the model's own linear layers (all-linear alone while it cannot resolve)."""
        return target_module_choices(model)

    def show(self, current: str | None) -> Any:
        """Fresh model choices when the tab opens; an empty picker takes the loaded model."""
        models = model_choices(self.runtime, self.workspace)
        return gr.update(choices=models, value=current or (models[0] if models else None))

    def default_model(self) -> str | None:
        models = model_choices(self.runtime, self.workspace)
        return models[0] if models else None


def _targets(value: list[str] | str | None) -> str | list[str]:
    chosen = [value] if isinstance(value, str) else list(value or [])
    return "all-linear" if not chosen or "all-linear" in chosen else chosen


def detected_hardware(memory: dict[str, int]) -> str:
    """The questionnaire's hardware answer for this machine: cpu, gpu-small (under 12 GB) or gpu-large."""
    if "cuda_total" not in memory:
        return "cpu"
    return "gpu-small" if memory["cuda_total"] < GPU_SMALL else "gpu-large"


# Renderers (pure) ------------------------------------------------------------------------------------------------
def ladder_html(rec: Recommendation | None) -> str:
    """The escalation ladder left to right, the recommended rung(s) highlighted and marked in words."""
    chosen = {"peft" if r in ("lora", "qlora") else r: r for r in (rec.rungs if rec else [])}
    steps = []
    for key, title, note in LADDER:
        picked = key in chosen
        if picked and key == "peft":
            title = f"PEFT: {LABELS[chosen[key]]}"
        style = ("background:var(--color-accent);color:#fff;border:2px solid var(--color-accent);font-weight:600" if picked
                 else "border:1px dashed var(--border-color-primary);opacity:.6")
        mark = "<div style='font-size:.8em'>✔ recommended</div>" if picked else ""
        steps.append(f"<div class='advisor-rung{' picked' if picked else ''}' style='flex:1;padding:.6em;border-radius:8px;"
                     f"text-align:center;{style}'><div>{html.escape(title)}</div>"
                     f"<div style='font-size:.8em'>{html.escape(note)}</div>{mark}</div>")
    arrow = "<div style='align-self:center;opacity:.6'>→</div>"
    return f"<div style='display:flex;gap:.4em;margin-bottom:.5em'>{arrow.join(steps)}</div>"


def recommendation_markdown(rec: Recommendation, runs: list[str], evals_dir: Any) -> str:
    """The label, the reasons, and the evidence from evaluation runs (or how to get some)."""
    lines = [f"### Recommendation: {rec.label}"]
    if rec.overruled:
        lines.append("*Your evaluation numbers changed the questionnaire's answer (see below).*")
    lines += ["", "**Why**", "", *(f"- {r}" for r in rec.reasons), ""]
    if not runs:
        lines.append(f"**No evaluation runs yet** (in `{evals_dir}`), so this rests on your answers alone. To back it with "
                     "numbers, score the base model, a prompt, RAG and your adapter on a held-out set in the **Evaluate** "
                     "tab (or `studio eval`): the newest runs are read here and confirm or overrule this advice.")
    elif not rec.evidence:
        lines.append(f"**Evaluation runs read:** {_names(runs)}. None compares a RAG or fine-tuned variant with the base "
                     "model or a prompt, so they say nothing about this choice yet: add the base or prompt variant and "
                     "the variant you want to judge, and run it again in the Evaluate tab.")
    else:
        lines += [f"**Evidence from your evaluations** (newest first; runs read: {_names(runs)})", "",
                  *(f"- {e}" for e in rec.evidence)]
    return "\n".join(lines)


def _names(runs: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in runs)


def memory_rows(rows: list[Any]) -> list[list[str]]:
    """One table row per method: trainable parameters (exact) and memory by what holds it."""
    return [[LABELS[r.method], f"{r.params.trainable:,}", f"{r.params.fraction:.2%}",
             *(size(int(getattr(r.memory, part))) for part, _ in PARTS), size(int(r.memory.total)),
             "✔ fits" if r.fits else "✘ will not fit"] for r in rows]


def verdicts_markdown(rows: list[Any], model: str) -> str:
    total = rows[0].params.total if rows else 0
    lines = [f"`{short_name(model)}`: {count(total)} parameters. AdamW keeps 16 bytes per trained parameter "
             "(weight, gradient, two moments); compute is fp32 on CPU, 16-bit on a GPU.", ""]
    lines += [f"- **{LABELS[r.method]}**: {'✔' if r.fits else '✘'} {r.verdict}" for r in rows]
    return "\n".join(lines)


def memory_figure(rows: list[Any]) -> Any:
    """A stacked bar per method: weights, gradients, optimizer state and activations in GiB."""
    import plotly.graph_objects as go

    fig = go.Figure()
    methods = [LABELS[r.method] for r in rows]
    for part, colour in PARTS:
        fig.add_bar(name=part, x=methods, y=[getattr(r.memory, part) / 2**30 for r in rows], marker_color=colour)
    fig.update_layout(barmode="stack", height=320, yaxis_title="GiB", margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      legend={"orientation": "h", "x": 0.5, "xanchor": "center", "y": -0.12})  # clear of the plot's label
    return fig
