"""Synthetic churn data for demos and workshops, with controllable drift scenarios.

The story: a subscription business (internet + streaming bundles, sold to consumers, small
businesses and enterprises) wants to predict which customers will cancel next month. Every
row is one customer snapshot scored at ``event_time``; ``churned`` is the observed outcome.

The generator is vectorised and fully deterministic for a given ``seed``. Every scenario
reuses the same underlying random draws, so ``intensity=0`` reproduces the ``"none"`` batch
for ``"covariate_shift"`` and ``"concept_drift"``.

Regenerate the bundled sample set with::

    python -m mldeck.demo.generator --out sample_data --seed 7
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

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

SCENARIOS: tuple[str, ...] = (
    "none",
    "covariate_shift",
    "prior_shift",
    "concept_drift",
    "corrupted",
)

TIME_COLUMN = "event_time"
ID_COLUMN = "customer_id"
SEGMENT_COLUMN = "segment"
TARGET_COLUMN = "churned"

NUMERIC_FEATURES: tuple[str, ...] = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "data_usage_gb",
    "avg_session_minutes",
    "days_since_last_login",
    "num_devices",
    "payment_delay_days",
    "discount_pct",
    "satisfaction_score",
    "age",
    "num_referrals",
)
CATEGORICAL_FEATURES: tuple[str, ...] = (
    "plan",
    "contract_type",
    "payment_method",
    "region",
    "device_os",
    "acquisition_channel",
    "has_partner",
)
FEATURE_COLUMNS: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES

CATEGORY_LEVELS: dict[str, tuple[str, ...]] = {
    "plan": ("basic", "standard", "premium"),
    "contract_type": ("monthly", "annual", "two_year"),
    "payment_method": ("card", "bank", "paypal", "invoice"),
    "region": ("north", "south", "east", "west", "central"),
    "device_os": ("android", "ios", "web", "desktop"),
    "acquisition_channel": ("organic", "search", "social", "referral", "partner"),
    "has_partner": ("no", "yes"),
    SEGMENT_COLUMN: ("consumer", "smb", "enterprise"),
}

_INT_COLUMNS = frozenset(
    {
        "tenure_months",
        "support_calls",
        "days_since_last_login",
        "num_devices",
        "payment_delay_days",
        "age",
        "num_referrals",
    }
)

SCHEMA: dict[str, pl.DataType] = {
    TIME_COLUMN: pl.Datetime("us"),
    ID_COLUMN: pl.Int64(),
    **{c: (pl.Int64() if c in _INT_COLUMNS else pl.Float64()) for c in NUMERIC_FEATURES},
    **{c: pl.String() for c in CATEGORICAL_FEATURES},
    SEGMENT_COLUMN: pl.String(),
    TARGET_COLUMN: pl.Int64(),
}
"""Column order and dtypes of every batch (the ``"corrupted"`` one turns support_calls to String)."""

COLUMNS: tuple[str, ...] = tuple(SCHEMA)

SHIFTED_FEATURES: dict[str, tuple[str, ...]] = {
    "none": (),
    # total_charges is derived from monthly_charges, so it moves with it.
    "covariate_shift": ("monthly_charges", "total_charges", "data_usage_gb", "device_os"),
    # Only the label prior moves on purpose; features linked to churn follow it marginally.
    "prior_shift": (TARGET_COLUMN,),
    # The retention push that comes with it; CONCEPT_DRIFT_FEATURES are those whose effect flips.
    "concept_drift": ("contract_type", "days_since_last_login", "support_calls"),
    "corrupted": (
        ID_COLUMN,
        "tenure_months",
        "monthly_charges",
        "total_charges",
        "support_calls",
        "satisfaction_score",
        "plan",
        "device_os",
    ),
}
"""Per scenario, the columns whose marginal distribution is deliberately changed."""

CONCEPT_DRIFT_FEATURES: tuple[str, ...] = ("contract_type", "tenure_months")
"""Features whose effect on churn is reversed in ``"concept_drift"``."""

BASE_CHURN_RATE = 0.225
"""Approximate churn rate of the reference distribution (``scenario="none"``)."""

REFERENCE_START = datetime(2026, 1, 5)
"""Fixed start of the reference window used by :func:`write_sample_data`."""

# Corrupted-scenario knobs: fraction of rows affected at intensity 1.
_CORRUPT_NULL_FRACTION = 0.6
_CORRUPT_NEGATIVE_TENURE = 0.03
_CORRUPT_HUGE_CHARGES = 0.01
_CORRUPT_UNSEEN_CATEGORY = 0.03
_CORRUPT_DUPLICATE_IDS = 0.02
_CORRUPT_BAD_STRINGS = 0.03
_UNSEEN_PLAN = "legacy_gold"
_UNSEEN_OS = "symbian"
_BAD_NUMERIC_STRINGS = ("n/a", "error")
_HUGE_CHARGE = 1e6

# Reference distribution parameters, indexed by segment (consumer, smb, enterprise).
_SEGMENT_P = np.array([0.60, 0.28, 0.12])
_PLAN_P = np.array([[0.50, 0.35, 0.15], [0.30, 0.45, 0.25], [0.10, 0.40, 0.50]])
_CONTRACT_P = np.array([[0.60, 0.25, 0.15], [0.45, 0.35, 0.20], [0.20, 0.40, 0.40]])
_PAYMENT_P = np.array(
    [[0.45, 0.20, 0.30, 0.05], [0.30, 0.30, 0.10, 0.30], [0.10, 0.30, 0.02, 0.58]]
)
_REGION_P = np.array([0.22, 0.20, 0.20, 0.23, 0.15])
_OS_P = np.array([[0.45, 0.40, 0.10, 0.05], [0.30, 0.30, 0.20, 0.20], [0.15, 0.25, 0.25, 0.35]])
_OS_SHIFTED_P = np.array([0.15, 0.25, 0.50, 0.10])  # a new web app pulls users to the browser
_CHANNEL_P = np.array(
    [
        [0.35, 0.25, 0.22, 0.12, 0.06],
        [0.30, 0.30, 0.10, 0.12, 0.18],
        [0.20, 0.15, 0.05, 0.15, 0.45],
    ]
)
_PARTNER_P = np.array([0.48, 0.35, 0.30])
_DISCOUNT_LEVELS = np.array([0.0, 5.0, 10.0, 15.0, 20.0, 25.0])
_DISCOUNT_P = np.array(
    [
        [0.70, 0.12, 0.10, 0.05, 0.02, 0.01],
        [0.45, 0.15, 0.18, 0.12, 0.07, 0.03],
        [0.30, 0.15, 0.20, 0.15, 0.12, 0.08],
    ]
)
_AGE_MEAN = np.array([41.0, 46.0, 47.0])
_AGE_SD = np.array([14.0, 10.0, 9.0])
_TENURE_SCALE = np.array([11.0, 22.0, 32.0])  # by contract type
_PLAN_PRICE = np.array([29.0, 59.0, 99.0])
_SEGMENT_PRICE = np.array([1.0, 1.15, 1.35])
_DEVICES_LAMBDA = np.array([0.8, 2.0, 4.0])
_LATE_P = np.array([0.12, 0.08, 0.20, 0.30])  # by payment method
_NULL_P = {"total_charges": 0.015, "data_usage_gb": 0.03, "satisfaction_score": 0.05}

# Conditional model P(churn | x): a logistic model over centred features.
_INTERCEPT = -1.72
_HIDDEN_NOISE_SD = np.array([0.2, 1.1, 2.2])  # unobserved factors; models are worse on smb/ent
_SEGMENT_EFFECT = np.array([0.0, -0.2, -0.6])
_CONTRACT_EFFECT = np.array([0.65, -0.45, -1.0])
_PAYMENT_EFFECT = np.array([0.0, -0.2, 0.1, 0.35])
_OS_EFFECT = np.array([0.0, -0.1, 0.3, 0.1])
_CHANNEL_EFFECT = np.array([-0.15, 0.0, 0.3, -0.35, 0.0])


def _pick(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Inverse-CDF categorical draw: ``probs`` is (k,) or (n, k); returns level indices."""
    cum = np.cumsum(probs, axis=-1)
    cum = cum / cum[..., -1:]
    thresholds = cum[..., :-1] if cum.ndim == 2 else cum[None, :-1]
    return (u[:, None] >= thresholds).sum(axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _simulate(
    rng: np.random.Generator, n: int, scenario: str, intensity: float
) -> dict[str, np.ndarray]:
    """Draw features and labels as arrays of level indices / numbers (nulls as NaN)."""
    # All draws happen in a fixed order whatever the scenario; scenarios only transform them.
    seg = _pick(rng.random(n), _SEGMENT_P)
    age = np.clip(np.rint(_AGE_MEAN[seg] + _AGE_SD[seg] * rng.standard_normal(n)), 18, 90)
    plan = _pick(rng.random(n), _PLAN_P[seg])
    contract = _pick(rng.random(n), _CONTRACT_P[seg])
    tenure = np.clip(np.ceil(rng.gamma(1.3, 1.0, n) * _TENURE_SCALE[contract]), 1, 72)
    charge_z = rng.standard_normal(n)
    total_z = rng.standard_normal(n)
    payment = _pick(rng.random(n), _PAYMENT_P[seg])
    region = _pick(rng.random(n), _REGION_P)
    u_os = rng.random(n)
    channel = _pick(rng.random(n), _CHANNEL_P[seg])
    partner = (rng.random(n) < _PARTNER_P[seg]).astype(np.int64)
    devices = 1 + rng.poisson(_DEVICES_LAMBDA[seg])
    usage_z = rng.standard_normal(n)
    engagement = rng.standard_normal(n)
    login_gap = np.floor(rng.exponential(1.0, n) * 5.0 * np.exp(-0.6 * engagement))
    session = np.round(rng.gamma(2.0, 1.0, n) * 11.0 * np.exp(0.35 * engagement), 1)
    support = rng.poisson(0.9 * np.exp(-0.35 * engagement + 0.25 * (plan == 0)))
    late = rng.random(n) < _LATE_P[payment]
    delay = np.where(late, 1 + np.floor(rng.exponential(7.0, n)), 0)
    discount = _DISCOUNT_LEVELS[_pick(rng.random(n), _DISCOUNT_P[contract])]
    satisfaction = np.clip(
        6.6 + 1.1 * engagement - 0.3 * (support - 1) + 1.2 * rng.standard_normal(n), 1.0, 10.0
    ).round(1)
    referrals = rng.poisson(0.3 + 0.9 * (channel == 3))
    null_u = {name: rng.random(n) for name in _NULL_P}
    hidden = rng.standard_normal(n) * _HIDDEN_NOISE_SD[seg]
    u_label = rng.random(n)

    # Concept drift comes with the company's answer to it: a retention push moves most monthly
    # customers onto annual contracts (their tenure and discount stay) and calls its quiet
    # customers back, so logins and support calls even out. (Its one extra draw comes last, so
    # intensity 0 still reproduces the reference.)
    c = max(intensity, 0.0) if scenario == "concept_drift" else 0.0
    if c:
        switched = rng.random(n) < min(0.7 * c, 1.0)
        contract = np.where((contract == 0) & switched, 1, contract)
        keep = max(1.0 - 0.7 * c, 0.0)
        login_gap = np.floor(login_gap * keep + 4.0 * min(c, 1.0))
        support = np.rint(support * keep + 0.7 * min(c, 1.0))

    w = max(intensity, 0.0) if scenario == "covariate_shift" else 0.0
    charges = _PLAN_PRICE[plan] * _SEGMENT_PRICE[seg] * np.exp(0.15 * charge_z) * (1 + 0.2 * w)
    charges = np.round(charges, 2)
    total = np.round(tenure * charges * np.exp(0.05 * total_z), 2)
    usage = np.round(
        np.exp(np.log(12.0) + 0.25 * plan + 0.1 * devices + 0.5 * w + 0.8 * usage_z), 2
    )
    mix = min(0.6 * w, 1.0)
    device_os = _pick(u_os, (1 - mix) * _OS_P[seg] + mix * _OS_SHIFTED_P)

    flip = 1.0 - 1.5 * max(intensity, 0.0) if scenario == "concept_drift" else 1.0
    logit = (
        _INTERCEPT
        + _SEGMENT_EFFECT[seg]
        + flip * _CONTRACT_EFFECT[contract]
        - flip * 0.8 * (np.log1p(tenure) - 2.8) / 0.9
        + 0.5 * (charges - 62.0) / 30.0
        - 0.45 * (satisfaction - 6.6) / 1.8
        + 0.3 * (support - 1.0)
        + 0.3 * (contract == 0) * (support - 1.0)
        + 0.3 * (login_gap - 5.0) / 5.0
        + 0.04 * delay
        - 0.03 * (discount - 4.0)
        + _PAYMENT_EFFECT[payment]
        + _OS_EFFECT[device_os]
        + _CHANNEL_EFFECT[channel]
        - 0.25 * partner
        - 0.12 * (devices - 2.0)
        - 0.15 * referrals
        + hidden
    )
    churned = (u_label < _sigmoid(logit)).astype(np.int64)

    out: dict[str, np.ndarray] = {
        "tenure_months": tenure.astype(np.int64),
        "monthly_charges": charges,
        "total_charges": total,
        "support_calls": support.astype(np.int64),
        "data_usage_gb": usage,
        "avg_session_minutes": session,
        "days_since_last_login": login_gap.astype(np.int64),
        "num_devices": devices.astype(np.int64),
        "payment_delay_days": delay.astype(np.int64),
        "discount_pct": discount,
        "satisfaction_score": satisfaction,
        "age": age.astype(np.int64),
        "num_referrals": referrals.astype(np.int64),
        "plan": plan,
        "contract_type": contract,
        "payment_method": payment,
        "region": region,
        "device_os": device_os,
        "acquisition_channel": channel,
        "has_partner": partner,
        SEGMENT_COLUMN: seg,
        TARGET_COLUMN: churned,
    }
    for name, p in _NULL_P.items():
        out[name] = np.where(null_u[name] < p, np.nan, out[name])
    return out


def _take(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in arrays.items()}


def _simulate_prior_shift(
    rng: np.random.Generator, n: int, intensity: float
) -> dict[str, np.ndarray]:
    """Resample reference rows by label so P(x | y) is kept while P(y) moves."""
    target = min(BASE_CHURN_RATE * (1.0 + max(intensity, 0.0)), 0.95)
    n_pos = int(rng.binomial(n, target))
    n_neg = n - n_pos
    need = max(n_pos / BASE_CHURN_RATE, n_neg / (1 - BASE_CHURN_RATE))
    pools = [_simulate(rng, int(need * 1.15) + 64, "none", 0.0)]
    # Top up in the rare case the pool is short of either label.
    while (
        sum(int(p[TARGET_COLUMN].sum()) for p in pools) < n_pos
        or sum(int((p[TARGET_COLUMN] == 0).sum()) for p in pools) < n_neg
    ):
        pools.append(_simulate(rng, int(need * 0.5) + 64, "none", 0.0))
    pool = {k: np.concatenate([p[k] for p in pools]) for k in pools[0]}
    y = pool[TARGET_COLUMN]
    pos = rng.choice(np.flatnonzero(y == 1), n_pos, replace=False)
    neg = rng.choice(np.flatnonzero(y == 0), n_neg, replace=False)
    return _take(pool, rng.permutation(np.concatenate([pos, neg])))


def _to_frame(arrays: dict[str, np.ndarray], times: np.ndarray, ids: np.ndarray) -> pl.DataFrame:
    cols: list[pl.Series] = [
        pl.Series(TIME_COLUMN, times, dtype=pl.Datetime("us")),
        pl.Series(ID_COLUMN, ids, dtype=pl.Int64),
    ]
    for name in NUMERIC_FEATURES:
        s = pl.Series(name, arrays[name])
        if s.dtype.is_float():
            s = s.fill_nan(None)
        cols.append(s.cast(SCHEMA[name]))
    for name in (*CATEGORICAL_FEATURES, SEGMENT_COLUMN):
        levels = pl.Series(name, CATEGORY_LEVELS[name], dtype=pl.String)
        cols.append(levels.gather(arrays[name]))
    cols.append(pl.Series(TARGET_COLUMN, arrays[TARGET_COLUMN], dtype=pl.Int64))
    return pl.DataFrame(cols)


def _choose(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Exactly ``round(fraction * n)`` distinct rows, at least one when ``fraction > 0``."""
    if n == 0 or fraction <= 0:
        return np.empty(0, dtype=np.int64)
    k = min(n, max(1, round(fraction * n)))
    return np.sort(rng.choice(n, k, replace=False))


def _corrupt(df: pl.DataFrame, rng: np.random.Generator, intensity: float) -> pl.DataFrame:
    n = df.height
    f = max(intensity, 0.0)

    def mask(fraction: float) -> pl.Series:
        m = np.zeros(n, dtype=bool)
        m[_choose(rng, n, min(fraction * f, 1.0))] = True
        return pl.Series(m)

    null_sat = mask(_CORRUPT_NULL_FRACTION)
    neg_tenure = mask(_CORRUPT_NEGATIVE_TENURE)
    huge = mask(_CORRUPT_HUGE_CHARGES)
    bad_plan = mask(_CORRUPT_UNSEEN_CATEGORY)
    bad_os = mask(_CORRUPT_UNSEEN_CATEGORY)
    bad_str = mask(_CORRUPT_BAD_STRINGS)
    bad_str_values = np.asarray(_BAD_NUMERIC_STRINGS)[rng.integers(0, 2, n)]
    neg_values = -rng.integers(1, 13, n)

    ids = df[ID_COLUMN].to_numpy().copy()
    if n >= 2:
        dup_rows = _choose(rng, n - 1, min(_CORRUPT_DUPLICATE_IDS * f, 1.0)) + 1
        # Each chosen row repeats the id of an earlier row.
        ids[dup_rows] = ids[rng.integers(0, dup_rows)]

    def where(m: pl.Series, value: Any, col: str) -> pl.Expr:
        return pl.when(pl.lit(m)).then(value).otherwise(pl.col(col)).alias(col)

    tenure = pl.Series(neg_values)
    return df.with_columns(
        pl.Series(ID_COLUMN, ids, dtype=pl.Int64),
        where(neg_tenure, pl.lit(tenure), "tenure_months"),
        where(huge, pl.lit(_HUGE_CHARGE), "monthly_charges"),
        where(huge, pl.lit(_HUGE_CHARGE) * pl.col("tenure_months"), "total_charges"),
        where(null_sat, pl.lit(None, dtype=pl.Float64), "satisfaction_score"),
        where(bad_plan, pl.lit(_UNSEEN_PLAN), "plan"),
        where(bad_os, pl.lit(_UNSEEN_OS), "device_os"),
        pl.when(pl.lit(bad_str))
        .then(pl.lit(pl.Series(bad_str_values)))
        .otherwise(pl.col("support_calls").cast(pl.String))
        .alias("support_calls"),
    )


def generate_batch(
    n_rows: int,
    *,
    start: datetime,
    days: int = 7,
    scenario: str = "none",
    intensity: float = 1.0,
    seed: int,
    id_offset: int = 0,
) -> pl.DataFrame:
    """Generate one batch of churn data; columns and dtypes follow :data:`SCHEMA`.

    ``event_time`` is spread over ``[start, start + days)`` (sorted, second resolution, naive
    UTC); ``customer_id`` is ``id_offset + row index``. ``intensity`` scales the drift (0 means
    none, 1 is the documented default). Scenarios:

    - ``"none"``: the reference distribution (churn rate about :data:`BASE_CHURN_RATE`).
    - ``"covariate_shift"``: monthly_charges +20% (and total_charges with it), data_usage_gb
      about +65%, device_os mix moves 60% of the way to a web-heavy mix; P(churn | x) unchanged.
      The shifted columns are ``SHIFTED_FEATURES["covariate_shift"]``.
    - ``"prior_shift"``: churn rate ``BASE_CHURN_RATE * (1 + intensity)`` (about 2x), obtained
      by resampling reference rows per label, so P(x | churn) is kept.
    - ``"concept_drift"``: the effects of :data:`CONCEPT_DRIFT_FEATURES` on churn are scaled
      by ``1 - 1.5 * intensity`` (reversed at half strength at 1: a rival's cheaper bundle draws
      long-tenure, long-contract customers away), so a model trained on the reference drops
      from about 0.83 to about 0.55 ROC AUC. With it comes the company's answer, a retention
      push: ``0.7 * intensity`` of monthly customers move to annual contracts, and
      days_since_last_login and support_calls are pulled ``0.7 * intensity`` of the way to 4
      and 1 (``SHIFTED_FEATURES["concept_drift"]``). The customers then look more alike to the
      model, whose confidence, and so its estimated performance, falls before labels arrive.
    - ``"corrupted"``: a ``"none"`` batch broken on purpose (fractions at intensity 1, at least
      one row each): satisfaction_score 60% null; tenure_months negative in 3% of rows;
      monthly_charges = 1e6 in 1% of rows (total_charges = 1e6 * tenure there); unseen
      categories ``plan="legacy_gold"`` and ``device_os="symbian"`` (3% each); 2% of rows repeat
      an earlier customer_id (needs ``n_rows >= 2``); support_calls becomes a String column
      with ``"n/a"`` / ``"error"`` in 3% of rows.

    Raises ValueError on an unknown scenario or invalid sizes.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid scenarios: {', '.join(SCENARIOS)}")
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    if not math.isfinite(intensity) or intensity < 0:
        raise ValueError(f"intensity must be a finite number >= 0, got {intensity}")
    if start.tzinfo is not None:
        start = start.astimezone(UTC).replace(tzinfo=None)

    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, days * 86_400, n_rows))
    times = np.datetime64(start, "us") + offsets.astype("timedelta64[s]")
    ids = id_offset + np.arange(n_rows, dtype=np.int64)
    if scenario == "prior_shift":
        arrays = _simulate_prior_shift(rng, n_rows, intensity)
    else:
        arrays = _simulate(rng, n_rows, scenario, intensity)
    df = _to_frame(arrays, times, ids)
    if scenario == "corrupted":
        df = _corrupt(df, rng, intensity)
    return df


