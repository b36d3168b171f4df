"""The tracking API that users' own scripts call: runs, params, metrics, logs, artifacts."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

import mldeck
from mldeck import provenance
from mldeck.errors import MldeckError
from mldeck.store import artifacts
from mldeck.store.models import Artifact, Metric, Run, RunStatus
from mldeck.store.queries import resolve_run, run_detail
from mldeck.tracking import start_run


def metric_rows(store, run_id: int, key: str | None = None) -> list[tuple[int, float | None]]:
    with store.read() as session:
        statement = select(Metric.step, Metric.value).where(Metric.run_id == run_id)
        if key is not None:
            statement = statement.where(Metric.key == key)
        return [tuple(row) for row in session.execute(statement.order_by(Metric.id)).all()]


def test_successful_run_reads_back(workspace, store, tmp_path):
    model_file = tmp_path / "model.bin"
    model_file.write_bytes(b"\x00\x01 trained weights")
    with start_run(
        name="baseline",
        kind="train",
        params={"C": 1.0},
        tags={"team": "risk"},
        workspace=workspace,
    ) as run:
        assert mldeck.active_run() is run
        run.log_params({"penalty": "l2", "layers": [64, 32], "obj": object()})
        run.log_param("C", 0.5)  # a later value wins
        mldeck.set_tag("stage", "dev")
        run.set_progress(0.4, "epoch 2 of 5")
        for value in (0.9, 0.7, 0.4):
            run.log_metric("loss", value)  # implicit steps 0, 1, 2
        run.log_metric("auc", 0.81, step=10)
        run.log_metric("auc", 0.85, step=20)
        mldeck.log_metrics({"lr": 0.1, "loss": 0.35})  # loss continues at step 3
        run.log("starting")
        mldeck.log_param("seed", 7)
        run.log("done", level="warning")
        record = run.log_artifact(model_file, name="model")
    run_id = run.id

    detail = run_detail(store, run_id)
    info = detail.run
    assert info.name == "baseline"
    assert (info.kind, info.trigger, info.status) == ("train", "script", "succeeded")
    assert info.params["C"] == 0.5
    assert info.params["penalty"] == "l2"
    assert info.params["layers"] == [64, 32]
    assert info.params["seed"] == 7
    assert info.params["obj"].startswith("<object object")
    assert info.tags == {"team": "risk", "stage": "dev"}
    assert info.progress == 1.0 and info.progress_message == "epoch 2 of 5"
    assert info.error is None
    assert info.started_at.tzinfo is not None
    assert info.started_at <= info.ended_at <= datetime.now(UTC)
    assert info.pid == os.getpid()
    assert info.environment["python"]
    assert "mldeck" in info.environment["packages"]

    summaries = {m.key: m for m in detail.metrics}
    assert sorted(summaries) == ["auc", "loss", "lr"]
    loss = summaries["loss"]
    assert (loss.count, loss.last, loss.last_step) == (4, 0.35, 3)
    assert (loss.minimum, loss.maximum) == (0.35, 0.9)
    auc = summaries["auc"]
    assert (auc.count, auc.last, auc.last_step) == (2, 0.85, 20)
    assert metric_rows(store, run_id, "loss") == [(0, 0.9), (1, 0.7), (2, 0.4), (3, 0.35)]

    assert [(line.level, line.message) for line in detail.logs] == [
        ("info", "starting"),
        ("warning", "done"),
    ]
    assert detail.log_count == 2

    (artifact,) = detail.artifacts
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert artifact.name == "model"
    assert artifact.sha256 == sha == record.sha256
    assert artifact.size_bytes == model_file.stat().st_size
    assert artifact.path == f".mldeck/artifacts/{sha[:2]}/{sha}"
    artifacts.verify(artifacts.resolve(workspace.root, artifact.path), sha)

    assert resolve_run(store, "baseline") == run_id
    as_dict = detail.as_dict()
    assert as_dict["status"] == "succeeded" and as_dict["params"]["seed"] == 7


def test_failed_run_records_the_traceback_and_reraises(workspace, store):
    with pytest.raises(ValueError, match="boom-4242"), start_run(name="bad", workspace=workspace):
        mldeck.log_metric("loss", 1.0)
        raise ValueError("boom-4242")
    run = run_detail(store, resolve_run(store, "bad")).run
    assert run.status == "failed"
    assert "Traceback" in run.error
    assert "ValueError: boom-4242" in run.error
    assert run.ended_at is not None
    assert run.progress != 1.0
    assert metric_rows(store, run.id) == [(0, 1.0)]  # what was logged before the error is kept


def test_a_database_error_ends_a_failed_runs_error_in_the_databases_words(workspace, store):
    """The error's last line (what a run's summary shows) was SQLAlchemy's link to its docs."""
    import sqlite3

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    holder = sqlite3.connect(workspace.state_dir / "store.db", isolation_level=None)
    other = create_engine(f"sqlite:///{workspace.state_dir / 'store.db'}",
                          connect_args={"timeout": 0.1})  # fmt: skip
    try:
        with pytest.raises(OperationalError), start_run(name="refused", workspace=workspace):
            holder.execute("BEGIN IMMEDIATE")  # another process writing, and writing on
            try:
                with other.begin() as conn:
                    conn.execute(text("DELETE FROM metric WHERE run_id = -1"))
            finally:
                holder.execute("ROLLBACK")
    finally:
        holder.close()
        other.dispose()
    run = run_detail(store, resolve_run(store, "refused")).run
    assert run.status == "failed" and "Traceback" in run.error
    assert run.error.strip().splitlines()[-1] == (
        "sqlalchemy.exc.OperationalError: database is locked"
    )
    assert "[SQL: DELETE FROM metric WHERE run_id = -1]" in run.error  # the statement is kept


