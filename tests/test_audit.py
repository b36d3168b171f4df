"""The audit trail: every registry change leaves an event; tampering with the chain is found."""

from __future__ import annotations

import json
import sqlite3

import pytest

from mldeck import audit
from mldeck.errors import MldeckError
from mldeck.ml import registry
from mldeck.store.queries import list_audit_events
from mldeck.workspace import Workspace

from .test_cli import assert_one_line_error
from .test_ml_registry import add_version, events, model_bytes  # noqa: F401 (a fixture)


@pytest.fixture
def trail(workspace: Workspace, store, model_bytes) -> Workspace:  # noqa: F811
    """A workspace whose trail holds the registry's whole vocabulary of state changes."""
    for content in (model_bytes["a"], model_bytes["b"], model_bytes["a"]):
        add_version(workspace, store, content)
    registry.approve(store, "churn:1", reason="holdout ok")
    registry.promote(store, "churn:1", reason="first")
    registry.approve(store, "churn:2", reason="better")
    registry.promote(store, "churn:2", reason="second")
    registry.promote(store, "churn:3", alias="challenger", reason="shadow")
    registry.rollback(store, "churn:1", reason="v2 regressed")
    registry.archive(store, "churn:3", reason="dropped")
    return workspace


def edit(workspace: Workspace, sql: str, *params) -> None:
    """Change the store by hand, as someone with the file would, outside mldeck."""
    con = sqlite3.connect(workspace.db_path)
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def test_every_state_change_is_an_event_with_its_reason(trail, store):
    recorded = [(e.action, e.details.get("reason")) for e in events(store)]
    changes = [r for r in recorded if r[0] not in ("model.create", "model_version.register")]
    assert changes == [
        ("model_version.approve", "holdout ok"),
        ("model_version.promote", "first"),
        ("model_version.approve", "better"),
        ("model_version.promote", "second"),
        ("model_version.promote", "shadow"),
        ("model_version.rollback", "v2 regressed"),
        ("alias.remove", "archived"),
        ("model_version.archive", "dropped"),
    ]
    assert all(e.actor for e in events(store))
    result = audit.verify(store)
    assert result.ok and result.events == len(recorded) and result.problems == []


def test_a_refused_change_leaves_no_event(trail, store):
    before = len(events(store))
    with pytest.raises(MldeckError):
        registry.promote(store, "churn:3")  # archived
    with pytest.raises(MldeckError):
        registry.archive(store, "churn:1")  # the champion
    assert len(events(store)) == before


def test_editing_an_events_content_is_detected(trail, store):
    promote = events(store, "model_version.promote")[0]
    edit(trail, "UPDATE audit_event SET details = ? WHERE id = ?",
         json.dumps({**promote.details, "reason": "nothing to see"}), promote.id)  # fmt: skip
    result = audit.verify(store)
    assert not result.ok
    assert result.problems == [
        f"event {promote.id} (model_version.promote): its content was changed"
    ]


def test_details_or_a_time_that_cannot_be_read_are_named_not_a_traceback(trail, store, cli):
    """An edit leaving text that is not JSON, or a time that is not one, failed the whole query:
    `audit verify` (and `audit list`) ended in a traceback on the very tampering it is for."""
    promote = events(store, "model_version.promote")[0]
    approve = events(store, "model_version.approve")[0]
    edit(trail, "UPDATE audit_event SET details = 'not json{' WHERE id = ?", promote.id)
    edit(trail, "UPDATE audit_event SET ts = 'garbage' WHERE id = ?", approve.id)
    result = audit.verify(store)
    assert result.problems == sorted([
        f"event {promote.id} (model_version.promote): its content was changed (its details are "
        "not a JSON object)",
        f"event {approve.id} (model_version.approve): its content was changed (its time is not "
        "a time)",
    ], key=lambda p: int(p.split()[1]))  # fmt: skip
    listed = cli("audit", "list", "--json", "--workspace", str(trail.root), cwd=trail.root.parent)
    assert listed.returncode == 0, listed.stderr
    damaged = {e["id"]: e.get("damaged") for e in json.loads(listed.stdout)["events"]}
    assert damaged[promote.id] == "its details are not a JSON object"
    assert damaged[approve.id] == "its time is not a time"
    table = cli("audit", "list", "--workspace", str(trail.root), cwd=trail.root.parent)
    assert table.returncode == 0, table.stderr
    assert "DAMAGED: its details are not a JSON object" in table.stdout
    verified = cli("audit", "verify", "--workspace", str(trail.root), cwd=trail.root.parent)
    assert verified.returncode == 1 and "Traceback" not in verified.stderr
    assert verified.stdout.strip().splitlines()[-1].endswith("chain BROKEN: 2 problems")


