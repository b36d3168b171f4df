"""Alerts: rules from ``[monitor] alerts`` raise them, an open alert is de-duplicated (its
``occurrences`` grow), people acknowledge and resolve them, and a condition that clears resolves
its alert on its own. Every change is in the audit trail. A rule's ``command`` (or
``[monitor] alert_command``) runs when its alert opens, with the alert as JSON on stdin.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from mldeck import audit
from mldeck import formatting as fmt
from mldeck.errors import MldeckError, NotFound, interrupted
from mldeck.monitor.settings import LABEL_METRICS, AlertRule
from mldeck.provenance import current_user
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alert,
    AuditEvent,
    DatasetVersion,
    DriftReport,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
    utcnow,
)
from mldeck.store.queries import newest_data

OPEN_STATES = ("open", "acknowledged")


@dataclass
class Signal:
    """A rule's verdict: firing (raise or repeat its alert) or clear (resolve it)."""

    rule: AlertRule
    firing: bool
    key: str
    title: str
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Raised:
    alert_id: int
    rule: str
    severity: str
    title: str
    new: bool
    retrain: bool
    command: str | None
    payload: dict[str, Any]
    # "batch" for a rule about the checked batch (drift, metrics), "store" for one about the
    # store as a whole (freshness, failed steps) evaluated along with it.
    scope: str = "batch"
    # Fired by a batch older than the one the open alert names (a late or repeated check of an
    # older batch): no reason to retrain, the newer batch's own check decided that.
    older: bool = False


def default_rules(settings: Any) -> list[AlertRule]:
    """The rules in force: ``[monitor] alerts``, or the defaults when there are none."""
    if settings.monitor.alerts is not None:
        return list(settings.monitor.alerts)
    rules = [AlertRule(name="dataset drift", when="dataset_drift", severity="warning")]
    if settings.monitor.multivariate:  # off, the rule would never fire
        rules.append(AlertRule(name="multivariate drift", when="multivariate_drift",
                               severity="warning", retrain=False))  # fmt: skip
    rules.append(AlertRule(name="failed pipeline step", when="failed_run", severity="warning"))
    primary = settings.model.primary
    # A floor on a metric no rule can watch (log_loss, a regression's) has no alert of its own.
    floor = settings.gates.min.get(primary) if primary in LABEL_METRICS else None
    if floor is not None and settings.model.task == "classification":
        rules.append(AlertRule(name=f"estimated {primary} below {floor:g}",
                               when="estimated_metric", metric=primary, below=floor,
                               severity="critical"))  # fmt: skip
    if floor is not None:
        rules.append(AlertRule(name=f"realized {primary} below {floor:g}",
                               when="realized_metric", metric=primary, below=floor,
                               severity="critical"))  # fmt: skip
    return rules


def store_signals(store: Store, rules: list[AlertRule]) -> list[Signal]:
    """Verdicts of the rules that look at the store rather than a batch: data freshness and
    the last run of each kind having failed."""
    with store.read() as session:
        return store_signals_in(session, rules)


