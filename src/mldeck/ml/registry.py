"""The model registry: versions (with lineage and metrics), aliases, approvals, promotion.

Every change of state is made in one ``BEGIN IMMEDIATE`` transaction together with its audit
event (``mldeck.audit.append``), so the registry and its trail never disagree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from mldeck import audit
from mldeck import formatting as fmt
from mldeck.errors import MldeckError, NotFound
from mldeck.provenance import current_user
from mldeck.store.engine import Store
from mldeck.store.models import (
    Alias,
    Approval,
    Artifact,
    AuditEvent,
    GateResult,
    ModelVersion,
    RegisteredModel,
    fitted_value,
    utcnow,
)
from mldeck.store.queries import as_id

if TYPE_CHECKING:
    from mldeck.workspace import Workspace

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)

# ModelVersion.status values.
CANDIDATE = "candidate"
APPROVED = "approved"
REJECTED = "rejected"
ARCHIVED = "archived"


def register_version(
    session: Session,
    model_name: str,
    *,
    run_id: int | None,
    artifact_id: int | None,
    metrics: dict[str, Any],
    schema: dict[str, Any],
    code_version: dict[str, Any],
    status: str = "candidate",
    actor: str | None = None,
) -> ModelVersion:
    """Add the next version of *model_name* (created on first use), inside the caller's write
    transaction, with its audit event (by *actor*: the scheduler's name when it trained the
    version, else the user)."""
    model = session.execute(
        select(RegisteredModel).where(
            RegisteredModel.name == fitted_value(RegisteredModel, "name", model_name)
        )
    ).scalar_one_or_none()
    if model is None:
        model = RegisteredModel(name=model_name)
        session.add(model)
        session.flush()
        audit.append(session, "model.create", entity_type="model", entity_id=model.id,
                     details={"name": model_name}, actor=actor)  # fmt: skip
    number = (
        session.execute(
            select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
        ).scalar()
        or 0
    ) + 1
    version = ModelVersion(
        model_id=model.id,
        version=number,
        run_id=run_id,
        artifact_id=artifact_id,
        status=status,
        metrics=metrics,
        schema_=schema,
        code_version=code_version,
    )
    session.add(version)
    session.flush()
    audit.append(session, "model_version.register", entity_type="model_version",
                 entity_id=version.id,
                 details={"model": model_name, "version": number, "run_id": run_id},
                 actor=actor)  # fmt: skip
    return version


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``churn@champion`` → (churn, champion, None); ``churn:3`` or ``churn/3`` → (churn, None, 3)."""
    ref = ref.strip()
    if "@" in ref:
        name, _, alias = ref.partition("@")
        if name and alias:
            return name, alias, None
    for sep in (":", "/"):
        name, found, number = ref.rpartition(sep)
        if found and name and (version := as_id(number.removeprefix("v"))) is not None:
            return name, None, version
        if (
            found
            and name
            and number.removeprefix("v").isascii()
            and number.removeprefix("v").isdigit()
        ):
            # Past the largest id: no version of any model (nor a model, maybe) is numbered so.
            raise NotFound(f"no model version {name}:{number.removeprefix('v')} "
                           "(see 'mldeck models list')")  # fmt: skip
    raise MldeckError(
        f"{ref!r} is not a model reference: use NAME@ALIAS (churn@champion) or NAME:VERSION (churn:3)"
    )


def resolve(store: Store, ref: str) -> ModelVersion:
    """The model version *ref* names (``churn@champion``, ``churn:3``)."""
    with store.read() as session:
        return _find(session, ref)[1]


def model_names(store: Store) -> list[str]:
    """The registered models' names, in order."""
    with store.read() as session:
        return list(
            session.execute(select(RegisteredModel.name).order_by(RegisteredModel.name)).scalars()
        )


def _model(session: Session, name: str) -> RegisteredModel:
    model = session.execute(
        # As the name is stored (a NUL as U+FFFD: PostgreSQL refused it in the query itself).
        select(RegisteredModel).where(
            RegisteredModel.name == fitted_value(RegisteredModel, "name", name)
        )
    ).scalar_one_or_none()
    if model is None:
        raise NotFound(f"no registered model {name!r} (see 'mldeck models list')")
    return model


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise MldeckError(f"unknown alias {alias!r} (one of: {', '.join(ALIASES)})")


