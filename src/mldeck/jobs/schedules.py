"""The ``schedule`` table: seeded from ``[jobs.schedules]``, edited by the CLI and the console.

The acting scheduler rebuilds its in-memory jobs from this table and follows its changes
(:mod:`mldeck.jobs.scheduler`); every edit here is one write transaction with an audit event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from mldeck import audit
from mldeck.errors import MldeckError, NotFound
from mldeck.jobs.settings import (
    JOB_KINDS,
    MAX_TIMEOUT_SECONDS,
    JobSettings,
    check_cron,
    check_name,
    check_params,
    cron_trigger,
    parse_every,
)
from mldeck.store.engine import Store
from mldeck.store.models import Schedule, utcnow


def make_trigger(schedule: Schedule) -> Any:
    """The APScheduler trigger of a schedule (UTC)."""
    from apscheduler.triggers.interval import IntervalTrigger

    if schedule.cron:
        return cron_trigger(schedule.cron)
    # Anchored at the schedule's creation, or now if that is ahead (made while the clock ran
    # ahead, it would not fire until then once the clock was set right).
    start = min(schedule.created_at, utcnow())
    return IntervalTrigger(seconds=schedule.interval_seconds or 60, timezone=UTC, start_date=start)


def next_fire_time(schedule: Schedule, now: datetime | None = None) -> datetime | None:
    """When the schedule fires next after *now* (None when paused or disabled)."""
    if schedule.paused or not schedule.enabled:
        return None
    now = now or utcnow()
    return make_trigger(schedule).get_next_fire_time(None, now)


def timing(schedule: Schedule) -> str:
    """``cron 0 2 * * *`` or ``every 15m``, as lists show it."""
    if schedule.cron:
        return f"cron {schedule.cron}"
    seconds = schedule.interval_seconds or 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"every {seconds // size}{unit}"
    return f"every {seconds}s"


def state(schedule: Schedule) -> str:
    if not schedule.enabled:
        return "disabled"
    return "paused" if schedule.paused else "active"


@dataclass(frozen=True)
class SyncChange:
    name: str
    change: str  # added | updated | removed

    def describe(self) -> str:
        if self.change == "kept":
            return (f"schedule {self.name} in mldeck.toml is not applied: a schedule of that name"
                    " was added with 'mldeck jobs add' and stays as it is (rename one of them)")  # fmt: skip
        return f"schedule {self.name} {self.change} from mldeck.toml"


def sync_from_settings(store: Store, settings: JobSettings, *, actor: str = "") -> list[SyncChange]:
    """Bring the table in line with ``[jobs.schedules]``: new entries are added, entries whose
    config changed are applied again (the config wins over table edits only when it changed),
    entries gone from the config are removed. Schedules made with the CLI are left alone."""
    with store.read() as session:
        known = {
            s.name: (s.config_hash, s.source) for s in session.execute(select(Schedule)).scalars()
        }
    # A name taken by a schedule made with the CLI stays the CLI's: the config entry is not applied.
    kept = [SyncChange(n, "kept") for n in settings.schedules if known.get(n, ("", ""))[1] == "cli"]
    wanted = {name: entry.digest() for name, entry in settings.schedules.items()
              if known.get(name, ("", ""))[1] != "cli"}  # fmt: skip
    stale = [n for n, (_, source) in known.items() if source == "config" and n not in wanted]
    if not stale and all(known.get(n, ("", ""))[0] == d for n, d in wanted.items()):
        return kept  # nothing to write, no change for the console to reload
    changes: list[SyncChange] = []
    with store.write() as session:
        rows = {s.name: s for s in session.execute(select(Schedule)).scalars()}
        now = utcnow()
        for name, entry in settings.schedules.items():
            digest = entry.digest()
            row = rows.get(name)
            if row is not None and (row.config_hash == digest or row.source == "cli"):
                continue
            kept_paused = row.paused if row is not None else False
            row = row or Schedule(name=name, kind=entry.kind, created_at=now)
            row.kind, row.cron, row.interval_seconds = (
                entry.kind,
                entry.cron,
                entry.interval_seconds,
            )
            row.params, row.enabled = dict(entry.params), entry.enabled
            row.timeout_seconds, row.retries = entry.timeout_seconds, entry.retries
            row.source, row.config_hash, row.paused, row.updated_at = (
                "config", digest, kept_paused, now,
            )  # fmt: skip
            change = SyncChange(name, "added" if row.id is None else "updated")
            session.add(row)
            changes.append(change)
        for name, row in rows.items():
            if row.source == "config" and name not in settings.schedules:
                session.delete(row)
                changes.append(SyncChange(name, "removed"))
        for change in changes:
            audit.append(session, f"schedule.{change.change}", entity_type="schedule",
                         entity_id=change.name, details={"source": "mldeck.toml"},
                         actor=actor or None)  # fmt: skip
    return kept + changes


def list_schedules(store: Store) -> list[Schedule]:
    with store.read() as session:
        return list(session.execute(select(Schedule).order_by(Schedule.name)).scalars())


def get_schedule(store: Store, name: str) -> Schedule:
    with store.read() as session:
        row = session.execute(select(Schedule).where(Schedule.name == name)).scalar_one_or_none()
    if row is None:
        known = ", ".join(s.name for s in list_schedules(store)) or "none"
        raise NotFound(f"no schedule named {name!r} (schedules: {known})")
    return row


def _change(
    store: Store,
    name: str,
    action: str,
    actor: str | None,
    refuse: Callable[[Schedule], str | None] | None = None,
    **values: Any,
) -> Schedule:
    """Change a schedule and record it; *refuse* may object to the row as it is inside the write
    turn (so two processes making the same change cannot both succeed)."""
    with store.write() as session:
        row = session.execute(select(Schedule).where(Schedule.name == name)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no schedule named {name!r}")
        objection = refuse(row) if refuse is not None else None
        if objection:
            raise MldeckError(objection)
        before = {key: getattr(row, key) for key in values}
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        session.add(row)
        audit.append(session, action, entity_type="schedule", entity_id=name,
                     details={"before": before, "after": values}, actor=actor)  # fmt: skip
        return row


def set_paused(store: Store, name: str, paused: bool, *, actor: str | None = None) -> Schedule:
    """Pause or resume a schedule (the acting scheduler follows within a second or two)."""
    get_schedule(store, name)  # names the schedules when there is no such one

    def already(row: Schedule) -> str | None:
        if row.paused != paused:
            return None
        if paused:
            return f"schedule {name} is already paused"
        if not row.enabled:  # not paused, but it does not run: say what stops it
            return (f"schedule {name} is not paused; it is disabled ('mldeck jobs edit {name} "
                    "--enable' lets it run)")  # fmt: skip
        return f"schedule {name} is already active"

    return _change(store, name, "schedule.pause" if paused else "schedule.resume", actor,
                   already, paused=paused)  # fmt: skip


def request_run(store: Store, name: str, *, actor: str | None = None) -> Schedule:
    """Ask the acting scheduler to run the job now (it clears the request when it starts it)."""
    get_schedule(store, name)
    return _change(store, name, "schedule.run_now", actor, run_requested_at=utcnow())


def edit(
    store: Store,
    name: str,
    *,
    cron: str | None = None,
    every: str | None = None,
    timeout_seconds: int | None = None,
    retries: int | None = None,
    enabled: bool | None = None,
    params: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Schedule:
    """Change a schedule's timing, limits or parameters in the table (the source of truth)."""
    values: dict[str, Any] = {}
    if cron is not None and every is not None:
        raise MldeckError("give either --cron or --every, not both")
    try:
        if cron is not None:
            values.update(cron=check_cron(cron), interval_seconds=None)
        if every is not None:
            values.update(cron="", interval_seconds=parse_every(every))
    except ValueError as exc:
        raise MldeckError(str(exc)) from None
    _check_limits(timeout_seconds, retries)
    if timeout_seconds is not None:
        values["timeout_seconds"] = timeout_seconds
    if retries is not None:
        values["retries"] = retries
    if enabled is not None:
        values["enabled"] = enabled
    if params is not None:
        try:
            values["params"] = check_params(get_schedule(store, name).kind, params)
        except ValueError as exc:
            raise MldeckError(f"--params: {exc}") from None
    if not values:
        raise MldeckError(
            "nothing to change: give --cron, --every, --timeout, --retries, --params or "
            "--enable/--disable"
        )
    get_schedule(store, name)
    return _change(store, name, "schedule.edit", actor, **values)


