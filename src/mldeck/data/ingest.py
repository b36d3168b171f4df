"""Ingest: a file becomes an immutable, content-addressed dataset version with its validation
report and profile; offending rows and rejected batches go to quarantine. Nothing is deleted.

The path of a file: hash while copying into ``.mldeck/datasets/`` (the original bytes, kept) →
the same content already known? one version, not two → open and validate the stored copy in one
polars pass (against the dataset's reference profile) → offending rows to
``data/quarantine/<dataset>-v<N>.rows.parquet``, a rejected batch's bytes and report to
``data/quarantine/`` → one write transaction records the version, its runs and lineage.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import traceback
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mldeck import audit, provenance
from mldeck.data.readers import (
    SET_SEPARATOR,
    SNIFF_BYTES,
    ReadError,
    Source,
    check_separator,
    detect_format,
    open_source,
    separator_for,
    stored_types,
    unsupported_type,
)
from mldeck.data.validate import (
    Validation,
    reasons_from_report,
    reference_profile,
    unreadable,
    validate,
)
from mldeck.errors import (
    MldeckError,
    NotADataFile,
    NotFound,
    WorkspaceFull,
    disk_full,
    interrupted,
)
from mldeck.formatting import fitted_name, shown
from mldeck.formatting import size as shown_size
from mldeck.store.artifacts import ArtifactError, file_sha256, put_file, put_stream, verify
from mldeck.store.engine import Store
from mldeck.store.models import (
    Artifact,
    Dataset,
    DatasetVersion,
    Run,
    RunInput,
    RunKind,
    RunLog,
    RunStatus,
    RunTrigger,
    utcnow,
)
from mldeck.workspace import Workspace

if TYPE_CHECKING:
    from mldeck.data.expectations import DataSettings

# Exit statuses of `mldeck data ingest`, by the worst outcome.
EXIT = {"accepted": 0, "warned": 3, "rejected": 4}


@dataclass
class IngestOutcome:
    version_id: int
    dataset: str
    version: int
    sha256: str
    status: str
    duplicate: bool
    source: str
    reasons: list[str]
    quarantine_path: str = ""
    # What else a person should know, beside this file's checks: the configured reference
    # ingested, rejected (so not the reference) or not found.
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "dataset": self.dataset,
            "version": self.version,
            "sha256": self.sha256,
            "status": self.status,
            "duplicate": self.duplicate,
            "source": self.source,
            "reasons": self.reasons,
            "quarantine_path": self.quarantine_path,
            "notes": self.notes,
        }


def _start_run(store: Store, kind: RunKind, trigger: str, name: str, params: dict) -> int:
    now = utcnow()
    run = Run(name=name, kind=kind, trigger=trigger, status=RunStatus.RUNNING, created_at=now,
              started_at=now, heartbeat_at=now, params=params, user=provenance.current_user(),
              host=provenance.hostname(), pid=os.getpid())  # fmt: skip
    with store.write() as session:
        session.add(run)
        session.flush()
        return run.id


def _fail_run(store: Store, run_id: int, error: str, status: RunStatus = RunStatus.FAILED) -> None:
    try:
        with store.write() as session:
            run = session.get(Run, run_id)
            run.status, run.ended_at, run.error = status, utcnow(), error
            session.add(run)
    except Exception:  # written by the next ingest (see _end_unended)
        _unended.setdefault(store, {})[run_id] = (status, error)
        raise


# Runs an exception interrupted whose ending could not be written either (the store's disk was
# full): ended by the next ingest of this process, not left "running" while it lives.
_unended: weakref.WeakKeyDictionary[Store, dict[int, tuple[RunStatus, str]]] = (
    weakref.WeakKeyDictionary()
)


def _end_runs(store: Store, run_ids: tuple[int, ...], exc: BaseException) -> None:
    """End the runs an exception interrupted: cancelled on Ctrl-C, failed otherwise."""
    if interrupted(exc):
        status, error = RunStatus.CANCELLED, "interrupted (KeyboardInterrupt)"
    else:
        status, error = RunStatus.FAILED, "".join(traceback.format_exception(exc))
    waiting = _unended.setdefault(store, {})
    for run_id in run_ids:
        waiting[run_id] = (status, error)
    _end_unended(store)


def _end_unended(store: Store) -> None:
    """Write the endings :func:`_end_runs` could not (raises as the store does)."""
    waiting = _unended.get(store)
    if not waiting:
        return
    with store.write() as session:
        for run_id, (status, error) in list(waiting.items()):
            run = session.get(Run, run_id)
            if run is not None and run.status == RunStatus.RUNNING:  # not one already ended
                run.status, run.ended_at, run.error = status, utcnow(), error
                session.add(run)
    waiting.clear()


def _existing(store: Store, sha: str) -> tuple[DatasetVersion, str] | None:
    with store.read() as session:
        row = session.execute(
            select(DatasetVersion, Dataset.name)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.sha256 == sha)
        ).first()
    return None if row is None else (row[0], row[1])


def _is_reference(store: Store, version: DatasetVersion) -> bool:
    with store.read() as session:
        ds = session.get(Dataset, version.dataset_id)
    return ds is not None and ds.reference_version_id == version.id


def reference_of(store: Store, dataset: str) -> dict[str, Any] | None:
    """The profile of the dataset's reference version (None if it has none yet)."""
    with store.read() as session:
        row = session.execute(
            select(DatasetVersion.profile)
            .join(Dataset, Dataset.reference_version_id == DatasetVersion.id)
            .where(Dataset.name == dataset)
        ).first()
    return None if row is None else row[0]


