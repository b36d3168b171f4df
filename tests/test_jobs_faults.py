"""Faults the orchestration survives, each with real processes: ``kill -9`` of the daemon in the
middle of a training, two daemons on one workspace, the console + a daemon + CLI commands all
writing at once, and a disk that is (almost) full."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from mldeck.jobs.lease import holder
from mldeck.jobs.schedules import get_schedule, set_paused
from mldeck.store.models import AuditEvent, ModelVersion, Run, RunStatus
from mldeck.store.queries import integrity_check

from .jobs_helpers import (
    cli,
    copy_workspace,
    count,
    environ,
    make_template,
    open_store,
    pid_alive,
    start_daemon,
    stop,
    wait_for,
)

# The "one minute of concurrent writes" runs for this many seconds (set it to 60 for the
# full minute: MLDECK_STRESS_SECONDS=60 python -m pytest tests/test_jobs_faults.py).
STRESS_SECONDS = float(os.environ.get("MLDECK_STRESS_SECONDS", "5"))

JOBS = """
[jobs]
lease_seconds = 3
retry_base_seconds = 0.2
min_free_disk_mb = 0

[jobs.schedules.train]
kind = "train"
every = "1h"
retries = 1

[jobs.schedules.health]
kind = "health"
every = "{health}"
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(tmp_path_factory.mktemp("faults-template") / "ws")


def _acting_pid(store) -> int | None:
    found = holder(store, 3)
    return found.pid if found is not None and found.alive else None


def _train_runs(store) -> list[Run]:
    with store.read() as session:
        return list(
            session.execute(select(Run).where(Run.name == "train").order_by(Run.id)).scalars()
        )


def test_kill_9_of_the_daemon_mid_training_then_a_restart(template, tmp_path):
    workspace = copy_workspace(template, tmp_path / "ws", JOBS.format(health="1h"))
    (workspace.root / "slow.marker").touch()
    store = open_store(workspace)
    daemon = start_daemon(workspace, tmp_path / "daemon-1.out")
    try:
        wait_for(lambda: _acting_pid(store) == daemon.pid, "the daemon to act")
        asked = cli(workspace, "jobs", "run", "train")
        assert asked.returncode == 0 and "asked the scheduler" in asked.stdout, asked.stderr
        wait_for(lambda: (workspace.root / "fitting.pid").exists(), "the training to start")
        worker = int((workspace.root / "fitting.pid").read_text())
        child = int((workspace.root / "child.pid").read_text())
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        # The worker notices its scheduler is gone and kills its process group.
        wait_for(lambda: not pid_alive(worker) and not pid_alive(child), "the worker to die")
        assert count(store, ModelVersion) == 0  # nothing registered by the killed attempt
        killed = _train_runs(store)
        assert [r.status for r in killed] == [RunStatus.RUNNING]  # as the kill left it
    finally:
        stop(daemon)
    (workspace.root / "slow.marker").unlink()
    restarted = start_daemon(workspace, tmp_path / "daemon-2.out")
    try:
        runs = wait_for(
            lambda: [r for r in _train_runs(store) if r.status == RunStatus.SUCCEEDED],
            "the job to run again after the restart",
        )
    finally:
        stop(restarted)
    all_runs = _train_runs(store)
    assert all_runs[0].status == RunStatus.ORPHANED and "is gone" in all_runs[0].error
    assert len(runs) == 1 and runs[0].id == all_runs[-1].id
    assert runs[0].tags["reason"].endswith("was orphaned ([jobs] rerun_orphaned)")
    with store.read() as session:
        inner = (
            session.execute(
                select(Run).where(Run.kind == "train", Run.name != "train").order_by(Run.id)
            )
            .scalars()
            .all()
        )
        versions = session.execute(select(ModelVersion)).scalars().all()
        actions = session.execute(select(AuditEvent.action)).scalars().all()
    # The killed attempt's own training run is orphaned too; one model version, made by the
    # rerun: nothing duplicated.
    assert [r.status for r in inner] == [RunStatus.ORPHANED, RunStatus.SUCCEEDED]
    assert len(versions) == 1 and versions[0].run_id == inner[1].id
    assert "run.orphaned" in actions and "schedule.rerun" in actions
    assert integrity_check(store) == "ok"
    store.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_mid_training_cancels_the_run_before_the_daemon_says_it_stopped(
    template, tmp_path, signum
):
    """SIGHUP too (an SSH session closed under 'mldeck daemon &'): it killed the daemon, its runs
    stayed 'running' and its lease held until another scheduler came."""
    workspace = copy_workspace(template, tmp_path / "ws", JOBS.format(health="1h"))
    (workspace.root / "slow.marker").touch()
    store = open_store(workspace)
    daemon = start_daemon(workspace, tmp_path / "daemon.out")
    try:
        wait_for(lambda: _acting_pid(store) == daemon.pid, "the daemon to act")
        assert cli(workspace, "jobs", "run", "train").returncode == 0
        wait_for(lambda: (workspace.root / "fitting.pid").exists(), "the training to start")
        daemon.send_signal(signum)
        assert daemon.wait(timeout=60) == 0
    finally:
        stop(daemon)
    runs = _train_runs(store)
    assert runs and all(r.status == RunStatus.CANCELLED for r in runs)
    lines = (workspace.state_dir / "daemon.log").read_text().splitlines()
    # The daemon's last word is that it stopped: the cancelled run was said (and stored) before.
    assert lines[-1].endswith("daemon stopped"), lines[-5:]
    assert any(line.endswith(f"train: run {runs[-1].id} cancelled: the scheduler stopped")
               for line in lines[:-1]), lines[-5:]  # fmt: skip
    store.close()


