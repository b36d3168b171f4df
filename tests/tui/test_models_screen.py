"""The Models screen and the run metric chart through Textual's Pilot at 80x24, on a real store."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select
from textual.widgets import Static

from mldeck.ml.registry import register_version
from mldeck.store.engine import Store
from mldeck.store.models import Alias, Approval, GateResult, ModelVersion, Run
from mldeck.store.queries import champions
from mldeck.tui.screens.confirm import ConfirmScreen
from mldeck.tui.screens.models import ModelsScreen, ModelVersionScreen
from mldeck.tui.screens.runs import MetricPlot, RunDetailScreen
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.topbar import TopBar
from mldeck.workspace import Workspace, init_workspace, load_workspace, open_workspace_store

from .conftest import T0, make_app, settle, until

SIZE = (80, 24)


def seed_models(store: Store) -> None:
    """churn:1 passes its gate, churn:2 fails it; each made by its own training run."""
    specs = [
        ({"roc_auc": 0.812, "f1": 0.61, "log_loss": 0.41}, 0.812, True),
        ({"roc_auc": 0.731, "f1": 0.66, "log_loss": 0.45}, 0.731, False),
    ]
    with store.write() as session:
        for number, (metrics, auc, passed) in enumerate(specs, start=1):
            at = T0 + timedelta(hours=number)
            run = Run(name="train-gbm", kind="train", trigger="manual", status="succeeded",
                      created_at=at, started_at=at, ended_at=at + timedelta(minutes=5),
                      heartbeat_at=at, progress=1.0, user="ana", host="ml-box")  # fmt: skip
            session.add(run)
            session.flush()
            version = register_version(
                session,
                "churn",
                run_id=run.id,
                artifact_id=None,
                metrics=metrics,
                schema={"tenure_months": "Int64"},
                code_version={"git_commit": f"{number}f2a9c1d4e5b6a7980112233445566778899aab"},
            )
            version.created_at = at + timedelta(minutes=5)
            session.add(version)
            session.add(
                GateResult(model_version_id=version.id, run_id=run.id, gate="min_roc_auc",
                           metric="roc_auc", threshold=0.75, value=auc, passed=passed,
                           detail=f"roc_auc {auc} {'>=' if passed else '<'} 0.75", created_at=at)
            )  # fmt: skip
            session.add(
                GateResult(model_version_id=version.id, run_id=run.id, gate="max_log_loss",
                           metric="log_loss", threshold=0.5, value=metrics["log_loss"],
                           passed=True, detail="log_loss below 0.5", created_at=at)
            )  # fmt: skip


def models_workspace(root: Path) -> tuple[Workspace, Store]:
    """A workspace whose store holds the two versions of seed_models (WAL checkpointed)."""
    workspace = init_workspace(root, name="snapshot-demo")
    store = open_workspace_store(workspace)
    seed_models(store)
    store.close()
    return workspace, open_workspace_store(workspace)


@pytest.fixture
def models_seeded(tmp_path: Path) -> tuple[Workspace, Store]:
    workspace, store = models_workspace(tmp_path / "ws")
    yield workspace, store
    store.close()


def column(table: DeckTable, index: int) -> list[str]:
    return [str(table.get_row(key)[index]) for key in table.rows]


def static_text(widget: Static) -> str:
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


def approvals(store: Store, version_id: int) -> list[tuple[str, str]]:
    with store.read() as session:
        rows = session.execute(
            select(Approval.decision, Approval.reason).where(
                Approval.model_version_id == version_id
            )
        ).all()
    return [tuple(row) for row in rows]


def say_what_to_train(workspace: Workspace) -> None:
    """[model] with its target in mldeck.toml (read by the console when n is pressed)."""
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write('\n[model]\nname = "churn"\ntarget = "churned"\n')


def champion_ids(store: Store) -> list[int]:
    return [c.model_version_id for c in champions(store)]


def make_challenger(store: Store, version_id: int) -> None:
    with store.write() as session:
        session.add(Alias(model_id=1, name="challenger", model_version_id=version_id,
                          updated_at=T0))  # fmt: skip


def notices(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def open_models(pilot) -> ModelsScreen:
    await settle(pilot)
    await pilot.press("4")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ModelsScreen)
    return screen


async def open_model_version(pilot, version_id: int) -> ModelVersionScreen:
    screen = await open_models(pilot)
    table = screen.query_one("#models-table", DeckTable)
    table.move_cursor(row=table.get_row_index(str(version_id)))
    await pilot.press("enter")
    await settle(pilot)
    detail = pilot.app.screen
    assert isinstance(detail, ModelVersionScreen) and detail.model_version_id == version_id
    return detail


async def asked(pilot, version_id: int, key: str) -> str:
    """What the dialog that *key* opens on a version says (as shown: never parsed as markup)."""
    await open_model_version(pilot, version_id)
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    return pilot.app.screen.description


async def open_audit(pilot):
    from mldeck.tui.screens.audit import AuditScreen

    await settle(pilot)
    await pilot.press("8")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AuditScreen)
    return pilot.app.screen


async def confirm_with(pilot, reason: str, *, click: bool = False) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.press(*reason)
    if click:
        await pilot.click("#confirm-ok")
    else:
        await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ModelVersionScreen))
    await settle(pilot)


async def test_versions_are_listed_with_gates_and_aliases(models_seeded) -> None:
    workspace, store = models_seeded
    with store.write() as session:
        session.add(Alias(model_id=1, name="champion", model_version_id=1, updated_at=T0))
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_models(pilot)
        assert screen.query_one(TopBar).section == "models"
        table = screen.query_one("#models-table", DeckTable)
        assert list(key.value for key in table.rows) == ["2", "1"]
        assert column(table, 0) == ["churn:2", "churn:1"]
        assert column(table, 1) == ["candidate", "candidate"]
        assert column(table, 2) == ["", "★ champion"]
        assert column(table, 3) == ["1✓ 1✗", "2✓"]
        assert column(table, 5) == ["0.731", "0.812"]
        assert column(table, 6)[1] == "2026-03-02 10:05"
        assert "2 model versions" in static_text(screen.query_one("#models-status"))
        assert app.query_one(TopBar).champion == "churn:1"


async def test_a_training_under_way_is_said_under_the_versions(models_seeded) -> None:
    """A candidate on its way (from n, the CLI or a schedule) is said on the Models screen, not
    only on the Runs screen; its step run (the job's child) is not counted twice."""
    workspace, store = models_seeded
    with store.write() as session:
        job = Run(name="retrain", kind="train", trigger="schedule", status="running",
                  progress=0.9, created_at=T0)  # fmt: skip
        session.add(job)
        session.flush()
        session.add(Run(name="retrain", kind="train", trigger="schedule", status="running",
                        progress=0.9, created_at=T0, parent_run_id=job.id))  # fmt: skip
        training = job.id
    say_what_to_train(workspace)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_models(pilot)
        said = static_text(screen.query_one("#models-status"))
        assert said.strip() == f"2 model versions · training now: run {training} 90% (2 Runs)"
        await pilot.press("n")  # another one: the dialog says it starts a second
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        asked = static_text(app.screen.query_one("#confirm-description"))
        assert f"A training is under way (run {training}): this starts another" in asked


async def test_version_detail_tabs(models_seeded) -> None:
    app = make_app(*models_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 2)
        assert detail.query_one(TopBar).screen_title == "churn:2"
        summary = static_text(detail.query_one("#model-summary"))
        assert "churn:2 candidate" in summary and "run #2 train-gbm" in summary
        assert "created 2026-03-02 11:05:00" in summary
        metrics = detail.query_one("#model-metrics", DeckTable)
        assert column(metrics, 0) == ["roc_auc", "f1", "log_loss"]
        assert app.focused is metrics  # j and k move in it without a click or tab first
        gates = detail.query_one("#model-gates", DeckTable)
        assert column(gates, 0) == ["min_roc_auc", "max_log_loss"]
        assert column(gates, 1) == ["fail", "pass"]
        assert "0.731 < 0.75" in column(gates, 2)[0]
        await pilot.press("l")
        lineage = static_text(detail.query_one("#model-lineage"))
        assert "run #2 train-gbm" in lineage and "version churn:2" in lineage
        await pilot.press("h")
        history = detail.query_one("#model-history", DeckTable)
        assert "model_version.register" in column(history, 2)


async def test_history_says_when_another_version_took_its_alias(models_seeded) -> None:
    from mldeck.ml.registry import approve, promote

    workspace, store = models_seeded
    for ref in ("churn:1", "churn:2"):
        approve(store, ref, reason="fine")
    promote(store, "churn:1", reason="first")
    promote(store, "churn:2", reason="better", force=True)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        await pilot.press("h")
        await settle(pilot)
        history = detail.query_one("#model-history", DeckTable)
        assert column(history, 2)[0] == "lost champion"  # newest first
        assert column(history, 2)[1:] == [
            "model_version.promote",
            "model_version.approve",
            "model_version.register",
        ]
        said = static_text(detail.query_one("#model-history-whole"))
        assert said.startswith("lost champion: to churn:2 (promote) reason=better forced=True")


async def test_a_tab_chosen_by_its_key_takes_j_and_k(models_seeded) -> None:
    """t then j moves to the next gate (its detail said whole under the table), h then j to
    the next event: the keys go to the tab shown, not to the hidden metrics table."""
    from mldeck.ml.registry import approve

    workspace, store = models_seeded
    approve(store, "churn:2", reason="try it")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 2)
        metrics = detail.query_one("#model-metrics", DeckTable)
        await pilot.press("t")
        await settle(pilot)
        gates = detail.query_one("#model-gates", DeckTable)
        assert app.focused is gates and gates.selected_key() == "0"
        await pilot.press("j")
        await settle(pilot)
        assert gates.selected_key() == "1" and metrics.cursor_row == 0
        said = static_text(detail.query_one("#model-gates-whole"))
        assert said.startswith("max_log_loss: log_loss below 0.5"), said
        await pilot.press("h")
        await settle(pilot)
        history = detail.query_one("#model-history", DeckTable)
        assert app.focused is history and history.cursor_row == 0
        await pilot.press("j")
        await settle(pilot)
        assert history.cursor_row == 1
        await pilot.press("m")
        await settle(pilot)
        assert app.focused is metrics


