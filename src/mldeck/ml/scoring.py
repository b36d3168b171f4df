"""Batch scoring: the champion serves, the challenger (if any) is scored in shadow.

The path of a batch: a dataset version (or a file, ingested first) → its stored bytes, checked
against their sha256 → each model loaded from its verified artifact → predictions (the
``[data] id_column``, ``score``, ``prediction``) written as a content-addressed Parquet artifact
→ one ``score`` run per model with its lineage (``RunInput`` to the dataset version, the model
version in params and tags) and metrics: ``latency_ms`` for the batch (after a one-row
warm-up), ``cpu_seconds_per_1k`` predictions (``time.process_time``), ``rows``, ``mean_score``;
the shadow run also records its ``agreement`` with the champion. A shadow that fails is recorded
as a failed run and never stops the champion's predictions.
"""

from __future__ import annotations

import io
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import insert, select

from mldeck import provenance
from mldeck.data.readers import ReadError
from mldeck.errors import MldeckError, NotFound, interrupted
from mldeck.formatting import plural
from mldeck.ml.evaluate import cut_by_cast
from mldeck.ml.registry import CHALLENGER, CHAMPION, label, load_version, resolve
from mldeck.store.artifacts import put_stream, verify
from mldeck.store.artifacts import resolve as resolve_path
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alias,
    Artifact,
    Dataset,
    DatasetVersion,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    RunInput,
    RunKind,
    RunStatus,
    RunTrigger,
    utcnow,
)
from mldeck.workspace import Workspace

ROW_COLUMN = "row"  # the id column of predictions when [data] id_column is not set
SCORABLE = ("accepted", "warned")


@dataclass
class ModelScore:
    """One model's predictions for one batch."""

    run_id: int
    model: str
    version: int
    model_version_id: int
    alias: str
    shadow: bool
    rows: int
    artifact_path: str
    sha256: str
    latency_ms: float
    cpu_seconds_per_1k: float
    mean_score: float | None
    agreement: float | None = None  # shadow only: share of rows predicted like the champion

    @property
    def label(self) -> str:
        return label(self.model, self.version)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model": self.model,
            "version": self.version,
            "model_version_id": self.model_version_id,
            "alias": self.alias,
            "shadow": self.shadow,
            "rows": self.rows,
            "predictions": self.artifact_path,
            "sha256": self.sha256,
            "latency_ms": self.latency_ms,
            "cpu_seconds_per_1k": self.cpu_seconds_per_1k,
            "mean_score": self.mean_score,
            "agreement": self.agreement,
        }


@dataclass
class BatchScore:
    dataset_version_id: int
    dataset: str
    dataset_version: int
    champion: ModelScore
    shadow: ModelScore | None = None
    shadow_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset_version_id": self.dataset_version_id,
            "dataset": f"{self.dataset}:v{self.dataset_version}",
            "champion": self.champion.as_dict(),
            "shadow": None if self.shadow is None else self.shadow.as_dict(),
            "shadow_error": self.shadow_error,
        }


def score_batch(
    workspace: Workspace,
    store: Store,
    source: int | str | Path,
    *,
    model: str | None = None,
    trigger: str = RunTrigger.MANUAL,
    shadow: bool = True,
) -> BatchScore:
    """Score a batch with the champion of *model* (and its challenger in shadow).

    *source* is a dataset version id, a reference (``dataset:vN``, a sha256 prefix) or a data
    file, which is ingested (and validated) first; a rejected batch is not scored. Without
    *model*, the one registered model that has a champion is used.
    """
    # The model first: a command that cannot score ingests nothing (a file ingested is a
    # dataset version for good, and the next training's data). That includes the champion's
    # file: one modified or gone on disk is refused before the batch is taken in.
    name = model or _default_model(workspace, store)
    champion = resolve(store, f"{name}@{CHAMPION}")
    serving = load_version(workspace, store, champion)
    challenger = None
    if shadow:
        try:
            challenger = resolve(store, f"{name}@{CHALLENGER}")
        except NotFound:
            challenger = None
    if not isinstance(source, int) and Path(source).is_file():
        # A file lacking a column the champion needs is refused before it is ingested (it
        # was stored as an accepted version, which the next training then took in).
        _check_file_columns(workspace, Path(source), serving, champion, label(name, champion))
    version = _dataset_version(workspace, store, source, trigger)
    with store.read() as session:
        dataset = session.get(Dataset, version.dataset_id).name
    batch = f"{dataset}:v{version.version}"
    if version.status not in SCORABLE:
        raise MldeckError(f"{batch} was {version.status} by validation; it is not scored")
    frame = _read(workspace, version, batch)
    served = _score(workspace, store, frame, version, batch, name, champion, CHAMPION, trigger,
                    model=serving)  # fmt: skip
    result = BatchScore(version.id, dataset, version.version, served.score)
    if challenger is not None:
        try:
            shadowed = _score(workspace, store, frame, version, batch, name, challenger,
                              CHALLENGER, trigger, parent=served)  # fmt: skip
        except Exception as exc:  # the shadow never stops serving; its run records the failure
            result.shadow_error = str(exc) if isinstance(exc, MldeckError) else repr(exc)
        else:
            result.shadow = shadowed.score
    return result


