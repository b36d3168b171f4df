"""The monitor step on a real store: drift reports, performance, alerts, labels, KPIs, the CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, select

from mldeck.data.ingest import ingest_file
from mldeck.errors import ConfigError, MldeckError
from mldeck.ml import registry
from mldeck.monitor import alerts, check_batch
from mldeck.monitor.kpis import kpis
from mldeck.monitor.labels import late_labels, record_labels
from mldeck.monitor.queries import list_reports, report_detail, resolve_report
from mldeck.store.models import (
    Alert,
    Artifact,
    AuditEvent,
    DatasetVersion,
    DriftReport,
    FeatureDrift,
    Metric,
    Run,
    RunKind,
    RunLog,
    RunStatus,
)
from mldeck.workspace import Workspace, load_workspace

from .test_cli import assert_one_line_error
from .test_ml_registry import (  # noqa: F401 (model_bytes is a fixture)
    DATA_CONFIG,
    add_version,
    churn_frame,
    configure,
    model_bytes,
)

MONITOR_CONFIG = (
    DATA_CONFIG
    + '\n[model]\nname = "churn"\ntarget = "churned"\n\n[gates]\nmin = {roc_auc = 0.6}\n'
    + "\n[monitor]\ndrift_share = 0.3\n"
)
SCHEMA = {"target": "churned", "classes": [0, 1], "task": "classification"}


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    return configure(workspace, MONITOR_CONFIG)


def write(frame: pl.DataFrame, folder: Path, name: str) -> Path:
    path = folder / name
    frame.write_csv(path)
    return path


@pytest.fixture
def monitored(ws, store, model_bytes, tmp_path):  # noqa: F811
    """A reference ingested as the baseline and churn:1 as champion."""
    ref = write(churn_frame(800, seed=1), tmp_path, "reference.csv")
    ingest_file(ws, store, ref, as_reference=True)
    add_version(ws, store, model_bytes["a"], schema=SCHEMA, metrics={"roc_auc": 0.8})
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1", reason="serve")
    return ws


def ingest(ws, store, frame: pl.DataFrame, folder: Path, name: str) -> int:
    outcome = ingest_file(ws, store, write(frame, folder, name))
    assert outcome.status in ("accepted", "warned"), outcome.reasons
    return outcome.version_id


def shifted(seed: int, start_id: int) -> pl.DataFrame:
    return churn_frame(400, seed=seed, start_id=start_id).with_columns(pl.col("charges") + 40)


def test_a_batch_like_the_reference_is_quiet_and_fully_recorded(monitored, store, tmp_path):
    version = ingest(monitored, store, churn_frame(400, seed=2, start_id=5000), tmp_path, "b.csv")
    result = check_batch(monitored, store, version)
    assert not result.dataset_drift
    assert result.n_drifted == 0
    assert {f.feature for f in result.features} == {"tenure", "charges", "plan"}
    assert result.label is not None and result.label.feature == "churned"
    assert result.prediction is not None and not result.prediction.drifted
    assert result.estimated is not None and result.estimated.metric == "roc_auc"
    assert result.estimated.lower <= result.estimated.value <= result.estimated.upper
    assert result.realized["labelled_rows"] == 400
    assert result.alerts == [] and result.retrain_reasons == []
    with store.read() as session:
        run = session.get(Run, result.run_id)
        assert (run.kind, run.status) == (RunKind.DRIFT, RunStatus.SUCCEEDED)
        report = session.get(DriftReport, result.report_id)
        assert report.n_features == 3 and not report.dataset_drift
        stored = session.execute(
            select(FeatureDrift.feature).where(FeatureDrift.report_id == report.id)
        ).scalars()
        assert set(stored) == {"tenure", "charges", "plan", "churned", "score"}
        keys = set(
            session.execute(select(Metric.key).where(Metric.run_id == result.run_id)).scalars()
        )
    assert {"drift_share", "estimated_roc_auc", "realized_roc_auc", "prediction_drift"} <= keys
    # The small reference (800 rows) uses the tests: KS for numbers, chi-square for categories.
    methods = {f.feature: f.method for f in result.features}
    assert methods == {"tenure": "ks", "charges": "ks", "plan": "chi2"}


def test_a_stored_batch_cut_short_is_refused_not_checked(monitored, store, tmp_path):
    """A stored file truncated behind mldeck's back was read as it was: a report on half its
    rows ('no dataset drift'), where training and scoring refuse it."""
    version = ingest(monitored, store, churn_frame(400, seed=2, start_id=5000), tmp_path, "b.csv")
    with store.read() as session:
        stored = monitored.root / session.get(DatasetVersion, version).stored_path
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    with pytest.raises(MldeckError, match=r"does not match its recorded sha256 .* truncated"):
        check_batch(monitored, store, version)
    with store.read() as session:
        assert session.execute(select(func.count(DriftReport.id))).scalar() == 0
        runs = session.execute(select(Run.status).where(Run.kind == RunKind.DRIFT)).scalars()
        assert list(runs) == [RunStatus.FAILED]


def test_a_shifted_batch_is_flagged_on_the_shifted_feature_and_alerts(monitored, store, tmp_path):
    version = ingest(monitored, store, shifted(3, 6000), tmp_path, "shift.csv")
    result = check_batch(monitored, store, version)
    assert [f.feature for f in result.features if f.drifted] == ["charges"]
    assert result.features[0].feature == "charges"  # the most severe first
    assert result.dataset_drift
    raised = {a.rule: a for a in result.alerts}
    # A mean shift of one feature also moves the joint distribution (the PCA error).
    assert set(raised) == {"dataset drift", "multivariate drift"}
    alert = raised["dataset drift"]
    assert alert.new and alert.retrain and not raised["multivariate drift"].retrain
    assert result.retrain_reasons == [f"dataset drift: {alert.title}"]
    assert "charges" in json.dumps(alert.payload)


def test_a_batch_without_its_labels_still_gets_the_joint_drift(monitored, store, tmp_path):
    """Labels usually come later: the PCA is over the features, never the label."""
    unlabelled = shifted(3, 6000).drop("churned")
    result = check_batch(monitored, store, ingest(monitored, store, unlabelled, tmp_path, "u.csv"))
    assert result.label is None and result.realized is None
    assert result.multivariate is not None and result.multivariate.drifted
    with store.read() as session:
        name = session.execute(
            select(Artifact.name).where(Artifact.kind == "drift_baseline")
        ).scalar_one()
    assert name.startswith("drift-baseline:v2:")  # a baseline with the label in it is not reused


def test_one_wild_row_is_not_a_change_of_the_joint_distribution(monitored, store, tmp_path):
    frame = churn_frame(400, seed=2, start_id=5000)
    wild = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(10**6).otherwise(pl.col("charges"))
        .alias("charges")
    )  # fmt: skip
    result = check_batch(monitored, store, ingest(monitored, store, wild, tmp_path, "wild.csv"))
    assert result.multivariate is not None and not result.multivariate.drifted
    assert result.multivariate.error < result.multivariate.threshold


def test_an_open_alert_repeats_then_a_quiet_batch_resolves_it(monitored, store, tmp_path):
    first = ingest(monitored, store, shifted(3, 6000), tmp_path, "s1.csv")
    second = ingest(monitored, store, shifted(4, 7000), tmp_path, "s2.csv")
    quiet = ingest(monitored, store, churn_frame(400, seed=5, start_id=8000), tmp_path, "q.csv")
    check_batch(monitored, store, first)
    again = check_batch(monitored, store, second)
    assert [a.new for a in again.alerts] == [False, False]
    with store.read() as session:
        rows = session.execute(select(Alert)).scalars().all()
        assert [(a.status, a.occurrences) for a in rows] == [("open", 2), ("open", 2)]
    # The alerts name the newest batch now; the first batch keeps them in its history.
    assert {r.batch: r.alerts for r in list_reports(store)} == {"churn:v2": 2, "churn:v3": 2}
    check_batch(monitored, store, quiet)
    with store.read() as session:
        rows = session.execute(select(Alert)).scalars().all()
        assert {a.status for a in rows} == {"resolved"} and all(a.resolved_at for a in rows)
        actions = session.execute(select(AuditEvent.action)).scalars().all()
    assert actions.count("alert.open") == 2 and actions.count("alert.resolve") == 2


def test_a_report_counts_the_alerts_its_own_check_raised(monitored, store, tmp_path):
    """A batch checked twice: each report counts what its check raised, not every alert that
    ever named the batch."""
    from mldeck.monitor.alerts import resolve

    batch = ingest(monitored, store, shifted(3, 6000), tmp_path, "s1.csv")
    first = check_batch(monitored, store, batch)
    assert len(first.alerts) == 2
    for raised in first.alerts:
        resolve(store, raised.alert_id, note="looked at it")
    second = check_batch(monitored, store, batch)
    assert [a.new for a in second.alerts] == [True, True]
    assert [(r.run_id, r.alerts) for r in list_reports(store)] == [
        (second.run_id, 2),
        (first.run_id, 2),
    ]
    quiet = ingest(monitored, store, churn_frame(400, seed=5, start_id=8000), tmp_path, "q.csv")
    check_batch(monitored, store, quiet)  # clears the open alerts: raised none itself
    assert [r.alerts for r in list_reports(store)] == [0, 2, 2]


def test_reports_are_listed_newest_batch_first_whatever_order_their_checks_ended(
    monitored, store, tmp_path
):
    """Two checks side by side can end in either order: the Drift screen opened on the older
    batch's report (listed by check) while the newer batch had the open alerts."""
    older = ingest(monitored, store, churn_frame(400, seed=5, start_id=8000), tmp_path, "o.csv")
    newer = ingest(monitored, store, shifted(3, 6000), tmp_path, "n.csv")
    check_batch(monitored, store, newer)
    check_batch(monitored, store, older)
    again = check_batch(monitored, store, newer)
    listed = [(r.batch, r.run_id) for r in list_reports(store)]
    assert [b for b, _ in listed] == ["churn:v3", "churn:v3", "churn:v2"]
    assert listed[0][1] == again.run_id  # a batch's newest check first


def test_an_older_batch_checked_later_neither_clears_nor_renames_a_newer_batchs_alert(
    monitored, store, tmp_path
):
    quiet = ingest(monitored, store, churn_frame(400, seed=5, start_id=8000), tmp_path, "q.csv")
    drifted = ingest(monitored, store, shifted(3, 6000), tmp_path, "s1.csv")
    newer = ingest(monitored, store, churn_frame(400, seed=6, start_id=9000), tmp_path, "n.csv")
    first = check_batch(monitored, store, drifted)
    opened = {a.alert_id: a.title for a in first.alerts}
    assert opened
    check_batch(monitored, store, quiet)  # an older, quiet batch, checked after
    with store.read() as session:
        rows = session.execute(select(Alert)).scalars().all()
    assert {a.id: (a.status, a.title) for a in rows} == {i: ("open", t) for i, t in opened.items()}
    check_batch(monitored, store, newer)  # a newer quiet batch: the condition cleared
    with store.read() as session:
        rows = session.execute(select(Alert)).scalars().all()
    assert {a.status for a in rows} == {"resolved"}


def test_an_older_drifted_batch_checked_later_asks_for_no_retrain(monitored, store, tmp_path):
    """A scheduled check of an older batch repeated the newest batch's open drift alert and
    asked for a second retrain for one incident, naming the newer batch."""
    older = ingest(monitored, store, shifted(3, 6000), tmp_path, "old.csv")
    newest = ingest(monitored, store, shifted(4, 8000), tmp_path, "new.csv")
    assert check_batch(monitored, store, newest).retrain_reasons
    again = check_batch(monitored, store, older)
    assert again.dataset_drift and again.alerts  # said: it drifted too, the alert repeats
    assert all(alert.older for alert in again.alerts if alert.scope == "batch")
    assert again.retrain_reasons == []


def test_an_older_drifted_batch_checked_after_a_quiet_newer_one_opens_nothing(
    monitored, store, tmp_path
):
    """The newest batch decides: it was found clear, so a late check of an older drifted batch
    opened a dataset drift alert (and asked for a retrain) that stayed open."""
    older = ingest(monitored, store, shifted(3, 6000), tmp_path, "old.csv")
    newest = ingest(monitored, store, churn_frame(400, seed=5, start_id=8000), tmp_path, "n.csv")
    assert check_batch(monitored, store, newest).alerts == []
    late = check_batch(monitored, store, older)
    assert late.dataset_drift  # said in its report
    assert late.alerts == [] and late.retrain_reasons == []


def test_the_reference_is_read_once_for_every_batch(monitored, store, tmp_path):
    for seed in (6, 7):
        version = ingest(
            monitored, store, churn_frame(300, seed=seed, start_id=seed * 1000), tmp_path,
            f"b{seed}.csv",
        )  # fmt: skip
        check_batch(monitored, store, version)
    with store.read() as session:
        names = session.execute(select(Artifact.name).where(Artifact.kind.like("%baseline"))).all()
    assert sorted(n[0].split(":")[0] for n in names) == ["drift-baseline", "prediction-baseline"]


