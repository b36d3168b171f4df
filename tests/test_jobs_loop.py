"""The whole loop, unattended, with a real daemon: batches dropped into data/incoming/ are
ingested, validated, scored and checked for drift; a drifting batch starts a retrain whose
candidate waits for approval; approving it (as a person would, from the CLI or the console)
makes the daemon promote it. Every automatic decision is in the audit trail."""

from __future__ import annotations

import shutil

from sqlalchemy import select

from mldeck.ml.registry import approve, promote, resolve
from mldeck.store.models import AuditEvent, Run

from .jobs_helpers import copy_workspace, make_template, open_store, start_daemon, stop, wait_for

JOBS = """
[jobs]
lease_seconds = 3
min_free_disk_mb = 0
"""


def _actions(store) -> list[str]:
    with store.read() as session:
        return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def _runs(store, kind: str) -> list[Run]:
    with store.read() as session:
        query = select(Run).where(Run.kind == kind, Run.parent_run_id.is_(None)).order_by(Run.id)
        return list(session.execute(query).scalars())


def test_new_data_flows_through_the_loop_and_an_approved_retrain_is_promoted(tmp_path):
    template = make_template(tmp_path / "template")
    workspace = copy_workspace(template, tmp_path / "ws", JOBS)
    config = workspace.config_path
    # The test model (a dummy) scores an AUC of 0.5: gates it can pass.
    config.write_text(config.read_text().replace("min = {roc_auc = 0.75}", "min = {roc_auc = 0.4}"))
    from mldeck.workspace import load_workspace

    workspace = load_workspace(workspace.root)
    store = open_store(workspace)
    from mldeck.ml.train import train

    first = train(workspace, store)
    approve(store, f"churn:{first.version}", reason="the first model")
    promote(store, f"churn:{first.version}")
    samples = workspace.data_dir / "samples"
    daemon = start_daemon(workspace, tmp_path / "daemon.out")
    try:
        shutil.copy(samples / "batch_01_normal.csv", workspace.incoming_dir)
        quiet = wait_for(
            lambda: [r for r in _runs(store, "drift") if r.status == "succeeded"],
            "the normal batch to be checked",
        )
        assert "retrain.triggered" not in _actions(store)
        shutil.copy(samples / "batch_03_covariate_shift.csv", workspace.incoming_dir)
        wait_for(lambda: "retrain.awaiting_approval" in _actions(store), "the retrain to wait")
        candidate = resolve(store, "churn:2")
        assert candidate.status == "candidate"
        assert resolve(store, "churn@champion").version == 1
        approve(store, "churn:2", reason="reviewed the drift retrain")
        wait_for(lambda: resolve(store, "churn@champion").version == 2, "the promotion")
    finally:
        stop(daemon)
    # The log says each thing once: the watcher's lines are not repeated by the scheduler, and
    # watchfiles' own "1 change detected" per event is left out.
    log = (workspace.state_dir / "daemon.log").read_text()
    assert log.count("batch_01_normal.csv: churn:") == 1, log
    assert log.count("watching ") == 1 and "change detected" not in log, log
    assert all(f" pid {daemon.pid} " in line for line in log.splitlines()), log
    actions = _actions(store)
    assert actions.count("pipeline.start") == 2
    last = {action: i for i, action in enumerate(actions)}
    order = [last[a] for a in ("retrain.triggered", "retrain.awaiting_approval",
                               "model_version.approve", "model_version.promote")]  # fmt: skip
    assert order == sorted(order)
    with store.read() as session:
        promoted = session.execute(
            select(AuditEvent).where(AuditEvent.action == "model_version.promote")
            .order_by(AuditEvent.id.desc())
        ).scalars().first()  # fmt: skip
    assert (
        promoted.actor == "mldeck-scheduler" and "promote_on_approval" in promoted.details["reason"]
    )
    scored = [r for r in _runs(store, "score") if r.status == "succeeded"]
    assert len(scored) == 2 and quiet[0].trigger == "new_data"
    retrains = _runs(store, "retrain")
    assert [(r.trigger, r.status) for r in retrains] == [("drift", "succeeded")]
    store.close()