def _check_file_columns(
    workspace: Workspace, path: Path, model: Any, version: ModelVersion, name: str
) -> None:
    from mldeck.data.readers import open_source

    try:
        columns = open_source(path, separator=workspace.settings.data.csv_separator).columns
    except ReadError:
        return  # said by validation, which rejects it
    _check_columns(_expected(model, version, name), columns, name)


def _dataset_version(
    workspace: Workspace, store: Store, source: int | str | Path, trigger: str
) -> DatasetVersion:
    from mldeck.store.queries import resolve_version

    if isinstance(source, int) and not isinstance(source, bool):
        version_id = source
    elif Path(source).is_file():
        from mldeck.data.ingest import ingest_file

        outcome = ingest_file(workspace, store, Path(source), trigger=trigger)
        if outcome.status not in SCORABLE:
            why = f": {outcome.reasons[0]}" if outcome.reasons else ""
            raise MldeckError(
                f"{source} was {outcome.status} by validation{why}; it is not scored "
                f"(see 'mldeck data show {outcome.dataset}:v{outcome.version}')"
            )
        version_id = outcome.version_id
    else:
        try:
            version_id = resolve_version(store, str(source))
        except NotFound:
            raise NotFound(
                f"{source} is neither a file nor a dataset version (give a path, an id, "
                "dataset:vN or a sha256 prefix)"
            ) from None
    with store.read() as session:
        version = session.get(DatasetVersion, version_id)
    if version is None:
        raise NotFound(f"no dataset version {version_id} (see 'mldeck data list')")
    return version


def _default_model(workspace: Workspace, store: Store) -> str:
    """The model to score with: the one that has a champion, or ``[model] name`` among several."""
    with store.read() as session:
        names = list(
            session.execute(
                select(RegisteredModel.name)
                .join(Alias, Alias.model_id == RegisteredModel.id)
                .where(Alias.name == CHAMPION)
                .order_by(RegisteredModel.name)
            ).scalars()
        )
    if not names:
        raise NotFound(
            "no model has a champion yet: promote a version first ('mldeck models promote')"
        )
    configured = getattr(getattr(workspace.settings, "model", None), "name", None)
    if len(names) > 1 and configured not in names:
        raise MldeckError(
            f"several models have a champion ({', '.join(names)}); pick one (--model)"
        )
    return configured if len(names) > 1 else names[0]


def _read(workspace: Workspace, version: DatasetVersion, batch: str) -> pl.DataFrame:
    path = resolve_path(workspace.root, version.stored_path)
    verify(path, version.sha256)  # score exactly the bytes the lineage names
    try:
        from mldeck.data.ingest import open_stored

        return open_stored(path, version, workspace.settings.data.csv_separator).frame.collect()
    except ReadError as exc:
        raise MldeckError(f"cannot read {batch}: {exc}") from None


@dataclass
class _Scored:
    score: ModelScore
    predictions: np.ndarray


def _score(
    workspace: Workspace,
    store: Store,
    frame: pl.DataFrame,
    batch_version: DatasetVersion,
    batch: str,
    name: str,
    version: ModelVersion,
    alias: str,
    trigger: str,
    parent: _Scored | None = None,
    model: Any | None = None,
) -> _Scored:
    """Score *frame* with *version* (its *model*, when already loaded) in a run of its own."""
    shadow = parent is not None
    run_id = _start(store, batch_version, batch, name, version, alias, trigger, shadow, parent)
    try:
        if model is None:
            model = load_version(workspace, store, version)
        shown = label(name, version)
        features = _features(model, version, frame, shown)
        if frame.height == 0:
            raise MldeckError(f"{batch} has no rows to score")
        # One row first: lazy imports and thread pools start outside the measured batch, so the
        # figures are the batch's cost and compare across processes and batches.
        _predict(model, features[:1], shown)
        started, cpu_started = time.perf_counter(), time.process_time()
        scores, predictions = _predict(model, features, shown)
        latency = (time.perf_counter() - started) * 1000
        cpu = time.process_time() - cpu_started
        table = _predictions_table(workspace, frame, scores, predictions)
        buffer = io.BytesIO()
        table.write_parquet(buffer)
        buffer.seek(0)
        sha, stored, size = put_stream(workspace.artifacts_dir, buffer, suffix=".parquet")
        rows = frame.height
        mean_score = None if scores is None else float(np.nanmean(scores))
        agreement = None
        if parent is not None:
            agreement = float(np.mean(_same(predictions, parent.predictions)))
        result = ModelScore(
            run_id=run_id, model=name, version=version.version, model_version_id=version.id,
            alias=alias, shadow=shadow, rows=rows,
            artifact_path=str(stored.relative_to(workspace.root)), sha256=sha,
            latency_ms=latency, cpu_seconds_per_1k=cpu / rows * 1000, mean_score=mean_score,
            agreement=agreement,
        )  # fmt: skip
        _finish(store, result, size, batch)
    except BaseException as exc:
        _fail(store, run_id, exc)
        raise
    return _Scored(result, predictions)


