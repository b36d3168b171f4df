"""Correctness of the drift statistics, through the public path: a reference summarised by
``drift.build_baseline``, a batch by ``drift.summarize_batch``, then ``stats`` and
``drift.compare_column``, checked against scipy on the raw samples (or a value worked by hand).

Then the decisions: batches drawn from the reference distribution over many seeds are flagged
at most at the stated rate by each default method, a known shift is flagged in nearly every
seed, and PCA reconstruction error catches a change in the joint distribution (a correlation
that flips sign, same marginals) that no per-column method sees.

Every random input comes from a seeded numpy generator; hypothesis runs derandomized.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon as scipy_js
from scipy.stats import chi2_contingency, ks_2samp, kstwo, wasserstein_distance

from mldeck.monitor import drift, stats
from mldeck.monitor.settings import MonitorSettings

SETTINGS = MonitorSettings()
HYPOTHESIS = settings(max_examples=100, deadline=None, derandomize=True, database=None)


# -- helpers --------------------------------------------------------------------------------------
def summaries(
    ref: Any, cur: Any
) -> tuple[dict[str, Any], dict[str, Any], stats.NumericSummary, stats.NumericSummary]:
    """Baseline and batch summary of one numeric column ``x``, and both NumericSummaries (the
    reference's through its JSON form, as it is stored)."""
    baseline = drift.build_baseline(pl.LazyFrame({"x": ref}), {"x": "numeric"})
    batch = drift.summarize_batch(pl.LazyFrame({"x": cur}), baseline)
    ref_summary = stats.NumericSummary.from_dict(baseline["columns"]["x"]["summary"])
    return baseline, batch, ref_summary, batch["columns"]["x"]["summary"]


def counts(ref: Any, cur: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Baseline and batch summary of one categorical column ``c``."""
    baseline = drift.build_baseline(pl.LazyFrame({"c": ref}), {"c": "categorical"})
    return baseline, drift.summarize_batch(pl.LazyFrame({"c": cur}), baseline)


def decide(baseline: dict[str, Any], batch: dict[str, Any], name: str = "x") -> drift.FeatureResult:
    return drift.compare_column(
        name, baseline["columns"][name], batch["columns"][name], baseline["n_rows"], SETTINGS
    )


def assert_ks_like_scipy(ref: np.ndarray, cur: np.ndarray) -> None:
    _, _, r, c = summaries(ref, cur)
    d, p = stats.ks(r, c)
    with np.errstate(divide="ignore"):  # scipy, when m n / (m + n) rounds to 0
        expected = ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    if math.isnan(expected.pvalue):
        assert math.isnan(p)
    else:
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


def gap_masses(sorted_values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Share of the values strictly between consecutive grid points."""
    n = sorted_values.size
    return (
        np.searchsorted(sorted_values, grid[1:], side="left")
        - np.searchsorted(sorted_values, grid[:-1], side="right")
    ) / n


# -- Kolmogorov-Smirnov ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.normal(size=400), rng.normal(0.3, 1.2, size=250)),  # continuous
        lambda rng: (rng.integers(0, 20, 300), rng.integers(3, 25, 200)),  # ties, wider batch
        lambda rng: (rng.poisson(3, 1000), rng.poisson(3, 700)),  # heavy ties, same law
        lambda rng: (rng.normal(size=999), rng.normal(size=3000)),  # 999 distinct: exact grid
    ],
    ids=["continuous", "ties", "poisson", "999-distinct"],
)
def test_ks_equals_scipy_on_an_exact_grid(make) -> None:
    ref, cur = make(np.random.default_rng(7))
    assert np.unique(ref).size <= stats.EXACT_VALUES
    assert_ks_like_scipy(ref.astype(float), cur.astype(float))


@HYPOTHESIS
@given(
    ref=st.lists(st.integers(-10, 10), min_size=1, max_size=60),
    cur=st.lists(st.integers(-15, 15), min_size=1, max_size=60),
)
def test_ks_always_equals_scipy_on_small_integer_samples(ref: list[int], cur: list[int]) -> None:
    assert_ks_like_scipy(np.array(ref, dtype=float), np.array(cur, dtype=float))


@pytest.mark.parametrize("n_ref", [1001, 5000, 20_000])
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.5])
def test_ks_on_a_quantile_grid_is_within_one_grid_step(n_ref: int, shift: float) -> None:
    """More than 1000 distinct reference values: a grid of 1001 quantiles, D within 1/1000
    (strictly less than 1/1000 of the reference lies inside any one gap), and the p-value is
    scipy's asymptotic p-value of that D."""
    rng = np.random.default_rng(n_ref)
    ref = rng.lognormal(size=n_ref)
    cur = rng.lognormal(shift, 1.0, size=3000)
    _, _, r, c = summaries(ref, cur)
    assert r.grid.size > 900  # a quantile grid, not every value
    assert gap_masses(np.sort(ref), r.grid).max() < 1 / stats.GRID_POINTS
    d, p = stats.ks(r, c)
    expected = ks_2samp(ref, cur, method="asymp")
    assert abs(d - expected.statistic) <= 1 / stats.GRID_POINTS
    en = round(n_ref * 3000 / (n_ref + 3000))
    assert p == pytest.approx(kstwo.sf(d, en), rel=1e-9, abs=1e-300)


