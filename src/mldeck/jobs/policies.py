"""Triggers and policies: when the scheduler retrains, promotes or holds back, and why.

* **retrain** when a drift check returns retrain reasons (drift, or an estimated or realized
  metric past its threshold: the monitor's alert rules decide), unless an automatic retrain
  started less than ``[jobs] retrain_cooldown_minutes`` ago (one incident, one retrain);
* after a retrain: a candidate that fails a gate stays a candidate; one that passes is promoted
  at once when ``[gates] auto_approve`` allows it (an automatic approval is recorded), otherwise
  it waits for a person's approval;
* **promote on approval**: once a person approves a version that waits after a retrain, the
  scheduler promotes it (``[jobs] promote_on_approval``).

Every decision is an audit event with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from mldeck import audit, tracking
from mldeck.errors import MldeckError
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alias,
    AuditEvent,
    ModelVersion,
    RegisteredModel,
    Run,
    RunTrigger,
    utcnow,
)
from mldeck.workspace import Workspace

ACTOR = "mldeck-scheduler"
AWAITING = "retrain.awaiting_approval"
AUTOMATIC_TRIGGERS = ("drift", "performance")
# A waiting version older than the champion: approving it does not make it the champion.
SUPERSEDED = "retrain.superseded"
REFUSED = "retrain.promotion_refused"
SETTLED = ("model_version.promote", "model_version.reject", "model_version.archive", SUPERSEDED)


def settles(action: str, details: dict[str, Any] | None) -> bool:
    """Whether an audit event of a waiting version settles its wait: a rejection, an archive,
    being superseded, or a promotion to champion (made the challenger, it still waits: that
    promotion cancelled the promotion on approval without a word)."""
    if action == "model_version.promote":
        return (details or {}).get("alias", "champion") == "champion"
    return action in SETTLED


def promoted_once_approved(
    promote_on_approval: bool, actions: set[str], aliases: list[str] | tuple[str, ...]
) -> bool:
    """Whether approving a version (its audit history's *actions*: those that ``settles`` and
    AWAITING, its *aliases*) makes the scheduler promote it: it waits for approval after an
    automatic retrain, nothing settled it, it is not the champion, and ``[jobs]
    promote_on_approval`` (see ``promote_approved``)."""
    return (
        promote_on_approval
        and AWAITING in actions
        and not actions.intersection(SETTLED)
        and "champion" not in aliases
    )


def history_actions(history: Any) -> set[str]:
    """The actions of a version's audit *history* (rows with ``action`` and ``details``) that
    count for ``promoted_once_approved``: a promotion to challenger is left out."""
    return {e.action for e in history
            if e.action == AWAITING or settles(e.action, e.details)}  # fmt: skip


def record(store: Store, action: str, reason: str, *, entity_type: str = "",
           entity_id: str | int = "", **details: Any) -> None:  # fmt: skip
    """An automatic decision in the audit trail, with its reason."""
    with store.write() as session:
        audit.append(session, action, entity_type=entity_type, entity_id=entity_id,
                     details={"reason": reason, **details}, actor=ACTOR)  # fmt: skip


def actor_of(trigger: str) -> str | None:
    """Who a job's changes are by in the audit trail: the scheduler when it started the job on
    its own (a schedule, new data, drift), the user (None) when a person ran it."""
    return None if trigger == RunTrigger.MANUAL else ACTOR


def _config_changed(workspace: Workspace) -> datetime:
    """When mldeck.toml last changed (the epoch when it cannot be read)."""
    try:
        return datetime.fromtimestamp(workspace.config_path.stat().st_mtime, UTC)
    except OSError:
        return datetime.fromtimestamp(0, UTC)


def cooldown_left(workspace: Workspace, store: Store) -> tuple[float, int | None]:
    """Seconds of retrain cool-down left (0 when a retrain may start) and the run that set it."""
    minutes = workspace.settings.jobs.retrain_cooldown_minutes
    if minutes <= 0:
        return 0.0, None
    since = utcnow() - timedelta(minutes=minutes)
    with store.read() as session:
        last = session.execute(
            select(Run)
            .where(
                Run.kind == "retrain",
                Run.trigger.in_(AUTOMATIC_TRIGGERS),
                # A retrain skipped, or interrupted before it ended (the scheduler stopped, its
                # process died), retrained nothing: it holds the next one back no more.
                Run.status.notin_(("skipped", "cancelled", "orphaned")),
                # A failed one holds it back (no retry storm on every batch of a broken
                # setting) until mldeck.toml changes: the fix then gets its retrain at once.
                or_(Run.status != "failed", Run.created_at >= _config_changed(workspace)),
                Run.created_at >= since,
            )
            .order_by(Run.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()
    if last is None:
        return 0.0, None
    left = (last.created_at + timedelta(minutes=minutes) - utcnow()).total_seconds()
    return max(left, 0.0), last.id


def retrain_and_decide(
    workspace: Workspace, store: Store, run: tracking.ActiveRun, params: dict[str, Any]
) -> dict[str, Any]:
    """Retrain (in the job's worker), then promote or wait for approval per the policy."""
    from mldeck.ml.registry import auto_approve_policy, promote
    from mldeck.ml.train import train

    reasons = [str(r) for r in params.get("reasons") or []]
    trigger = str(params.get("trigger") or "schedule")
    why = "; ".join(reasons) or f"{trigger} retrain"
    result = train(workspace, store, trigger=trigger, progress=run.log, actor=actor_of(trigger))
    ref = f"{result.model}:{result.version}"
    outcome: dict[str, Any] = {"model": ref, "train_run_id": result.run_id, "reasons": reasons,
                               "gates_passed": result.gates_passed}  # fmt: skip
    if not result.gates_passed:
        failed = [g.gate for g in result.gates if not g.passed]
        record(store, "retrain.held_by_gates", f"{ref} failed {', '.join(failed)}",
               entity_type="model_version", entity_id=result.model_version_id,
               retrain_reasons=reasons)  # fmt: skip
        run.log(f"{ref} failed the gates ({', '.join(failed)}): it stays a candidate")
        outcome["decision"] = "held by gates"
        return outcome
    if auto_approve_policy(workspace.settings):
        change = promote(store, ref, reason=f"automatic after a retrain: {why}",
                         auto_approve=True, user=ACTOR, root=workspace.root)  # fmt: skip
        run.log(change.describe())
        outcome["decision"] = "promoted automatically ([gates] auto_approve)"
        return outcome
    record(store, AWAITING, f"retrained because {why}; [gates] auto_approve is off",
           entity_type="model_version", entity_id=result.model_version_id, model=ref,
           run_id=run.id)  # fmt: skip
    run.log(
        f"{ref} passed the gates and waits for approval "
        f"('mldeck models approve {ref} --reason TEXT')"
    )
    outcome["decision"] = "waiting for approval"
    return outcome


@dataclass(frozen=True)
class Promotion:
    ref: str
    message: str
    refused: bool = False  # the promotion was refused (said once, until its reason changes)


def awaiting(session: Any) -> list[str]:
    """The model versions (audit entity ids, in the order they began to wait) that wait for
    approval after an automatic retrain: not promoted, rejected or archived since."""
    waiting = list(dict.fromkeys(session.execute(
        select(AuditEvent.entity_id).where(AuditEvent.action == AWAITING).order_by(AuditEvent.id)
    ).scalars()))  # fmt: skip
    if not waiting:
        return []
    settled = {entity_id for entity_id, action, details in session.execute(
        select(AuditEvent.entity_id, AuditEvent.action, AuditEvent.details).where(
            AuditEvent.action.in_(SETTLED), AuditEvent.entity_type == "model_version",
            AuditEvent.entity_id.in_(waiting))
    ).all() if settles(action, details)}  # fmt: skip
    return [entity_id for entity_id in waiting if entity_id not in settled]


def promote_approved(workspace: Workspace, store: Store) -> list[Promotion]:
    """Promote the versions that waited for approval after a retrain and are now approved."""
    from mldeck.ml.registry import CHAMPION, label, promote

    if not workspace.settings.jobs.promote_on_approval:
        return []
    superseded: list[tuple[str, str, int]] = []
    with store.read() as session:
        todo = []
        for entity_id in awaiting(session):
            version = session.get(ModelVersion, int(entity_id))
            if version is None or version.status != "approved":
                continue
            champion = session.execute(
                select(Alias).where(Alias.model_id == version.model_id, Alias.name == CHAMPION)
            ).scalar_one_or_none()
            if champion is not None and champion.model_version_id == version.id:
                continue
            model = session.get(RegisteredModel, version.model_id)
            serving = None if champion is None else session.get(ModelVersion,
                                                                 champion.model_version_id)  # fmt: skip
            if serving is not None and serving.version > version.version:
                # A later retrain's version serves already: promoting this one on approval
                # would put an older model back in its place, in silence.
                superseded.append((label(model, version), f"is older than the champion "
                                   f"{label(model, serving)}", version.id))  # fmt: skip
                continue
            by_hand = _champion_changed_since_approval(session, model, version.id)
            if by_hand:
                # Approved, then the champion changed by hand (a rollback, say) before the
                # scheduler acted: the later decision stands.
                superseded.append((label(model, version), by_hand, version.id))
                continue
            todo.append((label(model, version), version.id))
    for ref, why, version_id in superseded:
        record(store, SUPERSEDED, f"{ref} {why}: approving it does not promote it (promote it "
               "by hand to serve it)", entity_type="model_version", entity_id=version_id)  # fmt: skip
    done = []
    for ref, version_id in todo:
        try:
            change = promote(store, ref, reason="approved after an automatic retrain "
                             "([jobs] promote_on_approval)", user=ACTOR,
                             root=workspace.root)  # fmt: skip
        except MldeckError as exc:
            # Said once: each record changed the store, which woke the scheduler to try again,
            # a new event every second for as long as the cause (a missing file) lasted.
            if _last_refusal(store, version_id) != str(exc):
                record(store, REFUSED, str(exc), entity_type="model_version",
                       entity_id=version_id)  # fmt: skip
                done.append(Promotion(ref, str(exc), refused=True))
            continue
        done.append(Promotion(ref, change.describe()))
    return done


def _champion_changed_since_approval(session: Any, model: RegisteredModel, version_id: int) -> str:
    """How *model*'s champion was changed by a person after the version's latest approval (a
    promotion or a rollback; empty when it was not)."""
    approved = session.execute(
        select(AuditEvent.id)
        .where(AuditEvent.action == "model_version.approve",
               AuditEvent.entity_type == "model_version",
               AuditEvent.entity_id == str(version_id))
        .order_by(AuditEvent.id.desc()).limit(1)
    ).scalar()  # fmt: skip
    if approved is None:
        return ""
    changes = session.execute(
        select(AuditEvent)
        .where(AuditEvent.id > approved, AuditEvent.actor != ACTOR,
               AuditEvent.action.in_(("model_version.promote", "model_version.rollback")))
        .order_by(AuditEvent.id)
    ).scalars()  # fmt: skip
    for event in changes:
        details = event.details if isinstance(event.details, dict) else {}
        if details.get("model") == model.name and details.get("alias", "champion") == "champion":
            what = event.action.removeprefix("model_version.")
            return (
                f"was approved before {event.actor} changed the champion by hand ({what} "
                f"to {model.name}:{details.get('version', '?')}, event {event.id})"
            )
    return ""


def _last_refusal(store: Store, version_id: int) -> str | None:
    """The reason of the version's latest audit event if that event is a refused promotion."""
    with store.read() as session:
        last = session.execute(
            select(AuditEvent.action, AuditEvent.details)
            .where(AuditEvent.entity_type == "model_version",
                   AuditEvent.entity_id == str(version_id))
            .order_by(AuditEvent.id.desc()).limit(1)
        ).first()  # fmt: skip
    if last is None or last.action != REFUSED or not isinstance(last.details, dict):
        return None
    return last.details.get("reason")
