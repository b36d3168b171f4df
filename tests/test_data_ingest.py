"""Ingest: files become content-addressed dataset versions with a report and a profile; bad files
are quarantined whole with a specific reason; nothing is lost. The ``mldeck data`` commands run
for real in child processes."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from mldeck.data import ingest
from mldeck.data.ingest import EXIT, ingest_file, rows_file_beside
from mldeck.data.validate import REASON, ROW
from mldeck.errors import MldeckError, NotFound
from mldeck.store.models import DatasetVersion, Run, RunInput, RunKind, RunLog, RunStatus
from mldeck.store.queries import list_versions, resolve_version, version_detail
from mldeck.workspace import Workspace, init_workspace, load_workspace, open_workspace_store

from .conftest import clean_environ

EXPECTATIONS = """
[data]
dataset = "events"
id_column = "id"

[data.columns.id]
type = "int"
nullable = false

[data.columns.amount]
type = "float"
nullable = false
min = 0
max = 1000
warn = ["max"]

[data.columns.kind]
type = "string"
categories = ["a", "b", "c"]

[data.columns.note]
type = "string"
pattern = "^[a-z ]{0,40}$"
"""
HEADER = "id,amount,kind,note\n"
GOOD = HEADER + "1,10.5,a,hello\n2,20.0,b,world\n3,0.0,c,\n"
WARNED = HEADER + "1,10.5,a,hello\n2,5000.0,b,big spender\n3,0.0,c,\n"
REJECTED = HEADER + "1,10.5,a,hello\n2,20.0,z,unknown kind\n3,0.0,c,\n"


def configure(workspace: Workspace, extra: str = EXPECTATIONS) -> Workspace:
    """The workspace with *extra* appended to its mldeck.toml, reloaded."""
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write(extra)
    return load_workspace(workspace.root)


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    return configure(workspace)


def put(folder: Path, name: str, content: bytes | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def stored_file(ws: Workspace, sha: str, suffix: str) -> Path:
    return ws.datasets_dir / sha[:2] / f"{sha}{suffix}"


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def leftovers(ws: Workspace) -> list[str]:
    """Temporary files that must never outlive an ingest."""
    names = [p.name for p in ws.quarantine_dir.glob(".*")] if ws.quarantine_dir.exists() else []
    names += [p.name for p in ws.datasets_dir.glob(".incoming-*")]
    names += [p.name for p in ws.root.rglob("*.partial")]
    return names


# -- versions ---------------------------------------------------------------------------------


def test_a_csv_file_becomes_a_version_with_its_bytes_kept(ws, store, tmp_path):
    source = put(tmp_path / "in", "batch.csv", GOOD)
    before = datetime.now(UTC)
    outcome = ingest_file(ws, store, source)
    after = datetime.now(UTC)
    sha = hashlib.sha256(GOOD.encode()).hexdigest()
    assert (outcome.dataset, outcome.version, outcome.sha256) == ("events", 1, sha)
    assert (outcome.status, outcome.duplicate, outcome.reasons) == ("accepted", False, [])
    assert EXIT[outcome.status] == 0

    detail = version_detail(store, outcome.version_id)
    row = detail.row
    assert (row.n_rows, row.n_cols, row.size_bytes) == (3, 4, len(GOOD))
    assert row.source_path == str(source)
    assert before <= row.arrived_at.replace(tzinfo=row.arrived_at.tzinfo or UTC) <= after
    assert detail.schema == {"id": "Int64", "amount": "Float64", "kind": "String", "note": "String"}
    assert detail.file_format == "csv"
    assert detail.report["status"] == "accepted"
    assert {c["status"] for c in detail.report["checks"]} == {"pass"}
    assert detail.profile["columns"]["amount"]["mean"] == pytest.approx(30.5 / 3)

    kept = stored_file(ws, sha, ".csv")
    assert detail.stored_path == str(kept.relative_to(ws.root))
    assert kept.read_bytes() == GOOD.encode()
    assert source.read_bytes() == GOOD.encode()  # the source is left alone
    assert not ws.quarantine_dir.exists() or not list(ws.quarantine_dir.iterdir())
    assert leftovers(ws) == []


@pytest.mark.parametrize("suffix", [".parquet", ".ndjson"])
def test_parquet_and_ndjson_files_become_versions(ws, store, tmp_path, suffix):
    frame = pl.DataFrame(
        {"id": [1, 2], "amount": [1.5, 2.5], "kind": ["a", "b"], "note": ["x", None]}
    )
    path = tmp_path / f"batch{suffix}"
    frame.write_parquet(path) if suffix == ".parquet" else frame.write_ndjson(path)
    outcome = ingest_file(ws, store, path)
    assert outcome.status == "accepted", outcome.reasons
    detail = version_detail(store, outcome.version_id)
    assert (detail.row.n_rows, detail.row.n_cols, detail.file_format) == (2, 4, suffix[1:])
    assert stored_file(ws, outcome.sha256, suffix).read_bytes() == path.read_bytes()


@pytest.mark.parametrize(("name", "writer", "kind"), [("batch.csv", "parquet", "parquet"),
                                                    ("batch", "parquet", "parquet"),
                                                    ("batch", "ndjson", "ndjson"),
                                                    ("batch.jsonl", "ndjson", "ndjson")])  # fmt: skip
def test_a_file_is_recorded_in_the_format_it_was_read_as(ws, store, tmp_path, name, writer, kind):
    """A Parquet file named .csv was read as text ("not UTF-8 text: byte 0xc0"); one without a
    suffix was read right but recorded as csv, a .jsonl one as "jsonl"."""
    frame = pl.DataFrame(
        {"id": [1, 2], "amount": [1.5, 2.5], "kind": ["a", "b"], "note": ["x", None]}
    )
    path = tmp_path / name
    if writer == "parquet":
        frame.write_parquet(path)
    else:  # blank lines first: the format is sniffed as far as the reader sniffs it
        path.write_text("\n" * 12 + frame.write_ndjson())
    outcome = ingest_file(ws, store, path)
    assert outcome.status == "accepted", outcome.reasons
    assert version_detail(store, outcome.version_id).file_format == kind


def test_a_csv_whose_first_column_begins_with_par1_is_read_as_csv(ws, store, tmp_path):
    """Parquet is told by its first and last bytes: a header 'PAR1_score,...' is text."""
    outcome = ingest_file(ws, store, put(tmp_path, "par.csv", "PAR1_score,b\n1,2\n3,4\n"))
    # Read as CSV (its columns are not this dataset's): it was "truncated or damaged Parquet".
    assert "columns: unexpected columns: 'PAR1_score', 'b'" in outcome.reasons
    assert version_detail(store, outcome.version_id).file_format == "csv"


def test_glob_characters_in_paths_are_read_as_written(tmp_path):
    """Polars expands '[', ']', '*' and '?' in the paths it scans: a workspace in 'team [a]',
    files named 'week [3]', and a quarantined-rows file there are all read as written."""
    ws = configure(init_workspace(tmp_path / "team [a]" / "ws*", name="globs"))
    store = open_workspace_store(ws)
    try:
        frame = pl.DataFrame({"id": [1, 2], "amount": [1.5, 2.5], "kind": ["a", "b"],
                              "note": ["x", None]})  # fmt: skip
        files = tmp_path / "in [1]?"
        files.mkdir()
        frame.write_parquet(files / "week [3].parquet")
        frame.with_columns(pl.col("id") + 2).write_ndjson(files / "week [3].ndjson")
        put(files, "week [3].csv", WARNED)
        outcomes = {path.suffix: ingest_file(ws, store, path) for path in files.iterdir()}
        assert {s: o.status for s, o in outcomes.items()} == {
            ".csv": "warned", ".parquet": "accepted", ".ndjson": "accepted"
        }  # fmt: skip
        quarantined = outcomes[".csv"]
        rows = pl.read_parquet(ws.root / quarantined.quarantine_path, glob=False)
        assert rows[REASON].to_list() == ["max(amount)"]
        (check,) = [c for c in version_detail(store, quarantined.version_id).report["checks"]
                    if c["status"] != "pass"]  # fmt: skip
        assert check["examples"], check  # read back from the offending-rows file
    finally:
        store.close()


def test_the_workspaces_own_files_are_refused_as_input(ws, store):
    """The store is not data, and reading it outside SQLite would drop this process's locks."""
    for path in (ws.db_path, ws.state_dir / ".." / ".mldeck" / "store.db"):
        with pytest.raises(
            MldeckError, match=r"is part of the workspace's own state \(\.mldeck/\)"
        ):
            ingest_file(ws, store, path)
    assert list_versions(store) == ([], 0)