def store_signals_in(session: Session, rules: list[AlertRule]) -> list[Signal]:
    """:func:`store_signals` as the caller's transaction sees the store (a drift check's, with
    its own run already marked succeeded)."""
    signals: list[Signal] = []
    newest = newest_data(session)
    # A person's own script (the tracking API) is an experiment, not a step of the pipeline:
    # its failure is the person's to see, and raised no "failed pipeline step".
    steps = Run.trigger != RunTrigger.SCRIPT
    kinds = session.execute(select(Run.kind).where(steps).distinct()).scalars().all()
    last_runs = {}
    for kind in kinds:
        last_runs[kind] = session.execute(
            select(Run)
            .where(Run.kind == kind, steps)
            .where(Run.status.in_([RunStatus.SUCCEEDED, RunStatus.FAILED]))
            # The last to end: a job ends after its step (a drift job that failed after its
            # check succeeded was hidden by the check's higher id).
            .order_by(Run.ended_at.desc().nulls_last(), Run.id.desc())
            .limit(1)
        ).scalar()
    now = utcnow()
    for rule in rules:
        if rule.when == "freshness" and rule.hours is not None:
            if newest is None:
                continue
            if newest.tzinfo is None:
                newest = newest.replace(tzinfo=now.tzinfo)
            age = now - newest
            signals.append(Signal(
                rule, age > timedelta(hours=rule.hours), rule.name,
                f"no new data for {fmt.duration(age)} "
                f"(limit {fmt.duration(timedelta(hours=rule.hours))})",
                details={"newest": newest.isoformat(), "hours": age.total_seconds() / 3600},
            ))  # fmt: skip
        elif rule.when == "failed_run":
            # Scheduled runs whose schedule is no longer there: was it removed?
            scheduled = {r.name for r in last_runs.values()
                         if r is not None and r.trigger == RunTrigger.SCHEDULE}  # fmt: skip
            missing = scheduled - set(session.execute(select(Schedule.name)).scalars())
            removed = set(session.execute(
                select(AuditEvent.entity_id).where(AuditEvent.action == "schedule.removed",
                                                   AuditEvent.entity_id.in_(missing))
            ).scalars()) if missing else set()  # fmt: skip
            # An alert a script's failure opened (before scripts were left out) for a kind the
            # pipeline never ended a run of: nothing would look at it again, open for good.
            stale = session.execute(
                select(Alert.dedup_key).where(Alert.rule == rule.name,
                                              Alert.status.in_(OPEN_STATES))
            ).scalars().all()  # fmt: skip
            for key in sorted(set(stale)):
                kind = key.removeprefix(f"{rule.name}:")
                if key != kind and last_runs.get(kind) is None:
                    signals.append(Signal(rule, False, key, f"the last {kind} run failed",
                                          details={"kind": kind}))  # fmt: skip
            for kind, run in sorted(last_runs.items()):
                if run is None:
                    continue
                # A scheduled job's failure is moot once its schedule was removed (from
                # mldeck.toml or the CLI): nothing would run it again, its alert never clear.
                gone = run.trigger == RunTrigger.SCHEDULE and run.name in removed
                failed = run.status == RunStatus.FAILED and not gone
                first_line = (run.error or "").strip().splitlines()
                signals.append(Signal(
                    rule, failed, f"{rule.name}:{kind}", f"the last {kind} run failed: {run.name}",
                    message=first_line[-1] if first_line else "",
                    details={"run_id": run.id, "kind": kind},
                ))  # fmt: skip
    return signals


def apply(store: Store, signals: list[Signal], *, run_id: int | None = None) -> list[Raised]:
    """Raise, repeat or resolve alerts for *signals* in one write transaction."""
    if not signals:
        return []
    with store.write() as session:
        return apply_in(session, signals, run_id=run_id)


def retire_orphans(session: Session, rules: list[AlertRule]) -> list[int]:
    """Resolve the open alerts whose rule is no longer among *rules* (renamed or removed from
    mldeck.toml): no rule would ever look at them again, and they stayed open for good, making
    every 'alerts check' exit 3. Health checks' alerts have no rule of their own."""
    names = {rule.name for rule in rules}
    orphans = session.execute(
        select(Alert).where(Alert.status.in_(OPEN_STATES), Alert.rule.not_in(names),
                            Alert.rule.not_like("health:%"))
    ).scalars().all()  # fmt: skip
    now = utcnow()
    note = "its rule is no longer in mldeck.toml"
    for alert in orphans:
        alert.status, alert.resolved_at, alert.updated_at = "resolved", now, now
        alert.details = {**alert.details, "resolved_by": "mldeck", "note": note}
        session.add(alert)
        audit.append(session, "alert.resolve", entity_type="alert", entity_id=alert.id,
                     actor="mldeck", details={"reason": note, "rule": alert.rule})  # fmt: skip
    return [alert.id for alert in orphans]


