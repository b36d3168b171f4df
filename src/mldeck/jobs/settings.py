"""``[jobs]`` of ``mldeck.toml``: the scheduler's limits and policies, and the schedules.

::

    [jobs]
    max_concurrent = 2
    retrain_cooldown_minutes = 60

    [jobs.schedules.nightly-train]
    kind = "train"
    cron = "0 2 * * *"        # UTC; or every = "15m"
    timeout_seconds = 3600
    retries = 2

The schedules seed mldeck's ``schedule`` table, which is the source of truth afterwards: the CLI
and the console edit it while the scheduler runs. A config entry that changes is applied to the
table again; an entry that disappears removes its schedule.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mldeck.sections import MAX_HOURS, MAX_ID, MAX_SECONDS
from mldeck.sections import Section as _Section

JOB_KINDS = ("train", "evaluate", "retrain", "drift", "score", "health")
JobKind = Literal["train", "evaluate", "retrain", "drift", "score", "health"]
_EVERY = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def check_name(name: str) -> str:
    """A schedule's name, by one rule wherever it is made (``[jobs.schedules.NAME]``, ``mldeck
    jobs add``): it is a key in mldeck.toml and a word on the command line."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(
            f"schedule name {name!r}: letters, digits, '.', '_' and '-' only, starting with a "
            "letter or digit (at most 100)"
        )
    return name