# -- Wasserstein ----------------------------------------------------------------------------------
@HYPOTHESIS
@given(
    ref=st.lists(st.integers(0, 20), min_size=1, max_size=60),
    picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=60),
    outside=st.lists(st.integers(-30, 50).filter(lambda v: v < 0 or v > 20), max_size=10),
)
def test_wasserstein_is_exact_when_the_batch_stays_on_the_grid(
    ref: list[int], picks: list[int], outside: list[int]
) -> None:
    """Batch values that are reference values, or beyond the reference's range: no batch mass
    inside a gap, so the integral is exact."""
    cur = [ref[i % len(ref)] for i in picks] + outside
    _, _, r, c = summaries(np.array(ref, dtype=float), np.array(cur, dtype=float))
    assert stats.wasserstein(r, c) == pytest.approx(
        wasserstein_distance(ref, cur), rel=1e-9, abs=1e-12
    )


@HYPOTHESIS
@given(
    seed=st.integers(0, 2**32 - 1),
    n_ref=st.sampled_from([5, 40, 300, 1500, 4000]),
    n_cur=st.sampled_from([1, 7, 200, 2000]),
    shift=st.floats(-2, 2),
    spread=st.floats(0.2, 3),
)
def test_wasserstein_error_is_within_its_stated_bound(
    seed: int, n_ref: int, n_cur: int, shift: float, spread: float
) -> None:
    """|W(summaries) - W(scipy)| <= sum over gaps of width x (share of either sample strictly
    inside the gap): the bound stated in ``stats.wasserstein``, on exact and quantile grids."""
    rng = np.random.default_rng(seed)
    # Multiples of 2**-12: no neighbouring floats, and more than 1000 distinct values at 4000.
    ref = np.round(rng.normal(size=n_ref) * 4096) / 4096
    cur = np.round(rng.normal(shift, spread, size=n_cur) * 4096) / 4096
    _, _, r, c = summaries(ref, cur)
    bound = float(
        np.sum(
            np.diff(r.grid) * (gap_masses(np.sort(ref), r.grid) + gap_masses(np.sort(cur), r.grid))
        )
    )
    assert abs(stats.wasserstein(r, c) - wasserstein_distance(ref, cur)) <= bound + 1e-9


