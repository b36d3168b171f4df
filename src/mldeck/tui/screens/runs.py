"""Runs: every run in the store, filterable, and the detail of one (params, metrics, logs, error)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.color import Color, ColorParseError
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Input, Log, Static, TabbedContent, TabPane
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from mldeck import formatting as fmt
from mldeck.errors import MldeckError
from mldeck.store.engine import Store
from mldeck.store.queries import (
    MAX_COMPARED,
    RunComparison,
    RunDetail,
    RunFilter,
    RunRow,
    compare_runs,
    list_runs,
    metric_series,
    run_detail,
    run_fields,
)
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.styles import status_text
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Plain

WINDOW = 500
LOG_LINES = 1000
CHART_POINTS = 2000

# A metric's curve: its key and its (step, value) points.
Curve = tuple[str, list[tuple]]


# What a run's row needs besides its name (id, kind, status, started, time, borders, padding),
# before its TRIGGER column: the name gives way on a narrow terminal so that the time (and the
# trigger, on the Runs screen) stay in view. An allowance for any row; the Runs screen measures
# its rows' cells instead (beside_name), so the name has the room the other columns leave.
BESIDE_NAME = 53
BORDER = 2  # a table's border, either side
SCROLLBAR = 2  # a table's vertical scrollbar
PADDING = 2  # a cell's padding, either side of its text
RUN_COLUMNS = ("ID", "NAME", "KIND", "STATUS", "STARTED", "TIME", "TRIGGER")


def beside_name(
    rows: list[tuple], headers: tuple[str, ...], *, name_at: int = 1, scrollbar: bool = True
) -> int:
    """The room a table's columns other than its name column (at *name_at*) take with their
    padding, its border (and *scrollbar*) and the name's own padding: each column as wide as
    its widest cell among *rows*, or its header."""
    widths = [len(header) for header in headers]
    for cells in rows:
        for at, cell in enumerate(cells):
            shown = cell if isinstance(cell, Text) else Text(str(cell))
            widths[at] = max(widths[at], shown.cell_len)
    frame = BORDER + (SCROLLBAR if scrollbar else 0) + PADDING * len(headers)
    return frame + sum(width for at, width in enumerate(widths) if at != name_at)


def overflows(table: DataTable, rows: int) -> bool:
    """Whether *rows* are more than *table* shows at once (its header takes a row): its
    scrollbar takes two columns then. Before the table is laid out, it is taken to."""
    height = table.size.height
    return not height or rows > height - 1


def _cut_words(words: list[str], room: int) -> str:
    """*words* in *room* characters: whole words where they fit, the first (a run's batch or
    file: 'churn:v31') before the last (its model: 'churn:3'), '…' for those left out; a word
    too long alone is cut in the middle ('week_0…shift.csv')."""
    text = " ".join(words)
    if len(text) <= room:
        return text
    if len(words) > 1:
        for kept in (f"{words[0]} … {words[-1]}", f"{words[0]} …"):
            if len(kept) <= room:
                return kept
    return fmt.cut_middle(text, room)


def _fitted_label(row: RunRow, room: int) -> str:
    """A run's name in *room* characters, what tells runs apart kept longest: a step's 'step of
    N' is shortened to '↳N' first (kept whole, it was the end left, and every step read alike),
    then the verb gives way when it is the run's kind (the KIND column beside says it: 'drift
    churn:v31' is 'churn:v31'), then the words between the first and the last."""
    if len(row.label) <= room:
        return row.label
    short = "" if row.parent_id is None else f" ↳{row.parent_id}"
    room = max(4, room - len(short))
    words = row.name.split(" ")
    if len(row.name) > room and len(words) > 1 and words[0] == row.kind:
        words = words[1:]
    return _cut_words(words, room) + short


def _name_cell(row: RunRow, room: int) -> Text:
    return Text(_fitted_label(row, room), no_wrap=True)


def run_cells(app: App, row: RunRow, *, beside: int) -> tuple:
    """The cells of a run's table row: id, name, kind, status, started, duration, trigger;
    *beside* is the room the row's other shown columns need."""
    progress = fmt.progress(row.progress, row.status)
    return (
        Text(str(row.id), justify="right"),
        _name_cell(row, max(14, app.size.width - beside)),
        row.kind,
        status_text(app, row.status, f" {progress}" if progress else ""),
        fmt.when_short(row.started_at or row.created_at),  # the detail gives the full time
        fmt.duration(row.duration),
        row.trigger,
    )


