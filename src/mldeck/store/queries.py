"""The reads the console and the CLI need, as small typed results.

Each function opens one short read transaction. Lists are windowed (``limit``) and return the total
so a view can say when it is truncated; nothing here loads a table whole.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, or_, select, type_coerce
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from mldeck.errors import MldeckError, NotFound
from mldeck.formatting import compared
from mldeck.sections import MAX_ID
from mldeck.store.engine import Store, database_size, store_damaged
from mldeck.store.models import (
    USABLE_STATUSES,
    Alert,
    Alias,
    Approval,
    Artifact,
    AuditEvent,
    Dataset,
    DatasetVersion,
    GateResult,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    RunInput,
    RunKind,
    RunLog,
    RunStatus,
    RunTrigger,
    fitted_value,
    sound_text,
    utcnow,
)

FILTER_KEYS = {"status": RunStatus, "kind": RunKind, "trigger": RunTrigger}


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list: ``status``/``kind``/``trigger`` exact, ``text`` in the name or = id."""

    text: str = ""
    status: str | None = None
    kind: str | None = None
    trigger: str | None = None

    def __post_init__(self) -> None:
        for key, allowed in FILTER_KEYS.items():
            value = getattr(self, key)
            if value is not None and value not in {v.value for v in allowed}:
                choices = ", ".join(v.value for v in allowed)
                raise MldeckError(f"unknown {key} {value!r} (one of: {choices})")

    @classmethod
    def parse(cls, query: str) -> RunFilter:
        """Parse ``"status:failed kind:train churn"``; unknown values raise MldeckError."""
        values: dict[str, str] = {}
        words = []
        for token in query.split():
            key, sep, value = token.partition(":")
            if sep and key in FILTER_KEYS:
                values[key] = value
            else:
                words.append(token)
        return cls(text=" ".join(words), **values)

    def describe(self) -> str:
        parts = [f"{k}:{getattr(self, k)}" for k in FILTER_KEYS if getattr(self, k)]
        return " ".join([*parts, self.text]).strip()


@dataclass(frozen=True)
class RunRow:
    id: int
    name: str
    kind: str
    trigger: str
    status: str
    progress: float | None
    progress_message: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    user: str
    parent_id: int | None = None  # the job's run, when this run is one of its steps

    @classmethod
    def of(cls, run: Run) -> RunRow:
        return cls(*(getattr(run, column.key) for column in _ROW_COLUMNS))

    @property
    def label(self) -> str:
        """The name as lists show it: a job's run and its step share a name, so a step says
        whose it is."""
        return self.name if self.parent_id is None else f"{self.name} · step of {self.parent_id}"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        end = self.ended_at or (utcnow() if self.status == RunStatus.RUNNING else None)
        return None if end is None else end - self.started_at

    def as_dict(self) -> dict[str, Any]:
        duration = self.duration
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "trigger": self.trigger,
            "status": self.status,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_seconds": None if duration is None else round(duration.total_seconds(), 3),
            "user": self.user,
            "parent_run_id": self.parent_id,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_ROW_COLUMNS = (
    Run.id,
    Run.name,
    Run.kind,
    Run.trigger,
    Run.status,
    Run.progress,
    Run.progress_message,
    Run.created_at,
    Run.started_at,
    Run.ended_at,
    Run.user,
    Run.parent_run_id,
)


def as_id(text: str) -> int | None:
    """*text* as a row id or number if it is one (ASCII digits up to the largest id: a larger
    number names nothing, and PostgreSQL refused to compare it with its INTEGER columns)."""
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None


def _filtered(statement: Any, flt: RunFilter) -> Any:
    if flt.status:
        statement = statement.where(Run.status == flt.status)
    if flt.kind:
        statement = statement.where(Run.kind == flt.kind)
    if flt.trigger:
        statement = statement.where(Run.trigger == flt.trigger)
    if flt.text:
        # Escaped: '_' and '%' in a run's name are characters to find, not wildcards.
        like = Run.name.icontains(sound_text(flt.text), autoescape=True)
        run_id = as_id(flt.text)
        statement = statement.where(like if run_id is None else or_(like, Run.id == run_id))
    return statement


