"""Gates: the rules a candidate must pass before it may be promoted (``[gates]``).

* ``min = {metric = threshold}`` / ``max = {...}``: absolute thresholds on holdout metrics;
* ``max_regression = {metric = margin}``: no worse than the champion on the same holdout by more
  than *margin* (direction-aware: lower is better for log_loss, brier, mae, rmse);
* ``max_fairness_gap``: max - min of the primary metric across the segment's slices;
* ``max_latency_ms_per_1k``: milliseconds to predict 1,000 rows.

Each gate gives one :class:`GateOutcome` (stored as a ``GateResult`` row); a failed one says by
how much in its detail, e.g. ``roc_auc 0.71 < 0.8 (short by 0.09)``. A metric that could not be
computed fails its gate: a gate is never passed by default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mldeck.ml.settings import LOWER_IS_BETTER, GateSettings


@dataclass(frozen=True)
class GateOutcome:
    gate: str
    metric: str
    threshold: float | None
    value: float | None
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "metric": self.metric,
            "threshold": self.threshold,
            "value": self.value,
            "passed": self.passed,
            "detail": self.detail,
        }


def _n(value: float) -> str:
    """A number for a gate's detail: 4 significant digits, no float noise."""
    text = f"{value:.4g}"
    return "0" if text == "-0" else text


def _missing(gate: str, metric: str, threshold: float | None, why: str) -> GateOutcome:
    return GateOutcome(gate, metric, threshold, None, False, f"{metric}: {why}")


def _minimum(gate: str, metric: str, value: float | None, threshold: float) -> GateOutcome:
    if value is None:
        return _missing(gate, metric, threshold, "not computed on this holdout")
    if value >= threshold:
        return GateOutcome(
            gate, metric, threshold, value, True, f"{metric} {_n(value)} >= {_n(threshold)}"
        )
    return GateOutcome(
        gate,
        metric,
        threshold,
        value,
        False,
        f"{metric} {_n(value)} < {_n(threshold)} (short by {_n(threshold - value)})",
    )


def _maximum(gate: str, metric: str, value: float | None, threshold: float) -> GateOutcome:
    if value is None:
        return _missing(gate, metric, threshold, "not computed on this holdout")
    if value <= threshold:
        return GateOutcome(
            gate, metric, threshold, value, True, f"{metric} {_n(value)} <= {_n(threshold)}"
        )
    return GateOutcome(
        gate,
        metric,
        threshold,
        value,
        False,
        f"{metric} {_n(value)} > {_n(threshold)} (over by {_n(value - threshold)})",
    )


def _regression(
    metric: str, value: float | None, champion: float | None, margin: float, label: str
) -> GateOutcome:
    gate = "max_regression"
    if value is None:
        return _missing(gate, metric, margin, "not computed on this holdout")
    if champion is None:
        return GateOutcome(
            gate, metric, margin, value, False,
            f"{metric}: {label} has no {metric} on this holdout to compare with",
        )  # fmt: skip
    lower = metric in LOWER_IS_BETTER
    worse_by = value - champion if lower else champion - value
    relation = f"{metric} {_n(value)} vs {label} {_n(champion)}"
    if worse_by <= margin:
        how = "no worse" if worse_by <= 0 else f"worse by {_n(worse_by)}"
        return GateOutcome(
            gate, metric, margin, value, True, f"{relation}: {how} (allowed {_n(margin)})"
        )
    return GateOutcome(
        gate,
        metric,
        margin,
        value,
        False,
        f"{relation}: worse by {_n(worse_by)}, more than the allowed {_n(margin)} "
        f"(over by {_n(worse_by - margin)})",
    )


def check_gates(
    settings: GateSettings,
    metrics: dict[str, Any],
    *,
    champion_metrics: dict[str, Any] | None = None,
    champion_label: str = "the champion",
    champion_error: str | None = None,
    compared_metrics: dict[str, Any] | None = None,
    compared_on: str = "",
    fairness_gap: float | None = None,
    primary_metric: str = "",
    segment_column: str | None = None,
    latency_ms_per_1k: float | None = None,
) -> list[GateOutcome]:
    """Apply every configured gate to a candidate's holdout *metrics*.

    *champion_metrics* are the champion's metrics on the same holdout (None when there is no
    champion: the no-regression gates pass, there is nothing to regress from); *champion_error*
    says why a champion that exists could not be evaluated (those gates then fail).
    *compared_metrics* are the candidate's on the rows the champion was judged on, when those
    are fewer than the holdout (*compared_on* says which): the regression gates compare them.
    """
    outcomes: list[GateOutcome] = []
    for metric, threshold in settings.min.items():
        outcomes.append(_minimum("min", metric, _value(metrics, metric), threshold))
    for metric, threshold in settings.max.items():
        outcomes.append(_maximum("max", metric, _value(metrics, metric), threshold))
    for metric, margin in settings.max_regression.items():
        value = _value(metrics, metric)
        if champion_error is not None:
            outcomes.append(
                GateOutcome("max_regression", metric, margin, value, False,
                            f"{metric}: {champion_label} could not be evaluated: {champion_error}")
            )  # fmt: skip
        elif champion_metrics is None:
            outcomes.append(
                GateOutcome("max_regression", metric, margin, value, True,
                            f"{metric}: no champion yet, nothing to regress from")
            )  # fmt: skip
        else:
            if compared_metrics is not None:
                value = _value(compared_metrics, metric)
            outcome = _regression(metric, value, _value(champion_metrics, metric), margin,
                                  champion_label)  # fmt: skip
            if compared_on:
                outcome = replace(outcome, detail=f"{outcome.detail} ({compared_on})")
            outcomes.append(outcome)
    if settings.max_fairness_gap is not None:
        what = f"fairness_gap({primary_metric})" if primary_metric else "fairness_gap"
        if segment_column is None:
            outcomes.append(
                _missing("max_fairness_gap", what, settings.max_fairness_gap,
                         "no [model] segment_column to slice by")
            )  # fmt: skip
        elif fairness_gap is None:
            outcomes.append(
                _missing("max_fairness_gap", what, settings.max_fairness_gap,
                         f"fewer than two slices of {segment_column} with a {primary_metric}")
            )  # fmt: skip
        else:
            outcomes.append(
                _maximum("max_fairness_gap", what, fairness_gap, settings.max_fairness_gap)
            )
    if settings.max_latency_ms_per_1k is not None:
        outcomes.append(
            _maximum("max_latency_ms_per_1k", "latency_ms_per_1k", latency_ms_per_1k,
                     settings.max_latency_ms_per_1k)
        )  # fmt: skip
    return outcomes


def _value(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