def test_keyboard_interrupt_cancels_the_run(workspace, store):
    with pytest.raises(KeyboardInterrupt), start_run(name="stopped", workspace=workspace):
        raise KeyboardInterrupt
    run = run_detail(store, resolve_run(store, "stopped")).run
    assert run.status == RunStatus.CANCELLED
    assert "KeyboardInterrupt" in run.error
    assert run.ended_at is not None


# What polars raises when Ctrl-C arrives while its Rust code calls back into Python (pyo3).
PanicException = type("PanicException", (BaseException,), {})
POLARS_PANIC = PanicException(
    "called `Result::unwrap()` on an `Err` value: PyErr { type: <class 'KeyboardInterrupt'> }"
)


def test_a_ctrl_c_that_polars_turned_into_a_panic_cancels_the_run(workspace, store):
    with pytest.raises(PanicException), start_run(name="stopped", workspace=workspace):
        raise POLARS_PANIC
    run = run_detail(store, resolve_run(store, "stopped")).run
    assert (run.status, run.error) == (RunStatus.CANCELLED, "interrupted (KeyboardInterrupt)")
    with pytest.raises(PanicException), start_run(name="panicked", workspace=workspace):
        raise PanicException("index out of bounds")  # a panic of its own is a failure
    assert run_detail(store, resolve_run(store, "panicked")).run.status == RunStatus.FAILED


def test_an_interrupt_right_after_the_run_is_recorded_cancels_it(workspace, store, monkeypatch):
    from mldeck import tracking

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "ActiveRun", interrupted)
    with pytest.raises(KeyboardInterrupt):
        start_run(name="cut short", workspace=workspace)
    run = run_detail(store, resolve_run(store, "cut short")).run
    assert (run.status, run.error) == (RunStatus.CANCELLED, "interrupted (KeyboardInterrupt)")


def test_no_active_run_after_the_block(workspace):
    with start_run(workspace=workspace):
        pass
    with pytest.raises(MldeckError, match="no active run"):
        mldeck.active_run()


def test_one_hundred_thousand_metric_points_are_all_stored(workspace, store):
    n = 100_000
    began = time.perf_counter()
    with start_run(name="many", workspace=workspace) as run:
        for i in range(n):
            run.log_metric("loss", 1.0 / (i + 1))
    elapsed = time.perf_counter() - began
    print(f"logged {n} metric points in {elapsed:.2f}s")
    with store.read() as session:
        stored = session.execute(
            select(func.count(Metric.id), func.min(Metric.step), func.max(Metric.step)).where(
                Metric.run_id == run.id
            )
        ).one()
    assert tuple(stored) == (n, 0, n - 1)
    (summary,) = run_detail(store, run.id).metrics
    assert summary.count == n and summary.last == 1.0 / n