def test_a_batch_without_labels_is_estimated_and_labels_arriving_later_are_joined(
    monitored, store, tmp_path
):
    frame = churn_frame(400, seed=8, start_id=9000)
    version = ingest(monitored, store, frame.drop("churned"), tmp_path, "nolabels.csv")
    result = check_batch(monitored, store, version)
    assert result.realized is None and result.estimated.value is not None
    labels = write(frame.select("customer_id", "churned").head(300), tmp_path, "labels.csv")
    outcome = record_labels(monitored, store, labels)
    assert outcome.matched == 300
    (item,) = outcome.batches
    assert item.rows == 300 and item.realized["roc_auc"] is not None
    detail = report_detail(store, result.report_id)
    assert detail.summary["realized"]["labelled_rows"] == 300
    assert list_reports(store)[0].realized == pytest.approx(item.realized["roc_auc"])
    with store.read() as session:
        run = session.get(Run, item.run_id)
        assert run.kind == RunKind.EVALUATE and run.status == RunStatus.SUCCEEDED


def test_labels_add_up_across_files_and_a_recheck_keeps_them(monitored, store, tmp_path):
    frame = churn_frame(400, seed=8, start_id=9000)
    version = ingest(monitored, store, frame.drop("churned"), tmp_path, "nolabels.csv")
    check_batch(monitored, store, version)
    labels = frame.select("customer_id", "churned")
    whole = write(labels, tmp_path, "whole.csv")
    first = record_labels(monitored, store, write(labels.head(250), tmp_path, "first.csv"))
    assert (first.batches[0].rows, first.batches[0].new) == (250, 250)
    second = record_labels(monitored, store, write(labels.tail(150), tmp_path, "second.csv"))
    (item,) = second.batches
    assert (item.rows, item.new) == (400, 150)
    # A re-check of the batch keeps the labels recorded since it was checked.
    again = check_batch(monitored, store, version)
    assert again.realized["labelled_rows"] == 400
    assert again.realized["roc_auc"] == pytest.approx(item.realized["roc_auc"])
    # A file bringing nothing new records nothing and says so.
    repeat = record_labels(monitored, store, whole)
    assert [(b.run_id, b.new, b.rows) for b in repeat.batches] == [(None, 0, 400)]
    assert repeat.batches[0].realized["roc_auc"] == pytest.approx(item.realized["roc_auc"])


def test_ids_in_several_batches_need_the_batch_the_labels_are_of(monitored, store, tmp_path):
    """The same customers scored two weeks running: week 2's labels were recorded for week 1's
    predictions too (a wrong realized metric, a false alert), and week 1's true labels were then
    refused as contradictions."""
    week1 = churn_frame(300, seed=8, start_id=9000)
    week2 = churn_frame(300, seed=9, start_id=9000)  # the same ids, other rows and outcomes
    v1 = ingest(monitored, store, week1.drop("churned"), tmp_path, "w1.csv")
    v2 = ingest(monitored, store, week2.drop("churned"), tmp_path, "w2.csv")
    check_batch(monitored, store, v1)
    check_batch(monitored, store, v2)
    labels2 = write(week2.select("customer_id", "churned"), tmp_path, "l2.csv")
    with pytest.raises(
        MldeckError,
        match=r"300 ids of l2.csv \('9000', .*\) are in several "
        r"monitored batches \(churn:v2, churn:v3\): .*--batch",
    ):
        record_labels(monitored, store, labels2)
    assert late_labels(monitored, store, v1) is None  # nothing recorded
    second = record_labels(monitored, store, labels2, batch="churn:v3")
    assert [(b.batch, b.new) for b in second.batches] == [("churn:v3", 300)]
    labels1 = write(week1.select("customer_id", "churned"), tmp_path, "l1.csv")
    first = record_labels(monitored, store, labels1, batch="churn:v2")
    assert [(b.batch, b.new) for b in first.batches] == [("churn:v2", 300)]
    with pytest.raises(MldeckError, match=r"churn:v4 .*no dataset version|no dataset version"):
        record_labels(monitored, store, labels1, batch="churn:v4")


def test_an_alert_one_batchs_labels_raise_and_a_newer_ones_clear_is_not_said_raised(
    monitored, store, tmp_path
):
    """Said "alert raised" (exit 3, its hook paged with status open) for an alert the same
    file's labels of a newer batch had already resolved."""
    ws = monitored
    old = churn_frame(200, seed=8, start_id=9000)
    new = churn_frame(200, seed=9, start_id=19000)
    for frame, name in ((old, "old.csv"), (new, "new.csv")):
        check_batch(ws, store, ingest(ws, store, frame.drop("churned"), tmp_path, name))
    wrong = old.select("customer_id", (1 - pl.col("churned")).alias("churned"))
    both = pl.concat([wrong, new.select("customer_id", "churned")])
    outcome = record_labels(ws, store, write(both, tmp_path, "labels.csv"))
    assert [b.realized["roc_auc"] < 0.6 for b in outcome.batches] == [True, False]
    assert outcome.alerts == []
    with store.read() as session:
        rows = session.execute(select(Alert).where(Alert.rule.like("realized%"))).scalars()
        assert [a.status for a in rows] == ["resolved"]


def test_a_label_contradicting_one_recorded_refuses_the_file(monitored, store, tmp_path):
    frame = churn_frame(100, seed=8, start_id=9000)
    # A batch with its own labels: a later file may not say otherwise for its ids.
    labelled = ingest(monitored, store, frame, tmp_path, "labelled.csv")
    result = check_batch(monitored, store, labelled)
    before = report_detail(store, result.report_id).summary["realized"]
    flipped = frame.select("customer_id", (1 - pl.col("churned")).alias("churned")).head(10)
    ids = [repr(str(i)) for i in flipped.get_column("customer_id").head(5).to_list()]
    with pytest.raises(
        MldeckError,
        match=rf"contradicts labels already recorded for churn:v2 \({', '.join(ids)}, \.\.\.\)",
    ):
        record_labels(monitored, store, write(flipped, tmp_path, "flipped.csv"))
    assert report_detail(store, result.report_id).summary["realized"] == before
    # The same labels again are no contradiction, and nothing new: the figures stand.
    same = record_labels(monitored, store, write(frame.select("customer_id", "churned").head(10),
                                                 tmp_path, "same.csv"))  # fmt: skip
    assert [(b.new, b.rows) for b in same.batches] == [(0, 100)]


def test_a_label_file_matching_no_batch_or_with_blank_labels_says_so(monitored, store, tmp_path):
    frame = churn_frame(50, seed=8, start_id=9000)
    check_batch(
        monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path, "b.csv")
    )
    strangers = pl.DataFrame({"customer_id": [1, 2], "churned": [0, 1]})
    with pytest.raises(MldeckError, match=r"none of the 2 ids in strangers\.csv is in a monitored"):
        record_labels(monitored, store, write(strangers, tmp_path, "strangers.csv"))
    blanks = frame.select("customer_id", pl.when(pl.int_range(pl.len()) < 3).then(None)
                          .otherwise(pl.col("churned")).alias("churned"))  # fmt: skip
    outcome = record_labels(monitored, store, write(blanks, tmp_path, "blanks.csv"))
    assert (outcome.rows, outcome.unlabelled, outcome.batches[0].rows) == (47, 3, 47)


def test_labels_for_a_batch_not_checked_yet_are_said_not_kept_and_taken_on_a_second_pass(
    monitored, store, tmp_path, cli
):
    """One file, labels for a checked batch and for one not checked yet: the second half is
    said (exit 3, with ids), and the same file passed again after the check records it."""
    checked = churn_frame(40, seed=8, start_id=9000)
    later = churn_frame(40, seed=9, start_id=9500)
    check_batch(monitored, store, ingest(monitored, store, checked.drop("churned"), tmp_path,
                                         "a.csv"))  # fmt: skip
    waiting = ingest(monitored, store, later.drop("churned"), tmp_path, "b.csv")
    both = pl.concat([checked, later]).select("customer_id", "churned")
    labels = write(both, tmp_path, "labels.csv")
    done = cli("drift", "labels", str(labels), cwd=monitored.root)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("mldeck: warning: 40 ids ('9500', '9501', '9502', '9503', "
                                  "'9504', ...) in no monitored batch (churn:v3, not checked yet, "
                                  "holds some): those labels are not kept")  # fmt: skip
    assert "then pass this file again" in done.stderr
    check_batch(monitored, store, waiting)
    again = record_labels(monitored, store, labels)
    assert again.unmatched == 0
    assert sorted((b.batch, b.new) for b in again.batches) == [("churn:v2", 0), ("churn:v3", 40)]


def test_labels_for_a_batch_scored_but_not_checked_name_it(monitored, store, tmp_path, cli):
    """'none of the ids is in a monitored batch (ids are matched as text ...)' sent the user
    looking at id formats; the batch holding them was scored, not checked for drift yet."""
    from mldeck.ml.scoring import score_batch

    check_batch(monitored, store, ingest(monitored, store, churn_frame(40, seed=8,
                                         start_id=9000).drop("churned"), tmp_path, "a.csv"))  # fmt: skip
    later = churn_frame(40, seed=9, start_id=9500)
    waiting = ingest(monitored, store, later.drop("churned"), tmp_path, "b.csv")
    score_batch(monitored, store, waiting)
    labels = write(later.select("customer_id", "churned"), tmp_path, "labels.csv")
    with pytest.raises(MldeckError) as missed:
        record_labels(monitored, store, labels)
    assert str(missed.value) == (
        "none of the 40 ids in labels.csv is in a monitored batch: churn:v3 holds them but was "
        "not checked for drift yet; run 'mldeck drift check churn:v3', then pass this file again"
    )
    # Nothing wrong with the file: a warning and exit status 3, as when only some ids wait (it
    # was an error, exit 2, for a script to give up on).
    done = cli("drift", "labels", str(labels), cwd=monitored.root)
    assert done.returncode == 3
    assert done.stderr.startswith("mldeck: warning: none of the 40 ids in labels.csv")
    # Scripts get JSON for it, as for any exit 3 (stdout was empty); and naming the batch
    # with --batch is the same warning (it was an error, exit 2).
    scripted = cli("drift", "labels", str(labels), "--json", cwd=monitored.root)
    assert scripted.returncode == 3
    said = json.loads(scripted.stdout)
    assert said["kept"] == 0 and said["warning"].startswith("none of the 40 ids in labels.csv")
    named = cli("drift", "labels", str(labels), "--batch", "churn:v3", cwd=monitored.root)
    assert named.returncode == 3, named.stderr
    assert named.stderr.startswith("mldeck: warning: churn:v3 has not been checked for drift")
    check_batch(monitored, store, waiting)
    assert record_labels(monitored, store, labels).matched == 40


def test_labels_for_a_batch_not_even_scored_name_it_and_wait(monitored, store, tmp_path, cli):
    """A batch ingested but neither scored nor checked: 'ids are matched as text on [data]
    id_column' (exit 2) sent the user looking at id formats; --help promises exit 3."""
    check_batch(monitored, store, ingest(monitored, store, churn_frame(40, seed=8,
                                         start_id=9000).drop("churned"), tmp_path, "a.csv"))  # fmt: skip
    later = churn_frame(40, seed=9, start_id=9500)
    waiting = ingest(monitored, store, later.drop("churned"), tmp_path, "b.csv")
    labels = write(later.select("customer_id", "churned"), tmp_path, "labels.csv")
    done = cli("drift", "labels", str(labels), cwd=monitored.root)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("mldeck: warning: none of the 40 ids in labels.csv is in a "
                                  "monitored batch: churn:v3 holds them")  # fmt: skip
    # Ids of the reference (no batch to check) and unknown ids stay an error.
    unknown = write(pl.DataFrame({"customer_id": [1, 2], "churned": [0, 1]}), tmp_path, "u.csv")
    refused = cli("drift", "labels", str(unknown), cwd=monitored.root)
    assert refused.returncode == 2 and "ids are matched as text" in refused.stderr
    check_batch(monitored, store, waiting)
    assert record_labels(monitored, store, labels).matched == 40


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("header.csv", "customer_id,churned\n", "header.csv has no labels: it has no rows"),
        ("blank.csv", "customer_id,churned\n9000,\n,1\n",
         "blank.csv has no labels: none of its 2 rows has both an id and a label"),
        ("mldeck-copy.toml", "[model]\n", "cannot read mldeck-copy.toml: not a data file mldeck "
         "reads ('.toml'"),
    ],
)  # fmt: skip
def test_a_label_file_without_labels_is_refused(monitored, store, tmp_path, name, text, said):
    """A header-only file said '0 labels, 0 matched' and exited 0; a .toml was read as CSV."""
    check_batch(monitored, store, ingest(monitored, store, churn_frame(40, seed=8,
                                         start_id=9000).drop("churned"), tmp_path, "a.csv"))  # fmt: skip
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MldeckError) as refused:
        record_labels(monitored, store, path)
    assert str(refused.value).startswith(said)


def _label_at_once(root: str, labels: str, started, barrier, results) -> None:
    """In a spawned process: pass the labels file once the others are ready."""
    from mldeck.workspace import load_workspace, open_workspace_store

    workspace = load_workspace(Path(root))
    store = open_workspace_store(workspace)
    barrier.wait()
    started.release()
    try:
        outcome = record_labels(workspace, store, Path(labels))
        results.put([b.new for b in outcome.batches])
    finally:
        store.close()


