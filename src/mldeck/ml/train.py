"""Training: ``[model]`` → a fitted model, evaluated next to the champion, gated, registered.

The path of ``mldeck run train``:

1. a run of kind ``train`` starts (the tracking API), with the reproducibility record: the
   resolved settings, seed, code version (git commit and dirty flag of the workspace, the entry
   point file's hash) and environment (Python, packages, platform);
2. the data: the dataset's accepted and warned versions (their stored files, hashes checked),
   or one file (``--data``); their ids and sha256 go into the record;
3. the split: by time when ``[data] timestamp_column`` is there (the newest ``test_size`` rows are
   the holdout), else by a seeded hash of each row's id (or values): a row keeps its side as
   data grows, so the champion is never evaluated on rows it was trained on;
4. optional cross-validation on the training part, then the fit: a scikit-learn pipeline
   (imputation + scaling for numbers, one-hot for categories, then ``estimator``) or the user's
   ``entry_point``;
5. evaluation on the holdout, and the champion's evaluation on the very same holdout;
6. the gates;
7. the model file (skops, content-addressed, written atomically), then ONE write transaction:
   artifact row, model version (with its audit event), gate results, lineage.

The version is registered last, so a run killed at any point leaves no version behind, and the
model file is renamed into place whole, so it never leaves a partial one either.

``reproduce`` retrains from a run's record (same data versions by sha256, same settings and
seed) and compares the metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import select

from mldeck import provenance, tracking
from mldeck.data.readers import ReadError, open_source, unsupported_type
from mldeck.errors import ConfigError, MldeckError, NotFound
from mldeck.ml import evaluate as ev
from mldeck.ml.gates import GateOutcome, check_gates
from mldeck.ml.model_files import load_version, save_model
from mldeck.ml.settings import METRICS
from mldeck.store.artifacts import ArtifactError, resolve, verify
from mldeck.store.engine import Store
from mldeck.store.models import (
    USABLE_STATUSES,
    Artifact,
    Dataset,
    DatasetVersion,
    GateResult,
    Metric,
    Run,
    RunInput,
    RunKind,
    RunStatus,
    RunTrigger,
)
from mldeck.workspace import Workspace

RECORD_KEY = "mldeck_train"  # marks a run's params as a training record reproduce can use
MIN_TRAIN_ROWS = 2


class TrainingError(MldeckError):
    """A training run failed for a reason the user can fix; the run is recorded as failed."""

    def __init__(self, message: str, run_id: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


# -- the resolved settings of one training ----------------------------------------------------
@dataclass(frozen=True)
class TrainSpec:
    """Everything that decides what a training produces (kept in the run's params)."""

    model: str
    dataset: str
    target: str
    features: list[str] | None
    task: str
    estimator: str | None
    params: dict[str, Any]
    entry_point: str | None
    seed: int
    test_size: float
    cv_folds: int
    segment_column: str | None
    primary_metric: str
    importance_repeats: int
    threads: int
    timestamp_column: str | None
    id_column: str | None
    csv_separator: str = ","
    newest_versions: int = 0  # the newest N usable versions only; 0: all

    @classmethod
    def from_workspace(cls, workspace: Workspace) -> TrainSpec:
        model = workspace.settings.model
        data = workspace.settings.data
        if not model.target:
            raise ConfigError(
                f"{workspace.config_path}: [model] target is not set: name the column to predict"
            )
        return cls(
            model=model.name,
            dataset=model.dataset or data.dataset,
            target=model.target,
            features=list(model.features) if model.features else None,
            task=model.task,
            estimator=None if model.entry_point else model.estimator_path,
            params=dict(model.params),
            entry_point=model.entry_point,
            seed=model.seed,
            test_size=model.test_size,
            cv_folds=model.cv_folds,
            segment_column=model.segment_column,
            primary_metric=model.primary,
            importance_repeats=model.importance_repeats,
            threads=model.threads,
            timestamp_column=data.timestamp_column,
            id_column=data.id_column,
            csv_separator=data.csv_separator,
            newest_versions=model.newest_versions,
        )

    def as_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainSpec:
        known = cls.__dataclass_fields__
        missing = [
            name
            for name, spec_field in known.items()
            if name not in params and spec_field.default is dataclasses.MISSING
        ]
        if missing:
            raise MldeckError(f"the training record lacks {', '.join(missing)}")
        return cls(**{name: params[name] for name in known if name in params})


# -- data ---------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    frame: pl.DataFrame
    versions: list[dict[str, Any]] = field(default_factory=list)
    file: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        if self.file is not None:
            return {"source": "file", **self.file}
        return {"source": "store", "versions": self.versions}


def _read(
    path: Path, separator: str, label: str, version: DatasetVersion | None = None
) -> pl.DataFrame:
    """*path* read whole: a stored *version* as its validation read it; a file with each CSV
    column polars misreads past its first rows read as text."""
    source = None
    try:
        if version is not None:
            from mldeck.data.ingest import open_stored

            source = open_stored(path, version, separator)
            return source.frame.collect()
        source = open_source(path, separator=separator)
        return source.read(lambda s: s.frame.collect())[0]
    except ReadError as exc:
        raise MldeckError(f"cannot read {label}: {exc}") from None
    except pl.exceptions.PolarsError as exc:  # one line: polars adds hints on lines of their own
        why = source.why(exc) if source is not None else str(exc).strip().splitlines()[0]
        raise MldeckError(f"cannot read {label}: {why}") from None


def _concat(frames: list[pl.DataFrame], labels: list[str]) -> pl.DataFrame:
    if len(frames) == 1:
        return frames[0]
    frames = _empty_columns_typed(frames)
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError as exc:
        raise MldeckError(
            f"the versions {', '.join(labels)} do not share column types, so they cannot be "
            f"trained on together: {exc}"
        ) from None


def _empty_columns_typed(frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """A column with no value in one version (read from a CSV as text) takes the type it has
    where it holds values: the text type won the concatenation, and one batch with an empty
    number column made that feature a category for every later retrain."""
    typed: dict[str, set[pl.DataType]] = {}
    for frame in frames:
        for name, dtype in frame.schema.items():
            if frame.height and frame.get_column(name).null_count() < frame.height:
                typed.setdefault(name, set()).add(dtype)
    out = []
    for frame in frames:
        casts = {
            name: next(iter(typed[name]))
            for name, dtype in frame.schema.items()
            if len(typed.get(name, ())) == 1 and dtype not in typed[name]
            and frame.get_column(name).null_count() == frame.height
        }  # fmt: skip
        out.append(
            frame.with_columns(pl.col(n).cast(t) for n, t in casts.items()) if casts else frame
        )
    return out


def load_dataset_versions(
    workspace: Workspace,
    store: Store,
    dataset: str,
    *,
    separator: str = ",",
    shas: list[str] | None = None,
    newest: int = 0,
) -> TrainingData:
    """The rows of the dataset's accepted and warned versions (the *newest* of them when not 0;
    or exactly the versions with the sha256 values *shas*), read from their stored files after
    checking their hashes."""
    with store.read() as session:
        query = select(DatasetVersion, Dataset.name).join(
            Dataset, Dataset.id == DatasetVersion.dataset_id
        )
        if shas is None:
            query = query.where(Dataset.name == dataset, DatasetVersion.status.in_(USABLE_STATUSES))
        else:
            query = query.where(DatasetVersion.sha256.in_(shas))
        rows = session.execute(query.order_by(Dataset.name, DatasetVersion.version)).all()
    if shas is None and newest:
        rows = rows[-newest:]  # one dataset: the newest versions last
    if shas is not None:
        found = {version.sha256 for version, _ in rows}
        lost = [sha[:12] for sha in shas if sha not in found]
        if lost:
            raise MldeckError(f"dataset versions {', '.join(lost)} are no longer in the store")
    if not rows:
        raise MldeckError(
            f"dataset {dataset!r} has no accepted or warned versions to train on "
            "(ingest data with 'mldeck data ingest', or pass --data FILE)"
        )
    frames, versions, labels = [], [], []
    for version, name in rows:
        label = f"{name}:v{version.version}"
        try:
            path = resolve(workspace.root, version.stored_path)
            verify(path, version.sha256)
        except ArtifactError as exc:
            raise MldeckError(f"{label}: {exc}") from None
        frame = _read(path, separator, label, version)
        frames.append(frame)
        labels.append(label)
        versions.append({"id": version.id, "dataset": name, "version": version.version,
                         "sha256": version.sha256, "rows": frame.height,
                         "status": version.status})  # fmt: skip
    return TrainingData(_concat(frames, labels), versions)


def load_file(path: Path, separator: str, *, sha256: str | None = None) -> TrainingData:
    """One data file (``--data``); with *sha256*, it must still have exactly that content."""
    path = path.expanduser().resolve()
    actual = provenance.file_sha256(path)
    if actual is None:
        raise MldeckError(f"cannot read {path}: no such file or not readable")
    if sha256 is not None and actual != sha256:
        raise MldeckError(
            f"{path} changed since it was trained on (sha256 {sha256[:12]}... then, "
            f"{actual[:12]}... now)"
        )
    frame = _read(path, separator, str(path))
    return TrainingData(frame, file={"path": str(path), "sha256": actual, "rows": frame.height})


# -- features, split, model ----------------------------------------------------------------------
def _is_categorical(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical, pl.Boolean) or isinstance(
        dtype, pl.Enum | pl.Categorical
    )


def resolve_features(spec: TrainSpec, schema: dict[str, pl.DataType]) -> list[str]:
    """The feature columns: the configured ones (checked), else every usable column but the
    target, the id and the timestamp."""
    if spec.features is not None:
        missing = [name for name in spec.features if name not in schema]
        if missing:
            raise MldeckError(
                f"[model] features {', '.join(map(repr, missing))} are not in the data "
                f"(columns: {', '.join(schema)})"
            )
        for name in spec.features:
            dtype = schema[name]
            if not (dtype.is_numeric() or _is_categorical(dtype)):
                raise MldeckError(
                    f"feature {name!r} has type {dtype}, which the model cannot take: derive a "
                    "number or a category from it, or leave it out of [model] features"
                )
        return list(spec.features)
    skip = {spec.target, spec.id_column, spec.timestamp_column}
    features = [
        name
        for name, dtype in schema.items()
        if name not in skip and (dtype.is_numeric() or _is_categorical(dtype))
    ]
    if not features:
        raise MldeckError(f"the data has no usable feature columns besides {spec.target!r}")
    return features


def _labels(frame: pl.DataFrame, target: str) -> np.ndarray:
    return frame[target].to_numpy()


def split(frame: pl.DataFrame, spec: TrainSpec) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """(train, holdout, how): by time when the timestamp column exists, else by a hash of each
    row's id (``[data] id_column``) or, without one, of its values.

    Either way a row keeps its side as data grows, so the champion, evaluated on a later
    candidate's holdout, is never scored on rows it was trained on (a random split drawn again
    over more data put about a third of them there, and the regression gate then failed better
    candidates). A hashed row is held out when its seeded 64-bit hash falls in the lowest
    ``test_size`` of the range: about that share of each class, and at least one row of each
    class on each side when the class has two."""
    n = frame.height
    n_test = max(1, math.ceil(n * spec.test_size))
    if n - n_test < MIN_TRAIN_ROWS:
        raise MldeckError(f"{n} rows are too few to hold out {spec.test_size:.0%} and train")
    if spec.timestamp_column and spec.timestamp_column in frame.columns:
        ordered = frame.sort(spec.timestamp_column, maintain_order=True, nulls_last=False)
        return ordered[: n - n_test], ordered[n - n_test :], "time"
    by_id = bool(spec.id_column and spec.id_column in frame.columns)
    keyed = [spec.id_column] if by_id else frame.columns
    keys = frame.select(pl.struct(keyed).hash(seed=spec.seed)).to_series().to_numpy()
    fraction = keys / 2.0**64
    held = fraction < spec.test_size
    groups = [np.arange(n)]
    if spec.task == "classification":
        labels = _labels(frame, spec.target)
        groups = [np.flatnonzero(labels == value) for value in np.unique(labels)]
    for rows in groups:
        if rows.size < 2:
            continue
        order = rows[np.argsort(fraction[rows], kind="stable")]
        if not held[order].any():
            held[order[0]] = True  # the row nearest the cut goes over it
        if held[order].all():
            held[order[-1]] = False
    if (~held).sum() < MIN_TRAIN_ROWS or not held.any():
        raise MldeckError(f"{n} rows are too few to hold out {spec.test_size:.0%} and train")
    how = "id hash" if by_id else "row hash"
    return frame.filter(pl.Series(~held)), frame.filter(pl.Series(held)), how


def _import_object(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MldeckError(f"cannot import estimator {path!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise MldeckError(
            f"cannot import estimator {path!r}: {module_name} has no {attr}"
        ) from None


def build_pipeline(spec: TrainSpec, schema: dict[str, pl.DataType], features: list[str]) -> Any:
    """Preprocessing from the schema (numbers: median imputation + scaling; categories:
    one-hot, unknown values ignored) followed by the configured estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    path = spec.estimator or ""
    cls = _import_object(path)
    if not isinstance(cls, type) or not hasattr(cls, "fit"):
        raise MldeckError(f"estimator {path!r} is not an estimator class (it has no fit method)")
    try:
        estimator = cls(**spec.params)
    except TypeError as exc:
        raise MldeckError(f"estimator {path} does not accept [model] params: {exc}") from None
    get_params = getattr(estimator, "get_params", None)
    if (
        callable(get_params)
        and "random_state" in get_params()
        and "random_state" not in spec.params
    ):
        estimator.set_params(random_state=spec.seed)
    needed = "predict_proba" if spec.task == "classification" else "predict"
    if not hasattr(estimator, needed):
        raise MldeckError(f"estimator {path} has no {needed}, which {spec.task} needs")
    numeric = [name for name in features if schema[name].is_numeric()]
    categorical = [name for name in features if name not in numeric]
    parts = []
    if numeric:
        parts.append(
            ("numbers",
             Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
             numeric)
        )  # fmt: skip
    if categorical:
        parts.append(
            ("categories",
             OneHotEncoder(handle_unknown="ignore", sparse_output=False),
             categorical)
        )  # fmt: skip
    preprocess = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


@dataclass
class EntryPoint:
    spec: str
    function: Callable[..., Any]
    file: Path | None


@contextlib.contextmanager
def importable(root: Path) -> Iterator[None]:
    """The workspace folder first on ``sys.path`` for the block (entry points import their
    sibling modules, at import time or later while fitting)."""
    folder = str(root)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def load_entry_point(root: Path, entry: str) -> EntryPoint:
    """Import ``module:function`` from the workspace folder (fresh, never a cached module)."""
    module_name, _, function_name = entry.partition(":")
    parts = module_name.split(".")
    for i in range(len(parts), 0, -1):
        sys.modules.pop(".".join(parts[:i]), None)
    importlib.invalidate_caches()
    with importable(root):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise MldeckError(
                f"cannot import entry point {entry!r} from {root}: {type(exc).__name__}: {exc}"
            ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise MldeckError(f"entry point {entry!r}: {module_name} has no function {function_name}")
    file = getattr(module, "__file__", None)
    return EntryPoint(entry, function, Path(file).resolve() if file else None)


def _check_model(model: Any, task: str, origin: str) -> Any:
    needed = "predict_proba" if task == "classification" else "predict"
    if model is None:
        raise MldeckError(f"{origin} returned None; it must return a fitted model")
    if not callable(getattr(model, needed, None)):
        raise MldeckError(
            f"{origin} returned a {type(model).__name__}, which has no {needed}; it must return "
            f"a fitted model with {needed} ({task})"
        )
    return model


def make_fitter(
    spec: TrainSpec, features: list[str], schema: dict[str, pl.DataType], entry: EntryPoint | None
) -> Callable[[pl.DataFrame], Any]:
    """A function fitting a fresh model on a frame holding the features and the target."""
    if entry is not None:
        origin = f"entry point {entry.spec!r}"

        def fit_entry(frame: pl.DataFrame) -> Any:
            train_frame = frame.select([*features, spec.target])
            try:
                model = entry.function(train_frame, spec.target, spec.seed)
            except SystemExit as exc:  # sys.exit(0) in it ended the training "succeeded"
                raise MldeckError(
                    f"{origin} called sys.exit({exc.code!r}): an entry point returns the fitted "
                    "model"
                ) from None
            except Exception as exc:
                raise MldeckError(f"{origin} raised {type(exc).__name__}: {exc}") from exc
            return _check_model(model, spec.task, origin)

        return fit_entry

    build_pipeline(spec, schema, features)  # fail on a bad estimator before any fitting

    def fit_pipeline(frame: pl.DataFrame) -> Any:
        pipeline = build_pipeline(spec, schema, features)
        try:
            pipeline.fit(frame.select(features), _labels(frame, spec.target))
        except Exception as exc:
            raise MldeckError(
                f"fitting {spec.estimator} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return pipeline

    return fit_pipeline


def cross_validate(
    spec: TrainSpec,
    train: pl.DataFrame,
    features: list[str],
    fit: Callable[[pl.DataFrame], Any],
    on_fold: Callable[[int], None],
) -> dict[str, float | None]:
    """Mean and standard deviation of the primary metric over ``cv_folds`` folds of *train*."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = _labels(train, spec.target)
    if spec.task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < spec.cv_folds:
            raise MldeckError(
                f"cv_folds = {spec.cv_folds} needs at least that many rows of every class "
                f"(the rarest has {counts.min()})"
            )
        folds = StratifiedKFold(spec.cv_folds, shuffle=True, random_state=spec.seed).split(
            np.zeros(len(y)), y
        )
    else:
        folds = KFold(spec.cv_folds, shuffle=True, random_state=spec.seed).split(np.zeros(len(y)))
    scores = []
    for fold, (fit_idx, test_idx) in enumerate(folds):
        model = fit(train[fit_idx])
        part = train[test_idx]
        x = part.select(features)
        classes = ev.class_labels(model, np.unique(y)) if spec.task == "classification" else None
        output = ev.model_outputs(model, x, spec.task)
        scores.append(
            ev.holdout_metrics(spec.task, _labels(part, spec.target), output, classes).get(
                spec.primary_metric
            )
        )
        on_fold(fold + 1)
    defined = [s for s in scores if s is not None]
    name = f"cv.{spec.primary_metric}"
    return {
        f"{name}.mean": float(np.mean(defined)) if defined else None,
        f"{name}.std": float(np.std(defined)) if defined else None,
    }


# -- one training -------------------------------------------------------------------------------
@dataclass
class Trained:
    """A fitted and evaluated model (before anything is registered)."""

    model: Any
    features: list[str]
    schema: dict[str, pl.DataType]
    classes: list[Any] | None
    train_rows: int
    holdout: pl.DataFrame
    y_holdout: np.ndarray
    split: str
    cv: dict[str, float | None]
    evaluation: ev.Evaluation
    fit_seconds: float


@dataclass
class TrainResult:
    run_id: int
    model: str
    version: int
    model_version_id: int
    artifact_sha256: str
    artifact_path: str
    metrics: dict[str, Any]
    champion: dict[str, Any] | None
    gates: list[GateOutcome]

    @property
    def gates_passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model": self.model,
            "version": self.version,
            "model_version_id": self.model_version_id,
            "artifact_sha256": self.artifact_sha256,
            "artifact_path": self.artifact_path,
            "gates_passed": self.gates_passed,
            "gates": [gate.as_dict() for gate in self.gates],
            "metrics": self.metrics,
            "champion": self.champion,
        }


class _Steps:
    """Progress to the run (and to the caller's callback)."""

    def __init__(self, run: tracking.ActiveRun, say: Callable[[str], None] | None) -> None:
        self.run = run
        self.say = say

    def __call__(self, fraction: float, message: str) -> None:
        self.run.set_progress(fraction, message)
        if self.say is not None:
            self.say(message)


def _threads(count: int) -> contextlib.AbstractContextManager[Any]:
    if count <= 0:
        return contextlib.nullcontext()
    # threadpoolctl limits the libraries loaded so far: load scikit-learn's OpenMP runtime first.
    with contextlib.suppress(ImportError):
        import sklearn.utils._openmp_helpers  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count)


def _set_run(store: Store, run_id: int, **fields: Any) -> None:
    with store.write() as session:
        run = session.get(Run, run_id)
        for name, value in fields.items():
            setattr(run, name, value)
        session.add(run)


def _points(values: dict[str, float | None]) -> dict[str, float]:
    """Metric points for the run: an undefined metric is stored as NaN (NULL in the store)."""
    return {key: math.nan if value is None else value for key, value in values.items()}


def _json_ready(value: Any) -> Any:
    """Strict-JSON values (NaN and infinities become None, numpy scalars plain numbers)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fit_and_evaluate(
    spec: TrainSpec,
    data: TrainingData,
    entry: EntryPoint | None,
    run: tracking.ActiveRun,
    step: _Steps,
) -> Trained:
    frame = data.frame
    for column, what in ((spec.target, "target"), (spec.segment_column, "segment_column")):
        if column is not None and column not in frame.columns:
            raise MldeckError(
                f"[model] {what} {column!r} is not a column of the data "
                f"(columns: {', '.join(frame.columns)})"
            )
    schema = dict(frame.schema)
    features = resolve_features(spec, schema)
    nulls = frame[spec.target].null_count()
    if nulls:
        frame = frame.filter(pl.col(spec.target).is_not_null())
        run.log(f"dropped {nulls} rows without a {spec.target} value", level="warning")
    if frame.height == 0:
        raise MldeckError(
            f"no rows to learn from: the data has no rows with a {spec.target!r} value"
            if nulls
            else "no rows to learn from: the data has a header and no rows"
        )
    if spec.task == "classification" and frame[spec.target].n_unique() < 2:
        raise MldeckError(f"the target {spec.target!r} has a single class; nothing to learn")
    if spec.task == "regression" and not frame.schema[spec.target].is_numeric():
        raise MldeckError(f"the target {spec.target!r} is not numeric; regression needs numbers")
    run.log_params({"features": features})
    train, holdout, how = split(frame, spec)
    run.log(f"split ({how}): {train.height} rows to train on, {holdout.height} held out")
    run.log_params({"split": how, "train_rows": train.height, "holdout_rows": holdout.height})
    fit = make_fitter(spec, features, schema, entry)
    cv: dict[str, float | None] = {}
    if spec.cv_folds:
        step(0.2, f"cross-validating ({spec.cv_folds} folds)")
        cv = cross_validate(
            spec, train, features, fit,
            lambda fold: step(0.2 + 0.3 * fold / spec.cv_folds,
                              f"cross-validation fold {fold}/{spec.cv_folds}"),
        )  # fmt: skip
        run.log_metrics(_points(cv))
    step(0.5, f"fitting on {train.height} rows")
    started = time.perf_counter()
    model = fit(train)
    fit_seconds = time.perf_counter() - started
    run.log(f"fitted in {fit_seconds:.2f} s")
    y_train = _labels(train, spec.target)
    classes = (
        ev.class_labels(model, np.unique(y_train).tolist())
        if spec.task == "classification"
        else None
    )
    step(0.65, f"evaluating on {holdout.height} held-out rows")
    y_holdout = _labels(holdout, spec.target)
    evaluation = ev.evaluate(
        model, holdout.select(features), y_holdout, task=spec.task, primary=spec.primary_metric,
        classes=classes,
        segment=holdout[spec.segment_column] if spec.segment_column else None,
        segment_column=spec.segment_column, seed=spec.seed,
        importance_repeats=spec.importance_repeats,
    )  # fmt: skip
    run.log_metrics(_points(evaluation.scalars()))
    if evaluation.calibration:
        for i, (true, pred) in enumerate(
            zip(evaluation.calibration["prob_true"], evaluation.calibration["prob_pred"],
                strict=True)
        ):  # fmt: skip
            run.log_metrics({"calibration.prob_true": true, "calibration.prob_pred": pred}, step=i)
    return Trained(model, features, schema, classes, train.height, holdout, y_holdout, how, cv,
                   evaluation, fit_seconds)  # fmt: skip


@dataclass
class _Champion:
    version_id: int
    version: int
    evaluation: ev.Evaluation | None
    error: str | None
    # When holdout rows were in the champion's training data: how many were left out, and the
    # candidate's metrics on the rows both were judged on (what the regression gate compares).
    left_out: int = 0
    candidate_metrics: dict[str, Any] | None = None
    note: str | None = None  # why the rows it trained on could not be told apart, if so

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version_id": self.version_id,
            "version": self.version,
            "error": self.error,
            "holdout_rows_left_out": self.left_out,
            **({"metrics": self.evaluation.as_dict()} if self.evaluation else {}),
            **({"candidate_metrics": self.candidate_metrics} if self.candidate_metrics else {}),
        }


MIN_JUDGED_ROWS = 10  # fewer holdout rows the champion did not train on: it is not judged


def _evaluate_champion(
    workspace: Workspace, store: Store, spec: TrainSpec, trained: Trained
) -> _Champion | None:
    """The champion evaluated on the candidate's holdout, less the rows it was trained on: a
    backfilled batch (older rows moved the time split's cut back) or a champion trained on a
    --data file later ingested put them there, and the champion, scored on rows it had learnt,
    failed better candidates' regression gate. The candidate is then judged on the same rows."""
    from mldeck.ml.registry import CHAMPION, resolve

    try:
        version = resolve(store, f"{spec.model}@{CHAMPION}")
    except NotFound:
        return None
    holdout, y_holdout = trained.holdout, trained.y_holdout
    seen, note = _trained_on(workspace, store, version, holdout)
    left_out = int(seen.sum()) if seen is not None else 0
    try:
        if left_out:
            holdout, y_holdout = holdout.filter(pl.Series(~seen)), y_holdout[~seen]
            if holdout.height < MIN_JUDGED_ROWS or (
                spec.task == "classification" and np.unique(y_holdout).size < 2
            ):
                raise MldeckError(
                    f"{left_out} of the {trained.holdout.height} holdout rows were in its "
                    f"training data; the {holdout.height} others are too few to judge it on"
                )
        model = load_version(workspace, store, version)
        schema = version.schema_ or {}
        if schema.get("task", spec.task) != spec.task:
            raise MldeckError(f"it is a {schema.get('task')} model, this is {spec.task}")

        def judged(model: Any, features: list[str], dtypes: dict | None, classes: Any) -> Any:
            return ev.evaluate(
                model, ev.prepare_features(holdout, features, dtypes), y_holdout, task=spec.task,
                primary=spec.primary_metric, classes=classes,
                segment=holdout[spec.segment_column] if spec.segment_column else None,
                segment_column=spec.segment_column, seed=spec.seed, importance=False,
            )  # fmt: skip

        evaluation = judged(model, schema.get("features") or trained.features,
                            schema.get("dtypes"), schema.get("classes"))  # fmt: skip
        candidate = None
        if left_out:
            mine = judged(trained.model, trained.features, None, trained.classes)
            candidate = {**mine.metrics, "holdout_rows": mine.n_rows}
    except MldeckError as exc:
        return _Champion(version.id, version.version, None, str(exc), left_out, note=note)
    return _Champion(version.id, version.version, evaluation, None, left_out, candidate, note)


def _trained_on(
    workspace: Workspace, store: Store, version: Any, holdout: pl.DataFrame
) -> tuple[np.ndarray | None, str | None]:
    """Which *holdout* rows the champion *version* was trained on (its run's record read again,
    its unlabelled rows dropped and split as its training did), by their values in the columns
    both share; (None, why) when its record cannot be read again (a --data file since moved, a
    version not made by training). Always read: whether a row keeps its side from one split to
    the next depends on more than the split's settings (the id column's type, a small class)."""
    with store.read() as session:
        run = session.get(Run, version.run_id) if version.run_id else None
    params = (run.params or {}) if run is not None else {}
    if RECORD_KEY not in params or "data" not in params or "spec" not in params:
        return None, "its training run has no record of its data"
    try:
        spec = TrainSpec.from_params(params["spec"])
        frame = _load_data(workspace, store, spec, None, recorded=params["data"]).frame
        if spec.target in frame.columns:  # as its training did before splitting
            frame = frame.filter(pl.col(spec.target).is_not_null())
        train_side, _, _ = split(frame, spec)
        shared = sorted(set(train_side.columns) & set(holdout.columns))
        if not shared or not train_side.height:
            return np.zeros(holdout.height, dtype=bool), None
        # Its rows as this holdout types them (a column read as Int64 then, Float64 now).
        mine = train_side.select(pl.col(c).cast(holdout.schema[c], strict=False) for c in shared)
        keys = mine.select(pl.struct(shared).hash(7)).to_series().implode()
        found = holdout.select(pl.struct(shared).hash(7)).to_series().is_in(keys)
        return found.to_numpy(), None
    except Exception as exc:  # a record that cannot be replayed is a note, never a crash
        return None, f"its training data cannot be read again ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _code_version(workspace: Workspace, entry: EntryPoint | None) -> dict[str, Any]:
    info = provenance.code_version(workspace.root, entry.file if entry else None)
    if entry is not None:
        info["entry_point_spec"] = entry.spec
    return info


@contextlib.contextmanager
def _failing_clearly(run: tracking.ActiveRun) -> Iterator[None]:
    """A user-fixable error ends the run as failed with that one line (traceback in its log)."""
    try:
        yield
    except MldeckError as exc:
        with contextlib.suppress(Exception):
            run.log("".join(traceback.format_exception(exc)), level="error")
        run.end(RunStatus.FAILED, error=str(exc))
        raise TrainingError(f"training run {run.id} failed: {exc}", run.id) from exc


def _start(
    workspace: Workspace,
    spec: TrainSpec,
    *,
    name: str,
    trigger: str,
    tags: dict[str, Any] | None = None,
) -> tracking.ActiveRun:
    return tracking.start_run(
        name=name,
        kind=RunKind.TRAIN,
        trigger=trigger,
        params={RECORD_KEY: 1, "spec": spec.as_params()},
        tags=tags,
        workspace=workspace,
    )


def _load_data(
    workspace: Workspace,
    store: Store,
    spec: TrainSpec,
    data_file: Path | None,
    recorded: dict[str, Any] | None = None,
) -> TrainingData:
    if recorded is not None:
        if recorded.get("source") == "file":
            return load_file(Path(recorded["path"]), spec.csv_separator, sha256=recorded["sha256"])
        shas = [v["sha256"] for v in recorded.get("versions", [])]
        return load_dataset_versions(
            workspace, store, spec.dataset, separator=spec.csv_separator, shas=shas
        )
    if data_file is not None:
        return load_file(data_file, spec.csv_separator)
    return load_dataset_versions(workspace, store, spec.dataset, separator=spec.csv_separator,
                                 newest=spec.newest_versions)  # fmt: skip


def train(
    workspace: Workspace,
    store: Store,
    *,
    data_file: Path | None = None,
    trigger: str = RunTrigger.MANUAL,
    progress: Callable[[str], None] | None = None,
    actor: str | None = None,
) -> TrainResult:
    """Train ``[model]`` on the workspace's data, evaluate it next to the champion, apply
    ``[gates]`` and register the candidate version (its audit events by *actor*, the user when
    None). Raises TrainingError (the run is recorded as failed) when something the user can fix
    goes wrong."""
    spec = TrainSpec.from_workspace(workspace)
    from mldeck.ml.registry import check_new_name

    check_new_name(store, spec.model)
    if data_file is not None and not data_file.is_file():
        what = "a folder, not a file" if data_file.is_dir() else "no such file"
        raise MldeckError(f"cannot train on {data_file}: {what}")
    if data_file is not None and (why := unsupported_type(data_file)) is not None:
        raise MldeckError(f"cannot train on {data_file}: {why}")
    warnings = _check_file(workspace, store, spec, data_file) if data_file is not None else []
    started = time.monotonic()
    with _start(workspace, spec, name=f"train {spec.model}", trigger=trigger) as run:
        step = _Steps(run, progress)
        with _failing_clearly(run), _threads(spec.threads), importable(workspace.root):
            step(0.01, "recording the code version and environment")
            entry = load_entry_point(workspace.root, spec.entry_point) if spec.entry_point else None
            code_version = _code_version(workspace, entry)
            _set_run(store, run.id, code_version=code_version)
            step(0.05, "reading the training data")
            data = _load_data(workspace, store, spec, data_file)
            run.log_params({"data": data.record()})
            for line in warnings:
                run.log(f"the data's expectations warn: {line}", level="warning")
            run.log(f"read {data.frame.height} rows ({_describe_data(data)})")
            trained = _fit_and_evaluate(spec, data, entry, run, step)
            step(0.8, "evaluating the champion on the same holdout")
            champion = _evaluate_champion(workspace, store, spec, trained)
            if champion is not None:
                if champion.note:
                    run.log(f"champion v{champion.version}: {champion.note}; judged on the whole "
                            "holdout, which may hold rows it was trained on", level="warning")  # fmt: skip
                if champion.left_out and champion.evaluation is not None:
                    run.log(f"champion v{champion.version} was trained on {champion.left_out} of "
                            "the holdout's rows: both are compared on the others")  # fmt: skip
                if champion.evaluation is not None:
                    run.log_metrics(_points(champion.evaluation.scalars(prefix="champion.")))
                else:
                    run.log(f"champion v{champion.version}: {champion.error}", level="warning")
            step(0.85, "checking the gates")
            outcomes = _gates(workspace, spec, trained, champion)
            for outcome in outcomes:
                run.log(
                    f"gate {outcome.gate} {'passed' if outcome.passed else 'FAILED'}: "
                    f"{outcome.detail}",
                    level="info" if outcome.passed else "warning",
                )
            step(0.9, "saving the model file")
            saved = save_model(workspace.root, workspace.artifacts_dir, trained.model)
            metrics = _json_ready(
                {
                    **trained.evaluation.as_dict(),
                    "cv": trained.cv,
                    "train_rows": trained.train_rows,
                    "split": trained.split,
                    "fit_seconds": trained.fit_seconds,
                    "gates_passed": all(o.passed for o in outcomes),
                    "champion": champion.as_dict() if champion else None,
                }
            )
            schema = _json_ready(_version_schema(spec, trained, saved.record()))
            step(0.95, "registering the model version")
            version_id, number = _register(store, spec, run.id, saved, metrics, schema,
                                           code_version, outcomes, data, actor=actor)  # fmt: skip
            run.set_tags(
                {
                    "model": spec.model,
                    "model_version": number,
                    "model_version_id": version_id,
                    "gates_passed": metrics["gates_passed"],
                    "duration_seconds": round(time.monotonic() - started, 3),
                }
            )
            run.log(f"registered {spec.model}:{number} ({saved.path})")
    return TrainResult(
        run_id=run.id,
        model=spec.model,
        version=number,
        model_version_id=version_id,
        artifact_sha256=saved.sha256,
        artifact_path=saved.path,
        metrics=metrics,
        champion=metrics["champion"],
        gates=outcomes,
    )


def _check_file(workspace: Workspace, store: Store, spec: TrainSpec, path: Path) -> list[str]:
    """*path* judged by ``[data]``'s expectations, as the versions trained on by default were
    (the checks of a batch's arrival aside: its row count and freshness): raises when it would be
    rejected; the warnings."""
    from mldeck.data.ingest import reference_of
    from mldeck.data.validate import validate

    settings = workspace.settings.data
    table = settings.table.model_copy(update={"min_rows": 0, "max_rows": None,
                                              "max_age_days": None})  # fmt: skip
    try:
        source = open_source(path, separator=spec.csv_separator)
    except ReadError as exc:
        raise MldeckError(f"cannot read {path}: {exc}") from None
    result = validate(source, settings.model_copy(update={"table": table}),
                      reference=reference_of(store, spec.dataset))  # fmt: skip
    if result.read_error:
        raise MldeckError(f"cannot read {path}: {result.read_error}")
    if result.n_rows == 0:  # said as such when the file is read
        return []
    if result.status == "rejected":
        reasons = [r for r in result.reasons() if not r.startswith("warning, ")]
        shown = "; ".join(reasons[:5]) + (
            f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
        )
        raise MldeckError(
            f"cannot train on {path}: it fails the expectations of mldeck.toml ([data]): {shown} "
            "('mldeck data ingest' shows the whole report)"
        )
    return result.reasons()


def _describe_data(data: TrainingData) -> str:
    if data.file is not None:
        return data.file["path"]
    return ", ".join(f"{v['dataset']}:v{v['version']}" for v in data.versions)


def _gates(
    workspace: Workspace, spec: TrainSpec, trained: Trained, champion: _Champion | None
) -> list[GateOutcome]:
    evaluation = trained.evaluation
    label = f"champion v{champion.version}" if champion else "the champion"
    return check_gates(
        workspace.settings.gates,
        evaluation.metrics,
        champion_metrics=champion.evaluation.metrics if champion and champion.evaluation else None,
        compared_metrics=champion.candidate_metrics if champion else None,
        compared_on=(
            f"on the {trained.holdout.height - champion.left_out} holdout rows "
            f"{label} was not trained on"
        )
        if champion and champion.left_out
        else "",
        champion_label=label,
        champion_error=champion.error if champion else None,
        fairness_gap=evaluation.fairness_gap,
        primary_metric=spec.primary_metric,
        segment_column=spec.segment_column,
        latency_ms_per_1k=evaluation.latency_ms_per_1k,
    )


def _version_schema(spec: TrainSpec, trained: Trained, model_file: dict[str, Any]) -> dict:
    return {
        "input": "polars.DataFrame",
        "features": trained.features,
        "dtypes": {name: str(trained.schema[name]) for name in trained.features},
        "target": spec.target,
        "target_dtype": str(trained.schema[spec.target]),
        "task": spec.task,
        "classes": trained.classes,
        "dataset": spec.dataset,
        "timestamp_column": spec.timestamp_column,
        "id_column": spec.id_column,
        "segment_column": spec.segment_column,
        "estimator": spec.entry_point or spec.estimator,
        "model_file": model_file,
    }


def _register(
    store: Store,
    spec: TrainSpec,
    run_id: int,
    saved: Any,
    metrics: dict[str, Any],
    schema: dict[str, Any],
    code_version: dict[str, Any],
    outcomes: list[GateOutcome],
    data: TrainingData,
    *,
    actor: str | None = None,
) -> tuple[int, int]:
    """Artifact, version (with its audit event), gate results and lineage: one transaction."""
    from mldeck.ml.registry import register_version

    with store.write() as session:
        artifact = Artifact(
            run_id=run_id,
            name=f"{spec.model}.skops",
            kind="model",
            path=saved.path,
            sha256=saved.sha256,
            size_bytes=saved.size_bytes,
        )
        session.add(artifact)
        session.flush()
        version = register_version(
            session,
            spec.model,
            run_id=run_id,
            artifact_id=artifact.id,
            metrics=metrics,
            schema=schema,
            code_version=code_version,
            actor=actor,
        )
        for outcome in outcomes:
            session.add(GateResult(model_version_id=version.id, run_id=run_id,
                                   **_json_ready(outcome.as_dict())))  # fmt: skip
        _record_inputs(session, run_id, data)
        session.flush()
        return version.id, version.version


def _record_inputs(session: Any, run_id: int, data: TrainingData) -> None:
    """Lineage: the dataset versions *run_id* trained on (for a ``--data`` file, a stored
    version holding the same bytes, if any), in the caller's write transaction (a training's
    registration, a reproduction's own)."""
    ids = [item["id"] for item in data.versions]
    if data.file is not None:
        same = session.execute(
            select(DatasetVersion.id)
            .where(DatasetVersion.sha256 == data.file["sha256"])
            .order_by(DatasetVersion.id)
            .limit(1)
        ).scalar()
        ids += [same] if same is not None else []
    for version_id in ids:
        session.add(RunInput(run_id=run_id, dataset_version_id=version_id, role="train"))


# -- reproduce ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricMatch:
    name: str
    old: float | None
    new: float | None
    match: bool

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "old": self.old, "new": self.new, "match": self.match}


@dataclass
class ReproduceResult:
    run_id: int
    new_run_id: int
    matches: list[MetricMatch]
    notes: list[str]

    @property
    def all_match(self) -> bool:
        return all(m.match for m in self.matches)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "new_run_id": self.new_run_id,
            "all_match": self.all_match,
            "metrics": [m.as_dict() for m in self.matches],
            "notes": self.notes,
        }


