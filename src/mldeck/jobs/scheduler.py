"""The scheduler of a workspace: APScheduler 3 in memory, rebuilt from mldeck's own tables.

Exactly one process acts per workspace: the one holding the ``scheduler`` lease
(:mod:`mldeck.jobs.lease`); the others (a second daemon, a console while a daemon runs) wait as
standbys and take over within ``lease_seconds`` of the holder's death. The acting process:

* marks the runs a dead process left ``running`` as orphaned, and runs again the schedules whose
  last run was orphaned (``[jobs] rerun_orphaned``);
* syncs ``[jobs.schedules]`` into the ``schedule`` table, then builds APScheduler's
  ``MemoryJobStore`` from the table and reconciles it whenever the table changes (the CLI and the
  console edit the table, never APScheduler). APScheduler's own persistent job stores are not
  used: mldeck's tables are the one source of truth;
* job defaults: coalesce, one instance at a time, a misfire grace of ``misfire_grace_seconds``
  (an hour), UTC. **Misfire policy**: fire times missed while no scheduler ran are coalesced into
  one run at start when the newest of them is within the grace time, and recorded as a missed
  (skipped) run otherwise; the table's ``last_fire_at`` is where a restart counts from;
* listeners write errors, missed and overlapping (skipped) fires to the store; a watchdog
  restarts APScheduler's thread when it died;
* runs the pipeline on new data (validate happened at ingest → score → drift → retrain when the
  monitor says so, with a cool-down) and promotes versions approved after a retrain.

Jobs run in worker processes (:mod:`mldeck.jobs.runner`), never in this process's threads'
Python code beyond waiting for them.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import OperationalError

from mldeck import audit
from mldeck import formatting as fmt
from mldeck.config import load_settings
from mldeck.errors import MldeckError
from mldeck.jobs import policies
from mldeck.jobs.lease import CONSOLE, DAEMON, LeaseKeeper
from mldeck.jobs.orphans import mark_orphans
from mldeck.jobs.runner import JobOutcome, JobRequest, JobRunner, keeps_running_run
from mldeck.jobs.schedules import list_schedules, make_trigger, sync_from_settings
from mldeck.store.engine import Store, store_problem
from mldeck.store.models import (
    Alias,
    AuditEvent,
    Dataset,
    DatasetVersion,
    DriftReport,
    Run,
    RunLog,
    RunStatus,
    RunTrigger,
    Schedule,
    utcnow,
)
from mldeck.workspace import Workspace

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# Even without a change in the store, the tables are looked at this often.
FULL_LOOK_SECONDS = 10.0
# A standby looks at the lease this often (a write transaction each time).
STANDBY_LOOK_SECONDS = 2.0
# How often the acting scheduler looks for runs whose process died.
ORPHAN_SWEEP_SECONDS = 30.0
PIPELINE_START = "pipeline.start"
REVALIDATED = "dataset_version.revalidate"
PIPELINE_STEP_TIMEOUT = 1800
PIPELINE_STEP_RETRIES = 1
PIPELINE_EXECUTOR = "pipeline"
MAX_RESUMES = 3  # a batch's pipeline run again at most this often while one process acts
RETRAIN_RESUME = "retrain.resume"


def _stamp(path: Any) -> tuple[int, int] | None:
    """What tells a changed file: its modification time and size (None when it is gone)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _latest_fire(trigger: Any, first: datetime, now: datetime) -> datetime | None:
    """The last fire time of *trigger* from *first* up to *now* (what APScheduler runs when it
    coalesces missed times); None when there are too many to walk (it is then about now)."""
    latest = first
    for _ in range(10_000):
        following = trigger.get_next_fire_time(latest, latest + timedelta(microseconds=1))
        if following is None or following > now:
            return latest
        latest = following
    return None


def _job_id(name: str) -> str:
    return f"schedule:{name}"


