"""The Jobs (7) and Pipeline (6) screens through Pilot at 80x24 on real stores, the console
embedding the scheduler, and their snapshots."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import Static

from mldeck.jobs.lease import holder
from mldeck.jobs.schedules import add, get_schedule, set_paused
from mldeck.store.models import Run, Schedule, utcnow
from mldeck.tui.screens.jobs import JobsScreen
from mldeck.tui.screens.pipeline import PipelineScreen
from mldeck.tui.widgets.table import DeckTable

from .conftest import T0, make_app, screen_lines, settle, until

SIZE = (80, 24)


def add_schedules(store) -> None:
    """Two schedules with pinned last runs; paused, so no next fire time depends on today."""
    add(store, "nightly-train", "train", cron="0 2 * * *", retries=2)
    add(store, "health", "health", every="15m")
    for name in ("nightly-train", "health"):
        set_paused(store, name, True)
    with store.write() as session:
        row = session.execute(select(Schedule).where(Schedule.name == "nightly-train")).scalar()
        row.last_run_id, row.last_status, row.last_run_at = 4, "failed", T0
        session.add(row)


def _text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_jobs_screen_pauses_resumes_edits_and_runs_now(seeded) -> None:
    workspace, store = seeded
    add_schedules(store)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        table = app.screen.query_one("#jobs-table", DeckTable)
        assert table.row_count == 2
        assert str(table.get_row("nightly-train")[5]).startswith("#4 ")  # the run, then its time
        assert "none running" in _text(app, "#jobs-scheduler")
        await pilot.press("k")  # health is first (by name)
        assert table.selected_key() == "health"
        await pilot.press("p", "enter")  # resume, confirmed
        await until(pilot, lambda: not get_schedule(store, "health").paused)
        await pilot.press("e")
        await pilot.press(*"10m", "enter")
        await until(pilot, lambda: get_schedule(store, "health").interval_seconds == 600)
        await pilot.press("e")
        await pilot.press(*"every 5 minutes", "enter")  # not a timing: said, the dialog stays
        await settle(pilot)
        from mldeck.tui.screens.confirm import ConfirmScreen

        assert isinstance(app.screen, ConfirmScreen)
        assert any("not a crontab expression" in str(n.message) for n in app._notifications)
        field = app.screen.query_one("#confirm-reason")
        assert field.value == "every 5 minutes"  # kept, to be corrected
        field.value = ""
        await pilot.press(*"30 4 * * 1", "enter")
        await until(pilot, lambda: get_schedule(store, "health").cron == "30 4 * * 1")
        assert get_schedule(store, "health").interval_seconds is None
        await pilot.press("r", "enter")
        await until(pilot, lambda: get_schedule(store, "health").run_requested_at is not None)
        await settle(pilot)
        await pilot.press("j", "enter")  # the last run of nightly-train
        await settle(pilot)
        assert app.screen.__class__.__name__ == "RunDetailScreen"


async def test_editing_a_schedule_from_mldeck_toml_says_how_long_the_edit_lasts(seeded) -> None:
    from mldeck.config import parse_settings
    from mldeck.jobs.schedules import sync_from_settings
    from mldeck.tui.screens.confirm import ConfirmScreen

    workspace, store = seeded
    add(store, "by-hand", "health", every="15m")  # 'mldeck jobs add': no file to undo it
    settings = parse_settings('[jobs.schedules.from-toml]\nkind = "health"\nevery = "2m"\n')
    sync_from_settings(store, settings.jobs)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        table = app.screen.query_one("#jobs-table", DeckTable)
        said = {}
        for name in ("by-hand", "from-toml"):
            table.move_cursor(row=table.get_row_index(name))
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            said[name] = _text(app, "#confirm-description")
            await pilot.press("escape")
            await settle(pilot)
    assert "the edit lasts until its entry there changes" in said["from-toml"]
    assert "mldeck.toml" not in said["by-hand"]


async def test_jobs_screen_refuses_changes_when_read_only(seeded) -> None:
    workspace, store = seeded
    add_schedules(store)
    app = make_app(workspace, store, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("p", "r", "e")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)  # no dialog opened
    assert get_schedule(store, "nightly-train").paused


async def test_the_console_embeds_the_scheduler_and_says_so(seeded) -> None:
    workspace, store = seeded
    add(store, "health", "health", every="1d")
    app = make_app(workspace, store, run_scheduler=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await until(pilot, lambda: app.scheduler.acting, timeout=30)
        await pilot.press("7")
        await until(pilot, lambda: "this console" in _text(app, "#jobs-scheduler"), timeout=30)
        held = holder(store, workspace.settings.jobs.lease_seconds)
        assert held.role == "console" and held.alive
    assert holder(store, 15) is None  # released when the console closed


async def test_the_console_says_when_mldeck_toml_breaks_and_when_it_is_fixed(seeded) -> None:
    """Its scheduler said it to no one: the console showed nothing until a job failed on the
    file, and that notice was cut and sent the reader to the Data screen."""
    workspace, store = seeded
    add(store, "health", "health", every="1d")
    app = make_app(workspace, store, run_scheduler=True)
    good = workspace.config_path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await until(pilot, lambda: app.scheduler.acting, timeout=30)
        workspace.config_path.write_text(good + "\n[typo_section]\n")

        def said() -> list[str]:
            return [str(n.message) for n in app._notifications]

        await until(pilot, lambda: any("cannot be used" in m for m in said()), timeout=30)
        (broken,) = [n for n in app._notifications if "cannot be used" in str(n.message)]
        assert broken.severity == "error"
        assert "typo_section" in str(broken.message)  # whole: what is wrong, and where
        assert str(broken.message).endswith("fails until it is fixed")
        workspace.config_path.write_text(good)
        await until(pilot, lambda: any(m.startswith("mldeck.toml changed") and "cannot" not in m
                                       for m in said()), timeout=30)  # fmt: skip


async def test_quitting_while_the_consoles_scheduler_runs_a_job_asks_first(seeded) -> None:
    """One q threw away a long scheduled retrain (its runs ended cancelled) without a word;
    work started by hand asked first."""
    from mldeck.tui.screens.confirm import QuitScreen

    workspace, store = seeded
    app = make_app(workspace, store, run_scheduler=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await until(pilot, lambda: app.scheduler.acting and app.scheduler.runner, timeout=30)
        runner = app.scheduler.runner
        with runner._lock:  # a job holding its slot, as far as quitting is concerned
            runner._running["retrain"] = None
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        said = _text(app, "#confirm-description")
        assert "The scheduler of this console is running retrain: quitting stops the jobs" in said
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, QuitScreen))
        with runner._lock:
            del runner._running["retrain"]
        await pilot.press("q")  # nothing running: quits at once
        await until(pilot, lambda: app._exit)


async def test_pipeline_screen_follows_a_running_stage(seeded) -> None:
    workspace, store = seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        assert isinstance(app.screen, PipelineScreen)
        graph = _text(app, "#pipeline-graph")
        for stage in ("ingest", "validate", "score", "monitor", "retrain", "evaluate",
                      "register", "promote"):  # fmt: skip
            assert stage in graph
        now = utcnow()
        with store.write() as session:  # another process starts a drift check
            run = Run(name="drift churn:v9", kind="drift", status="running", progress=0.5,
                      progress_message="comparing", created_at=now, started_at=now)  # fmt: skip
            session.add(run)
            session.flush()
            run_id = run.id
        await until(pilot, lambda: "comparing" in _text(app, "#pipeline-graph"))
        with store.write() as session:
            run = session.get(Run, run_id)
            run.status, run.ended_at = "failed", now + timedelta(seconds=3)
            run.error = "Traceback ...\nValueError: the batch is empty"
        await until(pilot, lambda: "ValueError: th" in _text(app, "#pipeline-graph"))
        for _ in range(3):
            await pilot.press("right")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.__class__.__name__ == "RunDetailScreen"


def test_jobs_snapshot(snap_compare, fixed_seeded) -> None:
    workspace, store = fixed_seeded
    add_schedules(store)

    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)

    assert snap_compare(make_app(workspace, store), run_before=go, terminal_size=SIZE)


def test_pipeline_snapshot(snap_compare, fixed_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)

    assert snap_compare(make_app(*fixed_seeded), run_before=go, terminal_size=SIZE)


async def test_overview_shows_the_latest_health_checks(seeded) -> None:
    from mldeck.jobs.health import run_checks

    workspace, store = seeded
    run_checks(workspace, store)
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        line = str(app.screen.query_one("#store-line").render())
        # The seeded store has a champion without a model file and no scheduler: both say so.
        assert "Checks" in line and "champion fail" in line and "scheduler warn" in line


@pytest.mark.parametrize("width", [40, 60, 80, 160])
async def test_the_pipeline_keeps_every_stage_whatever_the_width(seeded, width) -> None:
    app = make_app(*seeded)
    async with app.run_test(size=(width, 50)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        graph = _text(app, "#pipeline-graph")
        for stage in ("ingest", "validate", "score", "monitor", "retrain", "evaluate",
                      "register", "promote"):  # fmt: skip
            assert f"┌ {stage} " in graph  # whole, not cut at the right edge
        assert max(len(line) for line in graph.splitlines()) <= width
        if width >= 120:  # wide: the boxes grow with the terminal, up to 40 columns each
            top = graph.splitlines()[0]
            assert len(top) >= width * 0.75 and top.index("┐") + 1 >= 30


async def test_up_and_down_move_to_the_box_above_and_below_on_a_narrow_terminal(seeded) -> None:
    """At 60x20 the boxes are three to a row: down went four boxes on (retrain under ingest),
    and when the graph was taller than its area, the area took up and down to scroll."""
    app = make_app(*seeded)
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PipelineScreen) and screen._per_row == 3
        await pilot.press("down")
        assert screen.cursor == 3  # monitor, under ingest
        await pilot.press("j")
        assert screen.cursor == 6
        await pilot.press("j")
        assert screen.cursor == 6  # the last row
        await pilot.press("k", "l", "l", "j")
        assert screen.cursor == 7  # promote: from evaluate, the short last row's last box
        scroll = screen.query_one("#pipeline-scroll")
        assert scroll.scroll_y > 0  # the last row, scrolled into view
        await pilot.press("up")
        assert screen.cursor == 4
        await pilot.press("k", "k")
        assert screen.cursor == 1
        assert scroll.scroll_y == 0


async def test_keys_with_nothing_to_act_on_say_so_and_no_note_is_asked_for_nothing(seeded) -> None:
    from mldeck.tui.screens.confirm import ConfirmScreen

    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        for key in ("r", "p", "e"):  # no schedules: the keys the footer lists still answer
            app.clear_notifications()
            await pilot.press(key)
            messages = [n.message for n in app._notifications]
            assert sum("no schedule to act on" in m for m in messages) == 1, key
        # Training records no note, so its dialog asks for none.
        workspace = app.workspace
        with open(workspace.config_path, "a", encoding="utf-8") as fh:
            fh.write('\n[model]\ntarget = "churned"\n')  # what to train: the dialog asks
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert not app.screen.query("#confirm-reason")
        await pilot.press("escape")


async def test_one_schedule_is_counted_in_the_singular(seeded) -> None:
    workspace, store = seeded
    add(store, "health", "health", every="15m")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        assert _text(app, "#jobs-status").startswith("1 schedule · times in local time")


async def test_the_pipeline_is_drawn_again_for_a_bigger_window(seeded) -> None:
    """Made bigger (80x24 to 160x48), the boxes were drawn for the new width but wrapped at
    the old one: each row of boxes broke in two."""
    workspace, store = seeded
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        await pilot.resize_terminal(160, 48)
        await settle(pilot)
        lines = screen_lines(app, "#pipeline-graph")
        top = next(line for line in lines if "ingest" in line)
        assert "monitor" in top, "\n".join(lines)
        assert "register" in next(line for line in lines if "┌ retrain" in line)


async def test_the_pipeline_calls_the_health_checks_as_the_overview_does(seeded) -> None:
    """'Health no check yet' under the Pipeline beside the Overview's 'Health' row of model
    figures read as two answers to one question."""
    app = make_app(*seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        line = _text(app, "#pipeline-health")
        assert line.startswith("Checks ") and not line.startswith("Health")


def test_a_box_cuts_after_a_whole_word_and_a_skip_says_why_first(seeded) -> None:
    """'score churn:v13 with churn:1' cut to 'score churn:v1…' named another batch; the retrain
    box read 'skipped: cool-…' under a status already saying skipped."""
    from mldeck.jobs.settings import JobSettings
    from mldeck.jobs.views import pipeline_view
    from mldeck.tui.screens.pipeline import _fit

    assert _fit("score churn:v13 with churn:1", 16) == "score churn:v13…"
    assert _fit("score churn:v13 with churn:1", 15) == "score…".ljust(15)  # not churn:v1
    assert _fit("validate blob.csv", 15) == "validate blob.…"  # a name may be cut
    assert _fit("ingest-week-09", 16) == "ingest-week-09  "
    _, store = seeded
    with store.write() as session:
        session.add(Run(name="retrain", kind="retrain", status="skipped", trigger="drift",
                        error="skipped: cool-down 52m left: the automatic retrain run 12 "
                              "started less than 60 min ago"))  # fmt: skip
    stage = next(s for s in pipeline_view(store, JobSettings()).stages if s.name == "retrain")
    assert (stage.status, stage.detail[:18]) == ("skipped", "cool-down 52m left")


async def test_a_long_job_name_gives_way_so_the_outcome_stays_in_view(seeded) -> None:
    """The NAME column never shrank: beside 'nightly-train-with-a-long-name' the OUTCOME was
    some thirty presses of → away at 80 columns, and at 70 the next fire time was cut."""
    workspace, store = seeded
    add_schedules(store)
    add(store, "nightly-train-with-a-long-name", "train", every="1d")
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        table = app.screen.query_one("#jobs-table", DeckTable)
        await until(pilot, lambda: table.row_count == 3)
        await settle(pilot)
        assert table.virtual_size.width <= table.size.width, table.virtual_size
        header, *rows = screen_lines(app, "#jobs-table")[1:5]
        assert header.rstrip(" │").endswith(" OUTCOME"), header
        long_row = next(line for line in rows if "…" in line)  # cut in the middle
        assert long_row.startswith("│ nightl") and "name  train " in long_row, long_row
        assert " active " in long_row, long_row
        assert "every 1d" in long_row and long_row.rstrip(" │").endswith("-"), long_row
        failed = next(line for line in rows if "nightly-train " in line)
        assert failed.rstrip(" │").endswith("failed"), failed  # the outcome, whole
        assert str(table.get_row("nightly-train")[0]) == "nightly-train"  # short: whole
