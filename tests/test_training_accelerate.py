"""The worker under `accelerate launch` with 2 processes (issue 4, item 5): data parallel on CPU with gloo.

Only the main process writes to the run folder; both train, and both agree on when to stop.

`accelerate launch --num_processes 2 --cpu` does not start two processes (accelerate 1.x): with --cpu it
uses its simple launcher, which starts one process unless given `--mpirun_hostfile` (and MPI, not
installed here). Two CPU processes come from the torchrun launcher, which `--multi_gpu` selects; with
no visible GPU the worker trains on CPU (TrainingArguments use_cpu) and torch.distributed uses gloo.
The step counts below prove two processes shared the data.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.training.params import RunConfig, TrainParams
from studio.storage.runs import RunDir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(config_path: Path, workspace: Path) -> subprocess.CompletedProcess[str]:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate command is not installed in this environment")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "studio.core.training.worker", "--config", str(config_path), "--workspace", str(workspace)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _config(tmp_path: Path, model: Path) -> RunConfig:
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} plus {i}?"},
        {"role": "assistant", "content": f"The answer is {2 * i}."}]}) + "\n" for i in range(16)), encoding="utf-8")
    # 12 training examples, 2 per process and step: 3 steps in one epoch with 2 processes (6 with one).
    train = TrainParams(method="lora", lora_r=4, lora_alpha=8, per_device_batch_size=2, gradient_accumulation=1,
                        logging_steps=1, epochs=1, sample_max_new_tokens=4, group_by_length=False)
    return RunConfig(model=str(model), dataset=str(data), val_ratio=0.25, name="ddp", train=train)


@pytest.mark.slow
def test_two_processes_train_and_only_the_main_one_writes(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = _launch(_config(tmp_path, tiny_model_dir).save(tmp_path / "RUN.yaml"), tmp_path / "ws")
    assert done.returncode == 0, done.stderr[-4000:]
    run = RunDir(tmp_path / "ws" / "runs" / "ddp")
    status = run.read_status()
    assert (status.state, status.step, status.total_steps) == ("finished", 3, 3), status
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    rows = run.read_metrics()
    assert [r["step"] for r in rows if r["loss"] is not None] == [1, 2, 3]  # one line per step: one writer
    assert [r["step"] for r in rows if r["eval_loss"] is not None] == [3]
    assert len((run.path / "samples.jsonl").read_text(encoding="utf-8").splitlines()) == 1


@pytest.mark.slow
def test_a_stop_request_stops_every_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "ws" / "runs" / "ddp")
    run.path.mkdir(parents=True)
    run.stop_file.write_text("stop", encoding="utf-8")  # there before the first step: both ranks must stop at step 1
    done = _launch(_config(tmp_path, tiny_model_dir).save(tmp_path / "RUN.yaml"), tmp_path / "ws")
    assert done.returncode == 0, done.stderr[-4000:]
    status = run.read_status()
    assert (status.state, status.step) == ("stopped", 1), status
    assert (run.adapter_dir / "adapter_model.safetensors").is_file() and not run.stop_file.exists()


def test_an_unnamed_run_under_a_launcher_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from studio.core.training.worker import run_training

    monkeypatch.setenv("WORLD_SIZE", "2")
    path = RunConfig(model="org/model", dataset="d.jsonl").save(tmp_path / "RUN.yaml")
    assert run_training(path, workspace=tmp_path / "ws") == 2
    err = capsys.readouterr().err
    assert "needs a name: each process would make up its own" in err and "set `name:` in the run file" in err
    assert not (tmp_path / "ws" / "runs").exists() or not any((tmp_path / "ws" / "runs").iterdir())
