"""User-facing errors: every message says what went wrong and how to fix it."""

from __future__ import annotations


class StudioError(Exception):
    """An error the user caused or can fix; `str(err)` is shown as is in the UI and CLI."""

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class ConfigError(StudioError):
    """A setting, flag or parameter has a bad value."""


class ModelLoadError(StudioError):
    """The requested model could not be loaded (the previous one, if any, is still usable)."""


class AdapterError(StudioError):
    """An adapter could not be attached, used or detached."""


class GenerationError(StudioError):
    """Generation could not start (no model loaded, unknown adapter...)."""
