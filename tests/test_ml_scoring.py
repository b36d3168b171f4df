"""Scoring with the champion (and the challenger in shadow), and ``mldeck.load_model``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import select

import mldeck
from mldeck.errors import MldeckError, NotFound
from mldeck.ml import registry
from mldeck.ml.scoring import score_batch
from mldeck.store.artifacts import ArtifactError
from mldeck.store.models import Artifact, DatasetVersion, Metric, Run, RunInput, RunStatus
from mldeck.store.queries import run_detail
from mldeck.workspace import Workspace

from .test_cli import assert_one_line_error
from .test_ml_registry import (  # noqa: F401 (model_bytes is a fixture)
    FEATURES,
    add_version,
    churn_frame,
    configure,
    model_bytes,
)


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    return configure(workspace)


@pytest.fixture
def served(ws, store, model_bytes):  # noqa: F811
    """churn:1 is champion; churn:2 (another model, fewer features) is registered."""
    add_version(ws, store, model_bytes["a"])
    add_version(ws, store, model_bytes["b"])
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1", reason="serve")
    return ws


def batch_file(folder: Path, rows: int = 120, seed: int = 7, start_id: int = 5000) -> Path:
    path = folder / f"batch-{seed}.csv"
    churn_frame(rows, seed=seed, start_id=start_id).write_csv(path)
    return path


def metrics_of(store, run_id: int) -> dict[str, float]:
    with store.read() as session:
        rows = session.execute(select(Metric.key, Metric.value).where(Metric.run_id == run_id))
        return dict(rows.all())


def test_load_model_returns_the_champion_ready_to_predict(served, store):
    model = mldeck.load_model("churn@champion", workspace=served.root)
    frame = churn_frame(30, seed=11)
    proba = model.predict_proba(frame.select(list(FEATURES)))
    assert proba.shape == (30, 2) and np.allclose(proba.sum(axis=1), 1)
    second = mldeck.load_model("churn:2", workspace=served.root)
    assert list(second.feature_names_in_) == ["tenure", "plan"]
    with pytest.raises(NotFound, match="no 'challenger' alias"):
        mldeck.load_model("churn@challenger", workspace=served.root)


def test_load_model_refuses_a_tampered_model_file(served, store):
    version = registry.resolve(store, "churn@champion")
    with store.read() as session:
        artifact = session.get(Artifact, version.artifact_id)
    path = served.root / artifact.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its recorded sha256"):
        mldeck.load_model("churn@champion", workspace=served.root)


def test_scoring_writes_predictions_with_ids_and_records_cost_and_lineage(served, store, tmp_path):
    source = batch_file(tmp_path, rows=120)
    result = score_batch(served, store, source)

    scored = result.champion
    assert (scored.label, scored.alias, scored.shadow, scored.rows) == (
        "churn:1",
        "champion",
        False,
        120,
    )
    assert result.shadow is None and result.shadow_error is None
    predictions = pl.read_parquet(served.root / scored.artifact_path)
    assert predictions.columns == ["customer_id", "score", "prediction"]
    assert predictions["customer_id"].to_list() == list(range(5000, 5120))
    assert predictions["score"].is_between(0, 1).all()
    assert set(predictions["prediction"].unique()) <= {0, 1}
    expected = mldeck.load_model("churn:1", workspace=served.root).predict_proba(
        pl.read_csv(source).select(list(FEATURES))
    )[:, 1]
    assert np.allclose(predictions["score"].to_numpy(), expected)

    with store.read() as session:
        run = session.get(Run, scored.run_id)
        inputs = session.execute(select(RunInput).where(RunInput.run_id == run.id)).scalars().all()
        artifact = session.execute(select(Artifact).where(Artifact.run_id == run.id)).scalar_one()
    assert (run.kind, run.status, run.tags["shadow"]) == ("score", RunStatus.SUCCEEDED, False)
    assert run.params["model_version_id"] == scored.model_version_id
    assert [(i.dataset_version_id, i.role) for i in inputs] == [
        (result.dataset_version_id, "input")
    ]
    assert artifact.kind == "predictions" and artifact.sha256 == scored.sha256
    assert artifact.path == scored.artifact_path and artifact.path.startswith(".mldeck/artifacts/")
    metrics = metrics_of(store, run.id)
    assert metrics["rows"] == 120
    assert metrics["latency_ms"] > 0 and metrics["latency_ms"] == pytest.approx(scored.latency_ms)
    assert metrics["cpu_seconds_per_1k"] >= 0
    assert metrics["mean_score"] == pytest.approx(float(expected.mean()))
    assert "agreement" not in metrics


def test_the_challenger_is_scored_in_shadow_and_compared(served, store, tmp_path):
    registry.promote(store, "churn:2", alias="challenger", reason="try it in shadow")
    result = score_batch(served, store, batch_file(tmp_path))

    shadow = result.shadow
    assert shadow is not None and result.shadow_error is None
    assert (shadow.label, shadow.alias, shadow.shadow) == ("churn:2", "challenger", True)
    assert shadow.artifact_path != result.champion.artifact_path
    with store.read() as session:
        run = session.get(Run, shadow.run_id)
        artifact = session.execute(select(Artifact).where(Artifact.run_id == run.id)).scalar_one()
    assert run.tags["shadow"] is True and run.parent_run_id == result.champion.run_id
    assert artifact.name.startswith("shadow-predictions-churn-v2")
    detail = run_detail(store, run.id)
    assert [d for d, *_ in detail.inputs] == ["churn"]
    champion = pl.read_parquet(served.root / result.champion.artifact_path)
    challenger = pl.read_parquet(served.root / shadow.artifact_path)
    agreement = float((champion["prediction"] == challenger["prediction"]).mean())
    assert shadow.agreement == pytest.approx(agreement)
    assert metrics_of(store, run.id)["agreement"] == pytest.approx(agreement)
    assert {"latency_ms", "cpu_seconds_per_1k", "rows"} <= set(metrics_of(store, run.id))


def test_a_failing_shadow_never_stops_the_champion(served, store, tmp_path):
    registry.promote(store, "churn:2", alias="challenger")
    challenger = registry.resolve(store, "churn@challenger")
    with store.read() as session:
        path = served.root / session.get(Artifact, challenger.artifact_id).path
    path.write_bytes(b"not a model")
    result = score_batch(served, store, batch_file(tmp_path))
    assert result.champion.rows == 120 and result.shadow is None
    assert "does not match its recorded sha256" in result.shadow_error
    with store.read() as session:
        failed = session.execute(select(Run).where(Run.status == RunStatus.FAILED)).scalar_one()
    assert failed.tags["shadow"] is True and "sha256" in failed.error


def test_after_a_rollback_the_old_version_scores_with_its_own_schema(served, store, tmp_path):
    registry.approve(store, "churn:2", reason="ok")
    registry.promote(store, "churn:2")
    first = score_batch(served, store, batch_file(tmp_path, seed=8))
    assert first.champion.label == "churn:2"
    registry.rollback(store, "churn:1", reason="v2 regressed")
    again = score_batch(served, store, first.dataset_version_id)  # the same batch, by its id
    assert (
        again.champion.label == "churn:1" and again.dataset_version_id == first.dataset_version_id
    )
    assert again.champion.sha256 != first.champion.sha256


def test_a_batch_without_a_trained_column_fails_its_run_naming_it(served, store, tmp_path):
    from mldeck.data.ingest import ingest_file

    path = tmp_path / "no-charges.csv"
    churn_frame(40, seed=9).drop("charges").write_csv(path)
    # A file: refused before it is taken in (it was stored as an accepted version, which the
    # next training then used).
    with pytest.raises(MldeckError, match="lacks columns churn:1 was trained on: charges"):
        score_batch(served, store, path)
    with store.read() as session:
        assert session.execute(select(DatasetVersion.id)).first() is None
        assert session.execute(select(Run).where(Run.kind == "score")).first() is None
    # A version already ingested: its scoring run fails, naming the column.
    version = ingest_file(served, store, path).version_id
    with pytest.raises(MldeckError, match="lacks columns churn:1 was trained on: charges"):
        score_batch(served, store, version)
    with store.read() as session:
        run = session.execute(select(Run).where(Run.kind == "score")).scalar_one()
    assert run.status == RunStatus.FAILED and "charges" in run.error


def test_a_column_that_cannot_take_the_trained_type_is_named(served, store, tmp_path):
    path = tmp_path / "text-tenure.csv"
    churn_frame(40, seed=10).with_columns(pl.lit("long").alias("tenure")).write_csv(path)
    with pytest.raises(MldeckError, match=r"column 'tenure' of the batch is String.*Int64"):
        score_batch(served, store, path)


def test_a_rejected_batch_is_not_scored(served, store, tmp_path):
    path = tmp_path / "duplicate-ids.csv"
    frame = churn_frame(20, seed=12)
    pl.concat([frame, frame]).write_csv(path)  # unique_ids is on: the batch is rejected
    with pytest.raises(MldeckError, match="was rejected by validation"):
        score_batch(served, store, path)
    with store.read() as session:
        assert session.execute(select(Run).where(Run.kind == "score")).first() is None


def test_scoring_needs_a_champion_and_ingests_nothing_without_one(ws, store, model_bytes, tmp_path):  # noqa: F811
    with pytest.raises(NotFound, match="no model has a champion"):
        score_batch(ws, store, batch_file(tmp_path))
    add_version(ws, store, model_bytes["a"])
    with pytest.raises(NotFound, match="has no 'champion' alias"):
        score_batch(ws, store, batch_file(tmp_path), model="churn")
    # The file was not ingested on the way: no dataset version, no run but the model's.
    with store.read() as session:
        assert session.execute(select(DatasetVersion.id)).first() is None
        assert session.execute(select(Run.kind)).scalars().all() == ["train"]


def test_score_command(served, store, tmp_path, cli):
    registry.promote(store, "churn:2", alias="challenger")
    root = served.root

    def mldeck(*args: str):
        return cli(*args, "--workspace", str(root), cwd=tmp_path)

    source = batch_file(tmp_path)
    done = mldeck("score", str(source))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("churn:v1: 120 rows scored by churn:1 (champion) in ")
    assert "CPU s per 1k" in lines[0]
    assert lines[2].startswith("churn:v1: 120 rows scored by shadow churn:2 (challenger)")
    assert "agrees with the champion on" in lines[2]
    payload = json.loads(mldeck("score", "churn:v1", "--json", "--model", "churn").stdout)
    assert payload["dataset"] == "churn:v1" and payload["champion"]["rows"] == 120
    assert payload["shadow"]["alias"] == "challenger"
    assert (root / payload["champion"]["predictions"]).is_file()

    assert_one_line_error(mldeck("score", "churn:v9"), "neither a file nor a dataset version")
    assert_one_line_error(
        mldeck("score", str(source), "--model", "nope"), "no registered model 'nope'"
    )


def test_a_scoring_stopped_by_ctrl_c_is_cancelled_not_failed(served, store, tmp_path, monkeypatch):
    source = batch_file(tmp_path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    # Ctrl-C arrives while the predictions are written.
    monkeypatch.setattr(pl.DataFrame, "write_parquet", interrupt)
    with pytest.raises(KeyboardInterrupt):
        score_batch(served, store, source)
    with store.read() as session:
        run = session.execute(select(Run).where(Run.kind == "score")).scalar_one()
    assert run.status == RunStatus.CANCELLED and run.ended_at is not None
    assert run.error == "interrupted (KeyboardInterrupt)"


def test_a_holdout_column_of_another_type_is_named_in_one_line():
    """What training says when the champion cannot read the holdout: a gate's detail, one line."""
    from mldeck.ml.evaluate import EvaluationError, prepare_features

    frame = pl.DataFrame({"tenure": ["3", "error", "5", None], "plan": ["a", "b", "c", "d"]})
    with pytest.raises(EvaluationError) as caught:
        prepare_features(frame, ["tenure", "plan"], {"tenure": "Int64", "plan": "String"})
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith(
        "column 'tenure' is String and the model was trained on Int64; 1 of 4 values cannot be "
        "read as Int64 (such as 'error')"
    )


