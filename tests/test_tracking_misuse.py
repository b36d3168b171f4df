"""The tracking API used as scripts really use it: forked workers, signals, daemon threads, text
from other systems' encodings, odd params, a busy or damaged store. Nothing logged is lost
without a word, and a run's status says what happened."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from mldeck.errors import MldeckError
from mldeck.store.models import Metric, RunStatus
from mldeck.store.queries import compare_runs, integrity_check, resolve_run, run_detail
from mldeck.tracking import start_run

# What Python makes of a latin-1 file name's bytes: lone surrogates, which UTF-8 cannot encode.
UNDECODABLE = os.fsdecode(b"caf\xe9")


def script_in(workspace, body: str) -> subprocess.Popen[str]:
    path = workspace.root / "script.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    env = {**os.environ, "MLDECK_WORKSPACE": str(workspace.root)}
    return subprocess.Popen([sys.executable, str(path)], env=env, cwd=workspace.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def keys(store, run_id: int) -> dict[str, int]:
    with store.read() as session:
        found = session.execute(select(Metric.key).where(Metric.run_id == run_id)).scalars()
        counts: dict[str, int] = {}
        for key in found:
            counts[key] = counts.get(key, 0) + 1
        return counts


def test_a_forked_workers_metrics_are_all_stored_and_it_does_not_end_the_parents_run(
    workspace, store
):
    """A multiprocessing worker inherited the run and buffered its points, which died with it
    unwritten (1002 of 3000 stored, the run "succeeded"); a forked child leaving the block with
    sys.exit(0) ended the parent's run as succeeded while the parent still ran."""
    child = script_in(
        workspace,
        """
        import multiprocessing, os, sys, mldeck

        def worker(k):
            for i in range(300):
                mldeck.log_metric(f"worker{k}", float(i), step=i)

        if __name__ == "__main__":
            with mldeck.start_run(name="forks") as run:
                pid = os.fork()
                if pid == 0:
                    sys.exit(0)  # leaves the with block in the child
                os.waitpid(pid, 0)
                from mldeck.store.models import Run
                with run.store.read() as session:  # the child's exit did not end it
                    assert session.get(Run, run.id).status == "running"
                with multiprocessing.get_context("fork").Pool(2) as pool:
                    pool.map(worker, range(3))
                run.log_metric("parent", 1.0)
    """,
    )
    _out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    detail = run_detail(store, resolve_run(store, "forks"))
    assert detail.run.status == RunStatus.SUCCEEDED
    assert keys(store, detail.run.id) == {"parent": 1, "worker0": 300, "worker1": 300,
                                          "worker2": 300}  # fmt: skip


def test_sigterm_in_a_run_cancels_it_and_keeps_its_buffered_metrics(workspace, store):
    """The run stayed "running" until a health check called it orphaned, its buffered points
    lost: what `timeout`, Slurm or Kubernetes stopping a job, or a closed SSH session did."""
    child = script_in(
        workspace,
        """
        import time, mldeck
        with mldeck.start_run(name="stopped") as run:
            run.log_metric("loss", 0.5)
            print("ready", flush=True)
            time.sleep(60)
    """,
    )
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM
    detail = run_detail(store, resolve_run(store, "stopped"))
    assert detail.run.status == RunStatus.CANCELLED and "SIGTERM" in detail.run.error
    assert keys(store, detail.run.id) == {"loss": 1}


def test_a_run_cut_off_in_a_daemon_thread_at_exit_failed_quietly(workspace, store):
    """It was recorded as succeeded (66 of 1000 steps done), said it "was not used in a with
    block", and the thread printed a traceback as the interpreter exited."""
    child = script_in(
        workspace,
        """
        import threading, time, mldeck

        started = threading.Event()

        def work():
            with mldeck.start_run(name="cut") as run:
                started.set()
                for i in range(1000):
                    run.set_progress(i / 1000)
                    time.sleep(0.01)

        threading.Thread(target=work, daemon=True).start()
        started.wait(60)
        time.sleep(0.2)
    """,
    )
    _out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and "Traceback" not in err, err
    detail = run_detail(store, resolve_run(store, "cut"))
    assert detail.run.status == RunStatus.FAILED
    assert "with block was still running" in detail.run.error


