"""Jobs: the schedules with their next fire time, last run and outcome, and who runs the
scheduler; run now, pause / resume and edit, through the same functions as ``mldeck jobs``."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from mldeck import formatting as fmt
from mldeck.errors import MldeckError
from mldeck.jobs.settings import check_cron, parse_every
from mldeck.jobs.views import JobRow, JobsView, jobs_view
from mldeck.store.engine import Store
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.screens.confirm import ConfirmScreen
from mldeck.tui.screens.runs import RunDetailScreen, beside_name, overflows
from mldeck.tui.styles import status_text
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Plain


def _short(value: datetime | None) -> str:
    """``13:38:45`` today, ``Sat 02:00`` this week, else the date (local time): 80 columns."""
    if value is None:
        return "-"
    local = value.astimezone()
    days = abs((local.date() - datetime.now(local.tzinfo).date()).days)
    if days == 0:
        return local.strftime("%H:%M:%S")
    return local.strftime("%a %H:%M" if days < 7 else "%Y-%m-%d")


JOB_COLUMNS = ("NAME", "KIND", "WHEN (UTC)", "STATE", "NEXT", "LAST RUN", "OUTCOME")
JOB_NAME_WIDTH = 8  # at least


def scheduler_line(view: JobsView, app_scheduler: object | None) -> Text:
    """Who runs the scheduler, as the Jobs and Pipeline screens say it."""
    held = view.scheduler
    line = Text()
    line.append("Scheduler ", style="bold")
    if held is None or not held.alive:
        line.append("none running (start 'mldeck daemon')")
        return line
    mine = app_scheduler is not None and getattr(app_scheduler, "acting", False)
    line.append("this console" if mine else held.describe())
    line.append(f" · since {held.acquired_at.astimezone():%H:%M:%S}", style="dim")
    return line


class JobsScreen(DeckScreen):
    SCREEN_TITLE = "Jobs"
    WRITES = frozenset({"run_now", "toggle_pause", "edit"})
    HELP = (
        "The scheduled jobs (from [jobs.schedules] in mldeck.toml, or 'mldeck jobs add'), with "
        "their timing (UTC), state, next fire time, last run and its outcome. The line above "
        "says which process runs the scheduler: a daemon, this console, or none. r runs the "
        "selected job now, p pauses or resumes it, e changes its timing (15m, 2h or a crontab "
        "expression); the running scheduler follows within seconds. Enter opens the last run."
    )
    BINDINGS = [
        Binding("r", "run_now", "Run now", id="jobs-run"),
        Binding("p", "toggle_pause", "Pause/resume", id="jobs-pause"),
        Binding("e", "edit", "Edit timing", id="jobs-edit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, JobRow] = {}

    def compose_body(self) -> ComposeResult:
        yield Plain(id="jobs-scheduler")
        table = DeckTable(id="jobs-table")
        table.border_title = "Schedules"
        yield table
        yield Plain(id="jobs-status")

    def on_mount(self) -> None:
        table = self.query_one("#jobs-table", DeckTable)
        table.add_columns(*JOB_COLUMNS)
        table.focus()
        # Fire times move without a write to the store: look again every few seconds.
        self.set_interval(3.0, self._look_again)

    def _look_again(self) -> None:
        if self.is_current:
            self.reload()

    def fetch(self, store: Store) -> JobsView:
        scheduler = getattr(self.deck, "scheduler", None)
        fire_times = scheduler.next_fire_times() if scheduler is not None else None
        return jobs_view(store, self.deck.workspace.settings.jobs, fire_times)

    def show(self, view: JobsView) -> None:
        self._rows = {row.name: row for row in view.rows}
        self.query_one("#jobs-scheduler", Static).update(
            scheduler_line(view, getattr(self.deck, "scheduler", None))
        )
        table = self.query_one("#jobs-table", DeckTable)
        shown = [self._cells(row) for row in view.rows]
        # The name gives way (cut in the middle) so that the state, next fire time and outcome
        # stay in view: the other columns are as wide as their widest cells.
        beside = beside_name(shown, JOB_COLUMNS, name_at=0, scrollbar=overflows(table, len(shown)))
        room = max(JOB_NAME_WIDTH, self.app.size.width - beside)
        table.replace_rows(
            [(row.name, (fmt.cut_middle(row.name, room), *cells[1:]))
             for row, cells in zip(view.rows, shown, strict=True)]
        )  # fmt: skip
        self.query_one("#jobs-status", Static).update(
            f"{fmt.plural(len(view.rows), 'schedule')} · times in local time, schedules in UTC"
            if view.rows
            else "no schedules: add [jobs.schedules.NAME] to mldeck.toml (see the README)"
        )

    def _cells(self, row: JobRow) -> tuple:
        state = row.state if row.state == "active" else Text(row.state, style="bold")
        # "#4 02:00": the run's id marked as one, not read as part of the time ("4 02:00").
        last = "-" if row.last_run_id is None else f"#{row.last_run_id} {_short(row.last_run_at)}"
        outcome = status_text(self.app, row.last_status) if row.last_status else "-"
        when = row.timing.removeprefix("cron ")
        return (row.name, row.kind, when, state, _short(row.next_fire_at), last, outcome)

    def _selected(self) -> JobRow | None:
        key = self.query_one("#jobs-table", DeckTable).selected_key()
        row = self._rows.get(key) if key else None
        if row is None:
            self.notify("no schedule to act on: add [jobs.schedules.NAME] to mldeck.toml, or "
                        "'mldeck jobs add'", severity="warning", timeout=6)  # fmt: skip
        return row

    # -- actions: confirm, then the domain function in a worker thread ---------------------------
    def _act(self, title: str, description: str, work, placeholder: str | None = None,
             check=None):  # fmt: skip
        def confirmed(text: str | None) -> None:
            if text is not None:
                self.run_worker(lambda: work(text), thread=True, group="jobs-action",
                                exit_on_error=False)  # fmt: skip

        dialog = ConfirmScreen(title, description, placeholder=placeholder, check=check)
        self.app.push_screen(dialog, confirmed)

    def action_run_now(self) -> None:
        row = self._selected()
        if row is None:
            return

        def work(_: str) -> None:
            from mldeck.jobs.schedules import request_run

            request_run(self.deck.store, row.name)
            self.app.call_from_thread(
                self.notify, f"asked the scheduler to run {row.name} now", timeout=6
            )

        self._act(f"Run {row.name} now", f"Run the {row.kind} job {row.name} now, in a worker "
                  "process, with its timeout and retries.", work)  # fmt: skip

    def action_toggle_pause(self) -> None:
        row = self._selected()
        if row is None:
            return
        pause = row.state != "paused"

        def work(_: str) -> None:
            from mldeck.jobs.schedules import set_paused

            set_paused(self.deck.store, row.name, pause)
            verb = "paused" if pause else "resumed"
            self.app.call_from_thread(self.notify, f"{verb} {row.name}", timeout=5)

        verb = "Pause" if pause else "Resume"
        what = ("No new fire until it is resumed; a run in progress finishes."
                if pause else "It fires again on its schedule.")  # fmt: skip
        self._act(f"{verb} {row.name}", what, work)

    def action_edit(self) -> None:
        row = self._selected()
        if row is None:
            return

        def work(text: str) -> None:
            from mldeck.jobs.schedules import edit

            text = text.strip()
            if not text:
                raise MldeckError("type a timing: 15m, 2h, 1d, or a crontab expression")
            try:
                parse_every(text)
            except ValueError:
                changed = edit(self.deck.store, row.name, cron=text)
            else:
                changed = edit(self.deck.store, row.name, every=text)
            from mldeck.jobs.schedules import timing

            self.app.call_from_thread(self.notify, f"{row.name}: {timing(changed)}", timeout=6)

        def check(text: str) -> str | None:
            if not text:
                return "type a timing: 15m, 2h, 1d, or a crontab expression"
            try:
                parse_every(text)
            except ValueError as as_interval:
                try:
                    check_cron(text)
                except ValueError as as_cron:
                    looks_like_interval = " " not in text and text[:1].isdigit()
                    return str(as_interval if looks_like_interval else as_cron)
            return None

        lasts = (" It comes from mldeck.toml: the edit lasts until its entry there changes "
                 "(edit the file to keep it)." if row.source == "config" else "")  # fmt: skip
        self._act(f"Edit {row.name}", f"Now {row.timing}. Type the new timing: an interval "
                  f"(90s, 15m, 2h, 1d) or a crontab expression in UTC (0 2 * * *).{lasts}", work,
                  placeholder="15m or 0 2 * * *", check=check)  # fmt: skip

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self._rows.get(str(event.row_key.value))
        if row is not None and row.last_run_id is not None:
            self.app.push_screen(RunDetailScreen(row.last_run_id))