def test_the_same_bytes_twice_are_one_version(ws, store, tmp_path):
    first = ingest_file(ws, store, put(tmp_path / "a", "batch.csv", GOOD))
    again = ingest_file(ws, store, put(tmp_path / "b", "renamed copy.csv", GOOD))
    assert again.duplicate is True
    assert (again.version_id, again.version, again.sha256) == (
        first.version_id,
        first.version,
        first.sha256,
    )
    assert again.status == "accepted"
    rows, total = list_versions(store)
    assert total == 1 and rows[0].source_path == str(tmp_path / "a" / "batch.csv")
    assert len(list(ws.datasets_dir.rglob("*.csv"))) == 1
    with store.read() as session:
        roles = session.execute(select(RunInput.role, Run.kind, Run.status).join(Run)).all()
    assert ("duplicate", RunKind.INGEST, RunStatus.SUCCEEDED) in roles


def test_the_same_rows_in_different_bytes_are_two_versions(ws, store, tmp_path):
    unix = ingest_file(ws, store, put(tmp_path, "unix.csv", GOOD))
    windows = ingest_file(ws, store, put(tmp_path, "windows.csv", GOOD.replace("\n", "\r\n")))
    frame = pl.read_csv(io.StringIO(GOOD))
    parquet = ingest_file(ws, store, put(tmp_path, "same.parquet", parquet_bytes(frame)))
    outcomes = [unix, windows, parquet]
    assert [o.duplicate for o in outcomes] == [False, False, False]
    assert [o.version for o in outcomes] == [1, 2, 3]
    assert len({o.sha256 for o in outcomes}) == 3
    assert {version_detail(store, o.version_id).row.n_rows for o in outcomes} == {3}


def test_beside_failures_a_warning_is_marked_as_one(ws, store, tmp_path):
    both = HEADER + "1,10.5,a,hello\n2,5000.0,z,big spender\n3,0.0,c,\n"
    outcome = ingest_file(ws, store, put(tmp_path, "both.csv", both))
    assert outcome.status == "rejected"
    assert sorted(outcome.reasons) == [
        "categories(kind): 1 value outside the allowed categories",
        "warning, max(amount): 1 value above 1000",  # not why the batch was rejected
    ]


def test_a_rejected_batch_is_quarantined_whole_with_its_report(ws, store, tmp_path):
    source = put(tmp_path, "bad batch.csv", REJECTED)
    outcome = ingest_file(ws, store, source)
    assert (outcome.status, EXIT[outcome.status]) == ("rejected", 4)
    assert outcome.reasons == ["categories(kind): 1 value outside the allowed categories"]
    copy = ws.root / outcome.quarantine_path
    assert copy == ws.quarantine_dir / "events-v1-bad_batch.csv"
    assert copy.read_bytes() == REJECTED.encode()
    report = json.loads(copy.with_name(copy.name + ".report.json").read_text())
    assert (report["status"], report["sha256"], report["source"]) == (
        "rejected",
        outcome.sha256,
        str(source),
    )
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [(c["check"], c["column"], c["failed_rows"]) for c in failed] == [
        ("categories", "kind", 1)
    ]
    assert failed[0]["examples"] == [
        {ROW: 1, "id": 2, "amount": 20.0, "kind": "z", "note": "unknown kind"}
    ]
    # The offending rows too, with their reason; the original bytes stay in the datasets.
    rows = pl.read_parquet(ws.quarantine_dir / "events-v1.rows.parquet")
    assert rows[ROW].to_list() == [1] and rows[REASON].to_list() == ["categories(kind)"]
    assert stored_file(ws, outcome.sha256, ".csv").read_bytes() == REJECTED.encode()
    assert source.exists()
    assert leftovers(ws) == []


def test_what_quarantine_keeps_of_a_private_file_stays_private(ws, store, tmp_path):
    """A rejected 0600 file was copied to quarantine as 0644, with its report and rows."""
    source = put(tmp_path, "secret.csv", REJECTED)
    source.chmod(0o600)
    outcome = ingest_file(ws, store, source)
    copy = ws.root / outcome.quarantine_path
    kept = [
        copy,
        copy.with_name(copy.name + ".report.json"),
        ws.quarantine_dir / "events-v1.rows.parquet",
    ]
    assert [oct(p.stat().st_mode & 0o777) for p in kept] == ["0o600"] * 3


def test_two_datasets_whose_safe_names_meet_keep_their_own_quarantined_copies(ws, store, tmp_path):
    """ "sales eu" and "sales_eu" both wrote sales_eu-v1-f.csv: the second replaced the first."""
    first = ingest_file(ws, store, put(tmp_path / "a", "f.csv", REJECTED), dataset="sales eu")
    other = REJECTED.replace("unknown kind", "another unknown kind")
    second = ingest_file(ws, store, put(tmp_path / "b", "f.csv", other), dataset="sales_eu")
    assert first.quarantine_path != second.quarantine_path
    assert (ws.root / first.quarantine_path).read_text() == REJECTED
    assert (ws.root / second.quarantine_path).read_text() == other
    rows = [rows_file_beside(o.quarantine_path, str(tmp_path / "f.csv")) for o in (first, second)]
    assert rows[0] != rows[1] and all((ws.root / r).exists() for r in rows)


def test_a_warned_batch_is_accepted_and_its_offending_rows_quarantined(ws, store, tmp_path):
    outcome = ingest_file(ws, store, put(tmp_path, "warned.csv", WARNED))
    assert (outcome.status, EXIT[outcome.status]) == ("warned", 3)
    assert outcome.reasons == ["max(amount): 1 value above 1000"]
    assert outcome.quarantine_path == "data/quarantine/events-v1.rows.parquet"
    rows = pl.read_parquet(ws.root / outcome.quarantine_path)
    assert rows[ROW].to_list() == [1]
    assert rows[REASON].to_list() == ["max(amount)"]
    assert [p.name for p in ws.quarantine_dir.iterdir()] == ["events-v1.rows.parquet"]
    rows_listed, _ = list_versions(store, quarantined=True)
    assert [r.id for r in rows_listed] == [outcome.version_id]


# -- bad input: a specific reason, never a crash, never a lost file --------------------------

