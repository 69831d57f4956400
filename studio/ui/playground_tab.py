"""Playground tab: chat with the loaded model using a prompting technique, see the exact prompt, save presets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.config import GenerationParams
from studio.core.prompting import (
    FREE_CHAT,
    TECHNIQUES,
    USES_EXAMPLES,
    USES_INSTRUCTION,
    USES_TRIGGER,
    PromptSpec,
    build_messages,
    default_spec,
    examples_from_rows,
    save_conversation,
)
from studio.errors import ConfigError, StudioError
from studio.ui.widgets import HIDDEN, MODEL_EVENTS, generation_inputs, merge_inputs, plain_messages, read_generation, user_errors

if TYPE_CHECKING:
    from studio.core.runtime import ModelRuntime, Reply
    from studio.services import Services

NO_ADAPTER = ("None (base model)", "")
TECHNIQUE_HELP = ("How your message is dressed before it is sent: an instruction (zero-shot), worked examples "
                  "(few-shot), a reasoning trigger or reasoning examples (chain-of-thought).")


def build_playground_tab(services: Services) -> gr.Tab:
    """Chat + technique editors + generation parameters + prompt view + presets + export."""
    on = PlaygroundHandlers(services)
    with gr.Tab("Playground") as tab:
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=420):
                chatbot = gr.Chatbot(label="Conversation", height=420, buttons=["copy", "copy_all"],
                                     placeholder="Pick a prompting technique, then send a message (the model in the header answers; change it in the **Models** tab).")
                stats = gr.Markdown(elem_id="generation-stats")
                with gr.Row(equal_height=True):
                    message = gr.Textbox(show_label=False, placeholder="Type a message and press Enter", scale=6, autofocus=True)
                    send = gr.Button("Send", variant="primary", scale=1, min_width=80)
                    stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
                with gr.Row():
                    clear = gr.Button("Clear conversation", size="sm")
                    export = gr.Button("Export as training example (JSONL)", size="sm")
                export_file = gr.File(label="Exported conversation", visible=False)
                export_note = gr.Markdown()
                with gr.Accordion("The prompt the model receives (for the message in the box)", open=True):
                    prompt_info = gr.Markdown(lambda: on.initial_prompt()[1])  # callables: recomputed on each page load
                    prompt_view = gr.Textbox(lambda: on.initial_prompt()[0], show_label=False, lines=8, max_lines=24,
                                             interactive=False, buttons=["copy"])
            with gr.Column(scale=2, min_width=320):
                spec = _prompt_editors(default_spec(FREE_CHAT))
            with gr.Column(scale=2, min_width=320):
                adapter = gr.Dropdown([NO_ADAPTER], value="", allow_custom_value=True, label="Adapter",
                                      info="Answer with the plain base or one of the adapters attached in the Models tab.")
                params = generation_inputs()
                preset, save, load, delete = _preset_panel(services.workspace.list_presets())

    values = merge_inputs(spec, params)
    chatting = gr.on([message.submit, send.click], on.chat, [message, chatbot, adapter], [chatbot, message, stats],
                     inputs_kwargs=values, api_name="chat", show_progress="minimal", **MODEL_EVENTS)
    stop.click(None, None, None, cancels=[chatting], **HIDDEN)
    clear.click(lambda: ([], "", ""), None, [chatbot, stats, export_note], cancels=[chatting], **HIDDEN)
    render = {"fn": on.render, "inputs": [message, chatbot], "outputs": [prompt_view, prompt_info],
              "inputs_kwargs": spec, "show_progress": "hidden"}
    changes = [c.change for c in [message, *spec.values()]] + [clear.click, tab.select]
    gr.on(changes, **render, api_name="render_prompt", trigger_mode="always_last")
    chatting.then(**render, **HIDDEN)
    dressing = [spec["instruction"], spec["examples"], spec["cot_trigger"], spec["template"]]
    spec["technique"].input(on.pick_technique, spec["technique"], dressing, **HIDDEN)
    save.click(on.save_preset, preset, preset, inputs_kwargs=values, api_name="save_preset")
    load.click(on.load_preset, preset, [spec["system"], spec["technique"], *dressing, *params.values()], api_name="load_preset")
    delete.click(on.delete_preset, preset, preset, api_name="delete_preset")
    export.click(on.export, [chatbot, spec["system"]], [export_file, export_note], api_name="export_conversation")
    tab.select(on.show, None, [adapter, preset], show_progress="hidden", **HIDDEN)
    return tab


class PlaygroundHandlers:
    """The Playground's event handlers; editor values arrive as keyword arguments named after the fields."""

    def __init__(self, services: Services) -> None:
        self.runtime, self.workspace = services.runtime, services.workspace

    def chat(self, message: str, history: list[dict], adapter: str, **values: Any) -> Iterator[tuple[Any, ...]]:
        with user_errors():
            prompt, gen = _read(values)
            if not (message or "").strip():
                raise ConfigError("There is nothing to send.", "type a message first.")
            shown = plain_messages(history) + [{"role": "user", "content": message}]
            messages = build_messages(prompt, shown[:-1], message)
            yield shown, "", "_Generating…_"
            try:
                for reply in self.runtime.replies(messages, gen, adapter or None):
                    yield shown + [{"role": "assistant", "content": reply.text}], "", _stats_line(reply, adapter)
            except StudioError:
                yield shown[:-1], message, ""  # give the message back, so it can be sent again after the fix
                raise

    def render(self, message: str, history: list[dict], **values: Any) -> tuple[str, str]:
        return render_prompt_view(self.runtime, message, history, values)

    def initial_prompt(self) -> tuple[str, str]:
        """The prompt view for the editors' starting values (an empty Free chat)."""
        return render_prompt_view(self.runtime, "", [], default_spec(FREE_CHAT).to_dict())

    def pick_technique(self, technique: str) -> tuple[Any, ...]:
        return editor_updates(default_spec(technique))

    def save_preset(self, name: str, **values: Any) -> Any:
        with user_errors():
            prompt, gen = _read(values)
            path = self.workspace.save_preset(name, {"prompt": prompt.to_dict(), "generation": gen.to_dict()})
        gr.Info(f"Preset saved to {path}")
        return gr.update(choices=self.workspace.list_presets(), value=path.stem)

    def load_preset(self, name: str) -> tuple[Any, ...]:
        with user_errors():
            data = self.workspace.load_preset(name or "")
            prompt = PromptSpec.from_dict(data.get("prompt", {}))
            gen = GenerationParams.from_dict(data.get("generation", {}))
        return (prompt.system, prompt.technique, *editor_updates(prompt), *_param_values(gen))

    def delete_preset(self, name: str) -> Any:
        with user_errors():
            self.workspace.delete_preset(name or "")
        return gr.update(choices=self.workspace.list_presets(), value=None)

    def export(self, history: list[dict], system: str) -> tuple[Any, str]:
        with user_errors():
            head = [{"role": "system", "content": system}] if (system or "").strip() else []
            path = save_conversation(head + plain_messages(history), self.workspace.exports_dir)
        return gr.update(value=str(path), visible=True), f"Written to `{path}`"

    def show(self) -> tuple[Any, ...]:
        adapters = [NO_ADAPTER] + [(a, a) for a in self.runtime.adapters()]
        return gr.update(choices=adapters), gr.update(choices=self.workspace.list_presets())