def test_text_from_another_encoding_is_stored_not_a_lost_batch(workspace, store):
    """A metric key with an undecodable byte was taken, then failed every later write: the run
    ended failed with none of its points, the valid ones included."""
    with start_run(name="f" + UNDECODABLE, workspace=workspace) as run:
        run.log_metric("loss", 1.0)
        run.log_metric("f1/" + UNDECODABLE, 0.9)
        run.log_params({"file": Path("data") / UNDECODABLE, UNDECODABLE: 1})
        run.log("read " + UNDECODABLE)
        run.flush()
        run.log_metric("loss", 0.5)
    detail = run_detail(store, run.id)
    assert detail.run.status == RunStatus.SUCCEEDED
    assert keys(store, run.id) == {"loss": 2, "f1/caf\ufffd": 1}
    assert detail.run.name == "fcaf\ufffd"
    assert detail.run.params == {"file": "data/caf\ufffd", "caf\ufffd": 1}
    assert [line.message for line in detail.logs] == ["read caf\ufffd"]
    assert resolve_run(store, "f" + UNDECODABLE) == run.id  # looked up as it was stored


def test_a_timestamp_out_of_range_is_refused_at_the_call(workspace, store):
    """It overflowed when its batch was written: every later flush failed and the run lost
    every point."""
    far = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    with start_run(name="times", workspace=workspace) as run:
        run.log_metric("loss", 1.0)
        with pytest.raises(MldeckError, match="out of range"):
            run.log_metric("loss", 0.5, timestamp=far)
        with pytest.raises(MldeckError, match="is a datetime"):
            run.log_metric("loss", 0.5, timestamp="2026-01-01")  # type: ignore[arg-type]
        run.log_metric(
            "loss", 0.4, timestamp=datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))
        )
    assert run_detail(store, run.id).run.status == RunStatus.SUCCEEDED
    with store.read() as session:
        stamps = session.execute(select(Metric.ts).where(Metric.run_id == run.id)).scalars().all()
    assert len(stamps) == 2 and datetime(2026, 1, 1, 0, 0) in [
        s.replace(tzinfo=None) for s in stamps
    ]


def test_params_keep_their_structure_leaf_by_leaf(workspace, store):
    """A config dict holding a Path (or a NaN) was stored whole as its Python repr."""
    config = {"data_dir": Path("data/train"), "lr": 0.1, "dropout": float("nan"),
              "layers": (64, 32), "none": None}  # fmt: skip
    with start_run(name="cfg", params={"config": config}, workspace=workspace) as run:
        pass
    assert run_detail(store, run.id).run.params["config"] == {
        "data_dir": "data/train", "lr": 0.1, "dropout": "nan", "layers": [64, 32], "none": None
    }  # fmt: skip


def test_a_run_ends_only_with_a_final_status_and_is_entered_once(workspace, store):
    run = start_run(name="odd", workspace=workspace)
    with pytest.raises(MldeckError, match="succeeded, failed, cancelled or skipped"):
        run.end("finished")  # type: ignore[arg-type]
    with pytest.raises(MldeckError, match="succeeded, failed, cancelled or skipped"):
        run.end(RunStatus.RUNNING)
    with run:
        with pytest.raises(MldeckError, match="already in a with block"), run:
            pass
        run.log_metric("x", 1.0)  # the failed re-entry left the run usable
    assert run_detail(store, run.id).run.status == RunStatus.SUCCEEDED
    with pytest.raises(MldeckError, match="has ended"), run:
        pass


def test_a_busy_store_keeps_the_points_in_memory_instead_of_killing_the_script(
    workspace, store, monkeypatch
):
    """A flush that met a lock held past the busy timeout raised SQLAlchemy's error out of
    log_metric, which ended the training."""
    with start_run(name="busy", workspace=workspace) as run:
        run.log_metric("loss", 1.0)
        write = run.store.write

        def locked():
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

        monkeypatch.setattr(run.store, "write", locked)
        run._last_flush = time.monotonic() - 60  # the next point is due for a flush
        with pytest.warns(RuntimeWarning, match="database is locked"):
            run.log_metric("loss", 0.5)
        monkeypatch.setattr(run.store, "write", write)
    assert keys(store, run.id) == {"loss": 2}


