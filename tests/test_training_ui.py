"""The Training tab through the launched app's API: data check, preview, estimate, a real run watched live, control."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from test_ui_api import studio  # noqa: F401  (the launched app, one per module)

pytestmark = pytest.mark.slow

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

ROWS = [{"messages": [{"role": "system", "content": "Answer in one line."}, {"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"{i} plus {i} is {2 * i}, as you can check by counting."}]}
        for i in range(24)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    good = folder / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    bad = folder / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in ROWS[:3]) + '\n{"messages": [{"role": "robot", "content": "x"}]}\n',
                   encoding="utf-8")
    leak = folder / "eval.jsonl"
    leak.write_text(json.dumps({"question": "q", "reference": "Yes: 7 plus 7 is 14, as you can see here."}) + "\n",
                    encoding="utf-8")
    return {"good": good, "bad": bad, "eval": leak}


def wait_until_done(services: Any, run: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = services.training.status(run)
        if not status.active:
            return status
        time.sleep(1)
    raise AssertionError(f"run {run} still {status.state} after {timeout} s")


def test_check_reports_errors_by_line_and_previews_trained_tokens(studio: tuple[Any, Any], data: dict[str, Path],  # noqa: F811
                                                                  tiny_model_dir: Path) -> None:
    client, _ = studio
    report, lengths, preview = client.predict(str(tiny_model_dir), str(data["bad"]), "", 0, 1, api_name="/training_check_data")
    assert "**Errors found:**" in report and "line 4:" in report and "robot" in report and "*Fix:*" in report
    report, lengths, preview = client.predict(str(tiny_model_dir), str(data["good"]), str(data["eval"]), 0, 2,
                                              api_name="/training_check_data")
    assert "**Ready to train.**" in report and "24 valid examples" in report and "suggested max length" in report
    assert "**Decontamination** (1 overlapping" in report and "train line 8" in report
    assert "Example 2 of 24" in preview
    assert "<span class='train-on'>1 plus 1 is 2, as you can check by counting." in preview  # the assistant reply is trained, the question is not
    assert "<span class='train-on'>" not in preview.split("What is 1 plus 1?")[0]
    assert lengths is not None


def test_bad_requests_say_what_to_fix(studio: tuple[Any, Any], data: dict[str, Path], tiny_model_dir: Path) -> None:  # noqa: F811
    client, _ = studio
    with pytest.raises(AppError, match="No dataset given"):
        client.predict(str(tiny_model_dir), "", "", 0, 1, api_name="/training_check_data")
    with pytest.raises(AppError, match="No base model picked"):
        client.predict("", str(data["good"]), "", 0, 1, api_name="/training_check_data")
    with pytest.raises(AppError, match="There is no example 99"):
        client.predict(str(tiny_model_dir), str(data["good"]), "", 0, 99, api_name="/training_check_data")
    with pytest.raises(AppError, match="`target_modules` should be all-linear or a list"):
        client.predict(str(tiny_model_dir), str(data["good"]), "", 0.1, "", train_target_modules=[" "], api_name="/training_start")
    with pytest.raises(AppError, match="less than minimum value 1"):  # the slider's own range check
        client.predict(str(tiny_model_dir), str(data["good"]), "", 0.1, "", train_lora_r=0, api_name="/training_start")


def test_target_modules_come_from_the_model(studio: tuple[Any, Any], tiny_model_dir: Path,  # noqa: F811
                                             data: dict[str, Path]) -> None:
    from studio.ui.training_tab import TrainingHandlers

    client, services = studio
    assert TrainingHandlers(services).modules(str(tiny_model_dir))["choices"] == [
        "all-linear", "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    some = client.predict(str(tiny_model_dir), str(data["good"]), "", 0.1, "", train_target_modules=["q_proj", "v_proj"],
                          api_name="/training_estimate")
    every = client.predict(str(tiny_model_dir), str(data["good"]), "", 0.1, "", api_name="/training_estimate")
    assert int(some.split(" trainable")[0].split()[-1].replace(",", "")) < int(every.split(" trainable")[0].split()[-1].replace(",", ""))


def test_estimate_counts_trainable_parameters_and_says_whether_it_fits(studio: tuple[Any, Any], data: dict[str, Path],  # noqa: F811
                                                                       tiny_model_dir: Path) -> None:
    client, _ = studio
    text = client.predict(str(tiny_model_dir), str(data["good"]), "", 0.1, "", api_name="/training_estimate")
    assert "trainable of" in text and "GiB" in text and "fits:" in text
    full = client.predict(str(tiny_model_dir), str(data["good"]), "", 0.1, "", train_method="full", api_name="/training_estimate")
    assert "(100.000%)" in full


def test_a_run_trains_in_a_worker_and_the_view_follows_it(studio: tuple[Any, Any], data: dict[str, Path],  # noqa: F811
                                                          tiny_model_dir: Path) -> None:
    from studio.ui.training_tab import TrainingHandlers

    client, services = studio
    run, note = client.predict(str(tiny_model_dir), str(data["good"]), "", 0.2, "ui-run", train_max_steps=6,
                               train_logging_steps=1, train_eval_steps=3, train_per_device_batch_size=2,
                               train_gradient_accumulation=1, api_name="/training_start")
    assert run["value"] == "ui-run"
    assert note == f"Started **ui-run**: lora on {data['good'].name}, stops after 6 steps, batch 2 × 1."
    with pytest.raises(AppError, match="already exists"):
        client.predict(str(tiny_model_dir), str(data["good"]), "", 0.2, "ui-run", api_name="/training_start")
    status = wait_until_done(services, "ui-run")
    assert status.state == "finished", status.reason
    on = TrainingHandlers(services)
    html, figure, samples, log, memory, table = on.refresh("ui-run", [])
    assert "finished" in html and "step 6 of 6" in html
    assert "Live samples at step" in samples and "Reference:" in samples
    assert "finished" in log and "Memory in use" in memory
    assert table[0][:2] == ["ui-run", "finished"]
    names = {trace.name for trace in figure.data}
    assert {"train loss (raw)", "train loss (smoothed)", "eval loss", "learning rate"} <= names
    assert (services.workspace.runs_dir / "ui-run" / "adapter" / "adapter_config.json").is_file()
    assert on.tick("ui-run", [])[1] == {"__type__": "update"}  # nothing new: the plot is not redrawn
    with pytest.raises(AppError, match="type its name in the box"):
        client.predict("ui-run", "", api_name="/training_delete")
    client.predict("ui-run", "ui-run", api_name="/training_delete")
    assert not (services.workspace.runs_dir / "ui-run").exists()


def test_a_failed_run_shows_its_reason_and_fix(studio: tuple[Any, Any], data: dict[str, Path], tiny_model_dir: Path) -> None:  # noqa: F811
    from studio.ui.training_tab import TrainingHandlers

    client, services = studio
    client.predict(str(tiny_model_dir), str(data["bad"]), "", 0.2, "bad-run", api_name="/training_start")
    status = wait_until_done(services, "bad-run")
    assert status.state == "failed"
    html = TrainingHandlers(services).refresh("bad-run", [])[0]
    assert "run-reason" in html and "line 4" in html and "Fix:" in html
    with pytest.raises(AppError, match="No run picked"):
        client.predict("", api_name="/training_stop")


def test_adapters_panel_lists_attaches_merges_and_deletes(studio: tuple[Any, Any], adapter_dirs: tuple[Path, Path],  # noqa: F811
                                                          tiny_model_dir: Path) -> None:
    import shutil

    from studio.ui.adapters_panel import AdapterHandlers

    client, services = studio
    shutil.copytree(adapter_dirs[0], services.workspace.adapters_dir / "house-style")
    on = AdapterHandlers(services)
    rows, picker = on.list(None)
    assert rows[0][0] == "house-style" and picker["value"] == "house-style"
    with pytest.raises(AppError, match="No model is loaded|not loaded"):
        client.predict("house-style", api_name="/adapter_attach")
    client.predict(str(tiny_model_dir), api_name="/load_model")
    assert "Attached **house-style**" in client.predict("house-style", api_name="/adapter_attach")
    assert "house-style" in services.runtime.adapters()
    merged = client.predict("house-style", "", api_name="/adapter_merge")
    assert "standalone model" in merged
    assert (services.workspace.models_dir / "house-style-merged" / "config.json").is_file()
    with pytest.raises(AppError, match="type its name in the box"):
        client.predict("house-style", "", api_name="/adapter_delete")
    *_, note = client.predict("house-style", "house-style", api_name="/adapter_delete")
    assert note == "Deleted adapter **house-style**." and "house-style" not in services.runtime.adapters()
    assert not (services.workspace.adapters_dir / "house-style").exists()


def test_killing_the_studio_leaves_its_run_interrupted_and_resumable(tmp_path: Path, data: dict[str, Path],
                                                                     tiny_model_dir: Path) -> None:
    """The acceptance path end to end: a real `studio` process starts a run, is killed with SIGKILL, and a new
    studio on the same workspace shows the run interrupted and resumes it."""
    import os
    import signal
    import subprocess
    import sys

    from studio.core.training.service import TrainingService
    from studio.storage.workspace import Workspace
    from test_ui_api import free_port

    port, home = free_port(), tmp_path / "home"
    studio_proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "--workspace", str(home), "--port", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001  (not up yet)
                assert time.monotonic() < deadline and studio_proc.poll() is None, "the studio did not start"
                time.sleep(1)
        client.predict(str(tiny_model_dir), str(data["good"]), "", 0.2, "orphaned", train_max_steps=10_000,
                       train_logging_steps=1, train_per_device_batch_size=2, train_gradient_accumulation=1,
                       api_name="/training_start")
        runs = TrainingService(Workspace(home))  # a second reader of the same workspace
        deadline = time.monotonic() + 120
        while not runs.metrics("orphaned"):
            assert time.monotonic() < deadline, "no metrics line"
            time.sleep(0.5)
        os.kill(studio_proc.pid, signal.SIGKILL)
        studio_proc.wait()
    finally:
        studio_proc.kill()
    deadline = time.monotonic() + 120
    while runs.run_dir("orphaned").read_status().state == "running":
        assert time.monotonic() < deadline, "the worker kept training after its studio died"
        time.sleep(0.5)
    restarted = TrainingService(Workspace(home))  # what the next studio start-up builds
    status = restarted.status("orphaned")
    assert status.state == "interrupted" and "Resume" in status.suggestion
    restarted.resume("orphaned")
    restarted.stop("orphaned", wait=True)  # pressed while the resumed worker is still starting: honoured, not lost
    assert restarted.status("orphaned").state == "stopped"