def test_the_same_labels_passed_twice_at_once_are_new_once(monitored, store, tmp_path):
    """Both processes read before either writes (the test holds the write turn meanwhile): the
    one that writes second finds the labels recorded and says none is new."""
    import multiprocessing
    import threading

    from .conftest import at_once

    frame = churn_frame(60, seed=8, start_id=9000)
    check_batch(monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path,
                                         "b.csv"))  # fmt: skip
    labels = write(frame.select("customer_id", "churned"), tmp_path, "labels.csv")
    started = multiprocessing.get_context("spawn").Semaphore(0)

    def hold_the_write_turn() -> None:
        with store.write():
            for _ in range(2):
                assert started.acquire(timeout=120)
            threading.Event().wait(3)  # they read the batch and its labels, then wait

    holder = threading.Thread(target=hold_the_write_turn)
    holder.start()
    said = at_once(_label_at_once, [(str(monitored.root), str(labels), started)] * 2)
    holder.join()
    assert sorted(said) == [[0], [60]]
    assert len(late_labels(monitored, store, 2)) == 60


def test_a_realized_metric_on_a_handful_of_labels_raises_no_alert(monitored, store, tmp_path):
    frame = churn_frame(400, seed=8, start_id=9000)
    check_batch(
        monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path, "b.csv")
    )
    wrong = frame.select("customer_id", (1 - pl.col("churned")).alias("churned"))  # AUC far < 0.6
    few = record_labels(monitored, store, write(wrong.head(5), tmp_path, "few.csv"))
    assert few.batches[0].rows == 5 and few.alerts == []
    rest = record_labels(monitored, store, write(wrong.tail(395), tmp_path, "rest.csv"))
    assert rest.batches[0].realized["roc_auc"] < 0.6
    assert [a.rule for a in rest.alerts] == ["realized roc_auc below 0.6"] and rest.alerts[0].new
    # Counted with the report the labels changed (drift list, show, the HTML, the KPIs) ...
    assert list_reports(store)[0].alerts == 1
    # ... and naming the labels run that raised it.
    assert rest.alerts[0].payload["details"]["run_id"] == rest.batches[0].run_id


def test_an_estimate_on_a_handful_of_rows_raises_no_alert_and_stays_in_range(
    monitored, store, tmp_path
):
    """A 1-row batch opened a critical "estimated roc_auc 0.500" alert (and asked for a
    retrain); a 5-row one showed a band reaching below 0."""
    strict = configure(monitored, '\n[[monitor.alerts]]\nname = "auc"\nwhen = "estimated_metric"'
                                  '\nmetric = "roc_auc"\nbelow = 0.99\n')  # fmt: skip
    frame = churn_frame(200, seed=9, start_id=20000).drop("churned")
    few = check_batch(strict, store, ingest(strict, store, frame.head(5), tmp_path, "few.csv"))
    assert few.estimated.value is not None and few.alerts == []
    assert 0.0 <= few.estimated.lower <= few.estimated.value <= few.estimated.upper <= 1.0
    enough = check_batch(strict, store, ingest(strict, store, frame.tail(60), tmp_path, "b.csv"))
    assert [a.rule for a in enough.alerts] == ["auc"]
    newest = list_reports(store)[0]
    assert (newest.alerts, newest.performance_alerts) == (1, 1)


def test_each_chart_over_time_marks_the_alerts_about_what_it_draws(monitored, store, tmp_path):
    """A dataset-drift alert put a ▲ on the performance line too (as if the metric had fallen)
    in the HTML report and on the Drift screen; a metric's alert on the drift share."""
    from mldeck.monitor.queries import report_detail
    from mldeck.monitor.report import render_html

    drifted = check_batch(monitored, store, ingest(monitored, store, shifted(3, 6000), tmp_path,
                                                   "a.csv"))  # fmt: skip
    assert [a.rule for a in drifted.alerts] == ["dataset drift", "multivariate drift"]
    (row,) = list_reports(store)
    assert (row.alerts, row.performance_alerts) == (2, 0)
    drift_chart, perf_chart = render_html(report_detail(store, row.id), [row]).split(
        "Estimated (with its 95 % band)"
    )
    assert drift_chart.count("▲<title>") == 1 and perf_chart.count("▲<title>") == 0
    assert report_detail(store, row.id).alerts[0]["performance"] is False


def test_labels_and_their_alerts_are_stored_together_or_not_at_all(
    monitored, store, tmp_path, monkeypatch
):
    from mldeck.monitor import alerts as alerts_module

    frame = churn_frame(400, seed=8, start_id=9000)
    version = ingest(monitored, store, frame.drop("churned"), tmp_path, "nolabels.csv")
    result = check_batch(monitored, store, version)
    labels = write(frame.select("customer_id", "churned"), tmp_path, "labels.csv")

    def broken(*_args, **_kwargs):
        raise OSError("disk gone while the alerts were written")

    monkeypatch.setattr(alerts_module, "apply_in", broken)
    with pytest.raises(OSError, match="disk gone"):
        record_labels(monitored, store, labels)
    assert report_detail(store, result.report_id).summary["realized"] is None
    with store.read() as session:
        assert not session.execute(select(Run).where(Run.kind == RunKind.EVALUATE)).first()
    monkeypatch.undo()
    assert record_labels(monitored, store, labels).matched == 400


def test_labels_written_as_other_numbers_name_the_same_classes(monitored, store, tmp_path):
    frame = churn_frame(400, seed=8, start_id=9000)
    version = ingest(monitored, store, frame.drop("churned"), tmp_path, "nolabels.csv")
    check_batch(monitored, store, version)
    as_ints = write(frame.select("customer_id", "churned"), tmp_path, "ints.csv")
    expected = record_labels(monitored, store, as_ints).batches[0].realized
    # The same outcomes written 0.0 / 1.0 by another tool give the same realized metrics.
    as_floats = frame.select("customer_id", pl.col("churned").cast(pl.Float64))
    outcome = record_labels(monitored, store, write(as_floats, tmp_path, "floats.csv"))
    assert outcome.batches[0].realized == pytest.approx(expected)
    assert expected["precision"] > 0


def test_a_batchs_own_labels_naming_no_class_are_counted_and_said(monitored, store, tmp_path, cli):
    """They were left out of the realized figures without a word (a label file holding them is
    refused whole)."""
    frame = churn_frame(200, seed=8, start_id=9000)
    odd = frame.with_columns(
        churned=pl.when(pl.int_range(pl.len()) < 20).then(2).otherwise(pl.col("churned"))
    )  # fmt: skip
    result = check_batch(monitored, store, ingest(monitored, store, odd, tmp_path, "odd.csv"))
    assert result.realized["labelled_rows"] == 180 and result.realized["unclassed_labels"] == 20
    shown = cli("drift", "show", result.batch, cwd=monitored.root).stdout
    assert "on 180 labelled rows; 20 labels naming no class of the model left out" in shown


def test_ids_written_as_whole_floats_find_their_rows(monitored, store, tmp_path):
    """A label file whose id column has a blank (so it is read as floats: '9000.0') or was
    exported by a spreadsheet matches the batch's integer ids, and a second file written as
    integers counts the same labels once."""
    frame = churn_frame(300, seed=8, start_id=9000)
    version = ingest(monitored, store, frame.drop("churned"), tmp_path, "nolabels.csv")
    check_batch(monitored, store, version)
    floats = frame.select(pl.col("customer_id").cast(pl.Float64), "churned").head(200)
    floats = pl.concat([floats, pl.DataFrame({"customer_id": [None], "churned": [1]})],
                       how="vertical_relaxed")  # fmt: skip
    path = write(floats, tmp_path, "floats.csv")
    assert "9000.0" in path.read_text()
    outcome = record_labels(monitored, store, path)
    assert (outcome.matched, outcome.unmatched) == (200, 0)
    again = record_labels(monitored, store, write(frame.select("customer_id", "churned").head(200),
                                                  tmp_path, "ints.csv"))  # fmt: skip
    assert again.matched == 200 and again.batches[0].new == 0
    assert again.batches[0].rows == 200


def test_labels_of_ids_also_in_a_batch_not_checked_yet_need_the_batch(monitored, store, tmp_path):
    """Week 2's labels, its batch ingested but not checked yet, were all given to week 1's
    predictions (a false alert), and week 1's true labels then refused as contradictions."""
    week1 = churn_frame(300, seed=8, start_id=9000)
    week2 = churn_frame(300, seed=9, start_id=9000)  # the same customers a week later
    v1 = ingest(monitored, store, week1.drop("churned"), tmp_path, "w1.csv")
    v2 = ingest(monitored, store, week2.drop("churned"), tmp_path, "w2.csv")
    check_batch(monitored, store, v1)
    labels2 = write(week2.select("customer_id", "churned"), tmp_path, "l2.csv")
    with pytest.raises(MldeckError) as refused:
        record_labels(monitored, store, labels2)
    assert str(refused.value) == (
        "ids of l2.csv are in churn:v2 and in churn:v3, not checked for drift yet: a label is "
        "of one prediction; say which batch the file labels with --batch (a batch takes labels "
        "once 'mldeck drift check' has run on it)"
    )
    assert late_labels(monitored, store, v1) is None  # nothing recorded
    check_batch(monitored, store, v2)
    assert [b.batch for b in record_labels(monitored, store, labels2, batch="churn:v3").batches] \
        == ["churn:v3"]  # fmt: skip


def test_labels_of_ids_also_in_an_older_batch_left_unchecked_are_taken(monitored, store, tmp_path):
    """Only a newer batch waiting for its check makes the labels ambiguous: an older one left
    unchecked (history ingested before monitoring began) refused every later labels file."""
    old = churn_frame(300, seed=7, start_id=9000)
    week = churn_frame(300, seed=8, start_id=9000)  # the same customers, later
    ingest(monitored, store, old.drop("churned"), tmp_path, "old.csv")
    check_batch(monitored, store, ingest(monitored, store, week.drop("churned"), tmp_path,
                                         "week.csv"))  # fmt: skip
    labels = write(week.select("customer_id", "churned"), tmp_path, "labels.csv")
    assert [(b.batch, b.new) for b in record_labels(monitored, store, labels).batches] == [
        ("churn:v3", 300)
    ]


def test_labels_said_of_another_checked_batch_name_the_one_holding_them(
    monitored, store, tmp_path, cli
):
    """It said the batch holding them "was not checked for drift yet", of a checked batch."""
    first = churn_frame(40, seed=8, start_id=9000)
    second = churn_frame(40, seed=9, start_id=9500)
    for frame, name in ((first, "a.csv"), (second, "b.csv")):
        check_batch(monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path,
                                             name))  # fmt: skip
    labels = write(second.select("customer_id", "churned"), tmp_path, "labels.csv")
    with pytest.raises(MldeckError) as refused:
        record_labels(monitored, store, labels, batch="churn:v2")
    assert str(refused.value) == (
        "none of the 40 ids in labels.csv is in churn:v2: churn:v3 holds them (--batch churn:v3)"
    )
    with pytest.raises(MldeckError) as reference:  # it said to check it, which is refused
        record_labels(monitored, store, labels, batch="churn:v1")
    assert str(reference.value) == (
        "churn:v1 is a reference, which takes no labels: name the batch the file labels"
    )
    # Some in the batch named, the others in another: those are said to be there (they were
    # said to be "in no monitored batch", to be checked first).
    both = write(pl.concat([first.head(5), second.head(5)]).select("customer_id", "churned"),
                 tmp_path, "both.csv")  # fmt: skip
    outcome = record_labels(monitored, store, both, batch="churn:v2")
    assert (outcome.matched, outcome.unmatched, outcome.elsewhere) == (5, 5, ["churn:v3"])
    said = cli("drift", "labels", str(both), "--batch", "churn:v2", cwd=monitored.root)
    assert said.returncode == 3
    assert said.stderr.startswith(
        "mldeck: warning: 5 ids ('9500', '9501', '9502', '9503', '9504') not in churn:v2: "
        "churn:v3 holds some; those labels are not kept (pass the file with --batch churn:v3 "
        "for them)"
    )


def test_a_later_label_for_a_row_whose_own_names_no_class_is_new(monitored, store, tmp_path):
    """It was taken for a label already recorded: "no new label", the row left out."""
    frame = churn_frame(200, seed=8, start_id=9000)
    odd = frame.with_columns(
        churned=pl.when(pl.int_range(pl.len()) < 20).then(2).otherwise(pl.col("churned"))
    )  # fmt: skip
    version = ingest(monitored, store, odd, tmp_path, "odd.csv")
    assert check_batch(monitored, store, version).realized["labelled_rows"] == 180
    fixed = write(frame.head(20).select("customer_id", "churned"), tmp_path, "fixed.csv")
    (labelled,) = record_labels(monitored, store, fixed).batches
    assert (labelled.new, labelled.rows) == (20, 200)
    assert "unclassed_labels" not in labelled.realized  # none left out now


def test_ids_with_leading_zeros_match_whatever_the_files_other_ids(monitored, store, tmp_path):
    """'09000' matched 9000 when every id of the file was digits (read as a number), and
    nothing once one id was not (read as text)."""
    frame = churn_frame(40, seed=8, start_id=9000)
    check_batch(monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path,
                                         "batch.csv"))  # fmt: skip
    mixed = write(pl.DataFrame({"customer_id": ["09000", "09001", "X-1"],
                                "churned": [0, 1, 0]}), tmp_path, "mixed.csv")  # fmt: skip
    outcome = record_labels(monitored, store, mixed)
    assert (outcome.matched, outcome.unmatched) == (2, 1)


