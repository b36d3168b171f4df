"""The store on a real PostgreSQL server (``MLDECK_DB_URL``), not SQLite.

The server is PostgreSQL 16 from the ``pgserver`` package (installed by the ``test`` extra),
started once for this module in a temporary folder and stopped after it; each test gets a
database of its own. The same code paths as on SQLite: schema creation and upgrades, tracking,
ingest and validation, the registry and its audit chain, drift, and writers in several
processes at once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

import mldeck
from mldeck import audit
from mldeck.data.ingest import ingest_file, revalidate
from mldeck.errors import StoreError
from mldeck.ml import registry
from mldeck.store.engine import SCHEMA_REVISION, open_store
from mldeck.store.models import AuditEvent, Metric, Run
from mldeck.store.queries import compare_runs, list_versions, model_version_detail
from mldeck.workspace import Workspace, init_workspace, load_workspace, open_workspace_store

from .conftest import at_once
from .test_data_ingest import EXPECTATIONS, GOOD, REJECTED, configure, put
from .test_ml_registry import add_version, model_bytes  # noqa: F401 (model_bytes is a fixture)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server of this test module: the URL of its administrative database."""
    import pgserver

    folder = tmp_path_factory.mktemp("pg")
    pg = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={folder}"
    finally:
        pg.cleanup()


@pytest.fixture
def pg_url(server: str) -> str:
    """A new, empty database on the server."""
    name = f"mldeck_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        # A server far from UTC: mldeck's sessions must not take its zone.
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'"))
    admin.dispose()
    return server.replace("/postgres?", f"/{name}?")


@pytest.fixture
def pg_workspace(tmp_path: Path, pg_url: str) -> Workspace:
    """A workspace whose store is the PostgreSQL database ([store] url)."""
    return with_store_url(init_workspace(tmp_path / "ws", name="on-postgres"), pg_url, EXPECTATIONS)


def with_store_url(ws: Workspace, url: str, extra: str = "") -> Workspace:
    """*ws* with ``[store] url`` set to *url* (and *extra* appended to its mldeck.toml)."""
    config = ws.config_path.read_text(encoding="utf-8")
    ws.config_path.write_text(config.replace('url = ""', f'url = "{url}"', 1) + extra)
    return load_workspace(ws.root)


def own_server(tmp_path_factory, tmp_path: Path, name: str) -> tuple[Path, Any, Workspace]:
    """A server of one test's own (to stop and start again), and a workspace on it."""
    import pgserver

    folder = tmp_path_factory.mktemp(name)
    pg = pgserver.get_server(folder, cleanup_mode="stop")
    url = f"postgresql+psycopg://postgres@/postgres?host={folder}"
    return folder, pg, with_store_url(init_workspace(tmp_path / "ws", name=name), url)


def test_a_new_database_gets_the_schema_once(pg_url):
    store = open_store(pg_url)
    assert store.engine.dialect.name == "postgresql" and not store.is_sqlite
    assert store.schema_revision() == SCHEMA_REVISION
    seq = store.change_seq()
    store.close()
    again = open_store(pg_url)  # already at the revision: nothing to do
    assert again.schema_revision() == SCHEMA_REVISION and again.change_seq() == seq
    with again.read() as session:
        zone = session.execute(text("SHOW timezone")).scalar()
    again.close()
    assert zone == "UTC"  # the database's default is America/New_York