def ingest_file(
    workspace: Workspace,
    store: Store,
    path: Path,
    *,
    dataset: str | None = None,
    trigger: str = RunTrigger.MANUAL,
    as_reference: bool = False,
    consume: bool = False,
    progress: Callable[[str], None] | None = None,
    adopt: bool = False,
) -> IngestOutcome:
    """Ingest one file. With *consume* (the watcher), the source file is removed once its bytes
    are safely stored, since they are kept in the workspace under their hash. With *adopt*
    (``[data] reference`` naming a file already stored as a batch), a duplicate is returned for
    the caller to make it the reference instead of being refused."""
    workspace.refuse_state_file(path)
    if (problem := unsupported_type(path)) is not None:
        raise NotADataFile(f"{shown(str(path))}: {problem}")
    if not path.exists():  # a mistyped name is no failed ingest run (nor an alert about one)
        raise NotFound(f"no such file: {shown(str(path))}")
    if path.is_dir():
        raise NotADataFile(f"{shown(str(path))} is a folder, not a file")
    if path.is_char_device() or path.is_block_device():  # copied before it is read:
        # /dev/zero filled the disk (a pipe, `<(cmd)`, is copied as it comes)
        raise NotADataFile(f"{shown(str(path))} is a device, not a file")
    _end_unended(store)  # runs an earlier failure could not end (a full disk since freed)
    settings = workspace.settings.data
    asked = dataset is not None  # named by the caller (--dataset), not the configured default
    if asked:
        check_dataset_name(dataset)
    dataset = dataset or settings.dataset
    say = progress or (lambda _message: None)
    notes: list[str] = []
    if not as_reference:
        own = _ensure_reference(workspace, store, dataset, path, trigger, say, notes)
        if own is not None:  # *path* is the configured reference: ingested as such
            own.notes = [*notes, *own.notes]
            return own
    # As stored and printed: a name in another system's encoding is not valid UTF-8 text.
    source_name, file_name = shown(str(path)), shown(path.name)
    ingest_run = _start_run(store, RunKind.INGEST, trigger, f"ingest {file_name}",
                            {"source": source_name, "dataset": dataset})  # fmt: skip
    try:
        before = _identity(path)
        sha, stored, size = put_file(workspace.datasets_dir, path, suffix=path.suffix.lower())
    except MldeckError as exc:
        _fail_run(store, ingest_run, str(exc))
        raise
    except OSError as exc:
        if disk_full(exc):  # the copy's write, not the file's read
            problem = f"no room to keep a copy of {source_name} in the workspace ({exc.strerror})"
            with contextlib.suppress(Exception):  # the store may be on the same full disk
                _fail_run(store, ingest_run, problem)
            raise WorkspaceFull(problem) from None
        _fail_run(store, ingest_run, f"cannot copy {source_name}: {exc.strerror or exc}")
        raise MldeckError(f"cannot read {source_name}: {exc.strerror or exc}") from None
    except BaseException as exc:
        _end_runs(store, (ingest_run,), exc)
        raise
    try:
        known = _existing(store, sha)
    except BaseException as exc:
        _end_runs(store, (ingest_run,), exc)
        raise
    if known is not None:
        version, name = known
        if (
            asked and name != dataset
        ):  # one content, one version: it is not copied into another dataset
            problem = (f"{source_name} is already stored as {name}:v{version.version}; the same "
                       f"content is one version, so it is not added to dataset {dataset!r}")  # fmt: skip
            _fail_run(store, ingest_run, problem)
            raise MldeckError(problem)
        if as_reference and not adopt and not _is_reference(store, version):
            problem = (f"{source_name} is already stored as {name}:v{version.version}, a batch;"
                       " a file becomes a reference only when it is first ingested with --reference")  # fmt: skip
            _fail_run(store, ingest_run, problem)
            raise MldeckError(problem)
        _finish_duplicate(store, ingest_run, version)
        if consume:
            _consume(path, before)
        say(f"{file_name}: same content as {name}:v{version.version}; not ingested again")
        return IngestOutcome(version.id, name, version.version, sha, version.status, True,
                             source_name, reasons_from_report(version.report),
                             version.quarantine_path, notes)  # fmt: skip

    # Named per process: two processes validating the same content must not share a temp file.
    rows_file = workspace.quarantine_dir / f".{sha[:16]}-{uuid.uuid4().hex[:12]}.rows.parquet"
    runs: tuple[int, ...] = (ingest_run,)
    made: list[Path] = []  # quarantine files, removed if the version is not recorded
    try:
        validate_run = _start_run(store, RunKind.VALIDATE, trigger, f"validate {file_name}",
                                  {"sha256": sha, "dataset": dataset})  # fmt: skip
        runs = (validate_run, ingest_run)
        _progress(store, validate_run, f"validating {shown_size(size)}")
        workspace.quarantine_dir.mkdir(parents=True, exist_ok=True)
        result = _validated(stored, settings, rows_file=rows_file, as_reference=as_reference,
                            reference=None if as_reference else reference_of(store, dataset))  # fmt: skip
        outcome = _record(workspace, store, result, dataset=dataset, sha=sha, stored=stored,
                          size=size, source=path, rows_file=rows_file, made=made,
                          runs=(ingest_run, validate_run), as_reference=as_reference, notes=notes)  # fmt: skip
    except BaseException as exc:
        for left in (rows_file, *made):
            with contextlib.suppress(OSError):  # a read-only quarantine folder: the runs end anyway
                left.unlink(missing_ok=True)
        _end_runs(store, runs, exc)
        raise
    if consume:
        _consume(path, before)
    say(f"{file_name}: {outcome.dataset}:v{outcome.version} {outcome.status}")
    if as_reference and not outcome.duplicate and outcome.status == "rejected":
        name = f"[data] reference {workspace.settings.data.reference}" if adopt else source_name
        notes.append(_not_the_reference(outcome.dataset, outcome.version, name))
        say(notes[-1])
    outcome.notes = notes
    return outcome


