"""``[model]`` and ``[gates]`` of ``mldeck.toml`` as pydantic models: pure settings, no
scikit-learn here (the config loads fast and the CLI's ``--help`` stays quick).

::

    [model]
    name = "churn"
    target = "churned"
    estimator = "sklearn.ensemble.HistGradientBoostingClassifier"
    params = {max_iter = 200, learning_rate = 0.1}
    segment_column = "segment"

    [gates]
    min = {roc_auc = 0.80}
    max = {log_loss = 0.5}
    max_regression = {roc_auc = 0.01}
    max_fairness_gap = 0.1
    max_latency_ms_per_1k = 50
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mldeck.sections import Section as _Strict

Task = Literal["classification", "regression"]

# The holdout metrics each task computes (names used in [gates] and in a version's metrics).
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier")
REGRESSION_METRICS = ("mae", "rmse", "r2")
METRICS: dict[str, tuple[str, ...]] = {
    "classification": CLASSIFICATION_METRICS,
    "regression": REGRESSION_METRICS,
}
# Lower is better for these; higher for every other metric.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "rmse"})
DEFAULT_PRIMARY = {"classification": "roc_auc", "regression": "rmse"}
DEFAULT_ESTIMATOR = {
    "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_IDENTIFIER}(\.{_IDENTIFIER})*"
ENTRY_POINT = re.compile(rf"^{_DOTTED}:{_IDENTIFIER}$")
IMPORT_PATH = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})+$")
ALL_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS


# Metrics that lie between 0 and 1, and those that are never negative (r2 may be either).
UNIT_METRICS = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "brier"})
NON_NEGATIVE_METRICS = frozenset({"log_loss", "mae", "rmse"})


def _known_metric(name: str) -> str:
    if name not in ALL_METRICS:
        raise ValueError(f"unknown metric {name!r} (metrics: {', '.join(ALL_METRICS)})")
    return name


def _in_range(name: str, value: float) -> None:
    """A threshold *name* can reach: 75 meant as 75 % failed every candidate (and, as the
    default alert rules' floor, every drift check)."""
    if name in UNIT_METRICS and not 0 <= value <= 1:
        raise ValueError(f"{name} = {value:g} is outside [0, 1]: {name} lies between 0 and 1 "
                         "(70 % is 0.7)")  # fmt: skip
    if name in NON_NEGATIVE_METRICS and value < 0:
        raise ValueError(f"{name} = {value:g} is below 0: {name} is never negative")


class ModelSettings(_Strict):
    # The registered model's name: versions are NAME:1, NAME:2, ...; NAME@champion serves.
    name: str = Field("model", min_length=1, max_length=200)
    # The dataset to train on (default: [data] dataset); its accepted and warned versions.
    dataset: str | None = Field(None, min_length=1, max_length=200)
    target: str | None = Field(None, min_length=1)
    # Default: every column but the target, [data] id_column and [data] timestamp_column.
    features: list[str] | None = None
    task: Task = "classification"
    # A scikit-learn estimator class by import path (default: HistGradientBoostingClassifier, or
    # HistGradientBoostingRegressor for regression), built into a pipeline with preprocessing.
    estimator: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    # Instead of estimator: "module:function" in the workspace folder, called as
    # function(train_frame: polars.DataFrame, target: str, seed: int) -> fitted model.
    entry_point: str | None = None
    seed: int = Field(42, ge=0, le=2**32 - 1)
    # Share of the rows held out for evaluation (the newest ones when there is a timestamp).
    test_size: float = Field(0.2, gt=0, lt=1)
    # Cross-validation folds on the training part; 0 means none.
    cv_folds: int = Field(0, ge=0, le=50)
    # A column whose values define slices for per-slice metrics and the fairness gap.
    segment_column: str | None = None
    # The metric the fairness gap and permutation importance use (default: roc_auc or rmse).
    primary_metric: str | None = None
    # Repeats of permutation importance (each feature shuffled this many times).
    importance_repeats: int = Field(3, ge=1, le=50)
    # Threads for numerical libraries while training; 0 leaves their default (all cores).
    threads: int = Field(0, ge=0, le=1024)
    # Train on the newest N accepted and warned versions of the dataset only; 0: on all of them
    # (each retrain then reads every batch ever accepted, and takes longer week after week).
    newest_versions: int = Field(0, ge=0, le=1_000_000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # NAME@ALIAS and NAME:VERSION name what is registered: a name must read back as itself.
        if not value.strip() or value != value.strip():
            raise ValueError(f"{value!r}: a model's name has no spaces at either end")
        if "@" in value:
            raise ValueError(f"{value!r}: a model's name has no '@' (NAME@champion names its "
                             "champion)")  # fmt: skip
        stem, colon, tail = value.rpartition(":")
        if colon and tail.isdigit():  # 'churn:2026' read back as version 2026 of 'churn'
            raise ValueError(f"{value!r}: a model's name does not end in ':' and digits "
                             f"({stem}:{tail} names version {tail} of {stem!r})")  # fmt: skip
        # Names read back as versions in other forms ('churn:v1', 'churn/2') are refused when a
        # training would register a new model so named (registry.check_new_name): a workspace
        # whose model already has such a name keeps working.
        return value

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, value: str | None) -> str | None:
        if value is not None and not ENTRY_POINT.match(value):
            raise ValueError(f"{value!r} is not 'module:function' (for example 'train:fit')")
        return value

    @field_validator("estimator")
    @classmethod
    def _estimator(cls, value: str | None) -> str | None:
        if value is not None and not IMPORT_PATH.match(value):
            raise ValueError(
                f"{value!r} is not an import path (for example 'sklearn.linear_model.Ridge')"
            )
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("list at least one feature, or leave it out to use all columns")
            repeated = sorted({name for name in value if value.count(name) > 1})
            if repeated:
                raise ValueError(f"feature {repeated[0]!r} is listed twice")
        return value

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("cross-validation needs at least 2 folds (0 turns it off)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSettings:
        if self.entry_point and self.estimator:
            raise ValueError("set either estimator or entry_point, not both")
        if self.entry_point and self.params:
            raise ValueError("params go to estimator; an entry_point receives none")
        if self.target and self.features and self.target in self.features:
            raise ValueError(f"the target {self.target!r} cannot also be a feature")
        if self.primary_metric is not None and self.primary_metric not in METRICS[self.task]:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not a {self.task} metric "
                f"({', '.join(METRICS[self.task])})"
            )
        return self

    @property
    def primary(self) -> str:
        return self.primary_metric or DEFAULT_PRIMARY[self.task]

    @property
    def estimator_path(self) -> str:
        return self.estimator or DEFAULT_ESTIMATOR[self.task]


class GateSettings(_Strict):
    # Absolute thresholds on holdout metrics: min = {roc_auc = 0.8}, max = {log_loss = 0.5}.
    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    # No regression against the champion (on the same holdout) beyond a margin per metric.
    max_regression: dict[str, float] = Field(default_factory=dict)
    # Largest allowed gap (max - min) of the primary metric across [model] segment_column slices.
    max_fairness_gap: float | None = Field(None, ge=0)
    # Largest allowed time to predict 1,000 rows, in milliseconds.
    max_latency_ms_per_1k: float | None = Field(None, gt=0)
    # Policy: promoting a version that passed its gates records an automatic approval, so no
    # person's decision is needed first.
    auto_approve: bool = False

    @field_validator("min", "max", "max_regression")
    @classmethod
    def _metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            _known_metric(name)  # a NaN threshold is refused as every number in mldeck.toml
        return value

    @field_validator("min", "max")
    @classmethod
    def _reachable(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            _in_range(name, threshold)
        return value

    @field_validator("max_regression")
    @classmethod
    def _margins(cls, value: dict[str, float]) -> dict[str, float]:
        negative = [name for name, margin in value.items() if margin < 0]
        if negative:
            raise ValueError(f"the margin for {negative[0]!r} must be 0 or more")
        return value
