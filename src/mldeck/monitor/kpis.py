"""The operations KPIs, computed from the store (runs, metrics, audit events, alerts).

Delivery: promotion frequency, lead time from data arrival to a new champion, change-failure
rate (promotions later rolled back), time to restore after an alert. Model health: quality over
time (realized and estimated primary metric per batch), drift, data freshness, pipeline success
rate, inference latency p50 / p95 per 1,000 predictions (over predictions, not batches; the
champion's, what serving takes), cost per 1,000 predictions (CPU time at ``[monitor]
cost_per_cpu_hour``: the champion's, plus its challenger's shadow scoring of the same batch,
which is paid for too), retraining cadence (time
between new model versions). Each figure is None when the store does not hold what it needs
yet, never a made-up zero.

Every count and rate is over the window (``days``); the last batch (its quality and drift
share) and data freshness say how things stand now, whatever the window: the newest monitored
batch is shown even when it was checked before the window, with the time it was checked.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select

from mldeck import formatting as fmt
from mldeck.ml.registry import CHAMPION
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alert,
    AuditEvent,
    DatasetVersion,
    DriftReport,
    Metric,
    ModelVersion,
    Run,
    RunInput,
    RunKind,
    RunStatus,
    RunTrigger,
    utcnow,
)
from mldeck.store.queries import newest_data


@dataclass
class Kpis:
    window_days: float
    promotions: int
    promotions_per_week: float | None
    lead_time_hours: float | None
    change_failure_rate: float | None
    time_to_restore_hours: float | None
    runs_finished: int
    pipeline_success_rate: float | None
    data_freshness_hours: float | None
    batches_monitored: int
    batches_with_dataset_drift: int
    last_drift_share: float | None
    latency_ms_per_1k_p50: float | None
    latency_ms_per_1k_p95: float | None
    cpu_seconds_per_1k: float | None
    cost_per_1k: float | None
    retrain_interval_days: float | None
    # Per monitored batch, oldest first: the batches whose newest check is in the window, then
    # the newest batch whatever its age (so the last point is always the last batch).
    quality: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aware(value: datetime | None, now: datetime) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=now.tzinfo)
    return value


def kpis(store: Store, *, days: float = 30, cost_per_cpu_hour: float = 0.0) -> Kpis:
    now = utcnow()
    since = now - timedelta(days=days)
    with store.read() as session:
        events = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.action.in_(["model_version.promote", "model_version.rollback"]))
                .order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )
        # The champion's changes only: pointing another alias (a challenger) is no delivery.
        events = [e for e in events if (e.details or {}).get("alias", CHAMPION) == CHAMPION]
        promotions = [e for e in events if e.action == "model_version.promote"
                      and _aware(e.ts, now) >= since]  # fmt: skip
        rollbacks = [e for e in events if e.action == "model_version.rollback"]
        # Lead time: newest data a promoted version's training read -> its promotion.
        leads = []
        for event in promotions:
            version = session.get(ModelVersion, int(event.entity_id or 0))
            if version is None or version.run_id is None:
                continue
            arrived = session.execute(
                select(func.max(DatasetVersion.arrived_at))
                .join(RunInput, RunInput.dataset_version_id == DatasetVersion.id)
                .where(RunInput.run_id == version.run_id)
            ).scalar()
            if arrived is not None:
                leads.append((_aware(event.ts, now) - _aware(arrived, now)).total_seconds() / 3600)
        failed = 0
        for event in promotions:
            model, number = event.details.get("model"), event.details.get("version")
            if any(r.id > event.id and r.details.get("model") == model
                   and r.details.get("previous_version") == number for r in rollbacks):  # fmt: skip
                failed += 1
        restored = session.execute(
            select(Alert.created_at, Alert.resolved_at).where(
                Alert.resolved_at.is_not(None), Alert.created_at >= since
            )
        ).all()
        finished = dict(
            session.execute(
                select(Run.status, func.count())
                .where(Run.created_at >= since, Run.status.in_(
                    [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ORPHANED]))
                # The pipeline's runs: a person's own script is an experiment, not a step.
                .where(Run.trigger != RunTrigger.SCRIPT)
                .group_by(Run.status)
            ).all()
        )  # fmt: skip
        newest = newest_data(session)
        checked = session.execute(
            select(DriftReport.dataset_version_id, DriftReport.dataset_drift,
                   DriftReport.drift_share)
            .where(DriftReport.created_at >= since)
            .order_by(DriftReport.id)
        ).all()  # fmt: skip
        # A batch checked again (another champion, a re-run) is one batch: its newest report.
        reports = list({row.dataset_version_id: row for row in checked}.values())
        score_metrics = session.execute(
            select(Metric.run_id, Metric.key, Metric.value, Run.parent_run_id, Run.tags)
            .join(Run, Run.id == Metric.run_id)
            .where(Run.kind == RunKind.SCORE, Run.status == RunStatus.SUCCEEDED,
                   Run.created_at >= since,
                   Metric.key.in_(["latency_ms", "rows", "cpu_seconds_per_1k"]))
        ).all()  # fmt: skip
        # A retraining is a new model version: reproductions and tracked script runs register
        # none, and are not counted.
        trains = session.execute(
            select(ModelVersion.created_at)
            .where(ModelVersion.created_at >= since)
            .order_by(ModelVersion.created_at)
        ).scalars().all()  # fmt: skip
    per_run: dict[int, dict[str, float]] = {}
    shadow_cpu: dict[int, float] = {}  # a challenger's shadow scoring, by the champion's run
    for run_id, key, value, parent, tags in score_metrics:
        if value is None:
            continue
        if isinstance(tags, dict) and tags.get("shadow"):
            if key == "cpu_seconds_per_1k" and parent is not None:
                shadow_cpu[parent] = shadow_cpu.get(parent, 0.0) + value
            continue
        per_run.setdefault(run_id, {})[key] = value
    for run_id, extra in shadow_cpu.items():
        if "cpu_seconds_per_1k" in per_run.get(run_id, {}):
            per_run[run_id]["cpu_seconds_per_1k"] += extra
    # Per prediction, not per batch: each batch's figure per 1k weighs as many predictions as it
    # made (a batch of 10 rows, all fixed cost, would otherwise count as much as one of 10,000).
    latency = [(m["latency_ms"] / m["rows"] * 1000, m["rows"]) for m in per_run.values()
               if m.get("rows") and "latency_ms" in m]  # fmt: skip
    cpu = [(m["cpu_seconds_per_1k"], m.get("rows") or 0) for m in per_run.values()
           if "cpu_seconds_per_1k" in m]  # fmt: skip
    n_finished = sum(finished.values())
    cpu_rows = sum(rows for _, rows in cpu)
    cpu_mean = (sum(v * rows for v, rows in cpu) / cpu_rows if cpu_rows
                else statistics.fmean(v for v, _ in cpu) if cpu else None)  # fmt: skip
    gaps = [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(trains)]
    quality = quality_series(store, limit=10, since=since)
    return Kpis(
        window_days=days,
        promotions=len(promotions),
        promotions_per_week=len(promotions) / (days / 7) if promotions else None,
        lead_time_hours=statistics.median(leads) if leads else None,
        change_failure_rate=failed / len(promotions) if promotions else None,
        time_to_restore_hours=statistics.fmean(
            (_aware(b, now) - _aware(a, now)).total_seconds() / 3600 for a, b in restored
        )
        if restored
        else None,
        runs_finished=n_finished,
        pipeline_success_rate=finished.get(RunStatus.SUCCEEDED, 0) / n_finished
        if n_finished
        else None,
        data_freshness_hours=(now - _aware(newest, now)).total_seconds() / 3600 if newest else None,
        batches_monitored=len(reports),
        batches_with_dataset_drift=sum(1 for r in reports if r.dataset_drift),
        # The newest batch's (as the quality line and the Overview), not the newest report's:
        # an older batch checked again does not stand for now.
        last_drift_share=quality[-1]["drift_share"] if quality else None,
        latency_ms_per_1k_p50=_weighted_percentile(latency, 0.50),
        latency_ms_per_1k_p95=_weighted_percentile(latency, 0.95),
        cpu_seconds_per_1k=cpu_mean,
        cost_per_1k=cpu_mean * cost_per_cpu_hour / 3600
        if cpu_mean is not None and cost_per_cpu_hour
        else None,
        retrain_interval_days=statistics.fmean(gaps) if gaps else None,
        quality=quality,
    )


def quality_series(
    store: Store, *, limit: int = 50, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Per monitored batch, oldest first: drift share, estimated and realized primary metric.
    With *since*, the batches whose newest check is that recent, and then the newest batch even
    when it was checked before: the last point is always the last batch."""
    from mldeck.monitor.queries import timeline

    points = timeline(store, limit=limit, since=since)
    if since is not None:
        newest = timeline(store, limit=1)
        if newest and (not points or points[-1].id != newest[0].id):
            points = [*points[len(points) + 1 - limit :], newest[0]]
    return [point.as_dict() for point in points]


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0:  # a time recorded by a host whose clock is ahead (it read "0.0s")
        return f"{fmt.duration(timedelta(hours=-value))} below zero (a clock ahead?)"
    return fmt.duration(timedelta(hours=value))


