"""The watcher: files landing in ``data/incoming/`` become dataset versions, each content once.

A file is taken only once it is complete:

- names that are hidden (``.name``) or temporary (``.tmp``, ``.temp``, ``.part``, ``.partial``,
  ``.crdownload``, ``.download``, ``.filepart``, ``~``) are never taken; the rename into the final
  name arrives as a new file, complete;
- any other file is taken once its size, modification time and inode have not changed for
  ``[data] settle_seconds`` (watchfiles reports a file as added while it is still being written)
  and, on Linux, no other process holds it open (a write lease can be taken): a writer that
  pauses longer than the window keeps its file. A writer that closes the file between chunks
  (``>>`` in a loop) cannot be told from a finished one: write under a temporary name, then
  rename.

Taking a file means :func:`mldeck.data.ingest.ingest_file` (trigger ``new_data``): its bytes go
into the content-addressed dataset store, then the file is removed from ``incoming/`` only if it
did not change while it was being ingested (otherwise it stays and is taken again once it
settles). The same content twice is one version, so a restart never ingests anything twice, and
files that landed while nothing was watching are taken at start (:meth:`scan_once`). A file that
cannot be read becomes a rejected version (ingest copies it to ``data/quarantine/`` with a
``.report.json``). If ingest raises, the file is tried once more after a pause (at once for a
file of a type mldeck does not read), then moved to ``data/quarantine/`` with a
``<name>.error.txt`` holding the reason. A file that vanishes before it
is read was taken by someone else: nothing to do.

Only the top level of ``incoming/`` is watched: subfolders and what they hold are ignored (a
folder is how a producer parks files it does not want taken yet). The folder is also listed
every few seconds, so a missed event (an overflowing inotify queue, a network filesystem, the
folder recreated) delays a file but never loses it.

One watcher per workspace (a lock on ``.mldeck/watcher.lock``). Files are processed one after the
other in one thread, in the order they were last modified.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import stat
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import filelock
import watchfiles

from mldeck.data.ingest import IngestOutcome, ingest_file
from mldeck.data.readers import open_elsewhere
from mldeck.errors import MldeckError, NotADataFile, WorkspaceFull, disk_full
from mldeck.formatting import fitted_name, shown
from mldeck.store.engine import Store
from mldeck.store.models import RunTrigger
from mldeck.workspace import Workspace

log = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (
    ".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".filepart", "~",
)  # fmt: skip
LOCK_NAME = "watcher.lock"
# How often the folder is listed even without events (missed events, network filesystems).
RESCAN_SECONDS = 5.0
# A file whose ingest raised is tried this many times, this long apart, then quarantined.
ATTEMPTS = 2
RETRY_SECONDS = 2.0
# A full disk or a store that cannot be reached says nothing about the file: it stays in
# data/incoming/ and is tried again at this pace, for as long as it takes.
WAIT_SECONDS = 30.0
# After an error of the watch loop itself (not of a file), it starts again after this pause.
RESTART_SECONDS = 2.0
# A file unchanged but held open this long is said to be waiting for that (once).
HELD_SAID_SECONDS = 5.0
# How long the folder is listed at every tick when watchfiles cannot watch it.
POLL_SECONDS = 60.0
# scan_once() waits this long beyond settle_seconds for files that are still changing.
SCAN_GRACE_SECONDS = 2.0
REASONS_SHOWN = 3


def is_candidate_name(name: str) -> bool:
    """Whether a file of this name may be taken (not hidden, not a temporary name)."""
    lowered = name.lower()
    return bool(name) and not name.startswith(".") and not lowered.endswith(TEMPORARY_SUFFIXES)


@dataclass(frozen=True)
class _Signature:
    """What changes when a file is written to or replaced."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Signature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass
class _Pending:
    signature: _Signature
    since: float  # monotonic time at which *signature* was first seen
    failures: int = 0
    retry_at: float = 0.0
    waiting: str = ""  # the temporary problem last said for this file (said once)
    held_said: bool = False  # "complete but held open" said for it
    first_seen: float = field(default_factory=time.monotonic)


