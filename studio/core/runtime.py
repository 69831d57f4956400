"""The resident model as the UI sees it: a state snapshot that never waits, and the calls tabs make.

The model manager holds its lock for a whole load or answer, so a display that asked it
directly (header, status panel, adapter pickers) would hang behind a long generation. This
wrapper keeps a snapshot of what is loaded, refreshed by the thread that changed it, and gives
the UI (which never imports torch) the prompt view, streamed replies and the memory report.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from studio.config import DEMO_NOTE, GenerationParams, LoadParams
from studio.core import generation
from studio.core.models import ModelInfo, ModelManager, Progress, device_memory
from studio.errors import GenerationError, StudioError


@dataclass(frozen=True)
class ModelState:
    info: ModelInfo | None = None  # what is loaded now (None = nothing)
    loading: str | None = None  # the model being loaded right now
    error: str | None = None  # why the last load failed
    notice: str | None = None  # what the user should know about the loaded model (the offline demo stands in, say)


@dataclass
class Reply:
    """The answer so far; `stats` is set on the last one."""

    text: str
    stats: generation.GenerationStats | None = None


class ModelRuntime:
    """Wraps the ModelManager for the UI; every method is safe to call from any thread."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models
        self._state = ModelState()
        self._guard = threading.Lock()

    @property
    def state(self) -> ModelState:
        """The latest snapshot; never blocks."""
        return self._state

    def _set(self, **changes: object) -> None:
        with self._guard:
            self._state = replace(self._state, **changes)

    # Changing what is loaded ---------------------------------------------------------------
    def load(self, params: LoadParams, progress: Progress | None = None) -> ModelInfo:
        """ModelManager.load that keeps the snapshot current; raises what it raises."""
        self._set(loading=params.model, error=None, notice=None)
        try:
            info = self.models.load(params, progress)
        except BaseException as err:
            self._set(loading=None, error=str(err), info=self.models.info())
            raise
        self._set(loading=None, info=info)
        return info

    def load_in_background(self, params: LoadParams, on_loaded: Callable[[ModelInfo], None] | None = None,
                           fallback: Path | None = None) -> threading.Thread:
        """Start `load` in a daemon thread (the UI is up meanwhile); failures end up in `state.error`.

        When `params.model` cannot be loaded and `fallback` (a model folder) exists, the fallback is
        loaded instead and `state.notice` says why; `on_loaded` is called for the requested model only.
        """
        self._set(loading=params.model, error=None, notice=None)

        def work() -> None:
            try:
                info = self.load(params)
            except StudioError as err:
                if fallback is None or not Path(fallback).is_dir():
                    return
                with contextlib.suppress(StudioError):
                    self.load(replace(params, model=str(fallback), precision="auto"))
                    self._set(error=None, notice=f"{params.model} could not be loaded ({err.message.rstrip('.')}), so the offline demo model "
                                                 f"is loaded instead. {DEMO_NOTE} Load another model in the Models tab.")
                return
            if Path(params.model).resolve() == Path(fallback or "").resolve():
                self._set(notice=DEMO_NOTE + " Load another model in the Models tab.")
            if on_loaded:
                on_loaded(info)

        thread = threading.Thread(target=work, name="studio-startup-load", daemon=True)
        thread.start()
        return thread

    def unload(self) -> None:
        self.models.unload()
        self._set(info=None, error=None, notice=None)

    def attach_adapter(self, path: str | Path, name: str | None = None) -> ModelInfo:
        info = self.models.attach_adapter(path, name)
        self._set(info=info)
        return info

    def detach_adapter(self, name: str) -> ModelInfo:
        info = self.models.detach_adapter(name)
        self._set(info=info)
        return info

    # Using it --------------------------------------------------------------------------------
    def adapters(self) -> list[str]:
        info = self._state.info
        return list(info.adapters) if info else []

    def render_prompt(self, messages: list[generation.Message]) -> generation.RenderedPrompt | None:
        """What the model would receive for `messages`; None while no model is loaded."""
        if self._state.info is None:
            return None
        try:
            tokenizer = self.models.tokenizer
        except StudioError:  # unloaded or reloading between the check and here
            return None
        return generation.render_prompt(tokenizer, messages)

    def replies(self, messages: list[generation.Message], params: GenerationParams,
                adapter: str | None = None) -> Iterator[Reply]:
        """Stream the answer as growing `Reply`s; closing the iterator cancels generation.

        Raises GenerationError (no model, adapter not attached, malformed messages).
        """
        if self._state.info is None and not self.models.is_loaded:
            if self._state.loading:
                raise GenerationError(f"{self._state.loading} is still loading.", "wait until the header shows it loaded, then send again.")
            raise GenerationError("No model is loaded.", "load one in the Models tab (or start the studio with --model).")
        text = ""
        with contextlib.closing(generation.stream(self.models, messages, params, adapter or None)) as events:
            for event in events:
                if isinstance(event, generation.Completion):
                    yield Reply(event.text, event.stats)
                else:
                    text += event.text
                    yield Reply(text)

    def memory(self) -> dict[str, int]:
        return device_memory()
