"""Opening the metadata store: engine set-up, safety checks, schema upgrades, sessions.

SQLite is opened in WAL mode with ``synchronous=FULL``, a long busy timeout and foreign keys on.
Write transactions start with ``BEGIN IMMEDIATE`` so that two processes doing read-then-write never
dead-lock into "database is locked"; read transactions use a plain deferred ``BEGIN`` so the console's
polling never blocks a writer. Any other SQLAlchemy URL (``MLDECK_DB_URL``) goes through the same code
without the SQLite specifics; there a write transaction first locks the store's one-row state
(``SELECT ... FOR UPDATE``), which serialises writers as ``BEGIN IMMEDIATE`` does. PostgreSQL
(psycopg) sessions run in UTC. The tests run against a real PostgreSQL server too.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import create_engine, event, insert, inspect, select, text, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlmodel import Session

from mldeck.errors import StoreError
from mldeck.store.models import SQLModel, StoreState, utcnow

# The newest schema revision this version of mldeck writes (head of store/migrations/versions).
SCHEMA_REVISION = "0004"
# Every revision this version of mldeck knows how to upgrade from (oldest first).
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")
# PRAGMA application_id of an mldeck SQLite store: "mldk".
APPLICATION_ID = 0x6D6C646B
BUSY_TIMEOUT_MS = 30_000
# Below this much free space, a failure to open the store is blamed on the full disk.
FULL_DISK_BYTES = 1_000_000
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "coda", "9p", "ceph", "glusterfs",
        "lustre", "gpfs", "beegfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "fuse.rclone",
        "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs",
    }
)  # fmt: skip


def filesystem_type(path: Path, mounts_text: str | None = None) -> str | None:
    """The type of the filesystem holding *path*, from ``/proc/self/mounts`` (None if unknown)."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target = str(path.resolve())
    best, best_type = "", None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, parts[2]
    return best_type


def check_local_filesystem(path: Path, mounts_text: str | None = None) -> None:
    """Refuse a SQLite store on a network filesystem: WAL needs shared memory on one host."""
    fstype = filesystem_type(path, mounts_text)
    if fstype in NETWORK_FILESYSTEMS:
        raise StoreError(
            f"the store {path} is on a network filesystem ({fstype}); SQLite's WAL mode needs "
            "shared memory on one host: keep the workspace on a local disk, or point "
            "MLDECK_DB_URL at a PostgreSQL server"
        )