def apply_in(
    session: Session, signals: list[Signal], *, run_id: int | None = None, scope: str = "batch"
) -> list[Raised]:
    """:func:`apply` inside the caller's transaction (the drift check's, with its report);
    *scope* is what the signals are about (see :class:`Raised`)."""
    raised: list[Raised] = []
    now = utcnow()
    if signals:
        for signal in signals:
            current = session.execute(
                select(Alert)
                .where(Alert.dedup_key == signal.key, Alert.status.in_(OPEN_STATES))
                .order_by(Alert.id.desc())
                .limit(1)
            ).scalar()
            older = current is not None and _older_batch(signal, current)
            if not signal.firing:
                # An alert about a batch is cleared by that batch or a newer one: an older batch
                # checked again (or late) says nothing about the newer batch's condition.
                if current is not None and not older:
                    current.status, current.resolved_at, current.updated_at = "resolved", now, now
                    current.details = {**current.details, "resolved_by": "condition cleared",
                                       "resolved_run_id": run_id,
                                       "resolved_by_version":
                                           signal.details.get("dataset_version_id")}  # fmt: skip
                    session.add(current)
                    audit.append(session, "alert.resolve", entity_type="alert",
                                 entity_id=current.id, actor="mldeck",
                                 details={"reason": "condition cleared", "rule": signal.rule.name})  # fmt: skip
                continue
            if current is None and (
                _cleared_by_newer(session, signal) or _newer_batch_checked(session, signal)
            ):
                continue  # nor does it open what a newer batch's check cleared or found clear
            if current is None and _failure_resolved(session, signal):
                continue  # a failure someone resolved is not opened again at every look
            # The run that fired it (the check's), unless the signal names its own (the run
            # that failed, for a failed step).
            details = {"run_id": run_id, "when": signal.rule.when, **signal.details}
            # Every batch that fired the alert keeps it in its history, whichever it names now.
            fired = list((current.details or {}).get("batches") or []) if current else []
            batch = signal.details.get("batch")
            if isinstance(batch, str) and batch not in fired:
                fired.append(batch)
            if fired:
                details["batches"] = fired
            # And every check that fired it: a batch checked again raised it once, not twice.
            runs = list((current.details or {}).get("runs") or []) if current else []
            if run_id is not None and run_id not in runs:
                runs.append(run_id)
            if runs:
                details["runs"] = runs
            new = current is None
            if new:
                current = Alert(
                    rule=signal.rule.name, severity=signal.rule.severity, status="open",
                    dedup_key=signal.key, title=signal.title[:300], message=signal.message,
                    details=details, created_at=now, updated_at=now,
                )  # fmt: skip
            else:
                current.occurrences += 1
                current.updated_at = now
                current.severity = signal.rule.severity  # as the rule says now (edited)
                if not older:  # the alert goes on naming the newest batch that fired it
                    current.title, current.message = signal.title[:300], signal.message
                    current.details = {**current.details, **details}
                else:
                    current.details = {**current.details, "batches": fired, "runs": runs}
            session.add(current)
            session.flush()
            if new:
                audit.append(session, "alert.open", entity_type="alert", entity_id=current.id,
                             actor="mldeck", details={"rule": signal.rule.name,
                                                      "title": current.title})  # fmt: skip
            raised.append(Raised(current.id, signal.rule.name, current.severity, current.title,
                                 new, signal.rule.wants_retrain, signal.rule.command,
                                 alert_payload(current), scope=scope, older=older))  # fmt: skip
    return raised


def _older_batch(signal: Signal, alert: Alert) -> bool:
    """Whether *signal* comes from a batch older than the one *alert* names (batches are dataset
    versions, numbered as they arrive)."""
    mine, named = (
        signal.details.get("dataset_version_id"),
        (alert.details or {}).get("dataset_version_id"),
    )
    return isinstance(mine, int) and isinstance(named, int) and mine < named


def _cleared_by_newer(session: Session, signal: Signal) -> bool:
    """Whether the last alert of *signal*'s condition was cleared by the check of a batch newer
    than *signal*'s: the newest batch decides whether the condition holds now."""
    mine = signal.details.get("dataset_version_id")
    if not isinstance(mine, int):
        return False
    last = session.execute(
        select(Alert).where(Alert.dedup_key == signal.key).order_by(Alert.id.desc()).limit(1)
    ).scalar()
    if last is None or last.status != "resolved":
        return False
    cleared = (last.details or {}).get("resolved_by_version")
    return isinstance(cleared, int) and mine < cleared


