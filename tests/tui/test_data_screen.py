"""The Data screen through Textual's Pilot at 80x24, on dataset versions made by the real ingest."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console
from sqlalchemy import select
from textual.widgets import Static, TabbedContent
from textual.widgets._data_table import default_cell_formatter

from mldeck.data.ingest import ingest_file
from mldeck.store.models import Run, RunStatus, utcnow
from mldeck.tui.screens.data import DataScreen, VersionDetailScreen
from mldeck.tui.screens.help import HelpScreen
from mldeck.tui.widgets.histogram import HistogramPlot, column_histogram
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.topbar import TopBar

from .conftest import demo_file, make_app, settle, until

SIZE = (80, 24)


def keys(table: DeckTable) -> list[str]:
    return [key.value for key in table.rows]


def column(table: DeckTable, index: int) -> list[str]:
    return [str(table.get_row(key)[index]) for key in table.rows]


def static_text(widget: Static) -> str:
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


async def open_data(pilot) -> DataScreen:
    await settle(pilot)
    await pilot.press("3")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DataScreen)
    return screen


async def open_version(pilot, version_id: int) -> VersionDetailScreen:
    screen = await open_data(pilot)
    table = screen.query_one("#data-table", DeckTable)
    table.move_cursor(row=table.get_row_index(str(version_id)))
    await pilot.press("enter")
    await settle(pilot)
    detail = pilot.app.screen
    assert isinstance(detail, VersionDetailScreen) and detail.version_id == version_id
    return detail


async def test_versions_are_listed_newest_first_with_their_status(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(pilot)
        assert screen.query_one(TopBar).section == "data"
        table = screen.query_one("#data-table", DeckTable)
        assert keys(table) == ["4", "3", "2", "1"]
        assert column(table, 0) == ["churn:v4", "churn:v3", "churn:v2", "churn:v1 ref"]
        assert column(table, 1) == ["rejected", "warned", "accepted", "accepted"]
        assert column(table, 2) == ["400", "400", "400", "2000"]
        assert column(table, 5)[0] == "03-09 11:00"  # the version's screen gives the full time
        assert column(table, 6) == [
            "week_12_corrupted.csv",
            "week_11.csv",
            "week_10.csv",
            "reference.csv",
        ]
        assert static_text(screen.query_one("#data-status")).strip() == "4 versions"
        assert not screen.query_one("#data-running").display


async def test_the_source_files_are_readable_at_80_columns(data_seeded) -> None:
    """The arrival is said as the Runs screen says a start (month, day and minute), so the
    SOURCE column has the room for a file name; the full time was 19 columns and left 9."""
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        await open_data(pilot)
        screen = app.export_screenshot()
        for name in ("week_11.csv", "week_10.csv", "reference.csv"):
            assert name in screen, name


async def test_filter_key_cycles_rejected_warned_quarantined(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(pilot)
        table = screen.query_one("#data-table", DeckTable)
        status = screen.query_one("#data-status", Static)
        await pilot.press("f")
        await until(pilot, lambda: keys(table) == ["4"])
        assert "filter: rejected" in static_text(status)
        await pilot.press("f")
        await until(pilot, lambda: keys(table) == ["3"])
        await pilot.press("f")
        await until(pilot, lambda: keys(table) == ["4", "3"])
        assert "filter: quarantined" in static_text(status)
        await pilot.press("escape")
        await until(pilot, lambda: keys(table) == ["4", "3", "2", "1"])
        await pilot.press("f", "f", "f", "f")
        await until(pilot, lambda: len(keys(table)) == 4 and screen.filter == "all")


async def test_palette_command_lists_the_rejected(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        commands = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Go to Data", "Data: rejected", "Data: quarantined"} <= commands
        app._data_filtered("rejected")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DataScreen)
        await until(pilot, lambda: keys(screen.query_one("#data-table", DeckTable)) == ["4"])


async def test_rejected_version_lists_its_failed_checks_first(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, 4)
        assert detail.query_one(TopBar).screen_title == "churn:v4"
        summary = static_text(detail.query_one("#version-summary"))
        assert "churn:v4 rejected" in summary
        assert "source week_12_corrupted.csv" in summary
        assert "quarantine data/quarantine/churn-v4-week_12_corrupted.csv" in summary
        checks = detail.query_one("#version-checks", DeckTable)
        results = column(checks, 0)
        failed = results.count("fail")
        assert failed >= 5 and results[:failed] == ["fail"] * failed
        assert results == sorted(results, key=["fail", "warn", "pass"].index)
        names = column(checks, 1)[: results.count("fail") + results.count("warn")]
        for name in (
            "min(tenure_months)",
            "type(support_calls)",
            "categories(plan)",
            "unique_ids(customer_id)",
            "nulls(satisfaction_score)",
            "max(monthly_charges)",
        ):
            assert name in names
        assert column(checks, 2)[names.index("min(tenure_months)")] == "12"
        # The highlighted check is spelled out in full under the table.
        line = detail.query_one("#check-detail", Static)
        assert names[0] in static_text(line)
        # Its outcome, and apart from it what failing means (not "(error)" on a passed check).
        assert f"{names[0]} failed: " in static_text(line)
        assert "· it rejects the batch" in static_text(line)
        await pilot.press("j")
        await until(pilot, lambda: names[1] in static_text(line))
        await pilot.press("G")  # a passed check: what a failure would have meant, not "failing"
        await until(pilot, lambda: " passed: " in static_text(line))
        assert "· had it failed, it would " in static_text(line)
        assert "failing" not in static_text(line)
        await pilot.press("escape")
        assert isinstance(app.screen, DataScreen)


async def test_a_check_detail_is_shown_as_written_not_as_markup(data_seeded, tmp_path) -> None:
    """The reason for a ';'-separated file names the '[data] csv_separator' key: the brackets
    reach the table (they are not taken for a style tag)."""
    workspace, store = data_seeded
    bad = tmp_path / "export.csv"
    bad.write_text("a;b;c\n1;2;3\n", encoding="utf-8")
    outcome = ingest_file(workspace, store, bad)
    assert outcome.status == "rejected"
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, outcome.version_id)
        checks = detail.query_one("#version-checks", DeckTable)
        (first, *_) = checks.rows
        # What the table draws for the cell (pinned textual: its own cell formatter).
        drawn = default_cell_formatter(checks.get_row(first)[3])
        assert "set [data] csv_separator" in drawn.plain


async def test_v_validates_a_rejected_version_again_after_the_fix(data_seeded, tmp_path) -> None:
    """A batch rejected for its separator, the setting fixed in mldeck.toml: v (confirmed) runs
    'mldeck data revalidate' and the screen shows the new status and checks."""
    import re

    workspace, store = data_seeded
    batch = demo_file(tmp_path, "week_20.csv", seed=20, rows=300)
    bad = tmp_path / "export.csv"
    bad.write_text(batch.read_text(encoding="utf-8").replace(",", ";"), encoding="utf-8")
    outcome = ingest_file(workspace, store, bad)
    assert outcome.status == "rejected"
    label = f"churn:v{outcome.version}"
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, outcome.version_id)
        summary = detail.query_one("#version-summary")
        assert f"{label} rejected" in static_text(summary)
        text = workspace.config_path.read_text(encoding="utf-8")
        workspace.config_path.write_text(
            re.sub(r"^\[data\]\n", '[data]\ncsv_separator = ";"\n', text, count=1, flags=re.M)
        )
        await pilot.press("v")
        await settle(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: f"{label} accepted" in static_text(summary), timeout=60)
        await until(pilot, lambda: any(f"{label}: rejected -> accepted; d scores it" in str(n.message)
                                       for n in app._notifications))  # fmt: skip
        checks = detail.query_one("#version-checks", DeckTable)
        assert set(column(checks, 0)) == {"pass"}


async def test_quarantined_rows_show_the_reason_first(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, 4)
        await pilot.press("r")
        assert detail.query_one("#version-tabs", TabbedContent).active == "rows"
        rows = detail.query_one("#version-rows", DeckTable)
        assert app.focused is rows
        headers = [str(c.label) for c in rows.columns.values()]
        assert headers[:3] == ["REASON", "ROW", "event_time"]
        assert rows.row_count > 0
        reasons = column(rows, 0)
        assert all(reasons)
        assert any("categories(plan)" in r for r in reasons)
        status = static_text(detail.query_one("#rows-status"))
        assert f"{rows.row_count} offending rows in data/quarantine/churn-v4.rows.parquet" in status
        # The highlighted row's reasons in full under the table (the REASON cell is cut).
        widest = max(range(rows.row_count), key=lambda i: len(reasons[i]))
        rows.move_cursor(row=widest)
        await settle(pilot)
        said = static_text(detail.query_one("#row-detail"))
        assert said.startswith(f"row {column(rows, 1)[widest]}: ")
        assert reasons[widest] in said.replace("\n", "")


async def test_warned_and_accepted_versions(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, 3)
        checks = detail.query_one("#version-checks", DeckTable)
        assert column(checks, 0)[:2] == ["warn", "pass"]
        assert column(checks, 1)[0] == "max(monthly_charges)"
        rows = detail.query_one("#version-rows", DeckTable)
        assert column(rows, 0) == ["max(monthly_charges)"]
        assert column(rows, 1) == ["7"]

        app.pop_screen()
        detail = await open_version(pilot, 2)
        assert "pass" in column(detail.query_one("#version-checks", DeckTable), 0)
        assert detail.query_one("#version-rows", DeckTable).row_count == 0
        assert "no offending rows" in static_text(detail.query_one("#rows-status"))
        assert "quarantine none" in static_text(detail.query_one("#version-summary"))


async def test_examples_stand_in_when_the_rows_file_is_gone(data_seeded) -> None:
    workspace, store = data_seeded
    (workspace.quarantine_dir / "churn-v4.rows.parquet").unlink()
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, 4)
        rows = detail.query_one("#version-rows", DeckTable)
        assert rows.row_count > 0
        assert "min(tenure_months)" in column(rows, 0)
        assert "stored in the validation report" in static_text(detail.query_one("#rows-status"))


async def test_profile_draws_the_column_next_to_the_reference(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, 4)
        await pilot.press("p")
        profile = detail.query_one("#version-profile", DeckTable)
        assert app.focused is profile
        assert "tenure_months" in keys(profile)
        plot = detail.query_one("#profile-plot", HistogramPlot)

        profile.move_cursor(row=profile.get_row_index("tenure_months"))
        await until(pilot, lambda: plot.data is not None and plot.data.column == "tenure_months")
        names = [name for name, _ in plot.data.series]
        assert names == ["churn:v4", "reference"]
        # One bar per histogram bin, the under- and overflow bins included.
        assert plot.data.labels[0].startswith("<") and plot.data.labels[-1].startswith("≥")
        for _, shares in plot.data.series:
            assert len(shares) == len(plot.data.labels) and abs(sum(shares) - 100) < 1e-6
        # Negative tenures (corrupted rows) land in the underflow bin, above the reference's.
        assert plot.data.series[0][1][0] > plot.data.series[1][1][0]
        assert "█" in str(plot.render())
        caption = static_text(detail.query_one("#profile-caption"))
        assert "tenure_months" in caption and "reference" in caption

        await pilot.press("j")  # the next column is drawn as the cursor moves
        await until(pilot, lambda: plot.data is not None and plot.data.column != "tenure_months")

        profile.move_cursor(row=profile.get_row_index("plan"))
        await until(pilot, lambda: plot.data is not None and plot.data.column == "plan")
        assert {"basic", "standard", "premium"} <= set(plot.data.labels)
        assert plot.data.unit == "values per category"

        profile.move_cursor(row=profile.get_row_index("event_time"))
        await until(pilot, lambda: plot.data is None)
        # No empty box: the caption says why, first, and the chart gives the table its room.
        caption = static_text(detail.query_one("#profile-caption"))
        assert caption.startswith("event_time: no histogram: datetime values from 2026-")
        assert not plot.display
        profile.move_cursor(row=profile.get_row_index("plan"))
        await until(pilot, lambda: plot.data is not None and plot.display)

        await pilot.press("z")
        assert detail.query_one("#profile").has_class("zoomed")


async def test_the_reference_is_drawn_alone(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, 1)
        assert "reference" in static_text(detail.query_one("#version-summary"))
        await pilot.press("p")
        profile = detail.query_one("#version-profile", DeckTable)
        plot = detail.query_one("#profile-plot", HistogramPlot)
        profile.move_cursor(row=profile.get_row_index("monthly_charges"))
        await until(pilot, lambda: plot.data is not None and plot.data.column == "monthly_charges")
        assert [name for name, _ in plot.data.series] == ["churn:v1"]
        await pilot.press("d")  # the reference is what batches are compared with: said at once
        await settle(pilot)
        assert app.screen is detail
        assert any("churn:v1 is not checked for drift: it is the dataset's reference"
                   in str(n.message) for n in app._notifications)  # fmt: skip


async def test_a_version_ingested_elsewhere_appears_and_the_cursor_stays(data_seeded) -> None:
    workspace, store = data_seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(pilot)
        table = screen.query_one("#data-table", DeckTable)
        await pilot.press("j", "j")
        assert table.selected_key() == "2"
        batch = demo_file(workspace.root / "files", "week_13.csv", seed=5, rows=300)
        writer = threading.Thread(target=ingest_file, args=(workspace, store, batch))
        writer.start()
        writer.join()
        await until(pilot, lambda: keys(table)[:1] == ["5"])
        assert column(table, 1)[0] == "accepted"
        assert table.selected_key() == "2"
        assert static_text(screen.query_one("#data-status")).strip() == "5 versions"


async def test_a_running_validation_shows_its_progress(data_seeded) -> None:
    workspace, store = data_seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(pilot)
        line = screen.query_one("#data-running", Static)
        assert not line.display

        def start() -> None:  # what ingest records while a big file is being validated
            now = utcnow()
            with store.write() as session:
                session.add(
                    Run(name="validate huge.parquet", kind="validate", trigger="new_data",
                        status=RunStatus.RUNNING, created_at=now, started_at=now,
                        heartbeat_at=now, progress=0.25, progress_message="validating 812.4 MB")
                )  # fmt: skip

        threading.Thread(target=start).start()
        await until(pilot, lambda: line.display)
        text = static_text(line)
        assert "running validate huge.parquet 25%" in text
        assert "validating 812.4 MB" in text

        with store.write() as session:
            run = session.execute(select(Run).where(Run.name == "validate huge.parquet")).scalar()
            run.status, run.ended_at = RunStatus.SUCCEEDED, utcnow()
            session.add(run)
        await until(pilot, lambda: not line.display)


async def test_empty_store_says_how_to_get_data(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(pilot)
        assert screen.query_one("#data-table", DeckTable).row_count == 0
        status = static_text(screen.query_one("#data-status"))
        assert "no dataset versions yet: drop files into data/incoming/" in status
        assert "mldeck data ingest FILE" in status


async def test_help_lists_the_keys_of_both_screens(data_seeded) -> None:
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        await open_data(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "quarantined" in static_text(app.screen.query_one("#help-about"))
        listed = static_text(app.screen.query_one("#help-keys"))
        assert "Filter" in listed and "All versions" in listed
        await pilot.press("escape")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VersionDetailScreen)
        await pilot.press("question_mark")
        listed = static_text(app.screen.query_one("#help-keys"))
        for description in ("Back", "Checks", "Quarantined rows", "Profile"):
            assert description in listed


def test_histogram_of_profiles_without_a_reference_or_with_other_bins() -> None:
    column = {"kind": "int", "histogram": {"edges": [0.0, 1.0, 2.0], "counts": [0, 5, 3, 2]}}
    chart = column_histogram("calls", column, None, label="d:v2")
    assert chart.labels == ("<0", "0", "1", "≥2")
    assert chart.series == (("d:v2", (0.0, 50.0, 30.0, 20.0)),)
    other = {"kind": "int", "histogram": {"edges": [0.0, 5.0], "counts": [1, 1, 1]}}
    chart = column_histogram("calls", column, other, label="d:v2")
    assert len(chart.series) == 1 and "bins differ" in chart.note
    assert "before the dataset had a reference" in column_histogram(
        "calls", {"kind": "float"}, None, label="d:v1"
    )
    many = {"kind": "string", "frequencies": {f"c{i}": 20 - i for i in range(20)}, "other": 0}
    chart = column_histogram("city", many, None, label="d:v1")
    assert len(chart.labels) == 12 and chart.labels[-1] == "(other)"
    assert abs(sum(chart.series[0][1]) - 100) < 1e-6


def watched_workspace(tmp_path):
    """A new workspace whose incoming files settle in 0.1 s, and its store."""
    from mldeck.workspace import init_workspace, load_workspace, open_workspace_store

    workspace = init_workspace(tmp_path / "ws", name="watched")
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write('\n[data]\ndataset = "events"\nsettle_seconds = 0.1\n')
    workspace = load_workspace(workspace.root)
    return workspace, open_workspace_store(workspace)


async def test_a_batch_dropped_into_incoming_is_ingested_and_listed(tmp_path) -> None:
    """The console watches data/incoming/: a dropped file shows up on the Data screen."""
    from datetime import datetime

    from mldeck.demo import generate_batch, write_batch
    from mldeck.tui.app import MldeckApp

    workspace, store = watched_workspace(tmp_path)
    app = MldeckApp(workspace, store, poll_seconds=0.2)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            assert app.watcher is not None and app.watcher_state == "watched by this console"
            batch = generate_batch(50, start=datetime(2026, 3, 2), seed=3)
            write_batch(batch, workspace.incoming_dir / "week 10.csv")
            table = app.screen.query_one(DeckTable)
            await until(pilot, lambda: table.row_count == 1, timeout=30)
            assert "events:v1" in str(table.get_row_at(0)[0])
            assert not (workspace.incoming_dir / "week 10.csv").exists()
            # A file of another type has no version: the status line counts it all the same.
            (workspace.incoming_dir / "notes.md").write_text("# notes\n", encoding="utf-8")
            status = app.screen.query_one("#data-status", Static)
            await until(pilot, lambda: "1 file not ingested" in static_text(status), timeout=30)
            assert "'mldeck data quarantine' says why" in static_text(status)
    finally:
        store.close()


async def test_a_second_console_takes_over_watching_when_the_first_stops(tmp_path) -> None:
    """Another process's watcher holds data/incoming/; when it stops, this console takes it."""
    from datetime import datetime

    from mldeck.data.watcher import IncomingWatcher
    from mldeck.demo import generate_batch, write_batch
    from mldeck.tui.app import MldeckApp

    workspace, store = watched_workspace(tmp_path)
    first = IncomingWatcher(workspace, store)
    assert first.start()
    app = MldeckApp(workspace, store, poll_seconds=0.2)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            assert app.watcher is None and app.watcher_state == "watched by another process"
            first.stop(timeout=10)
            await until(pilot, lambda: app.watcher_state == "watched by this console")
            write_batch(generate_batch(50, start=datetime(2026, 3, 2), seed=3),
                        workspace.incoming_dir / "week 11.csv")  # fmt: skip
            table = app.screen.query_one(DeckTable)
            await until(pilot, lambda: table.row_count == 1, timeout=30)
    finally:
        first.stop(timeout=10)
        store.close()


