"""Live samples (issue 4, item 3): at each evaluation the worker answers fixed validation prompts into samples.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.training.params import RunConfig, TrainParams
from studio.core.training.samples import read_samples, sample_prompts, samples_file
from studio.storage.runs import RunDir


def _chat(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"The answer is {2 * i}."}]


def test_sample_prompts_stop_before_the_last_assistant_turn() -> None:
    two_turns = _chat(1) + [{"role": "user", "content": "And times two?"}, {"role": "assistant", "content": "4."}]
    prompts = sample_prompts([[{"role": "user", "content": "no answer"}], two_turns, _chat(2), _chat(3), _chat(4)])
    assert len(prompts) == 3
    assert (prompts[0].prompt, prompts[0].reference, len(prompts[0].messages)) == ("And times two?", "4.", 4)
    assert prompts[1].messages == _chat(2)[:2] and prompts[1].reference == "The answer is 4."


def test_read_samples_skips_a_partial_last_line(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    assert read_samples(run) == []
    row = {"step": 2, "epoch": 0.5, "samples": [{"prompt": "p", "answer": "a", "reference": "r"}]}
    samples_file(run).write_text(json.dumps(row) + "\n" + '{"step": 4, "sam', encoding="utf-8")
    assert read_samples(run.path) == [row]


@pytest.mark.slow
def test_worker_writes_samples_at_each_evaluation(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": _chat(i)}) + "\n" for i in range(12)), encoding="utf-8")
    train = TrainParams(method="lora", lora_r=4, lora_alpha=8, per_device_batch_size=2, gradient_accumulation=1,
                        logging_steps=1, max_steps=4, eval_steps=2, sample_max_new_tokens=8)
    config = RunConfig(model=str(tiny_model_dir), dataset=str(data), val_ratio=0.34, name="samples", train=train)
    path = config.save(tmp_path / "RUN.yaml")
    done = subprocess.run([sys.executable, "-m", "studio.core.training.worker", "--config", str(path),
                           "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_samples(tmp_path / "ws" / "runs" / "samples")
    assert [r["step"] for r in rows] == [2, 4]
    for row in rows:
        assert row["epoch"] > 0 and len(row["samples"]) == 3
        for sample in row["samples"]:
            assert set(sample) == {"prompt", "answer", "reference"} and isinstance(sample["answer"], str)
            assert sample["prompt"].startswith("What is ") and sample["reference"].startswith("The answer is ")


def test_the_samples_reader_imports_no_ml_library() -> None:
    code = ("import sys, studio.core.training.samples; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