def _preset_panel(names: list[str]) -> tuple[Any, ...]:
    with gr.Accordion("Presets (technique + parameters)", open=False):
        preset = gr.Dropdown(names, value=None, allow_custom_value=True, label="Preset",
                             info="Pick a saved preset, or type a new name to save one.")
        with gr.Row():
            save = gr.Button("Save", size="sm")
            load = gr.Button("Load", size="sm")
            delete = gr.Button("Delete", size="sm", variant="stop")
    return preset, save, load, delete


def _prompt_editors(spec: PromptSpec) -> dict[str, Any]:
    """Editors for each PromptSpec field, keyed by field name (handlers get them as keyword arguments)."""
    return {
        "system": gr.Textbox(spec.system, label="System prompt", lines=2, max_lines=8),
        "technique": gr.Dropdown(list(TECHNIQUES), value=spec.technique, label="Prompting technique", info=TECHNIQUE_HELP),
        "instruction": gr.Textbox(spec.instruction, label="Instruction", lines=2, max_lines=8, visible=spec.technique in USES_INSTRUCTION,
                                  info="The task, stated in every dressed message."),
        "examples": gr.Dataframe(_rows(spec), headers=["input", "output"], column_count=2, type="array", interactive=True,
                                 wrap=True, column_widths=["55%", "45%"], label="Examples (input → output), sent as earlier turns",
                                 visible=spec.technique in USES_EXAMPLES),
        "cot_trigger": gr.Textbox(spec.cot_trigger, label="Chain-of-thought trigger", visible=spec.technique in USES_TRIGGER,
                                  info="Appended to your message so the model reasons before answering."),
        "template": gr.Textbox(spec.template, label="Template", lines=2, visible=spec.technique != FREE_CHAT,
                               info="How the instruction and a message are combined: {instruction} and {input} are filled in."),
    }


def _rows(spec: PromptSpec) -> list[list[str]]:
    return [list(pair) for pair in spec.examples] or [["", ""]]


def editor_updates(spec: PromptSpec) -> tuple[Any, ...]:
    """Values and visibility of the instruction, examples, trigger and template editors for `spec`."""
    return (gr.update(value=spec.instruction, visible=spec.technique in USES_INSTRUCTION),
            gr.update(value=_rows(spec), visible=spec.technique in USES_EXAMPLES),
            gr.update(value=spec.cot_trigger, visible=spec.technique in USES_TRIGGER),
            gr.update(value=spec.template, visible=spec.technique != FREE_CHAT))


def _param_values(gen: GenerationParams) -> list[Any]:
    return [gen.temperature, gen.top_p, gen.top_k, gen.max_new_tokens, gen.repetition_penalty, gen.seed, "\n".join(gen.stop)]


def _spec(values: dict[str, Any]) -> PromptSpec:
    return PromptSpec(technique=values["technique"], system=values["system"] or "", instruction=values["instruction"] or "",
                      examples=examples_from_rows(values["examples"]), cot_trigger=values["cot_trigger"] or "",
                      template=values["template"] or "").validate()


def _read(values: dict[str, Any]) -> tuple[PromptSpec, GenerationParams]:
    """The spec and generation params the editors hold; ConfigError naming the bad field otherwise."""
    return _spec(values), read_generation(values)


def _stats_line(reply: Reply, adapter: str) -> str:
    if reply.stats is None:
        return "_Generating…_"
    return reply.stats.line() + (f" · adapter `{adapter}`" if adapter else " · base model")


def render_prompt_view(runtime: ModelRuntime, message: str, history: list[dict], values: dict[str, Any]) -> tuple[str, str]:
    """(prompt text, info line) for the prompt view; problems are shown there, not as popups."""
    try:
        messages = build_messages(_spec(values), plain_messages(history), message or "")
        rendered = runtime.render_prompt(messages)
    except StudioError as err:
        return "", f"**Cannot build the prompt:** {err}"
    if rendered is None:
        plain = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
        return plain, "No model loaded: these are the messages; the exact text appears once a model is loaded."
    return rendered.text, f"**{rendered.token_count} tokens** · built with {rendered.template_label}"
