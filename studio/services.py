"""The services every tab and CLI command share, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import Settings
from studio.core.models import ModelManager
from studio.storage.workspace import Workspace


@dataclass
class Services:
    settings: Settings
    workspace: Workspace
    models: ModelManager

    @classmethod
    def build(cls, settings: Settings) -> Services:
        return cls(settings=settings, workspace=Workspace(settings.workspace), models=ModelManager())
