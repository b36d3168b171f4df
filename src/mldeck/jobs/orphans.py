"""Runs left ``running`` by a process that is gone: found and marked ``orphaned``.

A run records the pid and the start time of the process that runs it. On this host, the run is
an orphan when that process no longer exists, or exists with another start time (the pid was
reused). A run of another host (or without a pid) cannot be checked that way: it is an orphan
when its heartbeat is older than ``[jobs] stale_run_seconds``. The scheduler sweeps at start-up,
and the health check sweeps every time it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from mldeck import provenance
from mldeck.jobs.lease import process_alive
from mldeck.store.engine import Store
from mldeck.store.models import Run, RunLog, RunStatus, utcnow

OPEN_STATUSES = (RunStatus.RUNNING, RunStatus.QUEUED)


@dataclass(frozen=True)
class Orphan:
    run_id: int
    name: str
    reason: str


def _why(run: Run, host: str, stale_before: datetime) -> str | None:
    if run.host == host and run.pid:
        if process_alive(run.pid, run.pid_started_at):
            return None
        return f"its process {run.pid} on {host} is gone"
    last = run.heartbeat_at or run.started_at or run.created_at
    if last < stale_before:
        return (
            f"no heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC (from {run.host or 'unknown host'})"
        )
    return None


def find_orphans(store: Store, stale_seconds: float) -> list[Orphan]:
    """The open runs whose process is gone or whose heartbeat is stale (nothing is changed)."""
    host = provenance.hostname()
    stale_before = utcnow() - timedelta(seconds=stale_seconds)
    with store.read() as session:
        runs = session.execute(select(Run).where(Run.status.in_(OPEN_STATUSES))).scalars().all()
    found = []
    for run in runs:
        reason = _why(run, host, stale_before)
        if reason is not None:
            found.append(Orphan(run.id, run.name, reason))
    return found


def mark_orphans(store: Store, stale_seconds: float) -> list[Orphan]:
    """Mark every orphan ``orphaned`` with its reason; returns what was marked."""
    orphans = find_orphans(store, stale_seconds)
    if not orphans:
        return []
    marked = []
    now = utcnow()
    with store.write() as session:
        for orphan in orphans:
            run = session.get(Run, orphan.run_id)
            if run is None or run.status not in OPEN_STATUSES:
                continue  # it finished meanwhile
            # It ended when it last gave a sign of life, not when found: its duration is the
            # time it ran (a run killed after 13 s read 33 s, found by a later health check).
            last = run.heartbeat_at or run.started_at or run.created_at
            run.status, run.ended_at = RunStatus.ORPHANED, min(last, now)
            run.error = f"orphaned: {orphan.reason} (found {now:%Y-%m-%d %H:%M:%S} UTC)"
            session.add(run)
            session.add(RunLog(run_id=run.id, level="error", message=run.error))
            marked.append(orphan)
    return marked


def end_runs_of_process(
    store: Store,
    pid: int,
    started_at: float | None,
    *,
    status: str,
    reason: str,
    parent: int | None = None,
    cancelled_since: datetime | None = None,
) -> list[int]:
    """End the open runs a (now dead) process of this host left behind, with *reason*. With
    *parent* (the job whose worker it was), those runs become its steps: the worker, killed,
    could not link them itself. With *cancelled_since*, the runs it ended as cancelled since
    then are given *status* and *reason* too (a worker's runs end 'cancelled: interrupted' on
    the SIGTERM of a timeout, while the job says it timed out)."""
    host = provenance.hostname()
    now = utcnow()
    ended = []
    with store.write() as session:
        ending = Run.status.in_(OPEN_STATUSES)
        if cancelled_since is not None:
            ending = ending | (
                (Run.status == RunStatus.CANCELLED) & (Run.ended_at >= cancelled_since)
            )
        query = select(Run).where(ending, Run.pid == pid, Run.host == host)
        for run in session.execute(query).scalars():
            if started_at is not None and run.pid_started_at not in (None, started_at):
                continue
            run.status, run.ended_at, run.error = status, now, reason
            if parent is not None and run.id != parent and run.parent_run_id is None:
                run.parent_run_id = parent
            session.add(run)
            session.add(RunLog(run_id=run.id, level="error", message=reason))
            ended.append(run.id)
    return ended
