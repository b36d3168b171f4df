"""The console driven through Textual's Pilot at 80x24 on a real, seeded store."""

from __future__ import annotations

import io
import os
import signal
import threading
from datetime import UTC, datetime

import pytest
from rich.console import Console
from textual.app import App
from textual.widgets import Input, Log, Static, TabbedContent

import mldeck
from mldeck.store.models import RunLog
from mldeck.tui.screens import SECTIONS
from mldeck.tui.screens.alerts import AlertsScreen
from mldeck.tui.screens.help import HelpScreen
from mldeck.tui.screens.overview import OverviewScreen
from mldeck.tui.screens.runs import RunCompareScreen, RunDetailScreen, RunsScreen
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.topbar import TopBar
from mldeck.workspace import init_workspace, open_workspace_store

from .conftest import make_app, settle, until

SIZE = (80, 24)


def table_ids(table: DeckTable) -> list[int]:
    return [int(key.value) for key in table.rows]


def static_text(widget: Static) -> str:
    """What a Static shows, as plain text (whatever renderable it holds)."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


async def test_overview_shows_counts_champion_and_last_runs(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        runs_card = static_text(app.screen.query_one("#card-runs"))
        assert "8 runs" in runs_card
        models_card = static_text(app.screen.query_one("#card-models"))
        assert "churn:1" in models_card
        assert "integrity ok" in str(app.screen.query_one("#store-line").render())
        last = app.screen.query_one("#last-runs", DeckTable)
        assert table_ids(last) == [8, 7, 6, 5, 4, 3, 2, 1]
        await until(pilot, lambda: app.screen.query_one(TopBar).champion == "churn:1")


async def test_mark_two_runs_and_compare_them(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#runs-table", DeckTable)
        await pilot.press("c")  # nothing marked: said how
        assert app.screen is screen
        assert any("mark 2 to 8 runs with space" in str(n.message) for n in app._notifications)
        for run_id in (3, 4):
            table.move_cursor(row=table.get_row_index(str(run_id)))
            await pilot.press("space")
        assert [str(table.get_row(str(i))[0]) for i in (3, 4, 5)] == ["● 3", "● 4", "5"]
        await pilot.press("c")
        await settle(pilot)
        compared = app.screen
        assert isinstance(compared, RunCompareScreen) and compared.run_ids == [3, 4]
        rows = compared.query_one("#compare-table", DeckTable)
        values = {
            str(rows.get_row(key)[1]): [str(c) for c in rows.get_row(key)] for key in rows.rows
        }
        assert values["metric.loss"][2:] == ["0.21", "-"] and values["metric.loss"][0] == "*"
        assert values["param.learning_rate"][0] == "" and values["status"][2:] == [
            "succeeded",
            "failed",
        ]
        # Under the table, the highlighted field's values whole (the columns cut them).
        rows.move_cursor(row=rows.get_row_index("metric.loss"))
        await settle(pilot)
        said = static_text(compared.query_one("#compare-status"))
        assert said.startswith("metric.loss: #3 0.21 · #4 -\n"), said
        await pilot.press("d")  # only what differs
        shown = [str(rows.get_row(key)[1]) for key in rows.rows]
        assert "status" in shown and "param.learning_rate" not in shown
        assert "showing only those" in static_text(compared.query_one("#compare-status"))
        await pilot.press("escape")
        assert app.screen is screen


async def test_navigate_filter_and_open_a_run(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one("#runs-table", DeckTable)
        assert len(table_ids(table)) == 8

        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"status:failed", "enter")
        await until(pilot, lambda: table_ids(table) == [4])
        assert "filter: status:failed" in static_text(screen.query_one("#runs-status"))

        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, RunDetailScreen) and detail.run_id == 4
        await pilot.press("e")
        assert detail.query_one(TabbedContent).active == "error"
        assert "Input X contains NaN" in static_text(detail.query_one("#run-error"))

        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("slash", "escape")
        await until(pilot, lambda: len(table_ids(table)) == 8)


async def test_the_palettes_runs_filter_works_before_the_runs_screen_was_built_and_over_it(
    seeded,
) -> None:
    """'Runs: failed' before the Runs screen was ever shown ended the console with a traceback
    (its filter field did not exist yet); with a run's detail open over the list, the filter
    was dropped without a word."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        app._runs_filtered("status:failed")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one("#runs-table", DeckTable)
        await until(pilot, lambda: table_ids(table) == [4])
        await pilot.press("slash", "escape")
        await until(pilot, lambda: len(table_ids(table)) == 8)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        app._runs_filtered("status:failed")
        await settle(pilot)
        assert app.screen is screen
        await until(pilot, lambda: table_ids(table) == [4])