class RunsScreen(DeckScreen):
    SCREEN_TITLE = "Runs"
    HELP = (
        "Every run in the store, newest first (the newest 500 that match are shown). Type in the "
        "filter to narrow the list: words match the run's name or id, and status:, kind: and "
        "trigger: pick exact values, e.g. 'status:failed kind:train'. Enter opens a run. Space "
        "marks a run (● in its ID column) and c compares the marked runs side by side (2 to "
        f"{MAX_COMPARED}): metrics, params, inputs, code and environment."
    )
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", id="runs-filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="runs-clear-filter"),
        Binding("space", "mark", "Mark", id="runs-mark"),
        Binding("c", "compare", "Compare", id="runs-compare"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._filter = RunFilter()
        self._filter_error = ""
        self._debounce: Timer | None = None
        self._marked: list[int] = []  # runs to compare, in the order they were marked
        self._rows: list[RunRow] = []
        self._typed = ""  # a filter set before the screen was built
        self._shown_height = 0  # the table's height when its rows were last fitted

    def compose_body(self) -> ComposeResult:
        yield Input(
            placeholder="/ filter: name, id, status:failed kind:train trigger:schedule",
            id="runs-filter",
        )
        yield DeckTable(id="runs-table", follow_top=True)
        yield Plain(id="runs-status")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DeckTable)
        table.add_columns(*RUN_COLUMNS)
        table.focus()
        if self._typed:
            self.query_one("#runs-filter", Input).value = self._typed

    def fetch(self, store: Store) -> tuple[list[RunRow], int, RunFilter]:
        flt = self._filter
        rows, total = list_runs(store, flt, limit=WINDOW)
        return rows, total, flt

    def show(self, data: tuple[list[RunRow], int, RunFilter]) -> None:
        rows, total, flt = data
        table = self.query_one("#runs-table", DeckTable)
        if self._filter_error:  # the filter typed is wrong: no list is its answer, the error is
            table.replace_rows([])
            self.query_one("#runs-status", Static).update(
                Text(self._filter_error, style="bold red")
            )
            return
        self._rows = rows
        self._show_rows()
        if total == 0:
            message = "no runs match the filter" if flt.describe() else "no runs yet"
        elif total > len(rows):
            message = f"showing the newest {len(rows)} of {total} runs"
        else:
            message = fmt.plural(total, "run")
        if flt.describe():
            message += f" · filter: {flt.describe()}"
        self.query_one("#runs-status", Static).update(message)

    def _show_rows(self) -> None:
        shown = []
        for row in self._rows:
            cells = run_cells(self.app, row, beside=BESIDE_NAME)
            if row.id in self._marked:
                cells = (Text(f"● {row.id}", justify="right", style="bold"), *cells[1:])
            shown.append(cells)
        # The name takes the room the other columns leave, as wide as their widest cells shown
        # (TRIGGER's "performance", a marked run's ID): no column cut, none left blank.
        table = self.query_one("#runs-table", DeckTable)
        scrollbar = overflows(table, len(shown))
        room = max(14, self.app.size.width - beside_name(shown, RUN_COLUMNS, scrollbar=scrollbar))
        self._shown_height = table.size.height
        table.replace_rows(
            [(str(row.id), (cells[0], _name_cell(row, room), *cells[2:]))
             for row, cells in zip(self._rows, shown, strict=True)]
        )  # fmt: skip

    def on_resize(self) -> None:
        # A new height: the scrollbar may come or go, and the name's room with it (a new width
        # reloads the list).
        self.call_after_refresh(self._fit_height)

    def _fit_height(self) -> None:
        table = self.query_one("#runs-table", DeckTable)
        if self._rows and table.size.height != self._shown_height:
            self._show_rows()

    def action_mark(self) -> None:
        """Mark the highlighted run for a comparison, or unmark it."""
        key = self.query_one("#runs-table", DeckTable).selected_key()
        if key is None:
            return
        run_id = int(key)
        if run_id in self._marked:
            self._marked.remove(run_id)
        elif len(self._marked) >= MAX_COMPARED:
            self.notify(f"at most {MAX_COMPARED} runs are compared: unmark one first",
                        severity="warning", timeout=5)  # fmt: skip
            return
        else:
            self._marked.append(run_id)
        self._show_rows()

    def action_compare(self) -> None:
        """Compare the marked runs side by side."""
        if len(self._marked) < 2:
            self.notify(f"mark 2 to {MAX_COMPARED} runs with space, then c compares them",
                        severity="warning", timeout=5)  # fmt: skip
            return
        self.app.push_screen(RunCompareScreen(list(self._marked)))

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.25, lambda: self._apply_filter(event.value))

    def _apply_filter(self, value: str) -> None:
        try:
            self._filter = RunFilter.parse(value)
        except MldeckError as exc:
            self._filter_error = str(exc)
        else:
            self._filter_error = ""
        self.reload()

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self) -> None:
        self.query_one("#runs-table", DeckTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#runs-filter", Input)
        if field.value:
            field.value = ""
        self.query_one("#runs-table", DeckTable).focus()

    def set_filter(self, text: str) -> None:
        """Filter the list as if *text* had been typed (used by the command palette, maybe
        before the screen is built: it is then typed when it is)."""
        if not self.is_mounted:
            self._typed = text
            return
        self.query_one("#runs-filter", Input).value = text

    @on(DataTable.RowSelected, "#runs-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(RunDetailScreen(int(event.row_key.value)))


class RunDetailScreen(DeckScreen):
    SCREEN_TITLE = "Run"
    HELP = (
        "One run: what it was (kind, trigger, status, timing, who and where), its parameters and "
        "tags, code version and environment (the highlighted one's value whole under the "
        "table), a summary of each metric, its log (the last 1000 "
        "lines; ←/→ scroll to the end of long lines) and, when it failed, the traceback. It updates "
        "live while the run is going."
    )
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="run-back"),
        Binding("p", "tab('params')", "Params", id="run-tab-params"),
        Binding("m", "tab('metrics')", "Metrics", id="run-tab-metrics"),
        Binding("l", "tab('logs')", "Logs", id="run-tab-logs"),
        Binding("e", "tab('error')", "Error", id="run-tab-error"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self._log_tail: tuple[int, int] | None = None
        self._metric: str | None = None  # the metric whose curve is drawn
        # Each param's value by row key: the highlighted one's is shown whole under the table
        # (a narrow terminal cuts the column: "{'source': 'store', 'versions': [{'id': 1, ...").
        self._values: dict[str, str] = {}

    def compose_body(self) -> ComposeResult:
        yield Plain(id="run-summary")
        with TabbedContent(initial="params", id="run-tabs"):
            with TabPane("Params", id="params"):
                yield DeckTable(id="run-params", cursor_type="row")
                yield Plain(id="run-params-whole", classes="whole")
            with TabPane("Metrics", id="metrics"):
                yield DeckTable(id="run-metrics")
                yield MetricPlot(id="run-chart")
            with TabPane("Logs", id="logs"):
                yield Log(id="run-log", highlight=False, auto_scroll=True)
            with TabPane("Error", id="error"), VerticalScroll():
                yield Plain(id="run-error")

    def on_mount(self) -> None:
        self.query_one("#run-params", DeckTable).add_columns("KEY", "VALUE")
        self.query_one("#run-metrics", DeckTable).add_columns(
            "METRIC", "LAST", "STEP", "MIN", "MAX", "POINTS"
        )
        self.query_one("#run-params", DeckTable).focus()  # j/k move in it at once

    def subtitle(self) -> str:
        return f"run {self.run_id}"

    def fetch(self, store: Store) -> tuple[RunDetail, Curve | None]:
        detail = run_detail(store, self.run_id, log_limit=LOG_LINES)
        keys = [m.key for m in detail.metrics]
        key = self._metric if self._metric in keys else (keys[0] if keys else None)
        curve = None
        if key is not None:
            curve = (key, metric_series(store, self.run_id, key, limit=CHART_POINTS))
        return detail, curve

    def show(self, data: tuple[RunDetail, Curve | None]) -> None:
        detail, curve = data
        run = detail.run
        row = RunRow.of(run)
        summary = Text()
        after = f"  #{run.id} · {run.kind} · {run.trigger} · "
        # The name gives way: wrapped, the first line would push out the second (start, time).
        room = max(12, self.app.size.width - 4 - len(after) - len(run.status))
        name = run.name if len(run.name) <= room else run.name[: room - 1] + "…"
        summary.append(name, style="bold")
        summary.append(after)
        summary.append_text(status_text(self.app, run.status))
        if run.status == "running" and run.progress is not None:
            summary.append(f" {run.progress * 100:.0f}%")
            if run.progress_message:
                summary.append(f" {run.progress_message}")
        summary.append(f"\nstarted {fmt.when(run.started_at)} · took {fmt.duration(row.duration)}")
        if run.user:
            summary.append(f" · {run.user}@{run.host}" if run.host else f" · {run.user}")
        self.query_one("#run-summary", Static).update(summary)

        params = self.query_one("#run-params", DeckTable)
        fields = [(f"{section}:{key}", key if section == "param" else f"{section}.{key}", value)
                  for section, key, value in run_fields(run)]  # fmt: skip
        self._values = {
            row_key: f"{name}: {value if isinstance(value, str) else repr(value)}"
            for row_key, name, value in fields
        }
        params.replace_rows([(row_key, (name, _short(value))) for row_key, name, value in fields])
        self._say_value()

        metrics = self.query_one("#run-metrics", DeckTable)
        metrics.replace_rows(
            [
                (
                    m.key,
                    (m.key, fmt.number(m.last), str(m.last_step), fmt.number(m.minimum),
                     fmt.number(m.maximum), str(m.count)),
                )
                for m in detail.metrics
            ]
        )  # fmt: skip
        metrics.border_subtitle = "" if detail.metrics else "no metrics logged"
        self._draw_curve(curve)

        tail = (detail.log_count, detail.logs[-1].id if detail.logs else 0)
        if tail != self._log_tail:
            self._log_tail = tail
            log = self.query_one("#run-log", Log)
            log.clear()
            if detail.log_count > len(detail.logs):
                log.write_line(f"… {detail.log_count - len(detail.logs)} earlier lines not shown")
            log.write_lines(
                f"{fmt.when(line.ts)} {line.level:<7} {line.message}" for line in detail.logs
            )
            if not detail.logs:
                log.write_line("(no log lines)")

        error = self.query_one("#run-error", Static)
        error.update(Text(run.error) if run.error else Text("No error recorded.", style="dim"))

    @on(DataTable.RowHighlighted, "#run-params")
    def _param_highlighted(self) -> None:
        self._say_value()

    def _say_value(self) -> None:
        """Under the params: the highlighted one's value, whole."""
        key = self.query_one("#run-params", DeckTable).selected_key()
        self.query_one("#run-params-whole", Static).update(Text(self._values.get(key or "", "")))

    def _draw_curve(self, curve: Curve | None) -> None:
        self._metric = curve[0] if curve is not None else None
        plot = self.query_one("#run-chart", MetricPlot)
        if plot.curve != curve:
            plot.draw(curve)

    @on(DataTable.RowHighlighted, "#run-metrics")
    def _metric_highlighted(self) -> None:
        # The key under the cursor now (not the event's: a reload highlights rows on its way).
        key = self.query_one("#run-metrics", DeckTable).selected_key()
        if key is None or key == self._metric:
            return
        self._metric = key
        self.run_worker(
            lambda: self._fetch_curve(key),
            thread=True,
            exclusive=True,
            group="curve",
            exit_on_error=False,
        )

    def _fetch_curve(self, key: str) -> None:
        curve = (key, metric_series(self.deck.store, self.run_id, key, limit=CHART_POINTS))
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._draw_curve, curve)

    def action_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _focus_tab(self, event: TabbedContent.TabActivated) -> None:
        # The tab's content takes the keys (by letter or by click): the arrows, page keys and
        # home/end then move in it, and the log scrolls sideways to its long lines.
        for kind in (DeckTable, Log, VerticalScroll):
            if found := event.pane.query(kind):
                found.first().focus()
                return


COMPARE_FIELD_WIDTH = 20  # at least


class RunCompareScreen(DeckScreen):
    SCREEN_TITLE = "Compare runs"
    HELP = (
        "Runs side by side, one column each: kind, trigger, status and how long each took, then "
        "every metric's last value, the params, the dataset versions each read, tags, code "
        "version and environment. '*' marks a field whose values differ; '-' is a field a run "
        "does not have. d shows only the fields that differ (again: all). Values too wide for "
        "their column are cut: the highlighted field's are shown whole below the table."
    )
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="compare-back"),
        Binding("d", "toggle_diff", "Differences only", id="compare-diff"),
    ]

    def __init__(self, run_ids: list[int]) -> None:
        super().__init__()
        self.run_ids = run_ids
        self.only_differences = False
        self._comparison: RunComparison | None = None

    def compose_body(self) -> ComposeResult:
        yield DeckTable(id="compare-table")
        yield Plain(id="compare-status")

    def on_mount(self) -> None:
        self.query_one("#compare-table", DeckTable).focus()

    def subtitle(self) -> str:
        return " · ".join(f"#{run_id}" for run_id in self.run_ids)

    def fetch(self, store: Store) -> RunComparison:
        return compare_runs(store, self.run_ids)

    def show(self, comparison: RunComparison) -> None:
        table = self.query_one("#compare-table", DeckTable)
        # Every run's column in view on the terminal's width: long values and names are cut
        # (a run's own detail view has them whole).
        runs = len(comparison.runs)
        # The field names take what the values leave them (metric names run long and differ
        # only at their ends), the values at least 12 columns each.
        longest = max((len(f.name) for f in comparison.fields), default=5)
        room = self.app.size.width - 8 - runs * 14
        field_width = max(COMPARE_FIELD_WIDTH, min(longest, room))
        width = max(10, (self.app.size.width - 8 - field_width) // runs - 2)
        if self._comparison is None:  # the runs' columns, once their names are known
            table.add_columns("", "FIELD",
                              *(_short(f"#{row.id} {row.name}", width) for row in comparison.runs))  # fmt: skip
        self._comparison = comparison
        fields = [f for f in comparison.fields if f.differs or not self.only_differences]
        table.replace_rows(
            [
                (
                    f.name,
                    ("*" if f.differs else "", _short(f.name, field_width),
                     *(_short(text, width) for text in f.texts())),
                )
                for f in fields
            ]
        )  # fmt: skip
        self._say_field(table.selected_key())

    @on(DataTable.RowHighlighted, "#compare-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._say_field(event.row_key.value)

    def _say_field(self, name: str | None) -> None:
        """Under the table: the highlighted field's values whole, then what differs."""
        comparison = self._comparison
        if comparison is None:
            return
        differing = sum(f.differs for f in comparison.fields)
        status = f"{differing} of {fmt.plural(len(comparison.fields), 'field')} differ"
        status += " · showing only those (d: all)" if self.only_differences else " (d: only those)"
        field = next((f for f in comparison.fields if f.name == name), None)
        if field is not None:
            values = " · ".join(f"#{run.id} {text}"
                                for run, text in zip(comparison.runs, field.texts(), strict=True))  # fmt: skip
            status = f"{field.name}: {values}\n{status}"
        self.query_one("#compare-status", Static).update(status)

    def action_toggle_diff(self) -> None:
        self.only_differences = not self.only_differences
        if self._comparison is not None:
            self.show(self._comparison)


class MetricPlot(PlotextPlot):
    """The line of one metric over its steps, in the theme's primary colour."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.curve: Curve | None = None

    def on_mount(self) -> None:
        # PlotextPlot's own on_mount runs too (Textual calls the handler of every class).
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.draw(self.curve))

    def draw(self, curve: Curve | None) -> None:
        """Draw *curve* (None clears the plot)."""
        self.curve = curve
        plt = self.plt
        plt.clear_figure()
        if curve is not None and curve[1]:
            key, points = curve
            try:
                color = Color.parse(self.app.theme_variables.get("primary", "")).rgb
            except ColorParseError:
                color = (128, 128, 128)
            if len(points) == 1:  # logged once: a dot, and its step and value on the axes
                ((step, value),) = points
                plt.scatter([step], [value], color=color, marker="●")
                plt.xticks([step], [fmt.number(step)])
                plt.yticks([value], [fmt.number(value)])
            else:
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                plt.plot(xs, ys, color=color, marker="braille")
            plt.title(key)
            plt.xlabel("step")
        self.refresh()


def _short(value: Any, width: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