def _temporary(exc: BaseException) -> bool:
    """A problem of the workspace, not of the file: its disk is full, or its store cannot be
    reached or written (a server down, a database file on a full disk)."""
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, WorkspaceFull | OperationalError) or disk_full(exc)


def _signature(path: Path) -> _Signature | None:
    """The file's signature, or None if it is gone or is not a regular file."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _Signature.of(st) if stat.S_ISREG(st.st_mode) else None


def _one_line(exc: BaseException) -> str:
    from sqlalchemy.exc import SQLAlchemyError

    from mldeck.store.engine import store_problem

    if isinstance(exc, SQLAlchemyError):  # the database's own words, not SQLAlchemy's wrapping
        return shown(store_problem(exc))
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, MldeckError):
        return shown(first or type(exc).__name__)
    return shown(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def describe(outcome: IngestOutcome, name: str) -> str:
    """The one line the CLI and the console show for an ingested file."""
    label = f"{outcome.dataset}:v{outcome.version}"
    if outcome.duplicate:
        return f"{shown(name)}: same content as {label} ({outcome.status}); not ingested again"
    line = f"{shown(name)}: {label} {outcome.status}"
    if outcome.reasons:
        reasons = "; ".join(shown(r) for r in outcome.reasons[:REASONS_SHOWN])
        more = len(outcome.reasons) - REASONS_SHOWN
        line += f": {reasons}" + (f" (+{more} more)" if more > 0 else "")
    if outcome.status == "rejected" and outcome.quarantine_path:
        line += f" (quarantined as {shown(outcome.quarantine_path)})"
    return line


def watched_elsewhere(workspace: Workspace) -> bool:
    """Whether a watcher (a console, the daemon) watches *workspace* now, asked without
    writing (a read-only console's question): its lock file is held. The lock is tried and let
    go at once; a watcher starting in that instant tries again at its next look."""
    try:
        fd = os.open(workspace.state_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file: nobody ever watched, or it cannot be read
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class IncomingWatcher:
    """Watches ``data/incoming/`` and ingests every complete file once.

    *on_ingested* is called (in the watcher's thread) with the outcome of every file ingested,
    new or duplicate: the hook the next step of the pipeline hangs on. *on_event* receives one
    line per thing worth telling a person (a file ingested, rejected, quarantined, an error).
    Neither may break the watcher: what they raise is logged and reported, then ignored.
    """

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        *,
        on_ingested: Callable[[IngestOutcome], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.store = store
        self.on_ingested = on_ingested
        self.on_event = on_event
        self.settle_seconds = float(workspace.settings.data.settle_seconds)
        # Small sleeps while files settle; never slower than 4 looks per settle window.
        self.tick_seconds = min(max(self.settle_seconds / 4, 0.05), 0.25)
        self.counts: Counter[str] = Counter()
        self._incoming = workspace.incoming_dir
        self._pending: dict[Path, _Pending] = {}
        # Files handled that must not be taken again while unchanged (could not be removed).
        self._left: dict[Path, _Signature | None] = {}
        # Links in incoming/ to nothing, and where they point: said once, left in place.
        self._dangling: dict[Path, str] = {}
        self._polling_said = False
        self._refused: set[Path] = set()  # never to be opened, and left where they are
        self._work = threading.RLock()
        self._stop = threading.Event()
        self.stopped_by: int | None = None  # the signal that stopped run_forever, if one did
        self._thread: threading.Thread | None = None
        self._lock: filelock.BaseFileLock | None = None
        self._held_elsewhere = False
        self._config_stamp = _config_stamp(workspace)
        # The notes about the configured reference said so far (not found, rejected, adopted):
        # every file ingested meanwhile carries the same ones, said once.
        self._noted: set[str] = set()

    # -- public API -----------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.workspace.state_dir / LOCK_NAME

    @property
    def held_elsewhere(self) -> bool:
        """True when the last start() found another watcher running on this workspace."""
        return self._held_elsewhere

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """How many files are waiting to settle (or to be tried again)."""
        return len(self._pending)

    def start(self) -> bool:
        """Start watching in a daemon thread. False if another watcher (in this process or
        another) already watches this workspace; then ``held_elsewhere`` is True."""
        if self.running:
            return True
        lock = filelock.FileLock(self.lock_path, timeout=0, thread_local=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            self._held_elsewhere = True
            return False
        except OSError as exc:
            raise MldeckError(
                f"cannot take the watcher lock {self.lock_path}: {exc.strerror or exc}"
            ) from None
        self._held_elsewhere = False
        self._lock = lock
        self._stop.clear()
        try:
            self._incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            lock.release()
            self._lock = None
            raise MldeckError(f"cannot create {self._incoming}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._run, name="mldeck-watcher", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching: the file being ingested is finished, the others stay for next time."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._release()

    def run_forever(self) -> None:
        """Watch in the foreground until Ctrl-C, SIGTERM or SIGHUP (``stopped_by`` says which),
        then stop cleanly: the file being
        ingested is finished first (a second Ctrl-C leaves at once; the file stays in
        ``incoming/``). Starts the watcher if needed; raises MldeckError if another watcher runs
        on this workspace."""
        if not self.start():
            raise MldeckError(
                f"another watcher is already running on this workspace ({self.lock_path} is held)"
            )
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            # SIGHUP too: a closed SSH session stops it as cleanly as Ctrl-C (it raised in the
            # main thread while the ingest ran in the watcher's, left "running" at exit).
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # a background job's SIGINT
                    previous[signum] = signal.signal(signum, self._on_signal)
        forced = False
        try:
            while self.running:
                self._thread.join(0.5)  # type: ignore[union-attr]
        except KeyboardInterrupt:
            forced = True
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if forced:
                self._stop.set()
            else:
                self.stop()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stopped_by = self.stopped_by or signum
        self._stop.set()

    def scan_once(self) -> list[IngestOutcome]:
        """Take the complete files already in ``incoming/`` (those that landed while nothing
        watched); return their outcomes. Waits for files to settle, at most settle_seconds plus a
        short grace: a file still changing after that is left for the watcher (or the next scan).
        """
        self._incoming.mkdir(parents=True, exist_ok=True)
        found = self._rescan()
        outcomes: list[IngestOutcome] = []
        deadline = time.monotonic() + self.settle_seconds + SCAN_GRACE_SECONDS
        while True:
            outcomes.extend(self._process_ready())
            with self._work:
                waiting = [p for p in found if p in self._pending]
            if not waiting or self._stop.is_set() or time.monotonic() >= deadline:
                return outcomes
            self._stop.wait(self.tick_seconds)

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._watch()
                    self._stop.wait(self.tick_seconds)  # never a busy loop, whatever ended it
                except Exception as exc:
                    if type(exc).__name__ == "WatchfilesRustInternalError":
                        # A name that is not UTF-8 stops watchfiles at every event about it: the
                        # folder is listed at every tick instead, for a while.
                        log.info("watchfiles stopped (%s); polling %s", exc, self._incoming)
                        if not self._polling_said:
                            self._polling_said = True
                            self._say(f"{self._incoming.name}/ holds a name that is not UTF-8: "
                                      "looking at the folder at every tick instead")  # fmt: skip
                        self._poll(POLL_SECONDS)
                        continue
                    log.exception("the watcher of %s failed", self._incoming)
                    self._say(
                        f"watcher error: {_one_line(exc)}; starting again in {RESTART_SECONDS:g} s"
                    )
                    self._stop.wait(RESTART_SECONDS)
        finally:
            self._say("stopped watching")
            self._release()

    def _poll(self, seconds: float) -> None:
        """Take files by listing the folder at every tick, for *seconds*."""
        until = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < until:
            try:
                self._rescan()
                self._process_ready()
            except Exception as exc:  # as the watch loop does: said, and tried again
                log.exception("the watcher of %s failed", self._incoming)
                self._say(f"watcher error: {_one_line(exc)}")
                self._stop.wait(RESTART_SECONDS)
            self._stop.wait(self.tick_seconds)

    def _watch(self) -> None:
        self._incoming.mkdir(parents=True, exist_ok=True)
        identity = _identity(self._incoming)
        tick_ms = round(self.tick_seconds * 1000)
        changes_seen = watchfiles.watch(
            self._incoming,
            watch_filter=None,  # filtered here: filtered-out changes would delay the next tick
            debounce=tick_ms,
            step=min(30, tick_ms),
            stop_event=self._stop,
            rust_timeout=tick_ms,
            yield_on_timeout=True,
            recursive=False,
            raise_interrupt=False,
        )
        next_scan = 0.0  # the first turn lists the folder: the watch is set up by then
        for changes in changes_seen:
            self._note(Path(raw) for change, raw in changes if change != watchfiles.Change.deleted)
            if time.monotonic() >= next_scan:
                if next_scan == 0.0:
                    self._say(
                        f"watching {self._incoming} (a file is taken once unchanged for "
                        f"{self.settle_seconds:g} s)"
                    )
                if _identity(self._incoming) != identity:
                    self._say(f"{self._incoming} was replaced; watching it again")
                    return
                self._rescan()
                next_scan = time.monotonic() + RESCAN_SECONDS
            self._process_ready()
            if self._stop.is_set():
                return

    # -- files ----------------------------------------------------------------------------------

    def _rescan(self) -> list[Path]:
        try:
            with os.scandir(self._incoming) as entries:
                paths = [self._incoming / entry.name for entry in entries]
        except FileNotFoundError:
            return []
        return self._note(paths)

    def _note(self, paths: Iterable[Path]) -> list[Path]:
        """Start tracking the candidate files among *paths*; return those tracked."""
        noted = []
        now = time.monotonic()
        with self._work:
            for path in paths:
                if path.parent != self._incoming or not is_candidate_name(path.name):
                    continue
                if path in self._pending:
                    noted.append(path)
                    continue
                if path in self._refused:  # could not be moved aside: said once
                    continue
                refused = self._not_taken(path)
                if refused is not None:
                    self._pending.pop(path, None)
                    self.counts["failed"] += 1
                    self._to_quarantine(path, shown(path.name), refused)
                    if path.is_symlink() or path.exists():
                        self._refused.add(path)
                    continue
                signature = _signature(path)
                if signature is None:
                    self._dangling_link(path)
                    continue
                self._dangling.pop(path, None)
                if path in self._left:
                    if self._left[path] == signature:
                        continue
                    del self._left[path]
                self._pending[path] = _Pending(signature, now)
                noted.append(path)
        return noted

    def _not_taken(self, path: Path) -> str | None:
        """Why *path* is never to be opened, or None. A file of the workspace's own state (by a
        link or a hard link): opening the store's files drops this process's locks on them.
        A link to a file of another owner than the link's: whoever can drop a link here could
        otherwise have any file the watcher can read copied into the workspace."""
        if self.workspace.is_state_file(path):
            return "part of the workspace's own state (.mldeck/), not data; never opened"
        try:
            link = os.lstat(path)
            if not stat.S_ISLNK(link.st_mode):
                return None
            target = os.stat(path)
        except OSError:  # gone, or a link to nothing (said by _dangling_link)
            return None
        if target.st_uid != link.st_uid:
            return (f"a link to {shown(os.readlink(path))}, a file of another owner than the "
                    "link's; links are followed only to their own owner's files")  # fmt: skip
        return None

    def _dangling_link(self, path: Path) -> None:
        """Say (once per target) that *path* is a link to nothing, or to no file (a folder, a
        pipe): it stays where it is, and is taken once what it points to is a file and settles."""
        try:
            target = os.readlink(path)
        except OSError:  # not a link: gone, or not a file (a folder is no candidate's business)
            return
        if self._dangling.get(path) != target:
            self._dangling[path] = target
            try:
                kind = _kind_of(os.stat(path).st_mode)
            except OSError:
                kind = None
            if kind is None:
                self._say(f"{shown(path.name)}: a link to {shown(target)}, which does not exist; "
                          f"left in {self._incoming.name}/ until it does")  # fmt: skip
            else:  # a folder, a device, a pipe: it exists, and is no data file
                self._say(f"{shown(path.name)}: a link to {shown(target)}, {kind}, not a file; "
                          f"left in {self._incoming.name}/")  # fmt: skip

    def _ready(self) -> list[tuple[Path, _Signature]]:
        """The tracked files unchanged for settle_seconds, oldest first."""
        now = time.monotonic()
        ready = []
        for path, entry in list(self._pending.items()):
            signature = _signature(path)
            if signature is None:
                del self._pending[path]
            elif signature != entry.signature:
                entry.signature, entry.since, entry.failures = signature, now, 0
            elif now - entry.since >= self.settle_seconds and now >= entry.retry_at:
                if open_elsewhere(path):  # unchanged, but its writer has it open still
                    entry.since = now
                    if not entry.held_said and now - entry.first_seen >= HELD_SAID_SECONDS:
                        entry.held_said = True  # a reader (tail, a backup) holds it back too
                        self._say(f"{shown(path.name)}: unchanged but still open in another "
                                  "process; taken once it is closed")  # fmt: skip
                    continue
                ready.append((path, signature))
        ready.sort(key=lambda item: (item[1].mtime_ns, item[0].name))
        return ready

    def _process_ready(self) -> list[IngestOutcome]:
        outcomes = []
        with self._work:
            for path, signature in self._ready():
                if self._stop.is_set():
                    break
                if _signature(path) != signature:  # changed since it was found settled
                    continue
                outcome = self._take(path, signature)
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def _take(self, path: Path, signature: _Signature) -> IngestOutcome | None:
        """Ingest one settled file; never raises (except on interrupt)."""
        entry = self._pending[path]
        self._follow_config()
        try:
            outcome = ingest_file(
                self.workspace, self.store, path, trigger=RunTrigger.NEW_DATA, consume=False
            )
        except Exception as exc:
            self._failed(path, entry, exc)
            return None
        self.counts["duplicate" if outcome.duplicate else outcome.status] += 1
        for note in outcome.notes:
            if note not in self._noted:
                self._noted.add(note)
                self._say(shown(note))
        self._say(describe(outcome, path.name))
        # Removed only if it did not change while it was read: a writer that paused longer than
        # settle_seconds and went on keeps its file, taken again (whole) once it settles.
        after = _signature(path)
        if after == signature:
            try:
                path.unlink(missing_ok=True)
                del self._pending[path]
            except OSError as exc:
                del self._pending[path]
                self._left[path] = signature
                self._say(
                    f"{shown(path.name)}: ingested but cannot be removed from "
                    f"{self._incoming.name}/ ({exc.strerror or exc}); left as it is"
                )
        elif after is None:
            self._pending.pop(path, None)
        else:
            entry.signature, entry.since, entry.failures = after, time.monotonic(), 0
            self._say(
                f"{shown(path.name)}: changed while it was ingested; "
                "it will be taken again once it stops changing"
            )
        if self.on_ingested is not None:
            try:
                self.on_ingested(outcome)
            except Exception as exc:
                log.exception("the on_ingested hook failed for %s", path)
                self._say(f"{shown(path.name)}: the next step failed to start: {_one_line(exc)}")
        return outcome

    def _failed(self, path: Path, entry: _Pending, exc: Exception) -> None:
        name = shown(path.name)
        if _signature(path) is None:
            self._pending.pop(path, None)
            self._say(f"{name}: gone before it could be ingested")
            return
        reason = self._folder_problem(exc) or _one_line(exc)
        log.info("ingesting %s failed: %s", path, reason)
        if _temporary(exc) or self._folder_problem(exc):
            entry.retry_at = time.monotonic() + WAIT_SECONDS
            if entry.waiting != reason:
                entry.waiting = reason
                self._say(f"{name}: not ingested yet ({reason}); left in {self._incoming.name}/,"
                          f" tried again every {WAIT_SECONDS:g} s")  # fmt: skip
            return
        entry.failures += 1
        if entry.failures < ATTEMPTS and not isinstance(exc, NotADataFile):
            entry.retry_at = time.monotonic() + RETRY_SECONDS
            self._say(f"{name}: not ingested ({reason}); trying again in {RETRY_SECONDS:g} s")
            return
        details = "" if isinstance(exc, MldeckError) else "".join(traceback.format_exception(exc))
        if self._to_quarantine(path, name, reason, details, retry=entry):
            del self._pending[path]
            self.counts["failed"] += 1

    def _folder_problem(self, exc: BaseException) -> str | None:
        """What is wrong with a folder of the workspace (data/quarantine/ made a file, .mldeck/
        read-only), if that is what *exc* is: a problem of the workspace, not of the file, tried
        again every WAIT_SECONDS (the file stayed in incoming/ until a restart)."""
        if not isinstance(exc, OSError) or not exc.filename:
            return None
        where = Path(os.fsdecode(exc.filename))
        for folder in (self.workspace.quarantine_dir, self.workspace.state_dir):
            if where == folder or where.is_relative_to(folder):
                shown_folder = shown(str(folder.relative_to(self.workspace.root)))
                return f"cannot use {shown_folder}/: {exc.strerror or exc}"
        return None

    def _to_quarantine(self, path: Path, name: str, reason: str, details: str = "",
                       retry: _Pending | None = None) -> bool:  # fmt: skip
        """Move *path* (a link as the link) to quarantine with a note of *reason*; False when
        the quarantine folder cannot be used and *path* (its *retry* entry) waits to try again."""
        try:
            target = _move_to_quarantine(path, self.workspace.quarantine_dir)
        except OSError as move_error:
            problem = self._folder_problem(move_error)
            if retry is not None and problem is not None:
                retry.retry_at = time.monotonic() + WAIT_SECONDS
                if retry.waiting != problem:
                    retry.waiting = problem
                    self._say(f"{name}: not ingested ({reason}) and not moved to quarantine "
                              f"({problem}); left in {self._incoming.name}/, tried again every "
                              f"{WAIT_SECONDS:g} s")  # fmt: skip
                return False
            self._left[path] = _signature(path)
            self._say(
                f"{name}: not ingested ({reason}) and not moved to quarantine "
                f"({move_error.strerror or move_error}); left in {self._incoming.name}/"
            )
            return True
        where = shown(str(target.relative_to(self.workspace.root)))
        note = target.with_name(target.name + ERROR_NOTE)
        partial = note.with_name(f".{note.name}.tmp")  # whole or absent for a reader
        try:
            partial.write_text(  # a line each: a newline in the name is shown, as '?'
                f"{shown(str(path))}\n{FAILED_AT}{datetime.now(UTC).isoformat(timespec='seconds')}\n"
                f"{shown(reason)}\n" + (f"\n{details}" if details else ""),
                encoding="utf-8",
                errors="backslashreplace",
            )
            os.replace(partial, note)
        except OSError as note_error:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            self._say(f"{name}: not ingested ({reason}); moved to {where}, but its note "
                      f"could not be written ({note_error.strerror or note_error})")  # fmt: skip
            return True
        self._say(f"{name}: not ingested ({reason}); moved to {where}")
        return True

    # -- helpers --------------------------------------------------------------------------------

    def _follow_config(self) -> None:
        """Validate with mldeck.toml as it is now: a fixed expectation or separator applies to
        the next file without restarting the console or the daemon. A file that does not load
        keeps the settings read before, said once per change."""
        stamp = _config_stamp(self.workspace)
        if stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        from mldeck.workspace import load_workspace

        try:
            self.workspace = load_workspace(self.workspace.root)
        except MldeckError as exc:
            self._say(f"mldeck.toml changed but cannot be used ({_one_line(exc)}); files are "
                      "validated as before until it is fixed")  # fmt: skip
            return
        self._noted.clear()  # the reference may be another one now: its notes are said again
        self._say("mldeck.toml changed: the next files are validated with it")

    def _say(self, message: str) -> None:
        log.info("%s", message)
        if self.on_event is not None:
            try:
                self.on_event(message)
            except Exception:
                log.exception("the on_event callback failed")

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            try:
                lock.release()
            except OSError:
                log.exception("cannot release %s", self.lock_path)


def _config_stamp(workspace: Workspace) -> tuple[int, int] | None:
    try:
        st = workspace.config_path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _kind_of(mode: int) -> str:
    """What a file that is no regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


ERROR_NOTE = ".error.txt"  # beside a file the watcher could not ingest: where from, when, why


@dataclass
class NotIngested:
    """A file the watcher moved to quarantine without ingesting it (no dataset version)."""

    path: str  # relative to the workspace
    source: str
    failed_at: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "source": self.source, "failed_at": self.failed_at,
                "reason": self.reason}  # fmt: skip


