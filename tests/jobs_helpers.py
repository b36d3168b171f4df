"""Helpers of the orchestration tests: demo workspaces with fast schedules, waiting on the store,
a training entry point that can be made slow, and daemons started as real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mldeck.store.engine import Store
from mldeck.workspace import Workspace, load_workspace, open_workspace_store

# Bounds on waiting for something another process does: generous, so a slow machine only makes
# a test slower; no assertion is about how long anything took.
WAIT_SECONDS = 120

SLOW_FIT = '''
"""A training entry point that is slow while slow.marker exists: on import it starts a child
process and notes both pids, then its fit sleeps."""
import os, subprocess, sys, time
from pathlib import Path

from sklearn.dummy import DummyClassifier

HERE = Path(__file__).parent
SLOW = (HERE / "slow.marker").exists()
if SLOW:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    (HERE / "child.pid").write_text(str(child.pid))
    (HERE / "fitting.pid").write_text(str(os.getpid()))


def build(frame, target, seed):
    if SLOW:
        time.sleep(300)
    if (HERE / "linger.marker").exists():  # a library's thread left running (not a daemon)
        import threading

        threading.Thread(target=time.sleep, args=(300,), name="lingering").start()
    if (HERE / "crash.marker").exists():
        raise SystemExit("crash.marker says crash")
    # numpy, not pandas: the suite runs without pandas and pyarrow installed.
    return DummyClassifier(strategy="prior").fit(frame.drop(target).to_numpy(),
                                                  frame[target].to_numpy())
'''


def make_template(root: Path) -> Path:
    """A demo workspace (no baseline run) whose model trains through slowfit:build."""
    from mldeck.demo.workspace import create_demo_workspace

    create_demo_workspace(root, echo=lambda _: None, train=False)
    config = root / "mldeck.toml"
    text = config.read_text().replace(
        "params = {max_iter = 100}\n", 'entry_point = "slowfit:build"\n'
    )
    # The tests set [jobs] themselves (the demo's own table holds its retrain cool-down).
    jobs = text.index("\n[jobs]\n")
    text = text[:jobs] + text[jobs:].replace("[jobs]\nretrain_cooldown_minutes = 2\n", "", 1)
    config.write_text(text)
    (root / "slowfit.py").write_text(SLOW_FIT)
    return root


def copy_workspace(template: Path, target: Path, jobs_toml: str = "") -> Workspace:
    shutil.copytree(template, target)
    if jobs_toml:
        with open(target / "mldeck.toml", "a", encoding="utf-8") as fh:
            fh.write("\n" + jobs_toml)
    return load_workspace(target)


def wait_for(check: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    """Poll *check* until it returns something truthy; fail naming *what* after *seconds*."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def count(store: Store, model: Any, *where: Any) -> int:
    with store.read() as session:
        query = select(func.count()).select_from(model)
        for clause in where:
            query = query.where(clause)
        return session.execute(query).scalar_one()


def environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MLDECK_WORKSPACE", "MLDECK_DB_URL")}


def start_daemon(workspace: Workspace, out: Path) -> subprocess.Popen:
    """``mldeck daemon`` as a real process, its output in *out*."""
    handle = open(out, "ab")  # noqa: SIM115 - kept open for the process's life
    return subprocess.Popen(
        [sys.executable, "-m", "mldeck.cli", "--workspace", str(workspace.root), "daemon"],
        stdout=handle, stderr=subprocess.STDOUT, env=environ(), cwd=workspace.root,
    )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli(workspace: Workspace, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mldeck.cli", "--workspace", str(workspace.root), *args],
        capture_output=True, text=True, env=environ(), timeout=timeout, check=False,
    )  # fmt: skip


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def open_store(workspace: Workspace) -> Store:
    return open_workspace_store(workspace)
