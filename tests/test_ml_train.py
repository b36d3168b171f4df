"""Training for real: a workspace built through the real ingest path, scikit-learn fits, the
champion compared on the same holdout, gates stored, versions registered in one transaction,
runs reproduced, and a training killed half-way leaving nothing behind. The commands run as
child processes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import func, select

from mldeck.data.ingest import ingest_file
from mldeck.demo.generator import REFERENCE_START, generate_batch
from mldeck.errors import ConfigError, MldeckError
from mldeck.ml import train as training
from mldeck.ml.gates import check_gates
from mldeck.ml.model_files import load_version
from mldeck.ml.settings import GateSettings
from mldeck.store.artifacts import verify
from mldeck.store.models import (
    Alias,
    Artifact,
    AuditEvent,
    GateResult,
    Metric,
    ModelVersion,
    Run,
    RunInput,
    RunLog,
    RunStatus,
)
from mldeck.store.queries import integrity_check
from mldeck.workspace import Workspace, init_workspace, load_workspace, open_workspace_store

from .conftest import clean_environ

DATA = """
[data]
dataset = "churn"
timestamp_column = "event_time"
id_column = "customer_id"
"""
MODEL = """
[model]
name = "churn"
target = "churned"
segment_column = "segment"
threads = 1
importance_repeats = 1
params = {max_iter = 40}
"""
PASSING = """
[gates]
min = {roc_auc = 0.6}
max = {log_loss = 0.9}
max_regression = {roc_auc = 0.05}
max_fairness_gap = 0.9
max_latency_ms_per_1k = 60000
"""
FAILING = """
[gates]
min = {roc_auc = 0.6, accuracy = 0.99}
max = {log_loss = 0.01}
"""
REFERENCE_ROWS, BATCH_ROWS = 1500, 600


def configure(workspace: Workspace, *sections: str) -> Workspace:
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write("".join(sections))
    return load_workspace(workspace.root)


def write_data(root: Path) -> tuple[Path, Path]:
    reference = generate_batch(REFERENCE_ROWS, start=REFERENCE_START, days=28, seed=11)
    batch = generate_batch(BATCH_ROWS, start=REFERENCE_START + timedelta(days=28), seed=12,
                           id_offset=100_000)  # fmt: skip
    folder = root / "incoming-data"
    folder.mkdir()
    reference.write_parquet(folder / "reference.parquet")
    batch.write_csv(folder / "batch-1.csv")
    return folder / "reference.parquet", folder / "batch-1.csv"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with [data], its reference and one batch ingested for real (built once)."""
    root = tmp_path_factory.mktemp("template") / "ws"
    ws = configure(init_workspace(root, name="training"), DATA)
    reference, batch = write_data(ws.root)
    store = open_workspace_store(ws)
    try:
        assert ingest_file(ws, store, reference, as_reference=True).status == "accepted"
        assert ingest_file(ws, store, batch).status == "accepted"
    finally:
        store.close()
    return root


@pytest.fixture
def build(template: Path, tmp_path: Path):
    """A copy of the template workspace with *sections* appended to its mldeck.toml."""

    def make(*sections: str) -> Workspace:
        root = tmp_path / "ws"
        shutil.copytree(template, root)
        return configure(load_workspace(root), *sections)

    return make


@pytest.fixture
def ws(build) -> Workspace:
    return build(MODEL, PASSING)


def count(store, model, *where) -> int:
    with store.read() as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def artifact_files(ws: Workspace) -> list[Path]:
    return sorted(p for p in ws.artifacts_dir.rglob("*") if p.is_file())


def set_champion(store, version_id: int) -> None:
    with store.write() as session:
        version = session.get(ModelVersion, version_id)
        session.add(Alias(model_id=version.model_id, name="champion", model_version_id=version_id))


def entry_point(ws: Workspace, module: str, body: str) -> Workspace:
    (ws.root / f"{module}.py").write_text(body, encoding="utf-8")
    text = ws.config_path.read_text(encoding="utf-8")
    text = text.replace("params = {max_iter = 40}\n", f'entry_point = "{module}:fit"\n')
    ws.config_path.write_text(text, encoding="utf-8")
    return load_workspace(ws.root)


