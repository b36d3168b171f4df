"""``check_batch``: the monitor step of the loop for one scored batch.

The path: the batch's dataset version → its dataset's reference → the reference's drift
baseline (built once, then read from its artifact) → the champion's predictions for the batch
(from its score run, or scored now) → one polars pass over the batch → per-feature, label,
prediction and multivariate drift, estimated and (when the batch carries labels) realized
performance → one write transaction: a ``drift`` run with its metrics and lineage, a
``DriftReport`` with its ``FeatureDrift`` rows → the alert rules → the alert hooks.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import insert, select

from mldeck import formatting as fmt
from mldeck import provenance
from mldeck.data.readers import ReadError
from mldeck.errors import MldeckError, NotFound
from mldeck.monitor import alerts as alerting
from mldeck.monitor import drift, performance
from mldeck.monitor.alerts import Raised, Signal
from mldeck.monitor.drift import FeatureResult, MultivariateResult
from mldeck.monitor.performance import Estimate
from mldeck.monitor.settings import AlertRule, estimated_metric
from mldeck.store.artifacts import put_stream, verify
from mldeck.store.artifacts import resolve as resolve_path
from mldeck.store.engine import Store
from mldeck.store.models import (
    USABLE_STATUSES,
    Alias,
    Artifact,
    Dataset,
    DatasetVersion,
    DriftReport,
    FeatureDrift,
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
    utcnow,
)
from mldeck.workspace import Workspace


@dataclass
class MonitorResult:
    run_id: int
    report_id: int
    dataset_version_id: int
    batch: str
    reference: str
    rows: int
    features: list[FeatureResult]
    drift_share: float
    dataset_drift: bool
    share_threshold: float
    model: str | None = None
    # Why the champion's side (scores, their drift, estimated and realized performance) is
    # missing from a check with a champion: the batch lacks columns it needs.
    model_note: str | None = None
    multivariate: MultivariateResult | None = None
    # Why the joint distribution was not compared though the reference has its model.
    multivariate_note: str | None = None
    prediction: FeatureResult | None = None
    label: FeatureResult | None = None
    estimated: Estimate | None = None
    realized: dict[str, float | None] | None = None
    alerts: list[Raised] = field(default_factory=list)
    hook_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_drifted(self) -> int:
        return sum(f.drifted for f in self.features)

    @property
    def any_drift(self) -> bool:
        """Dataset drift, or drift of the joint distribution, the champion's scores or the label."""
        others = (self.multivariate, self.prediction, self.label)
        return self.dataset_drift or any(part is not None and part.drifted for part in others)

    @property
    def alerting(self) -> bool:
        """Whether the check calls for attention beyond drift: an alert of the batch's rules
        raised or still firing, or an alert about the store raised just now. An alert about the
        store opened earlier (a failed step, stale data) is listed but is not this batch's."""
        return any(a.scope == "batch" or a.new for a in self.alerts)

    @property
    def retrain_reasons(self) -> list[str]:
        """Why a retrain is warranted (empty when it is not): the alerts whose rules say so."""
        return [f"{a.rule}: {a.title}" for a in self.alerts if a.retrain and not a.older]

    def summary(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "reference": self.reference,
            "rows": self.rows,
            "model": self.model,
            "model_note": self.model_note,
            "n_features": len(self.features),
            "n_drifted": self.n_drifted,
            "drift_share": self.drift_share,
            "share_threshold": self.share_threshold,
            "dataset_drift": self.dataset_drift,
            "features": [f.as_dict() for f in self.features],
            "multivariate": None if self.multivariate is None else self.multivariate.as_dict(),
            "multivariate_note": self.multivariate_note,
            "prediction": None if self.prediction is None else self.prediction.as_dict(),
            "label": None if self.label is None else self.label.as_dict(),
            "estimated": None if self.estimated is None else self.estimated.as_dict(),
            "realized": self.realized,
            "seconds": self.seconds,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "report_id": self.report_id,
            "dataset_version_id": self.dataset_version_id,
            **self.summary(),
            "alerts": [
                {
                    "id": a.alert_id,
                    "rule": a.rule,
                    "severity": a.severity,
                    "title": a.title,
                    "new": a.new,
                    "scope": a.scope,
                    # Open or acknowledged: a script could not tell them apart.
                    "status": a.payload.get("status"),
                }
                for a in self.alerts
            ],
            "retrain_reasons": self.retrain_reasons,
            "hook_problems": self.hook_problems,
        }


