"""What the console's Jobs and Pipeline screens (and the Overview's health line) read: small
dataclasses from store queries, no Textual."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from mldeck.jobs.health import LatestCheck, latest_checks
from mldeck.jobs.lease import LeaseInfo, holder
from mldeck.jobs.policies import awaiting
from mldeck.jobs.schedules import list_schedules, next_fire_time, state, timing
from mldeck.jobs.settings import JobSettings
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alias,
    AuditEvent,
    Dataset,
    DatasetVersion,
    ModelVersion,
    RegisteredModel,
    Run,
    RunInput,
    RunStatus,
    RunTrigger,
    utcnow,
)


@dataclass(frozen=True)
class JobRow:
    name: str
    kind: str
    timing: str
    state: str
    next_fire_at: datetime | None
    last_run_id: int | None
    last_run_at: datetime | None
    last_status: str
    timeout_seconds: int
    retries: int
    source: str = "config"  # "config": an entry of mldeck.toml; "cli": 'mldeck jobs add'


@dataclass
class JobsView:
    rows: list[JobRow]
    scheduler: LeaseInfo | None


def jobs_view(
    store: Store, settings: JobSettings, fire_times: dict[str, datetime | None] | None = None
) -> JobsView:
    """The schedules with their next fire time (*fire_times* from the acting scheduler when it
    runs in this process, else computed from the schedule) and the lease holder."""
    rows = []
    for s in list_schedules(store):
        nxt = (fire_times or {}).get(s.name)
        if state(s) != "active":
            nxt = None  # the scheduler follows a pause within a second or two; the table rules
        elif nxt is None:
            nxt = next_fire_time(s)
        rows.append(JobRow(s.name, s.kind, timing(s), state(s), nxt, s.last_run_id,
                           s.last_run_at, s.last_status, s.timeout_seconds, s.retries,
                           s.source))  # fmt: skip
    return JobsView(rows, holder(store, settings.lease_seconds))


# -- the pipeline ---------------------------------------------------------------------------------
STAGES = ("ingest", "validate", "score", "monitor", "retrain", "evaluate", "register", "promote")
# The run kinds whose newest run is a stage's last run.
STAGE_KINDS = {
    "ingest": ("ingest",),
    "validate": ("validate",),
    "score": ("score",),
    "monitor": ("drift",),
    "retrain": ("retrain",),
    "evaluate": ("train", "evaluate"),
}


@dataclass
class Stage:
    name: str
    status: str = ""  # a run status, rejected or warned (validate: its batch), or for
    # register/promote: candidate, waiting, promoted
    when: datetime | None = None
    duration: timedelta | None = None
    detail: str = ""
    run_id: int | None = None


@dataclass
class PipelineView:
    stages: list[Stage] = field(default_factory=list)
    scheduler: LeaseInfo | None = None
    health: list[LatestCheck] = field(default_factory=list)


def _run_stage(name: str, run: Run | None) -> Stage:
    if run is None:
        return Stage(name, detail="never ran")
    start = run.started_at or run.created_at
    end = run.ended_at or (utcnow() if run.status == RunStatus.RUNNING else None)
    detail = run.name
    if run.status == RunStatus.RUNNING and run.progress is not None:
        detail = f"{run.progress:.0%} {run.progress_message}".strip()
    elif run.error:
        detail = run.error.strip().splitlines()[-1] if run.error.strip() else run.name
        if run.status == RunStatus.SKIPPED:  # the status says it already
            detail = detail.removeprefix("skipped: ")
    return Stage(name, run.status, start, None if end is None else end - start, detail, run.id)


def _judged(session: Any, stage: Stage, run: Run) -> Stage:
    """A validate run that succeeded as the verdict on its batch: a rejected batch showed as
    'succeeded', in green, beside the Data screen's 'rejected'."""
    version = session.execute(
        select(DatasetVersion, Dataset.name)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .outerjoin(RunInput, (RunInput.dataset_version_id == DatasetVersion.id)
                   & (RunInput.run_id == run.id))
        .where((DatasetVersion.run_id == run.id) | (RunInput.run_id == run.id))
        .limit(1)
    ).first()  # fmt: skip
    if version is None or version[0].status not in ("rejected", "warned"):
        return stage
    row, dataset = version
    return dataclasses.replace(stage, status=row.status,
                               detail=f"{dataset}:v{row.version} {row.status}: {stage.detail}")  # fmt: skip


