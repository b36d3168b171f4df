"""Shared fixtures: a fresh workspace and store per test, and a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mldeck import tracking
from mldeck.store.engine import Store
from mldeck.workspace import (
    ENV_DB_URL,
    ENV_WORKSPACE,
    Workspace,
    init_workspace,
    open_workspace_store,
)

ENV_VARS = (ENV_WORKSPACE, ENV_DB_URL)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's MLDECK_WORKSPACE or MLDECK_DB_URL."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def close_tracking_stores() -> Iterator[None]:
    """Close the stores the tracking API opened, so no engine outlives its test's folder."""
    yield
    with tracking._stores_lock:
        for _, store, _ in tracking._stores.values():
            store.close()
        tracking._stores.clear()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A freshly initialised workspace (config, state folder, incoming folder)."""
    return init_workspace(tmp_path / "ws", name="test-project")


@pytest.fixture
def store(workspace: Workspace) -> Iterator[Store]:
    """The workspace's store, created on first open."""
    opened = open_workspace_store(workspace)
    yield opened
    opened.close()


def _file_state(path: Path) -> tuple[bytes, int]:
    """The bytes and modification time of *path*: equal before and after means untouched."""
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture(scope="session")
def file_state() -> Callable[[Path], tuple[bytes, int]]:
    """A file's bytes and modification time, to show that something left it untouched."""
    return _file_state


def clean_environ() -> dict[str, str]:
    """The current environment without the variables that would pick a workspace."""
    return {k: v for k, v in os.environ.items() if k not in ENV_VARS}


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process (*env* adds to a clean environment)."""
    return subprocess.run(
        [sys.executable, "-m", "mldeck.cli", *args],
        cwd=cwd,
        env={**clean_environ(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def run_python_file(script: Path, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a user's Python script in a child process with a clean environment."""
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def run_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_python_file


def at_once(target: Callable[..., None], argsets: list[tuple], timeout: float = 120) -> list:
    """Run *target* in one spawned process per argument tuple, each called with
    ``(*args, barrier, results)``: they wait at the barrier so they start together, and each
    puts what it found on *results*. Returns what they put, in arrival order, once all ended
    well."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(argsets))
    results = ctx.Queue()
    workers = [ctx.Process(target=target, args=(*args, barrier, results)) for args in argsets]
    for proc in workers:
        proc.start()
    found = [results.get(timeout=timeout) for _ in workers]
    for proc in workers:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    return found