@pytest.mark.parametrize(
    ("n_ref", "n_cur"), [(500, 300), (1000, 3000), (5000, 3000), (20_000, 3000), (20_000, 20_000)]
)
def test_wasserstein_agrees_with_scipy_within_tolerance(n_ref: int, n_cur: int) -> None:
    """Continuous data (every batch value inside a gap): within 5 % of scipy's distance when
    the batch is shifted by 0.1 sd or more (where decisions are made), and within 0.005
    reference standard deviations always (batches from the reference itself)."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        ref = rng.normal(size=n_ref)
        for shift in (0.0, 0.1, 0.5):
            cur = rng.normal(shift, 1 + shift, size=n_cur)
            _, _, r, c = summaries(ref, cur)
            ours, exact = stats.wasserstein(r, c), wasserstein_distance(ref, cur)
            assert abs(ours - exact) <= 0.005 * r.std
            if shift:
                assert ours == pytest.approx(exact, rel=0.05)


def test_wasserstein_normed_divides_by_the_reference_standard_deviation() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.integers(0, 50, 800).astype(float), rng.integers(5, 55, 400).astype(float)
    _, _, r, c = summaries(ref, cur)
    assert stats.wasserstein_normed(r, c) == pytest.approx(
        wasserstein_distance(ref, cur) / np.std(ref, ddof=1), rel=1e-9
    )


# -- PSI ------------------------------------------------------------------------------------------
def test_psi_numeric_on_deciles_with_empty_bins_equals_the_worked_value() -> None:
    """Reference 0..99: deciles (-inf, 9], (9, 19], ..., (89, inf), 10 % each. Batch 0..49:
    20 % in each of the first five bins, the last five empty (counted as 1e-4):
    PSI = 5 (0.2 - 0.1) ln 2 + 5 (1e-4 - 0.1) ln(1e-4 / 0.1) = 3.7969980..."""
    _, _, r, c = summaries(np.arange(100.0), np.arange(50.0))
    worked = 5 * 0.1 * math.log(2) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert worked == pytest.approx(3.796998, abs=1e-6)
    assert stats.psi_numeric(r, c) == pytest.approx(worked, rel=1e-12)
    # The same batch: nothing moved.
    _, _, r, c = summaries(np.arange(100.0), np.arange(100.0))
    assert stats.psi_numeric(r, c) == 0.0
    # Everything in one decile, and a batch entirely beyond the reference's maximum.
    for batch in (np.full(30, 42.0), np.full(30, 1000.0)):
        _, _, r, c = summaries(np.arange(100.0), batch)
        worked = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
        assert stats.psi_numeric(r, c) == pytest.approx(worked, rel=1e-12)


def test_psi_numeric_sees_a_change_in_a_two_valued_column() -> None:
    """95 % ones and 5 % zeros: the bins are {0} and {1} (not one bin holding everything).
    A batch of 50 % zeros: PSI = (0.5 - 0.05) ln(0.5 / 0.05) + (0.5 - 0.95) ln(0.5 / 0.95)."""
    ref = np.r_[np.zeros(50), np.ones(950)]
    _, _, r, c = summaries(ref, np.r_[np.zeros(100), np.ones(100)])
    worked = 0.45 * math.log(10) - 0.45 * math.log(0.5 / 0.95)
    assert stats.psi_numeric(r, c) == pytest.approx(worked, rel=1e-12)


# -- categories -----------------------------------------------------------------------------------
CATEGORY_CASES = [
    # (reference, batch) category lists
    (["a"] * 50 + ["b"] * 30 + ["c"] * 20, ["a"] * 20 + ["b"] * 20 + ["c"] * 20),
    (["a"] * 50 + ["b"] * 50, ["a"] * 40 + ["b"] * 40 + ["new"] * 5),  # only in the batch
    (["a"] * 50 + ["b"] * 45 + ["gone"] * 5, ["a"] * 30 + ["b"] * 30),  # only in the reference
    (["a"] * 7 + ["b"] * 3, ["a"] * 2 + ["b"] * 4),  # tiny, two categories
    (["x"] * 10, ["y"] * 10),  # disjoint
]


@pytest.mark.parametrize(("ref", "cur"), CATEGORY_CASES)
def test_chi2_and_jensenshannon_equal_scipy(ref: list[str], cur: list[str]) -> None:
    """chi-square: scipy's chi2_contingency on the 2 x k table of counts, without Yates'
    correction (which scipy applies by default only to 2 x 2 tables); Jensen-Shannon:
    scipy.spatial.distance.jensenshannon (natural logarithm) of the frequencies."""
    baseline, batch = counts(ref, cur)
    rc, cc = baseline["columns"]["c"]["counts"], batch["columns"]["c"]["counts"]
    keys = sorted(set(ref) | set(cur))
    table = np.array([[ref.count(k) for k in keys], [cur.count(k) for k in keys]], dtype=float)
    expected = chi2_contingency(table, correction=False)
    statistic, p = stats.chi2(rc, cc)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    if len(keys) > 2:  # correction only ever applies to one degree of freedom
        assert statistic == pytest.approx(chi2_contingency(table).statistic, rel=1e-12)
    frequencies = table / table.sum(axis=1, keepdims=True)
    assert stats.jensenshannon(rc, cc) == pytest.approx(
        scipy_js(frequencies[0], frequencies[1]), rel=1e-12
    )


def test_jensenshannon_of_disjoint_categories_is_its_maximum() -> None:
    baseline, batch = counts(["x"] * 10, ["y"] * 3)
    value = stats.jensenshannon(baseline["columns"]["c"]["counts"], batch["columns"]["c"]["counts"])
    assert value == pytest.approx(math.sqrt(math.log(2)), rel=1e-12)


def test_psi_categorical_with_a_category_on_one_side_only_equals_the_worked_value() -> None:
    """Reference a 50 %, b 50 %; batch a 50 %, c 50 %. The empty shares count as 1e-4:
    PSI = 0 + (1e-4 - 0.5) ln(1e-4 / 0.5) + (0.5 - 1e-4) ln(0.5 / 1e-4) = 2 x 0.4999 ln 5000."""
    baseline, batch = counts(["a", "b"] * 50, ["a", "c"] * 20)
    worked = 2 * 0.4999 * math.log(5000)
    assert worked == pytest.approx(8.515490, abs=1e-6)
    assert stats.psi_categorical(
        baseline["columns"]["c"]["counts"], batch["columns"]["c"]["counts"]
    ) == pytest.approx(worked, rel=1e-12)


def test_categories_are_counted_without_nulls_and_across_types() -> None:
    baseline, batch = counts(["a", "b", None, "a"], [None, None, "b", "c"])
    assert baseline["columns"]["c"]["counts"] == {"a": 2, "b": 1}
    assert batch["columns"]["c"]["counts"] == {"b": 1, "c": 1}
    assert batch["columns"]["c"]["nulls"] == 2
    baseline, batch = counts([True, False, True], [False, None])
    assert baseline["columns"]["c"]["counts"] == {"true": 2, "false": 1}
    assert batch["columns"]["c"]["counts"] == {"false": 1}


def test_chi2_of_a_single_shared_category_is_no_evidence() -> None:
    baseline, batch = counts(["a"] * 20, ["a"] * 5)
    assert stats.chi2(baseline["columns"]["c"]["counts"], batch["columns"]["c"]["counts"]) == (
        0.0,
        1.0,
    )
    assert not decide(baseline, batch, "c").drifted


def test_a_category_only_in_the_batch_is_flagged_by_both_defaults() -> None:
    rng = np.random.default_rng(11)
    for n_ref, n_cur in ((600, 500), (6000, 500), (6000, 3000)):
        ref = rng.choice(["a", "b", "c"], n_ref, p=[0.5, 0.3, 0.2]).tolist()
        cur = rng.choice(["a", "b", "c", "new"], n_cur, p=[0.3, 0.2, 0.1, 0.4]).tolist()
        baseline, batch = counts(ref, cur)
        result = decide(baseline, batch, "c")
        # The smaller of the two samples chooses: chi-square, chi-square, Jensen-Shannon.
        small = min(n_ref, n_cur) <= SETTINGS.small_sample
        assert result.method == ("chi2" if small else "jensenshannon")
        assert result.drifted


def test_the_values_each_side_holds_choose_the_method_not_its_rows() -> None:
    """A reference column of 3,000 rows holding 200 values (the rest null) is a small sample: KS
    and chi-square, as the README says, where its rows chose the distances; a column the batch
    lacks is judged the same way."""
    rng = np.random.default_rng(5)
    ref = [None if i % 15 else float(v) for i, v in enumerate(rng.normal(size=3000))]
    baseline, batch, _, _ = summaries(ref, rng.normal(size=1500))
    assert decide(baseline, batch).method == "ks"
    text = [None if i % 15 else str(v) for i, v in enumerate(rng.choice(["a", "b"], 3000))]
    baseline, batch = counts(text, rng.choice(["a", "b"], 1500).tolist())
    assert decide(baseline, batch, "c").method == "chi2"
    missing = drift.missing_column("c", baseline["columns"]["c"], 1500, 3000, SETTINGS)
    assert missing.method == "chi2" and missing.drifted
    full = drift.build_baseline(pl.LazyFrame({"c": ["a", "b"] * 1500}), {"c": "categorical"})
    missing = drift.missing_column("c", full["columns"]["c"], 1500, 3000, SETTINGS)
    assert missing.method == "jensenshannon"


# -- edge cases -----------------------------------------------------------------------------------
def test_constant_column() -> None:
    """A constant reference: KS and Wasserstein as scipy; an unchanged batch is not drifted; a
    batch where 30 % moved is drifted for KS; PSI gets a bin below, at and above the value."""
    ref = np.full(500, 3.0)
    baseline, batch, r, c = summaries(ref, np.full(200, 3.0))
    assert r.grid.tolist() == [3.0] and r.std == 0.0
    assert stats.ks(r, c) == (0.0, 1.0)
    assert stats.wasserstein(r, c) == 0.0 and stats.wasserstein_normed(r, c) == 0.0
    assert stats.psi_numeric(r, c) == 0.0
    assert not decide(baseline, batch).drifted

    cur = np.r_[np.full(180, 3.0), np.full(20, 4.0)]
    assert_ks_like_scipy(ref, cur)
    baseline, batch, r, c = summaries(ref, cur)
    assert stats.wasserstein(r, c) == pytest.approx(wasserstein_distance(ref, cur), rel=1e-12)
    # A constant reference has no spread: the distance is relative to its value (0.1 / 3).
    assert stats.wasserstein_normed(r, c) == pytest.approx(0.1 / 3, rel=1e-12)
    # Bins (-inf, 3), [3, 3], (3, inf): reference 0, 1, 0 (floored at 1e-4); batch 0, 0.9, 0.1.
    worked = (0.9 - 1) * math.log(0.9) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert stats.psi_numeric(r, c) == pytest.approx(worked, rel=1e-12)
    assert not decide(baseline, batch).drifted  # KS: D = 0.1 on 200 rows, p = 0.107
    cur = np.r_[np.full(140, 3.0), np.full(60, 4.0)]
    assert_ks_like_scipy(ref, cur)
    baseline, batch, r, c = summaries(ref, cur)
    result = decide(baseline, batch)
    assert result.statistic == pytest.approx(0.3) and result.drifted

    # A constant batch against a varying reference.
    ref = np.arange(20.0)
    cur = np.full(15, 7.0)
    assert_ks_like_scipy(ref, cur)
    _, _, r, c = summaries(ref, cur)
    assert stats.wasserstein(r, c) == pytest.approx(wasserstein_distance(ref, cur), rel=1e-12)


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
@pytest.mark.parametrize("n_ref", [100, 5000])
def test_all_null_batch_is_drifted_with_a_note(kind: str, n_ref: int) -> None:
    rng = np.random.default_rng(5)
    if kind == "numeric":
        ref = pl.Series(rng.normal(size=n_ref))
        cur = pl.Series([None] * 40, dtype=pl.Float64)
    else:
        ref = pl.Series(rng.choice(["a", "b"], n_ref).tolist())
        cur = pl.Series([None] * 40, dtype=pl.String)
    baseline = drift.build_baseline(pl.LazyFrame({"x": ref}), {"x": kind})
    batch = drift.summarize_batch(pl.LazyFrame({"x": cur}), baseline)
    result = decide(baseline, batch)
    assert result.drifted
    assert result.note == "no values in the batch"
    assert result.severity == math.inf
    assert result.statistic is None and result.p_value is None
    assert result.details["nulls"] == 40
    if kind == "numeric":
        summary = batch["columns"]["x"]["summary"]
        assert summary.n == 0
        assert all(math.isnan(v) for v in stats.ks(stats.NumericSummary.from_dict(
            baseline["columns"]["x"]["summary"]), summary))  # fmt: skip


def test_nan_and_infinite_values_are_left_out_like_nulls() -> None:
    ref = np.array([1.0, 2.0, np.nan, 3.0, np.inf])
    cur = np.array([2.0, -np.inf, 4.0, np.nan])
    _, _, r, c = summaries(ref, cur)
    assert (r.n, c.n) == (3, 2)
    assert_ks_like_scipy(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0]))
    assert stats.wasserstein(r, c) == pytest.approx(
        wasserstein_distance([1.0, 2.0, 3.0], [2.0, 4.0]), rel=1e-12
    )


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        ([1.0], [2.0]),  # scipy's p-value is nan (m n / (m + n) rounds to 0)
        ([5.0], [5.0]),
        ([1.0, 2.0], [2.0]),
        ([1.0, 2.0, 3.0], [0.0, 10.0]),
        ([1.0, 1.0, 2.0], [1.0, 2.0, 2.0, 2.0]),
        ([0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]),
    ],
)
def test_tiny_samples_agree_with_scipy(ref: list[float], cur: list[float]) -> None:
    assert_ks_like_scipy(np.array(ref), np.array(cur))
    baseline, batch, r, c = summaries(np.array(ref), np.array(cur))
    assert stats.wasserstein(r, c) == pytest.approx(wasserstein_distance(ref, cur), abs=1e-12)
    result = decide(baseline, batch)
    with np.errstate(divide="ignore"):
        p = ks_2samp(ref, cur, method="asymp").pvalue
    assert result.method == "ks"
    assert result.drifted == (bool(p < 0.05) if math.isfinite(p) else False)


def test_reference_values_one_float_apart() -> None:
    """0.1 + 0.2 and 0.3 are neighbouring floats: a grid holding both must still summarise a
    batch (the interleaved histogram edges must stay increasing)."""
    ref = np.array([0.1 + 0.2, 0.3, 0.3, 1.0])
    cur = np.array([0.3, 0.3, 0.1 + 0.2, 1.0, 1.0])
    assert np.nextafter(0.3, 1.0) == 0.1 + 0.2
    assert_ks_like_scipy(ref, cur)


# -- the batch's counts: exact, across chunks, whatever is missing -------------------------------
def assert_counts_exact(summary: stats.NumericSummary, finite: np.ndarray) -> None:
    """The batch summary's fractions are the exact counts of its finite values on the grid."""
    values = np.sort(finite)
    n = values.size
    assert summary.n == n
    le, lt = np.round(summary.le * n), np.round(summary.lt * n)  # fractions of whole counts
    assert np.array_equal(le, np.searchsorted(values, summary.grid, side="right"))
    assert np.array_equal(lt, np.searchsorted(values, summary.grid, side="left"))
    below = np.clip(summary.grid[0] - values, 0, None).sum() / n
    above = np.clip(values - summary.grid[-1], 0, None).sum() / n
    assert summary.below == pytest.approx(below, rel=1e-9, abs=1e-12)
    assert summary.above == pytest.approx(above, rel=1e-9, abs=1e-12)
    assert summary.mean == pytest.approx(values.mean(), rel=1e-9)
    assert summary.std == pytest.approx(values.std(ddof=1), rel=1e-9)