_PARQUET = parquet_bytes(
    pl.DataFrame(
        {"id": range(100), "amount": [1.0] * 100, "kind": ["a"] * 100, "note": ["x"] * 100}
    )
)
BAD_INPUTS = [
    ("empty.csv", b"", "empty file (0 bytes)"),
    ("header only.csv", HEADER, "rows: 0 rows (at least 1 expected)"),
    ("latin1.csv", (HEADER + "1,1.0,a,café\n").encode("latin-1"), "not UTF-8 text: byte 0xe9"),
    (
        "semicolons.csv",
        HEADER.replace(",", ";") + "1;1.0;a;x\n",
        "the file looks ';'-separated (set [data] csv_separator)",
    ),
    ("short rows.csv", HEADER + "1\n2,3.0,a,x\n", "nulls(amount): 1 null (none allowed)"),
    ("long rows.csv", HEADER + "1,1.0,a,x,extra\n", "a row has more fields than the header"),
    (
        "duplicate names.csv",
        "id,amount,amount,note\n1,1.0,2.0,x\n",
        "duplicate column name 'amount' (columns 2 and 3)",
    ),
    (
        "wrong type.csv",
        HEADER + "1,1.0,a,x\n2,n/a,b,y\n",
        "type(amount): 1 value is not float (column read as String)",
    ),
    ("all null.csv", HEADER + "1,,a,x\n2,,b,y\n", "nulls(amount): 2 nulls (none allowed)"),
    ("nan inf.csv", HEADER + "1,NaN,a,x\n2,inf,b,y\n3,1.0,c,z\n", "finite(amount): 2 NaN"),
    ("truncated.parquet", _PARQUET[: len(_PARQUET) // 2], "truncated or damaged Parquet file"),
    (
        "broken.ndjson",
        '{"id": 1, "amount": 1.0}\n{"id": 2,\n',
        "not valid NDJSON: line 2: Expecting",
    ),
    (
        "array.ndjson",
        '{"id": 1, "amount": 1.0}\n[1, 2]\n',
        "not valid NDJSON: line 2 is a JSON list",
    ),
    (
        "café ✓ 数据 batch.csv",
        HEADER + "1,1.0,legacy,x\n",
        "categories(kind): 1 value outside the allowed categories",
    ),
]


@pytest.mark.parametrize(("name", "content", "reason"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_quarantined_with_a_specific_reason(
    ws, store, tmp_path, name, content, reason
):
    data = content.encode() if isinstance(content, str) else content
    source = put(tmp_path / "in", name, data)
    outcome = ingest_file(ws, store, source)
    assert outcome.status == "rejected"
    assert any(reason in r for r in outcome.reasons), outcome.reasons
    # The bytes are kept under their hash, and a copy plus the report are in quarantine.
    assert outcome.sha256 == hashlib.sha256(data).hexdigest()
    assert stored_file(ws, outcome.sha256, Path(name).suffix).read_bytes() == data
    copy = ws.root / outcome.quarantine_path
    assert copy.parent == ws.quarantine_dir
    assert copy.read_bytes() == data
    report = json.loads(copy.with_name(copy.name + ".report.json").read_text(encoding="utf-8"))
    texts = [report["read_error"] or ""] + [
        f"{c['check']}({c['column']}): {c['detail']}"
        if c["column"]
        else f"{c['check']}: {c['detail']}"
        for c in report["checks"]
    ]
    assert any(reason in t for t in texts), texts
    detail = version_detail(store, outcome.version_id)
    assert detail.report == {k: v for k, v in report.items() if k not in ("source", "sha256")}
    assert source.read_bytes() == data
    assert leftovers(ws) == []


def test_a_unicode_name_is_kept_readable_in_quarantine(ws, store, tmp_path):
    outcome = ingest_file(ws, store, put(tmp_path, "café ✓ 数据 batch.csv", REJECTED))
    assert Path(outcome.quarantine_path).name == "events-v1-café___数据_batch.csv"
    assert version_detail(store, outcome.version_id).row.source_path.endswith(
        "café ✓ 数据 batch.csv"
    )


def test_a_ten_megabyte_field_is_ingested_and_reported_briefly(ws, store, tmp_path):
    big = "x" * (10 * 1024 * 1024)
    data = (HEADER + f"1,1.0,a,{big}\n2,2.0,b,fine\n").encode()
    outcome = ingest_file(ws, store, put(tmp_path, "big.csv", data))
    assert outcome.status == "rejected"
    assert outcome.reasons == ["pattern(note): 1 value does not match '^[a-z ]{0,40}$'"]
    copy = ws.root / outcome.quarantine_path
    assert copy.stat().st_size == len(data)
    report = copy.with_name(copy.name + ".report.json")
    assert report.stat().st_size < 20_000  # the example is cut, not copied whole
    assert stored_file(ws, outcome.sha256, ".csv").stat().st_size == len(data)


def test_a_file_that_is_not_there_is_refused_before_any_run(ws, store, tmp_path):
    """A mistyped name (or a file gone before it is read) is no failed ingest run: such a run
    would lower the pipeline's success rate and raise a failed-step alert."""
    # A device was copied first: /dev/zero filled the disk.
    for missing, said in ((tmp_path / "gone.csv", "no such file: "), (tmp_path, "is a folder"),
                          (Path("/dev/zero"), "/dev/zero is a device, not a file")):  # fmt: skip
        with pytest.raises(MldeckError, match=said):
            ingest_file(ws, store, missing)
    assert list_versions(store) == ([], 0)
    with store.read() as session:
        assert session.execute(select(Run)).scalars().all() == []
    assert leftovers(ws) == []


def test_a_full_disk_is_said_as_such_and_fails_the_run(ws, store, tmp_path, monkeypatch):
    """The copy's write failing for room is not 'cannot read' the file (it reads fine)."""
    import errno as errnos

    from mldeck.data import ingest as ingest_module
    from mldeck.errors import WorkspaceFull

    def full(*_args, **_kwargs):
        raise OSError(errnos.ENOSPC, "No space left on device")

    monkeypatch.setattr(ingest_module, "put_file", full)
    source = put(tmp_path, "good.csv", GOOD)
    with pytest.raises(WorkspaceFull, match=r"no room to keep a copy of .*good\.csv in the "
                                            r"workspace \(No space left on device\)"):  # fmt: skip
        ingest_file(ws, store, source)
    with store.read() as session:
        runs = session.execute(select(Run)).scalars().all()
    assert [(r.kind, r.status) for r in runs] == [(RunKind.INGEST, RunStatus.FAILED)]
    assert source.exists()


def test_a_quarantine_copy_cut_by_a_full_disk_is_not_left_behind(ws, store, tmp_path, monkeypatch):
    """The cut copy and the offending rows stayed in data/quarantine/, unlisted, and every retry
    (the watcher's, each 30 s) left another set under a new name, filling what room was freed."""
    import errno as errnos

    from mldeck.data import ingest as ingest_module

    def cut(source, target):
        Path(target).write_bytes(Path(source).read_bytes()[:10])
        raise OSError(errnos.ENOSPC, "No space left on device")

    source = put(tmp_path, "bad.csv", REJECTED)
    monkeypatch.setattr(ingest_module.shutil, "copyfile", cut)
    for _attempt in range(2):
        with pytest.raises(OSError, match="No space left"):
            ingest_file(ws, store, source)
        assert sorted(p.name for p in ws.quarantine_dir.iterdir()) == []
    monkeypatch.undo()
    outcome = ingest_file(ws, store, source)
    assert outcome.status == "rejected"
    assert sorted(p.name for p in ws.quarantine_dir.iterdir()) == [
        "events-v1-bad.csv",
        "events-v1-bad.csv.report.json",
        "events-v1.rows.parquet",
    ]
    assert (ws.root / outcome.quarantine_path).read_bytes() == source.read_bytes()


def test_a_run_whose_end_could_not_be_written_is_ended_by_the_next_ingest(
    ws, store, tmp_path, monkeypatch
):
    """A full disk failed the copy and then the writing of the run's end: the run stayed
    "running" for as long as the watcher lived (the orphan sweep spares a live process)."""
    import errno as errnos

    from sqlalchemy.exc import OperationalError

    from mldeck.data import ingest as ingest_module
    from mldeck.errors import WorkspaceFull

    def full(*_args, **_kwargs):
        raise OSError(errnos.ENOSPC, "No space left on device")

    write, calls = store.write, []

    def write_once(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the run starts; ending it fails as the disk is full
            raise OperationalError("UPDATE run", {}, Exception("database or disk is full"))
        return write(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "put_file", full)
    monkeypatch.setattr(store, "write", write_once)
    with pytest.raises(WorkspaceFull):
        ingest_file(ws, store, put(tmp_path, "first.csv", GOOD))
    monkeypatch.undo()
    with store.read() as session:
        assert [r.status for r in session.execute(select(Run)).scalars()] == [RunStatus.RUNNING]
    assert ingest_file(ws, store, put(tmp_path, "good.csv", GOOD)).status == "accepted"
    with store.read() as session:
        first = session.execute(select(Run).order_by(Run.id)).scalars().first()
    assert first.status == RunStatus.FAILED and "No space left" in first.error


def test_a_watched_file_is_removed_only_once_its_bytes_are_stored(ws, store, tmp_path):
    incoming = ws.incoming_dir
    for name, content in (("good.csv", GOOD), ("bad.csv", REJECTED)):
        source = put(incoming, name, content)
        outcome = ingest_file(ws, store, source, consume=True)
        assert not source.exists()
        assert stored_file(ws, outcome.sha256, ".csv").read_bytes() == content.encode()
    # Consuming a file already known keeps nothing twice and loses nothing.
    source = put(incoming, "again.csv", GOOD)
    assert ingest_file(ws, store, source, consume=True).duplicate
    assert not source.exists()
    assert list_versions(store)[1] == 2


def test_a_batch_is_profiled_on_its_reference_bins(ws, store, tmp_path):
    values = [float(i) for i in range(200)]
    frame = pl.DataFrame(
        {"id": range(200), "amount": values, "kind": ["a"] * 200, "note": ["x"] * 200}
    )
    reference = ingest_file(
        ws, store, put(tmp_path, "ref.parquet", parquet_bytes(frame)), as_reference=True
    )
    assert reference.status == "accepted"
    assert list_versions(store)[0][0].is_reference
    edges = version_detail(store, reference.version_id).profile["columns"]["amount"]
    edges = edges["histogram"]["edges"]
    batch = ingest_file(ws, store, put(tmp_path, "batch.csv", GOOD))
    histogram = version_detail(store, batch.version_id).profile["columns"]["amount"]["histogram"]
    assert histogram["edges"] == edges
    assert sum(histogram["counts"]) == 3


def test_the_configured_reference_belongs_to_the_configured_dataset_only(workspace, tmp_path):
    reference = put(tmp_path, "ref.csv", GOOD)
    ws = configure(workspace, EXPECTATIONS.replace('id_column = "id"',
                                                   f'id_column = "id"\nreference = "{reference}"'))  # fmt: skip
    store = open_workspace_store(ws)
    try:
        first = ingest_file(ws, store, put(tmp_path, "a.csv", WARNED))
        assert (first.dataset, first.version) == ("events", 2)  # the reference is events v1
        # Another dataset gets no reference from [data] reference, and no error.
        other = ingest_file(ws, store, put(tmp_path, "b.csv", REJECTED), dataset="other")
        assert (other.dataset, other.version, other.duplicate) == ("other", 1, False)
        flags = {(row.dataset, row.version): row.is_reference for row in list_versions(store)[0]}
        assert flags == {("events", 1): True, ("events", 2): False, ("other", 1): False}
    finally:
        store.close()


def test_the_configured_reference_ingested_by_itself_becomes_the_reference(workspace, tmp_path):
    """Without --reference: it is the reference at once, not a batch that the next ingest
    would silently turn into the reference."""
    reference = put(tmp_path, "ref.csv", GOOD)
    ws = configure(workspace, EXPECTATIONS.replace('id_column = "id"',
                                                   f'id_column = "id"\nreference = "{reference}"'))  # fmt: skip
    store = open_workspace_store(ws)
    try:
        said: list[str] = []
        first = ingest_file(ws, store, reference, progress=said.append)
        assert (first.version, first.duplicate) == (1, False)
        assert [row.is_reference for row in list_versions(store)[0]] == [True]
        assert any("ingested as its reference" in line for line in said)
        later = ingest_file(ws, store, put(tmp_path, "later.csv", WARNED))
        flags = {row.version: row.is_reference for row in list_versions(store)[0]}
        assert flags == {1: True, later.version: False}
    finally:
        store.close()


def test_a_configured_reference_already_stored_as_a_batch_is_adopted(workspace, tmp_path):
    """The usual order: batches first, then `data infer X --write` names one of them as the
    reference. The next ingest adopts it (the user never asked for --reference)."""
    first = put(tmp_path, "first.csv", GOOD)
    ws = configure(workspace)
    store = open_workspace_store(ws)
    try:
        batch = ingest_file(ws, store, first)
        text = ws.config_path.read_text(encoding="utf-8")
        text = text.replace('id_column = "id"', f'id_column = "id"\nreference = "{first}"')
        ws.config_path.write_text(text, encoding="utf-8")
        ws = load_workspace(ws.root)
        later = ingest_file(ws, store, put(tmp_path, "later.csv", WARNED))
        assert (later.status, later.duplicate) == ("warned", False)
        flags = {row.version: row.is_reference for row in list_versions(store)[0]}
        assert flags == {batch.version: True, later.version: False}
    finally:
        store.close()


def test_content_stored_as_a_batch_cannot_silently_become_a_reference(ws, store, tmp_path):
    batch = ingest_file(ws, store, put(tmp_path, "batch.csv", GOOD))
    with pytest.raises(MldeckError, match=r"already stored as events:v1, a batch"):
        ingest_file(ws, store, put(tmp_path, "ref.csv", GOOD), as_reference=True)
    assert not list_versions(store)[0][0].is_reference
    with store.read() as session:
        failed = session.execute(select(Run).where(Run.status == RunStatus.FAILED)).scalars().all()
    assert [run.name for run in failed] == ["ingest ref.csv"]
    # Ingesting the reference itself again is a plain duplicate.
    ref = ingest_file(ws, store, put(tmp_path, "r2.csv", WARNED), as_reference=True)
    again = ingest_file(ws, store, put(tmp_path, "r3.csv", WARNED), as_reference=True)
    assert again.duplicate and again.version_id == ref.version_id != batch.version_id


def test_a_new_reference_says_which_it_replaces(workspace, tmp_path):
    """--reference on a dataset that had one swapped what every batch is compared with, with
    nothing said (and mldeck.toml still naming the old file)."""
    first = put(tmp_path, "ref.csv", GOOD)
    ws = _with_reference(workspace, first)
    store = open_workspace_store(ws)
    try:
        assert ingest_file(ws, store, first, as_reference=True).notes == []
        newer = ingest_file(ws, store, put(tmp_path, "ref2.csv", WARNED), as_reference=True)
        assert newer.notes == [
            "events:v2 replaces events:v1 as the reference of events: batches are validated and "
            f"checked for drift against it from now on ([data] reference in mldeck.toml still "
            f"names {first})"
        ]
        assert [row.version for row in list_versions(store)[0] if row.is_reference] == [2]
    finally:
        store.close()


def test_a_configured_reference_changed_later_is_said_not_taken_silently(workspace, tmp_path):
    """[data] reference edited to name another file: batches went on being compared with the
    first reference without a word."""
    first, second = put(tmp_path, "ref.csv", GOOD), put(tmp_path, "ref2.csv", WARNED)
    ws = _with_reference(workspace, first)
    store = open_workspace_store(ws)
    try:
        assert ingest_file(ws, store, put(tmp_path, "a.csv", GOOD + "9,x,1.0\n")).notes == [
            f"[data] reference {first} ingested as events:v1 (accepted), the reference of events"
        ]
        assert ingest_file(ws, store, put(tmp_path, "b.csv", GOOD + "8,x,1.0\n")).notes == []
        ws.config_path.write_text(ws.config_path.read_text().replace(str(first), str(second)))
        edited = load_workspace(ws.root)
        assert ingest_file(edited, store, put(tmp_path, "c.csv", GOOD + "7,x,1.0\n")).notes == [
            f"[data] reference {second} is not the reference of events (events:v1, other "
            "content): batches are compared with events:v1; to make the file the reference: "
            f"'mldeck data ingest {second} --reference'"
        ]
    finally:
        store.close()


def _with_reference(workspace: Workspace, reference: Path, expectations: str = EXPECTATIONS):
    return configure(workspace, expectations.replace(
        'id_column = "id"', f'id_column = "id"\nreference = "{reference}"'))  # fmt: skip


def test_a_configured_reference_that_is_rejected_never_becomes_the_reference(workspace, tmp_path):
    """It is kept (a rejected version, in quarantine) and said with each ingest, not ingested
    again, and not adopted as a duplicate: once revalidated under expectations it passes, the
    next ingest adopts it."""
    reference = put(tmp_path, "ref.csv", REJECTED)
    ws = _with_reference(workspace, reference)
    store = open_workspace_store(ws)
    try:
        first = ingest_file(ws, store, put(tmp_path, "a.csv", GOOD))
        second = ingest_file(ws, store, put(tmp_path, "b.csv", WARNED))
        flags = {row.version: (row.status, row.is_reference) for row in list_versions(store)[0]}
        assert flags == {1: ("rejected", False), 2: ("accepted", False), 3: ("warned", False)}
        said = (f"[data] reference {reference} is rejected (events:v1), so it is not the reference"
                " of events: batches are profiled without its bins ('mldeck data show events:v1'"
                " says why)")  # fmt: skip
        assert first.notes == second.notes == [said]
        with store.read() as session:
            names = session.execute(select(Run.name).where(Run.kind == RunKind.INGEST)).scalars()
            assert sorted(names) == ["ingest a.csv", "ingest b.csv", "ingest ref.csv"]
        assert (ws.root / "data/quarantine/events-v1-ref.csv").is_file()
        # The expectations fixed, the reference revalidated: the next ingest adopts it.
        text = ws.config_path.read_text(encoding="utf-8")
        ws.config_path.write_text(text.replace('["a", "b", "c"]', '["a", "b", "c", "z"]'))
        ws = load_workspace(ws.root)
        assert ingest.revalidate(ws, store, 1).status == "accepted"
        third = ingest_file(ws, store, put(tmp_path, "c.csv", GOOD.replace("1,", "7,")))
        assert third.notes == [f"[data] reference {reference}, already stored as events:v1, is "
                               "now the reference of events"]  # fmt: skip
        assert [row.version for row in list_versions(store)[0] if row.is_reference] == [1]
    finally:
        store.close()


def test_a_configured_reference_not_found_is_said(workspace, tmp_path):
    missing = tmp_path / "gone.csv"
    ws = _with_reference(workspace, missing)
    store = open_workspace_store(ws)
    try:
        outcome = ingest_file(ws, store, put(tmp_path, "a.csv", GOOD))
        assert outcome.status == "accepted"
        assert outcome.notes == [f"[data] reference {missing} not found ({missing}): events has "
                                 "no reference, batches are profiled without its bins"]  # fmt: skip
        assert outcome.as_dict()["notes"] == outcome.notes
        with store.read() as session:  # and in the batch's ingest run, for whoever looks later
            logged = session.execute(select(RunLog.message).join(Run).where(
                Run.name == "ingest a.csv")).scalars().all()  # fmt: skip
        assert outcome.notes[0] in logged
    finally:
        store.close()


def test_a_rejected_reference_is_hashed_once_not_per_batch(workspace, tmp_path, monkeypatch):
    """A watcher's batches each looked the stored reference up by hashing the whole file again
    (seconds per batch for a large reference); once the file changes it is looked at again."""
    reference = put(tmp_path, "ref.csv", REJECTED)
    ws = _with_reference(workspace, reference)
    store = open_workspace_store(ws)
    hashed: list[Path] = []
    real = ingest.file_sha256

    def counting(path: Path) -> str:
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(ingest, "file_sha256", counting)
    try:
        ingest_file(ws, store, put(tmp_path, "a.csv", GOOD))
        before = hashed.count(reference)
        for name in ("b.csv", "c.csv", "d.csv"):
            outcome = ingest_file(ws, store, put(tmp_path, name, GOOD.replace("1,", f"{name[0]},")))
            assert "is rejected (events:v1)" in outcome.notes[0]
        assert hashed.count(reference) == before
        reference.write_text(GOOD.replace("3,", "9,"))  # the reference fixed
        fixed = ingest_file(ws, store, put(tmp_path, "e.csv", WARNED))
        assert [n for n in fixed.notes if "ingested as events:v6" in n], fixed.notes
        assert [row.version for row in list_versions(store)[0] if row.is_reference] == [6]
    finally:
        store.close()


def test_cli_ingest_says_what_became_of_the_reference(tmp_path, cli):
    """Once per command, before the files' own lines."""
    reference = put(tmp_path / "files", "ref.csv", REJECTED)
    root = _with_reference(init_workspace(tmp_path / "ws", name="ref"), reference).root
    a, b = put(tmp_path / "files", "a.csv", GOOD), put(tmp_path / "files", "b.csv", WARNED)
    result = cli("data", "ingest", str(a), str(b), cwd=root)
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == [
        f"[data] reference {reference} is rejected (events:v1), so it is not the reference of "
        "events: batches are profiled without its bins ('mldeck data show events:v1' says why)",
        f"{a}: events:v2 ACCEPTED",
        f"{b}: events:v3 WARNED",
        "  - max(amount): 1 value above 1000",
        "  quarantine: data/quarantine/events-v3.rows.parquet",
    ]
    missing = tmp_path / "missing.csv"
    root = _with_reference(init_workspace(tmp_path / "ws2", name="ref2"), missing).root
    result = cli("data", "ingest", str(a), cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"[data] reference {missing} not found ({missing}): events has no reference, batches are "
        "profiled without its bins"
    )
    # --reference on a file that is rejected: said too.
    root = configure(init_workspace(tmp_path / "ws3", name="ref3")).root
    result = cli("data", "ingest", "--reference", str(reference), cwd=root)
    assert result.returncode == 4, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"{reference} is rejected (events:v1), so it is not the reference of events: batches are "
        "profiled without its bins ('mldeck data show events:v1' says why)"
    )


def test_a_tsv_file_is_read_and_recorded_with_tabs(ws, store, tmp_path):
    """Later reads (drift, scoring, training, revalidation) use the separator recorded."""
    outcome = ingest_file(ws, store, put(tmp_path, "batch.tsv", GOOD.replace(",", "\t")))
    assert (outcome.status, outcome.reasons) == ("accepted", [])
    with store.read() as session:
        version = session.get(DatasetVersion, outcome.version_id)
    assert version.report["csv_separator"] == "\t"
    assert ingest.separator_of(version, ",") == "\t"
    stored = ws.root / version.stored_path
    assert ingest.open_stored(stored, version, ",").columns == ["id", "amount", "kind", "note"]
    ingest.revalidate(ws, store, outcome.version_id)
    with store.read() as session:
        assert session.get(DatasetVersion, outcome.version_id).report["csv_separator"] == "\t"


@pytest.mark.parametrize("where", ["copy", "validate", "record"])
def test_an_interrupted_ingest_cancels_its_runs_and_keeps_the_source(
    ws, store, tmp_path, monkeypatch, where
):
    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    target = {"copy": "put_file", "validate": "validate", "record": "_record"}[where]
    monkeypatch.setattr(ingest, target, interrupt)
    source = put(tmp_path / "incoming", "batch.csv", GOOD)
    with pytest.raises(KeyboardInterrupt):
        ingest_file(ws, store, source, consume=True)
    with store.read() as session:
        runs = session.execute(select(Run.name, Run.status, Run.error)).all()
    expected = ["ingest batch.csv"] + ([] if where == "copy" else ["validate batch.csv"])
    assert sorted(name for name, _, _ in runs) == expected
    assert {status for _, status, _ in runs} == {RunStatus.CANCELLED}
    assert all(error == "interrupted (KeyboardInterrupt)" for _, _, error in runs)
    assert source.read_text() == GOOD and list_versions(store)[1] == 0 and leftovers(ws) == []
    monkeypatch.undo()  # the next try ingests it
    assert ingest_file(ws, store, source, consume=True).status == "accepted"


# -- concurrency ------------------------------------------------------------------------------


def test_content_recorded_by_another_process_meanwhile_is_a_duplicate(
    ws, store, tmp_path, monkeypatch
):
    first = ingest_file(ws, store, put(tmp_path, "one.csv", WARNED))
    # The second process looked before the first had recorded the content.
    monkeypatch.setattr(ingest, "_existing", lambda *_args: None)
    second = ingest_file(ws, store, put(tmp_path, "two.csv", WARNED))
    assert second.duplicate is True
    assert (second.version_id, second.status) == (first.version_id, "warned")
    assert list_versions(store)[1] == 1
    assert sorted(p.name for p in ws.quarantine_dir.iterdir()) == ["events-v1.rows.parquet"]
    with store.read() as session:
        statuses = session.execute(select(Run.status)).scalars().all()
    assert set(statuses) == {RunStatus.SUCCEEDED}
    assert leftovers(ws) == []


RACER = """\
import json, sys, time
from pathlib import Path
from mldeck.data.ingest import ingest_file
from mldeck.workspace import load_workspace, open_workspace_store

ws = load_workspace(Path(sys.argv[1]))
store = open_workspace_store(ws)
go = Path(sys.argv[3])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
outcome = ingest_file(ws, store, Path(sys.argv[2]))
print(json.dumps(outcome.as_dict()), flush=True)
"""


def test_two_processes_ingesting_the_same_file_make_one_version(ws, store, tmp_path):
    lines = [HEADER] + [f"{i},{i % 2000}.5,{'abc'[i % 3]},row\n" for i in range(10_000)]
    source = put(tmp_path, "shared.csv", "".join(lines))
    script = put(tmp_path, "racer.py", RACER)
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), str(ws.root), str(source), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environ(),
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready"
        go.touch()
        results = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    for racer, (_, err) in zip(racers, results, strict=True):
        assert racer.returncode == 0, err
        assert "Traceback" not in err
    outcomes = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert len({o["version_id"] for o in outcomes}) == 1
    assert sorted(o["duplicate"] for o in outcomes) == [False, True]
    assert {o["status"] for o in outcomes} == {"warned"}
    assert list_versions(store)[1] == 1
    assert len(list(ws.datasets_dir.rglob("*.csv"))) == 1
    assert [p.name for p in ws.quarantine_dir.iterdir()] == ["events-v1.rows.parquet"]
    assert leftovers(ws) == []


# -- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deck(tmp_path_factory, cli):
    """A configured workspace after ``mldeck data ingest`` of four files, one call per line below;
    and a runner for ``mldeck data ...`` in it."""
    base = tmp_path_factory.mktemp("data-cli")
    root = configure(init_workspace(base / "ws", name="data-cli")).root
    files = base / "files"
    for name, content in (
        ("good.csv", GOOD),
        ("warned.csv", WARNED),
        ("rejected.csv", REJECTED),
        ("wrong type.csv", BAD_INPUTS[7][1]),
    ):
        put(files, name, content)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli("data", *args, cwd=root)

    ingested = [
        run("ingest", str(files / "good.csv"), "--json"),
        run("ingest", str(files / "warned.csv"), "--json"),
        run("ingest", str(files / "rejected.csv"), "--json"),
        run("ingest", str(files / "good.csv"), str(files / "wrong type.csv")),
    ]
    return root, files, run, ingested


def _json(result: subprocess.CompletedProcess[str]):
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_cli_ingest_exit_status_tells_the_outcomes_apart(deck):
    _, files, _, ingested = deck
    for result, name, code, status in zip(
        ingested,
        ("good.csv", "warned.csv", "rejected.csv"),
        (0, 3, 4),
        ("accepted", "warned", "rejected"),
        strict=False,
    ):
        assert result.returncode == code, result.stderr
        [outcome] = _json(result)
        assert (outcome["status"], outcome["duplicate"]) == (status, False)
        assert outcome["source"] == str(files / name)
    # Several files, in words: a known file is reported as such, the worst outcome decides.
    assert ingested[3].returncode == 4, ingested[3].stderr
    lines = ingested[3].stdout.splitlines()
    assert lines[0] == f"{files / 'good.csv'}: already ingested as events:v1 (accepted)"
    assert lines[1] == f"{files / 'wrong type.csv'}: events:v4 REJECTED"
    assert lines[2] == "  - type(amount): 1 value is not float (column read as String)"
    assert lines[3] == "  quarantine: data/quarantine/events-v4-wrong_type.csv"


def test_cli_list_show_and_quarantine(deck):
    root, _, run, _ = deck
    listed = _json(run("list", "--json"))
    assert listed["total"] == 4
    by_label = {v["label"]: v for v in listed["versions"]}
    assert {label: v["status"] for label, v in by_label.items()} == {
        "events:v1": "accepted",
        "events:v2": "warned",
        "events:v3": "rejected",
        "events:v4": "rejected",
    }
    rejected = by_label["events:v3"]
    shown = [_json(run("show", ref, "--json")) for ref in ("events:v3", rejected["sha256"][:10])]
    assert shown[0] == shown[1]
    assert shown[0]["id"] == rejected["id"]
    assert shown[0]["report"]["status"] == "rejected"
    assert shown[0]["schema"]["kind"] == "String"
    assert "amount" in shown[0]["profile"]["columns"]

    human = run("show", str(rejected["id"]))
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("events:v3  REJECTED")
    assert "categories(kind)" in human.stdout
    assert "1 value outside the allowed categories" in human.stdout

    quarantine = _json(run("quarantine", "--json"))
    assert {v["label"] for v in quarantine["versions"]} == {"events:v2", "events:v3", "events:v4"}
    for version in quarantine["versions"]:
        assert (root / version["quarantine_path"]).is_file()


def test_cli_quarantine_lists_rows_files_and_files_never_ingested(tmp_path, cli):
    """A rejected batch's offending rows sit beside its copy; a file the watcher could not
    ingest has no version, only its '<name>.error.txt': both are listed."""
    ws = configure(init_workspace(tmp_path / "ws", name="quarantine"))
    path = put(tmp_path / "files", "bad.csv", REJECTED)
    assert cli("data", "ingest", str(path), cwd=ws.root).returncode == 4
    ws.quarantine_dir.joinpath("notes.md").write_text("# notes\n")
    ws.quarantine_dir.joinpath("notes.md.error.txt").write_text(
        "/in/notes.md\nfailed to ingest at 2026-12-05T10:00:00+00:00\nnot a data file\n"
    )
    listed = cli("data", "quarantine", "--json", cwd=ws.root)
    assert listed.returncode == 0, listed.stderr
    answer = _json(listed)
    (version,) = answer["versions"]
    assert version["quarantine_path"] == "data/quarantine/events-v1-bad.csv"
    assert version["rows_path"] == "data/quarantine/events-v1.rows.parquet"
    assert answer["not_ingested"] == [{"path": "data/quarantine/notes.md", "source": "/in/notes.md",
                                       "failed_at": "2026-12-05T10:00:00+00:00",
                                       "reason": "not a data file"}]  # fmt: skip
    text = cli("data", "quarantine", cwd=ws.root).stdout
    assert "rows: data/quarantine/events-v1.rows.parquet" in text
    assert "Not ingested" in text and "not a data file" in text


def test_cli_prints_brackets_as_written(tmp_path, cli):
    """Names and reasons hold brackets ('[data] csv_separator', a file named 'batch [x].csv')
    and colons (':cat:'): the CLI prints them as written, in lines and in tables, not as Rich
    style tags or emoji codes."""
    root = configure(init_workspace(tmp_path / "ws", name="brackets")).root

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli("data", *args, cwd=root)

    path = put(tmp_path / "files", "batch [x] :cat:.csv", BAD_INPUTS[3][1])
    ingested = run("ingest", str(path))
    assert ingested.returncode == 4, ingested.stderr
    assert f"{path}: events:v1 REJECTED" in ingested.stdout
    assert "(set [data] csv_separator)" in ingested.stdout
    shown = run("show", "events:v1")
    assert shown.returncode == 0, shown.stderr
    assert f"source     {path}" in shown.stdout
    assert "(set [data] csv_separator)" in shown.stdout  # a cell of the Checks table
    assert "batch [x] :cat:.csv" in run("list").stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "events:v99"), "no dataset version 'events:v99'"),
        (("ingest", "no such file.csv"), "no such file"),
    ],
)
def test_cli_data_errors_are_one_line(deck, args, needle):
    result = deck[2](*args)
    assert result.returncode not in (0, 3, 4)
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr


def test_resolve_version_by_each_kind_of_reference(ws, store, tmp_path):
    outcome = ingest_file(ws, store, put(tmp_path, "good.csv", GOOD))
    for ref in (str(outcome.version_id), "events:v1", outcome.sha256[:6], outcome.sha256.upper()):
        assert resolve_version(store, ref) == outcome.version_id
    # Too short a prefix is not an unknown version: the answer says how long a prefix must be.
    short = outcome.sha256[:5] if not outcome.sha256[:5].isdigit() else "abcde"
    with pytest.raises(NotFound, match=r"6 or more hex digits; '[0-9a-f]{5}' has 5"):
        resolve_version(store, short)


def test_a_file_not_ingested_at_all_decides_the_exit_status(tmp_path, cli):
    root = configure(init_workspace(tmp_path / "ws", name="exits")).root
    rejected = put(tmp_path / "files", "rejected.csv", REJECTED)
    result = cli("data", "ingest", str(rejected), str(tmp_path / "missing.csv"), cwd=root)
    # The rejected file is ingested and said; the missing one makes the status 2, not 4.
    assert result.returncode == 2, result.stderr
    assert "events:v1 REJECTED" in result.stdout and "no such file" in result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's file leases tell it")
def test_cli_ingest_refuses_a_file_another_process_is_still_writing(tmp_path, cli):
    """The copy taken then was cut where the writer was, and accepted (999 rows of 3000); the
    watcher waited for such a file, the command did not. The other files are still ingested."""
    root = configure(init_workspace(tmp_path / "ws", name="open")).root
    path, go = tmp_path / "files" / "growing.csv", tmp_path / "go"
    good = put(tmp_path / "files", "good.csv", GOOD)
    writer = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, time\n"
        f"path, go = pathlib.Path({str(path)!r}), pathlib.Path({str(go)!r})\n"
        "with open(path, 'w') as fh:\n"
        f"    fh.write({GOOD!r}); fh.flush()\n"
        "    while not go.exists(): time.sleep(0.05)\n"
    )])  # fmt: skip
    try:
        for _ in range(200):
            if path.exists() and path.stat().st_size:
                break
            time.sleep(0.05)
        result = cli("data", "ingest", str(path), str(good), cwd=root)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "growing.csv is open in another process (still being written?): not ingested" in (
            result.stderr
        )
        assert "events:v1 ACCEPTED" in result.stdout and "growing" not in result.stdout
    finally:
        go.touch()
        assert writer.wait(timeout=30) == 0
    done = cli("data", "ingest", str(path), cwd=root)
    assert done.returncode == 0, done.stderr  # closed: taken whole


