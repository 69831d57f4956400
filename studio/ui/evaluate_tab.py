"""Evaluate tab: a held-out set through base / prompt / RAG / tuned variants, scored, saved, drilled into, exported.

The numbers are `studio eval`'s: the same variant builder, the same runner, the same cell formatting.
The run happens in this process under the model lock (one batch at a time), in a helper thread so
the page shows progress and a cancel keeps every example all variants finished.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.evaluation.variants import NEEDS_ADAPTER, NEEDS_COLLECTION, VARIANTS, build_variants
from studio.core.evaluation.data import load_examples
from studio.errors import GenerationError, StudioError
from studio.storage.workspace import check_name
from studio.ui import evaluate_views as views
from studio.ui.widgets import HIDDEN, MODEL_EVENTS, generation_inputs, read_generation, user_errors

if TYPE_CHECKING:
    from studio.core.evaluation.runner import EvaluationRun
    from studio.services import Services

INTRO = ("Score a **held-out set** the model never trained on, with every variant answering the same questions under "
         "the same greedy decoding: is the fine-tune better than a good prompt, and is RAG better than both? Runs are "
         "saved in the workspace (`evals/`), the same as `studio eval` writes them.")
SAMPLE_EVAL = Path(__file__).resolve().parents[2] / "sample_data" / "eval.jsonl"
VARIANT_LABELS = {"base": "Base", "prompt": "Base + prompt preset", "rag": "Base + RAG", "tuned": "Tuned (adapter)",
                  "tuned+rag": "Tuned + RAG"}
DEFAULT_VARIANTS = ["base", "prompt"]
DEFAULT_PRESET = ("Playground default prompt", "")
NO_DATA = "No held-out set yet: upload a `.jsonl` file or use the sample evaluation set."


def build_evaluate_tab(services: Services) -> gr.Tab:
    on = EvaluateHandlers(services)
    with gr.Tab("Evaluate") as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=360, elem_id="eval-setup"):
                data = _data_panel()
                pick = _variants_panel()
                job = _run_panel()
            with gr.Column(scale=6, min_width=520):
                with gr.Tab("Scorecard"):
                    shown = _results_panel()
                with gr.Tab("Forgetting probe"):
                    probe = _probe_panel()

    pickers = [pick["preset"], pick["kb"], pick["adapter"], pick["extras"], shown["run"], probe["adapter"]]
    tab.select(on.show, pickers, pickers, show_progress="hidden", **HIDDEN)
    data["upload"].upload(on.check_data, [data["upload"], job["limit"]], [data["path"], data["summary"]], **HIDDEN)
    data["sample"].click(on.use_sample, job["limit"], [data["path"], data["summary"]], api_name="evaluate_use_sample")
    gr.on([data["path"].submit, data["path"].blur, job["limit"].submit], on.check_data, [data["path"], job["limit"]],
          [data["path"], data["summary"]], api_name="evaluate_check_data")
    view = [shown["verdict"], shown["table"], shown["plot"], shown["example"], shown["detail"]]
    job["start"].click(on.evaluate, [data["path"], pick["variants"], pick["preset"], pick["kb"], pick["adapter"],
                                     pick["extras"], job["limit"], job["batch_size"], job["name"]],
                       [job["status"], shown["run"], job["name"], *view], inputs_kwargs=job["gen"], api_name="evaluate",
                       **MODEL_EVENTS)
    job["cancel"].click(on.cancel, None, job["status"], api_name="evaluate_cancel")
    shown["run"].input(on.show_run, shown["run"], view, api_name="evaluate_load_run")
    shown["example"].input(on.show_example, [shown["run"], shown["example"]], shown["detail"], api_name="evaluate_example")
    shown["export"].click(on.export, shown["run"], shown["files"], api_name="evaluate_export")
    probe["start"].click(on.probe, [probe["adapter"], probe["threshold"], job["batch_size"]],
                         [probe["status"], probe["table"]], inputs_kwargs=job["gen"], api_name="evaluate_probe",
                         **MODEL_EVENTS)
    probe["cancel"].click(on.cancel_probe, None, probe["status"], api_name="evaluate_probe_cancel")
    return tab


# Layout ---------------------------------------------------------------------------------------------------
def _data_panel() -> dict[str, Any]:
    gr.Markdown("### 1. Held-out set")
    upload = gr.File(label="Evaluation data (.jsonl / .json)", file_types=[".jsonl", ".json"], height=100)
    path = gr.Textbox(label="Data path", placeholder="/path/to/eval.jsonl",
                      info='One JSON object per line: {"question", "reference"} with optional "facts" (strings a correct '
                           'answer contains) and "schema" (a JSON Schema), or {"messages": [...]} ending with the reference.')
    sample = gr.Button("Use the sample evaluation set (110 support questions)", size="sm", visible=SAMPLE_EVAL.is_file())
    summary = gr.Markdown(NO_DATA, elem_id="eval-data-summary")
    return {"upload": upload, "path": path, "sample": sample, "summary": summary}


def _variants_panel() -> dict[str, Any]:
    gr.Markdown("### 2. Variants")
    variants = gr.CheckboxGroup([(label, key) for key, label in VARIANT_LABELS.items()], value=DEFAULT_VARIANTS,
                                label="Compare", elem_id="eval-variants",
                                info="Each answers every example; Base is the baseline the others must beat.")
    preset = gr.Dropdown([DEFAULT_PRESET], value="", label="Prompt preset (Base + prompt)", allow_custom_value=True,
                         info="A preset saved in the Playground: its system prompt and technique dress each question.")
    kb = gr.Dropdown([], value=None, label="Knowledge base (RAG variants)", allow_custom_value=True,
                     info="Each question is searched in it and answered from the retrieved chunks.")
    adapter = gr.Dropdown([], value=None, label="Tuned adapter", allow_custom_value=True,
                          info="An adapter attached in the Models tab (Tuned and Tuned + RAG).")
    extras = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Extra adapters (each its own variant)",
                         info="Compare several fine-tunes at once; each column is named after its adapter.")
    return {"variants": variants, "preset": preset, "kb": kb, "adapter": adapter, "extras": extras}


def _run_panel() -> dict[str, Any]:
    gr.Markdown("### 3. Run")
    with gr.Row():
        limit = gr.Number(0, label="Limit (first N examples)", minimum=0, precision=0, info="0 = every example.")
        batch_size = gr.Slider(1, 32, value=8, step=1, label="Batch size",
                               info="Prompts generated together; lower it if memory runs out.")
    name = gr.Textbox(label="Run name", placeholder="empty = eval-<date>-<time>",
                      info="Its folder under the workspace's evals/; letters, digits, spaces, . ( ) + - _.")
    gen = generation_inputs(open=False)
    gen["temperature"].value = 0.0  # greedy by default, as `studio eval`: scores must not depend on luck
    with gr.Row():
        start = gr.Button("Run evaluation", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    gr.Markdown("The model answers one request at a time: chats in other tabs wait until the run ends or is cancelled.",
                elem_classes="eval-muted")
    status = gr.Markdown(elem_id="eval-progress")
    return {"limit": limit, "batch_size": batch_size, "name": name, "gen": gen, "start": start, "cancel": cancel,
            "status": status}


def _results_panel() -> dict[str, Any]:
    run = gr.Dropdown([], value=None, label="Evaluation run", elem_id="eval-run", allow_custom_value=True,
                      info="Runs saved in this workspace, newest first; a new run shows here when it ends.")
    verdict = gr.Markdown(elem_id="eval-verdict")
    table = gr.Dataframe(headers=["metric", "best"], value=[], interactive=False, wrap=True, elem_id="eval-table",
                         label="Scorecard (means over the examples; '-' = applies to no example)")
    plot = gr.Plot(views.empty_figure(), label="Each metric per variant (outlined = best)", elem_id="eval-plot")
    gr.Markdown("#### Example by example")
    example = gr.Dropdown([], value=None, label="Example", elem_id="eval-example", allow_custom_value=True)
    detail = gr.HTML(elem_id="eval-detail")
    with gr.Row(equal_height=False):
        export = gr.Button("Export CSV + JSON", size="sm", scale=1)
        files = gr.File(label="Downloads (summary CSV, per-example CSV, JSON)", file_count="multiple", interactive=False,
                        height=120, scale=3)
    return {"run": run, "verdict": verdict, "table": table, "plot": plot, "example": example, "detail": detail,
            "export": export, "files": files}


def _probe_panel() -> dict[str, Any]:
    gr.Markdown("Did the fine-tune cost the model what it knew? The probe asks 32 general-knowledge questions of the "
                "base and of the adapter (same prompt, decoding and seed) and compares fact recall and ROUGE-L. "
                "The generation settings and batch size on the left apply.")
    with gr.Row(equal_height=True):
        adapter = gr.Dropdown([], value=None, label="Adapter to probe", allow_custom_value=True, scale=3)
        threshold = gr.Slider(0.0, 0.5, value=0.1, step=0.01, label="Allowed drop", scale=2,
                              info="A metric falling by more than this (0-1 scale) is a regression.")
    with gr.Row():
        start = gr.Button("Run the forgetting probe", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    status = gr.Markdown(elem_id="eval-probe-status")
    table = gr.Dataframe(headers=views.PROBE_HEADERS, value=[], interactive=False, elem_id="eval-probe-table")
    return {"adapter": adapter, "threshold": threshold, "start": start, "cancel": cancel, "status": status, "table": table}


# Handlers -----------------------------------------------------------------------------------------------------
class EvaluateHandlers:
    """The Evaluate tab's handlers: each checks its inputs, calls the evaluation core and renders what it returns."""

    def __init__(self, services: Services) -> None:
        self.models, self.runtime, self.rag, self.workspace = services.models, services.runtime, services.rag, services.workspace
        self._cancels: dict[str, threading.Event] = {}
        self._runs: dict[str, tuple[float, EvaluationRun]] = {}  # name -> (config mtime, run): drill-down without re-reading
        self._guard = threading.Lock()

    # Pickers and data ---------------------------------------------------------------------------
    def show(self, preset: str | None, kb: str | None, adapter: str | None, extras: list[str] | None, run: str | None,
             probe: str | None) -> tuple[Any, ...]:
        """Fresh choices when the tab opens (adapters attached, knowledge bases, presets, saved runs); picks kept if valid."""
        from studio.core.evaluation import store

        adapters = self.runtime.adapters()
        try:
            kbs = self.rag.names()
        except StudioError:
            kbs = []  # Chroma unavailable: the RAG variants say so when picked
        presets = self.workspace.list_presets()
        runs = store.list_runs(self.workspace)
        return (gr.update(choices=[DEFAULT_PRESET, *presets], value=preset if preset in presets else ""),
                _keep(kbs, kb), _keep(adapters, adapter),
                gr.update(choices=adapters, value=[a for a in extras or [] if a in adapters]),
                gr.update(choices=runs, value=run if run in runs else None), _keep(adapters, probe))

    def check_data(self, path: str | None, limit: float | None) -> tuple[str, str]:
        """(path, summary): what the held-out file holds, or its first unusable lines by number."""
        path = (path or "").strip()
        if not path:
            return "", NO_DATA
        try:
            examples = load_examples(path)
        except StudioError as err:
            return path, views.data_error(err)
        return path, views.data_summary(Path(path).name, examples, int(limit or 0))

    def use_sample(self, limit: float | None) -> tuple[str, str]:
        return self.check_data(str(SAMPLE_EVAL), limit)

    # Running --------------------------------------------------------------------------------------
    def evaluate(self, path: str, kinds: list[str] | None, preset: str, kb: str | None, adapter: str | None,
                 extras: list[str] | None, limit: float | None, batch_size: float, name: str,
                 progress: gr.Progress = gr.Progress(), **values: Any) -> Iterator[tuple[Any, ...]]:
        """Stream progress, then the scorecard of the saved run; a cancel keeps (and saves) the finished examples."""
        from studio.core.evaluation import store
        from studio.core.evaluation.runner import check_variants, evaluate

        unchanged = (gr.update(),) * 7
        with user_errors():
            params = read_generation(values)
            examples, variants, name = self._plan(path, kinds, preset, kb, adapter, extras, limit, name)
            batch = int(batch_size)
            check_variants(self.models, variants, batch)

            def work(tick: Callable[[int, int], None], cancel: threading.Event) -> EvaluationRun:
                return evaluate(self.models, examples, variants, params, self.rag, batch, tick, cancel, name=name,
                                dataset=path.strip())

            total = len(examples) * len(variants)
            yield (views.progress_markdown(0, total, 0.0), *unchanged)
            run = yield from self._background("eval", work, progress, lambda line: (line, *unchanged))
            if not run.results:
                yield ("**Cancelled** before any example finished: nothing was scored or saved; the results below are "
                       "the previous ones.", *unchanged)
                return
            store.save_run(run, self.workspace)
        self._remember(run)
        runs = store.list_runs(self.workspace)
        yield (views.run_status(run, len(examples)), gr.update(choices=runs, value=run.name), "", *self._render(run))

    def _plan(self, path: str, kinds: list[str] | None, preset: str, kb: str | None, adapter: str | None,
              extras: list[str] | None, limit: float | None, name: str) -> tuple[list[Any], list[Any], str]:
        """Every check that needs no model work: the examples, the variants (built as `studio eval` builds them), the name."""
        from studio.core.evaluation import store
        from studio.core.evaluation.runner import Variant

        path, name = (path or "").strip(), (name or "").strip()
        if not path:
            raise StudioError("No held-out set picked.", "upload a .jsonl file, or press 'Use the sample evaluation set'.")
        names = [k for k in VARIANTS if k in (kinds or [])]
        extras = [a for a in dict.fromkeys(extras or []) if a]
        if not names and not extras:
            raise StudioError("No variants picked.", "tick at least one variant; Base is the baseline the others must beat.")
        tuned = [n for n in names if n in NEEDS_ADAPTER]
        if tuned and not adapter:
            raise StudioError(f"{_needs(tuned)} a tuned adapter.",
                              "attach one in the Models tab and pick it under 'Tuned adapter', or untick it.")
        grounded = [n for n in names if n in NEEDS_COLLECTION]
        if grounded and not kb:
            raise StudioError(f"{_needs(grounded)} a knowledge base.",
                              "build one in the RAG tab and pick it under 'Knowledge base', or untick it.")
        if name:
            check_name(name, "Evaluation")
            if name in store.list_runs(self.workspace):
                raise StudioError(f"An evaluation named {name!r} already exists.", "choose another run name, or leave it empty.")
        self._check_model()
        examples = load_examples(path, int(limit) if limit else None)
        variants = build_variants(names, adapter, kb, self._prompt(preset)) + [Variant(a, adapter=a) for a in extras]
        return examples, variants, name

    def _prompt(self, preset: str | None) -> Any:
        from studio.core.prompting import PromptSpec

        if not preset:
            return PromptSpec()
        spec = PromptSpec.from_dict(self.workspace.load_preset(preset).get("prompt", {}))
        return spec.validate()

    def _check_model(self) -> None:
        state = self.runtime.state
        if state.loading:
            raise GenerationError(f"{state.loading} is still loading.", "wait until the header shows it loaded, then run again.")
        if not self.models.is_loaded:
            raise GenerationError("No model is loaded.", "load one in the Models tab, then run the evaluation.")

    def _background(self, job: str, work: Callable[[Callable[[int, int], None], threading.Event], Any],
                    progress: gr.Progress, wrap: Callable[[str], tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """Run `work(tick, cancel)` in a thread, yielding a progress line per tick; returns its result or raises its error.

        If the page goes away (the generator is closed), the work is cancelled at its next token.
        """
        cancel = threading.Event()
        with self._guard:
            self._cancels[job] = cancel
        ticks: queue.Queue[tuple[int, int] | None] = queue.Queue()
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = work(lambda done, total: ticks.put((done, total)), cancel)
            except BaseException as err:  # re-raised in the handler, where user_errors() turns it into a popup
                outcome["error"] = err
            finally:
                ticks.put(None)

        thread = threading.Thread(target=target, name=f"studio-{job}", daemon=True)
        started = time.monotonic()
        thread.start()
        try:
            while (tick := ticks.get()) is not None:
                done, total = tick
                progress((done, total), desc="answers")
                yield wrap(views.progress_markdown(done, total, time.monotonic() - started, cancel.is_set()))
        finally:
            if thread.is_alive():
                cancel.set()
                thread.join()
            with self._guard:
                if self._cancels.get(job) is cancel:
                    del self._cancels[job]
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def _cancel(self, job: str) -> bool:
        with self._guard:
            event = self._cancels.get(job)
        if event is None or event.is_set():
            return False
        event.set()
        return True

    def cancel(self) -> str:
        if self._cancel("eval"):
            return "**Cancelling…** the batch being generated is dropped; every example all variants finished is kept."
        return "No evaluation is running."

    # Results ---------------------------------------------------------------------------------------------
    def _remember(self, run: EvaluationRun) -> None:
        from studio.core.evaluation import store

        config = store.evals_dir(self.workspace) / run.name / "config.json"
        with self._guard:
            self._runs[run.name] = (config.stat().st_mtime, run)

    def _load(self, name: str | None) -> EvaluationRun:
        from studio.core.evaluation import store

        if not name:
            raise StudioError("No evaluation run picked.", "run an evaluation, or pick a saved one from the list.")
        folder = store.evals_dir(self.workspace) / name
        if not (folder / "config.json").is_file():
            raise StudioError(f"There is no saved evaluation named {name!r}.", "pick one from the list (it refreshes when the tab opens).")
        mtime = (folder / "config.json").stat().st_mtime
        with self._guard:
            cached = self._runs.get(name)
        if cached and cached[0] == mtime:
            return cached[1]
        run = store.load_run(folder)
        with self._guard:
            self._runs[name] = (mtime, run)
        return run

    def _render(self, run: EvaluationRun) -> tuple[Any, ...]:
        choices = views.example_choices(run)
        first = 0 if choices else None
        return (views.verdict_markdown(run), views.scorecard_table(run), views.metrics_figure(run),
                gr.update(choices=choices, value=first), views.example_html(run, first))

    def show_run(self, name: str | None) -> tuple[Any, ...]:
        with user_errors():
            run = self._load(name)
        return self._render(run)

    def show_example(self, name: str | None, index: float | None) -> str:
        with user_errors():
            run = self._load(name)
        return views.example_html(run, None if index is None else int(index))

    def export(self, name: str | None) -> list[str]:
        """The run as <name>-summary.csv, <name>-results.csv and <name>.json under the workspace's exports/evals/."""
        from studio.core.evaluation import store

        with user_errors():
            run = self._load(name)
            out = self.workspace.exports_dir / "evals" / run.name
            out.mkdir(parents=True, exist_ok=True)
            files = {f"{run.name}-summary.csv": store.summary_csv(run), f"{run.name}-results.csv": store.results_csv(run),
                     f"{run.name}.json": json.dumps(store.run_document(run), indent=1, ensure_ascii=False)}
            for file, text in files.items():
                (out / file).write_text(text, encoding="utf-8")
        gr.Info(f"Exported to {out}")
        return [str(out / f) for f in files]

    # Forgetting probe ---------------------------------------------------------------------------------------
    def probe(self, adapter: str | None, threshold: float, batch_size: float, progress: gr.Progress = gr.Progress(),
              **values: Any) -> Iterator[tuple[Any, ...]]:
        """Base vs `adapter` on the shipped probe questions: the verdict, then the per-metric table with regressions flagged."""
        from studio.core.evaluation.probe import forgetting_probe

        with user_errors():
            params = read_generation(values)
            if not adapter:
                raise StudioError("No adapter picked for the probe.", "attach the fine-tuned adapter in the Models tab, then pick it here.")
            self._check_model()

            def work(tick: Callable[[int, int], None], cancel: threading.Event) -> Any:
                return forgetting_probe(self.models, adapter, params, float(threshold), batch_size=int(batch_size),
                                        progress=tick, cancel=cancel)

            yield "**Probing:** the first batch is generating…", gr.update()
            report = yield from self._background("probe", work, progress, lambda line: (line, gr.update()))
            if not report.run.results:
                yield "**Cancelled** before any question finished: nothing to compare.", gr.update()
                return
        yield views.probe_markdown(report, adapter), views.probe_table(report)

    def cancel_probe(self) -> str:
        return "**Cancelling** the probe…" if self._cancel("probe") else "No probe is running."


def _keep(choices: list[str], value: str | None) -> Any:
    return gr.update(choices=choices, value=value if value in choices else (choices[0] if choices else None))


def _needs(names: list[str]) -> str:
    labels = [VARIANT_LABELS[n] for n in names]
    return f"{labels[0]} needs" if len(labels) == 1 else f"{' and '.join(labels)} need"