def test_a_modified_champion_file_is_refused_before_the_batch_is_ingested(served, store, tmp_path):
    champion = registry.resolve(store, "churn@champion")
    with store.read() as session:
        path = served.root / session.get(Artifact, champion.artifact_id).path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its recorded sha256"):
        score_batch(served, store, batch_file(tmp_path))
    # Nothing could be scored, so nothing was taken in: the file is no dataset version.
    with store.read() as session:
        assert session.execute(select(DatasetVersion.id)).first() is None
        assert session.execute(select(Run.kind).where(Run.kind != "train")).first() is None


def test_fractional_values_of_a_whole_number_feature_are_refused_not_cut(served, store, tmp_path):
    """tenure 12.99 scored exactly as 12: polars' cast truncates without a word."""
    path = tmp_path / "fractional-tenure.csv"
    frame = churn_frame(40, seed=11)
    frame.with_columns((pl.col("tenure") + 0.99).alias("tenure")).write_csv(path)
    with pytest.raises(MldeckError, match=r"'tenure' of the batch holds fractional values \(such"):
        score_batch(served, store, path)
    whole = tmp_path / "float-but-whole.csv"  # 12.0 is 12: read, not refused
    frame.with_columns(pl.col("tenure").cast(pl.Float64)).write_csv(whole, float_precision=1)
    score_batch(served, store, whole)


