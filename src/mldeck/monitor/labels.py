"""Labels that arrive after their batch was scored: a file of ids and outcomes, joined by
``[data] id_column`` to the champion's stored predictions of every monitored batch that holds
those ids. Each batch that gains labels gets an ``evaluate`` run with the realized metrics, its
drift report's ``realized`` figures, and the realized-metric alert rules are evaluated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import insert, select

from mldeck import provenance
from mldeck.data.readers import ReadError, open_source
from mldeck.errors import MldeckError
from mldeck.formatting import shown
from mldeck.monitor import alerts as alerting
from mldeck.monitor import performance
from mldeck.monitor.alerts import Raised, Signal
from mldeck.monitor.check import stored_predictions
from mldeck.monitor.settings import AlertRule
from mldeck.store.engine import Store
from mldeck.store.models import (
    Dataset,
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
from mldeck.workspace import Workspace


@dataclass
class Labelled:
    batch: str
    report_id: int
    run_id: int
    rows: int
    realized: dict[str, float | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "report_id": self.report_id,
            "run_id": self.run_id,
            "labelled_rows": self.rows,
            "realized": self.realized,
        }


@dataclass
class LabelOutcome:
    file: str
    rows: int
    matched: int
    batches: list[Labelled]
    alerts: list[Raised]


def _read_labels(workspace: Workspace, path: Path, id_column: str, target: str) -> pl.DataFrame:
    workspace.refuse_state_file(path)
    if not path.exists():
        raise MldeckError(f"cannot read {path}: no such file")
    try:
        source = open_source(path, separator=workspace.settings.data.csv_separator)
    except ReadError as exc:
        raise MldeckError(f"cannot read {path}: {exc}") from None
    missing = [c for c in (id_column, target) if c not in source.columns]
    if missing:
        raise MldeckError(
            f"{shown(path.name)} lacks {' and '.join(repr(c) for c in missing)}: a label file has the "
            f"id column ({id_column!r}) and the target ({target!r})"
        )
    try:
        frame = (
            source.frame.select(
                pl.col(id_column).cast(pl.String).alias("__id"),
                pl.col(target).cast(pl.String).str.strip_chars().alias("__label"),
            )
            .drop_nulls()
            # One label named twice ('1' and '1.0') is one label: numbers compare as numbers.
            .with_columns(pl.coalesce(pl.col("__label").cast(pl.Float64, strict=False)
                                      .cast(pl.String), pl.col("__label")).alias("__key"))
            .unique(["__id", "__key"], keep="first", maintain_order=True)
            .drop("__key")
            .collect()
        )  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        raise MldeckError(f"cannot read {shown(str(path))}: {exc}") from None
    conflicts = frame.filter(pl.col("__id").is_duplicated()).sort("__id", "__label")
    if conflicts.height:
        ids = conflicts.get_column("__id").unique(maintain_order=True)
        shown_ids = ", ".join(repr(i) for i in ids.head(5).to_list())
        raise MldeckError(
            f"{shown(path.name)} gives {ids.len()} id(s) more than one label ({shown_ids}"
            f"{', ...' if ids.len() > 5 else ''}): which is right is not for mldeck to guess"
        )
    return frame


def _refuse_unknown(path: Path, labels: pl.DataFrame, classes: list[Any]) -> None:
    """Refuse a label file whose labels name none of the model's classes ('7', '1x')."""
    index = performance.class_index(labels.get_column("__label"), classes)
    unknown = labels.get_column("__label").filter(index.is_null()).unique(maintain_order=True)
    if unknown.len():
        examples = ", ".join(repr(v) for v in unknown.head(5).to_list())
        raise MldeckError(
            f"{shown(path.name)}: {unknown.len()} label value(s) name no class of the model"
            f" ({', '.join(str(c) for c in classes)}): {examples}"
        )


