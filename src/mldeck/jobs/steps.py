"""What each kind of job does, inside its worker process.

Every step calls the same domain function the CLI calls (``train``, ``score_batch``,
``check_batch``, ...) and returns a JSON-able result, which the worker writes to the attempt's
``result.json``. Runs the domain function makes are linked to the job's run as children.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from mldeck import tracking
from mldeck.errors import MldeckError
from mldeck.store.engine import Store
from mldeck.store.models import Dataset, DatasetVersion, Run, RunInput
from mldeck.workspace import Workspace

SCORABLE = ("accepted", "warned")


# In a step's result: the alerts it opened, whose hooks the runner runs once the worker ended.
HOOK_ALERTS = "hook_alerts"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def newest_batch(workspace: Workspace, store: Store) -> DatasetVersion:
    """The newest accepted or warned version of the dataset that is not its reference."""
    name = workspace.settings.data.dataset
    with store.read() as session:
        dataset = session.execute(select(Dataset).where(Dataset.name == name)).scalar_one_or_none()
        if dataset is None:
            raise MldeckError(f"dataset {name!r} has no versions yet (ingest a batch first)")
        query = (
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.status.in_(SCORABLE))
            .order_by(DatasetVersion.arrived_at.desc(), DatasetVersion.id.desc())
        )
        if dataset.reference_version_id is not None:
            query = query.where(DatasetVersion.id != dataset.reference_version_id)
        version = session.execute(query.limit(1)).scalar_one_or_none()
    if version is None:
        raise MldeckError(f"dataset {name!r} has no accepted batch besides its reference")
    return version


def _batch_id(workspace: Workspace, store: Store, params: dict[str, Any]) -> int:
    given = params.get("dataset_version_id")
    if given is None:
        return newest_batch(workspace, store).id
    with store.read() as session:
        if session.get(DatasetVersion, int(given)) is None:
            raise MldeckError(f"no dataset version {given} (the schedule's dataset_version_id)")
    return int(given)


def health(workspace: Workspace, store: Store, run: tracking.ActiveRun, params: dict) -> dict:
    from mldeck.jobs.health import run_checks

    report = run_checks(workspace, store, run_id=run.id)
    for check in report.checks:
        run.log(f"{check.name}: {check.status} {check.message}",
                level="info" if check.status == "ok" else "warning")  # fmt: skip
    return {**report.as_dict(), HOOK_ALERTS: report.opened}


def train(workspace: Workspace, store: Store, run: tracking.ActiveRun, params: dict) -> dict:
    from mldeck.jobs.policies import actor_of
    from mldeck.ml.train import train as train_model

    trigger = str(params.get("trigger") or "schedule")
    result = train_model(workspace, store, trigger=trigger, progress=run.log,
                         actor=actor_of(trigger))  # fmt: skip
    return _plain(result.as_dict())


def retrain(workspace: Workspace, store: Store, run: tracking.ActiveRun, params: dict) -> dict:
    from mldeck.jobs.policies import retrain_and_decide

    return _plain(retrain_and_decide(workspace, store, run, params))


def score(workspace: Workspace, store: Store, run: tracking.ActiveRun, params: dict) -> dict:
    from mldeck.ml.scoring import score_batch

    version_id = _batch_id(workspace, store, params)
    trigger = str(params.get("trigger") or "schedule")
    earlier = _scored_by_champion(workspace, store, version_id)
    if earlier is not None:  # a retry, or a schedule with nothing new: no second output
        run.log(f"dataset version {version_id} was scored by the champion in run {earlier}")
        return {"dataset_version_id": version_id, "already_scored_by_run": earlier}
    result = score_batch(workspace, store, version_id, trigger=trigger)
    run.log(f"scored dataset version {version_id} (run {result.champion.run_id})")
    return _plain(result.as_dict())


def _scored_by_champion(workspace: Workspace, store: Store, version_id: int) -> int | None:
    """The succeeded score run of this batch by the current champion, if there is one."""
    from mldeck.errors import NotFound
    from mldeck.ml.registry import CHAMPION, resolve
    from mldeck.ml.train import TrainSpec

    try:
        champion = resolve(store, f"{TrainSpec.from_workspace(workspace).model}@{CHAMPION}")
    except (NotFound, MldeckError):
        return None
    with store.read() as session:
        runs = session.execute(
            select(Run)
            .join(RunInput, RunInput.run_id == Run.id)
            .where(Run.kind == "score", Run.status == "succeeded",
                   RunInput.dataset_version_id == version_id)
            .order_by(Run.id.desc())
        ).scalars()  # fmt: skip
        for found in runs:
            if found.params.get("model_version_id") == champion.id and not found.tags.get("shadow"):
                return found.id
    return None


def drift(workspace: Workspace, store: Store, run: tracking.ActiveRun, params: dict) -> dict:
    from mldeck.monitor import check_batch

    version_id = _batch_id(workspace, store, params)
    trigger = str(params.get("trigger") or "schedule")
    # The hooks of the alerts it opens run in the runner, after this worker: here they held the
    # job for as long as they ran, and outlived a worker killed at its timeout.
    result = check_batch(workspace, store, version_id, trigger=trigger, hooks=False)
    run.log(f"drift: {result.n_drifted} of {len(result.features)} features drifted on "
            f"{result.batch}; {len(result.alerts)} alerts")  # fmt: skip
    for reason in result.retrain_reasons:
        run.log(f"retrain warranted: {reason}", level="warning")
    opened = [alert.alert_id for alert in result.alerts if alert.new]
    return _plain({**result.as_dict(), HOOK_ALERTS: opened})


def evaluate(workspace: Workspace, store: Store, run: tracking.ActiveRun, params: dict) -> dict:
    """The champion's realized performance on the newest labelled batch."""
    from mldeck.ml import evaluate as ev
    from mldeck.ml.registry import CHAMPION, label, load_version, resolve
    from mldeck.ml.train import TrainSpec, load_dataset_versions

    spec = TrainSpec.from_workspace(workspace)
    version_id = _batch_id(workspace, store, params)
    with store.read() as session:
        batch = session.get(DatasetVersion, version_id)
    champion = resolve(store, f"{spec.model}@{CHAMPION}")
    data = load_dataset_versions(workspace, store, spec.dataset, separator=spec.csv_separator,
                                 shas=[batch.sha256])  # fmt: skip
    frame = data.frame
    if spec.target not in frame.columns:
        raise MldeckError(f"batch {version_id} has no {spec.target!r} column: nothing to evaluate")
    frame = frame.filter(frame[spec.target].is_not_null())
    if frame.height == 0:
        raise MldeckError(f"batch {version_id} has no labelled rows: nothing to evaluate")
    schema = champion.schema_ or {}
    model = load_version(workspace, store, champion)
    features = ev.prepare_features(frame, schema.get("features") or [], schema.get("dtypes"))
    evaluation = ev.evaluate(
        model, features, frame[spec.target].to_numpy(), task=schema.get("task", spec.task),
        primary=spec.primary_metric, classes=schema.get("classes"),
        segment=frame[spec.segment_column] if spec.segment_column in frame.columns else None,
        segment_column=spec.segment_column, importance=False, latency=False,
    )  # fmt: skip
    run.log_metrics({k: v for k, v in evaluation.scalars().items() if v is not None})
    with store.write() as session:
        session.add(RunInput(run_id=run.id, dataset_version_id=version_id, role="evaluation"))
    name = label(spec.model, champion.version)
    run.log(f"{name} on dataset version {version_id}: {spec.primary_metric} = "
            f"{evaluation.metrics.get(spec.primary_metric)}")  # fmt: skip
    return _plain({"model": name, "dataset_version_id": version_id, "rows": frame.height,
                   "metrics": evaluation.scalars()})  # fmt: skip


STEPS = {
    "health": health,
    "train": train,
    "retrain": retrain,
    "score": score,
    "drift": drift,
    "evaluate": evaluate,
}