@dataclass
class Revalidation:
    version_id: int
    label: str
    previous: str
    status: str
    reasons: list[str]
    run_id: int
    quarantine_path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "version": self.label,
            "previous_status": self.previous,
            "status": self.status,
            "reasons": self.reasons,
            "run_id": self.run_id,
            "quarantine_path": self.quarantine_path,
        }


def revalidate(
    workspace: Workspace,
    store: Store,
    version_id: int,
    *,
    trigger: str = RunTrigger.MANUAL,
    progress: Callable[[str], None] | None = None,
    separator: str | None = None,
) -> Revalidation:
    """Validate a stored version again under the current ``mldeck.toml`` (after fixing the setting
    a rejection named, say ``csv_separator``): the same bytes cannot be ingested twice, so this is
    how a rejected batch gets a second look. The version takes the new status, report and profile;
    the previous report is kept as an artifact of the new validation run, the change is an audit
    event, and earlier quarantine files stay where they are (an outcome that did not change
    writes none). *separator* reads a CSV with another separator than ``[data] csv_separator``
    (one file fixed without changing how every other file is read)."""
    say = progress or (lambda _message: None)
    with store.read() as session:
        row = session.execute(
            select(DatasetVersion, Dataset)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.id == version_id)
        ).first()
    if row is None:
        raise MldeckError(f"no dataset version {version_id}")
    version, ds = row
    label = f"{ds.name}:v{version.version}"
    if ds.reference_version_id == version.id:
        raise MldeckError(
            f"{label} is the reference of {ds.name}: its profile is what batches and drift are "
            "compared with, so it is not validated again; ingest a new reference with --reference"
        )
    stored = workspace.root / version.stored_path
    if not stored.is_file():
        raise MldeckError(
            f"cannot revalidate {label}: its stored copy {version.stored_path} is missing"
        )
    try:  # the bytes the version names, or nothing: a changed copy is not this version
        verify(stored, version.sha256)
    except ArtifactError as exc:
        raise MldeckError(f"cannot revalidate {label}: {exc}") from None
    settings = workspace.settings.data
    if separator is None and (version.report or {}).get("separator_given"):
        # Its separator was given for this file (--separator), not taken from [data]: it still
        # holds for the file (revalidated after fixing another expectation, it was read with
        # [data]'s and rejected again as "looks ';'-separated").
        separator = version.report["csv_separator"]
        given = True
    else:
        given = separator is not None
    if separator is not None:
        with open(stored, "rb") as fh:
            kind = detect_format(stored, fh.read(SNIFF_BYTES))
        if kind != "csv":  # it would be recorded, and say a separator that was never used
            what = "a Parquet" if kind == "parquet" else "an NDJSON"
            raise MldeckError(f"{label} is {what} file: --separator is for CSV files")
        settings = settings.model_copy(update={"csv_separator": check_separator(separator)})
    run_id = _start_run(store, RunKind.VALIDATE, trigger, f"revalidate {label}",
                        {"sha256": version.sha256, "dataset": ds.name, "revalidates": label})  # fmt: skip
    rows_file = (
        workspace.quarantine_dir / f".{version.sha256[:16]}-{uuid.uuid4().hex[:12]}.rows.parquet"
    )
    made: list[Path] = []  # this outcome's quarantine files, removed if it is not recorded
    try:
        _progress(store, run_id, f"validating {shown_size(version.size_bytes)} again")
        workspace.quarantine_dir.mkdir(parents=True, exist_ok=True)
        result = _validated(stored, settings, rows_file=rows_file,
                            reference=reference_of(store, ds.name))  # fmt: skip
        if given and result.read_error:
            # The version's own separator, not [data]'s, is read: that is what to change (it
            # said to set [data] csv_separator, which this version does not read).
            for check in result.checks:
                check.detail = check.detail.replace(
                    SET_SEPARATOR, "(revalidate it with --separator)"
                )
            result.read_error = result.read_error.replace(
                SET_SEPARATOR, "(revalidate it with --separator)"
            )
        report = _with_separator(result, separator_for(stored, settings.csv_separator))
        if given:
            report["separator_given"] = True
        if _outcome(report) == _outcome(version.report or {}):
            # Nothing changed (a retry, a setting that does not matter here): the files already
            # in quarantine are this outcome's; no second copy of the batch.
            rows_file.unlink(missing_ok=True)
            quarantine = version.quarantine_path
        else:  # named after this run: the earlier quarantine files are kept as they are
            quarantine = _quarantine(workspace, result, f"{_safe(ds.name)}-v{version.version}-run{run_id}",
                                     report=report, source_name=version.source_path, sha=version.sha256,
                                     stored=stored, rows_file=rows_file, made=made)  # fmt: skip
        before = json.dumps({"status": version.status, "run_id": version.run_id,
                             "quarantine_path": version.quarantine_path, "report": version.report},
                            indent=2, default=str).encode()  # fmt: skip
        sha, kept, size = put_stream(workspace.artifacts_dir, io.BytesIO(before), ".json")
        with store.write() as session:
            current = session.get(DatasetVersion, version_id)
            previous = current.status
            current.status, current.n_rows, current.n_cols = (
                result.status,
                result.n_rows,
                result.n_cols,
            )
            current.schema_, current.profile = result.schema, result.profile
            current.report = report
            current.run_id, current.quarantine_path = run_id, quarantine
            session.add(current)
            session.add(Artifact(run_id=run_id, name=f"previous-report:{label}", kind="report",
                                 path=str(kept.relative_to(workspace.root)), sha256=sha,
                                 size_bytes=size))  # fmt: skip
            run = session.get(Run, run_id)
            run.status, run.ended_at, run.progress = RunStatus.SUCCEEDED, utcnow(), 1.0
            run.tags = {"dataset": ds.name, "version": version.version, "status": result.status,
                        "previous_status": previous}  # fmt: skip
            session.add(run)
            session.add(RunInput(run_id=run_id, dataset_version_id=version_id, role="input"))
            for reason in result.reasons():
                level = "warning" if result.status == "warned" else "error"
                session.add(RunLog(run_id=run_id, level=level, message=reason))
            audit.append(session, "dataset_version.revalidate", entity_type="dataset_version",
                         entity_id=version_id, details={"batch": label, "from": previous,
                                                        "to": result.status, "run": run_id})  # fmt: skip
    except BaseException as exc:
        for left in (rows_file, *made):
            with contextlib.suppress(OSError):
                left.unlink(missing_ok=True)
        _end_runs(store, (run_id,), exc)
        raise
    say(f"{label}: {previous} -> {result.status}")
    return Revalidation(version_id, label, previous, result.status, result.reasons(), run_id,
                        quarantine)  # fmt: skip