# -- one training, end to end ------------------------------------------------------------------
def test_training_records_everything(ws):
    store = open_workspace_store(ws)
    seen: list[str] = []
    result = training.train(ws, store, progress=seen.append)
    assert result.version == 1 and result.gates_passed
    assert seen[0].startswith("recording") and "registering the model version" in seen

    with store.read() as session:
        run = session.get(Run, result.run_id)
        version = session.get(ModelVersion, result.model_version_id)
        artifact = session.get(Artifact, version.artifact_id)
        inputs = session.execute(select(RunInput).where(RunInput.run_id == run.id)).scalars().all()
        gates = session.execute(
            select(GateResult).where(GateResult.model_version_id == version.id)
        ).scalars()
        gates = {(g.gate, g.metric): g for g in gates}
        events = session.execute(select(AuditEvent.action)).scalars().all()
    # The run: kind train, succeeded, progress 1.0, and the reproducibility record.
    assert (run.kind, run.status, run.progress) == ("train", RunStatus.SUCCEEDED, 1.0)
    spec = run.params["spec"]
    assert spec["seed"] == 42 and spec["params"] == {"max_iter": 40}
    assert spec["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert run.params["split"] == "time"
    assert "event_time" not in run.params["features"]
    assert "customer_id" not in run.params["features"]
    assert "churned" not in run.params["features"] and "segment" in run.params["features"]
    recorded = run.params["data"]
    assert recorded["source"] == "store"
    assert [v["version"] for v in recorded["versions"]] == [1, 2]
    assert all(len(v["sha256"]) == 64 for v in recorded["versions"])
    assert sum(v["rows"] for v in recorded["versions"]) == REFERENCE_ROWS + BATCH_ROWS
    assert run.environment["python"] and run.environment["platform"]
    assert {"scikit-learn", "numpy", "polars", "skops"} <= set(run.environment["packages"])
    assert isinstance(run.code_version, dict)
    assert run.tags["duration_seconds"] > 0 and run.tags["model_version"] == 1
    # Lineage: the two dataset versions, recorded in the registering transaction.
    assert sorted(i.role for i in inputs) == ["train", "train"]
    # The version: metrics on the holdout (the newest fifth), schema, code version.
    metrics = version.metrics
    holdout = (REFERENCE_ROWS + BATCH_ROWS) // 5
    assert metrics["holdout_rows"] == holdout
    assert metrics["train_rows"] == REFERENCE_ROWS + BATCH_ROWS - holdout
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"):
        assert isinstance(metrics[name], float), name
    assert 0.6 < metrics["roc_auc"] < 1
    assert len(metrics["calibration"]["prob_true"]) == len(metrics["calibration"]["prob_pred"])
    assert set(metrics["slices"]) == {"consumer", "smb", "enterprise"}
    gap = [s["roc_auc"] for s in metrics["slices"].values() if s.get("roc_auc") is not None]
    assert metrics["fairness_gap"] == pytest.approx(max(gap) - min(gap))
    assert metrics["feature_importance"][0]["mean"] >= metrics["feature_importance"][-1]["mean"]
    assert metrics["latency_ms_per_1k"] > 0
    assert metrics["champion"] is None
    assert version.schema_["target"] == "churned" and version.schema_["task"] == "classification"
    assert version.schema_["classes"] == [0, 1]
    assert version.code_version == run.code_version
    assert "model_version.register" in events
    # The model file: content-addressed, its hash verifies, it loads and predicts.
    assert artifact.kind == "model" and artifact.path.endswith(f"{artifact.sha256}.skops")
    verify(ws.root / artifact.path, artifact.sha256)
    assert version.schema_["model_file"]["sha256"] == artifact.sha256
    model = load_version(ws, store, version)
    frame = pl.read_csv(ws.root / "incoming-data" / "batch-1.csv", try_parse_dates=True)
    proba = model.predict_proba(frame.select(version.schema_["features"]))
    assert proba.shape == (BATCH_ROWS, 2)
    # Gates: one row per configured gate, all passed here.
    assert set(gates) == {
        ("min", "roc_auc"), ("max", "log_loss"), ("max_regression", "roc_auc"),
        ("max_fairness_gap", "fairness_gap(roc_auc)"),
        ("max_latency_ms_per_1k", "latency_ms_per_1k"),
    }  # fmt: skip
    assert all(g.passed for g in gates.values())
    assert gates[("min", "roc_auc")].value == metrics["roc_auc"]
    assert gates[("min", "roc_auc")].threshold == 0.6
    # Metric points of the run, including the calibration curve as steps.
    with store.read() as session:
        keys = set(session.execute(select(Metric.key).where(Metric.run_id == run.id)).scalars())
        steps = session.execute(
            select(func.count()).where(Metric.run_id == run.id,
                                       Metric.key == "calibration.prob_true")
        ).scalar_one()  # fmt: skip
    assert {"roc_auc", "log_loss", "fairness_gap", "latency_ms_per_1k"} <= keys
    assert "slice.segment=smb.roc_auc" in keys
    assert steps == len(metrics["calibration"]["prob_true"])
    store.close()


def test_failed_gates_say_which_and_by_how_much(build):
    ws = build(MODEL, FAILING)
    store = open_workspace_store(ws)
    result = training.train(ws, store)
    assert not result.gates_passed
    with store.read() as session:
        rows = session.execute(
            select(GateResult).where(GateResult.model_version_id == result.model_version_id)
        ).scalars()
        gates = {(g.gate, g.metric): g for g in rows}
    assert gates[("min", "roc_auc")].passed
    short = gates[("min", "accuracy")]
    assert not short.passed and short.threshold == 0.99
    assert "< 0.99 (short by " in short.detail
    by = float(short.detail.rsplit("short by ", 1)[1].rstrip(")"))
    assert by == pytest.approx(0.99 - short.value, abs=1e-4)
    over = gates[("max", "log_loss")]
    assert not over.passed and "> 0.01 (over by " in over.detail
    assert result.metrics["gates_passed"] is False
    # Failed gates do not stop registration: the version is a candidate that cannot be promoted.
    assert count(store, ModelVersion) == 1
    store.close()


def test_second_training_is_compared_with_the_champion(ws):
    store = open_workspace_store(ws)
    first = training.train(ws, store)
    set_champion(store, first.model_version_id)
    text = ws.config_path.read_text().replace("max_iter = 40", "max_iter = 15")
    ws.config_path.write_text(text)
    second = training.train(load_workspace(ws.root), store)
    assert second.version == 2
    champion = second.champion
    assert champion["version"] == 1 and champion["error"] is None
    theirs, ours = champion["metrics"], second.metrics
    assert theirs["holdout_rows"] == ours["holdout_rows"] == (REFERENCE_ROWS + BATCH_ROWS) // 5
    # The champion on this holdout: the same numbers it had when it was the candidate, since
    # both trainings held out the same rows.
    for name in ("roc_auc", "log_loss", "accuracy", "brier"):
        assert theirs[name] == pytest.approx(first.metrics[name], abs=1e-12), name
    assert theirs["roc_auc"] != ours["roc_auc"]  # a different model, side by side
    assert set(theirs["slices"]) == set(ours["slices"])
    gate = next(g for g in second.gates if g.gate == "max_regression")
    assert "vs champion v1" in gate.detail
    assert gate.passed == (theirs["roc_auc"] - ours["roc_auc"] <= 0.05)
    with store.read() as session:
        keys = set(
            session.execute(select(Metric.key).where(Metric.run_id == second.run_id)).scalars()
        )
    assert {"champion.roc_auc", "roc_auc"} <= keys
    store.close()


def test_the_champion_is_not_judged_on_rows_it_was_trained_on(ws):
    """A backfilled batch (older rows) moved the time split's cut back: the new holdout held
    rows the champion had learnt, it scored better than it could, and the regression gate
    failed a better candidate."""
    store = open_workspace_store(ws)
    first = training.train(ws, store)
    set_champion(store, first.model_version_id)
    older = generate_batch(1000, start=REFERENCE_START - timedelta(days=20), days=19, seed=14,
                           id_offset=300_000)  # fmt: skip
    path = ws.root / "incoming-data" / "backfill.csv"
    older.write_csv(path)
    assert ingest_file(ws, store, path).status == "accepted"
    second = training.train(ws, store)
    holdout = (REFERENCE_ROWS + BATCH_ROWS + 1000) // 5
    first_holdout = (REFERENCE_ROWS + BATCH_ROWS) // 5
    assert second.metrics["holdout_rows"] == holdout
    champion = second.champion
    assert champion["holdout_rows_left_out"] == holdout - first_holdout
    # Judged on the rows it did not learn: exactly its own holdout, so its own figures.
    assert champion["metrics"]["holdout_rows"] == first_holdout
    assert champion["metrics"]["roc_auc"] == pytest.approx(first.metrics["roc_auc"], abs=1e-12)
    gate = next(g for g in second.gates if g.gate == "max_regression")
    assert f"on the {first_holdout} holdout rows champion v1 was not trained on" in gate.detail
    assert gate.value == champion["candidate_metrics"]["roc_auc"]
    # The version's page compares the figures of those same rows (not its whole holdout's).
    from mldeck.store.queries import model_version_detail

    rows = {c.key: c for c in model_version_detail(store, second.model_version_id).comparison}
    assert rows["holdout_rows"].value == rows["holdout_rows"].champion == first_holdout
    assert rows["roc_auc"].value == pytest.approx(champion["candidate_metrics"]["roc_auc"])
    store.close()


def _retrained_beside_a_champion(ws, store, batch: pl.DataFrame, name: str):
    """*batch* ingested (as CSV or Parquet, by *name*), a training made champion, then the
    training of a candidate beside it: the candidate's result."""
    path = ws.root / "incoming-data" / name
    batch.write_parquet(path) if name.endswith(".parquet") else batch.write_csv(path)
    assert ingest_file(ws, store, path).status in ("accepted", "warned")
    first = training.train(ws, store)
    set_champion(store, first.model_version_id)
    return training.train(ws, store)


def test_unlabelled_recent_rows_do_not_count_as_rows_the_champion_trained_on(ws):
    """The champion's split was read again without dropping the rows that had no label yet, as
    its training did: with a time split its training side reached into its holdout, every
    holdout row counted as learnt, and every retrain failed its regression gate."""
    store = open_workspace_store(ws)
    later = generate_batch(600, start=REFERENCE_START + timedelta(days=60), seed=15,
                           id_offset=400_000).with_columns(churned=pl.lit(None, pl.Int64))  # fmt: skip
    second = _retrained_beside_a_champion(ws, store, later, "unlabelled.csv")
    assert second.champion["holdout_rows_left_out"] == 0 and second.champion["error"] is None
    gate = next(g for g in second.gates if g.gate == "max_regression")
    assert gate.passed and "not trained on" not in gate.detail
    store.close()


def test_a_champion_whose_rows_cannot_be_keyed_is_judged_on_the_whole_holdout(ws):
    """A list column (Parquet) made the rows' keys fail with a polars error, out of training:
    every training after the first failed with a traceback."""
    store = open_workspace_store(ws)
    listed = generate_batch(300, start=REFERENCE_START + timedelta(days=40), seed=16,
                            id_offset=500_000).with_columns(tags=pl.lit(["a", "b"]))  # fmt: skip
    second = _retrained_beside_a_champion(ws, store, listed, "tagged.parquet")
    assert second.champion["error"] is None and second.champion["metrics"]["holdout_rows"] > 0
    store.close()


def test_only_accepted_and_warned_versions_are_trained_on(ws):
    store = open_workspace_store(ws)
    rejected = generate_batch(300, start=REFERENCE_START + timedelta(days=40), seed=13,
                              id_offset=200_000).with_columns(customer_id=pl.lit(7))  # fmt: skip
    path = ws.root / "incoming-data" / "duplicates.csv"
    rejected.write_csv(path)
    assert ingest_file(ws, store, path).status == "rejected"
    result = training.train(ws, store)
    with store.read() as session:
        run = session.get(Run, result.run_id)
        inputs = session.execute(
            select(RunInput.dataset_version_id).where(RunInput.run_id == run.id)
        ).scalars()
        used = sorted(inputs)
    assert [v["version"] for v in run.params["data"]["versions"]] == [1, 2]
    assert used == [v["id"] for v in run.params["data"]["versions"]]
    assert result.metrics["holdout_rows"] == (REFERENCE_ROWS + BATCH_ROWS) // 5
    store.close()


def test_a_training_refuses_to_start_a_model_whose_name_reads_as_a_version(build):
    ws = build(MODEL.replace('name = "churn"', 'name = "churn:v2"'), PASSING)
    store = open_workspace_store(ws)
    runs = count(store, Run)
    with pytest.raises(MldeckError, match=r"\[model\] name 'churn:v2' reads as a version "
                                          r"\(churn:v2 names version 2 of 'churn'\)"):  # fmt: skip
        training.train(ws, store)
    assert count(store, Run) == runs  # refused before anything was recorded
    store.close()


def test_newest_versions_bounds_what_a_training_reads(build):
    """[model] newest_versions = 1: the newest usable version only (every retrain read every
    batch ever accepted: in a long demo, retrains grew from 2.5 to 10 minutes and 1.4 GB)."""
    ws = build(MODEL.replace("threads = 1", "threads = 1\nnewest_versions = 1"), PASSING)
    store = open_workspace_store(ws)
    result = training.train(ws, store)
    with store.read() as session:
        run = session.get(Run, result.run_id)
    assert [v["version"] for v in run.params["data"]["versions"]] == [2]
    assert run.params["spec"]["newest_versions"] == 1
    assert result.metrics["holdout_rows"] == BATCH_ROWS // 5
    store.close()


def test_regression_and_a_split_that_keeps_each_rows_side(build):
    ws = build(
        '[model]\nname = "charges"\ntarget = "monthly_charges"\ntask = "regression"\n'
        'features = ["plan", "segment", "tenure_months"]\nthreads = 1\nimportance_repeats = 1\n'
        "params = {max_iter = 20}\n"
        "[gates]\nmin = {r2 = 0.5}\nmax = {rmse = 1000}\n",
    )
    store = open_workspace_store(ws)
    result = training.train(ws, store)
    metrics = result.metrics
    assert metrics["primary_metric"] == "rmse"
    assert metrics["r2"] > 0.5 and 0 < metrics["mae"] <= metrics["rmse"]
    assert {f["feature"] for f in metrics["feature_importance"]} == {
        "plan", "segment", "tenure_months",
    }  # fmt: skip
    assert metrics["fairness_gap"] is None and metrics["calibration"] is None
    assert result.gates_passed
    frame = pl.DataFrame({"x": np.arange(100.0), "y": [0] * 80 + [1] * 20})
    spec = training.TrainSpec(
        model="m", dataset="d", target="y", features=None, task="classification",
        estimator=None, params={}, entry_point=None, seed=3, test_size=0.25, cv_folds=0,
        segment_column=None, primary_metric="roc_auc", importance_repeats=1, threads=1,
        timestamp_column=None, id_column=None,
    )  # fmt: skip
    train, holdout, how = training.split(frame, spec)
    assert how == "row hash" and 15 <= holdout.height <= 35 and train.height == 100 - holdout.height
    assert 0 < holdout["y"].sum() < 20  # each class on both sides
    assert training.split(frame, spec)[1].equals(holdout)  # seeded
    # As data grows, a row keeps its side: a champion trained on the first 100 rows is never
    # evaluated on one of them in a later candidate's holdout (a split drawn again was).
    grown = pl.concat([frame, pl.DataFrame({"x": np.arange(100.0, 1000.0), "y": [0, 1] * 450})])
    _, later_holdout, _ = training.split(grown, spec)
    assert later_holdout.join(train, on=["x", "y"]).height == 0
    assert later_holdout.join(holdout, on=["x", "y"]).height == holdout.height
    assert 200 <= later_holdout.height <= 300
    # With an id column, a row's side follows its id (the same customer a week later too).
    keyed = dataclasses.replace(spec, id_column="x")
    assert training.split(frame.with_columns(y=pl.col("y")), keyed)[2] == "id hash"
    store.close()


def test_cross_validation_and_data_file(ws):
    text = ws.config_path.read_text().replace("threads = 1\n", "threads = 1\ncv_folds = 3\n")
    ws.config_path.write_text(text)
    ws = load_workspace(ws.root)
    store = open_workspace_store(ws)
    file = ws.root / "incoming-data" / "reference.parquet"
    result = training.train(ws, store, data_file=file)
    cv = result.metrics["cv"]
    assert 0.5 < cv["cv.roc_auc.mean"] < 1 and cv["cv.roc_auc.std"] >= 0
    with store.read() as session:
        run = session.get(Run, result.run_id)
        lineage = session.execute(
            select(RunInput.dataset_version_id).where(RunInput.run_id == run.id)
        ).scalars().all()  # fmt: skip
    assert run.params["data"] == {
        "source": "file",
        "path": str(file.resolve()),
        "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
        "rows": REFERENCE_ROWS,
    }
    # The file holds the bytes of the stored reference, churn:v1: its lineage says so (it
    # showed no input at all).
    assert lineage == [1]
    assert result.metrics["holdout_rows"] == REFERENCE_ROWS // 5
    store.close()


def test_a_data_file_is_judged_by_the_expectations_before_training(build):
    ws = build(MODEL, PASSING, """
[data.columns.tenure_months]
min = 0
[data.table]
max_rows = 10
max_age_days = 1
allow_extra_columns = true
""")  # fmt: skip
    store = open_workspace_store(ws)
    reference = pl.read_parquet(ws.root / "incoming-data" / "reference.parquet")
    # Many rows of long ago: the checks of a batch's arrival are not a training file's.
    result = training.train(ws, store, data_file=ws.root / "incoming-data" / "reference.parquet")
    assert result.version == 1
    bad = ws.root / "bad.parquet"
    reference.with_columns(tenure_months=pl.col("tenure_months") - 1000).write_parquet(bad)
    with pytest.raises(MldeckError) as refused:
        training.train(ws, store, data_file=bad)
    assert str(refused.value) == (
        f"cannot train on {bad}: it fails the expectations of mldeck.toml ([data]): "
        f"min(tenure_months): {REFERENCE_ROWS} values below 0 ('mldeck data ingest' shows the "
        "whole report)"
    )
    assert count(store, Run, Run.kind == "train") == 1  # no run started for it
    # A warning trains, and is in the run's log.
    ws.config_path.write_text(
        ws.config_path.read_text().replace("min = 0\n", 'min = 0\nwarn = ["min"]\n')
    )
    ws = load_workspace(ws.root)
    result = training.train(ws, store, data_file=bad)
    assert result.version == 2
    with store.read() as session:
        lines = [
            e.message for e in session.scalars(select(RunLog).where(RunLog.run_id == result.run_id))
        ]
    assert (
        f"the data's expectations warn: min(tenure_months): {REFERENCE_ROWS} values below 0"
        in lines
    )
    store.close()


# -- entry points -------------------------------------------------------------------------------
USER_FIT = """
from sklearn.tree import DecisionTreeClassifier


def fit(train_frame, target, seed):
    numbers = [c for c, t in train_frame.schema.items() if t.is_numeric() and c != target]
    model = DecisionTreeClassifier(max_depth=3, random_state=seed)
    data = train_frame.select(numbers).fill_null(0)
    model.fit(data, train_frame[target].to_numpy())
    return _Wrapped(model, numbers)


class _Wrapped:
    def __init__(self, model, columns):
        self.model, self.columns, self.classes_ = model, columns, model.classes_

    def predict_proba(self, frame):
        return self.model.predict_proba(frame.select(self.columns).fill_null(0))
"""
PIPELINE_FIT = """
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier


def fit(train_frame, target, seed):
    numbers = [c for c, t in train_frame.schema.items() if t.is_numeric() and c != target]
    model = make_pipeline(
        make_column_transformer((SimpleImputer(), numbers)),
        DecisionTreeClassifier(max_depth=4, random_state=seed),
    )
    return model.fit(train_frame.drop(target), train_frame[target].to_numpy())
"""


def test_entry_point_model_is_trained_with_its_hash_recorded(ws):
    ws = entry_point(ws, "user_fit", PIPELINE_FIT)
    store = open_workspace_store(ws)
    result = training.train(ws, store)
    with store.read() as session:
        run = session.get(Run, result.run_id)
    code = run.code_version
    assert code["entry_point_spec"] == "user_fit:fit"
    assert (
        code["entry_point_sha256"]
        == hashlib.sha256((ws.root / "user_fit.py").read_bytes()).hexdigest()
    )
    assert run.params["spec"]["entry_point"] == "user_fit:fit"
    assert run.params["spec"]["estimator"] is None
    assert 0.5 < result.metrics["roc_auc"] < 1
    store.close()


def test_entry_point_holding_a_custom_class_is_refused_before_registering(ws):
    ws = entry_point(ws, "custom_fit", USER_FIT)
    store = open_workspace_store(ws)
    with pytest.raises(training.TrainingError, match="types mldeck will not load: custom_fit"):
        training.train(ws, store)
    assert count(store, ModelVersion) == 0 and artifact_files(ws) == []
    store.close()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("def fit(frame, target, seed):\n    raise ValueError('no good data')\n",
         "entry point 'bad_fit:fit' raised ValueError: no good data"),
        ("def fit(frame, target, seed):\n    return {'weights': [1, 2]}\n",
         "entry point 'bad_fit:fit' returned a dict, which has no predict_proba"),
        ("def fit(frame, target, seed):\n    return None\n",
         "entry point 'bad_fit:fit' returned None"),
        ("import not_a_module_anywhere\n", "cannot import entry point 'bad_fit:fit'"),
        ("def other():\n    pass\n", "bad_fit has no function fit"),
        # It was a succeeded training run with nothing registered, and exit status 0.
        ("import sys\ndef fit(frame, target, seed):\n    sys.exit(0)\n",
         "entry point 'bad_fit:fit' called sys.exit(0): an entry point returns the fitted model"),
    ],
    ids=["raises", "not-a-model", "none", "import-error", "no-function", "sys-exit"],
)  # fmt: skip
def test_bad_entry_point_fails_the_run_clearly(ws, body, needle):
    ws = entry_point(ws, "bad_fit", body)
    store = open_workspace_store(ws)
    with pytest.raises(training.TrainingError, match="failed: ") as caught:
        training.train(ws, store)
    assert needle in str(caught.value)
    with store.read() as session:
        run = session.get(Run, caught.value.run_id)
    assert run.status == RunStatus.FAILED and run.kind == "train"
    assert needle in run.error and "\n" not in run.error
    assert count(store, ModelVersion) == 0 and count(store, Artifact) == 0
    assert artifact_files(ws) == []
    store.close()


