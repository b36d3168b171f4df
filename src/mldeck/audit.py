"""The audit trail: an append-only chain of events, each holding the hash of the one before.

``append`` is called inside the same write transaction as the change it records (so a change
and its event commit together). ``verify`` recomputes the chain: an edited event no longer matches
its hash, a deleted one breaks the link of the next.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from mldeck.provenance import current_user
from mldeck.store.engine import Store
from mldeck.store.models import AuditEvent, fit_text, utcnow
from mldeck.store.queries import AUDIT_COLUMNS, audit_rows

GENESIS = "0" * 64


def _digest(prev_hash: str, ts: datetime, actor: str, action: str, entity_type: str,
            entity_id: str, details: dict[str, Any]) -> str:  # fmt: skip
    payload = json.dumps(
        [prev_hash, ts.isoformat(), actor, action, entity_type, entity_id, details],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append(
    session: Session,
    action: str,
    *,
    entity_type: str = "",
    entity_id: str | int = "",
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Add an event after the newest one, inside the caller's (``BEGIN IMMEDIATE``) transaction."""
    last = session.execute(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar()
    ts = utcnow()
    details = json.loads(json.dumps(details or {}, default=str))
    actor = actor or current_user()
    prev = last or GENESIS
    event = AuditEvent(
        ts=ts,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        details=details,
        prev_hash=prev,
    )
    # Hashed as stored: a name too long for its column is cut (the hash of the whole name
    # made verify call an untouched chain broken).
    fit_text(event)
    event.hash = _digest(prev, ts, event.actor, event.action, event.entity_type,
                         event.entity_id, details)  # fmt: skip
    session.add(event)
    session.flush()
    return event


@dataclass
class Verification:
    ok: bool
    events: int
    problems: list[str]


def verify(store: Store) -> Verification:
    """Recompute the chain from the first event; report every event that does not hold."""
    problems: list[str] = []
    prev = GENESIS
    count = 0
    previous_id = 0
    with store.read() as session:
        events = audit_rows(session, select(*AUDIT_COLUMNS).order_by(AuditEvent.id))
        for event in events:
            count += 1
            if event.prev_hash != prev:
                gap = (
                    f" (events {previous_id + 1}..{event.id - 1} are missing)"
                    if event.id > previous_id + 1
                    else ""
                )
                problems.append(f"event {event.id}: does not follow the event before it{gap}")
            if event.damaged:  # a time or details that cannot be read were changed too
                problems.append(f"event {event.id} ({event.action}): its content was changed "
                                f"({event.damaged})")  # fmt: skip
            elif event.hash != _digest(event.prev_hash, event.ts, event.actor, event.action,
                                       event.entity_type, event.entity_id, event.details):  # fmt: skip
                problems.append(f"event {event.id} ({event.action}): its content was changed")
            prev = event.hash
            previous_id = event.id
    return Verification(not problems, count, problems)