# The rules a drift check judges on every batch it checks (labels come later, for any batch).
CHECKED_WITH_EVERY_BATCH = {"dataset_drift", "feature_drift", "multivariate_drift"}
CHECKED_WITH_A_MODEL = {"prediction_drift", "estimated_metric"}


def _newer_batch_checked(session: Session, signal: Signal) -> bool:
    """Whether a batch of the same dataset newer than *signal*'s was checked with the rule's
    condition judged (no alert being open, it was found clear, or cleared since): the newest batch
    decides, so a late check of an older batch opens nothing."""
    mine = signal.details.get("dataset_version_id")
    when = signal.rule.when
    if not isinstance(mine, int) or when not in CHECKED_WITH_EVERY_BATCH | CHECKED_WITH_A_MODEL:
        return False
    dataset = select(DatasetVersion.dataset_id).where(DatasetVersion.id == mine).scalar_subquery()
    query = (
        select(DriftReport.id)
        .join(DatasetVersion, DatasetVersion.id == DriftReport.dataset_version_id)
        .where(DatasetVersion.dataset_id == dataset, DriftReport.dataset_version_id > mine)
    )
    if when in CHECKED_WITH_A_MODEL:
        query = query.where(DriftReport.model_version_id.is_not(None))
    return session.execute(query.limit(1)).first() is not None


def _failure_resolved(session: Session, signal: Signal) -> bool:
    """Whether the last alert of a failed step's signal was resolved while naming the same failed
    run: no run of that step has ended since (succeeded or failed), so nothing is new to say."""
    failed = signal.details.get("run_id")
    if signal.rule.when != "failed_run" or not isinstance(failed, int):
        return False
    last = session.execute(
        select(Alert).where(Alert.dedup_key == signal.key).order_by(Alert.id.desc()).limit(1)
    ).scalar()
    return (
        last is not None
        and last.status == "resolved"
        and (last.details or {}).get("run_id") == failed
    )


