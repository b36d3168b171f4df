"""Drift statistics from summaries, never from the reference's rows.

A numeric column's reference is summarised once as a *grid* of values with the reference's
cumulative distribution at each: ``le[k] = P(X <= grid[k])`` and ``lt[k] = P(X < grid[k])``.
The grid is every distinct reference value when there are at most ``EXACT_VALUES`` of them (the
statistics are then exact), else ``GRID_POINTS`` + 1 quantiles (the KS statistic is then within
``1 / GRID_POINTS`` of the exact one). A batch is summarised on the same grid in one polars pass
(:mod:`mldeck.monitor.drift`): the same two cumulative fractions, plus the mass outside the grid
for the Wasserstein distance.

Categorical columns are compared on their frequencies. Every function here is plain numpy and
scipy on those summaries; ``tests/test_monitor_stats.py`` checks them against scipy's functions
on the raw samples, to these tolerances:

- KS statistic: exact on an exact grid; on a quantile grid within ``1 / GRID_POINTS`` (strictly
  less than that share of the reference lies between two grid points). p-value: scipy's
  ``ks_2samp(method="asymp")`` at that statistic.
- Wasserstein: exact when no batch value lies strictly between two grid points of an exact grid;
  otherwise off by at most the sum over gaps of width x (share of either sample strictly inside
  the gap). On normal samples: within 5 % when the batch is shifted by 0.1 sd or more, within
  0.005 reference standard deviations always.
- Chi-square (without Yates' correction), Jensen-Shannon: equal to scipy's, to rounding.
- PSI: equal to the value worked by hand on the bins described in :func:`psi_numeric`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

EXACT_VALUES = 1000
GRID_POINTS = 1000
PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin counts as this fraction, so PSI stays finite


@dataclass
class NumericSummary:
    """A numeric column's distribution on a grid (fractions of its finite values)."""

    grid: np.ndarray
    le: np.ndarray  # P(X <= grid[k])
    lt: np.ndarray  # P(X < grid[k])
    n: int  # finite values
    mean: float | None = None
    std: float | None = None
    # E[(grid[0] - X)+] and E[(X - grid[-1])+]: the mass outside the grid, for Wasserstein.
    below: float = 0.0
    above: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "grid": self.grid.tolist(),
            "le": self.le.tolist(),
            "lt": self.lt.tolist(),
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "below": self.below,
            "above": self.above,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericSummary:
        return cls(
            grid=np.asarray(data["grid"], dtype=float),
            le=np.asarray(data["le"], dtype=float),
            lt=np.asarray(data["lt"], dtype=float),
            n=int(data["n"]),
            mean=data.get("mean"),
            std=data.get("std"),
            below=float(data.get("below", 0.0)),
            above=float(data.get("above", 0.0)),
        )


def grid_of(sorted_values: np.ndarray) -> np.ndarray:
    """The grid for a reference column (its sorted finite values)."""
    if sorted_values.size == 0:
        return np.empty(0)
    distinct = np.unique(sorted_values)
    if distinct.size <= EXACT_VALUES:
        return distinct
    positions = np.linspace(0, sorted_values.size - 1, GRID_POINTS + 1)
    return np.unique(sorted_values[np.round(positions).astype(np.int64)])


def summarize_sorted(sorted_values: np.ndarray, grid: np.ndarray) -> NumericSummary:
    """Summarise sorted finite values on *grid* (numpy; used for references)."""
    n = int(sorted_values.size)
    if n == 0:
        zeros = np.zeros(grid.size)
        return NumericSummary(grid, zeros, zeros.copy(), 0)
    le = np.searchsorted(sorted_values, grid, side="right") / n
    lt = np.searchsorted(sorted_values, grid, side="left") / n
    below = above = 0.0
    if grid.size:
        below = float(np.sum(np.clip(grid[0] - sorted_values, 0, None)) / n)
        above = float(np.sum(np.clip(sorted_values - grid[-1], 0, None)) / n)
    std = float(np.std(sorted_values, ddof=1)) if n > 1 else None
    return NumericSummary(
        grid, le, lt, n, float(np.mean(sorted_values)), std, below=below, above=above
    )