def check_batch(
    workspace: Workspace,
    store: Store,
    source: int | str,
    *,
    trigger: str = RunTrigger.MANUAL,
    model: str | None = None,
    hooks: bool = True,
) -> MonitorResult:
    """Monitor one batch (a dataset version id or reference): drift, performance, alerts, and
    the hooks of the alerts it opened (unless not *hooks*: a job's runner runs them after its
    worker, where they do not count against the job's timeout)."""
    started = time.perf_counter()
    version, dataset, reference = _versions(store, source)
    batch = f"{dataset.name}:v{version.version}"
    ref_label = f"{dataset.name}:v{reference.version}"
    champion, model_name = _champion(workspace, store, model)
    run_id = _start(store, version, reference, batch, trigger, champion, model_name)
    try:
        check_column_settings(workspace, reference)
        baseline = _baseline(workspace, store, reference, run_id)
        frame = open_version(workspace, version, batch, check=True)  # the bytes ingested
        batch_summary = drift.summarize_batch(frame, baseline)
        result = _compare(workspace, baseline, batch_summary, champion, batch, ref_label)
        result.run_id, result.dataset_version_id = run_id, version.id
        lacking = _lacking(champion, frame) if champion is not None else []
        if lacking:
            # The features are still compared (the missing ones flagged as drifted); the
            # champion cannot score this batch, which is said, not a failed check.
            from mldeck.ml.registry import label

            result.model = label(model_name, champion)
            result.model_note = (f"not scored: the batch lacks columns {result.model} was "
                                 f"trained on: {_some(lacking)}")  # fmt: skip
            _log(store, run_id, result.model_note)
        elif champion is not None:
            try:
                _model_side(workspace, store, result, version, reference, champion, model_name,
                            baseline, frame, trigger, run_id)  # fmt: skip
            except MldeckError as exc:
                # A batch the champion cannot score (a column's type changed, infinite values)
                # is still compared: its drift is what says why (the whole check failed).
                result.prediction = result.estimated = result.realized = None
                result.model_note = f"not scored: {exc}"
                _log(store, run_id, result.model_note)
        rules = alerting.default_rules(workspace.settings)
        result.seconds = time.perf_counter() - started
        # The report, its metrics and the alerts it raises or clears: one transaction.
        result.report_id = _record(store, result, version, reference, champion, rules,
                                   workspace.settings.monitor.min_labelled_rows,
                                   workspace.settings.data.dataset)  # fmt: skip
    except BaseException as exc:
        _fail(store, run_id, exc)
        raise
    if not hooks:
        return result
    result.hook_problems = alerting.run_hooks(
        result.alerts,
        workspace.settings.monitor.alert_command,
        workspace.settings.monitor.alert_command_timeout,
        workspace.root,
    )
    if result.hook_problems:
        with store.write() as session:
            for problem in result.hook_problems:
                session.add(RunLog(run_id=run_id, level="warning", message=problem))
    return result


# -- what is compared -------------------------------------------------------------------------
def _versions(store: Store, source: int | str) -> tuple[DatasetVersion, Dataset, DatasetVersion]:
    from mldeck.store.queries import resolve_version

    version_id = source if isinstance(source, int) else resolve_version(store, str(source))
    with store.read() as session:
        version = session.get(DatasetVersion, version_id)
        if version is None:
            raise NotFound(f"no dataset version {version_id} (see 'mldeck data list')")
        dataset = session.get(Dataset, version.dataset_id)
        batch = f"{dataset.name}:v{version.version}"
        if version.status not in USABLE_STATUSES:
            raise MldeckError(f"{batch} was {version.status} by validation; it is not monitored")
        if dataset.reference_version_id is None:
            raise MldeckError(
                f"dataset {dataset.name} has no reference to compare with: ingest one with "
                "'mldeck data ingest FILE --reference' or set [data] reference"
            )
        if dataset.reference_version_id == version.id:
            raise MldeckError(f"{batch} is the reference itself; check a later batch")
        reference = session.get(DatasetVersion, dataset.reference_version_id)
        for row in (version, dataset, reference):
            session.expunge(row)
    return version, dataset, reference