def test_the_users_server_options_are_kept_beside_mldecks(pg_url, monkeypatch):
    """Options in the URL (a search_path: one schema per workspace) or in PGOPTIONS were
    replaced by mldeck's own: two workspaces on two schemas shared one store; and a writer
    waited forever behind a stuck one (no lock timeout)."""
    # A schema not made yet: said in words (the server's text named no schema at all).
    with pytest.raises(StoreError, match=r"the schema its search_path names does not exist on "
                                         r"the server \(create it first: CREATE SCHEMA name"):  # fmt: skip
        open_store(pg_url + "&options=-csearch_path%3Dteam_a")
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE SCHEMA team_a"))
    admin.dispose()
    store = open_store(pg_url + "&options=-csearch_path%3Dteam_a%20-cstatement_timeout%3D9000")
    with store.read() as session:
        shown = [session.execute(text(f"SHOW {n}")).scalar()
                 for n in ("search_path", "statement_timeout", "lock_timeout", "timezone")]  # fmt: skip
        tables = session.execute(text(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'team_a'"
        )).scalar()  # fmt: skip
    store.close()
    assert shown == ["team_a", "9s", "30s", "UTC"]
    assert tables > 10  # mldeck's tables are in the workspace's schema, not public
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=5s")
    store = open_store(pg_url)
    with store.read() as session:
        assert session.execute(text("SHOW lock_timeout")).scalar() == "5s"
    store.close()


def test_tracking_ingest_registry_and_audit(pg_workspace, model_bytes, tmp_path):  # noqa: F811
    store = open_workspace_store(pg_workspace)
    assert store.engine.dialect.name == "postgresql"
    before = datetime.now(UTC)
    for lr, loss in ((0.1, 0.5), (0.01, 0.25)):
        with mldeck.start_run(name="sweep", kind="train", params={"lr": lr},
                              workspace=pg_workspace.root) as run:  # fmt: skip
            run.log_metrics({"loss": loss, "acc": 1 - loss})
    with store.read() as session:
        runs = session.execute(select(Run).order_by(Run.id)).scalars().all()
        points = session.execute(select(func.count(Metric.id))).scalar()
    assert [r.status for r in runs] == ["succeeded", "succeeded"] and points == 4
    # Stored as UTC: read back, a time is the moment it was written, not shifted by a zone.
    started = runs[0].started_at.replace(tzinfo=UTC)
    assert before - timedelta(seconds=5) <= started <= datetime.now(UTC)
    compared = compare_runs(store, [r.id for r in runs])
    assert {f.name: f.values for f in compared.fields}["metric.loss"] == [0.5, 0.25]

    good = ingest_file(pg_workspace, store, put(tmp_path, "good.csv", GOOD))
    bad = ingest_file(pg_workspace, store, put(tmp_path, "bad.csv", REJECTED))
    assert (good.status, bad.status) == ("accepted", "rejected")
    assert ingest_file(pg_workspace, store, put(tmp_path, "again.csv", GOOD)).duplicate
    rows, total = list_versions(store)
    assert total == 2 and [r.label for r in rows] == ["events:v2", "events:v1"]
    assert revalidate(pg_workspace, store, bad.version_id).status == "rejected"

    add_version(pg_workspace, store, model_bytes["a"], metrics={"auc": 0.8})
    add_version(pg_workspace, store, model_bytes["b"], metrics={"auc": 0.82})
    for ref in ("churn:1", "churn:2"):
        registry.approve(store, ref, reason="fine")
    registry.promote(store, "churn:1", reason="first")
    registry.promote(store, "churn:2", reason="better")
    registry.rollback(store, "churn:1", reason="worse in production")
    assert registry.resolve(store, "churn@champion").version == 1
    # The events that took an alias from a version are found by its siblings' ids as text.
    taken = model_version_detail(store, registry.resolve(store, "churn:2").id).replaced_by
    assert [(e.action, e.details["reason"]) for e in taken] == [
        ("model_version.rollback", "worse in production")
    ]
    checked = audit.verify(store)
    assert checked.ok and checked.events >= 8, checked.problems
    store.close()


