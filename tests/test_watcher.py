"""The incoming-folder watcher, on real files, a real store and real watchfiles events."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from mldeck.data import watcher as watcher_module
from mldeck.data.ingest import IngestOutcome
from mldeck.data.watcher import IncomingWatcher, is_candidate_name, not_ingested
from mldeck.demo import generate_batch, write_batch
from mldeck.store.engine import Store
from mldeck.store.queries import VersionRow, list_versions
from mldeck.workspace import Workspace, init_workspace, load_workspace, open_workspace_store

from .conftest import clean_environ

START = datetime(2024, 3, 4)
SETTLE = 0.2


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll *condition* until it holds; fail naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def make_workspace(root: Path, settle: float = SETTLE) -> Workspace:
    ws = init_workspace(root, name="watched")
    with open(ws.config_path, "a", encoding="utf-8") as fh:
        fh.write(f'\n[data]\ndataset = "churn"\nsettle_seconds = {settle}\n')
    return load_workspace(root)


def csv_bytes(n_rows: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    generate_batch(n_rows, start=START, seed=seed).write_csv(
        buffer, datetime_format="%Y-%m-%d %H:%M:%S"
    )
    return buffer.getvalue()


def versions(store: Store) -> list[VersionRow]:
    rows, _ = list_versions(store, limit=10_000)
    return rows


def incoming_files(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.incoming_dir.iterdir())


class Recorder:
    """Collects what the watcher reports, from its thread."""

    def __init__(self) -> None:
        self.outcomes: list[IngestOutcome] = []
        self.events: list[str] = []
        self._lock = threading.Lock()

    def ingested(self, outcome: IngestOutcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def event(self, line: str) -> None:
        with self._lock:
            self.events.append(line)

    def said(self, text: str) -> bool:
        with self._lock:
            return any(text in line for line in self.events)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path / "ws")


@pytest.fixture
def store(ws: Workspace) -> Iterator[Store]:
    opened = open_workspace_store(ws)
    yield opened
    opened.close()


@pytest.fixture
def watchers() -> Iterator[list[IncomingWatcher]]:
    """Every watcher a test makes is stopped at the end, whatever happened."""
    made: list[IncomingWatcher] = []
    yield made
    for watcher in made:
        watcher.stop(timeout=30)


@pytest.fixture
def watch(ws, store, watchers) -> Callable[..., tuple[IncomingWatcher, Recorder]]:
    """Make a watcher on the test's workspace with a recorder attached; start it unless told."""

    def make(start: bool = True) -> tuple[IncomingWatcher, Recorder]:
        recorder = Recorder()
        watcher = IncomingWatcher(ws, store, on_ingested=recorder.ingested, on_event=recorder.event)
        watchers.append(watcher)
        if start:
            assert watcher.start()
            wait_for(lambda: recorder.said("watching "), "the watcher to be watching")
        return watcher, recorder

    return make


def test_temporary_names_are_never_candidates():
    for name in ("a.csv.tmp", "a.part", "a.PARTIAL", "a.csv.crdownload", "a.csv~", ".a.csv"):
        assert not is_candidate_name(name), name
    for name in ("a.csv", "batch 3.parquet", "données.ndjson", "noextension"):
        assert is_candidate_name(name), name