def check_dataset_name(name: str) -> None:
    """A dataset's name: it prefixes version references (``churn:v3``), so no ':'."""
    if (not name.strip() or name != name.strip() or len(name) > 100
            or any(c in name for c in ":/\\") or not name.isprintable()):  # fmt: skip
        raise MldeckError(
            f"a dataset's name is 1-100 printable characters without ':', '/' or '\\' and "
            f"without spaces at either end, not {name!r}"
        )


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _consume(path: Path, before: tuple[int, int, int] | None) -> None:
    """Remove a source whose bytes are stored, unless it changed while it was being copied."""
    if before is not None and _identity(path) == before:
        path.unlink(missing_ok=True)


def _ensure_reference(
    workspace: Workspace,
    store: Store,
    dataset: str,
    path: Path,
    trigger: str,
    say: Callable[[str], None],
    notes: list[str],
) -> IngestOutcome | None:
    """Ingest ``[data] reference`` as the dataset's reference if it has none yet. When *path*
    is that file itself, its outcome is returned: it is ingested as the reference, not as a
    batch that the next ingest would then turn into the reference.

    The configured file is the reference of the configured ``[data] dataset`` only: a batch
    ingested under another name is validated without a reference's bins.

    What a person should know is said and added to *notes* (the CLI prints them): the reference
    not found, ingested, adopted, or rejected. A rejected reference is kept as a rejected version
    and never made the reference (nor adopted later as a duplicate); once revalidated under
    expectations it passes, the next ingest adopts it.
    """

    def note(text: str) -> None:
        say(text)
        notes.append(text)

    configured = workspace.settings.data.reference
    if not configured or dataset != workspace.settings.data.dataset:
        return None
    reference = Path(configured)
    reference = reference if reference.is_absolute() else workspace.root / reference
    if reference_of(store, dataset) is not None:
        # [data] reference changed since (or another file made the reference with --reference):
        # said, as batches go on being compared with the reference in force (it was silent).
        with store.read() as session:
            current = session.execute(
                select(DatasetVersion.sha256, DatasetVersion.version)
                .join(Dataset, Dataset.reference_version_id == DatasetVersion.id)
                .where(Dataset.name == dataset)
            ).one()
        try:
            other = reference.is_file() and _reference_sha256(reference) != current.sha256
        except OSError:
            other = False
        if other:
            note(f"[data] reference {configured} is not the reference of {dataset} "
                 f"({dataset}:v{current.version}, other content): batches are compared with "
                 f"{dataset}:v{current.version}; to make the file the reference: 'mldeck data "
                 f"ingest {configured} --reference'")  # fmt: skip
        return None
    if not reference.is_file():
        note(f"[data] reference {configured} not found ({shown(str(reference))}): {dataset} has "
             "no reference, batches are profiled without its bins")  # fmt: skip
        return None
    itself = reference.resolve() == path.resolve()
    if not itself:
        # Already stored and rejected: said again, not ingested again (one duplicate ingest run
        # per batch would say nothing more).
        try:
            known = _existing(store, _reference_sha256(reference))
        except OSError:  # unreadable: its own ingest below says why
            known = None
        if known is not None and known[1] == dataset and known[0].status == "rejected":
            note(_not_the_reference(dataset, known[0].version, f"[data] reference {configured}"))
            return None
    outcome = ingest_file(workspace, store, reference, dataset=dataset, trigger=trigger,
                          as_reference=True, progress=say, adopt=True)  # fmt: skip
    label = f"{outcome.dataset}:v{outcome.version}"
    if outcome.duplicate and reference_of(store, dataset) is None:
        if outcome.dataset != dataset:
            note(f"[data] reference {configured} is stored as {outcome.dataset}:v{outcome.version};"
                 f" {dataset} has no reference: batches are profiled without its bins")  # fmt: skip
        elif outcome.status == "rejected":  # a rejected batch is no baseline
            note(_not_the_reference(dataset, outcome.version, f"[data] reference {configured}"))
        else:
            with store.write() as session:
                ds = session.execute(select(Dataset).where(Dataset.name == dataset)).scalar_one()
                ds.reference_version_id = outcome.version_id
                session.add(ds)
            note(f"[data] reference {configured}, already stored as {label}, is now the "
                 f"reference of {dataset}")  # fmt: skip
    elif not outcome.duplicate and outcome.status != "rejected":
        note(f"{configured} is [data] reference and {dataset} had none: ingested as its reference"
             if itself else f"[data] reference {configured} ingested as {label} "
             f"({outcome.status}), the reference of {dataset}")  # fmt: skip
    if itself:
        return outcome
    notes.extend(outcome.notes)  # a rejection, said by the reference's own ingest
    return None


