"""Fixtures for the console's tests: a real workspace and store, seeded with fixed content."""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import DataTable
from textual.worker import WorkerState

from mldeck.data.expectations import DataSettings
from mldeck.data.infer import append_to_config, expectations_toml
from mldeck.data.ingest import ingest_file
from mldeck.data.readers import open_source
from mldeck.data.validate import reference_profile
from mldeck.demo import generate_batch, write_batch
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alias,
    Artifact,
    DatasetVersion,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    RunLog,
)
from mldeck.tui.app import MldeckApp
from mldeck.workspace import Workspace, init_workspace, load_workspace, open_workspace_store

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
def fixed_seeded(tmp_path: Path) -> tuple[Workspace, Store]:
    """Like ``seeded``, with the WAL checkpointed so the store's size on screen never varies."""
    workspace = init_workspace(tmp_path / "ws", name="snapshot-demo")
    store = open_workspace_store(workspace)
    seed(store)
    store.close()  # checkpoint the WAL so the file size on screen is always the same
    store = open_workspace_store(workspace)
    yield workspace, store
    store.close()


DATA_T0 = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
# (file, scenario, seed, rows) of the batches seed_data ingests after the reference, in order.
DATA_BATCHES = (
    ("week_10.csv", "none", 2, 400),
    ("week_11.csv", "warned", 3, 400),
    ("week_12_corrupted.csv", "corrupted", 4, 400),
)


def demo_file(folder: Path, name: str, *, scenario: str = "none", seed: int, rows: int) -> Path:
    """A demo churn batch written as CSV; scenario "warned": one monthly charge far too high (a
    check that only warns), any other: the generator's scenario."""
    start = datetime(2026, 1, 5) + timedelta(days=7 * seed)
    frame = generate_batch(
        rows,
        start=start,
        scenario="none" if scenario == "warned" else scenario,
        seed=seed,
        id_offset=10_000 * seed,
    )
    if scenario == "warned":
        frame = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == 7)
            .then(pl.lit(25_000.0))
            .otherwise(pl.col("monthly_charges"))
            .alias("monthly_charges")
        )
    return write_batch(frame, folder / name)


def seed_data(workspace: Workspace, store: Store) -> Workspace:
    """Dataset versions made by the real ingest path: expectations inferred from a reference
    (as 'mldeck data infer --write' does), the reference, then DATA_BATCHES: accepted, warned and
    rejected. Arrival times are then pinned to DATA_T0 + 1h per version so screens are
    deterministic. Returns the workspace reloaded with its [data] settings."""
    folder = workspace.root / "files"
    reference = demo_file(folder, "reference.csv", seed=1, rows=2000)
    profiled = reference_profile(open_source(reference), DataSettings(table={"unique_ids": False}))
    text = expectations_toml(profiled, dataset="churn", reference="files/reference.csv")
    append_to_config(workspace.config_path, text)
    workspace = load_workspace(workspace.root)
    ingest_file(workspace, store, reference, as_reference=True)
    for name, scenario, seed_, rows in DATA_BATCHES:
        ingest_file(
            workspace, store, demo_file(folder, name, scenario=scenario, seed=seed_, rows=rows)
        )
    pin_arrivals(store)
    return workspace


def pin_arrivals(store: Store) -> None:
    """Every dataset version arrived at DATA_T0 + (id - 1) hours (real ingests arrive "now")."""
    with store.write() as session:
        for version in session.execute(select(DatasetVersion)).scalars():
            version.arrived_at = DATA_T0 + timedelta(hours=version.id - 1)
            session.add(version)


@pytest.fixture(scope="session")
def data_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seed_data workspace per test process (validating takes seconds); tests get copies."""
    root = tmp_path_factory.mktemp("data-template") / "ws"
    workspace = init_workspace(root, name="snapshot-demo")
    store = open_workspace_store(workspace)
    seed_data(workspace, store)
    store.close()  # checkpoint the WAL: the folder can be copied as it is
    return root


@pytest.fixture
def data_seeded(data_template: Path, tmp_path: Path) -> tuple[Workspace, Store]:
    """A workspace with four dataset versions (reference, accepted, warned, rejected)."""
    root = shutil.copytree(data_template, tmp_path / "ws")
    workspace = load_workspace(root)
    store = open_workspace_store(workspace)
    yield workspace, store
    store.close()


def make_app(workspace: Workspace, store: Store, **kwargs) -> MldeckApp:
    """The console on a seeded store; it watches data/incoming/ only when a test asks."""
    kwargs.setdefault("watch_incoming", False)
    return MldeckApp(workspace, store, poll_seconds=0.2, **kwargs)


async def settle(pilot: Pilot) -> None:
    """Wait until no worker is pending or running and the screen has caught up, tables
    included: a DataTable measures its columns only when its message queue runs idle, so a
    screenshot taken before that shows the widths of the headers alone (pinned textual: its
    own flags for the pending work)."""
    busy = (WorkerState.PENDING, WorkerState.RUNNING)

    def measured() -> bool:
        return not any(
            table._require_update_dimensions or table._updated_cells
            for table in pilot.app.screen.query(DataTable)
        )

    for _ in range(2):
        await until(pilot, lambda: not any(w.state in busy for w in pilot.app.workers))
        await until(pilot, measured)
        await pilot.pause()


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for *condition* (checked between frames); fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        await pilot.pause(0.05)


AsyncCheck = Callable[[Pilot], Awaitable[None]]


def screen_lines(app, selector: str) -> list[str]:
    """The lines a widget shows on the screen now, as text."""
    widget = app.screen.query_one(selector)
    region = widget.region
    strips = app.screen._compositor.render_strips()
    return [strips[y].crop(region.x, region.right).text.rstrip()
            for y in range(region.y, region.bottom)]  # fmt: skip