# -- revalidation -------------------------------------------------------------------------------


def test_a_rejected_batch_is_validated_again_after_its_setting_is_fixed(ws, store, tmp_path):
    """The same bytes are never ingested twice, so a batch rejected for a setting (here the
    separator) gets its second look through ``revalidate``; its first report stays kept."""
    from mldeck.store.models import Artifact, AuditEvent, DatasetVersion

    semicolons = HEADER.replace(",", ";") + "1;1.5;a;x\n2;2.5;b;y\n"
    first = ingest_file(ws, store, put(tmp_path, "semi.csv", semicolons))
    assert first.status == "rejected"
    again = ingest_file(ws, store, put(tmp_path, "semi again.csv", semicolons))
    assert (again.duplicate, again.status) == (True, "rejected")

    fixed = load_workspace(_with_separator(ws.config_path, ";"))
    result = ingest.revalidate(fixed, store, first.version_id)
    assert (result.previous, result.status, result.reasons) == ("rejected", "accepted", [])
    assert result.label == "events:v1" and result.quarantine_path == ""
    with store.read() as session:
        version = session.get(DatasetVersion, first.version_id)
        assert (version.status, version.n_rows, version.n_cols) == ("accepted", 2, 4)
        assert (
            version.run_id == result.run_id and version.profile["columns"]["amount"]["max"] == 2.5
        )
        run = session.get(Run, result.run_id)
        assert (run.kind, run.status, run.tags["previous_status"]) == (
            RunKind.VALIDATE,
            RunStatus.SUCCEEDED,
            "rejected",
        )
        kept = session.execute(select(Artifact).where(Artifact.run_id == run.id)).scalar_one()
        event = session.execute(
            select(AuditEvent).where(AuditEvent.action == "dataset_version.revalidate")
        ).scalar_one()
    previous = json.loads((ws.root / kept.path).read_text())
    assert previous["status"] == "rejected"
    assert "the file looks ';'-separated" in json.dumps(previous["report"])
    assert (event.entity_id, event.details["from"], event.details["to"]) == (
        str(first.version_id),
        "rejected",
        "accepted",
    )
    # The first rejection's files stay in quarantine; nothing new is written for a pass.
    assert sorted(p.name for p in ws.quarantine_dir.iterdir()) == [
        "events-v1-semi.csv",
        "events-v1-semi.csv.report.json",
    ]
    assert leftovers(ws) == []