# The configured reference's sha256 by the file's identity and change time: a watcher takes many
# batches while a rejected reference stays as it is, and hashing a large file per batch cost
# seconds each. An edited or replaced file has another (inode, size, mtime_ns) and is hashed again.
_REFERENCE_HASHES: dict[tuple[str, int, int, int], str] = {}


def _reference_sha256(path: Path) -> str:
    info = path.stat()
    key = (str(path.resolve()), info.st_ino, info.st_size, info.st_mtime_ns)
    digest = _REFERENCE_HASHES.get(key)
    if digest is None:
        digest = file_sha256(path)
        _REFERENCE_HASHES.clear()  # one configured reference at a time
        _REFERENCE_HASHES[key] = digest
    return digest


def _not_the_reference(dataset: str, version: int, name: str) -> str:
    label = f"{dataset}:v{version}"
    return (f"{name} is rejected ({label}), so it is not the reference of {dataset}: batches are "
            f"profiled without its bins ('mldeck data show {label}' says why)")  # fmt: skip


def _progress(store: Store, run_id: int, message: str) -> None:
    with store.write() as session:
        run = session.get(Run, run_id)
        run.progress_message = message
        session.add(run)


def _finish_duplicate(store: Store, run_id: int, version: DatasetVersion) -> None:
    with store.write() as session:
        _mark_duplicate(session, (run_id,), version)


