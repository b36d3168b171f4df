"""Data: dataset versions and their validation, the offending rows, and each column's profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from mldeck import formatting as fmt
from mldeck.store.engine import Store
from mldeck.store.queries import (
    RunFilter,
    RunRow,
    VersionDetail,
    VersionRow,
    list_runs,
    list_versions,
    version_detail,
)
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.styles import rich_color, status_text
from mldeck.tui.widgets.histogram import (
    Histogram,
    HistogramPlot,
    column_histogram,
    legend,
    show_chart,
)
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Plain

WINDOW = 500
RUNNING_SHOWN = 3
QUARANTINE_ROWS = 200
CELL_WIDTH = 40
NAME_WIDTH = 18  # a profile's column names
REASON = "_mldeck_reason"  # columns the validation adds to the offending-rows file
ROW = "_mldeck_row"
# What `f` cycles through on the list.
FILTERS = ("all", "rejected", "warned", "quarantined")
EMPTY = "no dataset versions yet: drop files into data/incoming/ or run 'mldeck data ingest FILE'"


def version_cells(app: App, row: VersionRow) -> tuple:
    """The cells of a dataset version's row: version, status, rows, columns, size, arrival, file."""
    label = Text(row.label)
    if row.is_reference:
        label.append(" ref", style=f"bold {rich_color(app.theme_variables.get('champion', ''))}")
    return (
        label,
        status_text(app, row.status),
        Text("-" if row.n_rows is None else str(row.n_rows), justify="right"),
        Text("-" if row.n_cols is None else str(row.n_cols), justify="right"),
        Text(fmt.size(row.size_bytes), justify="right"),
        fmt.when_short(row.arrived_at),  # the version's screen gives the full time
        Path(row.source_path).name,
    )


@dataclass
class DataList:
    rows: list[VersionRow]
    total: int
    filter: str
    running: list[RunRow]
    running_total: int
    not_ingested: int = 0  # files the watcher moved to quarantine without a version


