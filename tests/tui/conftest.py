"""Fixtures for the console's tests: a real workspace and store, seeded with fixed content."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerState

from mldeck.store.engine import Store
from mldeck.store.models import (
    Alias,
    Artifact,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    RunLog,
)
from mldeck.tui.app import MldeckApp
from mldeck.workspace import Workspace, init_workspace, open_workspace_store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 41, in <module>
    model.fit(x, y)
ValueError: Input X contains NaN."""


def seed(store: Store) -> None:
    """Eight runs of every kind and outcome, one model with a champion; all times fixed."""
    specs = [
        ("ingest-week-09", "ingest", "new_data", "succeeded", 0, 4),
        ("validate-week-09", "validate", "new_data", "succeeded", 5, 9),
        ("train-gbm", "train", "manual", "succeeded", 30, 312),
        ("train-gbm", "train", "schedule", "failed", 400, 431),
        ("score-week-09", "score", "new_data", "succeeded", 500, 503),
        ("drift-check", "drift", "schedule", "succeeded", 600, 611),
        ("health", "health", "schedule", "orphaned", 700, None),
        ("notebook-experiment", "custom", "script", "cancelled", 800, 860),
    ]
    with store.write() as session:
        for name, kind, trigger, status, start, end in specs:
            started = T0 + timedelta(seconds=start)
            session.add(
                Run(
                    name=name,
                    kind=kind,
                    trigger=trigger,
                    status=status,
                    created_at=started,
                    started_at=started,
                    ended_at=None if end is None else T0 + timedelta(seconds=end),
                    heartbeat_at=started,
                    progress=1.0 if status == "succeeded" else 0.4,
                    params={"learning_rate": 0.05, "max_depth": 6} if kind == "train" else {},
                    tags={"team": "growth"} if kind == "train" else {},
                    error=TRACEBACK if status == "failed" else None,
                    user="ana",
                    host="ml-box",
                    code_version={"git_commit": "3f2a9c1d4e5b6a7980112233445566778899aabb"},
                    environment={"python": "3.11.7", "packages": {"scikit-learn": "1.9.1"}},
                )
            )
        session.flush()
        for step in range(40):
            session.add(Metric(run_id=3, key="val_auc", value=0.7 + step * 0.004, step=step, ts=T0))
            session.add(Metric(run_id=3, key="loss", value=0.6 - step * 0.01, step=step, ts=T0))
        for line in range(30):
            stamp = T0 + timedelta(seconds=30 + line)
            session.add(RunLog(run_id=3, ts=stamp, message=f"boosting round {line * 10}"))
        session.add(
            RunLog(run_id=4, ts=T0, level="error", message="ValueError: Input X contains NaN.")
        )
        session.add(
            Artifact(run_id=3, name="model.skops", path=".mldeck/artifacts/ab/" + "ab" * 32,
                     sha256="ab" * 32, size_bytes=48213, created_at=T0)
        )  # fmt: skip
        model = RegisteredModel(name="churn", created_at=T0)
        session.add(model)
        session.flush()
        version = ModelVersion(model_id=model.id, version=1, run_id=3, created_at=T0)
        session.add(version)
        session.flush()
        session.add(
            Alias(model_id=model.id, name="champion", model_version_id=version.id, updated_at=T0)
        )


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local time is UTC so the times on screen are the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.delenv("MLDECK_WORKSPACE", raising=False)
    monkeypatch.delenv("MLDECK_DB_URL", raising=False)


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Workspace, Store]:
    workspace = init_workspace(tmp_path / "ws", name="snapshot-demo")
    store = open_workspace_store(workspace)
    seed(store)
    yield workspace, store
    store.close()


@pytest.fixture
def fixed_seeded() -> tuple[Workspace, Store]:
    """Like ``seeded`` but at a fixed path, for snapshots (which show the store's size)."""
    root = Path(tempfile.gettempdir()) / "mldeck-snapshot-ws"
    shutil.rmtree(root, ignore_errors=True)
    workspace = init_workspace(root, name="snapshot-demo")
    store = open_workspace_store(workspace)
    seed(store)
    store.close()  # checkpoint the WAL so the file size on screen is always the same
    store = open_workspace_store(workspace)
    yield workspace, store
    store.close()
    shutil.rmtree(root, ignore_errors=True)


def make_app(workspace: Workspace, store: Store, **kwargs) -> MldeckApp:
    return MldeckApp(workspace, store, poll_seconds=0.2, **kwargs)


async def settle(pilot: Pilot) -> None:
    """Wait until no worker is pending or running and the screen has caught up."""
    busy = (WorkerState.PENDING, WorkerState.RUNNING)
    for _ in range(2):
        await until(pilot, lambda: not any(w.state in busy for w in pilot.app.workers))
        await pilot.pause()


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for *condition* (checked between frames); fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        await pilot.pause(0.05)


AsyncCheck = Callable[[Pilot], Awaitable[None]]