def parse_every(text: str) -> int:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` → seconds (ValueError on anything else)."""
    match = _EVERY.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not an interval: write a number and a unit, e.g. 90s, 15m, 2h, 1d"
        )
    if int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is no interval: a job runs every 1s or more")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_EVERY_SECONDS:
        raise ValueError(f"{text!r} is too long an interval: at most 365d")
    return seconds


MAX_EVERY_SECONDS = 365 * 86400  # longer would overflow the scheduler's timers
MAX_TIMEOUT_SECONDS = 7 * 86400  # a job's attempt; the same limit in mldeck.toml and the CLI


# Weekdays as crontab numbers them (0 and 7 are Sunday), by the names APScheduler takes.
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekday(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token in _WEEKDAYS:
        return _WEEKDAYS.index(token)
    raise ValueError(f"{token!r} is not a weekday (0-7, 0 and 7 Sunday, or sun-sat)")


def _weekdays(field: str) -> str:
    """A crontab weekday field (``1-5``, ``0,6``, ``*/2``, ``mon-fri``) as the day names
    APScheduler reads: its own crontab parser counts 0 as Monday, so ``1-5`` ran Tuesday to
    Saturday and ``7`` was refused."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        body, slash, step_text = item.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) == 0):
            raise ValueError(f"{item!r}: a step is a whole number of days")
        step = int(step_text) if slash else 1
        if body == "*":
            low, high = 0, 6
        elif "-" in body:
            first, last = body.split("-", 1)
            low, high = _weekday(first), _weekday(last)
        else:
            low = _weekday(body)
            high = 6 if slash else low
        if low > high:
            raise ValueError(f"the weekdays {body!r} run backwards")
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _months(field: str) -> str:
    """A crontab month field with its names as numbers (``jan-dec/3`` as ``1-12/3``):
    APScheduler drops a step written after month names (``jan-dec/3`` fired every month)."""

    def number(match: re.Match[str]) -> str:
        name = match.group(0).lower()
        if name not in _MONTHS:
            raise ValueError(f"{match.group(0)!r} is not a month (1-12 or jan-dec)")
        return str(_MONTHS.index(name) + 1)

    return re.sub(r"[A-Za-z]+", number, field)


def cron_trigger(text: str) -> Any:
    """The APScheduler trigger (UTC) of a five-field crontab expression read as crontab reads
    it: weekday 0 and 7 are Sunday, and when both the day of the month and the weekday are
    restricted, a day matching either fires (APScheduler alone requires both)."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields: {len(fields)}, expected 5")
    minute, hour, day, month, weekday = fields
    month, weekday = _months(month), _weekdays(weekday)
    if day != "*" and weekday != "*":
        return OrTrigger([
            CronTrigger(minute=minute, hour=hour, day=day, month=month, timezone="UTC"),
            CronTrigger(minute=minute, hour=hour, month=month, day_of_week=weekday,
                        timezone="UTC"),
        ])  # fmt: skip
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday,
                       timezone="UTC")  # fmt: skip


def check_cron(text: str) -> str:
    """A five-field crontab expression (UTC), checked as :func:`cron_trigger` reads it."""
    try:
        trigger = cron_trigger(text)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not a crontab expression (minute hour day month weekday): {exc}"
        ) from None
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        # A day no month has (31 February): accepted, it would sit in the list as if paused.
        raise ValueError(f"{text!r} never fires: no date matches its day and month")
    return text.strip()


# The parameters each kind of job reads (jobs/steps.py); a schedule may set only these.
JOB_PARAMS: dict[str, tuple[str, ...]] = {
    "health": (),
    "train": ("trigger",),
    "retrain": ("reasons", "trigger"),
    "score": ("dataset_version_id", "trigger"),
    "drift": ("dataset_version_id", "trigger"),
    "evaluate": ("dataset_version_id", "trigger"),
}


# The triggers a schedule's job may say it was started by: the scheduler's own.
SCHEDULE_TRIGGERS = ("schedule", "new_data", "drift", "performance")


def check_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """*params* if a *kind* job can use them; ValueError naming the first that it cannot."""
    allowed = JOB_PARAMS.get(kind, ())
    for key, value in params.items():
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise ValueError(f"a {kind} job takes {takes}, not {key!r}")
        if key == "dataset_version_id" and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID
        ):
            raise ValueError(
                f"dataset_version_id is a dataset version's id (a number), not {value!r}"
            )
        if key == "trigger" and value not in SCHEDULE_TRIGGERS:
            # A person's triggers (manual, script) would put the scheduler's work under the
            # user's name in the audit trail; any other word is no trigger at all.
            raise ValueError(f"trigger is how the scheduler starts the job (one of: "
                             f"{', '.join(SCHEDULE_TRIGGERS)}), not {value!r}")  # fmt: skip
        if key == "reasons" and not (
            isinstance(value, list) and all(isinstance(r, str) for r in value)
        ):
            raise ValueError(f"reasons is a list of sentences, not {value!r}")
    return params


class ScheduleSettings(_Section):
    kind: JobKind
    cron: str = ""
    every: str = ""
    params: dict[str, Any] = {}
    enabled: bool = True
    timeout_seconds: int = Field(3600, ge=1, le=MAX_TIMEOUT_SECONDS)
    retries: int = Field(0, ge=0, le=10)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value) if value.strip() else ""

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        if value.strip():
            parse_every(value)
        return value.strip()

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleSettings:
        if bool(self.cron) == bool(self.every):
            raise ValueError('give a schedule either cron = "..." or every = "..." (one of them)')
        check_params(self.kind, self.params)
        return self

    @property
    def interval_seconds(self) -> int | None:
        return parse_every(self.every) if self.every else None

    def digest(self) -> str:
        """A hash of the entry, to tell a changed config entry from an unchanged one."""
        text = json.dumps(self.model_dump(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


class JobSettings(_Section):
    # How many jobs run at once; a scheduled fire beyond it is skipped and recorded.
    max_concurrent: int = Field(2, ge=1, le=32)
    # A scheduler that has not renewed its lease for this long is replaced by another process.
    lease_seconds: float = Field(15.0, ge=2, le=600)
    # A running run whose heartbeat is older than this is marked orphaned.
    stale_run_seconds: float = Field(300.0, ge=5, le=MAX_SECONDS)
    # Retries wait base * 2^(attempt-1) seconds (at most max), plus up to 50% random jitter.
    retry_base_seconds: float = Field(10.0, ge=0, le=MAX_SECONDS)
    retry_max_seconds: float = Field(600.0, ge=0, le=MAX_SECONDS)
    # Fire times missed while nothing ran are coalesced into one run at start, if the newest is
    # at most this old; older ones are recorded as missed.
    misfire_grace_seconds: int = Field(3600, ge=1, le=MAX_SECONDS)
    # Run a job again at start when its last run was orphaned (a crash or kill of the scheduler).
    rerun_orphaned: bool = True
    # New data → validate → score → drift → (retrain): the automatic pipeline.
    pipeline: bool = True
    # After an automatic retrain, no other one starts for this long (one incident, one retrain).
    retrain_cooldown_minutes: float = Field(60.0, ge=0, le=MAX_SECONDS / 60)
    # A version that waits for approval after a retrain is promoted once a person approves it.
    promote_on_approval: bool = True
    # Health: free disk below this fails jobs before they start and raises an alert.
    min_free_disk_mb: float = Field(200.0, ge=0)
    # Health: no new dataset version for this long is stale data (0 turns the check off).
    data_stale_hours: float = Field(48.0, ge=0, le=MAX_HOURS)
    # Health: this many failed runs in a row of one schedule raise an alert.
    max_consecutive_failures: int = Field(3, ge=1, le=1000)
    schedules: dict[str, ScheduleSettings] = {}

    @field_validator("schedules")
    @classmethod
    def _names(cls, value: dict[str, ScheduleSettings]) -> dict[str, ScheduleSettings]:
        for name in value:
            check_name(name)
        return value


DEFAULT_CONFIG = """
# The scheduler (in the console, or headless with 'mldeck daemon') and its schedules (UTC):
# [jobs]
# max_concurrent = 2
# retrain_cooldown_minutes = 60
# min_free_disk_mb = 200
#
# [jobs.schedules.nightly-train]
# kind = "train"             # train, evaluate, retrain, drift, score, health
# cron = "0 2 * * *"         # or: every = "15m"
# timeout_seconds = 3600
# retries = 2
"""
