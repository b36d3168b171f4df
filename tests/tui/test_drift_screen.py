"""The Drift screen, the alerts ('!') and the KPIs on the Overview, through Pilot at 80x24 on a
real store: a reference, a trained champion, and batches checked by the real monitor."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mldeck.data.ingest import ingest_file
from mldeck.ml import registry
from mldeck.ml.train import train
from mldeck.monitor import check_batch
from mldeck.store.engine import Store
from mldeck.store.models import Alert, DriftReport, Run
from mldeck.tui.screens.alerts import AlertsScreen
from mldeck.tui.screens.drift import DriftScreen, TimelinePlot
from mldeck.tui.widgets.histogram import HistogramPlot
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Packed
from mldeck.tui.widgets.topbar import TopBar
from mldeck.workspace import Workspace, init_workspace, load_workspace, open_workspace_store

from .conftest import DATA_T0, demo_file, make_app, screen_lines, seed_data, settle, until

SIZE = (80, 24)
MODEL = (
    '\n[model]\nname = "churn"\ntarget = "churned"\nparams = {max_iter = 20}\nthreads = 1\n'
    "\n[gates]\nmin = {roc_auc = 0.6}\n\n[monitor]\ndrift_share = 0.15\n"
)


def pin_times(store: Store) -> None:
    """Reports, their runs and alerts at fixed times, so what the screens show never varies."""
    with store.write() as session:
        for report in session.execute(select(DriftReport)).scalars():
            report.created_at = DATA_T0 + timedelta(days=1, hours=report.id)
            session.add(report)
        for alert in session.execute(select(Alert)).scalars():
            alert.created_at = alert.updated_at = DATA_T0 + timedelta(days=1, hours=alert.id)
            session.add(alert)


def seed_drift(workspace: Workspace, store: Store) -> Workspace:
    """seed_data's versions, a champion trained on them, and three batches checked: the
    accepted one (quiet), the warned one, and a covariate-shifted one (dataset drift)."""
    workspace = seed_data(workspace, store)
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write(MODEL)
    workspace = load_workspace(workspace.root)
    train(workspace, store)
    registry.approve(store, "churn:1", reason="seeded")
    registry.promote(store, "churn:1", reason="seeded")
    shifted = demo_file(workspace.root / "files", "week_13_shift.csv", scenario="covariate_shift",
                        seed=5, rows=400)  # fmt: skip
    shift_version = ingest_file(workspace, store, shifted).version_id
    for version in (2, 3, shift_version):
        check_batch(workspace, store, version)
    pin_times(store)
    return workspace


@pytest.fixture(scope="session")
def drift_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drift-template") / "ws"
    workspace = init_workspace(root, name="snapshot-demo")
    store = open_workspace_store(workspace)
    seed_drift(workspace, store)
    store.close()
    return root


@pytest.fixture
def drift_seeded(drift_template: Path, tmp_path: Path) -> tuple[Workspace, Store]:
    root = shutil.copytree(drift_template, tmp_path / "ws")
    workspace = load_workspace(root)
    store = open_workspace_store(workspace)
    yield workspace, store
    store.close()


def feature_rows(app) -> list[str]:
    table = app.screen.query_one("#drift-features", DeckTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


async def test_the_newest_batch_shows_its_shifted_features_first(drift_seeded) -> None:
    app = make_app(*drift_seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert isinstance(app.screen, DriftScreen)
        summary = str(app.screen.query_one("#drift-summary").render())
        assert "churn:v5" in summary and "DATASET DRIFT" in summary
        # At 80 columns the ends of the lines (the check's time, the holdout) were cut off.
        assert "checked " in summary and "…" not in summary
        assert "estimated" not in summary or "holdout " in summary
        rows = feature_rows(app)
        # The covariate shift moves these four; they lead the table.
        assert set(rows[:4]) == {"monthly_charges", "total_charges", "data_usage_gb", "device_os"}
        assert rows[-2:] == ["churned (label)", "score (prediction)"]
        plot = app.screen.query_one("#drift-plot", HistogramPlot)
        assert plot.data is not None and plot.data.column == rows[0]
        assert [name for name, _ in plot.data.series] == ["churn:v5", "reference"]
        await pilot.press("j")
        await settle(pilot)
        assert plot.data.column == rows[1]


async def test_batches_and_the_timeline(drift_seeded) -> None:
    app = make_app(*drift_seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        batches = app.screen.query_one("#drift-batches", DeckTable)
        assert batches.row_count == 3
        await pilot.press("j", "j", "enter")
        await settle(pilot)
        summary = str(app.screen.query_one("#drift-summary").render())
        assert "churn:v2" in summary and "no dataset drift" in summary
        await pilot.press("right_square_bracket")  # newer
        await settle(pilot)
        assert "churn:v3" in str(app.screen.query_one("#drift-summary").render())
        await pilot.press("right_square_bracket")
        await settle(pilot)
        # Two presses quicker than a reload (both before it ends) move two reports, not one.
        features = app.screen.query_one("#drift-features", DeckTable)
        features.move_cursor(row=features.row_count - 1, animate=False)
        app.screen.action_step(1)  # older: '['
        app.screen.action_step(1)
        await settle(pilot)
        assert "churn:v2" in str(app.screen.query_one("#drift-summary").render())
        # Another report: its table starts at the top (the most severe), not where it was.
        assert features.cursor_row == 0 and features.scroll_y == 0
        await pilot.press("left_square_bracket")  # v2 is the oldest: said, not silent
        await settle(pilot)
        assert any("this is the oldest report" in str(n.message) for n in app._notifications)
        await pilot.press("t")
        await settle(pilot)
        timeline = app.screen.query_one("#drift-timeline", TimelinePlot)
        assert [r.batch for r in timeline.rows] == ["churn:v2", "churn:v3", "churn:v5"]
        assert [r.alerts > 0 for r in timeline.rows] == [False, False, True]
        assert [r.performance_alerts for r in timeline.rows] == [0, 0, 0]  # drift alerts only
        # What the lines are is said beside the charts (plotext's legend hid the first points).
        legend = str(app.screen.query_one("#drift-timeline-legend").render())
        assert "drift share %" in legend and "threshold" in legend and "▲ drift alerts" in legend
        assert "drift share" not in "".join(screen_lines(app, "#drift-timeline"))
        # A bigger window: the charts are built again for it (they kept the old size).
        await pilot.resize_terminal(120, 34)
        await settle(pilot)
        tops = [line for line in screen_lines(app, "#drift-timeline") if "┌" in line]
        assert tops and all(len(line) > 110 for line in tops), tops


async def test_back_on_the_newest_report_the_screen_follows_new_checks(drift_seeded) -> None:
    """'[' then ']' is back on the newest: a batch checked after it is shown, as before any
    step (it stayed on the report stepped back to, while a newer one raised an alert)."""
    workspace, store = drift_seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        summary = app.screen.query_one("#drift-summary")
        assert str(summary.render()).startswith("churn:v5")
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert str(summary.render()).startswith("churn:v3")
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert str(summary.render()).startswith("churn:v5")
        # Another process checks a new batch: the newest report of the newest batch.
        newer = demo_file(workspace.root / "files", "week_14.csv", scenario="none", seed=6,
                          rows=200)  # fmt: skip
        version = ingest_file(workspace, store, newer).version_id
        check_batch(workspace, store, version)
        await until(pilot, lambda: str(summary.render()).startswith(f"churn:v{version}"))
        # An older batch checked again does not take the screen from the newest batch.
        check_batch(workspace, store, 3)
        await settle(pilot)
        assert str(summary.render()).startswith(f"churn:v{version}")


async def test_a_batch_checked_again_keeps_its_place_over_time(drift_seeded) -> None:
    workspace, store = drift_seeded
    again = check_batch(workspace, store, 2).report_id  # the oldest batch, checked last
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        assert app.screen.query_one("#drift-batches", DeckTable).row_count == 4  # every check
        timeline = app.screen.query_one("#drift-timeline", TimelinePlot)
        # One point per batch, in the order they arrived; v2's is its newest check.
        assert [r.batch for r in timeline.rows] == ["churn:v2", "churn:v3", "churn:v5"]
        assert timeline.rows[0].id == again


async def test_alerts_are_counted_everywhere_then_acknowledged_and_resolved(drift_seeded) -> None:
    workspace, store = drift_seeded
    app = make_app(workspace, store)

    def statuses() -> list[str]:
        with store.read() as session:
            return sorted(session.execute(select(Alert.status)).scalars())

    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        active = len(statuses())
        assert active >= 1
        assert app.screen.query_one(TopBar).alerts[0] == active
        await pilot.press("2")
        await settle(pilot)
        assert app.screen.query_one(TopBar).alerts[0] == active
        await pilot.press("exclamation_mark")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert app.screen.query_one("#alerts-table", DeckTable).row_count == active
        await pilot.press("a")
        await pilot.press(*"on it", "enter")
        await until(pilot, lambda: "acknowledged" in statuses())
        await pilot.press("r")
        await pilot.press("enter")
        await until(pilot, lambda: "resolved" in statuses())
        # The top bar follows the store on the app's next poll.
        await until(pilot, lambda: app.screen.query_one(TopBar).alerts[0] == active - 1)
        await pilot.press("s")  # all alerts, resolved ones too
        await settle(pilot)
        table = app.screen.query_one("#alerts-table", DeckTable)
        assert table.row_count == active
        with store.read() as session:
            done = session.execute(select(Alert.id).where(Alert.status == "resolved")).scalar()
        table.move_cursor(row=table.get_row_index(str(done)))
        await pilot.press("r")  # already resolved: said at once, no dialog to confirm for nothing
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert any(f"alert {done} is already resolved" in str(n.message)
                   for n in app._notifications)  # fmt: skip
        await pilot.press("escape")
        assert not isinstance(app.screen, AlertsScreen)


async def test_a_and_r_on_an_empty_alerts_list_say_so(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("exclamation_mark")
        await settle(pilot)
        assert app.screen.query_one("#alerts-table", DeckTable).row_count == 0
        await pilot.press("a", "r")
        await settle(pilot)
        said = [str(n.message) for n in app._notifications]
        assert "no alert to acknowledge: the list is empty (s shows resolved ones too)" in said
        assert "no alert to resolve: the list is empty (s shows resolved ones too)" in said


async def test_acknowledge_and_resolve_say_what_they_do(seeded) -> None:
    """The dialogs say what acknowledging and resolving change, not only the alert's title."""
    from mldeck.tui.screens.confirm import ConfirmScreen

    workspace, store = seeded
    with store.write() as session:
        session.add(Alert(rule="dataset drift", severity="warning", status="open",
                          dedup_key="dataset-drift:churn", title="churn:v3: 4 of 21 features "
                          "drifted", message="", details={}, created_at=DATA_T0,
                          updated_at=DATA_T0))  # fmt: skip
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("exclamation_mark")
        await settle(pilot)
        for key, said in (("a", "the alert stays active, counted in the top bar, until it is "
                                "resolved"),
                          ("r", "it leaves the active alerts; a later check that finds its "
                                "condition again raises a new one")):  # fmt: skip
            await pilot.press(key)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            description = " ".join(app.screen.description.split())
            assert description.startswith("churn:v3: 4 of 21 features drifted"), key
            assert said in description, key
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, AlertsScreen))


