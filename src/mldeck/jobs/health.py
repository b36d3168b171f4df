"""Health checks: store integrity, free disk, data freshness, champion files, the scheduler's
heartbeat, repeated job failures and orphaned runs.

Each check is a ``HealthCheck`` row (ok, warn or fail, a message, a value); a check that is not
ok opens (or repeats) an alert ``health:<name>``, which is resolved when the check is ok again.
The Overview shows the latest result of each check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from mldeck import audit
from mldeck import formatting as fmt
from mldeck.jobs import lease as leases
from mldeck.jobs.orphans import mark_orphans
from mldeck.jobs.runner import free_disk_mb
from mldeck.store.artifacts import ArtifactError, resolve, verify
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alert,
    Alias,
    Artifact,
    HealthCheck,
    ModelVersion,
    RegisteredModel,
    Run,
    Schedule,
    utcnow,
)
from mldeck.store.queries import integrity_check, newest_data
from mldeck.workspace import Workspace

OK, WARN, FAIL = "ok", "warn", "fail"
OPEN_STATES = ("open", "acknowledged")


@dataclass
class Check:
    name: str
    status: str
    message: str
    value: float | None = None


@dataclass
class HealthReport:
    checks: list[Check] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)  # the alerts these checks opened

    @property
    def status(self) -> str:
        statuses = {c.status for c in self.checks}
        return FAIL if FAIL in statuses else WARN if WARN in statuses else OK

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [asdict(c) for c in self.checks]}


def check_store(store: Store) -> Check:
    found = integrity_check(store)
    return Check("store", OK if found == "ok" else FAIL,
                 "integrity ok" if found == "ok" else f"quick check found: {found}")  # fmt: skip


def check_disk(workspace: Workspace) -> Check:
    free = free_disk_mb(workspace.state_dir)
    floor = workspace.settings.jobs.min_free_disk_mb
    if free < floor:
        return Check("disk", FAIL, f"{free:.0f} MB free, below min_free_disk_mb = {floor:g}", free)
    if free < 2 * floor:
        return Check("disk", WARN, f"{free:.0f} MB free, close to min_free_disk_mb = {floor:g}",
                     free)  # fmt: skip
    return Check("disk", OK, f"{free:.0f} MB free", free)


def check_freshness(workspace: Workspace, store: Store) -> Check:
    hours = workspace.settings.jobs.data_stale_hours
    with store.read() as session:
        newest = newest_data(session)
        batch = newest_data(session, batches_only=True)
    if newest is None:
        return Check("data", WARN, "no data ingested yet")
    age = (utcnow() - newest).total_seconds() / 3600
    if hours and age > hours:
        return Check("data", WARN, f"no new data for {age:.1f} h (data_stale_hours = {hours:g})",
                     age)  # fmt: skip
    if batch is None:  # the reference alone: it is data, but no batch has arrived
        return Check("data", OK, f"no batch yet (the reference arrived {age:.1f} h ago)", age)
    return Check("data", OK, f"newest batch {age:.1f} h old", age)


def check_champions(workspace: Workspace, store: Store) -> Check:
    with store.read() as session:
        rows = session.execute(
            select(RegisteredModel.name, ModelVersion.version, Artifact)
            .join(Alias, Alias.model_id == RegisteredModel.id)
            .join(ModelVersion, ModelVersion.id == Alias.model_version_id)
            .join(Artifact, Artifact.id == ModelVersion.artifact_id, isouter=True)
            .where(Alias.name == "champion")
        ).all()
    if not rows:
        return Check("champion", WARN, "no champion model")
    problems = []
    for name, version, artifact in rows:
        if artifact is None:
            problems.append(f"{name}:{version} has no model file")
            continue
        try:
            verify(resolve(workspace.root, artifact.path), artifact.sha256)
        except ArtifactError as exc:
            problems.append(f"{name}:{version}: {exc}")
    if problems:
        return Check("champion", FAIL, "; ".join(problems))
    labels = ", ".join(f"{name}:{version}" for name, version, _ in rows)
    return Check("champion", OK, f"{labels} file hash verified")


def check_scheduler(workspace: Workspace, store: Store) -> Check:
    held = leases.holder(store, workspace.settings.jobs.lease_seconds)
    if held is None:
        return Check(
            "scheduler", WARN, "no scheduler is running (start 'mldeck daemon' or the console)"
        )
    age = (utcnow() - held.heartbeat_at).total_seconds()
    if not held.alive:
        return Check("scheduler", FAIL, f"no heartbeat for {age:.0f}s from {held.describe()}", age)
    return Check("scheduler", OK, f"{held.describe()}, heartbeat {age:.0f}s ago", age)


def check_failures(workspace: Workspace, store: Store) -> Check:
    limit = workspace.settings.jobs.max_consecutive_failures
    failing = []
    with store.read() as session:
        names = session.execute(select(Schedule.name)).scalars().all()
        for name in names:
            rows = session.execute(
                select(Run.status, Run.params)
                .where(Run.name == name, Run.status.in_(("succeeded", "failed", "orphaned")))
                .order_by(Run.id.desc())
                .limit(limit * 20)
            ).all()
            # A job's outcome is its last attempt's: the attempts a retry made before it are
            # one failure, not several (one failed job with two retries read as "the last 3
            # runs failed" and opened a critical alert).
            outcomes = [status for status, params in rows
                        if status == "succeeded" or _last_attempt(params)][:limit]  # fmt: skip
            if len(outcomes) == limit and all(s != "succeeded" for s in outcomes):
                failing.append(name)
    if failing:
        return Check("failures", FAIL,
                     f"{', '.join(failing)}: the last {limit} runs failed", len(failing))  # fmt: skip
    return Check("failures", OK, "no job failing repeatedly", 0)


def _last_attempt(params: dict | None) -> bool:
    """Whether a job's run was its last attempt (a run with no attempts recorded counts)."""
    attempt, attempts = (params or {}).get("attempt"), (params or {}).get("attempts")
    return not isinstance(attempt, int) or not isinstance(attempts, int) or attempt >= attempts