def _find(session: Session, ref: str) -> tuple[RegisteredModel, ModelVersion]:
    """The registered model and the version *ref* names, read in the caller's session."""
    name, alias, number = parse_ref(ref)
    if alias is not None:
        _check_alias(alias)
    model = _model(session, name)
    if alias is not None:
        version = session.execute(
            select(ModelVersion)
            .join(Alias, Alias.model_version_id == ModelVersion.id)
            .where(Alias.model_id == model.id, Alias.name == alias)
        ).scalar_one_or_none()
        if version is None:
            raise NotFound(f"model {name!r} has no {alias!r} alias yet")
        return model, version
    version = session.execute(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == number
        )
    ).scalar_one_or_none()
    if version is None:
        raise NotFound(f"model {name!r} has no version {number}")
    return model, version


# -- policy, approvals, aliases ----------------------------------------------------------------


def auto_approve_policy(settings: Any) -> bool:
    """``[gates] auto_approve`` of *settings* (False when the setting does not exist)."""
    return bool(getattr(getattr(settings, "gates", None), "auto_approve", False))


def label(model: RegisteredModel | str, version: ModelVersion | int) -> str:
    """``churn:3``: how a version is named in messages (and accepted back as a reference)."""
    name = model if isinstance(model, str) else model.name
    number = version if isinstance(version, int) else version.version
    return f"{name}:{number}"


def schema_digest(schema: dict[str, Any]) -> str:
    """A short, stable fingerprint of a version's data schema (to tell schemas apart at a glance):
    its input, not its model file (two versions that take the same data digest equal)."""
    data = {k: v for k, v in schema.items() if k != "model_file"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class Change:
    """What a state change did; ``describe()`` is the line the CLI prints."""

    action: str
    model: str
    version: int
    model_version_id: int
    alias: str | None = None
    previous_version: int | None = None
    forced: bool = False
    failed_gates: list[str] = field(default_factory=list)
    reason: str = ""
    actor: str = ""
    automatic_approval: bool = False
    removed_aliases: list[str] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)
    code_version: dict[str, Any] = field(default_factory=dict)
    event_ids: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return label(self.model, self.version)

    def describe(self) -> str:
        what = {
            "approve": f"{self.label} approved by {self.actor}",
            "reject": f"{self.label} rejected by {self.actor}",
            "archive": f"{self.label} archived",
        }.get(self.action)
        if what is None:
            was = ("" if self.previous_version is None
                   else f" (was {label(self.model, self.previous_version)})")  # fmt: skip
            if self.action == "rollback":
                what = f"{self.model} rolled back: {self.label} is champion again{was}"
            else:
                what = f"{self.label} is now {self.alias}{was}"
        notes = []
        if self.action == "approve" and self.failed_gates:  # approved is not yet promotable
            notes.append(f"it failed its gates ({', '.join(self.failed_gates)}): it is not "
                         "promoted unless the promotion is forced ('mldeck models promote "
                         f"{self.label} --force --reason TEXT')")  # fmt: skip
        if self.forced:
            notes.append(f"FORCED past failed gates: {', '.join(self.failed_gates)}")
        if self.automatic_approval:
            notes.append("approved automatically by policy ([gates] auto_approve)")
        if self.removed_aliases:
            notes.append(f"no longer {', '.join(self.removed_aliases)}")
        return what + "".join(f"; {note}" for note in notes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "model_version_id": self.model_version_id,
            "alias": self.alias,
            "previous_version": self.previous_version,
            "forced": self.forced,
            "failed_gates": self.failed_gates,
            "reason": self.reason,
            "actor": self.actor,
            "automatic_approval": self.automatic_approval,
            "removed_aliases": self.removed_aliases,
            "schema_digest": schema_digest(self.schema),
            "schema": self.schema,
            "code_version": self.code_version,
            "audit_events": self.event_ids,
        }


