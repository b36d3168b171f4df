"""The metadata store's tables.

One table per entity of the vocabulary (see docs/architecture.md). Conventions:

* times are timezone-aware UTC (``utcnow()``), ids are integers, enumerations are stored as their string
  values (the ``StrEnum`` classes below list them) so adding a value never needs a migration;
* free-form structures (params, tags, schemas, profiles, reports) are JSON columns;
* every index exists because a screen or a command filters or sorts on it.

A change here needs a migration in ``store/migrations/versions`` (``tests/test_store.py`` fails
when the two disagree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapper
from sqlmodel import Field, SQLModel

from mldeck.formatting import whole_text


def utcnow() -> datetime:
    """Now, as the timezone-aware UTC datetime every table stores."""
    return datetime.now(UTC)


# A 64-bit integer column: BIGINT on a server; on SQLite, INTEGER, which is 64-bit already (its
# tables are not rebuilt for it: a rebuild of a table others refer to fails there).
BIG = BigInteger().with_variant(Integer(), "sqlite")


def _json(default: Any = None) -> Any:
    factory = dict if default is None else default
    return Field(default_factory=factory, sa_column=Column(JSON, nullable=False))


class RunKind(StrEnum):
    INGEST = "ingest"
    VALIDATE = "validate"
    TRAIN = "train"
    EVALUATE = "evaluate"
    SCORE = "score"
    DRIFT = "drift"
    RETRAIN = "retrain"
    HEALTH = "health"
    CUSTOM = "custom"


class RunTrigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    NEW_DATA = "new_data"
    DRIFT = "drift"
    PERFORMANCE = "performance"
    SCRIPT = "script"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ORPHANED = "orphaned"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


class StoreState(SQLModel, table=True):
    """A single row whose ``change_seq`` grows with every committed write: the console's cheap poll."""

    __tablename__ = "store_state"
    id: int = Field(default=1, primary_key=True)
    change_seq: int = 0
    changed_at: datetime = Field(default_factory=utcnow)


class Dataset(SQLModel, table=True):
    __tablename__ = "dataset"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    # The version whose profile is the baseline (bin edges, categories, drift reference).
    # Not a declared foreign key: dataset and dataset_version would reference each other.
    reference_version_id: int | None = None


# The statuses of a dataset version that validation let through: what is trained on, scored and
# monitored, and what counts as new data (a rejected batch is none).
USABLE_STATUSES = ("accepted", "warned")


class DatasetVersion(SQLModel, table=True):
    """An immutable batch of data, identified by the sha256 of its bytes."""

    __tablename__ = "dataset_version"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version"),
        Index("ix_dataset_version_dataset_arrived", "dataset_id", "arrived_at"),
        Index("ix_dataset_version_status", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id")
    version: int
    sha256: str = Field(unique=True, max_length=64)
    source_path: str = ""
    stored_path: str = ""
    file_format: str = Field(default="", max_length=20)
    # 64-bit: PostgreSQL's INTEGER refused a file of 2 GiB or more (and a row count past 2**31).
    size_bytes: int = Field(default=0, sa_type=BIG)
    n_rows: int | None = Field(default=None, sa_type=BIG)
    n_cols: int | None = None
    # accepted | warned | rejected | pending
    status: str = Field(default="pending", max_length=20)
    schema_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("schema", JSON, nullable=False)
    )
    profile: dict[str, Any] = _json()
    report: dict[str, Any] = _json()
    arrived_at: datetime = Field(default_factory=utcnow)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    # Where offending rows were written (relative to the workspace), and, for a rejected batch,
    # its copy in quarantine; empty when there is none.
    quarantine_path: str = Field(default="", sa_column_kwargs={"server_default": ""})


