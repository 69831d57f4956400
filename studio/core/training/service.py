"""TrainingService: what the Training tab and `studio train` call. Each run trains in its own worker process.

The service never trains in the studio's process: `start` writes the run folder and launches
`python -m studio.core.training.worker --config runs/<name>/config.yaml` (no shell); everything the
UI shows afterwards is read back from the run folder, so it survives a page reload or a studio
restart. On start-up, runs whose worker died with the studio are marked `interrupted` (resumable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from studio.core.training.params import RunConfig, default_run_name
from studio.storage.runs import (
    INTERRUPTED_FIX,
    INTERRUPTED_REASON,
    LOG_IN_FILE_ENV,
    PARENT_ENV,
    RESUMABLE,
    RunDir,
    Runs,
    RunStatus,
    now,
    process_alive,
)
from studio.errors import StudioError

STOP_GRACE_S = 120.0  # how long a stop request may take (the current step, then saving) before the process is ended
TERMINATE_GRACE_S = 10.0  # after SIGTERM, before SIGKILL


@dataclass
class RunInfo:
    """One row of the runs list."""

    name: str
    status: RunStatus
    model: str = ""
    method: str = ""


class TrainingService:
    """Start, stop, resume and delete training runs of one workspace, and read their status and metrics."""

    def __init__(self, workspace: Any, stop_grace_s: float = STOP_GRACE_S):
        """`workspace`: a studio Workspace (or anything with a `runs_dir` and a `root`)."""
        self.workspace = workspace
        self.store = Runs(workspace.runs_dir)
        self.stop_grace_s = stop_grace_s
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self.interrupted = self.store.mark_interrupted()  # names marked at start-up, for the UI to mention

    # Launching ------------------------------------------------------------------------------------------
    def start(self, config: RunConfig) -> str:
        """Write runs/<name>/ and launch the worker; returns the run name. StudioError when the name is taken,
        the dataset file is unusable, or the process cannot be started."""
        from studio.core.datasets import check_path

        check_path(config.dataset)
        if config.validation:
            check_path(config.validation)
        config.name = config.name or default_run_name(config)
        run = self.store.get(config.name)
        if run.exists() or run.path.exists():
            raise StudioError(f"A run named {config.name!r} already exists.", "choose another name, or delete that run.")
        run.path.mkdir(parents=True)
        config.with_absolute_paths().save(run.config_file)
        run.write_status(RunStatus(state="queued"))
        self._launch(run, resume=False)
        return config.name

    def resume(self, name: str) -> str:
        """Continue a stopped, failed or interrupted run from its newest checkpoint; returns its name."""
        run = self._existing(name)
        status = self.status(name)
        if status.state not in RESUMABLE:
            raise StudioError(f"Run {name!r} is {status.state}; only a stopped, failed or interrupted run can be resumed.",
                              "stop it first." if status.active else "start a new run to train further.")
        if run.last_checkpoint() is None:
            raise StudioError(f"Run {name!r} has no checkpoint to resume from (it ended before its first save).",
                              "start it again as a new run; lower save_steps to checkpoint more often.")
        run.stop_file.unlink(missing_ok=True)
        run.update_status(state="queued", reason="", suggestion="", ended=None, pid=None, pid_started=None)
        self._launch(run, resume=True)
        return name

    def _launch(self, run: RunDir, resume: bool) -> None:
        cmd = [sys.executable, "-m", "studio.core.training.worker", "--config", str(run.config_file),
               "--workspace", str(self.workspace.root)] + (["--resume"] if resume else [])
        package_root = str(Path(__file__).resolve().parents[3])  # importable even where the studio is not installed
        me = psutil.Process()
        env = {**os.environ, LOG_IN_FILE_ENV: "1", "PYTHONUNBUFFERED": "1", PARENT_ENV: f"{me.pid}:{me.create_time()}",
               "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
        try:
            with run.log_file.open("ab") as log:
                # A new session: Ctrl-C in the studio's terminal must not also interrupt the training.
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        except OSError as err:
            run.update_status(state="failed", reason=f"The training process could not be started: {err}",
                              suggestion="check that this Python can run `python -m studio.core.training.worker`.",
                              ended=now())
            raise StudioError(f"The training process could not be started: {err}", "see the run's log.txt.") from None
        with self._lock:
            self._procs[run.name] = proc
        status = run.read_status()
        if status.state == "queued":  # the worker writes `running` with its pid itself; until then the UI sees queued
            run.update_status(pid=proc.pid)

    # Stopping -------------------------------------------------------------------------------------------
    def stop(self, name: str, wait: bool = False) -> RunStatus:
        """Ask the run to stop: the worker saves the adapter at its current step and ends `stopped`. If it has not
        ended after the grace period it is terminated (then killed). Returns at once unless `wait`."""
        run = self._existing(name)
        status = self.status(name)
        if not status.active:
            raise StudioError(f"Run {name!r} is not running (it is {status.state}).", "nothing to stop.")
        run.stop_file.touch()
        # Watch the process running *now*: a Resume may start a new worker under the same run name before this one
        # has exited, and that one must never receive this stop's SIGTERM.
        worker = self._worker(run)
        if wait:
            self._enforce_stop(run, worker)
        else:
            threading.Thread(target=self._enforce_stop, args=(run, worker), daemon=True, name=f"stop-{name}").start()
        return run.read_status()

    def _worker(self, run: RunDir) -> Any:
        """The run's current worker: the Popen this service started, else the psutil.Process of the recorded pid."""
        proc = self._procs.get(run.name)
        if proc is not None:
            return proc
        status = run.read_status()
        if status.pid and process_alive(status.pid, status.pid_started):
            try:
                return psutil.Process(status.pid)  # a worker started by an earlier studio process
            except psutil.Error:
                return None
        return None

    def _enforce_stop(self, run: RunDir, worker: Any) -> None:
        if worker is None or self._wait_exit(worker, self.stop_grace_s):
            return self._settle(run)
        self._signal(worker, kill=False)  # SIGTERM: the worker records `stopped` itself
        if not self._wait_exit(worker, TERMINATE_GRACE_S):
            self._signal(worker, kill=True)
            self._wait_exit(worker, TERMINATE_GRACE_S)
        if run.read_status().active and not self._alive(run):
            run.update_status(state="stopped", ended=now(), reason=f"Ended by the studio: it did not stop within "
                              f"{self.stop_grace_s:.0f} s of the stop request.", suggestion=INTERRUPTED_FIX)

    @staticmethod
    def _signal(worker: Any, kill: bool) -> None:
        try:
            worker.kill() if kill else worker.terminate()
        except (OSError, psutil.Error):
            pass  # it ended meanwhile

    @staticmethod
    def _wait_exit(worker: Any, timeout: float) -> bool:
        """True once `worker` (a Popen or psutil.Process) has exited, reaping it when this service started it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                done = (worker.poll() is not None if isinstance(worker, subprocess.Popen)
                        else not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE)
            except psutil.Error:
                done = True
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.2)

    def _alive(self, run: RunDir) -> bool:
        proc = self._procs.get(run.name)
        if proc is not None:
            return proc.poll() is None
        status = run.read_status()
        return status.pid is not None and process_alive(status.pid, status.pid_started)

    def _settle(self, run: RunDir) -> None:
        """After the worker exited: a run it left `running` or `queued` died without saying why."""
        status = run.read_status()
        if status.active:
            code = self._procs[run.name].returncode if run.name in self._procs else None
            detail = f" (exit code {code})" if code not in (None, 0) else ""
            run.update_status(state="interrupted", reason=INTERRUPTED_REASON + detail, suggestion=INTERRUPTED_FIX,
                              ended=now())

    # Reading ----------------------------------------------------------------------------------------------
    def status(self, name: str) -> RunStatus:
        """The run's status; a run whose worker has gone without a word reads (and is marked) `interrupted`."""
        run = self._existing(name)
        status = run.read_status()
        if status.active and (status.pid or name in self._procs) and not self._alive(run):
            self._settle(run)
            status = run.read_status()
        return status

    def metrics(self, name: str) -> list[dict[str, Any]]:
        return self._existing(name).read_metrics()

    def config(self, name: str) -> RunConfig:
        return RunConfig.load(self._existing(name).config_file)

    def log(self, name: str, lines: int = 40) -> str:
        return self._existing(name).log_tail(lines)

    def run_dir(self, name: str) -> RunDir:
        return self._existing(name)

    def runs(self) -> list[RunInfo]:
        """Every run, newest first."""
        out = []
        for name in self.store.names():
            info = RunInfo(name=name, status=self.status(name))
            try:
                config = self.config(name)
                info.model, info.method = config.model, config.train.method
            except StudioError:
                pass  # a damaged config.yaml still lists the run, so it can be deleted
            out.append(info)
        return out

    def delete(self, name: str) -> None:
        """Remove the run folder (adapter included). StudioError while it is training."""
        run = self._existing(name)
        if self.status(name).active and self._alive(run):
            raise StudioError(f"Run {name!r} is still training.", "stop it first, then delete it.")
        shutil.rmtree(run.path)
        with self._lock:
            self._procs.pop(name, None)

    def _existing(self, name: str) -> RunDir:
        run = self.store.get(name)
        if not run.exists():
            raise StudioError(f"There is no run named {name!r}.", "pick one from the runs list.")
        return run