def test_configuration_problems(build):
    ws = build('[model]\nname = "churn"\nthreads = 1\n')
    store = open_workspace_store(ws)
    with pytest.raises(ConfigError, match=r"\[model\] target is not set"):
        training.train(ws, store)
    original = ws.config_path.read_text()
    with pytest.raises(MldeckError, match=r"cannot train on nowhere\.csv: no such file"):
        training.train(configure(ws, 'target = "churned"\n'), store, data_file=Path("nowhere.csv"))
    assert count(store, Run, Run.kind == "train") == 0  # neither started a run
    # A file that is no table (TOML saved as .txt) fails in one line: no polars hint under it.
    notes = ws.root / "settings.txt"
    notes.write_text('[model]\nname = "churn"\nclasses = [0, 1]\n')
    with pytest.raises(MldeckError) as unreadable:
        training.train(load_workspace(ws.root), store, data_file=notes)
    assert "cannot read" in str(unreadable.value) and "\n" not in str(unreadable.value)
    assert "truncate_ragged_lines" not in str(unreadable.value)
    # A folder, a file of another kind, a header alone: each said as what it is.
    (ws.root / "header.csv").write_text("tenure,churned\n")
    for data, said in ((ws.root, "a folder, not a file"),
                       (ws.config_path, "not a data file mldeck reads ('.toml'"),
                       (ws.root / "header.csv", "the data has a header and no rows")):  # fmt: skip
        with pytest.raises(MldeckError, match=re.escape(said)):
            training.train(load_workspace(ws.root), store, data_file=data)
    text = original.replace(
        "threads = 1\n", 'threads = 1\ntarget = "nope"\nestimator = "sklearn.nothing.Here"\n'
    )
    ws.config_path.write_text(text)
    with pytest.raises(training.TrainingError, match="'nope' is not a column of the data"):
        training.train(load_workspace(ws.root), store)
    ws.config_path.write_text(text.replace('"nope"', '"churned"'))
    with pytest.raises(training.TrainingError, match="cannot import estimator"):
        training.train(load_workspace(ws.root), store)
    ws.config_path.write_text(
        text.replace('"nope"', '"churned"').replace("sklearn.nothing.Here", "sklearn.svm.LinearSVC")
    )
    with pytest.raises(training.TrainingError, match="LinearSVC has no predict_proba"):
        training.train(load_workspace(ws.root), store)
    assert count(store, ModelVersion) == 0
    store.close()