def test_labels_only_a_model_of_more_classes_scored_are_refused_not_said_kept(
    monitored,
    store,
    tmp_path,
    model_bytes,  # noqa: F811
):
    """They were said matched, exit 0, and nothing was kept (no realized figure)."""
    add_version(monitored, store, model_bytes["a"], metrics={"roc_auc": 0.8},
                schema={**SCHEMA, "classes": [0, 1, 2]})  # fmt: skip
    registry.approve(store, "churn:2", reason="ok")
    registry.promote(store, "churn:2", reason="three classes")
    frame = churn_frame(40, seed=8, start_id=9000)
    check_batch(monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path,
                                         "batch.csv"))  # fmt: skip
    labels = write(frame.select("customer_id", "churned"), tmp_path, "labels.csv")
    with pytest.raises(MldeckError) as refused:
        record_labels(monitored, store, labels)
    assert str(refused.value) == (
        "labels.csv's labels are of churn:v2 (its model is not a binary classifier): realized "
        "performance is measured for binary classifiers only; no label was kept"
    )


def test_labels_naming_no_class_or_two_labels_for_an_id_are_refused(monitored, store, tmp_path):
    frame = churn_frame(50, seed=8, start_id=9000)
    version = ingest(monitored, store, frame.drop("churned"), tmp_path, "nolabels.csv")
    result = check_batch(monitored, store, version)
    ids = frame.get_column("customer_id").to_list()
    unknown = pl.DataFrame({"customer_id": ids[:3], "churned": ["1", "7", "1x"]})
    with pytest.raises(MldeckError, match=r"2 label value\(s\) name no class .*'7', '1x'"):
        record_labels(monitored, store, write(unknown, tmp_path, "unknown.csv"))
    twice = pl.DataFrame({"customer_id": [ids[0], ids[0], ids[1], ids[1]],
                          "churned": [1, 0, 1, 1]})  # fmt: skip
    with pytest.raises(MldeckError, match=rf"1 id\(s\) more than one label \('{ids[0]}'\)"):
        record_labels(monitored, store, write(twice, tmp_path, "twice.csv"))
    # Nothing was recorded from either file.
    assert report_detail(store, result.report_id).summary["realized"] is None
    with pytest.raises(MldeckError, match=r"missing-labels\.csv: no such file"):
        record_labels(monitored, store, tmp_path / "missing-labels.csv")
    # One label written two ways ('1' and '1.0', in a text column) for an id is one label.
    same = pl.DataFrame({"customer_id": [ids[0], ids[0], ids[1]],
                         "churned": ["1", "1.0", "0"]})  # fmt: skip
    same.write_parquet(tmp_path / "same.parquet")
    assert record_labels(monitored, store, tmp_path / "same.parquet").matched == 2


def test_a_label_file_without_the_needed_columns_is_refused(monitored, store, tmp_path):
    version = ingest(monitored, store, churn_frame(100, seed=9, start_id=100), tmp_path, "b.csv")
    check_batch(monitored, store, version)
    bad = write(pl.DataFrame({"customer_id": [100], "outcome": [1]}), tmp_path, "bad.csv")
    with pytest.raises(MldeckError, match="lacks 'churned'"):
        record_labels(monitored, store, bad)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("customer_id,churned\n100,1\n101,0,7\n")
    with pytest.raises(MldeckError) as unreadable:
        record_labels(monitored, store, ragged)
    assert str(unreadable.value).endswith(
        "ragged.csv: a row has more fields than the header (ragged rows): line 3 has 3 fields, "
        "the header 2"
    )


def test_a_batch_lacking_a_feature_the_champion_needs_is_still_checked(monitored, store, tmp_path):
    """The check failed ("the batch lacks columns churn:1 was trained on"): no report, no drift
    alert, only a failed run; the missing feature is drift to be said."""
    relaxed = configure(monitored, "\n[data.columns.charges]\nrequired = false\n"
                                   "[data.table]\nallow_extra_columns = true\n")  # fmt: skip
    frame = churn_frame(300, seed=4, start_id=30000).drop("charges")
    result = check_batch(relaxed, store, ingest(relaxed, store, frame, tmp_path, "lacking.csv"))
    missing = {f.feature: f for f in result.features}["charges"]
    assert missing.drifted
    assert result.model == "churn:1" and result.estimated is None and result.prediction is None
    assert (
        result.model_note == "not scored: the batch lacks columns churn:1 was trained on: charges"
    )
    assert result.dataset_drift and "dataset drift" in {a.rule for a in result.alerts}
    # The joint distribution is not compared either, and that is said (it was skipped silently).
    assert result.multivariate is None
    assert result.multivariate_note == "not compared: the batch lacks charges"


def test_without_a_champion_only_the_features_are_compared(ws, store, tmp_path):
    ingest_file(ws, store, write(churn_frame(500, seed=1), tmp_path, "ref.csv"), as_reference=True)
    version = ingest(ws, store, shifted(2, 3000), tmp_path, "b.csv")
    result = check_batch(ws, store, version)
    assert result.model is None and result.estimated is None and result.prediction is None
    assert [f.feature for f in result.features if f.drifted] == ["charges"]


def test_what_cannot_be_checked_says_why(ws, store, tmp_path):
    version = ingest(ws, store, churn_frame(100, seed=1), tmp_path, "first.csv")
    with pytest.raises(MldeckError, match="no reference"):
        check_batch(ws, store, version)
    ref = ingest_file(ws, store, write(churn_frame(200, seed=2), tmp_path, "ref.csv"),
                      as_reference=True)  # fmt: skip
    with pytest.raises(MldeckError, match="the reference itself"):
        check_batch(ws, store, ref.version_id)
    bad = ingest_file(ws, store, write(pl.DataFrame({"x": []}), tmp_path, "empty.csv"))
    assert bad.status == "rejected"
    with pytest.raises(MldeckError, match="rejected"):
        check_batch(ws, store, bad.version_id)
    # Its drift report is asked for: the answer is why there is none, not a command that fails.
    from mldeck.monitor.queries import resolve_report

    with pytest.raises(MldeckError, match="rejected by validation") as refused:
        resolve_report(store, str(bad.version_id))
    assert "drift check" not in str(refused.value)


def test_turning_a_columns_monitoring_off_and_on_applies_at_the_next_check(
    monitored, store, tmp_path
):
    version = ingest(monitored, store, shifted(3, 6000), tmp_path, "shift.csv")
    assert "charges" in {f.feature for f in check_batch(monitored, store, version).features}
    off = configure(monitored, "\n[monitor.columns.charges]\nmonitor = false\n")
    result = check_batch(off, store, version)
    assert {f.feature for f in result.features} == {"tenure", "plan"}
    assert not result.dataset_drift  # charges was the drifted one
    on = off.config_path.read_text().replace("monitor = false", "monitor = true")
    off.config_path.write_text(on)
    result = check_batch(load_workspace(off.root), store, version)
    assert [f.feature for f in result.features if f.drifted] == ["charges"]
    with store.read() as session:
        names = session.execute(
            select(Artifact.name).where(Artifact.kind == "drift_baseline")
        ).scalars()
        assert len(set(names)) == 2  # one baseline per set of columns, built once each


def test_the_champions_scores_left_out_of_drift_are_not_compared(monitored, store, tmp_path):
    """[monitor.columns.score] monitor = false was ignored: the scores' drift measured and its
    alert raised (its method and threshold were read)."""
    version = ingest(monitored, store, shifted(3, 6000), tmp_path, "shift.csv")
    assert check_batch(monitored, store, version).prediction is not None
    off = configure(monitored, "\n[monitor.columns.score]\nmonitor = false\n")
    assert check_batch(off, store, version).prediction is None


def test_a_column_override_naming_no_column_is_refused(monitored, store, tmp_path):
    version = ingest(monitored, store, churn_frame(100, seed=3, start_id=100), tmp_path, "b.csv")
    check_batch(monitored, store, version)  # the baseline is built (and kept) before the typo
    typo = configure(monitored, '\n[monitor.columns.chargez]\nmethod = "psi"\n')
    with pytest.raises(MldeckError, match=r"\[monitor.columns.chargez\] names no column .*charges"):
        check_batch(typo, store, version)
    text = typo.config_path.read_text().replace('[monitor.columns.chargez]\nmethod = "psi"\n', "")
    typo.config_path.write_text(text)
    rule = configure(typo, '\n[[monitor.alerts]]\nname = "usage"\nwhen = "feature_drift"\n'
                           'feature = "chargez"\n')  # fmt: skip
    with pytest.raises(MldeckError, match=r"rule 'usage' watches feature 'chargez', no column"):
        check_batch(rule, store, version)


def test_a_failed_check_leaves_a_failed_run(monitored, store, tmp_path):
    version = ingest(monitored, store, churn_frame(100, seed=3, start_id=100), tmp_path, "b.csv")
    with store.read() as session:
        from mldeck.store.models import DatasetVersion

        stored = session.get(DatasetVersion, version).stored_path
    (monitored.root / stored).write_bytes(b"customer_id,tenure\n1,\xff\xfe\x00\n")  # not UTF-8
    with pytest.raises(Exception):  # noqa: B017 - whatever the reader says, the run records it
        check_batch(monitored, store, version)
    with store.read() as session:
        run = session.execute(select(Run).where(Run.kind == RunKind.DRIFT)).scalar_one()
        assert run.status == RunStatus.FAILED and run.error
        assert session.execute(select(func.count(DriftReport.id))).scalar_one() == 0


def test_a_report_and_its_alerts_are_stored_together_or_not_at_all(
    monitored, store, tmp_path, monkeypatch
):
    """A crash while the alerts are written leaves neither them nor the report (nor the other
    way round); the run is failed and the next check raises them again."""
    from mldeck.monitor import alerts as alerts_module
    from mldeck.store.models import Alert

    version = ingest(monitored, store, shifted(3, 6000), tmp_path, "shift.csv")

    def broken(_alert):
        raise OSError("disk gone while the alerts were written")

    monkeypatch.setattr(alerts_module, "alert_payload", broken)
    with pytest.raises(OSError, match="disk gone"):
        check_batch(monitored, store, version)
    with store.read() as session:
        assert session.execute(select(func.count(Alert.id))).scalar_one() == 0
        assert session.execute(select(func.count(DriftReport.id))).scalar_one() == 0
        run = session.execute(select(Run).where(Run.kind == RunKind.DRIFT)).scalar_one()
        assert run.status == RunStatus.FAILED
    monkeypatch.undo()
    result = check_batch(monitored, store, version)
    assert {a.rule for a in result.alerts} == {"dataset drift", "multivariate drift"}
    with store.read() as session:
        report = session.get(DriftReport, result.report_id)
        alerts = session.execute(select(Alert)).scalars().all()
        assert {a.details["run_id"] for a in alerts} == {report.run_id}


def test_an_alert_hook_gets_the_alert_as_json_and_a_failing_hook_is_reported(
    workspace, store, tmp_path
):
    out = tmp_path / "alert.json"
    ws = configure(workspace, MONITOR_CONFIG.replace(
        "[monitor]\n", f"[monitor]\nmultivariate = false\n"
                       f"alert_command = \"cat > '{out}'; exit 7\"\n"))  # fmt: skip
    ingest_file(ws, store, write(churn_frame(800, seed=1), tmp_path, "ref.csv"), as_reference=True)
    version = ingest(ws, store, shifted(3, 6000), tmp_path, "shift.csv")
    result = check_batch(ws, store, version)
    payload = json.loads(out.read_text())
    assert payload["rule"] == "dataset drift" and payload["status"] == "open"
    assert result.hook_problems == [f"alert {payload['id']}: hook exited 7"]


def test_a_hook_that_times_out_is_ended_with_what_it_started(tmp_path):
    """Only the shell was killed: its children ran on after mldeck exited."""
    from mldeck.monitor.alerts import Raised, run_hooks

    pid_file = tmp_path / "child.pid"
    alert = Raised(1, "r", "warning", "t", True, False, f"sleep 60 & echo $! > '{pid_file}'; wait",
                   {"id": 1})  # fmt: skip
    started = time.monotonic()
    assert run_hooks([alert], None, 1.0) == ["alert 1: hook timed out after 1 s"]
    assert time.monotonic() - started < 10
    child = Path(f"/proc/{int(pid_file.read_text())}/stat")

    def running() -> bool:  # a zombie waiting for its new parent to reap it has ended too
        try:
            return child.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running()


def test_a_hook_that_leaves_work_in_the_background_succeeds_and_its_errors_are_read(tmp_path):
    """A hook exiting at once with a child in the background (`curl ... &`) was waited for
    until its timeout (its pipes stayed open), said to have timed out, and the child killed."""
    from mldeck.monitor.alerts import Raised, run_hooks

    done = tmp_path / "done"
    alert = Raised(1, "r", "warning", "t", True, False, f"(sleep 2; touch '{done}') & exit 0",
                   {"id": 1})  # fmt: skip
    started = time.monotonic()
    assert run_hooks([alert], None, 1.0) == []
    assert time.monotonic() - started < 1.0
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.exists()  # the background work ran to its end
    # A failing hook's last line of errors is said, whatever it wrote before.
    noisy = Raised(2, "r", "warning", "t", True, False,
                   "head -c 100000 /dev/zero; yes x | head -n 5000 >&2; echo 'it broke' >&2; exit 4",
                   {"id": 2})  # fmt: skip
    assert run_hooks([noisy], None, 10.0) == ["alert 2: hook exited 4: it broke"]


def test_hooks_run_side_by_side(tmp_path):
    """A hanging hook delayed every other alert's hook, and the check, by its timeout each."""
    from mldeck.monitor.alerts import Raised, run_hooks

    ids = (1, 2, 3, 4, 5)
    raised = [Raised(i, "r", "warning", "t", True, False, "sleep 30", {"id": i}) for i in ids]
    started = time.monotonic()
    assert run_hooks(raised, None, 1.0) == [f"alert {i}: hook timed out after 1 s" for i in ids]
    assert time.monotonic() - started < 4  # about one timeout, not five in a row