def list_runs(
    store: Store, flt: RunFilter | None = None, *, limit: int = 500, offset: int = 0
) -> tuple[list[RunRow], int]:
    """The newest runs matching *flt* (at most *limit*), and how many match in all."""
    flt = flt or RunFilter()
    with store.read() as session:
        total = session.execute(_filtered(select(func.count(Run.id)), flt)).scalar_one()
        rows = session.execute(
            _filtered(select(*_ROW_COLUMNS), flt)
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
    return [RunRow(*row) for row in rows], total


@dataclass(frozen=True)
class MetricSummary:
    key: str
    last: float | None
    last_step: int
    minimum: float | None
    maximum: float | None
    count: int


@dataclass
class RunDetail:
    run: Run
    metrics: list[MetricSummary]
    logs: list[RunLog]
    log_count: int
    artifacts: list[Artifact]
    inputs: list[tuple[str, int, str, str]] = field(default_factory=list)
    # The run this one is a step of (a scheduled job's run), and the runs that are its steps.
    parent: tuple[int, str] | None = None
    children: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        run = self.run
        return {
            **RunRow.of(run).as_dict(),
            "parent": None
            if self.parent is None
            else {"id": self.parent[0], "name": self.parent[1]},
            "children": [{"id": i, "name": n} for i, n in self.children],
            "params": run.params,
            "tags": run.tags,
            "code_version": run.code_version,
            "environment": run.environment,
            "host": run.host,
            "pid": run.pid,
            "heartbeat_at": _iso(run.heartbeat_at),
            "error": run.error,
            "metrics": [m.__dict__ for m in self.metrics],
            "artifacts": [
                {"name": a.name, "path": a.path, "sha256": a.sha256, "size_bytes": a.size_bytes}
                for a in self.artifacts
            ],
            "inputs": [
                {"dataset": d, "version": v, "sha256": sha, "role": role}
                for d, v, sha, role in self.inputs
            ],
            "log_count": self.log_count,
            "logs": [
                {"ts": _iso(line.ts), "level": line.level, "message": line.message}
                for line in self.logs
            ],
        }


def resolve_run(store: Store, ref: str) -> int:
    """A run id from *ref*: its number, or a name (the newest run of that name)."""
    ref = sound_text(ref)  # a name with an undecodable byte, as stored
    stripped = ref.strip()
    with store.read() as session:
        if stripped.isascii() and stripped.isdigit():
            run_id = as_id(stripped)
            if run_id is not None and session.get(Run, run_id) is not None:
                return run_id
        # A name as given (a run may be named "2024", or keep outer spaces), else stripped.
        names = {ref, stripped, fitted_value(Run, "name", ref)}  # a long name as stored
        run_id = session.execute(
            select(Run.id)
            .where(Run.name.in_(names))
            .order_by((Run.name == ref).desc(), Run.created_at.desc(), Run.id.desc())
            .limit(1)
        ).scalar()
    if run_id is None:
        if stripped.isascii() and stripped.isdigit():
            raise NotFound(f"no run {stripped} (see 'mldeck runs list')")
        raise NotFound(f"no run with id or name {stripped!r} (see 'mldeck runs list')")
    return run_id


def run_detail(store: Store, run_id: int, *, log_limit: int = 500) -> RunDetail:
    """Everything about one run: params, metric summaries, the last *log_limit* log lines."""
    with store.read() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id} (see 'mldeck runs list')")
        stats = session.execute(
            select(
                Metric.key,
                func.count(Metric.id),
                func.min(Metric.value),
                func.max(Metric.value),
                func.max(Metric.step),
            )
            .where(Metric.run_id == run_id)
            .group_by(Metric.key)
            .order_by(Metric.key)
        ).all()
        metrics = []
        for key, count, minimum, maximum, last_step in stats:
            last = session.execute(
                select(Metric.value)
                .where(Metric.run_id == run_id, Metric.key == key)
                .order_by(Metric.step.desc(), Metric.id.desc())
                .limit(1)
            ).scalar()
            metrics.append(MetricSummary(key, last, last_step, minimum, maximum, count))
        log_count = session.execute(
            select(func.count(RunLog.id)).where(RunLog.run_id == run_id)
        ).scalar_one()
        logs = list(
            session.execute(
                select(RunLog)
                .where(RunLog.run_id == run_id)
                .order_by(RunLog.id.desc())
                .limit(log_limit)
            ).scalars()
        )
        logs.reverse()
        artifacts = list(
            session.execute(
                select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)
            ).scalars()
        )
        inputs = [
            tuple(row)
            for row in session.execute(
                select(Dataset.name, DatasetVersion.version, DatasetVersion.sha256, RunInput.role)
                .join(DatasetVersion, DatasetVersion.id == RunInput.dataset_version_id)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(RunInput.run_id == run_id)
            ).all()
        ]
        parent = None
        if run.parent_run_id is not None:
            row = session.execute(
                select(Run.id, Run.name).where(Run.id == run.parent_run_id)
            ).first()
            parent = None if row is None else (row[0], row[1])
        children = [
            (i, n)
            for i, n in session.execute(
                select(Run.id, Run.name).where(Run.parent_run_id == run_id).order_by(Run.id)
            ).all()
        ]
    return RunDetail(run, metrics, logs, log_count, artifacts, inputs, parent, children)


def run_fields(run: Run) -> list[tuple[str, str, Any]]:
    """A run's params, tags, code version and environment as (section, key, value) rows, in the
    order the console and the comparison show them."""
    rows: list[tuple[str, str, Any]] = [("param", k, v) for k, v in sorted(run.params.items())]
    rows += [("tag", k, v) for k, v in sorted(run.tags.items())]
    rows += [("code", k, v) for k, v in run.code_version.items()]
    env = dict(run.environment)
    packages = env.pop("packages", {})
    rows += [("env", k, v) for k, v in env.items()]
    rows += [("pkg", k, v) for k, v in packages.items()]
    return rows


MAX_COMPARED = 8  # runs side by side: more do not fit a terminal


