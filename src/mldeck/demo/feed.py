"""Demo time, fast-forwarded: a new week of churn data dropped into ``data/incoming/`` every few
seconds, following a storyline, so a class watches the loop run on its own (ingest, validate,
score, drift, alerts, retraining) instead of copying files by hand.

Week *n* is a batch of the week that follows the sample data by *n* weeks; its content depends
only on *n* (seeded), so the same week is the same bytes, and a feed started again goes on after
the last week the workspace has seen (a week already ingested would only be a duplicate).
Each file is written under a hidden name and renamed into place: the watcher never takes a
half-written week.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from mldeck.errors import MldeckError
from mldeck.store.engine import Store
from mldeck.store.models import DatasetVersion
from mldeck.workspace import Workspace

# The storyline, week after week (then again from the start): what a class should see happen.
STORY: tuple[tuple[str, str], ...] = (
    ("normal", "none"),  # quiet
    ("covariate shift", "covariate_shift"),  # drift flagged on the shifted features
    ("normal", "none"),
    ("concept drift", "concept_drift"),  # estimated, then realized, performance falls
    ("corrupted", "corrupted"),  # rejected by validation, quarantined with its reasons
    ("prior shift", "prior_shift"),  # more churners: the label drifts
)
ROWS = 3000
MIN_EVERY_SECONDS = 2.0
_SAMPLE_WEEKS = 6  # the sample data's batches: the feed's weeks come after them
_WEEK_NAME = re.compile(r"week_(\d+)_")


@dataclass(frozen=True)
class Week:
    number: int
    story: str
    scenario: str

    @property
    def file_name(self) -> str:
        named = "normal" if self.scenario == "none" else self.scenario
        return f"week_{self.number:02d}_{named}.csv"


def check_demo_workspace(workspace: Workspace) -> None:
    """Refuse a workspace the demo did not make: the feed would pour churn data into it."""
    data = workspace.settings.data
    reference = workspace.data_dir / "samples" / "reference.parquet"
    if data.dataset != "churn" or not reference.is_file() or "customer_id" not in data.columns:
        raise MldeckError(
            f"{workspace.root} is not a demo workspace (made by 'mldeck demo' or 'mldeck init "
            "--demo'): --feed would drop the demo's churn data into it"
        )


def week(number: int) -> Week:
    """Week *number* (from 1) of the storyline."""
    story, scenario = STORY[(number - 1) % len(STORY)]
    return Week(number, story, scenario)


def next_week(store: Store, incoming: Path | None = None) -> int:
    """The first week the workspace has not ingested (1 on a new demo), nor holds in *incoming*
    waiting to be (a feed started again right after a console was stopped dropped that week a
    second time)."""
    with store.read() as session:
        sources = session.execute(select(DatasetVersion.source_path)).scalars().all()
    names = [Path(s).name for s in sources]
    if incoming is not None and incoming.is_dir():
        names += [p.name for p in incoming.iterdir()]
    seen = [int(m.group(1)) for name in names if (m := _WEEK_NAME.match(name))]
    return max(seen, default=0) + 1


def write_week(workspace: Workspace, number: int, *, rows: int = ROWS, seed: int = 7) -> Path:
    """Generate week *number* and write it into ``data/incoming/`` (atomically)."""
    from mldeck.demo.generator import REFERENCE_START, generate_batch, write_batch

    w = week(number)
    start = REFERENCE_START + timedelta(days=28) + timedelta(weeks=_SAMPLE_WEEKS + number - 1)
    batch = generate_batch(rows, start=start, days=7, scenario=w.scenario, seed=seed * 1000 + number,
                           id_offset=1_000_000 + number * 10 * rows)  # fmt: skip
    workspace.incoming_dir.mkdir(parents=True, exist_ok=True)
    return write_batch(batch, workspace.incoming_dir / w.file_name)


class DemoFeed:
    """Drops the next week into ``data/incoming/`` every *every* seconds, in a thread, until
    stopped (or after *weeks* weeks)."""

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        every: float,
        *,
        weeks: int | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if every < MIN_EVERY_SECONDS:
            raise ValueError(f"a demo week lasts at least {MIN_EVERY_SECONDS:g} s, not {every:g}")
        self.workspace, self.store, self.every, self.weeks = workspace, store, every, weeks
        self.on_event = on_event or (lambda _message: None)
        self.dropped: list[Path] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mldeck-demo-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        number = next_week(self.store, self.workspace.incoming_dir)
        self.on_event(f"demo: a new week every {self.every:g} s, from week {number}")
        while not self._stop.wait(self.every):
            if self.weeks is not None and len(self.dropped) >= self.weeks:
                return
            try:
                path = write_week(self.workspace, number)
            except Exception as exc:  # a full disk, a removed folder: said, and tried next time
                self.on_event(f"demo: week {number} could not be written: {exc}")
                continue
            self.dropped.append(path)
            self.on_event(f"demo: week {number} ({week(number).story}) dropped into "
                          f"data/incoming/{path.name}")  # fmt: skip
            number += 1