def test_two_daemons_on_one_workspace_exactly_one_acts(template, tmp_path):
    workspace = copy_workspace(template, tmp_path / "ws", JOBS.format(health="1h"))
    store = open_store(workspace)
    first = start_daemon(workspace, tmp_path / "a.out")
    second = start_daemon(workspace, tmp_path / "b.out")
    daemons = {first.pid: first, second.pid: second}
    outputs = {first.pid: tmp_path / "a.out", second.pid: tmp_path / "b.out"}
    try:
        acting = wait_for(lambda: _acting_pid(store), "one daemon to act")
        standby = next(pid for pid in daemons if pid != acting)
        # Both have looked at the lease several times: the standby never acted.
        wait_for(lambda: "acting for" in outputs[acting].read_text(), "the acting daemon's word")
        wait_for(lambda: "daemon on" in outputs[standby].read_text(), "the standby to start")
        time.sleep(1)  # a few of the standby's looks at the lease (not an assertion on time)
        assert "acting for" not in outputs[standby].read_text()
        assert _acting_pid(store) == acting
        daemons[acting].send_signal(signal.SIGKILL)
        daemons[acting].wait()
        wait_for(lambda: _acting_pid(store) == standby, "the standby to take over")
        # It says so once it holds the lease: just after the store shows it.
        wait_for(lambda: "acting for" in outputs[standby].read_text(), "the standby's word")
    finally:
        for proc in daemons.values():
            stop(proc)
    store.close()


def test_a_daemon_whose_stdout_goes_away_keeps_running_and_logging(template, tmp_path):
    """'mldeck daemon | head -1': each later line logged an 'on_event failed' traceback, and
    the last one ('stopped') ended it with a BrokenPipeError."""
    workspace = copy_workspace(template, tmp_path / "ws", JOBS.format(health="1s"))
    store = open_store(workspace)
    errors = open(tmp_path / "err", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "mldeck.cli", "--workspace", str(workspace.root), "daemon"],
        stdout=subprocess.PIPE, stderr=errors, env=environ(), cwd=workspace.root,
    )  # fmt: skip
    try:
        assert b"mldeck daemon on" in proc.stdout.readline()
        proc.stdout.close()  # the reader goes away
        log = workspace.state_dir / "daemon.log"
        wait_for(lambda: count(store, Run, Run.name == "health") >= 2, "two health checks")
        wait_for(lambda: "stdout is gone" in log.read_text(), "the daemon to notice")
        assert proc.poll() is None
    finally:
        stop(proc)
        errors.close()
    assert proc.returncode == 0
    said = log.read_text() + (tmp_path / "err").read_text()
    assert "Traceback" not in said and "on_event failed" not in said, said
    store.close()