async def test_metrics_side_by_side_with_the_champion(models_seeded) -> None:
    workspace, store = models_seeded
    with store.write() as session:
        session.add(Alias(model_id=1, name="champion", model_version_id=1, updated_at=T0))
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 2)
        metrics = detail.query_one("#model-metrics", DeckTable)
        headers = [str(c.label) for c in metrics.columns.values()]
        assert headers == ["METRIC", "THIS", "CHURN:1", "DELTA"]
        assert metrics.get_row("roc_auc")[1].plain == "0.731"
        assert metrics.get_row("roc_auc")[2].plain == "0.812"
        # The champion's figures come from its own training's holdout: no delta, said why.
        assert metrics.get_row("roc_auc")[3].plain == ""
        assert "on its own holdout" in str(metrics.border_subtitle)
    # Trained beside the champion: its training evaluated churn:1 on the same holdout.
    with store.write() as session:
        version = session.get(ModelVersion, 2)
        version.metrics = {**version.metrics,
                           "champion": {"model_version_id": 1, "metrics": {"roc_auc": 0.812}}}  # fmt: skip
        session.add(version)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 2)
        metrics = detail.query_one("#model-metrics", DeckTable)
        assert metrics.get_row("roc_auc")[3].plain == "-0.081"
        assert not metrics.border_subtitle


