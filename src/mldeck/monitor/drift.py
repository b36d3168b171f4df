"""Drift: a batch against the reference's stored baseline, in one polars pass over the batch.

The *baseline* of a reference dataset version is built once (the only read of the reference's
rows) and kept as a content-addressed JSON artifact named ``drift-baseline:<sha256>``: per
numeric column a :class:`~mldeck.monitor.stats.NumericSummary` on its grid, per categorical
column its category counts, and for multivariate drift a PCA of the standardised numeric
features with the reference's reconstruction error. Every later batch is compared with it.

The batch's side is one ``select`` over the batch file: per numeric column the counts at and
just below every grid point (``Expr.hist`` on interleaved edges), the mass outside the grid,
count, nulls, mean and std; per categorical column its value counts; the mean PCA
reconstruction error. Then :mod:`mldeck.monitor.stats` decides each column.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from mldeck.monitor import stats
from mldeck.monitor.settings import (
    CATEGORICAL_METHODS,
    DEFAULT_THRESHOLDS,
    NUMERIC_METHODS,
    TESTS,
    MonitorSettings,
)

BASELINE_FORMAT = 1
PCA_VARIANCE = 0.65  # components kept: enough to explain this share of the variance
PCA_FIT_ROWS = 200_000  # the PCA is fitted on at most this many reference rows (seeded sample)
HISTOGRAM_BINS = 20  # bins of the reference-vs-batch histograms shown and reported


def column_kind(dtype: pl.DataType) -> str | None:
    if dtype.is_numeric():
        return "numeric"
    if dtype in (pl.String, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "categorical"
    return None


# -- the reference's baseline -------------------------------------------------------------------
def build_baseline(frame: pl.LazyFrame, columns: dict[str, str], *, seed: int = 0) -> dict:
    """The baseline of a reference: *columns* maps each monitored column to its kind."""
    numeric = [c for c, k in columns.items() if k == "numeric"]
    categorical = [c for c, k in columns.items() if k == "categorical"]
    exprs: list[pl.Expr] = [pl.len().alias("__rows")]
    for name in numeric:
        value = pl.col(name).cast(pl.Float64, strict=False)
        exprs.append(value.filter(value.is_finite()).sort().implode().alias(name))
    for name in categorical:
        exprs.append(_counts_expr(name))
    row = frame.select(exprs).collect(engine="streaming").row(0, named=True)
    result: dict[str, Any] = {
        "format": BASELINE_FORMAT,
        "n_rows": int(row["__rows"]),
        "columns": {},
    }
    for name in numeric:
        values = np.asarray(row[name] or [], dtype=float)
        grid = stats.grid_of(values)
        result["columns"][name] = {
            "kind": "numeric",
            "summary": stats.summarize_sorted(values, grid).as_dict(),
        }
    for name in categorical:
        counts = _counts(row[name])
        result["columns"][name] = {
            "kind": "categorical",
            "counts": counts,
            "n": sum(counts.values()),
        }
    result["multivariate"] = _fit_pca(frame, result, numeric, seed)
    return result


def _counts_expr(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String).drop_nulls().value_counts().implode().alias(name)


def _counts(items: list[dict[str, Any]] | None) -> dict[str, int]:
    result: dict[str, int] = {}
    for item in items or []:
        key = next(k for k in item if k != "count")
        result[str(item[key])] = int(item["count"])
    return result


def _standardised(names: list[str], means: list[float], stds: list[float]) -> list[pl.Expr]:
    out = []
    for name, mean, std in zip(names, means, stds, strict=True):
        value = pl.col(name).cast(pl.Float64, strict=False)
        z = (value - mean) / std
        out.append(pl.when(value.is_finite()).then(z).otherwise(0.0))
    return out


def _error_expr(model: dict[str, Any]) -> pl.Expr:
    """Per row: the distance between the standardised features and their PCA reconstruction."""
    zs = _standardised(model["features"], model["mean"], model["std"])
    squared = pl.sum_horizontal([z * z for z in zs])
    projections = [
        pl.sum_horizontal([z * w for z, w in zip(zs, component, strict=True)])
        for component in model["components"]
    ]
    kept = pl.sum_horizontal([p * p for p in projections])
    return (squared - kept).clip(lower_bound=0).sqrt()


def _fit_pca(
    frame: pl.LazyFrame, baseline: dict[str, Any], numeric: list[str], seed: int
) -> dict[str, Any] | None:
    usable = [
        c
        for c in numeric
        if (baseline["columns"][c]["summary"].get("std") or 0) > 0
        and baseline["columns"][c]["summary"]["n"] > 1
    ]
    if len(usable) < 2:
        return None
    means = [baseline["columns"][c]["summary"]["mean"] for c in usable]
    stds = [baseline["columns"][c]["summary"]["std"] for c in usable]
    matrix = (
        frame.select(
            [z.alias(c) for c, z in zip(usable, _standardised(usable, means, stds), strict=True)]
        )
        .collect(engine="streaming")
        .to_numpy()
    )
    if matrix.shape[0] < 3:
        return None
    if matrix.shape[0] > PCA_FIT_ROWS:
        rng = np.random.default_rng(seed)
        matrix = matrix[rng.choice(matrix.shape[0], PCA_FIT_ROWS, replace=False)]
    _, singular, vt = np.linalg.svd(matrix - matrix.mean(axis=0), full_matrices=False)
    variance = singular**2
    share = np.cumsum(variance) / variance.sum() if variance.sum() > 0 else np.ones_like(variance)
    keep = int(min(np.searchsorted(share, PCA_VARIANCE) + 1, len(usable) - 1))
    model: dict[str, Any] = {
        "features": usable,
        "mean": means,
        "std": stds,
        "components": vt[:keep].tolist(),
    }
    errors = (
        pl.from_numpy(matrix, schema=usable)
        .select(_error_expr({**model, "mean": [0.0] * len(usable), "std": [1.0] * len(usable)}))
        .to_series()
        .to_numpy()
    )
    model["error_mean"] = float(errors.mean())
    model["error_std"] = float(errors.std(ddof=1)) if errors.size > 1 else 0.0
    model["explained"] = float(share[keep - 1])
    return model


def baseline_bytes(baseline: dict[str, Any]) -> bytes:
    return json.dumps(baseline, allow_nan=False, separators=(",", ":")).encode()


def baseline_from_bytes(data: bytes) -> dict[str, Any]:
    return json.loads(io.BytesIO(data).read())


# -- the batch's side ---------------------------------------------------------------------------
def _edges(grid: np.ndarray) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Histogram edges for a grid: every grid point and the float just below it, each once
    (just below g_k *is* g_{k-1} when the two are adjacent floats), between -inf and inf.
    Returns the edges and, per grid point, the index of the cumulative count that is
    #(X < g_k) and the one that is #(X <= g_k)."""
    below = np.nextafter(grid, -np.inf)
    inner = np.unique(np.concatenate([below, grid]))
    return (
        [-math.inf, *inner.tolist(), math.inf],
        np.searchsorted(inner, below),
        np.searchsorted(inner, grid),
    )


