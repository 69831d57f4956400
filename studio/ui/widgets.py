"""Widgets and formatting shared by the tabs. Gradio only: services arrive as arguments."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.config import GenerationParams, field_help, field_range
from studio.errors import ConfigError, StudioError

if TYPE_CHECKING:
    from studio.core.runtime import ModelRuntime, ModelState
    from studio.storage.workspace import Workspace

MODEL_EVENTS: dict[str, Any] = {"concurrency_id": "model", "concurrency_limit": 1}
"""Keyword arguments for every event that uses model memory: one at a time, in order."""

HIDDEN: dict[str, Any] = {"api_visibility": "private"}
"""Keyword arguments for events that only keep the page tidy (not part of the API)."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a StudioError as a Gradio error popup with its full message (what happened + the fix)."""
    try:
        yield
    except StudioError as err:
        raise gr.Error(str(err), print_exception=False) from None


def slider(cls: type, name: str, label: str, maximum: float | None = None, **kwargs: Any) -> gr.Slider:
    """A slider whose range, step, default and help text come from a field of `cls` (built with defaults).

    `maximum` narrows the range the slider offers (the field's own limit still applies to typed values).
    """
    lo, hi, step = field_range(cls, name)
    hi = min(hi, maximum) if maximum is not None else hi
    return gr.Slider(lo, hi, value=getattr(cls(), name), step=step, label=label, info=field_help(cls, name), **kwargs)


def number(cls: type, name: str, label: str, **kwargs: Any) -> gr.Number:
    lo, hi, step = field_range(cls, name)
    return gr.Number(value=getattr(cls(), name), minimum=lo, maximum=hi, step=step, precision=0,
                     label=label, info=field_help(cls, name), **kwargs)


def generation_inputs(open: bool = True) -> dict[str, Any]:
    """Editors for each GenerationParams field, keyed by field name; ranges and help come from the class."""
    with gr.Accordion("Generation parameters", open=open):
        temperature = slider(GenerationParams, "temperature", "Temperature")
        top_p = slider(GenerationParams, "top_p", "Top-p")
        top_k = slider(GenerationParams, "top_k", "Top-k")
        max_new_tokens = slider(GenerationParams, "max_new_tokens", "Max new tokens")
        repetition_penalty = slider(GenerationParams, "repetition_penalty", "Repetition penalty")
        seed = number(GenerationParams, "seed", "Seed")
        stop = gr.Textbox("", label="Stop strings", lines=2, info=field_help(GenerationParams, "stop") + " One per line.")
    return {"temperature": temperature, "top_p": top_p, "top_k": top_k, "max_new_tokens": max_new_tokens,
            "repetition_penalty": repetition_penalty, "seed": seed, "stop": stop}


def merge_inputs(*groups: dict[str, Any]) -> dict[str, Any]:
    """One `inputs_kwargs` mapping from several editor groups; a name in two groups is a bug, not an override.

    (Retrieval and sampling both have a `top_k`: merged with `{**a, **b}`, one silently replaced the other.)
    """
    merged: dict[str, Any] = {}
    for group in groups:
        clash = sorted(merged.keys() & group.keys())
        if clash:
            raise ValueError(f"editor names used twice: {', '.join(clash)}; prefix one group's names")
        merged.update(group)
    return merged


GENERATION_FIELDS = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "seed")


def read_generation(values: dict[str, Any]) -> GenerationParams:
    """The GenerationParams that `generation_inputs()` editors hold; ConfigError naming the bad field otherwise."""
    if values["seed"] is None:
        raise ConfigError("The seed is empty.", "enter a whole number (0 is fine).")
    return GenerationParams(**{name: values[name] for name in GENERATION_FIELDS}, stop=values["stop"] or "")


def text_of(content: Any) -> str:
    """The text of one chat message's content (Gradio 6 gives a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(text_of(part) for part in content)
    return ""


def plain_messages(history: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Chatbot history as role/content string messages (tool/metadata entries dropped)."""
    return [{"role": m["role"], "content": text_of(m.get("content"))}
            for m in history or [] if m.get("role") in ("user", "assistant", "system")]


def size(n: int) -> str:
    """Bytes as GiB, or MiB below one GiB."""
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def count(n: int) -> str:
    """A parameter count as 1.5 B / 494.0 M / 12,345."""
    if n >= 10**9:
        return f"{n / 1e9:,.2f} B"
    return f"{n / 1e6:,.1f} M" if n >= 10**6 else f"{n:,}"


def short_name(name: str) -> str:
    """A hub id as is; a local folder by its last part (the full path is in the Models tab)."""
    return Path(name).name if name.startswith(("/", ".", "~")) or "\\" in name else name


def memory_markdown(memory: dict[str, int]) -> str:
    parts = [f"studio process **{size(memory['process_rss'])}**", f"system RAM free {size(memory['system_available'])}"]
    if "cuda_allocated" in memory:
        parts.append(f"GPU allocated **{size(memory['cuda_allocated'])}**, reserved {size(memory['cuda_reserved'])} "
                     f"of {size(memory['cuda_total'])}")
    return "**Memory in use:** " + " · ".join(parts)


def header_markdown(state: ModelState) -> str:
    """One line for the page header: what is loaded, loading, or how to get a model."""
    if state.loading:
        return f"**Loading** `{short_name(state.loading)}`… (progress in the Models tab)"
    info = state.info
    if info is not None:
        adapters = ", ".join(info.adapters) or "none"
        line = (f"**Model:** `{short_name(info.name)}` · {count(info.parameters)} params · {info.precision} on {info.device} · "
                f"adapters: {adapters}")
        return line + (f"  \n⚠ {state.notice}" if state.notice else "")
    if state.error:
        return "**No model loaded:** the last load failed (see the Models tab)."
    return "**No model loaded:** load one in the Models tab."


def model_choices(runtime: ModelRuntime, workspace: Workspace) -> list[str]:
    """Models a picker offers: the loaded one first, then the recently used ones."""
    info = runtime.state.info
    return list(dict.fromkeys(([info.name] if info else []) + workspace.recent_models()))


def target_module_choices(model: str | None) -> Any:
    """A target-module picker's choices: all-linear, then the model's own linear layers (none while it cannot
    be resolved: being typed, or offline)."""
    from studio.core.training.estimate import linear_module_names

    try:
        names = linear_module_names(model.strip()) if (model or "").strip() else []
    except StudioError:
        names = []
    return gr.update(choices=["all-linear", *names])


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
