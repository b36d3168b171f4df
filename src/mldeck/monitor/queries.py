"""Reads of monitoring results that the CLI, the console and the HTML report share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from mldeck.errors import NotFound
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alert,
    Dataset,
    DatasetVersion,
    DriftReport,
    Run,
    RunInput,
    RunKind,
    RunStatus,
)


@dataclass
class ReportRow:
    id: int
    run_id: int | None
    batch: str
    dataset_version_id: int
    created_at: datetime
    n_features: int
    n_drifted: int
    drift_share: float
    dataset_drift: bool
    model: str | None
    multivariate_drifted: bool | None
    metric: str | None
    estimated: float | None
    estimated_lower: float | None
    estimated_upper: float | None
    realized: float | None
    alerts: int = 0  # alerts this check raised about its batch (drift, performance)
    performance_alerts: int = 0  # of them, those about a metric (estimated or realized)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def _row(report: DriftReport, batch: str, alerts: int, performance_alerts: int) -> ReportRow:
    summary = report.summary or {}
    estimated = summary.get("estimated") or {}
    realized = summary.get("realized") or {}
    metric = estimated.get("metric")
    if metric is None and realized:
        metric = next((k for k in ("roc_auc", "accuracy") if realized.get(k) is not None), None)
    multivariate = summary.get("multivariate")
    return ReportRow(
        id=report.id, run_id=report.run_id, batch=batch,
        dataset_version_id=report.dataset_version_id, created_at=report.created_at,
        n_features=report.n_features, n_drifted=report.n_drifted,
        drift_share=report.drift_share, dataset_drift=report.dataset_drift,
        model=summary.get("model"),
        multivariate_drifted=None if multivariate is None else bool(multivariate.get("drifted")),
        metric=metric, estimated=estimated.get("value"),
        estimated_lower=estimated.get("lower"), estimated_upper=estimated.get("upper"),
        realized=realized.get(metric) if metric else None, alerts=alerts,
        performance_alerts=performance_alerts,
    )  # fmt: skip


def _checks_of(details: dict[str, Any] | None) -> set[tuple[int, str]]:
    """The (run, batch) pairs of the drift checks that fired an alert: every check that fired it
    (``details.runs``; the last one, ``details.run_id``, for alerts older than that list) and
    every batch that fired it (``details.batches``, or ``details.batch``)."""
    details = details or {}
    batches = {b for b in details.get("batches") or [details.get("batch")] if isinstance(b, str)}
    runs = {r for r in details.get("runs") or [details.get("run_id")] if isinstance(r, int)}
    return {(run, batch) for run in runs for batch in batches}


PERFORMANCE_RULES = frozenset({"estimated_metric", "realized_metric"})


def _about_performance(details: dict[str, Any] | None) -> bool:
    """Whether an alert's rule is about a metric (alerts stored before their rule's kind was
    kept in their details name their metric)."""
    details = details or {}
    when = details.get("when")
    return when in PERFORMANCE_RULES if when is not None else "metric" in details


def _alerts_by_check(session: Any) -> dict[tuple[int, str], tuple[int, int]]:
    """How many alerts each drift check raised about its batch, and how many of them were
    about performance, by (run, batch)."""
    counts: dict[tuple[int, str], tuple[int, int]] = {}
    for (details,) in session.execute(select(Alert.details)).all():
        performance = _about_performance(details)
        for key in _checks_of(details):
            every, metric = counts.get(key, (0, 0))
            counts[key] = (every + 1, metric + performance)
    return counts


def _alerts_of_check(session: Any, run_id: int, batch: str) -> list[dict[str, Any]]:
    """The alerts a drift check raised about its batch (as ``drift check --json`` lists them,
    with their status now)."""
    found = []
    for alert in session.execute(select(Alert).order_by(Alert.id)).scalars():
        if (run_id, batch) in _checks_of(alert.details):
            found.append({"id": alert.id, "rule": alert.rule, "severity": alert.severity,
                          "title": alert.title, "status": alert.status,
                          "performance": _about_performance(alert.details)})  # fmt: skip
    return found


def _report_rows(
    store: Store, ids: Any | None, order: tuple[Any, ...], limit: int, since: datetime | None = None,
    dataset: str | None = None, until: int | None = None,
) -> list[ReportRow]:  # fmt: skip
    with store.read() as session:
        query = (
            select(DriftReport, Dataset.name, DatasetVersion.version)
            .join(DatasetVersion, DatasetVersion.id == DriftReport.dataset_version_id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        )
        if ids is not None:
            query = query.where(DriftReport.id.in_(ids))
        if since is not None:
            query = query.where(DriftReport.created_at >= since)
        if dataset is not None:
            query = query.where(Dataset.name == dataset)
        if until is not None:  # a report: the checks made up to it, of batches up to its own
            batch = select(DriftReport.dataset_version_id).where(DriftReport.id == until)
            query = query.where(DriftReport.id <= until,
                                DriftReport.dataset_version_id <= batch.scalar_subquery())  # fmt: skip
        rows = session.execute(query.order_by(*order).limit(limit)).all()
        alerts = _alerts_by_check(session)
        return [_row(r, f"{name}:v{number}", *alerts.get((r.run_id, f"{name}:v{number}"), (0, 0)))
                for r, name, number in rows]  # fmt: skip


def list_reports(store: Store, *, limit: int = 200) -> list[ReportRow]:
    """Drift reports, the newest batch first (in the order the batches arrived: two checks
    running side by side may end in the other order), each batch's newest check first."""
    order = (DriftReport.dataset_version_id.desc(), DriftReport.id.desc())
    return _report_rows(store, None, order, limit)