def test_acknowledge_and_resolve_are_audited_and_checked(monitored, store, tmp_path):
    version = ingest(monitored, store, shifted(3, 6000), tmp_path, "shift.csv")
    raised = check_batch(monitored, store, version).alerts[0]
    assert alerts.active_count(store) == (2, 0)
    alerts.acknowledge(store, raised.alert_id, user="ana", note="on it")
    with store.read() as session:  # the note is kept with the alert (the audit trail only)
        assert session.get(Alert, raised.alert_id).details["acknowledge_note"] == "on it"
    with pytest.raises(MldeckError, match="only an open alert"):
        alerts.acknowledge(store, raised.alert_id, user="ana")
    alerts.resolve(store, raised.alert_id, user="ana", note="retrained")
    with pytest.raises(MldeckError, match="already resolved"):
        alerts.resolve(store, raised.alert_id)
    assert alerts.active_count(store) == (1, 0)
    with store.read() as session:
        events = session.execute(
            select(AuditEvent.action, AuditEvent.actor).where(AuditEvent.actor == "ana")
        ).all()
    assert events == [("alert.acknowledge", "ana"), ("alert.resolve", "ana")]


def test_a_failed_step_raises_an_alert_until_the_next_run_of_its_kind_succeeds(ws, store):
    rules = alerts.default_rules(ws.settings)
    with store.write() as session:
        session.add(Run(name="score", kind=RunKind.SCORE, status=RunStatus.FAILED, error="boom"))
    (raised,) = alerts.apply(store, alerts.store_signals(store, rules))
    assert raised.new and "score" in raised.title
    with store.write() as session:
        session.add(Run(name="score", kind=RunKind.SCORE, status=RunStatus.SUCCEEDED))
    assert alerts.apply(store, alerts.store_signals(store, rules)) == []
    assert alerts.active_count(store) == (0, 0)


def test_a_failed_scheduled_step_is_moot_once_its_schedule_is_removed(ws, store):
    """Nothing would run it again: its alert clears instead of repeating for good."""
    from mldeck.jobs.schedules import add, remove

    rules = alerts.default_rules(ws.settings)
    add(store, "eval", "evaluate", every="1h")
    with store.write() as session:
        session.add(Run(name="eval", kind=RunKind.EVALUATE, trigger="schedule",
                        status=RunStatus.FAILED, error="boom"))  # fmt: skip
    (raised,) = alerts.apply(store, alerts.store_signals(store, rules))
    assert raised.new and raised.title == "the last evaluate run failed: eval"
    remove(store, "eval")
    assert alerts.apply(store, alerts.store_signals(store, rules)) == []
    assert alerts.active_count(store) == (0, 0)
    with store.write() as session:  # a manual run of that kind failing still alerts
        session.add(Run(name="eval", kind=RunKind.EVALUATE, trigger="manual",
                        status=RunStatus.FAILED, error="boom"))  # fmt: skip
    (again,) = alerts.apply(store, alerts.store_signals(store, rules))
    assert again.new


def test_kpis_follow_promotions_rollbacks_alerts_and_scoring(
    monitored,
    store,
    model_bytes,  # noqa: F811
    tmp_path,
):
    add_version(monitored, store, model_bytes["a"], schema=SCHEMA, metrics={"roc_auc": 0.8})
    registry.approve(store, "churn:2", reason="ok")
    # Pointing another alias is not a promotion to champion, and not what a rollback undoes.
    registry.promote(store, "churn:2", alias="challenger", reason="shadow first")
    registry.promote(store, "churn:2", reason="try")
    registry.rollback(store, "churn:1", reason="worse")
    version = ingest(monitored, store, shifted(3, 6000), tmp_path, "shift.csv")
    for raised in check_batch(monitored, store, version).alerts:
        alerts.resolve(store, raised.alert_id)
    figures = kpis(store, days=7, cost_per_cpu_hour=3.6)
    assert figures.promotions == 2
    assert figures.change_failure_rate == pytest.approx(0.5)  # churn:2 was rolled back
    assert figures.time_to_restore_hours is not None and figures.time_to_restore_hours >= 0
    assert figures.batches_monitored == 1 and figures.batches_with_dataset_drift == 1
    assert figures.latency_ms_per_1k_p50 is not None
    assert figures.cost_per_1k == pytest.approx(figures.cpu_seconds_per_1k / 1000)
    assert figures.quality[-1]["batch"].endswith(":v2")
    check_batch(monitored, store, version)  # the same batch checked again is still one batch
    assert kpis(store, days=7).batches_monitored == 1


def test_an_older_batch_checked_again_does_not_stand_for_now(monitored, store, tmp_path):
    """The newest batch decides: its quiet check cleared the drift alert, so an older drifted
    batch checked again opens none, and the KPIs' last drift share is the newest batch's."""
    drifted = ingest(monitored, store, shifted(3, 6000), tmp_path, "drifted.csv")
    quiet = ingest(monitored, store, churn_frame(400, seed=2, start_id=7000), tmp_path, "q.csv")
    first = check_batch(monitored, store, drifted)
    assert first.dataset_drift and first.alerts
    newest = check_batch(monitored, store, quiet)
    assert not newest.dataset_drift
    with store.read() as session:
        assert session.execute(select(Alert.id).where(Alert.status == "open")).first() is None
    again = check_batch(monitored, store, drifted)
    assert again.dataset_drift  # its report still says so
    with store.read() as session:
        assert session.execute(select(Alert.id).where(Alert.status == "open")).first() is None
    figures = kpis(store, days=7)
    assert figures.last_drift_share == pytest.approx(newest.drift_share)
    assert figures.last_drift_share != pytest.approx(again.drift_share)


def test_kpis_window_the_batches_but_always_show_the_last_one(monitored, store, tmp_path):
    """--days windows the monitored batches (counts and the quality series); the last batch,
    its quality and drift share are how things stand now, shown whatever its age and said
    as such, with the time it was checked."""
    from datetime import timedelta

    from mldeck.monitor.kpis import sections
    from mldeck.store.models import utcnow

    older = ingest(monitored, store, shifted(3, 6000), tmp_path, "older.csv")
    newer = ingest(monitored, store, churn_frame(400, seed=2, start_id=7000), tmp_path, "n.csv")
    first, last = check_batch(monitored, store, older), check_batch(monitored, store, newer)
    with store.write() as session:  # checked 60 and 40 days ago
        for result, days in ((first, 60), (last, 40)):
            report = session.get(DriftReport, result.report_id)
            report.created_at = utcnow() - timedelta(days=days)
            session.add(report)
    batches = {days: [p["batch"] for p in kpis(store, days=days).quality] for days in (7, 50, 90)}
    assert batches == {7: ["churn:v3"], 50: ["churn:v3"], 90: ["churn:v2", "churn:v3"]}
    recent = kpis(store, days=7)
    assert (recent.batches_monitored, recent.batches_with_dataset_drift) == (0, 0)
    assert recent.last_drift_share == pytest.approx(last.drift_share)
    assert kpis(store, days=90).batches_with_dataset_drift == 1
    shown = sections(recent)
    assert set(shown) == {"Delivery (last 7 days)", "Model health (last 7 days)",
                          "Last batch (any age)"}  # fmt: skip
    assert shown["Model health (last 7 days)"]["batches monitored"].startswith("0 ")
    assert shown["Last batch (any age)"]["batch"].startswith("churn:v3 (checked ")


def test_latency_and_cost_per_1k_are_per_prediction_not_per_batch(store):
    """A batch of 10 rows is mostly fixed cost: 5,000 ms per 1k. Beside a batch of 10,000 rows
    at 10 ms per 1k, the median prediction took 10 ms per 1k, not the mean of the two batches."""
    from mldeck.store.models import utcnow

    with store.write() as session:
        for rows, latency, cpu in ((10, 50.0, 2.0), (10_000, 100.0, 0.02)):
            run = Run(name="score", kind=RunKind.SCORE, status=RunStatus.SUCCEEDED,
                      created_at=utcnow(), started_at=utcnow(), ended_at=utcnow())  # fmt: skip
            session.add(run)
            session.flush()
            for key, value in (
                ("rows", rows),
                ("latency_ms", latency),
                ("cpu_seconds_per_1k", cpu),
            ):
                session.add(Metric(run_id=run.id, key=key, value=value, step=0))
    figures = kpis(store, days=7)
    assert figures.latency_ms_per_1k_p50 == pytest.approx(10.0)
    assert figures.latency_ms_per_1k_p95 == pytest.approx(10.0)
    assert figures.cpu_seconds_per_1k == pytest.approx((2.0 * 10 + 0.02 * 10_000) / 10_010)


def test_latency_is_the_champions_and_cost_adds_the_challengers_shadow(store):
    """A challenger scored in shadow was taken as served predictions: its latency mixed into
    the champion's, its cost averaged in where it is paid on top."""
    from mldeck.store.models import utcnow

    with store.write() as session:
        served = None
        for shadow, latency, cpu in ((False, 100.0, 0.5), (True, 20.0, 0.2)):
            run = Run(name="score", kind=RunKind.SCORE, status=RunStatus.SUCCEEDED,
                      created_at=utcnow(), started_at=utcnow(), ended_at=utcnow(),
                      parent_run_id=served, tags={"shadow": shadow})  # fmt: skip
            session.add(run)
            session.flush()
            served = served or run.id
            for key, value in (("rows", 1000), ("latency_ms", latency),
                               ("cpu_seconds_per_1k", cpu)):  # fmt: skip
                session.add(Metric(run_id=run.id, key=key, value=value, step=0))
    figures = kpis(store, days=7)
    assert figures.latency_ms_per_1k_p50 == figures.latency_ms_per_1k_p95 == pytest.approx(100.0)
    assert figures.cpu_seconds_per_1k == pytest.approx(0.7)


def test_the_pipeline_success_rate_leaves_a_persons_own_scripts_out(store):
    """A failed experiment (a tracked script) lowered the pipeline's success rate."""
    from mldeck.store.models import utcnow

    with store.write() as session:
        for trigger, status in (("new_data", RunStatus.SUCCEEDED), ("script", RunStatus.FAILED)):
            session.add(Run(name="train", kind=RunKind.TRAIN, trigger=trigger, status=status,
                            created_at=utcnow(), ended_at=utcnow()))  # fmt: skip
    figures = kpis(store, days=7)
    assert (figures.pipeline_success_rate, figures.runs_finished) == (1.0, 1)


def test_retraining_cadence_counts_new_model_versions_only(
    monitored,
    store,
    model_bytes,  # noqa: F811
):
    """Tracked script runs of kind train (and reproductions) register no model: they are not
    retrainings. The cadence is the time between new versions."""
    import mldeck

    for _ in range(3):
        with mldeck.start_run(name="notebook", kind="train", workspace=monitored.root) as run:
            run.log_metric("roc_auc", 0.8)
    assert kpis(store, days=7).retrain_interval_days is None  # churn:1 alone
    add_version(monitored, store, model_bytes["b"], schema=SCHEMA, metrics={"roc_auc": 0.8})
    gap = kpis(store, days=7).retrain_interval_days
    assert gap is not None and 0 <= gap < 1 / 24


def test_reports_are_found_by_batch_or_id(monitored, store, tmp_path):
    version = ingest(monitored, store, churn_frame(100, seed=4, start_id=100), tmp_path, "b.csv")
    first = check_batch(monitored, store, version).report_id
    second = check_batch(monitored, store, version).report_id
    assert resolve_report(store, "churn:v2") == second
    assert resolve_report(store, f"#{first}") == first
    with pytest.raises(MldeckError, match="no drift report 999"):
        resolve_report(store, "#999")


def test_a_report_with_labels_recorded_later_is_shown(monitored, store, tmp_path, cli):
    frame = churn_frame(400, seed=8, start_id=9000)
    version = ingest(monitored, store, frame.drop("churned"), tmp_path, "nolabels.csv")
    check_batch(monitored, store, version)
    record_labels(
        monitored, store, write(frame.select("customer_id", "churned"), tmp_path, "l.csv")
    )
    shown = cli("drift", "show", "churn:v2", cwd=monitored.root)
    assert shown.returncode == 0, shown.stderr
    assert "on 400 labelled rows (latest labels: l.csv)" in shown.stdout


def test_drift_check_exits_3_when_only_the_champions_scores_drifted(
    ws,
    store,
    tmp_path,
    cli,
    model_bytes,  # noqa: F811
):
    """No dataset drift (one feature of three, share threshold 100%), no joint check, no alert:
    the champion's scores moved all the same, and a script must see it in the exit status."""
    config = ws.config_path.read_text(encoding="utf-8")
    ws.config_path.write_text(
        config.replace("drift_share = 0.3", "drift_share = 1.0\nmultivariate = false")
    )
    ws = load_workspace(ws.root)
    ingest_file(ws, store, write(churn_frame(800, seed=1), tmp_path, "ref.csv"), as_reference=True)
    add_version(ws, store, model_bytes["a"], schema=SCHEMA, metrics={"roc_auc": 0.8})
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1", reason="serve")
    batch = churn_frame(400, seed=3, start_id=6000).with_columns(pl.col("charges") + 10)
    ingest(ws, store, batch, tmp_path, "b.csv")
    done = cli("drift", "check", "churn:v2", "--json", cwd=ws.root)
    assert done.returncode == 3, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    assert not payload["dataset_drift"] and payload["multivariate"] is None
    assert payload["prediction"]["drifted"] and payload["alerts"] == []