def _champion(
    workspace: Workspace, store: Store, model: str | None
) -> tuple[ModelVersion | None, str | None]:
    from mldeck.ml.registry import CHAMPION, model_names

    with store.read() as session:
        query = (
            select(ModelVersion, RegisteredModel.name)
            .join(Alias, Alias.model_version_id == ModelVersion.id)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(Alias.name == CHAMPION)
            .order_by(RegisteredModel.name)
        )
        if model:
            query = query.where(RegisteredModel.name == model)
        rows = session.execute(query).all()
        for row in rows:
            session.expunge(row[0])
    if model and not rows:
        if model not in model_names(store):
            raise NotFound(f"no registered model {model!r} (see 'mldeck models list')")
        raise NotFound(f"model {model} has no champion (see 'mldeck models list')")
    if not rows:
        return None, None
    if len(rows) > 1:
        configured = workspace.settings.model.name
        for version, name in rows:
            if name == configured:
                return version, name
        raise MldeckError("several models have a champion; pick one (--model " + rows[0][1] + ")")
    return rows[0][0], rows[0][1]


def check_column_settings(workspace: Workspace, reference: DatasetVersion) -> None:
    """Refuse a ``[monitor.columns.NAME]`` or a feature_drift rule naming no column of the
    reference: a typo would leave the override unused, the rule never firing, silently. Checked
    at every check (the baseline is built once)."""
    profiled = (reference.profile or {}).get("columns", {})
    known = ", ".join(list(profiled)[:8]) + (", ..." if len(profiled) > 8 else "")
    unknown = sorted(set(workspace.settings.monitor.columns) - set(profiled) - {"score"})
    if unknown:
        from mldeck.errors import ConfigError

        raise ConfigError(
            f"[monitor.columns.{unknown[0]}] names no column of the reference"
            f" (its columns: {known}; 'score' is the champion's predictions)"
        )
    data = workspace.settings.data
    # Columns drift does not compare: a rule on one of them would never fire either.
    unwatched = {data.id_column: "the id column ([data] id_column)",
                 data.timestamp_column: "the timestamp column ([data] timestamp_column)"}  # fmt: skip
    unwatched.update((name, f"[monitor.columns.{name}] monitor = false")
                     for name, setting in workspace.settings.monitor.columns.items()
                     if not setting.monitor)  # fmt: skip
    for rule in alerting.default_rules(workspace.settings):
        if rule.when != "feature_drift":
            continue
        why = (f"no column of the reference (its columns: {known})"
               if rule.feature not in profiled else unwatched.get(rule.feature))  # fmt: skip
        if why:
            from mldeck.errors import ConfigError

            raise ConfigError(  # it would never fire
                f"the [[monitor.alerts]] rule {rule.name!r} watches feature {rule.feature!r}, "
                f"{why}: drift never compares it, so the rule would never fire"
            )


def monitored_columns(
    workspace: Workspace, reference: DatasetVersion, champion: ModelVersion | None
) -> dict[str, str]:
    """Each column of the reference drift looks at, with its kind (numeric or categorical)."""
    data = workspace.settings.data
    skip = {data.id_column, data.timestamp_column} - {None}
    profiled = (reference.profile or {}).get("columns", {})
    columns = {}
    for name, entry in profiled.items():
        if name in skip:
            continue
        setting = workspace.settings.monitor.columns.get(name)
        if setting is not None and not setting.monitor:
            continue
        kind = {"int": "numeric", "float": "numeric", "string": "categorical",
                "bool": "categorical"}.get(entry.get("kind"))  # fmt: skip
        if kind:
            columns[name] = kind
    return columns


