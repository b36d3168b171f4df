"""Evaluating a fitted model on a holdout: metrics, calibration, slices, importance, latency.

Models take a polars DataFrame of their feature columns (``prepare_features``) and answer with
``predict_proba`` (classification) or ``predict`` (regression). Everything here is seeded, so the
same model on the same holdout gives the same numbers (except latency, which is measured).

Metric names are those of :mod:`mldeck.ml.settings` (``roc_auc``, ``log_loss``, ``rmse``, ...);
a metric that is undefined on the holdout (ROC AUC with one class present) is ``None``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from mldeck.errors import MldeckError
from mldeck.ml.settings import LOWER_IS_BETTER, METRICS
from mldeck.store.models import Metric, fitted_value

LATENCY_ROWS = 1000
LATENCY_REPEATS = 5
CALIBRATION_BINS = 10
MIN_SLICE_ROWS = 10
TOP_FEATURES = 10
NULL_SLICE = "(null)"


class EvaluationError(MldeckError):
    """A model cannot be evaluated on the holdout."""


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def prepare_features(
    frame: pl.DataFrame, features: Sequence[str], dtypes: dict[str, str] | None = None
) -> pl.DataFrame:
    """The model's input: *features* of *frame* in order, cast to the training dtypes if given."""
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise EvaluationError(f"the data has no column {', '.join(map(repr, missing))}")
    selected = frame.select(features)
    if not dtypes:
        return selected
    casts = {}
    for name in features:
        wanted = dtypes.get(name)
        if wanted is None or str(selected.schema[name]) == wanted:
            continue
        target = _dtype(wanted)
        if target is not None:
            casts[name] = target
    if not casts:
        return selected
    for name, target in casts.items():
        cut = cut_by_cast(selected.get_column(name), target)
        if cut is not None:
            raise EvaluationError(
                f"column {name!r} holds fractional values (such as {cut!r}) and the model was "
                f"trained on whole numbers ({dtypes[name]}): they would be cut, not read"
            )
    try:
        return selected.with_columns(pl.col(name).cast(t) for name, t in casts.items())
    except pl.exceptions.PolarsError:
        # polars' message spans many lines (a gate's detail and a run's log show one): name the
        # column and its offending values instead.
        raise EvaluationError(_cast_failure(selected, casts, dtypes)) from None


def cut_by_cast(column: pl.Series, target: Any) -> float | None:
    """A value of *column* that a cast to *target* would cut instead of read (12.99 read as the
    whole number 12: polars truncates without a word), if there is one."""
    if not (column.dtype.is_float() and target.is_integer()):
        return None
    cut = column.is_finite() & (column != column.floor())
    return float(column.filter(cut)[0]) if cut.any() else None


def _cast_failure(
    frame: pl.DataFrame, casts: dict[str, pl.DataType], dtypes: dict[str, str]
) -> str:
    for name, target in casts.items():
        column = frame.get_column(name)
        lost = column.is_not_null() & column.cast(target, strict=False).is_null()
        count = int(lost.sum())
        if count:
            example = column.filter(lost)[0]
            return (
                f"the data does not have the training's column types: column {name!r} is "
                f"{column.dtype} and the model was trained on {dtypes[name]}; {count} of "
                f"{frame.height} values cannot be read as {dtypes[name]} (such as {example!r})"
            )
    names = ", ".join(repr(name) for name in casts)
    return f"the data does not have the training's column types: {names} cannot be converted"


def _dtype(name: str) -> pl.DataType | None:
    simple = {
        "Int8": pl.Int8, "Int16": pl.Int16, "Int32": pl.Int32, "Int64": pl.Int64,
        "UInt8": pl.UInt8, "UInt16": pl.UInt16, "UInt32": pl.UInt32, "UInt64": pl.UInt64,
        "Float32": pl.Float32, "Float64": pl.Float64, "String": pl.String, "Boolean": pl.Boolean,
    }  # fmt: skip
    found = simple.get(name)
    return found() if found is not None else None


def model_outputs(model: Any, features: pl.DataFrame, task: str) -> np.ndarray:
    """Class probabilities (n x classes) for classification, predictions (n) for regression."""
    try:
        if task == "classification":
            output = np.asarray(model.predict_proba(features), dtype=float)
            if output.ndim != 2 or output.shape[0] != features.height:
                raise EvaluationError(
                    f"predict_proba returned shape {output.shape} for {features.height} rows"
                )
        else:
            output = np.asarray(model.predict(features), dtype=float).reshape(-1)
            if output.shape[0] != features.height:
                raise EvaluationError(
                    f"predict returned {output.shape[0]} values for {features.height} rows"
                )
    except EvaluationError:
        raise
    except Exception as exc:
        raise EvaluationError(
            f"the model cannot predict on the holdout ({type(exc).__name__}: {exc})"
        ) from None
    return output