def test_nan_is_stored_as_null(workspace, store):
    with start_run(workspace=workspace) as run:
        run.log_metric("score", float("nan"))
        run.log_metric("score", np.float32(0.5))
        run.log_metric("score", Decimal("0.25"))
        run.log_metric("score", 3)
    assert metric_rows(store, run.id) == [(0, None), (1, 0.5), (2, 0.25), (3, 3.0)]
    (summary,) = run_detail(store, run.id).metrics
    assert (summary.minimum, summary.maximum, summary.count) == (0.25, 3.0, 4)


def test_infinity_is_kept(workspace, store):
    with start_run(workspace=workspace) as run:
        run.log_metric("grad", float("inf"))
    assert metric_rows(store, run.id) == [(0, math.inf)]


@pytest.mark.parametrize(
    ("bad", "said"),
    [("high", "must be a number"), (None, "must be a number"), ([1.0], "must be a number"),
     ({"a": 1}, "must be a number"), (object(), "must be a number"),
     (10**400, "is too large for a float")],
    ids=["text", "none", "list", "dict", "object", "huge-int"],
)  # fmt: skip
def test_non_numeric_metric_is_refused_without_side_effects(workspace, store, bad, said):
    with start_run(workspace=workspace) as run:
        run.log_metric("acc", 0.5)
        with pytest.raises(MldeckError, match=f"'acc' {said}"):
            run.log_metric("acc", bad)
        with pytest.raises(MldeckError, match=said):
            run.log_metrics({"other": 1.0, "acc": bad})
        run.log_metric("acc", 0.6)
    # The rejected values neither used up a step nor left a partial batch behind.
    assert metric_rows(store, run.id) == [(0, 0.5), (1, 0.6)]


@pytest.mark.parametrize("bad", [1.5, "3", True, [1], 2**31])
def test_a_metric_step_that_is_not_a_whole_number_in_range_is_refused(workspace, store, bad):
    with start_run(workspace=workspace) as run:
        with pytest.raises(MldeckError, match=r"a metric's step is a whole number|out of range"):
            run.log_metric("loss", 0.5, step=bad)  # 1.5 was stored at step 1; "3" at step 3
        run.log_metric("loss", 0.4, step=np.int64(2))
        run.log_metric("loss", 0.3, step=3.0)
    assert metric_rows(store, run.id) == [(2, 0.4), (3, 0.3)]


@pytest.mark.parametrize("bad", [math.nan, "half", None])
def test_progress_that_is_not_a_number_is_refused(workspace, store, bad):
    with start_run(name="p", workspace=workspace) as run:
        run.set_progress(0.25, "a quarter")
        with pytest.raises(MldeckError, match="progress is a number from 0 to 1"):
            run.set_progress(bad)
        progress = run_detail(store, run.id).run.progress
    assert progress == 0.25  # kept: NaN was stored as NULL, the run showed no progress


def test_metric_timestamp_must_be_aware(workspace, store):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with start_run(workspace=workspace) as run:
        with pytest.raises(MldeckError, match="time zone"):
            run.log_metric("loss", 1.0, timestamp=datetime(2026, 1, 2, 3, 4, 5))
        run.log_metric("loss", 2.0, timestamp=when)
    with store.read() as session:
        (ts,) = session.execute(select(Metric.ts).where(Metric.run_id == run.id)).scalars()
    assert ts == when


@pytest.mark.parametrize(
    "call",
    [
        lambda: mldeck.log_metric("loss", 1.0),
        lambda: mldeck.log_metrics({"loss": 1.0}),
        lambda: mldeck.log_param("a", 1),
        lambda: mldeck.log_params({"a": 1}),
        lambda: mldeck.set_tag("a", 1),
        lambda: mldeck.log_artifact("x"),
    ],
)
def test_module_level_calls_outside_a_run_are_errors(call):
    with pytest.raises(MldeckError, match=r"no active run.*start_run"):
        call()


def test_artifacts_are_content_addressed_and_deduplicated(workspace, store, tmp_path):
    first = tmp_path / "a.txt"
    second = tmp_path / "b.txt"
    first.write_text("same content")
    second.write_text("same content")
    with start_run(workspace=workspace) as run:
        one = run.log_artifact(first)
        two = mldeck.log_artifact(str(second), name="copy")
        with pytest.raises(MldeckError, match="no such file"):
            run.log_artifact(tmp_path / "missing.txt")
    assert one.sha256 == two.sha256 and one.path == two.path
    files = [p for p in workspace.artifacts_dir.rglob("*") if p.is_file()]
    assert files == [workspace.root / one.path]
    assert files[0].read_text() == "same content"
    with store.read() as session:
        names = session.execute(select(Artifact.name).where(Artifact.run_id == run.id)).scalars()
        assert sorted(names) == ["a.txt", "copy"]
    assert run_detail(store, run.id).run.status == "succeeded"


