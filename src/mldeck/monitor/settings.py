"""``[monitor]`` of ``mldeck.toml``: drift methods and thresholds, performance estimation and the
alert rules. Pure settings (no scipy, no polars), so the config loads fast.

::

    [monitor]
    drift_share = 0.5                 # dataset drift: this share of features drifted, or more
    small_sample = 1000               # a reference or batch of this many values or fewer: tests
    cost_per_cpu_hour = 0.05          # for the KPI "cost per 1k predictions"

    [monitor.columns.monthly_charges]  # override the default method of one column
    method = "psi"
    threshold = 0.2

    [[monitor.alerts]]
    name = "roc_auc estimate below 0.7"
    when = "estimated_metric"
    metric = "roc_auc"
    below = 0.7
    severity = "critical"
    command = "mail -s 'mldeck alert' ops@example.org"   # gets the alert as JSON on stdin

The default method per column: when the reference or the batch has ``small_sample`` values or
fewer, the two-sample Kolmogorov-Smirnov test for numbers and the chi-square test for categories
(drifted when p < 0.05); when both are larger, where every tiny difference becomes
"significant", the Wasserstein distance divided by the reference's standard deviation for
numbers and the Jensen-Shannon distance for categories (drifted at 0.1 or more).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from mldeck.sections import MAX_HOURS
from mldeck.sections import Section as _Strict

NumericMethod = Literal["ks", "wasserstein", "psi"]
CategoricalMethod = Literal["chi2", "psi", "jensenshannon"]
Method = Literal["auto", "ks", "wasserstein", "psi", "chi2", "jensenshannon"]
RuleKind = Literal[
    "dataset_drift",
    "feature_drift",
    "multivariate_drift",
    "prediction_drift",
    "estimated_metric",
    "realized_metric",
    "freshness",
    "failed_run",
]
Severity = Literal["info", "warning", "critical"]

# Default thresholds: a p-value below this for tests, a score at or above this for distances.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chi2": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
TESTS = frozenset({"ks", "chi2"})  # drifted when p < threshold; others when score >= threshold
NUMERIC_METHODS = frozenset({"ks", "wasserstein", "psi"})
CATEGORICAL_METHODS = frozenset({"chi2", "psi", "jensenshannon"})


class ColumnDrift(_Strict):
    method: Method = "auto"
    # p-value (tests) or score (distances); default: the method's in DEFAULT_THRESHOLDS.
    threshold: float | None = Field(None, gt=0)
    # false leaves the column out of drift altogether.
    monitor: bool = True

    @model_validator(mode="after")
    def _threshold_of_its_method(self) -> ColumnDrift:
        if self.threshold is None:
            return self
        if self.method == "auto":
            # "auto" picks a test or a distance by sample size: one number cannot be both.
            raise ValueError(
                "a threshold needs its method: a p-value for ks or chi2, a score for "
                'wasserstein, psi or jensenshannon (method = "auto" switches between them)'
            )
        if self.method in TESTS and self.threshold >= 1:
            raise ValueError(
                f"the threshold of {self.method} is a p-value: between 0 and 1 (drifted when "
                f"p < threshold), not {self.threshold:g}"
            )
        if self.method == "jensenshannon" and self.threshold > JS_MAX:
            # The distance (natural logarithm) never passes sqrt(ln 2): the column never drifts.
            raise ValueError(f"a Jensen-Shannon distance is at most {JS_MAX:.3f}: a threshold "
                             f"of {self.threshold:g} could never be reached")  # fmt: skip
        return self


JS_MAX = math.sqrt(math.log(2))  # the largest Jensen-Shannon distance, natural logarithm


# A binary classifier's metrics that labels give (realized) and that its calibrated confidence
# estimates before they arrive: what estimated_metric and realized_metric rules can watch.
LABEL_METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")


def estimated_metric(primary: str) -> str:
    """The metric a check estimates: the model's primary metric, or ROC AUC when that one cannot
    be estimated without labels."""
    return primary if primary in LABEL_METRICS else "roc_auc"


class AlertRule(_Strict):
    name: str = Field(min_length=1, max_length=200)
    when: RuleKind
    severity: Severity = "warning"
    feature: str | None = None  # feature_drift
    metric: str | None = None  # estimated_metric, realized_metric
    below: float | None = None  # estimated_metric, realized_metric
    hours: float | None = Field(None, gt=0, le=MAX_HOURS)  # freshness: no new data for this long
    # A shell command run with the alert as JSON on stdin when the alert opens.
    command: str | None = None
    # Whether this alert is a reason to retrain (the scheduler's policy reads it).
    retrain: bool | None = None

    @model_validator(mode="after")
    def _complete(self) -> AlertRule:
        if self.when == "feature_drift" and not self.feature:
            raise ValueError("a feature_drift rule names its feature")
        if self.when in ("estimated_metric", "realized_metric") and (
            not self.metric or self.below is None
        ):
            raise ValueError(f"a {self.when} rule needs metric and below")
        if self.when in ("estimated_metric", "realized_metric") and (
            self.metric not in LABEL_METRICS
        ):
            raise ValueError(f"unknown metric {self.metric!r} for a {self.when} rule (one of: "
                             f"{', '.join(LABEL_METRICS)})")  # fmt: skip
        if self.below is not None and not 0 <= self.below <= 1:
            # Every one of these metrics lies in [0, 1]: 70 (meant as 70 %) fired on every
            # batch, a negative one never.
            raise ValueError(f"below = {self.below:g} is outside [0, 1]: {self.metric} lies "
                             "between 0 and 1 (70 % is 0.7)")  # fmt: skip
        needs = {
            "feature_drift": {"feature"},
            "freshness": {"hours"},
            "estimated_metric": {"metric", "below"},
            "realized_metric": {"metric", "below"},
        }
        extra = [
            key
            for key in ("feature", "metric", "below", "hours")
            if getattr(self, key) is not None and key not in needs.get(self.when, set())
        ]
        if extra:  # a key another kind of rule reads: taken for this rule's, it did nothing
            raise ValueError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not "
                             f"apply to a {self.when} rule")  # fmt: skip
        if self.when == "freshness" and self.hours is None:
            raise ValueError("a freshness rule needs hours")
        return self

    @property
    def wants_retrain(self) -> bool:
        if self.retrain is not None:
            return self.retrain
        return self.when in ("dataset_drift", "estimated_metric", "realized_metric")


class MonitorSettings(_Strict):
    # Dataset drift when at least this share of the monitored features drifted.
    drift_share: float = Field(0.5, gt=0, le=1)
    # When the reference or the batch has at most this many values, statistical tests (KS,
    # chi-square); when both have more, distances (normalised Wasserstein, Jensen-Shannon).
    small_sample: int = Field(1000, ge=1)
    # Multivariate drift: PCA reconstruction error of the numeric features, drifted when the
    # batch's mean error exceeds the reference's by this fraction (and by 3 standard errors).
    multivariate: bool = True
    multivariate_tolerance: float = Field(0.1, gt=0)
    # A column drifts too when the share of its rows missing (null, NaN, infinite) grew by at
    # least this much over the reference's: a feature broken upstream arrives empty, and its
    # few values left may still look like the reference.
    missing_share: float = Field(0.1, gt=0, le=1)
    # Realized-metric alert rules wait for this many labelled rows in a batch: a metric on a
    # handful of labels is noise, and neither raises nor clears an alert.
    min_labelled_rows: int = Field(30, ge=1)
    # Estimated performance (classifiers): Monte Carlo draws for its uncertainty band.
    estimate_draws: int = Field(200, ge=20, le=5000)
    # For the KPI "cost per 1k predictions": what an hour of CPU costs you (any currency).
    cost_per_cpu_hour: float = Field(0.0, ge=0)
    columns: dict[str, ColumnDrift] = Field(default_factory=dict)
    # Alert rules. Without any, defaults apply: dataset drift, multivariate drift, and the
    # estimated and realized primary metric below the [gates] minimum when there is one.
    alerts: list[AlertRule] | None = None
    # A command for every alert that has none of its own (alert as JSON on stdin).
    alert_command: str | None = None
    alert_command_timeout: float = Field(30, gt=0, le=3600)

    @model_validator(mode="after")
    def _unique_rules(self) -> MonitorSettings:
        names = [rule.name for rule in self.alerts or []]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"alert rule {repeated[0]!r} is defined twice")
        return self