def class_labels(model: Any, fallback: Sequence[Any] | None = None) -> list[Any]:
    """The class labels in the order of predict_proba's columns."""
    labels = getattr(model, "classes_", None)
    if labels is None:
        if fallback is None:
            raise EvaluationError("the model has no classes_ and no labels were given")
        labels = fallback
    return [_plain(label) for label in np.asarray(labels).tolist()]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def holdout_metrics(
    task: str,
    y: np.ndarray,
    output: np.ndarray,
    classes: Sequence[Any] | None = None,
    *,
    only: str | None = None,
) -> dict[str, float | None]:
    """The task's metrics (settings.METRICS) of *output* (model_outputs) against *y*; with
    *only*, just that one."""
    from sklearn import metrics as skm

    if task == "regression":
        compute: dict[str, Callable[[], Any]] = {
            "mae": lambda: skm.mean_absolute_error(y, output),
            "rmse": lambda: skm.root_mean_squared_error(y, output),
            "r2": lambda: skm.r2_score(y, output) if len(y) > 1 else None,
        }
    else:
        compute = _classification_metrics(skm, y, output, classes)
    names = [only] if only is not None else list(METRICS[task])
    return {name: _finite(compute[name]()) for name in names}


def _classification_metrics(
    skm: Any, y: np.ndarray, output: np.ndarray, classes: Sequence[Any] | None
) -> dict[str, Callable[[], Any]]:
    labels = np.asarray(classes)
    if output.shape[1] != len(labels):
        raise EvaluationError(
            f"predict_proba gave {output.shape[1]} columns for {len(labels)} classes"
        )
    predicted = labels[np.argmax(output, axis=1)]
    present = set(np.unique(y).tolist())
    known = set(labels.tolist())
    binary = len(labels) == 2
    if binary:
        pos = labels[1]
        y_pos = (y == pos).astype(int)
        counting = {"average": "binary", "pos_label": pos, "zero_division": 0}

        def roc_auc() -> Any:
            return skm.roc_auc_score(y_pos, output[:, 1]) if len(present) == 2 else None

        def brier() -> Any:
            return skm.brier_score_loss(y_pos, output[:, 1])

    else:
        counting = {"average": "macro", "labels": labels, "zero_division": 0}

        def roc_auc() -> Any:
            if present != known:
                return None
            return skm.roc_auc_score(y, output, multi_class="ovr", labels=labels)

        def brier() -> Any:
            return skm.brier_score_loss(y, output, labels=labels) if present <= known else None

    def log_loss() -> Any:
        # Labels the model never saw make log loss undefined.
        return skm.log_loss(y, output, labels=labels) if present <= known else None

    return {
        "accuracy": lambda: skm.accuracy_score(y, predicted),
        "precision": lambda: skm.precision_score(y, predicted, **counting),
        "recall": lambda: skm.recall_score(y, predicted, **counting),
        "f1": lambda: skm.f1_score(y, predicted, **counting),
        "roc_auc": roc_auc,
        "log_loss": log_loss,
        "brier": brier,
    }


def calibration(
    y: np.ndarray, output: np.ndarray, classes: Sequence[Any], bins: int = CALIBRATION_BINS
) -> dict[str, list[float]] | None:
    """Reliability curve of a binary classifier (observed rate vs mean predicted, per bin)."""
    from sklearn.calibration import calibration_curve

    labels = list(classes)
    if len(labels) != 2 or len(np.unique(y)) < 2:
        return None
    prob_true, prob_pred = calibration_curve(
        (y == labels[1]).astype(int), output[:, 1], n_bins=bins, strategy="uniform"
    )
    return {
        "prob_true": [float(v) for v in prob_true],
        "prob_pred": [float(v) for v in prob_pred],
        "n_bins": bins,
    }


def primary_score(metric: str, value: float | None) -> float | None:
    """*value* as "higher is better" (lower-is-better metrics negated)."""
    if value is None:
        return None
    return -value if metric in LOWER_IS_BETTER else value


@dataclass
class Evaluation:
    """What a model scored on one holdout."""

    task: str
    n_rows: int
    primary_metric: str
    metrics: dict[str, float | None]
    calibration: dict[str, Any] | None = None
    segment_column: str | None = None
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)
    fairness_gap: float | None = None
    importance: list[dict[str, Any]] = field(default_factory=list)
    latency_ms_per_1k: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """For a model version's metrics (strict JSON: no NaN)."""
        return {
            **self.metrics,
            "primary_metric": self.primary_metric,
            "holdout_rows": self.n_rows,
            "calibration": self.calibration,
            "segment_column": self.segment_column,
            "slices": self.slices,
            "fairness_gap": self.fairness_gap,
            "feature_importance": self.importance,
            "latency_ms_per_1k": self.latency_ms_per_1k,
        }

    def scalars(self, prefix: str = "") -> dict[str, float | None]:
        """Flat metric points for the run (``slice.segment=smb.roc_auc``, ...)."""
        points: dict[str, float | None] = {f"{prefix}{k}": v for k, v in self.metrics.items()}
        if self.fairness_gap is not None:
            points[f"{prefix}fairness_gap"] = self.fairness_gap
        if self.latency_ms_per_1k is not None:
            points[f"{prefix}latency_ms_per_1k"] = self.latency_ms_per_1k
        for value, scores in self.slices.items():
            for name, score in scores.items():
                if name in self.metrics:
                    points[f"{prefix}slice.{self.segment_column}={value}.{name}"] = score
        for item in self.importance:
            points[f"{prefix}importance.{item['feature']}"] = item["mean"]
        # Keys named after a long feature or slice cut to a metric key's length (the training
        # run refused the key and failed).
        return {fitted_value(Metric, "key", key): value for key, value in points.items()}


