"""The training process: `python -m studio.core.training.worker --config RUN.yaml [--resume] [--workspace DIR]`.

Reads top to bottom like litgpt's finetune scripts: setup (run folder, tokenizer, data, model, peft)
→ fit (transformers Trainer, with RunCallback writing metrics.jsonl and honouring STOP) → save
(adapter, tokenizer, base fingerprint, model card) → status.json says finished, stopped or failed.

It runs in its own process so that its memory is gone when it exits and a crash leaves the studio
untouched. Every failure ends as `failed` in status.json with a readable reason and a suggestion.

The same command runs data-parallel under `accelerate launch --multi_gpu --num_processes N -m
studio.core.training.worker --config RUN.yaml` (or torchrun): every process trains, only the main one
(RANK 0) writes to the run folder. With no visible GPU the processes train on CPU over gloo; note that
`accelerate launch --cpu` starts a single process (more need its --mpirun_hostfile and MPI).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studio.core.training.params import RunConfig, default_run_name
from studio.storage.runs import LOG_IN_FILE_ENV, RunDir, Runs, RunStatus, now, process_create_time
from studio.core.training.samples import read_samples, samples_file
from studio.core.training.setup import PreparedData
from studio.errors import StudioError

OOM_FIX = "lower the batch size, enable 4-bit (QLoRA), or shorten max length."
log = logging.getLogger("studio.training")


class Terminated(Exception):
    """SIGTERM arrived (TrainingService.stop after its grace period, or the system shutting down)."""


# Entry points ----------------------------------------------------------------------------------------------
def open_run(config: RunConfig, workspace: str | Path | None = None) -> RunDir:
    """The run folder for `config` in the workspace (given, else STUDIO_HOME / settings), named if unnamed."""
    from studio.config import Settings
    from studio.storage.workspace import Workspace

    root = Workspace(Path(workspace) if workspace else Settings.resolve().workspace)
    if not config.name:
        config.name = default_run_name(config)
    return Runs(root.runs_dir).get(config.name)


def run_training(config_path: str | Path, resume: bool = False, workspace: str | Path | None = None) -> int:
    """Train the run that `config_path` describes; returns the exit code: 0 finished or stopped on request,
    1 failed or terminated, 2 unusable config (nothing written), 130 Ctrl-C.

    The run folder is runs/<config.name> of the workspace; the config is copied there as config.yaml.
    `resume` continues from the newest checkpoint in runs/<name>/checkpoints/.
    """
    try:
        config = RunConfig.load(config_path)
        if not config.name and world_size() > 1:
            raise StudioError("A run started with accelerate launch needs a name: each process would make up its own.",
                              "set `name:` in the run file.")
        run = open_run(config, workspace)
        if is_main_process():
            _claim(run, config, Path(config_path), resume)
    except StudioError as err:
        print(f"error: {err.message}" + (f"\nfix: {err.fix}" if err.fix else ""), file=sys.stderr)
        return 2
    handler = _log_to(run)
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
    try:
        return _train(run, config, resume)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _claim(run: RunDir, config: RunConfig, config_path: Path, resume: bool) -> None:
    """Refuse a second worker on a live run or a fresh start over an old run; write config.yaml and `running`."""
    status = run.read_status()
    if run.exists() and status.state == "running" and status.pid and status.pid != os.getpid():
        from studio.storage.runs import process_alive

        if process_alive(status.pid, status.pid_started):
            raise StudioError(f"Run {run.name!r} is already training (process {status.pid}).", "stop it first, or wait.")
    if not resume and run.exists() and status.state != "queued":
        raise StudioError(f"Run {run.name!r} already exists ({status.state}).",
                          "choose another name, delete the run, or pass --resume to continue it.")
    if resume and status.state == "finished":
        raise StudioError(f"Run {run.name!r} has already finished.", "start a new run to train further.")
    if resume and run.last_checkpoint() is None:
        raise StudioError(f"Run {run.name!r} has no checkpoint to resume from.",
                          "start it again as a new run (checkpoints are saved every save_steps, or each epoch).")
    if resume and _stop_predates_this_process(run):
        run.stop_file.unlink()  # resuming is the newer wish than a stop an earlier worker never honoured
    run.path.mkdir(parents=True, exist_ok=True)
    if config_path.resolve() != run.config_file.resolve():
        config.with_absolute_paths().save(run.config_file)
    pid = os.getpid()
    run.write_status(RunStatus(state="running", pid=pid, pid_started=process_create_time(pid), started=now(),
                               step=status.step if resume else 0, total_steps=status.total_steps if resume else 0))


def _stop_predates_this_process(run: RunDir) -> bool:
    """A STOP file written before this worker started is stale; one written since (a Stop pressed while the
    resumed worker was still starting) is a request for this worker and must be honoured."""
    try:
        written = run.stop_file.stat().st_mtime
    except FileNotFoundError:
        return False
    started = process_create_time(os.getpid())
    return started is None or written < started


def _train(run: RunDir, config: RunConfig, resume: bool) -> int:
    try:
        log.info("run %s: %s on %s with %s", run.name, config.dataset, config.model, config.train.method)
        checkpoint = _resume_point(run) if resume else None
        state, metrics = fit(run, config, checkpoint)
    except KeyboardInterrupt:
        return _end(run, "stopped", "Stopped with Ctrl-C.", _resume_hint(run), 130)
    except Terminated:
        return _end(run, "stopped", "The training process was asked to end (SIGTERM).", _resume_hint(run), 1)
    except BaseException as err:  # noqa: BLE001  (every failure must end as a readable `failed`)
        # A StudioError is the user's to fix and says how; anything else gets its traceback in log.txt.
        log.error("%s", err if isinstance(err, StudioError) else traceback.format_exc())
        reason, fix = describe_failure(err)
        return _end(run, "failed", reason, fix, 1)
    reason, fix = {
        "finished": ("", ""),
        "stopped": (f"Stopped on request at step {metrics.get('step')}; the adapter so far is saved.",
                    "resume the run to train on from here."),
        "interrupted": (f"The studio that started this run stopped, so the run saved a checkpoint at step "
                        f"{metrics.get('step')} and ended.", "open the studio again and press Resume on this run: it "
                        "continues from that checkpoint."),
    }[state]
    return _end(run, state, reason, fix, 0)


def _resume_hint(run: RunDir) -> str:
    checkpoint = run.last_checkpoint()
    if checkpoint is None:
        return "start the run again: it ended before its first checkpoint, so there is nothing to resume."
    return f"resume the run: it continues from {checkpoint.name}."


def _end(run: RunDir, state: str, reason: str, fix: str, code: int) -> int:
    if not is_main_process():
        return code
    run.update_status(state=state, reason=reason, suggestion=fix, ended=now())
    log.info("run %s %s%s", run.name, state, f": {reason}" if reason else "")
    return code


def describe_failure(err: BaseException) -> tuple[str, str]:
    """(reason, suggestion) for status.json: out of memory, a StudioError's message and fix, else type: message."""
    if _is_oom(err):
        return f"Out of memory: {_first_line(err)}", OOM_FIX
    if isinstance(err, StudioError):
        return err.message, err.fix or "see log.txt in the run folder."
    return f"{type(err).__name__}: {_first_line(err)}", "see log.txt in the run folder for the full traceback."


