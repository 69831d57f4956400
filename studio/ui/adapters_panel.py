"""The adapters panel (in the Training tab): every adapter in the workspace; attach, merge and export, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.adapters import default_export_dir, delete_adapter, find_adapter, list_adapters, merge_and_export
from studio.errors import StudioError
from studio.ui.training_views import ADAPTER_HEADERS, size
from studio.ui.widgets import HIDDEN, MODEL_EVENTS, user_errors

if TYPE_CHECKING:
    from studio.services import Services


def build_adapters_panel(services: Services, refresh_on: list[Any]) -> None:
    """The panel's components and events; `refresh_on` are events (e.g. the tab's select) that reload the list."""
    on = AdapterHandlers(services)
    gr.Markdown("### Adapters\nEvery LoRA adapter in the workspace (`adapters/` and finished runs). Attach one to the loaded "
                "base to use it in the Playground, RAG and Compare tabs without a second copy of the model.")
    table = gr.Dataframe(headers=ADAPTER_HEADERS, value=[], interactive=False, max_height=260, elem_id="adapters-table")
    with gr.Row(equal_height=True):
        adapter = gr.Dropdown([], value=None, allow_custom_value=True, label="Adapter", scale=3)
        attach = gr.Button("Attach to the loaded model", variant="primary", scale=1)
        refresh = gr.Button("Refresh", scale=1)
    with gr.Accordion("Merge into the base and export a standalone model", open=False):
        out_dir = gr.Textbox(label="Export folder", placeholder="empty = workspace models/<adapter>-merged",
                             info="The base is loaded at full precision (never 4-bit, even for a QLoRA adapter), the "
                                  "adapter merged in, and the result checked against base + adapter before it is kept.")
        merge = gr.Button("Merge and export")
    with gr.Accordion("Delete an adapter", open=False):
        confirm = gr.Textbox(label="Type the adapter's name to delete it")
        delete = gr.Button("Delete adapter", variant="stop")
    status = gr.Markdown(elem_id="adapters-status")

    for event in [*refresh_on, refresh.click]:
        event(on.list, adapter, [table, adapter], show_progress="hidden", **HIDDEN)
    attach.click(on.attach, adapter, status, api_name="adapter_attach", **MODEL_EVENTS)
    merge.click(on.merge, [adapter, out_dir], status, api_name="adapter_merge")
    delete.click(on.delete, [adapter, confirm], [table, adapter, confirm, status], api_name="adapter_delete")


class AdapterHandlers:
    def __init__(self, services: Services) -> None:
        self.workspace, self.runtime = services.workspace, services.runtime

    def list(self, current: str | None) -> tuple[Any, ...]:
        adapters = list_adapters(self.workspace)
        rows = [[a.name, a.source + (f" ({a.method}, {a.run_state})" if a.method else ""), a.base_model, a.peft_type,
                 a.r or "", size(a.size_bytes)] for a in adapters]
        names = [a.name for a in adapters]
        value = current if current in names else (names[0] if names else None)
        return rows, gr.update(choices=names, value=value)

    def attach(self, name: str) -> str:
        with user_errors():
            info = find_adapter(self.workspace, self._required(name))
            model = self.runtime.attach_adapter(info.path, info.name.replace("/", "-"))
        return f"Attached **{info.name}** to `{model.name}`: pick it in the Playground's or RAG tab's adapter list."

    def merge(self, name: str, out_dir: str, progress: gr.Progress = gr.Progress()) -> str:
        with user_errors():
            info = find_adapter(self.workspace, self._required(name))
            target = (out_dir or "").strip() or default_export_dir(self.workspace, info.name)
            path = merge_and_export(info.path, target, progress=lambda f, m: progress(f, desc=m))
        return f"Merged **{info.name}** into its base and saved a standalone model to `{path}` (load it in the Models tab)."

    def delete(self, name: str, confirm: str) -> tuple[Any, ...]:
        with user_errors():
            info = find_adapter(self.workspace, self._required(name))
            if (confirm or "").strip() != info.name:
                raise StudioError(f"To delete adapter {info.name!r}, type its name in the box first.",
                                  "type the exact name; the adapter folder is deleted (a run keeps its metrics).")
            if info.name.replace("/", "-") in self.runtime.adapters():
                self.runtime.detach_adapter(info.name.replace("/", "-"))
            delete_adapter(self.workspace, info.path)
        rows, picker = self.list(None)
        return rows, picker, "", f"Deleted adapter **{info.name}**."

    @staticmethod
    def _required(name: str | None) -> str:
        if not (name or "").strip():
            raise StudioError("No adapter picked.", "pick one in the list first.")
        return str(name).strip()