def _target(workspace: Workspace, champion: ModelVersion | None) -> str | None:
    schema = champion.schema_ if champion is not None else {}
    return (schema or {}).get("target") or workspace.settings.model.target


def _compare(
    workspace: Workspace,
    baseline: dict[str, Any],
    batch_summary: dict[str, Any],
    champion: ModelVersion | None,
    batch: str,
    ref_label: str,
) -> MonitorResult:
    settings = workspace.settings.monitor
    target = _target(workspace, champion)
    reference_rows = baseline["n_rows"]
    features, label = [], None
    for name, spec in baseline["columns"].items():
        current = batch_summary["columns"].get(name)
        role = "label" if name == target else "feature"
        if current is None:
            # Labels often come later; a feature the batch lacks is said, not skipped.
            if role == "feature":
                features.append(drift.missing_column(name, spec, batch_summary["n_rows"],
                                                     reference_rows, settings))  # fmt: skip
            continue
        result = drift.compare_column(name, spec, current, reference_rows, settings, role)
        if role == "label":
            label = result
        else:
            features.append(result)
    features.sort(key=lambda f: (-f.severity if math.isfinite(f.severity) else -1e300, f.feature))
    n = len(features)
    share = sum(f.drifted for f in features) / n if n else 0.0
    model = baseline.get("multivariate")
    note = None
    if model and settings.multivariate and batch_summary.get("pca_error") is None:
        # Skipped without a word when the batch lacked one of the model's features.
        lacking = [f for f in model["features"] if f not in batch_summary["columns"]]
        note = (f"not compared: the batch lacks {_some(lacking)}" if lacking
                else "not compared: the batch has no rows")  # fmt: skip
    return MonitorResult(
        run_id=0, report_id=0, dataset_version_id=0, batch=batch, reference=ref_label,
        rows=batch_summary["n_rows"], features=features, drift_share=share,
        dataset_drift=bool(n) and share >= settings.drift_share,
        share_threshold=settings.drift_share, label=label,
        multivariate=drift.multivariate(baseline, batch_summary, settings),
        multivariate_note=note,
    )  # fmt: skip


# -- the reference's baselines (built once, kept as artifacts) ---------------------------------
def _cached(store: Store, workspace: Workspace, name: str) -> dict[str, Any] | None:
    with store.read() as session:
        row = session.execute(
            select(Artifact).where(Artifact.name == name).order_by(Artifact.id.desc()).limit(1)
        ).scalar()
    if row is None:
        return None
    path = resolve_path(workspace.root, row.path)
    try:
        verify(path, row.sha256)
        return drift.baseline_from_bytes(path.read_bytes())
    except (MldeckError, OSError, ValueError):
        return None  # a damaged cache is rebuilt


def _keep(
    store: Store, workspace: Workspace, name: str, kind: str, payload: dict[str, Any], run_id: int
) -> None:
    sha, stored, size = put_stream(
        workspace.artifacts_dir, io.BytesIO(drift.baseline_bytes(payload)), suffix=".json"
    )
    with store.write() as session:
        session.add(
            Artifact(
                run_id=run_id,
                name=name,
                kind=kind,
                sha256=sha,
                size_bytes=size,
                path=str(stored.relative_to(workspace.root)),
            )
        )


def _baseline(
    workspace: Workspace, store: Store, reference: DatasetVersion, run_id: int
) -> dict[str, Any]:
    # Named by its format and by what it summarises (the columns monitored, the outcome): a
    # baseline of an older format, or of columns since turned off or on, is built again.
    columns = monitored_columns(workspace, reference, None)
    outcome = _target(workspace, None)
    what = hashlib.sha256(json.dumps([columns, outcome], sort_keys=True).encode()).hexdigest()
    name = f"drift-baseline:v{drift.BASELINE_FORMAT}:{reference.sha256}:{what[:12]}"
    found = _cached(store, workspace, name)
    if found is not None:
        return found
    _log(store, run_id, f"building the drift baseline of the reference (once): {name}")
    frame = open_version(workspace, reference, "the reference", check=True)
    baseline = drift.build_baseline(frame, columns, seed=workspace.settings.model.seed,
                                    outcome=outcome)  # fmt: skip
    _keep(store, workspace, name, "drift_baseline", baseline, run_id)
    return baseline