class Run(SQLModel, table=True):
    """One execution of a step: what ran, why, on what, how it went."""

    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_created", "created_at"),
        Index("ix_run_status_created", "status", "created_at"),
        Index("ix_run_kind_created", "kind", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    kind: str = Field(default=RunKind.CUSTOM, max_length=20)
    trigger: str = Field(default=RunTrigger.MANUAL, max_length=20)
    status: str = Field(default=RunStatus.RUNNING, max_length=20)
    progress: float | None = None
    progress_message: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    params: dict[str, Any] = _json()
    tags: dict[str, Any] = _json()
    code_version: dict[str, Any] = _json()
    environment: dict[str, Any] = _json()
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    user: str = Field(default="", max_length=100)
    host: str = Field(default="", max_length=200)
    pid: int | None = None
    pid_started_at: float | None = None
    parent_run_id: int | None = Field(default=None, foreign_key="run.id")


class RunLog(SQLModel, table=True):
    __tablename__ = "run_log"
    __table_args__ = (Index("ix_run_log_run", "run_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    ts: datetime = Field(default_factory=utcnow)
    level: str = Field(default="info", max_length=10)
    message: str = Field(sa_column=Column(Text, nullable=False))


class Metric(SQLModel, table=True):
    __tablename__ = "metric"
    __table_args__ = (Index("ix_metric_run_key_step", "run_id", "key", "step"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    key: str = Field(max_length=200)
    value: float | None = None  # NULL stands for NaN
    step: int = 0
    ts: datetime = Field(default_factory=utcnow)


class RunInput(SQLModel, table=True):
    """Lineage: the dataset versions a run read."""

    __tablename__ = "run_input"
    run_id: int = Field(foreign_key="run.id", primary_key=True)
    dataset_version_id: int = Field(foreign_key="dataset_version.id", primary_key=True, index=True)
    role: str = Field(default="input", max_length=30)


class Artifact(SQLModel, table=True):
    """A content-addressed file under ``.mldeck/artifacts`` (path relative to the workspace)."""

    __tablename__ = "artifact"
    __table_args__ = (Index("ix_artifact_run", "run_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    name: str = Field(max_length=300)
    kind: str = Field(default="file", max_length=30)
    path: str
    sha256: str = Field(max_length=64, index=True)
    size_bytes: int = Field(default=0, sa_type=BIG)  # 64-bit, as a dataset version's
    created_at: datetime = Field(default_factory=utcnow)


class RegisteredModel(SQLModel, table=True):
    __tablename__ = "registered_model"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="registered_model.id")
    version: int
    run_id: int | None = Field(default=None, foreign_key="run.id")
    artifact_id: int | None = Field(default=None, foreign_key="artifact.id")
    # candidate | approved | rejected | archived
    status: str = Field(default="candidate", max_length=20)
    metrics: dict[str, Any] = _json()
    schema_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("schema", JSON, nullable=False)
    )
    code_version: dict[str, Any] = _json()
    created_at: datetime = Field(default_factory=utcnow)


class Alias(SQLModel, table=True):
    """A movable name (``champion``, ``challenger``) on a model version."""

    __tablename__ = "alias"
    __table_args__ = (UniqueConstraint("model_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="registered_model.id")
    name: str = Field(max_length=50)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class GateResult(SQLModel, table=True):
    __tablename__ = "gate_result"
    __table_args__ = (Index("ix_gate_result_version", "model_version_id"),)
    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_version.id")
    run_id: int | None = Field(default=None, foreign_key="run.id")
    gate: str = Field(max_length=200)
    metric: str = Field(default="", max_length=200)
    threshold: float | None = None
    value: float | None = None
    passed: bool
    detail: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Approval(SQLModel, table=True):
    __tablename__ = "approval"
    __table_args__ = (Index("ix_approval_version", "model_version_id"),)
    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_version.id")
    # approved | rejected
    decision: str = Field(max_length=20)
    user: str = Field(max_length=100)
    reason: str = ""
    automatic: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class DriftReport(SQLModel, table=True):
    __tablename__ = "drift_report"
    __table_args__ = (Index("ix_drift_report_created", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    dataset_version_id: int = Field(foreign_key="dataset_version.id", index=True)
    reference_version_id: int | None = Field(default=None, foreign_key="dataset_version.id")
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    n_features: int = 0
    n_drifted: int = 0
    drift_share: float = 0.0
    dataset_drift: bool = False
    summary: dict[str, Any] = _json()
    created_at: datetime = Field(default_factory=utcnow)


class FeatureDrift(SQLModel, table=True):
    __tablename__ = "feature_drift"
    __table_args__ = (Index("ix_feature_drift_feature", "feature", "report_id"),)
    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="drift_report.id", index=True)
    feature: str = Field(max_length=200)
    method: str = Field(max_length=50)
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    drifted: bool = False


class Alert(SQLModel, table=True):
    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_status_created", "status", "created_at"),
        Index("ix_alert_dedup", "dedup_key", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=200)
    # info | warning | critical
    severity: str = Field(default="warning", max_length=20)
    # open | acknowledged | resolved
    status: str = Field(default="open", max_length=20)
    dedup_key: str = Field(max_length=300)
    title: str = Field(max_length=300)
    message: str = ""
    details: dict[str, Any] = _json()
    occurrences: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained record of every change of state that matters."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id"),)
    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=100)
    entity_type: str = Field(default="", max_length=50)
    entity_id: str = Field(default="", max_length=100)
    details: dict[str, Any] = _json()
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class HealthCheck(SQLModel, table=True):
    __tablename__ = "health_check"
    __table_args__ = (Index("ix_health_check_name_created", "name", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    name: str = Field(max_length=100)
    # ok | warn | fail
    status: str = Field(max_length=10)
    message: str = ""
    value: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Schedule(SQLModel, table=True):
    """A scheduled job: the source of truth the acting scheduler rebuilds its jobs from.

    Seeded from ``[jobs.schedules.NAME]`` of ``mldeck.toml`` (``config_hash`` tells a changed
    config entry from a table edit) and editable by the CLI and the console while a scheduler
    runs. ``run_requested_at`` asks the acting scheduler to run the job now.
    """

    __tablename__ = "schedule"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    # train | evaluate | retrain | drift | score | health
    kind: str = Field(max_length=20)
    cron: str = Field(default="", max_length=100)
    interval_seconds: int | None = None
    params: dict[str, Any] = _json()
    enabled: bool = True
    paused: bool = False
    timeout_seconds: int = 3600
    retries: int = 0
    # config | cli
    source: str = Field(default="config", max_length=20)
    config_hash: str = Field(default="", max_length=64)
    run_requested_at: datetime | None = None
    last_fire_at: datetime | None = None
    last_run_id: int | None = None
    last_status: str = Field(default="", max_length=20)
    last_run_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Lease(SQLModel, table=True):
    """Who acts (e.g. runs the scheduler) for a workspace: the holder renews ``heartbeat_at``; a
    holder silent for longer than the lease time, or whose process is gone, can be replaced."""

    __tablename__ = "lease"
    name: str = Field(primary_key=True, max_length=50)
    holder: str = Field(max_length=64)
    # daemon | console | cli
    role: str = Field(default="", max_length=20)
    host: str = Field(default="", max_length=200)
    pid: int | None = None
    pid_started_at: float | None = None
    acquired_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)


# -- text that fits every database ---------------------------------------------------------------
# SQLite stores a string of any length in a VARCHAR(200) and text holding NUL; PostgreSQL refuses
# both, and a long file name would then fail an ingest, a run or an alert. Names and titles are
# for people: one too long is cut (its end marked with "…"), a NUL or a lone surrogate becomes
# U+FFFD, on every database alike. Core statements (``insert(Metric)``) bypass this: their
# callers check instead.


def _fit_text(_mapper: Any, _connection: Any, target: Any) -> None:
    for column in _mapper.columns:
        # sqlmodel's AutoString decorates a String: look through it.
        if not isinstance(getattr(column.type, "impl", column.type), String):
            continue
        key = _mapper.get_property_by_column(column).key
        value = getattr(target, key, None)
        if not isinstance(value, str):
            continue
        fitted = _fit(value, getattr(column.type, "length", None))
        if fitted != value:
            setattr(target, key, fitted)


def fit_text(target: Any) -> Any:
    """*target* (a row of this module) with its text fitted now, as it will be stored: for what
    is computed from the stored values (an audit event's hash)."""
    from sqlalchemy import inspect

    _fit_text(inspect(type(target)), None, target)
    return target


def fitted_value(model: Any, key: str, value: str) -> str:
    """*value* as column *key* of *model* stores it (a name looked up as it was stored)."""
    from sqlalchemy import inspect

    return _fit(value, getattr(inspect(model).columns[key].type, "length", None))


def sound_text(value: str) -> str:
    """*value* as text every database and every UTF-8 stream takes: NUL and lone surrogates (an
    undecodable byte of a file name or an argument, as Python decodes it) become U+FFFD. A
    surrogate failed the write (the run's whole batch of metrics with it) or a lookup's query."""
    return whole_text(value.replace("\x00", "\ufffd"))


def _fit(value: str, length: int | None) -> str:
    fitted = sound_text(value)
    return fitted[: length - 1] + "…" if length and len(fitted) > length else fitted


def _fit_this_module(mapper: Any, connection: Any, target: Any) -> None:
    if mapper.class_.__module__ == __name__:
        _fit_text(mapper, connection, target)


event.listen(Mapper, "before_insert", _fit_this_module)
event.listen(Mapper, "before_update", _fit_this_module)