def count_reports(store: Store) -> int:
    with store.read() as session:
        return session.execute(select(func.count(DriftReport.id))).scalar_one()


def timeline(
    store: Store,
    *,
    limit: int = 50,
    since: datetime | None = None,
    dataset: str | None = None,
    until: int | None = None,
) -> list[ReportRow]:
    """The newest report of each of the last *limit* batches, in the order the batches arrived
    (what the over-time charts draw): checking a batch again replaces its point, and a batch
    checked late is drawn where it arrived, not after the batches checked before it. With
    *since*, only the batches whose newest check was made then or later (a KPI window); with
    *dataset*, only that dataset's batches (one dataset's report draws no other's); with
    *until* (a report's id), the history as it stood when that report was made: the batches
    that arrived up to its own, each as last checked by then."""
    newest = select(func.max(DriftReport.id)).group_by(DriftReport.dataset_version_id)
    if until is not None:
        newest = newest.where(DriftReport.id <= until)
    order = (DriftReport.dataset_version_id.desc(),)
    rows = _report_rows(store, newest, order, limit, since, dataset, until)
    return list(reversed(rows))


@dataclass
class ReportDetail:
    row: ReportRow
    reference: str
    summary: dict[str, Any]
    dataset: str | None = None  # the batch's dataset (its over-time charts draw no other)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # the alerts its check raised

    def as_dict(self) -> dict[str, Any]:
        """The report as ``drift check --json`` gives it (the stored summary: ``estimated`` and
        ``realized`` as objects, ``multivariate`` whole, the alerts its check raised as a list),
        with the row's identity. Not the list row's flattened figures: one key, one type, in
        every command."""
        row = self.row
        return {"id": row.id, "report_id": row.id, "run_id": row.run_id, "dataset_version_id": row.dataset_version_id,
                "batch": row.batch, "created_at": row.created_at.isoformat(),
                "reference": self.reference, "model": row.model, "n_features": row.n_features,
                "n_drifted": row.n_drifted, "drift_share": row.drift_share,
                "dataset_drift": row.dataset_drift, "estimated": None, "realized": None,
                **self.summary, "alerts": self.alerts}  # fmt: skip


def resolve_report(store: Store, ref: str) -> int:
    """A drift report id from *ref*: ``#ID`` or ``report:ID``, or a batch (``dataset:vN``, a
    dataset version id or sha256 prefix) whose newest report is meant."""
    from mldeck.store.queries import as_id, resolve_version

    text = ref.strip()
    for prefix in ("#", "report:"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            report_id = as_id(text[len(prefix) :])
            if report_id is None:
                raise NotFound(f"no drift report {text[len(prefix) :]} (see 'mldeck drift list')")
            with store.read() as session:
                if session.get(DriftReport, report_id) is not None:
                    return report_id
            raise NotFound(f"no drift report {report_id} (see 'mldeck drift list')")
    version_id = resolve_version(store, text)
    with store.read() as session:
        found = session.execute(
            select(DriftReport.id)
            .where(DriftReport.dataset_version_id == version_id)
            .order_by(DriftReport.id.desc())
            .limit(1)
        ).scalar()
    if found is None:
        with store.read() as session:
            status, reference = session.execute(
                select(DatasetVersion.status, Dataset.reference_version_id)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(DatasetVersion.id == version_id)
            ).one()
        if reference == version_id:
            # 'drift check' refuses it: advising that would send the user in a circle.
            raise NotFound(f"{ref} is the reference: batches are checked against it, it has no "
                           "drift report of its own (see 'mldeck drift list')")  # fmt: skip
        if status == "rejected":
            raise NotFound(f"{ref} was rejected by validation: it is not checked for drift "
                           f"(see 'mldeck data show {ref}')")  # fmt: skip
        with store.read() as session:
            failed = session.execute(
                select(Run.id, Run.error)
                .join(RunInput, RunInput.run_id == Run.id)
                .where(RunInput.dataset_version_id == version_id, RunInput.role == "input",
                       Run.kind == RunKind.DRIFT, Run.status == RunStatus.FAILED)
                .order_by(Run.id.desc())
                .limit(1)
            ).first()  # fmt: skip
        if failed is not None:
            # 'not checked yet, run the check' sent the user to a check that fails again.
            lines = (failed.error or "").strip().splitlines()
            said = f": {lines[-1]}" if lines else ""
            raise NotFound(f"the drift check of {ref} failed (run {failed.id}){said}; see "
                           f"'mldeck runs show {failed.id}'")  # fmt: skip
        raise NotFound(f"{ref} has not been checked for drift yet (run 'mldeck drift check {ref}')")
    return found


def report_detail(store: Store, report_id: int) -> ReportDetail:
    with store.read() as session:
        report = session.get(DriftReport, report_id)
        if report is None:
            raise NotFound(f"no drift report {report_id} (see 'mldeck drift list')")

        def label(version_id: int | None) -> str:
            if version_id is None:
                return "-"
            version = session.get(DatasetVersion, version_id)
            dataset = session.get(Dataset, version.dataset_id)
            return f"{dataset.name}:v{version.version}"

        batch = label(report.dataset_version_id)
        alerts = _alerts_of_check(session, report.run_id, batch)
        row = _row(report, batch, len(alerts), sum(a["performance"] for a in alerts))
        dataset = session.execute(
            select(Dataset.name)
            .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
            .where(DatasetVersion.id == report.dataset_version_id)
        ).scalar()
        return ReportDetail(row, label(report.reference_version_id), dict(report.summary or {}),
                            dataset, alerts)  # fmt: skip
