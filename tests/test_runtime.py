"""ModelRuntime: the UI's never-blocking view of the model manager, on the tiny model."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from studio.config import GenerationParams, LoadParams
from studio.core.models import ModelManager
from studio.core.runtime import ModelRuntime
from studio.errors import GenerationError, ModelLoadError

GREEDY = GenerationParams(temperature=0.0, max_new_tokens=8)
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def runtime(tiny_model_dir: Path) -> ModelRuntime:
    runtime = ModelRuntime(ModelManager())
    runtime.load(LoadParams(model=str(tiny_model_dir)))
    return runtime


def test_nothing_loaded_state_prompt_and_replies() -> None:
    runtime = ModelRuntime(ModelManager())
    assert runtime.state.info is None and runtime.state.loading is None
    assert runtime.render_prompt(HELLO) is None
    with pytest.raises(GenerationError, match="No model is loaded"):
        next(runtime.replies(HELLO, GREEDY))


def test_replies_grow_and_the_last_carries_stats(runtime: ModelRuntime) -> None:
    replies = list(runtime.replies(HELLO, GREEDY))
    assert all(r.stats is None for r in replies[:-1]) and replies[-1].stats is not None
    assert replies[-1].stats.completion_tokens == 8
    for earlier, later in zip(replies[:-2], replies[1:-1]):
        assert later.text.startswith(earlier.text)


def test_closing_replies_cancels_and_releases_the_model(runtime: ModelRuntime) -> None:
    replies = runtime.replies(HELLO, GenerationParams(temperature=0.0, max_new_tokens=2000))
    next(replies)
    replies.close()
    done = threading.Event()
    threading.Thread(target=lambda: (list(runtime.replies(HELLO, GREEDY)), done.set()), daemon=True).start()
    assert done.wait(10), "the closed generation still holds the model"


def test_state_never_waits_for_the_model_lock(runtime: ModelRuntime) -> None:
    with runtime.models.use(None):  # a generation in progress holds this lock
        seen: list = []
        reader = threading.Thread(target=lambda: seen.append((runtime.state.info, runtime.adapters())))
        reader.start()
        reader.join(2)
        assert seen and seen[0][0].name == runtime.models.info().name


def test_a_failed_load_is_recorded_and_the_old_model_stays(runtime: ModelRuntime, tmp_path: Path) -> None:
    before = runtime.state.info
    with pytest.raises(ModelLoadError, match="is a folder but not a model"):
        runtime.load(LoadParams(model=str(tmp_path)))
    assert runtime.state.info == before and "is a folder but not a model" in runtime.state.error
    assert runtime.render_prompt(HELLO).token_count > 0


def test_background_load_reports_loading_then_the_result(tiny_model_dir: Path, tmp_path: Path) -> None:
    runtime = ModelRuntime(ModelManager())
    loaded: list = []
    thread = runtime.load_in_background(LoadParams(model=str(tiny_model_dir)), on_loaded=loaded.append)
    assert runtime.state.loading == str(tiny_model_dir) or runtime.state.info is not None
    thread.join(60)
    assert runtime.state.loading is None and runtime.state.info.name == str(tiny_model_dir) and loaded
    runtime.load_in_background(LoadParams(model=str(tmp_path / "missing"))).join(60)
    assert "does not exist" in runtime.state.error and runtime.state.info is not None
    runtime.unload()
    assert runtime.state.info is None and runtime.state.error is None


def test_chat_during_the_startup_load_says_it_is_still_loading(tiny_model_dir: Path) -> None:
    runtime = ModelRuntime(ModelManager())
    runtime._set(loading=str(tiny_model_dir))  # as load_in_background does before its thread starts
    with pytest.raises(GenerationError, match="still loading"):
        next(runtime.replies(HELLO, GREEDY))


def test_a_model_that_cannot_load_falls_back_to_the_demo_and_says_why(tiny_model_dir: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.ui.widgets import header_markdown

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runtime = ModelRuntime(ModelManager())
    remembered: list = []
    runtime.load_in_background(LoadParams(model="some-org/not-cached-model"), on_loaded=remembered.append,
                               fallback=tiny_model_dir).join(60)
    state = runtime.state
    assert state.info is not None and state.info.name == str(tiny_model_dir) and state.error is None
    assert "some-org/not-cached-model could not be loaded" in state.notice and "offline mode is on" in state.notice
    assert "offline demo model" in header_markdown(state) and not remembered  # only the requested model is remembered
    runtime.load(LoadParams(model=str(tiny_model_dir)))  # a load the user asks for clears the notice
    assert runtime.state.notice is None
    runtime.load_in_background(LoadParams(model=str(tiny_model_dir)), fallback=tiny_model_dir).join(60)
    assert "not a useful assistant" in runtime.state.notice  # the demo itself, loaded on purpose, is labelled too


def test_without_a_fallback_folder_the_failure_stays_an_error(tmp_path: Path) -> None:
    runtime = ModelRuntime(ModelManager())
    runtime.load_in_background(LoadParams(model=str(tmp_path / "missing")), fallback=tmp_path / "no-demo-here").join(60)
    assert "does not exist" in runtime.state.error and runtime.state.info is None and runtime.state.notice is None
