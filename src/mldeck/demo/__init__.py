"""Synthetic churn data with controllable drift scenarios, for demos and workshops.

Names are loaded lazily from :mod:`mldeck.demo.generator`, so that
``python -m mldeck.demo.generator`` runs without importing the module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mldeck.demo.generator import (
        BASE_CHURN_RATE,
        CATEGORICAL_FEATURES,
        CATEGORY_LEVELS,
        COLUMNS,
        CONCEPT_DRIFT_FEATURES,
        FEATURE_COLUMNS,
        ID_COLUMN,
        NUMERIC_FEATURES,
        REFERENCE_START,
        SCENARIOS,
        SCHEMA,
        SEGMENT_COLUMN,
        SHIFTED_FEATURES,
        TARGET_COLUMN,
        TIME_COLUMN,
        generate_batch,
        main,
        write_batch,
        write_sample_data,
    )

__all__ = [
    "BASE_CHURN_RATE",
    "CATEGORICAL_FEATURES",
    "CATEGORY_LEVELS",
    "COLUMNS",
    "CONCEPT_DRIFT_FEATURES",
    "FEATURE_COLUMNS",
    "ID_COLUMN",
    "NUMERIC_FEATURES",
    "REFERENCE_START",
    "SCENARIOS",
    "SCHEMA",
    "SEGMENT_COLUMN",
    "SHIFTED_FEATURES",
    "TARGET_COLUMN",
    "TIME_COLUMN",
    "generate_batch",
    "main",
    "write_batch",
    "write_sample_data",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("mldeck.demo.generator"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
