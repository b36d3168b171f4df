"""The metadata store: tables, engine settings, transactions, schema upgrades, bad files,
artifacts and the queries the console and the CLI read through."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import random
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from mldeck.errors import MldeckError, NotFound, StoreError
from mldeck.store import artifacts, engine, queries
from mldeck.store.engine import (
    APPLICATION_ID,
    KNOWN_REVISIONS,
    SCHEMA_REVISION,
    check_local_filesystem,
    filesystem_type,
    open_store,
)
from mldeck.store.models import (
    Alert,
    Alias,
    Approval,
    Artifact,
    AuditEvent,
    Dataset,
    DatasetVersion,
    DriftReport,
    FeatureDrift,
    GateResult,
    HealthCheck,
    Lease,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    RunInput,
    RunKind,
    RunLog,
    RunStatus,
    RunTrigger,
    Schedule,
    StoreState,
    utcnow,
)
from mldeck.store.queries import RunFilter
from mldeck.workspace import load_workspace, open_workspace_store

from .conftest import at_once

AWARE = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
# The same instant as AWARE, written with a +05:30 offset: it must come back as UTC.
OFFSET = AWARE.astimezone(timezone(timedelta(hours=5, minutes=30)))


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def new_store_file(path: Path) -> Path:
    """Create an mldeck store at *path* and close it (its WAL checkpointed into the file)."""
    open_store(sqlite_url(path)).close()
    return path


def count(store, model) -> int:
    with store.read() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


# -- tables -----------------------------------------------------------------------------------


def one_of_each(session) -> list[SQLModel]:
    """A row in every table (but store_state, which exists from the start), flushed for ids."""
    rows: list[SQLModel] = []

    def add(obj):
        session.add(obj)
        session.flush()
        rows.append(obj)
        return obj

    dataset = add(Dataset(name="churn", description='ünïcode ✓ "quoted"', created_at=AWARE))
    run = add(
        Run(
            name="train-1",
            kind=RunKind.TRAIN,
            trigger=RunTrigger.SCHEDULE,
            status=RunStatus.SUCCEEDED,
            progress=0.5,
            progress_message="half way",
            created_at=OFFSET,
            started_at=AWARE,
            ended_at=AWARE + timedelta(seconds=5),
            heartbeat_at=AWARE,
            params={"lr": 0.1, "layers": [64, 32], "nested": {"a": None, "b": True}, "s": "é"},
            tags={"team": "ml"},
            code_version={"git_commit": "abc123", "git_dirty": False},
            environment={"python": "3.11", "packages": {"numpy": "2.0"}},
            error="Traceback (most recent call last):\nValueError: boom",
            user="ana",
            host="box",
            pid=123,
            pid_started_at=456.5,
        )
    )
    add(Run(name="child", parent_run_id=run.id))
    version = add(
        DatasetVersion(
            dataset_id=dataset.id,
            version=1,
            sha256="a" * 64,
            source_path="incoming/batch.csv",
            stored_path=".mldeck/datasets/aa/aaaa",
            file_format="csv",
            size_bytes=10,
            n_rows=3,
            n_cols=2,
            status="accepted",
            schema_={"x": "Float64", "y": "Int64"},
            profile={"x": {"mean": 1.5, "nulls": 0}},
            report={"checks": [{"name": "nulls", "ok": True}]},
            arrived_at=AWARE,
            run_id=run.id,
        )
    )
    add(RunLog(run_id=run.id, ts=AWARE, level="warning", message="two\nlines"))
    add(Metric(run_id=run.id, key="loss", value=0.25, step=3, ts=AWARE))
    add(Metric(run_id=run.id, key="nan", value=None, step=0, ts=OFFSET))
    add(RunInput(run_id=run.id, dataset_version_id=version.id, role="train"))
    artifact = add(
        Artifact(
            run_id=run.id,
            name="model.skops",
            kind="model",
            path=".mldeck/artifacts/bb/" + "b" * 64,
            sha256="b" * 64,
            size_bytes=99,
            created_at=AWARE,
        )
    )
    model = add(RegisteredModel(name="churn-model", description="d", created_at=AWARE))
    model_version = add(
        ModelVersion(
            model_id=model.id,
            version=1,
            run_id=run.id,
            artifact_id=artifact.id,
            status="approved",
            metrics={"auc": 0.91},
            schema_={"x": "Float64"},
            code_version={"git_commit": "abc123"},
            created_at=AWARE,
        )
    )
    add(Alias(model_id=model.id, name="champion", model_version_id=model_version.id))
    add(
        GateResult(
            model_version_id=model_version.id,
            run_id=run.id,
            gate="min_auc",
            metric="auc",
            threshold=0.8,
            value=0.91,
            passed=True,
            detail="0.91 >= 0.8",
            created_at=AWARE,
        )
    )
    add(
        Approval(
            model_version_id=model_version.id,
            decision="approved",
            user="ana",
            reason="better",
            automatic=True,
            created_at=AWARE,
        )
    )
    current = add(DatasetVersion(dataset_id=dataset.id, version=2, sha256="c" * 64))
    report = add(
        DriftReport(
            run_id=run.id,
            dataset_version_id=current.id,
            reference_version_id=version.id,
            model_version_id=model_version.id,
            n_features=2,
            n_drifted=1,
            drift_share=0.5,
            dataset_drift=True,
            summary={"features": ["x"], "prediction_drift": None},
            created_at=AWARE,
        )
    )
    add(
        FeatureDrift(
            report_id=report.id,
            feature="x",
            method="ks",
            statistic=0.3,
            p_value=0.01,
            threshold=0.05,
            drifted=True,
        )
    )
    add(
        Alert(
            rule="drift",
            severity="critical",
            status="acknowledged",
            dedup_key="drift:x",
            title="Drift on x",
            message="m",
            details={"share": 0.5},
            occurrences=3,
            created_at=AWARE,
            updated_at=OFFSET,
            acknowledged_by="ana",
            acknowledged_at=AWARE,
        )
    )
    add(
        AuditEvent(
            ts=AWARE,
            actor="ana",
            action="promote",
            entity_type="model_version",
            entity_id="1",
            details={"from": None, "to": 1},
            prev_hash="0" * 64,
            hash="d" * 64,
        )
    )
    add(HealthCheck(run_id=run.id, name="disk", status="ok", message="fine", value=0.42))
    add(Schedule(name="nightly", kind="train", cron="0 2 * * *", params={"model": "churn"},
                 paused=True, retries=2, last_fire_at=AWARE, run_requested_at=OFFSET,
                 last_run_id=run.id, last_status="succeeded", last_run_at=AWARE))  # fmt: skip
    add(Lease(name="scheduler", holder="h" * 32, role="daemon", host="box", pid=7,
              pid_started_at=1.5, acquired_at=AWARE, heartbeat_at=OFFSET))  # fmt: skip
    return rows


def assert_aware_utc(values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, datetime):
            assert value.utcoffset() == timedelta(0), f"{key} came back as {value!r}"


def test_every_table_round_trips(store):
    with store.write() as session:
        written = [
            (type(row), inspect(row).identity, row.model_dump()) for row in one_of_each(session)
        ]
    covered = {model.__tablename__ for model, _, _ in written} | {StoreState.__tablename__}
    assert covered == set(SQLModel.metadata.tables)

    with store.read() as session:
        for model, identity, expected in written:
            got = session.get(model, identity)
            assert got is not None, model.__name__
            values = got.model_dump()
            assert values == expected, model.__name__
            assert_aware_utc(values)
        state = session.get(StoreState, 1)
        assert state.change_seq >= 1
        assert_aware_utc(state.model_dump())

    with store.read() as session:
        run = session.execute(select(Run).where(Run.name == "train-1")).scalar_one()
    assert run.created_at == AWARE and run.created_at.tzinfo is not None
    assert run.params["nested"] == {"a": None, "b": True}
    assert run.params["layers"] == [64, 32]


def test_foreign_keys_are_enforced(store):
    before = store.change_seq()
    with pytest.raises(IntegrityError), store.write() as session:
        session.add(RunLog(run_id=4242, message="orphan line"))
    with pytest.raises(IntegrityError), store.write() as session:
        session.add(Metric(run_id=4242, key="loss", value=1.0))
    assert count(store, RunLog) == 0
    assert count(store, Metric) == 0
    assert store.change_seq() == before  # a failed write is not a change


@pytest.mark.parametrize("mode", ["read", "write"])
def test_connection_pragmas(store, mode):
    with getattr(store, mode)() as session:
        conn = session.connection()

        def pragma(name: str):
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2  # FULL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 5000
        assert pragma("application_id") == APPLICATION_ID


def test_write_begins_immediate_and_read_deferred(store):
    statements: list[str] = []
    event.listen(
        store.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql)
    )
    with store.write() as session:
        session.execute(text("SELECT 1"))
    with store.read() as session:
        session.execute(text("SELECT 2"))
    begins = [s for s in statements if s.upper().startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]


def test_open_write_session_holds_the_write_lock(store):
    other = sqlite3.connect(store.sqlite_path, timeout=0, isolation_level=None)
    try:
        with store.write() as session:
            session.connection()  # the transaction has begun
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released at commit
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_read_session_does_not_block_a_writer(store):
    with store.write() as session:
        session.add(Run(name="before"))
    other = sqlite3.connect(store.sqlite_path, timeout=0, isolation_level=None)
    try:
        with store.read() as session:
            assert session.execute(select(func.count(Run.id))).scalar_one() == 1
            # While the read transaction holds its snapshot, a writer that never waits succeeds.
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO run_log (run_id, ts, level, message) "
                "VALUES (1, '2026-01-01 00:00:00.000000', 'info', 'from another process')"
            )
            other.execute("COMMIT")
            # and the reader keeps its consistent snapshot.
            assert session.execute(select(func.count(RunLog.id))).scalar_one() == 0
    finally:
        other.close()
    assert count(store, RunLog) == 1


def test_change_seq_counts_write_transactions(store):
    start = store.change_seq()
    with store.write() as session:
        for i in range(3):
            session.add(Run(name=f"r{i}"))
    assert store.change_seq() == start + 1
    with store.write():
        pass
    assert store.change_seq() == start + 2
    with pytest.raises(RuntimeError), store.write() as session:
        session.add(Run(name="rolled back"))
        raise RuntimeError("abandon")
    with store.read() as session:
        session.execute(select(Run)).all()
    assert store.change_seq() == start + 2
    assert count(store, Run) == 3


def _read_then_write(url: str, worker: int, writes: int, barrier, results) -> None:
    errors: list[str] = []
    try:
        store = open_store(url)
        barrier.wait(timeout=60)
        for _ in range(writes):
            try:
                with store.write() as session:
                    last = session.execute(select(func.max(Metric.step))).scalar()
                    step = 0 if last is None else last + 1
                    session.add(Metric(run_id=1, key=f"w{worker}", value=float(worker), step=step))
            except Exception as exc:
                errors.append(repr(exc))
        store.close()
    except Exception as exc:
        errors.append(repr(exc))
    results.put((worker, errors))


def test_four_processes_read_then_write_without_errors(tmp_path):
    path = new_store_file(tmp_path / "store.db")
    store = open_store(sqlite_url(path))
    with store.write() as session:
        session.add(Run(name="shared"))
    outcome = dict(at_once(_read_then_write, [(sqlite_url(path), i, 30) for i in range(4)]))
    assert outcome == {i: [] for i in range(4)}
    with store.read() as session:
        rows = session.execute(select(Metric.key, Metric.step)).all()
    store.close()
    assert len(rows) == 120
    # Each transaction read the highest step and wrote the next one: no two saw the same value.
    assert sorted(step for _, step in rows) == list(range(120))
    assert sorted(key for key, _ in rows) == sorted(f"w{i}" for i in range(4) for _ in range(30))


# -- schema and upgrades ------------------------------------------------------------------------


def alembic_script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", "mldeck.store:migrations")
    return ScriptDirectory.from_config(config)


def test_fresh_store_is_at_the_schema_revision(store):
    assert store.schema_revision() == SCHEMA_REVISION
    assert queries.store_info(store).schema_revision == SCHEMA_REVISION
    assert store.change_seq() == 0


def test_schema_revision_is_the_migrations_head():
    script = alembic_script()
    assert script.get_heads() == [SCHEMA_REVISION]
    assert {rev.revision for rev in script.walk_revisions()} == set(KNOWN_REVISIONS)
    assert KNOWN_REVISIONS[-1] == SCHEMA_REVISION


def test_models_and_migrations_agree(store):
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, SQLModel.metadata)
        conn.rollback()
    assert diffs == []


def test_store_from_a_newer_mldeck_is_refused_untouched(tmp_path, file_state):
    path = new_store_file(tmp_path / "store.db")
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    before = file_state(path)
    with pytest.raises(StoreError, match="newer mldeck") as err:
        open_store(sqlite_url(path))
    assert "\n" not in str(err.value)
    assert "9999_from_the_future" in str(err.value)
    assert file_state(path) == before


def _open_new_workspace(root: str, barrier, results) -> None:
    try:
        calls = []
        original = engine._upgrade

        def counting_upgrade(eng):
            calls.append(1)
            original(eng)

        engine._upgrade = counting_upgrade
        ws = load_workspace(Path(root))
        barrier.wait(timeout=60)
        store = open_workspace_store(ws)
        revision = store.schema_revision()
        store.close()
        results.put(("ok", len(calls), revision))
    except Exception as exc:
        results.put(("error", repr(exc), None))


def test_processes_opening_a_new_workspace_at_once_create_the_schema_once(workspace):
    assert not workspace.db_path.exists()
    n = 3
    outcome = at_once(_open_new_workspace, [(str(workspace.root),)] * n)
    assert [status for status, _, _ in outcome] == ["ok"] * n, outcome
    assert sum(upgrades for _, upgrades, _ in outcome) == 1
    assert {revision for _, _, revision in outcome} == {SCHEMA_REVISION}
    con = sqlite3.connect(workspace.db_path)
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (SCHEMA_REVISION,)
        ]
        assert con.execute("SELECT id, change_seq FROM store_state").fetchall() == [(1, 0)]
    finally:
        con.close()


def test_empty_file_is_initialised(tmp_path):
    path = tmp_path / "store.db"
    path.touch()
    store = open_store(sqlite_url(path))
    try:
        assert store.schema_revision() == SCHEMA_REVISION
        assert store.change_seq() == 0
    finally:
        store.close()


def test_store_at_base_revision_is_upgraded(tmp_path):
    """An older store (here: the state before the first revision) is brought up to date."""
    path = tmp_path / "store.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.commit()
    con.close()
    store = open_store(sqlite_url(path))
    try:
        assert store.schema_revision() == SCHEMA_REVISION
        with store.write() as session:
            session.add(Run(name="after upgrade"))
        assert count(store, Run) == 1
    finally:
        store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        con.close()


def test_store_with_tables_but_no_revision_is_refused_untouched(tmp_path, file_state):
    path = new_store_file(tmp_path / "store.db")
    con = sqlite3.connect(path)
    con.execute("DELETE FROM alembic_version")
    con.commit()
    con.close()
    before = file_state(path)
    with pytest.raises(StoreError, match="but no mldeck schema revision") as err:
        open_store(sqlite_url(path))
    assert "\n" not in str(err.value)
    assert file_state(path) == before


def test_upgrade_off_refuses_an_old_store(tmp_path):
    path = tmp_path / "store.db"
    path.touch()
    with pytest.raises(StoreError, match=SCHEMA_REVISION):
        open_store(sqlite_url(path), upgrade=False)


# -- files that are not a usable store --------------------------------------------------------


def random_bytes_file(path: Path) -> Path:
    path.write_bytes(random.Random(1234).randbytes(16_384))
    return path


def foreign_sqlite_file(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users (name) VALUES ('ada')")
    con.commit()
    con.close()
    return path


def foreign_alembic_file(path: Path) -> Path:
    """Another application's database that Alembic also manages."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.execute("INSERT INTO alembic_version VALUES ('3f2a9c1b7d00')")
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    return path