def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(err).lower()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:400] if lines else type(err).__name__


def _resume_point(run: RunDir) -> Path:
    checkpoint = run.last_checkpoint()
    if checkpoint is None:  # _claim checked; a checkpoint deleted since then is a plain failure
        raise StudioError(f"Run {run.name!r} has no checkpoint to resume from.", "start it again as a new run.")
    step = int(checkpoint.name.split("-")[-1])
    # Lines past the checkpoint belong to steps that will be trained again: drop them so the curve has no doubles.
    kept = [row for row in run.read_metrics() if int(row.get("step") or 0) <= step]
    from studio.storage.workspace import write_atomic

    if is_main_process():
        write_atomic(run.metrics_file, "".join(json.dumps(row) + "\n" for row in kept))
        samples = [row for row in read_samples(run) if int(row.get("step") or 0) <= step]
        if samples_file(run).exists():
            write_atomic(samples_file(run), "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in samples))
    log.info("resuming from %s", checkpoint.name)
    return checkpoint


# Fit and save -----------------------------------------------------------------------------------------------
def fit(run: RunDir, config: RunConfig, checkpoint: Path | None) -> tuple[str, dict[str, Any]]:
    """Train and save; ("finished" | "stopped", final metrics). Raises on any failure (the caller records it)."""
    from transformers import set_seed

    from studio.core import hub
    from studio.core.training.callbacks import ListDataset, PaddingCollator, RunCallback, SampleCallback
    from studio.core.training.setup import device_setup, load_model, prepare_data, training_arguments, wrap_model

    BucketingTrainer = _bucketing_trainer()  # noqa: N806  (a class, built here so importing the worker stays light)
    set_seed(config.train.seed)
    source = hub.resolve(config.model, trust_remote_code=config.trust_remote_code)
    tokenizer = hub.load_tokenizer(source, trust_remote_code=config.trust_remote_code)
    data = prepare_data(config, tokenizer)
    device, bf16 = device_setup()
    log.info("loading %s (%s on %s)", config.model, config.train.method, device)
    model = wrap_model(load_model(config, source.path_or_id, device, bf16), config)
    callback = RunCallback(run)
    samples = SampleCallback(run, tokenizer, data.samples, config.train.sample_max_new_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = BucketingTrainer(model=model, args=training_arguments(run, config, device, bf16, bool(data.validation)),
                      data_collator=PaddingCollator(pad_id, multiple_of=8 if device == "cuda" else 1),
                      train_dataset=ListDataset(data.train), eval_dataset=ListDataset(data.validation) or None,
                      processing_class=tokenizer, callbacks=[callback, samples])
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    # The same in every process (callbacks._any_rank); `interrupted` = the studio that launched the run has gone.
    state = "interrupted" if callback.parent_gone else ("stopped" if callback.stop_requested else "finished")
    if data.validation and state == "finished" and not _evaluated_at(trainer.state.log_history, trainer.state.global_step):
        trainer.evaluate()  # in every process: evaluation gathers across them
    if not is_main_process():
        return state, {}
    run.stop_file.unlink(missing_ok=True)  # the request is honoured; a later --resume must not stop at once
    return state, save(run, config, trainer, tokenizer, data, state)


def _bucketing_trainer() -> type:
    from transformers import Trainer

    from studio.core.training.sampler import LengthBucketSampler

    class BucketingTrainer(Trainer):
        """Trainer whose "group_by_length" batches come from LengthBucketSampler (less padding than transformers')."""

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or not hasattr(dataset, "rows"):
                return super()._get_train_sampler(train_dataset)
            lengths = [len(row["input_ids"]) for row in dataset.rows]
            return LengthBucketSampler(lengths, self.args.train_batch_size, seed=self.args.data_seed or self.args.seed)

    return BucketingTrainer


def is_main_process() -> bool:
    """False in the other processes of an `accelerate launch` (or torchrun) run: they train but write nothing."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _evaluated_at(rows: Sequence[dict[str, Any]], step: int) -> bool:
    return any(r.get("eval_loss") is not None and r.get("step") == step for r in rows)


def save(run: RunDir, config: RunConfig, trainer: Any, tokenizer: Any, data: PreparedData, state: str) -> dict[str, Any]:
    """Save the adapter (or the full model), tokenizer, base fingerprint and model card; the final metrics."""
    from studio.core.adapter_files import base_fingerprint
    from studio.core.training.card import final_metrics, model_card

    out = run.adapter_dir if config.train.uses_adapter else run.model_dir
    if out.exists():
        shutil.rmtree(out)  # a resumed run replaces what its earlier stop saved
    model = trainer.model
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    (out / "studio_base.json").write_text(json.dumps({"name": config.model, **base_fingerprint(base)}, indent=1),
                                          encoding="utf-8")
    metrics = final_metrics(run.read_metrics())
    metrics["step"] = int(trainer.state.global_step)
    card = model_card(config, data.hashes, metrics, {"train": len(data.train), "validation": len(data.validation)}, state)
    (out / "README.md").write_text(card, encoding="utf-8")  # replaces peft's generic card
    run.update_status(step=int(trainer.state.global_step), extra={"final": metrics, "output": out.name})
    log.info("saved %s at step %d", out, trainer.state.global_step)
    return metrics


# Process plumbing -------------------------------------------------------------------------------------------
def _log_to(run: RunDir) -> logging.Handler | None:
    """Our log lines go to stderr; also to log.txt unless the service already sends the output there."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    if os.environ.get(LOG_IN_FILE_ENV) == "1" or not is_main_process():
        return None
    handler = logging.FileHandler(run.log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio.core.training.worker", description="Run one training run.")
    parser.add_argument("--config", required=True, help="The run file (RUN.yaml, or a run's config.yaml).")
    parser.add_argument("--resume", action="store_true", help="Continue from the run's last checkpoint.")
    parser.add_argument("--workspace", help="Workspace folder (default: $STUDIO_HOME, else ~/.llm-studio).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_training(args.config, resume=args.resume, workspace=args.workspace)


if __name__ == "__main__":
    raise SystemExit(main())