def _mark_duplicate(session: Any, runs: tuple[int, ...], version: DatasetVersion) -> None:
    now = utcnow()
    for run_id in runs:
        run = session.get(Run, run_id)
        run.status, run.ended_at, run.progress = RunStatus.SUCCEEDED, now, 1.0
        run.tags = {"duplicate_of": version.id}
        session.add(run)
        session.add(RunInput(run_id=run_id, dataset_version_id=version.id, role="duplicate"))


def _record(
    workspace: Workspace,
    store: Store,
    result: Validation,
    *,
    dataset: str,
    sha: str,
    stored: Path,
    size: int,
    source: Path,
    rows_file: Path,
    made: list[Path],
    runs: tuple[int, int],
    as_reference: bool,
    notes: list[str],
) -> IngestOutcome:
    ingest_run, validate_run = runs
    root = workspace.root
    source_name = shown(str(source))
    with store.write() as session:
        # Checked again inside the write transaction (writers are serialised): another process
        # may have recorded the same content while this one was validating it.
        known = session.execute(
            select(DatasetVersion, Dataset.name)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.sha256 == sha)
        ).first()
        if known is not None:
            version, name = known
            _mark_duplicate(session, runs, version)
            rows_file.unlink(missing_ok=True)  # this process's temp copy; the rows are recorded
            return IngestOutcome(version.id, name, version.version, sha, version.status, True,
                                 source_name, [], version.quarantine_path)  # fmt: skip
        ds = session.execute(select(Dataset).where(Dataset.name == dataset)).scalar_one_or_none()
        if ds is None:
            ds = Dataset(name=dataset)
            session.add(ds)
            session.flush()
        number = (
            session.execute(
                select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == ds.id)
            ).scalar()
            or 0
        ) + 1
        report = _with_separator(
            result, separator_for(stored, workspace.settings.data.csv_separator)
        )
        quarantine = _quarantine(workspace, result, f"{_safe(dataset)}-v{number}", report=report,
                                 source_name=source_name, sha=sha, stored=stored,
                                 rows_file=rows_file, made=made)  # fmt: skip
        version = DatasetVersion(
            dataset_id=ds.id, version=number, sha256=sha, source_path=source_name,
            stored_path=str(stored.relative_to(root)), file_format=_format_of(stored),
            size_bytes=size, n_rows=result.n_rows, n_cols=result.n_cols, status=result.status,
            schema_=result.schema, profile=result.profile, report=report,
            run_id=validate_run, quarantine_path=quarantine,
        )  # fmt: skip
        session.add(version)
        try:
            session.flush()
        except IntegrityError:  # another process recorded the same content first
            session.rollback()
            raise MldeckError(
                f"{source_name} was ingested by another process at the same time"
            ) from None
        if as_reference and result.status != "rejected":
            previous = ds.reference_version_id
            ds.reference_version_id = version.id
            session.add(ds)
            if previous is not None and previous != version.id:  # said: batches compare anew
                before = session.get(DatasetVersion, previous)
                note = (f"{dataset}:v{number} replaces {dataset}:v{before.version} as the "
                        f"reference of {dataset}: batches are validated and checked for drift "
                        "against it from now on")  # fmt: skip
                configured = workspace.settings.data.reference
                named = configured and (workspace.root / configured).resolve()
                if (
                    named
                    and dataset == workspace.settings.data.dataset
                    and named != Path(source).resolve()
                ):
                    note += f" ([data] reference in mldeck.toml still names {configured})"
                notes.append(note)
        now = utcnow()
        for run_id, role in ((ingest_run, "output"), (validate_run, "input")):
            run = session.get(Run, run_id)
            run.status, run.ended_at, run.progress = RunStatus.SUCCEEDED, now, 1.0
            run.tags = {"dataset": dataset, "version": number, "status": result.status}
            session.add(run)
            session.add(RunInput(run_id=run_id, dataset_version_id=version.id, role=role))
        # What became of the configured reference, in the batch's own log too: the watcher and
        # the scheduler print it to a terminal no one may be reading.
        for note in notes:
            session.add(RunLog(run_id=ingest_run, level="info", message=note))
        for reason in result.reasons():
            session.add(RunLog(run_id=validate_run, level="warning" if result.status == "warned" else "error",
                               message=reason))  # fmt: skip
        session.flush()
        version_id = version.id
    return IngestOutcome(version_id, dataset, number, sha, result.status, False, source_name,
                         result.reasons(), quarantine)  # fmt: skip