async def test_run_detail_shows_params_metrics_and_logs(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.push_screen(RunDetailScreen(3))
        await settle(pilot)
        detail = app.screen
        params = detail.query_one("#run-params", DeckTable)
        assert "learning_rate" in {str(params.get_row(k)[0]) for k in params.rows}
        assert app.focused is params  # j and k move in it without a click or tab first
        metrics = detail.query_one("#run-metrics", DeckTable)
        rows = {str(metrics.get_row(k)[0]): metrics.get_row(k) for k in metrics.rows}
        assert set(rows) == {"loss", "val_auc"}
        assert str(rows["val_auc"][1]) == "0.856" and str(rows["val_auc"][5]) == "40"
        await pilot.press("l")
        log = detail.query_one("#run-log", Log)
        assert log.line_count == 30 and "boosting round 290" in log.lines[-1]


async def test_a_tab_takes_the_keys_and_long_log_lines_scroll_sideways(seeded) -> None:
    workspace, store = seeded
    with store.write() as session:  # a line far wider than 80 columns, as a path often is
        session.add(RunLog(run_id=4, ts=datetime.now(UTC), message="artifact " + "ab/" * 60))
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.push_screen(RunDetailScreen(4))
        await settle(pilot)
        detail = app.screen
        await pilot.press("l")
        await settle(pilot)
        log = detail.query_one("#run-log", Log)
        assert app.focused is log
        assert log.virtual_size.width > log.size.width
        await pilot.press("right", "right", "right")
        assert log.scroll_x > 0
        await pilot.press("m")
        assert app.focused is detail.query_one("#run-metrics", DeckTable)
        await pilot.press("p")
        assert app.focused is detail.query_one("#run-params", DeckTable)


async def test_filter_typo_is_reported_not_raised(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("slash", *"status:exploded")
        status = app.screen.query_one("#runs-status", Static)
        await until(pilot, lambda: "unknown status" in static_text(status))
        # The list of another filter is not left standing under the error.
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DeckTable)
        assert table_ids(table) == []
        # The whole message is on the screen (it lists the statuses), not its first line.
        message = static_text(status).strip()
        assert len(message) > status.size.width  # too long for one line at 80 columns
        assert status.size.height * (status.size.width - 2) >= len(message)
        await pilot.press("escape")  # the filter cleared: every run again
        await until(pilot, lambda: len(table_ids(table)) == 8)


async def test_the_store_line_names_the_file_of_a_workspace_in_any_folder(tmp_path) -> None:
    """The store's URL spells a folder named 'team [a]' as 'team %5Ba%5D': the line says the
    file's path, relative to the workspace."""
    workspace = init_workspace(tmp_path / "team [a]" / "ws", name="brackets")
    store = open_workspace_store(workspace)
    try:
        app = make_app(workspace, store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            line = str(app.screen.query_one("#store-line").render())
            assert line.startswith("Store sqlite .mldeck/store.db · "), line
    finally:
        store.close()


async def test_help_lists_the_screen_and_its_keys(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        about = static_text(app.screen.query_one("#help-about"))
        assert "status:failed" in about
        keys = app.screen.query_one("#help-keys", Static)
        assert "Filter" in static_text(keys) and "j k g G" in static_text(keys)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        # The pipeline has no table: no table keys in its help. Every screen names itself.
        for key, title, table in (("6", "Pipeline", False), ("exclamation_mark", "Alerts", True)):
            await pilot.press(key)
            await settle(pilot)
            await pilot.press("question_mark")
            assert app.screen.query_one("#help-box").border_title == f"Help · {title}"
            keys = static_text(app.screen.query_one("#help-keys", Static))
            assert ("j k g G" in keys) is table
            await pilot.press("escape")


def shown(widget: Static) -> str:
    """The text a Static draws, as the widget itself turns its content into text."""
    return str(widget.render())


async def test_help_and_text_from_the_store_are_shown_as_written(seeded) -> None:
    """Help names config tables ('[monitor]', '[gates]'), and a filter or a name may hold any
    brackets: each is shown as written, and an unbalanced '[/x' does not stop the console."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        keys = [str(number) for number in range(1, len(SECTIONS) + 1)]
        for key in [*keys, "exclamation_mark"]:
            await pilot.press(key)
            await settle(pilot)
            about = type(app.screen).HELP
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            assert shown(app.screen.query_one("#help-about", Static)) == about
            await pilot.press("escape")
        assert isinstance(app.screen, AlertsScreen)
        assert "[monitor]" in AlertsScreen.HELP  # what the loop above saw kept
        await pilot.press("2")
        await settle(pilot)
        app.screen.query_one("#runs-filter", Input).value = "[/x"
        status = app.screen.query_one("#runs-status", Static)
        await until(pilot, lambda: shown(status) == "no runs match the filter · filter: [/x")


async def test_table_column_labels_are_shown_as_written() -> None:
    """Column labels name a file's columns ('[x] amount' is a valid CSV header)."""

    class Host(App):
        def compose(self):
            yield DeckTable()

    app = Host()
    async with app.run_test():
        table = app.query_one(DeckTable)
        table.add_columns("[x] amount", "note [/x", "[red]flag")
        assert [str(c.label) for c in table.columns.values()] == [
            "[x] amount", "note [/x", "[red]flag"
        ]  # fmt: skip


async def test_a_run_logged_by_another_writer_appears_without_restart(seeded) -> None:
    workspace, store = seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DeckTable)
        assert len(table_ids(table)) == 8

        def script() -> None:  # a user's script, through the public tracking API
            with mldeck.start_run(name="late-arrival", workspace=workspace.root) as run:
                run.log_metric("score", 1.0)

        writer = threading.Thread(target=script)
        writer.start()
        writer.join()
        await until(pilot, lambda: len(table_ids(table)) == 9)
        assert table_ids(table)[0] == 9


async def test_a_store_file_moved_away_under_the_console_stops_its_watcher(seeded) -> None:
    """The open connection still writes the moved file: the console says so in the top bar and
    stops taking files from data/incoming/ (they would be recorded where the workspace no
    longer looks), also once the file is back."""
    workspace, store = seeded
    app = make_app(workspace, store, watch_incoming=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = app.screen.query_one(TopBar)
        assert bar.problem == ""
        assert app.watcher is not None and app.watcher_state == "watched by this console"
        moved = workspace.db_path.with_name("moved.db")
        workspace.db_path.rename(moved)
        try:
            await until(pilot, lambda: "was moved or replaced" in bar.problem)
            assert "watching and scheduling stopped; quit and reopen" in bar.problem
            assert app.watcher is None and app.watcher_state.startswith("not watched")
        finally:
            moved.rename(workspace.db_path)
        await until(pilot, lambda: "was moved and is back" in bar.problem)
        assert app.watcher is None


async def test_notifications_are_shown_as_written(seeded) -> None:
    """An error naming a config table keeps its brackets, from the app or from a screen."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.report_error(mldeck.MldeckError("set [data] reference in mldeck.toml"))
        app.screen.notify("[gates] min not met")
        await pilot.pause()
        shown = [n for n in app._notifications if "[" in n.message]
        assert [n.message for n in shown] == ["set [data] reference in mldeck.toml",
                                              "[gates] min not met"]  # fmt: skip
        assert not any(n.markup for n in shown)


@pytest.mark.parametrize(
    ("file", "content", "reason"),
    [
        ("broken.toml", 'name = "broken"\nprimary = "not-a-colour"\n', "not a colour"),
        # The theme picker reads names as markup: '[/x' would stop the console.
        ("ops.toml", 'name = "ops [/x"\nprimary = "#ff8800"\n', "name 'ops [/x' may hold only"),
        # Textual's own variables: a bad one stopped the stylesheet and the console with it.
        (
            "vars.toml",
            'name = "vars"\nprimary = "#ff8800"\n[variables]\nfooter-key-foreground = "nonsense"\n',
            "footer-key-foreground = 'nonsense' is not",
        ),
        (
            "style.toml",
            'name = "style"\nprimary = "#ff8800"\n[variables]\nblock-cursor-text-style = "shiny"\n',
            "is not a text style",
        ),
    ],
    ids=["bad-colour", "name-with-brackets", "bad-variable", "bad-text-style"],
)
async def test_bad_theme_file_is_reported_and_the_console_runs(seeded, file, content, reason):
    workspace, store = seeded
    themes = workspace.root / "themes"
    themes.mkdir()
    (themes / file).write_text(content)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any(file in m and reason in m for m in messages)
        assert app.theme == "mldeck-dark"
        assert "ops [/x" not in app.available_themes


async def test_a_chosen_theme_with_a_bad_variable_is_skipped_not_a_crash(seeded) -> None:
    workspace, store = seeded
    (workspace.root / "themes").mkdir()
    (workspace.root / "themes" / "mine.toml").write_text(
        'name = "mine"\nprimary = "#ff8800"\n[variables]\nfooter-key-foreground = "nonsense"\n'
    )
    text = workspace.config_path.read_text(encoding="utf-8")
    workspace.config_path.write_text(text.replace('theme = "mldeck-dark"', 'theme = "mine"'))
    from mldeck.workspace import load_workspace

    app = make_app(load_workspace(workspace.root), store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.theme == "mldeck-dark" and "mine" not in app.available_themes
        await pilot.press("2")  # and the console goes on
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)


def test_textual_variables_in_their_own_forms_are_accepted(tmp_path):
    from mldeck.tui.themes import load_theme_file

    path = tmp_path / "ok.toml"
    path.write_text('name = "ok"\nprimary = "#ff8800"\n[variables]\n'
                    'footer-key-foreground = "#ff0000"\ntext = "auto 80%"\n'
                    'link-background = "initial"\nborder = "red 50%"\n'
                    'button-focus-text-style = "b reverse"\n')  # fmt: skip
    assert load_theme_file(path).variables["text"] == "auto 80%"


async def test_workspace_theme_is_used(seeded) -> None:
    workspace, store = seeded
    (workspace.root / "themes").mkdir()
    (workspace.root / "themes" / "mine.toml").write_text(
        'name = "mine"\nprimary = "#ff8800"\n[variables]\nstatus-failed = "#ff0000"\n'
    )
    text = workspace.config_path.read_text().replace('theme = "mldeck-dark"', 'theme = "mine"')
    workspace.config_path.write_text(text)
    from mldeck.workspace import load_workspace

    app = make_app(load_workspace(workspace.root), store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.theme == "mine"
        assert app.theme_variables["status-failed"] == "#ff0000"


def test_a_child_commands_result_is_found_after_what_the_fit_printed():
    from mldeck.tui.child import last_json

    printed = 'Iteration 1, loss = 0.69\n{"not": "the end"} and more\n{\n  "version": 2,\n  "gates": [\n    {"a": 1}\n  ]\n}\n'
    assert last_json(printed) == {"version": 2, "gates": [{"a": 1}]}
    assert last_json("no result at all\n") is None


async def test_the_overview_reads_again_as_time_passes_not_only_on_changes(seeded, monkeypatch):
    monkeypatch.setattr(OverviewScreen, "AGE_REFRESH_SECONDS", 0.2)
    calls = []
    original = OverviewScreen.fetch

    def counting(self, store):
        calls.append(1)
        return original(self, store)

    monkeypatch.setattr(OverviewScreen, "fetch", counting)
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = len(calls)
        await until(pilot, lambda: len(calls) >= before + 2)  # no store change in between


def test_packed_rows_break_between_items_and_fold_only_what_no_line_holds() -> None:
    from rich.text import Text

    from mldeck.tui.widgets.text import Packed

    packed = Packed()
    packed.rows = [("Store", [Text("sqlite /srv/a/long/path/store.db"), Text("2 MB"),
                              Text("integrity ok")]), ("Incoming", [Text("watched")])]  # fmt: skip
    wide = [str(x) for x in packed.lines(80)]
    assert wide == ["Store sqlite /srv/a/long/path/store.db · 2 MB · integrity ok",
                    "Incoming watched"]  # fmt: skip
    narrow = [str(x) for x in packed.lines(40)]
    assert narrow == ["Store sqlite /srv/a/long/path/store.db",
                      "      2 MB · integrity ok", "Incoming watched"]  # fmt: skip
    folded = [str(x) for x in packed.lines(20)]
    assert all(len(x) <= 20 for x in folded)
    assert "".join(folded).replace(" ", "").startswith("Storesqlite/srv/a/long/path/store.db")


async def test_checking_the_store_says_its_answer(seeded) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert not any("integrity" in str(n.message) for n in app._notifications)
        await pilot.press("i")
        await until(pilot, lambda: any(str(n.message) == "store integrity check: ok"
                                       for n in app._notifications))  # fmt: skip


@pytest.mark.parametrize("key", ["colon", "ctrl+p"])
async def test_the_command_palette_opens_with_colon_and_ctrl_p(seeded, key) -> None:
    """Textual binds ctrl+p itself only when no binding names the palette; ':' does."""
    from textual.command import CommandPalette

    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))


async def _top_bar_on(pilot, app, key: str, title: str) -> tuple[TopBar, str]:
    """The top bar of the screen *key* opens, with a screen title and 3 alerts (1 critical)."""
    await settle(pilot)
    await pilot.press(key)
    await settle(pilot)
    bar = app.screen.query_one(TopBar)
    assert bar.champion
    bar.screen_title = title
    bar.alerts = (3, 1)
    await pilot.pause()
    return bar, bar.champion


async def test_the_top_bar_keeps_the_champion_and_the_store_problem_at_80_columns(seeded) -> None:
    """Tighter and tighter, not cut: the workspace's name and the word 'champion' give way to
    the alerts and the champion; a store problem comes before both."""
    app = make_app(*seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        bar, champion = await _top_bar_on(pilot, app, "2", "churn:v12 · x")
        line = bar.render().plain
        assert line.endswith(f"▲ 3 alerts │ ★ {champion}"), line
        assert bar.render().cell_len <= bar.content_size.width  # whole on the screen
        bar.problem = "the store cannot be reached: connection refused"
        await pilot.pause()
        line = bar.render().plain
        assert "│ the store cannot be reached" in line, line


async def test_the_top_bar_keeps_the_alerts_and_the_champion_at_40_columns(seeded) -> None:
    """At 40 columns the alerts were cut (the other sections' numbers came first): they are
    what every screen must show."""
    app = make_app(*seeded)
    async with app.run_test(size=(40, 20)) as pilot:
        bar, champion = await _top_bar_on(pilot, app, "5", "churn:v12")
        line = bar.render().plain
        assert line == f"mldeck │ 5 Drift │ ▲ 3 │ ★ {champion}", line
        assert bar.render().cell_len <= bar.content_size.width


async def test_a_read_only_console_says_so_in_the_top_bar_at_80_columns(seeded) -> None:
    """'read-only' came last and was the first thing cut, so a refused key was the first
    sign of it."""
    app = make_app(*seeded, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        bar = app.screen.query_one(TopBar)
        bar.screen_title = "churn:3"
        bar.alerts = (2, 0)
        await pilot.pause()
        line = bar.render().plain
        assert "│ read-only │ ▲ 2 alerts" in line, line
        assert bar.render().cell_len <= bar.content_size.width


async def test_the_runs_list_narrows_with_the_terminal(seeded) -> None:
    """A table kept the widths of its widest cells ever: after the terminal narrowed, its last
    columns (status, time, trigger) stayed off-screen, and refreshing did not bring them back."""
    from mldeck.store.models import Run as StoredRun

    workspace, store = seeded
    with store.write() as session:
        session.add(StoredRun(name="n" * 90, kind="train", trigger="manual", status="failed"))
    app = make_app(workspace, store)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DeckTable)
        await until(pilot, lambda: table.virtual_size.width > 100)
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: table.virtual_size.width <= table.size.width)


async def test_the_last_runs_keep_a_few_rows_on_a_short_terminal(seeded) -> None:
    """At 60x20 the cards and the wrapped lines above took the whole height: the table was an
    empty frame, no header, no run."""
    app = make_app(*seeded)
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#last-runs", DeckTable)
        await until(pilot, lambda: table.row_count > 0)
        assert table.size.height >= 4  # the header and three rows, inside the border


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_sigterm_or_sighup_quits_the_console_as_q_does(seeded, signum) -> None:
    """A closed terminal or `tmux kill-session` killed the console at once: the jobs it ran
    read 'running' until the next scheduler marked them orphaned."""
    app = make_app(*seeded)
    ended: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.child_commands.interrupt_all = lambda: ended.append("interrupted")  # type: ignore[method-assign]
        # Checked first: without its handler the signal would end this test's process.
        assert signal.getsignal(signum) not in (signal.SIG_DFL, None)
        os.kill(os.getpid(), signum)
        await until(pilot, lambda: not app.is_running)
    assert "interrupted" in ended


async def test_a_long_run_name_gives_way_at_80_columns(seeded) -> None:
    """In the list the trigger stays in view; in the detail the name is cut, so the start and
    the duration keep their line."""
    from mldeck.store.models import Run as StoredRun

    workspace, store = seeded
    long_name = "qa-failing-run-with-a-rather-long-name-to-check-truncation"
    with store.write() as session:
        run = StoredRun(name=long_name, kind="train", trigger="performance", status="failed")
        session.add(run)
        session.flush()
        run_id = run.id
    app = make_app(workspace, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DeckTable)
        widths = sum(c.get_render_width(table) for c in table.columns.values())
        assert widths <= table.content_size.width, widths  # TRIGGER whole, not cut
        assert str(table.get_row(str(run_id))[6]) == "performance"
        table.move_cursor(row=table.get_row_index(str(run_id)))
        await pilot.press("enter")
        await settle(pilot)
        summary = static_text(app.screen.query_one("#run-summary")).splitlines()
        assert summary[0].startswith("qa-failing-run-with-a-rather-long") and "…" in summary[0]
        assert summary[0].endswith("· train · performance · failed"), summary
        assert summary[1].startswith("started ")


async def test_run_names_keep_their_batch_and_model_at_80_columns(seeded) -> None:
    """The name's room came from a fixed allowance: at 80 columns the batch was cut out of the
    names ('drift…n:v25 ↳10', 'score…urn:3 ↳12', 'validate…ift.csv') while the columns the
    allowance kept for wider cells stayed blank at the right."""
    from mldeck.store.models import Run as StoredRun

    workspace, store = seeded
    with store.write() as session:

        def run(name: str, kind: str, parent: int | None = None, trigger="new_data") -> int:
            row = StoredRun(name=name, kind=kind, trigger=trigger, status="succeeded",
                            parent_run_id=parent)  # fmt: skip
            session.add(row)
            session.flush()
            return row.id

        run("validate week_06_prior_shift.csv", "validate")
        scored = run("score churn:v25", "score")
        run("score churn:v25 with churn:3", "score", scored)
        drifted = run("drift churn:v25", "drift")
        run("drift churn:v25", "drift", drifted)
        run("retrain", "retrain", trigger="performance")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DeckTable)
        names = {int(key.value): str(table.get_row(key)[1]) for key in table.rows}
        widths = sum(c.get_render_width(table) for c in table.columns.values())
        assert widths == table.scrollable_content_region.width, widths  # none cut, none blank
        # The verb gives way first (KIND says it), then the words between batch and model.
        assert names[drifted + 1] == f"churn:v25 ↳{drifted}", names
        assert names[scored + 1].startswith("churn:v25 …"), names
        assert names[scored + 1].endswith(f" ↳{scored}"), names
        assert names[scored] == "score churn:v25", names  # fits: whole
        assert names[scored - 1].startswith("week_06") and names[scored - 1].endswith(".csv")
        assert "…" in names[scored - 1] and len(names[scored - 1]) > len("validate…ift.csv")
    app = make_app(workspace, store)
    async with app.run_test(size=(100, 24)) as pilot:  # wider: the verb and the model too
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DeckTable)
        assert str(table.get_row(str(scored + 1))[1]) == f"score churn:v25 with churn:3 ↳{scored}"
        assert str(table.get_row(str(scored - 1))[1]) == "validate week_06_prior_shift.csv"


async def test_a_stream_of_notices_shows_at_most_three_and_keeps_warnings(seeded) -> None:
    """A demo feed's batches, one notice each: the oldest information gives way, so they never
    cover the screen; a warning stays for its time."""
    from mldeck.tui.app import MAX_TOASTS

    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.notify("store check: a warning", severity="warning")
        for week in range(1, 8):
            app.notify(f"batch_{week:02}.csv: churn:v{week} accepted")
        await settle(pilot)
        shown = [str(n.message) for n in app._notifications]
        assert len(shown) == MAX_TOASTS == 3
        assert shown == ["store check: a warning", "batch_06.csv: churn:v6 accepted",
                         "batch_07.csv: churn:v7 accepted"]  # fmt: skip


async def test_notices_given_way_leave_nothing_mounted_on_any_screen(seeded) -> None:
    """Textual removed a toast given way, not the holder around it: a long demo feed piled up
    empty holders (and the toasts they kept alive) on every screen, laid out on every frame."""
    from textual.widgets._toast import Toast, ToastHolder

    from mldeck.tui.app import MAX_TOASTS

    app = make_app(*seeded)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        overview = app.screen
        for week in range(1, 21):
            app.notify(f"batch_{week:02}.csv: churn:v{week} accepted")
            app.notify("said again and again")  # the same notice: one toast, shown anew
            if week == 10:
                await settle(pilot)
                await pilot.press("2")  # the other screens show the same toasts
                await settle(pilot)
                runs = app.screen
            await pilot.pause()
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert runs is not overview
        for screen in (overview, runs):
            holders = list(screen.query(ToastHolder))
            assert len(holders) <= MAX_TOASTS, len(holders)
            assert all(holder.query(Toast) for holder in holders)


async def test_the_last_runs_fill_a_tall_terminal(seeded) -> None:
    """As many as the table has room for, at least eight (120x40 left twenty empty rows under
    eight runs)."""
    from mldeck.store.models import Run

    workspace, store = seeded
    with store.write() as session:
        for n in range(30):
            session.add(Run(name=f"sweep-{n}", kind="custom", status="succeeded"))
    shown = []
    for size in ((80, 24), (120, 40)):
        app = make_app(workspace, store)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            table = app.screen.query_one("#last-runs", DeckTable)
            # Within its border, the header takes a row; every other row holds a run.
            # Within its border, the header takes a row; every other row holds a run.
            await until(pilot, lambda table=table: table.row_count == table.size.height - 1)
            shown.append(table.row_count)
    assert shown[0] >= 8 and shown[1] >= shown[0] + 16


async def test_ctrl_c_says_how_to_quit_in_plain_words(seeded) -> None:
    """Textual's own ctrl+c notice is markup ('Press [b]ctrl+q[/b]'), which this console never
    parses: it says, as written, the keys that quit (every key bound to quit, q and ctrl+q)."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
        (notice,) = [n for n in app._notifications if "quit" in n.title]
        assert "[" not in notice.message and not notice.markup
        quit_keys = {key for key, active in app.active_bindings.items()
                     if active.binding.action == "quit"}  # fmt: skip
        assert quit_keys == {"q", "ctrl+q"}
        words = notice.message.replace("(", " ").replace(",", " ").split()
        assert quit_keys <= set(words), notice.message
        assert app.is_running


async def test_q_on_the_quit_dialog_quits_as_it_says(seeded) -> None:
    """With work started here still running, q asks first; the dialog says q again quits, and
    it does (a modal dialog hides the app's own q); escape stays."""
    import subprocess

    from mldeck.tui.screens.confirm import QuitScreen

    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # A command started here, as far as quitting is concerned: a real child to interrupt.
        child = subprocess.Popen(["sleep", "60"], start_new_session=True)
        app.child_commands._running.add(child)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        said = str(app.screen.query_one("#confirm-description").render())
        assert "q or Enter quits; escape stays" in said
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, QuitScreen))
        assert app.is_running and child.poll() is None
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("q")
        await until(pilot, lambda: child.poll() is not None)
        await until(pilot, lambda: app._exit)
    assert child.returncode == -2  # SIGINT: the work started here was interrupted


def add_training(store, **fields) -> int:
    """A training run written straight to the store (as another process would), its id."""
    from mldeck.store.models import Run as StoredRun

    with store.write() as session:
        run = StoredRun(name="train churn", kind="train", trigger="manual", **fields)
        session.add(run)
        session.flush()
        return run.id


async def open_run(pilot, run_id: int) -> None:
    await settle(pilot)
    pilot.app.push_screen(RunDetailScreen(run_id))
    await settle(pilot)


async def test_a_long_progress_message_keeps_the_start_and_time_in_view(seeded) -> None:
    """A running run's progress message is cut at the end of its line, so the line under it
    (start, time, who) stays in the summary's two lines at 80 columns."""
    workspace, store = seeded
    run_id = add_training(store, status="running", progress=0.65, started_at=datetime(
        2026, 3, 2, 9, 0, tzinfo=UTC), progress_message="evaluating on 25000 held-out rows of "
        "the newest batches")  # fmt: skip
    app = make_app(workspace, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(pilot, run_id)
        summary = app.screen.query_one("#run-summary", Static)
        lines = [strip.text for strip in summary.render_lines(summary.region.reset_offset)]
        assert (
            lines[0].strip().startswith("train churn  #") and "running 65% evaluating" in lines[0]
        )
        assert lines[0].rstrip().endswith("…"), lines
        assert lines[1].strip().startswith("started 2026-03-02 09:00:00 · took "), lines


async def test_a_long_param_value_is_shown_whole_under_the_params(seeded) -> None:
    """A value wider than the terminal (the versions a training read) is cut in its column:
    the highlighted param's value is said whole under the table, and follows the cursor."""
    workspace, store = seeded
    data = {"source": "store", "versions": [{"id": n, "dataset": "churn"} for n in range(1, 6)]}
    run_id = add_training(store, status="succeeded", params={"data": data, "seed": 42})
    app = make_app(workspace, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(pilot, run_id)
        whole = app.screen.query_one("#run-params-whole", Static)
        assert str(whole.render()) == f"data: {data!r}"
        await pilot.press("j")
        await settle(pilot)
        assert str(whole.render()) == "seed: 42"


async def test_a_cursor_on_the_newest_run_follows_new_runs_and_another_keeps_its_run(seeded):
    """The Overview's last runs kept the cursor on the run it was on when the console opened:
    new runs arrived above it, scrolled out of view, and Enter opened an old run."""
    workspace, store = seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        last = app.screen.query_one("#last-runs", DeckTable)
        assert last.selected_key() == "8"
        first = add_training(store, status="succeeded")
        await until(pilot, lambda: table_ids(last)[0] == first)
        assert last.selected_key() == str(first) and last.cursor_row == 0
        await pilot.press("2")
        await settle(pilot)
        runs = app.screen.query_one("#runs-table", DeckTable)
        runs.focus()
        await pilot.press("j", "j")  # a run chosen further down stays chosen
        chosen = runs.selected_key()
        second = add_training(store, status="succeeded")
        await until(pilot, lambda: table_ids(runs)[0] == second)
        assert runs.selected_key() == chosen


async def test_a_table_scrolled_sideways_stays_there_when_it_reloads(seeded) -> None:
    """The Jobs table reloads every few seconds: it jumped back to the left each time, so the
    columns past 80 could not be read."""
    from mldeck.jobs.schedules import add

    workspace, store = seeded
    add(store, "nightly-train-with-a-rather-long-name-" + "x" * 40, "train", cron="0 2 * * *")
    app = make_app(workspace, store)
    # At 60 columns the table is wider than the terminal, its name cut to the least it keeps.
    async with app.run_test(size=(60, 24)) as pilot:
        await pilot.press("7")
        await settle(pilot)
        table = app.screen.query_one("#jobs-table", DeckTable)
        table.focus()
        for _ in range(30):
            await pilot.press("right")
        await settle(pilot)
        assert table.scroll_x > 0
        scrolled = table.scroll_x
        app.screen.reload()
        await settle(pilot)
        assert table.scroll_x == scrolled


async def test_the_palette_offers_help_not_textuals_sticky_keys_panel(seeded) -> None:
    """'Keys' docked Textual's panel on the right until chosen again, squeezing the top bar;
    Help ('?') says every screen's keys."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Help" in titles and "Keys" not in titles and "Quit" in titles


async def test_a_long_watcher_line_is_cut_in_its_toast_and_a_repeated_notice_is_one(seeded):
    """A rejection with its reasons ran to 20 lines over the tables at 80x24; '[' at the oldest
    report stacked the same notice again and again."""
    from mldeck.tui.app import WATCHER_TOAST_CHARS, MldeckApp

    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        line = "notes.txt: churn:v11 rejected: " + "; ".join(
            f"categories(col{i}): 12 values outside the reference's categories" for i in range(6)
        )
        app.post_message(MldeckApp.WatcherSaid(line))
        await until(pilot, lambda: len(app._notifications) == 1)
        (toast,) = [str(n.message) for n in app._notifications]
        assert toast.startswith("notes.txt: churn:v11 rejected: categories(col0)")
        assert toast.endswith("… (the Data screen has it all)")
        assert len(toast) < WATCHER_TOAST_CHARS + 40
        for _ in range(3):
            app.notify("this is the oldest report")
        await settle(pilot)
        assert [str(n.message) for n in app._notifications].count("this is the oldest report") == 1


async def test_a_read_only_console_says_another_process_watches_incoming(seeded) -> None:
    """It said 'not watched (read-only)' while another console ingested every file dropped."""
    from mldeck.data.watcher import IncomingWatcher

    workspace, store = seeded
    app = make_app(workspace, store, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.watcher_state == "not watched (read-only)"
        other = IncomingWatcher(workspace, store)
        assert other.start()
        try:
            await until(pilot, lambda: app.watcher_state == "watched by another process")
            app.screen.reload()
            await until(pilot, lambda: any("watched by another process" in item.plain
                                           for _, items in app.screen.query_one("#store-line").rows
                                           for item in items))  # fmt: skip
        finally:
            other.stop()
        await until(pilot, lambda: app.watcher_state == "not watched (read-only)")
        assert app.watcher is None  # it never watches


@pytest.mark.parametrize("size", [(40, 15), (80, 24)])
async def test_a_long_dialog_keeps_its_buttons_on_a_small_screen(seeded, size) -> None:
    """A description taller than the screen scrolls inside the dialog: Confirm and Cancel stay
    on screen (at 40x15 they were cut off below the last line)."""
    from mldeck.tui.screens.confirm import ConfirmScreen

    app = make_app(*seeded)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        said = "\n".join(f"line {n} of what this change will do" for n in range(30))
        app.push_screen(ConfirmScreen("Promote churn:2", said))
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await settle(pilot)
        screen = app.screen.region
        for button in ("#confirm-ok", "#confirm-no", "#confirm-reason"):
            region = app.screen.query_one(button).region
            assert region.height and screen.contains_region(region), (button, region)
        # The description scrolls, above the field and the buttons, never under them.
        scroll = app.screen.query_one("#confirm-scroll")
        actions = app.screen.query_one("#confirm-actions").region
        assert scroll.max_scroll_y > 0 and not scroll.region.overlaps(actions)
        scroll.scroll_end(animate=False)
        await settle(pilot)
        assert scroll.scroll_y == scroll.max_scroll_y > 0
        await pilot.click("#confirm-no")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