def test_batch_counts_are_exact_across_chunks_with_nulls_nan_and_outliers() -> None:
    """More rows than a chunk; nulls (filled with the reference's mean as the batch is read),
    NaN, infinities and values beyond the reference's range, on a quantile grid."""
    rng = np.random.default_rng(11)
    ref = rng.lognormal(0.0, 1.0, 20_000)
    rows = drift.CHUNK_ROWS * 2 + 1234
    cur = rng.lognormal(0.2, 1.1, rows)
    cur[rng.choice(rows, 50, replace=False)] = rng.choice([np.nan, np.inf, -np.inf], 50)
    cur[:3] = [-5.0, ref.max() * 3, ref.mean()]  # outside, outside, and the nulls' fill value
    nulls = rng.random(rows) < 0.03
    series = pl.Series("x", cur).scatter(np.flatnonzero(nulls), None)
    _, batch, r, c = summaries(pl.Series(ref), series)
    assert r.grid.size == stats.GRID_POINTS + 1
    finite = cur[~nulls & np.isfinite(cur)]
    assert_counts_exact(c, finite)
    assert batch["columns"]["x"]["nulls"] == rows - finite.size


def test_integer_batch_counts_are_exact_when_the_mean_is_a_value() -> None:
    """Whole numbers on an exact grid (a cell per number): the nulls become the reference's
    mean, 5, a value the batch also holds; only the nulls are taken back out."""
    ref = pl.Series("x", list(range(11)) * 30)  # mean exactly 5
    rng = np.random.default_rng(12)
    cur = rng.integers(-3, 15, drift.CHUNK_ROWS + 999)
    cur[:100] = 5
    nulls = rng.random(cur.size) < 0.05
    series = pl.Series("x", cur).scatter(np.flatnonzero(nulls), None)
    assert series.dtype.is_integer()
    _, batch, r, c = summaries(ref, series)
    assert r.mean == 5.0
    assert_counts_exact(c, cur[~nulls].astype(float))
    assert batch["columns"]["x"]["nulls"] == int(nulls.sum())


