"""Drift: a batch against the reference's stored baseline, in one polars pass over the batch.

The *baseline* of a reference dataset version is built once (the only read of the reference's
rows) and kept as a content-addressed JSON artifact named ``drift-baseline:<sha256>``: per
numeric column a :class:`~mldeck.monitor.stats.NumericSummary` on its grid, per categorical
column its category counts, and for multivariate drift a PCA of the standardised numeric
features with the reference's reconstruction error. Every later batch is compared with it.

The batch's side is one streamed read of the batch file, folded chunk by chunk: per numeric
column the counts at and just below every grid point (through a lookup table over the grid's
range, exact), the mass outside the grid, count, nulls, mean and std; per categorical column its
value counts; the mean PCA reconstruction error. Then :mod:`mldeck.monitor.stats` decides each
column.
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
#
# The batch is read once, streamed in chunks of CHUNK_ROWS rows (memory stays bounded whatever its
# size), and every chunk is folded into per-column accumulators with numpy while polars reads the
# next one. Per numeric column: the counts at and just below every grid point, count, mean, std
# (merged across chunks), the mass outside the grid; per categorical column its value counts; the
# PCA reconstruction error of every row.
#
# The counts on the grid are where the time goes (a binary search over ~2,000 edges per value
# costs several times reading the file). They are counted exactly in two steps: a value's *cell*,
# ``floor((x - e_0) * CELLS / (e_last - e_0))`` clipped to the table, is a monotone function of x;
# the same function of the edges says which cells hold edges. A value in a cell without edges
# lies above the same edges as the whole cell (one bincount of cells per chunk); only the values
# in the few cells holding edges are compared with those edges.

CHUNK_ROWS = 1 << 16  # rows per streamed chunk: its arrays stay in the CPU's cache
CELLS = 1 << 16  # cells of the lookup table over a grid's range


def _edges(grid: np.ndarray) -> np.ndarray:
    """[just below g0, g0, just below g1, g1, ...]: the count of values <= edge 2k is #(X < g_k),
    <= edge 2k+1 is #(X <= g_k). Just below g_k may equal g_{k-1} (adjacent floats): counting
    #(edges < x) per value stays right with repeated edges."""
    edges = np.empty(grid.size * 2)
    edges[0::2], edges[1::2] = np.nextafter(grid, -np.inf), grid
    return edges


class _GridCounts:
    """Counts of finite values per gap between a grid's edges, bin j holding the values with
    exactly j edges below them (#(edges < x), what ``np.searchsorted(edges, x)`` gives)."""

    def __init__(self, grid: np.ndarray) -> None:
        self.edges = _edges(grid)
        self.counts = np.zeros(self.edges.size + 1, dtype=np.int64)
        self.low = float(self.edges[0])
        span = float(self.edges[-1]) - self.low
        self.scale = CELLS / span if span > 0 else math.inf
        self.table = math.isfinite(self.scale)
        if not self.table:  # one grid point: a plain search is as fast
            return
        edge_cells = self._cells(self.edges)
        per_cell = np.bincount(edge_cells, minlength=CELLS)
        self.has_edges = per_cell > 0
        # #(edges in earlier cells): every value of cell c lies above them and below the edges
        # of later cells (the cell is monotone in x).
        self.first = np.searchsorted(edge_cells, np.arange(CELLS), side="left")
        self.steps = int(per_cell.max())
        self.padded = np.concatenate([self.edges, np.full(self.steps + 1, np.inf)])
        self.per_cell = np.zeros(CELLS, dtype=np.int64)

    def _cells(self, values: np.ndarray) -> np.ndarray:
        cells = np.subtract(values, self.low)
        cells *= self.scale
        np.clip(cells, 0, CELLS - 1, out=cells)
        return cells.astype(np.intp)

    def add(self, values: np.ndarray) -> None:
        if not self.table:
            bins = np.searchsorted(self.edges, values, side="left")
            self.counts += np.bincount(bins, minlength=self.counts.size)
            return
        cells = self._cells(values)
        self.per_cell += np.bincount(cells, minlength=CELLS)
        near = self.has_edges.take(cells)
        if near.any():
            close = values.compress(near)
            bins = self.first.take(cells.compress(near))
            for _ in range(self.steps):
                bins += self.padded.take(bins) < close
            self.counts += np.bincount(bins, minlength=self.counts.size)

    def cumulative(self) -> np.ndarray:
        """#(X <= edge j) for every edge."""
        counts = self.counts.copy()
        if self.table:
            away = np.where(self.has_edges, 0, self.per_cell)
            counts += np.bincount(self.first, weights=away, minlength=counts.size).astype(np.int64)
        return np.cumsum(counts)[:-1]


