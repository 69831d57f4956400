"""Adapters on disk: listing both kinds, merging into a standalone model, deleting, and the `studio adapters` CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli_adapters import add_adapters_parser, run_adapters
from studio.core import adapters as adapters_mod
from studio.core.adapters import default_export_dir, delete_adapter, find_adapter, list_adapters, merge_and_export
from studio.errors import StudioError
from studio.storage.workspace import Workspace

from conftest import make_adapter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path: Path, adapter_dirs: tuple[Path, Path]) -> Workspace:
    """adapters/style-a (r=4), a finished run `run-1` with an r=8 adapter, a metrics-only run, and junk."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(adapter_dirs[0], ws.adapters_dir / "style-a")
    (ws.adapters_dir / "junk").mkdir()
    (ws.adapters_dir / "junk" / "notes.txt").write_text("not an adapter")
    run = ws.runs_dir / "run-1"
    shutil.copytree(adapter_dirs[1], run / "adapter")
    (run / "config.yaml").write_text("model: tiny\ndataset: d.jsonl\ntrain:\n  method: lora\n")
    (run / "status.json").write_text(json.dumps({"state": "finished", "extra": {"final": {"step": 5, "loss": 1.5, "eval_loss": 1.75}}}))
    bare = ws.runs_dir / "run-bare"  # no status.json, a damaged config.yaml, metrics only
    shutil.copytree(adapter_dirs[1], bare / "adapter")
    (bare / "config.yaml").write_text("model: [unclosed")
    (bare / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9, "eval_loss": 2.1}\n{"step": 3, "lo')
    (ws.runs_dir / "run-full").mkdir()  # full fine-tuning: a model/, no adapter
    return ws


def by_name(ws: Workspace, **kw: bool) -> dict[str, adapters_mod.AdapterInfo]:
    return {a.name: a for a in list_adapters(ws, **kw)}


# Listing ----------------------------------------------------------------------------------------------------
def test_listing_finds_workspace_and_run_adapters_with_base_and_rank(workspace: Workspace, tiny_model_dir: Path) -> None:
    found = by_name(workspace)
    assert set(found) == {"style-a", "run-1", "run-bare"}
    a, run = found["style-a"], found["run-1"]
    assert (a.source, run.source) == ("workspace", "run")
    assert a.base_model == run.base_model == str(tiny_model_dir)
    assert a.peft_type == "LORA" and a.r == 4 and {"q_proj", "down_proj"} <= set(a.target_modules)
    assert a.size_bytes > 1000 and a.created > 0 and a.path == workspace.adapters_dir / "style-a"
    assert run.path == workspace.runs_dir / "run-1" / "adapter"
    assert (run.method, run.run_state, run.metrics) == ("lora", "finished", {"step": 5, "loss": 1.5, "eval_loss": 1.75})
    assert a.method is None and a.metrics == {}


def test_missing_run_files_leave_fields_empty_and_metrics_come_from_the_jsonl(workspace: Workspace) -> None:
    bare = by_name(workspace)["run-bare"]
    assert bare.method is None and bare.run_state is None
    assert bare.metrics == {"step": 2, "loss": 1.9, "eval_loss": 2.1}


def test_invalid_folders_are_skipped_or_reported_with_a_reason(workspace: Workspace, tiny_model_dir: Path) -> None:
    make_adapter(tiny_model_dir, workspace.adapters_dir / "team" / "nested", seed=4, r=2)
    assert "junk" not in by_name(workspace) and by_name(workspace)["team/nested"].r == 2
    assert "team" not in by_name(workspace, include_invalid=True)  # it groups adapters; it is not broken
    junk = by_name(workspace, include_invalid=True)["junk"]
    assert "is not a peft adapter: it has no adapter_config.json" in junk.problem
    (workspace.adapters_dir / "junk" / "adapter_config.json").write_text("{broken")
    assert "is not valid JSON" in by_name(workspace, include_invalid=True)["junk"].problem
    assert "junk" not in by_name(workspace)


def test_importing_the_module_stays_light() -> None:
    code = "import sys, studio.core.adapters, studio.cli_adapters; print([m for m in ('torch', 'peft', 'transformers') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


# Merging ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def merged(adapter_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    steps: list[float] = []
    out = merge_and_export(adapter_dirs[0], tmp_path_factory.mktemp("export") / "style-a-merged", dtype="fp32",
                           progress=lambda f, _m: steps.append(f))
    assert steps[-1] == 1.0 and steps == sorted(steps)
    return out


def logits(model: object, tokenizer: object) -> object:
    import torch

    with torch.no_grad():
        return model(**tokenizer("Hello there, how are you?", return_tensors="pt")).logits  # type: ignore[operator]


def test_merged_model_loads_without_peft_and_matches_base_plus_adapter(merged: Path, tiny_model_dir: Path,
                                                                       adapter_dirs: tuple[Path, Path]) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert tokenizer.chat_template and tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    got = logits(AutoModelForCausalLM.from_pretrained(merged).eval(), tokenizer)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    plain = logits(base, tokenizer)
    expected = logits(PeftModel.from_pretrained(base, adapter_dirs[0]).eval(), tokenizer)
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-2)  # the adapter really is in the weights
    assert not (merged / "adapter_config.json").exists()
    readme = (merged / "README.md").read_text()
    assert str(tiny_model_dir) in readme and str(adapter_dirs[0]) in readme and "fp32" in readme
    assert not [p for p in merged.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_refuses_a_folder_that_is_not_an_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(StudioError, match="is not a peft adapter: it has no adapter_config.json") as err:
        merge_and_export(tiny_model_dir, tmp_path / "out")
    assert err.value.fix and not (tmp_path / "out").exists()


def test_refuses_an_out_dir_that_is_not_empty(tmp_path: Path, adapter_dirs: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(StudioError, match="already exists and is not empty") as err:
        merge_and_export(adapter_dirs[0], out)
    assert "choose a new output folder" in err.value.fix and [p.name for p in out.iterdir()] == ["keep.txt"]


def test_refuses_a_base_that_cannot_be_loaded(tmp_path: Path, adapter_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(StudioError, match="does not exist") as err:
        merge_and_export(adapter_dirs[0], tmp_path / "out", base_model=str(tmp_path / "no" / "such-model"))
    assert err.value.fix and not list(tmp_path.iterdir())


def test_refuses_a_base_the_adapter_does_not_fit(tmp_path: Path, adapter_dirs: tuple[Path, Path], other_model_dir: Path) -> None:
    with pytest.raises(StudioError, match="trained on another base") as err:
        merge_and_export(adapter_dirs[0], tmp_path / "out", base_model=str(other_model_dir))
    assert "load the base model it was trained on" in err.value.fix and not list(tmp_path.iterdir())


def test_refuses_prompt_tuning_and_says_to_use_it_as_an_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    adapter = tmp_path / "prompt"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "PROMPT_TUNING", "base_model_name_or_path": str(tiny_model_dir), "num_virtual_tokens": 8}))
    with pytest.raises(StudioError, match="PROMPT_TUNING adapter.*cannot be merged") as err:
        merge_and_export(adapter, tmp_path / "out")
    assert "use it as an adapter instead" in err.value.fix