def opened(store: Store, settings: Any, alert_ids: list[int]) -> list[Raised]:
    """The alerts *alert_ids* (opened elsewhere: in a job's worker, by a health check) as new,
    with their rule's command, for :func:`run_hooks`; those closed since are left out."""
    if not alert_ids:
        return []
    commands = {rule.name: rule.command for rule in default_rules(settings)}
    with store.read() as session:
        rows = session.execute(
            select(Alert).where(Alert.id.in_(alert_ids), Alert.status.in_(OPEN_STATES))
            .order_by(Alert.id)
        ).scalars().all()  # fmt: skip
        return [Raised(a.id, a.rule, a.severity, a.title, True, False, commands.get(a.rule),
                       alert_payload(a), scope="store") for a in rows]  # fmt: skip


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity,
        "status": alert.status,
        "title": alert.title,
        "message": alert.message,
        "details": alert.details,
        "occurrences": alert.occurrences,
        "created_at": alert.created_at.isoformat() if alert.created_at else None,
        "updated_at": alert.updated_at.isoformat() if alert.updated_at else None,
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def run_hooks(
    raised: list[Raised], default_command: str | None, timeout: float, cwd: Path | None = None,
    generation: int | None = None,
) -> list[str]:  # fmt: skip
    """Run the command of each newly opened alert, side by side (one hanging hook delayed the
    others, and the check, by its timeout each), in *cwd* (the workspace: a relative command
    ran from wherever mldeck was called); returns one line per problem, in the alerts' order
    (never raises for a hook: a broken hook must not stop the pipeline). A rule's
    ``command = ""`` runs none. Interrupted (Ctrl-C, SIGTERM), it stops the hooks at once: they
    held the exit for their whole timeout, out of reach of the terminal's signals."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [(a, a.command if a.command is not None else default_command) for a in raised]
    todo = [(alert, command) for alert, command in todo if alert.new and command]
    if not todo:
        return []
    generation = _generation if generation is None else generation
    pool = ThreadPoolExecutor(min(len(todo), 8), thread_name_prefix="mldeck-hook")
    try:
        found = list(pool.map(lambda job: _run_hook(job[0], job[1], timeout, cwd, generation),
                              todo))  # fmt: skip
    except BaseException as exc:
        if interrupted(exc):  # Ctrl-C, SIGTERM: the process is ending
            stop_hooks()
        raise
    finally:
        pool.shutdown(wait=True)
    return [problem for problem in found if problem is not None]


def run_hooks_later(
    raised: list[Raised], default_command: str | None, timeout: float, cwd: Path,
    say: Callable[[str], None],
) -> threading.Thread | None:  # fmt: skip
    """:func:`run_hooks` in a thread of its own, each problem passed to *say*: a job's hook
    held its concurrency slot, or counted against its timeout, for as long as it ran."""
    if not any(alert.new for alert in raised):
        return None
    generation = _generation  # a stop from now on stops these hooks too, started or not

    def hooks() -> None:
        for problem in run_hooks(raised, default_command, timeout, cwd, generation):
            say(problem)

    thread = threading.Thread(target=hooks, name="mldeck-hooks")
    thread.start()
    return thread


def hook_opened_later(
    workspace: Any, store: Store, alert_ids: list[int], say: Callable[[str], None]
) -> threading.Thread | None:
    """The hooks of the alerts *alert_ids*, opened elsewhere (a job's worker, a health check),
    run by :func:`run_hooks_later` with the workspace's settings; a store that cannot be read
    is said, not raised (the alerts stay open, listed)."""
    if not alert_ids:
        return None
    monitor = workspace.settings.monitor
    try:
        raised = opened(store, workspace.settings, alert_ids)
    except Exception as exc:  # the store gone: the job's own outcome says more
        say(f"the hooks of alerts {', '.join(map(str, alert_ids))} were not run: {exc}")
        return None
    return run_hooks_later(raised, monitor.alert_command, monitor.alert_command_timeout,
                           workspace.root, say)  # fmt: skip


_hooks_lock = threading.Lock()
_live_hooks: dict[int, subprocess.Popen] = {}  # by pid: the hooks running now
_stopped_hooks: set[int] = set()
_generation = 0  # a stop ends the hooks asked for before it, even those not started yet


def stop_hooks() -> None:
    """Kill every hook still running, with what it started, and start none of those asked
    for before now (mldeck is stopping)."""
    global _generation
    with _hooks_lock:
        _generation += 1
        live = list(_live_hooks.values())
        _stopped_hooks.update(process.pid for process in live)
    for process in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _run_hook(
    alert: Raised, command: str, timeout: float, cwd: Path | None = None,
    generation: int | None = None,
) -> str | None:  # fmt: skip
    """One alert's hook: its problem, or None. The alert goes in on stdin from a file, its output
    is not kept and its errors go to a file whose last line is read: through pipes, a hook that
    exited at once but left a child in the background (`curl ... &`) was waited for until its
    timeout, said to have timed out and its child killed, and a hook writing a lot was held in
    memory whole."""
    try:
        with tempfile.TemporaryFile() as given, tempfile.TemporaryFile() as errors:
            given.write(json.dumps(alert.payload, default=str).encode())
            given.seek(0)
            return _started_hook(alert, command, timeout, cwd, generation, given, errors)
    except OSError as exc:  # no room for its input (a full disk): said, never raised
        return f"alert {alert.alert_id}: hook could not start: {exc}"


def _started_hook(
    alert: Raised, command: str, timeout: float, cwd: Path | None, generation: int | None,
    given: Any, errors: Any,
) -> str | None:  # fmt: skip
    """The hook started with its input (*given*) and its errors' file: its problem, or None."""
    try:
        # In a process group of its own: a timeout ends the command and what it started
        # (the shell alone left its children running after mldeck exited).
        with _hooks_lock:
            if generation is not None and generation != _generation:
                return f"alert {alert.alert_id}: hook stopped: mldeck was stopping"
            process = subprocess.Popen(
                command, shell=True, stdin=given, stdout=subprocess.DEVNULL, stderr=errors,
                start_new_session=True, cwd=cwd,
            )  # fmt: skip
            _live_hooks[process.pid] = process
    except OSError as exc:
        return f"alert {alert.alert_id}: hook could not start: {exc}"
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return f"alert {alert.alert_id}: hook timed out after {timeout:g} s"
    finally:
        with _hooks_lock:
            _live_hooks.pop(process.pid, None)
            stopped = process.pid in _stopped_hooks
            _stopped_hooks.discard(process.pid)
    code = process.returncode
    if code == 0:
        return None
    if stopped:
        return f"alert {alert.alert_id}: hook stopped: mldeck was stopping"
    size = errors.seek(0, os.SEEK_END)
    errors.seek(max(0, size - HOOK_ERROR_TAIL))
    err = errors.read().decode(errors="replace").strip().splitlines()
    how = f"killed by {_signal_name(-code)}" if code < 0 else f"exited {code}"
    return f"alert {alert.alert_id}: hook {how}" + (
        f": {fmt.cut_middle(err[-1].strip(), HOOK_ERROR_LINE)}" if err else ""
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


HOOK_ERROR_LINE = 300  # characters of a failed hook's last error line said
HOOK_ERROR_TAIL = 4096  # bytes of a failed hook's errors read for their last line


def _get(session: Any, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id} (see 'mldeck alerts list')")
    return alert


def _change(store: Store, alert_id: int, action: str, user: str | None, note: str) -> Alert:
    user = user or current_user()
    with store.write() as session:
        alert = _get(session, alert_id)
        now = utcnow()
        if action == "acknowledge":
            if alert.status != "open":
                raise MldeckError(
                    f"alert {alert_id} is {alert.status}; only an open alert is acknowledged"
                )
            alert.status, alert.acknowledged_by, alert.acknowledged_at = "acknowledged", user, now
            if note:  # kept with the alert, as a resolution's is (it was in the audit trail only)
                alert.details = {**alert.details, "acknowledge_note": note}
        else:
            if alert.status == "resolved":
                raise MldeckError(f"alert {alert_id} is already resolved")
            alert.status, alert.resolved_at = "resolved", now
            alert.details = {**alert.details, "resolved_by": user, "note": note}
        alert.updated_at = now
        session.add(alert)
        audit.append(session, f"alert.{action}", entity_type="alert", entity_id=alert_id,
                     actor=user, details={"note": note, "title": alert.title})  # fmt: skip
        session.flush()
        session.refresh(alert)
        session.expunge(alert)
        return alert


def acknowledge(store: Store, alert_id: int, *, user: str | None = None, note: str = "") -> Alert:
    """Someone is on it: the alert stays active until resolved."""
    return _change(store, alert_id, "acknowledge", user, note)


def resolve(store: Store, alert_id: int, *, user: str | None = None, note: str = "") -> Alert:
    return _change(store, alert_id, "resolve", user, note)


def _with_status(query: Any, status: str | None) -> Any:
    if status == "active":
        return query.where(Alert.status.in_(OPEN_STATES))
    return query.where(Alert.status == status) if status else query


def list_alerts(store: Store, *, status: str | None = "active", limit: int = 100) -> list[Alert]:
    """Alerts, newest first; ``status='active'`` means open or acknowledged, None means all."""
    query = _with_status(select(Alert), status).order_by(Alert.id.desc()).limit(limit)
    with store.read() as session:
        rows = list(session.execute(query).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def count_alerts(store: Store, *, status: str | None = "active") -> int:
    """How many alerts ``list_alerts`` would list without a limit."""
    with store.read() as session:
        return session.execute(_with_status(select(func.count(Alert.id)), status)).scalar_one()


def active_count(store: Store) -> tuple[int, int]:
    """(active alerts, of which critical): cheap, for the top bar of every screen."""
    with store.read() as session:
        rows = session.execute(
            select(Alert.severity, func.count())
            .where(Alert.status.in_(OPEN_STATES))
            .group_by(Alert.severity)
        ).all()
    return sum(n for _, n in rows), sum(n for s, n in rows if s == "critical")