async def test_scoring_without_a_champion_is_refused_before_the_dialog(data_seeded) -> None:
    from mldeck.tui.screens.confirm import ConfirmScreen

    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_version(pilot, 2)
        assert "accepted" in static_text(detail.query_one("#version-summary"))
        await pilot.press("s")
        await settle(pilot)
        assert app.screen is detail and not isinstance(app.screen, ConfirmScreen)
        assert any("cannot be scored: no model is champion yet" in str(n.message)
                   for n in app._notifications)  # fmt: skip


def footer_keys_in_view(app) -> list[str]:
    """The footer's keys drawn whole within the screen's width (a key past it is cut)."""
    from textual.widgets._footer import FooterKey

    width = app.screen.size.width
    return [
        key.key
        for key in app.screen.query(FooterKey)
        if key.region.width and key.region.right <= width
    ]


async def test_a_versions_footer_keeps_its_actions_and_quit_at_80_columns(data_seeded) -> None:
    """On every tab of a version, the footer shows its actions, help and q whole (the tab keys,
    c r p, are in its help: the tabs name themselves); they went past 80 columns, q first."""
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        await open_version(pilot, 2)
        for tab in ("c", "r", "p"):
            await pilot.press(tab)
            await settle(pilot)
            shown = footer_keys_in_view(app)
            for key in ("escape", "s", "d", "v", "question_mark", "q"):
                assert key in shown, (tab, shown)
        assert "z" in shown  # on the profile tab, zooming too
        await pilot.press("question_mark")
        listed = static_text(app.screen.query_one("#help-keys"))
        assert "c " in listed and "Checks" in listed