def open_version(
    workspace: Workspace, version: DatasetVersion, label: str, *, check: bool = False
) -> pl.LazyFrame:
    path = resolve_path(workspace.root, version.stored_path)
    if check:
        verify(path, version.sha256)
    try:
        from mldeck.data.ingest import open_stored

        return open_stored(path, version, workspace.settings.data.csv_separator).frame
    except ReadError as exc:
        raise MldeckError(f"cannot read {label}: {exc}") from None


# -- the model's side: predictions, prediction drift, performance -----------------------------
def stored_predictions(
    workspace: Workspace, store: Store, dataset_version_id: int, model_version_id: int
) -> pl.DataFrame | None:
    """A model version's predictions for a dataset version (its newest successful score run's
    Parquet artifact, hash verified), or None when it never scored that batch."""
    found = batch_artifacts(store, dataset_version_id, RunKind.SCORE, "predictions",
                            Run.params["model_version_id"].as_integer() == model_version_id)  # fmt: skip
    return read_parquet_artifact(workspace, *found[0]) if found else None


def batch_artifacts(
    store: Store, dataset_version_id: int, run_kind: str, artifact_kind: str, *where: Any
) -> list[tuple[str, str]]:
    """(path, sha256) of the *artifact_kind* artifacts that successful *run_kind* runs on a
    dataset version kept, newest first."""
    with store.read() as session:
        rows = session.execute(
            select(Artifact.path, Artifact.sha256)
            .join(Run, Run.id == Artifact.run_id)
            .join(RunInput, RunInput.run_id == Run.id)
            .where(
                Run.kind == run_kind,
                Run.status == RunStatus.SUCCEEDED,
                RunInput.dataset_version_id == dataset_version_id,
                Artifact.kind == artifact_kind,
                *where,
            )
            .order_by(Run.id.desc(), Artifact.id.desc())
        ).all()
    return [(path, sha) for path, sha in rows]


def read_parquet_artifact(workspace: Workspace, path: str, sha256: str) -> pl.DataFrame:
    file = resolve_path(workspace.root, path)
    verify(file, sha256)
    return pl.read_parquet(file, glob=False)


def _predictions(
    workspace: Workspace, store: Store, version: DatasetVersion, champion: ModelVersion,
    model_name: str, trigger: str,
) -> pl.DataFrame:  # fmt: skip
    """The champion's predictions for the batch, scoring it first when it never did."""
    found = stored_predictions(workspace, store, version.id, champion.id)
    if found is not None:
        return found
    from mldeck.ml.scoring import score_batch

    scored = score_batch(workspace, store, version.id, model=model_name, trigger=trigger)
    file = resolve_path(workspace.root, scored.champion.artifact_path)
    verify(file, scored.champion.sha256)
    return pl.read_parquet(file, glob=False)