def failed_gates(session: Session, model_version_id: int) -> list[str]:
    """The gates *model_version_id* failed, each as ``name (detail)``: the gate's own account of
    the figures (``roc_auc 0.71 < 0.8 (short by 0.09)``), else ``name (metric value vs
    threshold)``. The detail comes first since a threshold is not always a bound on the value:
    max_regression's is the margin allowed below the champion."""
    rows = session.execute(
        select(GateResult)
        .where(GateResult.model_version_id == model_version_id, GateResult.passed.is_(False))
        .order_by(GateResult.id)
    ).scalars()
    named: dict[tuple[str, str | None], str] = {}  # one per gate and metric: min on roc_auc
    for gate in rows:  # and min on f1 are two failures, both said
        if (gate.gate, gate.metric) in named:
            continue
        figures = ""
        if gate.detail:
            figures = f" ({gate.detail})"
        elif gate.metric and gate.value is not None and gate.threshold is not None:
            figures = f" ({gate.metric} {gate.value:.4g} vs {gate.threshold:.4g})"
        named[gate.gate, gate.metric] = f"{gate.gate}{figures}"
    return list(named.values())


def latest_approval(session: Session, model_version_id: int) -> Approval | None:
    return session.execute(
        select(Approval)
        .where(Approval.model_version_id == model_version_id)
        .order_by(Approval.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _aliases(session: Session, model_id: int) -> dict[str, Alias]:
    rows = session.execute(select(Alias).where(Alias.model_id == model_id)).scalars()
    return {alias.name: alias for alias in rows}


def _actor(user: str | None) -> str:
    return user or current_user()


def _event(
    session: Session, action: str, target: ModelVersion, actor: str, /, **details: Any
) -> int:
    event = audit.append(session, action, entity_type="model_version", entity_id=target.id,
                         details=details, actor=actor)  # fmt: skip
    return event.id


def approve(
    store: Store,
    ref: str,
    *,
    reason: str,
    user: str | None = None,
    reject: bool = False,
) -> Change:
    """Record a human decision (who, when, why) on a version: approved, or with *reject*, rejected.

    Approval is what promotion to champion requires (unless ``[gates] auto_approve``). A decision
    may be changed by a later one; the same decision twice in a row is refused.
    """
    reason = reason.strip()
    if not reason:
        raise MldeckError(
            "an approval needs a reason: say why (the note in the console, --reason TEXT in the CLI)"
        )
    decision = REJECTED if reject else APPROVED
    actor = _actor(user)
    with store.write() as session:
        model, version = _find(session, ref)
        name = label(model, version)
        if version.status == ARCHIVED:
            raise MldeckError(f"{name} is archived; an archived version cannot be {decision}")
        last = latest_approval(session, version.id)
        if last is not None and last.decision == decision:
            raise MldeckError(
                f"{name} is already {decision} (by {last.user} on {fmt.when(last.created_at)})"
            )
        champion = _aliases(session, model.id).get(CHAMPION)
        if reject and champion is not None and champion.model_version_id == version.id:
            raise MldeckError(
                f"{name} is the champion and cannot be rejected while it serves; "
                "roll back or promote another version first"
            )
        session.add(Approval(model_version_id=version.id, decision=decision, user=actor,
                             reason=reason))  # fmt: skip
        previous_status = version.status
        version.status = decision
        session.add(version)
        events = [_event(session, f"model_version.{'reject' if reject else 'approve'}", version,
                         actor, model=model.name, version=version.version, decision=decision,
                         reason=reason, previous_status=previous_status)]  # fmt: skip
        removed = []
        challenger = _aliases(session, model.id).get(CHALLENGER)
        if reject and challenger is not None and challenger.model_version_id == version.id:
            # A rejected version is not shadow-scored as the next champion any more.
            session.delete(challenger)
            removed.append(CHALLENGER)
            events.append(_event(session, "alias.remove", version, actor, model=model.name,
                                 version=version.version, alias=CHALLENGER, reason="rejected"))  # fmt: skip
        return Change("reject" if reject else "approve", model.name, version.version, version.id,
                      reason=reason, actor=actor, schema=version.schema_,
                      code_version=version.code_version, event_ids=events,
                      removed_aliases=removed,
                      failed_gates=[] if reject else failed_gates(session, version.id))  # fmt: skip


def _check_can_serve(
    session: Session,
    name: str,
    version: ModelVersion,
    *,
    force: bool,
    auto_approve: bool,
    actor: str,
    action: str,
) -> tuple[list[str], Approval | None]:
    """Refuse a version that may not become champion; return its failed gates (when forced) and
    the automatic approval to record (when the policy allows one). A rejection is said first:
    --force does not override it."""
    if version.status == ARCHIVED:
        raise MldeckError(f"{name} is archived; an archived version cannot serve")
    last = latest_approval(session, version.id)
    if last is not None and last.decision == REJECTED:
        raise MldeckError(
            f"{name} was rejected by {fmt.shown(last.user)} ({fmt.shown(last.reason)}); approve "
            "it again first "
            f"(a on its screen in the console, or 'mldeck models approve {name} --reason TEXT')"
        )
    failed = failed_gates(session, version.id)
    if failed and not force:
        raise MldeckError(
            f"{name} failed its gates: {'; '.join(failed)} (only 'mldeck models {action} {name} "
            "--force --reason TEXT' overrides them)"
        )
    if last is None:
        if auto_approve and failed:  # the policy approves versions that passed their gates only
            raise MldeckError(
                f"{name} is not approved, and [gates] auto_approve approves only versions that "
                f"passed their gates; approve it first ('mldeck models approve {name} --reason "
                "TEXT'), then force it past them"
            )
        if not auto_approve:
            raise MldeckError(
                f"{name} is not approved; approve it first (a on its screen in the console, or 'mldeck models "
                f"approve {name} --reason TEXT'; or set [gates] auto_approve = true)"
            )
        automatic = Approval(model_version_id=version.id, decision=APPROVED, user=actor,
                             reason="approved automatically: [gates] auto_approve = true",
                             automatic=True)  # fmt: skip
        return failed, automatic
    return failed, None


def _check_model_file(
    session: Session, root: Path, name: str, version: ModelVersion, alias: str
) -> None:
    """Refuse a version whose model file is missing or not what was registered: as champion it
    would fail every score (a rollback, the emergency path, said "now serving")."""
    from mldeck.store.artifacts import resolve, verify

    if version.artifact_id is None:  # registered without a file (not by training): unchecked
        return
    artifact = session.get(Artifact, version.artifact_id)
    if artifact is None:
        raise MldeckError(f"{name}'s model file is not recorded; it cannot be the {alias}")
    try:
        verify(resolve(root, artifact.path), artifact.sha256)
    except MldeckError as exc:
        raise MldeckError(f"{name} cannot be the {alias}: {exc}") from None


def _move(
    session: Session,
    action: str,
    model: RegisteredModel,
    version: ModelVersion,
    *,
    alias: str,
    reason: str,
    force: bool,
    auto_approve: bool,
    actor: str,
    root: Path | None = None,
) -> Change:
    """Point *alias* at *version*: every check, the move and its audit events, in the caller's
    write transaction (so two processes promoting at once are serialised, never interleaved).
    With the workspace's *root*, the version's model file must be there, as recorded."""
    name = label(model, version)
    aliases = _aliases(session, model.id)
    current = aliases.get(alias)
    if current is not None and current.model_version_id == version.id:
        raise MldeckError(f"{name} is already the {alias}")
    if root is not None:
        _check_model_file(session, root, name, version, alias)
    failed: list[str] = []
    automatic: Approval | None = None
    if alias == CHAMPION:
        failed, automatic = _check_can_serve(session, name, version, force=force,
                                             auto_approve=auto_approve, actor=actor,
                                             action=action)  # fmt: skip
    else:
        if version.status == ARCHIVED:
            raise MldeckError(f"{name} is archived; an archived version cannot be the {alias}")
        if version.status == REJECTED:  # its rejection took the alias away: not given back
            raise MldeckError(f"{name} was rejected; a rejected version cannot be the {alias} "
                              "(approve it again first: "
                              f"'mldeck models approve {name} --reason TEXT')")  # fmt: skip
        champion = aliases.get(CHAMPION)
        if champion is not None and champion.model_version_id == version.id:
            raise MldeckError(f"{name} is the champion; it cannot also be its own {alias}")
    previous = session.get(ModelVersion, current.model_version_id) if current else None
    event_ids: list[int] = []
    if automatic is not None:
        session.add(automatic)
        previous_status = version.status
        version.status = APPROVED
        session.add(version)
        event_ids.append(_event(session, "model_version.approve", version, actor,
                                model=model.name, version=version.version, decision=APPROVED,
                                reason=automatic.reason, automatic=True,
                                previous_status=previous_status))  # fmt: skip
    removed = []
    if alias == CHAMPION:  # a version is never its own shadow
        challenger = aliases.get(CHALLENGER)
        if challenger is not None and challenger.model_version_id == version.id:
            session.delete(challenger)
            removed.append(CHALLENGER)
            event_ids.append(_event(session, "alias.remove", version, actor, model=model.name,
                                    version=version.version, alias=CHALLENGER,
                                    reason=f"became {CHAMPION}"))  # fmt: skip
    if current is None:
        session.add(Alias(model_id=model.id, name=alias, model_version_id=version.id))
    else:
        current.model_version_id = version.id
        current.updated_at = utcnow()
        session.add(current)
    try:
        session.flush()
    except IntegrityError:  # another process set the alias first (backends without IMMEDIATE)
        session.rollback()
        raise MldeckError(
            f"the {alias} of {model.name!r} was changed by another process at the same time; "
            "look again ('mldeck models list') and retry"
        ) from None
    details: dict[str, Any] = {
        "model": model.name,
        "version": version.version,
        "alias": alias,
        "previous_version": previous.version if previous else None,
        "reason": reason,
        "forced": bool(failed),
    }
    if failed:
        details["failed_gates"] = failed
    if action == "rollback":
        details["schema_digest"] = schema_digest(version.schema_)
        details["code_version"] = version.code_version
    event_ids.append(_event(session, f"model_version.{action}", version, actor, **details))
    return Change(action, model.name, version.version, version.id, alias=alias,
                  previous_version=previous.version if previous else None, forced=bool(failed),
                  failed_gates=failed, reason=reason, actor=actor,
                  automatic_approval=automatic is not None, removed_aliases=removed,
                  schema=version.schema_, code_version=version.code_version,
                  event_ids=event_ids)  # fmt: skip


def promote(
    store: Store,
    ref: str,
    *,
    alias: str = CHAMPION,
    reason: str = "",
    force: bool = False,
    auto_approve: bool = False,
    user: str | None = None,
    root: Path | None = None,
) -> Change:
    """Point *alias* (``champion`` by default) at the version *ref* names (with the workspace's
    *root*, its model file is checked first).

    To become champion a version must not be archived or rejected, must have passed every gate
    (``force`` overrides failed gates; the event records it as forced, with the gates and the
    reason, which is then required) and must be approved, unless *auto_approve* (the
    ``[gates] auto_approve`` policy) records an automatic approval. The ``challenger`` is only
    scored in shadow, so it needs neither. The previous holder keeps its status.
    """
    _check_alias(alias)
    reason = reason.strip()
    actor = _actor(user)
    with store.write() as session:
        model, version = _find(session, ref)
        if force and not reason and failed_gates(session, version.id):
            raise MldeckError("a forced promotion needs a reason: say why (--reason TEXT)")
        return _move(session, "promote", model, version, alias=alias, reason=reason,
                     force=force, auto_approve=auto_approve, actor=actor, root=root)  # fmt: skip


def version_in_name(name: str) -> str | None:
    """How *name* reads as a reference to a version (``churn:v1``, ``churn/2``), or None."""
    for sep in (":", "/"):
        stem, found, tail = name.rpartition(sep)
        number = tail.removeprefix("v")
        if found and stem and number.isascii() and number.isdigit():
            return f"{name} names version {number} of {stem!r}"
    return None


def _registered(session: Session, name: str) -> bool:
    """Whether a model is registered under exactly *name*."""
    found = session.execute(select(RegisteredModel.id).where(RegisteredModel.name == name))
    return found.first() is not None


def check_new_name(store: Store, name: str) -> None:
    """Refuse to start a new registered model whose name reads as a version of another
    ('mldeck models rollback churn:v1' rolled back the champion of 'churn')."""
    reads = version_in_name(name)
    if reads is None:
        return
    with store.read() as session:
        if _registered(session, name):
            return  # registered before this rule: its name keeps working
    raise MldeckError(f"[model] name {name!r} reads as a version ({reads}): choose a name that "
                      "does not end in ':', ':v', '/' or '/v' and digits")  # fmt: skip


def _split_target(ref: str) -> tuple[str, int | None]:
    """``churn:2`` → (churn, 2); a bare ``churn`` → (churn, None): the previous champion."""
    text = ref.strip()
    if "@" not in text and ":" not in text and "/" not in text and text:
        return text, None
    try:
        name, alias, number = parse_ref(text)
    except MldeckError:  # no version after it: a name holding ':' or '/' ("churn:eu")
        return text, None
    if alias is not None:
        raise MldeckError(
            f"roll back to a version number ({name}:N) or to the previous champion ({name}), "
            f"not to an alias"
        )
    return name, number


def champion_history(session: Session, model: RegisteredModel) -> list[int]:
    """Ids of the versions that held ``champion``, oldest first, from the audit trail."""
    rows = session.execute(
        select(AuditEvent.entity_id, AuditEvent.details)
        .where(
            AuditEvent.entity_type == "model_version",
            AuditEvent.action.in_(("model_version.promote", "model_version.rollback")),
        )
        .order_by(AuditEvent.id)
    ).all()
    ids = [int(entity) for entity, details in rows
           if details.get("alias", CHAMPION) == CHAMPION and details.get("model") == model.name
           and entity.isdigit()]  # fmt: skip
    if not ids:
        return []
    mine = set(
        session.execute(
            select(ModelVersion.id).where(
                ModelVersion.model_id == model.id, ModelVersion.id.in_(ids)
            )
        ).scalars()
    )
    return [i for i in ids if i in mine]


def rollback(
    store: Store,
    ref: str,
    *,
    reason: str,
    force: bool = False,
    auto_approve: bool = False,
    user: str | None = None,
    root: Path | None = None,
) -> Change:
    """Move ``champion`` back to an earlier version: ``churn:2``, or ``churn`` for the newest
    earlier version that served as champion (so that each rollback steps further back; a newer
    version that served before the current one is returned to with promote). With *root*, its
    model file is checked first.

    The version serves again with its own data schema and code version (both reported in the
    result and the audit event). It must pass the same checks as a promotion to champion.
    """
    reason = reason.strip()
    if not reason:
        raise MldeckError(
            "a rollback needs a reason: say why (the note in the console, --reason TEXT in the CLI)"
        )
    name, number = _split_target(ref)
    actor = _actor(user)
    with store.write() as session:
        if number is not None and _registered(session, ref.strip()):
            name, number = ref.strip(), None  # a model so named ('churn:v1'): its last champion
        model = _model(session, name)
        champion = _aliases(session, model.id).get(CHAMPION)
        if champion is None:
            raise MldeckError(f"model {name!r} has no champion to roll back from; use promote")
        current = session.get(ModelVersion, champion.model_version_id)
        if number is None:
            earlier = [i for i in champion_history(session, model) if i != current.id]
            target = None
            passed: list[str] = []  # earlier champions rejected or archived since
            for candidate_id in reversed(earlier):
                candidate = session.get(ModelVersion, candidate_id)
                if candidate.version >= current.version:
                    continue
                if candidate.status in (ARCHIVED, REJECTED):
                    word = "archived" if candidate.status == ARCHIVED else "rejected"
                    entry = f"{label(name, candidate.version)} {word} since"
                    if entry not in passed:
                        passed.append(entry)
                    continue
                target = candidate
                break
            if target is None:
                since = f" ({', '.join(passed)})" if passed else ""
                raise MldeckError(
                    f"no earlier champion of {name!r} to roll back to{since}; name a version "
                    f"({name}:N)"
                )
        else:
            target = _find(session, label(name, number))[1]
        if target.id == current.id:
            raise MldeckError(f"{label(name, target.version)} is already the champion")
        if target.version >= current.version:
            if target.status == ARCHIVED:  # promote would refuse it too: say why first
                raise MldeckError(f"{label(name, target.version)} is archived; an archived "
                                  "version cannot serve")  # fmt: skip
            raise MldeckError(
                f"a rollback goes to an earlier version: {label(name, target.version)} is not "
                f"earlier than the champion {label(name, current.version)} (use promote)"
            )
        return _move(session, "rollback", model, target, alias=CHAMPION, reason=reason,
                     force=force, auto_approve=auto_approve, actor=actor, root=root)  # fmt: skip


def archive(store: Store, ref: str, *, reason: str = "", user: str | None = None) -> Change:
    """Retire a version for good: it can no longer be approved, promoted or rolled back to. The
    champion cannot be archived (promote or roll back first); a challenger loses its alias."""
    reason = reason.strip()
    actor = _actor(user)
    with store.write() as session:
        model, version = _find(session, ref)
        name = label(model, version)
        if version.status == ARCHIVED:
            raise MldeckError(f"{name} is already archived")
        aliases = _aliases(session, model.id)
        holds = [a for a, row in aliases.items() if row.model_version_id == version.id]
        if CHAMPION in holds:
            raise MldeckError(
                f"{name} is the champion and serves; promote or roll back to another version "
                "before archiving it"
            )
        event_ids = []
        for alias in holds:
            session.execute(delete(Alias).where(Alias.id == aliases[alias].id))
            event_ids.append(_event(session, "alias.remove", version, actor, model=model.name,
                                    version=version.version, alias=alias,
                                    reason="archived"))  # fmt: skip
        previous_status = version.status
        version.status = ARCHIVED
        session.add(version)
        event_ids.append(_event(session, "model_version.archive", version, actor,
                                model=model.name, version=version.version, reason=reason,
                                previous_status=previous_status))  # fmt: skip
        return Change("archive", model.name, version.version, version.id, reason=reason,
                      actor=actor, removed_aliases=holds, schema=version.schema_,
                      code_version=version.code_version, event_ids=event_ids)  # fmt: skip


class _Trial:
    """A store whose writes are trials (rolled back): a registry change run on it changes
    nothing, and raises what it would refuse."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def write(self) -> Any:
        return self._store.trial()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def refusal(store: Store, action: str, ref: str, **options: Any) -> str | None:
    """Why the registry would refuse *action* (approve, promote, rollback, archive) on *ref*
    with *options*, or None: the change itself, tried and rolled back, so the rules are the
    registry's own and written once. The console asks for a reason only when it can pass."""
    change = {"approve": approve, "promote": promote, "rollback": rollback, "archive": archive}
    try:
        change[action](_Trial(store), ref, **options)  # type: ignore[arg-type]
    except MldeckError as exc:
        return str(exc)
    return None


# -- loading a registered model ----------------------------------------------------------------


def load_version(workspace: Workspace, store: Store, version: ModelVersion) -> Any:
    """The fitted model of *version*, read from its artifact: sha256 verified, skops trusted
    types only (``mldeck.ml.model_files.load_version``)."""
    from mldeck.ml.model_files import load_version as load_file_of

    return load_file_of(workspace, store, version)


def load_model(ref: str, *, workspace: Workspace | Path | str | None = None) -> Any:
    """The model a reference names, for users' own code::

        model = mldeck.load_model("churn@champion")
        model.predict_proba(frame)

    The workspace is found like the CLI finds it (``workspace=``, ``MLDECK_WORKSPACE``, or the
    current folder upwards). The file is checked against its recorded sha256 and loaded with
    skops' trusted types only, so a modified file is refused, never executed.
    """
    from mldeck.tracking import _workspace_store

    ws, store = _workspace_store(workspace)
    return load_version(ws, store, resolve(store, ref))