class DeckScheduler:
    """Acts for the workspace while it holds the lease; a standby otherwise."""

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        *,
        role: str,
        on_event: Callable[[str], None] | None = None,
        watch_incoming: bool = False,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.workspace = workspace
        self.store = store
        self.settings = workspace.settings.jobs
        self.role = role
        self.on_event = on_event
        self.watch_incoming = watch_incoming
        self.tick_seconds = tick_seconds
        self.lease = LeaseKeeper(store, role=role, lease_seconds=self.settings.lease_seconds)
        self.runner: JobRunner | None = None
        self.acting = False
        self.watcher: Any = None
        self._standby_watcher: Any = None  # the lock is another's: tried again at every tick
        self._last_sweep = 0.0
        self._aps: Any = None
        self._seen: dict[str, tuple] = {}
        self._requests: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._retrain_lock = threading.Lock()  # held for the decision, not the retrain
        self._retraining: str | None = None  # what asked for the automatic retrain running
        self._retrain_again: tuple[list[str], str] | None = None  # asked for while it ran
        self._resume_due = False
        self._in_flight: set[int] = set()  # dataset versions whose pipeline is queued or running
        self._resumed: dict[int, int] = {}  # dataset version -> pipelines run again while acting
        self._revalidated_after: int | None = None  # the last revalidation event looked at
        self._last_renew = 0.0
        self._last_standby = -STANDBY_LOOK_SECONDS  # when this daemon last said it waits
        self._last_try = -STANDBY_LOOK_SECONDS
        self._last_look = 0.0
        self._last_seq: int | None = None
        self._config_stamp: tuple[int, int] | None = _stamp(workspace.config_path)
        self._taking_over = False  # reconciling at a takeover: run-now requests may be stale

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mldeck-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30) -> None:
        """Stop acting (running workers are terminated and their runs cancelled), release the
        lease so a standby takes over at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wake(self, *_: Any) -> None:
        """Look at the store now (the watcher calls it when a batch was ingested)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def next_fire_times(self) -> dict[str, datetime | None]:
        """Next fire time of each schedule as APScheduler has it (acting process only)."""
        aps = self._aps
        if aps is None:
            return {}
        return {
            job.id.removeprefix("schedule:"): job.next_run_time
            for job in aps.get_jobs()
            if job.id.startswith("schedule:")
        }

    def _say(self, message: str, *, level: int = logging.INFO) -> None:
        log.log(level, message)
        self._tell(message)

    def _tell(self, message: str) -> None:
        """Pass *message* to ``on_event`` (the daemon's stdout, the console's notifications)."""
        if self.on_event is not None:
            try:
                self.on_event(message)
            except Exception:
                log.exception("on_event failed")

    # -- the control loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            failing = ""  # the last tick's problem, said once until it changes or clears
            while not self._stop.is_set():
                try:
                    looked = self._tick()
                except Exception as exc:
                    # A locked or unreachable store, a bug: say it once, keep going.
                    problem = store_problem(exc)
                    # One outage is one message, whatever the server says on its way down.
                    kind = "unreachable" if isinstance(exc, OperationalError) else problem
                    if kind != failing:
                        if not _outage(exc):  # a bug (a missing column too) keeps its traceback
                            log.exception("scheduler tick failed")
                        self._say(f"scheduler: {problem} (trying again every "
                                  f"{self.tick_seconds:g} s)")  # fmt: skip
                        failing = kind
                else:
                    if failing and looked:  # not a standby's tick that left the store alone
                        self._say("scheduler: working again")
                        failing = ""
                self._wake.wait(self.tick_seconds)
                self._wake.clear()
        finally:
            self._stand_down("stopped", final=True)
            try:
                self.lease.release()
                if self.role == DAEMON:
                    self.lease.leave_standby()
            except Exception:
                log.exception("could not release the lease")

    def _tick(self) -> bool:
        """One look at the store, and what it asks for; False when this tick did not touch the
        store (a standby between its looks)."""
        now = time.monotonic()
        if not self.acting:
            if now - self._last_try < STANDBY_LOOK_SECONDS:
                return False
            self._last_try = now
            if self.lease.try_acquire():
                self._last_renew = now
                self._become_acting()
            elif self.role == DAEMON and now - self._last_standby >= self.lease.renew_every:
                self.lease.stand_by()  # consoles leave the lease to a daemon waiting for it
                self._last_standby = now
            return True
        if now - self._last_renew >= self.lease.renew_every:
            if not self.lease.renew():
                self._stand_down("another process took the lease over")
                return True
            self._last_renew = now
            if self.role == CONSOLE and self._hand_over():
                return True
        self._watchdog()
        if self._resume_due:  # a pipeline failed (its step runs could not be written): again
            self._resume_pipelines()
            self._resume_due = False
        if self._standby_watcher is not None:
            self._take_over_watching()
        self._sweep_orphans(now)
        self._follow_config()
        seq = self.store.change_seq()
        if seq == self._last_seq and now - self._last_look < FULL_LOOK_SECONDS:
            return True
        self._last_seq, self._last_look = seq, now
        self.reconcile()
        self._pipeline_tick()
        for done in policies.promote_approved(self.workspace, self.store):
            if done.refused:
                self._say(f"did not promote {done.ref} on approval: {done.message}")
            else:
                self._say(f"promoted {done.ref}: {done.message}")
        return True

    def _hand_over(self) -> bool:
        """A console acting while a daemon waits gives the lease up as soon as none of its work
        is under way: the daemon's work does not end when a console quits."""
        waiting = self.lease.daemon_waiting()
        if waiting is None or (self.runner is not None and self.runner.running) or self._in_flight:
            return False
        self._say(f"scheduler: handing over to {waiting.describe()}, which waits to act")
        self._stand_down("handed over to a daemon")
        self.lease.release()
        return True

    def _become_acting(self) -> None:
        self.acting = True
        if self.role == DAEMON:
            self.lease.leave_standby()
        self._say(f"scheduler: acting for {self.workspace.root} ({self.role}, pid "
                  f"{self.lease.pid})")  # fmt: skip
        self._read_config()
        self.runner = JobRunner(self.workspace, self.store, self.settings, on_event=self._say)
        self._in_flight.clear()  # a new APScheduler: what the last one queued is gone
        self._resumed.clear()
        self._revalidated_after = self._last_event_id()  # the events after it are looked at
        self._resume_due = False  # _resume_pipelines() below
        orphaned = self._mark_orphans("found at scheduler start") | self._orphans_left()
        for change in sync_from_settings(self.store, self.settings, actor=policies.ACTOR):
            self._say(change.describe())
        self._start_aps()
        self._taking_over = True  # the requests found now were left by no scheduler acting
        try:
            self.reconcile()
        finally:
            self._taking_over = False
        self._rerun_orphaned(orphaned)
        self._resume_pipelines()
        self._resume_retrain()
        self._recheck(("scheduler",))  # an alert that no scheduler runs is out of date now
        if self.watch_incoming:
            self._start_watcher()

    def _read_config(self) -> None:
        """mldeck.toml as it is now, when it changed since this process read it: a scheduler
        that waited as standby took over with the file of its start, whose schedules undid the
        changes made since (by hand, or by 'mldeck jobs edit' once the file changed). A file
        that cannot be used leaves the settings read before (said)."""
        stamp = _stamp(self.workspace.config_path)
        if stamp is None or stamp == self._config_stamp:
            return
        try:
            settings = load_settings(self.workspace.config_path)
        except MldeckError as exc:
            self._say(f"mldeck.toml cannot be used ({exc}); the schedules are synced from it "
                      "as it was read before", level=logging.WARNING)  # fmt: skip
            return
        self._config_stamp = stamp
        self.settings = settings.jobs

    def _recheck(self, names: tuple[str, ...]) -> None:
        from mldeck.jobs.health import recheck
        from mldeck.monitor.alerts import hook_opened_later

        try:
            report = recheck(self.workspace, self.store, names)
        except Exception as exc:  # the next health check says it; the scheduler goes on
            log.warning("health recheck %s failed: %s", ",".join(names), exc)
            return
        if self.runner is None or not self.runner.stopping:  # stopping: none would end in time
            hook_opened_later(self.workspace, self.store, report.opened, self._say)

    def _follow_config(self) -> None:
        """mldeck.toml changed since it was read: its schedules are synced into the table, the
        alert hooks and rules follow it (the jobs' workers read the rest of it afresh for every
        job). A broken file changes nothing and is said once per change."""
        stamp = _stamp(self.workspace.config_path)
        if stamp == self._config_stamp or stamp is None:
            return
        self._config_stamp = stamp
        try:
            settings = load_settings(self.workspace.config_path)
        except MldeckError as exc:
            self._say(f"mldeck.toml changed but cannot be used ({exc}); the schedules stay as "
                      "they were, but each job reads the file when it starts and fails until "
                      "it is fixed", level=logging.WARNING)  # fmt: skip
            return
        if self.runner is not None:  # alert hooks and rules as the file says now
            self.runner.workspace = Workspace(self.workspace.root, settings)
        changes = sync_from_settings(self.store, settings.jobs, actor=policies.ACTOR)
        for change in changes:
            self._say(change.describe())
        if not changes:
            self._say("mldeck.toml changed: no schedule changed")
        # A batch whose pipeline failed on the file before (a broken file fails every step) gets
        # it run again now, with fresh tries: it was otherwise left until the next restart.
        self._resumed.clear()
        self._resume_due = True
        if Workspace(self.workspace.root, settings).db_url != self.workspace.db_url:
            # Every job's worker opens the store the file names now (each failed, the new store
            # holding none of this scheduler's runs), while this process keeps its own.
            self._say("mldeck.toml: [store] url changed: this scheduler keeps the store it "
                      "opened, while each job it starts opens the new one and fails; start the "
                      "daemon (or console) again to move to the new store",
                      level=logging.WARNING)  # fmt: skip
        apart = {"schedules"}
        if settings.jobs.model_dump(exclude=apart) != self.settings.model_dump(exclude=apart):
            self._say("mldeck.toml: [jobs] settings other than schedules apply when the scheduler "
                      "starts again")  # fmt: skip
        self.reconcile()

    def _stand_down(self, why: str, *, final: bool = False) -> None:
        """Stop acting: the jobs stop; the hooks running stop too when the process is ending
        (*final*), and run on when only the lease went to another process."""
        if not self.acting:
            return
        self.acting = False
        self._say(f"scheduler: no longer acting ({why})")
        self._standby_watcher = None
        if self.watcher is not None:
            self.watcher.stop(timeout=30)
            self.watcher = None
        aps, self._aps = self._aps, None
        if aps is not None:
            try:
                aps.shutdown(wait=False)
            except Exception:
                log.exception("APScheduler shutdown failed")
        if self.runner is not None:
            self.runner.stop(kill_hooks=final)
        self._seen.clear()

    def _start_watcher(self) -> None:
        from mldeck.data.watcher import IncomingWatcher

        # The watcher logs its own lines: passed on to on_event only, not logged twice.
        watcher = IncomingWatcher(self.workspace, self.store, on_ingested=self.wake,
                                  on_event=self._tell)  # fmt: skip
        if watcher.start():  # it says where it watches, and how it takes a file
            self.watcher = watcher
        else:
            self._standby_watcher = watcher
            self._say("data/incoming/ is watched by another process (its batches still flow)")

    def _take_over_watching(self) -> None:
        """Watch data/incoming/ once the process that held it stops (a stalled daemon that
        stood down after a takeover, a console that quit)."""
        standby = self._standby_watcher
        if standby is not None and standby.start():
            self.watcher, self._standby_watcher = standby, None
            self._say("watching data/incoming/ (the other watcher stopped)")

    def _sweep_orphans(self, now: float) -> None:
        """Runs whose process died after this scheduler took over (a worker of a daemon killed
        -9 while stalled) are marked orphaned, not only at takeover."""
        if now - self._last_sweep < ORPHAN_SWEEP_SECONDS:
            return
        self._last_sweep = now
        found = self._mark_orphans("found by the scheduler's sweep")
        self._rerun_orphaned(found | self._orphans_left())

    def _mark_orphans(self, why: str) -> set[int]:
        """Mark the runs whose process is gone orphaned, say so, record it; their ids."""
        orphans = mark_orphans(self.store, self.settings.stale_run_seconds)
        for orphan in orphans:
            self._say(f"run {orphan.run_id} ({orphan.name}) orphaned: {orphan.reason}")
        if orphans:
            policies.record(self.store, "run.orphaned", why, runs=[o.run_id for o in orphans])
        return {o.run_id for o in orphans}

    # -- APScheduler ------------------------------------------------------------------------------
    def _start_aps(self) -> None:
        from apscheduler.events import (
            EVENT_JOB_ERROR,
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
        )
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        aps = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": MemoryJobStore()},
            # Pipelines wait for a job slot in their own threads: a burst of new batches queues
            # there, and never holds the threads a schedule's fire needs to run (or be skipped
            # for its true reason) on time.
            executors={
                "default": ThreadPoolExecutor(self.settings.max_concurrent + 8),
                PIPELINE_EXECUTOR: ThreadPoolExecutor(self.settings.max_concurrent),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.settings.misfire_grace_seconds,
            },
        )
        aps.add_listener(
            self._on_aps_event,
            EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_SUBMITTED,
        )
        aps.start()
        self._aps = aps
        self._seen.clear()

    def _watchdog(self) -> None:
        aps = self._aps
        thread = getattr(aps, "_thread", None)
        if aps is not None and thread is not None and thread.is_alive():
            return
        self._say("scheduler: APScheduler's thread is dead; starting it again")
        policies.record(self.store, "scheduler.restarted", "the scheduler thread died")
        if aps is not None:
            try:
                aps.shutdown(wait=False)
            except Exception:
                log.exception("APScheduler shutdown failed")
        self._start_aps()
        self.reconcile()

    def _on_aps_event(self, event: Any) -> None:
        from apscheduler.events import (
            EVENT_JOB_ERROR,
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
        )

        job_id = str(event.job_id)
        if not job_id.startswith("schedule:"):
            if event.code == EVENT_JOB_ERROR:
                problem = event.exception
                shown = str(problem) if isinstance(problem, MldeckError) else repr(problem)
                self._say(f"{job_id} failed: {shown}")
                # The runner raises only when the store cannot be written (a server gone):
                # the pipeline runs again once the store is back.
                if job_id.startswith("pipeline:") and isinstance(problem, MldeckError):
                    self._resume_due = True
            return
        name = job_id.removeprefix("schedule:")
        try:
            if event.code == EVENT_JOB_SUBMITTED:
                self._fired(name, max(event.scheduled_run_times))
            elif event.code == EVENT_JOB_MISSED:
                when = event.scheduled_run_time
                self._record(name, RunStatus.SKIPPED,
                             f"missed: the fire time {when:%Y-%m-%d %H:%M:%S} UTC passed more than "
                             f"{self.settings.misfire_grace_seconds}s ago (misfire grace)")  # fmt: skip
                self._fired(name, when)
            elif event.code == EVENT_JOB_MAX_INSTANCES:
                self._record(name, RunStatus.SKIPPED,
                             "skipped: the previous run of this job is still running")  # fmt: skip
            elif event.code == EVENT_JOB_ERROR:
                text = "".join(traceback.format_exception(event.exception))
                self._record(name, RunStatus.FAILED, f"the job could not run: {text}")
        except OperationalError as exc:  # the store gone: the control loop says it, once
            log.warning("recording the scheduler event of %s failed: %s", name, store_problem(exc))
        except Exception:
            log.exception("recording the scheduler event failed")

    def _fired(self, name: str, when: datetime) -> None:
        with self.store.write() as session:
            row = session.execute(select(Schedule).where(Schedule.name == name)).scalar()
            if row is not None and (row.last_fire_at is None or when > row.last_fire_at):
                row.last_fire_at = when
                session.add(row)

    def _record(self, name: str, status: str, error: str) -> None:
        now = utcnow()
        with self.store.write() as session:
            row = session.execute(select(Schedule).where(Schedule.name == name)).scalar()
            run = Run(name=name, kind=row.kind if row else "custom", trigger=RunTrigger.SCHEDULE,
                      status=status, created_at=now, started_at=now, ended_at=now, error=error,
                      tags={"schedule": name}, params={"job": name})  # fmt: skip
            session.add(run)
            session.flush()
            session.add(RunLog(run_id=run.id, level="warning", message=error))
            if row is not None and not keeps_running_run(session, row, status):
                row.last_run_id, row.last_status, row.last_run_at = run.id, status, now
                session.add(row)
        self._say(f"{name}: {error.splitlines()[0]}")

    # -- reconciling the table and APScheduler's jobs -----------------------------------------------
    def reconcile(self) -> None:
        """Make APScheduler's jobs match the ``schedule`` table; start the runs asked for."""
        aps = self._aps
        if aps is None:
            return
        rows = {row.name: row for row in list_schedules(self.store)}
        for name in list(self._seen):
            if name not in rows:
                self._seen.pop(name)
                if aps.get_job(_job_id(name)) is not None:
                    aps.remove_job(_job_id(name))
                self._say(f"schedule {name} removed")
        for name, row in rows.items():
            print_ = (row.kind, row.cron, row.interval_seconds,
                      json.dumps(row.params, sort_keys=True), row.enabled, row.paused)  # fmt: skip
            if self._seen.get(name) != print_:
                first_time = name not in self._seen
                self._seen[name] = print_
                self._apply(aps, row, first_time)
            requested = row.run_requested_at
            if requested is not None and self._requests.get(name) != requested:
                self._requests[name] = requested
                self._run_now(aps, row)

    def _apply(self, aps: Any, row: Schedule, first_time: bool) -> None:
        trigger = make_trigger(row)
        active = row.enabled and not row.paused
        next_run = None
        now = utcnow()
        late = False  # the last missed fire time is past the misfire grace: it will not run
        upcoming = None  # the next fire after now, when the missed ones are not run
        if active:
            next_run = trigger.get_next_fire_time(None, now)
            # A schedule that never fired counts from when it was made: the fires it missed
            # while no scheduler ran were dropped with no trace (no run, no 'missed' record).
            handled = row.last_fire_at or row.created_at
            if first_time and handled is not None:
                # The misfire policy: start from the first fire time after the last one handled;
                # APScheduler coalesces the missed ones and applies the grace time.
                after = trigger.get_next_fire_time(handled, handled + timedelta(microseconds=1))
                if after is not None and after < now:
                    latest = _latest_fire(trigger, after, now)
                    grace = self.settings.misfire_grace_seconds
                    late = latest is not None and (now - latest).total_seconds() > grace
                    if late:
                        # APScheduler runs the latest missed time only within the grace: said
                        # "runs now", it was then recorded missed.
                        self._say(f"{row.name}: fire times missed since {handled:%H:%M:%S}, "
                                  f"the last at {latest:%H:%M:%S}, more than {grace}s ago "
                                  "(misfire grace): not run")  # fmt: skip
                    else:
                        self._say(f"{row.name}: fire times missed since "
                                  f"{handled:%H:%M:%S} are coalesced into one run now")  # fmt: skip
                    upcoming = next_run
                    next_run = after
        aps.add_job(self._fire, trigger=trigger, id=_job_id(row.name), name=row.name,
                    args=[row.name], replace_existing=True, next_run_time=next_run)  # fmt: skip
        state = "paused" if row.paused else "disabled" if not row.enabled else "active"
        when = f", next {next_run:%Y-%m-%d %H:%M:%S} UTC" if next_run else ""
        if next_run is not None and next_run < now:  # the missed fire times coalesced above
            when = (f", next {upcoming:%Y-%m-%d %H:%M:%S} UTC" if late and upcoming
                    else "" if late else ", runs now")  # fmt: skip
        self._say(f"schedule {row.name} ({row.kind}) {state}{when}")

    def _run_now(self, aps: Any, row: Schedule) -> None:
        requested = row.run_requested_at
        stamp = requested.timestamp()
        grace = self.settings.misfire_grace_seconds
        if self._taking_over and (utcnow() - requested).total_seconds() > grace:
            # Asked for while no scheduler acted, longer ago than a missed fire time is run: it
            # ran at the next start, however old, without a word. (One asked for while this
            # scheduler acts runs, whatever the clocks of the machines say.)
            self._say(f"{row.name}: the request to run it now, made at {fmt.when(requested)}, "
                      f"is more than {grace}s old (misfire grace): not run")  # fmt: skip
        else:
            aps.add_job(self._fire, id=f"now:{row.name}:{stamp}", name=f"{row.name} (now)",
                        args=[row.name, RunTrigger.MANUAL, True], next_run_time=utcnow(),
                        misfire_grace_time=None)  # fmt: skip
        with self.store.write() as session:
            current = session.get(Schedule, row.id)
            if current is not None and current.run_requested_at == row.run_requested_at:
                current.run_requested_at = None
                session.add(current)

    # -- jobs ---------------------------------------------------------------------------------------
    def _fire(self, name: str, trigger: str = RunTrigger.SCHEDULE, forced: bool = False,
              reason: str = "") -> JobOutcome | None:  # fmt: skip
        """Run schedule *name* now (in an APScheduler worker thread, waiting on a subprocess). A
        store that cannot be reached is the control loop's to say, once per outage: here it is
        a line in the log, not a traceback per fire (over a thousand lines in half a minute)."""
        try:
            return self._fire_now(name, trigger, forced, reason)
        except OperationalError as exc:
            log.warning("%s: not started: %s", name, store_problem(exc))
            return None

    def _fire_now(self, name: str, trigger: str, forced: bool, reason: str) -> JobOutcome | None:
        runner = self.runner
        if not self.acting or runner is None:
            return None
        if not self.lease.still_held():  # stopped past the lease: another acts now
            self._say(f"{name}: not started: another process took over the scheduler")
            return None
        with self.store.read() as session:
            row = session.execute(select(Schedule).where(Schedule.name == name)).scalar()
        if row is None or (not forced and (row.paused or not row.enabled)):
            return None
        request = JobRequest.from_schedule(row, trigger=trigger, reason=reason)
        # A fire time that finds every slot taken is skipped and recorded; a person's request
        # to run now waits for a slot instead (it was asked for once, not every interval).
        outcome = runner.run(request, wait_for_slot=trigger == RunTrigger.MANUAL)
        # A success clears "the last runs failed"; a failure may open it.
        self._recheck(("failures",))
        self._after(request, outcome)
        return outcome

    def _after(self, request: JobRequest, outcome: JobOutcome) -> None:
        """What a finished job triggers: a drift check with retrain reasons starts a retrain."""
        if request.kind != "drift" or not outcome.succeeded or not outcome.result:
            return
        reasons = list(outcome.result.get("retrain_reasons") or [])
        if reasons:
            self.trigger_retrain(reasons, source=f"drift check run {outcome.run_id}")

    def trigger_retrain(self, reasons: list[str], *, source: str) -> JobOutcome | None:
        """Start an automatic retrain for *reasons*, unless the cool-down holds it back.

        The caller (a batch's pipeline, a drift job) waits for the retrain it starts, never for
        one already running: a request made meanwhile is recorded as deferred, and decided (the
        cool-down, as usual) once that retrain ends; requests deferred together are merged."""
        runner = self.runner
        if runner is None:
            return None
        trigger = (RunTrigger.PERFORMANCE
                   if all(_about_performance(r) for r in reasons) else RunTrigger.DRIFT)  # fmt: skip
        with self._retrain_lock:
            running = self._retraining
            if running is not None:
                pending = self._retrain_again
                self._retrain_again = (
                    (list(dict.fromkeys([*pending[0], *reasons])), f"{pending[1]}; {source}")
                    if pending is not None else (list(reasons), source)
                )  # fmt: skip
                why = f"the automatic retrain asked by {running} is running: decided when it ends"
                policies.record(self.store, "retrain.deferred", why, retrain_reasons=reasons,
                                source=source)  # fmt: skip
                self._say(f"retrain asked by {source}: {why}")
                return None
            request = self._retrain_request(reasons, trigger, source)
            left, by_run = policies.cooldown_left(self.workspace, self.store)
            if left > 0:
                # What holds it back first: a box of the Pipeline screen shows the start.
                why = (f"cool-down {math.ceil(left / 60)}m left: the automatic retrain run "
                       f"{by_run} started less than {self.settings.retrain_cooldown_minutes:g} min "
                       "ago")  # fmt: skip
                policies.record(self.store, "retrain.cooldown", why, retrain_reasons=reasons,
                                source=source)  # fmt: skip
                runner.record_skipped(request, why)
                return None
            policies.record(self.store, "retrain.triggered", "; ".join(reasons), source=source,
                            trigger=str(trigger))  # fmt: skip
            self._say(f"retrain triggered by {source}: {'; '.join(reasons)}")
            self._retraining = source
        try:
            return runner.run(request, wait_for_slot=True)
        finally:
            with self._retrain_lock:
                self._retraining, again, self._retrain_again = None, self._retrain_again, None
            if again is not None:
                self._decide_deferred(*again)

    def _decide_deferred(self, reasons: list[str], source: str) -> None:
        """The retrain requests deferred while one ran: decided now, in a thread of their own
        (the caller's pipeline is done)."""
        aps = self._aps
        if aps is None or not self.acting:
            self._say(f"retrain asked by {source}: not decided (the scheduler stopped); the next "
                      "drift check that finds the same asks again")  # fmt: skip
            return
        aps.add_job(self.trigger_retrain, args=[reasons], kwargs={"source": source},
                    next_run_time=utcnow(), misfire_grace_time=None)  # fmt: skip

    def _resume_retrain(self) -> None:
        """An automatic retrain that a stop or a crash interrupted (cancelled, orphaned) starts
        again, once, with its reasons: the check that asked for it is done and would not ask
        again, so the alert behind it would stay open with no retrain until the next batch."""
        if self._aps is None:
            return
        since = utcnow() - timedelta(seconds=self.settings.misfire_grace_seconds)
        with self.store.read() as session:
            last = session.execute(
                select(Run)
                .where(Run.kind == "retrain", Run.trigger.in_(policies.AUTOMATIC_TRIGGERS),
                       Run.status != RunStatus.SKIPPED)
                .order_by(Run.id.desc())
                .limit(1)
            ).scalar()  # fmt: skip
            if last is None or last.status not in (RunStatus.CANCELLED, RunStatus.ORPHANED):
                return
            created = last.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            if created < since:  # like a missed fire: not made up for after the grace
                return
            resumed = session.execute(
                select(AuditEvent.details).where(AuditEvent.action == RETRAIN_RESUME)
            ).scalars()
            if any((d or {}).get("interrupted_run") == last.id for d in resumed):
                return
            reasons = [str(r) for r in (last.params or {}).get("reasons") or []]
        if not reasons:
            return
        why = f"retrain run {last.id} was {last.status} before it ended"
        policies.record(self.store, RETRAIN_RESUME, why, interrupted_run=last.id,
                        retrain_reasons=reasons)  # fmt: skip
        self._say(f"{why}; retraining again")
        self._aps.add_job(self.trigger_retrain, id=f"retrain:{last.id}:resumed", args=[reasons],
                          kwargs={"source": f"retrain run {last.id}, {last.status}"},
                          next_run_time=utcnow(), misfire_grace_time=None)  # fmt: skip

    def _retrain_request(self, reasons: list[str], trigger: str, source: str) -> JobRequest:
        with self.store.read() as session:
            template = session.execute(
                select(Schedule).where(Schedule.kind == "retrain").limit(1)
            ).scalar()
        timeout = template.timeout_seconds if template else 3600
        retries = template.retries if template else PIPELINE_STEP_RETRIES
        return JobRequest("retrain", "retrain", {"reasons": reasons}, trigger, timeout, retries,
                          None, f"{source}: {'; '.join(reasons)}")  # fmt: skip

    def _orphans_left(self) -> set[int]:
        """The orphaned last runs of schedules not run again yet, whoever marked them (`mldeck
        jobs health`, a health job) while no scheduler was acting."""
        with self.store.read() as session:
            last = set(
                session.execute(
                    select(Run.id)
                    .join(Schedule, Schedule.last_run_id == Run.id)
                    .where(Run.status == RunStatus.ORPHANED)
                ).scalars()
            )
            if not last:
                return set()
            details = session.execute(
                select(AuditEvent.details).where(AuditEvent.action == "schedule.rerun")
            ).scalars()
            done = {(d or {}).get("orphaned_run") for d in details}
        return last - done

    def _rerun_orphaned(self, orphaned: set[int]) -> None:
        """Run again, once, each schedule whose last run a dead process left behind."""
        if not orphaned or not self.settings.rerun_orphaned or self._aps is None:
            return
        for row in list_schedules(self.store):
            if row.last_run_id in orphaned and row.enabled and row.paused:
                self._say(f"{row.name}: its run {row.last_run_id} was orphaned; not run again "
                          "while the schedule is paused")  # fmt: skip
            elif row.last_run_id in orphaned and row.enabled:
                reason = f"its run {row.last_run_id} was orphaned ([jobs] rerun_orphaned)"
                policies.record(self.store, "schedule.rerun", reason, entity_type="schedule",
                                entity_id=row.name, orphaned_run=row.last_run_id)  # fmt: skip
                self._say(f"{row.name}: running again, {reason}")
                self._aps.add_job(self._fire, id=f"rerun:{row.name}:{time.time()}",
                                  args=[row.name, RunTrigger.SCHEDULE, True, reason],
                                  next_run_time=utcnow(), misfire_grace_time=None)  # fmt: skip

    # -- the pipeline on new data -------------------------------------------------------------------
    def _pipeline_tick(self) -> None:
        if not self.settings.pipeline or self._aps is None:
            return
        for version_id, batch, status in self._claim_new_batches():
            if status not in ("accepted", "warned"):
                continue
            self._queue_pipeline(f"pipeline:{version_id}", version_id, batch)
        self._take_revalidated()

    def _last_event_id(self) -> int:
        with self.store.read() as session:
            return int(session.execute(select(func.max(AuditEvent.id))).scalar() or 0)

    def _take_revalidated(self) -> None:
        """A batch rejected on arrival (its pipeline stopped there) and revalidated into accepted
        or warned goes through its pipeline now: it waited for the next scheduler start."""
        after = self._revalidated_after or 0
        with self.store.read() as session:
            # The events since the last look: a range of the primary key, not a scan of the
            # whole trail at every change of the store.
            top = session.execute(select(func.max(AuditEvent.id))).scalar() or 0
            events = session.execute(
                select(AuditEvent.id, AuditEvent.entity_id, AuditEvent.details)
                .where(AuditEvent.id > after, AuditEvent.id <= top,
                       AuditEvent.action == REVALIDATED)
                .order_by(AuditEvent.id)
            ).all()  # fmt: skip
            self._revalidated_after = top
            events = [e for e in events  # only a batch whose pipeline stopped at validation
                      if (e.details or {}).get("from") not in ("accepted", "warned")]  # fmt: skip
            if not events:
                return
            ids = {int(e.entity_id) for e in events if str(e.entity_id).isdigit()}
            checked = set(
                session.execute(
                    select(DriftReport.dataset_version_id).where(
                        DriftReport.dataset_version_id.in_(ids)
                    )
                ).scalars()
            )
            claimed = {
                int(v)
                for v in session.execute(
                    select(AuditEvent.entity_id).where(
                        AuditEvent.action == PIPELINE_START,
                        AuditEvent.entity_type == "dataset_version",
                        AuditEvent.entity_id.in_([str(i) for i in ids]),
                    )
                ).scalars()
            }
            statuses = dict(session.execute(select(DatasetVersion.id, DatasetVersion.status)
                                            .where(DatasetVersion.id.in_(ids))).all())  # fmt: skip
        for event in events:
            version_id = int(event.entity_id) if str(event.entity_id).isdigit() else None
            if (version_id is None or version_id not in claimed or version_id in checked
                    or version_id in self._in_flight
                    or statuses.get(version_id) not in ("accepted", "warned")):  # fmt: skip
                continue
            batch = (event.details or {}).get("batch") or f"dataset version {version_id}"
            self._say(f"{batch}: revalidated, now {statuses[version_id]}: score, then check drift")
            self._queue_pipeline(f"pipeline:{version_id}:revalidated", version_id, batch)

    def _queue_pipeline(self, job_id: str, version_id: int, batch: str) -> None:
        self._in_flight.add(version_id)
        self._aps.add_job(self._pipeline, id=job_id, args=[version_id, batch],
                          executor=PIPELINE_EXECUTOR, next_run_time=utcnow(),
                          misfire_grace_time=None, replace_existing=True)  # fmt: skip

    def _resume_pipelines(self) -> None:
        """Batches whose pipeline started but never reached a drift report (the scheduler that
        ran it stopped or died: SIGTERM, a takeover) go through it again. Scoring is not done
        twice: the score step skips a batch the champion scored already."""
        if not self.settings.pipeline or self._aps is None:
            return
        since = utcnow() - timedelta(seconds=self.settings.misfire_grace_seconds)
        with self.store.read() as session:
            claimed = session.execute(
                select(AuditEvent.entity_id, AuditEvent.details).where(
                    AuditEvent.action == PIPELINE_START,
                    AuditEvent.entity_type == "dataset_version",
                    AuditEvent.ts >= since,
                )
            ).all()
            checked = {
                str(v) for v in session.execute(select(DriftReport.dataset_version_id)).scalars()
            }
            statuses = dict(session.execute(select(DatasetVersion.id, DatasetVersion.status)).all())
        for entity_id, details in claimed:
            if entity_id in checked or statuses.get(int(entity_id)) not in ("accepted", "warned"):
                continue
            if (details or {}).get("late"):  # claimed as not run (it came too long ago)
                continue
            if not self._has_reference(int(entity_id)):  # its drift was skipped, not unfinished
                continue
            if int(entity_id) in self._in_flight:  # still on its way
                continue
            batch = (details or {}).get("batch") or f"dataset version {entity_id}"
            tries = self._resumed.get(int(entity_id), 0)
            if tries >= MAX_RESUMES:  # failing each time: not again and again while acting
                if tries == MAX_RESUMES:
                    self._say(f"{batch}: its pipeline failed {tries + 1} times; not run again "
                              f"('mldeck drift check {batch}' runs it by hand)")  # fmt: skip
                    self._resumed[int(entity_id)] = tries + 1
                continue
            self._resumed[int(entity_id)] = tries + 1
            self._say(f"{batch}: its pipeline did not finish; running it again")
            self._queue_pipeline(f"pipeline:{entity_id}:resumed", int(entity_id), batch)

    def _claim_new_batches(self) -> list[tuple[int, str, str]]:
        """New-data batches no pipeline has started for, each claimed with an audit event that
        says what happens to it and why. One that arrived longer than the misfire grace ago
        (taken by 'mldeck data watch' while no scheduler acted) is claimed as not run, and
        said: like a missed fire, it is not made up for late, but never skipped in silence."""
        grace = self.settings.misfire_grace_seconds
        since = utcnow() - timedelta(seconds=grace)
        started = select(AuditEvent.entity_id).where(
            AuditEvent.action == PIPELINE_START, AuditEvent.entity_type == "dataset_version"
        )
        with self.store.read() as session:  # only the unclaimed: this runs at every tick
            unclaimed = ~started.where(
                AuditEvent.entity_id == cast(DatasetVersion.id, String)
            ).exists()
            candidates = session.execute(
                select(DatasetVersion.id, DatasetVersion.version, DatasetVersion.status,
                       Dataset.name, Dataset.reference_version_id,
                       (DatasetVersion.arrived_at < since).label("late"))
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .join(Run, Run.id == DatasetVersion.run_id)
                .where(Run.trigger == RunTrigger.NEW_DATA, unclaimed)
                .order_by(DatasetVersion.id)
            ).all()  # fmt: skip
        todo = [c for c in candidates if c.id != c.reference_version_id]
        claimed = []
        for c in todo:
            batch = f"{c.name}:v{c.version}"
            if c.late and c.status in ("accepted", "warned"):
                why = (f"new batch {batch} arrived more than [jobs] misfire_grace_seconds ({grace:g}"
                       f" s) ago, while no scheduler acted: not run now ('mldeck drift check "
                       f"{batch}' scores it and checks its drift)")  # fmt: skip
            elif c.status in ("accepted", "warned"):
                why = f"new batch {batch} {c.status} by validation: score, then check drift"
            else:
                why = f"new batch {batch} {c.status} by validation: the pipeline stops here"
            with self.store.write() as session:
                again = session.execute(
                    started.where(AuditEvent.entity_id == str(c.id)).limit(1)
                ).scalar()
                if again is not None:
                    continue
                late = {"late": True} if c.late else {}  # not run on purpose: never resumed
                audit.append(session, PIPELINE_START, entity_type="dataset_version",
                             entity_id=c.id, details={"reason": why, "batch": batch, **late},
                             actor=policies.ACTOR)  # fmt: skip
            self._say(why)
            claimed.append((c.id, batch, "late" if c.late else c.status))
        return claimed

    def _has_champion(self) -> bool:
        with self.store.read() as session:
            found = session.execute(select(Alias.id).where(Alias.name == "champion").limit(1))
            return found.scalar() is not None

    def _has_reference(self, version_id: int) -> bool:
        """Whether the version's dataset has a reference for drift to compare it with."""
        with self.store.read() as session:
            found = session.execute(
                select(Dataset.reference_version_id)
                .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
                .where(DatasetVersion.id == version_id)
            ).scalar()
            return found is not None

    def _pipeline(self, version_id: int, batch: str) -> None:
        try:
            self._pipeline_steps(version_id, batch)
        finally:
            self._in_flight.discard(version_id)

    def _pipeline_steps(self, version_id: int, batch: str) -> None:
        runner = self.runner
        if runner is None or not self.acting:
            return
        params = {"dataset_version_id": version_id}
        if not self._has_champion():  # a new workspace: nothing serves yet, features only
            self._say(f"{batch}: no champion yet, nothing to score; checking the features' drift")
        else:
            score = runner.run(JobRequest(f"score {batch}", "score", params, RunTrigger.NEW_DATA,
                                          PIPELINE_STEP_TIMEOUT, PIPELINE_STEP_RETRIES,
                                          reason=f"new batch {batch}"), wait_for_slot=True)  # fmt: skip
            if runner.stopping:  # its pipeline is resumed when a scheduler acts again
                self._say(f"{batch}: not scored (the scheduler is stopping); its pipeline runs "
                          "again when a scheduler next acts")  # fmt: skip
                return
            if not score.succeeded:
                self._say(f"{batch}: scoring {score.status} ({score.error}); checking drift anyway")
        if not self._has_reference(version_id):
            # A new workspace's first batches: a drift step would fail, be retried, fail again
            # and raise the "drift run failed" alert, batch after batch.
            self._say(f"{batch}: no reference to compare its drift with (ingest one with "
                      "'mldeck data ingest FILE --reference'); drift not checked")  # fmt: skip
            return
        drift = runner.run(JobRequest(f"drift {batch}", "drift", params, RunTrigger.NEW_DATA,
                                      PIPELINE_STEP_TIMEOUT, PIPELINE_STEP_RETRIES,
                                      reason=f"new batch {batch}"), wait_for_slot=True)  # fmt: skip
        self._after(JobRequest(f"drift {batch}", "drift"), drift)


OUTAGE = re.compile(
    r"locked|busy|connect|closed|terminat|unable to open|disk i/o|timeout|"
    r"shut ?down|starting up|recovery mode",
    re.IGNORECASE,
)


def _outage(exc: BaseException) -> bool:
    """Whether *exc* is the store out of reach (locked, down, its connection lost), not a bug:
    SQLite says a missing column with the same OperationalError."""
    if not isinstance(exc, OperationalError):
        return False
    return bool(exc.connection_invalidated or OUTAGE.search(str(exc.orig or exc)))


def _about_performance(reason: str) -> bool:
    """Whether a retrain reason (``rule: title``) is a metric below its floor: the metric rules'
    titles read ``BATCH: estimated|realized METRIC VALUE < FLOOR``."""
    title = reason.partition(": ")[2]
    return (
        "metric" in reason or re.search(r": (estimated|realized) \S+ [-\d.]+ < ", title) is not None
    )
