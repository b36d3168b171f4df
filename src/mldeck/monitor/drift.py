"""Drift: a batch against the reference's stored baseline, in one polars pass over the batch.

The *baseline* of a reference dataset version is built once (the only read of the reference's
rows) and kept as a content-addressed JSON artifact named
``drift-baseline:v<format>:<sha256>:<what>`` (*what*: a hash of the columns monitored and of the
outcome, so that turning a column's monitoring off or on builds another): per numeric column a
:class:`~mldeck.monitor.stats.NumericSummary` on its grid, per categorical column its category
counts, and for multivariate drift a PCA of the standardised numeric features with the
reference's reconstruction error. Every later batch is compared with it.

The batch's side is one streamed read of the batch file, folded chunk by chunk: per numeric
column the counts at and just below every grid point (through a lookup table over the grid's
range, exact), the mass outside the grid, count, missing values, mean and std; per categorical
column its value counts (the reference's categories through their hashes); the mean PCA
reconstruction error. Then :mod:`mldeck.monitor.stats` decides each column.
"""

from __future__ import annotations

import concurrent.futures
import io
import itertools
import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from mldeck import formatting as fmt
from mldeck.monitor import stats
from mldeck.monitor.settings import (
    CATEGORICAL_METHODS,
    DEFAULT_THRESHOLDS,
    NUMERIC_METHODS,
    TESTS,
    MonitorSettings,
)

BASELINE_FORMAT = 2  # 2: the label is kept out of the PCA
PCA_VARIANCE = 0.65  # components kept: enough to explain this share of the variance
ERROR_CAP_QUANTILE = 0.999  # a row's reconstruction error counts up to this reference quantile
PCA_FIT_ROWS = 200_000  # the PCA is fitted on at most this many reference rows (seeded sample)
HISTOGRAM_BINS = 20  # bins of the reference-vs-batch histograms shown and reported