def pipeline_view(store: Store, settings: JobSettings) -> PipelineView:
    """Each stage's last run, status and duration; the newest version and the last promotion."""
    view = PipelineView()
    with store.read() as session:
        for name in STAGES[:6]:
            run = session.execute(
                # A person's own script (the tracking API) is not a step of the pipeline.
                select(Run)
                .where(Run.kind.in_(STAGE_KINDS[name]), Run.trigger != RunTrigger.SCRIPT)
                .order_by(Run.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if name == "score" and run is None:
                # The pipeline skips scoring until there is a model to score with.
                champion = select(Alias.id).where(Alias.name == "champion").limit(1)
                if session.execute(champion).first() is None:
                    view.stages.append(Stage(name, detail="no champion yet"))
                    continue
            stage = _run_stage(name, run)
            if name == "validate" and run is not None and run.status == RunStatus.SUCCEEDED:
                stage = _judged(session, stage, run)
            view.stages.append(stage)
        newest = session.execute(
            select(ModelVersion, RegisteredModel.name)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
        if newest is None:
            view.stages.append(Stage("register", detail="no model version"))
        else:
            version, model = newest
            view.stages.append(Stage("register", version.status, version.created_at, None,
                                     f"{model}:{version.version}", version.run_id))  # fmt: skip
        # The champion's last change: a promotion or a rollback (a challenger's is not one).
        changes = session.execute(
            select(AuditEvent)
            .where(AuditEvent.action.in_(("model_version.promote", "model_version.rollback")))
            .order_by(AuditEvent.id.desc())
            .limit(50)
        ).scalars()
        promoted = next(
            (e for e in changes if (e.details or {}).get("alias") in (None, "champion")), None
        )
        waiting = awaiting(session)
        waiting_labels = []
        for entity_id in waiting[:2]:
            row = session.execute(
                select(ModelVersion.version, RegisteredModel.name)
                .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
                .where(ModelVersion.id == int(entity_id))
            ).first()
            if row is not None:
                waiting_labels.append(f"{row.name}:{row.version}")
    if waiting_labels:
        view.stages.append(Stage("promote", "waiting", None, None,
                                 f"{', '.join(waiting_labels)} awaits approval"))  # fmt: skip
    elif promoted is not None:
        d = promoted.details
        how = " (rollback)" if promoted.action == "model_version.rollback" else ""
        view.stages.append(Stage("promote", "promoted", promoted.ts, None,
                                 f"{d.get('model', '?')}:{d.get('version', '?')} champion{how}"))  # fmt: skip
    else:
        view.stages.append(Stage("promote", detail="nothing promoted"))
    view.scheduler = holder(store, settings.lease_seconds)
    view.health = latest_checks(store)
    return view


def health_summary(store: Store) -> tuple[str, str]:
    """(worst status, one line) of the latest health checks, for the Overview."""
    checks = latest_checks(store)
    if not checks:
        return "", "no health check yet"
    bad = [c for c in checks if c.status != "ok"]
    worst = "fail" if any(c.status == "fail" for c in bad) else "warn" if bad else "ok"
    when = max(c.created_at for c in checks)
    if not bad:
        return worst, f"{len(checks)} ok at {when:%H:%M}"
    return worst, "; ".join(f"{c.name} {c.status}" for c in bad) + f" at {when:%H:%M}"


def count_running(store: Store) -> int:
    with store.read() as session:
        return session.execute(
            select(func.count()).select_from(Run).where(Run.status == RunStatus.RUNNING)
        ).scalar_one()
