"""The README.md model card saved next to a trained adapter: what it was trained from, how, and how well."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from studio.core.training.params import RunConfig


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def final_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The last training loss and the last eval loss of a run's metrics lines (None where there is none)."""
    loss = next((r for r in reversed(rows) if r.get("loss") is not None), {})
    evals = next((r for r in reversed(rows) if r.get("eval_loss") is not None), {})
    return {"step": max((r.get("step") or 0 for r in rows), default=0), "loss": loss.get("loss"),
            "eval_loss": evals.get("eval_loss")}


def model_card(config: RunConfig, hashes: dict[str, str], metrics: dict[str, Any], examples: dict[str, int],
               state: str = "finished") -> str:
    """Markdown: base model, data (with sha256), method and every parameter, final metrics, how to load it."""
    params = config.train.to_dict()
    rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
    data_rows = "\n".join(f"| {Path(p).name} | `{h}` |" for p, h in hashes.items())
    loss = "n/a" if metrics.get("loss") is None else f"{metrics['loss']:.4f}"
    eval_loss = "n/a" if metrics.get("eval_loss") is None else f"{metrics['eval_loss']:.4f}"
    note = "" if state == "finished" else f"\n> This adapter was saved when the run was **{state}** (step {metrics.get('step')}).\n"
    return f"""---
base_model: {config.model}
library_name: peft
tags: [llm-adaptation-studio, {config.train.method}]
---

# {config.name}

Fine-tuned from **{config.model}** with **{config.train.method}** by LLM Adaptation Studio.
{note}
## Data

| file | sha256 |
|---|---|
{data_rows}

Training examples: {examples.get('train', 0)}; validation examples: {examples.get('validation', 0)}.

## Results

| step | final training loss | final validation loss |
|---|---|---|
| {metrics.get('step')} | {loss} | {eval_loss} |

## Parameters

| parameter | value |
|---|---|
{rows}

The run's `config.yaml` (one folder up) reproduces it: `studio train --config config.yaml`.

## Use

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{config.model}")
model = PeftModel.from_pretrained(base, "path/to/this/folder")
```
"""
