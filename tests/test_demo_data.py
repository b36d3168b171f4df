"""Tests for the synthetic churn data generator (mldeck.demo)."""

from __future__ import annotations

import ast
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mldeck.demo.generator as generator_module
from mldeck.demo import (
    BASE_CHURN_RATE,
    CATEGORICAL_FEATURES,
    CATEGORY_LEVELS,
    COLUMNS,
    CONCEPT_DRIFT_FEATURES,
    FEATURE_COLUMNS,
    NUMERIC_FEATURES,
    SCENARIOS,
    SCHEMA,
    SHIFTED_FEATURES,
    generate_batch,
    main,
    write_batch,
    write_sample_data,
)

START = datetime(2026, 1, 5)
NULLABLE = {"total_charges", "data_usage_gb", "satisfaction_score"}
SAMPLE_FILES = [
    "reference.parquet",
    "batch_01_normal.csv",
    "batch_02_normal.csv",
    "batch_03_covariate_shift.csv",
    "batch_04_prior_shift.csv",
    "batch_05_concept_drift.csv",
    "batch_06_corrupted.csv",
]


def batch(n: int = 2000, scenario: str = "none", seed: int = 1, **kw) -> pl.DataFrame:
    return generate_batch(n, start=START, scenario=scenario, seed=seed, **kw)


def expected_schema(scenario: str) -> dict[str, pl.DataType]:
    schema = dict(SCHEMA)
    if scenario == "corrupted":
        schema["support_calls"] = pl.String()
    return schema


def feature_matrix(df: pl.DataFrame) -> np.ndarray:
    numeric = df.select(NUMERIC_FEATURES).to_numpy().astype(float)
    categorical = df.select(CATEGORICAL_FEATURES).to_numpy().astype(object)
    return np.column_stack([numeric, categorical])


def churn_pipeline() -> Pipeline:
    n_num = len(NUMERIC_FEATURES)
    columns = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                slice(0, n_num),
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), slice(n_num, None)),
        ],
        sparse_threshold=0,
    )
    return make_pipeline(columns, LogisticRegression(max_iter=1000))


def scores(model: Pipeline, df: pl.DataFrame) -> np.ndarray:
    return model.predict_proba(feature_matrix(df))[:, 1]


def auc(model: Pipeline, df: pl.DataFrame) -> float:
    return float(roc_auc_score(df["churned"].to_numpy(), scores(model, df)))


@pytest.fixture(scope="module")
def reference_model() -> Pipeline:
    ref = batch(6000, seed=101)
    return churn_pipeline().fit(feature_matrix(ref), ref["churned"].to_numpy())


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    write_sample_data(out, seed=7)
    return out


# --- schema, determinism, ids -------------------------------------------------------------