def record_labels(
    workspace: Workspace, store: Store, path: Path, *, trigger: str = RunTrigger.MANUAL
) -> LabelOutcome:
    """Join the labels in *path* to every monitored batch's predictions; record what matched."""
    id_column = workspace.settings.data.id_column
    if not id_column:
        raise MldeckError("labels are joined by id: set [data] id_column in mldeck.toml")
    with store.read() as session:
        reports = session.execute(
            select(DriftReport, ModelVersion, DatasetVersion, Dataset.name)
            .join(ModelVersion, ModelVersion.id == DriftReport.model_version_id)
            .join(DatasetVersion, DatasetVersion.id == DriftReport.dataset_version_id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .order_by(DriftReport.id.desc())
        ).all()
        session.expunge_all()
    latest: dict[int, tuple] = {}
    for report, version, batch_version, name in reports:
        latest.setdefault(batch_version.id, (report, version, batch_version, name))
    if not latest:
        raise MldeckError("no batch has been monitored with a model yet ('mldeck drift check')")
    targets = {(v.schema_ or {}).get("target") for _, v, _, _ in latest.values()} - {None}
    target = workspace.settings.model.target or (targets.pop() if len(targets) == 1 else None)
    if not target:
        raise MldeckError("which column holds the labels? set [model] target in mldeck.toml")
    labels = _read_labels(workspace, path, id_column, target)
    for classes in {
        tuple((v.schema_ or {}).get("classes") or ()) for _, v, _, _ in latest.values()
    }:
        if len(classes) == 2:
            _refuse_unknown(path, labels, list(classes))
    batches: list[Labelled] = []
    raised: list[Raised] = []
    rules = [r for r in alerting.default_rules(workspace.settings) if r.when == "realized_metric"]
    matched_ids: set[str] = set()
    for report, version, batch_version, name in sorted(latest.values(), key=lambda r: r[0].id):
        predictions = stored_predictions(
            workspace, store, report.dataset_version_id, report.model_version_id
        )
        if predictions is None or id_column not in predictions.columns:
            continue
        joined = (
            predictions.with_columns(pl.col(id_column).cast(pl.String).alias("__id"))
            .join(labels, on="__id", how="inner")
        )  # fmt: skip
        if joined.height == 0:
            continue
        matched_ids.update(joined.get_column("__id").to_list())
        classes = (version.schema_ or {}).get("classes") or []
        if len(classes) != 2:
            continue
        y = (performance.class_index(joined.get_column("__label"), classes) == 1).to_numpy()
        predicted = (
            (performance.class_index(joined.get_column("prediction"), classes) == 1)
            .fill_null(False)
            .to_numpy()
        )
        scores = joined.get_column("score").to_numpy()
        scores = scores if np.isfinite(scores).all() else None
        realized = {k: _finite(v) for k, v in
                    performance.realized_metrics(y, predicted, scores).items()}  # fmt: skip
        batch = f"{name}:v{batch_version.version}"
        # The batch's realized metrics and the alerts they raise or clear: one transaction.
        run_id, batch_raised = _record(store, report.id, batch_version.id, batch, path, realized,
                                       joined.height, trigger, rules)  # fmt: skip
        batches.append(Labelled(batch, report.id, run_id, joined.height, realized))
        raised.extend(batch_raised)
    alerting.run_hooks(raised, workspace.settings.monitor.alert_command,
                       workspace.settings.monitor.alert_command_timeout)  # fmt: skip
    return LabelOutcome(shown(str(path)), labels.height, len(matched_ids), batches, raised)


def _finite(value: float) -> float | None:
    return value if value is not None and np.isfinite(value) else None


def _record(
    store: Store, report_id: int, version_id: int, batch: str, path: Path,
    realized: dict[str, float | None], rows: int, trigger: str, rules: list[AlertRule],
) -> tuple[int, list[Raised]]:  # fmt: skip
    now = utcnow()
    pid = os.getpid()
    with store.write() as session:
        run = Run(
            name=f"labels for {batch}", kind=RunKind.EVALUATE, trigger=trigger,
            status=RunStatus.SUCCEEDED, created_at=now, started_at=now, ended_at=now,
            progress=1.0, params={"labels": shown(str(path)), "report_id": report_id},
            tags={"dataset": batch}, user=provenance.current_user(),
            host=provenance.hostname(), pid=pid,
            pid_started_at=provenance.process_start_time(pid),
            progress_message=f"{rows} labelled rows",
        )  # fmt: skip
        session.add(run)
        session.flush()
        session.add(RunInput(run_id=run.id, dataset_version_id=version_id, role="input"))
        points = [{"run_id": run.id, "key": f"realized_{k}", "value": v, "step": 0, "ts": now}
                  for k, v in realized.items() if v is not None]  # fmt: skip
        points.append({"run_id": run.id, "key": "labelled_rows", "value": float(rows),
                       "step": 0, "ts": now})  # fmt: skip
        session.execute(insert(Metric), points)
        report = session.get(DriftReport, report_id)
        report.summary = {
            **report.summary,
            "realized": {**realized, "labelled_rows": rows, "labels_file": shown(path.name),
                         "labels_run_id": run.id},
        }  # fmt: skip
        session.add(report)
        signals = []
        for rule in rules:
            value = realized.get(rule.metric or "")
            if value is not None:
                signals.append(Signal(
                    rule, value < rule.below, rule.name,
                    f"{batch}: realized {rule.metric} {value:.3f} < {rule.below:g}",
                    details={"batch": batch, "dataset_version_id": report.dataset_version_id,
                             "metric": rule.metric, "value": value, "run_id": run.id},
                ))  # fmt: skip
        return run.id, alerting.apply_in(session, signals, run_id=run.id)
