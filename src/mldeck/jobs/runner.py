"""Running a job out of process: one worker subprocess per attempt, with limits and retries.

Each attempt is a run in the store (kind = the job's kind) and a child process
``python -m mldeck.jobs.worker`` started in its own session (its own process group), so a
timeout kills it *and its children*. The worker writes progress, logs and a heartbeat to its run;
its output goes to ``.mldeck/jobs/<run id>/output.log`` and its result to ``result.json`` in the
same folder, written last (temp file + rename): an attempt's outputs never mix with another's,
and whatever the domain step registers (a model version, a report) is committed in one store
transaction at its end, so a killed attempt leaves nothing half-registered.

A crash marks the run failed with its traceback (the worker's, or the tail of its output when
it died without one); a failed attempt is tried again ``retries`` times, waiting
``retry_base_seconds * 2^(attempt-1)`` (at most ``retry_max_seconds``) plus up to 50% jitter.
At most ``max_concurrent`` jobs run at once (health checks aside: short, and what tells a busy
workspace apart): a scheduled fire that finds no free slot, or its own job still running, is
recorded as a ``skipped`` run with the reason. A job does not start
when the workspace's disk has less than ``min_free_disk_mb`` free: it fails with that reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from mldeck import provenance
from mldeck.errors import MldeckError
from mldeck.formatting import plural
from mldeck.jobs.orphans import end_runs_of_process
from mldeck.jobs.settings import JobSettings
from mldeck.store.engine import Store, store_problem
from mldeck.store.models import Run, RunLog, RunStatus, RunTrigger, Schedule, utcnow
from mldeck.workspace import Workspace

KILL_GRACE_SECONDS = 5.0
STOP_WAIT_SECONDS = 15.0  # stop() waits this long for the cancelled runs to be recorded
OUTPUT_TAIL_LINES = 30
RESULT_FILE = "result.json"
OUTPUT_FILE = "output.log"


@dataclass(frozen=True)
class JobRequest:
    """What to run: a schedule's job, or a step the pipeline triggered."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    trigger: str = RunTrigger.SCHEDULE
    timeout_seconds: float = 3600
    retries: int = 0
    schedule_id: int | None = None
    reason: str = ""

    @classmethod
    def from_schedule(cls, schedule: Schedule, *, trigger: str = RunTrigger.SCHEDULE,
                      reason: str = "") -> JobRequest:  # fmt: skip
        return cls(schedule.name, schedule.kind, dict(schedule.params), trigger,
                   schedule.timeout_seconds, schedule.retries, schedule.id, reason)  # fmt: skip


@dataclass
class JobOutcome:
    name: str
    status: str
    run_ids: list[int]
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def run_id(self) -> int | None:
        return self.run_ids[-1] if self.run_ids else None

    @property
    def succeeded(self) -> bool:
        return self.status == RunStatus.SUCCEEDED

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.name, "status": self.status, "run_ids": self.run_ids,
                "result": self.result, "error": self.error}  # fmt: skip


def attempt_folder(workspace: Workspace, run_id: int) -> Path:
    return workspace.state_dir / "jobs" / str(run_id)


def backoff_seconds(settings: JobSettings, attempt: int, rng: random.Random | None = None) -> float:
    """The wait before attempt *attempt* + 1: exponential, capped, with up to 50% jitter."""
    base = min(settings.retry_base_seconds * 2 ** (attempt - 1), settings.retry_max_seconds)
    return base * (1 + (rng or random).uniform(0, 0.5))


def free_disk_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1_000_000


# Kinds outside the concurrency limit: a health check is short and light, and it is what
# tells a busy or stuck workspace apart; skipped whenever the slots are full (a burst of new
# batches), it would leave the health report silently stale.
UNLIMITED_KINDS = frozenset({"health"})