def test_unknown_kind_or_trigger_is_refused(workspace):
    with pytest.raises(MldeckError, match=r"unknown run kind 'trian'.*train"):
        start_run(kind="trian", workspace=workspace)
    with pytest.raises(MldeckError, match="unknown run trigger"):
        start_run(trigger="cron", workspace=workspace)


@pytest.mark.parametrize("how", ["path", "str", "workspace", "env", "cwd"])
def test_workspace_is_found_every_way(workspace, store, monkeypatch, tmp_path, how):
    kwargs = {}
    if how == "path":
        kwargs["workspace"] = workspace.root
    elif how == "str":
        kwargs["workspace"] = str(workspace.root)
    elif how == "workspace":
        kwargs["workspace"] = workspace
    elif how == "env":
        monkeypatch.setenv("MLDECK_WORKSPACE", str(workspace.root))
        monkeypatch.chdir(tmp_path)
    else:
        nested = workspace.root / "src" / "deep"
        nested.mkdir(parents=True)
        monkeypatch.chdir(nested)
    with start_run(name=f"found-by-{how}", **kwargs) as run:
        run.log_metric("x", 1.0)
    assert run.workspace.root == workspace.root
    assert run_detail(store, resolve_run(store, f"found-by-{how}")).run.status == "succeeded"


def test_no_workspace_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MldeckError, match="mldeck init"):
        start_run()
    with pytest.raises(MldeckError, match="does not exist"):
        start_run(workspace=tmp_path / "nowhere")


def test_heartbeat_and_running_state_are_visible_while_running(workspace, store):
    with start_run(name="live", workspace=workspace) as run:
        row = run_detail(store, run.id).run
        assert row.status == "running"
        assert row.heartbeat_at is not None
        assert datetime.now(UTC) - row.heartbeat_at < timedelta(minutes=5)
    assert run_detail(store, run.id).run.status == "succeeded"


def test_end_is_idempotent(workspace, store):
    with start_run(workspace=workspace) as run:
        run.end(RunStatus.SKIPPED)
        run.end(RunStatus.FAILED, error="ignored")
    row = run_detail(store, run.id).run
    assert row.status == "skipped" and row.error is None


def test_runs_do_not_leak_between_workspaces(tmp_path):
    from mldeck.workspace import init_workspace, open_workspace_store

    a = init_workspace(tmp_path / "a")
    b = init_workspace(tmp_path / "b")
    with start_run(name="in-a", workspace=a):
        pass
    with start_run(name="in-b", workspace=b):
        pass
    for ws, name in ((a, "in-a"), (b, "in-b")):
        store = open_workspace_store(ws)
        try:
            with store.read() as session:
                assert list(session.execute(select(Run.name)).scalars()) == [name]
        finally:
            store.close()


