"""Shared fixtures: tiny random-init Llama models and adapters built on disk in seconds, offline."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Nothing in the tests may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(autouse=True)
def _default_dtype_unchanged() -> Iterator[None]:
    """A test (or a thread it started) that leaves torch's default dtype changed fails here, and the tests
    after it start from float32 again instead of all failing in bf16."""
    import torch

    yield
    found = torch.get_default_dtype()
    if found != torch.float32:
        torch.set_default_dtype(torch.float32)
        pytest.fail(f"torch's default dtype was left at {found}: something built a model outside hub.building()")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 64) with a trained byte-level BPE tokenizer and a chat template."""
    from studio.core.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0)


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different base (hidden 128): adapters of tiny_model_dir do not fit it."""
    from studio.core.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "other-llama", hidden_size=128, seed=1)


@pytest.fixture(scope="session")
def no_template_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from studio.core.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "no-template", chat_template=None, seed=2)


def make_adapter(base_dir: Path, out_dir: Path, seed: int, r: int = 4) -> Path:
    """Save a LoRA adapter with non-zero random weights (so it changes the output) for `base_dir`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(4.0)
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def adapter_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different LoRA adapters trained (randomly) for tiny_model_dir."""
    root = tmp_path_factory.mktemp("adapters")
    return make_adapter(tiny_model_dir, root / "style-a", seed=10), make_adapter(tiny_model_dir, root / "style-b", seed=11)


@pytest.fixture(scope="session")
def foreign_adapter_dir(other_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(other_model_dir, tmp_path_factory.mktemp("adapters") / "foreign", seed=12)


@pytest.fixture
def workspace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace; STUDIO_HOME points at it for the test's duration."""
    home = tmp_path / "studio-home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    return home


@contextlib.contextmanager
def running_studio(home: Path) -> Iterator[tuple[str, Any]]:
    """(url, services) of the studio launched on a free loopback port with workspace `home`; closed afterwards."""
    import socket

    from studio.app import launch
    from studio.config import Settings
    from studio.services import Services

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    services = Services.build(Settings(workspace=home, port=port))
    app = launch(services, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/", services
    finally:
        app.close()


@pytest.fixture(scope="module")
def model_and_kb(tiny_model_dir: Path, adapter_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(ModelManager with tiny_model_dir and adapter "style-a", RagService with a two-document knowledge base "support")."""
    from studio.config import LoadParams
    from studio.core.models import ModelManager
    from studio.core.rag.service import RagService
    from studio.storage.workspace import Workspace

    root = tmp_path_factory.mktemp("model-and-kb")
    docs = root / "docs"
    docs.mkdir()
    (docs / "warranty.txt").write_text("The warranty covers two years of repairs. Water damage is not covered.")
    (docs / "reset.md").write_text("# Reset\n\nHold the reset button for ten seconds to restore factory settings.")
    manager = ModelManager()
    manager.load(LoadParams(model=str(tiny_model_dir), device="cpu"))
    manager.attach_adapter(adapter_dirs[0], "style-a")
    rag = RagService(Workspace(root / "ws"), manager)
    rag.create("support")
    *_, report = rag.ingest("support", [docs])
    assert not report.failed
    return manager, rag