def test_drift_alerts_and_kpi_commands(monitored, store, tmp_path, cli):
    root = monitored.root
    quiet = write(churn_frame(300, seed=2, start_id=5000), tmp_path, "quiet.csv")
    drifting = write(shifted(3, 6000), tmp_path, "drift.csv")
    assert cli("data", "ingest", str(quiet), cwd=root).returncode == 0
    assert cli("data", "ingest", str(drifting), cwd=root).returncode == 0
    done = cli("drift", "check", "churn:v2", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "0 of 3 features drifted" in done.stdout
    done = cli("drift", "check", "churn:v3", "--json", cwd=root)
    assert done.returncode == 3
    payload = json.loads(done.stdout)
    assert payload["dataset_drift"] and payload["retrain_reasons"]
    # Lists give {"total", <items>} in JSON, like runs, data and models, and say a cut list.
    listed = json.loads(cli("drift", "list", "--json", cwd=root).stdout)
    assert [r["batch"] for r in listed["reports"]] == ["churn:v3", "churn:v2"]
    assert json.loads(cli("drift", "list", "--json", "--limit", "1", cwd=root).stdout)["total"] == 2
    newest = cli("drift", "list", "--limit", "1", cwd=root).stdout
    assert "(1 of 2 shown; use --limit" in newest
    # The list names a report as 'drift show' takes it (a bare number there is a batch).
    name = newest.splitlines()[1].split()[0]
    assert name == f"report:{listed['reports'][0]['id']}"
    assert cli("drift", "show", name, cwd=root).stdout.startswith("churn:v3 vs ")
    alerts = json.loads(cli("alerts", "list", "--json", "--limit", "1", cwd=root).stdout)
    assert alerts["total"] == len(payload["alerts"]) > 1 and len(alerts["alerts"]) == 1
    assert "shown; use --limit" in cli("alerts", "list", "--limit", "1", cwd=root).stdout
    page = tmp_path / "report.html"
    done = cli("drift", "report", "churn:v3", "--html", str(page), cwd=root)
    assert done.returncode == 0, done.stderr
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "<svg" in html and "charges" in html
    assert "src=" not in html and "<script" not in html and "http" not in html  # self-contained
    assert_one_line_error(cli("drift", "report", "churn:v3", cwd=root), "--html")
    assert_one_line_error(cli("drift", "show", "churn:v9", cwd=root), "churn:v9")
    assert_one_line_error(cli("drift", "check", "churn:v3", "--model", "nope", cwd=root),
                          "no registered model 'nope'")  # fmt: skip
    shown = cli("alerts", "list", cwd=root).stdout
    assert "features drifted" in shown and "joint distribution changed" in shown
    for alert in payload["alerts"]:
        assert cli("alerts", "ack", str(alert["id"]), "-m", "looking", cwd=root).returncode == 0
        assert_one_line_error(cli("alerts", "ack", str(alert["id"]), cwd=root), "acknowledged")
        assert cli("alerts", "resolve", str(alert["id"]), cwd=root).returncode == 0
    assert "No active alerts." in cli("alerts", "list", cwd=root).stdout
    assert_one_line_error(cli("alerts", "list", "--status", "odd", cwd=root), "--status")
    figures = json.loads(cli("kpis", "--json", cwd=root).stdout)
    assert figures["batches_monitored"] == 2 and figures["promotions"] == 1
    assert "lead time" in cli("kpis", cwd=root).stdout


def test_drift_report_to_no_file_or_a_folder_is_one_line_and_leaves_no_temp_file(
    monitored, store, tmp_path, cli
):
    check_batch(monitored, store, ingest(monitored, store, shifted(3, 6000), tmp_path, "b.csv"))
    here = tmp_path / "here"
    (here / "reports").mkdir(parents=True)
    for target, needle in (("", "--html ''"), ("reports", "cannot write reports")):
        done = cli("drift", "report", "churn:v2", "--html", target, "-w", str(monitored.root),
                   cwd=here)  # fmt: skip
        assert done.returncode == 2
        assert_one_line_error(done, needle)
    # Nothing written: no '.reports.tmp' beside the folder, nothing in it.
    assert [p.name for p in here.rglob("*")] == ["reports"]
    # '-' is standard output (a file named '-' is nobody's intent), and not with --json.
    piped = cli("drift", "report", "churn:v2", "--html", "-", "-w", str(monitored.root), cwd=here)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("<!doctype html>") and piped.stdout.rstrip().endswith("</html>")
    assert [p.name for p in here.rglob("*")] == ["reports"]
    both = cli("drift", "report", "churn:v2", "--html", "-", "--json", cwd=monitored.root)
    assert_one_line_error(both, "--html - and --json would both go to standard output")


def test_drift_report_never_writes_over_the_store_the_settings_or_a_data_file(
    monitored, store, tmp_path, cli
):
    """`--html .mldeck/store.db` replaced the store (every run, model and audit event lost) and
    `--html mldeck.toml` the settings, with exit status 0; a data file named by mistake too."""
    check_batch(monitored, store, ingest(monitored, store, shifted(3, 6000), tmp_path, "b.csv"))
    root = monitored.root
    data = write(churn_frame(10, seed=1, start_id=1), tmp_path, "keep.csv")
    own = tmp_path / "mine.html"  # a page of one's own was replaced as if it were a report
    own.write_text("<!doctype html><html><body>My page</body></html>")
    kept = {p: p.read_bytes() for p in (root / "mldeck.toml", data, own)}
    for target, needle in ((".mldeck/store.db", "the workspace's own state (.mldeck/)"),
                           (".mldeck/report.html", "the workspace's own state (.mldeck/)"),
                           ("mldeck.toml", "the workspace's own settings"),
                           (str(data), "exists and is not a drift report"),
                           (str(own), "exists and is not a drift report")):  # fmt: skip
        assert_one_line_error(cli("drift", "report", "churn:v2", "--html", target, cwd=root),
                              needle)  # fmt: skip
    assert all(path.read_bytes() == content for path, content in kept.items())
    assert (root / ".mldeck/store.db").read_bytes().startswith(b"SQLite format 3")
    assert cli("drift", "show", "churn:v2", cwd=root).returncode == 0
    assert not (root / ".mldeck/report.html").exists()
    # An earlier report is replaced, as asked.
    page = tmp_path / "report.html"
    for _ in range(2):
        assert cli("drift", "report", "churn:v2", "--html", str(page), cwd=root).returncode == 0
    assert page.read_text().startswith("<!doctype html>")
    # A link to a report: the report it names is written, the link kept.
    link = tmp_path / "latest.html"
    link.symlink_to(page)
    page.write_text(page.read_text().replace("Drift report", "Old report"))
    assert cli("drift", "report", "churn:v2", "--html", str(link), cwd=root).returncode == 0
    assert link.is_symlink() and "Old report" not in page.read_text()
    assert_one_line_error(cli("daemon", "--log", "mldeck.toml", cwd=root), "own settings")


def test_a_reports_history_ends_at_its_own_batch(monitored, store, tmp_path, cli):
    """A report written again later drew the batches checked since in its over-time charts, and
    later checks of earlier batches: a report shared is what it was when it was made."""
    from mldeck.monitor.queries import report_detail, resolve_report, timeline

    first = ingest(monitored, store, shifted(3, 6000), tmp_path, "b.csv")
    check_batch(monitored, store, first)
    detail = report_detail(store, resolve_report(store, "churn:v2"))
    check_batch(monitored, store, ingest(monitored, store, shifted(4, 6000), tmp_path, "c.csv"))
    check_batch(monitored, store, first)  # churn:v2 checked again, after the report
    everything = timeline(store, dataset="churn")
    assert [r.batch for r in everything][-2:] == ["churn:v2", "churn:v3"]
    until = timeline(store, dataset="churn", until=detail.row.id)
    assert [r.batch for r in until] == [r.batch for r in everything][:-1]
    assert until[-1].id == detail.row.id != everything[-2].id
    page = tmp_path / "v2.html"
    made = cli("drift", "report", f"report:{detail.row.id}", "--html", str(page),
               cwd=monitored.root)  # fmt: skip
    assert made.returncode == 0, made.stderr
    drawn = page.read_text()  # the charts' batch labels (the dataset's name left out)
    assert 'text-anchor="middle">v2<' in drawn and 'text-anchor="middle">v3<' not in drawn


@pytest.mark.parametrize(
    ("days", "text"),
    [(None, "-"), (30 / 86400, "every 30s"), (0.5, "every 12h00m"), (3.5, "every 3.5 days")],
)
def test_retraining_cadence_reads_as_a_time_under_a_day(days, text):
    from mldeck.monitor.kpis import _cadence

    assert _cadence(days) == text


def test_drift_show_json_is_the_report_drift_check_gave(monitored, store, tmp_path, cli):
    """One key, one type: `drift show --json` is the report `drift check --json` printed (the
    estimate and the realized metrics as objects), not the list row's flat figures under it."""
    ingest(monitored, store, shifted(3, 6000), tmp_path, "b.csv")
    done = cli("drift", "check", "churn:v2", "--json", cwd=monitored.root)
    assert done.returncode in (0, 3), done.stderr
    checked = json.loads(done.stdout)
    assert checked["alerts"]
    shown = json.loads(cli("drift", "show", "churn:v2", "--json", cwd=monitored.root).stdout)
    assert shown["id"] == shown["report_id"] == checked["report_id"]
    assert isinstance(shown["estimated"], dict) and isinstance(shown["realized"], dict)
    for key in set(checked) & set(shown) - {"alerts"}:
        assert shown[key] == checked[key], key
    # The alerts as a list in both (a count in one, a list in the other broke len()).
    same = ("id", "rule", "severity", "title")
    assert [{k: a[k] for k in same} for a in shown["alerts"]] == [
        {k: a[k] for k in same} for a in checked["alerts"]
    ]
    assert not {"estimated_lower", "estimated_upper", "multivariate_drifted", "metric"} & set(shown)


def test_a_metric_just_under_its_floor_does_not_read_as_the_floor():
    """0.7495 under a floor of 0.75 fires; its title must not say '0.750 < 0.75'."""
    from mldeck.monitor.check import realized_signals
    from mldeck.monitor.settings import AlertRule

    rule = AlertRule(name="realized roc_auc below 0.75", when="realized_metric",
                     metric="roc_auc", below=0.75, severity="critical")  # fmt: skip
    (signal,) = realized_signals([rule], "churn:v7", 7,
                                 {"roc_auc": 0.7495045, "labelled_rows": 116}, 30)  # fmt: skip
    assert signal.firing
    assert signal.title == "churn:v7: realized roc_auc 0.7495 < 0.75"
    (clear,) = realized_signals([rule], "churn:v7", 7, {"roc_auc": 0.8, "labelled_rows": 116}, 30)
    assert not clear.firing and clear.title == "churn:v7: realized roc_auc 0.800 < 0.75"


def test_an_html_report_draws_the_history_of_its_own_dataset_only(monitored, store, tmp_path, cli):
    """Another dataset's batches are no point of this dataset's drift over time: its 'v2' would
    be drawn beside this one's, its drift share and its alerts as if they were this data's."""
    check_batch(monitored, store, ingest(monitored, store, churn_frame(400, seed=2, start_id=5000),
                                         tmp_path, "quiet.csv"))  # fmt: skip
    other_ref = write(churn_frame(800, seed=11, start_id=20000), tmp_path, "other-ref.csv")
    ingest_file(monitored, store, other_ref, dataset="other", as_reference=True)
    other = ingest_file(monitored, store, write(shifted(12, 30000), tmp_path, "other.csv"),
                        dataset="other")  # fmt: skip
    assert check_batch(monitored, store, other.version_id).dataset_drift
    page = tmp_path / "report.html"
    done = cli("drift", "report", "churn:v2", "--html", str(page), cwd=monitored.root)
    assert done.returncode == 0, done.stderr
    html = page.read_text(encoding="utf-8")
    assert "churn:v2" in html and "other:" not in html
    ticks = re.findall(r'font-size="10" text-anchor="middle">([^<]*)</text>', html)
    assert ticks == ["v2", "v2"]  # one batch on each of the two charts
    # A chart's caption says what the table says: the test's p-value (it showed the statistic).
    captions = re.findall(r"<figcaption><b>([^<]*)</b> — ks ([^<]*?)(?: <span|</figcaption>)", html)
    assert captions and all(score.startswith("p = ") for _, score in captions), captions


def test_a_drift_share_under_its_threshold_never_reads_as_the_threshold(
    monitored, store, tmp_path, cli
):
    """1 of 3 features (33.3 %) under a 33.4 % threshold is no dataset drift: '33%, threshold
    33%' beside 'no dataset drift' reads as a contradiction."""
    config = monitored.config_path.read_text(encoding="utf-8")
    monitored.config_path.write_text(config.replace("drift_share = 0.3", "drift_share = 0.334"))
    ws = load_workspace(monitored.root)
    result = check_batch(ws, store, ingest(ws, store, shifted(3, 6000), tmp_path, "b.csv"))
    assert result.n_drifted == 1 and not result.dataset_drift
    shown = cli("drift", "show", "churn:v2", cwd=ws.root)
    assert "1 of 3 features drifted (33.3%, threshold 33.4%): no dataset drift" in shown.stdout
    page = tmp_path / "report.html"
    assert cli("drift", "report", "churn:v2", "--html", str(page), cwd=ws.root).returncode == 0
    assert "<b>33.3% (threshold 33.4%)</b>" in page.read_text(encoding="utf-8")


def test_showing_the_reference_says_what_it_is_not_to_check_it(monitored, cli):
    """'drift check' refuses the reference: 'drift show' must not send the user there."""
    done = cli("drift", "show", "churn:v1", cwd=monitored.root)
    assert_one_line_error(done, "churn:v1 is the reference")
    assert "drift check" not in done.stderr


def test_a_feature_missing_from_the_batch_is_drifted_not_left_out(ws, store, tmp_path, cli):
    """Nothing in [data] requires the column: left out, the batch would read as 0 drifted of 2
    features, a quiet batch, while a third of what the reference had is gone."""
    ingest_file(ws, store, write(churn_frame(500, seed=1), tmp_path, "ref.csv"), as_reference=True)
    batch = churn_frame(400, seed=2, start_id=5000).drop("plan", "churned")
    result = check_batch(ws, store, ingest(ws, store, batch, tmp_path, "b.csv"))
    assert result.label is None  # a label arriving later is no missing feature
    (plan,) = [f for f in result.features if f.feature == "plan"]
    assert plan.drifted and plan.note == "not in the batch" and plan.statistic is None
    assert (result.n_drifted, len(result.features), result.dataset_drift) == (1, 3, True)
    shown = cli("drift", "show", "churn:v2", cwd=ws.root).stdout
    assert "1 of 3 features drifted" in shown and "not in the batch" in shown
    # The HTML report says why the column has no chart (an empty figure), and why there is no
    # performance chart (it said "Not enough batches yet." under one batch and no model).
    from mldeck.monitor.queries import list_reports, report_detail
    from mldeck.monitor.report import render_html

    html = render_html(report_detail(store, result.report_id), list_reports(store))
    assert "No chart: not in the batch." in html
    assert "No performance figures: no model scored these batches." in html
    assert "Not enough batches" not in html


def test_html_bars_name_their_bins_as_counted():
    """Bins are [e0, e1], (e1, e2], ...: on whole numbers, '0 - 1' then '1 - 2' would put 1 in
    both bars, and read the second (only 2) as one and two."""
    from mldeck.monitor.report import _feature_chart

    svg = _feature_chart({"histogram": {"edges": [0.0, 1.0, 2.0],
                                        "reference": [0.0, 0.7, 0.3, 0.0],
                                        "current": [0.0, 0.9, 0.05, 0.05]}})  # fmt: skip
    titles = re.findall(r"<title>([^:<]*):", svg)
    assert titles[::2] == ["&lt; 0", "[0, 1]", "(1, 2]", "&gt; 2"]


def test_html_bars_cut_long_end_labels_and_keep_them_whole_in_the_tooltips():
    """The first and last categories are written under the chart's two ends: long names ran
    into each other."""
    from mldeck.monitor.report import LABEL_CHARS, _feature_chart

    first, last = "a" * 60, "z" * 60
    svg = _feature_chart({"frequencies": {first: [0.5, 0.4], "b": [0.2, 0.2], last: [0.3, 0.4]}})
    ends = re.findall(r'<text [^>]*font-size="9"[^>]*>([^<]*)</text>', svg)
    assert ends == [first[: LABEL_CHARS - 1] + "…", last[: LABEL_CHARS - 1] + "…"]
    assert f"<title>{first}: reference 50.0%</title>" in svg


def test_another_datasets_checks_neither_repeat_nor_clear_this_ones_drift_alert(
    monitored, store, tmp_path
):
    """One alert per rule and dataset: a quiet batch of another dataset does not resolve the
    workspace dataset's open drift alert, and its drift opens an alert of its own."""
    drifted = check_batch(monitored, store, ingest(monitored, store, shifted(12, 6000), tmp_path,
                                                   "drifted.csv"))  # fmt: skip
    assert drifted.dataset_drift
    other_ref = write(churn_frame(800, seed=1, start_id=20000), tmp_path, "other-ref.csv")
    ingest_file(monitored, store, other_ref, dataset="other", as_reference=True)
    quiet = ingest_file(monitored, store, write(churn_frame(400, seed=2, start_id=30000), tmp_path,
                                                "other-quiet.csv"), dataset="other")  # fmt: skip
    assert not check_batch(monitored, store, quiet.version_id).dataset_drift
    loud = ingest_file(monitored, store, write(shifted(12, 40000), tmp_path, "other-loud.csv"),
                       dataset="other")  # fmt: skip
    assert check_batch(monitored, store, loud.version_id).dataset_drift
    with store.read() as session:
        open_drift = session.execute(
            select(Alert.dedup_key, Alert.title, Alert.occurrences)
            .where(Alert.rule == "dataset drift", Alert.status == "open").order_by(Alert.id)
        ).all()  # fmt: skip
    assert [(key, title.split(":")[0], seen) for key, title, seen in open_drift] == [
        ("dataset drift", "churn", 1),
        ("dataset drift [other]", "other", 1),
    ]


def test_kpis_on_an_empty_store_say_there_is_nothing_yet_in_plain_words(store):
    """No finished run is no success rate ('- of 0 finished runs' read as a figure); one day is
    'last day'."""
    from mldeck.monitor.kpis import sections

    shown = sections(kpis(store, days=1))
    assert set(shown) == {"Delivery (last day)", "Model health (last day)", "Last batch (any age)"}
    assert shown["Model health (last day)"]["pipeline success rate"] == "- (no finished run)"


@pytest.mark.parametrize(
    ("rate", "said"),
    [(229 / 230, "99.6%"), (1.0, "100%"), (0.9999, ">99.9%"), (0.5, "50%"), (1 / 230, "0.4%"),
     (1e-5, "<0.1%"), (0.0, "0%")],
)  # fmt: skip
def test_a_success_rate_short_of_all_is_never_shown_as_100_percent(store, rate, said):
    """229 of 230 runs ok read "100%" beside "1 failed (24h)"."""
    import dataclasses

    from mldeck.monitor.kpis import sections
    from mldeck.tui.screens.overview import kpi_text

    k = dataclasses.replace(kpis(store, days=1), pipeline_success_rate=rate, runs_finished=230)
    assert sections(k)["Model health (last day)"]["pipeline success rate"].startswith(said + " of")
    health = dict(kpi_text(k, "red"))["Health"]
    assert f"runs ok {said}" in [t.plain for t in health]


@pytest.mark.parametrize(
    ("cost", "said"), [(4.59e-07, "0.000000459"), (0.125, "0.125"), (1e308, "1e+308")]
)
def test_a_cost_per_1k_predictions_is_shown_to_its_significant_digits(store, cost, said):
    """A realistic cost (a millionth of a unit per 1k) was shown as 0.000000; a huge one as a
    number 300 digits long."""
    import dataclasses

    from mldeck.monitor.kpis import sections

    shown = sections(dataclasses.replace(kpis(store, days=1), cost_per_1k=cost))
    # Never in e-notation for a realistic cost ('4.59e-07' with no unit read as anything).
    assert shown["Model health (last day)"]["cost per 1k predictions"] == (
        f"{said} (in the currency of [monitor] cost_per_cpu_hour)"
    )


def test_kpi_rates_and_windows_read_as_people_say_them(store):
    """'3 (0.0/week)' over a long window, '1344.0/week' over 15 minutes, 'last 0.01 days'."""
    import dataclasses

    from mldeck.monitor.kpis import sections

    def delivery(days: float, promotions: int) -> tuple[str, str]:
        k = dataclasses.replace(kpis(store, days=days), promotions=promotions,
                                promotions_per_week=promotions / (days / 7))  # fmt: skip
        (title, shown), *_ = sections(k).items()
        return title, shown["promotions"]

    assert delivery(36500, 3) == ("Delivery (last 36500 days)", "3 (0.03/year)")
    assert delivery(30, 14) == ("Delivery (last 30 days)", "14 (3.3/week)")
    assert delivery(30, 1) == ("Delivery (last 30 days)", "1 (1/month)")
    assert delivery(0.01, 2) == ("Delivery (last 14m24s)", "2")


def test_durations_below_zero_are_shown_as_such_not_as_zero(store):
    """A batch recorded by a host whose clock is ahead: the JSON said -48 hours of freshness,
    the text '0.0s'."""
    import dataclasses

    from mldeck.monitor.kpis import sections

    k = dataclasses.replace(kpis(store, days=1), lead_time_hours=-24.0, data_freshness_hours=-48.0)
    shown = sections(k)
    assert shown["Delivery (last day)"]["lead time data → champion"] == (
        "24h00m below zero (a clock ahead?)"
    )
    assert shown["Last batch (any age)"]["data freshness"] == (
        "new data last arrived 48h00m from now, in the future (a clock ahead?)"
    )


def test_labels_that_raise_an_alert_exit_3_as_a_drift_check_would(monitored, store, tmp_path, cli):
    """The labels show the champion far below its floor: a critical alert, which a script must
    see in the exit status, not only in the text."""
    frame = churn_frame(400, seed=8, start_id=9000)
    check_batch(monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path,
                                         "nolabels.csv"))  # fmt: skip
    wrong = frame.select("customer_id", (1 - pl.col("churned")).alias("churned"))
    done = cli("drift", "labels", str(write(wrong, tmp_path, "wrong.csv")), cwd=monitored.root)
    assert "alert" in done.stdout and "raised [critical]" in done.stdout, done.stdout
    assert done.returncode == 3, done.stdout + done.stderr


