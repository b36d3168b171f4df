"""A column's distribution as a bar chart: its histogram bins or category frequencies, drawn
next to the reference's (the baseline drift compares against).

``column_histogram`` turns profiles (plain dicts, see ``mldeck.data.validate``) into what to draw;
it is pure, so screens call it in their worker thread. ``HistogramPlot`` only draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.color import Color, ColorParseError
from textual_plotext import PlotextPlot

MAX_BARS = 12  # categories beyond this are drawn together as "(other)"
MAX_TICKS = 6
LABEL_WIDTH = 10
# Theme variables the series are drawn in: this version, then the reference.
SERIES_COLORS = ("primary", "status-muted")


@dataclass(frozen=True)
class Histogram:
    """What to draw: one bar per label for each series; values are shares in percent."""

    column: str
    kind: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]
    ticks: tuple[int, ...]
    unit: str  # what a bar is: "values per bin" or "values per category"
    note: str = ""


def column_histogram(
    name: str,
    column: dict[str, Any],
    reference: dict[str, Any] | None,
    *,
    label: str,
    reference_label: str = "reference",
) -> Histogram | str:
    """The chart for one column's profile (and its reference's), or why there is none.

    *reference* is the reference's profile of the same column: None when the dataset has no
    reference (or this is it), ``{}`` when the reference has no such column."""
    kind = column.get("kind", "")
    if kind in ("int", "float"):
        return _numeric(name, kind, column, reference, label, reference_label)
    if kind in ("string", "bool"):
        return _categorical(name, kind, column, reference, label, reference_label)
    if kind in ("datetime", "date"):
        low, high = (str(column.get(k) or "-").replace("T", " ") for k in ("min", "max"))
        return f"no histogram: {kind} values from {low} to {high}"  # what matters first
    return f"no histogram for a {kind or 'untyped'} column"


def _numeric(
    name: str,
    kind: str,
    column: dict[str, Any],
    reference: dict[str, Any] | None,
    label: str,
    reference_label: str,
) -> Histogram | str:
    histogram = column.get("histogram")
    if not histogram or not histogram.get("counts"):
        return "no histogram: this version was profiled before the dataset had a reference"
    edges, counts = list(histogram["edges"]), list(histogram["counts"])
    if not sum(counts):
        return "no values to draw (all null or not finite)"
    series = [(label, _shares(counts))]
    note = ""
    if reference is not None:
        theirs = reference.get("histogram") or {}
        if not theirs.get("counts"):
            note = f"no {reference_label} histogram of this column"
        elif theirs.get("edges") == edges and len(theirs["counts"]) == len(counts):
            series.append((reference_label, _shares(theirs["counts"])))
        else:
            note = f"{reference_label} not drawn: its bins differ"
    labels = bin_labels(edges)
    return Histogram(
        name, kind, labels, tuple(series), spread_ticks(len(labels)), "values per bin", note
    )


def _categorical(
    name: str,
    kind: str,
    column: dict[str, Any],
    reference: dict[str, Any] | None,
    label: str,
    reference_label: str,
) -> Histogram | str:
    ours = dict(column.get("frequencies") or {})
    ours_other = int(column.get("other") or 0)
    if not ours and not ours_other:
        return "no values to draw (all null)"
    theirs: dict[str, int] = {}
    theirs_other = 0
    if reference is not None:
        theirs = dict(reference.get("frequencies") or {})
        theirs_other = int(reference.get("other") or 0)
    # Categories in the profile's order (the reference's when it has one), the largest kept.
    names = list(ours) + [c for c in theirs if c not in ours]
    if len(names) > MAX_BARS - 1:
        keep = set(
            sorted(names, key=lambda c: (-ours.get(c, 0), -theirs.get(c, 0)))[: MAX_BARS - 1]
        )
        names = [c for c in names if c in keep]
    shown = set(names)
    ours_other += sum(v for c, v in ours.items() if c not in shown)
    theirs_other += sum(v for c, v in theirs.items() if c not in shown)
    labels = [_cut(c) for c in names]
    values = [ours.get(c, 0) for c in names]
    reference_values = [theirs.get(c, 0) for c in names]
    if ours_other or theirs_other:
        labels.append("(other)")
        values.append(ours_other)
        reference_values.append(theirs_other)
    series = [(label, _shares(values))]
    note = ""
    if reference is not None:
        if sum(reference_values):
            series.append((reference_label, _shares(reference_values)))
        else:
            note = f"no {reference_label} frequencies of this column"
    ticks = tuple(range(len(labels))) if len(labels) <= 8 else spread_ticks(len(labels), 8)
    return Histogram(name, kind, tuple(labels), tuple(series), ticks, "values per category", note)


def _shares(counts: list[int]) -> tuple[float, ...]:
    total = sum(counts)
    return tuple(100.0 * c / total if total else 0.0 for c in counts)


def bin_labels(edges: list[float]) -> tuple[str, ...]:
    """A label per bin: ``<e1`` for the underflow bin, then each bin's lower edge (``≥ek``)."""
    if not edges:
        return ("all",)
    labels = [f"<{tick_number(edges[0])}"]
    labels += [tick_number(e) for e in edges[:-1]]
    labels.append(f"≥{tick_number(edges[-1])}")
    return tuple(labels)