def ks(ref: NumericSummary, cur: NumericSummary) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D, p-value) with scipy's asymptotic distribution.

    On a grid of every reference value, sup |F - G| is reached at a grid point or just before
    one (F is constant in between), so D is exact; on a quantile grid F rises by less than
    ``1 / GRID_POINTS`` between grid points, so D is within that of the exact one."""
    from scipy.stats import kstwo

    if ref.n == 0 or cur.n == 0 or ref.grid.size == 0:
        return math.nan, math.nan
    gaps = np.concatenate(
        [np.abs(ref.le - cur.le), np.abs(ref.lt - cur.lt), [cur.lt[0], 1 - cur.le[-1]]]
    )
    d = float(np.max(gaps))
    # scipy's ks_2samp(method="asymp"): kstwo with n = round(m n / (m + n)), nan below 1.
    en = np.round(ref.n * cur.n / (ref.n + cur.n))
    p = float(np.clip(kstwo.sf(d, en), 0, 1)) if en >= 1 else math.nan
    return d, p


def wasserstein(ref: NumericSummary, cur: NumericSummary) -> float:
    """Wasserstein-1 distance, the integral of |F - G|: exact outside the grid, each cumulative
    distribution taken as linear between a grid point and the next one's left limit.

    Both the true and the linear F stay between F(g_k) and F(g_k+1 -) inside a gap, and so do
    the G's: the error is at most the sum over gaps of (g_k+1 - g_k) x (the share of the
    reference and of the batch strictly inside the gap), and nothing when that share is 0."""
    if ref.n == 0 or cur.n == 0 or ref.grid.size == 0:
        return math.nan
    # A reference grid spans the reference (its min and max are grid points), so outside the
    # grid only the batch has mass: the integral there is E[(g0 - X)+] + E[(X - gK)+].
    total = abs(cur.below - ref.below) + abs(cur.above - ref.above)
    if ref.grid.size > 1:
        width = np.diff(ref.grid)
        start = ref.le[:-1] - cur.le[:-1]
        end = ref.lt[1:] - cur.lt[1:]
        same = np.sign(start) * np.sign(end) >= 0
        a, b = np.abs(start), np.abs(end)
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = np.where(a + b > 0, (a * a + b * b) / (2 * (a + b)), 0.0)
        total += float(np.sum(width * np.where(same, (a + b) / 2, crossing)))
    return total


def wasserstein_normed(ref: NumericSummary, cur: NumericSummary) -> float:
    """Wasserstein distance in units of the reference's standard deviation (one threshold fits
    every column); a constant reference uses its absolute value, or 1."""
    distance = wasserstein(ref, cur)
    scale = ref.std if ref.std else (abs(ref.mean) if ref.mean else 1.0)
    return distance / scale


def psi(ref_fractions: np.ndarray, cur_fractions: np.ndarray) -> float:
    """Population stability index, sum (c - r) ln(c / r), empty bins at ``PSI_FLOOR``."""
    r = np.clip(np.asarray(ref_fractions, dtype=float), PSI_FLOOR, None)
    c = np.clip(np.asarray(cur_fractions, dtype=float), PSI_FLOOR, None)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_numeric(ref: NumericSummary, cur: NumericSummary, bins: int = PSI_BINS) -> float:
    """PSI on the reference's equal-frequency bins (deciles), read off the grid.

    Bin *q* ends at the first grid point where the reference's cumulative share reaches
    ``q / bins``; a cut that would fall on the reference's maximum (an empty top bin, as when
    most of a column is its largest value) moves to the grid point before it, so a column of
    two values always gets two bins. A constant reference gets three: below, at and above its
    value (else its one bin would hide any change)."""
    if ref.n == 0 or cur.n == 0 or ref.grid.size == 0:
        return math.nan
    last = ref.grid.size - 1
    if last == 0:
        ref_cum = np.array([0.0, ref.lt[0], ref.le[0], 1.0])
        cur_cum = np.array([0.0, cur.lt[0], cur.le[0], 1.0])
        return psi(np.diff(ref_cum), np.diff(cur_cum))
    cuts = sorted({min(int(np.searchsorted(ref.le, q / bins)), last - 1) for q in range(1, bins)})
    ref_cum = np.concatenate([[0.0], ref.le[cuts], [1.0]])
    cur_cum = np.concatenate([[0.0], cur.le[cuts], [1.0]])
    return psi(np.diff(ref_cum), np.diff(cur_cum))


def _aligned(ref: dict[str, int], cur: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(ref) | set(cur))
    return (
        np.array([ref.get(k, 0) for k in keys], dtype=float),
        np.array([cur.get(k, 0) for k in keys], dtype=float),
    )


def chi2(ref: dict[str, int], cur: dict[str, int]) -> tuple[float, float]:
    """Chi-square test of homogeneity of the two samples' category counts: (statistic, p), as
    ``scipy.stats.chi2_contingency(table, correction=False)`` (no Yates' correction, which
    scipy applies by default to 2 x 2 tables only)."""
    from scipy.stats import chi2_contingency

    r, c = _aligned(ref, cur)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    if r.sum() == 0 or c.sum() == 0:
        return math.nan, math.nan
    if r.size < 2:
        return 0.0, 1.0
    result = chi2_contingency(np.vstack([r, c]), correction=False)
    return float(result.statistic), float(result.pvalue)


def jensenshannon(ref: dict[str, int], cur: dict[str, int]) -> float:
    """Jensen-Shannon distance (natural logarithm, as scipy's default) of the frequencies."""
    from scipy.spatial.distance import jensenshannon as js

    r, c = _aligned(ref, cur)
    if r.sum() == 0 or c.sum() == 0:
        return math.nan
    return float(js(r / r.sum(), c / c.sum()))


def psi_categorical(ref: dict[str, int], cur: dict[str, int]) -> float:
    r, c = _aligned(ref, cur)
    if r.sum() == 0 or c.sum() == 0:
        return math.nan
    return psi(r / r.sum(), c / c.sum())