@dataclass
class ComparedField:
    """One row of a comparison: a field and its value in each run; *present* says which runs
    have the field (a param may hold None, JSON's null, which is not "absent")."""

    section: str  # run, metric, param, input, tag, code, env or pkg
    key: str
    values: list[Any]
    present: list[bool]

    @property
    def name(self) -> str:
        return self.key if self.section == "run" else f"{self.section}.{self.key}"

    @property
    def differs(self) -> bool:
        first = (self.present[0], self.values[0])
        return any(
            not _same(first, (has, value))
            for has, value in zip(self.present[1:], self.values[1:], strict=True)
        )

    def texts(self) -> list[str]:
        """Each run's value as shown: "-" where the run has no such field. Values that differ
        but read alike once shortened (1.2345e14 and 1.2346e14) are shown in full."""
        # A field the run has, set to nothing (a param of None): not the "-" of one it lacks.
        null = "-" if self.section == "run" else "null"
        shown = [
            ("-" if not has else null if value is None else compared(self.section, self.key, value))
            for has, value in zip(self.present, self.values, strict=True)
        ]
        if self.differs and len(set(shown)) < len(shown):
            shown = [
                repr(value) if has and isinstance(value, float) else text
                for has, value, text in zip(self.present, self.values, shown, strict=True)
            ]
        return shown


def _same(a: tuple[bool, Any], b: tuple[bool, Any]) -> bool:
    """Two runs' (present, value) alike: NaN is NaN here (two diverged runs do not differ), and
    True is not 1 nor 1.0 (a flag and a count differ, though Python calls them equal)."""
    (has_a, x), (has_b, y) = a, b
    if has_a != has_b:
        return False
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    if isinstance(x, dict | list) or isinstance(y, dict | list):
        return json.dumps(x, sort_keys=True, default=str) == json.dumps(
            y, sort_keys=True, default=str
        )
    return x == y and isinstance(x, bool) == isinstance(y, bool)


@dataclass
class RunComparison:
    runs: list[RunRow]
    fields: list[ComparedField]

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": [row.as_dict() for row in self.runs],
            # JSON has no NaN nor infinity (printed as null): "present" tells such a value
            # (true) from a field the run does not have (false).
            "fields": [
                {
                    "section": f.section,
                    "key": f.key,
                    "values": f.values,
                    "present": f.present,
                    "differs": f.differs,
                }
                for f in self.fields
            ],
        }


def compare_runs(store: Store, run_ids: list[int]) -> RunComparison:
    """Runs side by side: status and time, every metric's last value, params, inputs, tags,
    code version and environment; a field a run does not have is None in its column."""
    ids = list(dict.fromkeys(run_ids))
    if not 2 <= len(ids) <= MAX_COMPARED:
        raise MldeckError(f"compare 2 to {MAX_COMPARED} different runs, not {len(ids)}")
    details = [run_detail(store, run_id, log_limit=0) for run_id in ids]
    rows = [RunRow.of(d.run) for d in details]
    columns: dict[tuple[str, str], ComparedField] = {}

    def put(index: int, section: str, key: str, value: Any) -> None:
        n = len(details)
        field = columns.setdefault(
            (section, key), ComparedField(section, key, [None] * n, [False] * n)
        )
        field.values[index], field.present[index] = value, True

    for i, (detail, row) in enumerate(zip(details, rows, strict=True)):
        duration = row.duration
        seconds = None if duration is None else duration.total_seconds()
        if seconds is not None:  # to the tenth under 10 s, else to the second: as it is shown
            seconds = round(seconds, 1) if seconds < 10 else float(round(seconds))
        for key, value in (("kind", row.kind), ("trigger", row.trigger), ("status", row.status),
                           ("seconds", seconds)):  # fmt: skip
            put(i, "run", key, value)
        if detail.run.error and detail.run.error.strip():  # why a failed run failed: its last line
            put(i, "run", "error", detail.run.error.strip().splitlines()[-1])
        for metric in detail.metrics:
            # A last value stored as null was NaN (a diverged loss): not "no such metric".
            put(i, "metric", metric.key, math.nan if metric.last is None else metric.last)
        roles: dict[str, list[str]] = {}
        for dataset, version, _sha, role in detail.inputs:
            roles.setdefault(role, []).append(f"{dataset}:v{version}")
        for role, versions in sorted(roles.items()):
            put(i, "input", role, ", ".join(versions))
        for section, key, value in run_fields(detail.run):
            put(i, section, key, value)
    order = {
        s: n for n, s in enumerate(("run", "metric", "param", "input", "tag", "code", "env", "pkg"))
    }
    fields = list(columns.values())
    fields.sort(key=lambda f: order[f.section])  # stable: each run's own order within a section
    return RunComparison(rows, fields)