def _start(
    store: Store,
    batch_version: DatasetVersion,
    batch: str,
    name: str,
    version: ModelVersion,
    alias: str,
    trigger: str,
    shadow: bool,
    parent: _Scored | None,
) -> int:
    now = utcnow()
    pid = os.getpid()
    model_label = label(name, version)
    run = Run(
        name=f"score {batch} with {model_label}" + (" (shadow)" if shadow else ""),
        kind=RunKind.SCORE,
        trigger=trigger,
        status=RunStatus.RUNNING,
        created_at=now,
        started_at=now,
        heartbeat_at=now,
        params={
            "model": name,
            "version": version.version,
            "model_version_id": version.id,
            "alias": alias,
            "dataset_version_id": batch_version.id,
        },
        tags={"model": model_label, "alias": alias, "shadow": shadow, "dataset": batch},
        code_version=provenance.code_version(Path.cwd()),
        environment=provenance.environment(),
        user=provenance.current_user(),
        host=provenance.hostname(),
        pid=pid,
        pid_started_at=provenance.process_start_time(pid),
        parent_run_id=None if parent is None else parent.score.run_id,
    )
    with store.write() as session:
        session.add(run)
        session.flush()
        session.add(RunInput(run_id=run.id, dataset_version_id=batch_version.id, role="input"))
        return run.id


def _finish(store: Store, result: ModelScore, size: int, batch: str) -> None:
    now = utcnow()
    metrics = {
        "latency_ms": result.latency_ms,
        "cpu_seconds_per_1k": result.cpu_seconds_per_1k,
        "rows": float(result.rows),
        "mean_score": result.mean_score,
        "agreement": result.agreement,
    }
    prefix = "shadow-" if result.shadow else ""
    with store.write() as session:
        session.add(
            Artifact(
                run_id=result.run_id,
                name=f"{prefix}predictions-{result.model}-v{result.version}-{batch}.parquet",
                kind="predictions",
                path=result.artifact_path,
                sha256=result.sha256,
                size_bytes=size,
            )
        )
        session.execute(
            insert(Metric),
            [
                {"run_id": result.run_id, "key": key, "value": value, "step": 0, "ts": now}
                for key, value in metrics.items()
                if value is not None
            ],
        )
        run = session.get(Run, result.run_id)
        run.status, run.ended_at, run.progress = RunStatus.SUCCEEDED, now, 1.0
        session.add(run)


def _fail(store: Store, run_id: int, exc: BaseException) -> None:
    """End a score run that *exc* stopped: cancelled on Ctrl-C (the model and the batch did not
    fail: a person stopped it), failed with the traceback otherwise."""
    if interrupted(exc):
        status, error = RunStatus.CANCELLED, "interrupted (KeyboardInterrupt)"
    else:
        status, error = RunStatus.FAILED, "".join(traceback.format_exception(exc))
    with store.write() as session:
        run = session.get(Run, run_id)
        run.status, run.ended_at, run.error = status, utcnow(), error
        session.add(run)


def predict_frame(
    workspace: Workspace, store: Store, version: ModelVersion, frame: pl.DataFrame, name: str
) -> tuple[np.ndarray | None, np.ndarray]:
    """(score, prediction) of a model version on *frame*, read as the version was trained (the
    monitor uses it for the champion's scores on the reference)."""
    model = load_version(workspace, store, version)
    shown = label(name, version)
    return _predict(model, _features(model, version, frame, shown), shown)


