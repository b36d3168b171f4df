"""A lease in the store: exactly one process acts (runs the scheduler) for a workspace.

The holder renews ``heartbeat_at`` every ``lease_seconds / 3``. Another process takes the lease
over when the holder has not renewed it for ``lease_seconds``, or at once when the holder ran on
this host and its process is gone (its pid is not alive, or it is alive with another start time:
a reused pid). Every decision is one ``BEGIN IMMEDIATE`` transaction, so two processes trying at
the same moment cannot both win. A holder that finds the lease taken from it (it was silent too
long) stops acting.

Renewals do not bump the store's change counter (they would make every console reload every few
seconds); taking, losing and releasing the lease do.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlmodel import Session

from mldeck import provenance
from mldeck.store.engine import Store
from mldeck.store.models import Lease, StoreState, utcnow

SCHEDULER = "scheduler"
DAEMON, CONSOLE = "daemon", "console"
STANDBY_PREFIX = "standby:"  # rows of processes waiting to act: standby:<lease>:<holder id>


@contextmanager
def _quiet_write(store: Store) -> Iterator[Session]:
    """A write transaction (BEGIN IMMEDIATE) that commits only when told and bumps nothing."""
    with Session(store.engine.execution_options(mldeck_write=True), expire_on_commit=False) as s:
        store.take_write_turn(s)  # one process at a time decides who holds the lease
        yield s


def _bump(session: Session) -> None:
    session.execute(
        update(StoreState)
        .where(StoreState.id == 1)
        .values(change_seq=StoreState.change_seq + 1, changed_at=utcnow())
    )


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[:1] in (["Z"], ["X"])


def process_alive(pid: int | None, started_at: float | None) -> bool:
    """True when process *pid* runs on this host with the start time recorded for it."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if _zombie(pid):
        return False  # it exited; its parent (or init) has not reaped it yet
    if started_at is None:
        return True
    now_started = provenance.process_start_time(pid)
    if now_started is None:  # /proc unreadable: trust kill(0)
        return True
    return now_started == started_at


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease, as the console and ``mldeck jobs list`` show it."""

    name: str
    holder: str
    role: str
    host: str
    pid: int | None
    acquired_at: datetime
    heartbeat_at: datetime
    alive: bool

    def describe(self) -> str:
        where = f"{self.role or 'process'} pid {self.pid} on {self.host}"
        return where if self.alive else f"{where} (not renewed: expired)"


def _expired(lease: Lease, lease_seconds: float, now: datetime) -> bool:
    if now - lease.heartbeat_at > timedelta(seconds=lease_seconds):
        return True
    if lease.host == provenance.hostname():
        return not process_alive(lease.pid, lease.pid_started_at)
    return False


def holder(store: Store, lease_seconds: float, name: str = SCHEDULER) -> LeaseInfo | None:
    """The current holder of lease *name* (None when nobody ever held it)."""
    with store.read() as session:
        lease = session.get(Lease, name)
    if lease is None:
        return None
    return LeaseInfo(
        lease.name, lease.holder, lease.role, lease.host, lease.pid, lease.acquired_at,
        lease.heartbeat_at, alive=not _expired(lease, lease_seconds, utcnow()),
    )  # fmt: skip


class LeaseKeeper:
    """One process's claim on a lease: ``try_acquire()`` until it holds, then ``renew()``."""

    def __init__(self, store: Store, *, role: str, lease_seconds: float, name: str = SCHEDULER):
        self.store = store
        self.name = name
        self.role = role
        self.lease_seconds = lease_seconds
        self.id = uuid.uuid4().hex
        self.pid = os.getpid()
        self.pid_started_at = provenance.process_start_time(self.pid)
        self.host = provenance.hostname()
        self.held = False
        # time.time() of the last acquisition or renewal: the wall clock, as the lease's expiry
        # is (a monotonic clock stands still while the host is suspended).
        self._renewed = 0.0

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 3

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; True when this process holds it.
        A console leaves a free lease to a daemon waiting for it (a console's work ends when it
        quits; a daemon's does not)."""
        now = utcnow()
        with _quiet_write(self.store) as session:
            lease = session.get(Lease, self.name)
            taken = lease is not None and lease.holder != self.id
            if taken and not _expired(lease, self.lease_seconds, now):
                self.held = False
                return False
            if (self.role == CONSOLE and (lease is None or lease.holder != self.id)
                    and self._daemon_waiting(session, now)):  # fmt: skip
                self.held = False
                return False
            changed = lease is None or lease.holder != self.id or not self.held
            if lease is None:
                lease = Lease(name=self.name, holder=self.id)
            if changed:
                lease.acquired_at = now
            lease.holder, lease.role, lease.host = self.id, self.role, self.host
            lease.pid, lease.pid_started_at, lease.heartbeat_at = (
                self.pid, self.pid_started_at, now,
            )  # fmt: skip
            session.add(lease)
            if changed:
                _bump(session)
            session.commit()
        self.held = True
        self._renewed = time.time()
        return True

    def renew(self) -> bool:
        """Renew the lease; False (and no longer held) when another process took it over."""
        with _quiet_write(self.store) as session:
            done = session.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.holder == self.id)
                .values(heartbeat_at=utcnow())
            )
            if done.rowcount != 1:
                _bump(session)  # lost it: the console shows the new holder
            session.commit()
        self.held = done.rowcount == 1
        if self.held:
            self._renewed = time.time()
        return self.held

    def still_held(self) -> bool:
        """Whether this process still holds the lease before it acts: renewed within the lease
        time, or renewed now. A process stopped for longer (SIGSTOP, a suspended VM) finds on
        resuming that another took over before it starts anything, not after."""
        if self.held and 0 <= time.time() - self._renewed < self.lease_seconds / 2:
            return True
        return self.renew()

    # -- a daemon waiting to act says so, so that consoles leave the lease to it ------------------
    @property
    def _standby_name(self) -> str:
        return f"{STANDBY_PREFIX}{self.name}:{self.id}"

    def stand_by(self) -> None:
        """Note (renewed like a lease) that this process waits to act: a console does not take
        the lease while a daemon waits, and hands it over when it can."""
        now = utcnow()
        with _quiet_write(self.store) as session:
            row = session.get(Lease, self._standby_name) or Lease(name=self._standby_name,
                                                                  holder=self.id, acquired_at=now)  # fmt: skip
            row.role, row.host, row.pid, row.pid_started_at = (
                self.role, self.host, self.pid, self.pid_started_at,
            )  # fmt: skip
            row.heartbeat_at = now
            session.add(row)
            session.commit()

    def leave_standby(self) -> None:
        with _quiet_write(self.store) as session:
            session.execute(delete(Lease).where(Lease.name == self._standby_name))
            session.commit()

    def daemon_waiting(self) -> LeaseInfo | None:
        """A daemon (another process) waiting to act, if one is."""
        with self.store.read() as session:
            return self._daemon_waiting(session, utcnow())

    def _daemon_waiting(self, session: Session, now: datetime) -> LeaseInfo | None:
        waiting = select(Lease).where(
            Lease.name.startswith(f"{STANDBY_PREFIX}{self.name}:"),
            Lease.role == DAEMON,
            Lease.holder != self.id,
        )
        rows = session.execute(waiting).scalars()
        for row in rows:
            if not _expired(row, self.lease_seconds, now):
                return LeaseInfo(row.name, row.holder, row.role, row.host, row.pid,
                                 row.acquired_at, row.heartbeat_at, alive=True)  # fmt: skip
        return None

    def release(self) -> None:
        """Give the lease up (on a clean stop) so another process can act at once."""
        if not self.held:
            return
        self.held = False
        with self.store.write() as session:
            lease = session.get(Lease, self.name)
            if lease is not None and lease.holder == self.id:
                session.delete(lease)