def test_nulls_are_taken_back_out_where_the_mean_is_a_grid_point() -> None:
    """Numbers with fractions on an exact grid whose mean, 1.5, is one of its points: the nulls
    are compared with the edges there, like the batch's own 1.5s."""
    ref = pl.Series("x", [0.5, 1.5, 2.5] * 10)
    rng = np.random.default_rng(14)
    cur = rng.choice([0.5, 1.5, 2.5, 1.25, 3.0], 4_000)
    nulls = rng.random(cur.size) < 0.1
    series = pl.Series("x", cur).scatter(np.flatnonzero(nulls), None)
    _, batch, r, c = summaries(ref, series)
    assert r.mean == 1.5 and 1.5 in r.grid
    assert_counts_exact(c, cur[~nulls])
    assert batch["columns"]["x"]["nulls"] == int(nulls.sum())


def test_batch_categories_are_counted_exactly_across_chunks() -> None:
    """Reference categories (through their hashes), new ones (as text), nulls, one missing."""
    rng = np.random.default_rng(13)
    ref = rng.choice(["red", "green", "blue", "grey"], 5_000).tolist()
    values = rng.choice(["red", "green", "blue", "violet", "", "红"], drift.CHUNK_ROWS + 777)
    cur = [None if i % 97 == 0 else str(v) for i, v in enumerate(values)]
    _, batch = counts(ref, cur)
    expected = pl.Series(cur).drop_nulls().value_counts()
    assert batch["columns"]["c"]["counts"] == {str(k): int(v) for k, v in expected.iter_rows()}
    assert "grey" not in batch["columns"]["c"]["counts"]
    assert batch["columns"]["c"]["nulls"] == sum(v is None for v in cur)