def test_drift_check_exits_3_for_its_batch_not_for_an_older_alert_about_the_store(
    monitored, store, tmp_path, cli
):
    """A failed step's alert opened before is listed by a quiet batch's check but does not make
    it exit 3 (a cron line would page about the batch until someone resolved an unrelated
    alert); one the check itself raises does."""
    ingest(monitored, store, churn_frame(300, seed=2, start_id=5000), tmp_path, "a.csv")
    ingest(monitored, store, churn_frame(300, seed=4, start_id=7000), tmp_path, "b.csv")
    with store.write() as session:
        session.add(Run(name="eval", kind=RunKind.EVALUATE, status=RunStatus.FAILED, error="boom"))
    first = cli("drift", "check", "churn:v2", "--json", cwd=monitored.root)
    assert first.returncode == 3, first.stdout + first.stderr  # the check raised it
    (alert,) = json.loads(first.stdout)["alerts"]
    assert alert["new"] and alert["scope"] == "store" and alert["status"] == "open"
    # ack and resolve print the alert as it is now (a script parsed a sentence).
    acked = cli("alerts", "ack", str(alert["id"]), "-m", "on it", "--json", cwd=monitored.root)
    assert acked.returncode == 0, acked.stderr
    acked = json.loads(acked.stdout)
    assert acked["status"] == "acknowledged" and acked["details"]["acknowledge_note"] == "on it"
    again = cli("drift", "check", "churn:v3", cwd=monitored.root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 of 3 features drifted" in again.stdout
    assert f"alert {alert['id']} acknowledged [warning]" in again.stdout
    done = cli("alerts", "resolve", str(alert["id"]), "--json", cwd=monitored.root)
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "resolved"


def test_alerts_check_counts_a_batchs_open_alert_until_it_is_resolved(
    monitored, store, tmp_path, cli
):
    """It said 'Nothing to alert.' and exited 0 while a drift alert was open: it evaluated the
    store's rules only."""
    result = check_batch(monitored, store, ingest(monitored, store, shifted(3, 6000), tmp_path,
                                                  "b.csv"))  # fmt: skip
    assert result.alerts
    done = cli("alerts", "check", cwd=monitored.root)
    assert done.returncode == 3, done.stdout + done.stderr
    for alert in result.alerts:
        assert f"alert {alert.alert_id} still open [{alert.severity}]: " in done.stdout
    listed = json.loads(cli("alerts", "check", "--json", cwd=monitored.root).stdout)
    assert listed["total"] == len(result.alerts)  # {"total", "alerts"}, as every list --json
    assert sorted(a["id"] for a in listed["alerts"]) == sorted(a.alert_id for a in result.alerts)
    alerts.acknowledge(store, result.alerts[0].alert_id, note="looking")
    assert "acknowledged [" in cli("alerts", "check", cwd=monitored.root).stdout
    # A check repeating an acknowledged alert says so (it said "still open").
    again = cli("drift", "check", result.batch, cwd=monitored.root).stdout
    assert f"alert {result.alerts[0].alert_id} acknowledged [" in again
    for alert in result.alerts:
        alerts.resolve(store, alert.alert_id, note="retrained")
    quiet = cli("alerts", "check", cwd=monitored.root)
    assert (quiet.returncode, quiet.stdout.strip()) == (0, "Nothing to alert.")


def test_a_batch_whose_labels_all_name_no_class_says_so(monitored, store, tmp_path, cli):
    """Every label naming no class of the model left realized performance out in silence."""
    frame = churn_frame(200, seed=8, start_id=9000).with_columns(churned=pl.lit(7))
    result = check_batch(monitored, store, ingest(monitored, store, frame, tmp_path, "sevens.csv"))
    assert result.realized == {"labelled_rows": 0, "unclassed_labels": 200}
    shown = cli("drift", "show", result.batch, cwd=monitored.root).stdout
    assert "none; 200 labels naming no class of the model left out" in shown


def test_a_batch_the_champion_cannot_score_is_still_compared(monitored, store, tmp_path, cli):
    """Infinite values (let through by validation) crashed the check inside the model with a
    traceback, and a column turned to text failed it whole: no report, no drift said."""
    frame = churn_frame(300, seed=4, start_id=30000)
    infinite = frame.with_columns(
        charges=pl.when(pl.int_range(pl.len()) < 3).then(float("inf")).otherwise(pl.col("charges"))
    )  # fmt: skip
    result = check_batch(monitored, store, ingest(monitored, store, infinite, tmp_path, "inf.csv"))
    assert result.report_id is not None and {f.feature for f in result.features} >= {"charges"}
    assert result.model == "churn:1" and result.prediction is None and result.estimated is None
    assert result.model_note == (
        "not scored: column 'charges' of the batch holds 3 infinite values: churn:1 cannot "
        "score them (refuse them at ingest: [data.columns.charges] allow_inf = false)"
    )
    shown = cli("drift", "show", result.batch, cwd=monitored.root)
    assert shown.returncode == 0 and "holds 3 infinite values" in shown.stdout
    scored = cli("score", result.batch, cwd=monitored.root)
    assert scored.returncode != 0 and "Traceback" not in scored.stderr
    assert "holds 3 infinite values" in scored.stderr

    relaxed = configure(monitored, "\n[data.table]\nallow_extra_columns = true\n")
    as_text = frame.with_columns(charges=pl.format("{} months", pl.col("charges")))
    result = check_batch(relaxed, store, ingest(relaxed, store, as_text, tmp_path, "text.csv"))
    assert {f.feature: f for f in result.features}["charges"].drifted
    assert result.model_note.startswith("not scored: column 'charges' of the batch is String")


def test_a_model_failing_on_a_batch_is_one_line_naming_it():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from mldeck.ml import scoring

    model = make_pipeline(OneHotEncoder(), LogisticRegression()).fit([["a"], ["b"]], [0, 1])
    with pytest.raises(MldeckError, match=r"^churn:1 failed to score the batch: ValueError: Found "
                                          "unknown categories"):  # fmt: skip
        scoring._predict(model, [["c"]], "churn:1")


def test_labels_say_their_alerts_hook_problems(monitored, store, tmp_path, cli):
    """A labels file's alerts ran their hook and dropped what went wrong without a word."""
    frame = churn_frame(400, seed=8, start_id=9000)
    check_batch(monitored, store, ingest(monitored, store, frame.drop("churned"), tmp_path,
                                         "nolabels.csv"))  # fmt: skip
    config = monitored.config_path
    config.write_text(config.read_text().replace(
        "\n[monitor]\n", '\n[monitor]\nalert_command = "echo broke >&2; exit 5"\n', 1))  # fmt: skip
    hooked = load_workspace(monitored.root)
    wrong = frame.select("customer_id", (1 - pl.col("churned")).alias("churned"))
    done = cli("drift", "labels", str(write(wrong, tmp_path, "wrong.csv")), "--json",
               cwd=hooked.root)  # fmt: skip
    payload = json.loads(done.stdout)
    (alert,) = payload["alerts"]
    assert payload["hook_problems"] == [f"alert {alert['id']}: hook exited 5: broke"]
    with store.read() as session:
        logged = session.execute(select(RunLog.message).where(RunLog.level == "warning"))
        assert f"alert {alert['id']}: hook exited 5: broke" in logged.scalars().all()


def test_a_failing_run_of_hooks_stops_no_other_hook(tmp_path, monkeypatch):
    """Any error in one call (no room for a hook's input) killed every hook of the process,
    said 'mldeck was stopping', and escaped a function that never raises for a hook."""
    import errno
    import threading

    from mldeck.monitor import alerts as alerting
    from mldeck.monitor.alerts import Raised, run_hooks

    out = tmp_path / "slow.done"
    slow = Raised(1, "r", "warning", "t", True, False, f"sleep 1; touch '{out}'", {"id": 1})
    found: list[list[str]] = []
    thread = threading.Thread(target=lambda: found.append(run_hooks([slow], None, 30.0)))
    thread.start()
    wait_until = time.monotonic() + 10
    while not alerting._live_hooks and time.monotonic() < wait_until:
        time.sleep(0.01)

    def full(*args, **kwargs):  # the disk full as the next hook's input is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(alerting.tempfile, "TemporaryFile", full)
    unwritable = Raised(2, "r", "warning", "t", True, False, "true", {"id": 2})
    assert run_hooks([unwritable], None, 5.0) == [
        "alert 2: hook could not start: [Errno 28] No space left on device"
    ]
    thread.join()
    assert found == [[]] and out.exists()


def test_a_hooks_signal_is_named_and_its_error_line_cut(tmp_path):
    from mldeck.monitor.alerts import Raised, run_hooks

    killed = Raised(1, "r", "warning", "t", True, False, "kill -9 $$", {"id": 1})
    long = Raised(2, "r", "warning", "t", True, False, "printf 'x%.0s' $(seq 5000) >&2; exit 2",
                  {"id": 2})  # fmt: skip
    none = Raised(3, "r", "warning", "t", True, False, "", {"id": 3})  # command = "": no hook
    first, second = run_hooks([killed, long, none], "exit 9", 10.0)
    assert first == "alert 1: hook killed by SIGKILL"
    assert second.startswith("alert 2: hook exited 2: xxx") and len(second) < 340


def test_a_job_failing_after_its_step_succeeded_is_a_failed_step(ws, store):
    """The newest run by id was the step (created after its job): the job's failure, which
    ended last, was hidden."""
    from datetime import timedelta

    from mldeck.store.models import utcnow

    now = utcnow()
    with store.write() as session:
        job = Run(name="d", kind=RunKind.DRIFT, status=RunStatus.FAILED, error="timed out",
                  ended_at=now)  # fmt: skip
        session.add(job)
        session.flush()
        session.add(Run(name="drift churn:v2", kind=RunKind.DRIFT, status=RunStatus.SUCCEEDED,
                        parent_run_id=job.id, ended_at=now - timedelta(seconds=5)))  # fmt: skip
    (raised,) = alerts.apply(store, alerts.store_signals(store, alerts.default_rules(ws.settings)))
    assert raised.new and raised.title == "the last drift run failed: d"


def test_alert_rules_that_could_never_fire_or_always_would_are_refused(monitored, store, tmp_path):
    """A feature_drift rule on the id column, the timestamp or an unmonitored column was taken
    and never fired, and one on the label never fired either; below = 70 fired on every batch,
    "0.7" was read as a number, and keys of another kind of rule did nothing."""
    from mldeck.config import parse_settings

    def rules(text: str) -> None:
        parse_settings(f"[[monitor.alerts]]\nname = 'r'\n{text}\n")

    with pytest.raises(ConfigError, match=r"below = 70 is outside \[0, 1\]: roc_auc lies between"):
        rules("when = 'realized_metric'\nmetric = 'roc_auc'\nbelow = 70")
    # A [gates] minimum of 0 makes a default rule with below = 0: a config that loads must
    # not fail every check.
    parse_settings("[gates]\nmin = {roc_auc = 0}\n")
    with pytest.raises(ConfigError, match=re.escape("roc_auc: a number, not the text '0.75'")):
        parse_settings("[gates]\nmin = {roc_auc = '0.75'}\n")  # in a table of numbers too
    assert {r.below for r in alerts.default_rules(parse_settings("[gates]\nmin = {roc_auc = 0}\n"))
            if r.below is not None} == {0}  # fmt: skip
    with pytest.raises(ConfigError, match=r"below = -0\.5 is outside"):
        rules("when = 'estimated_metric'\nmetric = 'roc_auc'\nbelow = -0.5")
    with pytest.raises(ConfigError, match=re.escape("a number, not the text '0.7'")):
        rules("when = 'realized_metric'\nmetric = 'roc_auc'\nbelow = '0.7'")
    with pytest.raises(ConfigError, match="metric, below do not apply to a dataset_drift rule"):
        rules("when = 'dataset_drift'\nbelow = 0.7\nmetric = 'roc_auc'")
    frame = churn_frame(300, seed=4, start_id=30000)
    version = ingest(monitored, store, frame, tmp_path, "b.csv")
    for feature, why in (("customer_id", "the id column ([data] id_column)"),
                         ("charges", "[monitor.columns.charges] monitor = false")):  # fmt: skip
        config = monitored.config_path.read_text()
        extra = "\n[monitor.columns.charges]\nmonitor = false\n" if feature == "charges" else ""
        watched = configure(monitored, f"{extra}\n[[monitor.alerts]]\nname = 'f'\n"
                                       f"when = 'feature_drift'\nfeature = '{feature}'\n")  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(f"watches feature {feature!r}, {why}")):
            check_batch(watched, store, version)
        monitored.config_path.write_text(config)
    # A rule on the label fires when the label drifts (it never did).
    flipped = churn_frame(300, seed=5, start_id=40000).with_columns(churned=pl.lit(1))
    labelled = configure(monitored, "\n[[monitor.alerts]]\nname = 'label'\n"
                                    "when = 'feature_drift'\nfeature = 'churned'\n")  # fmt: skip
    result = check_batch(labelled, store, ingest(labelled, store, flipped, tmp_path, "l.csv"))
    assert "label" in {a.rule for a in result.alerts}