async def test_no_report_yet_offers_no_key_that_does_nothing(seeded) -> None:
    """Before any check, [ and ] have no report to step through: the footer does not offer
    them (as c, which has nothing to re-check), instead of keys that do nothing."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert isinstance(app.screen, DriftScreen)
        shown = {active.binding.key for active in app.screen.active_bindings.values()
                 if active.enabled}  # fmt: skip
        assert not shown & {"left_square_bracket", "right_square_bracket", "c"}, shown


async def test_d_on_a_dataset_version_checks_it_and_the_drift_screen_follows(drift_seeded) -> None:
    from mldeck.tui.screens.data import VersionDetailScreen

    workspace, store = drift_seeded

    def reports() -> int:
        with store.read() as session:
            return len(session.execute(select(DriftReport.id)).all())

    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        app.push_screen(VersionDetailScreen(2))
        await settle(pilot)
        await pilot.press("d")
        await pilot.press("enter")
        await until(pilot, lambda: reports() == 4, timeout=60)
        await settle(pilot)
        await pilot.press("escape", "5")
        await settle(pilot)
        assert "churn:v2" in str(app.screen.query_one("#drift-summary").render())


async def test_the_overview_shows_the_kpis(drift_seeded) -> None:
    app = make_app(*drift_seeded)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        text = str(app.screen.query_one("#kpi-line", Packed).render())
        assert "1 promotion in 30d" in text and "churn:v5" in text and "drift 19%" in text


async def test_the_overview_kpis_fit_a_narrow_terminal_whole(drift_seeded) -> None:
    app = make_app(*drift_seeded)
    async with app.run_test(size=(60, 30)) as pilot:
        await settle(pilot)
        line = app.screen.query_one("#kpi-line", Packed)
        lines = str(line.render()).splitlines()
        # Nothing cut: every item is there whole, each on a line that fits, items never split.
        assert len(lines) > 2 and all(len(x) <= line.content_size.width for x in lines)
        assert line.size.height == len(lines)
        text = " ".join(lines)
        assert "…" not in text and "restore " in text and "runs ok " in text
        assert any(x.lstrip().startswith("change failures") for x in lines)
        assert lines[1].startswith(" " * len("Delivery "))


async def test_read_only_cannot_acknowledge_or_check(drift_seeded) -> None:
    workspace, store = drift_seeded
    app = make_app(workspace, store, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("exclamation_mark")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)  # no confirmation dialog opened
    with store.read() as session:
        assert len(session.execute(select(DriftReport.id)).all()) == 3
        assert "acknowledged" not in session.execute(select(Alert.status)).scalars().all()
        assert not session.execute(select(Run.id).where(Run.status == "running")).all()


def test_drift_snapshot(snap_compare, drift_seeded) -> None:
    async def go(pilot) -> None:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)

    assert snap_compare(make_app(*drift_seeded), run_before=go, terminal_size=SIZE)


def test_drift_over_time_snapshot(snap_compare, drift_seeded) -> None:
    async def go(pilot) -> None:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)

    assert snap_compare(make_app(*drift_seeded), run_before=go, terminal_size=SIZE)


def test_alerts_snapshot(snap_compare, drift_seeded) -> None:
    async def go(pilot) -> None:
        await settle(pilot)
        await pilot.press("exclamation_mark")
        await settle(pilot)

    assert snap_compare(make_app(*drift_seeded), run_before=go, terminal_size=SIZE)


async def test_at_60x20_the_feature_table_shows_three_rows(drift_seeded) -> None:
    """Its header, border and scrollbar took the whole of its minimum height: no row showed,
    and the cursor moved on rows out of sight."""
    app = make_app(*drift_seeded)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        shown = screen_lines(app, "#drift-features")
        rows = feature_rows(app)
        assert sum(any(line.lstrip("│ ").startswith(name) for line in shown) for name in rows) >= 3