# -- decisions over many seeds --------------------------------------------------------------------
def flag_rates(
    draw_ref, draw_cur, seeds: int, shifts: tuple[float, ...] = (0.0, 0.5)
) -> tuple[str, list[float]]:
    """Share of seeds in which each shifted batch is flagged, one reference per seed."""
    flagged = [0] * len(shifts)
    method = ""
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        baseline = drift.build_baseline(pl.LazyFrame({"x": draw_ref(rng)}), {"x": _kind(draw_ref)})
        for i, shift in enumerate(shifts):
            batch = drift.summarize_batch(pl.LazyFrame({"x": draw_cur(rng, shift)}), baseline)
            result = decide(baseline, batch)
            method = result.method
            flagged[i] += result.drifted
    return method, [f / seeds for f in flagged]


def _kind(draw) -> str:
    return getattr(draw, "kind", "numeric")


def _normal(n: int):
    return lambda rng, shift=0.0: rng.normal(shift, 1.0, n)


CATEGORIES = ["a", "b", "c", "d"]
SAME = [0.4, 0.3, 0.2, 0.1]
SHIFTED = [0.25, 0.25, 0.25, 0.25]


def _categories(n: int):
    def draw(rng, shift: float = 0.0):
        return rng.choice(CATEGORIES, n, p=SHIFTED if shift else SAME).tolist()

    draw.kind = "categorical"  # type: ignore[attr-defined]
    return draw


def test_ks_default_flags_about_five_percent_of_unshifted_batches() -> None:
    """Reference 500, batch 300: KS p < 0.05. 300 seeds: unshifted batches flagged in 2-8 %
    (measured 5.7 %, as scipy's asymptotic p-value), a shift of 0.5 sd in every seed."""
    method, (null, shifted) = flag_rates(_normal(500), _normal(300), seeds=300)
    assert method == "ks"
    assert 0.02 <= null <= 0.08
    assert shifted >= 0.99


def test_chi2_default_flags_about_five_percent_of_unshifted_batches() -> None:
    """Reference 500, batch 300, four categories: 200 seeds, unshifted flagged in 2-8 %
    (measured 3 %); frequencies moved to uniform flagged in 95 % or more (measured 100 %)."""
    method, (null, shifted) = flag_rates(_categories(500), _categories(300), seeds=200)
    assert method == "chi2"
    assert 0.02 <= null <= 0.08
    assert shifted >= 0.95