def test_editing_the_actor_is_detected(trail, store):
    approve = events(store, "model_version.approve")[0]
    edit(trail, "UPDATE audit_event SET actor = 'mallory' WHERE id = ?", approve.id)
    assert audit.verify(store).problems == [
        f"event {approve.id} (model_version.approve): its content was changed"
    ]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(trail, store):
    target = events(store, "model_version.rollback")[0]
    details = {**target.details, "reason": "routine"}
    forged = audit._digest(target.prev_hash, target.ts, target.actor, target.action,
                           target.entity_type, target.entity_id, details)  # fmt: skip
    edit(trail, "UPDATE audit_event SET details = ?, hash = ? WHERE id = ?",
         json.dumps(details), forged, target.id)  # fmt: skip
    problems = audit.verify(store).problems
    assert problems == [f"event {target.id + 1}: does not follow the event before it"]


def test_deleting_an_event_from_the_middle_is_detected(trail, store):
    middle = events(store, "model_version.approve")[1]
    edit(trail, "DELETE FROM audit_event WHERE id = ?", middle.id)
    result = audit.verify(store)
    assert not result.ok
    assert result.problems == [
        f"event {middle.id + 1}: does not follow the event before it "
        f"(events {middle.id}..{middle.id} are missing)"
    ]


def test_list_audit_events_is_newest_first_and_windowed(trail, store):
    rows, total = list_audit_events(store, limit=3)
    assert total == len(events(store)) and len(rows) == 3
    assert [r.id for r in rows] == sorted((r.id for r in rows), reverse=True)
    assert rows[0].action == "model_version.archive"
    older, _ = list_audit_events(store, limit=3, offset=3)
    assert older[0].id == rows[-1].id - 1
    version_1 = registry.resolve(store, "churn:1").id
    mine, count = list_audit_events(store, entity_type="model_version", entity_id=str(version_1))
    assert count == 4 and {r.action for r in mine} == {
        "model_version.register", "model_version.approve", "model_version.promote",
        "model_version.rollback",
    }  # fmt: skip


def test_audit_commands(trail, store, cli):
    root = trail.root

    def mldeck(*args: str):
        return cli(*args, "--workspace", str(root), cwd=root.parent)

    total = len(events(store))
    newest = events(store)[-1]
    intact = mldeck("audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.splitlines() == [
        f"{total} events, chain intact",
        f"head: event {newest.id} {newest.hash}",
    ]

    listed = mldeck("audit", "list", "--limit", "2", "--json")
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    assert payload["total"] == total and len(payload["events"]) == 2
    assert payload["events"][0]["action"] == "model_version.archive"
    assert payload["events"][0]["details"]["reason"] == "dropped"
    table = mldeck("audit", "list")
    assert table.returncode == 0 and "model_version.rollback" in table.stdout
    assert 'reason="v2 regressed"' in table.stdout

    # Deleting the newest event leaves a valid chain: only a head kept elsewhere reveals it.
    edit(trail, "DELETE FROM audit_event WHERE id = ?", newest.id)
    assert mldeck("audit", "verify").returncode == 0
    truncated = mldeck("audit", "verify", "--head", newest.hash[:16])
    assert truncated.returncode == 1
    assert f"head {newest.hash[:12]} is no longer in the trail" in truncated.stdout

    rollback = events(store, "model_version.rollback")[0]
    edit(trail, "UPDATE audit_event SET details = '{}' WHERE id = ?", rollback.id)
    deleted = events(store, "model_version.approve")[0]
    edit(trail, "DELETE FROM audit_event WHERE id = ?", deleted.id)
    broken = mldeck("audit", "verify")
    assert broken.returncode == 1
    lines = broken.stdout.strip().splitlines()
    assert f"event {rollback.id} (model_version.rollback): its content was changed" in lines
    assert any(line.startswith(f"event {deleted.id + 1}: does not follow") for line in lines)
    assert lines[-1] == f"{total - 2} events, chain BROKEN: 2 problems"

    assert_one_line_error(mldeck("audit", "verify", "--head", "xyz"), "--head takes")
    # A head copied in capitals is the same hash.
    upper = mldeck("audit", "verify", "--head", newest.hash[:16].upper())
    assert f"head {newest.hash[:12]} is no longer in the trail" in upper.stdout


def test_a_long_actor_is_hashed_as_it_is_stored(store):
    """The hash covered the whole name, the store kept 100 characters of it: verify called an
    untouched chain broken."""
    from mldeck import audit as audit_module

    with store.write() as session:
        audit_module.append(session, "test.event", actor="a" * 150, details={"k": 1})
    assert audit_module.verify(store).ok