def column_kind(dtype: pl.DataType) -> str | None:
    if dtype.is_numeric():
        return "numeric"
    if dtype in (pl.String, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "categorical"
    return None


# -- the reference's baseline -------------------------------------------------------------------
def build_baseline(
    frame: pl.LazyFrame, columns: dict[str, str], *, seed: int = 0, outcome: str | None = None
) -> dict:
    """The baseline of a reference: *columns* maps each monitored column to its kind. The
    *outcome* (the label) is summarised for label drift but kept out of the joint distribution:
    it is not a feature, and batches usually arrive without it."""
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
    result["multivariate"] = _fit_pca(frame, result, [c for c in numeric if c != outcome], seed)
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
    # A row's error counts up to the reference's 99.9th percentile: one wild row (a typo of
    # 10^6) moves a batch's mean as much as a thousand typical rows otherwise, and would read
    # as a change of the joint distribution. The reference's figures use the same cap.
    model["error_cap"] = float(np.quantile(errors, ERROR_CAP_QUANTILE))
    errors = np.minimum(errors, model["error_cap"])
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
# size). Polars, on its threads as it decodes, fills a numeric column's nulls with the
# reference's mean and gives their mask; numpy folds each chunk into per-column accumulators on
# the main thread. Per numeric column: the counts at and just below every grid point, count, mean
# and std, the mass outside the grid; per categorical column its value counts; the PCA
# reconstruction error of every row. Every scratch array is allocated once per batch.
#
# Per chunk, a numeric column costs a few passes of numpy over its values, shifted by the grid's
# lowest edge (d = x - low): the sums of d and d^2 (NaN or infinite values, seen in the sums, are
# then set apart in a cell past the table and given the nulls' d), each value's *cell*, one
# bincount of cells, and the comparisons below. The nulls are counted with their fill value and
# taken back out of its cell at the end; their d makes a zero in the PCA's standardised row.
#
# The counts on the grid are where the time goes (a binary search over ~2,000 edges per value
# costs several times reading the file). They are counted exactly in two steps: a value's cell,
# ``floor((x - e_0) * CELLS / (e_last - e_0))`` clipped to the table, is a monotone function of x;
# the same function of the edges says which cells hold edges. A value in a cell without edges
# lies above the same edges as the whole cell (the bincount of cells); only the values in the few
# cells holding edges are compared with those edges. A whole-number column on a grid of whole
# numbers gets a cell per number instead, and needs no comparison at all.

CHUNK_ROWS = 1 << 16  # rows per streamed chunk: its arrays stay in the CPU's cache
CELLS = 1 << 16  # cells of the lookup table over a grid's range


def _edges(grid: np.ndarray) -> np.ndarray:
    """[just below g0, g0, just below g1, g1, ...]: the count of values <= edge 2k is #(X < g_k),
    <= edge 2k+1 is #(X <= g_k). Just below g_k may equal g_{k-1} (adjacent floats): counting
    #(edges < x) per value stays right with repeated edges."""
    edges = np.empty(grid.size * 2)
    edges[0::2], edges[1::2] = np.nextafter(grid, -np.inf), grid
    return edges


class _Work:
    """Scratch arrays for a chunk, allocated once per batch: fresh arrays of this size per chunk
    and column would cost page faults every time."""

    def __init__(self, rows: int) -> None:
        self.finite = np.empty(rows, dtype=bool)
        self.lost = np.empty(rows, dtype=bool)
        self.near = np.empty(rows, dtype=bool)
        self.scaled = np.empty(rows)
        self.cells = np.empty(rows, dtype=np.intp)
        self.spare = np.empty(rows)


def _unit_cells(grid: np.ndarray) -> bool:
    """Whether *grid* is whole numbers few enough, and small enough to be exact as floats, to
    give each its own cell."""
    if not grid.size or not np.all(np.floor(grid) == grid):
        return False
    return bool(np.abs(grid).max() < 2.0**50 and grid[-1] - grid[0] + 3 <= CELLS)


def _low(grid: np.ndarray, integers: bool) -> float:
    """Where a column's cells start (below its grid: a value's x - low is never negative there)."""
    if integers and _unit_cells(grid):
        return float(grid[0]) - 1.5
    return float(np.nextafter(grid[0], -np.inf)) if grid.size else 0.0


def _fill_value(grid: np.ndarray, mean: float | None, integers: bool) -> float:
    """What a null becomes: the reference's mean (a zero in the PCA's standardised row)."""
    return mean if mean is not None else _low(grid, integers)


class _NumericColumn:
    """A numeric column's summary on its grid, chunk by chunk.

    Bin j of ``counts`` holds the compared values with exactly j edges below them (#(edges < x),
    what ``np.searchsorted(edges, x)`` gives); ``per_cell`` counts every finite value's cell."""

    def __init__(self, grid: np.ndarray, mean: float | None, integers: bool = False) -> None:
        self.grid = grid
        self.edges = _edges(grid)
        self.low = _low(grid, integers)
        if integers and _unit_cells(grid):
            # Whole numbers on a grid of whole numbers: cells of width one around each number
            # (cell c holds g_0 + c - 1), so a value's cell alone says which edges lie below it.
            # The end cells hold the values outside the grid (compared, for the mass outside).
            self.scale = 1.0
            self.size = int(grid[-1] - grid[0]) + 3
            self.compared = np.zeros(self.size + 1, dtype=bool)
            self.compared[[0, self.size - 1]] = True
            self.first = np.searchsorted(self.edges, grid[0] + np.arange(self.size) - 1.0)
            self.steps = 0
            self.top = float(self.size - 1)
        else:
            span = float(self.edges[-1]) - self.low if grid.size else 0.0
            # One cell when the grid is a single point (or empty): every value is compared.
            self.size = CELLS if span > 0 and math.isfinite(CELLS / span) else 1
            self.scale = CELLS / span if self.size > 1 else 0.0
            self.top = float(self.size - 1)
            edge_cells = self._cells(self.edges - self.low)
            per_cell = np.bincount(edge_cells, minlength=self.size)
            # The cells holding edges are compared; the cell past the table (missing values)
            # holds none.
            self.compared = np.concatenate([per_cell > 0, [False]])
            # #(edges in earlier cells): every value of cell c lies above them and below the
            # edges of later cells (the cell is monotone in x).
            self.first = np.searchsorted(edge_cells, np.arange(self.size), side="left")
            self.steps = int(per_cell.max()) if self.edges.size else 0
        self.fill_value = _fill_value(grid, mean, integers)
        self.fill = self.fill_value - self.low  # a missing value's x - low
        self.padded = np.concatenate([self.edges, np.full(self.steps + 1, np.inf)])
        self.counts = np.zeros(self.edges.size + 1, dtype=np.int64)
        self.per_cell = np.zeros(self.size, dtype=np.int64)
        self.n = self.nulls = self.missing = 0
        self.sum = self.squares = self.below = self.above = 0.0

    def _cells(
        self, shifted: np.ndarray, scaled: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The cells of finite values given as x - low (into *out* through *scaled*, scratch
        arrays, when given). Edges and values go through this one arithmetic: it is what makes
        the cell a monotone function shared by both."""
        scaled = np.multiply(shifted, self.scale, out=scaled)
        np.clip(scaled, 0.0, self.top, out=scaled)
        if out is None:
            return scaled.astype(np.intp)
        out[...] = scaled
        return out

    def _bins(self, values: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """#(edges < x) for values in compared cells: from the edges below their cell, one
        comparison per edge the cell holds."""
        bins = self.first.take(cells)
        for _ in range(self.steps):
            bins += self.padded.take(bins) < values
        return bins

    def add(self, values: np.ndarray, nulls: int, shifted: np.ndarray, work: _Work) -> None:
        """Fold in a chunk: *values* with its *nulls* nulls filled with ``fill_value`` (by
        polars, as it decodes); *shifted* receives x - low (``fill`` where missing). *work* holds
        the chunk's scratch arrays."""
        h = values.size
        scaled, cells = work.scaled[:h], work.cells[:h]
        np.subtract(values, self.low, out=shifted)
        with np.errstate(invalid="ignore", over="ignore"):  # checked just below
            total, squares = float(shifted.sum()), float(shifted @ shifted)
        lost = None
        missing = nulls
        if not math.isfinite(squares):  # NaN or infinite values: set apart, like nulls
            lost = np.logical_not(np.isfinite(shifted, out=work.finite[:h]), out=work.lost[:h])
            missing += int(np.count_nonzero(lost))
            np.copyto(shifted, self.fill, where=lost)
            total, squares = float(shifted.sum()), float(shifted @ shifted)
        self.nulls += nulls
        self.missing += missing
        self.n += h - missing
        self.sum += total - missing * self.fill
        self.squares += squares - missing * self.fill * self.fill
        self._cells(shifted, scaled, cells)
        if lost is not None:  # in the cell past the table: not counted (nulls: see summary)
            np.copyto(cells, self.size, where=lost)
        self.per_cell += np.bincount(cells, minlength=self.size + 1)[: self.size]
        near = np.flatnonzero(np.take(self.compared, cells, out=work.near[:h]))
        if not near.size:
            return
        close = values.take(near)
        bins = self._bins(close, cells.take(near))
        self.counts += np.bincount(bins, minlength=self.counts.size)
        # Outside the grid: no edge below (x < g_0), or every edge below (x > g_last); such
        # values are always compared (the table's end cells hold g_0 and g_last).
        self.below += float((self.grid[0] - close.compress(bins == 0)).sum())
        self.above += float((close.compress(bins == self.edges.size) - self.grid[-1]).sum())

    def _without_nulls(self) -> tuple[np.ndarray, np.ndarray]:
        """The counts less the nulls, which were counted where their fill value falls (inside
        the grid: the reference's mean lies between its least and greatest values)."""
        counts, per_cell = self.counts.copy(), self.per_cell.copy()
        if self.nulls:
            cell = self._cells(np.array([self.fill]))
            if self.compared[cell[0]]:
                counts[self._bins(np.array([self.fill_value]), cell)[0]] -= self.nulls
            else:
                per_cell[cell[0]] -= self.nulls
        return counts, per_cell

    def summary(self) -> stats.NumericSummary:
        n, grid = self.n, self.grid
        if n and grid.size:
            counts, per_cell = self._without_nulls()
            away = np.where(self.compared[: self.size], 0, per_cell)
            counts += np.bincount(self.first, weights=away, minlength=counts.size).astype(np.int64)
            cum = np.cumsum(counts)[:-1]
            lt, le = cum[0::2] / n, cum[1::2] / n
            below, above = self.below / n, self.above / n
        else:
            lt = le = np.zeros(grid.size)
            below = above = 0.0
        mean = std = None
        if n:
            mean = self.low + self.sum / n
            if n > 1:
                std = math.sqrt(max(self.squares - self.sum * self.sum / n, 0.0) / (n - 1))
        return stats.NumericSummary(grid, le, lt, n, _finite(mean), _finite(std),
                                    below=below, above=above)  # fmt: skip


class _CategoricalColumn:
    """A categorical column's value counts, chunk by chunk, from the hashes of its text.

    The reference's categories are found through a small table indexed by the low bits of their
    hashes (sized so no two share a slot): a value counts as a category when its hash equals the
    category's, one 64-bit comparison instead of comparing text. Only the values that are not
    the reference's categories (new ones, and nulls) are counted as text. A value outside the
    categories would be miscounted only if its hash (seeded per batch, so it cannot be aimed at)
    equalled a category's: about 1 in 2^64 per distinct value and category."""

    def __init__(self, name: str, categories: list[str], seed: int) -> None:
        self.name = name
        self.categories = categories
        hashes = pl.Series(categories, dtype=pl.String).hash(seed).to_numpy().view(np.int64)
        slots = 1 << max(4, (2 * len(categories)).bit_length())
        while len(categories) and np.unique(hashes & (slots - 1)).size < len(categories):
            slots <<= 1
        self.mask = slots - 1
        self.hashes = np.zeros(slots, dtype=np.int64)
        self.codes = np.full(slots, len(categories), dtype=np.intp)  # no category: the last code
        self.hashes[hashes & self.mask] = hashes
        self.codes[hashes & self.mask] = np.arange(len(categories))
        self.tally = np.zeros(len(categories) + 1, dtype=np.int64)
        self.others: list[pl.DataFrame] = []
        self.nulls = 0

    def add(self, text: pl.Series, hashes: np.ndarray) -> None:
        slots = hashes & self.mask
        codes = self.codes.take(slots)
        codes[self.hashes.take(slots) != hashes] = len(self.categories)
        tally = np.bincount(codes, minlength=self.tally.size)
        self.tally += tally
        nulls = text.null_count()
        self.nulls += nulls
        if tally[-1] > nulls:  # values other than the categories: counted as text
            other = text.filter(pl.Series(codes == len(self.categories))).drop_nulls()
            self.others.append(other.value_counts(name="count"))

    def counts(self) -> dict[str, int]:
        counts = {c: int(k) for c, k in zip(self.categories, self.tally, strict=False) if k}
        if self.others:
            total = pl.concat(self.others).group_by(self.name).agg(pl.col("count").sum())
            counts.update((str(k), int(v)) for k, v in total.iter_rows())
        return counts


class _ReconstructionError:
    """The summed PCA reconstruction error of the rows: the length of a standardised row's part
    outside the kept components, i.e. its projection on their orthogonal complement. A row comes
    as its features' x - low: standardised, (x - low - (mean - low)) / std."""

    def __init__(self, model: dict[str, Any], lows: list[float]) -> None:
        kept = np.asarray(model["components"], dtype=float).reshape(-1, len(model["features"]))
        values, vectors = np.linalg.eigh(np.eye(kept.shape[1]) - kept.T @ kept)
        rest = vectors[:, values > 0.5].T / np.asarray(model["std"], dtype=float)
        self.rest = np.ascontiguousarray(rest)
        self.offset = (rest @ (np.asarray(model["mean"], dtype=float) - lows))[:, None]
        self.cap = float(model.get("error_cap", math.inf))
        self.total = 0.0

    def add(self, shifted: np.ndarray) -> None:
        rest = self.rest @ shifted
        rest -= self.offset
        errors = np.sqrt(np.einsum("ij,ij->j", rest, rest))
        self.total += float(np.minimum(errors, self.cap, out=errors).sum())


def _one_blas_thread() -> Any:
    """Small matrix products per chunk: BLAS threads would only fight polars' for the cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _fold(chunk: pl.DataFrame, columns: list[tuple[str, _NumericColumn, np.ndarray]],
          work: _Work) -> None:  # fmt: skip
    """Fold a chunk's *columns* (name, summary, where its x - low goes) with *work*'s arrays."""
    for name, column, out in columns:
        nulls = chunk.get_column(f"__null::{name}").sum()
        column.add(chunk.get_column(name).to_numpy(), nulls, out, work)


def summarize_batch(frame: pl.LazyFrame, baseline: dict[str, Any]) -> dict[str, Any]:
    """The batch's summaries on the baseline's grids, in one streamed pass.

    The query starts first: the tables are built while polars decodes the first rows. The
    numeric columns are then folded in two halves side by side, one in a worker thread (numpy
    lets go of the GIL in its loops), each with its own scratch arrays: once polars has decoded
    the file, one thread alone left a core idle."""
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = []
    specs: dict[str, tuple[np.ndarray, float | None, bool]] = {}
    categories: dict[str, list[str]] = {}
    seed = secrets.randbits(63)
    for name, spec in baseline["columns"].items():
        if name not in schema:
            continue
        if spec["kind"] == "numeric":
            summary = spec["summary"]
            grid = np.asarray(summary["grid"], dtype=float)
            specs[name] = (grid, _finite(summary.get("mean")), schema[name].is_integer())
            # Nulls filled by polars as it decodes (numpy then reads the values in place), and
            # counted from their mask.
            value = pl.col(name).cast(pl.Float64, strict=False)
            exprs += [value.fill_null(_fill_value(*specs[name])),
                      value.is_null().alias(f"__null::{name}")]  # fmt: skip
        else:
            categories[name] = list(spec["counts"])
            text = pl.col(name) if schema[name] == pl.String else pl.col(name).cast(pl.String)
            exprs += [text, text.hash(seed).alias(f"__hash::{name}")]
    batches = frame.select(exprs).collect_batches(chunk_size=CHUNK_ROWS) if exprs else None
    numeric = {name: _NumericColumn(*spec) for name, spec in specs.items()}
    categorical = {name: _CategoricalColumn(name, cats, seed) for name, cats in categories.items()}
    model = baseline.get("multivariate")
    error = None
    features: list[str] = []
    if model and all(f in numeric for f in model["features"]):
        features = model["features"]
        error = _ReconstructionError(model, [numeric[f].low for f in features])
    order = [*features, *(name for name in numeric if name not in features)]
    half = len(order) // 2
    row = {name: i for i, name in enumerate(features)}
    rows = 0
    if batches is None:
        rows = frame.select(pl.len()).collect().item()
    else:
        works = [_Work(CHUNK_ROWS), _Work(CHUNK_ROWS)]
        matrix = np.empty((len(features), CHUNK_ROWS))
        with (
            _one_blas_thread(),
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mldeck-drift") as pool,
        ):
            for chunk in batches:
                height = chunk.height
                rows += height
                if height > matrix.shape[1]:  # polars keeps to chunk_size; never trust it blindly
                    works, matrix = (
                        [_Work(height), _Work(height)],
                        np.empty((len(features), height)),
                    )
                # The features' x - low go to the PCA's matrix, the others' to scratch.
                sides = [[(name, numeric[name], matrix[row[name], :height] if name in row
                           else work.spare[:height]) for name in names]
                         for names, work in ((order[:half], works[0]), (order[half:], works[1]))]  # fmt: skip
                other = pool.submit(_fold, chunk, sides[1], works[1])
                try:
                    _fold(chunk, sides[0], works[0])
                    for name, column in categorical.items():
                        hashes = chunk.get_column(f"__hash::{name}").to_numpy().view(np.int64)
                        column.add(chunk.get_column(name), hashes)
                except BaseException:  # a Ctrl-C stays a Ctrl-C, whatever the worker met
                    concurrent.futures.wait([other])
                    raise
                other.result()
                if error is not None and height:
                    error.add(matrix[:, :height])
    result: dict[str, Any] = {"n_rows": int(rows), "columns": {}}
    for name in baseline["columns"]:
        if name in numeric:
            column = numeric[name]
            # Missing: null, NaN or infinite (each left out of the summary).
            result["columns"][name] = {"kind": "numeric", "summary": column.summary(),
                                       "nulls": column.missing,
                                       "integers": specs[name][2]}  # fmt: skip
        elif name in categorical:
            result["columns"][name] = {"kind": "categorical",
                                       "counts": categorical[name].counts(),
                                       "nulls": categorical[name].nulls}  # fmt: skip
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


def _values(ref: dict[str, Any]) -> int:
    """How many values a reference column holds (its rows less its nulls)."""
    if ref["kind"] == "numeric":
        return stats.NumericSummary.from_dict(ref["summary"]).n
    return sum(ref["counts"].values())


def _sample(n_ref: int, n_cur: int, reference_rows: int) -> int:
    """The size that picks the default method: the smaller side's values (a column mostly null
    in the reference holds few, however many rows it has)."""
    return min(n_ref, n_cur) if n_ref and n_cur else (n_ref or n_cur or reference_rows)


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
    n_ref = _values(ref)
    method, threshold = _method(name, kind, _sample(n_ref, n_cur, reference_rows), settings)
    details: dict[str, Any] = {"nulls": cur.get("nulls", 0)}
    p_value: float | None = None
    if kind == "numeric":
        r = stats.NumericSummary.from_dict(ref["summary"])
        c = cur["summary"]
        details.update(reference_mean=r.mean, current_mean=c.mean,
                       histogram=histogram(r, c, integers=bool(cur.get("integers"))))  # fmt: skip
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
    if n_cur == 0 and n_ref == 0:  # empty on both sides: nothing changed (it read "drifted")
        drifted, severity, note = False, 0.0, "no values in the batch nor the reference"
    elif n_cur == 0:
        # The reference had values and the batch has none: its distribution changed entirely.
        drifted, severity, note = True, math.inf, "no values in the batch"
    elif n_ref == 0:  # and the other way round (the statistic, undefined, said "not drifted")
        drifted, severity, note = True, math.inf, "no values in the reference"
    elif method in TESTS:
        drifted = p_value is not None and p_value < threshold
        severity = _test_severity(p_value, threshold)
    else:
        drifted = statistic is not None and statistic >= threshold
        severity = (statistic or 0.0) / threshold
    if n_cur and reference_rows and role == "feature":
        # Missing values: a column 98 % null whose few values look like the reference's was
        # "not drifted". Not the label's: labels come later, a batch is often partly labelled.
        nulls = int(cur.get("nulls", 0) or 0)
        was = max(reference_rows - n_ref, 0) / reference_rows
        now = nulls / (n_cur + nulls)
        if now - was >= settings.missing_share:
            drifted, severity = True, max(severity, (now - was) / settings.missing_share)
            shown_now, shown_was = fmt.apart(now, was, percent=True)
            note = f"missing in {shown_now} of rows (reference {shown_was})"
        details.update(missing_share=now, reference_missing_share=was)
    return FeatureResult(name, kind, method, _finite(statistic), _finite(p_value), threshold,
                         bool(drifted), severity, role, note, details)  # fmt: skip


def missing_column(
    name: str, ref: dict[str, Any], batch_rows: int, reference_rows: int, settings: MonitorSettings
) -> FeatureResult:
    """A reference column the batch lacks: drifted, as a column with no values is (left out,
    it would shrink the count the drift share is taken over and go unsaid). The method is the
    one :func:`compare_column` would pick for the batch's *batch_rows* rows."""
    size = _sample(_values(ref), batch_rows, reference_rows)
    method, threshold = _method(name, ref["kind"], size, settings)
    return FeatureResult(name, ref["kind"], method, None, None, threshold, True, math.inf,
                         note="not in the batch")  # fmt: skip


def _test_severity(p_value: float | None, threshold: float) -> float:
    if p_value is None or not math.isfinite(p_value):
        return 0.0
    return -math.log10(max(p_value, 1e-300)) / -math.log10(threshold)


def histogram(
    ref: stats.NumericSummary, cur: stats.NumericSummary, *, integers: bool = False
) -> dict[str, Any]:
    """Reference and batch fractions on ``HISTOGRAM_BINS`` equal-frequency reference bins, plus
    the batch's share outside the reference's range (for charts and reports); *integers*: the
    batch's column holds whole numbers (its bars may then be labelled by them)."""
    if ref.grid.size == 0:
        return {"edges": [], "reference": [], "current": []}
    picks = sorted(
        {int(np.searchsorted(ref.le, q / HISTOGRAM_BINS)) for q in range(HISTOGRAM_BINS + 1)}
    )
    picks = sorted({0, *[min(p, ref.grid.size - 1) for p in picks]})
    edges = ref.grid[picks]
    # A value the reference holds often at its least (0 of a 0/1 column, no calls) gets a bin of
    # its own: [e0, e1] put the 0s and the 1s of a 0/1 column in one bar, hiding any shift.
    point = len(picks) > 1 and float(ref.le[picks[0]] - ref.lt[picks[0]]) >= POINT_SHARE

    def fractions(s: stats.NumericSummary) -> list[float]:
        # below the first edge, [e0, e1] (or = e0, then (e0, e1]), (e1, e2], ..., above the last
        inner = s.le[picks[1:]] if len(picks) > 1 else s.le[picks]
        at_least = [s.le[picks[0]]] if point else []
        if s.n == 0:
            return [0.0] * (inner.size + 2 + len(at_least))
        return np.diff([0.0, s.lt[picks[0]], *at_least, *inner, 1.0]).tolist()

    return {"edges": edges.tolist(), "point": point, "integers": integers,
            "reference": fractions(ref), "current": fractions(cur)}  # fmt: skip


POINT_SHARE = 0.05  # of the reference at its least value: that value gets a bin of its own


def histogram_bins(hist: dict[str, Any]) -> list[tuple[str, float, float]]:
    """What each bin of a :func:`histogram` holds, as (how, a, b): ``<`` (below a), ``=`` (a
    alone), ``[]`` (a to b, both in), ``(]`` (above a, up to b) and ``>`` (above a)."""
    edges = [float(e) for e in hist.get("edges") or []]
    if not edges:
        return []
    if len(edges) == 1:
        return [("<", edges[0], edges[0]), ("=", edges[0], edges[0]), (">", edges[0], edges[0])]
    bins = [("<", edges[0], edges[0])]
    if hist.get("point"):
        bins += [("=", edges[0], edges[0]), ("(]", edges[0], edges[1])]
    else:
        bins.append(("[]", edges[0], edges[1]))
    bins += [("(]", a, b) for a, b in itertools.pairwise(edges[1:])]
    return [*bins, (">", edges[-1], edges[-1])]


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