def test_an_artifact_named_by_a_path_is_recorded(workspace, store, tmp_path):
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights")
    with start_run(name="art", workspace=workspace) as run:
        record = run.log_artifact(source, name=Path("models") / "best.bin")  # type: ignore[arg-type]
    assert record.name == "models/best.bin"


def test_compare_tells_null_from_absent_and_a_flag_from_a_count(workspace, store):
    """max_depth=None read "-" like a run without it and compared equal to it; True and 1
    compared equal; 1.2345e14 and 1.2346e14 differed but read the same."""
    with start_run(name="a", params={"max_depth": None, "fit_intercept": True},
                   workspace=workspace) as a:  # fmt: skip
        a.log_metric("big", 1.2345e14)
    with start_run(name="b", params={"fit_intercept": 1}, workspace=workspace) as b:
        b.log_metric("big", 1.2346e14)
    fields = {f.name: f for f in compare_runs(store, [a.id, b.id]).fields}
    assert fields["param.max_depth"].differs
    assert fields["param.max_depth"].texts() == ["null", "-"]
    assert fields["param.max_depth"].present == [True, False]
    assert fields["param.fit_intercept"].differs
    big = fields["metric.big"].texts()
    assert big[0] != big[1]


def test_the_cli_shows_such_runs_without_a_traceback(workspace, store, cli):
    with start_run(name="x" + UNDECODABLE, params={"path": "données/été.csv"},
                   workspace=workspace) as run:  # fmt: skip
        run.log_metric("f1/" + UNDECODABLE, 0.9)
    root = workspace.root
    shown = cli("runs", "show", str(run.id), cwd=root)
    assert shown.returncode == 0 and '"données/été.csv"' in shown.stdout, shown.stderr
    as_json = cli(
        "runs", "show", str(run.id), "--json", cwd=root, env={"PYTHONIOENCODING": "utf-8"}
    )
    assert as_json.returncode == 0 and "f1/caf\ufffd" in as_json.stdout, as_json.stderr
    for args in (("runs", "list", "--name", "x" + UNDECODABLE), ("runs", "show", "x" + UNDECODABLE),
                 ("runs", "compare", str(run.id), "y" + UNDECODABLE)):  # fmt: skip
        done = cli(*args, cwd=root)
        assert "Traceback" not in done.stderr, done.stderr
    assert "x" in cli("runs", "list", "--name", "x" + UNDECODABLE, cwd=root).stdout


def test_a_store_damaged_below_its_header_is_one_line_and_a_failed_check(workspace, store, cli):
    """SQLAlchemy's traceback, from every command; the health check crashed the same way."""
    with start_run(name="r", workspace=workspace):
        pass
    path = workspace.root / ".mldeck" / "store.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages in the file itself
    root_page = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'run'").fetchone()[0]
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    store.engine.dispose()
    with open(path, "r+b") as f:
        f.seek((root_page - 1) * page_size)
        f.write(b"\x42" * page_size)
    done = cli("runs", "list", cwd=workspace.root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "the store is damaged (database disk image is malformed)" in done.stderr
    assert "malformed" in integrity_check(store)


def test_an_artifact_on_a_full_disk_is_said_so(workspace, tmp_path, monkeypatch):
    import errno

    from mldeck.errors import WorkspaceFull
    from mldeck.store import artifacts

    source = tmp_path / "model.bin"
    source.write_bytes(b"weights")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts, "put_stream", full)
    with start_run(name="full", workspace=workspace) as run, pytest.raises(WorkspaceFull):
        run.log_artifact(source)


def test_params_holding_themselves_or_sharing_parts_are_stored_quickly(workspace, store):
    """json.dumps refused them at once; walked leaf by leaf, a dict holding itself twice per
    level took 2^50 steps."""
    loop: dict = {}
    loop["a"] = loop
    loop["b"] = loop
    shared: list = []
    for _ in range(60):
        shared = [shared, shared]
    started = time.monotonic()
    with start_run(name="odd params", params={"loop": loop, "shared": shared, "ok": [1, 2]},
                   workspace=workspace) as run:  # fmt: skip
        pass
    assert time.monotonic() - started < 30  # minutes or more before
    params = run_detail(store, run.id).run.params
    assert params["ok"] == [1, 2] and isinstance(params["shared"], str)
    assert isinstance(params["loop"]["a"], str) and "{...}" in params["loop"]["a"]