def check_orphans(workspace: Workspace, store: Store) -> Check:
    marked = mark_orphans(store, workspace.settings.jobs.stale_run_seconds)
    if marked:
        ids = ", ".join(str(o.run_id) for o in marked[:5])
        return Check(
            "orphans",
            WARN,
            f"marked {fmt.plural(len(marked), 'run')} orphaned ({ids})",
            len(marked),
        )
    return Check("orphans", OK, "no orphaned runs", 0)


def run_checks(workspace: Workspace, store: Store, *, run_id: int | None = None) -> HealthReport:
    """Run every check, store the results and open or resolve their alerts."""
    report = HealthReport([
        check_store(store), check_disk(workspace), check_freshness(workspace, store),
        check_champions(workspace, store), check_scheduler(workspace, store),
        check_failures(workspace, store), check_orphans(workspace, store),
    ])  # fmt: skip
    now = utcnow()
    with store.write() as session:
        for check in report.checks:
            session.add(HealthCheck(run_id=run_id, name=check.name, status=check.status,
                                    message=check.message, value=check.value, created_at=now))  # fmt: skip
            opened = _alert(session, check, run_id)
            if opened is not None:
                report.opened.append(opened)
    return report


def recheck(workspace: Workspace, store: Store, names: tuple[str, ...]) -> HealthReport:
    """Run the checks named (``scheduler``, ``failures``) now and open or resolve their alerts:
    a health alert was looked at again only by the next health check ("no scheduler is
    running" stayed open beside a running daemon, "the last 3 runs failed" after a success)."""
    checks = {"scheduler": check_scheduler, "failures": check_failures}
    report = HealthReport([checks[name](workspace, store) for name in names])
    with store.write() as session:
        for check in report.checks:
            opened = _alert(session, check, None)
            if opened is not None:
                report.opened.append(opened)
    return report


def _alert(session: Any, check: Check, run_id: int | None) -> int | None:
    """Open, repeat or resolve *check*'s alert; its id when this opened it."""
    key = f"health:{check.name}"
    now = utcnow()
    current = session.execute(
        select(Alert).where(Alert.dedup_key == key, Alert.status.in_(OPEN_STATES)).limit(1)
    ).scalar()
    if check.status == OK:
        if current is not None:
            current.status, current.resolved_at, current.updated_at = "resolved", now, now
            session.add(current)
            audit.append(session, "alert.resolve", entity_type="alert", entity_id=current.id,
                         actor="mldeck", details={"reason": check.message, "rule": key})  # fmt: skip
        return None
    severity = "critical" if check.status == FAIL else "warning"
    title = f"health {check.name}: {check.message}"[:300]
    if current is None:
        current = Alert(rule=key, severity=severity, dedup_key=key, title=title,
                        message=check.message, details={"run_id": run_id}, created_at=now,
                        updated_at=now)  # fmt: skip
        session.add(current)
        session.flush()
        audit.append(session, "alert.open", entity_type="alert", entity_id=current.id,
                     actor="mldeck", details={"rule": key, "title": title})  # fmt: skip
        return current.id
    current.occurrences += 1
    current.severity, current.title, current.message = severity, title, check.message
    current.updated_at = now
    session.add(current)
    return None


@dataclass(frozen=True)
class LatestCheck:
    name: str
    status: str
    message: str
    created_at: Any


def latest_checks(store: Store) -> list[LatestCheck]:
    """The newest result of each check (for the Overview and 'mldeck jobs health')."""
    with store.read() as session:
        newest = (
            select(HealthCheck.name, func.max(HealthCheck.id).label("id"))
            .group_by(HealthCheck.name)
            .subquery()
        )
        rows = (
            session.execute(
                select(HealthCheck)
                .join(newest, newest.c.id == HealthCheck.id)
                .order_by(HealthCheck.id)
            )
            .scalars()
            .all()
        )
    return [LatestCheck(r.name, r.status, r.message, r.created_at) for r in rows]