async def test_approve_through_the_dialog(models_seeded) -> None:
    workspace, store = models_seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        await pilot.press("a")
        await pilot.press("enter")  # no reason yet: the dialog stays, saying one is needed
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and approvals(store, 1) == []
        assert any("a reason is required" in text for text in notices(app))
        await confirm_with(pilot, "holdout looks good")
        await until(pilot, lambda: approvals(store, 1) == [("approved", "holdout looks good")])
        await until(pilot, lambda: "approved" in static_text(detail.query_one("#model-summary")))
        assert any("churn:1 approved" in text for text in notices(app))


async def test_reject_through_the_dialog_takes_the_challenger_alias_away(models_seeded) -> None:
    workspace, store = models_seeded
    make_challenger(store, 2)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        said = await asked(pilot, 2, "r")
        assert said.startswith("Reject churn:2: your decision and its reason are recorded")
        assert said.endswith("It stops being the challenger.")
        await confirm_with(pilot, "leaks the label")
        await until(pilot, lambda: approvals(store, 2) == [("rejected", "leaks the label")])
        await until(
            pilot, lambda: "rejected" in static_text(app.screen.query_one("#model-summary"))
        )
        assert any("churn:2 rejected" in text for text in notices(app))
    with store.read() as session:
        assert session.execute(select(Alias.name)).scalars().all() == []


