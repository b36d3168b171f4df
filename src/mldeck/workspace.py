"""Workspaces: discovery from the current folder, ``--workspace`` or ``MLDECK_WORKSPACE``, and init.

A workspace is a folder holding ``mldeck.toml``, ``.mldeck/`` (the store and the artifacts) and
``data/incoming/`` (where new batches land).
"""

from __future__ import annotations

import os
import shutil
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from mldeck.config import (
    CONFIG_FILE,
    MAX_NAME_LENGTH,
    Settings,
    default_config_text,
    load_settings,
    parse_settings,
)
from mldeck.errors import MldeckError, WorkspaceNotFound
from mldeck.formatting import shown
from mldeck.store.engine import Store, open_store

ENV_WORKSPACE = "MLDECK_WORKSPACE"
ENV_DB_URL = "MLDECK_DB_URL"


@dataclass(frozen=True)
class Workspace:
    root: Path
    settings: Settings

    @property
    def name(self) -> str:
        return self.settings.project.name

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def state_dir(self) -> Path:
        return self.root / ".mldeck"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "store.db"

    def refuse_state_file(self, path: Path) -> None:
        """Refuse a file of the workspace's own state (``.mldeck/``) as input, by its path, a
        link's, or another name of the same file (a hard link): it is not data, and opening
        the store's files outside SQLite drops this process's locks on them (another process
        could then delete the WAL in use)."""
        if self.is_state_file(path):
            raise MldeckError(
                f"{shown(str(path))} is part of the workspace's own state (.mldeck/), "
                "not data: copy what you need elsewhere first"
            )

    def is_state_file(self, path: Path) -> bool:
        """Whether *path* (followed through links) is a file of ``.mldeck/``; never opens it."""
        with suppress(OSError):
            if path.resolve().is_relative_to(self.state_dir.resolve()):
                return True
            st = os.stat(path)
            if st.st_nlink > 1:  # another name: is it one of the state folder's own files?
                with os.scandir(self.state_dir) as entries:
                    for entry in entries:
                        with suppress(OSError):
                            own = entry.stat(follow_symlinks=False)
                            if (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
                                return True
        return False

    def refuse_overwriting_own(self, path: Path, what: str) -> None:
        """Refuse *path* as a file to write *what* to when it is the workspace's own: its state
        (``.mldeck/``: the store, artifacts, datasets) or ``mldeck.toml``. Writing there lost the
        store or the settings, with exit status 0."""
        with suppress(OSError):
            target = path.resolve()
            settings = target == self.config_path.resolve()
            if settings or target.is_relative_to(self.state_dir.resolve()):
                own = "settings" if settings else "state (.mldeck/)"
                raise MldeckError(f"{shown(str(path))} is the workspace's own {own}: {what} goes "
                                  "elsewhere")  # fmt: skip

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def incoming_dir(self) -> Path:
        return self.data_dir / "incoming"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def datasets_dir(self) -> Path:
        """Where the original bytes of every dataset version are kept, by sha256."""
        return self.state_dir / "datasets"

    @property
    def db_url(self) -> str:
        """MLDECK_DB_URL, else ``[store] url``, else the workspace's SQLite file. A SQLite file
        named by a relative path in ``[store] url`` is in the workspace's folder, wherever the
        command runs (MLDECK_DB_URL's is the current folder's, as for any path in a shell)."""
        env = os.environ.get(ENV_DB_URL)
        if env:
            return env
        url = self.settings.store.url
        if not url:
            # Built, not formatted: a folder name holding '?', '#' or '%' must stay in the path.
            return URL.create("sqlite", database=str(self.db_path)).render_as_string(
                hide_password=False
            )
        try:
            parsed = make_url(url)
        except Exception:  # the store says what is wrong with it when it opens
            return url
        database = parsed.database or ""
        relative = database not in ("", ":memory:") and not database.startswith("file:")
        if parsed.get_backend_name() == "sqlite" and relative and not Path(database).is_absolute():
            return parsed.set(database=str(self.root / database)).render_as_string(
                hide_password=False
            )
        return url


def load_workspace(root: Path) -> Workspace:
    """Open the workspace whose root folder is *root* (it must hold ``mldeck.toml``)."""
    root = root.expanduser()
    if not root.exists():
        raise WorkspaceNotFound(f"workspace path {root} does not exist")
    if not root.is_dir():
        raise WorkspaceNotFound(f"workspace path {root} is not a folder")
    config = root / CONFIG_FILE
    if config.is_dir():
        raise WorkspaceNotFound(f"{config} is a folder, not the workspace's configuration file")
    if not config.is_file() and (root / ".mldeck").is_dir():
        # A workspace whose configuration went (moved, deleted): 'mldeck init' refuses the
        # folder, so it was no advice to give.
        raise WorkspaceNotFound(
            f"{root} has lost its {CONFIG_FILE} (its records are in {root / '.mldeck'}): restore "
            "the file (a backup, version control), or write one anew with the settings it had"
        )
    if not config.is_file():
        enclosing = find_root(root.resolve().parent)
        if enclosing is not None:  # a folder of a workspace: that workspace was meant
            raise WorkspaceNotFound(f"{root} is a folder inside the workspace {enclosing}, not "
                                    f"a workspace (pass --workspace {enclosing})")  # fmt: skip
        raise WorkspaceNotFound(
            f"{root} is not an mldeck workspace (no {CONFIG_FILE}); create one with: mldeck init {root}"
        )
    return Workspace(root.resolve(), load_settings(config))


def find_root(start: Path) -> Path | None:
    """The nearest folder at or above *start* that holds ``mldeck.toml``, or the state folder of
    a workspace that lost it (a workspace inside another was taken for the outer one)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).exists() or (folder / ".mldeck").is_dir():
            return folder
    return None


def discover(explicit: Path | str | None = None, cwd: Path | None = None) -> Workspace:
    """Find the workspace: *explicit*, else ``MLDECK_WORKSPACE``, else cwd and its parents."""
    if explicit:
        return load_workspace(Path(explicit))
    env = os.environ.get(ENV_WORKSPACE)
    if env:
        return load_workspace(Path(env))
    here = cwd or Path.cwd()
    root = find_root(here)
    if root is None:
        raise WorkspaceNotFound(
            f"not inside an mldeck workspace ({here} and its parents have no {CONFIG_FILE}); "
            "create one with 'mldeck init' or pass --workspace DIR"
        )
    return load_workspace(root)


def init_workspace(root: Path, name: str | None = None) -> Workspace:
    """Create a workspace in *root* (created if missing); never overwrites an existing one."""
    root = root.expanduser()
    if root.exists() and not root.is_dir():
        raise MldeckError(f"cannot create a workspace at {root}: it is a file")
    if (root / CONFIG_FILE).exists():
        raise MldeckError(f"{root} is already an mldeck workspace ({CONFIG_FILE} exists)")
    if (root / ".mldeck").exists():
        raise MldeckError(
            f"{root}/.mldeck exists without {CONFIG_FILE}; move it away or restore the config"
        )
    enclosing = find_root(root.resolve().parent)
    if enclosing is not None:
        inner = root.resolve().relative_to(enclosing).parts[0]
        if inner in ("data", ".mldeck"):  # its watcher and its store own what is there
            raise MldeckError(f"cannot create a workspace at {root}: it is inside the {inner}/ "
                              f"folder of the workspace {enclosing}")  # fmt: skip
    # Check the name before creating anything, so a bad one leaves no half-made workspace.
    if not name:  # the folder's name; bytes that are not UTF-8 cannot go into the TOML file
        folder = root.resolve().name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        name = folder[:MAX_NAME_LENGTH] or "mldeck"
    if any(0xD800 <= ord(char) <= 0xDFFF for char in name):
        raise MldeckError(f"the project name {name!r} is not valid text")
    config_text = default_config_text(name)
    parse_settings(config_text, f"the project name {name!r}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for folder in (root / ".mldeck" / "artifacts", root / "data" / "incoming"):
            folder.mkdir(parents=True, exist_ok=True)
        _write_new(root / CONFIG_FILE, config_text)
        _write_new(root / ".mldeck" / ".gitignore", "*\n")
    except OSError as exc:
        raise MldeckError(f"cannot create a workspace at {root}: {exc.strerror or exc}") from None
    return load_workspace(root)


def create_workspace_store(root: Path, name: str | None = None) -> tuple[Workspace, Store]:
    """``init_workspace`` and its first store, or neither: when the store cannot be opened (a
    database that does not exist, a server that is down), what was just made is taken away, so
    the same command can be run again once the cause is fixed."""
    existed = root.expanduser().exists()
    workspace = init_workspace(root, name=name)
    try:
        return workspace, open_workspace_store(workspace)
    except BaseException:
        _unmake(workspace, remove_root=not existed)
        raise


def _unmake(workspace: Workspace, *, remove_root: bool) -> None:
    """Remove a workspace ``init_workspace`` has just made (before anything was stored)."""
    with suppress(OSError):
        workspace.config_path.unlink(missing_ok=True)
        shutil.rmtree(workspace.state_dir)
        for folder in (workspace.incoming_dir, workspace.data_dir):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if remove_root and not any(workspace.root.iterdir()):
            workspace.root.rmdir()


def _write_new(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)


def _shown_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL: opening the store says so, in one line
        return "(not a database URL)"


def open_workspace_store(workspace: Workspace) -> Store:
    """Open the workspace's store, creating or upgrading it under the workspace's lock file."""
    if not workspace.state_dir.is_dir():
        raise MldeckError(
            f"{workspace.state_dir} is missing: the workspace's state folder was moved or deleted"
        )
    own_file = not (os.environ.get(ENV_DB_URL) or workspace.settings.store.url)
    # Files a store recorded, without that store: a new empty one would silently disown them
    # (and every run, model and alert), so with such files a store is never created here.
    kept = _holding_files(workspace)
    refuse_new = ""
    if kept and own_file:
        # A file of 0 bytes (a copy cut short, a truncation) is no more a store than no file.
        state = "is empty (0 bytes)" if workspace.db_path.is_file() else "is missing"
        refuse_new = (
            f"the store {workspace.db_path} {state} while {kept[0]} holds files it"
            " recorded: put the store back (or restore it from a backup), or, if this"
            f" workspace's store is a database, set {ENV_DB_URL} (or [store] url in"
            f" {CONFIG_FILE}) to its URL; to start over with an empty store, move"
            f" {workspace.datasets_dir} and {workspace.artifacts_dir} away"
        )
    elif kept:
        refuse_new = (
            f"the store {_shown_url(workspace.db_url)} is an empty database while {kept[0]} holds"
            " files recorded in another store: point MLDECK_DB_URL (or [store] url) at the"
            " database that recorded them; to start over with an empty store, move"
            f" {workspace.datasets_dir} and {workspace.artifacts_dir} away"
        )
    store = open_store(
        workspace.db_url, lock_path=workspace.state_dir / "store.lock", refuse_new=refuse_new
    )
    if not kept and not own_file:
        try:
            _refuse_anothers_store(workspace, store)
        except BaseException:
            store.close()
            raise
    return store


def _holding_files(workspace: Workspace) -> list[Path]:
    """The folders of the workspace's state that hold files a store recorded."""
    return [d for d in (workspace.datasets_dir, workspace.artifacts_dir)
            if d.is_dir() and any(d.iterdir())]  # fmt: skip


def _refuse_anothers_store(workspace: Workspace, store: Store) -> None:
    """A database store recording files while this workspace holds none is another workspace's
    (the same URL given to a second workspace): both would then act on records whose files
    live in the other, each one's scores and checks failing on "missing" files."""
    from sqlalchemy import func, select

    from mldeck.store.models import Artifact, DatasetVersion

    with store.read() as session:
        recorded = session.execute(select(func.count(Artifact.id))).scalar_one()
        recorded += session.execute(
            select(func.count(DatasetVersion.id)).where(DatasetVersion.stored_path != "")
        ).scalar_one()
    # The folders are looked at again after the count: a file is written before its record, so
    # a first batch stored meanwhile by this workspace (its watcher, a job) is seen here.
    if recorded and not _holding_files(workspace):
        raise MldeckError(
            f"the store {_shown_url(workspace.db_url)} records {recorded} file(s) that "
            f"{workspace.datasets_dir} and {workspace.artifacts_dir} do not hold: it is another "
            "workspace's (each workspace needs a database, or schema, of its own: open the "
            f"workspace that made it, or point {ENV_DB_URL} or [store] url in {CONFIG_FILE} at "
            "an empty database), or this workspace's files were moved away (put them back)"
        )
