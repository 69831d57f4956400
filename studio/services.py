"""The services every tab and CLI command share, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.config import Settings
from studio.core.models import ModelManager
from studio.core.rag.service import RagService
from studio.core.runtime import ModelRuntime
from studio.core.training.service import TrainingService
from studio.storage.workspace import Workspace


@dataclass
class Services:
    settings: Settings
    workspace: Workspace
    models: ModelManager
    # The UI's view of `models`: a snapshot that never waits behind a generation, streamed replies.
    runtime: ModelRuntime = field(init=False, repr=False)
    # Knowledge bases and grounded answers over the same model manager (Chroma connects on first use).
    rag: RagService = field(init=False, repr=False)
    # Training runs, each in its own worker process; building it marks runs orphaned by a previous studio interrupted.
    training: TrainingService = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _import_transformers()
        self.runtime = ModelRuntime(self.models)
        self.rag = RagService(self.workspace, self.models, self.settings.chroma_url or None)
        self.training = TrainingService(self.workspace)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        return cls(settings=settings, workspace=Workspace(settings.workspace), models=ModelManager())


def _import_transformers() -> None:
    """Resolve transformers' lazy names once, here: two handler threads importing one for the first time at
    once failed with "cannot import name 'AutoConfig' from 'transformers'" (a model typed, then Calculate)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401