def test_run_name_defaults_to_the_script(workspace, store, monkeypatch):
    monkeypatch.setattr("sys.argv", [str(Path("/somewhere/train_model.py"))])
    with start_run(workspace=workspace) as run:
        pass
    assert run.name == "train_model"
    assert run_detail(store, run.id).run.name == "train_model"


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_code_version_records_commit_and_dirty_flag(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    script = repo / "train.py"
    script.write_text("print('v1')\n")
    git(repo, "init", "-q")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    clean = provenance.code_version(repo, script)
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    assert clean["entry_point_sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    script.write_text("print('v2')\n")
    dirty = provenance.code_version(repo, script)
    assert dirty["git_commit"] == clean["git_commit"] and dirty["git_dirty"] is True
    assert dirty["entry_point_sha256"] != clean["entry_point_sha256"]
    assert provenance.code_version(tmp_path / "elsewhere") == {}


def test_process_start_time_tells_processes_apart():
    mine = provenance.process_start_time(os.getpid())
    if mine is None:
        pytest.skip("no /proc on this system")
    assert mine > 0
    assert provenance.process_start_time(os.getpid()) == mine
    assert provenance.process_start_time(2**22 + 12345) is None  # above Linux's pid_max


# -- comparing runs --------------------------------------------------------------------------


def test_runs_are_compared_field_by_field(workspace, store):
    from mldeck.store.queries import MAX_COMPARED, compare_runs

    runs = []
    for lr, loss, extra in ((0.1, 0.5, {}), (0.01, 0.25, {"depth": 3}), (0.1, 0.5, {})):
        with start_run(name="sweep", kind="train", workspace=workspace.root,
                       params={"lr": lr, "opt": {"beta": 0.9}, **extra}) as run:  # fmt: skip
            run.log_metric("loss", 1.0)
            run.log_metric("loss", loss)  # the last value is compared
        runs.append(run.id)
    compared = compare_runs(store, runs)
    assert [row.id for row in compared.runs] == runs
    fields = {f.name: f for f in compared.fields}
    assert fields["metric.loss"].values == [0.5, 0.25, 0.5] and fields["metric.loss"].differs
    assert fields["param.lr"].values == [0.1, 0.01, 0.1]
    assert fields["param.depth"].values == [None, 3, None]  # absent: None, and that differs
    assert fields["param.depth"].differs
    assert not fields["param.opt"].differs and fields["param.opt"].values[0] == {"beta": 0.9}
    assert not fields["kind"].differs and fields["status"].values == ["succeeded"] * 3
    sections = [f.section for f in compared.fields]
    assert sections[:4] == ["run"] * 4 and sections.index("metric") < sections.index("param")
    # Times as they are shown: 0.408 s and 0.424 s are both 0.4 s, and do not differ.
    with store.write() as session:
        for run_id, took in ((runs[0], 0.408), (runs[2], 0.424)):
            run = session.get(Run, run_id)
            run.ended_at = run.started_at + timedelta(seconds=took)
    same = compare_runs(store, [runs[0], runs[2]])
    assert [f.name for f in same.fields if f.differs] == []
    assert {f.name: f.values for f in same.fields}["seconds"] == [0.4, 0.4]
    with pytest.raises(MldeckError, match="compare 2 to 8 different runs, not 1"):
        compare_runs(store, [runs[0], runs[0]])
    with pytest.raises(MldeckError, match=f"not {MAX_COMPARED + 1}"):
        compare_runs(store, list(range(1, MAX_COMPARED + 2)))


@pytest.mark.parametrize("code", [None, 0])
def test_a_script_that_exits_with_success_inside_its_run_succeeded(workspace, store, code):
    with pytest.raises(SystemExit), start_run(name="exits", workspace=workspace):
        mldeck.log_metric("loss", 0.5)
        raise SystemExit(code)  # sys.exit(code)
    run = run_detail(store, resolve_run(store, "exits")).run
    assert (run.status, run.error, run.progress) == (RunStatus.SUCCEEDED, None, 1.0)
    assert metric_rows(store, run.id) == [(0, 0.5)]


def test_a_script_that_exits_with_an_error_status_inside_its_run_failed(workspace, store):
    with pytest.raises(SystemExit), start_run(name="exits", workspace=workspace):
        raise SystemExit(3)
    run = run_detail(store, resolve_run(store, "exits")).run
    assert run.status == RunStatus.FAILED and "SystemExit: 3" in run.error


def test_numpy_params_and_tags_are_stored_as_numbers(workspace, store):
    with start_run(name="np", workspace=workspace, params={"depth": np.int64(6)}) as run:
        run.log_params(
            {"lr": np.float32(0.5), "sizes": np.array([1, 2]), "nested": {"n": np.int32(3)}}
        )
        run.set_tag("seed", np.uint8(7))
    recorded = run_detail(store, resolve_run(store, "np")).run
    assert recorded.params == {"depth": 6, "lr": 0.5, "sizes": [1, 2], "nested": {"n": 3}}
    assert recorded.tags["seed"] == 7


def test_logging_to_a_run_that_has_ended_is_refused(workspace, store, tmp_path):
    with start_run(name="over", workspace=workspace) as run:
        run.log_metric("loss", 0.5)
    artifact = tmp_path / "late.txt"
    artifact.write_text("late")
    late = [
        lambda: run.log_metric("loss", 0.1),  # would wait in the buffer, never written
        lambda: run.log_params({"late": 1}),
        lambda: run.set_tag("late", 1),
        lambda: run.set_progress(0.5),
        lambda: run.log("late line"),
        lambda: run.log_artifact(artifact),
    ]
    for call in late:
        with pytest.raises(MldeckError, match=r"run \d+ \(over\) has ended"):
            call()
    detail = run_detail(store, resolve_run(store, "over"))
    assert detail.run.params == {} and detail.run.tags == {} and detail.logs == []
    assert detail.artifacts == [] and metric_rows(store, run.id) == [(0, 0.5)]


def test_points_a_failed_write_did_not_store_stay_buffered(workspace, store, monkeypatch):
    """The buffer was emptied before the write: one failed write (the heartbeat's, whose errors
    are swallowed) lost every point since the last flush, and the run still succeeded."""
    with start_run(name="flaky", workspace=workspace) as run:
        run.log_metrics({"a": 1.0, "b": 2.0})
        write = run.store.write
        monkeypatch.setattr(run.store, "write", lambda: (_ for _ in ()).throw(OSError("busy")))
        with pytest.raises(OSError):
            run.flush()
        monkeypatch.setattr(run.store, "write", write)
        run.log_metric("a", 3.0)
    assert sorted(metric_rows(store, run.id, "a")) == [(0, 1.0), (1, 3.0)]
    assert metric_rows(store, run.id, "b") == [(0, 2.0)]


@pytest.mark.parametrize("fails", [False, True])
def test_a_run_started_without_a_with_block_is_ended_when_the_script_exits(
    workspace, store, tmp_path, fails
):
    """Its buffered metrics were lost and it stayed "running"."""
    script = tmp_path / "no_with.py"
    script.write_text(
        "import mldeck\n"
        "run = mldeck.start_run(name='no-with')\n"
        "for i in range(10):\n"
        "    run.log_metric('acc', i / 10)\n" + ("raise ValueError('bad data')\n" if fails else ""),
        encoding="utf-8",
    )
    env = {**os.environ, "MLDECK_WORKSPACE": str(workspace.root)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == (1 if fails else 0), done.stderr
    detail = run_detail(store, resolve_run(store, "no-with"))
    assert len(metric_rows(store, detail.run.id, "acc")) == 10
    if fails:
        assert detail.run.status == RunStatus.FAILED and "ValueError: bad data" in detail.run.error
        assert "ValueError: bad data" in done.stderr  # still printed as Python prints it
    else:
        assert detail.run.status == RunStatus.SUCCEEDED
    assert any("start_run() was not used in a with block" in line.message for line in detail.logs)


def test_module_level_calls_in_worker_threads_log_to_the_open_run(workspace, store):
    """A thread does not inherit the block's context: log_metric in a thread pool said "no
    active run" inside the with block."""
    from concurrent.futures import ThreadPoolExecutor

    with start_run(name="threads", workspace=workspace) as run, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: mldeck.log_metric("fold_auc", 0.8, step=i), range(4)))
    assert sorted(metric_rows(store, run.id, "fold_auc")) == [(i, 0.8) for i in range(4)]


def test_a_metric_ending_in_nan_compares_as_nan_not_as_missing(workspace, store):
    """A diverged run (last loss NaN) read "-", which says the run has no such metric, and was
    "the same" as a run without the metric."""
    from mldeck import formatting as fmt
    from mldeck.store.queries import compare_runs

    runs = {}
    for name, values in (("diverged", [0.5, math.nan]), ("again", [math.nan]),
                         ("healthy", [0.5, 0.3]), ("none", [])):  # fmt: skip
        with start_run(name=name, workspace=workspace) as run:
            for value in values:
                run.log_metric("loss", value)
            runs[name] = run.id

    def loss(*names: str) -> Any:
        fields = compare_runs(store, [runs[n] for n in names]).fields
        return {f.name: f for f in fields}["metric.loss"]

    compared = loss("diverged", "healthy", "none")
    assert [fmt.compared("metric", "loss", v) for v in compared.values] == ["NaN", "0.3", "-"]
    assert loss("diverged", "none").differs and not loss("diverged", "again").differs


def test_a_run_with_a_name_longer_than_its_column_is_found_by_that_name(workspace, store):
    name = "grid search " + "x" * 300
    with start_run(name=name, workspace=workspace) as run:
        pass
    assert resolve_run(store, name) == run.id