# -- reproduce ----------------------------------------------------------------------------------
def test_reproduce_matches_exactly(ws):
    store = open_workspace_store(ws)
    result = training.train(ws, store)
    again = training.reproduce(ws, store, str(result.run_id))
    assert again.all_match, again.as_dict()
    names = [m.name for m in again.matches]
    assert names[:7] == ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"]
    assert "fairness_gap" in names
    assert all(m.old == m.new for m in again.matches)
    with store.read() as session:
        new_run = session.get(Run, again.new_run_id)
    assert new_run.tags["reproduce_of"] == result.run_id and new_run.tags["reproduced"] is True
    assert count(store, ModelVersion) == 1  # reproducing registers nothing
    # A changed record no longer matches: the params of the original run, edited.
    with store.write() as session:
        run = session.get(Run, result.run_id)
        run.params = {**run.params, "spec": {**run.params["spec"], "params": {"max_iter": 5}}}
        session.add(run)
    edited = training.reproduce(ws, store, str(result.run_id))
    assert not edited.all_match
    with store.read() as session:
        ingest_run = session.execute(select(Run.id).where(Run.kind == "ingest")).scalars().first()
    with pytest.raises(MldeckError, match="not a training run"):
        training.reproduce(ws, store, str(ingest_run))
    store.close()