def _some(names: list[str], shown: int = 5) -> str:
    """The first *shown* of *names*, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _lacking(champion: ModelVersion, frame: pl.LazyFrame) -> list[str]:
    """The columns *champion* was trained on that the batch does not have."""
    features = (champion.schema_ or {}).get("features")
    if not isinstance(features, list):
        return []  # scoring says what it needs, or that it cannot tell
    present = set(frame.collect_schema().names())
    return [str(f) for f in features if str(f) not in present]


def _model_side(
    workspace: Workspace, store: Store, result: MonitorResult, version: DatasetVersion,
    reference: DatasetVersion, champion: ModelVersion, model_name: str,
    baseline: dict[str, Any], frame: pl.LazyFrame, trigger: str, run_id: int,
) -> None:  # fmt: skip
    from mldeck.ml.registry import label

    settings = workspace.settings.monitor
    result.model = label(model_name, champion)
    predictions = _predictions(workspace, store, version, champion, model_name, trigger)
    scores = predictions.get_column("score").to_numpy()
    # Prediction drift: the champion's scores on the batch against its scores on the reference.
    # [monitor.columns.score] monitor = false leaves it out (it was measured all the same).
    watched = workspace.settings.monitor.columns.get("score")
    if watched is None or watched.monitor:
        name = f"prediction-baseline:{champion.id}:{reference.sha256}"
        reference_scores = _cached(store, workspace, name)
        if reference_scores is None:
            _log(store, run_id, f"scoring the reference with {result.model} (once): {name}")
            from mldeck.ml.scoring import predict_frame

            ref_frame = open_version(workspace, reference, "the reference", check=True).collect()
            ref_scores, _ = predict_frame(workspace, store, champion, ref_frame, model_name)
            reference_scores = drift.build_baseline(
                pl.LazyFrame({"score": ref_scores}), {"score": "numeric"}
            ) if ref_scores is not None else {"columns": {}, "n_rows": 0}  # fmt: skip
            _keep(store, workspace, name, "prediction_baseline", reference_scores, run_id)
        if "score" in reference_scores["columns"] and np.isfinite(scores).any():
            current = drift.summarize_batch(predictions.lazy(), reference_scores)["columns"][
                "score"
            ]
            result.prediction = drift.compare_column(
                "score", reference_scores["columns"]["score"], current,
                reference_scores["n_rows"], settings, role="prediction",
            )  # fmt: skip
    schema = champion.schema_ or {}
    classes = schema.get("classes") or []
    metric = estimated_metric(workspace.settings.model.primary)
    if schema.get("task", "classification") != "classification" or len(classes) != 2:
        metric = None  # estimation needs a binary classifier's probabilities
    positive = classes[1] if len(classes) == 2 else None
    predicted = None
    if positive is not None:
        predicted = performance.class_index(predictions.get_column("prediction"), classes) == 1
        predicted = predicted.fill_null(False).to_numpy()
    if metric is not None and predicted is not None:
        result.estimated = performance.estimate(
            metric, scores, predicted, (champion.metrics or {}).get("calibration"),
            draws=settings.estimate_draws, seed=workspace.settings.model.seed,
            reference=_finite((champion.metrics or {}).get(metric)),
        )  # fmt: skip
    if positive is not None:
        # Realized: on the batch's own labels and, where it has none, those recorded later.
        from mldeck.monitor.labels import late_labels, realized_for

        target = _target(workspace, champion)
        own = None
        if target and target in frame.collect_schema():
            own = frame.select(target).collect().to_series()
        id_column = workspace.settings.data.id_column
        late = None
        if id_column and id_column in predictions.columns:
            late = late_labels(workspace, store, version.id)
        result.realized = realized_for(predictions, own, late, id_column, classes)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# -- alerts from a batch -------------------------------------------------------------------------
def batch_key(rule_name: str, batch: str, dataset: str | None) -> str:
    """The de-duplication key of a batch rule's alert: one alert per rule and dataset. Batches of
    the workspace's own ``[data] dataset`` keep the rule's name as it always was (alerts already
    open go on); another dataset's are the rule's name and the dataset's, so its checks neither
    repeat nor clear the other's alert."""
    name = batch.rsplit(":v", 1)[0]
    return rule_name if dataset is None or name == dataset else f"{rule_name} [{name}]"