def truncated_store_file(path: Path) -> Path:
    store = open_store(sqlite_url(path))
    with store.write() as session:
        for i in range(200):
            session.add(Run(name=f"run-{i}", params={"i": i, "pad": "x" * 200}))
    store.close()
    data = path.read_bytes()
    assert len(data) > 16 * 4096
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (random_bytes_file, "not an SQLite database"),
        (foreign_sqlite_file, "not an mldeck store"),
        (foreign_alembic_file, "not an mldeck store"),
        (truncated_store_file, "damaged"),
    ],
    ids=["random-bytes", "foreign-sqlite", "foreign-alembic", "truncated"],
)
def test_bad_store_file_is_refused_untouched(tmp_path, file_state, make, message):
    path = make(tmp_path / "store.db")
    before = file_state(path)
    with pytest.raises(StoreError, match=message) as err:
        open_store(sqlite_url(path))
    assert "\n" not in str(err.value)
    assert str(path) in str(err.value)
    assert file_state(path) == before


def test_bad_store_in_a_workspace_is_refused(workspace, file_state):
    random_bytes_file(workspace.db_path)
    before = file_state(workspace.db_path)
    with pytest.raises(StoreError, match="not an SQLite database"):
        open_workspace_store(workspace)
    assert file_state(workspace.db_path) == before


MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
/dev/sda1 / ext4 rw,relatime 0 0
overlay /mldeck-fs/overlay overlay rw 0 0
tmpfs /mldeck-fs/tmp tmpfs rw 0 0
server:/export /mldeck-fs/nfs nfs4 rw,vers=4.2 0 0
//nas/share /mldeck-fs/cifs cifs rw 0 0
me@host:/data /mldeck-fs/sshfs fuse.sshfs rw 0 0
/dev/sdb1 /mldeck-fs/nfs/local ext4 rw 0 0
server:/other /mldeck-fs/with\\040space nfs rw 0 0
"""


@pytest.mark.parametrize(
    ("folder", "fstype"),
    [("nfs", "nfs4"), ("cifs", "cifs"), ("sshfs", "fuse.sshfs"), ("with space", "nfs")],
)
def test_network_filesystems_are_refused(folder, fstype):
    path = Path("/mldeck-fs") / folder / "ws" / ".mldeck" / "store.db"
    assert filesystem_type(path, MOUNTS) == fstype
    with pytest.raises(StoreError, match="network filesystem") as err:
        check_local_filesystem(path, MOUNTS)
    assert fstype in str(err.value)


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/home/me/ws/.mldeck/store.db", "ext4"),
        ("/mldeck-fs/overlay/ws/store.db", "overlay"),
        ("/mldeck-fs/tmp/store.db", "tmpfs"),
        ("/mldeck-fs/nfs/local/ws/store.db", "ext4"),  # the longest mount point wins
        ("/mldeck-fs/nfsx/store.db", "ext4"),  # a name that merely starts like a mount point
    ],
)
def test_local_filesystems_are_accepted(path, fstype):
    assert filesystem_type(Path(path), MOUNTS) == fstype
    check_local_filesystem(Path(path), MOUNTS)


def test_open_store_checks_the_filesystem_before_creating_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "filesystem_type", lambda path, mounts_text=None: "nfs4")
    path = tmp_path / "store.db"
    with pytest.raises(StoreError, match="network filesystem"):
        open_store(sqlite_url(path))
    assert list(tmp_path.iterdir()) == []


def test_missing_store_folder_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(sqlite_url(tmp_path / "nope" / "store.db"))


# -- artifacts --------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".incoming-")]


def _refused_insert(url: str, **connect_args) -> BaseException:
    """The OperationalError SQLite raises for an insert through an engine on *url*."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    writer = create_engine(url, connect_args=connect_args)
    try:
        with pytest.raises(OperationalError) as caught, writer.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        writer.dispose()
    return caught.value