def _with_separator(result: Validation, separator: str) -> dict[str, Any]:
    """The report to store, with the CSV separator the file was read with (``separator_for``:
    a ``.tsv`` file's tab): reading the version again later (drift, scoring, training) uses it,
    whatever ``[data] csv_separator`` says then."""
    return {**result.report(), "csv_separator": separator}


def _outcome(report: dict[str, Any]) -> tuple:
    """What a validation concluded, without its timing: the status, how the file was read, each
    check's result and count."""
    checks = tuple((c.get("check"), c.get("column"), c.get("status"), c.get("failed_rows"))
                   for c in report.get("checks", []))  # fmt: skip
    return (report.get("status"), report.get("read_error"), report.get("csv_separator"),
            report.get("n_rows"), checks)  # fmt: skip


def separator_of(version: DatasetVersion, configured: str) -> str:
    """The separator to read a stored version with: the one it was validated with, else (a
    version recorded before separators were) the *configured* one."""
    return (version.report or {}).get("csv_separator") or configured


def open_stored(path: Path, version: DatasetVersion, configured: str) -> Source:
    """A stored version's file opened as its validation read it: with its separator and, for a
    CSV, its columns' recorded types (a column whose values past the first rows polars would
    misread is read as text, or as its declared number type)."""
    return open_source(path, separator=separator_of(version, configured),
                       types=stored_types(version.schema_ or {}))  # fmt: skip