class JobRunner:
    """Runs jobs in worker processes; thread-safe (the scheduler calls it from its threads)."""

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        settings: JobSettings | None = None,
        *,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.store = store
        self.settings = settings or workspace.settings.jobs
        self.on_event = on_event
        self._slots = threading.BoundedSemaphore(self.settings.max_concurrent)
        self._lock = threading.Lock()
        self._running: dict[str, subprocess.Popen | None] = {}
        self._waiting: set[str] = set()  # requests (not fires) waiting for a free slot
        self._stop = threading.Event()
        self._hook_threads: list[threading.Thread] = []  # alert hooks started, see wait_for_hooks

    # -- public -----------------------------------------------------------------------------------
    @property
    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def run(self, request: JobRequest, *, wait_for_slot: bool = False) -> JobOutcome:
        """Run *request* to its end (all its attempts) in this thread; never raises for the job's
        own failures, which are in the outcome and the store. A store that cannot be written (a
        full disk) is a MldeckError with the reason.

        A job is running once it holds a slot: a fire that finds none is skipped without ever
        counting as running (a request made at that moment is not turned away as overlapping),
        and one request waiting for a slot turns away the same job's fires meanwhile."""
        name = request.name
        registered = False
        try:
            if self._stop.is_set():
                return self.record_skipped(request, "the scheduler is stopping")
            with self._lock:
                if name in self._running:
                    reason = f"{name} is still running from an earlier fire"
                elif name in self._waiting:
                    reason = f"a run of {name} asked for is waiting for a free slot"
                elif request.kind in UNLIMITED_KINDS or self._slots.acquire(blocking=False):
                    self._running[name] = None
                    registered, reason = True, ""
                elif wait_for_slot:
                    self._waiting.add(name)
                    reason = ""
                else:
                    limit = self.settings.max_concurrent
                    reason = f"the concurrency limit ({plural(limit, 'job')}) is reached"
            if reason:
                return self.record_skipped(request, reason)
            if not registered:
                self._slots.acquire()
                with self._lock:
                    self._waiting.discard(name)
                    self._running[name] = None
                registered = True
            holds_slot = request.kind not in UNLIMITED_KINDS
            try:
                if self._stop.is_set():  # it stopped while this job waited for a slot
                    return self.record_skipped(request, "the scheduler is stopping")
                return self._attempts(request)
            finally:
                if holds_slot:
                    self._slots.release()
        except OperationalError as exc:
            raise self._store_error(exc) from None
        finally:
            if registered:
                with self._lock:
                    self._running.pop(name, None)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called: every job asked for from now on is skipped."""
        return self._stop.is_set()

    def _store_error(self, exc: OperationalError) -> MldeckError:
        return store_write_error(self.workspace, exc)

    def stop(self, wait: float = STOP_WAIT_SECONDS, *, kill_hooks: bool = True) -> None:
        """Stop: no new attempt starts, running workers (and their children) are terminated, and
        their runs recorded as cancelled, waited for up to *wait* seconds (so what the process
        says last is that it stopped, not a job it ended)."""
        from mldeck.monitor.alerts import stop_hooks

        self._stop.set()
        if kill_hooks:  # a hook's own timeout held the exit (beyond a service manager's patience)
            stop_hooks()
        with self._lock:
            procs = [p for p in self._running.values() if p is not None]
        for proc in procs:
            _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
            time.sleep(0.05)

    # -- attempts ---------------------------------------------------------------------------------
    def _attempts(self, request: JobRequest) -> JobOutcome:
        outcome = JobOutcome(request.name, RunStatus.FAILED, [])
        total = request.retries + 1
        for attempt in range(1, total + 1):
            status, run_id, result, error = self._attempt(request, attempt, total)
            outcome.run_ids.append(run_id)
            outcome.status, outcome.result, outcome.error = status, result, error
            if status != RunStatus.FAILED or attempt == total or self._stop.is_set():
                break
            if error and error.startswith("not started"):
                break  # no disk: trying again at once would not help
            wait = backoff_seconds(self.settings, attempt)
            self._say(f"{request.name}: attempt {attempt} failed; trying again in {wait:.0f}s")
            self._log(run_id, f"attempt {attempt} of {total} failed; attempt {attempt + 1} "
                              f"in {wait:.1f}s")  # fmt: skip
            if self._stop.wait(wait):
                break
            held = self._held_back(request)
            if held:  # paused, disabled or removed while it waited: no more attempts
                self._say(f"{request.name}: no attempt {attempt + 1}: {held}")
                self._log(run_id, f"no attempt {attempt + 1}: {held}")
                break
        # A cancelled job (the scheduler stopped, Ctrl-C) says nothing about its step: judged
        # now, the rule would raise again, or repeat, the alert of an earlier failure.
        if outcome.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            self._failed_step_alerts(request.kind, outcome.run_ids)
        if isinstance(outcome.result, dict):  # the alerts its step opened: their hooks, now
            from mldeck.jobs.steps import HOOK_ALERTS
            from mldeck.monitor.alerts import hook_opened_later

            opened = outcome.result.pop(HOOK_ALERTS, None) or []
            if self._stop.is_set() and opened:  # a hook started now would hold the exit
                self._say(f"{request.name}: the hooks of alerts {opened} were not run: "
                          "the scheduler is stopping")  # fmt: skip
            elif opened:
                run_id = outcome.run_id
                self._hooks_started(hook_opened_later(
                    self.workspace, self.store, opened,
                    lambda problem: self._hook_problem(run_id, problem)))  # fmt: skip
        return outcome

    def _hooks_started(self, thread: threading.Thread | None) -> None:
        if thread is not None:
            with self._lock:
                self._hook_threads = [t for t in self._hook_threads if t.is_alive()] + [thread]

    def wait_for_hooks(self) -> None:
        """Wait for the alert hooks this runner's jobs started: a command that ran a job must
        not exit under them (the interpreter's shutdown killed them, their pages lost)."""
        with self._lock:
            threads = list(self._hook_threads)
        for thread in threads:
            thread.join()

    def _held_back(self, request: JobRequest) -> str:
        """Why a schedule's job is not tried again (empty when it is): its schedule was paused,
        disabled or removed while the job waited between attempts. A run a person asked for
        (which runs a paused schedule too) keeps its attempts."""
        if request.schedule_id is None or request.trigger != RunTrigger.SCHEDULE:
            return ""
        with self.store.read() as session:
            schedule = session.get(Schedule, request.schedule_id)
        if schedule is None:
            return "its schedule was removed"
        if schedule.paused:
            return "its schedule was paused"
        return "" if schedule.enabled else "its schedule was disabled"

    def _failed_step_alerts(self, kind: str, run_ids: list[int]) -> None:
        """The 'failed pipeline step' rule for *kind*, and for the kinds of the runs its job made
        (a retrain's training), judged as soon as the job ends (after its retries): an alert
        opens when it failed, and an open one resolves when it succeeded."""
        from mldeck.monitor import alerts

        rules = [r for r in alerts.default_rules(self.workspace.settings)
                 if r.when == "failed_run"]  # fmt: skip
        if not rules:
            return
        try:
            with self.store.read() as session:
                kinds = {kind, *session.execute(
                    select(Run.kind).where(Run.parent_run_id.in_(run_ids)).distinct()
                ).scalars()}  # fmt: skip
            signals = alerts.store_signals(self.store, rules)
            raised = alerts.apply(
                self.store, [s for s in signals if s.details.get("kind") in kinds]
            )
        except OperationalError:
            return  # a store that cannot be written: the job's own outcome already says so
        monitor = self.workspace.settings.monitor
        for alert in raised:
            if alert.new:
                self._say(f"alert opened: {alert.title}")
        if self._stop.is_set():  # stopping: a hook started now would hold the exit
            return
        # In a thread of their own: here they held the job's slot for as long as they ran.
        self._hooks_started(alerts.run_hooks_later(
            raised, monitor.alert_command, monitor.alert_command_timeout, self.workspace.root,
            self._say))  # fmt: skip

    def _new_run(self, request: JobRequest, attempt: int, total: int, **fields: Any) -> int:
        now = utcnow()
        pid = os.getpid()
        run = Run(
            name=request.name, kind=request.kind, trigger=request.trigger,
            status=RunStatus.RUNNING, created_at=now, started_at=now, heartbeat_at=now,
            params={"job": request.name, "job_kind": request.kind, "attempt": attempt,
                    "attempts": total, "timeout_seconds": request.timeout_seconds,
                    **request.params},
            tags={"schedule": request.name, "attempt": attempt,
                  **({"reason": request.reason} if request.reason else {})},
            user=provenance.current_user(), host=provenance.hostname(), pid=pid,
            pid_started_at=provenance.process_start_time(pid),
        )  # fmt: skip
        for key, value in fields.items():
            setattr(run, key, value)
        with self.store.write() as session:
            session.add(run)
            session.flush()
            if request.reason:
                session.add(RunLog(run_id=run.id, message=f"why: {request.reason}"))
            self._note_schedule(session, request, run)
            return run.id

    def _note_schedule(self, session: Session, request: JobRequest, run: Run) -> None:
        if request.schedule_id is None:
            return
        schedule = session.get(Schedule, request.schedule_id)
        if schedule is not None and not keeps_running_run(session, schedule, run.status):
            schedule.last_run_id, schedule.last_status = run.id, run.status
            schedule.last_run_at = run.created_at
            session.add(schedule)

    def record_skipped(self, request: JobRequest, reason: str) -> JobOutcome:
        now = utcnow()  # one instant: it starts and ends at once
        run_id = self._new_run(request, 1, 1, status=RunStatus.SKIPPED, created_at=now,
                               started_at=now, heartbeat_at=now, ended_at=now,
                               error=f"skipped: {reason}")  # fmt: skip
        self._say(f"{request.name}: skipped ({reason})")
        return JobOutcome(request.name, RunStatus.SKIPPED, [run_id], error=reason)

    def _attempt(
        self, request: JobRequest, attempt: int, total: int
    ) -> tuple[str, int, dict[str, Any] | None, str | None]:
        free = free_disk_mb(self.workspace.state_dir)
        if free < self.settings.min_free_disk_mb:
            error = (f"not started: only {free:.0f} MB free on the workspace's disk "
                     f"([jobs] min_free_disk_mb = {self.settings.min_free_disk_mb:g})")  # fmt: skip
            run_id = self._new_run(request, attempt, total, status=RunStatus.FAILED,
                                   ended_at=utcnow(), error=error)  # fmt: skip
            self._say(f"{request.name}: {error}")
            return RunStatus.FAILED, run_id, None, error
        run_id = self._new_run(request, attempt, total)
        self._say(f"{request.name}: attempt {attempt} started (run {run_id})")
        try:
            status, result, error = self._supervise(request, run_id)
        except OSError as exc:  # no space for the attempt's folder, no fork, ...
            status, result, error = RunStatus.FAILED, None, f"could not start the worker: {exc}"
            self._finish(run_id, status, error)
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, SIGHUP) on 'mldeck jobs run'
            with contextlib.suppress(Exception):  # the interrupt stays what is said
                self._sync_schedule(request, run_id)  # its row said 'running' for good
            raise
        self._sync_schedule(request, run_id)
        # The error may start with the status ("cancelled: the scheduler stopped"): said once.
        why = (error or "").removeprefix(f"{status}: ")
        self._say(f"{request.name}: run {run_id} {status}" + (f": {why}" if why else ""))
        return status, run_id, result, error

    def _supervise(
        self, request: JobRequest, run_id: int
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        folder = attempt_folder(self.workspace, run_id)
        folder.mkdir(parents=True, exist_ok=False)
        command = [sys.executable, "-m", "mldeck.jobs.worker", "--workspace",
                   str(self.workspace.root), "--run", str(run_id), "--parent", str(os.getpid())]  # fmt: skip
        with open(folder / OUTPUT_FILE, "wb") as output:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                cwd=self.workspace.root, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        started_at = provenance.process_start_time(proc.pid)
        with self._lock:
            self._running[request.name] = proc
        with self.store.write() as session:
            run = session.get(Run, run_id)
            run.pid, run.pid_started_at = proc.pid, started_at
            session.add(run)
        timed_out = False
        try:
            code = proc.wait(timeout=request.timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out, terminated_at = True, utcnow()
            _kill_group(proc, signal.SIGTERM)
            try:
                code = proc.wait(timeout=KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                code = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C on 'mldeck jobs run': the job goes with it
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
            error = "cancelled: interrupted (Ctrl-C)"
            self._finish(run_id, RunStatus.CANCELLED, error)
            end_runs_of_process(self.store, proc.pid, started_at, parent=run_id, status=RunStatus.CANCELLED,
                                reason=error)  # fmt: skip
            raise
        _kill_group(proc, signal.SIGKILL)  # whatever the worker left behind in its group
        if timed_out:
            error = (f"timed out after {request.timeout_seconds:g}s "
                     "(the worker and its children were killed)")  # fmt: skip
            self._finish(run_id, RunStatus.FAILED, error, force=True)
            end_runs_of_process(self.store, proc.pid, started_at, parent=run_id, status=RunStatus.FAILED,
                                reason=f"killed: job run {run_id} {error}",
                                cancelled_since=terminated_at)  # fmt: skip
            return RunStatus.FAILED, None, error
        if self._stop.is_set() and code != 0:
            error = "cancelled: the scheduler stopped"
            self._finish(run_id, RunStatus.CANCELLED, error)
            end_runs_of_process(self.store, proc.pid, started_at, parent=run_id, status=RunStatus.CANCELLED,
                                reason=error)  # fmt: skip
            return RunStatus.CANCELLED, None, error
        result = _read_result(folder)
        status, error = self._final_status(run_id)
        if code != 0 or result is None:
            if status in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.SUCCEEDED):
                error = _died(code, folder)
                self._finish(run_id, RunStatus.FAILED, error, force=True)
            end_runs_of_process(self.store, proc.pid, started_at, parent=run_id, status=RunStatus.FAILED,
                                reason=f"its job's worker (run {run_id}) died")  # fmt: skip
            return RunStatus.FAILED, None, error or _died(code, folder)
        return status, result, error

    def _final_status(self, run_id: int) -> tuple[str, str | None]:
        with self.store.read() as session:
            run = session.get(Run, run_id)
        return run.status, run.error

    def _finish(self, run_id: int, status: str, error: str, *, force: bool = False) -> None:
        with self.store.write() as session:
            run = session.get(Run, run_id)
            if run.status in (RunStatus.RUNNING, RunStatus.QUEUED) or force:
                run.status, run.ended_at, run.error = status, utcnow(), error
                session.add(run)
                session.add(RunLog(run_id=run_id, level="error", message=error))

    def _sync_schedule(self, request: JobRequest, run_id: int) -> None:
        """The schedule's last outcome is its newest run's final status."""
        if request.schedule_id is None:
            return
        with self.store.write() as session:
            schedule = session.get(Schedule, request.schedule_id)
            run = session.get(Run, run_id)
            if schedule is not None and schedule.last_run_id == run_id:
                schedule.last_status = run.status
                session.add(schedule)

    def _hook_problem(self, run_id: int | None, problem: str) -> None:
        """A hook's problem: said, and kept in the log of the job's run (a check's hooks kept
        theirs in its own run's log when they ran in it)."""
        self._say(problem)
        if run_id is not None:
            with contextlib.suppress(Exception):  # a store gone: said above all the same
                self._log(run_id, problem)

    def _log(self, run_id: int, message: str) -> None:
        with self.store.write() as session:
            session.add(RunLog(run_id=run_id, level="warning", message=message))

    def _say(self, message: str) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(message)


def keeps_running_run(session: Session, schedule: Schedule, status: str) -> bool:
    """Whether *schedule*'s last run stays what its row shows: a fire skipped while its run is
    still going does not hide that run (the row would read 'skipped' while it runs)."""
    if status != RunStatus.SKIPPED or schedule.last_run_id is None:
        return False
    last = session.get(Run, schedule.last_run_id)
    return last is not None and last.status == RunStatus.RUNNING


def store_write_error(workspace: Workspace, exc: OperationalError) -> MldeckError:
    """A store that cannot be written, as one clear line: a full disk (SQLite's 'database or
    disk is full') with the room left, else what the database said (a server out of reach)."""
    said = " ".join(str(exc.orig).split())
    after = "any run left 'running' is marked orphaned by the next health check"
    if "full" not in said.lower():
        return MldeckError(f"{store_problem(exc)}; {after}")
    try:
        free = f"{free_disk_mb(workspace.state_dir):.1f} MB free"
    except OSError:
        free = "free space unknown"
    return MldeckError(
        f"the store could not be written ({said}; {free} on the workspace's disk): "
        f"free some space; {after}"
    )


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _read_result(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


def _died(code: int, folder: Path) -> str:
    how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
    try:
        lines = (folder / OUTPUT_FILE).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    from mldeck.jobs.worker import WORKER_ERROR

    last = lines[-1] if lines else ""
    if last.startswith(WORKER_ERROR):  # the worker said why, in one line
        return f"{last.removeprefix(WORKER_ERROR)} (the worker {how})"
    tail = "\n".join(lines[-OUTPUT_TAIL_LINES:])
    return f"the worker {how}" + (f"; its last output:\n{tail}" if tail else "")