def slice_metrics(
    task: str,
    y: np.ndarray,
    output: np.ndarray,
    classes: Sequence[Any] | None,
    segment: pl.Series,
    primary: str,
) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Metrics per value of *segment* (slices under MIN_SLICE_ROWS rows keep only their size)
    and the fairness gap: max - min of the primary metric across the slices where it is defined."""
    values = segment.cast(pl.String).fill_null(NULL_SLICE).to_numpy()
    slices: dict[str, dict[str, Any]] = {}
    for value in sorted(set(values.tolist())):
        mask = values == value
        entry: dict[str, Any] = {"rows": int(mask.sum())}
        if mask.sum() >= MIN_SLICE_ROWS:
            entry.update(holdout_metrics(task, y[mask], output[mask], classes))
        slices[str(value)] = entry
    defined = [s[primary] for s in slices.values() if s.get(primary) is not None]
    gap = _finite(max(defined) - min(defined)) if len(defined) >= 2 else None
    return slices, gap


def measure_latency(model: Any, features: pl.DataFrame, task: str, seed: int) -> float | None:
    """Milliseconds to predict LATENCY_ROWS rows (median of LATENCY_REPEATS timed calls)."""
    if features.height == 0:
        return None
    rows = np.random.default_rng(seed).integers(0, features.height, LATENCY_ROWS)
    batch = features[rows]
    model_outputs(model, batch, task)  # warm-up: lazy initialisation is not latency
    timings = []
    for _ in range(LATENCY_REPEATS):
        start = time.perf_counter()
        model_outputs(model, batch, task)
        timings.append((time.perf_counter() - start) * 1000)
    return float(np.median(timings))


class _Fitted:
    """A fitted model as permutation_importance wants it (with a fit, which it never calls):
    models from entry points need only predict or predict_proba."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, *_args: Any, **_kwargs: Any) -> _Fitted:
        return self


def permutation_importance(
    model: Any,
    features: pl.DataFrame,
    y: np.ndarray,
    *,
    task: str,
    classes: Sequence[Any] | None,
    primary: str,
    seed: int,
    repeats: int,
    top: int = TOP_FEATURES,
) -> list[dict[str, Any]]:
    """The *top* features by permutation importance (drop of the primary metric when shuffled).

    scikit-learn shuffles a matrix; the scorer turns it back into the polars frame the model
    takes, with the original column types.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    columns = features.columns
    schema = features.schema
    matrix = np.empty((features.height, len(columns)), dtype=object)
    for i, name in enumerate(columns):
        matrix[:, i] = features[name].to_list()

    def scorer(holder: _Fitted, x: np.ndarray, y_true: np.ndarray) -> float:
        frame = pl.DataFrame(
            [
                pl.Series(name, x[:, i].tolist(), dtype=schema[name])
                for i, name in enumerate(columns)
            ]
        )
        output = model_outputs(holder.model, frame, task)
        scores = holdout_metrics(task, y_true, output, classes, only=primary)
        value = primary_score(primary, scores[primary])
        return float("nan") if value is None else value

    result = sk_permutation_importance(
        _Fitted(model), matrix, y, scoring=scorer, n_repeats=repeats, random_state=seed, n_jobs=1
    )
    ranked = sorted(
        (
            {
                "feature": name,
                "mean": _finite(result.importances_mean[i]),
                "std": _finite(result.importances_std[i]),
            }
            for i, name in enumerate(columns)
        ),
        key=lambda item: -(item["mean"] if item["mean"] is not None else -math.inf),
    )
    return ranked[:top]


def evaluate(
    model: Any,
    features: pl.DataFrame,
    y: np.ndarray,
    *,
    task: str,
    primary: str,
    classes: Sequence[Any] | None = None,
    segment: pl.Series | None = None,
    segment_column: str | None = None,
    seed: int = 42,
    importance_repeats: int = 3,
    importance: bool = True,
    latency: bool = True,
) -> Evaluation:
    """Evaluate *model* on the holdout (*features*, *y*)."""
    if task == "classification":
        classes = class_labels(model, classes)
    output = model_outputs(model, features, task)
    result = Evaluation(
        task=task,
        n_rows=features.height,
        primary_metric=primary,
        metrics=holdout_metrics(task, y, output, classes),
        segment_column=segment_column,
    )
    if task == "classification":
        result.calibration = calibration(y, output, classes or [])
    if segment is not None:
        result.slices, result.fairness_gap = slice_metrics(
            task, y, output, classes, segment, primary
        )
    if importance and features.height >= 2:
        result.importance = permutation_importance(
            model, features, y, task=task, classes=classes, primary=primary, seed=seed,
            repeats=importance_repeats,
        )  # fmt: skip
    if latency:
        result.latency_ms_per_1k = measure_latency(model, features, task, seed)
    return result