def batch_signals(
    result: MonitorResult, rules: list, min_rows: int = 1, *, dataset: str | None = None
) -> list[Signal]:
    """The verdict of every batch rule on *result* (*min_rows*: the labelled rows a realized
    metric, or the rows an estimated one, needs to count; *dataset*: the workspace's, see
    ``batch_key``)."""
    signals = []
    by_feature = {f.feature: f for f in result.features}
    if result.label is not None:  # the label's drift too (a rule on it never fired)
        by_feature[result.label.feature] = result.label
    for rule in rules:
        key = batch_key(rule.name, result.batch, dataset)
        if rule.when == "dataset_drift":
            share, threshold = fmt.apart(result.drift_share, result.share_threshold, percent=True)
            signals.append(Signal(
                rule, result.dataset_drift, key,
                f"{result.batch}: {result.n_drifted} of {len(result.features)} features drifted "
                f"({share}, threshold {threshold})",
                details={"batch": result.batch, "dataset_version_id": result.dataset_version_id, "drifted": [f.feature for f in result.features
                                                             if f.drifted]},
            ))  # fmt: skip
        elif rule.when == "feature_drift" and rule.feature in by_feature:
            f = by_feature[rule.feature]
            signals.append(Signal(rule, f.drifted, key,
                                  f"{result.batch}: {f.feature} drifted ({f.method})",
                                  details={"batch": result.batch, "dataset_version_id": result.dataset_version_id, **f.as_dict()}))  # fmt: skip
        elif rule.when == "multivariate_drift" and result.multivariate is not None:
            m = result.multivariate
            signals.append(Signal(
                rule, m.drifted, key,
                f"{result.batch}: joint distribution changed (PCA error {m.error:.3f}, "
                f"reference {m.reference_error:.3f})",
                details={"batch": result.batch, "dataset_version_id": result.dataset_version_id, **m.as_dict()},
            ))  # fmt: skip
        elif rule.when == "prediction_drift" and result.prediction is not None:
            p = result.prediction
            signals.append(Signal(rule, p.drifted, key,
                                  f"{result.batch}: the champion's scores drifted ({p.method})",
                                  details={"batch": result.batch, "dataset_version_id": result.dataset_version_id, **p.as_dict()}))  # fmt: skip
        elif rule.when == "estimated_metric" and result.estimated is not None:
            e = result.estimated
            # As for realized figures: an estimate over fewer rows than min_rows (a batch of a
            # handful of rows) neither raises nor clears an alert.
            if rule.metric == e.metric and e.value is not None and result.rows >= min_rows:
                signals.append(Signal(
                    rule, e.value < rule.below, key,
                    f"{result.batch}: estimated {e.metric} {fmt.apart(e.value, rule.below, digits=3)[0]} "
                    f"< {rule.below:g}",
                    details={"batch": result.batch, "dataset_version_id": result.dataset_version_id, **e.as_dict()},
                ))  # fmt: skip
        elif rule.when == "realized_metric" and result.realized:
            signals += realized_signals([rule], result.batch, result.dataset_version_id,
                                        result.realized, min_rows, dataset=dataset)  # fmt: skip
    return signals


def realized_signals(
    rules: list, batch: str, dataset_version_id: int, realized: dict[str, Any], min_rows: int,
    *, dataset: str | None = None, **details: Any,
) -> list[Signal]:  # fmt: skip
    """The realized-metric rules' verdicts on a batch's *realized* figures; none below *min_rows*
    labelled rows (a metric on a handful of labels neither raises nor clears an alert)."""
    if int(realized.get("labelled_rows") or 0) < min_rows:
        return []
    signals = []
    for rule in rules:
        value = realized.get(rule.metric or "")
        if rule.when == "realized_metric" and value is not None:
            signals.append(Signal(
                rule, value < rule.below, batch_key(rule.name, batch, dataset),
                f"{batch}: realized {rule.metric} {fmt.apart(value, rule.below, digits=3)[0]} < {rule.below:g}",
                details={"batch": batch, "dataset_version_id": dataset_version_id,
                         "metric": rule.metric, "value": value, **details},
            ))  # fmt: skip
    return signals


# -- the store ----------------------------------------------------------------------------------
def _start(
    store: Store, version: DatasetVersion, reference: DatasetVersion, batch: str, trigger: str,
    champion: ModelVersion | None, model_name: str | None,
) -> int:  # fmt: skip
    now = utcnow()
    pid = os.getpid()
    run = Run(
        name=f"drift {batch}", kind=RunKind.DRIFT, trigger=trigger, status=RunStatus.RUNNING,
        created_at=now, started_at=now, heartbeat_at=now,
        params={"dataset_version_id": version.id, "reference_version_id": reference.id,
                "model_version_id": None if champion is None else champion.id,
                "model": model_name},
        tags={"dataset": batch},
        code_version=provenance.code_version(Path.cwd()),
        environment=provenance.environment(), user=provenance.current_user(),
        host=provenance.hostname(), pid=pid, pid_started_at=provenance.process_start_time(pid),
    )  # fmt: skip
    with store.write() as session:
        session.add(run)
        session.flush()
        session.add(RunInput(run_id=run.id, dataset_version_id=version.id, role="input"))
        session.add(RunInput(run_id=run.id, dataset_version_id=reference.id, role="reference"))
        return run.id