def test_feature_lists_are_consistent() -> None:
    assert len(NUMERIC_FEATURES) >= 12
    assert len(CATEGORICAL_FEATURES) >= 6
    expected = ("event_time", "customer_id", *FEATURE_COLUMNS, "segment", "churned")
    assert expected == COLUMNS
    assert set(CATEGORICAL_FEATURES) <= set(CATEGORY_LEVELS)
    for features in SHIFTED_FEATURES.values():
        assert set(features) <= set(COLUMNS)
    assert set(SHIFTED_FEATURES) == set(SCENARIOS)
    assert set(CONCEPT_DRIFT_FEATURES) <= set(FEATURE_COLUMNS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_schema_and_dtypes(scenario: str) -> None:
    df = batch(2000, scenario, days=14)
    assert df.columns == list(COLUMNS)
    assert dict(df.schema) == expected_schema(scenario)
    assert df.height == 2000
    times = df["event_time"]
    assert times.is_sorted()
    assert times.min() >= START
    assert times.max() < START + timedelta(days=14)
    assert set(df["churned"].unique()) == {0, 1}
    assert set(df["segment"].unique()) == set(CATEGORY_LEVELS["segment"])


def test_reference_values_are_valid() -> None:
    df = batch(3000)
    for name in CATEGORICAL_FEATURES:
        assert set(df[name].unique()) == set(CATEGORY_LEVELS[name]), name
    for name in FEATURE_COLUMNS:
        nulls = df[name].null_count()
        if name in NULLABLE:
            assert 0 < nulls < 0.1 * df.height, name
        else:
            assert nulls == 0, name
    assert df["tenure_months"].min() >= 1 and df["tenure_months"].max() <= 72
    assert df["monthly_charges"].min() > 0 and df["monthly_charges"].max() < 500
    assert df["satisfaction_score"].min() >= 1 and df["satisfaction_score"].max() <= 10
    assert df["age"].min() >= 18
    for name in NUMERIC_FEATURES:
        assert df[name].min() >= 0, name
    # Skewed distributions: the mean of usage sits well above its median.
    assert df["data_usage_gb"].mean() > 1.2 * df["data_usage_gb"].median()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_seed_same_frame_different_seed_different(scenario: str) -> None:
    a = batch(500, scenario, seed=5)
    assert a.equals(batch(500, scenario, seed=5))
    assert not a.equals(batch(500, scenario, seed=6))


def test_ids_follow_offset() -> None:
    df = batch(300, id_offset=5000)
    assert df["customer_id"].to_list() == list(range(5000, 5300))
    other = batch(300, id_offset=5300)
    assert set(df["customer_id"]).isdisjoint(other["customer_id"])


@pytest.mark.parametrize("scenario", ["covariate_shift", "concept_drift"])
def test_zero_intensity_is_the_reference(scenario: str) -> None:
    assert batch(800, scenario, seed=3, intensity=0.0).equals(batch(800, seed=3))


@settings(max_examples=40, deadline=None, database=None)
@given(
    n_rows=st.integers(1, 500),
    seed=st.integers(0, 2**32 - 1),
    offset=st.integers(0, 10**9),
    scenario=st.sampled_from([s for s in SCENARIOS if s != "corrupted"]),
)
def test_property_unique_ids_and_dtypes(n_rows: int, seed: int, offset: int, scenario: str) -> None:
    df = generate_batch(n_rows, start=START, seed=seed, id_offset=offset, scenario=scenario)
    assert df.height == n_rows
    assert df["customer_id"].n_unique() == n_rows
    assert df["customer_id"].min() == offset
    assert dict(df.schema) == expected_schema(scenario)
    assert df["churned"].is_in([0, 1]).all()


def test_empty_batch_keeps_schema() -> None:
    for scenario in SCENARIOS:
        df = batch(0, scenario)
        assert df.height == 0
        assert dict(df.schema) == expected_schema(scenario)


def test_hundred_thousand_rows_is_fast() -> None:
    t0 = time.perf_counter()
    df = batch(100_000, seed=9)
    assert time.perf_counter() - t0 < 2.0
    assert df.height == 100_000


# --- target model and scenarios ------------------------------------------------------------


def test_base_rate_in_range() -> None:
    rate = batch(8000, seed=2)["churned"].mean()
    assert 0.18 <= rate <= 0.27
    assert abs(rate - BASE_CHURN_RATE) < 0.03


def test_reference_model_quality(reference_model: Pipeline) -> None:
    test = batch(5000, seed=202)
    assert 0.75 <= auc(reference_model, test) <= 0.9


def test_model_quality_differs_by_segment(reference_model: Pipeline) -> None:
    test = batch(8000, seed=303)
    scores = {
        seg: auc(reference_model, test.filter(pl.col("segment") == seg))
        for seg in CATEGORY_LEVELS["segment"]
    }
    assert scores["consumer"] - scores["enterprise"] >= 0.04


def test_covariate_shift_moves_only_the_named_features() -> None:
    ref = batch(3000, seed=11)
    shifted = batch(3000, "covariate_shift", seed=12)
    flagged = set()
    for name in FEATURE_COLUMNS:
        if name in CATEGORICAL_FEATURES:
            table = pl.concat([ref.select(name), shifted.select(name)]).with_columns(
                src=pl.Series([0] * ref.height + [1] * shifted.height)
            )
            counts = table.pivot(on="src", index=name, values="src", aggregate_function="len")
            p = chi2_contingency(counts.fill_null(0).drop(name).to_numpy())[1]
        else:
            p = ks_2samp(ref[name].drop_nulls(), shifted[name].drop_nulls(), method="asymp").pvalue
        if p < 1e-4:
            flagged.add(name)
    assert flagged == set(SHIFTED_FEATURES["covariate_shift"])
    assert shifted["monthly_charges"].mean() > 1.1 * ref["monthly_charges"].mean()


def test_covariate_shift_leaves_other_features_untouched() -> None:
    ref = batch(3000, seed=13)
    shifted = batch(3000, "covariate_shift", seed=13)
    others = [c for c in FEATURE_COLUMNS if c not in SHIFTED_FEATURES["covariate_shift"]]
    assert shifted.select(others).equals(ref.select(others))


def test_covariate_shift_keeps_the_conditional_model(reference_model: Pipeline) -> None:
    # P(churn | x) is unchanged, so the reference model stays calibrated on the shifted batch
    # even though the churn rate itself moves with the features.
    ref = batch(6000, seed=14)
    shifted = batch(6000, "covariate_shift", seed=15)
    predicted = reference_model.predict_proba(feature_matrix(shifted))[:, 1].mean()
    assert shifted["churned"].mean() > ref["churned"].mean() + 0.01
    assert abs(predicted - shifted["churned"].mean()) < 0.02


def test_prior_shift_changes_base_rate_but_not_class_conditionals() -> None:
    ref = batch(4000, seed=21)
    shifted = batch(4000, "prior_shift", seed=22)
    ref_rate, new_rate = ref["churned"].mean(), shifted["churned"].mean()
    assert 1.6 * ref_rate <= new_rate <= 2.4 * ref_rate
    for label in (0, 1):
        a = ref.filter(pl.col("churned") == label)
        b = shifted.filter(pl.col("churned") == label)
        for name in ("tenure_months", "monthly_charges", "satisfaction_score"):
            assert ks_2samp(a[name].drop_nulls(), b[name].drop_nulls()).pvalue > 1e-3, name
    assert batch(4000, "prior_shift", seed=22, intensity=0.0)["churned"].mean() < 0.27


def test_concept_drift_moves_only_the_retention_features_and_hurts_the_model(
    reference_model: Pipeline,
) -> None:
    normal = batch(4000, seed=31)
    concept = batch(4000, "concept_drift", seed=31)
    moved = list(SHIFTED_FEATURES["concept_drift"])
    assert concept.drop([*moved, "churned"]).equals(normal.drop([*moved, "churned"]))
    monthly = [(df["contract_type"] == "monthly").mean() for df in (normal, concept)]
    assert monthly[1] < 0.45 * monthly[0]  # 70 % of monthly customers moved to annual
    for name in ("days_since_last_login", "support_calls"):
        assert concept[name].std() < 0.5 * normal[name].std()
    assert not concept["churned"].equals(normal["churned"])
    auc_normal, auc_concept = auc(reference_model, normal), auc(reference_model, concept)
    assert auc_normal >= 0.75
    assert auc_normal - auc_concept >= 0.15


def test_concept_drift_lowers_the_estimated_performance_before_labels(
    reference_model: Pipeline,
) -> None:
    """Confidence-based estimation (mldeck.monitor.performance) on the model's scores alone:
    the concept-drift batch's customers look more alike to the model, so its estimated ROC AUC
    falls clearly below a normal batch's, band and all, as the realized one falls further."""
    from sklearn.calibration import calibration_curve

    from mldeck.monitor import performance

    holdout = batch(6000, seed=32)
    prob_true, prob_pred = calibration_curve(
        holdout["churned"].to_numpy(), scores(reference_model, holdout), n_bins=10
    )
    curve = {"prob_true": prob_true.tolist(), "prob_pred": prob_pred.tolist()}
    estimates = {}
    for scenario in ("none", "concept_drift"):
        df = batch(3000, scenario, seed=33)
        s = scores(reference_model, df)
        estimates[scenario] = performance.estimate("roc_auc", s, s >= 0.5, curve, draws=100)
    normal, concept = estimates["none"], estimates["concept_drift"]
    assert abs(normal.value - auc(reference_model, batch(3000, seed=33))) < 0.04
    assert concept.upper < normal.lower
    assert normal.value - concept.value >= 0.03


def test_corrupted_batch_has_the_documented_corruptions(tmp_path: Path) -> None:
    df = batch(2000, "corrupted", seed=41)
    assert df["satisfaction_score"].null_count() >= 0.5 * df.height
    assert (df["tenure_months"] < 0).sum() >= 0.02 * df.height
    assert (df["monthly_charges"] >= 1e6).sum() >= 1
    assert "legacy_gold" in df["plan"].to_list()
    assert "symbian" in df["device_os"].to_list()
    assert df["customer_id"].n_unique() < df.height
    calls = df["support_calls"]
    assert calls.dtype == pl.String
    bad = calls.is_in(["n/a", "error"])
    assert bad.sum() >= 0.02 * df.height
    assert calls.filter(~bad).cast(pl.Int64).min() >= 0
    # Written as CSV, the column is no longer numeric.
    path = write_batch(df, tmp_path / "broken.csv")
    assert pl.read_csv(path).schema["support_calls"] == pl.String


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="covariate_shift") as info:
        batch(10, "drifty")
    for name in SCENARIOS:
        assert name in str(info.value)
    with pytest.raises(ValueError):
        batch(-1)
    with pytest.raises(ValueError):
        batch(10, days=0)
    with pytest.raises(ValueError):
        batch(10, intensity=-0.5)