def test_a_store_that_cannot_be_written_is_not_said_out_of_reach(tmp_path):
    """SQLite's 'attempt to write a readonly database' read 'the store cannot be reached'."""
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (x)")
    refused = _refused_insert(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert engine.store_problem(refused) == (
        "the store could not be written: attempt to write a readonly database "
        "(its file or folder is read-only)"
    )


def test_a_store_locked_past_the_timeout_is_said_busy(tmp_path):
    """'database is locked' read 'the store cannot be reached' (a network or a file problem)."""
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # another process writing, and writing on
    try:
        refused = _refused_insert(f"sqlite:///{path}", timeout=0.1)
    finally:
        holder.close()
    assert engine.store_problem(refused) == (
        "the store is busy: another process held its write lock past the timeout "
        "(database is locked); try again"
    )


def test_put_file_is_content_addressed(tmp_path):
    store_dir = tmp_path / "artifacts"
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights" * 1000)
    sha, stored, size = artifacts.put_file(store_dir, source)
    assert sha == hashlib.sha256(source.read_bytes()).hexdigest()
    assert stored == store_dir / sha[:2] / sha
    assert stored.read_bytes() == source.read_bytes()
    assert size == 7000
    artifacts.verify(stored, sha)
    again = tmp_path / "copy.bin"
    again.write_bytes(source.read_bytes())
    assert artifacts.put_file(store_dir, again) == (sha, stored, size)
    assert [p for p in store_dir.rglob("*") if p.is_file()] == [stored]
    assert leftovers(store_dir) == []


@pytest.mark.parametrize(
    "umask, source_mode, mode",
    [(0o002, 0o666, 0o664), (0o022, 0o666, 0o644), (0o077, 0o666, 0o600), (0o002, 0o600, 0o600)],
)
def test_a_stored_file_takes_the_mode_the_umask_gives(tmp_path, umask, source_mode, mode):
    """A team sharing a workspace (group-writable, umask 002) could not read the datasets and
    models another member stored: they were always 0600. A private file stays private."""
    source = tmp_path / "batch.csv"
    source.write_bytes(b"a,b\n1,2\n")
    source.chmod(source_mode)
    before = os.umask(umask)
    try:
        _, stored, _ = artifacts.put_file(tmp_path / "datasets", source)
    finally:
        os.umask(before)
    assert stored.stat().st_mode & 0o777 == mode


class BreaksMidway(io.RawIOBase):
    """A stream that hands out one chunk, then fails like a disk or a network would."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError("device went away")
        return b"partial bytes" * 100


def test_put_stream_leaves_nothing_behind_when_the_copy_fails(tmp_path):
    store_dir = tmp_path / "artifacts"
    stream = BreaksMidway()
    with pytest.raises(OSError, match="device went away"):
        artifacts.put_stream(store_dir, stream)
    assert stream.calls == 2
    assert [p for p in store_dir.rglob("*") if p.is_file()] == []


def test_put_file_errors_are_clear(tmp_path):
    with pytest.raises(artifacts.ArtifactError, match="no such file"):
        artifacts.put_file(tmp_path / "a", tmp_path / "missing.bin")
    with pytest.raises(artifacts.ArtifactError, match="folder"):
        artifacts.put_file(tmp_path / "a", tmp_path)


@pytest.mark.parametrize("damage", ["modified", "truncated", "missing", "folder"])
def test_verify_detects_damage(tmp_path, damage):
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * 64)
    sha, stored, _ = artifacts.put_file(tmp_path / "artifacts", source)
    if damage == "modified":
        data = bytearray(stored.read_bytes())
        data[100] ^= 0xFF
        stored.write_bytes(bytes(data))
    elif damage == "truncated":
        stored.write_bytes(stored.read_bytes()[:1000])
    elif damage == "missing":
        stored.unlink()
    else:
        stored.unlink()
        stored.mkdir()
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.verify(stored, sha)
    assert "\n" not in str(err.value)


def test_resolve_stays_inside_the_workspace(tmp_path):
    root = tmp_path / "ws"
    (root / ".mldeck" / "artifacts").mkdir(parents=True)
    assert artifacts.resolve(root, ".mldeck/artifacts/ab/cd") == root / ".mldeck/artifacts/ab/cd"
    for bad in ("../../etc/passwd", "/etc/passwd", ".mldeck/../../outside"):
        with pytest.raises(artifacts.ArtifactError, match="outside the workspace"):
            artifacts.resolve(root, bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(artifacts.ArtifactError, match="outside the workspace"):
        artifacts.resolve(root, "link/secret")


# -- queries ------------------------------------------------------------------------------------


def test_run_filter_parse():
    flt = RunFilter.parse("status:failed kind:train  churn model")
    assert flt == RunFilter(text="churn model", status="failed", kind="train")
    assert RunFilter.parse("") == RunFilter()
    assert RunFilter.parse("trigger:drift").trigger == "drift"
    assert RunFilter.parse("owner:me").text == "owner:me"  # not a filter key: plain text


def test_run_filter_unknown_value_lists_choices():
    with pytest.raises(MldeckError) as err:
        RunFilter.parse("status:bogus")
    message = str(err.value)
    assert "'bogus'" in message
    for status in RunStatus:
        assert status.value in message
    with pytest.raises(MldeckError, match="unknown kind"):
        RunFilter.parse("kind:")


@settings(max_examples=60, deadline=None)
@given(
    status=st.none() | st.sampled_from([s.value for s in RunStatus]),
    kind=st.none() | st.sampled_from([k.value for k in RunKind]),
    trigger=st.none() | st.sampled_from([t.value for t in RunTrigger]),
    words=st.lists(st.text("abcxyz_-.0123456789é", min_size=1, max_size=8), max_size=3),
)
def test_run_filter_describe_parses_back(status, kind, trigger, words):
    flt = RunFilter(text=" ".join(words), status=status, kind=kind, trigger=trigger)
    assert RunFilter.parse(flt.describe()) == flt


def add_runs(store, specs) -> dict[str, int]:
    """Runs from (name, status, kind, trigger, age) tuples; returns name -> id of the last one."""
    ids = {}
    now = utcnow()
    with store.write() as session:
        for name, status, kind, trigger, age in specs:
            run = Run(name=name, status=status, kind=kind, trigger=trigger, created_at=now - age)
            session.add(run)
            session.flush()
            ids[name] = run.id
    return ids


RUNS = [
    ("ingest-a", "succeeded", "ingest", "new_data", timedelta(hours=5)),
    ("train_1", "failed", "train", "manual", timedelta(hours=4)),
    ("trainx1", "succeeded", "train", "schedule", timedelta(hours=3)),
    ("train_1", "succeeded", "train", "manual", timedelta(hours=2)),
    ("score", "running", "score", "schedule", timedelta(hours=1)),
    ("old", "orphaned", "drift", "drift", timedelta(days=3)),
]


def test_list_runs_filters_orders_and_counts(store):
    add_runs(store, RUNS)
    rows, total = queries.list_runs(store)
    assert total == 6
    assert [r.name for r in rows] == ["score", "train_1", "trainx1", "train_1", "ingest-a", "old"]
    assert all(r.created_at.tzinfo is not None for r in rows)

    rows, total = queries.list_runs(store, limit=2)
    assert (len(rows), total) == (2, 6)
    rows, total = queries.list_runs(store, limit=2, offset=5)
    assert ([r.name for r in rows], total) == (["old"], 6)

    def names(query: str) -> list[str]:
        rows, total = queries.list_runs(store, RunFilter.parse(query))
        assert total == len(rows)
        return [r.name for r in rows]

    assert names("status:failed") == ["train_1"]
    assert names("kind:train") == ["train_1", "trainx1", "train_1"]
    assert names("kind:train status:succeeded") == ["train_1", "trainx1"]
    assert names("trigger:schedule") == ["score", "trainx1"]
    assert names("TRAIN") == ["train_1", "trainx1", "train_1"]  # case-insensitive
    assert names("train_1") == ["train_1", "train_1"]  # '_' is not a wildcard
    assert names("status:running kind:train") == []
    assert names("²") == []  # a digit that is not an id does not crash


def test_list_runs_text_matches_an_id(store):
    ids = add_runs(store, RUNS)
    rows, _ = queries.list_runs(store, RunFilter(text=str(ids["score"])))
    assert [r.id for r in rows] == [ids["score"]]
    rows, total = queries.list_runs(store, RunFilter(text="9" * 30))
    assert (rows, total) == ([], 0)


def test_run_rows_serialise(store):
    add_runs(store, RUNS[:1])
    (row,), _ = queries.list_runs(store)
    data = row.as_dict()
    assert data["name"] == "ingest-a"
    assert datetime.fromisoformat(data["created_at"]).utcoffset() == timedelta(0)
    assert data["duration_seconds"] is None


def test_resolve_run_by_id_and_newest_name(store):
    ids = add_runs(store, RUNS)
    assert queries.resolve_run(store, str(ids["score"])) == ids["score"]
    assert queries.resolve_run(store, " score ") == ids["score"]
    newest_train = ids["train_1"]  # add_runs keeps the last id per name: the 2-hour-old one
    assert queries.resolve_run(store, "train_1") == newest_train
    with pytest.raises(NotFound, match="no run 999"):
        queries.resolve_run(store, "999")
    with pytest.raises(NotFound, match="'nope'"):
        queries.resolve_run(store, "nope")
    with pytest.raises(NotFound):
        queries.resolve_run(store, "9" * 30)  # beyond SQLite's integers
    with pytest.raises(NotFound):
        queries.run_detail(store, 999)


def test_champions_follow_the_alias(store):
    with store.write() as session:
        model = RegisteredModel(name="churn")
        other = RegisteredModel(name="fraud")
        session.add_all([model, other])
        session.flush()
        versions = [ModelVersion(model_id=model.id, version=v) for v in (1, 2, 3)]
        fraud_v1 = ModelVersion(model_id=other.id, version=1)
        session.add_all([*versions, fraud_v1])
        session.flush()
        session.add(Alias(model_id=model.id, name="champion", model_version_id=versions[1].id))
        session.add(Alias(model_id=model.id, name="challenger", model_version_id=versions[2].id))
        session.add(Alias(model_id=other.id, name="challenger", model_version_id=fraud_v1.id))
    assert queries.champions(store) == [queries.Champion("churn", 2, versions[1].id)]


def test_overview_counts(store):
    add_runs(store, RUNS)
    with store.write() as session:
        dataset = Dataset(name="d")
        session.add(dataset)
        session.flush()
        session.add(DatasetVersion(dataset_id=dataset.id, version=1, sha256="1" * 64))
        session.add(
            DatasetVersion(dataset_id=dataset.id, version=2, sha256="2" * 64, status="accepted")
        )
        model = RegisteredModel(name="m")
        session.add(model)
        session.flush()
        version = ModelVersion(model_id=model.id, version=1)
        session.add(version)
        session.flush()
        session.add(Alias(model_id=model.id, name="champion", model_version_id=version.id))
        for severity, status in [
            ("critical", "open"),
            ("warning", "acknowledged"),
            ("warning", "resolved"),
        ]:
            session.add(
                Alert(rule="r", severity=severity, status=status, dedup_key=severity, title="t")
            )
    info = queries.overview(store, last=3)
    assert info.runs_by_status == {"succeeded": 3, "failed": 1, "running": 1, "orphaned": 1}
    assert info.runs_total == 6
    assert info.runs_last_24h == 5
    assert info.failed_last_24h == 1  # the orphaned run is three days old
    assert info.datasets == 1
    assert info.dataset_versions_by_status == {"pending": 1, "accepted": 1}
    assert (info.registered_models, info.model_versions) == (1, 1)
    assert info.open_alerts_by_severity == {"critical": 1, "warning": 1}
    assert info.acknowledged_alerts == 1  # not 'open' any more: someone is on it
    assert [c.model for c in info.champions] == ["m"]
    assert [r.name for r in info.last_runs] == ["score", "train_1", "trainx1"]
    assert info.store.backend == "sqlite"
    assert info.store.journal_mode == "wal"
    assert info.store.schema_revision == SCHEMA_REVISION
    assert info.store.size_bytes > 0
    assert info.store.change_seq == store.change_seq()


def test_integrity_check_ok(store):
    add_runs(store, RUNS)
    assert queries.integrity_check(store) == "ok"


def test_metric_series_is_ordered_and_thinned(store):
    add_runs(store, RUNS[:1])
    with store.write() as session:
        for step in reversed(range(25)):
            session.add(Metric(run_id=1, key="loss", value=step / 10, step=step))
    series = queries.metric_series(store, 1, "loss")
    assert [s for s, _ in series] == list(range(25))
    thinned = queries.metric_series(store, 1, "loss", limit=10)
    assert [s for s, _ in thinned] == list(range(0, 25, 3))


def _store_at(path: Path, revision: str, *, change_seq: int) -> Any:
    """An engine on a new SQLite store at schema *revision*, as an older mldeck made it."""
    from alembic import command

    old = engine.make_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", "mldeck.store:migrations")
    with old.execution_options(mldeck_write=True).connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.exec_driver_sql(
            "INSERT INTO store_state (id, change_seq, changed_at) "
            f"VALUES (1, {change_seq}, '2026-01-01')"
        )
        conn.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")
        conn.commit()
    return old


def test_store_made_at_an_older_revision_is_upgraded_keeping_its_data(tmp_path):
    """A workspace made by an older mldeck (schema 0001) opens in this one, its rows intact."""
    path = tmp_path / "store.db"
    old = _store_at(path, "0001", change_seq=7)
    with old.execution_options(mldeck_write=True).connect() as conn:
        conn.exec_driver_sql(
            "INSERT INTO dataset (name, description, created_at) VALUES ('churn', '', '2026-01-01')"
        )
        conn.commit()
    old.dispose()

    store = open_store(f"sqlite:///{path}", lock_path=tmp_path / "lock")
    try:
        assert store.schema_revision() == SCHEMA_REVISION != "0001"
        with store.read() as session:
            dataset = session.execute(select(Dataset)).scalar_one()
        assert dataset.name == "churn" and dataset.reference_version_id is None
        assert store.change_seq() == 7
    finally:
        store.close()


def test_a_store_at_the_previous_revision_with_linked_rows_is_upgraded(tmp_path):
    """0004 rebuilt dataset_version on SQLite: with rows referring to it (a run's input), the
    rebuild failed on the foreign key, and every command of every existing workspace with it."""
    from sqlmodel import Session

    path = tmp_path / "store.db"
    old = _store_at(path, "0003", change_seq=3)
    with Session(old) as session:
        dataset = Dataset(name="churn")
        session.add(dataset)
        session.flush()
        version = DatasetVersion(dataset_id=dataset.id, version=1, sha256="a" * 64,
                                 size_bytes=10, n_rows=2, status="accepted")  # fmt: skip
        run = Run(name="ingest", kind="ingest", status="succeeded")
        session.add_all([version, run])
        session.flush()
        session.add(RunInput(run_id=run.id, dataset_version_id=version.id))
        session.add(Artifact(run_id=run.id, name="a", path="p", sha256="b" * 64, size_bytes=5))
        session.commit()
    old.dispose()
    store = open_store(f"sqlite:///{path}", lock_path=tmp_path / "lock")
    try:
        assert store.schema_revision() == SCHEMA_REVISION
        with store.read() as session:
            assert session.execute(select(DatasetVersion.size_bytes)).scalar_one() == 10
            assert session.execute(select(func.count()).select_from(RunInput)).scalar_one() == 1
    finally:
        store.close()


def _count_runs_elsewhere(path: Path) -> int:
    """Another process's view of the store: it reads, then closes its last connection."""
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT count(*) FROM run").fetchone()[0]
    finally:
        con.close()


def test_opening_the_store_twice_in_a_process_keeps_its_locks(tmp_path):
    """POSIX locks belong to the process: closing any descriptor of the file drops them all. A
    second open of the store in the same process (the console's scheduler, a tracked run) must
    not read the file outside SQLite, or another process closing its connection finds no one
    using the WAL, deletes it, and the first store's later writes are seen by no one else."""
    path = new_store_file(tmp_path / "store.db")
    first = open_store(sqlite_url(path))
    with first.write() as session:
        session.add(Run(name="before"))
    second = open_store(sqlite_url(path))  # the same file, the same process
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_count_runs_elsewhere, (path,)) == 1
        assert Path(f"{path}-wal").exists()  # still in use: the other process left it
        with first.write() as session:
            session.add(Run(name="after"))
        assert pool.apply(_count_runs_elsewhere, (path,)) == 2
    second.close()
    first.close()


@pytest.fixture
def read_only_view(tmp_path):
    """A read-only view of a folder: its mode for a user, a read-only bind mount for root (who
    writes whatever the mode)."""
    source, view = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    view.mkdir()
    views: list[Path] = []

    def make() -> Path:
        if os.geteuid() != 0:
            for path in (source, *source.rglob("*")):
                path.chmod(0o555 if path.is_dir() else 0o444)
            views.append(source)
            return source
        for args in (["mount", "--bind", str(source), str(view)],
                     ["mount", "-o", "remount,bind,ro", str(view)]):  # fmt: skip
            if subprocess.run(args, capture_output=True).returncode != 0:
                subprocess.run(["umount", str(view)], capture_output=True)
                pytest.skip("root without the right to mount: no read-only view to test")
        views.append(view)
        return view

    yield source, make
    for path in views:
        if path == view:
            subprocess.run(["umount", str(view)], check=True)
        else:
            for item in (source, *source.rglob("*")):
                item.chmod(0o755 if item.is_dir() else 0o644)


def test_a_store_in_a_read_only_folder_says_so_not_damaged(read_only_view, file_state):
    source, make = read_only_view
    path = source / "store.db"
    open_store(sqlite_url(path)).close()
    before = file_state(path)
    view = make()
    with pytest.raises(StoreError, match="read-only") as err:
        open_store(sqlite_url(view / "store.db"))
    assert "damaged" not in str(err.value)
    assert file_state(path) == before