def metric_series(store: Store, run_id: int, key: str, *, limit: int = 10_000) -> list[tuple]:
    """(step, value) points of one metric, in step order (at most *limit*, evenly thinned)."""
    with store.read() as session:
        rows = session.execute(
            select(Metric.step, Metric.value)
            .where(Metric.run_id == run_id, Metric.key == key)
            .order_by(Metric.step, Metric.id)
        ).all()
    if len(rows) > limit:
        rows = rows[:: -(-len(rows) // limit)]
    return [(step, value) for step, value in rows]


@dataclass(frozen=True)
class Champion:
    model: str
    version: int
    model_version_id: int


def champions(store: Store) -> list[Champion]:
    """The model version holding the ``champion`` alias, per registered model."""
    with store.read() as session:
        rows = session.execute(
            select(RegisteredModel.name, ModelVersion.version, ModelVersion.id)
            .join(Alias, Alias.model_id == RegisteredModel.id)
            .join(ModelVersion, ModelVersion.id == Alias.model_version_id)
            .where(Alias.name == "champion")
            .order_by(RegisteredModel.name)
        ).all()
    return [Champion(*row) for row in rows]


@dataclass(frozen=True)
class StoreInfo:
    url: str
    backend: str
    schema_revision: str | None
    size_bytes: int | None
    journal_mode: str | None
    change_seq: int


def store_info(store: Store) -> StoreInfo:
    journal = None
    if store.is_sqlite:
        with store.engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            conn.rollback()
    return StoreInfo(
        url=make_url(store.url).render_as_string(hide_password=True),
        backend=store.engine.dialect.name,
        schema_revision=store.schema_revision(),
        size_bytes=database_size(store),
        journal_mode=journal,
        change_seq=store.change_seq(),
    )


def integrity_check(store: Store) -> str:
    """``ok``, or what SQLite's quick check found wrong (other backends: ``ok`` if reachable)."""
    with store.engine.connect() as conn:
        if store.is_sqlite:
            try:
                rows = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").all()]
            except DatabaseError as exc:  # too damaged to be checked: that is the finding
                if not store_damaged(exc):
                    raise
                return " ".join(str(exc.orig).split())
        else:
            conn.exec_driver_sql("SELECT 1")
            rows = ["ok"]
        conn.rollback()
    return "ok" if rows == ["ok"] else "; ".join(rows[:3])


@dataclass
class Overview:
    runs_by_status: dict[str, int]
    runs_last_24h: int
    failed_last_24h: int
    datasets: int
    dataset_versions_by_status: dict[str, int]
    registered_models: int
    model_versions: int
    open_alerts_by_severity: dict[str, int]  # open or acknowledged: not resolved
    acknowledged_alerts: int
    champions: list[Champion]
    last_runs: list[RunRow]
    store: StoreInfo

    @property
    def runs_total(self) -> int:
        return sum(self.runs_by_status.values())


def overview(store: Store, *, last: int = 8) -> Overview:
    """The Overview screen's figures, in one pass of cheap aggregate queries."""
    since = utcnow() - timedelta(days=1)
    with store.read() as session:
        by_status = Counter(
            dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        )
        recent = dict(
            session.execute(
                select(Run.status, func.count()).where(Run.created_at >= since).group_by(Run.status)
            ).all()
        )
        datasets = session.execute(select(func.count(Dataset.id))).scalar_one()
        versions = dict(
            session.execute(
                select(DatasetVersion.status, func.count()).group_by(DatasetVersion.status)
            ).all()
        )
        models = session.execute(select(func.count(RegisteredModel.id))).scalar_one()
        model_versions = session.execute(select(func.count(ModelVersion.id))).scalar_one()
        alerts = dict(
            session.execute(
                select(Alert.severity, func.count())
                .where(Alert.status != "resolved")
                .group_by(Alert.severity)
            ).all()
        )
        acknowledged = session.execute(
            select(func.count(Alert.id)).where(Alert.status == "acknowledged")
        ).scalar_one()
    rows, _ = list_runs(store, limit=last)
    return Overview(
        runs_by_status=dict(by_status),
        runs_last_24h=sum(recent.values()),
        failed_last_24h=recent.get(RunStatus.FAILED, 0) + recent.get(RunStatus.ORPHANED, 0),
        datasets=datasets,
        dataset_versions_by_status=versions,
        registered_models=models,
        model_versions=model_versions,
        open_alerts_by_severity=alerts,
        acknowledged_alerts=acknowledged,
        champions=champions(store),
        last_runs=rows,
        store=store_info(store),
    )


# -- data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRow:
    id: int
    dataset: str
    version: int
    status: str
    n_rows: int | None
    n_cols: int | None
    size_bytes: int
    arrived_at: datetime
    source_path: str
    sha256: str
    quarantine_path: str
    is_reference: bool

    @property
    def label(self) -> str:
        return f"{self.dataset}:v{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "version": self.version,
            "label": self.label,
            "status": self.status,
            "n_rows": self.n_rows,
            "n_cols": self.n_cols,
            "size_bytes": self.size_bytes,
            "arrived_at": _iso(self.arrived_at),
            "source_path": self.source_path,
            "sha256": self.sha256,
            "quarantine_path": self.quarantine_path,
            "is_reference": self.is_reference,
        }


def _version_rows(statement: Any) -> Any:
    return statement.join(Dataset, Dataset.id == DatasetVersion.dataset_id)


_VERSION_COLUMNS = (
    DatasetVersion.id,
    Dataset.name,
    DatasetVersion.version,
    DatasetVersion.status,
    DatasetVersion.n_rows,
    DatasetVersion.n_cols,
    DatasetVersion.size_bytes,
    DatasetVersion.arrived_at,
    DatasetVersion.source_path,
    DatasetVersion.sha256,
    DatasetVersion.quarantine_path,
    (Dataset.reference_version_id == DatasetVersion.id).label("is_reference"),
)


def newest_data(session: Any, *, batches_only: bool = False) -> datetime | None:
    """When the newest dataset version that validation let through arrived (a rejected one is no
    new data); with *batches_only*, the datasets' references aside."""
    query = select(func.max(DatasetVersion.arrived_at)).where(
        DatasetVersion.status.in_(USABLE_STATUSES)
    )
    if batches_only:
        references = select(Dataset.reference_version_id).where(
            Dataset.reference_version_id.is_not(None)
        )
        query = query.where(DatasetVersion.id.not_in(references))
    return session.execute(query).scalar()


def list_versions(
    store: Store,
    *,
    dataset: str | None = None,
    status: str | None = None,
    quarantined: bool = False,
    limit: int = 500,
) -> tuple[list[VersionRow], int]:
    """Dataset versions, newest first (at most *limit*), and how many match in all."""
    conditions = []
    if dataset:
        conditions.append(Dataset.name == dataset)
    if status:
        conditions.append(DatasetVersion.status == status)
    if quarantined:
        conditions.append(DatasetVersion.quarantine_path != "")
    with store.read() as session:
        total = session.execute(
            _version_rows(select(func.count(DatasetVersion.id)).select_from(DatasetVersion)).where(
                *conditions
            )
        ).scalar_one()
        rows = session.execute(
            _version_rows(select(*_VERSION_COLUMNS).select_from(DatasetVersion))
            .where(*conditions)
            .order_by(DatasetVersion.arrived_at.desc(), DatasetVersion.id.desc())
            .limit(limit)
        ).all()
    return [VersionRow(*row[:-1], bool(row[-1])) for row in rows], total


def resolve_version(store: Store, ref: str) -> int:
    """A dataset version id from *ref*: its id, ``dataset:vN``, or a sha256 prefix (6+ chars)."""
    ref = ref.strip()
    with store.read() as session:
        if (row_id := as_id(ref)) is not None:
            found = session.get(DatasetVersion, row_id)
            if found is not None:
                return found.id
        name, sep, number = ref.rpartition(":v")
        if sep and (version := as_id(number)) is not None:
            found_id = session.execute(
                _version_rows(select(DatasetVersion.id).select_from(DatasetVersion)).where(
                    Dataset.name == name, DatasetVersion.version == version
                )
            ).scalar()
            if found_id is not None:
                return found_id
        if len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref.lower()):
            ids = session.execute(
                select(DatasetVersion.id)
                .where(DatasetVersion.sha256.startswith(ref.lower()))
                .limit(2)
            ).all()
            if len(ids) == 1:
                return ids[0][0]
            if len(ids) > 1:
                raise MldeckError(
                    f"sha256 prefix {ref!r} matches several versions; give more of it"
                )
    hint = "an id, dataset:vN or a sha256 prefix of 6 or more hex digits"
    if len(ref) < 6 and all(c in "0123456789abcdef" for c in ref.lower()) and not ref.isdigit():
        hint = f"a sha256 prefix needs 6 or more hex digits; {ref!r} has {len(ref)}"
    raise NotFound(f"no dataset version {ref!r} ({hint}; see 'mldeck data list')")