async def test_the_empty_data_screen_says_its_whole_sentence_at_80_columns(seeded) -> None:
    """No versions yet: how to get data is said whole under the table, not cut at one line."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_data(pilot)
        status = screen.query_one("#data-status", Static)
        lines = [strip.text.strip() for strip in status.render_lines(status.region.reset_offset)]
        said = " ".join(line for line in lines if line)
        assert said.endswith("or run 'mldeck data ingest FILE'"), lines
        assert "q" in footer_keys_in_view(app)


@pytest.mark.parametrize(
    ("key", "said", "result"),
    [
        ("d", "checking churn:v2 for drift…",
         {"batch": "churn:v2", "n_drifted": 0, "n_features": 21, "dataset_drift": False}),
        ("v", "validating churn:v2 again…",
         {"version": "churn:v2", "previous_status": "accepted", "status": "accepted",
          "reasons": []}),
    ],
)  # fmt: skip
async def test_a_long_action_says_it_started_before_it_ends(data_seeded, key, said, result) -> None:
    """d and v run a command in a child process for seconds or minutes: once confirmed, the
    screen says the work started (and where its run is), not only when it ends."""
    app = make_app(*data_seeded)
    release = threading.Event()
    asked: list[tuple[str, ...]] = []

    def run_json(*args: str, ok: tuple[int, ...] = (0,)) -> dict:
        asked.append(args)
        release.wait(30)  # the command still running
        return result

    app.child_commands.run_json = run_json
    try:
        async with app.run_test(size=SIZE) as pilot:
            await open_version(pilot, 2)
            await pilot.press(key)
            await settle(pilot)
            await pilot.press("enter")  # confirm
            await until(pilot, lambda: len(asked) == 1)
            await until(pilot, lambda: any(said in str(n.message) for n in app._notifications))
            assert "Runs screen" in next(
                str(n.message) for n in app._notifications if said in str(n.message)
            )
            release.set()
            await settle(pilot)
    finally:
        release.set()