def test_a_file_written_slowly_is_taken_once_complete(tmp_path, watchers):
    # A generous settle window: the pieces below are written well within it.
    ws = make_workspace(tmp_path / "ws", settle=1.0)
    store = open_workspace_store(ws)
    recorder = Recorder()
    watcher = IncomingWatcher(ws, store, on_ingested=recorder.ingested)
    watchers.append(watcher)
    try:
        assert watcher.start()
        data = csv_bytes(400, seed=1)
        path = ws.incoming_dir / "slow.csv"
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            # The watcher has seen the half-written file and is waiting for it to settle.
            wait_for(lambda: watcher.pending == 1, "the partial file to be noticed")
            for start in range(len(data) // 2, len(data), 4096):
                fh.write(data[start : start + 4096])
                fh.flush()
                time.sleep(0.02)
        wait_for(lambda: recorder.outcomes, "the file to be ingested")
        wait_for(lambda: not path.exists(), "the file to leave incoming/")
        (outcome,) = recorder.outcomes
        assert outcome.sha256 == hashlib.sha256(data).hexdigest()
        (row,) = versions(store)
        assert row.n_rows == 400
        assert row.status == "accepted"
    finally:
        watcher.stop()
        store.close()


@pytest.mark.skipif(not hasattr(fcntl, "F_SETLEASE"), reason="Linux's file leases tell it")
def test_a_writer_that_pauses_past_the_settle_window_keeps_its_file(tmp_path, watchers):
    """The writer (another process) holds the file open and pauses well past the window: the
    file is not taken, so no rows are lost, until the writer closes it."""
    ws = make_workspace(tmp_path / "ws", settle=0.2)
    store = open_workspace_store(ws)
    recorder = Recorder()
    watcher = IncomingWatcher(ws, store, on_ingested=recorder.ingested)
    watchers.append(watcher)
    data = csv_bytes(400, seed=2)
    path, go = ws.incoming_dir / "paused.csv", tmp_path / "go"
    (tmp_path / "half").write_bytes(data[: len(data) // 2])
    (tmp_path / "rest").write_bytes(data[len(data) // 2 :])
    writer = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, sys, time\n"
        f"half, rest, go = (pathlib.Path(p) for p in {[str(tmp_path / 'half'), str(tmp_path / 'rest'), str(go)]!r})\n"
        f"with open({str(path)!r}, 'wb') as fh:\n"
        "    fh.write(half.read_bytes()); fh.flush()\n"
        "    while not go.exists(): time.sleep(0.05)\n"
        "    fh.write(rest.read_bytes())\n"
    )])  # fmt: skip
    try:
        assert watcher.start()
        wait_for(lambda: watcher.pending == 1, "the half-written file to be noticed")
        time.sleep(1.0)  # five settle windows with the file unchanged, but open
        assert recorder.outcomes == [] and path.exists()
        go.touch()
        assert writer.wait(timeout=30) == 0
        wait_for(lambda: recorder.outcomes, "the file to be ingested once closed")
        (row,) = versions(store)
        assert row.n_rows == 400 and recorder.outcomes[0].sha256 == hashlib.sha256(data).hexdigest()
    finally:
        go.touch()
        writer.wait(timeout=30)
        watcher.stop()
        store.close()


def test_a_file_renamed_from_a_temporary_name_is_taken_once(ws, store, watch):
    watcher, recorder = watch()
    data = csv_bytes(50, seed=2)
    part = ws.incoming_dir / "batch.csv.part"
    hidden = ws.incoming_dir / ".batch.csv.swp"
    sub = ws.incoming_dir / "later"
    sub.mkdir()
    (sub / "parked.csv").write_bytes(csv_bytes(10, seed=3))
    part.write_bytes(data[:100])
    hidden.write_bytes(data[:100])
    # Nothing to wait for: give the watcher several settle windows to take something wrongly.
    time.sleep(SETTLE * 4)
    assert versions(store) == []
    with open(part, "ab") as fh:
        fh.write(data[100:])
    part.rename(ws.incoming_dir / "batch.csv")
    wait_for(lambda: recorder.outcomes, "the renamed file to be ingested")
    assert [o.sha256 for o in recorder.outcomes] == [hashlib.sha256(data).hexdigest()]
    assert len(versions(store)) == 1
    # Hidden and temporary files, and subfolders, are left alone.
    assert incoming_files(ws) == [".batch.csv.swp", "later"]
    assert (sub / "parked.csv").exists()
    assert watcher.running


def test_a_burst_of_100_files_is_ingested_completely(ws, store, watch):
    watcher, recorder = watch()
    contents = [csv_bytes(3, seed=100 + i) for i in range(100)]
    assert len({hashlib.sha256(c).digest() for c in contents}) == 100
    for i, content in enumerate(contents):
        (ws.incoming_dir / f"burst_{i:03d}.csv").write_bytes(content)
    wait_for(lambda: len(recorder.outcomes) >= 100, "100 files to be ingested", timeout=45)
    wait_for(lambda: incoming_files(ws) == [], "incoming/ to be empty")
    rows = versions(store)
    assert len(rows) == 100
    assert {r.sha256 for r in rows} == {hashlib.sha256(c).hexdigest() for c in contents}
    assert sorted(r.version for r in rows) == list(range(1, 101))
    assert len(recorder.outcomes) == 100
    assert not any(o.duplicate for o in recorder.outcomes)
    assert watcher.counts["accepted"] == 100


@pytest.mark.parametrize(
    ("reference", "note"),
    [
        (None, "[data] reference data/reference.csv not found"),
        (b"", "[data] reference data/reference.csv is rejected (churn:v1), so it is not the"),
    ],
    ids=["missing", "rejected"],
)
def test_what_became_of_the_configured_reference_is_said_once(tmp_path, reference, note):
    ws = init_workspace(tmp_path / "ws", name="watched")
    with open(ws.config_path, "a", encoding="utf-8") as fh:
        fh.write('\n[data]\ndataset = "churn"\nreference = "data/reference.csv"\n'
                 f"settle_seconds = {SETTLE}\n")  # fmt: skip
    ws = load_workspace(ws.root)
    if reference is not None:
        (ws.root / "data" / "reference.csv").write_bytes(reference)
    for i in range(3):
        (ws.incoming_dir / f"batch_{i}.csv").write_bytes(csv_bytes(5, seed=40 + i))
    store = open_workspace_store(ws)
    try:
        recorder = Recorder()
        watcher = IncomingWatcher(ws, store, on_ingested=recorder.ingested, on_event=recorder.event)
        outcomes = watcher.scan_once()
    finally:
        store.close()
    assert len(outcomes) == 3 and all(note in n for o in outcomes for n in o.notes)
    # Said once for the three files, before the first file's own line.
    said = [line for line in recorder.events if note in line]
    assert len(said) == 1, recorder.events
    assert recorder.events.index(said[0]) < next(
        i for i, line in enumerate(recorder.events) if line.startswith("batch_")
    )


def test_the_same_content_twice_is_one_version(ws, store, watch):
    _, recorder = watch()
    data = csv_bytes(20, seed=4)
    (ws.incoming_dir / "monday.csv").write_bytes(data)
    wait_for(lambda: len(recorder.outcomes) == 1, "the first file")
    (ws.incoming_dir / "monday copy.csv").write_bytes(data)
    wait_for(lambda: len(recorder.outcomes) == 2, "the second file")
    first, second = recorder.outcomes
    assert not first.duplicate and second.duplicate
    assert second.version_id == first.version_id
    assert len(versions(store)) == 1
    wait_for(lambda: incoming_files(ws) == [], "incoming/ to be empty")
    assert recorder.said("monday copy.csv: same content as churn:v1")


def test_restart_takes_waiting_files_and_never_duplicates(ws, store, watch):
    early = [csv_bytes(10, seed=10 + i) for i in range(3)]
    for i, content in enumerate(early):
        (ws.incoming_dir / f"early_{i}.csv").write_bytes(content)
    # Files that landed while nothing watched: scan_once takes them (what start does first).
    first, recorder = watch(start=False)
    outcomes = first.scan_once()
    assert sorted(o.source for o in outcomes) == sorted(
        str(ws.incoming_dir / f"early_{i}.csv") for i in range(3)
    )
    assert len(versions(store)) == 3 and incoming_files(ws) == []
    assert len(recorder.outcomes) == 3

    assert first.start()
    wait_for(lambda: recorder.said("watching "), "the watcher to start")
    (ws.incoming_dir / "again.csv").write_bytes(early[0])  # dropped again after the restart
    wait_for(lambda: len(recorder.outcomes) == 4, "the repeated file")
    assert recorder.outcomes[-1].duplicate
    first.stop()
    assert not first.running

    # Landed while stopped: taken by the next watcher; the old ones are not ingested again.
    late = csv_bytes(10, seed=20)
    (ws.incoming_dir / "late.csv").write_bytes(late)
    second, recorder2 = watch()
    wait_for(lambda: recorder2.outcomes, "the file that landed while stopped")
    second.stop()
    assert [o.sha256 for o in recorder2.outcomes] == [hashlib.sha256(late).hexdigest()]
    assert len(versions(store)) == 4
    assert incoming_files(ws) == []


def test_unreadable_files_are_rejected_and_quarantined_and_the_watcher_goes_on(ws, store, watch):
    good = generate_batch(30, start=START, seed=5)
    parquet = ws.root / "good.parquet"
    write_batch(good, parquet)
    broken = {
        "latin1.csv": "customer_id,plan\n1,économique\n".encode("latin-1"),
        "cut.parquet": parquet.read_bytes()[:-200],
        "empty.csv": b"",
    }
    watcher, recorder = watch()
    for name, data in broken.items():
        (ws.incoming_dir / name).write_bytes(data)
    wait_for(lambda: len(recorder.outcomes) == 3, "the three unreadable files")
    by_name = {Path(o.source).name: o for o in recorder.outcomes}
    assert set(by_name) == set(broken)
    expected_reason = {"latin1.csv": "UTF-8", "cut.parquet": "Parquet", "empty.csv": "empty"}
    for name, outcome in by_name.items():
        assert outcome.status == "rejected"
        assert any(expected_reason[name] in reason for reason in outcome.reasons), outcome.reasons
        copy = ws.root / outcome.quarantine_path
        assert copy.parent == ws.quarantine_dir
        assert copy.read_bytes() == broken[name]
        assert copy.with_name(copy.name + ".report.json").is_file()
        assert recorder.said(f"{name}: churn:v{outcome.version} rejected")
    (ws.incoming_dir / "fine.parquet").write_bytes(parquet.read_bytes())
    wait_for(lambda: len(recorder.outcomes) == 4, "the good file after the bad ones")
    assert recorder.outcomes[-1].status == "accepted"
    assert recorder.outcomes[-1].dataset == "churn"
    assert watcher.running
    assert incoming_files(ws) == []


def test_a_file_deleted_right_after_it_was_noticed_is_no_crash(ws, store, watch):
    watcher, recorder = watch()
    doomed = ws.incoming_dir / "doomed.csv"
    doomed.write_bytes(csv_bytes(10, seed=6)[:50])
    wait_for(lambda: watcher.pending == 1, "the file to be noticed")
    doomed.unlink()

    # Two files settled together: whichever is taken first, the hook deletes the other one
    # between the moment it was found complete and the moment it would be read.
    pair = [ws.incoming_dir / "left.csv", ws.incoming_dir / "right.csv"]

    def delete_the_other(outcome: IngestOutcome) -> None:
        recorder.ingested(outcome)
        for path in pair:
            if str(path) != outcome.source:
                path.unlink(missing_ok=True)

    watcher.on_ingested = delete_the_other
    for i, path in enumerate(pair):
        path.write_bytes(csv_bytes(10, seed=7 + i))
    wait_for(lambda: recorder.outcomes, "one of the pair")
    wait_for(lambda: incoming_files(ws) == [], "incoming/ to be empty")
    watcher.on_ingested = recorder.ingested
    (ws.incoming_dir / "after.csv").write_bytes(csv_bytes(10, seed=9))
    wait_for(lambda: len(recorder.outcomes) == 2, "the file after the vanished ones")
    assert watcher.running
    assert len(versions(store)) == 2
    assert watcher.pending == 0


def test_a_name_with_spaces_and_unicode(ws, store, watch):
    _, recorder = watch()
    name = "semaine 3 — données.csv"
    write_batch(generate_batch(25, start=START, seed=11), ws.incoming_dir / name)
    wait_for(lambda: recorder.outcomes, "the file")
    (row,) = versions(store)
    assert Path(row.source_path).name == name
    assert row.n_rows == 25 and row.status == "accepted"
    assert recorder.said(f"{name}: churn:v1 accepted")
    assert incoming_files(ws) == []


def test_a_name_in_another_encoding_is_ingested(ws, store, watch):
    """A name made on a latin-1 system ('caf\xe9') is not UTF-8: the file is ingested all the
    same, its name stored and said with U+FFFD for the byte that cannot be read."""
    _, recorder = watch()
    written = ws.root / "batch.csv"  # polars writes no such name: moved in under it
    write_batch(generate_batch(25, start=START, seed=12), written)
    os.replace(written, ws.incoming_dir / os.fsdecode(b"caf\xe9 batch.csv"))
    wait_for(lambda: recorder.outcomes, "the file")
    (row,) = versions(store)
    assert Path(row.source_path).name == "caf\ufffd batch.csv"
    assert row.n_rows == 25 and row.status == "accepted"
    assert recorder.said("caf\ufffd batch.csv: churn:v1 accepted")
    assert incoming_files(ws) == []


def test_a_file_ingest_fails_on_is_quarantined_with_the_reason(ws, store, watch, monkeypatch):
    # A file name that is not valid UTF-8 cannot be recorded in the store as text: ingest
    # raises (or, once it copes with such names, ingests it). Either way the file is not lost,
    # and the watcher goes on.
    monkeypatch.setattr(watcher_module, "RETRY_SECONDS", 0.1)
    monkeypatch.setattr(watcher_module, "RESTART_SECONDS", 0.1)
    watcher, recorder = watch()
    data = csv_bytes(10, seed=12)
    raw_name = os.fsencode(ws.incoming_dir) + b"/bad\xff name.csv"
    try:
        with open(raw_name, "wb") as fh:
            fh.write(data)
    except OSError:
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    name = os.fsdecode(b"bad\xff name.csv")
    error_note = ws.quarantine_dir / f"{name}.error.txt"
    wait_for(
        lambda: recorder.outcomes or error_note.exists(),
        "the file to be ingested or quarantined",
    )
    wait_for(lambda: incoming_files(ws) == [], "incoming/ to be empty")
    if not recorder.outcomes:
        assert (ws.quarantine_dir / name).read_bytes() == data
        note = error_note.read_text(encoding="utf-8")
        assert "bad" in note and "Error" in note
        assert recorder.said("moved to data/quarantine/")
    (ws.incoming_dir / "next.csv").write_bytes(csv_bytes(10, seed=13))
    wait_for(
        lambda: any(Path(o.source).name == "next.csv" for o in recorder.outcomes),
        "the next file",
    )
    assert watcher.running


def test_a_full_disk_keeps_the_file_in_incoming_until_it_can_be_ingested(
    ws, store, watch, monkeypatch
):
    """Nothing is wrong with the file: it is not quarantined after the usual attempts but tried
    again until the workspace has room, and the wait is said once."""
    from mldeck.errors import WorkspaceFull

    monkeypatch.setattr(watcher_module, "WAIT_SECONDS", 0.1)
    real = watcher_module.ingest_file
    calls = []

    def full_three_times(*args, **kwargs):  # the disk fills up, then space is freed
        calls.append(1)
        if len(calls) <= 3:
            raise WorkspaceFull("no room to keep a copy of full.csv in the workspace (No space)")
        return real(*args, **kwargs)

    monkeypatch.setattr(watcher_module, "ingest_file", full_three_times)
    _, recorder = watch()
    (ws.incoming_dir / "full.csv").write_bytes(csv_bytes(10, seed=21))
    wait_for(lambda: recorder.outcomes, "the file to be ingested once there is room")
    assert len(calls) == 4 and incoming_files(ws) == []
    assert not ws.quarantine_dir.exists() or list(ws.quarantine_dir.iterdir()) == []
    waits = [m for m in recorder.events if "not ingested yet" in m]
    assert waits == ["full.csv: not ingested yet (no room to keep a copy of full.csv in the "
                     "workspace (No space)); left in incoming/, tried again every 0.1 s"]  # fmt: skip


def test_a_quarantine_folder_out_of_use_keeps_the_files_until_it_is_back(
    ws, store, watch, monkeypatch
):
    """data/quarantine made a file: a rejected batch and a file of another type failed with
    "FileExistsError: [Errno 17] ...", and stayed in incoming/ until the watcher restarted."""
    monkeypatch.setattr(watcher_module, "WAIT_SECONDS", 0.1)
    ws.quarantine_dir.parent.mkdir(parents=True, exist_ok=True)
    if ws.quarantine_dir.exists():
        ws.quarantine_dir.rmdir()
    ws.quarantine_dir.write_text("not a folder", encoding="utf-8")
    _, recorder = watch()
    (ws.incoming_dir / "bad.csv").write_bytes(b"id,x\n1,2\n1,3\n" * 2)  # not the schema
    (ws.incoming_dir / "notes.docx").write_bytes(b"PK\x03\x04 a document")
    wait_for(lambda: len([m for m in recorder.events if "cannot use data/quarantine/" in m]) >= 2,
             "both waits to be said")  # fmt: skip
    assert not recorder.said("FileExistsError") and not recorder.said("Errno")
    assert incoming_files(ws) == ["bad.csv", "notes.docx"]
    ws.quarantine_dir.unlink()  # put right: both are taken without a restart
    wait_for(lambda: incoming_files(ws) == [], "both files to leave incoming/")
    assert (ws.quarantine_dir / "notes.docx").exists()


def test_a_store_out_of_reach_is_said_in_the_databases_words():
    """What the watcher says of a file it waits with: not 'OperationalError: (psycopg...'."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    engine = create_engine("postgresql+psycopg://u@127.0.0.1:9/db")  # nothing listens there
    with pytest.raises(OperationalError) as caught:
        engine.connect()
    engine.dispose()
    said = watcher_module._one_line(caught.value)
    assert said.startswith("the store cannot be reached: ") and "OperationalError" not in said
    assert "\n" not in said and "sqlalche.me" not in said


def test_a_file_of_another_type_is_quarantined_at_once_without_a_version(ws, store, watch):
    # RETRY_SECONDS is left as it is: a type mldeck does not read is not tried again.
    watcher, recorder = watch()
    assert watcher.running
    (ws.incoming_dir / "notes.md").write_text("# what changed this week\n", encoding="utf-8")
    note = ws.quarantine_dir / "notes.md.error.txt"
    wait_for(note.exists, "the file to be quarantined")
    assert "not a data file mldeck reads ('.md'" in note.read_text(encoding="utf-8")
    assert (ws.quarantine_dir / "notes.md").read_text(encoding="utf-8").startswith("# what")
    assert incoming_files(ws) == [] and versions(store) == [] and not recorder.outcomes
    assert not recorder.said("trying again")
    # 'mldeck data quarantine' lists it, though it has no version.
    listed = watcher_module.not_ingested(ws)
    assert [(f.path, f.source) for f in listed] == [
        ("data/quarantine/notes.md", str(ws.incoming_dir / "notes.md"))
    ]
    assert "not a data file mldeck reads ('.md'" in listed[0].reason
    assert listed[0].failed_at.startswith(str(datetime.now().year))


def test_a_data_file_named_like_a_note_is_not_read_as_one(ws):
    """A rejected "summary.error.txt" quarantined was listed as a note of a file "gone", its
    lines taken for a source, a time and a reason."""
    ws.quarantine_dir.mkdir(parents=True, exist_ok=True)
    (ws.quarantine_dir / "churn-v3-summary.error.txt").write_text(
        "hello world\nline two\nline three\n", encoding="utf-8"
    )
    assert watcher_module.not_ingested(ws) == []
    assert watcher_module.count_not_ingested(ws) == 0


def test_only_one_watcher_per_workspace(ws, store, watch):
    first, _ = watch()
    second, _ = watch(start=False)
    assert second.start() is False
    assert second.held_elsewhere
    assert not second.running
    first.stop()
    assert second.start() is True
    assert not second.held_elsewhere
    second.stop()


def test_the_hook_is_called_once_per_file_and_cannot_break_the_watcher(ws, store, watch):
    watcher, recorder = watch()
    calls: list[str] = []

    def hook(outcome: IngestOutcome) -> None:
        calls.append(outcome.source)
        if len(calls) == 1:
            raise RuntimeError("scoring is not ready")

    watcher.on_ingested = hook
    for i in range(3):
        (ws.incoming_dir / f"hooked_{i}.csv").write_bytes(csv_bytes(10, seed=30 + i))
    wait_for(lambda: len(calls) == 3, "three hook calls")
    wait_for(lambda: incoming_files(ws) == [], "incoming/ to be empty")
    assert sorted(Path(c).name for c in calls) == [f"hooked_{i}.csv" for i in range(3)]
    assert recorder.said("scoring is not ready")
    assert watcher.running
    assert len(versions(store)) == 3


def _lines(stream: io.TextIOBase, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP])
def test_cli_data_watch_ingests_and_stops_on_ctrl_c(tmp_path, stop):
    """Stopped cleanly, with the exit status of the signal (0 before; a SIGHUP, a closed SSH
    session, raised in the main thread while the file was ingested in the watcher's)."""
    ws = make_workspace(tmp_path / "ws")
    env = clean_environ()
    command = [sys.executable, "-m", "mldeck.cli", "data", "watch"]
    process = subprocess.Popen(
        command,
        cwd=ws.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()

    def expect(text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (process.poll() is not None and lines.empty()):
                pytest.fail(f"no line with {text!r} in {seen}")
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=min(remaining, 0.5)))

    try:
        expect("watching ")
        other = subprocess.run(
            command, cwd=ws.root, env=env, capture_output=True, text=True, timeout=60
        )
        assert other.returncode == 2
        assert other.stderr.strip().splitlines() == [
            f"mldeck: error: another watcher is already running on this workspace "
            f"({ws.state_dir / 'watcher.lock'} is held)"
        ]
        write_batch(generate_batch(40, start=START, seed=14), ws.incoming_dir / "batch_03.csv")
        expect("batch_03.csv: churn:v1 accepted")
        process.send_signal(stop)
        assert process.wait(timeout=30) == 128 + stop, process.stderr.read()
        expect("stopped watching", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = process.stderr.read()
    assert "Traceback" not in said
    # Said once ("mldeck: interrupted" came twice for a Ctrl-C).
    name = "interrupted" if stop == signal.SIGINT else f"stopped ({stop.name})"
    assert said.strip().splitlines() == [f"mldeck: {name}"], said
    assert incoming_files(ws) == []
    store = open_workspace_store(ws)
    try:
        (row,) = versions(store)
        assert row.n_rows == 40
    finally:
        store.close()


def test_a_setting_fixed_in_mldeck_toml_applies_to_the_next_file(ws, store, watch):
    """The console or daemon keeps running while the separator is fixed: the next file is
    validated with the new mldeck.toml, without a restart; a broken file keeps the old one."""
    _watcher, recorder = watch()
    semicolons = csv_bytes(20, seed=21).replace(b",", b";")
    (ws.incoming_dir / "first.csv").write_bytes(semicolons)
    wait_for(lambda: len(recorder.outcomes) == 1, "the first file")
    assert recorder.outcomes[0].status == "rejected"
    config = ws.config_path.read_text(encoding="utf-8")
    ws.config_path.write_text(config + "\n[data\n", encoding="utf-8")  # broken: kept as it was
    (ws.incoming_dir / "second.csv").write_bytes(csv_bytes(20, seed=22).replace(b",", b";"))
    wait_for(lambda: len(recorder.outcomes) == 2, "the second file")
    assert recorder.outcomes[1].status == "rejected"
    assert recorder.said("mldeck.toml changed but cannot be used")
    fixed = re.sub(r"^\[data\]\n", '[data]\ncsv_separator = ";"\n', config, count=1, flags=re.M)
    assert fixed != config
    ws.config_path.write_text(fixed, encoding="utf-8")
    (ws.incoming_dir / "third.csv").write_bytes(csv_bytes(20, seed=23).replace(b",", b";"))
    wait_for(lambda: len(recorder.outcomes) == 3, "the third file")
    assert recorder.outcomes[2].status == "accepted", recorder.outcomes[2].reasons
    assert recorder.said("mldeck.toml changed: the next files are validated with it")


def test_a_link_to_nothing_is_said_once_and_taken_once_its_target_exists(ws, store, watch):
    """A symbolic link whose target is missing cannot be read: the watcher says so, once, and
    leaves it; when the target appears the file is ingested through the link."""
    watcher, recorder = watch()
    target = ws.root / "elsewhere.csv"
    (ws.incoming_dir / "linked.csv").symlink_to(target)
    wait_for(lambda: recorder.said("linked.csv: a link to "), "the dangling link to be said")
    assert recorder.said(f"{target}, which does not exist; left in incoming/ until it does")
    time.sleep(watcher.tick_seconds * 4)  # more looks at the folder: nothing said again
    assert sum("linked.csv" in line for line in recorder.events) == 1
    target.write_bytes(csv_bytes(10, seed=11))
    wait_for(lambda: recorder.outcomes, "the file behind the link to be ingested")
    assert recorder.outcomes[0].status == "accepted" and len(versions(store)) == 1


def test_a_link_to_a_folder_is_said_to_be_no_file_not_missing(ws, store, watch):
    """It said "a link to /data/dir, which does not exist" of a folder that does."""
    _, recorder = watch()
    folder = ws.root / "a-folder"
    folder.mkdir()
    (ws.incoming_dir / "d.csv").symlink_to(folder)
    wait_for(lambda: recorder.said("d.csv: a link to "), "the link to be said")
    assert recorder.said(f"{folder}, a folder, not a file; left in incoming/")
    assert not recorder.said("which does not exist")


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_another_name_of_the_store_is_moved_aside_never_opened(ws, store, watch, how):
    """A link to .mldeck/store.db in incoming/ was opened and closed at every look (is its writer
    done?), which dropped the process's SQLite locks: another process then deleted the WAL in
    use, and versions the watcher announced were lost."""
    _, recorder = watch()
    (ws.incoming_dir / "first.csv").write_bytes(csv_bytes(10, seed=31))
    wait_for(lambda: len(recorder.outcomes) == 1, "the first file")
    link = ws.incoming_dir / "db.csv"
    if how == "symlink":
        link.symlink_to(ws.db_path)
    else:
        os.link(ws.db_path, link)
    wait_for(lambda: recorder.said("db.csv: not ingested (part of the workspace's own state"),
             "the link to be refused")  # fmt: skip
    assert incoming_files(ws) == []
    moved = ws.quarantine_dir / "db.csv"
    assert moved.is_symlink() if how == "symlink" else os.path.samefile(moved, ws.db_path)
    (ws.incoming_dir / "second.csv").write_bytes(csv_bytes(10, seed=32))
    wait_for(lambda: len(recorder.outcomes) == 2, "the second file")
    other = open_workspace_store(ws)  # another connection sees every version
    try:
        assert [v.version for v in versions(other)] == [2, 1]
    finally:
        other.close()


def test_a_link_to_a_file_of_another_owner_is_not_followed(ws, store, watch, tmp_path):
    """Whoever could drop a link in incoming/ had any file the watcher's user can read (its
    environment through /proc/self/environ, a private key) copied into the workspace."""
    link = ws.incoming_dir / "secret.csv"
    if os.getuid() == 0:  # root: the link made by someone else, to root's file
        secret = tmp_path / "secret.csv"
        secret.write_bytes(csv_bytes(10, seed=33))
        link.symlink_to(secret)
        os.lchown(link, 4242, -1)
    else:  # anyone else: a link of their own to root's file
        secret = Path("/etc/passwd")
        assert secret.stat().st_uid != os.getuid()
        link.symlink_to(secret)
    _, recorder = watch()
    wait_for(lambda: recorder.said("secret.csv: not ingested (a link to "), "the link refused")
    assert recorder.said("a file of another owner than the link's")
    assert versions(store) == [] and (ws.quarantine_dir / "secret.csv").is_symlink()
    assert secret.exists()


def test_a_name_that_is_not_utf8_does_not_stop_the_watch(ws, store, watch):
    """watchfiles raised at every event about such a name: the loop restarted every 2 s with a
    traceback, and other files waited their turn."""
    _, recorder = watch()
    odd = os.fsencode(ws.incoming_dir) + b"/latin\xe9.csv"
    with open(odd, "wb") as fh:
        fh.write(csv_bytes(10, seed=41))
    wait_for(lambda: len(recorder.outcomes) == 1, "the file with the odd name")
    (ws.incoming_dir / "plain.csv").write_bytes(csv_bytes(10, seed=42))
    wait_for(lambda: len(recorder.outcomes) == 2, "the next file", timeout=10)
    assert not recorder.said("watcher error")
    assert recorder.said("holds a name that is not UTF-8")


def test_a_long_name_is_quarantined_with_its_note(ws, store, watch):
    """A rejected file named near the filesystem's limit could not be copied to quarantine as
    '<dataset>-v<N>-<name>', nor its note written: no version, no reason, and the loop crashed."""
    _, recorder = watch()
    name = "m" * 246 + ".csv"
    (ws.incoming_dir / name).write_bytes(b"a;b\n1;2\n")  # one column named 'a;b': rejected
    wait_for(lambda: len(recorder.outcomes) == 1, "the long-named file")
    assert recorder.outcomes[0].status == "rejected"
    copies = [p.name for p in ws.quarantine_dir.iterdir() if p.name.endswith(".csv")]
    assert len(copies) == 1 and len(copies[0].encode()) <= 200 and copies[0].endswith("~.csv")
    (ws.incoming_dir / ("n" * 246 + ".xlsx")).write_bytes(b"PK\x03\x04 not a table")
    wait_for(lambda: recorder.said("not ingested"), "the unsupported long-named file")
    assert len(not_ingested(ws)) == 1 and not recorder.said("watcher error")


def test_a_newline_in_a_name_cannot_forge_its_note(ws, store, watch):
    """The note is a line each (source, time, reason): a name with newlines wrote its own."""
    _, recorder = watch()
    (ws.incoming_dir / "evil\nfailed to ingest at 1999-01-01\nall good.xlsx").write_bytes(b"PK")
    wait_for(lambda: recorder.said("not ingested"), "the file to be refused")
    (found,) = not_ingested(ws)
    assert found.failed_at.startswith("20") and "not a data file" in found.reason
    assert "\n" not in found.source and found.source.endswith(
        "evil?failed to ingest at 1999-01-01?all good.xlsx"
    )


def test_a_complete_file_held_open_by_a_reader_is_said_to_wait(tmp_path, watchers, monkeypatch):
    """A file held open by any process (tail -f, a backup) waited with nothing said."""
    from mldeck.data import watcher as watcher_module

    monkeypatch.setattr(watcher_module, "HELD_SAID_SECONDS", 0.3)
    ws = make_workspace(tmp_path / "ws", settle=0.2)
    store = open_workspace_store(ws)
    recorder = Recorder()
    watcher = IncomingWatcher(ws, store, on_ingested=recorder.ingested, on_event=recorder.event)
    watchers.append(watcher)
    path, go = ws.incoming_dir / "held.csv", tmp_path / "go"
    path.write_bytes(csv_bytes(20, seed=5))
    reader = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, time\n"
        f"fh = open({str(path)!r}, 'rb')\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
    )])  # fmt: skip
    try:
        time.sleep(0.3)  # the reader has it open
        assert watcher.start()
        wait_for(lambda: recorder.said("held.csv: unchanged but still open in another process"),
                 "the wait to be said")  # fmt: skip
        time.sleep(0.5)
        assert sum("still open" in line for line in recorder.events) == 1
        go.touch()
        assert reader.wait(timeout=30) == 0
        wait_for(lambda: recorder.outcomes, "the file to be taken once closed")
    finally:
        go.touch()
        reader.wait(timeout=30)
        watcher.stop()
        store.close()


def test_a_file_that_cannot_be_removed_leaves_no_copy_in_quarantine(tmp_path, monkeypatch):
    """incoming/ refusing the removal left a second name in quarantine at every attempt."""
    from mldeck.data.watcher import _move_to_quarantine

    source = tmp_path / "incoming" / "stuck.xlsx"
    source.parent.mkdir()
    source.write_bytes(b"PK")
    unlink = Path.unlink

    def refuse(self, missing_ok=False):
        if self == source:
            raise PermissionError(1, "Operation not permitted")
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    for _ in range(2):
        with pytest.raises(PermissionError):
            _move_to_quarantine(source, tmp_path / "quarantine")
    assert list((tmp_path / "quarantine").iterdir()) == [] and source.exists()
