"""Performance: realized when labels are known, estimated before they are.

Estimation (confidence-based, for binary classifiers): the champion's scores are mapped through
the calibration curve measured on its holdout at training time (``metrics.calibration`` of the
model version, made monotone), giving each row's probability of being positive. The expected
confusion matrix follows, and from it the expected accuracy, precision, recall and F1; the
expected ROC AUC comes from the expected true and false positive rates at every score. The
uncertainty band is the 2.5-97.5 % range of the metric over labels drawn from those
probabilities (Monte Carlo, seeded, on at most ``BAND_ROWS`` rows, scaled to the batch's size).

It sees what a shift in the features does to the model's confidence; it cannot see a change in
P(label | features) alone (concept drift), which only realized performance reveals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mldeck.monitor.settings import LABEL_METRICS

ESTIMABLE = LABEL_METRICS
BAND_ROWS = 20_000


@dataclass
class Estimate:
    metric: str
    value: float | None
    lower: float | None
    upper: float | None
    reference: float | None = None  # the version's holdout value

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "reference": self.reference,
        }


def calibrator(curve: dict[str, Any] | None):
    """A monotone map score → probability from a reliability curve (identity without one)."""
    if not curve or not curve.get("prob_pred"):
        return lambda scores: np.clip(scores, 0.0, 1.0)
    x = np.asarray(curve["prob_pred"], dtype=float)
    y = np.maximum.accumulate(np.asarray(curve["prob_true"], dtype=float))
    order = np.argsort(x)
    x, y = x[order], y[order]
    # Anchor the ends so scores beyond the holdout's range stay probabilities.
    x = np.concatenate([[0.0], x, [1.0]])
    y = np.concatenate([[min(y[0], x[1])], y, [max(y[-1], x[-2])]])
    return lambda scores: np.clip(np.interp(scores, x, y), 0.0, 1.0)


def expected_metrics(
    proba: np.ndarray, predicted: np.ndarray, scores: np.ndarray
) -> dict[str, float]:
    """Expected metrics when row i is positive with probability ``proba[i]``; ``predicted``
    is the model's positive decision (bool) and ``scores`` its ranking score."""
    p = np.asarray(proba, dtype=float)
    yhat = np.asarray(predicted, dtype=bool)
    tp = float(np.sum(p[yhat]))
    fp = float(np.sum(1 - p[yhat]))
    fn = float(np.sum(p[~yhat]))
    tn = float(np.sum(1 - p[~yhat]))
    n = max(p.size, 1)
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    recall = tp / (tp + fn) if tp + fn > 0 else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else math.nan
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": _expected_auc(p, np.asarray(scores, dtype=float)),
    }


def _expected_auc(p: np.ndarray, scores: np.ndarray) -> float:
    positives, negatives = p.sum(), (1 - p).sum()
    if positives <= 0 or negatives <= 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    s, w = scores[order], p[order]
    tpr = np.cumsum(w) / positives
    fpr = np.cumsum(1 - w) / negatives
    # One point per distinct score (ties move together).
    last = np.r_[s[1:] != s[:-1], True]
    tpr, fpr = np.r_[0.0, tpr[last]], np.r_[0.0, fpr[last]]
    return float(np.trapezoid(tpr, fpr))