@pytest.mark.parametrize("n_ref", [5000, 20_000])
def test_wasserstein_default_flags_no_unshifted_batch(n_ref: int) -> None:
    """Reference 5k and 20k, batch 3k: normalised Wasserstein >= 0.1. Unshifted batches are
    never flagged in 60 seeds (the largest distance measured is about 0.07); a shift of 0.5 sd
    always is."""
    method, (null, shifted) = flag_rates(_normal(n_ref), _normal(3000), seeds=60)
    assert method == "wasserstein"
    assert null == 0.0
    assert shifted == 1.0


def test_jensenshannon_default_flags_no_unshifted_batch() -> None:
    method, (null, shifted) = flag_rates(_categories(5000), _categories(3000), seeds=60)
    assert method == "jensenshannon"
    assert null == 0.0
    assert shifted == 1.0


def test_a_small_batch_against_a_large_reference_is_tested_not_measured() -> None:
    """The distance's value on an unshifted batch shrinks only with the batch's size (the
    normalised Wasserstein default flagged about a fifth of 300-row batches against 2,000
    reference rows), so the smaller sample chooses the method: KS here, flagging unshifted
    batches at about its 5 % level."""
    method, (null,) = flag_rates(_normal(2000), _normal(300), seeds=100, shifts=(0.0,))
    assert method == "ks"
    assert null <= 0.09


# -- multivariate ---------------------------------------------------------------------------------
def _correlated(rng: np.random.Generator, n: int, rho: float) -> pl.LazyFrame:
    xy = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    return pl.LazyFrame({"x": xy[:, 0], "y": xy[:, 1]})


@pytest.mark.parametrize(("n_ref", "n_cur"), [(500, 300), (5000, 2000)])
def test_multivariate_catches_a_flipped_correlation_no_single_feature_shows(
    n_ref: int, n_cur: int
) -> None:
    """x and y standard normal with correlation 0.9 in the reference and -0.9 in the batch:
    the same marginals. Over 40 seeds PCA reconstruction error flags every flipped batch and
    at most 5 % of unflipped ones; the per-column defaults flag the flipped batch's columns
    no more often than unshifted ones (KS: about 5 %; Wasserstein: never)."""
    seeds = 40
    multi = {0.9: 0, -0.9: 0}
    columns = {0.9: 0, -0.9: 0}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        baseline = drift.build_baseline(
            _correlated(rng, n_ref, 0.9), {"x": "numeric", "y": "numeric"}, seed=seed
        )
        assert baseline["multivariate"]["features"] == ["x", "y"]
        for rho in (0.9, -0.9):
            batch = drift.summarize_batch(_correlated(rng, n_cur, rho), baseline)
            result = drift.multivariate(baseline, batch, SETTINGS)
            multi[rho] += result.drifted
            columns[rho] += sum(decide(baseline, batch, name).drifted for name in ("x", "y"))
    assert multi[-0.9] == seeds
    assert multi[0.9] <= 0.05 * seeds
    # Share of column decisions flagged (two columns per seed).
    limit = 0.1 if n_ref <= SETTINGS.small_sample else 0.0
    assert columns[-0.9] / (2 * seeds) <= limit
    assert columns[0.9] / (2 * seeds) <= limit


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_column_empty_on_one_side_is_drifted_and_on_both_is_not(kind: str) -> None:
    """Empty in the reference and the batch, a column counted as drifted (and tipped the
    dataset-drift verdict); empty in the reference only, it never drifted (the statistic is
    undefined, and NaN >= threshold is false)."""
    rng = np.random.default_rng(6)
    dtype = pl.Float64 if kind == "numeric" else pl.String
    full = (pl.Series(rng.normal(size=300)) if kind == "numeric"
            else pl.Series(rng.choice(["a", "b"], 300).tolist()))  # fmt: skip
    empty = pl.Series([None] * 300, dtype=dtype)

    def result(ref: pl.Series, cur: pl.Series) -> Any:
        baseline = drift.build_baseline(pl.LazyFrame({"x": ref}), {"x": kind})
        return decide(baseline, drift.summarize_batch(pl.LazyFrame({"x": cur}), baseline))

    both = result(empty, empty)
    assert (both.drifted, both.note) == (False, "no values in the batch nor the reference")
    filled = result(empty, full)
    assert (filled.drifted, filled.note) == (True, "no values in the reference")
    assert filled.severity == math.inf


def _histogram(reference: np.ndarray, batch: np.ndarray) -> dict[str, Any]:
    baseline = drift.build_baseline(pl.LazyFrame({"x": reference}), {"x": "numeric"})
    summary = drift.summarize_batch(pl.LazyFrame({"x": batch}), baseline)
    result = drift.compare_column("x", baseline["columns"]["x"], summary["columns"]["x"],
                                  baseline["n_rows"], MonitorSettings())  # fmt: skip
    return result.as_dict()["histogram"]