def test_large_params_and_parts_met_twice_keep_their_structure(workspace, store):
    """A cap on the parts walked turned training's own record of 3,000 or more data versions into
    text, and every later training and reproduction failed reading it back."""
    record = {"source": "store", "versions": [
        {"id": i, "dataset": "churn", "version": i, "sha256": f"{i:064x}"} for i in range(5000)
    ]}  # fmt: skip
    default = {"lr": 0.1}
    with start_run(name="big", params={"data": record, "layers": [default, default]},
                   workspace=workspace) as run:  # fmt: skip
        pass
    params = run_detail(store, run.id).run.params
    assert params["data"] == record
    assert params["layers"] == [{"lr": 0.1}, {"lr": 0.1}]


def test_a_signal_handler_set_inside_a_runs_block_is_kept_after_it(workspace):
    """The block put its own saved handler back over the user's."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:

        def mine(_number, _frame):
            return None

        with start_run(name="handler", workspace=workspace):
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the block's
            signal.signal(signal.SIGTERM, mine)
        assert signal.getsignal(signal.SIGTERM) is mine
        with start_run(name="plain", workspace=workspace):
            pass
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_run_left_open_in_the_main_thread_at_exit_is_not_called_cut_off(workspace, store):
    """A block never left (an ExitStack not closed, a generator suspended inside it) was said
    to be a daemon thread's run cut off at exit, and failed."""
    child = script_in(
        workspace,
        """
        import contextlib, mldeck
        stack = contextlib.ExitStack()
        run = stack.enter_context(mldeck.start_run(name="left open"))
        run.log_metric("x", 1.0)
    """,
    )
    _out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    detail = run_detail(store, resolve_run(store, "left open"))
    assert detail.run.status == RunStatus.SUCCEEDED and keys(store, detail.run.id) == {"x": 1}


def test_a_store_refusing_a_runs_end_leaves_it_to_the_exit_hook_with_its_points(
    workspace, store, monkeypatch
):
    """A lock held past the busy timeout as the block ended left the run "running" for good
    and lost its buffered points (nothing tried again). Now the block's end says so and the
    exit hook records the end and the points."""
    from mldeck import tracking

    def locked():
        raise OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))

    run = start_run(name="locked at its end", workspace=workspace)
    write = run.store.write
    refused = r"could not be recorded as ended.*database is locked"
    with pytest.raises(MldeckError, match=refused), run:
        run.log_metric("loss", 1.0)
        monkeypatch.setattr(run.store, "write", locked)
    assert run_detail(store, run.id).run.status == RunStatus.RUNNING
    monkeypatch.setattr(run.store, "write", write)
    # Ended, though not yet recorded: a later run's worker threads still find their run.
    with start_run(name="next", workspace=workspace) as later:
        found: list = []
        worker = threading.Thread(target=lambda: found.append(tracking.active_run()))
        worker.start()
        worker.join()
        assert found == [later]
    tracking._end_open_runs()  # what the interpreter's exit runs
    assert run_detail(store, run.id).run.status == RunStatus.SUCCEEDED
    assert keys(store, run.id) == {"loss": 1}
    assert id(run) not in tracking._open_runs


def test_sigterm_cancels_a_run_whose_block_overlaps_another_that_ended(workspace, store):
    """Two asyncio tasks' blocks overlap without nesting: the first to end put SIGTERM back to
    its default while the other's block ran on, so SIGTERM killed the script with that run
    "running" and its points lost."""
    child = script_in(
        workspace,
        """
        import asyncio, mldeck
        async def trial(name, seconds, ready=None):
            with mldeck.start_run(name=name) as run:
                for i in range(seconds * 10):
                    run.log_metric("m", i)
                    await asyncio.sleep(0.1)
                    if ready is not None and i == 20:
                        print(ready, flush=True)
        async def main():
            short = asyncio.create_task(trial("short", 1))
            long = asyncio.create_task(trial("long", 60, ready="ready"))
            await short
            await long
        asyncio.run(main())
    """,
    )
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    _out, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert run_detail(store, resolve_run(store, "short")).run.status == RunStatus.SUCCEEDED
    detail = run_detail(store, resolve_run(store, "long"))
    assert detail.run.status == RunStatus.CANCELLED, detail.run.error
    assert keys(store, detail.run.id)["m"] >= 21