async def test_a_challenger_without_a_champion_is_told_it_waits_for_one(models_seeded) -> None:
    app = make_app(*models_seeded)
    async with app.run_test(size=SIZE) as pilot:
        said = await asked(pilot, 2, "c")
    assert said.endswith("churn has no champion yet: it is scored once there is one.")


async def test_challenger_through_the_dialog_and_refused_for_the_champion(models_seeded) -> None:
    from mldeck.ml.registry import approve, promote

    workspace, store = models_seeded
    approve(store, "churn:1", reason="fine")
    promote(store, "churn:1", reason="serve")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        await pilot.press("c")  # refused at once, before a reason is typed
        await until(pilot, lambda: any("cannot also be its own challenger" in n
                                       for n in notices(app)))  # fmt: skip
        assert app.screen is detail
        await pilot.press("escape")
        said = await asked(pilot, 2, "c")
        assert said.startswith("Make churn:2 the challenger of churn: scored in shadow")
        await confirm_with(pilot, "")
        await until(
            pilot, lambda: "challenger" in static_text(app.screen.query_one("#model-summary"))
        )
    with store.read() as session:
        held = session.execute(select(Alias.name, Alias.model_version_id)).all()
    assert sorted(tuple(row) for row in held) == [("challenger", 2), ("champion", 1)]


async def test_promote_sets_the_champion_and_the_top_bar(models_seeded) -> None:
    from mldeck.ml.registry import approve

    workspace, store = models_seeded
    approve(store, "churn:1", reason="fine")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        assert detail.query_one(TopBar).champion == ""
        await pilot.press("p")
        await confirm_with(pilot, "ship it", click=True)
        await until(pilot, lambda: champion_ids(store) == [1])
        await until(pilot, lambda: detail.query_one(TopBar).champion == "churn:1")
        await until(pilot, lambda: "★ champion" in static_text(detail.query_one("#model-summary")))


async def test_a_rollback_the_registry_would_refuse_is_said_before_the_dialog(
    models_seeded,
) -> None:
    from mldeck.ml.registry import approve, promote

    workspace, store = models_seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 2)
        await pilot.press("b")
        await until(pilot, lambda: any("no champion to roll back from" in n for n in notices(app)))
        approve(store, "churn:1", reason="fine")
        promote(store, "churn:1", reason="serve")
        await until(pilot, lambda: detail.champion is not None)
        await pilot.press("b")  # churn:2 is newer than the champion: a promotion, not a rollback
        await until(pilot, lambda: any("earlier version than the champion churn:1" in n
                                       for n in notices(app)))  # fmt: skip
        assert app.screen is detail and champion_ids(store) == [1]
        await pilot.press("escape")
        champion = await open_model_version(pilot, 1)
        await settle(pilot)
        await pilot.press("b")  # the champion itself: nothing earlier is named
        await until(pilot, lambda: any("churn:1 is the champion: a rollback goes to an earlier"
                                       in n for n in notices(app)))  # fmt: skip
        assert app.screen is champion


async def test_a_version_whose_model_file_is_missing_is_refused_before_the_dialog(
    models_seeded,
) -> None:
    """Promote and roll back check the model file as the change itself does: the dialog asked
    for a required reason first, then the change was refused."""
    from mldeck.ml.registry import approve, promote
    from mldeck.store.models import Artifact

    workspace, store = models_seeded
    approve(store, "churn:1", reason="fine")
    approve(store, "churn:2", reason="fine")
    promote(store, "churn:2", reason="serve", force=True)
    with store.write() as session:  # churn:1's file was recorded, then lost
        artifact = Artifact(name="model", kind="model", path="artifacts/ab/gone.skops",
                            sha256="ab" * 32, size_bytes=10)  # fmt: skip
        session.add(artifact)
        session.flush()
        session.get(ModelVersion, 1).artifact_id = artifact.id
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        for key in ("b", "p"):
            await pilot.press(key)
            await until(pilot, lambda: any("churn:1 cannot be the champion" in n
                                           for n in notices(app)))  # fmt: skip
            assert app.screen is detail, key  # no dialog asking for a reason first
            app.clear_notifications()
        assert champion_ids(store) == [2]