def test_refuses_an_unknown_dtype(tmp_path: Path, adapter_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(StudioError, match="dtype '4bit' cannot be merged in") as err:
        merge_and_export(adapter_dirs[0], tmp_path / "out", dtype="4bit")  # type: ignore[arg-type]
    assert "choose auto" in err.value.fix


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_auto_merges_in_bf16_on_a_gpu_within_tolerance(tmp_path: Path, adapter_dirs: tuple[Path, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = merge_and_export(adapter_dirs[0], tmp_path / "out")
    assert "in bf16" in (out / "README.md").read_text() or not torch.cuda.is_bf16_supported()
    assert AutoModelForCausalLM.from_pretrained(out).dtype in (torch.bfloat16, torch.float32)


def test_a_failed_check_leaves_nothing_behind(tmp_path: Path, adapter_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(adapters_mod.TOLERANCE, "fp32", -1.0)  # no difference is small enough
    out = tmp_path / "export" / "out"
    out.mkdir(parents=True)  # an empty out_dir is allowed, and stays as it was
    with pytest.raises(StudioError, match="outputs differ from base \\+ adapter"):
        merge_and_export(adapter_dirs[0], out)
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["out"] and not list(out.iterdir())


def test_default_export_dir_is_under_models(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    assert default_export_dir(ws, "style-a") == ws.models_dir / "style-a-merged"
    assert default_export_dir(ws, "team/style-a") == ws.models_dir / "team-style-a-merged"


# Deleting ---------------------------------------------------------------------------------------------------
def test_delete_refuses_paths_outside_the_adapter_folders(workspace: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for path in (outside, workspace.adapters_dir, workspace.runs_dir / "run-1", workspace.presets_dir,
                 workspace.adapters_dir / ".." / "runs", workspace.runs_dir / "run-1" / "adapter" / ".." / "config.yaml"):
        with pytest.raises(StudioError, match="is not an adapter folder of the workspace") as err:
            delete_adapter(workspace, path)
        assert "only folders inside" in err.value.fix
    assert outside.is_dir() and (workspace.runs_dir / "run-1" / "config.yaml").is_file()


def test_delete_refuses_a_link_out_of_the_workspace(workspace: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (workspace.adapters_dir / "link").symlink_to(target)
    with pytest.raises(StudioError, match="is not an adapter folder of the workspace"):
        delete_adapter(workspace, workspace.adapters_dir / "link")
    assert target.is_dir()


def test_delete_a_run_adapter_keeps_the_run(workspace: Workspace) -> None:
    run = workspace.runs_dir / "run-1"
    assert delete_adapter(workspace, run / "adapter") == run / "adapter"
    assert not (run / "adapter").exists() and (run / "config.yaml").is_file() and (run / "status.json").is_file()
    assert "run-1" not in by_name(workspace)
    delete_adapter(workspace, workspace.adapters_dir / "style-a")
    assert set(by_name(workspace)) == {"run-bare"}
    with pytest.raises(StudioError, match="There is no adapter folder"):
        delete_adapter(workspace, workspace.adapters_dir / "style-a")


def test_find_adapter_by_name_or_folder(workspace: Workspace) -> None:
    assert find_adapter(workspace, "run-1").path == workspace.runs_dir / "run-1" / "adapter"
    by_path = find_adapter(workspace, workspace.runs_dir / "run-1" / "adapter")
    assert (by_path.name, by_path.source, by_path.method) == ("run-1", "run", "lora")
    with pytest.raises(StudioError, match="No adapter named 'nope'") as err:
        find_adapter(workspace, "nope")
    assert "run-1" in err.value.fix and "style-a" in err.value.fix
    shutil.copytree(workspace.adapters_dir / "style-a", workspace.adapters_dir / "run-1")
    with pytest.raises(StudioError, match="'run-1' names both"):
        find_adapter(workspace, "run-1")


# CLI --------------------------------------------------------------------------------------------------------
def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="studio")
    add_adapters_parser(parser.add_subparsers(dest="command"))
    return run_adapters(parser.parse_args(argv))


def test_cli_list_as_json_and_text(workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    assert cli("adapters", "list", "--json", "--workspace", str(workspace.root)) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["r"] for r in rows} == {"style-a": 4, "run-1": 4, "run-bare": 4}
    assert all(isinstance(r["path"], str) for r in rows)
    assert cli("adapters", "list", "--all", "--workspace", str(workspace.root)) == 0
    out = capsys.readouterr().out
    assert "run-1  [run]  ·  LORA r=4" in out and "loss 1.5000" in out and "junk  [workspace]  not usable" in out


def test_cli_list_uses_studio_home(workspace_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli("adapters", "list") == 0
    assert f"No adapters in {workspace_dir.resolve() / 'adapters'}" in capsys.readouterr().out


def test_cli_merge_by_name_to_the_default_folder(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    ws = Workspace(tmp_path / "ws")
    make_adapter(tiny_model_dir, ws.adapters_dir / "small", seed=3, r=2)
    assert cli("adapters", "merge", "small", "--workspace", str(ws.root)) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(ws.models_dir / "small-merged") and "[100%]" in captured.err
    assert ws.local_models() == [ws.models_dir / "small-merged"]
    assert cli("adapters", "merge", "small", "--workspace", str(ws.root)) == 2  # the folder is taken now
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists and is not empty" in err and "fix: " in err


def test_cli_delete_and_its_errors(workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    assert cli("adapters", "delete", "run-1", "--workspace", str(workspace.root)) == 0
    assert "Deleted" in capsys.readouterr().out and (workspace.runs_dir / "run-1" / "config.yaml").is_file()
    assert cli("adapters", "delete", "run-1", "--workspace", str(workspace.root)) == 2
    assert "No adapter named 'run-1'" in capsys.readouterr().err
    assert cli("adapters", "delete", str(workspace.presets_dir), "--workspace", str(workspace.root)) == 2
    assert "is not an adapter folder of the workspace" in capsys.readouterr().err
