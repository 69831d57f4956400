"""A run's folder under the workspace's runs/, and reading it back while (or after) the worker writes it.

    runs/<name>/config.yaml     the RunConfig (enough to reproduce the run)
                status.json     state, pid, reason, suggestion, timestamps (rewritten atomically)
                metrics.jsonl   one JSON line per log or evaluation, flushed as written
                log.txt         the worker's output
                STOP            present = a stop was requested; the worker stops after its current step
                checkpoints/    Trainer checkpoints (resume from the newest)
                adapter/        the final peft adapter and its README.md model card (model/ for full fine-tuning)

The worker is the only writer of metrics.jsonl; status.json is written by the worker while it lives,
and by the studio only for a run whose worker is gone (interrupted) or was ended by force.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from studio.storage.workspace import check_name, write_atomic

State = Literal["queued", "running", "finished", "stopped", "failed", "interrupted"]
ACTIVE = ("queued", "running")
RESUMABLE = ("stopped", "failed", "interrupted")
INTERRUPTED_REASON = "The training process ended without finishing (it was killed, or the computer or studio stopped)."
LOG_IN_FILE_ENV = "STUDIO_TRAIN_LOG_REDIRECTED"  # set by TrainingService: the worker's output already goes to log.txt
PARENT_ENV = "STUDIO_PARENT"  # "pid:create_time" of the studio that launched a worker; unset under `studio train`
QUEUED_WITHOUT_PID_S = 120.0  # a queued run with no process for this long was never launched
INTERRUPTED_FIX = "resume the run: it continues from its last checkpoint."


@dataclass
class RunStatus:
    """What status.json holds. Timestamps are seconds since the epoch (time.time())."""

    state: str = "queued"
    pid: int | None = None
    pid_started: float | None = None  # the process's create time: a recycled pid does not pass for the worker
    reason: str = ""
    suggestion: str = ""
    started: float | None = None
    ended: float | None = None
    step: int = 0
    total_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def now() -> float:
    return round(time.time(), 3)


def process_alive(pid: int | None, created: float | None = None) -> bool:
    """Is `pid` a live (not zombie) process, and the same one that was recorded (same create time)?"""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return created is None or abs(proc.create_time() - created) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def process_create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@dataclass(frozen=True)
class RunDir:
    """Paths of one run and the small reads and writes on them."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def samples_file(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def log_file(self) -> Path:
        return self.path / "log.txt"

    @property
    def stop_file(self) -> Path:
        return self.path / "STOP"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def model_dir(self) -> Path:
        """Where full fine-tuning saves the whole model (it has no adapter)."""
        return self.path / "model"

    def exists(self) -> bool:
        return self.config_file.is_file() or self.status_file.is_file()

    # Status ------------------------------------------------------------------------------------
    def read_status(self) -> RunStatus:
        """The run's status; a missing or damaged file reads as `queued` with a reason saying so."""
        try:
            data = json.loads(self.status_file.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return RunStatus.from_dict(data)
        except (OSError, ValueError, TypeError):
            pass
        return RunStatus(state="queued", reason="no status written yet")

    def write_status(self, status: RunStatus) -> RunStatus:
        write_atomic(self.status_file, json.dumps(status.to_dict(), indent=1))
        return status

    def update_status(self, **changes: Any) -> RunStatus:
        status = self.read_status()
        for key, value in changes.items():
            setattr(status, key, value)
        return self.write_status(status)

    # Metrics -----------------------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        """One JSON line, flushed and synced, so a reader sees it at once and a crash keeps it."""
        append_jsonl(self.metrics_file, row)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete metrics line; a partial last line (being written now) and damaged lines are skipped."""
        return read_jsonl(self.metrics_file)

    def append_samples(self, row: dict[str, Any]) -> None:
        append_jsonl(self.samples_file, row)

    def read_samples(self) -> list[dict[str, Any]]:
        """Every complete live-samples line, oldest first ([] before the first evaluation)."""
        return read_jsonl(self.samples_file)

    # Checkpoints -------------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Trainer checkpoint folders, oldest first (by step)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))

    def last_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Runs:
    """The runs folder of a workspace: list runs, read their status and metrics, spot dead workers."""

    def __init__(self, runs_dir: str | Path):
        self.root = Path(runs_dir)
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, name: str) -> RunDir:
        return RunDir(self.root / check_name(name, "Run"))

    def names(self) -> list[str]:
        """Run names, newest first (by when config.yaml was written: the run's start)."""
        runs = [RunDir(p) for p in self.root.iterdir() if p.is_dir() and RunDir(p).exists()]
        return [r.name for r in sorted(runs, key=_started, reverse=True)]

    def status(self, name: str) -> RunStatus:
        return self.get(name).read_status()

    def metrics(self, name: str) -> list[dict[str, Any]]:
        return self.get(name).read_metrics()

    def mark_interrupted(self) -> list[str]:
        """Mark every queued/running run whose worker process is gone as `interrupted` (resumable); their names."""
        marked = []
        for name in self.names():
            run = RunDir(self.root / name)
            status = run.read_status()
            if not status.active:
                continue
            # No pid yet for long: the studio died between writing `queued` and launching the worker.
            gone = (not process_alive(status.pid, status.pid_started) if status.pid
                    else _age(run.status_file) > QUEUED_WITHOUT_PID_S)
            if gone:
                run.write_status(_interrupted(status))
                marked.append(name)
        return marked

    def delete(self, name: str) -> None:
        shutil.rmtree(self.get(name).path, ignore_errors=False)


def _started(run: RunDir) -> float:
    for path in (run.config_file, run.status_file, run.path):
        if path.exists():
            return path.stat().st_mtime
    return 0.0


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _interrupted(status: RunStatus) -> RunStatus:
    status.state, status.reason, status.suggestion = "interrupted", INTERRUPTED_REASON, INTERRUPTED_FIX
    status.ended = status.ended or now()
    return status


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line, flushed and synced: a reader sees it at once and a crash keeps it."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON-object line of `path` ([] when missing); a partial last line (being written now)
    and damaged lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