def _last_metrics(store: Store, run_id: int) -> dict[str, float | None]:
    with store.read() as session:
        rows = session.execute(
            select(Metric.key, Metric.value)
            .where(Metric.run_id == run_id)
            .order_by(Metric.key, Metric.step, Metric.id)
        ).all()
    return {key: value for key, value in rows}


def _differences(run: Run, code_version: dict[str, Any], environment: dict[str, Any]) -> list[str]:
    notes = []
    old_code = run.code_version or {}
    if old_code.get("git_commit") != code_version.get("git_commit"):
        notes.append(
            f"git commit differs: {str(old_code.get('git_commit'))[:12]} then, "
            f"{str(code_version.get('git_commit'))[:12]} now"
        )
    elif old_code.get("git_dirty") or code_version.get("git_dirty"):
        notes.append("the workspace had uncommitted changes (git dirty)")
    if old_code.get("entry_point_sha256") != code_version.get("entry_point_sha256"):
        notes.append("the entry point file changed since (its sha256 differs)")
    old_packages = (run.environment or {}).get("packages", {})
    new_packages = environment.get("packages", {})
    for name in sorted(set(old_packages) | set(new_packages)):
        if old_packages.get(name) != new_packages.get(name):
            notes.append(
                f"{name} {old_packages.get(name, 'absent')} then, "
                f"{new_packages.get(name, 'absent')} now"
            )
    old_python = (run.environment or {}).get("python")
    if old_python and old_python != environment.get("python"):
        notes.append(f"Python {old_python} then, {environment.get('python')} now")
    return notes


