"""Drift: a monitored batch against the reference, per feature (most severe first) with the
selected feature's distribution beside the reference's, the monitored batches, and drift and
performance (estimated with its band, realized) over time with the batches that raised alerts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color, ColorParseError
from textual.widgets import DataTable, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from mldeck import formatting as fmt
from mldeck.monitor.queries import (
    ReportDetail,
    ReportRow,
    list_reports,
    report_detail,
    timeline,
)
from mldeck.store.engine import Store
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.styles import rich_color, status_text
from mldeck.tui.widgets.histogram import (
    Histogram,
    HistogramPlot,
    legend,
    show_chart,
    spread_ticks,
    tick_number,
)
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Packed, Plain

REPORTS_SHOWN = 200
TIMELINE = 30  # batches drawn over time


@dataclass
class DriftView:
    reports: list[ReportRow]
    detail: ReportDetail | None
    charts: dict[str, Histogram | str] = field(default_factory=dict)
    timeline: list[ReportRow] = field(default_factory=list)  # one point per batch, oldest first


def feature_histogram(feature: dict[str, Any], batch: str) -> Histogram | str:
    """A stored feature result (``summary.features[i]``) as bars: the batch and the reference."""
    name, kind = feature["feature"], feature.get("kind", "")
    hist = feature.get("histogram")
    if hist and hist.get("edges"):
        labels = drift_bin_labels(hist)
        current = [100 * v for v in hist["current"]]
        reference = [100 * v for v in hist["reference"]]
        if len(labels) != len(current):
            return "no histogram (unexpected bins)"
        return Histogram(name, kind, labels, ((batch, tuple(current)), ("reference", tuple(reference))),
                         spread_ticks(len(labels)), "values per bin")  # fmt: skip
    frequencies = feature.get("frequencies")
    if frequencies:
        labels = tuple(k if len(k) <= 10 else k[:9] + "…" for k in list(frequencies)[:12])
        current = tuple(100 * v[1] for v in list(frequencies.values())[:12])
        reference = tuple(100 * v[0] for v in list(frequencies.values())[:12])
        return Histogram(name, kind, labels, ((batch, current), ("reference", reference)),
                         spread_ticks(len(labels), 8), "values per category")  # fmt: skip
    return "no distribution stored for this column"


def drift_bin_labels(hist: dict[str, Any]) -> tuple[str, ...]:
    """A short label per drift bin, by what it holds (its upper edge: the bins are closed on the
    right, and a label by the lower edge put a column's 1s under "0")."""
    from mldeck.monitor.drift import histogram_bins

    def label(how: str, a: float, b: float) -> str:
        if how == "(]" and hist.get("integers") and a == int(a) and b == int(b) and abs(b) < 1e15:
            # Whole numbers: the ones it holds (a + 1 to b).
            return tick_number(b) if b - a == 1 else f"{tick_number(a + 1)}-{tick_number(b)}"
        return {"<": f"<{tick_number(a)}", "=": tick_number(a), ">": f">{tick_number(a)}"}.get(
            how, f"≤{tick_number(b)}"
        )

    return tuple(label(*spec) for spec in histogram_bins(hist))


def _score(feature: dict[str, Any]) -> str:
    if feature.get("p_value") is not None:
        return f"p={feature['p_value']:.2g}"
    value = feature.get("statistic")
    return "-" if value is None else f"{value:.3f}"


class TimelinePlot(PlotextPlot):
    """Drift share (top) and performance (bottom) per batch; ▲ marks batches whose check raised
    alerts: about drift on the top chart, about a metric on the bottom one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[ReportRow] = []
        self.threshold: float | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(
            self, lambda _t: self.draw(self.rows, self.threshold)
        )

    def _color(self, variable: str) -> tuple[int, int, int]:
        try:
            return Color.parse(self.app.theme_variables.get(variable, "")).rgb
        except ColorParseError:
            return (128, 128, 128)

    def on_resize(self) -> None:
        # The subplots keep the size they were built for: drawn again for the new one.
        self.call_after_refresh(self._redraw)

    def _redraw(self) -> None:
        """Drawn again with what it shows when it runs (rows given since are not undone)."""
        self.draw(self.rows, self.threshold)

    def legend(self) -> list[tuple[str, list[Text]]]:
        """What the lines and marks are, said beside the charts rather than over them (plotext's
        legend hid the first batches' points)."""
        if not self.rows:
            return []
        variables = self.app.theme_variables
        primary, accent, alarm, muted = (rich_color(variables.get(name, "")) for name in
                                         ("primary", "accent", "status-failed", "status-muted"))  # fmt: skip
        metric = next((r.metric for r in self.rows if r.metric), "metric")
        top = [Text.assemble(("■ ", primary), "drift share %")]
        if self.threshold is not None:
            top.append(Text.assemble(("■ ", alarm), "threshold"))
        top.append(Text.assemble(("▲ ", alarm), "drift alerts"))
        bottom = []
        if any(r.estimated is not None for r in self.rows):
            bottom.append(Text.assemble(("■ ", accent), f"estimated {metric} (· 95 % band)"))
        if any(r.realized is not None for r in self.rows):
            bottom.append(Text.assemble(("■ ", muted), f"realized {metric}"))
        if bottom and any(r.performance_alerts for r in self.rows):
            bottom.append(Text.assemble(("▲ ", alarm), f"{metric} alerts"))
        return [
            ("Top", top),
            ("Below", bottom or [Text("no estimate nor labels yet", style="dim")]),
        ]

    def draw(self, rows: list[ReportRow], threshold: float | None) -> None:
        self.rows, self.threshold = rows, threshold
        plt = self.plt
        plt.clear_figure()
        if rows:
            # A tick label every other row at most: two on one row overwrite each other.
            most = max(2, min(5, (max(self.size.height // 2 - 3, 2)) // 2 + 1))
            xs = list(range(1, len(rows) + 1))
            labels = [r.batch.rpartition(":")[2] for r in rows]
            ticks = spread_ticks(len(xs), 8)
            alert_color = self._color("status-failed")
            plt.subplots(2, 1)
            top = plt.subplot(1, 1)
            shares = [r.drift_share * 100 for r in rows]
            top.plot(xs, shares, color=self._color("primary"), marker="braille")
            top.scatter(xs, shares, color=self._color("primary"), marker="●")
            if threshold is not None:
                top.plot(xs, [threshold * 100] * len(xs), color=alert_color, marker="braille")
            # Each chart marks the alerts about what it draws (a drift alert marked the
            # performance line too, as if the metric had fallen).
            alerted = [(x, r.drift_share * 100) for x, r in zip(xs, rows, strict=True)
                       if r.alerts > r.performance_alerts]  # fmt: skip
            if alerted:
                top.scatter([a[0] for a in alerted], [a[1] for a in alerted], marker="▲",
                            color=alert_color)  # fmt: skip
            top.xticks([xs[i] for i in ticks], [labels[i] for i in ticks])
            upper = max(100 * max(r.drift_share for r in rows), 100 * (threshold or 0), 1) * 1.1
            top.ylim(0, upper)
            top.yticks(*nice_ticks(0, upper, most))
            bottom = plt.subplot(2, 1)
            figures: list[float] = []
            est = [(x, r) for x, r in zip(xs, rows, strict=True) if r.estimated is not None]
            if est:
                color = self._color("accent")
                bottom.plot([x for x, _ in est], [r.estimated for _, r in est], color=color,
                            marker="braille")  # fmt: skip
                bottom.scatter([x for x, _ in est], [r.estimated for _, r in est], color=color,
                               marker="●")  # fmt: skip
                figures += [r.estimated for _, r in est]
                band = [(x, r) for x, r in est if r.estimated_lower is not None]
                if band:
                    for side in ("estimated_lower", "estimated_upper"):
                        values = [getattr(r, side) for _, r in band]
                        bottom.plot([x for x, _ in band], values, color=color, marker="·")
                        figures += values
            real = [
                (x, r.realized) for x, r in zip(xs, rows, strict=True) if r.realized is not None
            ]
            if real:
                muted = self._color("status-muted")
                bottom.plot([x for x, _ in real], [v for _, v in real], color=muted,
                            marker="braille")  # fmt: skip
                bottom.scatter([x for x, _ in real], [v for _, v in real], color=muted,
                               marker="●")  # fmt: skip
                figures += [v for _, v in real]
            perf_alerts = [(x, r.realized if r.realized is not None else r.estimated)
                           for x, r in zip(xs, rows, strict=True)
                           if r.performance_alerts
                           and (r.realized is not None or r.estimated is not None)]  # fmt: skip
            if perf_alerts:
                bottom.scatter([a[0] for a in perf_alerts], [a[1] for a in perf_alerts],
                               marker="▲", color=alert_color)  # fmt: skip
            if figures:
                low, high = min(figures), max(figures)
                pad = max(high - low, 0.01) * 0.05
                bottom.ylim(low - pad, high + pad)
                bottom.yticks(*nice_ticks(low - pad, high + pad, most))
            bottom.xticks([xs[i] for i in ticks], [labels[i] for i in ticks])
        self.refresh()


def nice_ticks(low: float, high: float, most: int = 5) -> tuple[list[float], list[str]]:
    """At most *most* evenly spaced round values within [low, high] and their labels (plotext's
    own fell unevenly on a short chart: 26.2, 21.8, 13.1, 8.7, 0.0)."""
    span = max(high - low, 1e-9)
    raw = span / max(most - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    values = []
    value = first
    while value <= high + step * 1e-9:
        values.append(round(value, 10))
        value += step
    digits = next(d for d in range(10) if abs(round(step, d) - step) < step * 1e-6)
    return values, [f"{v:.{digits}f}" for v in values]


class DriftScreen(DeckScreen):
    SCREEN_TITLE = "Drift"
    WRITES = frozenset({"check"})
    HELP = (
        "Drift of a monitored batch against the dataset's reference. Features: every column, "
        "the most severe first (score against its threshold: a p-value for the KS and "
        "chi-square tests, a distance otherwise), with the selected column's distribution "
        "beside the reference's; the label and the champion's scores are listed after the "
        "features. Batches: every check of a batch, newest first (Enter shows it). Over time: "
        "one point per batch in the order they arrived (its newest check): the share of "
        "drifted features with its threshold, and the champion's estimated "
        "performance (with its 95 % band) and realized performance once labels are known; "
        "▲ marks batches whose check raised alerts: about drift on the drift share, about a "
        "metric on the performance. A batch is checked with 'd' on its version (Enter on the Data screen), "
        "'mldeck drift check', or by the scheduler."
    )
    BINDINGS = [
        Binding("f", "tab('drift-features-pane')", "Features", show=False, id="drift-tab-features"),
        Binding("b", "tab('drift-batches-pane')", "Batches", show=False, id="drift-tab-batches"),
        Binding("t", "tab('drift-time-pane')", "Over time", show=False, id="drift-tab-time"),
        Binding("left_square_bracket", "step(1)", "Older", id="drift-older"),
        Binding("right_square_bracket", "step(-1)", "Newer", id="drift-newer"),
        Binding("c", "check", "Re-check", id="drift-check"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report_id: int | None = None  # None: the newest
        self._view: DriftView | None = None
        self._features_of: int | None = None  # the report whose features the table shows

    def compose_body(self) -> ComposeResult:
        yield Packed(id="drift-summary")
        features = DeckTable(id="drift-features")
        batches = DeckTable(id="drift-batches")
        with TabbedContent(initial="drift-features-pane", id="drift-tabs"):
            with TabPane("Features", id="drift-features-pane"):
                yield features
                yield Plain(id="drift-caption")
                yield HistogramPlot(id="drift-plot")
            with TabPane("Batches", id="drift-batches-pane"):
                yield batches
            with TabPane("Over time", id="drift-time-pane"):
                yield Packed(id="drift-timeline-legend")
                yield TimelinePlot(id="drift-timeline")

    def on_mount(self) -> None:
        # Columns added once mounted, so they size to their content (a reload asked for before
        # the mount waits for it: DeckScreen.reload).
        self.query_one("#drift-features", DeckTable).add_columns(
            "FEATURE", "METHOD", "SCORE", "LIMIT", "DRIFT"
        )
        self.query_one("#drift-batches", DeckTable).add_columns(
            "BATCH", "CHECKED", "DRIFTED", "DATASET", "ESTIMATED", "REALIZED", "ALERTS"
        )
        self.query_one("#drift-features", DeckTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("check", "step") and not (self._view and self._view.detail):
            return False  # no report yet: nothing to re-check or step through
        return super().check_action(action, parameters)

    # -- reading (worker thread) ----------------------------------------------------------------
    def fetch(self, store: Store) -> DriftView:
        reports = list_reports(store, limit=REPORTS_SHOWN)
        chosen = self.report_id
        if chosen is None or all(r.id != chosen for r in reports):
            chosen = reports[0].id if reports else None
        detail = None if chosen is None else report_detail(store, chosen)
        charts: dict[str, Histogram | str] = {}
        if detail is not None:
            s = detail.summary
            for feature in [
                *s.get("features", []),
                *filter(None, [s.get("label"), s.get("prediction")]),
            ]:
                charts[_key(feature)] = feature_histogram(feature, detail.row.batch)
        return DriftView(reports, detail, charts, timeline(store, limit=TIMELINE))

    # -- showing (event loop) -------------------------------------------------------------------
    def show(self, view: DriftView) -> None:
        self._view = view
        self.refresh_bindings()
        self._show_summary(view)
        self._show_features(view)
        self._show_batches(view)
        threshold = view.detail.summary.get("share_threshold") if view.detail else None
        plot = self.query_one("#drift-timeline", TimelinePlot)
        plot.draw(view.timeline, threshold)
        self.query_one("#drift-timeline-legend", Packed).update(plot.legend())

    def subtitle(self) -> str:
        view = self._view
        return view.detail.row.batch if view and view.detail else ""

    def _show_summary(self, view: DriftView) -> None:
        summary = self.query_one("#drift-summary", Packed)
        if view.detail is None:
            summary.update([("", [Text(
                "No batch has been checked for drift yet: press d on a version of the Data "
                "screen (3), or run 'mldeck drift check BATCH'.", style="dim",
            )])])  # fmt: skip
            return
        self.sync_topbar()
        s, row = view.detail.summary, view.detail.row
        var = self.app.theme_variables
        failed = rich_color(var.get("status-failed", ""))
        ok = rich_color(var.get("status-succeeded", ""))
        # Most telling first; on a narrow terminal the items at the ends of the lines (the
        # check's time, the holdout) go to a line of their own, never cut off.
        drift = Text(f"{row.n_drifted}/{row.n_features} drifted ({row.drift_share:.0%}) ")
        if row.dataset_drift:
            drift.append("DATASET DRIFT", style=f"bold {failed}")
        else:
            drift.append("no dataset drift", style=ok)
        first = [Text(f"vs {view.detail.reference}"), drift]
        multi = s.get("multivariate")
        if multi:
            first.append(Text.assemble("joint ", ("drift", f"bold {failed}") if multi["drifted"]
                                       else ("ok", ok)))  # fmt: skip
        elif s.get("multivariate_note"):
            first.append(Text("joint not compared", style="dim"))
        first.append(Text(f"checked {fmt.when_short(row.created_at)}", style="dim"))
        est = s.get("estimated")
        realized = s.get("realized") or {}
        metric = (est or {}).get("metric") or "roc_auc"
        second: list[Text] = []
        if s.get("model") and s.get("model_note"):  # the champion could not score the batch
            second.append(Text(str(s["model_note"]), style="bold"))
            model = str(s["model"])
        elif s.get("model"):
            judged = Text(f"{metric}")
            if est and est.get("value") is not None:
                judged.append(f" estimated {est['value']:.3f}")
                if est.get("lower") is not None:
                    judged.append(f" [{est['lower']:.3f}, {est['upper']:.3f}]")
            second.append(judged)
            if realized.get(metric) is not None:
                second.append(Text(f"realized {realized[metric]:.3f}", style="bold"))
            else:
                second.append(Text("no labels yet", style="dim"))
            if est and est.get("reference") is not None:
                second.append(Text(f"holdout {est['reference']:.3f}", style="dim"))
            model = str(s["model"])
        else:
            # What this report scored, not the registry now: a champion promoted since did not
            # score this batch (the top bar names it); a re-check does.
            second.append(Text("no champion when checked: features only", style="dim"))
            now = self.deck.champion_label
            if now:
                again = "champion now" if self.deck.read_only else "c re-checks with"
                second.append(Text(f"{again} {now}", style="dim"))
            model = ""
        summary.update([(row.batch, first), (model, second)])

    def _show_features(self, view: DriftView) -> None:
        table = self.query_one("#drift-features", DeckTable)
        rows = []
        if view.detail is not None:
            s = view.detail.summary
            for feature in [
                *s.get("features", []),
                *filter(None, [s.get("label"), s.get("prediction")]),
            ]:
                name = feature["feature"]
                if feature.get("role") in ("label", "prediction"):
                    name = f"{name} ({feature['role']})"
                drift = status_text(self.app, "fail" if feature["drifted"] else "ok")
                drift.plain = "DRIFT" if feature["drifted"] else "-"
                if (
                    feature["drifted"]
                    and feature.get("note")
                    and feature.get("statistic") is not None
                ):
                    drift.plain += f": {feature['note']}"  # why, beside a score that looks quiet
                rows.append((_key(feature), (name, feature["method"], _score(feature),
                                             f"{feature['threshold']:g}", drift)))  # fmt: skip
        table.replace_rows(rows)
        shown = None if view.detail is None else view.detail.row.id
        if shown != self._features_of:  # another report: its most severe feature first
            self._features_of = shown
            if table.row_count:
                table.move_cursor(row=0, animate=False)
            table.scroll_home(animate=False)
        self._draw_selected()

    def _show_batches(self, view: DriftView) -> None:
        table = self.query_one("#drift-batches", DeckTable)
        rows = []
        for r in view.reports:
            drift = status_text(self.app, "fail" if r.dataset_drift else "ok")
            drift.plain = "DRIFT" if r.dataset_drift else "-"
            rows.append((str(r.id), (
                r.batch, fmt.when(r.created_at), f"{r.n_drifted}/{r.n_features}", drift,
                "-" if r.estimated is None else f"{r.estimated:.3f}",
                "-" if r.realized is None else f"{r.realized:.3f}",
                str(r.alerts) if r.alerts else "-",
            )))  # fmt: skip
        table.replace_rows(rows)
        if view.detail is not None and str(view.detail.row.id) in table.rows:
            table.move_cursor(row=table.get_row_index(str(view.detail.row.id)), animate=False)

    def _draw_selected(self) -> None:
        plot = self.query_one("#drift-plot", HistogramPlot)
        caption = self.query_one("#drift-caption", Static)
        key = self.query_one("#drift-features", DeckTable).selected_key()
        chart = None if self._view is None or key is None else self._view.charts.get(key)
        show_chart(plot, caption, key, chart, lambda c: legend(c, self.app.theme_variables))

    @on(DataTable.RowHighlighted, "#drift-features")
    def _feature_highlighted(self) -> None:
        self._draw_selected()

    @on(DataTable.RowSelected, "#drift-batches")
    def _batch_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        chosen = int(event.row_key.value)
        reports = self._view.reports if self._view is not None else []
        self.report_id = None if reports and reports[0].id == chosen else chosen  # newest: followed
        self.action_tab("drift-features-pane")
        self.reload()

    @on(TabbedContent.TabActivated, "#drift-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        if pane is not None:
            tables = pane.query(DeckTable)
            if tables:
                tables.first().focus()

    # -- actions --------------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one("#drift-tabs", TabbedContent).active = tab

    def action_step(self, offset: int) -> None:
        view = self._view
        if view is None or view.detail is None:
            return
        ids = [r.id for r in view.reports]
        # From the report asked for last, not the one shown: presses quicker than a reload
        # each move one more report.
        current = self.report_id if self.report_id in ids else view.detail.row.id
        index = ids.index(current) + offset
        if 0 <= index < len(ids):
            # Back on the newest: following it again, as the screen does until a step away.
            self.report_id = ids[index] if index else None
            self.reload()
        else:
            self.notify("this is the oldest report" if offset > 0 else "this is the newest report",
                        timeout=3)  # fmt: skip

    def action_check(self) -> None:
        view = self._view
        if view is None or view.detail is None or self.deck.read_only:
            return
        batch = view.detail.row.dataset_version_id
        label = view.detail.row.batch
        self.notify(f"checking {label} for drift…", timeout=4)
        self.run_worker(lambda: self._check(batch), thread=True, group="check", exit_on_error=False)

    def _check(self, batch: int) -> None:
        result = check_in_child(self.deck, batch)
        self.app.call_from_thread(self._checked, result["report_id"], describe(result))

    def _checked(self, report_id: int, message: str) -> None:
        # Its report shown: the newest batch's is listed first, so a batch checked again
        # is not, and following the newest would show another.
        self.report_id = report_id
        self.notify(message, title="Drift checked", timeout=8)
        self.reload()

    def reload(self) -> None:
        asked, self.deck.asked_report = self.deck.asked_report, None
        if asked is not None:  # checked from the Data screen: shown here next
            self.report_id = asked
        super().reload()


def check_in_child(deck: Any, batch: int) -> dict[str, Any]:
    """``mldeck drift check BATCH`` in a child process (quitting interrupts it); exit 3 means
    drift or an alert, not a failure."""
    return deck.child_commands.run_json("drift", "check", str(batch), ok=(0, 3))


def describe(result: dict[str, Any]) -> str:
    """One line about a check (as ``drift check --json`` gives it), for notifications."""
    text = f"{result['batch']}: {result['n_drifted']}/{result['n_features']} features drifted"
    if result["dataset_drift"]:
        text += " (dataset drift)"
    estimated = result.get("estimated") or {}
    if estimated.get("value") is not None:
        text += f"; estimated {estimated['metric']} {estimated['value']:.3f}"
    new = [a for a in result.get("alerts", []) if a["new"]]
    if new:
        text += f"; {len(new)} new alert" + ("s" if len(new) > 1 else "")
    return text


def _key(feature: dict[str, Any]) -> str:
    return f"{feature.get('role', 'feature')}:{feature['feature']}"
