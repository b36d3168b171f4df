"""The tracking API for users' own scripts.

::

    import mldeck

    with mldeck.start_run(name="baseline", kind="train") as run:
        run.log_params({"C": 1.0, "penalty": "l2"})
        for epoch in range(10):
            run.log_metric("loss", loss, step=epoch)
        run.log_artifact("model.skops")

A run that raises is recorded as failed with its traceback (and the exception goes on). Metrics are
buffered and written in batches, so logging 100k points takes well under a second. The workspace is
found like the CLI finds it (``workspace=``, ``MLDECK_WORKSPACE``, or the current folder upwards).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import operator
import os
import reprlib
import signal
import sys
import threading
import time
import traceback
import warnings
from contextvars import ContextVar
from datetime import UTC, datetime
from numbers import Real
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import DBAPIError, OperationalError

from mldeck import provenance
from mldeck.errors import MldeckError, WorkspaceNotFound, interrupted
from mldeck.formatting import shown, whole_text
from mldeck.store.artifacts import put_file
from mldeck.store.engine import Store
from mldeck.store.models import (
    Artifact,
    Metric,
    Run,
    RunKind,
    RunLog,
    RunStatus,
    RunTrigger,
    fitted_value,
    utcnow,
)
from mldeck.workspace import Workspace, discover, open_workspace_store

METRIC_BATCH = 5000
FLUSH_SECONDS = 2.0
HEARTBEAT_SECONDS = 10.0

_active: ContextVar[ActiveRun | None] = ContextVar("mldeck_active_run", default=None)
_stores: dict[str, tuple[Workspace, Store, tuple[int, int] | None]] = {}
_stores_lock = threading.Lock()


def _workspace_store(workspace: Workspace | Path | str | None) -> tuple[Workspace, Store]:
    """The workspace and its store, opened once per process; opened again when its SQLite file
    was replaced (a workspace deleted and made again under a notebook: its runs went to the
    deleted file, said recorded)."""
    ws = workspace if isinstance(workspace, Workspace) else discover(workspace)
    key = f"{ws.root}|{ws.db_url}"
    with _stores_lock:
        cached = _stores.get(key)
        if cached is not None and cached[1].file_identity() != cached[2]:
            cached = None  # runs still open keep the store they have
        if cached is None:
            store = open_workspace_store(ws)
            cached = _stores[key] = (ws, store, store.file_identity())
        return cached[0], cached[1]


def _jsonable(value: Any) -> Any:
    """A param or tag as JSON, leaf by leaf: a config dict holding a Path keeps its structure
    (the Path as its text), not the repr of the whole dict; NaN and infinities as their text;
    a numpy scalar or array as the Python number or list it holds (``np.int64(5)`` is 5). A
    part holding itself, or nesting deeper than MAX_PARAM_DEPTH, is kept as its shortened
    text. A part met twice is converted once (a structure sharing its parts, walked each time,
    grows exponentially); a value that would be more than MAX_PARAM_PARTS parts written out
    is kept whole as its shortened text."""
    converted, parts = _json_part(value, 0, frozenset(), {})
    return whole_text(_SHORT.repr(value)) if parts > MAX_PARAM_PARTS else converted


def _json_part(
    value: Any, depth: int, path: frozenset[int], done: dict[int, tuple[Any, int]]
) -> tuple[Any, int]:
    """(*value* as JSON, how many parts it is written out)."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        # Too long for Python to write as digits (its int-to-text limit): said, not crashed.
        return f"an integer of {value.bit_length()} bits", 1
    if value is None or isinstance(value, bool | int):
        return value, 1
    if isinstance(value, float):
        return (value if math.isfinite(value) else str(value)), 1
    if isinstance(value, str):
        return whole_text(value), 1
    nested = isinstance(value, dict | list | tuple)
    if nested and id(value) in done:
        return done[id(value)]
    if nested and depth < MAX_PARAM_DEPTH and id(value) not in path:
        inside = path | {id(value)}
        if isinstance(value, dict):
            items = [(whole_text(str(k)), _json_part(v, depth + 1, inside, done))
                     for k, v in value.items()]  # fmt: skip
            result: Any = {k: part for k, (part, _) in items}
            parts = 1 + sum(n for _, (_, n) in items)
        else:
            elements = [_json_part(v, depth + 1, inside, done) for v in value]
            result, parts = [part for part, _ in elements], 1 + sum(n for _, n in elements)
        done[id(value)] = (result, parts)
        return result, parts
    if nested:  # holding itself, or too deep: shortened as it is printed
        return whole_text(_SHORT.repr(value)), 1
    text = str(value)
    return whole_text(text if len(text) <= MAX_PARAM_TEXT else text[: MAX_PARAM_TEXT - 1] + "…"), 1