def spread_ticks(count: int, most: int = MAX_TICKS) -> tuple[int, ...]:
    """Up to *most* evenly spread bar indexes, always the first and the last."""
    if count <= most:
        return tuple(range(count))
    step = (count - 1) / (most - 1)
    return tuple(sorted({round(i * step) for i in range(most)}))


def tick_number(value: float) -> str:
    """A short axis label: 0.25, 31.7, 1.2k, 3.4M."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def _cut(text: str) -> str:
    return text if len(text) <= LABEL_WIDTH else text[: LABEL_WIDTH - 1] + "…"


def legend(chart: Histogram, variables: dict[str, str]) -> Text:
    """One line under a chart: the column, what a bar is, and a swatch per series."""
    from mldeck.tui.styles import rich_color

    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(chart.column, style="bold")
    text.append(f" · % of {chart.unit} ")
    for (name, _), variable in zip(chart.series, SERIES_COLORS, strict=False):
        text.append(" ■ ", style=rich_color(variables.get(variable, "")))
        text.append(name)
    if chart.note:
        text.append(f" · {chart.note}", style="dim")
    return text


def show_chart(
    plot: HistogramPlot,
    caption: Any,
    key: str | None,
    chart: Histogram | str | None,
    caption_of: Callable[[Histogram], Text],
) -> None:
    """Draw the selected row's chart with its caption, or say in the caption why there is none."""
    if not isinstance(chart, Histogram):
        plot.draw(None)
        plot.display = False  # no empty box: the caption says why there is no chart
        caption.update(Text(f"{key}: {chart}" if key and chart else "", style="dim"))
        return
    plot.display = True
    if plot.data != chart:
        plot.draw(chart)
    caption.update(caption_of(chart))


class HistogramPlot(PlotextPlot):
    """Bars of a ``Histogram`` in the theme's colours; ``data`` is what it last drew."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data: Histogram | None = None

    def on_mount(self) -> None:
        # PlotextPlot's own on_mount runs too (Textual calls the handler of every class).
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.draw(self.data))

    def series_colors(self) -> list[tuple[int, int, int]]:
        variables = self.app.theme_variables
        colors = []
        for name in SERIES_COLORS:
            try:
                colors.append(Color.parse(variables.get(name, "")).rgb)
            except ColorParseError:
                colors.append((128, 128, 128))
        return colors

    def draw(self, data: Histogram | None) -> None:
        """Draw *data* (None clears the plot)."""
        self.data = data
        plt = self.plt
        plt.clear_figure()
        if data is not None and data.series:
            positions = list(range(len(data.labels)))
            colors = self.series_colors()
            if len(data.series) == 1:
                plt.bar(positions, list(data.series[0][1]), color=colors[0], width=0.8)
            else:
                plt.multiple_bar(
                    positions,
                    [list(values) for _, values in data.series],
                    color=colors[: len(data.series)],
                )
            plt.xticks([positions[i] for i in data.ticks], [data.labels[i] for i in data.ticks])
        self.refresh()
