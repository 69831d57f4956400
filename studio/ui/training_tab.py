"""Training tab: check a dataset, pick a method, launch a run in a worker process, watch it live, stop or resume it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import gradio as gr

from studio.config import field_help
from studio.core.datasets import DataParams
from studio.core.training.params import Method, RunConfig, TrainParams
from studio.errors import StudioError
from studio.ui import training_views as views
from studio.ui.adapters_panel import build_adapters_panel
from studio.ui.widgets import (
    HIDDEN, memory_markdown, merge_inputs, model_choices, slider, target_module_choices, user_errors)

if TYPE_CHECKING:
    from studio.services import Services

INTRO = ("Fine-tuning changes **behaviour**: format, tone, skill. Check your dataset exactly as the model will see it, "
         "pick a method (QLoRA needs the least memory), and watch the run live. Each run trains in its own process, "
         "so the studio keeps serving chats, and a crash or out-of-memory cannot take it down.")
SAMPLE_TRAIN = Path(__file__).resolve().parents[2] / "sample_data" / "train.jsonl"


def build_training_tab(services: Services) -> gr.Tab:
    on = TrainingHandlers(services)
    with gr.Tab("Training") as tab:
        gr.Markdown(INTRO)
        if services.training.interrupted:
            gr.Markdown(f"**Interrupted when the studio stopped:** {', '.join(services.training.interrupted)}. "
                        "Pick one below and press Resume to continue from its last checkpoint.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=360):
                data = _data_panel(on.default_model)
            with gr.Column(scale=3, min_width=340):
                params, name, estimate, estimate_md, start = _method_panel()
            with gr.Column(scale=4, min_width=420):
                live = _runs_panel()
        build_adapters_panel(services, refresh_on=[tab.select, live["run"].change])
        timer = gr.Timer(1.0)

    train = {f"train_{k}": v for k, v in params.items()}
    launch_inputs = [data["model"], data["dataset"], data["validation"], data["val_ratio"], name]
    data["upload"].upload(lambda f: f, data["upload"], data["dataset"], **HIDDEN)
    data["sample"].click(lambda: str(SAMPLE_TRAIN), None, data["dataset"], **HIDDEN)
    check_inputs = [data["model"], data["dataset"], data["eval_file"], data["max_length"], data["example"]]
    data["check"].click(on.check, check_inputs, [data["report"], data["lengths"], data["preview"]],
                        inputs_kwargs=train, api_name="training_check_data")
    gr.on([data["example"].submit, params["train_on_prompt"].change], on.preview,
          [data["model"], data["dataset"], data["example"], params["train_on_prompt"]], data["preview"], **HIDDEN)
    estimate.click(on.estimate, launch_inputs, estimate_md, inputs_kwargs=merge_inputs(train, {"max_len": data["max_length"]}),
                   api_name="training_estimate")
    start.click(on.start, launch_inputs, [live["run"], estimate_md], inputs_kwargs=merge_inputs(train, {"max_len": data["max_length"]}),
                api_name="training_start")
    view = [live["status"], live["plot"], live["samples"], live["log"], live["memory"], live["table"]]
    live["run"].change(on.refresh, [live["run"], live["overlay"]], view, show_progress="hidden", **HIDDEN)
    live["overlay"].change(on.refresh, [live["run"], live["overlay"]], view, show_progress="hidden", **HIDDEN)
    timer.tick(on.tick, [live["run"], live["overlay"]], view, show_progress="hidden", **HIDDEN)
    live["stop"].click(on.stop, live["run"], live["status"], api_name="training_stop")
    live["resume"].click(on.resume, live["run"], live["status"], api_name="training_resume")
    live["delete"].click(on.delete, [live["run"], live["confirm"]], [live["run"], live["confirm"]], api_name="training_delete")
    tab.select(on.show, live["run"], [data["model"], live["run"], live["overlay"]], show_progress="hidden", **HIDDEN)
    data["model"].change(on.modules, data["model"], params["target_modules"], show_progress="hidden", **HIDDEN)
    return tab


# Layout ----------------------------------------------------------------------------------------------------------
def _data_panel(default_model: Any) -> dict[str, Any]:
    gr.Markdown("### 1. Model and data")
    model = gr.Dropdown([], value=default_model, allow_custom_value=True, label="Base model",
                        info="Hub id or local folder to fine-tune (defaults to the loaded model). The run loads its own "
                             "copy in the worker process.")
    upload = gr.File(label="Training data (.jsonl / .json)", file_types=[".jsonl", ".json"], height=100)
    dataset = gr.Textbox(label="Dataset path", placeholder="/path/to/train.jsonl",
                         info="Filled by the upload, or type a path. Formats: messages, ShareGPT, Alpaca, prompt/completion.")
    sample = gr.Button("Use the sample dataset (house JSON support answers)", size="sm", visible=SAMPLE_TRAIN.is_file())
    with gr.Accordion("Validation, length and decontamination", open=False):
        validation = gr.Textbox(label="Validation file (optional)", placeholder="empty = hold out a share of the training data")
        val_ratio = slider(DataParams, "val_ratio", "Validation share")
        max_length = gr.Number(0, label="Max length (tokens)", precision=0, minimum=0,
                               info="Longest example in tokens; 0 = the dataset's suggested length (its 95th percentile).")
        eval_file = gr.Textbox(label="Evaluation file to check for overlap (optional)",
                               info="Training examples that share an n-gram with it are listed: a held-out set must not leak.")
    check = gr.Button("Check dataset", variant="primary")
    report = gr.Markdown(elem_id="training-report")
    lengths = gr.Plot(label="Example lengths")
    example = gr.Number(1, label="Preview example number", precision=0, minimum=1,
                        info="Press Enter to show another example as the model is trained on it.")
    preview = gr.HTML(elem_id="training-preview")
    return {"model": model, "upload": upload, "dataset": dataset, "sample": sample, "validation": validation,
            "val_ratio": val_ratio, "max_length": max_length, "eval_file": eval_file, "check": check, "report": report,
            "lengths": lengths, "example": example, "preview": preview}


def _method_panel() -> tuple[Any, ...]:
    gr.Markdown("### 2. Method")
    defaults = TrainParams()
    params: dict[str, Any] = {
        "method": gr.Radio(list(get_args(Method)), value=defaults.method, label="Method", info=field_help(TrainParams, "method")),
        "learning_rate": gr.Number(0, label="Learning rate", minimum=0, maximum=1e-2,
                                   info="Peak learning rate; 0 = the method's default (2e-4 for QLoRA, 1e-4 otherwise)."),
        "target_modules": gr.Dropdown(["all-linear"], value=["all-linear"], multiselect=True, allow_custom_value=True,
                                      label="Target modules", info="Layers that get LoRA: all-linear, or pick from the "
                                      "model's own linear layers (listed once a base model is picked)."),
    }
    labels = {"lora_r": "LoRA rank r", "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout", "epochs": "Epochs",
              "per_device_batch_size": "Batch size", "gradient_accumulation": "Gradient accumulation",
              "warmup_ratio": "Warm-up share", "num_virtual_tokens": "Virtual tokens (prompt tuning)",
              "logging_steps": "Log every (steps)", "eval_steps": "Evaluate every (steps)", "save_steps": "Checkpoint every (steps)",
              "max_steps": "Max steps"}
    limits = {"lora_r": 128, "lora_alpha": 256, "per_device_batch_size": 64, "gradient_accumulation": 64,
              "num_virtual_tokens": 100, "logging_steps": 100, "eval_steps": 1000, "save_steps": 1000, "max_steps": 10000}
    for key in ("lora_r", "lora_alpha", "lora_dropout", "epochs", "per_device_batch_size", "gradient_accumulation"):
        params[key] = slider(TrainParams, key, labels[key], maximum=limits.get(key))
    with gr.Accordion("More options", open=False):
        for key in ("use_rslora", "use_dora", "group_by_length", "train_on_prompt", "gradient_checkpointing"):
            params[key] = gr.Checkbox(getattr(defaults, key), label=key.replace("_", " ").replace("use ", "").capitalize(),
                                      info=field_help(TrainParams, key))
        for key in ("warmup_ratio", "num_virtual_tokens", "logging_steps", "eval_steps", "save_steps", "max_steps"):
            params[key] = slider(TrainParams, key, labels[key], maximum=limits.get(key))
        params["seed"] = gr.Number(defaults.seed, label="Seed", precision=0, info=field_help(TrainParams, "seed"))
    name = gr.Textbox(label="Run name", placeholder="empty = model name and time", info=field_help(RunConfig, "name"))
    with gr.Row():
        estimate = gr.Button("Estimate memory")
        start = gr.Button("Start training", variant="primary")
    estimate_md = gr.Markdown(elem_id="training-estimate")
    return params, name, estimate, estimate_md, start


def _runs_panel() -> dict[str, Any]:
    gr.Markdown("### 3. Runs")
    run = gr.Dropdown([], value=None, allow_custom_value=True, label="Run", elem_id="training-run",
                      info="Live view of the picked run; it comes back after a page reload.")
    status = gr.HTML(elem_id="training-status")
    with gr.Row():
        stop = gr.Button("Stop (saves the adapter)", variant="stop", size="sm")
        resume = gr.Button("Resume", size="sm")
    plot = gr.Plot(label="Loss and learning rate")
    overlay = gr.Dropdown([], value=[], multiselect=True, label="Overlay other runs' curves")
    samples = gr.Markdown(elem_id="training-samples")
    memory = gr.Markdown()
    log = gr.Textbox(label="Log (last lines)", lines=8, max_lines=8, interactive=False, autoscroll=True)
    table = gr.Dataframe(headers=views.RUN_HEADERS, value=[], interactive=False, label="All runs", max_height=260)
    with gr.Accordion("Delete a run", open=False):
        confirm = gr.Textbox(label="Type the run's name to delete it (its adapter goes too)")
        delete = gr.Button("Delete run", variant="stop", size="sm")
    return {"run": run, "status": status, "stop": stop, "resume": resume, "plot": plot, "overlay": overlay,
            "samples": samples, "memory": memory, "log": log, "table": table, "confirm": confirm, "delete": delete}


# Handlers ----------------------------------------------------------------------------------------------------------
class TrainingHandlers:
    """Each handler calls the training or data services and renders the result; nothing trains in this process."""

    def __init__(self, services: Services) -> None:
        self.training, self.runtime, self.workspace = services.training, services.runtime, services.workspace
        self._checks: dict[tuple[str, str], Any] = {}  # (dataset, model) -> DataCheck, for the preview
        self._drawn: dict[tuple[str, tuple[str, ...]], int] = {}  # what the plot last showed, to skip redraws
        self._guard = threading.Lock()

    # Data ---------------------------------------------------------------------------------------------------
    def check(self, model: str, dataset: str, eval_file: str, max_len: float | None, example: float | None,
              **values: Any) -> tuple[Any, ...]:
        from studio.core.training.planning import check_data

        with user_errors():
            if not (dataset or "").strip():
                raise StudioError("No dataset given.", "upload a .jsonl/.json file or type its path.")
            params = DataParams(max_length=int(max_len) if max_len else DataParams().max_length,
                                train_on_prompt=bool(values["train_train_on_prompt"]))
            check = check_data(dataset.strip(), model, params, (eval_file or "").strip() or None)
        with self._guard:
            self._checks[(dataset.strip(), check.model)] = check
        preview = self._preview(check, example, params.train_on_prompt) if check.report.examples else ""
        return views.report_markdown(check), views.length_figure(check), preview

    def preview(self, model: str, dataset: str, example: float | None, train_on_prompt: bool) -> str:
        with self._guard:
            check = self._checks.get(((dataset or "").strip(), (model or "").strip()))
        if check is None:
            return "<p>Press <b>Check dataset</b> first.</p>"
        with user_errors():
            return self._preview(check, example, train_on_prompt)

    @staticmethod
    def _preview(check: Any, example: float | None, train_on_prompt: bool) -> str:
        from studio.core.training.planning import preview

        index = int(example or 1) - 1
        segments, eos = preview(check, index, train_on_prompt)
        return views.preview_html(segments, eos, index + 1, len(check.report.examples))

    # Launching ---------------------------------------------------------------------------------------------------
    def _config(self, model: str, dataset: str, validation: str, val_ratio: float, name: str,
                values: dict[str, Any]) -> RunConfig:
        train = {k.removeprefix("train_"): v for k, v in values.items() if k.startswith("train_")}
        train["max_length"] = int(values["max_len"]) if values.get("max_len") else None
        train["learning_rate"] = train["learning_rate"] or None
        targets = train["target_modules"] or ["all-linear"]
        train["target_modules"] = "all-linear" if "all-linear" in targets else targets
        if train["seed"] is None:
            raise StudioError("The seed is empty.", "enter a whole number (0 is fine).")
        return RunConfig(model=model or "", dataset=(dataset or "").strip(), validation=(validation or "").strip() or None,
                         val_ratio=val_ratio, name=(name or "").strip(), train=TrainParams(**train))

    def estimate(self, model: str, dataset: str, validation: str, val_ratio: float, name: str, **values: Any) -> str:
        from studio.core.training.estimate import estimate_run
        from studio.core.training.planning import fit_verdict

        with user_errors():
            config = self._config(model, dataset or "-", validation, val_ratio, name, values)
            counts, memory = estimate_run(config)
        fits, verdict = fit_verdict(memory.total, self.runtime.memory())
        return views.estimate_markdown(counts, memory, fits, verdict)

    def start(self, model: str, dataset: str, validation: str, val_ratio: float, name: str, **values: Any) -> tuple[Any, ...]:
        with user_errors():
            config = self._config(model, dataset, validation, val_ratio, name, values)
            run = self.training.start(config)
        gr.Info(f"Run {run!r} started in its own process. Its curves appear below as it logs.")
        return gr.update(choices=self._names(), value=run), views.started_markdown(run, config)

    # Live view -------------------------------------------------------------------------------------------------------
    def refresh(self, run: str | None, overlay: list[str] | None) -> tuple[Any, ...]:
        return self._view(run, overlay or [], force=True)

    def tick(self, run: str | None, overlay: list[str] | None) -> tuple[Any, ...]:
        return self._view(run, overlay or [], force=False)

    def _view(self, run: str | None, overlay: list[str], force: bool) -> tuple[Any, ...]:
        memory = memory_markdown(self.runtime.memory())
        runs = self.training.runs()
        names = [r.name for r in runs]
        metrics = {n: self.training.metrics(n) for n in dict.fromkeys([*([run] if run in names else []), *overlay]) if n in names}
        table = views.run_rows(runs, metrics)
        if not run or run not in names:
            return ("<p>No run picked. Start one, or pick one from the list.</p>", views.loss_figure({}), "", "", memory, table)
        from studio.core.training.samples import read_samples

        status = self.training.status(run)
        key, size = (run, tuple(overlay)), sum(len(rows) for rows in metrics.values())
        with self._guard:
            redraw = force or self._drawn.get(key) != size
            self._drawn[key] = size
        plot = views.loss_figure(metrics) if redraw else gr.update()
        samples = views.samples_markdown(read_samples(self.training.run_dir(run)))
        return (views.status_html(run, status, metrics.get(run, [])), plot, samples, self.training.log(run, 30), memory, table)

    def modules(self, model: str | None) -> Any:
        """The target-module picker offers the picked model's real linear layers."""
        return target_module_choices(model)

    def show(self, current: str | None) -> tuple[Any, ...]:
        """Refresh pickers when the tab opens; re-attach to a running run (e.g. after a page reload).

        The model picker gets new choices but keeps its value: this answer can arrive after the user typed one.
        """
        runs = self.training.runs()
        names = [r.name for r in runs]
        running = [r.name for r in runs if r.status.active]
        value = current if current in names else (running[0] if running else (names[0] if names else None))
        return (gr.update(choices=model_choices(self.runtime, self.workspace)), gr.update(choices=names, value=value),
                gr.update(choices=names))

    def default_model(self) -> str | None:
        """The picker's value on page load: the loaded model, else the most recently used one."""
        models = model_choices(self.runtime, self.workspace)
        return models[0] if models else None

    def _names(self) -> list[str]:
        return [r.name for r in self.training.runs()]

    # Control -------------------------------------------------------------------------------------------------------
    def stop(self, run: str) -> str:
        with user_errors():
            status = self.training.stop(self._required(run))
        gr.Info("Stop requested: the worker finishes its current step and saves the adapter.")
        return views.status_html(run, status, self.training.metrics(run))

    def resume(self, run: str) -> str:
        with user_errors():
            self.training.resume(self._required(run))
        return views.status_html(run, self.training.status(run), self.training.metrics(run))

    def delete(self, run: str, confirm: str) -> tuple[Any, ...]:
        with user_errors():
            if (confirm or "").strip() != self._required(run):
                raise StudioError(f"To delete run {run!r}, type its name in the box first.",
                                  "type the exact name; this deletes its checkpoints and adapter.")
            self.training.delete(run)
        names = self._names()
        return gr.update(choices=names, value=names[0] if names else None), ""

    @staticmethod
    def _required(run: str | None) -> str:
        if not run:
            raise StudioError("No run picked.", "pick a run in the list first.")
        return run