def _log(store: Store, run_id: int, message: str) -> None:
    with store.write() as session:
        session.add(RunLog(run_id=run_id, message=message))


def _fail(store: Store, run_id: int, exc: BaseException) -> None:
    status = RunStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    with store.write() as session:
        run = session.get(Run, run_id)
        run.status, run.ended_at = status, utcnow()
        run.error = str(exc) if isinstance(exc, MldeckError) else "".join(
            traceback.format_exception(exc)
        )  # fmt: skip
        session.add(run)


def metric_points(result: MonitorResult) -> dict[str, float | None]:
    """The per-batch figures stored as the drift run's metrics (what the charts draw)."""
    points: dict[str, float | None] = {
        "drift_share": result.drift_share,
        "n_drifted": float(result.n_drifted),
        "rows": float(result.rows),
    }
    if result.multivariate is not None:
        points["multivariate_error"] = result.multivariate.error
    if result.prediction is not None:
        points["prediction_drift"] = result.prediction.statistic
    if result.estimated is not None:
        e = result.estimated
        points[f"estimated_{e.metric}"] = e.value
        points[f"estimated_{e.metric}_lower"] = e.lower
        points[f"estimated_{e.metric}_upper"] = e.upper
    for name, value in (result.realized or {}).items():
        if name not in ("labelled_rows", "unclassed_labels"):  # counts, not metrics
            points[f"realized_{name}"] = value
    for f in result.features:
        points[f"drift.{f.feature}"] = f.statistic
    return points


def _record(
    store: Store, result: MonitorResult, version: DatasetVersion, reference: DatasetVersion,
    champion: ModelVersion | None, rules: list[AlertRule], min_rows: int = 1,
    dataset: str | None = None,
) -> int:  # fmt: skip
    now = utcnow()
    with store.write() as session:
        run = session.get(Run, result.run_id)
        run.status, run.ended_at, run.progress = RunStatus.SUCCEEDED, now, 1.0
        run.progress_message = f"{result.n_drifted}/{len(result.features)} features drifted" + (
            " (dataset drift)" if result.dataset_drift else ""
        )
        session.add(run)
        session.flush()  # the store's rules see this run succeeded
        alerting.retire_orphans(session, rules)
        signals = batch_signals(result, rules, min_rows, dataset=dataset)
        result.alerts = alerting.apply_in(session, signals, run_id=result.run_id)
        result.alerts += alerting.apply_in(session, alerting.store_signals_in(session, rules),
                                           run_id=result.run_id, scope="store")  # fmt: skip
        report = DriftReport(
            run_id=result.run_id, dataset_version_id=version.id,
            reference_version_id=reference.id,
            model_version_id=None if champion is None else champion.id,
            n_features=len(result.features), n_drifted=result.n_drifted,
            drift_share=result.drift_share, dataset_drift=result.dataset_drift,
            summary=_jsonable(result.summary()), created_at=now,
        )  # fmt: skip
        session.add(report)
        session.flush()
        extra = [r for r in (result.label, result.prediction) if r is not None]
        session.execute(
            insert(FeatureDrift),
            [
                {
                    "report_id": report.id,
                    # Cut as the ORM cuts a long text (these rows bypass it): PostgreSQL refused
                    # a feature name longer than its column, and the check failed.
                    "feature": fitted_value(FeatureDrift, "feature", f.feature),
                    "method": f.method,
                    "statistic": f.statistic,
                    "p_value": f.p_value,
                    "threshold": f.threshold,
                    "drifted": f.drifted,
                }
                for f in [*result.features, *extra]
            ],
        )
        points = [
            {
                "run_id": result.run_id,
                "key": fitted_value(Metric, "key", key),
                "value": _finite(value),
                "step": 0,
                "ts": now,
            }
            for key, value in metric_points(result).items()
        ]
        if points:
            session.execute(insert(Metric), points)
        return report.id


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value