FAILED_AT = "failed to ingest at "  # a note's second line


def _error_notes(workspace: Workspace) -> list[Path]:
    try:
        folder = workspace.quarantine_dir.iterdir()
        return [p for p in folder if p.name.endswith(ERROR_NOTE) and _is_note(p)]
    except OSError:
        return []


def _is_note(path: Path) -> bool:
    """Whether *path* is one of our notes, not a data file whose name ends the same way (a
    "summary.error.txt" dropped, rejected and quarantined read as a note of a file "gone").
    Each file's head is read once (the Data screen counts them at every reload)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return False
        stamp = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        known = _NOTES_SEEN.get(stamp)  # (another thread may clear the cache meanwhile)
        if known is not None:
            return known
        with open(path, "rb") as fh:
            head = fh.read(8192).decode("utf-8", "replace").split("\n")
    except OSError:
        return False
    found = len(head) > 2 and head[1].startswith(FAILED_AT)
    if len(_NOTES_SEEN) > 10_000:
        _NOTES_SEEN.clear()
    _NOTES_SEEN[stamp] = found
    return found


_NOTES_SEEN: dict[tuple[str, int, int, int], bool] = {}


def count_not_ingested(workspace: Workspace) -> int:
    """How many files are in quarantine without a version (the heads of their notes read)."""
    return len(_error_notes(workspace))


def not_ingested(workspace: Workspace) -> list[NotIngested]:
    """The files in quarantine that never became versions, newest first, read from their
    ``.error.txt`` notes (source path, time, reason on the first three lines)."""
    found = []
    for note in _error_notes(workspace):
        try:
            lines = note.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        lines += [""] * 3
        moved = note.with_name(note.name.removesuffix(ERROR_NOTE))
        found.append(NotIngested(
            path=shown(str(moved.relative_to(workspace.root)))
            + ("" if moved.exists() or moved.is_symlink() else " (gone)"),
            source=shown(lines[0]), failed_at=lines[1].removeprefix(FAILED_AT),
            reason=lines[2],
        ))  # fmt: skip
    return sorted(found, key=lambda f: f.failed_at, reverse=True)


def _move_to_quarantine(path: Path, quarantine: Path) -> Path:
    """Move *path* into *quarantine* under a name not yet taken; never overwrites a file. A link
    is moved as the link: what it points to is never read."""
    quarantine.mkdir(parents=True, exist_ok=True)
    # Room for the note's name beside it (".<name>.error.txt.tmp" while it is written).
    name = fitted_name(path.name)
    stem, suffix = Path(name).stem, Path(name).suffix
    for number in range(1, 10_000):
        target = quarantine / (name if number == 1 else f"{stem}-{number}{suffix}")
        try:
            os.link(path, target, follow_symlinks=False)  # fails if the target exists
        except FileExistsError:
            continue
        except OSError:  # another filesystem, or no hard links here: copy, then remove
            if target.exists() or target.is_symlink():
                continue
            try:
                shutil.copy2(path, target, follow_symlinks=False)  # a link stays a link
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        try:
            path.unlink()
        except BaseException:  # it stays where it is: no second name left in quarantine
            target.unlink(missing_ok=True)
            raise
        return target
    raise OSError(f"too many files named like {path.name} in {quarantine}")
