"""torch's default dtype is process-wide: building models from several threads must never leave it changed.

transformers sets it to the model's dtype while it builds and puts back what it found. Two builds at once
can each put back the other's, and the process stays in bf16 (every later tensor is bf16: this broke a CI run).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import torch
import transformers.modeling_utils as modeling_utils

from studio.config import LoadParams
from studio.core import hub
from studio.core.models import ModelManager
from studio.core.training.estimate import count_parameters, linear_module_names
from studio.core.training.params import RunConfig, TrainParams


@pytest.fixture
def dtype_switches(monkeypatch: pytest.MonkeyPatch) -> list[torch.dtype]:
    """Records every switch transformers makes, and holds each for 0.3 s so that two builds overlap."""
    switches: list[torch.dtype] = []
    original = modeling_utils.local_torch_dtype

    @contextlib.contextmanager
    def slow(dtype: torch.dtype, model_class_name: str | None = None):
        switches.append(dtype)
        with original(dtype, model_class_name):
            time.sleep(0.3)
            yield

    monkeypatch.setattr(modeling_utils, "local_torch_dtype", slow)
    yield switches
    torch.set_default_dtype(torch.float32)  # a failing run must not spoil the tests after it


def test_two_models_loading_at_once_leave_the_default_dtype_as_it_was(tiny_model_dir: Path, dtype_switches):
    def load() -> None:
        ModelManager().load(LoadParams(model=str(tiny_model_dir), precision="bf16"))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)  # the second starts while the first holds bf16
    for thread in threads:
        thread.join()
    assert dtype_switches.count(torch.bfloat16) == 2  # both really built in bf16
    assert torch.get_default_dtype() == torch.float32


def test_counting_and_naming_layers_never_switch_the_default_dtype(tiny_model_dir: Path, dtype_switches):
    config = hub.resolve(str(tiny_model_dir)).config
    config.dtype = torch.bfloat16  # as a hub model's config.json says
    counts = count_parameters(RunConfig(model=str(tiny_model_dir), dataset="(estimate)", train=TrainParams(method="lora")),
                              config)
    names = linear_module_names(str(tiny_model_dir))
    assert dtype_switches == []
    assert config.dtype == torch.bfloat16  # the caller's config is not rewritten
    assert 0 < counts.trainable < counts.total and "q_proj" in names


def test_a_build_waits_for_the_one_in_progress():
    entered = threading.Event()
    order: list[str] = []

    def hold() -> None:
        with hub.building():
            entered.set()
            time.sleep(0.2)
            order.append("first")

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(5)
    with hub.building():
        order.append("second")
    thread.join()
    assert order == ["first", "second"]