async def test_actions_on_an_archived_version_are_refused_before_the_dialog(models_seeded) -> None:
    from mldeck.ml.registry import archive

    workspace, store = models_seeded
    archive(store, "churn:1", reason="old")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        for key, said in (("a", "churn:1 is archived; an archived version cannot be approved"),
                          ("p", "churn:1 is archived; an archived version cannot serve"),
                          ("x", "churn:1 is already archived")):  # fmt: skip
            await pilot.press(key)
            await until(pilot, lambda said=said: any(said in n for n in notices(app)))
            assert app.screen is detail, key  # no dialog asking for a reason first


async def test_promoting_a_version_that_failed_a_gate_is_refused(models_seeded) -> None:
    from mldeck.ml.registry import approve

    workspace, store = models_seeded
    approve(store, "churn:2", reason="try it")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 2)
        await pilot.press("p")
        await until(pilot, lambda: any("min_roc_auc" in text for text in notices(app)))
        refused = next(text for text in notices(app) if "min_roc_auc" in text)
        assert "churn:2 failed its gates" in refused
        assert app.screen is detail  # said before the dialog: no reason typed for nothing
        assert champion_ids(store) == []


async def test_what_the_registry_would_refuse_is_said_before_the_dialog(models_seeded) -> None:
    """Not approved (promote), the champion (archive): said at once, nothing changed, and the
    store's change counter untouched (the trial is rolled back)."""
    workspace, store = models_seeded
    with store.write() as session:
        session.add(Alias(model_id=1, name="champion", model_version_id=2, updated_at=T0))
    seq = store.change_seq()
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        await pilot.press("p")
        await until(pilot, lambda: any("churn:1 is not approved" in t for t in notices(app)))
        assert app.screen is detail
        await pilot.press("escape")
        await settle(pilot)
        detail = await open_model_version(pilot, 2)
        await pilot.press("x")
        await until(pilot, lambda: any("is the champion and serves" in t for t in notices(app)))
        assert app.screen is detail
    assert store.change_seq() == seq and approvals(store, 1) == []


async def test_a_gates_detail_cut_by_a_narrow_terminal_is_shown_whole_under_it(
    models_seeded,
) -> None:
    workspace, store = models_seeded
    long = "roc_auc 0.802 vs champion v2 0.7795: no worse (allowed 0.02 below the champion)"
    with store.write() as session:
        gate = session.execute(select(GateResult).where(GateResult.model_version_id == 2)).scalar()
        gate.detail = long
        session.add(gate)
        name = gate.gate
    app = make_app(workspace, store)
    async with app.run_test(size=(80, 24)) as pilot:
        detail = await open_model_version(pilot, 2)
        await pilot.press("t")
        await settle(pilot)
        gates = detail.query_one("#model-gates", DeckTable)
        gates.move_cursor(row=0)
        await settle(pilot)
        assert static_text(detail.query_one("#model-gates-whole")).strip() == f"{name}: {long}"


async def test_approving_a_version_that_failed_a_gate_says_what_that_means(models_seeded) -> None:
    app = make_app(*models_seeded)
    async with app.run_test(size=SIZE) as pilot:
        said = await asked(pilot, 2, "a")
        assert "failed 1 gate" in said and "not promoted unless the promotion is forced" in said
        await pilot.press("escape")
    app = make_app(*models_seeded)
    async with app.run_test(size=SIZE) as pilot:
        # passed its gates: nothing to warn about
        assert "failed" not in await asked(pilot, 1, "a")


async def test_cancel_changes_nothing(models_seeded) -> None:
    workspace, store = models_seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await open_model_version(pilot, 1)
        seq = store.change_seq()
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press(*"never mind")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ModelVersionScreen))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm-no")
        await until(pilot, lambda: isinstance(app.screen, ModelVersionScreen))
        await settle(pilot)
        assert approvals(store, 1) == []
        assert store.change_seq() == seq