def test_console_daemon_and_cli_write_at_once_without_lock_errors(template, tmp_path):
    workspace = copy_workspace(template, tmp_path / "ws", JOBS.format(health="1s") + """
[jobs.schedules.cli-toggle]
kind = "health"
every = "1d"

[jobs.schedules.console-toggle]
kind = "health"
every = "1d"
""")  # fmt: skip
    store = open_store(workspace)
    daemon = start_daemon(workspace, tmp_path / "daemon.out")
    errors: list[str] = []
    console_writes = 0
    stop_at = time.monotonic() + STRESS_SECONDS

    def console() -> None:  # what the console's Jobs screen calls, from its worker threads
        nonlocal console_writes
        paused = False
        while time.monotonic() < stop_at:
            try:
                paused = not paused
                set_paused(store, "console-toggle", paused)
                console_writes += 1
            except Exception as exc:
                errors.append(f"console: {exc!r}")
                return

    try:
        wait_for(lambda: _acting_pid(store) == daemon.pid, "the daemon to act")
        thread = threading.Thread(target=console)
        thread.start()
        cli_writes, paused = 0, False
        while time.monotonic() < stop_at:
            paused = not paused
            done = cli(workspace, "jobs", "pause" if paused else "resume", "cli-toggle")
            if done.returncode != 0 or done.stderr:
                errors.append(f"cli: {done.stderr.strip()}")
                break
            cli_writes += 1
        thread.join()
    finally:
        stop(daemon)
    log = (workspace.state_dir / "daemon.log").read_text()
    out = (tmp_path / "daemon.out").read_text()
    assert errors == []
    assert "locked" not in log and "locked" not in out and "Traceback" not in log
    with store.read() as session:
        events = (
            session.execute(
                select(AuditEvent.entity_id).where(
                    AuditEvent.action.in_(("schedule.pause", "schedule.resume"))
                )
            )
            .scalars()
            .all()
        )
        health_runs = session.execute(select(Run).where(Run.name == "health")).scalars().all()
    # Every write each writer made is there: none was lost.
    assert events.count("cli-toggle") == cli_writes >= 1
    assert events.count("console-toggle") == console_writes >= 1
    assert get_schedule(store, "cli-toggle").paused == (cli_writes % 2 == 1)
    assert health_runs and all(
        r.status in ("succeeded", "skipped", "cancelled") for r in health_runs
    ), [(r.status, r.error) for r in health_runs]
    assert integrity_check(store) == "ok"
    store.close()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 MB tmpfs (needs root and mount rights; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave_kb: int) -> None:
    free_kb = shutil.disk_usage(disk).free // 1024
    with open(disk / "filler", "ab") as fh:
        fh.write(b"\0" * max(free_kb - leave_kb, 0) * 1024)


def test_an_almost_full_disk_fails_jobs_clearly_and_keeps_the_store(template, small_disk):
    workspace = copy_workspace(template, small_disk / "ws", JOBS.format(health="1h").replace(
        "min_free_disk_mb = 0", "min_free_disk_mb = 20"))  # fmt: skip
    _fill(small_disk, leave_kb=5_000)
    refused = cli(workspace, "jobs", "run", "train")
    assert refused.returncode == 1
    assert "not started: only" in refused.stdout and "min_free_disk_mb = 20" in refused.stdout

    # Past the floor (set to 0), the disk fills up for real while the job runs.
    config = workspace.config_path
    config.write_text(config.read_text().replace("min_free_disk_mb = 20", "min_free_disk_mb = 0"))
    _fill(small_disk, leave_kb=50)
    full = cli(workspace, "jobs", "run", "train")
    assert full.returncode != 0
    lines = (full.stdout + full.stderr).strip().splitlines()
    assert "Traceback" not in full.stderr
    assert any("disk" in line and ("full" in line or "free" in line) for line in lines), lines
    # The same training run by hand: what filled the disk is said, with what to do.
    direct = cli(workspace, "run", "train")
    assert direct.returncode == 2 and "Traceback" not in direct.stderr, direct.stderr
    (said,) = direct.stderr.strip().splitlines()[-1:]
    assert "full" in said and "free room" in said, said
    (small_disk / "filler").unlink()
    store = open_store(workspace)
    try:
        assert integrity_check(store) == "ok"
        assert count(store, ModelVersion) == 0  # no half-registered version
        health = cli(workspace, "jobs", "health")
        assert "orphans" in health.stdout
        with store.read() as session:
            stuck = session.execute(select(Run).where(Run.status == "running")).scalars().all()
        assert stuck == []  # whatever was left running is orphaned now
    finally:
        store.close()