def test_a_new_batch_is_claimed_for_the_pipeline_once(pg_workspace, tmp_path):
    """The scheduler's query for unclaimed batches (an audit event's text id against a version's
    integer id) on PostgreSQL's stricter types."""
    from mldeck.jobs.scheduler import DeckScheduler
    from mldeck.store.models import RunTrigger

    store = open_workspace_store(pg_workspace)
    first = ingest_file(pg_workspace, store, put(tmp_path, "first.csv", GOOD))
    batch = ingest_file(pg_workspace, store, put(tmp_path, "batch.csv", GOOD + "4,1.0,a,more\n"),
                        trigger=RunTrigger.NEW_DATA)  # fmt: skip
    scheduler = DeckScheduler(pg_workspace, store, role="daemon")
    claimed = scheduler._claim_new_batches()
    assert [c[0] for c in claimed] == [batch.version_id] and first.version_id != batch.version_id
    assert scheduler._claim_new_batches() == []  # claimed once
    store.close()


def _append_events(url: str, worker: int, count: int, barrier, results) -> None:
    errors: list[str] = []
    try:
        store = open_store(url)
        barrier.wait(timeout=60)
        for i in range(count):
            try:
                with store.write() as session:
                    audit.append(session, "test.write", entity_type="worker", entity_id=worker,
                                 details={"i": i})  # fmt: skip
            except Exception as exc:
                errors.append(repr(exc))
        store.close()
    except Exception as exc:
        errors.append(repr(exc))
    results.put((worker, errors))


def test_writers_in_four_processes_keep_one_audit_chain(pg_url):
    """Each append reads the chain's head, then writes after it: without writers taking turns
    (BEGIN IMMEDIATE on SQLite, the state row's lock here) two would fork the chain."""
    store = open_store(pg_url)
    start = store.change_seq()
    outcome = dict(at_once(_append_events, [(pg_url, i, 25) for i in range(4)]))
    assert outcome == {i: [] for i in range(4)}
    checked = audit.verify(store)
    assert checked.ok and checked.events == 100, checked.problems[:3]
    with store.read() as session:
        heads = session.execute(select(func.count(func.distinct(AuditEvent.prev_hash)))).scalar()
    assert heads == 100  # every event follows a different one: a chain, not a tree
    assert store.change_seq() == start + 100
    store.close()


