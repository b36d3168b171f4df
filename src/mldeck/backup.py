"""A backup of a workspace: the store as of one moment, and every file beside it.

The SQLite store is copied with SQLite's online backup (consistent while the console, a daemon or
a script keeps writing; its ``-wal`` file holds the newest writes, so copying ``store.db`` alone
loses them), before the files: every dataset and artifact the copied store names was written
before its record, so it is there to copy. The store's own files and the lock files are never
opened outside SQLite (closing a file of the store drops this process's locks on it). The copy
is written under a hidden name beside the destination and renamed into place once checked: an
interrupted backup leaves no folder that looks whole. The backup is itself a workspace.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, make_url, select

from mldeck.errors import MldeckError, WorkspaceFull, disk_full
from mldeck.formatting import plural
from mldeck.store.engine import Store
from mldeck.store.models import Artifact, DatasetVersion, ModelVersion, Run
from mldeck.workspace import ENV_DB_URL, Workspace

# Never copied as files: the store's (taken through SQLite) and the locks of live processes.
SKIPPED = {"store.db", "store.db-wal", "store.db-shm", "store.db-journal", "store.lock",
           "watcher.lock"}  # fmt: skip


@dataclass
class BackupResult:
    destination: Path
    runs: int
    dataset_versions: int
    model_versions: int
    store_bytes: int
    files: int
    file_bytes: int
    missing: list[str] = field(default_factory=list)  # files the store names, absent already

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "destination": str(self.destination)}


def _store_file(workspace: Workspace, store: Store) -> Path:
    """Where the copy's store goes, relative to the workspace: the store's own place, when the
    copy (opened without MLDECK_DB_URL, its settings copied) finds its store there."""
    path = store.sqlite_path
    if not store.is_sqlite or path is None:
        raise MldeckError(
            "the store is not a SQLite file (MLDECK_DB_URL / [store] url): back the database up "
            "with its own tools (pg_dump), and the workspace's folder as files"
        )
    root = workspace.root.resolve()
    path = path.resolve()
    if path == workspace.db_path.resolve():
        return path.relative_to(root)
    if os.environ.get(ENV_DB_URL):
        raise MldeckError(
            f"the store is {path}, named by {ENV_DB_URL}: a copy opened without it would use an "
            f"empty store; back up with {ENV_DB_URL} unset, or copy {path} with SQLite's "
            "'.backup' command"
        )
    url = make_url(workspace.settings.store.url or "")
    if not path.is_relative_to(root):
        raise MldeckError(
            f"the store {path} ([store] url) is outside the workspace: back it up with SQLite's "
            "'.backup' command, and the workspace's folder as files"
        )
    if Path(url.database or "").is_absolute():
        raise MldeckError(
            f"[store] url names the store by an absolute path ({path}): the copy would use the "
            "original's store; name it relative to the workspace (sqlite:///"
            f"{path.relative_to(root)}) to back it up"
        )
    return path.relative_to(root)


def _refuse(workspace: Workspace, destination: Path) -> Path:
    target = destination.expanduser().absolute()
    if target.exists():
        raise MldeckError(f"{target} already exists: name a new folder for the backup")
    root = workspace.root.resolve()
    if target.resolve().is_relative_to(root):
        raise MldeckError(f"{target} is inside the workspace: put the backup elsewhere")
    if not target.parent.is_dir():
        raise MldeckError(f"{target.parent} is not a folder: create it first")
    return target


def _snapshot(store: Store, into: Path) -> None:
    """The store as of one moment, through SQLite's online backup API."""
    raw = store.engine.raw_connection()
    try:
        target = sqlite3.connect(into)
        try:
            raw.driver_connection.backup(target)  # type: ignore[union-attr]
            found = target.execute("PRAGMA integrity_check").fetchone()[0]
            if found != "ok":
                raise MldeckError(f"the store's copy failed SQLite's integrity check: {found}")
        finally:
            target.close()
    finally:
        raw.close()


def _skip(state_dir: Path, db: Path) -> Callable[[str, list[str]], set[str]]:
    """What ``copytree`` leaves out: the store's files (taken through SQLite, wherever the
    workspace keeps it), the locks, and files being written into ``data/incoming/``."""
    own = {db.name, *(f"{db.name}{end}" for end in ("-wal", "-shm", "-journal"))}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n.startswith(".incoming-") and n.endswith(".tmp")}
        if Path(folder) == state_dir:
            skipped |= SKIPPED & set(names)
        if Path(folder).resolve() == db.parent:
            skipped |= own & set(names)
        return skipped

    return ignore


def _counts(path: Path) -> tuple[int, int, int, list[str], list[str]]:
    """Runs, dataset versions, model versions, and the files the copied store names."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            runs = session.execute(select(func.count(Run.id))).scalar_one()
            versions = session.execute(select(func.count(DatasetVersion.id))).scalar_one()
            models = session.execute(select(func.count(ModelVersion.id))).scalar_one()
            data = [p for p in session.execute(select(DatasetVersion.stored_path)).scalars() if p]
            files = [p for p in session.execute(select(Artifact.path)).scalars() if p]
    finally:
        engine.dispose()
    return runs, versions, models, data, files


def backup_workspace(
    workspace: Workspace,
    store: Store,
    destination: Path,
    on_step: Callable[[str], None] | None = None,
) -> BackupResult:
    """Copy *workspace* to the new folder *destination*: the store through SQLite's online
    backup, then every other file (``.mldeck/`` datasets and artifacts, ``mldeck.toml``,
    ``data/``, scripts, themes)."""
    say = on_step or (lambda _line: None)
    db = _store_file(workspace, store)
    target = _refuse(workspace, destination)
    partial = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    state = workspace.state_dir
    try:
        partial.mkdir()
        copied = partial / db
        copied.parent.mkdir(parents=True, exist_ok=True)
        say("copying the store (SQLite's online backup: one moment, while others write)")
        _snapshot(store, copied)
        store_bytes = copied.stat().st_size
        runs, versions, models, data, files = _counts(copied)
        say(
            f"copying the files beside it ({plural(versions, 'dataset version')}, "
            f"{plural(len(files), 'artifact')})"
        )
        try:
            shutil.copytree(workspace.root, partial, symlinks=True, dirs_exist_ok=True,
                            ignore=_skip(state, workspace.root.resolve() / db))  # fmt: skip
        except shutil.Error as exc:  # each file it could not copy; the others are copied
            # Gone meanwhile (a batch of data/incoming/ just ingested): not an error.
            kept = [e for e in exc.args[0] if os.path.lexists(e[0])]
            if kept:
                more = f" and {len(kept) - 1} more" if len(kept) > 1 else ""
                raise MldeckError(f"the backup failed and was removed: cannot copy "
                                  f"{kept[0][0]}: {kept[0][2]}{more}") from None  # fmt: skip
        missing = [p for p in [*data, *files] if not (partial / p).is_file()]
        count = size = 0
        for folder, _dirs, names in os.walk(partial):
            for name in names:
                path = Path(folder) / name
                if not path.is_symlink():
                    count += 1
                    size += path.stat().st_size
        os.rename(partial, target)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if disk_full(exc):
            raise WorkspaceFull(
                f"the disk of {target.parent} is full: the backup was removed; free room there "
                "or back up elsewhere"
            ) from None
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            raise MldeckError(
                f"the backup failed and was removed: {exc.strerror or exc}{where}"
            ) from None
        raise
    return BackupResult(target, runs, versions, models, store_bytes, count, size, missing)