def _validated(
    stored: Path,
    settings: DataSettings,
    *,
    rows_file: Path,
    reference: dict[str, Any] | None,
    as_reference: bool = False,
) -> Validation:
    """The validation of a stored file: its reason when it cannot be read, the reference's
    profile for a reference, else the checks against *reference* (offending rows to
    *rows_file*)."""
    try:
        source = open_source(stored, separator=settings.csv_separator)
    except ReadError as exc:
        return unreadable(str(exc))
    if as_reference:
        return reference_profile(source, settings)
    return validate(source, settings, reference=reference, offending_path=rows_file)


def _format_of(stored: Path) -> str:
    """The format the file was read as (csv, parquet or ndjson): a file without a suffix was
    recorded as csv whatever it held, a ``.jsonl`` one as "jsonl"."""
    try:
        with open(stored, "rb") as fh:
            return detect_format(stored, fh.read(SNIFF_BYTES))
    except OSError:
        return stored.suffix.lstrip(".").lower() or "csv"


def _quarantine(
    workspace: Workspace,
    result: Validation,
    label: str,
    *,
    report: dict[str, Any],
    source_name: str,
    sha: str,
    stored: Path,
    rows_file: Path,
    made: list[Path],
) -> str:
    """Move a validation's offending rows to ``<label>.rows.parquet`` and, for a rejected batch,
    copy its bytes and *report* (as the version stores it) to quarantine; return where
    (relative to the workspace, or ""). The files it makes are added to *made* as they are
    begun, for the caller to remove if the version is not recorded: a copy cut short by a full
    disk was left behind at every retry, under a new name each time, unlisted."""
    root = workspace.root
    quarantine = ""
    # A label no earlier file took (two datasets whose safe names meet: "sales eu", "sales_eu").
    safe, base, number = _safe(Path(source_name).name), label, 1
    while (workspace.quarantine_dir / f"{label}.rows.parquet").exists() or (
        workspace.quarantine_dir / fitted_name(f"{label}-{safe}")
    ).exists():
        number += 1
        label = f"{base}-{number}"
    try:  # what quarantine keeps of a file is no more readable than the file was
        mode: int | None = stat.S_IMODE(os.stat(source_name).st_mode) & 0o666
    except OSError:
        mode = None

    def keep_mode(path: Path) -> None:
        if mode is not None:
            with contextlib.suppress(OSError):
                os.chmod(path, mode)

    if rows_file.exists():
        final_rows = rows_file.with_name(f"{label}.rows.parquet")
        made.append(final_rows)
        rows_file.replace(final_rows)
        keep_mode(final_rows)
        quarantine = str(final_rows.relative_to(root))
    if result.status == "rejected":
        whole = workspace.quarantine_dir / fitted_name(f"{label}-{safe}")
        kept = whole.with_name(whole.name + ".report.json")
        made += [whole, kept]
        shutil.copyfile(stored, whole)
        kept.write_text(json.dumps({"source": source_name, "sha256": sha, **report},
                                   indent=2, default=str))  # fmt: skip
        keep_mode(whole)
        keep_mode(kept)
        quarantine = str(whole.relative_to(root))
    return quarantine


def rows_file_beside(quarantine_path: str, source_path: str) -> str:
    """The offending-rows file beside a rejected batch's copy ``<label>-<file>`` (the version's
    quarantine path): ``<label>.rows.parquet``; "" when the name is not of that shape."""
    where = Path(quarantine_path)
    tail = "-" + _safe(Path(source_path).name)
    if not where.name.endswith(tail) or where.name == tail:
        return ""
    return str(where.with_name(where.name[: -len(tail)] + ".rows.parquet"))


def _safe(name: str) -> str:
    """A file-name-safe form of *name* (keeps letters of any script, digits, '.', '-', '_')."""
    cleaned = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in name)
    return cleaned.strip("._") or "file"