class DataScreen(DeckScreen):
    SCREEN_TITLE = "Data"
    HELP = (
        "Dataset versions, newest first (the newest 500 that match are shown): each batch of "
        "data ingested, with the outcome of its validation (accepted, warned or rejected), its "
        "shape, size, arrival and source file. 'ref' marks the dataset's reference, the "
        "baseline for bins and drift. Validations still running are listed above the table. "
        "f cycles the filter: all, rejected, warned, quarantined (offending rows kept). "
        "Enter opens a version: its checks, quarantined rows and column profiles."
    )
    BINDINGS = [
        Binding("f", "cycle_filter", "Filter", id="data-filter"),
        Binding("escape", "clear_filter", "All versions", show=False, id="data-clear-filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = "all"
        self._validations: list[RunRow] = []
        self._validations_total = 0

    def compose_body(self) -> ComposeResult:
        yield Plain(id="data-running")
        yield DeckTable(id="data-table", follow_top=True)
        yield Plain(id="data-status")

    def on_mount(self) -> None:
        table = self.query_one("#data-table", DeckTable)
        table.add_columns("VERSION", "STATUS", "ROWS", "COLS", "SIZE", "ARRIVED", "SOURCE")
        table.focus()
        self.query_one("#data-running", Static).display = False
        self.set_interval(1.0, self._tick)
        # DeckScreen.on_mount runs after this (Textual calls every class's handler) and loads.

    def fetch(self, store: Store) -> DataList:
        flt = self.filter
        rows, total = list_versions(
            store,
            status=flt if flt in ("rejected", "warned") else None,
            quarantined=flt == "quarantined",
            limit=WINDOW,
        )
        running, running_total = list_runs(
            store, RunFilter(kind="validate", status="running"), limit=RUNNING_SHOWN
        )
        from mldeck.data.watcher import count_not_ingested

        return DataList(rows, total, flt, running, running_total,
                        count_not_ingested(self.deck.workspace))  # fmt: skip

    def show(self, data: DataList) -> None:
        table = self.query_one("#data-table", DeckTable)
        table.replace_rows([(str(row.id), version_cells(self.app, row)) for row in data.rows])
        table.border_title = "Dataset versions" + (
            f" · {data.filter} only" if data.filter != "all" else ""
        )
        if data.total == 0:
            message = EMPTY if data.filter == "all" else f"no {data.filter} versions"
        elif data.total > len(data.rows):
            message = f"showing the newest {len(data.rows)} of {data.total} versions"
        else:
            message = fmt.plural(data.total, "version")
        if data.filter != "all":
            message += f" · filter: {data.filter} (f: next, esc: all)"
        if data.not_ingested:
            message += (f" · {fmt.plural(data.not_ingested, 'file')} not ingested, in "
                        "data/quarantine/ ('mldeck data quarantine' says why)")  # fmt: skip
        self.query_one("#data-status", Static).update(message)
        self._validations, self._validations_total = data.running, data.running_total
        self._show_running()

    def _show_running(self) -> None:
        line = self.query_one("#data-running", Static)
        line.display = bool(self._validations)
        if not self._validations:
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, run in enumerate(self._validations):
            if i:
                text.append("\n")
            text.append_text(status_text(self.app, "running"))
            text.append(f" {run.name}", style="bold")
            progress = fmt.progress(run.progress, run.status)
            if progress:
                text.append(f" {progress}")
            if run.progress_message:
                text.append(f" · {run.progress_message}")
            text.append(f" · {fmt.duration(run.duration)}")
        more = self._validations_total - len(self._validations)
        if more > 0:
            text.append(f"\n… and {more} more validations running", style="dim")
        line.update(text)

    def _tick(self) -> None:
        """Advance the elapsed time of running validations between reloads."""
        if self._validations:
            self._show_running()

    def set_filter(self, name: str) -> None:
        """Show only versions matching *name* (one of FILTERS)."""
        self.filter = name if name in FILTERS else "all"
        if self.is_mounted:
            self.reload()

    def action_cycle_filter(self) -> None:
        self.set_filter(FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)])

    def action_clear_filter(self) -> None:
        if self.filter != "all":
            self.set_filter("all")

    @on(DataTable.RowSelected, "#data-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(VersionDetailScreen(int(event.row_key.value)))


# -- one version ---------------------------------------------------------------------------------


@dataclass
class OffendingRows:
    """Rows to show in the quarantine tab: from the offending-rows file, or the report's examples."""

    columns: list[str]
    rows: list[tuple[str, tuple]]
    total: int
    origin: str  # what the rows are, for the line under the table


@dataclass
class VersionView:
    detail: VersionDetail
    checks: list[dict[str, Any]]
    offending: OffendingRows
    histograms: dict[str, Histogram | str] = field(default_factory=dict)
    has_reference: bool = False


_CHECK_ORDER = {"fail": 0, "warn": 1, "pass": 2}


def check_label(check: dict[str, Any]) -> str:
    column = check.get("column")
    return f"{check.get('check', '?')}({column})" if column else str(check.get("check", "?"))


class VersionDetailScreen(DeckScreen):
    SCREEN_TITLE = "Dataset version"
    WRITES = frozenset({"score", "drift", "revalidate"})
    HELP = (
        "One dataset version: where it came from, its shape and its validation. Checks lists "
        "every check, failures first, with how many rows broke it. Quarantined rows shows the "
        "offending rows kept aside (up to 200, with the reason each was flagged), or the examples "
        "stored in the report. Profile summarises each column; move the cursor to a column to "
        "draw its distribution, next to the reference's (what drift compares against); z gives "
        "the chart more room. c, r and p show the Checks, Quarantined rows and Profile tabs. "
        "Wide tables scroll sideways with the left and right arrows. v "
        "validates the stored bytes again under the current mldeck.toml (after fixing the "
        "setting a rejection names); the previous report is kept."
    )
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="version-back"),
        # The tabs name themselves: their keys are in the help, so the footer keeps q at 80.
        Binding("c", "tab('checks')", "Checks", show=False, id="version-tab-checks"),
        Binding(
            "r",
            "tab('rows')",
            "Rows",
            tooltip="Quarantined rows",
            show=False,
            id="version-tab-rows",
        ),
        Binding("p", "tab('profile')", "Profile", show=False, id="version-tab-profile"),
        Binding("z", "zoom", "Zoom chart", id="version-zoom"),
        Binding("s", "score", "Score", id="version-score"),
        Binding("d", "drift", "Drift", tooltip="Check drift", id="version-drift"),
        Binding(
            "v",
            "revalidate",
            "Revalidate",
            tooltip="Validate again under mldeck.toml",
            id="version-revalidate",
        ),
    ]

    def __init__(self, version_id: int) -> None:
        super().__init__()
        self.version_id = version_id
        self._label = f"version {version_id}"
        self._view: VersionView | None = None

    def compose_body(self) -> ComposeResult:
        yield Plain(id="version-summary")
        with TabbedContent(initial="checks", id="version-tabs"):
            with TabPane("Checks", id="checks"):
                yield DeckTable(id="version-checks")
                yield Plain(id="check-detail")
            with TabPane("Quarantined rows", id="rows"):
                yield DeckTable(id="version-rows")
                yield Plain(id="row-detail")
                yield Plain(id="rows-status")
            with TabPane("Profile", id="profile"):
                yield DeckTable(id="version-profile")
                yield Plain(id="profile-caption")
                yield HistogramPlot(id="profile-plot")

    def on_mount(self) -> None:
        self.query_one("#version-checks", DeckTable).add_columns(
            "RESULT", "CHECK", "ROWS", "DETAIL"
        )
        self.query_one("#version-profile", DeckTable).add_columns(
            "COLUMN", "KIND", "COUNT", "NULLS", "MIN", "MEAN", "MAX", "DISTINCT / TOP"
        )
        self.query_one("#version-checks", DeckTable).focus()

    def subtitle(self) -> str:
        return self._label

    # -- reading (worker thread) ----------------------------------------------------------------
    def fetch(self, store: Store) -> VersionView:
        detail = version_detail(store, self.version_id)
        row = detail.row
        checks = sorted(
            detail.report.get("checks", []), key=lambda c: _CHECK_ORDER.get(c.get("status"), 3)
        )
        reference = None
        if not row.is_reference:
            from mldeck.data.ingest import reference_of  # polars: loaded when first needed

            reference = reference_of(store, row.dataset)
        reference_columns = (reference or {}).get("columns", {})
        histograms = {
            name: column_histogram(
                name,
                column,
                reference_columns.get(name, {}) if reference is not None else None,
                label=row.label,
            )
            for name, column in detail.profile.get("columns", {}).items()
        }
        return VersionView(
            detail, checks, self._offending(row, checks), histograms, reference is not None
        )

    def _offending(self, row: VersionRow, checks: list[dict[str, Any]]) -> OffendingRows:
        path, problem = self._rows_file(row)
        if path is not None:
            try:
                return _read_rows(path, self._relative(path))
            except Exception as exc:  # unreadable or vanished: fall back to the examples
                problem = f"cannot read {self._relative(path)}: {exc}"
        examples = _examples(checks)
        if problem:
            examples.origin = f"{problem}; {examples.origin}" if examples.rows else problem
        return examples

    def _rows_file(self, row: VersionRow) -> tuple[Path | None, str]:
        """The version's offending-rows file, if it has one (it sits next to a rejected batch)."""
        recorded = row.quarantine_path
        if not recorded:
            return None, ""
        root = self.deck.workspace.root.resolve()
        where = Path(recorded)
        derived = not where.name.endswith(".rows.parquet")
        if derived:  # a rejected batch's copy: its offending rows are beside it
            from mldeck.data.ingest import rows_file_beside

            beside = rows_file_beside(recorded, row.source_path)
            if not beside:
                return None, ""
            where = Path(beside)
        path = (root / where).resolve()
        if not path.is_relative_to(root):
            return None, f"{recorded} is outside the workspace"
        if path.is_file():
            return path, ""
        return None, "" if derived else f"{recorded} is missing"

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.deck.workspace.root.resolve()))
        except ValueError:
            return path.name

    # -- showing (event loop) -------------------------------------------------------------------
    def show(self, view: VersionView) -> None:
        self._view = view
        row = view.detail.row
        if self._label != row.label:
            self._label = row.label
            self.sync_topbar()
        self._show_summary(view)
        self._show_checks(view)
        self._show_rows(view)
        self._show_profile(view)

    def _show_summary(self, view: VersionView) -> None:
        detail, row = view.detail, view.detail.row
        report = detail.report
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(row.label, style="bold")
        text.append(" ")
        text.append_text(status_text(self.app, row.status))
        if row.is_reference:
            champion = rich_color(self.app.theme_variables.get("champion", ""))
            text.append(" reference", style=f"bold {champion}")
        if row.n_rows is not None:
            text.append(
                f" · {fmt.plural(row.n_rows, 'row')} × {fmt.plural(row.n_cols or 0, 'col')}"
            )
        else:
            text.append(" · unreadable")
        text.append(f" · {fmt.size(row.size_bytes)} · sha256 {row.sha256[:12]}")
        text.append(f"\nsource {Path(row.source_path).name} · arrived {fmt.when(row.arrived_at)}")
        if detail.file_format:
            text.append(f" · {detail.file_format}")
        text.append("\n")
        if report.get("read_error"):
            text.append(f"unreadable: {report['read_error']}", style="bold")
        else:
            offending = int(report.get("offending_rows") or 0)
            text.append(fmt.plural(offending, "offending row"))
            text.append(" · quarantine ")
            if row.quarantine_path:
                text.append(row.quarantine_path)
            else:
                text.append("none", style="dim")
        self.query_one("#version-summary", Static).update(text)

    def _show_checks(self, view: VersionView) -> None:
        table = self.query_one("#version-checks", DeckTable)
        rows = []
        for i, check in enumerate(view.checks):
            count = int(check.get("failed_rows") or 0)
            rows.append(
                (
                    str(i),
                    (
                        status_text(self.app, str(check.get("status", "?"))),
                        check_label(check),
                        Text(str(count) if count else "", justify="right"),
                        str(check.get("detail", "")),
                    ),
                )
            )
        table.replace_rows(rows)
        failed = sum(1 for c in view.checks if c.get("status") != "pass")
        table.border_title = (
            f"{fmt.plural(len(view.checks), 'check')} · {failed} not passed"
            if view.checks
            else "no checks"
        )
        self._show_check_detail()

    def _show_check_detail(self) -> None:
        line = self.query_one("#check-detail", Static)
        table = self.query_one("#version-checks", DeckTable)
        key = table.selected_key()
        if self._view is None or key is None:
            line.update("")
            return
        check = self._view.checks[int(key)]
        text = Text()
        text.append(check_label(check), style="bold")
        status = check.get("status")
        said = {"pass": "passed", "warn": "warned", "fail": "failed"}.get(status or "", "?")
        text.append(f" {said}: {check.get('detail', '')}")
        # What failing it means, said apart from the outcome ("(error)" read as a failure).
        severity = check.get("severity")
        if severity in ("error", "warning"):
            if status == "pass":
                means = "would reject the batch" if severity == "error" else "would only warn"
                text.append(f" · had it failed, it {means}", style="dim")
            else:
                means = "rejects the batch" if severity == "error" else "only warns"
                text.append(f" · it {means}", style="dim")
        examples = len(check.get("examples") or [])
        if examples:
            text.append(f" · {fmt.plural(examples, 'example')} under Quarantined rows", style="dim")
        line.update(text)

    @on(DataTable.RowHighlighted, "#version-checks")
    def _check_highlighted(self) -> None:
        self._show_check_detail()

    def _show_rows(self, view: VersionView) -> None:
        offending = view.offending
        table = self.query_one("#version-rows", DeckTable)
        if [str(c.label) for c in table.columns.values()] != offending.columns:
            table.clear(columns=True)
            table.add_columns(*offending.columns)
        table.replace_rows(offending.rows)
        self.query_one("#rows-status", Static).update(offending.origin)
        self._show_row_detail()

    @on(DataTable.RowHighlighted, "#version-rows")
    def _show_row_detail(self) -> None:
        """The highlighted row's reasons in full under the table (its REASON cell is cut)."""
        line = self.query_one("#row-detail", Static)
        table = self.query_one("#version-rows", DeckTable)
        key = table.selected_key()
        headers = [str(c.label) for c in table.columns.values()]
        if key is None or not headers or headers[0] != "REASON":
            line.update("")
            return
        cells = [c.plain if isinstance(c, Text) else str(c) for c in table.get_row(key)]
        text = Text()
        if len(headers) > 1 and headers[1] == "ROW":
            text.append(f"row {cells[1]}: ", style="bold")
        text.append(cells[0])
        line.update(text)

    def _show_profile(self, view: VersionView) -> None:
        table = self.query_one("#version-profile", DeckTable)
        columns = view.detail.profile.get("columns", {})
        table.replace_rows([(name, _profile_cells(name, col)) for name, col in columns.items()])
        table.border_subtitle = "" if columns else "no profile (the file could not be read)"
        self._draw_selected()

    def _draw_selected(self) -> None:
        plot = self.query_one("#profile-plot", HistogramPlot)
        caption = self.query_one("#profile-caption", Static)
        key = self.query_one("#version-profile", DeckTable).selected_key()
        chart = None if self._view is None or key is None else self._view.histograms.get(key)
        show_chart(plot, caption, key, chart, self._legend)

    def _legend(self, chart: Histogram) -> Text:
        text = legend(chart, self.app.theme_variables)
        view = self._view
        if view is not None and not view.has_reference and not view.detail.row.is_reference:
            text.append(" · the dataset has no reference", style="dim")
        return text

    @on(DataTable.RowHighlighted, "#version-profile")
    def _column_highlighted(self) -> None:
        self._draw_selected()

    @on(TabbedContent.TabActivated, "#version-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        if pane is not None:
            pane.query_one(DeckTable).focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.WRITES:
            return super().check_action(action, parameters)
        if action == "zoom":
            tabs = self.query("#version-tabs")
            return bool(tabs) and tabs.first(TabbedContent).active == "profile"
        return True

    def _cannot_monitor(self, doing: str, *, reference_too: bool) -> bool:
        """Say why this version is not scored or checked, before any dialog (a rejected batch,
        the reference itself); False when it can be."""
        row = self._view.detail.row if self._view is not None else None
        if row is None:
            return False
        why = ("it is the dataset's reference, what batches are compared with"
               if row.is_reference and reference_too else
               "it was rejected by validation (see its checks)" if row.status == "rejected"
               else "")  # fmt: skip
        if why:
            self.notify(f"{row.label} is not {doing}: {why}", severity="warning", timeout=6)
        return bool(why)

    def action_score(self) -> None:
        """Score this version with the champion (and the challenger in shadow), after confirming."""
        from mldeck.tui.screens.confirm import ConfirmScreen

        if self._cannot_monitor("scored", reference_too=False):
            return
        if not self.deck.champion_label:  # what 'mldeck score' would refuse, said before asking
            self.notify(f"{self._label} cannot be scored: no model is champion yet (promote one "
                        "on the Models screen: 4)", severity="warning", timeout=6)  # fmt: skip
            return

        what = (
            f"Score {self._label} with the champion, and the challenger in shadow if there is one. "
            "Predictions are stored as an artifact of a score run."
        )
        self.app.push_screen(
            ConfirmScreen(f"Score {self._label}", what, placeholder=None),
            self._score_confirmed,
        )

    def _score_confirmed(self, note: str | None) -> None:
        if note is not None:
            self._started(f"scoring {self._label}")
            self.run_worker(self._score, thread=True, group="score", exit_on_error=False)

    def _started(self, doing: str) -> None:
        """Said at once: the work runs in a child process for seconds or minutes, and nothing
        else on this screen moves until it ends."""
        self.notify(f"{doing}… (its run is on the Runs screen: 2)", timeout=6)

    def _score(self) -> None:
        # As 'mldeck score' in a child process: quitting the console interrupts it.
        app = self.app
        result = self.deck.child_commands.run_json("score", str(self.version_id))
        champion = result["champion"]
        message = (
            f"{result['dataset']}: {champion['rows']} rows scored by "
            f"{champion['model']}:{champion['version']} in {champion['latency_ms']:.0f} ms"
        )
        shadow = result.get("shadow")
        if shadow is not None:
            message += f"; shadow {shadow['model']}:{shadow['version']} too"
        elif result.get("shadow_error"):
            message += f"; the shadow challenger failed: {result['shadow_error']}"
        app.call_from_thread(app.notify, message, title="Scored", timeout=10)

    def action_drift(self) -> None:
        """Check this version for drift and performance (scored by the champion first if it was
        not), after confirming; the result is on the Drift screen."""
        from mldeck.tui.screens.confirm import ConfirmScreen

        if self._cannot_monitor("checked for drift", reference_too=True):
            return

        what = (
            f"Compare {self._label} with the dataset's reference (drift per feature, of the "
            "label, of the champion's scores, of the joint distribution) and estimate the "
            "champion's performance; alerts follow the rules of [monitor]."
        )
        self.app.push_screen(
            ConfirmScreen(f"Check {self._label} for drift", what, placeholder=None),
            self._drift_confirmed,
        )

    def _drift_confirmed(self, note: str | None) -> None:
        if note is not None:
            self._started(f"checking {self._label} for drift")
            self.run_worker(self._drift, thread=True, group="drift", exit_on_error=False)

    def _drift(self) -> None:
        from mldeck.tui.screens.drift import check_in_child, describe

        app = self.app
        result = check_in_child(self.deck, self.version_id)
        app.call_from_thread(setattr, self.deck, "asked_report", result["report_id"])
        message = describe(result) + " (Drift screen: 5)"
        app.call_from_thread(app.notify, message, title="Drift checked", timeout=10)

    def action_revalidate(self) -> None:
        """Validate this version's stored bytes again under the current mldeck.toml, after
        confirming (as 'mldeck data revalidate')."""
        from mldeck.tui.screens.confirm import ConfirmScreen

        row = self._view.detail.row if self._view is not None else None
        if row is not None and row.is_reference:
            self.notify(f"{row.label} is not validated again: it is the dataset's reference, "
                        "what batches are compared with", severity="warning", timeout=6)  # fmt: skip
            return
        what = (
            f"Validate {self._label} again under the current mldeck.toml (after fixing the "
            "setting a rejection names). It takes the new status, report and profile; the "
            "previous report is kept with the new run, and earlier quarantine files stay."
        )
        self.app.push_screen(
            ConfirmScreen(f"Validate {self._label} again", what, placeholder=None),
            self._revalidate_confirmed,
        )

    def _revalidate_confirmed(self, note: str | None) -> None:
        if note is not None:
            self._started(f"validating {self._label} again")
            self.run_worker(self._revalidate, thread=True, group="revalidate", exit_on_error=False)

    def _revalidate(self) -> None:
        app = self.app
        result = self.deck.child_commands.run_json("data", "revalidate", str(self.version_id),
                                                   ok=(0, 3, 4))  # fmt: skip
        message = f"{result['version']}: {result['previous_status']} -> {result['status']}"
        if result["reasons"]:
            message += f" ({fmt.plural(len(result['reasons']), 'reason')}: see Checks)"
        if result["previous_status"] == "rejected" and result["status"] != "rejected":
            message += "; d scores it and checks its drift"
        severity = "error" if result["status"] == "rejected" else "information"
        app.call_from_thread(app.notify, message, title="Validated again", severity=severity,
                             timeout=10)  # fmt: skip
        app.call_from_thread(self.reload)

    def action_zoom(self) -> None:
        """Give the chart the room: the table keeps only the current column's row."""
        self.query_one("#profile", TabPane).toggle_class("zoomed")
        table = self.query_one("#version-profile", DeckTable)
        self.call_after_refresh(lambda: table.move_cursor(row=table.cursor_row, animate=False))

    def action_tab(self, tab: str) -> None:
        self.query_one("#version-tabs", TabbedContent).active = tab
        self.query_one(f"#{tab}", TabPane).query_one(DeckTable).focus()


# -- helpers (pure; the readers run in the worker thread) -----------------------------------------


def _profile_cells(name: str, col: dict[str, Any]) -> tuple:
    kind = col.get("kind", "?")
    nulls = int(col.get("nulls") or 0)
    low, mean, high = col.get("min"), col.get("mean"), col.get("max")
    top = ""
    if kind in ("string", "bool"):
        frequencies = col.get("frequencies") or {}
        count = int(col.get("count") or 0)
        shares = [f"{c} {100 * n / count:.0f}%" for c, n in list(frequencies.items())[:3] if count]
        distinct = col.get("distinct")
        top = (f"{distinct}: " if distinct is not None else "") + ", ".join(shares)
    return (
        # Cut so the statistics fit 80 columns: a number cut off at the table's edge shows only
        # its first digits (the line under the table names the column in full).
        _cut(name, NAME_WIDTH),
        kind,
        Text(str(col.get("count", "-")), justify="right"),
        Text(str(nulls), justify="right", style="" if nulls else "dim"),
        Text(_stat(low), justify="right"),
        Text(_stat(mean), justify="right"),
        Text(_stat(high), justify="right"),
        _cut(top),
    )


def _stat(value: Any) -> str:
    """A profile statistic, short: numbers to 4 significant digits, times to the minute."""
    if value is None:
        return "-"
    if isinstance(value, str):  # a date or time: the day is enough here
        return value[:10]
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        return str(number)
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    if abs(number) >= 1000:
        return f"{number:.0f}"
    return f"{number:.4g}"


def _cut(text: str, width: int = CELL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: Any) -> Text | str:
    if value is None:
        return Text("null", style="dim")
    if isinstance(value, float):
        return Text(_stat(value) if value == value else "NaN", justify="right")
    if isinstance(value, int) and not isinstance(value, bool):
        return Text(str(value), justify="right")
    return _cut(str(value))


def _read_rows(path: Path, shown_as: str) -> OffendingRows:
    """Up to QUARANTINE_ROWS rows of an offending-rows file, the reason first."""
    import polars as pl  # loaded when first needed, in the worker thread

    frame = pl.scan_parquet(path, glob=False)
    total = frame.select(pl.len()).collect().item()
    head = frame.head(QUARANTINE_ROWS).collect()
    names = head.columns
    order = [c for c in (REASON, ROW) if c in names] + [c for c in names if c not in (REASON, ROW)]
    head = head.select(order)
    rows = []
    for i, record in enumerate(head.iter_rows(named=True)):
        key = str(record.get(ROW, i))
        rows.append((key, tuple(_cell(record[c]) for c in order)))
    headers = [{REASON: "REASON", ROW: "ROW"}.get(c, c) for c in order]
    origin = f"{fmt.plural(total, 'offending row')} in {shown_as}"
    if total > len(rows):
        origin = f"the first {len(rows)} of {origin}"
    return OffendingRows(headers, rows, total, origin)


def _examples(checks: list[dict[str, Any]]) -> OffendingRows:
    """The example rows stored in the report, one block per check that has some."""
    names: list[str] = []
    for check in checks:
        for example in check.get("examples") or []:
            names += [k for k in example if k not in names]
    rows = []
    for i, check in enumerate(checks):
        for j, example in enumerate(check.get("examples") or []):
            cells = (check_label(check), *(_cell(example.get(n)) for n in names))
            rows.append((f"{i}:{j}", cells))
    if not rows:
        return OffendingRows(["REASON"], [], 0, "no offending rows")
    origin = f"{fmt.plural(len(rows), 'example row')} stored in the validation report"
    return OffendingRows(["REASON", *names], rows, len(rows), origin)