def _with_separator(config: Path, separator: str) -> Path:
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r"^\[data\]\n", f'[data]\ncsv_separator = "{separator}"\n', text,
                             count=1, flags=re.MULTILINE))  # fmt: skip
    return config.parent


def test_revalidation_under_stricter_settings_rejects_and_quarantines_anew(ws, store, tmp_path):
    outcome = ingest_file(ws, store, put(tmp_path, "good.csv", GOOD))
    assert outcome.status == "accepted"
    config = ws.config_path.read_text(encoding="utf-8")
    ws.config_path.write_text(config.replace('categories = ["a", "b", "c"]', 'categories = ["a"]'))
    result = ingest.revalidate(load_workspace(ws.root), store, outcome.version_id)
    assert (result.previous, result.status) == ("accepted", "rejected")
    assert result.reasons == ["categories(kind): 2 values outside the allowed categories"]
    run_id = result.run_id
    assert result.quarantine_path == f"data/quarantine/events-v1-run{run_id}-good.csv"
    assert (ws.root / result.quarantine_path).read_bytes() == GOOD.encode()
    rows = pl.read_parquet(ws.quarantine_dir / f"events-v1-run{run_id}.rows.parquet")
    assert rows[ROW].to_list() == [1, 2]


def test_the_reference_is_not_revalidated(ws, store, tmp_path):
    reference = ingest_file(ws, store, put(tmp_path, "ref.csv", GOOD), as_reference=True)
    with pytest.raises(MldeckError, match="events:v1 is the reference of events"):
        ingest.revalidate(ws, store, reference.version_id)