def _weighted_percentile(pairs: list[tuple[float, float]], q: float) -> float | None:
    """The value below which a share *q* of the total weight lies ((value, weight) pairs)."""
    if not pairs:
        return None
    values = np.array([v for v, _ in pairs], dtype=float)
    weights = np.array([w for _, w in pairs], dtype=float)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
    return float(values[order][min(index, len(values) - 1)])


def _cadence(days: float | None) -> str:
    """Days apart, or the time apart when under a day ("every 0.0 days" says nothing)."""
    if days is None:
        return "-"
    return f"every {_hours(days * 24)}" if days < 1 else f"every {days:.1f} days"


def _rate(per_week: float | None, window_days: float) -> str:
    """' (N/week)', per month or per year when rarer ('0.0/week' over a long window), none
    over a window shorter than a week (2 in 15 minutes read '1344.0/week')."""
    if per_week is None or window_days < 7:
        return ""
    for per, unit in ((1.0, "week"), (30.44 / 7, "month"), (365.25 / 7, "year")):
        if per_week * per >= 1 or unit == "year":
            return (
                f" ({per_week * per:.2g}/{unit})"
                if per_week * per < 10
                else (f" ({per_week * per:.0f}/{unit})")
            )
    return ""


def sections(k: Kpis) -> dict[str, dict[str, str]]:
    """The KPIs as titled sections of label -> text (the CLI and the Overview both show these):
    the counts and rates of the window, then the last batch, whatever its age."""
    # Significant digits, never in e-notation: a realistic cost per 1k predictions is a
    # millionth or less ('5.34e-07' read as a number of something else).
    cost = "-"
    if k.cost_per_1k is not None:
        value = k.cost_per_1k
        shown = (np.format_float_positional(value, precision=3, fractional=False, trim="-")
                 if 1e-9 <= abs(value) < 1e9 else f"{value:.3g}")  # fmt: skip
        cost = f"{shown} (in the currency of [monitor] cost_per_cpu_hour)"
    if k.cost_per_1k is None and k.cpu_seconds_per_1k is not None:
        cost = f"- (set [monitor] cost_per_cpu_hour; {k.cpu_seconds_per_1k:.4f} CPU s per 1k)"
    last = k.quality[-1] if k.quality else None
    batch = quality = "-"
    if last is not None:
        checked = last.get("created_at")
        if isinstance(checked, str):
            checked = datetime.fromisoformat(checked)
        batch = f"{last['batch']} (checked {fmt.when(checked)})"
        parts = []
        if last.get("estimated") is not None:
            parts.append(f"estimated {last['metric']} {last['estimated']:.3f}")
        if last.get("realized") is not None:
            parts.append(f"realized {last['realized']:.3f}")
        quality = ", ".join(parts) or "no performance figures"
    drift = fmt.share(k.last_drift_share)
    if last is not None and k.last_drift_share is not None and last.get("dataset_drift"):
        drift += " (dataset drift)"
    window = ("last day" if k.window_days == 1 else f"last {k.window_days:g} days"
              if k.window_days >= 1 else f"last {_hours(k.window_days * 24)}")  # fmt: skip
    return {
        f"Delivery ({window})": {
            "promotions": f"{k.promotions}" + _rate(k.promotions_per_week, k.window_days),
            "lead time data → champion": _hours(k.lead_time_hours),
            "change-failure rate": fmt.share(k.change_failure_rate),
            "time to restore (alerts)": _hours(k.time_to_restore_hours),
        },
        f"Model health ({window})": {
            "batches monitored": f"{k.batches_monitored} ({k.batches_with_dataset_drift} with "
            "dataset drift)",
            "pipeline success rate": "- (no finished run)" if not k.runs_finished
            else f"{fmt.share(k.pipeline_success_rate)} of {fmt.plural(k.runs_finished, 'finished run')}",
            "latency per 1k p50 / p95": "-" if k.latency_ms_per_1k_p50 is None
            else f"{k.latency_ms_per_1k_p50:.1f} / {k.latency_ms_per_1k_p95:.1f} ms",
            "cost per 1k predictions": cost,
            "retraining cadence": _cadence(k.retrain_interval_days),
        },
        "Last batch (any age)": {
            "batch": batch,
            "quality": quality,
            "drift share": drift,
            "data freshness": "-" if k.data_freshness_hours is None
            else f"{_hours(k.data_freshness_hours)} since new data last arrived"
            if k.data_freshness_hours >= 0 else f"new data last arrived "
            f"{_hours(-k.data_freshness_hours)} from now, in the future (a clock ahead?)",
        },
    }  # fmt: skip