# --- writing files -------------------------------------------------------------------------


def test_write_sample_data_files(sample_dir: Path) -> None:
    names = sorted(p.name for p in sample_dir.iterdir())
    assert names == sorted(SAMPLE_FILES)
    assert sum(p.stat().st_size for p in sample_dir.iterdir()) < 5 * 1024 * 1024
    frames = {}
    for name in SAMPLE_FILES:
        path = sample_dir / name
        if name.endswith(".parquet"):
            frames[name] = pl.read_parquet(path)
        else:
            frames[name] = pl.read_csv(path, try_parse_dates=True)
        scenario = "corrupted" if "corrupted" in name else "none"
        assert dict(frames[name].schema) == expected_schema(scenario), name
    ref = frames["reference.parquet"]
    assert 15_000 <= ref.height <= 25_000
    previous_end = ref["event_time"].max()
    seen_ids = set(ref["customer_id"])
    for name in SAMPLE_FILES[1:]:
        df = frames[name]
        assert 2_000 <= df.height <= 5_000
        assert df["event_time"].min() > previous_end
        previous_end = df["event_time"].max()
        ids = set(df["customer_id"])
        assert seen_ids.isdisjoint(ids), name
        seen_ids |= ids


def test_main_regenerates_byte_for_byte(sample_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["--out", str(tmp_path), "--seed", "7"]) == 0
    assert "reference.parquet" in capsys.readouterr().out
    for name in SAMPLE_FILES:
        assert (tmp_path / name).read_bytes() == (sample_dir / name).read_bytes(), name


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".ndjson"])
def test_write_batch_round_trip(tmp_path: Path, suffix: str) -> None:
    df = batch(200, seed=51)
    path = write_batch(df, tmp_path / f"out{suffix}")
    if suffix == ".csv":
        back = pl.read_csv(path, try_parse_dates=True)
    elif suffix == ".parquet":
        back = pl.read_parquet(path)
    else:
        back = pl.read_ndjson(path, schema=SCHEMA)
    assert back.equals(df)
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]