def summarize_batch(frame: pl.LazyFrame, baseline: dict[str, Any]) -> dict[str, Any]:
    """The batch's summaries on the baseline's grids, in one pass."""
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = [pl.len().alias("__rows")]
    present = {}
    for name, spec in baseline["columns"].items():
        if name not in schema:
            continue
        present[name] = spec
        if spec["kind"] == "numeric":
            grid = np.asarray(spec["summary"]["grid"], dtype=float)
            value = pl.col(name).cast(pl.Float64, strict=False)
            finite = value.filter(value.is_finite())
            key = f"{name}::"
            exprs += [
                finite.count().alias(key + "n"),
                value.is_null().sum().alias(key + "nulls"),
                finite.mean().alias(key + "mean"),
                finite.std().alias(key + "std"),
            ]
            if grid.size:
                exprs += [
                    finite.hist(bins=_edges(grid)[0]).implode().alias(key + "hist"),
                    (float(grid[0]) - finite).clip(lower_bound=0).sum().alias(key + "below"),
                    (finite - float(grid[-1])).clip(lower_bound=0).sum().alias(key + "above"),
                ]
        else:
            exprs.append(_counts_expr(name).alias(f"{name}::counts"))
            exprs.append(pl.col(name).is_null().sum().alias(f"{name}::nulls"))
    model = baseline.get("multivariate")
    if model and all(f in schema for f in model["features"]):
        exprs.append(_error_expr(model).mean().alias("__pca_error"))
    row = frame.select(exprs).collect(engine="streaming").row(0, named=True)
    result: dict[str, Any] = {"n_rows": int(row["__rows"]), "columns": {}}
    for name, spec in present.items():
        key = f"{name}::"
        if spec["kind"] == "numeric":
            grid = np.asarray(spec["summary"]["grid"], dtype=float)
            n = int(row[key + "n"] or 0)
            if grid.size and n:
                cum = np.cumsum(np.asarray(row[key + "hist"], dtype=float))
                _, at_below, at_grid = _edges(grid)
                lt, le = cum[at_below] / n, cum[at_grid] / n
                below, above = row[key + "below"] / n, row[key + "above"] / n
            else:
                lt = le = np.zeros(grid.size)
                below = above = 0.0
            summary = stats.NumericSummary(
                grid, le, lt, n, _finite(row[key + "mean"]), _finite(row[key + "std"]),
                below=float(below), above=float(above),
            )  # fmt: skip
            result["columns"][name] = {"kind": "numeric", "summary": summary,
                                       "nulls": int(row[key + "nulls"])}  # fmt: skip
        else:
            counts = _counts(row[key + "counts"])
            result["columns"][name] = {"kind": "categorical", "counts": counts,
                                       "nulls": int(row[key + "nulls"])}  # fmt: skip
    result["pca_error"] = _finite(row.get("__pca_error"))
    return result


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- deciding -----------------------------------------------------------------------------------
@dataclass
class FeatureResult:
    feature: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    # How far past (>1) or within (<1) its threshold the column is: the sort key of the table.
    severity: float
    role: str = "feature"  # feature | label | prediction
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "role": self.role,
            "method": self.method,
            "statistic": _finite(self.statistic),
            "p_value": _finite(self.p_value),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "severity": _finite(self.severity),
            "note": self.note,
            **self.details,
        }


