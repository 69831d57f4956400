"""Models tab: load a base model, watch memory, attach and detach LoRA adapters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import gradio as gr

from studio.config import Device, LoadParams, Precision, field_help
from studio.ui.widgets import HIDDEN, MODEL_EVENTS, count, memory_markdown, offline, size, user_errors

if TYPE_CHECKING:
    from studio.core.models import ModelInfo
    from studio.core.runtime import ModelState
    from studio.services import Services
    from studio.storage.workspace import Workspace

INTRO = ("Load one base model (it stays in memory and every tab uses it), then attach LoRA adapters to it. "
         "Adapters share the base weights, so switching between them is instant.")


def build_models_tab(services: Services) -> gr.Tab:
    """The Models panel; every change goes through `services.runtime`, which keeps the header current."""
    settings, workspace, on = services.settings, services.workspace, ModelsHandlers(services)
    with gr.Tab("Models") as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                model = gr.Dropdown(_model_choices(workspace), value=settings.model or None, allow_custom_value=True,
                                    label="Model", info=field_help(LoadParams, "model") + " Recent and workspace models are listed.")
                with gr.Row():
                    precision = gr.Dropdown(list(get_args(Precision)), value=settings.precision, label="Precision",
                                            info=field_help(LoadParams, "precision"))
                    device = gr.Dropdown(list(get_args(Device)), value=settings.device, label="Device",
                                         info=field_help(LoadParams, "device"))
                with gr.Row():
                    double_quant = gr.Checkbox(settings.double_quant, label="Double quantisation",
                                               info=field_help(LoadParams, "double_quant"))
                    trust = gr.Checkbox(settings.trust_remote_code, label="Trust remote code",
                                        info=field_help(LoadParams, "trust_remote_code"))
                with gr.Row():
                    load = gr.Button("Load model", variant="primary")
                    unload = gr.Button("Unload")
            with gr.Column(scale=2):
                status = gr.Markdown(on.status(), elem_id="model-status")
                memory = gr.Markdown(on.memory())
        adapter_path, adapter_name, attach, rescan, attached, detach = _adapter_panel(workspace)
        timer = gr.Timer(2.0)

    model_events = {**MODEL_EVENTS, "show_progress_on": status}
    load.click(on.load, [model, precision, device, double_quant, trust], [status, model, attached],
               api_name="load_model", **model_events)
    unload.click(on.unload, None, [status, attached], api_name="unload_model", **model_events)
    attach.click(on.attach, [adapter_path, adapter_name], [status, attached, adapter_name], api_name="attach_adapter", **model_events)
    detach.click(on.detach, attached, [status, attached], api_name="detach_adapter", **model_events)
    rescan.click(on.rescan, None, adapter_path, **HIDDEN)
    tab.select(on.show, None, [model, adapter_path, attached], show_progress="hidden", **HIDDEN)
    timer.tick(lambda: (on.status(), on.memory()), None, [status, memory], show_progress="hidden", **HIDDEN)
    return tab


def _adapter_panel(workspace: Workspace) -> tuple[Any, ...]:
    gr.Markdown("### LoRA adapters")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row():
                path = gr.Dropdown(_adapter_choices(workspace), value=None, allow_custom_value=True, scale=3, label="Adapter folder",
                                   info="Found in the workspace (adapters/, runs/*/adapter), or paste the path of any peft adapter folder.")
                name = gr.Textbox(label="Name (optional)", info="Defaults to the folder (or run) name.", scale=1)
            with gr.Row():
                attach = gr.Button("Attach adapter", variant="primary")
                rescan = gr.Button("Rescan workspace")
        with gr.Column(scale=2):
            attached = gr.Dropdown([], value=None, allow_custom_value=True, label="Attached adapters",
                                   info="The Playground's adapter picker offers these. Pick one to detach it.")
            detach = gr.Button("Detach adapter")
    return path, name, attach, rescan, attached, detach


class ModelsHandlers:
    """The Models tab's event handlers: each calls one runtime method and shows StudioErrors as popups."""

    def __init__(self, services: Services) -> None:
        self.runtime, self.workspace = services.runtime, services.workspace

    def status(self) -> str:
        return status_markdown(self.runtime.state, self.workspace)

    def memory(self) -> str:
        return memory_markdown(self.runtime.memory())

    def load(self, model: str, precision: str, device: str, double_quant: bool, trust_remote_code: bool,
             progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        with user_errors():
            params = LoadParams(model=model or "", precision=precision, device=device,
                                double_quant=double_quant, trust_remote_code=trust_remote_code)
            info = self.runtime.load(params, lambda fraction, message: progress(fraction, desc=message))
        self.workspace.remember_model(params.model)
        return self.status(), gr.update(choices=_model_choices(self.workspace)), _attached(info)

    def unload(self) -> tuple[Any, ...]:
        self.runtime.unload()
        return self.status(), _attached(None)

    def attach(self, path: str, name: str) -> tuple[Any, ...]:
        with user_errors():
            info = self.runtime.attach_adapter(path or "", (name or "").strip() or default_adapter_name(path or ""))
        return self.status(), _attached(info), ""

    def detach(self, name: str) -> tuple[Any, ...]:
        with user_errors():
            info = self.runtime.detach_adapter(name or "")
        return self.status(), _attached(info)

    def rescan(self) -> Any:
        return gr.update(choices=_adapter_choices(self.workspace))

    def show(self) -> tuple[Any, ...]:
        return (gr.update(choices=_model_choices(self.workspace)), self.rescan(), _attached(self.runtime.state.info))


def _attached(info: ModelInfo | None) -> Any:
    names = list(info.adapters) if info else []
    return gr.update(choices=names, value=names[-1] if names else None)


def _model_choices(workspace: Workspace) -> list[tuple[str, str]]:
    recent = [(m, m) for m in workspace.recent_models()]
    local = [(f"{p.name} (workspace models/)", str(p)) for p in workspace.local_models()]
    seen: set[str] = set()
    return [(label, value) for label, value in recent + local if not (value in seen or seen.add(value))]


def _adapter_choices(workspace: Workspace) -> list[tuple[str, str]]:
    return [(_relative(p, workspace.root), str(p)) for p in workspace.adapters()]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def default_adapter_name(path: str) -> str:
    """The folder's name, or the run's name for a run's `adapter/` folder."""
    folder = Path(path.strip()).expanduser()
    return folder.parent.name if folder.name == "adapter" and folder.parent.name else folder.name


def status_markdown(state: ModelState, workspace: Workspace) -> str:
    """The status panel: what is loaded (or loading), the last error, and how to get a model."""
    parts = []
    if state.loading:
        parts.append(f"### Loading `{state.loading}`…\nThe rest of the studio stays usable meanwhile.")
    if state.error:
        parts.append(f"### The last load failed\n{state.error}")
    if state.notice:
        parts.append(f"> ⚠ {state.notice}")
    if state.info is not None:
        parts.append(_info_table(state.info))
    elif not state.loading:
        parts.append(_how_to_get_a_model(workspace))
    return "\n\n".join(parts)


def _info_table(info: ModelInfo) -> str:
    template = "the model's own" if info.has_chat_template else "none: the studio's labelled fallback is used"
    rows = [("Model", f"`{info.name}`"), ("Source", info.source), ("Parameters", count(info.parameters)),
            ("Precision", info.precision), ("Device", info.device), ("Weights in memory", size(info.memory_bytes)),
            ("Chat template", template), ("Trust remote code", "yes" if info.trust_remote_code else "no"),
            ("Adapters", ", ".join(f"`{a}`" for a in info.adapters) or "none")]
    lines = [f"| {k} | {v} |" for k, v in rows]
    return "### Loaded\n" + "\n".join([lines[0], "|---|---|", *lines[1:]])


def _how_to_get_a_model(workspace: Workspace) -> str:
    hub = ("a **hub id** such as `Qwen/Qwen2.5-0.5B-Instruct`: offline mode is on (HF_HUB_OFFLINE), so only models "
           "already in the Hugging Face cache load by id" if offline() else
           "a **hub id** such as `Qwen/Qwen2.5-0.5B-Instruct` (downloaded once into the Hugging Face cache)")
    return ("### No model loaded\nEverything else works; chatting needs a model. Enter in *Model*, then press **Load model**:\n"
            f"- {hub};\n- a **local folder** holding `config.json`, the weights and the tokenizer "
            f"(folders put in `{workspace.models_dir}` are listed);\n"
            "- or start the studio with `--model <hub id or folder>`.")
