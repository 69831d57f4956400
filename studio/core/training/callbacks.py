"""What the worker plugs into transformers' Trainer: the padding collator and the run-folder callback.

The callback is how a run talks to the studio: one metrics.jsonl line per log or evaluation, the
step count in status.json, and the STOP file checked after every optimizer step; and, after each
evaluation, the live samples (samples.jsonl).

Under `accelerate launch` every process runs these callbacks: only the main one writes to the run
folder, and all of them agree on a stop request so that none waits forever for the others.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from studio.core.datasets.tokenization import IGNORE_INDEX
from studio.core.training.samples import SamplePrompt, append_samples, generate_answers
from studio.storage.runs import PARENT_ENV, RunDir, process_alive



def parent_gone() -> bool:
    """True when the studio process that launched this worker has exited (killed, crashed or closed)."""
    raw = os.environ.get(PARENT_ENV, "")
    pid, _, created = raw.partition(":")
    if not pid.isdigit():
        return False
    return not process_alive(int(pid), float(created) if created else None)


class ListDataset(torch.utils.data.Dataset):
    """Token features in memory; `Trainer`'s length-grouped sampler reads each item's input_ids length."""

    def __init__(self, rows: Sequence[dict[str, list[int]]]):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


class PaddingCollator:
    """Pads each batch to its own longest example (not to max_length): input_ids with the pad id, attention_mask
    with 0, labels with IGNORE_INDEX so padding never counts in the loss. Right padding, as training expects."""

    def __init__(self, pad_id: int, multiple_of: int = 1):
        self.pad_id = pad_id
        self.multiple_of = max(1, multiple_of)

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        longest = math.ceil(longest / self.multiple_of) * self.multiple_of
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {key: torch.tensor([list(r[key]) + [value] * (longest - len(r[key])) for r in rows], dtype=torch.long)
                for key, value in fill.items()}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _any_rank(flag: bool) -> bool:
    """True when `flag` is true in any process of a distributed run (the flag itself in a single process).

    Each rank sees the STOP file at its own moment; if one stopped a step before the others, they would
    wait for it in the next gradient all-reduce for ever. One tiny all-reduce per step keeps them in step."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class RunCallback(TrainerCallback):
    """Appends metrics lines, keeps status.json's step current, and honours the STOP file.

    tokens_per_s counts non-padding input tokens (Trainer's num_input_tokens_seen with "non_padding") over the
    time this process has trained; eta_s extrapolates this process's seconds per step to the remaining steps.
    """

    def __init__(self, run: RunDir):
        self.run = run
        self.stop_requested = False
        self.parent_gone = False  # the studio that launched the run is gone: checkpoint and end `interrupted`
        self._t0 = time.monotonic()
        self._step0 = 0
        self._tokens0 = 0
        self._last_status = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = time.monotonic()
        self._step0 = state.global_step  # > 0 when resuming: speed is measured on this process's steps only
        self._tokens0 = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        if state.is_world_process_zero:
            self.run.update_status(total_steps=int(state.max_steps or 0), step=int(state.global_step))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # status.json is for humans: no need to rewrite it every step
        if state.is_world_process_zero and time.monotonic() - self._last_status > 2.0:
            self._last_status = time.monotonic()
            self.run.update_status(step=int(state.global_step), total_steps=int(state.max_steps or 0))
        # A worker outlives a killed studio (it runs in its own session): it checkpoints and ends rather than train
        # unwatched. Checked every step, like STOP, so every rank makes the same collective calls.
        self.parent_gone = self.parent_gone or _any_rank(parent_gone())
        if self.parent_gone or _any_rank(self.run.stop_file.exists()):
            self.stop_requested = True
            control.should_training_stop = True
            control.should_save = True  # a checkpoint at this step makes the stopped run resumable
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if not any(k in logs for k in ("loss", "eval_loss")):
            return  # the end-of-training summary (train_loss, train_runtime) is not a point on the curve
        if state.is_world_process_zero:
            self.run.append_metrics(self.row(state, logs))

    def row(self, state: Any, logs: dict[str, Any]) -> dict[str, Any]:
        elapsed = time.monotonic() - self._t0
        steps = state.global_step - self._step0
        tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0) - self._tokens0
        remaining = max(0, (state.max_steps or 0) - state.global_step)
        return {
            "step": int(state.global_step),
            "epoch": round(float(state.epoch or 0.0), 4),
            "loss": _number(logs.get("loss")),
            "eval_loss": _number(logs.get("eval_loss")),
            "learning_rate": _number(logs.get("learning_rate")),
            "grad_norm": _number(logs.get("grad_norm")),
            "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 and tokens > 0 else None,
            "elapsed_s": round(elapsed, 2),
            "eta_s": round(elapsed / steps * remaining, 1) if steps > 0 else None,
        }


class SampleCallback(TrainerCallback):
    """After each evaluation, the main process appends the answers to the fixed prompts to samples.jsonl."""

    def __init__(self, run: RunDir, tokenizer: Any, prompts: Sequence[SamplePrompt], max_new_tokens: int):
        self.run, self.tokenizer, self.prompts, self.max_new_tokens = run, tokenizer, list(prompts), max_new_tokens

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.prompts or self.max_new_tokens <= 0 or model is None or not state.is_world_process_zero:
            return
        answers = generate_answers(model, self.tokenizer, self.prompts, self.max_new_tokens)
        row = {"step": int(state.global_step), "epoch": round(float(state.epoch or 0.0), 4),
               "samples": [{"prompt": p.prompt, "answer": a, "reference": p.reference}
                           for p, a in zip(self.prompts, answers)]}
        append_samples(self.run, row)