def test_an_open_alert_takes_its_rules_severity_as_edited(monitored, store, tmp_path):
    rule = "\n[[monitor.alerts]]\nname = 'drift'\nwhen = 'dataset_drift'\nseverity = '{}'\n"
    config = monitored.config_path.read_text()
    warned = configure(monitored, rule.format("warning"))
    (raised,) = check_batch(warned, store, ingest(warned, store, shifted(3, 6000), tmp_path,
                                                  "a.csv")).alerts  # fmt: skip
    monitored.config_path.write_text(config)
    critical = configure(monitored, rule.format("critical"))
    (again,) = check_batch(critical, store, ingest(critical, store, shifted(4, 7000), tmp_path,
                                                   "b.csv")).alerts  # fmt: skip
    assert again.alert_id == raised.alert_id and not again.new
    with store.read() as session:
        assert session.get(Alert, raised.alert_id).severity == "critical"


def test_a_batch_whose_check_failed_says_so_not_that_it_was_never_checked(
    monitored, store, tmp_path, cli
):
    """'has not been checked for drift yet (run mldeck drift check ...)' sent the user to the
    check that had just failed."""
    version = ingest(monitored, store, churn_frame(300, seed=4, start_id=30000), tmp_path, "b.csv")
    broken = configure(monitored, "\n[monitor.columns.nope]\nmonitor = false\n")
    with pytest.raises(ConfigError):
        check_batch(broken, store, version)
    with store.read() as session:
        run_id = session.execute(select(Run.id).where(Run.kind == RunKind.DRIFT)).scalar_one()
    shown = cli("drift", "show", "churn:v2", cwd=monitored.root)
    assert shown.returncode != 0
    assert f"the drift check of churn:v2 failed (run {run_id}): " in shown.stderr
    assert "[monitor.columns.nope] names no column" in shown.stderr
    assert "not been checked" not in shown.stderr


def test_an_html_reports_headline_says_what_else_called_for_attention(monitored, store, tmp_path):
    """'No dataset drift' in green headed a report whose label had drifted and whose check
    raised an alert (and exited 3)."""
    from mldeck.monitor.queries import report_detail
    from mldeck.monitor.report import render_html

    labelled = configure(monitored, "\n[[monitor.alerts]]\nname = 'label'\n"
                                    "when = 'feature_drift'\nfeature = 'churned'\n")  # fmt: skip
    flipped = churn_frame(300, seed=5, start_id=40000).with_columns(churned=pl.lit(1))
    result = check_batch(labelled, store, ingest(labelled, store, flipped, tmp_path, "l.csv"))
    assert not result.dataset_drift and result.label.drifted and result.alerts
    html = render_html(report_detail(store, result.report_id), [])
    assert '<span class="ok">No dataset drift</span>' not in html
    assert f"(label drifted; {len(result.alerts)} alert" in html


def test_an_alert_whose_rule_was_renamed_or_removed_is_resolved(monitored, store, tmp_path, cli):
    """It stayed open for good (no rule looked at it again) and 'alerts check' exited 3."""
    config = monitored.config_path.read_text()
    rule = "\n[[monitor.alerts]]\nname = '{}'\nwhen = 'dataset_drift'\n"
    named = configure(monitored, rule.format("drift"))
    (raised,) = check_batch(named, store, ingest(named, store, shifted(3, 6000), tmp_path,
                                                 "a.csv")).alerts  # fmt: skip
    monitored.config_path.write_text(config)
    configure(monitored, rule.format("dataset drift (renamed)"))
    done = cli("alerts", "check", cwd=monitored.root)
    assert f"alert {raised.alert_id} resolved: its rule is no longer in mldeck.toml" in done.stderr
    with store.read() as session:
        alert = session.get(Alert, raised.alert_id)
        assert alert.status == "resolved" and alert.details["resolved_by"] == "mldeck"
    # Health checks' alerts have no rule of their own: left alone.
    with store.write() as session:
        session.add(Alert(rule="health:disk", severity="warning", dedup_key="health:disk",
                          title="disk", status="open"))  # fmt: skip
    cli("alerts", "check", cwd=monitored.root)
    with store.read() as session:
        assert (
            session.execute(select(Alert.status).where(Alert.rule == "health:disk")).scalar()
            == "open"
        )