async def test_read_only_turns_the_actions_off_and_says_why(models_seeded) -> None:
    workspace, store = models_seeded
    app = make_app(workspace, store, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        enabled = {b.binding.key: b.enabled for b in detail.active_bindings.values()}
        # Shown dimmed (off), not hidden: the keys exist, this console does not change things.
        assert {k: enabled[k] for k in "arpcbx"} == dict.fromkeys("arpcbx", False)
        assert all(enabled[k] for k in "mtlh")
        await pilot.press("a", "p")
        await settle(pilot)
        assert app.screen is detail
        assert approvals(store, 1) == []
        said = [n for n in notices(app) if "read-only" in n]
        assert len(said) == 2 and said[0].startswith("Approve: this console is read-only")
        await pilot.press("m")  # a key that changes nothing still works and says nothing
        await settle(pilot)
        assert len([n for n in notices(app) if "read-only" in n]) == 2


async def test_read_write_shows_the_actions(models_seeded) -> None:
    app = make_app(*models_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        shown = {binding.binding.key for binding in detail.active_bindings.values()}
        assert {"a", "r", "p", "c", "b", "x"} <= shown


async def test_run_metric_chart_follows_the_selected_metric(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await open_run_metrics(pilot, 3)
        screen = app.screen
        table = screen.query_one("#run-metrics", DeckTable)
        plot = screen.query_one("#run-chart", MetricPlot)
        first, second = [key.value for key in table.rows]
        assert plot.curve is not None and plot.curve[0] == first
        assert len(plot.curve[1]) == 40
        table.focus()
        await pilot.press("j")
        await settle(pilot)
        await until(pilot, lambda: plot.curve is not None and plot.curve[0] == second)
        points = plot.curve[1]
        assert len(points) == 40 and points[0][0] == 0 and points[-1][0] == 39
        # A reload keeps the chosen metric.
        screen.reload()
        await settle(pilot)
        assert plot.curve[0] == second


async def test_a_metric_logged_once_is_a_dot_at_its_step_and_value(seeded) -> None:
    """Not a lone braille dot on plotext's default axes (steps -1 to 1)."""
    import re

    from mldeck.store.models import Metric

    workspace, store = seeded
    with store.write() as session:
        session.add(Metric(run_id=5, key="rows_scored", value=0.8234, step=3, ts=T0))
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await open_run_metrics(pilot, 5)
        plot = app.screen.query_one("#run-chart", MetricPlot)
        await until(pilot, lambda: plot.curve is not None)
        assert plot.curve[1] == [(3, 0.8234)]
        plot.plt.plotsize(40, 10)
        drawn = re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build())
        assert "●" in drawn and "0.8234" in drawn
        axis = drawn.splitlines()[-2].split()  # the x axis's labels: the one step
        assert axis == ["3"]


async def open_run_metrics(pilot, run_id: int) -> None:
    """A run's detail, on its metrics tab (m)."""
    await settle(pilot)
    pilot.app.push_screen(RunDetailScreen(run_id))
    await settle(pilot)
    await pilot.press("m")
    await settle(pilot)


async def start_training(pilot) -> None:
    """`n` on the Models screen, confirmed (the dialog comes once mldeck.toml was read)."""
    await pilot.press("4")
    await settle(pilot)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.press("enter")


async def test_n_without_a_target_says_why_it_cannot_train_and_starts_nothing(
    models_seeded,
) -> None:
    """No [model] target in mldeck.toml: n says so at once, as the training would refuse it,
    with no dialog, no 'training started' and no run; once the file names one (no restart),
    n asks to train."""
    workspace, store = models_seeded
    app = make_app(workspace, store)

    def train_runs() -> int:
        with store.read() as session:
            return len(session.execute(select(Run.id).where(Run.kind == "train")).all())

    before = train_runs()
    async with app.run_test(size=SIZE) as pilot:
        await open_models(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)  # no dialog
        said = notices(app)
        assert any(
            m.startswith("cannot train: ") and "[model] target is not set" in m for m in said
        ), said
        assert not any("training started" in m for m in said)
        assert app.child_commands.running == 0 and train_runs() == before
        say_what_to_train(workspace)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.title_text == "Train churn"
        await pilot.press("escape")


async def test_train_from_the_console_then_promote_and_score(data_seeded) -> None:
    """`n` trains a candidate in a worker thread; after promotion, `s` scores a version."""
    from sqlalchemy import select

    from mldeck.ml import registry
    from mldeck.store.models import ModelVersion, Run
    from mldeck.tui.screens.data import VersionDetailScreen
    from mldeck.workspace import load_workspace

    workspace, store = data_seeded
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write('\n[model]\nname = "churn"\ntarget = "churned"\nparams = {max_iter = 20}\n'
                 "threads = 1\n")  # fmt: skip
    workspace = load_workspace(workspace.root)

    def versions() -> int:
        with store.read() as session:
            return len(session.execute(select(ModelVersion.id)).all())

    def score_runs() -> int:
        with store.read() as session:
            return len(session.execute(select(Run.id).where(Run.kind == "score")).all())

    app = make_app(workspace, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_training(pilot)
        await until(pilot, lambda: versions() == 1, timeout=60)
        registry.approve(store, "churn:1", reason="test")
        registry.promote(store, "churn:1")
        await pilot.press("3")
        await settle(pilot)
        app.push_screen(VersionDetailScreen(2))
        await settle(pilot)
        await pilot.press("s")
        await pilot.press("enter")
        await until(pilot, lambda: score_runs() == 1, timeout=60)


async def test_quitting_during_a_training_started_here_cancels_it(data_seeded) -> None:
    """The training runs as `mldeck run train` in a child process: `q` interrupts it at once
    (the run ends cancelled, nothing is registered) instead of waiting for it to end."""
    from sqlalchemy import select

    from mldeck.store.models import ModelVersion, Run
    from mldeck.workspace import load_workspace

    workspace, store = data_seeded
    started = workspace.root / "fit-started"
    # A fit that takes until it is interrupted (or a minute): the quit always lands during it.
    (workspace.root / "slow_fit.py").write_text(
        "import pathlib, time\n"
        "def fit(frame, target, seed):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    time.sleep(60)\n"
    )
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write('\n[model]\nname = "churn"\ntarget = "churned"\nentry_point = "slow_fit:fit"\n')
    workspace = load_workspace(workspace.root)

    def training() -> list[Run]:
        with store.read() as session:
            return list(session.execute(select(Run).where(Run.kind == "train")).scalars())

    app = make_app(workspace, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_training(pilot)
        await until(pilot, started.exists, timeout=60)
        await pilot.press("q")  # asked first: quitting stops the training
        from mldeck.tui.screens.confirm import ConfirmScreen

        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "quitting stops it" in str(app.screen.query_one("#confirm-description").render())
        assert training()[0].status == "running"
        await pilot.press("q")  # q again confirms
    (run,) = training()
    assert run.status == "cancelled" and "KeyboardInterrupt" in run.error
    assert app.child_commands.running == 0
    with store.read() as session:
        assert session.execute(select(ModelVersion.id)).first() is None


async def test_the_audit_screen_lists_changes_and_verifies_the_chain(models_seeded) -> None:
    """8 opens the audit trail: the registry's changes, newest first, with their details; v
    recomputes the hash chain, and an event edited behind mldeck's back breaks it."""
    from sqlalchemy import update

    from mldeck.ml.registry import approve, promote
    from mldeck.store.models import AuditEvent

    workspace, store = models_seeded
    approve(store, "churn:1", reason="holdout looks fine")
    promote(store, "churn:1", reason="first release")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_audit(pilot)
        table = screen.query_one("#audit-table", DeckTable)
        actions = column(table, 3)
        assert actions[:2] == ["model_version.promote", "model_version.approve"]
        detail = static_text(screen.query_one("#audit-detail"))
        assert "model_version.promote by" in detail and 'reason="first release"' in detail
        assert " · model_version " in detail  # the entity whole (its column is cut at 80)
        await pilot.press("v")
        await settle(pilot)
        status = screen.query_one("#audit-status")
        await until(pilot, lambda: "chain intact" in static_text(status))
        with store.write() as session:  # someone rewrites the approval's reason
            session.execute(
                update(AuditEvent)
                .where(AuditEvent.action == "model_version.approve")
                .values(details={"reason": "rubber stamp"})
            )
        await pilot.press("v")
        await until(pilot, lambda: "chain BROKEN" in static_text(status))
        assert "(model_version.approve): its content was changed" in static_text(status)


async def test_approving_a_version_waiting_after_a_retrain_says_the_scheduler_promotes_it(
    models_seeded,
) -> None:
    """[jobs] promote_on_approval: approving a retrained candidate that waits is not only a
    record, the scheduler then makes it the champion; the dialog says so before it is done."""
    from mldeck.jobs.policies import AWAITING, record

    workspace, store = models_seeded
    record(store, AWAITING, "retrained because dataset drift", entity_type="model_version",
           entity_id=1)  # fmt: skip
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        said = await asked(pilot, 1, "a")
        assert "once approved, the scheduler makes it the champion of churn" in said
        assert "[jobs] promote_on_approval" in said
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write("\n[jobs]\npromote_on_approval = false\n")
    app = make_app(load_workspace(workspace.root), store)
    async with app.run_test(size=SIZE) as pilot:
        said = await asked(pilot, 1, "a")  # the policy off: approving promotes nothing
        assert "scheduler" not in said and "It can then be promoted to champion (p)." in said


async def test_archiving_says_it_is_for_good_and_the_alias_it_loses(models_seeded) -> None:
    workspace, store = models_seeded
    make_challenger(store, 2)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        said = await asked(pilot, 2, "x")
        assert "for good: it can no longer be approved, promoted or rolled back to" in said
        assert "It loses its challenger alias." in said


async def test_promoting_the_challenger_says_it_stops_being_the_challenger(models_seeded) -> None:
    """Said after the change ('no longer challenger'), not before it."""
    from mldeck.ml.registry import approve

    workspace, store = models_seeded
    approve(store, "churn:1", reason="fine")
    with store.write() as session:
        session.add(Alias(model_id=1, name="challenger", model_version_id=1, updated_at=T0))
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        said = await asked(pilot, 1, "p")
    assert said == "Make churn:1 the champion of churn. It stops being the challenger."


async def test_a_verdict_on_the_audit_chain_says_when_newer_events_came_after_it(
    models_seeded,
) -> None:
    """The trail grows while the screen is open (the scheduler, the CLI): the verdict of v
    covers the events it read, and says the newer ones are not verified yet."""
    from mldeck.ml.registry import approve, promote

    workspace, store = models_seeded
    approve(store, "churn:1", reason="holdout looks fine")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_audit(pilot)
        status = screen.query_one("#audit-status")
        await pilot.press("v")
        await until(pilot, lambda: "chain intact" in static_text(status))
        assert "not verified" not in static_text(status)
        table = screen.query_one("#audit-table", DeckTable)
        before = table.row_count
        promote(store, "churn:1", reason="first release")  # elsewhere, after the check
        await until(pilot, lambda: table.row_count > before)
        newer = table.row_count - before
        said = f"{newer} newer event{'s' if newer > 1 else ''} not verified yet: v checks again"
        await until(pilot, lambda: said in static_text(status))
        await pilot.press("v")
        await until(pilot, lambda: f"chain intact: {table.row_count} events" in static_text(status))
        assert "not verified" not in static_text(status)


async def test_a_long_first_summary_line_keeps_the_run_line_in_view(models_seeded) -> None:
    """The version's summary has two lines: a long first one (who approved it) is cut at the
    edge, not wrapped over the second (the run that made it, the champion)."""
    from mldeck.ml.registry import approve

    workspace, store = models_seeded
    who = "release-manager-on-call-for-the-churn-model@analytics.example.org"
    approve(store, "churn:1", reason="holdout looks fine", user=who)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_model_version(pilot, 1)
        summary = detail.query_one("#model-summary", Static)
        lines = [strip.text for strip in summary.render_lines(summary.region.reset_offset)]
        assert lines[0].strip().startswith("churn:1 approved · approval approved by release-")
        assert lines[0].rstrip().endswith("…"), lines
        assert lines[1].strip().startswith("run #1 train-gbm · created "), lines
