"""`studio train`: run a training run in the foreground, from the same RUN.yaml the Training tab writes.

    studio train --config RUN.yaml [--resume] [--workspace DIR]
    studio train --config RUN.yaml --estimate      (parameter count and memory estimate; trains nothing)

The run folder is runs/<name>/ of the workspace (metrics.jsonl, status.json, checkpoints/, adapter/).
Exit codes: 0 finished (or stopped through its STOP file); 1 failed (status.json says why); 2 a user
error (`error:` and `fix:` lines); 130 Ctrl-C (the run is `stopped` and can be resumed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from studio.errors import StudioError


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `train` subcommand to `sub` (the subparsers of the `studio` parser)."""
    from studio.cli import workspace_option

    train = sub.add_parser("train", help="Fine-tune a model as RUN.yaml says (LoRA, QLoRA, full or prompt tuning).",
                           description="Fine-tune a model in the foreground; progress goes to the run folder and stderr.")
    train.add_argument("--config", required=True, metavar="RUN.yaml",
                       help="The run file: model, dataset, train: and data: parameters (a run's config.yaml works too).")
    train.add_argument("--resume", action="store_true", help="Continue the run from its newest checkpoint.")
    train.add_argument("--estimate", action="store_true",
                       help="Print the trainable parameters and a memory estimate, then exit without training.")
    workspace_option(train)
    return train


def run_train(args: argparse.Namespace) -> int:
    """Run `studio train`; returns the exit code."""
    if args.estimate:
        return _estimate(args.config)
    from studio.core.training.worker import run_training

    return run_training(args.config, resume=args.resume, workspace=getattr(args, "workspace", None))


def _estimate(config_path: str) -> int:
    from studio.core.training.estimate import estimate_run
    from studio.core.training.params import RunConfig

    try:
        config = RunConfig.load(config_path)
        counts, memory = estimate_run(config)
    except StudioError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.fix:
            print(f"fix: {err.fix}", file=sys.stderr)
        return 2
    print(f"{config.train.method} on {config.model}: {counts.text()}")
    print(f"memory estimate: {memory.text()}")
    return 0
