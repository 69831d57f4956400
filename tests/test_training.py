"""Training core (issue 4): parameters, the run folder, the real worker process on a tiny model, the service.

The slow tests run `python -m studio.core.training.worker` (or TrainingService, which launches it) on
the 2-layer random Llama of conftest, on CPU, for a few steps each, as litgpt's tests do.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from studio.core.training.estimate import GIB, count_parameters, estimate_memory
from studio.core.training.params import RunConfig, TrainParams
from studio.storage.runs import RunDir, Runs, RunStatus
from studio.core.training.service import TrainingService
from studio.errors import ConfigError, StudioError
from studio.storage.workspace import Workspace

WORKER = [sys.executable, "-m", "studio.core.training.worker"]


# Helpers ------------------------------------------------------------------------------------------------------
def write_chat_data(path: Path, count: int = 16, bad_line: int | None = None) -> Path:
    lines = []
    for i in range(count):
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"The answer is {2 * i}. Please restart the device and try again."}]}))
    if bad_line is not None:
        lines[bad_line - 1] = '{"messages": [{"role": "user", "content": "unterminated'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_config(model: Path, data: Path, name: str, **train: Any) -> RunConfig:
    params = {"method": "lora", "lora_r": 4, "lora_alpha": 8, "per_device_batch_size": 2, "gradient_accumulation": 1,
              "logging_steps": 1, "max_steps": 4, **train}
    return RunConfig(model=str(model), dataset=str(data), name=name, train=TrainParams(**params))


def run_worker(config: RunConfig, workspace: Workspace, *extra: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    config_path = config.save(path or workspace.root / f"{config.name}.yaml")
    return subprocess.run([*WORKER, "--config", str(config_path), "--workspace", str(workspace.root), *extra],
                          capture_output=True, text=True, timeout=240)


def wait_for(predicate: Callable[[], Any], timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return write_chat_data(tmp_path / "chat.jsonl")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


def _logits(model: Any, tokenizer: Any) -> Any:
    import torch

    ids = tokenizer("What is 3 plus 3?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


# Parameters -----------------------------------------------------------------------------------------------------
def test_train_params_defaults_and_method_learning_rate() -> None:
    p = TrainParams()
    assert (p.method, p.lora_r, p.lora_alpha, p.lora_dropout, p.target_modules) == ("lora", 16, 32, 0.05, "all-linear")
    assert (p.epochs, p.learning_rate, p.lr_scheduler, p.warmup_ratio, p.seed) == (2, 1e-4, "cosine", 0.03, 42)
    assert (p.per_device_batch_size, p.gradient_accumulation, p.effective_batch_size) == (4, 4, 16)
    assert p.group_by_length and not p.train_on_prompt and p.max_length is None
    assert TrainParams(method="qlora").learning_rate == 2e-4
    assert TrainParams(method="qlora", learning_rate=5e-5).learning_rate == 5e-5
    assert TrainParams(target_modules="q_proj, v_proj").target_modules == ["q_proj", "v_proj"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"method": "adapter"}, "`method` should be one of qlora, lora, full, prompt_tuning, got 'adapter'"),
    ({"lora_r": 0}, "`lora_r` should be a number between 1 and 512, got 0"),
    ({"lora_dropout": 0.9}, "`lora_dropout` should be a number between 0.0 and 0.5, got 0.9"),
    ({"epochs": 0}, "`epochs` should be a number between 1 and 20, got 0"),
    ({"learning_rate": 1.0}, "`learning_rate` should be a number between 1e-07 and 0.01, got 1.0"),
    ({"per_device_batch_size": 2.5}, "`per_device_batch_size` should be a whole number, got 2.5"),
    ({"max_length": 8}, "`max_length` should be a number between 16 and 131072, got 8"),
    ({"target_modules": []}, "`target_modules` should be all-linear or a list of module names, got []"),
    ({"lr_scheduler": "step"}, "`lr_scheduler` should be one of cosine, linear, constant, constant_with_warmup"),
])
def test_train_params_messages_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainParams(**changes)
    assert message in err.value.message
    assert err.value.fix


def test_run_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = RunConfig(model="org/model", dataset="data.jsonl", validation="val.jsonl", val_ratio=0.2, name="r1",
                       train=TrainParams(method="qlora", target_modules=["q_proj", "v_proj"], max_length=512),
                       data={"truncation": "drop"})
    path = config.save(tmp_path / "RUN.yaml")
    again = RunConfig.load(path)
    assert again == config
    assert again.train.learning_rate == 2e-4 and again.data.truncation == "drop"
    data = again.data_params(max_length=999)
    assert (data.max_length, data.val_ratio, data.train_on_prompt) == (512, 0.2, False)


def test_run_config_paths_made_absolute_for_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)
    config = RunConfig(model="models/mine", dataset="data/chat.jsonl", validation="val.jsonl").with_absolute_paths()
    assert config.model == str(tmp_path / "models" / "mine")
    assert (config.dataset, config.validation) == (str(tmp_path / "data" / "chat.jsonl"), str(tmp_path / "val.jsonl"))
    assert RunConfig(model="org/name", dataset="d.jsonl").with_absolute_paths().model == "org/name"  # a hub id stays


@pytest.mark.parametrize(("text", "message"), [
    ("model: m\ndataset: d.jsonl\ntrain: {lora_rank: 8}\n", "Unknown train setting(s): lora_rank"),
    ("dataset: d.jsonl\n", "`model` is empty"),
    ("model: m\ndataset: d.jsonl\ntrain: {lora_r: -1}\n", "`lora_r` should be a number between 1 and 512, got -1"),
    ("- just a list\n", "should hold a mapping"),
    ("model: [unclosed\n", "is not valid YAML"),
])
def test_run_config_errors_name_the_file_and_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "RUN.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        RunConfig.load(path)
    assert message in err.value.message
    assert str(path) in err.value.message


def test_missing_run_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "nope.yaml")


# Estimates ------------------------------------------------------------------------------------------------------
def test_memory_estimate_lora_by_hand() -> None:
    # 1,000,000 base + 10,000 LoRA params; bf16 base; batch 2 × seq 100 × hidden 64 × 4 layers; vocab 1,000.
    est = estimate_memory(1_010_000, 10_000, "lora", "bf16", batch_size=2, seq_len=100, hidden_size=64, layers=4,
                          vocab_size=1000, compute_precision="bf16")
    assert est.weights == 1_000_000 * 2 + 10_000 * 4
    assert est.gradients == 10_000 * 4
    assert est.optimizer == 10_000 * 8
    assert est.activations == 2 * 100 * (64 * 4 * 34 + 1000 * 8)  # 1,740,800 + 1,600,000
    assert est.total == 2_040_000 + 40_000 + 80_000 + 3_340_800


def test_memory_estimate_full_qlora_and_checkpointing() -> None:
    full = estimate_memory(1_000_000, 1_000_000, "full", "bf16", 1, 10, 8, 2)
    assert full.weights + full.gradients + full.optimizer == 16 * 1_000_000  # ~16 bytes/param with AdamW
    qlora = estimate_memory(1_000_000 + 1000, 1000, "qlora", "4bit", 1, 10, 8, 2)
    assert qlora.weights == 1_000_000 * 0.5 + 1000 * 4
    fp32 = estimate_memory(1000, 10, "lora", "fp32", 1, 10, 8, 2, compute_precision="fp32")
    assert fp32.weights == 990 * 4 + 40 and fp32.activations == 10 * 8 * 2 * 68
    checkpointed = estimate_memory(1000, 10, "lora", "bf16", 1, 10, 8, 2, gradient_checkpointing=True)
    assert checkpointed.activations == 10 * 8 * 2 * 2
    assert "GiB" in full.text() and GIB == 2**30


def test_count_parameters_matches_peft_on_the_real_model(tiny_model_dir: Path) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.core.training.setup import peft_config

    config = make_config(tiny_model_dir, Path("unused.jsonl"), "count")
    counts = count_parameters(config)
    real = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), peft_config(config))
    assert (counts.trainable, counts.total) == real.get_nb_trainable_parameters()
    assert 0 < counts.fraction < 0.2
    full = count_parameters(make_config(tiny_model_dir, Path("unused.jsonl"), "full", method="full"))
    assert full.trainable == full.total == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    prompt = count_parameters(make_config(tiny_model_dir, Path("u.jsonl"), "pt", method="prompt_tuning", num_virtual_tokens=10))
    assert prompt.trainable == 10 * 64  # virtual tokens × hidden size


# Run folder -------------------------------------------------------------------------------------------------------
def test_metrics_reader_skips_a_partial_last_line(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.append_metrics({"step": 1, "loss": 2.0})
    run.append_metrics({"step": 2, "loss": 1.5})
    with run.metrics_file.open("a", encoding="utf-8") as fh:
        fh.write('{"step": 3, "lo')  # the worker is writing this line right now
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert RunDir(tmp_path / "none").read_metrics() == []


def test_startup_scan_marks_dead_workers_interrupted(tmp_path: Path) -> None:
    runs = Runs(tmp_path / "runs")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.get("dead").path.mkdir()
    runs.get("dead").write_status(RunStatus(state="running", pid=dead.pid, started=1.0))
    runs.get("alive").path.mkdir()
    runs.get("alive").write_status(RunStatus(state="running", pid=os.getpid()))
    runs.get("done").path.mkdir()
    runs.get("done").write_status(RunStatus(state="finished", pid=dead.pid))
    runs.get("never-launched").path.mkdir()
    runs.get("never-launched").write_status(RunStatus(state="queued"))
    old = time.time() - 600
    os.utime(runs.get("never-launched").status_file, (old, old))
    assert sorted(runs.mark_interrupted()) == ["dead", "never-launched"]
    status = runs.status("dead")
    assert status.state == "interrupted" and "resume" in status.suggestion and status.ended
    assert runs.status("alive").state == "running" and runs.status("done").state == "finished"


def test_collator_pads_each_batch_to_its_longest_example() -> None:
    from studio.core.training.callbacks import PaddingCollator

    batch = PaddingCollator(pad_id=3)([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "attention_mask": [1, 1, 1]},
        {"input_ids": [8], "labels": [8], "attention_mask": [1]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert PaddingCollator(pad_id=0, multiple_of=8)([{"input_ids": [1], "labels": [1], "attention_mask": [1]}])[
        "input_ids"].shape == (1, 8)


def test_service_and_params_import_no_ml_library() -> None:
    # The studio builds TrainingService at start-up and the UI reads TrainParams: neither may pull in torch.
    code = ("import sys, studio.core.training.service, studio.core.training.params, studio.core.training.estimate, "
            "studio.cli_train\nprint(','.join(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_service_refuses_missing_data_taken_names_and_unknown_runs(tiny_model_dir: Path, data_file: Path,
                                                                     workspace: Workspace) -> None:
    service = TrainingService(workspace)
    with pytest.raises(StudioError, match="does not exist|not found|No such"):
        service.start(make_config(tiny_model_dir, data_file.with_name("missing.jsonl"), "m"))
    (workspace.runs_dir / "taken").mkdir()
    RunDir(workspace.runs_dir / "taken").write_status(RunStatus(state="finished"))
    with pytest.raises(StudioError, match="already exists"):
        service.start(make_config(tiny_model_dir, data_file, "taken"))
    with pytest.raises(StudioError, match="no run named"):
        service.status("ghost")
    with pytest.raises(StudioError, match="is not running"):
        service.stop("taken")
    with pytest.raises(StudioError, match="only a stopped, failed or interrupted run"):
        service.resume("taken")
    service.delete("taken")
    assert not (workspace.runs_dir / "taken").exists()


def test_dataset_with_an_error_line_fails_with_its_line(tiny_model_dir: Path, tmp_path: Path, workspace: Workspace) -> None:
    from studio.core.training.worker import run_training

    data = write_chat_data(tmp_path / "broken.jsonl", bad_line=3)
    config = make_config(tiny_model_dir, data, "broken")
    assert run_training(config.save(tmp_path / "RUN.yaml"), workspace=workspace.root) == 1
    status = Runs(workspace.runs_dir).status("broken")
    assert status.state == "failed"
    assert "broken.jsonl has 1 invalid line(s): line 3:" in status.reason
    assert "fix or remove these lines" in status.suggestion
    assert status.ended and not (workspace.runs_dir / "broken" / "adapter").exists()


def test_failures_are_described_with_a_suggestion() -> None:
    from studio.core.training.worker import OOM_FIX, describe_failure

    assert describe_failure(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")) == (
        "Out of memory: CUDA out of memory. Tried to allocate 2 GiB", OOM_FIX)
    assert describe_failure(MemoryError())[1] == "lower the batch size, enable 4-bit (QLoRA), or shorten max length."
    assert describe_failure(StudioError("bad", "do this")) == ("bad", "do this")
    reason, fix = describe_failure(ValueError("odd value\nsecond line"))
    assert reason == "ValueError: odd value" and "log.txt" in fix


def test_cli_train_parser_and_estimate(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from studio.cli_train import add_train_parser, run_train

    parser = argparse.ArgumentParser(prog="studio")
    add_train_parser(parser.add_subparsers(dest="command"))
    config = make_config(tiny_model_dir, tmp_path / "d.jsonl", "est").save(tmp_path / "RUN.yaml")
    args = parser.parse_args(["train", "--config", str(config), "--estimate"])
    assert (args.command, args.resume) == ("train", False)
    assert run_train(args) == 0
    out = capsys.readouterr().out
    assert "trainable of" in out and "memory estimate: ~" in out
    bad = parser.parse_args(["train", "--config", str(tmp_path / "missing.yaml"), "--workspace", str(tmp_path / "ws")])
    assert run_train(bad) == 2
    assert "does not exist" in capsys.readouterr().err
    resume = parser.parse_args(["train", "--config", str(config), "--resume", "--workspace", str(tmp_path / "ws")])
    assert run_train(resume) == 2
    assert "has no checkpoint to resume from" in capsys.readouterr().err
    assert not (tmp_path / "ws" / "runs" / "est").exists()  # refused before anything was written


# The worker, for real ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lora_run_trains_evaluates_and_saves_a_loadable_adapter(tiny_model_dir: Path, data_file: Path,
                                                                 workspace: Workspace) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = make_config(tiny_model_dir, data_file, "lora-run", learning_rate=1e-2, eval_steps=2, save_steps=2)
    result = run_worker(config, workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    run = Runs(workspace.runs_dir).get("lora-run")
    status = run.read_status()
    assert status.state == "finished" and status.step == 4 and status.ended >= status.started
    rows = run.read_metrics()
    losses = [r for r in rows if r["loss"] is not None]
    evals = [r for r in rows if r["eval_loss"] is not None]
    assert [r["step"] for r in losses] == [1, 2, 3, 4] and [r["step"] for r in evals] == [2, 4]
    assert set(rows[0]) == {"step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_s",
                            "elapsed_s", "eta_s"}
    assert all(r["tokens_per_s"] > 0 and r["eta_s"] is not None for r in losses)
    assert RunConfig.load(run.config_file) == RunConfig.load(workspace.root / "lora-run.yaml")
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-4"]

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = _logits(base, tokenizer)
    tuned = PeftModel.from_pretrained(base, str(run.adapter_dir))
    assert not (before - _logits(tuned, tokenizer)).abs().max() < 1e-6  # the adapter changes the output
    card = (run.adapter_dir / "README.md").read_text(encoding="utf-8")
    from studio.core.training.card import file_sha256

    assert f"base_model: {tiny_model_dir}" in card and file_sha256(data_file) in card
    assert "| method | lora |" in card and "| lora_r | 4 |" in card and f"{evals[-1]['eval_loss']:.4f}" in card
    assert json.loads((run.adapter_dir / "studio_base.json").read_text())["hidden_size"] == 64


@pytest.mark.slow
def test_qlora_trains_two_steps_on_cpu(tiny_model_dir: Path, data_file: Path, workspace: Workspace) -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed: QLoRA cannot load 4-bit weights here")
    result = run_worker(make_config(tiny_model_dir, data_file, "qlora-run", method="qlora", max_steps=2), workspace)
    status = Runs(workspace.runs_dir).status("qlora-run")
    if status.state == "failed" and ("bitsandbytes" in status.reason or "4bit" in status.reason.lower()):
        pytest.skip(f"bitsandbytes cannot load 4-bit weights here: {status.reason}")
    assert result.returncode == 0 and status.state == "finished", status.reason + result.stderr[-3000:]
    adapter_config = json.loads((workspace.runs_dir / "qlora-run" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA"
    assert "trainable parameters" in (workspace.runs_dir / "qlora-run" / "log.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("method", "extra", "output"), [
    ("prompt_tuning", {"num_virtual_tokens": 4}, "adapter"),
    ("full", {}, "model"),
    ("lora", {"gradient_checkpointing": True, "group_by_length": False}, "adapter"),
])
def test_other_methods_train_and_save_what_loads(tiny_model_dir: Path, data_file: Path, workspace: Workspace, method: str,
                                                 extra: dict[str, Any], output: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = run_worker(make_config(tiny_model_dir, data_file, f"{method}-run", method=method, max_steps=2, **extra), workspace)
    run = Runs(workspace.runs_dir).get(f"{method}-run")
    assert result.returncode == 0 and run.read_status().state == "finished", run.read_status().reason + result.stderr[-3000:]
    saved = run.path / output
    if output == "model":
        assert AutoModelForCausalLM.from_pretrained(saved).config.hidden_size == 64
    else:
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(saved))
    assert (saved / "README.md").is_file() and [r for r in run.read_metrics() if r["loss"] is not None]


@pytest.fixture(scope="module")
def stopped_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, RunDir, subprocess.CompletedProcess[str]]:
    """A run whose STOP file was there from the start: the worker stops after its first step."""
    root = tmp_path_factory.mktemp("stop")
    workspace = Workspace(root / "ws")
    data = write_chat_data(root / "chat.jsonl")
    run = Runs(workspace.runs_dir).get("stopped")
    run.path.mkdir()
    run.stop_file.touch()
    result = run_worker(make_config(tiny_model_dir, data, "stopped", max_steps=6, save_steps=2), workspace)
    return workspace, run, result


@pytest.mark.slow
def test_stop_file_stops_the_run_and_saves_the_adapter(stopped_run: tuple[Workspace, RunDir, Any]) -> None:
    _, run, result = stopped_run
    assert result.returncode == 0, result.stderr[-3000:]
    status = run.read_status()
    assert status.state == "stopped" and status.step == 1
    assert "Stopped on request at step 1" in status.reason and "resume" in status.suggestion
    assert (run.adapter_dir / "adapter_config.json").is_file()
    assert "**stopped**" in (run.adapter_dir / "README.md").read_text()
    assert [c.name for c in run.checkpoints()] == ["checkpoint-1"]
    assert not run.stop_file.exists()  # honoured, so a resume does not stop at once


@pytest.mark.slow
def test_resume_continues_past_the_checkpoint(stopped_run: tuple[Workspace, RunDir, Any]) -> None:
    workspace, run, _ = stopped_run
    service = TrainingService(workspace)
    assert service.resume("stopped") == "stopped"
    status = wait_for(lambda: (s := service.status("stopped")).state not in ("queued", "running") and s, what="resume")
    assert status.state == "finished", status.reason + run.log_tail()
    steps = [r["step"] for r in service.metrics("stopped") if r["loss"] is not None]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 1 from the first process, 2-6 from the resumed one
    state = json.loads((run.checkpoints()[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert "resuming from checkpoint-1" in run.log_file.read_text()


@pytest.mark.slow
def test_service_stop_and_killed_worker(tiny_model_dir: Path, data_file: Path, workspace: Workspace) -> None:
    service = TrainingService(workspace, stop_grace_s=60)
    long_run = {"max_steps": 100_000, "save_steps": 50, "logging_steps": 5}
    # stop(): the worker honours the STOP file at its next step, saves the adapter and ends `stopped`.
    first = service.start(make_config(tiny_model_dir, data_file, "to-stop", **long_run))
    wait_for(lambda: service.metrics(first), what="first metrics line")
    service.stop(first, wait=True)
    status = service.status(first)
    assert status.state == "stopped" and (workspace.runs_dir / first / "adapter" / "adapter_config.json").is_file()
    listed = {info.name: info for info in service.runs()}
    assert listed[first].method == "lora" and listed[first].status.state == "stopped"

    # A worker killed outright leaves `running` behind; the next studio start-up marks it interrupted.
    second = service.start(make_config(tiny_model_dir, data_file, "to-kill", **long_run))
    wait_for(lambda: service.metrics(second), what="first metrics line")
    pid = service.status(second).pid
    assert pid and service.status(second).state == "running"
    os.kill(pid, signal.SIGKILL)
    service._procs[second].wait(timeout=30)  # reap it, as the studio's process would
    assert Runs(workspace.runs_dir).status(second).state == "running"  # nobody has noticed yet
    restarted = TrainingService(workspace)
    assert restarted.interrupted == [second]
    status = restarted.status(second)
    assert status.state == "interrupted" and "resume" in status.suggestion
    restarted.delete(second)
    assert second not in [info.name for info in restarted.runs()]


@pytest.mark.slow
def test_stop_ends_a_worker_that_does_not_answer_within_the_grace_period(tiny_model_dir: Path, data_file: Path,
                                                                         workspace: Workspace) -> None:
    # Stopped while it is still importing torch (long before its first step can see STOP): after the grace period
    # the service terminates it, and the run ends `stopped` either way, never stuck in `running`.
    service = TrainingService(workspace, stop_grace_s=0.3)
    name = service.start(make_config(tiny_model_dir, data_file, "deaf", max_steps=100_000))
    service.stop(name, wait=True)
    status = service.status(name)
    assert status.state == "stopped" and status.ended
    assert "SIGTERM" in status.reason or "did not stop within" in status.reason
    assert service._procs[name].poll() is not None


def test_a_stop_ends_only_the_worker_it_was_asked_to_stop(workspace: Workspace) -> None:
    # Regression: the grace-period watcher used to look the run's process up by name when it fired, so a Resume
    # started before the old worker had fully exited was the one that got SIGTERMed.
    from studio.storage.runs import RunStatus

    service = TrainingService(workspace, stop_grace_s=1)
    run = service.store.get("stop-resume")
    run.path.mkdir(parents=True)
    run.config_file.write_text("model: m\ndataset: d\n")
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        service._procs["stop-resume"] = old
        run.write_status(RunStatus(state="running", pid=old.pid))
        service.stop("stop-resume")
        service._procs["stop-resume"] = new  # a resume, while the old worker has not exited yet
        old.wait(timeout=30)  # the old worker, ignoring STOP, is ended after the grace period...
        time.sleep(0.5)
        assert new.poll() is None  # ...and the new one is left alone
    finally:
        for proc in (old, new):
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_worker_whose_studio_dies_checkpoints_and_ends_interrupted(tiny_model_dir: Path, data_file: Path,
                                                                     workspace: Workspace) -> None:
    # The studio starts workers in their own session, so killing the studio does not kill them; each worker
    # watches the studio's pid and, once it is gone, saves a checkpoint and ends `interrupted` (resumable).
    import psutil

    from studio.storage.runs import PARENT_ENV

    studio = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # stands in for the studio
    config = make_config(tiny_model_dir, data_file, "orphan", max_steps=100_000, save_steps=100_000)
    config_path = config.save(workspace.root / "orphan.yaml")
    env = {**os.environ, PARENT_ENV: f"{studio.pid}:{psutil.Process(studio.pid).create_time()}"}
    worker = subprocess.Popen([*WORKER, "--config", str(config_path), "--workspace", str(workspace.root)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = Runs(workspace.runs_dir)
    try:
        wait_for(lambda: runs.metrics("orphan"), what="first metrics line")
        studio.kill()
        studio.wait()
        assert worker.wait(timeout=120) == 0
    finally:
        studio.kill()
        worker.kill()
    status = runs.status("orphan")
    assert status.state == "interrupted" and "studio" in status.reason and "resume" in status.suggestion.lower()
    run = runs.get("orphan")
    assert run.last_checkpoint() is not None and (run.adapter_dir / "adapter_config.json").is_file()
    service = TrainingService(workspace)
    assert service.resume("orphan") == "orphan"
    service.stop("orphan", wait=True)