def _expected(model: Any, version: ModelVersion, name: str) -> list[str]:
    """The columns the version was trained on, in its order."""
    schema = version.schema_ or {}
    expected = schema.get("features")
    if not (isinstance(expected, list) and all(isinstance(f, str) for f in expected)):
        expected = getattr(model, "feature_names_in_", None)
    if expected is None:
        raise MldeckError(
            f"{name} does not say which columns it needs (no features in its schema, no "
            "feature names in the model)"
        )
    return [str(column) for column in expected]


def _check_columns(expected: list[str], columns: list[str], name: str) -> None:
    missing = [column for column in expected if column not in columns]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MldeckError(
            f"the batch lacks columns {name} was trained on: {', '.join(missing[:5])}{more}"
        )


def _features(model: Any, version: ModelVersion, frame: pl.DataFrame, name: str) -> Any:
    """The columns the version was trained on, in its order and with its types (its schema: so a
    rolled-back version reads a batch as it did when it was trained)."""
    schema = version.schema_ or {}
    expected = _expected(model, version, name)
    _check_columns(expected, frame.columns, name)
    selected = frame.select(expected)
    dtypes = schema.get("dtypes") if isinstance(schema.get("dtypes"), dict) else {}
    for column in expected:
        wanted = dtypes.get(column)
        dtype = (
            getattr(pl, wanted, None) if isinstance(wanted, str) and wanted.isidentifier() else None
        )
        if dtype is None or str(selected.schema[column]) == wanted:
            continue
        cut = cut_by_cast(selected.get_column(column), dtype)
        if cut is not None:
            raise MldeckError(
                f"column {column!r} of the batch holds fractional values (such as {cut!r}), and "
                f"{name} was trained on whole numbers ({wanted}): they would be cut, not read"
            )
        try:
            selected = selected.with_columns(pl.col(column).cast(dtype, strict=True))
        except pl.exceptions.PolarsError:
            raise MldeckError(
                f"column {column!r} of the batch is {selected.schema[column]}, and {name} was "
                f"trained on {wanted}: its values cannot be read as {wanted}"
            ) from None
    for column, dtype in selected.schema.items():
        if dtype.is_float():
            infinite = int(selected.get_column(column).is_infinite().sum())
            if infinite:
                raise MldeckError(
                    f"column {column!r} of the batch holds {plural(infinite, 'infinite value')}: "
                    f"{name} cannot score them (refuse them at ingest: [data.columns."
                    f"{column}] allow_inf = false)"
                )
    if schema.get("input") == "pandas.DataFrame":
        return selected.to_pandas()
    return selected


def _predict(model: Any, features: Any, name: str) -> tuple[np.ndarray | None, np.ndarray]:
    """(score, prediction): the positive class's probability for a binary classifier, the
    predicted class's probability for more classes, None when the model gives no probability.
    The model's own failure (a category it cannot encode) is one line naming the model."""
    try:
        predictions = np.asarray(model.predict(features))
        proba = None
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(features), dtype=float)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:
        said = " ".join(str(exc).split())
        raise MldeckError(f"{name} failed to score the batch: {type(exc).__name__}: {said}"
                          ) from exc  # fmt: skip
    scores = None
    if proba is not None:
        scores = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba.max(axis=1)
    elif np.issubdtype(predictions.dtype, np.number):
        scores = predictions.astype(float)
    return scores, predictions


def _predictions_table(
    workspace: Workspace, frame: pl.DataFrame, scores: np.ndarray | None, predictions: np.ndarray
) -> pl.DataFrame:
    id_column = workspace.settings.data.id_column
    if id_column and id_column in frame.columns:
        ids = frame.get_column(id_column)
    else:
        ids = pl.Series(ROW_COLUMN, np.arange(frame.height), dtype=pl.Int64)
    values = predictions.tolist() if predictions.dtype == object else predictions
    return pl.DataFrame(
        [
            ids,
            pl.Series("score", scores, dtype=pl.Float64)
            if scores is not None
            else pl.Series("score", [None] * frame.height, dtype=pl.Float64),
            pl.Series("prediction", values),
        ]
    )


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether two models predicted the same class, row by row: by value, as labels are read
    (a model trained on 0.0/1.0 and one on 0/1 agree on 1.0 and 1; as text they never did)."""
    from mldeck.monitor.performance import names_class

    a_text, b_text = np.asarray(a).astype(str), np.asarray(b).astype(str)
    same = a_text == b_text
    rest = np.flatnonzero(~same)
    if rest.size:  # each distinct pair of differing texts judged once
        pairs, where = np.unique(np.stack([a_text[rest], b_text[rest]], axis=1), axis=0,
                                 return_inverse=True)  # fmt: skip
        alike = np.array([names_class(x, y) or names_class(y, x) for x, y in pairs], dtype=bool)
        same[rest] = alike[where.ravel()]
    return same