_SHORT = reprlib.Repr()  # Python 3.11 takes no settings in the constructor
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple = 6, 50, 50, 50
_SHORT.maxstring, _SHORT.maxother = 200, 200


def _fields(what: str, fields: Any) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise MldeckError(f"{what} are a dict of names and values, not {type(fields).__name__}")
    return {whole_text(str(k)): _jsonable(v) for k, v in fields.items()}  # each value on its own


MAX_PARAM_DEPTH = 50  # deeper is kept as its text
MAX_PARAM_PARTS = 2_000_000  # a value larger written out is kept as its shortened text
MAX_PARAM_TEXT = 10_000  # characters of a value kept as its text
MAX_INT_BITS = 10_000  # about 3,000 digits: a longer integer is kept as its size


def _task_cancelled(exc: BaseException | None) -> bool:
    asyncio = sys.modules.get("asyncio")  # not imported for scripts that never use it
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failure_text(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> str:
    """A failed block's error: its traceback, ending as tracebacks do in the line that says what
    went wrong. SQLAlchemy's message ends in a link to its docs, which a run's summary (its
    last line) showed: the database's own line is said last instead."""
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        name = f"{exc_type.__module__}.{exc_type.__qualname__}"
        text = f"{text.rstrip()}\n{name}: {' '.join(str(exc.orig).split())}\n"
    return text


def _clean_exit(exc: BaseException | None) -> bool:
    """Whether *exc* is a script ending with success inside its run: ``sys.exit()`` or
    ``sys.exit(0)``, which is not a failure of the run."""
    return isinstance(exc, SystemExit) and exc.code in (None, 0)


# A step is a 32-bit integer in every store (PostgreSQL's INTEGER; SQLite would take more).
STEP_MIN, STEP_MAX = -(2**31), 2**31 - 1
MAX_METRIC_KEY = 200


def _metric_key(key: Any) -> str:
    text = whole_text(str(key))  # an undecodable byte would fail the batch's write, later
    if not text or len(text) > MAX_METRIC_KEY or "\x00" in text:
        raise MldeckError(
            f"a metric's key is 1 to {MAX_METRIC_KEY} characters without NUL, not {text[:40]!r}"
            + ("…" if len(text) > 40 else "")
        )
    return text


def _metric_value(key: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real):
        try:
            value = float(value)  # numpy scalars, Decimal, numeric strings
        except (TypeError, ValueError):
            raise MldeckError(f"metric {key!r} must be a number, not {value!r}") from None
        except OverflowError:
            raise MldeckError(f"metric {key!r} is too large for a float: {value!s:.40}") from None
    try:
        value = float(value)
    except OverflowError:  # an integer past 1.8e308
        raise MldeckError(f"metric {key!r} is too large for a float: {value!s:.40}...") from None
    return None if math.isnan(value) else value  # NULL stands for NaN


def _metric_step(step: Any) -> int:
    """*step* as a whole number in range: 1.5 or "3" is refused, not cut to 1 or read as 3 (two
    points would share a step)."""
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    try:
        number = operator.index(step) if not isinstance(step, bool) else None
    except TypeError:
        number = None
    if number is None:
        raise MldeckError(f"a metric's step is a whole number, not {step!r}")
    if not STEP_MIN <= number <= STEP_MAX:
        raise MldeckError(f"metric step {number} is out of range ({STEP_MIN} to {STEP_MAX})")
    return number


def _metric_time(timestamp: Any) -> datetime:
    """An aware datetime as UTC, now: refused here, not when the batch is written (which
    failed every later flush and lost the run's other points)."""
    if not isinstance(timestamp, datetime):
        raise MldeckError(f"a metric's timestamp is a datetime, not {timestamp!r}")
    if timestamp.utcoffset() is None:
        raise MldeckError(f"metric timestamp {timestamp} has no time zone; pass an aware one")
    try:
        return timestamp.astimezone(UTC)
    except OverflowError:
        raise MldeckError(f"metric timestamp {timestamp} is out of range in UTC") from None


class ActiveRun:
    """A run in progress; use it as a context manager (see :func:`start_run`)."""

    def __init__(self, workspace: Workspace, store: Store, run_id: int, name: str) -> None:
        self.workspace = workspace
        self.store = store
        self.id = run_id
        self.name = name
        self._metrics: list[dict[str, Any]] = []
        self._steps: dict[str, int] = {}
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"mldeck-heartbeat-{run_id}", daemon=True
        )
        self._token = None
        self._ended = False
        self._entered = False
        self._pid = os.getpid()  # a forked child (a multiprocessing worker) must not log to it
        self._warned = False
        self._pending_end: tuple[RunStatus, str | None] | None = None  # refused by the store
        self._holds_signals = False
        self._cut_off = False  # ended at exit while its with block ran (in a daemon thread)
        self._thread: threading.Thread | None = None  # the thread that entered its block

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> ActiveRun:
        self._check_open()
        if self._entered:
            raise MldeckError(f"run {self.id} ({self.name}) is already in a with block")
        self._entered = True
        self._token = _active.set(self)
        self._thread = threading.current_thread()
        self._heartbeat.start()
        self._end_on_signals()
        return self

    def _end_on_signals(self) -> None:
        """SIGTERM and SIGHUP (a job stopped by `timeout`, Slurm or Kubernetes, an SSH session
        closed) end the block like Ctrl-C: the run is recorded as cancelled with its buffered
        metrics, where the process died with the run "running" and the points lost. Only
        signals left to their default, in the main thread; put back when the block ends."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(number) == signal.SIG_DFL:
                _signals_owner[:] = [os.getpid()]
                _saved_handlers[number] = signal.signal(number, _stop_on_signal)
        if _saved_handlers:
            # Put back when the last block relying on them ends: blocks that overlap without
            # nesting (asyncio tasks) lost them when the first to enter ended.
            self._holds_signals = True
            _signal_blocks.add(id(self))

    def _restore_signals(self) -> None:
        if not self._holds_signals:
            return
        self._holds_signals = False
        _signal_blocks.discard(id(self))
        if _signal_blocks:
            return
        for number, handler in list(_saved_handlers.items()):
            with contextlib.suppress(ValueError):  # not the main thread any more
                if signal.getsignal(number) is _stop_on_signal:  # not one set inside the block
                    signal.signal(number, handler)
        _saved_handlers.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            with contextlib.suppress(ValueError):  # a token of another context
                _active.reset(self._token)
        self._restore_signals()
        if os.getpid() != self._pid:  # a forked child leaving the block: the parent's run
            return
        if exc_type is None or _clean_exit(exc):
            self.end(RunStatus.SUCCEEDED)
        elif interrupted(exc):
            self.end(RunStatus.CANCELLED, error="interrupted (KeyboardInterrupt)")
        elif isinstance(exc, Stopped):
            self.end(RunStatus.CANCELLED, error=f"stopped ({exc.name})")
        elif _task_cancelled(exc):  # an asyncio task cancelled (by a signal's stop, a timeout)
            self.end(RunStatus.CANCELLED, error="cancelled (asyncio.CancelledError)")
        else:
            self.end(RunStatus.FAILED, error=_failure_text(exc_type, exc, tb))

    def end(self, status: RunStatus = RunStatus.SUCCEEDED, error: str | None = None) -> None:
        """Flush what is buffered and record the run's final status: succeeded, failed,
        cancelled or skipped (idempotent)."""
        try:
            status = RunStatus(status)
        except ValueError:
            status = None
        if status is None or not status.finished or status == RunStatus.ORPHANED:
            raise MldeckError("a run ends succeeded, failed, cancelled or skipped")
        if self._ended or os.getpid() != self._pid:
            return
        self._ended = True
        self._stop.set()
        try:
            self._record_end(status, error)
        except OperationalError as exc:
            # The store busy (locked past its timeout) or away: the run stays open to the exit
            # hook, which tries again (it stayed "running" for good, its points lost).
            self._pending_end = (status, error)
            raise MldeckError(
                f"run {self.id} ({self.name}) could not be recorded as ended, the store refused "
                f"it ({_first_line(exc)}); its status and {len(self._metrics)} buffered metric "
                "points are tried again when the script exits"
            ) from exc
        _open_runs.pop(id(self), None)
        if self._heartbeat.is_alive() and threading.current_thread() is not self._heartbeat:
            self._heartbeat.join(timeout=5)

    def _record_end(self, status: RunStatus, error: str | None) -> None:
        """Flush the buffered points, then write the run's end. A store that refuses both
        (busy or away) raises OperationalError with nothing written."""
        try:
            self.flush()
        except OperationalError:
            raise
        except BaseException as exc:  # the metrics are lost: the run did not succeed
            if status == RunStatus.SUCCEEDED:
                status = RunStatus.FAILED
                error = (
                    "buffered metrics could not be stored: "
                    + "".join(traceback.format_exception_only(exc)).strip()
                )
            self._write_end(status, error)
            raise
        self._write_end(status, error)

    def _write_end(self, status: RunStatus, error: str | None) -> None:
        # One UPDATE, not the ORM's load-and-flush: run at the interpreter's exit, the ORM's
        # first use of its code generates functions with exec(), which cleared Python's note of
        # an uncaught Ctrl-C (the script exited 1, not 130).
        changes: dict[str, Any] = {"status": status, "ended_at": utcnow()}
        if error is not None:  # fitted as the ORM's flush fits text (NUL, lone surrogates)
            changes["error"] = fitted_value(Run, "error", error)
        if status == RunStatus.SUCCEEDED:
            changes["progress"] = 1.0
        with self.store.write() as session:
            session.execute(update(Run).where(Run.id == self.id).values(**changes))

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.store.write() as session:
                    run = session.get(Run, self.id)
                    run.heartbeat_at = utcnow()
                    session.add(run)
                with self._lock:
                    due = self._metrics and time.monotonic() - self._last_flush > FLUSH_SECONDS
                if due:
                    self.flush()
            except Exception:  # a missed heartbeat must never kill the user's script
                continue

    def _check_open(self) -> None:
        """Refuse what is logged once the run has ended: a metric would wait in the buffer and
        never be written, and a param or log line would change a finished run's record."""
        if (
            self._ended
            and self._cut_off
            and threading.current_thread() is not threading.main_thread()
        ):
            raise SystemExit  # a daemon thread still logging as the interpreter exits: stop it
        if self._ended:
            raise MldeckError(
                f"run {self.id} ({self.name}) has ended; log to it inside its "
                "'with mldeck.start_run(...)' block"
            )

    # -- params, tags, progress, logs ----------------------------------------------------------
    def _update(self, **changes: Any) -> None:
        self._check_open()
        with self.store.write() as session:
            run = session.get(Run, self.id)
            for field, value in changes.items():
                if field in ("params", "tags"):
                    merged = dict(getattr(run, field))
                    merged.update(value)
                    value = merged
                setattr(run, field, value)
            session.add(run)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: dict[str, Any]) -> None:
        self._update(params=_fields("params", params))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._update(tags=_fields("tags", tags))

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1) shown live in the console."""
        try:
            value = float(fraction)
        except (TypeError, ValueError, OverflowError):
            value = math.nan
        if math.isnan(value):  # stored as NULL: the run would show no progress at all
            raise MldeckError(f"progress is a number from 0 to 1, not {fraction!s:.40}")
        text = "" if message is None else whole_text(str(message))
        self._update(progress=min(max(value, 0.0), 1.0), progress_message=text)

    def log(self, message: str, level: str = "info") -> None:
        """Append a line to the run's log."""
        self._check_open()
        with self.store.write() as session:
            session.add(RunLog(run_id=self.id, level=level, message=str(message)))

    # -- metrics -------------------------------------------------------------------------------
    def log_metric(
        self, key: str, value: Any, step: int | None = None, timestamp: datetime | None = None
    ) -> None:
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(
        self,
        metrics: dict[str, Any],
        step: int | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Buffer metric points; without *step*, each key counts its own steps from 0."""
        self._check_open()
        if not hasattr(metrics, "items"):  # a dict, a mappingproxy, a pandas Series ...
            raise MldeckError(f"metrics are a dict of names and values, not "
                              f"{type(metrics).__name__}")  # fmt: skip
        ts = utcnow() if timestamp is None else _metric_time(timestamp)
        # Check every value first: a rejected one must neither use up a step nor drop the others.
        values = {
            _metric_key(key): _metric_value(str(key), value) for key, value in metrics.items()
        }
        if len(values) < len(metrics):  # {1: 5.0, "1": 6.0}: one would replace the other
            raise MldeckError("two of the metrics' keys read the same as text: "
                              f"{sorted(map(str, metrics))!r:.200}")  # fmt: skip
        step = None if step is None else _metric_step(step)
        rows = []
        with self._lock:
            if step is None:  # the automatic steps stay in range too
                for key in values:
                    if self._steps.get(key, -1) >= STEP_MAX:
                        raise MldeckError(f"metric {key!r} has used every step up to {STEP_MAX}; "
                                          "pass step= to log more")  # fmt: skip
            for key, value in values.items():
                this_step = self._steps.get(key, -1) + 1 if step is None else step
                self._steps[key] = max(this_step, self._steps.get(key, -1))
                rows.append(
                    {"run_id": self.id, "key": key, "value": value, "step": this_step, "ts": ts}
                )
            if os.getpid() != self._pid:
                # A forked child (a multiprocessing worker): its buffer would die with it
                # unwritten (pool workers leave through os._exit), so its points are written now.
                with self.store.write() as session:
                    session.execute(insert(Metric), rows)
                return
            self._metrics.extend(rows)
            due = (
                len(self._metrics) >= METRIC_BATCH
                or time.monotonic() - self._last_flush > FLUSH_SECONDS
            )
        if due:
            try:
                self.flush()
            except OperationalError as exc:  # the store busy (locked) or away: try again later
                self._warn_unflushed(exc)

    def _warn_unflushed(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"mldeck: run {self.id}'s metrics are kept in memory, the store refused them "
                f"({_first_line(exc)}); they are written at the next flush",
                RuntimeWarning,
                stacklevel=4,
            )

    def flush(self) -> None:
        """Write buffered metrics now (done automatically in batches and at the end). Points a
        failed write did not store go back to the buffer, for the next flush."""
        with self._lock:
            pending, self._metrics = self._metrics, []
            self._last_flush = time.monotonic()
        written = 0
        try:
            for start in range(0, len(pending), METRIC_BATCH):
                with self.store.write() as session:
                    session.execute(insert(Metric), pending[start : start + METRIC_BATCH])
                written = min(start + METRIC_BATCH, len(pending))
        except BaseException:
            with self._lock:
                self._metrics[:0] = pending[written:]
            raise

    # -- artifacts -----------------------------------------------------------------------------
    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> Artifact:
        """Copy a file into the workspace's content-addressed artifact store and record it."""
        self._check_open()
        source = Path(path)
        self.workspace.refuse_state_file(source)
        sha, stored, size = put_file(self.workspace.artifacts_dir, source)
        record = Artifact(
            run_id=self.id,
            name=shown(str(name)) if name else shown(source.name),
            path=str(stored.relative_to(self.workspace.root)),
            sha256=sha,
            size_bytes=size,
        )
        with self.store.write() as session:
            session.add(record)
        return record


def start_run(
    name: str | None = None,
    kind: str = RunKind.CUSTOM,
    *,
    trigger: str = RunTrigger.SCRIPT,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    workspace: Workspace | Path | str | None = None,
) -> ActiveRun:
    """Start a run in the workspace's store; use the result in a ``with`` block."""
    try:
        kind = RunKind(kind)
    except ValueError:
        valid = ", ".join(k.value for k in RunKind)
        raise MldeckError(f"unknown run kind {kind!r} (one of: {valid})") from None
    try:
        trigger = RunTrigger(trigger)
    except ValueError:
        valid = ", ".join(t.value for t in RunTrigger)
        raise MldeckError(f"unknown run trigger {trigger!r} (one of: {valid})") from None
    try:
        ws, store = _workspace_store(workspace)
    except WorkspaceNotFound as exc:  # said for a script, not for the CLI's --workspace
        text = str(exc).replace(
            "pass --workspace DIR", "pass workspace=DIR or set MLDECK_WORKSPACE"
        )
        raise WorkspaceNotFound(text) from None
    entry = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    pid = os.getpid()
    now = utcnow()
    run_name = whole_text(str(name)) if name else shown(entry.stem) if entry else "run"
    run = Run(
        name=run_name,
        kind=kind,
        trigger=trigger,
        status=RunStatus.RUNNING,
        created_at=now,
        started_at=now,
        heartbeat_at=now,
        params=_fields("params", params or {}),
        tags=_fields("tags", tags or {}),
        code_version=provenance.code_version(Path.cwd(), entry),
        environment=provenance.environment(),
        user=provenance.current_user(),
        host=provenance.hostname(),
        pid=pid,
        pid_started_at=provenance.process_start_time(pid),
    )
    run_id = None
    try:
        try:
            with store.write() as session:
                session.add(run)
                session.flush()
                run_id = run.id
        except OperationalError as exc:  # busy past its timeout, or away
            from mldeck.store.engine import store_problem

            raise MldeckError(f"the run could not be recorded: {store_problem(exc)}") from exc
        started = ActiveRun(ws, store, run_id, run_name)
        _end_at_exit(started)
        return started
    except KeyboardInterrupt:
        # Interrupted between recording the run and handing it over: nothing else would end it.
        if run_id is not None:
            with store.write() as session:
                recorded = session.get(Run, run_id)
                if recorded is not None and recorded.status == RunStatus.RUNNING:
                    recorded.status, recorded.ended_at = RunStatus.CANCELLED, utcnow()
                    recorded.error = "interrupted (KeyboardInterrupt)"
                    session.add(recorded)
        raise


# Runs started and not ended yet, ended when the interpreter exits: a script that calls
# start_run() without a with block lost every buffered metric, and its run stayed "running".
_open_runs: dict[int, ActiveRun] = {}  # by id() of the run
# The exception that ends the script, if one does: (whether it is a Ctrl-C, its traceback).
_uncaught: list[tuple[bool, str]] = []
_exit_hooks: list[bool] = []  # installed once, with the first run


def _end_at_exit(run: ActiveRun) -> None:
    if not _exit_hooks:
        _exit_hooks.append(True)
        atexit.register(_end_open_runs)
        previous = sys.excepthook

        def remember(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
            # In an interactive session an error ends nothing: the session goes on (a typo
            # marked the run failed when the session later ended normally).
            if not hasattr(sys, "ps1"):
                _uncaught.append(
                    (interrupted(exc), "".join(traceback.format_exception(kind, exc, tb)))
                )
            previous(kind, exc, tb)

        sys.excepthook = remember
    _open_runs[id(run)] = run  # by object: two workspaces' runs may share an id


def _end_open_runs() -> None:
    for run in list(_open_runs.values()):
        if run._pid != os.getpid():  # a forked child exiting: the run is its parent's
            continue
        try:
            if run._pending_end is not None:  # its end refused by the store: tried again
                try:
                    run._record_end(*run._pending_end)
                    _open_runs.pop(id(run), None)
                except Exception as exc:
                    print(f"mldeck: run {run.id} ({run.name}) could not be recorded as ended "
                          f"({_first_line(exc)}); {len(run._metrics)} metric points lost",
                          file=sys.stderr)  # fmt: skip
                continue
            thread = run._thread
            if (
                run._entered
                and thread is not None
                and thread is not threading.main_thread()
                and thread.is_alive()
            ):  # its block runs on in a daemon thread: cut off
                run._cut_off = True
                run.end(RunStatus.FAILED, error="the process exited while the run's with block "
                        "was still running (in a daemon thread?)")  # fmt: skip
                continue
            with contextlib.suppress(Exception):
                run.log("ended when the script exited: start_run() was not used in a with block "
                        "(or end() was not called)", level="warning")  # fmt: skip
            if _uncaught and _uncaught[-1][0]:  # a Ctrl-C, as in a with block
                run.end(RunStatus.CANCELLED, error="interrupted (KeyboardInterrupt)")
            elif _uncaught:
                run.end(RunStatus.FAILED, error=_uncaught[-1][1])
            else:
                run.end(RunStatus.SUCCEEDED)
        except Exception as exc:  # the interpreter is exiting: said, nothing else to do
            cause = exc.__cause__ or exc  # the store's refusal, under end()'s sentence
            print(f"mldeck: run {run.id} ({run.name}) could not be recorded as ended "
                  f"({_first_line(cause)})", file=sys.stderr)  # fmt: skip
            continue


class Stopped(SystemExit):
    """SIGTERM or SIGHUP in a run's with block: the script stops as the signal would have
    stopped it (exit status 128 + the signal's number), its run recorded as cancelled."""

    def __init__(self, number: int) -> None:
        super().__init__(128 + number)
        self.name = signal.Signals(number).name


_signals_owner: list[int] = []  # the process that put _stop_on_signal in place
_saved_handlers: dict[int, Any] = {}  # the handlers _stop_on_signal replaced, by signal
_signal_blocks: set[int] = set()  # id() of the runs whose with blocks rely on it


def _stop_on_signal(number: int, _frame: Any) -> None:
    if _signals_owner and os.getpid() != _signals_owner[-1]:
        # A forked child (a multiprocessing worker, which its pool ends with SIGTERM): the
        # signal does what it would have done, at once.
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        return
    raise Stopped(number)


def active_run() -> ActiveRun:
    """The run of the innermost ``with start_run(...)`` block; in a thread the block started
    (a thread does not inherit its context), the one run open in the process, if there is one."""
    run = _active.get()
    if run is None:
        entered = [r for r in _open_runs.values() if r._token is not None and not r._ended]
        if len(entered) == 1:
            return entered[0]
        if len(entered) > 1:
            raise MldeckError(
                "no active run in this thread, and several runs are open in the process: log "
                "through the run itself (run.log_metric(...)) from worker threads"
            )
        raise MldeckError("no active run: call this inside 'with mldeck.start_run(...):'")
    return run


def log_param(key: str, value: Any) -> None:
    active_run().log_param(key, value)


def log_params(params: dict[str, Any]) -> None:
    active_run().log_params(params)


def log_metric(key: str, value: Any, step: int | None = None) -> None:
    active_run().log_metric(key, value, step=step)


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    active_run().log_metrics(metrics, step=step)


def set_tag(key: str, value: Any) -> None:
    active_run().set_tag(key, value)


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> Artifact:
    return active_run().log_artifact(path, name)