@dataclass
class VersionDetail:
    row: VersionRow
    schema: dict[str, str]
    profile: dict[str, Any]
    report: dict[str, Any]
    stored_path: str
    file_format: str
    run_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.row.as_dict(),
            "stored_path": self.stored_path,
            "format": self.file_format,
            "run_id": self.run_id,
            "schema": self.schema,
            "report": self.report,
            "profile": self.profile,
        }


def version_detail(store: Store, version_id: int) -> VersionDetail:
    with store.read() as session:
        row = session.execute(
            _version_rows(select(*_VERSION_COLUMNS).select_from(DatasetVersion)).where(
                DatasetVersion.id == version_id
            )
        ).first()
        if row is None:
            raise NotFound(f"no dataset version {version_id} (see 'mldeck data list')")
        version = session.get(DatasetVersion, version_id)
    return VersionDetail(
        VersionRow(*row[:-1], bool(row[-1])),
        version.schema_,
        version.profile,
        version.report,
        version.stored_path,
        version.file_format,
        version.run_id,
    )


# -- models ------------------------------------------------------------------------------------


def numeric_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers in a version's metrics, nested dictionaries flattened to ``a.b`` keys."""
    found: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(numeric_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    return found


@dataclass(frozen=True)
class ModelVersionRow:
    id: int
    model: str
    version: int
    status: str
    aliases: tuple[str, ...]
    created_at: datetime
    run_id: int | None
    metrics: dict[str, Any]
    gates_passed: int
    gates_failed: int
    decision: str | None  # the latest approval decision, if any
    decided_by: str | None

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "label": self.label,
            "status": self.status,
            "aliases": list(self.aliases),
            "created_at": _iso(self.created_at),
            "run_id": self.run_id,
            "metrics": self.metrics,
            "gates_passed": self.gates_passed,
            "gates_failed": self.gates_failed,
            "decision": self.decision,
            "decided_by": self.decided_by,
        }