def _check_sqlite_file(path: Path) -> None:
    """Refuse anything at *path* that is not an (empty or mldeck) SQLite database; touch nothing.

    The file is read through SQLite only (a read-only connection), never opened by other means:
    POSIX locks belong to the process, so closing any other descriptor of the file would drop the
    locks of this process's open stores on it, and another process closing its connection would
    then find the WAL unused and delete it under them."""
    if not path.exists() or path.stat().st_size == 0:
        return
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read the store {path}: permission denied")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            tables = [
                row[0]
                for row in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise StoreError(
                f"{path} is not an SQLite database (it may be corrupted or another file); "
                "it was left untouched: restore it from a backup or move it away"
            ) from None
        if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise StoreError(
                f"cannot open the store {path}: it or its folder is read-only, and SQLite writes"
                f" its journal files beside it even to read ({exc}); make it writable or work"
                " on a copy"
            ) from None
        raise StoreError(f"the store {path} is damaged ({exc}); it was left untouched") from None
    # An mldeck store gets its application_id in the transaction that creates its tables, so a
    # database with tables but without that id is someone else's (even if Alembic manages it).
    if app_id != APPLICATION_ID and (app_id != 0 or set(tables) - {"alembic_version"}):
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is an SQLite database but not an mldeck store (tables: {listed or 'none'}); "
            "it was left untouched"
        )


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own would be deferred).
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get("mldeck_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def _pg_options(url: URL) -> str:
    """The server options of a PostgreSQL session: the user's (the URL's ``options``, else
    ``PGOPTIONS``: a ``search_path`` keeps workspaces on their own schemas, and passing any
    options replaced them), then a lock wait bounded as SQLite's busy timeout (unless the user
    set one: a writer held behind a stuck one waited forever), then UTC: times are stored as UTC
    without a zone, and the server would shift every aware datetime to its own zone."""
    given = url.query.get("options")
    if isinstance(given, tuple):
        given = " ".join(given)
    given = given if given is not None else os.environ.get("PGOPTIONS", "")
    parts = [given.strip()] if given.strip() else []
    if "lock_timeout" not in given:
        parts.append(f"-c lock_timeout={BUSY_TIMEOUT_MS}")
    parts.append("-c timezone=UTC")
    return " ".join(parts)


# Every engine made here: a process forked from this one (a multiprocessing pool in a tracked
# script) must not use the connections its parent holds (on PostgreSQL, a child's query on the
# parent's socket broke both: "can't change 'autocommit' now", "server closed the connection").
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_parents_connections() -> None:
    """In a forked child: the pools start empty, the parent's connections left to it."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parents_connections)


def make_engine(url: str) -> Engine:
    """An engine for *url*, with the SQLite settings above when it is SQLite."""
    engine = _make_engine(url)
    _ENGINES.add(engine)
    return engine


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        return create_engine(
            parsed.difference_update_query(["options"]),
            pool_pre_ping=True,
            connect_args={"options": _pg_options(parsed)},
        )
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


class Store:
    """The open metadata store: short read and write transactions over one engine."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._writer = engine.execution_options(mldeck_write=True)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        database = self.engine.url.database
        return Path(database) if self.is_sqlite and database else None

    def file_identity(self) -> tuple[int, int] | None:
        """The SQLite file's device and inode: None for a server, or a file that is gone (the
        console and the tracking API tell a store file moved or replaced by it)."""
        path = self.sqlite_path
        try:
            st = path.stat() if path is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_dev, st.st_ino)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (deferred transaction, never blocks writers)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on exit.

        It bumps the change counter that the console polls. Keep it short: never hold it open
        across long work.
        """
        with Session(self._writer, expire_on_commit=False) as session:
            self.take_write_turn(session)
            yield session
            session.execute(
                update(StoreState)
                .where(StoreState.id == 1)
                .values(change_seq=StoreState.change_seq + 1, changed_at=utcnow())
            )
            session.commit()

    @contextmanager
    def trial(self) -> Iterator[Session]:
        """A write transaction that is always rolled back: what a change would do, or refuse,
        found without doing it (the console asks before a change the registry would refuse)."""
        with Session(self._writer, expire_on_commit=False) as session:
            self.take_write_turn(session)
            try:
                yield session
            finally:
                session.rollback()

    def take_write_turn(self, session: Session) -> None:
        """One writer at a time, from here to the transaction's end, so a transaction that reads
        then writes (the audit chain's head, the next version number, the scheduler's lease,
        the labels recorded so far) sees every write committed before it. On SQLite the
        transaction begins now, with ``BEGIN IMMEDIATE`` (otherwise it would begin at its first
        statement, and what ran before it in Python could rest on an older read); elsewhere the
        store's one-row state is the lock. Call it first in a write transaction."""
        if self.is_sqlite:
            session.connection()
        else:
            session.execute(select(StoreState.id).where(StoreState.id == 1).with_for_update())

    def change_seq(self) -> int:
        """The number of committed writes so far: poll it to learn whether anything changed."""
        with self.engine.connect() as conn:
            value = conn.execute(text("SELECT change_seq FROM store_state WHERE id = 1")).scalar()
            conn.rollback()
        return int(value or 0)

    def schema_revision(self) -> str | None:
        return _current_revision(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        conn.rollback()
    return value


UPGRADE_LOCK_KEY = 0x6D6C6465636B  # "mldeck": PostgreSQL's advisory lock of schema upgrades


def _upgrade(engine: Engine) -> None:
    """Bring the schema to SCHEMA_REVISION with Alembic (imported only when needed)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "mldeck.store:migrations")
    with engine.execution_options(mldeck_write=True).connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        if conn.execute(text("SELECT count(*) FROM store_state")).scalar() == 0:
            conn.execute(insert(StoreState).values(id=1, change_seq=0, changed_at=utcnow()))
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")
        conn.commit()


def open_store(
    url: str, *, lock_path: Path | None = None, upgrade: bool = True, refuse_new: str = ""
) -> Store:
    """Open (creating or upgrading if needed) the store at *url*.

    Upgrades run under the file lock at *lock_path* so that two processes opening a new workspace
    at once do not race. With *refuse_new*, a store that would be created (a SQLite file that
    does not exist or is empty, a database without the schema) is refused with that message,
    before anything is written. Raises StoreError for anything that is not a usable mldeck store.
    """
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a port that is not a number raises here, not later
    except (ArgumentError, ValueError):
        shown = re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)  # never a password on screen
        raise StoreError(
            f"the store URL {shown!r} is not a database URL (MLDECK_DB_URL or [store] url;"
            " e.g. sqlite:////abs/path/store.db)"
        ) from None
    lock = FileLock(str(lock_path)) if lock_path else None
    created = False  # a new SQLite file: the first connection switches it to WAL, under the lock
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.parent.is_dir():
            raise StoreError(f"the store's folder {path.parent} does not exist")
        check_local_filesystem(path)
        created = not path.exists() or path.stat().st_size == 0
        if created and refuse_new:
            raise StoreError(refuse_new)
        if not created:
            _check_sqlite_file(path)
    if lock and created:
        # Several processes opening a new workspace at once: one creates the file and its
        # schema, the others wait (changing the journal mode of a database another process is
        # creating can fail at once with "database is locked", whatever the busy timeout).
        try:
            lock.acquire(timeout=120)
        except Timeout:
            raise StoreError(f"another process holds {lock_path} for over 2 minutes") from None
    try:
        if created and path.exists() and path.stat().st_size:  # made while this one waited
            _check_sqlite_file(path)
        return _open_engine(url, lock, lock_path, upgrade, refuse_new)
    finally:
        if lock and created:
            lock.release()


def _open_engine(
    url: str, lock: FileLock | None, lock_path: Path | None, upgrade: bool, refuse_new: str
) -> Store:
    try:
        engine = make_engine(url)
    except ImportError as exc:
        raise StoreError(
            f"the store {_safe(url)} needs the database driver module {exc.name or exc}, which"
            " is not installed"
        ) from None
    except NoSuchModuleError:
        raise StoreError(
            f"the store {_safe(url)} names a kind of database SQLAlchemy does not know "
            f"({make_url(url).drivername!r}; mldeck stores are sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB)"
        ) from None
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"cannot open the store {_safe(url)}: {exc}") from None
    try:
        revision = _current_revision(engine)
        if revision == SCHEMA_REVISION:
            _check_revision(revision, engine, url)  # a server's: another application's?
        elif engine.dialect.name == "postgresql":
            with _upgrade_lock(engine):  # and read again under it
                _bring_up(engine, url, _current_revision(engine), upgrade, refuse_new,
                          lock, lock_path)  # fmt: skip
        else:
            _bring_up(engine, url, revision, upgrade, refuse_new, lock, lock_path)
    except OperationalError as exc:
        engine.dispose()
        _check_disk_space(url)
        # One line: a server's message can run over several (psycopg adds a hint on its own line).
        reason = " ".join(str(exc.orig).split())
        raise StoreError(f"cannot open the store {_safe(url)}: {reason}") from None
    except DatabaseError as exc:
        engine.dispose()
        _check_disk_space(url)
        reason = " ".join(str(exc.orig).split())
        if getattr(exc.orig, "sqlstate", None) == "3F000":  # no schema of search_path exists
            raise StoreError(
                f"cannot use the store {_safe(url)}: the schema its search_path names does not "
                "exist on the server (create it first: CREATE SCHEMA name; or name another in "
                "the URL's options=-csearch_path%3Dname)"
            ) from None
        if make_url(url).get_backend_name() != "sqlite":  # a server's refusal, not a bad file
            raise StoreError(f"cannot use the store {_safe(url)}: {reason}") from None
        raise StoreError(f"the store {_safe(url)} is damaged: {reason}") from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, url)


@contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[None]:
    """PostgreSQL's advisory lock of schema upgrades, on a connection of its own, for checking
    and upgrading a database's schema: processes on several machines (or in several folders)
    opening one new database at once are not reached by a workspace's file lock (two of three
    failed creating the schema, and one reading it half made refused it)."""
    with engine.connect() as held:
        held.execute(text("SELECT pg_advisory_lock(:key)"), {"key": UPGRADE_LOCK_KEY})
        held.commit()
        try:
            yield
        finally:
            held.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK_KEY})
            held.commit()


def _bring_up(
    engine: Engine, url: str, revision: str | None, upgrade: bool, refuse_new: str,
    lock: FileLock | None, lock_path: Path | None,
) -> None:  # fmt: skip
    """Create or upgrade the schema of a store at *revision* (checked: mldeck's)."""
    _check_revision(revision, engine, url)
    if revision == SCHEMA_REVISION:  # another process made it meanwhile
        return
    if revision is None:
        if refuse_new:
            raise StoreError(refuse_new)
        _check_no_orphan_tables(engine, url)
    if not upgrade:
        raise StoreError(f"the store's schema is {revision}, {SCHEMA_REVISION} is needed")
    try:  # the lock is reentrant: held already when the file was new
        if lock:
            lock.acquire(timeout=120)
        if _current_revision(engine) != SCHEMA_REVISION:
            _upgrade(engine)
    except Timeout:
        raise StoreError(f"another process holds {lock_path} for over 2 minutes") from None
    finally:
        if lock:
            lock.release()


def _check_disk_space(url: str) -> None:
    """A full disk makes SQLite fail in ways that look like damage: say what it is."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    with suppress(OSError):
        free = shutil.disk_usage(Path(parsed.database).parent).free
        if free < FULL_DISK_BYTES:
            raise StoreError(
                f"cannot open the store {_safe(url)}: its disk is full ({free // 1024} kB free); "
                "free some space (the store was left untouched)"
            )


def _tables(engine: Engine) -> set[str]:
    """The store's tables, less those an extension owns (PostGIS's spatial_ref_sys, made in
    every new database from a template that has it, is no other application's)."""
    with engine.connect() as conn:
        existing = set(inspect(conn).get_table_names())
        if engine.dialect.name == "postgresql":
            existing -= set(conn.execute(text(
                "SELECT c.relname FROM pg_class c JOIN pg_depend d ON d.objid = c.oid "
                "WHERE d.deptype = 'e' AND c.relnamespace = current_schema()::regnamespace"
            )).scalars())  # fmt: skip
        conn.rollback()
    return existing


OWN_DATABASE = (
    "mldeck keeps its store in a database of its own, or a schema of its own "
    "(postgresql+psycopg://USER@HOST/DB?options=-csearch_path%3DSCHEMA)"
)


def _check_no_orphan_tables(engine: Engine, url: str) -> None:
    """Refuse a store holding tables named as mldeck's without a recorded schema revision, and
    a server's database holding other tables (another application's: mldeck's 21 tables were
    added among them in silence)."""
    existing = _tables(engine)
    found = sorted(existing & set(SQLModel.metadata.tables))
    if found:
        raise StoreError(
            f"the store {_safe(url)} has tables named as mldeck's ({', '.join(found[:3])}, ...) "
            "but no mldeck schema revision (alembic_version is empty or missing): another "
            "application's, or an mldeck store that lost its revision; it was left untouched"
        )
    others = sorted(existing - {"alembic_version"})
    if others and engine.dialect.name != "sqlite":
        raise StoreError(
            f"the database {_safe(url)} holds other tables ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}); it was left untouched: {OWN_DATABASE}"
        )


def _check_revision(revision: str | None, engine: Engine, url: str) -> None:
    """Refuse a schema revision of another application, or of a newer mldeck. A server's
    database is mldeck's when its revision is numbered as mldeck's and it has store_state (one
    at '0003' of an application numbering its revisions so was upgraded as mldeck's); a SQLite
    file was told to be mldeck's by its application id already."""
    if revision is None:
        return
    if engine.dialect.name != "sqlite" and not (
        len(revision) == 4 and revision.isdigit() and _has_table(engine, "store_state")
    ):
        raise StoreError(
            f"the store {_safe(url)} is not an mldeck store: its schema revision {revision!r} "
            f"is another application's; it was left untouched: {OWN_DATABASE}"
        )
    if revision not in KNOWN_REVISIONS:
        raise StoreError(
            f"the store's schema ({revision}) was written by a newer mldeck than this one; "
            "upgrade mldeck to open it"
        )


def _has_table(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        found = inspect(conn).has_table(name)
        conn.rollback()
    return found


def _safe(url: str) -> str:
    """For messages: an SQLite store's file, else the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database  # decoded: the URL spells a folder 'demo [b]' as 'demo %5Bb%5D'
    return parsed.render_as_string(hide_password=True)


def database_size(store: Store) -> int | None:
    """Bytes on disk of a SQLite store (database plus WAL), else None."""
    path = store.sqlite_path
    if path is None:
        return None
    total = 0
    for candidate in (path, Path(f"{path}-wal")):
        with suppress(OSError):
            total += os.stat(candidate).st_size
    return total


def store_damaged(exc: BaseException) -> bool:
    """Whether *exc* is SQLite finding the store's file damaged below its header (a page
    overwritten): found only when a query reaches the page, long after the store opened."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(orig, sqlite3.DatabaseError) and code in (sqlite3.SQLITE_CORRUPT,
                                                                 sqlite3.SQLITE_NOTADB)  # fmt: skip


def store_problem(exc: BaseException) -> str:
    """An error met while using the store, in one line: the database's own message (not
    SQLAlchemy's wrapping with its statement and a link), else the exception's first line."""
    orig = getattr(exc, "orig", None)
    if orig is not None:
        text = " ".join(str(orig).split())
        if isinstance(exc, OperationalError):
            low = text.lower()
            if "disk is full" in low or "no space left" in low:
                return f"the store could not be written: {text} (free room on its disk)"
            if "database is locked" in low or "lock timeout" in low:
                return (f"the store is busy: another process held its write lock past the "
                        f"timeout ({text}); try again")  # fmt: skip
            if "readonly database" in low or "read-only" in low:
                return f"the store could not be written: {text} (its file or folder is read-only)"
            return f"the store cannot be reached: {text}"
        return f"{type(orig).__name__}: {text}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