def test_write_batch_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.xlsx"):
        write_batch(batch(5), tmp_path / "out.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_write_batch_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "batch.csv"
    target.write_text("old content\n")

    def half_write(self: pl.DataFrame, file: Path, **kwargs: object) -> None:
        Path(file).write_text("event_time,customer_id\n2026-")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_csv", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_batch(batch(5), target)
    assert target.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["batch.csv"]


def test_generator_imports_only_numpy_polars_and_stdlib() -> None:
    tree = ast.parse(Path(generator_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    allowed = {"__future__", "argparse", "collections", "datetime", "math", "os", "pathlib"}
    allowed |= {"secrets", "sys", "typing", "numpy", "polars"}
    assert imported <= allowed


# -- demo time, fast-forwarded (mldeck demo --feed) -------------------------------------------


def test_the_feed_drops_the_storyline_week_after_week(workspace, store):
    """Each week is written into data/incoming/ whole (never a half-written file), follows the
    storyline, is the same bytes for the same week, and a feed started again goes on after the
    last week the workspace ingested."""
    import hashlib

    from mldeck.data.ingest import ingest_file
    from mldeck.demo.feed import STORY, DemoFeed, next_week, week, write_week

    assert [week(n).scenario for n in range(1, len(STORY) + 2)] == [
        *(scenario for _, scenario in STORY),
        STORY[0][1],
    ]
    assert next_week(store) == 1
    first = write_week(workspace, 2, rows=200)
    assert first == workspace.incoming_dir / "week_02_covariate_shift.csv"
    assert [p.name for p in workspace.incoming_dir.iterdir()] == [first.name]  # no temp file left
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert hashlib.sha256(write_week(workspace, 2, rows=200).read_bytes()).hexdigest() == digest
    other = write_week(workspace, 3, rows=200)
    assert hashlib.sha256(other.read_bytes()).hexdigest() != digest
    ingest_file(workspace, store, first, dataset="churn")
    assert next_week(store) == 3
    # Week 3 waits in data/incoming/ (a console stopped before taking it): not dropped again.
    assert next_week(store, workspace.incoming_dir) == 4
    other.unlink()
    assert next_week(store, workspace.incoming_dir) == 3

    said: list[str] = []
    with pytest.raises(ValueError, match="at least 2 s"):
        DemoFeed(workspace, store, 0.5)
    feed = DemoFeed(workspace, store, 2.0, weeks=1, on_event=said.append)
    feed.start()
    deadline = time.monotonic() + 30
    while not feed.dropped and time.monotonic() < deadline:
        time.sleep(0.1)
    feed.stop()
    assert [p.name for p in feed.dropped] == ["week_03_normal.csv"]
    assert said[0] == "demo: a new week every 2 s, from week 3"
    assert said[1] == "demo: week 3 (normal) dropped into data/incoming/week_03_normal.csv"


def test_the_feed_refuses_a_workspace_the_demo_did_not_make(workspace, tmp_path):
    from mldeck.demo.feed import check_demo_workspace
    from mldeck.demo.workspace import create_demo_workspace
    from mldeck.errors import MldeckError

    with pytest.raises(MldeckError, match="is not a demo workspace"):
        check_demo_workspace(workspace)
    check_demo_workspace(create_demo_workspace(tmp_path / "demo", echo=lambda _: None, train=False))


def test_the_demo_starts_with_a_champion_and_a_cool_down_fit_for_its_pace(tmp_path):
    """'mldeck demo' made no champion: the first weeks were not scored, and a retrain on a
    concept-drift week could fail its gates and leave the whole demo without one; the default
    hour of cool-down then skipped every retrain after the first."""
    from mldeck.demo.workspace import create_demo_workspace, serve_first_model
    from mldeck.store.queries import champions
    from mldeck.workspace import open_workspace_store

    said: list[str] = []
    workspace = create_demo_workspace(tmp_path / "demo", echo=lambda _: None, train=False)
    assert workspace.settings.jobs.retrain_cooldown_minutes == 2
    assert serve_first_model(workspace, echo=said.append) == "churn:1"
    store = open_workspace_store(workspace)
    try:
        assert [(c.model, c.version) for c in champions(store)] == [("churn", 1)]
    finally:
        store.close()
    assert said[-1] == "churn:1 approved and promoted: the champion the batches are scored with"