def _model_version_rows(session: Any, versions: list[tuple[ModelVersion, str]]) -> list:
    ids = [version.id for version, _ in versions]
    if not ids:
        return []
    aliases: dict[int, list[str]] = {}
    for name, version_id in session.execute(
        select(Alias.name, Alias.model_version_id)
        .where(Alias.model_version_id.in_(ids))
        .order_by(Alias.name)
    ).all():
        aliases.setdefault(version_id, []).append(name)
    gates: dict[tuple[int, bool], int] = {
        (version_id, bool(passed)): count
        for version_id, passed, count in session.execute(
            select(GateResult.model_version_id, GateResult.passed, func.count())
            .where(GateResult.model_version_id.in_(ids))
            .group_by(GateResult.model_version_id, GateResult.passed)
        ).all()
    }
    decisions: dict[int, tuple[str, str]] = {}
    for version_id, decision, user in session.execute(
        select(Approval.model_version_id, Approval.decision, Approval.user)
        .where(Approval.model_version_id.in_(ids))
        .order_by(Approval.id)
    ).all():
        decisions[version_id] = (decision, user)
    return [
        ModelVersionRow(
            id=version.id,
            model=name,
            version=version.version,
            status=version.status,
            aliases=tuple(aliases.get(version.id, ())),
            created_at=version.created_at,
            run_id=version.run_id,
            metrics=version.metrics,
            gates_passed=gates.get((version.id, True), 0),
            gates_failed=gates.get((version.id, False), 0),
            decision=decisions.get(version.id, (None, None))[0],
            decided_by=decisions.get(version.id, (None, None))[1],
        )
        for version, name in versions
    ]


def list_model_versions(
    store: Store, *, model: str | None = None, limit: int = 200
) -> tuple[list[ModelVersionRow], int]:
    """Model versions (by model name, newest version first) with their aliases, gate counts and
    latest approval decision (at most *limit*), and how many match in all."""
    conditions = (
        [RegisteredModel.name == fitted_value(RegisteredModel, "name", model)] if model else []
    )
    with store.read() as session:
        total = session.execute(
            select(func.count(ModelVersion.id))
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(*conditions)
        ).scalar_one()
        versions = session.execute(
            select(ModelVersion, RegisteredModel.name)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(*conditions)
            .order_by(RegisteredModel.name, ModelVersion.version.desc())
            .limit(limit)
        ).all()
        rows = _model_version_rows(session, [(v, n) for v, n in versions])
    return rows, total


@dataclass(frozen=True)
class GateRow:
    gate: str
    metric: str
    threshold: float | None
    value: float | None
    passed: bool
    detail: str
    run_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class ApprovalRow:
    decision: str
    user: str
    reason: str
    automatic: bool
    created_at: datetime


# Figures a training records beside its metrics that count things rather than measure the model.
COUNT_METRICS = frozenset({"rows", "holdout_rows", "train_rows", "n_bins", "labelled_rows"})


@dataclass(frozen=True)
class MetricComparison:
    key: str
    value: float | None
    champion: float | None
    # Both figures from this version's holdout; False when the champion's come from its own
    # training on another holdout: each version then looked better than the other from its
    # own screen.
    same_holdout: bool = True

    @property
    def delta(self) -> float | None:
        """This version's figure less the champion's, on the same holdout; none for a count
        (holdout rows, a slice's rows, calibration bins): two holdouts of other sizes are not
        one model better than the other."""
        if self.value is None or self.champion is None or self.is_count:
            return None
        if not self.same_holdout:
            return None
        return self.value - self.champion

    @property
    def is_count(self) -> bool:
        return self.key.rsplit(".", 1)[-1] in COUNT_METRICS


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: datetime | None
    actor: str
    action: str
    entity_type: str
    entity_id: str
    details: dict[str, Any]
    hash: str
    prev_hash: str = ""
    # What of the stored event cannot be read (an edit of the database behind mldeck's back):
    # its time or its details are then None / {} here, and `audit verify` names the event.
    damaged: str = ""

    def as_dict(self) -> dict[str, Any]:
        found = {
            "id": self.id,
            "ts": _iso(self.ts),
            "actor": self.actor,
            "action": self.action,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "details": self.details,
            "hash": self.hash,
        }
        return {**found, "damaged": self.damaged} if self.damaged else found


# The time and details as the database holds them (no decoding by the query): an event edited
# behind mldeck's back (text that is not JSON, a time that is not one) is read as damaged
# instead of failing the whole query, so that `audit verify` can name it.
AUDIT_COLUMNS = (
    AuditEvent.id,
    type_coerce(AuditEvent.ts, String),
    AuditEvent.actor,
    AuditEvent.action,
    AuditEvent.entity_type,
    AuditEvent.entity_id,
    type_coerce(AuditEvent.details, String),
    AuditEvent.hash,
    AuditEvent.prev_hash,
)