def test_a_reproduction_records_the_data_versions_it_trained_on(ws):
    """Its lineage is the training's: the same dataset versions, as training inputs."""
    store = open_workspace_store(ws)
    try:
        result = training.train(ws, store)
        again = training.reproduce(ws, store, str(result.run_id))

        def inputs(run_id: int) -> list[tuple[int, str]]:
            with store.read() as session:
                rows = session.execute(
                    select(RunInput.dataset_version_id, RunInput.role)
                    .where(RunInput.run_id == run_id)
                    .order_by(RunInput.dataset_version_id)
                ).all()
            return [tuple(row) for row in rows]

        assert len(inputs(result.run_id)) == 2  # the reference and the batch
        assert inputs(again.new_run_id) == inputs(result.run_id)
        assert {role for _, role in inputs(again.new_run_id)} == {"train"}
    finally:
        store.close()


# -- child processes: the CLI, and a training killed half-way ------------------------------------
def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mldeck: error: ")
    return lines[0]


def test_cli_train_and_reproduce(build, cli):
    ws = build(MODEL, FAILING)
    trained = cli("run", "train", "--json", cwd=ws.root)
    assert trained.returncode == 3, trained.stderr  # registered, but a gate failed
    payload = json.loads(trained.stdout)
    assert payload["model"] == "churn" and payload["version"] == 1
    assert not payload["gates_passed"] and payload["champion"] is None
    failed = [g["detail"] for g in payload["gates"] if not g["passed"]]
    assert any("(over by " in detail for detail in failed)
    reproduced = cli("runs", "reproduce", str(payload["run_id"]), cwd=ws.root)
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    lines = reproduced.stdout.splitlines()
    roc = next(line.split() for line in lines if line.startswith("roc_auc "))
    assert roc[1] == roc[2] == repr(payload["metrics"]["roc_auc"]) and roc[3] == "yes"
    assert "all 8 metrics match" in reproduced.stdout