def _check_limits(timeout_seconds: int | None, retries: int | None) -> None:
    """The limits a schedule's attempts may have (the same whether added or edited)."""
    if timeout_seconds is not None and not 1 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise MldeckError(
            f"the timeout must be between 1 second and 7 days ({MAX_TIMEOUT_SECONDS} s), "
            f"not {timeout_seconds}"
        )
    if retries is not None and not 0 <= retries <= 10:
        raise MldeckError("retries must be between 0 and 10")


def add(
    store: Store,
    name: str,
    kind: str,
    *,
    cron: str = "",
    every: str = "",
    timeout_seconds: int = 3600,
    retries: int = 0,
    params: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Schedule:
    """A schedule made from the CLI (``source = cli``: config syncs never remove it)."""
    try:
        check_name(name)  # as mldeck.toml's: a name `jobs add` takes could not go in the file
    except ValueError as exc:
        raise MldeckError(str(exc)) from None
    if kind not in JOB_KINDS:
        raise MldeckError(f"unknown job kind {kind!r} (one of: {', '.join(JOB_KINDS)})")
    _check_limits(timeout_seconds, retries)
    if bool(cron) == bool(every):
        raise MldeckError("give either --cron or --every")
    try:
        interval = parse_every(every) if every else None
        cron = check_cron(cron) if cron else ""
    except ValueError as exc:
        raise MldeckError(str(exc)) from None
    try:
        params = check_params(kind, params or {})
    except ValueError as exc:
        raise MldeckError(f"--params: {exc}") from None
    with store.write() as session:
        exists = session.execute(select(Schedule.id).where(Schedule.name == name)).scalar()
        if exists is not None:
            raise MldeckError(
                f"a schedule named {name!r} exists; change it with 'mldeck jobs edit'"
            )
        row = Schedule(name=name, kind=kind, cron=cron, interval_seconds=interval,
                       params=params, timeout_seconds=timeout_seconds, retries=retries,
                       source="cli")  # fmt: skip
        session.add(row)
        audit.append(session, "schedule.added", entity_type="schedule", entity_id=name,
                     details={"source": "cli", "kind": kind, "cron": cron,
                              "interval_seconds": interval}, actor=actor)  # fmt: skip
        return row


def remove(store: Store, name: str, *, actor: str | None = None) -> None:
    """Delete a schedule made with ``jobs add`` (its past runs stay; a running job finishes).
    A schedule from ``mldeck.toml`` is removed by deleting its entry there."""
    with store.write() as session:
        row = session.execute(select(Schedule).where(Schedule.name == name)).scalar_one_or_none()
        if row is None:
            known = ", ".join(session.execute(select(Schedule.name).order_by(Schedule.name))
                              .scalars()) or "none"  # fmt: skip
            raise NotFound(f"no schedule named {name!r} (schedules: {known})")
        if row.source != "cli":
            raise MldeckError(
                f"schedule {name} comes from mldeck.toml: delete its [jobs.schedules.{name}] "
                "entry there (or pause it with 'mldeck jobs pause')"
            )
        session.delete(row)
        audit.append(session, "schedule.removed", entity_type="schedule", entity_id=name,
                     details={"source": "cli", "kind": row.kind}, actor=actor)  # fmt: skip