def test_an_error_typed_in_an_interactive_session_does_not_fail_its_run(workspace, store):
    """Every error shown by the interactive interpreter was kept, and the run, ended at exit,
    was marked failed with a NameError from a typo the session went on after."""
    env = {**os.environ, "MLDECK_WORKSPACE": str(workspace.root)}
    lines = 'import mldeck\nr = mldeck.start_run(name="repl")\nr.log_metric("a", 1)\n'
    lines += 'undefined_name\nr.log_metric("a", 2)\n'
    done = subprocess.run([sys.executable, "-i"], input=lines, env=env, cwd=workspace.root,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "NameError" in done.stderr
    detail = run_detail(store, resolve_run(store, "repl"))
    assert detail.run.status == RunStatus.SUCCEEDED and keys(store, detail.run.id) == {"a": 2}


def test_a_ctrl_c_ending_a_script_without_a_with_block_cancels_its_run(workspace, store):
    child = script_in(
        workspace,
        """
        import mldeck
        run = mldeck.start_run(name="no block")
        run.log_metric("x", 1.0)
        raise KeyboardInterrupt
    """,
    )
    child.communicate(timeout=60)
    # The exit status of a Ctrl-C, as without mldeck (the end's write at exit made it 1).
    assert child.returncode == -signal.SIGINT  # killed by it: 130 in a shell
    detail = run_detail(store, resolve_run(store, "no block"))
    assert detail.run.status == RunStatus.CANCELLED and keys(store, detail.run.id) == {"x": 1}


def test_misused_calls_are_refused_in_one_sentence(workspace, store, tmp_path):
    """Each raised another library's error (an IntegrityError from the store, an
    AttributeError, a TypeError, an OverflowError), or stored what later failed."""
    from mldeck.tracking import STEP_MAX

    artifact = tmp_path / "f.txt"
    artifact.write_text("x")
    with start_run(name="misused", workspace=workspace) as run:
        run.set_progress(0.5, None)  # no message
        with pytest.raises(MldeckError, match="progress is a number"):
            run.set_progress(10**400)
        with pytest.raises(MldeckError, match="metrics are a dict"):
            run.log_metrics([("a", 1)])
        run.log_metrics(MappingProxyType({"b": 1.0}))  # any mapping, as before
        with pytest.raises(MldeckError, match="read the same as text"):
            run.log_metrics({1: 5.0, "1": 6.0})
        run.log_metric("a", 1.0, step=STEP_MAX)
        with pytest.raises(MldeckError, match="every step up to"):
            run.log_metric("a", 2.0)  # the automatic step would be out of range
        assert run.log_artifact(artifact, name=123).name == "123"
        run.log_param("huge", 10**5000)  # past Python's int-to-text limit
    detail = run_detail(store, run.id)
    assert detail.run.params["huge"] == f"an integer of {(10**5000).bit_length()} bits"
    assert detail.run.progress == 1.0 and keys(store, run.id) == {"a": 1, "b": 1}


def test_a_script_outside_a_workspace_is_told_how_to_name_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLDECK_WORKSPACE", raising=False)
    with pytest.raises(MldeckError, match="pass workspace=DIR or set MLDECK_WORKSPACE"):
        start_run(name="nowhere")


def test_a_store_file_replaced_under_a_long_lived_process_is_opened_again(workspace, store):
    """A workspace deleted and made again under a notebook: the next run went to the deleted
    file, said recorded, and the new workspace had none."""
    from mldeck.store.engine import Store
    from mldeck.workspace import open_workspace_store

    with start_run(name="first", workspace=workspace.root):
        pass
    db = workspace.db_path
    copy = db.with_name("copy.db")
    with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    for old in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        old.unlink(missing_ok=True)  # the workspace's store deleted ...
    os.replace(copy, db)  # ... and made again: a new file where it was
    with start_run(name="second", workspace=workspace.root) as second:
        pass
    fresh: Store = open_workspace_store(workspace)
    try:
        assert run_detail(fresh, resolve_run(fresh, "second")).run.id == second.id
    finally:
        fresh.close()