def _from_counts(tp: Any, fp: Any, fn: Any, tn: Any) -> dict[str, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        n = tp + fp + fn + tn
        return {
            "accuracy": (tp + tn) / n,
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
        }


def _auc_from_ranks(labels: np.ndarray, ranks: np.ndarray) -> Any:
    """ROC AUC of each row of *labels* (bool, draws x rows) for scores with these *ranks*
    (Mann-Whitney: ties share their mean rank)."""
    positives = labels.sum(axis=-1)
    negatives = labels.shape[-1] - positives
    rank_sum = labels.astype(float) @ ranks
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _metrics_of(labels: np.ndarray, predicted: np.ndarray, ranks: np.ndarray | None) -> dict:
    """Metrics of one (rows) or many (draws x rows) label vectors against fixed decisions."""
    tp = (labels & predicted).sum(axis=-1)
    fp = (~labels & predicted).sum(axis=-1)
    fn = (labels & ~predicted).sum(axis=-1)
    tn = (~labels & ~predicted).sum(axis=-1)
    out = _from_counts(tp, fp, fn, tn)
    out["roc_auc"] = np.nan if ranks is None else _auc_from_ranks(labels, ranks)
    return out


def names_class(label: str, value: Any) -> bool:
    """Whether the label text *label* names the class *value*: its text, or the same number
    ('1.0' and '1' name class 1) or truth value ('TRUE' names class True, and 'true' class 1 of
    classes 0 and 1: a label file's true/false, which validation reads as the int 1/0)."""
    text, name = label.strip(), str(value)
    if text == name or (text.lower() == name.lower() and name.lower() in ("true", "false")):
        return True
    if text.lower() in ("true", "false") and name.lower() not in ("true", "false"):
        try:
            return float(value) == (1.0 if text.lower() == "true" else 0.0)
        except (TypeError, ValueError):
            return False
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return False


def class_index(labels: Any, classes: list[Any]) -> Any:
    """Each label's index in *classes* (a polars Series of Int32; null where the label is null or
    names no class). Each distinct label is matched once, not each row."""
    import polars as pl

    text = labels.cast(pl.String)
    mapping: dict[str, int] = {}
    for label in text.drop_nulls().unique().to_list():
        found = [i for i, value in enumerate(classes) if names_class(label, value)]
        if found:
            mapping[label] = found[0]
    return text.replace_strict(mapping, default=None, return_dtype=pl.Int32)


def realized_metrics(
    labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None
) -> dict[str, float]:
    """Metrics on known labels (``labels``, ``predicted``: bool, positive class)."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=bool)
    yhat = np.asarray(predicted, dtype=bool)
    ranks = None if scores is None else rankdata(np.asarray(scores, dtype=float))
    return {k: float(v) for k, v in _metrics_of(y, yhat, ranks).items()}


def estimate(
    metric: str,
    scores: np.ndarray,
    predicted: np.ndarray,
    curve: dict[str, Any] | None,
    *,
    draws: int = 200,
    seed: int = 0,
    reference: float | None = None,
) -> Estimate:
    """The expected *metric* of a batch and its 95 % band."""
    from scipy.stats import rankdata

    if metric not in ESTIMABLE:
        raise ValueError(f"{metric} cannot be estimated without labels ({', '.join(ESTIMABLE)})")
    scores = np.asarray(scores, dtype=float)
    keep = np.isfinite(scores)
    scores, predicted = scores[keep], np.asarray(predicted, dtype=bool)[keep]
    if scores.size == 0:
        return Estimate(metric, None, None, None, reference)
    proba = calibrator(curve)(scores)
    value = expected_metrics(proba, predicted, scores)[metric]
    rng = np.random.default_rng(seed)
    rows = np.arange(scores.size)
    if rows.size > BAND_ROWS:
        rows = np.sort(rng.choice(rows, BAND_ROWS, replace=False))
    labels = rng.random((draws, rows.size)) < proba[rows]
    sampled = _metrics_of(labels, predicted[rows], rankdata(scores[rows]))[metric]
    sampled = np.asarray(sampled, dtype=float)
    sampled = sampled[np.isfinite(sampled)]
    if not math.isfinite(value) or sampled.size < 2:
        return Estimate(metric, _clean(value), None, None, reference)
    # The spread of a metric on a sample shrinks with the square root of its size.
    scale = math.sqrt(rows.size / scores.size)
    centre = float(np.mean(sampled))
    low = value - (centre - float(np.quantile(sampled, 0.025))) * scale
    high = value + (float(np.quantile(sampled, 0.975)) - centre) * scale
    # Every estimable metric lies in [0, 1]: a wide band on a few rows stops at its ends; and a
    # band drawn from a handful of rows still holds the value it is around.
    low, high = max(min(low, value), 0.0), min(max(high, value), 1.0)
    return Estimate(metric, float(value), low, high, reference)


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None