def default_method(kind: str, rows: int, settings: MonitorSettings) -> str:
    """Tests while the smaller sample (reference or batch values) is small; distances above, where
    a test calls every tiny difference significant. Choosing by the reference alone would let a
    small batch against a large reference use a distance whose chance value grows as the batch
    shrinks (about a fifth of unshifted 300-row batches were flagged against 2,000 rows)."""
    small = rows <= settings.small_sample
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chi2" if small else "jensenshannon"


def _method(name: str, kind: str, rows: int, settings: MonitorSettings) -> tuple[str, float]:
    column = settings.columns.get(name)
    method = column.method if column else "auto"
    if method == "auto":
        method = default_method(kind, rows, settings)
    allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
    if method not in allowed:
        from mldeck.errors import ConfigError

        raise ConfigError(
            f"[monitor.columns.{name}] method {method!r} does not apply to a {kind} column "
            f"(use one of {', '.join(sorted(allowed))})"
        )
    threshold = column.threshold if column and column.threshold else DEFAULT_THRESHOLDS[method]
    return method, threshold


def compare_column(
    name: str,
    ref: dict[str, Any],
    cur: dict[str, Any],
    reference_rows: int,
    settings: MonitorSettings,
    role: str = "feature",
) -> FeatureResult:
    kind = ref["kind"]
    n_cur = cur["summary"].n if kind == "numeric" else sum(cur["counts"].values())
    rows = min(reference_rows, n_cur) if n_cur else reference_rows
    method, threshold = _method(name, kind, rows, settings)
    details: dict[str, Any] = {"nulls": cur.get("nulls", 0)}
    p_value: float | None = None
    if kind == "numeric":
        r = stats.NumericSummary.from_dict(ref["summary"])
        c = cur["summary"]
        details.update(reference_mean=r.mean, current_mean=c.mean,
                       histogram=histogram(r, c))  # fmt: skip
        if method == "ks":
            statistic, p_value = stats.ks(r, c)
        elif method == "wasserstein":
            statistic = stats.wasserstein_normed(r, c)
        else:
            statistic = stats.psi_numeric(r, c)
    else:
        rc, cc = ref["counts"], cur["counts"]
        details["frequencies"] = _frequencies(rc, cc)
        if method == "chi2":
            statistic, p_value = stats.chi2(rc, cc)
        elif method == "jensenshannon":
            statistic = stats.jensenshannon(rc, cc)
        else:
            statistic = stats.psi_categorical(rc, cc)
    note = ""
    if n_cur == 0:
        # The reference had values and the batch has none: its distribution changed entirely.
        drifted, severity, note = True, math.inf, "no values in the batch"
    elif method in TESTS:
        drifted = p_value is not None and p_value < threshold
        severity = _test_severity(p_value, threshold)
    else:
        drifted = statistic is not None and statistic >= threshold
        severity = (statistic or 0.0) / threshold
    return FeatureResult(name, kind, method, _finite(statistic), _finite(p_value), threshold,
                         bool(drifted), severity, role, note, details)  # fmt: skip