def test_cli_errors_are_one_line(ws, cli):
    ws = entry_point(ws, "bad_fit", "def fit(frame, target, seed):\n    raise KeyError('x')\n")
    failed = cli("run", "train", cwd=ws.root)
    assert failed.returncode == 2
    line = one_line(failed)
    assert "failed: entry point 'bad_fit:fit' raised KeyError" in line
    missing = cli("runs", "reproduce", "9999", cwd=ws.root)
    assert missing.returncode == 2 and "no run 9999" in one_line(missing)


SLOW_FIT = """
import time
from pathlib import Path


def fit(train_frame, target, seed):
    Path(__file__).with_name("fitting.started").write_text("yes")
    time.sleep(120)
"""


def test_training_killed_half_way_leaves_nothing_behind(ws):
    ws = entry_point(ws, "slow_fit", SLOW_FIT)
    marker = ws.root / "fitting.started"
    child = subprocess.Popen(
        [sys.executable, "-m", "mldeck.cli", "run", "train"],
        cwd=ws.root,
        env=clean_environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the training ended before it could be killed"
            assert time.monotonic() < deadline, "the training never started fitting"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = open_workspace_store(ws)
    assert integrity_check(store) == "ok"
    with store.read() as session:
        run = session.execute(select(Run).where(Run.kind == "train")).scalar_one()
        referenced = set(session.execute(select(Artifact.path)).scalars())
    assert run.status == RunStatus.RUNNING and run.progress == 0.5  # it died while fitting
    assert count(store, ModelVersion) == 0
    assert count(store, GateResult) == 0
    assert count(store, RunInput, RunInput.run_id == run.id) == 0
    leftovers = [p for p in artifact_files(ws) if str(p.relative_to(ws.root)) not in referenced]
    assert leftovers == []
    store.close()


# -- gates on their own ---------------------------------------------------------------------------
def test_gate_details():
    settings = GateSettings(
        min={"roc_auc": 0.8}, max={"log_loss": 0.5}, max_regression={"roc_auc": 0.01,
        "log_loss": 0.02}, max_fairness_gap=0.1, max_latency_ms_per_1k=10,
    )  # fmt: skip
    outcomes = check_gates(
        settings, {"roc_auc": 0.71, "log_loss": 0.62}, champion_metrics={"roc_auc": 0.75,
        "log_loss": 0.61}, champion_label="champion v3", fairness_gap=0.25,
        primary_metric="roc_auc", segment_column="segment", latency_ms_per_1k=4.0,
    )  # fmt: skip
    details = {(o.gate, o.metric): (o.passed, o.detail) for o in outcomes}
    assert details[("min", "roc_auc")] == (False, "roc_auc 0.71 < 0.8 (short by 0.09)")
    assert details[("max", "log_loss")] == (False, "log_loss 0.62 > 0.5 (over by 0.12)")
    assert details[("max_regression", "roc_auc")] == (
        False,
        "roc_auc 0.71 vs champion v3 0.75: worse by 0.04, more than the allowed 0.01 "
        "(over by 0.03)",
    )
    assert details[("max_regression", "log_loss")] == (
        True, "log_loss 0.62 vs champion v3 0.61: worse by 0.01 (allowed 0.02)",
    )  # fmt: skip
    assert details[("max_fairness_gap", "fairness_gap(roc_auc)")][0] is False
    assert "over by 0.15" in details[("max_fairness_gap", "fairness_gap(roc_auc)")][1]
    assert details[("max_latency_ms_per_1k", "latency_ms_per_1k")][0] is True
    # Without a champion nothing can regress; a missing metric never passes.
    alone = check_gates(settings, {"roc_auc": 0.9}, fairness_gap=None, segment_column=None)
    verdicts = {(o.gate, o.metric): o for o in alone}
    assert verdicts[("max_regression", "roc_auc")].passed
    assert not verdicts[("max", "log_loss")].passed
    assert "not computed" in verdicts[("max", "log_loss")].detail
    assert not verdicts[("max_fairness_gap", "fairness_gap")].passed
    assert not verdicts[("max_latency_ms_per_1k", "latency_ms_per_1k")].passed


def test_settings_are_checked():
    from mldeck.config import parse_settings

    with pytest.raises(ConfigError, match="unknown metric 'auc'"):
        parse_settings("[gates]\nmin = {auc = 0.8}\n")
    with pytest.raises(ConfigError, match="unknown key 'estimators' in \\[model\\]"):
        parse_settings("[model]\nestimators = 'x'\n")
    with pytest.raises(ConfigError, match="either estimator or entry_point"):
        parse_settings("[model]\nestimator = 'a.B'\nentry_point = 'a:b'\n")
    with pytest.raises(ConfigError, match="not 'module:function'"):
        parse_settings("[model]\nentry_point = 'a.b'\n")
    with pytest.raises(ConfigError, match="not a regression metric"):
        parse_settings("[model]\ntask = 'regression'\nprimary_metric = 'roc_auc'\n")
    # A name that NAME@ALIAS and NAME:VERSION could not read back (found only at training).
    with pytest.raises(ConfigError, match="a model's name has no '@'"):
        parse_settings("[model]\nname = 'churn@prod'\n")
    for blank in ("'   '", "' churn'"):
        with pytest.raises(ConfigError, match="no spaces at either end"):
            parse_settings(f"[model]\nname = {blank}\n")
    assert parse_settings("[model]\nname = 'ch:urn'\n").model.name == "ch:urn"
    # 'churn:2026' read back as version 2026 of 'churn' (possibly another model's).
    with pytest.raises(ConfigError, match="does not end in ':' and digits"):
        parse_settings("[model]\nname = 'churn:2026'\n")
    # NAME:vN, NAME/N and NAME/vN read as versions too, but a workspace whose model is already
    # so named keeps loading: a training refuses a new model so named (registry tests).
    assert parse_settings("[model]\nname = 'churn:v2'\n").model.name == "churn:v2"
    settings = parse_settings("[model]\ntarget = 'y'\n[gates]\nmax_regression = {f1 = 0.5}\n")
    assert settings.model.estimator_path.endswith("HistGradientBoostingClassifier")
    assert settings.gates.max_regression == {"f1": 0.5}
    settings = parse_settings("[model]\ntask = 'regression'\ntarget = 'y'\n[gates]\n"
                              "max_regression = {rmse = 0.5}\n")  # fmt: skip
    assert settings.model.estimator_path.endswith("HistGradientBoostingRegressor")
    assert settings.gates.max_regression == {"rmse": 0.5}
    # a metric the task does not compute: every candidate failed it
    with pytest.raises(ConfigError, match="names rmse, which a classification model does not"):
        parse_settings("[model]\ntarget = 'y'\n[gates]\nmax_regression = {rmse = 0.5}\n")


def test_metric_keys_named_after_a_long_feature_fit_a_metric_key(workspace):
    """'importance.<a 196-character feature>' was refused by the run: the training failed."""
    import mldeck
    from mldeck.ml.evaluate import Evaluation

    long = "x" * 196
    evaluation = Evaluation(task="classification", n_rows=10, primary_metric="roc_auc",
                            metrics={"roc_auc": 0.5}, segment_column="s" * 150,
                            slices={"v" * 60: {"roc_auc": 0.5}},
                            importance=[{"feature": long, "mean": 0.1}])  # fmt: skip
    points = evaluation.scalars("holdout.")
    assert all(len(key) <= 200 for key in points)
    with mldeck.start_run(name="long", workspace=workspace.root) as run:
        run.log_metrics(points)
    assert any(key.startswith("holdout.importance.xxx") for key in points)


def test_a_version_whose_number_column_is_empty_does_not_make_it_text():
    """One batch with the column left empty (read from its CSV as text) made the feature a
    category for every later retrain: the text type won the concatenation."""
    numbers = pl.DataFrame({"score": [1.5, 2.0], "plan": ["a", "b"]})
    empty = pl.DataFrame({"score": pl.Series([None, None], dtype=pl.String), "plan": ["c", None]})
    both = training._concat([numbers, empty], ["churn:v1", "churn:v2"])
    assert both.schema["score"] == pl.Float64 and both.get_column("score").null_count() == 2
    assert both.schema["plan"] == pl.String
    # A column holding text in one version and numbers in another stays as it was read.
    text = pl.DataFrame({"score": ["high", None], "plan": ["c", "d"]})
    assert training._concat([numbers, text], ["churn:v1", "churn:v3"]).schema["score"] == pl.String
