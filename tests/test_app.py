"""studio.app.main and the texts the UI shows about the model, without a browser."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from studio import app
from studio.config import Settings
from studio.core.runtime import ModelState
from studio.storage.workspace import Workspace
from studio.ui.models_tab import default_adapter_name, status_markdown
from studio.ui.widgets import header_markdown


def test_main_starts_the_model_loading_and_serves_meanwhile(tmp_path: Path, tiny_model_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[Any] = []
    monkeypatch.setattr(app, "launch", lambda services, **kw: launched.append((services, services.runtime.state)))
    app.main(Settings(workspace=tmp_path, model=str(tiny_model_dir)))
    (services, state_at_launch), = launched
    assert state_at_launch.loading == str(tiny_model_dir) or state_at_launch.info is not None
    for thread in threading.enumerate():
        if thread.name == "studio-startup-load":
            thread.join(60)
    assert services.runtime.state.info.name == str(tiny_model_dir)
    assert services.workspace.recent_models() == [str(tiny_model_dir)]


def test_main_without_a_model_offline_loads_the_demo_model_and_says_so(tmp_path: Path, tiny_model_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[Any] = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(app, "DEMO_MODEL", tiny_model_dir)  # the bundled demo, as a fresh checkout has it
    monkeypatch.setattr(app, "launch", lambda services, **kw: launched.append(services))
    app.main(Settings(workspace=tmp_path))
    services, = launched
    for thread in threading.enumerate():
        if thread.name == "studio-startup-load":
            thread.join(60)
    state = services.runtime.state
    assert state.info.name == str(tiny_model_dir) and state.error is None
    assert state.notice.startswith(f"{app.DEFAULT_MODEL} could not be loaded")
    assert services.workspace.recent_models() == []  # the stand-in is not remembered as the user's choice


def test_auth_setting_becomes_a_gradio_auth_pair() -> None:
    assert app._auth("") is None
    assert app._auth("ann:s3cret:with-colon") == ("ann", "s3cret:with-colon")


def test_no_model_status_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = Workspace(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    text = status_markdown(ModelState(), workspace)
    assert "No model loaded" in text and "hub id" in text and "--model" in text and str(workspace.models_dir) in text
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "offline mode is on" in status_markdown(ModelState(), workspace)
    assert "load one in the Models tab" in header_markdown(ModelState())


def test_loading_and_failed_states_are_shown(tmp_path: Path) -> None:
    loading = ModelState(loading="/models/qwen")
    assert "Loading `/models/qwen`" in status_markdown(loading, Workspace(tmp_path))
    assert header_markdown(loading).startswith("**Loading** `qwen`")
    failed = ModelState(error="There is no model 'x/y' on the Hugging Face Hub. Fix: check the spelling.")
    assert "The last load failed" in status_markdown(failed, Workspace(tmp_path))
    assert "no model 'x/y'" in status_markdown(failed, Workspace(tmp_path))
    assert "last load failed" in header_markdown(failed)


def test_default_adapter_names() -> None:
    assert default_adapter_name("/ws/adapters/support-bot") == "support-bot"
    assert default_adapter_name("/ws/runs/2024-06-01-lora/adapter") == "2024-06-01-lora"


def test_editor_groups_with_the_same_name_are_refused() -> None:
    from studio.ui.widgets import merge_inputs

    assert merge_inputs({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="editor names used twice: top_k"):
        merge_inputs({"top_k": 1}, {"top_k": 2})