def test_training_refuses_to_cut_a_fractional_holdout_value():
    from mldeck.ml.evaluate import EvaluationError, prepare_features

    frame = pl.DataFrame({"tenure": [3.0, 4.5, None]})
    with pytest.raises(EvaluationError, match=r"fractional values \(such as 4.5\)"):
        prepare_features(frame, ["tenure"], {"tenure": "Int64"})
    assert prepare_features(pl.DataFrame({"tenure": [3.0, None]}), ["tenure"],
                            {"tenure": "Int64"})["tenure"].to_list() == [3, None]  # fmt: skip


def test_shadow_agreement_compares_classes_by_value():
    """A challenger trained on 0.0/1.0 agreed with a champion on 0/1 on "0.0%" of the rows."""
    from mldeck.ml.scoring import _same

    assert _same(np.array([1, 0, 1, 1]), np.array([1.0, 0.0, 0.0, 1.0])).tolist() == [
        True, True, False, True
    ]  # fmt: skip
    assert _same(np.array(["yes", "no"]), np.array(["yes", "No"])).tolist() == [True, False]
    assert _same(np.array([True, False]), np.array(["True", "TRUE"])).tolist() == [True, False]
    # Either way round: a champion of True/False beside a challenger of 1/0 (and back).
    flags, counts = np.array([True, False]), np.array([1, 0])
    assert _same(flags, counts).tolist() == _same(counts, flags).tolist() == [True, True]