class _NumericColumn:
    """A numeric column's summary on its grid, chunk by chunk (mean and variance merged)."""

    def __init__(self, grid: np.ndarray) -> None:
        self.grid = grid
        self.counts = _GridCounts(grid) if grid.size else None
        self.n = self.nulls = 0
        self.mean = self.m2 = self.below = self.above = 0.0

    def add(self, values: np.ndarray, nulls: int) -> np.ndarray:
        """Fold in a chunk (nulls as NaN); returns which of its values are finite."""
        self.nulls += nulls
        finite = np.isfinite(values)
        x = values if finite.all() else values.compress(finite)
        k = x.size
        if not k:
            return finite
        with np.errstate(over="ignore", invalid="ignore"):
            self._fold(x, k)
        return finite

    def _fold(self, x: np.ndarray, k: int) -> None:
        mean = float(x.mean())
        dev = x - mean
        n, delta = self.n + k, mean - self.mean
        self.m2 += float(dev @ dev) + delta * delta * self.n * k / n
        self.mean += delta * k / n
        self.n = n
        if self.counts is not None:
            self.counts.add(x)
            first, last = float(self.grid[0]), float(self.grid[-1])
            if x.min() < first:
                self.below += float(np.clip(first - x, 0, None).sum())
            if x.max() > last:
                self.above += float(np.clip(x - last, 0, None).sum())

    def summary(self) -> stats.NumericSummary:
        n, grid = self.n, self.grid
        if self.counts is not None and n:
            cum = self.counts.cumulative()
            lt, le = cum[0::2] / n, cum[1::2] / n
            below, above = self.below / n, self.above / n
        else:
            lt = le = np.zeros(grid.size)
            below = above = 0.0
        std = math.sqrt(self.m2 / (n - 1)) if n > 1 else None
        return stats.NumericSummary(grid, le, lt, n, _finite(self.mean) if n else None,
                                    _finite(std), below=below, above=above)  # fmt: skip


class _ReconstructionError:
    """The summed PCA reconstruction error of the rows: the length of a standardised row's part
    outside the kept components, i.e. its projection on their orthogonal complement."""

    def __init__(self, model: dict[str, Any]) -> None:
        kept = np.asarray(model["components"], dtype=float).reshape(-1, len(model["features"]))
        values, vectors = np.linalg.eigh(np.eye(kept.shape[1]) - kept.T @ kept)
        self.rest = np.ascontiguousarray(vectors[:, values > 0.5].T)
        self.mean = np.asarray(model["mean"], dtype=float)
        self.std = np.asarray(model["std"], dtype=float)
        self.total = 0.0

    def add(self, columns: list[tuple[np.ndarray, np.ndarray]]) -> None:
        rows = columns[0][0].size
        z = np.empty((len(columns), rows))
        for i, (values, finite) in enumerate(columns):
            np.subtract(values, self.mean[i], out=z[i])
            z[i] /= self.std[i]
            if not finite.all():
                z[i][~finite] = 0.0
        rest = self.rest @ z
        self.total += float(np.sqrt(np.einsum("ij,ij->j", rest, rest)).sum())


def _one_blas_thread() -> Any:
    """Small matrix products per chunk: BLAS threads would only fight polars' for the cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def summarize_batch(frame: pl.LazyFrame, baseline: dict[str, Any]) -> dict[str, Any]:
    """The batch's summaries on the baseline's grids, in one streamed pass."""
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = []
    numeric: dict[str, _NumericColumn] = {}
    categorical: dict[str, list[pl.DataFrame]] = {}
    for name, spec in baseline["columns"].items():
        if name not in schema:
            continue
        if spec["kind"] == "numeric":
            numeric[name] = _NumericColumn(np.asarray(spec["summary"]["grid"], dtype=float))
            exprs.append(pl.col(name).cast(pl.Float64, strict=False))
        else:
            categorical[name] = []
            text = pl.col(name) if schema[name] == pl.String else pl.col(name).cast(pl.String)
            exprs.append(text)
    model = baseline.get("multivariate")
    error = None
    if model and all(f in schema for f in model["features"]):
        error = _ReconstructionError(model)
        for f in model["features"]:
            if f not in numeric:
                exprs.append(pl.col(f).cast(pl.Float64, strict=False).alias(f"__pca::{f}"))
    rows = 0
    nulls = dict.fromkeys(categorical, 0)
    if not exprs:
        rows = frame.select(pl.len()).collect().item()
    else:
        with _one_blas_thread():
            for chunk in frame.select(exprs).collect_batches(chunk_size=CHUNK_ROWS):
                rows += chunk.height
                arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                for name, column in numeric.items():
                    series = chunk.get_column(name)
                    values = series.fill_null(math.nan).to_numpy()
                    arrays[name] = (values, column.add(values, series.null_count()))
                for name, parts in categorical.items():
                    series = chunk.get_column(name)
                    nulls[name] += series.null_count()
                    parts.append(series.value_counts(name="count"))
                if error is not None and chunk.height:
                    for f in model["features"]:
                        if f not in arrays:
                            values = chunk.get_column(f"__pca::{f}").fill_null(math.nan).to_numpy()
                            arrays[f] = (values, np.isfinite(values))
                    error.add([arrays[f] for f in model["features"]])
    result: dict[str, Any] = {"n_rows": int(rows), "columns": {}}
    for name in baseline["columns"]:
        if name in numeric:
            column = numeric[name]
            result["columns"][name] = {"kind": "numeric", "summary": column.summary(),
                                       "nulls": column.nulls}  # fmt: skip
        elif name in categorical:
            counts: dict[str, int] = {}
            if categorical[name]:
                total = (
                    pl.concat(categorical[name])
                    .drop_nulls(name)
                    .group_by(name)
                    .agg(pl.col("count").sum())
                )
                counts = {str(k): int(v) for k, v in total.iter_rows()}
            result["columns"][name] = {"kind": "categorical", "counts": counts,
                                       "nulls": nulls[name]}  # fmt: skip
    result["pca_error"] = _finite(error.total / rows) if error is not None and rows else None
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