def test_a_value_held_often_at_the_least_gets_a_bin_of_its_own():
    """The 0s and 1s of a 0/1 column shared the first bin [0, 1]: 100 % on both sides, the
    churn rate doubling unseen on the Drift screen and in the report."""
    from mldeck.monitor.report import _feature_chart
    from mldeck.tui.screens.drift import drift_bin_labels

    hist = _histogram(np.repeat([0, 1], [773, 227]), np.repeat([0, 1], [548, 452]))
    assert hist["point"] and hist["edges"] == [0.0, 1.0]
    assert hist["reference"] == pytest.approx([0, 0.773, 0.227, 0])
    assert hist["current"] == pytest.approx([0, 0.548, 0.452, 0])
    assert drift.histogram_bins(hist) == [("<", 0, 0), ("=", 0, 0), ("(]", 0, 1), (">", 1, 1)]
    assert drift_bin_labels(hist) == ("<0", "0", "1", ">1")
    chart = _feature_chart({"histogram": hist})
    assert "= 0: batch 54.8%" in chart and "(0, 1]: batch 45.2%" in chart
    # Whole numbers: a bin per number, labelled by it (the 1s were shown under "0").
    calls = np.arange(5000) % 12
    hist = _histogram(calls, calls[:3000])
    assert drift_bin_labels(hist)[:4] == ("<0", "0", "1", "2")
    few = np.repeat([0, 1, 2, 3, 11], [300, 4000, 400, 250, 50])  # 4 to 11 in one bin
    assert drift_bin_labels(_histogram(few, few)) == ("<0", "0", "1", "2", "3", "4-11", ">11")
    # The same edges on a column of decimals hold decimals: labelled by their upper edge.
    assert drift_bin_labels(_histogram(few.astype(float), few + 0.25)) == (
        "<0", "0", "≤1", "≤2", "≤3", "≤11", ">11")  # fmt: skip
    # A continuous column keeps [e0, e1], labelled by each bin's upper edge; a constant one has
    # three bins ("no histogram (unexpected bins)" on the Drift screen).
    rng = np.random.default_rng(0)
    hist = _histogram(rng.normal(size=5000), rng.normal(size=3000))
    assert not hist["point"] and len(drift_bin_labels(hist)) == len(hist["current"])
    assert drift.histogram_bins(hist)[1][0] == "[]"
    assert drift_bin_labels(hist)[1] == f"≤{float(hist['edges'][1]):.3g}"
    hist = _histogram(np.full(100, 3.0), np.full(50, 3.0))
    assert drift_bin_labels(hist) == ("<3", "3", ">3") and len(hist["current"]) == 3


def test_a_column_gone_mostly_missing_drifts_whatever_its_values():
    """98 % null, its few values drawn like the reference's: 'not drifted' (the null count was in
    the JSON only)."""
    rng = np.random.default_rng(1)
    baseline = drift.build_baseline(pl.LazyFrame({"x": rng.normal(size=5000)}), {"x": "numeric"})
    values = pl.Series(rng.normal(size=3000)).scatter(range(2940), None)
    summary = drift.summarize_batch(pl.LazyFrame({"x": values}), baseline)
    result = drift.compare_column("x", baseline["columns"]["x"], summary["columns"]["x"],
                                  baseline["n_rows"], MonitorSettings())  # fmt: skip
    assert result.p_value > result.threshold  # its values alone look like the reference's (KS)
    assert result.drifted and result.note == "missing in 98% of rows (reference 0%)"
    assert result.severity == pytest.approx(9.8)
    # A growth under [monitor] missing_share, or fewer missing values, is no drift.
    values = pl.Series(rng.normal(size=3000)).scatter(range(200), None)
    summary = drift.summarize_batch(pl.LazyFrame({"x": values}), baseline)
    result = drift.compare_column("x", baseline["columns"]["x"], summary["columns"]["x"],
                                  baseline["n_rows"], MonitorSettings())  # fmt: skip
    assert not result.drifted and result.details["missing_share"] == pytest.approx(200 / 3000)


def test_a_partly_labelled_batch_is_no_label_drift():
    """Labels come later: the missing-share rule made a batch with 80 % of its labels drift."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 5000).astype(float)
    baseline = drift.build_baseline(pl.LazyFrame({"y": labels}), {"y": "numeric"})
    batch = pl.Series(labels[:3000]).scatter(range(600), None)
    summary = drift.summarize_batch(pl.LazyFrame({"y": batch}), baseline)
    result = drift.compare_column("y", baseline["columns"]["y"], summary["columns"]["y"],
                                  baseline["n_rows"], MonitorSettings(), role="label")  # fmt: skip
    assert not result.drifted and result.note == ""


def test_a_jensen_shannon_threshold_it_can_never_reach_is_refused():
    """Accepted, it left the column never drifting: the distance stays under sqrt(ln 2)."""
    from mldeck.config import parse_settings
    from mldeck.errors import ConfigError

    def column(threshold: float):
        return parse_settings(f"[monitor.columns.c]\nmethod = 'jensenshannon'\n"
                              f"threshold = {threshold}\n").monitor.columns["c"]  # fmt: skip

    assert column(0.83).threshold == 0.83
    assert stats.jensenshannon({"a": 10}, {"b": 10}) == pytest.approx(math.sqrt(math.log(2)))
    with pytest.raises(ConfigError, match=r"a Jensen-Shannon distance is at most 0\.833"):
        column(2)