def reproduce(
    workspace: Workspace,
    store: Store,
    run_ref: str,
    *,
    tolerance: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> ReproduceResult:
    """Retrain from the record of training run *run_ref* (same data versions by sha256, same
    settings and seed) in a new run, and compare the holdout metrics (equal within
    *tolerance*). Nothing is registered."""
    from mldeck.store.queries import resolve_run

    run_id = resolve_run(store, run_ref)
    with store.read() as session:
        original = session.get(Run, run_id)
    params = original.params or {}
    if original.kind != RunKind.TRAIN or RECORD_KEY not in params or "data" not in params:
        raise MldeckError(
            f"run {run_id} is not a training run made by 'mldeck run train'; "
            "there is no record to reproduce it from"
        )
    if original.status != RunStatus.SUCCEEDED:
        raise MldeckError(f"run {run_id} did not succeed ({original.status}); nothing to compare")
    spec = TrainSpec.from_params(params["spec"])
    if params.get("features"):
        spec = TrainSpec(**{**spec.as_params(), "features": list(params["features"])})
    started = time.monotonic()
    old = _last_metrics(store, run_id)
    compared = [*METRICS[spec.task], "fairness_gap", *sorted(k for k in old if k.startswith("cv."))]
    compared = [name for name in compared if name in old or name in METRICS[spec.task]]
    with _start(workspace, spec, name=f"reproduce run {run_id}", trigger=RunTrigger.MANUAL,
                tags={"reproduce_of": run_id}) as run:  # fmt: skip
        step = _Steps(run, progress)
        with _failing_clearly(run), _threads(spec.threads), importable(workspace.root):
            step(0.01, f"reproducing run {run_id}")
            entry = load_entry_point(workspace.root, spec.entry_point) if spec.entry_point else None
            code_version = _code_version(workspace, entry)
            environment = provenance.environment()
            _set_run(store, run.id, code_version=code_version)
            notes = _differences(original, code_version, environment)
            for note in notes:
                run.log(note, level="warning")
            step(0.05, "reading the same data versions")
            data = _load_data(workspace, store, spec, None, recorded=params["data"])
            run.log_params({"data": data.record(), "reproduce_of": run_id})
            with store.write() as session:
                _record_inputs(session, run.id, data)
            trained = _fit_and_evaluate(spec, data, entry, run, step)
            new = {**trained.evaluation.metrics, "fairness_gap": trained.evaluation.fairness_gap,
                   **trained.cv}  # fmt: skip
            matches = [_match(name, old.get(name), new.get(name), tolerance) for name in compared]
            result = ReproduceResult(run_id, run.id, matches, notes)
            run.set_tags({"reproduced": result.all_match,
                          "duration_seconds": round(time.monotonic() - started, 3)})  # fmt: skip
    return result


def _match(name: str, old: float | None, new: float | None, tolerance: float) -> MetricMatch:
    if old is None or new is None:
        return MetricMatch(name, old, new, old is None and new is None)
    return MetricMatch(name, old, float(new), abs(old - float(new)) <= tolerance)