def audit_rows(session: Any, statement: Any) -> list[AuditRow]:
    """The audit events *statement* (a select of ``AUDIT_COLUMNS``) finds, each decoded as the
    store decodes it; a part that cannot be is named in ``damaged``."""
    dialect = session.get_bind().dialect
    table = AuditEvent.__table__.c  # type: ignore[attr-defined]
    decoders = {
        name: getattr(table, name).type.dialect_impl(dialect).result_processor(dialect, None)
        for name in ("ts", "details")
    }
    found = []
    for id_, ts, actor, action, entity_type, entity_id, details, hash_, prev in session.execute(
        statement
    ):
        damaged = []
        decoded: dict[str, Any] = {}
        for name, raw in (("ts", ts), ("details", details)):
            try:
                # A driver may decode the value itself (psycopg: JSON and times) or leave text.
                fallback = datetime.fromisoformat if name == "ts" else json.loads
                value = (decoders[name] or fallback)(raw) if isinstance(raw, str) else raw
                if name == "ts" and not isinstance(value, datetime):
                    raise ValueError(raw)
                if name == "details" and not isinstance(value, dict):
                    raise ValueError(raw)
                decoded[name] = value
            except Exception:
                damaged.append("its time is not a time" if name == "ts" else
                               "its details are not a JSON object")  # fmt: skip
                decoded[name] = None if name == "ts" else {}
        found.append(AuditRow(id_, decoded["ts"], actor, action, entity_type, entity_id,
                              decoded["details"], hash_, prev, "; ".join(damaged)))  # fmt: skip
    return found


@dataclass
class ModelVersionDetail:
    """One version: what it is, how it was judged, what it came from, what happened to it."""

    row: ModelVersionRow
    schema: dict[str, Any]
    code_version: dict[str, Any]
    artifact: Artifact | None
    gates: list[GateRow]
    approvals: list[ApprovalRow]
    champion: ModelVersionRow | None  # the current champion, when it is another version
    comparison: list[MetricComparison]
    run: RunRow | None  # the run that made it
    inputs: list[tuple[str, int, int, str, str]]  # dataset, version, version id, sha256, role
    history: list[AuditRow]
    # Whether the champion's figures are from this version's holdout (its training evaluated the
    # champion there) rather than from the champion's own training on another holdout.
    champion_same_holdout: bool = False
    # When there is no other champion now (this version is it, or none is): the champion this
    # version's training evaluated on its holdout, whose figures the comparison then holds.
    evaluated_against: ModelVersionRow | None = None
    # Other versions' promotions and rollbacks that moved an alias away from this one (those
    # events are the other version's: its history alone never said it lost the alias).
    replaced_by: list[AuditRow] = field(default_factory=list)

    def timeline(self) -> list[tuple[AuditRow, bool]]:
        """Its history and the events that took an alias from it, in order: (event, whether it
        took an alias from this version)."""
        both = [(event, False) for event in self.history]
        both += [(event, True) for event in self.replaced_by]
        return sorted(both, key=lambda pair: pair[0].id)

    def as_dict(self) -> dict[str, Any]:
        artifact = self.artifact
        return {
            **self.row.as_dict(),
            "schema": self.schema,
            "code_version": self.code_version,
            "artifact": None
            if artifact is None
            else {
                "id": artifact.id,
                "name": artifact.name,
                "path": artifact.path,
                "sha256": artifact.sha256,
                "size_bytes": artifact.size_bytes,
            },
            "gates": [
                {**gate.__dict__, "created_at": _iso(gate.created_at)} for gate in self.gates
            ],
            "approvals": [
                {**approval.__dict__, "created_at": _iso(approval.created_at)}
                for approval in self.approvals
            ],
            "champion": None if self.champion is None else self.champion.label,
            "champion_same_holdout": self.champion_same_holdout,
            "evaluated_against": None
            if self.evaluated_against is None
            else self.evaluated_against.label,
            "comparison": [
                {"metric": c.key, "value": c.value, "champion": c.champion, "delta": c.delta}
                for c in self.comparison
            ],
            "lineage": {
                "inputs": [
                    {
                        "dataset": d,
                        "version": v,
                        "dataset_version_id": i,
                        "sha256": sha,
                        "role": role,
                    }
                    for d, v, i, sha, role in self.inputs
                ],
                "run": None if self.run is None else self.run.as_dict(),
                "model_version": self.row.label,
            },
            "history": [event.as_dict() for event in self.history],
            "replaced_by": [event.as_dict() for event in self.replaced_by],
        }