def test_cli_revalidate_says_the_change_and_exits_by_the_new_status(tmp_path, cli):
    root = configure(init_workspace(tmp_path / "ws", name="revalidate")).root
    path = put(tmp_path / "files", "semi.csv", HEADER.replace(",", ";") + "1;1.5;a;x\n")
    assert cli("data", "ingest", str(path), cwd=root).returncode == 4
    same = cli("data", "revalidate", "events:v1", cwd=root)
    assert same.returncode == 4, same.stderr
    assert same.stdout.startswith("events:v1: rejected -> REJECTED (run ")
    _with_separator(root / "mldeck.toml", ";")
    fixed = cli("data", "revalidate", "events:v1", "--json", cwd=root)
    assert fixed.returncode == 0, fixed.stderr
    answer = json.loads(fixed.stdout)
    assert (answer["previous_status"], answer["status"]) == ("rejected", "accepted")
    listed = json.loads(cli("data", "list", "--json", cwd=root).stdout)
    assert [v["status"] for v in listed["versions"]] == ["accepted"]
    missing = cli("data", "revalidate", "events:v9", cwd=root)
    assert missing.returncode == 2 and "no dataset version 'events:v9'" in missing.stderr


def test_one_file_fixed_with_its_own_separator_and_read_with_it_later(ws, store, tmp_path):
    """`--separator` fixes one ';' file without changing how the others are read: each version
    is read again (drift, scoring, training) with the separator it was validated with."""
    from mldeck.monitor.check import open_version
    from mldeck.store.models import DatasetVersion

    comma = ingest_file(ws, store, put(tmp_path, "comma.csv", GOOD))
    semi = ingest_file(ws, store, put(tmp_path, "semi.csv", GOOD.replace(",", ";")))
    assert (comma.status, semi.status) == ("accepted", "rejected")
    with pytest.raises(MldeckError, match="one character"):
        ingest.revalidate(ws, store, semi.version_id, separator=";;")
    fixed = ingest.revalidate(ws, store, semi.version_id, separator=";")
    assert (fixed.previous, fixed.status) == ("rejected", "accepted")
    assert load_workspace(ws.root).settings.data.csv_separator == ","  # the config untouched
    with store.read() as session:
        versions = {v.id: v for v in session.execute(select(DatasetVersion)).scalars()}
    assert versions[semi.version_id].report["csv_separator"] == ";"
    assert versions[comma.version_id].report["csv_separator"] == ","
    for version_id in (comma.version_id, semi.version_id):
        frame = open_version(ws, versions[version_id], "batch", check=True).collect()
        assert frame.columns == ["id", "amount", "kind", "note"] and frame.height == 3
    # Revalidated again without --separator (another expectation fixed): still its own ';'
    # (read with [data]'s ',' it was rejected again as "looks ';'-separated").
    again = ingest.revalidate(ws, store, semi.version_id)
    assert again.status == "accepted"
    assert version_detail(store, semi.version_id).row.status == "accepted"
    # A separator given wrong is what to change, not [data]'s, which this version does not read.
    wrong = ingest.revalidate(ws, store, semi.version_id, separator="|")
    assert wrong.status == "rejected"
    assert wrong.reasons == ["one column named 'id;amount;kind;note': the file looks "
                             "';'-separated (revalidate it with --separator)"]  # fmt: skip
    # A Parquet or NDJSON file has no separator: asking for one is refused, not recorded.
    ndjson = ingest_file(ws, store, put(tmp_path, "rows.ndjson",
                                        '{"id": 9, "amount": 1.5, "kind": "a", "note": "x"}\n'))  # fmt: skip
    with pytest.raises(MldeckError, match=r"is an NDJSON file: --separator is for CSV files"):
        ingest.revalidate(ws, store, ndjson.version_id, separator=";")


