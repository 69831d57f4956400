"""The workspace folder: presets, recent models, adapter and model discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.errors import StudioError
from studio.storage.workspace import RECENT_LIMIT, Workspace, check_name, write_atomic


@pytest.fixture
def ws(workspace_dir: Path) -> Workspace:
    return Workspace(workspace_dir)


def test_creates_its_layout(ws: Workspace, workspace_dir: Path) -> None:
    assert ws.root == workspace_dir.resolve()
    for sub in ("adapters", "runs", "presets", "indexes", "logs", "exports", "models"):
        assert (workspace_dir / sub).is_dir()


# Presets -------------------------------------------------------------------------------------
def test_preset_save_load_list_delete(ws: Workspace) -> None:
    data = {"temperature": 0.2, "stop": ["###"], "note": "héllo"}
    path = ws.save_preset("Support bot v2", data)
    assert path.parent == ws.presets_dir and path.name == "Support bot v2.json"
    ws.save_preset("another_one", {"a": 1})
    assert ws.list_presets() == ["Support bot v2", "another_one"]
    assert ws.load_preset("Support bot v2") == data
    ws.save_preset("another_one", {"a": 2})  # overwrite
    assert ws.load_preset("another_one") == {"a": 2}
    ws.delete_preset("Support bot v2")
    assert ws.list_presets() == ["another_one"]
    ws.delete_preset("Support bot v2")  # deleting twice is harmless


def test_missing_preset(ws: Workspace) -> None:
    with pytest.raises(StudioError, match="No preset named 'ghost'") as info:
        ws.load_preset("ghost")
    assert info.value.fix


@pytest.mark.parametrize("name", ["", "   ", "../escape", "a/b", ".hidden", "x" * 65, "a..b", "semi;colon", "new\nline"])
def test_bad_preset_names_are_rejected(ws: Workspace, name: str) -> None:
    with pytest.raises(StudioError, match="name .* is not usable"):
        ws.save_preset(name, {})
    with pytest.raises(StudioError, match="is not usable"):
        ws.load_preset(name)
    with pytest.raises(StudioError, match="is not usable"):
        ws.delete_preset(name)
    assert list(ws.presets_dir.iterdir()) == []
    assert not (ws.root / "escape.json").exists()


def test_names_are_trimmed() -> None:
    assert check_name("  my preset ", "Preset") == "my preset"


def test_corrupt_preset_gives_a_clear_error(ws: Workspace) -> None:
    (ws.presets_dir / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(StudioError, match="broken.json is not valid JSON") as info:
        ws.load_preset("broken")
    assert "save the preset again" in str(info.value)
    (ws.presets_dir / "listy.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(StudioError, match="should hold a JSON object"):
        ws.load_preset("listy")


def test_stray_files_are_not_listed_as_presets(ws: Workspace) -> None:
    ws.save_preset("real", {})
    (ws.presets_dir / ".real.json.tmp123").write_text("{}")
    (ws.presets_dir / ".hidden.json").write_text("{}")
    (ws.presets_dir / "notes.txt").write_text("x")
    assert ws.list_presets() == ["real"]


def test_write_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


# Recent models -------------------------------------------------------------------------------
def test_recent_models_order_dedup_and_limit(ws: Workspace) -> None:
    assert ws.recent_models() == []
    for name in ["a", "b", "c"]:
        ws.remember_model(name)
    assert ws.recent_models() == ["c", "b", "a"]
    ws.remember_model("a")  # used again: moves to the front, once
    assert ws.recent_models() == ["a", "c", "b"]
    ws.remember_model("  ")  # nothing to remember
    assert ws.recent_models() == ["a", "c", "b"]
    for i in range(RECENT_LIMIT + 5):
        ws.remember_model(f"m{i}")
    recent = ws.recent_models()
    assert len(recent) == RECENT_LIMIT
    assert recent[0] == f"m{RECENT_LIMIT + 4}" and "a" not in recent
    assert len(json.loads(ws.recent_file.read_text())) == RECENT_LIMIT


@pytest.mark.parametrize("content", ["{broken", "42", '{"a": 1}', '["ok", 3, null]'])
def test_damaged_recent_file_is_tolerated(ws: Workspace, content: str) -> None:
    ws.recent_file.write_text(content, encoding="utf-8")
    assert ws.recent_models() in ([], ["ok"])
    ws.remember_model("new")
    assert ws.recent_models()[0] == "new"


# Discovery -----------------------------------------------------------------------------------
def _adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_adapters_are_discovered(ws: Workspace) -> None:
    direct = _adapter(ws.adapters_dir / "style-a")
    nested = _adapter(ws.adapters_dir / "team" / "style-b")
    from_run = _adapter(ws.runs_dir / "run-1" / "adapter")
    _adapter(ws.runs_dir / "run-1" / "checkpoint-10")  # intermediate checkpoints are not offered
    (ws.adapters_dir / "empty-folder").mkdir()
    assert ws.adapters() == sorted([direct, nested, from_run])


def test_local_models_need_a_config(ws: Workspace) -> None:
    good = ws.models_dir / "my-model"
    good.mkdir()
    (good / "config.json").write_text("{}")
    (ws.models_dir / "not-a-model").mkdir()
    assert ws.local_models() == [good]