def model_version_detail(store: Store, model_version_id: int) -> ModelVersionDetail:
    """A version with its gates, approvals, metrics beside the champion's, lineage (dataset
    versions → run → this version) and its audit history."""
    with store.read() as session:
        found = session.execute(
            select(ModelVersion, RegisteredModel.name)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(ModelVersion.id == model_version_id)
        ).first()
        if found is None:
            raise NotFound(f"no model version {model_version_id} (see 'mldeck models list')")
        version, name = found
        row = _model_version_rows(session, [(version, name)])[0]
        champion_version = session.execute(
            select(ModelVersion)
            .join(Alias, Alias.model_version_id == ModelVersion.id)
            .where(Alias.model_id == version.model_id, Alias.name == "champion")
        ).scalar_one_or_none()
        champion = None
        if champion_version is not None and champion_version.id != version.id:
            champion = _model_version_rows(session, [(champion_version, name)])[0]
        artifact = session.get(Artifact, version.artifact_id) if version.artifact_id else None
        gates = [
            GateRow(
                g.gate, g.metric, g.threshold, g.value, g.passed, g.detail, g.run_id, g.created_at
            )
            for g in session.execute(
                select(GateResult)
                .where(GateResult.model_version_id == version.id)
                .order_by(GateResult.id)
            ).scalars()
        ]
        approvals = [
            ApprovalRow(a.decision, a.user, a.reason, a.automatic, a.created_at)
            for a in session.execute(
                select(Approval)
                .where(Approval.model_version_id == version.id)
                .order_by(Approval.id)
            ).scalars()
        ]
        run = None
        inputs: list[tuple[str, int, int, str, str]] = []
        if version.run_id is not None:
            run_row = session.execute(select(*_ROW_COLUMNS).where(Run.id == version.run_id)).first()
            run = None if run_row is None else RunRow(*run_row)
            inputs = [
                tuple(r)
                for r in session.execute(
                    select(
                        Dataset.name,
                        DatasetVersion.version,
                        DatasetVersion.id,
                        DatasetVersion.sha256,
                        RunInput.role,
                    )
                    .join(DatasetVersion, DatasetVersion.id == RunInput.dataset_version_id)
                    .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                    .where(RunInput.run_id == version.run_id)
                    .order_by(DatasetVersion.id)
                ).all()
            ]
        history = audit_rows(
            session,
            select(*AUDIT_COLUMNS)
            .where(
                AuditEvent.entity_type == "model_version",
                AuditEvent.entity_id == str(version.id),
            )
            .order_by(AuditEvent.id),
        )
        siblings = select(cast(ModelVersion.id, String)).where(
            ModelVersion.model_id == version.model_id, ModelVersion.id != version.id
        )
        moves = audit_rows(
            session,
            select(*AUDIT_COLUMNS)
            .where(
                AuditEvent.entity_type == "model_version",
                AuditEvent.action.in_(("model_version.promote", "model_version.rollback")),
                AuditEvent.entity_id.in_(siblings),
            )
            .order_by(AuditEvent.id),
        )
        replaced_by = [e for e in moves if e.details.get("model") == name
                       and e.details.get("previous_version") == version.version]  # fmt: skip
    # The champion as this version's training evaluated it on the same holdout, when it is still
    # the champion (what the gates compared); otherwise its own metrics, from its own holdout.
    mine = {k: v for k, v in numeric_metrics(version.metrics).items()
            if not k.startswith("champion.")}  # fmt: skip
    beside = (version.metrics or {}).get("champion") or {}
    theirs = {}
    same_holdout = False
    if champion is not None:
        same_holdout = bool(
            beside.get("model_version_id") == champion_version.id and beside.get("metrics")
        )
        theirs = numeric_metrics(beside["metrics"] if same_holdout else champion.metrics)
        if same_holdout and beside.get("holdout_rows_left_out") and beside.get("candidate_metrics"):
            # The champion was judged on the holdout less the rows it was trained on: this
            # version's figures on those same rows, as its regression gate compared them.
            mine.update(numeric_metrics(beside["candidate_metrics"]))
    evaluated_against = None
    former = beside.get("model_version_id")
    if (
        champion is None
        and isinstance(former, int)
        and former != version.id
        and beside.get("metrics")
    ):
        # Promoted since (or no champion now): what it was judged against stays worth seeing.
        with store.read() as session:
            was = session.get(ModelVersion, former)
            if was is not None:
                evaluated_against = _model_version_rows(session, [(was, name)])[0]
                theirs = numeric_metrics(beside["metrics"])
    comparison = [
        MetricComparison(key, mine.get(key), theirs.get(key), same_holdout or champion is None)
        for key in [*mine, *(k for k in theirs if k not in mine)]
    ]
    return ModelVersionDetail(
        row=row,
        schema=version.schema_,
        code_version=version.code_version,
        artifact=artifact,
        gates=gates,
        approvals=approvals,
        champion=champion,
        comparison=comparison,
        run=run,
        inputs=inputs,
        history=history,
        champion_same_holdout=same_holdout,
        evaluated_against=evaluated_against,
        replaced_by=replaced_by,
    )


# -- audit -------------------------------------------------------------------------------------


def list_audit_events(
    store: Store,
    *,
    limit: int = 100,
    offset: int = 0,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> tuple[list[AuditRow], int]:
    """Audit events, newest first (at most *limit*), and how many match in all."""
    conditions = []
    if entity_type:
        conditions.append(AuditEvent.entity_type == entity_type)
    if entity_id:
        conditions.append(AuditEvent.entity_id == entity_id)
    with store.read() as session:
        total = session.execute(select(func.count(AuditEvent.id)).where(*conditions)).scalar_one()
        rows = audit_rows(
            session,
            select(*AUDIT_COLUMNS)
            .where(*conditions)
            .order_by(AuditEvent.id.desc())
            .limit(limit)
            .offset(offset),
        )
    return rows, total


def audit_head(store: Store) -> AuditRow | None:
    """The newest audit event (its hash, kept elsewhere, lets a later check see a truncation)."""
    rows, _ = list_audit_events(store, limit=1)
    return rows[0] if rows else None


def audit_event_by_hash(store: Store, prefix: str) -> AuditRow | None:
    """The audit event whose hash starts with *prefix* (None if there is none)."""
    with store.read() as session:
        rows = audit_rows(
            session,
            select(*AUDIT_COLUMNS).where(AuditEvent.hash.startswith(prefix.lower())).limit(1),
        )
    return rows[0] if rows else None