def write_batch(df: pl.DataFrame, path: Path | str) -> Path:
    """Write ``df`` as CSV, Parquet or NDJSON (by suffix) atomically; returns the path.

    The data goes to a hidden temporary file in the same folder, then ``os.replace`` moves
    it into place, so a folder watcher never sees a half-written file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet", ".ndjson", ".jsonl"}:
        raise ValueError(f"unsupported file type {path.suffix!r}; use .csv, .parquet or .ndjson")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden, unique name next to the target; polars creates it with the usual umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if suffix == ".csv":
            df.write_csv(tmp, datetime_format="%Y-%m-%d %H:%M:%S")
        elif suffix == ".parquet":
            df.write_parquet(tmp, compression="zstd", statistics=True)
        else:
            df.write_ndjson(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# (file name, scenario, rows) of the weekly batches following the reference window.
_SAMPLE_BATCHES: tuple[tuple[str, str, int], ...] = (
    ("batch_01_normal.csv", "none", 3000),
    ("batch_02_normal.csv", "none", 3000),
    ("batch_03_covariate_shift.csv", "covariate_shift", 3000),
    ("batch_04_prior_shift.csv", "prior_shift", 3000),
    ("batch_05_concept_drift.csv", "concept_drift", 3000),
    ("batch_06_corrupted.csv", "corrupted", 3000),
)
_REFERENCE_ROWS = 20_000
_REFERENCE_DAYS = 28
_FIRST_ID = 100_000


def write_sample_data(out_dir: Path, *, seed: int = 7) -> list[Path]:
    """Write ``reference.parquet`` plus the weekly CSV batches into ``out_dir``.

    The reference covers the four weeks from :data:`REFERENCE_START`; batches follow in
    consecutive weeks with non-overlapping customer ids. Returns the written paths in order.
    """
    out_dir = Path(out_dir)
    seeds = np.random.SeedSequence(seed).generate_state(1 + len(_SAMPLE_BATCHES))
    reference = generate_batch(
        _REFERENCE_ROWS,
        start=REFERENCE_START,
        days=_REFERENCE_DAYS,
        seed=int(seeds[0]),
        id_offset=_FIRST_ID,
    )
    paths = [write_batch(reference, out_dir / "reference.parquet")]
    next_id = _FIRST_ID + _REFERENCE_ROWS
    week0 = REFERENCE_START + timedelta(days=_REFERENCE_DAYS)
    for i, (name, scenario, rows) in enumerate(_SAMPLE_BATCHES):
        batch = generate_batch(
            rows,
            start=week0 + timedelta(weeks=i),
            days=7,
            scenario=scenario,
            seed=int(seeds[i + 1]),
            id_offset=next_id,
        )
        paths.append(write_batch(batch, out_dir / name))
        next_id += rows
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m mldeck.demo.generator --out DIR [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m mldeck.demo.generator",
        description="Write the mldeck churn sample data set (reference + weekly batches).",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    args = parser.parse_args(argv)
    for path in write_sample_data(args.out, seed=args.seed):
        print(f"{path}  {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