def test_the_cli_on_postgres(tmp_path, pg_url, cli):
    """MLDECK_DB_URL points the command line at the server."""
    root = init_workspace(tmp_path / "ws", name="cli-on-postgres").root
    with open(root / "mldeck.toml", "a", encoding="utf-8") as fh:
        fh.write(EXPECTATIONS)
    env = {"MLDECK_DB_URL": pg_url}
    path = put(tmp_path / "files", "good.csv", GOOD)
    done = cli("data", "ingest", str(path), cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    listed = cli("data", "list", cwd=root, env=env)
    assert "events:v1" in listed.stdout and "accepted" in listed.stdout
    verified = cli("audit", "verify", cwd=root, env=env)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stderr
    health = cli("jobs", "health", cwd=root, env=env)
    assert any(line.split()[:2] == ["store", "ok"] for line in health.stdout.splitlines())


def _one_line(done) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


def test_a_number_past_the_largest_id_and_a_read_only_role_are_one_line(tmp_path, pg_url, cli):
    """A number from 2**31 up was compared with PostgreSQL's INTEGER columns ('integer out of
    range', a traceback); a role that may only read got 90 lines for 'permission denied'."""
    root = init_workspace(tmp_path / "ws", name="ids").root
    env = {"MLDECK_DB_URL": pg_url}
    assert cli("runs", "list", cwd=root, env=env).returncode == 0  # the schema, made
    big = "99999999999"
    assert (
        _one_line(cli("runs", "show", big, cwd=root, env=env))
        == f"mldeck: error: no run {big} (see 'mldeck runs list')"
    )
    assert f"no model version churn:{big}" in _one_line(
        cli("models", "show", f"churn:{big}", cwd=root, env=env)
    )
    assert "no dataset version" in _one_line(cli("data", "show", big, cwd=root, env=env))
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE ROLE reader LOGIN"))
        conn.execute(text("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader"))
    admin.dispose()
    reader = {"MLDECK_DB_URL": pg_url.replace("postgres@", "reader@", 1)}
    assert cli("runs", "list", cwd=root, env=reader).returncode == 0
    refused = _one_line(cli("jobs", "add", "h", "--kind", "health", "--every", "1h", cwd=root,
                            env=reader))  # fmt: skip
    assert refused.startswith("mldeck: error: the store refuses this: InsufficientPrivilege")


def _try_lease(url: str, barrier, results) -> None:
    import time

    from mldeck.jobs.lease import LeaseKeeper

    store = open_store(url)
    keeper = LeaseKeeper(store, role="daemon", lease_seconds=15)
    barrier.wait(timeout=60)
    results.put(keeper.try_acquire())
    time.sleep(2)  # alive while the others decide: its lease is not a dead process's
    store.close()


def test_one_scheduler_takes_a_lease_left_by_a_dead_process(pg_url):
    """Four processes see the lease of a process that died at once: exactly one takes it (the
    others read it after, as SQLite's BEGIN IMMEDIATE makes them)."""
    from mldeck import provenance
    from mldeck.store.models import Lease

    store = open_store(pg_url)
    with store.write() as session:
        session.add(Lease(name="scheduler", holder="gone", role="daemon",
                          host=provenance.hostname(), pid=999_999, pid_started_at=1.0))  # fmt: skip
    taken = at_once(_try_lease, [(pg_url,)] * 4)
    store.close()
    assert sorted(taken) == [False, False, False, True]


def _open_new(url: str, barrier, results) -> None:
    barrier.wait(timeout=60)
    try:
        store = open_store(url)
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
        return
    results.put(store.schema_revision())
    store.close()


def test_processes_opening_one_new_database_at_once_make_its_schema_once(pg_url):
    """Two of three failed: each workspace's file lock does not reach another machine's (or
    another folder's) process."""
    opened = at_once(_open_new, [(pg_url,)] * 3)
    assert opened == [SCHEMA_REVISION] * 3


@pytest.fixture(params=["sqlite", "postgresql"])
def either_workspace(request, tmp_path) -> Workspace:
    """The same workspace on SQLite, then on PostgreSQL."""
    if request.param == "sqlite":
        return configure(init_workspace(tmp_path / "ws", name="on-sqlite"))
    return request.getfixturevalue("pg_workspace")


def test_long_names_and_odd_text_are_stored_alike_on_both(either_workspace, tmp_path):
    """SQLite stores a 300-character name in a VARCHAR(200) and text with NUL; PostgreSQL
    refuses both: names are cut, NUL replaced, the same on both; a metric's key or step that
    cannot be stored is refused when it is logged, and a run never succeeds with metrics lost."""
    ws = either_workspace
    store = open_workspace_store(ws)
    long_name = "week_" + "x" * 240 + ".csv"  # 249 characters: a file system takes 255
    outcome = ingest_file(ws, store, put(tmp_path, long_name, GOOD))
    assert outcome.status == "accepted"
    with mldeck.start_run(name="n" * 250, kind="train", workspace=ws.root) as run:
        run.log("hello\x00world")
        with pytest.raises(mldeck.MldeckError, match="1 to 200 characters"):
            run.log_metric("k" * 250, 1.0)
        with pytest.raises(mldeck.MldeckError, match="out of range"):
            run.log_metric("loss", 1.0, step=3_000_000_000)
        run.log_metric("loss", 0.5, step=2**31 - 1)
    with store.read() as session:
        stored = session.get(Run, run.id)
        names = (
            session.execute(select(Run.name).where(Run.name.startswith("ingest week_")))
            .scalars()
            .all()
        )
        logs = (
            session.execute(select(text("message FROM run_log WHERE run_id = :r")), {"r": run.id})
            .scalars()
            .all()
        )
        steps = session.execute(select(Metric.step).where(Metric.run_id == run.id)).scalars().all()
    assert stored.status == "succeeded" and len(stored.name) == 200 and stored.name.endswith("…")
    assert [len(n) for n in names] == [200]
    assert logs == ["hello\ufffdworld"] and steps == [2**31 - 1]
    store.close()


def test_the_scheduler_says_once_that_the_server_is_gone_and_again_when_it_is_back(
    tmp_path_factory, tmp_path, caplog
):
    """A server stopped under a running scheduler: one line saying the store cannot be reached
    (not SQLAlchemy's last traceback line every tick), then one when it works again. So too
    for a standby (a console waiting to act), which does not claim to work again between its
    looks; and a standby 'mldeck daemon' keeps waiting instead of dying of it."""
    import time

    import pgserver

    from mldeck.jobs.scheduler import DeckScheduler

    from .jobs_helpers import start_daemon, stop, wait_for

    folder, pg, ws = own_server(tmp_path_factory, tmp_path, "server-goes")
    store = open_workspace_store(ws)
    said: list[str] = []
    waiting: list[str] = []
    scheduler = DeckScheduler(ws, store, role="daemon", tick_seconds=0.2, on_event=said.append)
    standby = DeckScheduler(ws, store, role="console", tick_seconds=0.2, on_event=waiting.append)
    scheduler.start()
    daemon = None
    try:
        wait_for(lambda: any("acting" in line for line in said), "the scheduler to act")
        standby.start()
        daemon = start_daemon(ws, tmp_path / "daemon.out")
        wait_for(lambda: "standby:" in (tmp_path / "daemon.out").read_text(), "the daemon's wait")
        pg.cleanup()  # the server stops
        time.sleep(5)  # about 25 ticks, two looks of each standby
        for lines in (said, waiting):
            gone = [line for line in lines if "cannot be reached" in line]
            assert len(gone) == 1, lines
            assert "Background on this error" not in gone[0] and "\n" not in gone[0]
        assert "scheduler: working again" not in waiting
        # Nor a 70-line traceback in the log before that line: an outage is no bug.
        assert not [r for r in caplog.records if r.getMessage() == "scheduler tick failed"]
        assert daemon.poll() is None, (tmp_path / "daemon.out").read_text()
        pg = pgserver.get_server(folder, cleanup_mode="stop")  # and starts again
        for lines in (said, waiting):
            wait_for(lambda lines=lines: "scheduler: working again" in lines, "working again", 30)
        assert daemon.poll() is None, (tmp_path / "daemon.out").read_text()
    finally:
        if daemon is not None:
            stop(daemon)
        standby.stop()
        scheduler.stop()
        store.close()
        pg.cleanup()


def test_a_pipeline_cut_short_by_the_server_going_away_runs_again_once_it_is_back(
    tmp_path_factory, tmp_path
):
    """The acting scheduler's pipeline fails while the server is down (its step runs cannot be
    written): once the store is back, the batch goes through it again, without a takeover."""
    import pgserver

    from mldeck.jobs.scheduler import PIPELINE_START, DeckScheduler
    from mldeck.store.models import DriftReport, RunTrigger

    from .jobs_helpers import wait_for

    folder, pg, ws = own_server(tmp_path_factory, tmp_path, "pipeline-cut")
    store = open_workspace_store(ws)
    ingest_file(ws, store, put(tmp_path, "reference.csv", GOOD), as_reference=True)
    said: list[str] = []
    scheduler = DeckScheduler(ws, store, role="daemon", tick_seconds=0.2, on_event=said.append)
    scheduler.start()

    def seen(query):
        with store.read() as session:
            return session.execute(query).first()

    try:
        wait_for(lambda: scheduler.acting and scheduler.runner is not None, "the scheduler to act")
        slots = scheduler.runner._slots
        slots.acquire()  # the batch's pipeline waits for this slot
        batch = ingest_file(ws, store, put(tmp_path, "batch.csv", GOOD + "4,1.0,a,more\n"),
                            trigger=RunTrigger.NEW_DATA)  # fmt: skip
        scheduler.wake()
        wait_for(lambda: seen(select(AuditEvent.id).where(AuditEvent.action == PIPELINE_START)),
                 "the batch's pipeline to be claimed")  # fmt: skip
        pg.cleanup()  # the server stops
        slots.release()  # the pipeline goes on, and cannot write its runs
        failed = wait_for(lambda: [m for m in said if m.startswith("pipeline:")], "the failure")
        assert "cannot be reached" in failed[0] and "free some space" not in failed[0]
        assert "MldeckError(" not in failed[0]
        pg = pgserver.get_server(folder, cleanup_mode="stop")  # and starts again
        report = select(DriftReport.id).where(DriftReport.dataset_version_id == batch.version_id)
        wait_for(lambda: seen(report), "the batch's drift check after the outage")
        assert any("its pipeline did not finish; running it again" in m for m in said), said
    finally:
        scheduler.stop(timeout=60)
        store.close()
        pg.cleanup()


def test_a_command_that_loses_the_server_on_its_way_says_so_in_one_line(tmp_path_factory, tmp_path):
    """'mldeck data ingest' of a file whose bytes come late (a named pipe): the server stops
    while it waits for them; the command ends with one line, not SQLAlchemy's tracebacks."""
    import os
    import subprocess
    import sys
    import time

    _folder, pg, ws = own_server(tmp_path_factory, tmp_path, "command-server-goes")
    store = open_workspace_store(ws)
    store.close()
    pipe = tmp_path / "late.csv"
    os.mkfifo(pipe)
    env = {k: v for k, v in os.environ.items() if k not in ("MLDECK_WORKSPACE", "MLDECK_DB_URL")}
    command = subprocess.Popen(
        [sys.executable, "-m", "mldeck.cli", "-w", str(ws.root), "data", "ingest", str(pipe)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        # The pipe opens for writing once the command reads it (its run has started); tried
        # without blocking, so that a command that never reads it fails the test, not hangs it.
        deadline = time.monotonic() + 120
        while True:
            try:
                fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # ENXIO: no reader yet
                assert command.poll() is None, command.communicate()
                assert time.monotonic() < deadline, "the command never read the file"
                time.sleep(0.05)
        pg.cleanup()  # the server stops
        os.set_blocking(fd, True)
        with os.fdopen(fd, "w") as writer:
            writer.write(GOOD)
        _out, err = command.communicate(timeout=120)
    finally:
        if command.poll() is None:
            command.kill()
        pg.cleanup()
    assert command.returncode == 2, err
    assert err.startswith("mldeck: error: the store cannot be reached: ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


async def test_the_console_says_once_that_the_server_is_gone(tmp_path_factory, tmp_path):
    """Screens switched while the server is down: the top bar and one notice say the store
    cannot be reached; no "Unexpected error" pop-up per screen."""
    from mldeck.tui.app import MldeckApp
    from mldeck.tui.widgets.topbar import TopBar

    from .tui.conftest import settle, until

    _folder, pg, ws = own_server(tmp_path_factory, tmp_path, "console-server-goes")
    store = open_workspace_store(ws)
    app = MldeckApp(ws, store, poll_seconds=0.2, watch_incoming=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            pg.cleanup()
            await until(pilot, lambda: "cannot be reached" in app.store_problem, timeout=30)
            for key in "2345678":
                await pilot.press(key)
                await pilot.pause(0.2)
            notices = [str(n.message) for n in app._notifications]
            titles = [n.title for n in app._notifications]
            assert "Unexpected error" not in titles, notices
            assert sum("cannot be reached" in n for n in notices) <= 1, notices
            assert "cannot be reached" in str(app.screen.query_one(TopBar).problem)
    finally:
        store.close()
        pg.cleanup()


def test_init_on_a_database_that_does_not_exist_leaves_nothing_to_block_a_retry(
    tmp_path, server, cli
):
    """The first store cannot be opened: the half-made workspace is taken away, so the same
    command works once the database exists."""
    name = f"later_{uuid.uuid4().hex[:8]}"
    url = server.replace("/postgres?", f"/{name}?")
    failed = cli("init", "ws", cwd=tmp_path, env={"MLDECK_DB_URL": url})
    assert failed.returncode == 2 and f'database "{name}" does not exist' in failed.stderr
    assert list(tmp_path.iterdir()) == []
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    again = cli("init", "ws", cwd=tmp_path, env={"MLDECK_DB_URL": url})
    assert again.returncode == 0, again.stderr


def test_a_workspace_with_data_pointed_at_an_empty_database_is_refused(tmp_path, pg_url):
    """Its datasets and artifacts were recorded in another store: an empty one would disown
    them silently. Said, and nothing is created in the empty database."""
    ws = configure(init_workspace(tmp_path / "ws", name="moved"))
    store = open_workspace_store(ws)  # its own SQLite store
    ingest_file(ws, store, put(tmp_path, "good.csv", GOOD))
    store.close()
    moved = with_store_url(ws, pg_url)
    with pytest.raises(mldeck.MldeckError, match=r"is an empty database while .* holds files"):
        open_workspace_store(moved)
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        assert tables.scalar() == 0
    engine.dispose()


def test_a_drift_check_of_a_feature_named_longer_than_its_column(tmp_path, pg_url):
    """Rows written past the ORM (a drift check's feature rows and metric points) were not cut
    to their columns: PostgreSQL refused a 210-character feature name and the check failed."""
    from mldeck.monitor.check import check_batch
    from mldeck.store.models import FeatureDrift

    ws = with_store_url(init_workspace(tmp_path / "ws", name="long-names"), pg_url)
    store = open_workspace_store(ws)
    long = "x" * 210
    rows = "".join(f"{i},{i % 7}.5\n" for i in range(200))
    ingest_file(ws, store, put(tmp_path, "ref.csv", f"id,{long}\n{rows}"), as_reference=True)
    other = "".join(f"{i},{i % 5}.25\n" for i in range(1000, 1200))
    batch = ingest_file(ws, store, put(tmp_path, "batch.csv", f"id,{long}\n{other}"))
    result = check_batch(ws, store, batch.version_id)
    with store.read() as session:
        features = session.execute(select(FeatureDrift.feature)).scalars().all()
        keys = session.execute(select(Metric.key).where(Metric.run_id == result.run_id)).scalars()
        assert any(k.startswith("drift.xxx") and len(k) == 200 for k in keys)
    (cut,) = [f for f in features if f.startswith("xxx")]
    assert cut == long[:199] + "…"
    store.close()


def _log_from_a_forked_child(index: int) -> int:
    run = mldeck.active_run()
    for line in range(10):
        run.log(f"child {index} line {line}")
    return index


def test_a_tracked_script_forking_workers_keeps_every_line(pg_workspace):
    """Children forked inside a run used the parent's connection to the server: the run failed
    and a third of the lines were lost."""
    import multiprocessing

    from mldeck.store.models import RunLog

    with mldeck.start_run(name="forks", workspace=pg_workspace.root) as run:
        with multiprocessing.get_context("fork").Pool(3) as pool:
            assert sorted(pool.map(_log_from_a_forked_child, range(6))) == list(range(6))
        run.log("parent after the pool")
    store = open_workspace_store(pg_workspace)
    with store.read() as session:
        status = session.get(Run, run.id).status
        lines = session.execute(select(func.count(RunLog.id)).where(RunLog.run_id == run.id))
        assert (status, lines.scalar()) == ("succeeded", 61)
    store.close()


def test_a_model_name_holding_a_nul_is_not_found_not_a_driver_error(pg_workspace):
    """NUL is replaced in what is stored, not in what is looked up: PostgreSQL refused the
    query ('text fields cannot contain NUL')."""
    from mldeck.errors import NotFound

    with pytest.raises(NotFound, match="no registered model"):
        mldeck.load_model("ch\x00urn@champion", workspace=pg_workspace.root)


def test_a_file_of_2_gib_or_more_is_recorded(pg_url):
    """Sizes were PostgreSQL INTEGERs: logging a 2.2 GB artifact failed the run."""
    from mldeck.store.models import Artifact

    store = open_store(pg_url)
    with store.write() as session:
        session.add(Artifact(name="big.bin", path="x", sha256="0" * 64, size_bytes=2_306_867_200))
    with store.read() as session:
        assert session.execute(select(Artifact.size_bytes)).scalar() == 2_306_867_200
    store.close()


def test_a_server_outage_is_a_few_lines_in_the_daemons_log_not_a_traceback_per_fire(
    tmp_path_factory, tmp_path, caplog
):
    """Each fire during an outage logged three tracebacks (1,210 lines in 27 s)."""
    import logging
    import time

    import pgserver

    from mldeck.jobs.scheduler import DeckScheduler
    from mldeck.jobs.schedules import add

    from .jobs_helpers import wait_for

    folder, pg, ws = own_server(tmp_path_factory, tmp_path, "outage-log")
    store = open_workspace_store(ws)
    add(store, "beat", "health", every="1s")
    said: list[str] = []
    scheduler = DeckScheduler(ws, store, role="daemon", tick_seconds=0.2, on_event=said.append)
    caplog.set_level(logging.WARNING)
    scheduler.start()
    try:
        wait_for(lambda: scheduler.acting and scheduler.runner is not None, "the scheduler to act")
        caplog.clear()
        pg.cleanup()  # the server stops for a few fire times
        time.sleep(5)
        tracebacks = [r for r in caplog.records if r.exc_info]
        pg = pgserver.get_server(folder, cleanup_mode="stop")
        wait_for(lambda: "scheduler: working again" in said, "the scheduler to work again")
    finally:
        scheduler.stop(timeout=60)
        store.close()
        pg.cleanup()
    assert len(tracebacks) <= 1, [r.getMessage() for r in tracebacks]


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        (["CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
          "INSERT INTO alembic_version VALUES ('ae1027a6acf')", "CREATE TABLE orders (id int)"],
         "is not an mldeck store: its schema revision 'ae1027a6acf' is another application's"),
        # Numbered as mldeck's, and at one of its revisions: upgraded as mldeck's before.
        (["CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
          "INSERT INTO alembic_version VALUES ('0003')", "CREATE TABLE artifact (id int)"],
         "is not an mldeck store: its schema revision '0003' is another application's"),
        (["CREATE TABLE metric (id int)"], "has tables named as mldeck's (metric, ...)"),
        (["CREATE TABLE orders (id int)", "CREATE TABLE customers (id int)"],
         "holds other tables (customers, orders); it was left untouched"),
    ],
    ids=["other-alembic", "numbered-alembic", "same-name", "other-tables"],
)  # fmt: skip
def test_another_applications_database_is_refused_untouched(pg_url, sql, said):
    """Another application's revision read as 'written by a newer mldeck'; a database of other
    tables got mldeck's 21 tables among them in silence."""
    from mldeck.errors import StoreError

    admin = create_engine(pg_url)
    with admin.begin() as conn:
        for statement in sql:
            conn.execute(text(statement))
    with pytest.raises(StoreError, match=re.escape(said)):
        open_store(pg_url)
    with admin.connect() as conn:
        tables = set(conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )).scalars())  # fmt: skip
    admin.dispose()
    assert "run" not in tables and "store_state" not in tables


def test_a_backup_of_a_workspace_on_postgresql_says_to_use_the_servers_tools(
    pg_workspace, tmp_path
):
    from mldeck.backup import backup_workspace
    from mldeck.errors import MldeckError

    store = open_workspace_store(pg_workspace)
    try:
        with pytest.raises(MldeckError, match=r"back the database up with its own tools \(pg_dump"):
            backup_workspace(pg_workspace, store, tmp_path / "copy")
    finally:
        store.close()
    assert not (tmp_path / "copy").exists()