def _test_severity(p_value: float | None, threshold: float) -> float:
    if p_value is None or not math.isfinite(p_value):
        return 0.0
    return -math.log10(max(p_value, 1e-300)) / -math.log10(threshold)


def histogram(ref: stats.NumericSummary, cur: stats.NumericSummary) -> dict[str, Any]:
    """Reference and batch fractions on ``HISTOGRAM_BINS`` equal-frequency reference bins, plus
    the batch's share outside the reference's range (for charts and reports)."""
    if ref.grid.size == 0:
        return {"edges": [], "reference": [], "current": []}
    picks = sorted(
        {int(np.searchsorted(ref.le, q / HISTOGRAM_BINS)) for q in range(HISTOGRAM_BINS + 1)}
    )
    picks = sorted({0, *[min(p, ref.grid.size - 1) for p in picks]})
    edges = ref.grid[picks]

    def fractions(s: stats.NumericSummary) -> list[float]:
        # below the first edge, [e0, e1], (e1, e2], ..., above the last edge
        inner = s.le[picks[1:]] if len(picks) > 1 else s.le[picks]
        if s.n == 0:
            return [0.0] * (inner.size + 2)
        return np.diff([0.0, s.lt[picks[0]], *inner, 1.0]).tolist()

    return {"edges": edges.tolist(), "reference": fractions(ref), "current": fractions(cur)}


def _frequencies(ref: dict[str, int], cur: dict[str, int]) -> dict[str, list[float]]:
    rt, ct = sum(ref.values()) or 1, sum(cur.values()) or 1
    keys = sorted(set(ref) | set(cur), key=lambda k: -(ref.get(k, 0) / rt + cur.get(k, 0) / ct))
    return {k: [ref.get(k, 0) / rt, cur.get(k, 0) / ct] for k in keys[:30]}


@dataclass
class MultivariateResult:
    error: float | None
    reference_error: float
    threshold: float
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "pca_reconstruction",
            "error": self.error,
            "reference_error": self.reference_error,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


def multivariate(
    baseline: dict[str, Any], batch: dict[str, Any], settings: MonitorSettings
) -> MultivariateResult | None:
    model = baseline.get("multivariate")
    if not model or not settings.multivariate or batch.get("pca_error") is None:
        return None
    n = max(batch["n_rows"], 1)
    margin = max(
        settings.multivariate_tolerance * model["error_mean"], 3 * model["error_std"] / math.sqrt(n)
    )
    threshold = model["error_mean"] + margin
    error = batch["pca_error"]
    return MultivariateResult(error, model["error_mean"], threshold, error > threshold)