def test_revalidation_refuses_a_stored_copy_that_changed(ws, store, tmp_path):
    outcome = ingest_file(ws, store, put(tmp_path, "good.csv", GOOD))
    stored = stored_file(ws, outcome.sha256, ".csv")
    stored.write_bytes(GOOD.encode()[:-12])  # a line lost
    with pytest.raises(MldeckError, match="does not match its recorded sha256"):
        ingest.revalidate(ws, store, outcome.version_id)
    assert version_detail(store, outcome.version_id).row.n_rows == 3  # the version untouched


def test_revalidating_to_the_same_outcome_writes_no_second_copy(ws, store, tmp_path):
    outcome = ingest_file(ws, store, put(tmp_path, "bad.csv", REJECTED))
    first = ingest.revalidate(ws, store, outcome.version_id)  # records the separator: new files
    before = sorted(p.name for p in ws.quarantine_dir.iterdir())
    for _ in range(2):
        again = ingest.revalidate(ws, store, outcome.version_id)
        assert (again.status, again.quarantine_path) == ("rejected", first.quarantine_path)
    assert sorted(p.name for p in ws.quarantine_dir.iterdir()) == before
    assert leftovers(ws) == []


def test_a_value_unlike_the_first_ten_thousand_rows_is_checked_not_unreadable(ws, store, tmp_path):
    """polars infers a CSV's types from its first 10,000 rows and refuses the whole file at a
    later value that does not fit (`12.5` in a column of whole numbers): that column is read as
    text and checked as declared, and later readers read the version the same way."""
    from mldeck.monitor.check import open_version
    from mldeck.store.models import DatasetVersion

    body = "".join(f"{i},{i % 90},a,\n" for i in range(12_000))
    fine = ingest_file(ws, store, put(tmp_path, "late.csv", HEADER + body + "12000,12.5,b,\n"))
    assert fine.status == "accepted", fine.reasons
    with store.read() as session:
        version = session.get(DatasetVersion, fine.version_id)
    assert version.schema_["amount"] == "Float64"
    frame = open_version(ws, version, "batch", check=True).collect()
    assert frame.height == 12_001 and frame["amount"][-1] == 12.5

    bad = ingest_file(ws, store, put(tmp_path, "bad.csv", HEADER + body + "x7,1.0,b,\n"))
    assert bad.status == "rejected"
    detail = version_detail(store, bad.version_id)
    failed = [c for c in detail.report["checks"] if c["status"] == "fail"]
    assert [(c["check"], c["column"], c["failed_rows"]) for c in failed] == [("type", "id", 1)]
