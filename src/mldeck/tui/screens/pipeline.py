"""Pipeline: the stages of the loop drawn as a graph, each with its last run, status and
duration, redrawn as jobs run."""

from __future__ import annotations

from datetime import timedelta

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.widgets import Static

from mldeck import formatting as fmt
from mldeck.jobs.views import PipelineView, Stage, pipeline_view
from mldeck.store.engine import Store
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.screens.jobs import scheduler_line
from mldeck.tui.screens.runs import RunDetailScreen
from mldeck.tui.styles import rich_color
from mldeck.tui.widgets.text import Plain

BOX = 17  # least outer width of a stage's box: four boxes and three arrows fit in 80 columns
WIDEST_BOX = 40  # on wider terminals boxes grow to this, so what a stage did is less cut
ARROW = " ► "
GAP = " " * len(ARROW)
# Status words that are not run statuses, and the theme variable that colours them.
EXTRA_STATUS = {
    "waiting": "status-warning",
    "promoted": "status-succeeded",
    "approved": "status-succeeded",
    "candidate": "status-queued",
    "rejected": "status-failed",
    "warned": "status-warning",
    "archived": "status-muted",
}
RUN_STATUS = {
    "succeeded": "status-succeeded",
    "running": "status-running",
    "queued": "status-queued",
    "failed": "status-failed",
    "orphaned": "status-orphaned",
    "cancelled": "status-muted",
    "skipped": "status-muted",
}


def _fit(text: str, width: int) -> str:
    """*text* in *width* columns; a number is never cut in two: 'score churn:v13' cut to
    'score churn:v1…' named another batch (a cut name, 'validate blob…', still reads as cut)."""
    if len(text) <= width:
        return text.ljust(width)
    cut = text[: width - 1]
    if cut[-1].isdigit() and text[width - 1].isdigit():
        cut = cut[: cut.rfind(" ") + 1] if " " in cut else cut.rstrip("0123456789")
    return (cut.rstrip() + "…").ljust(width)


def _duration(value: timedelta | None) -> str:
    return "" if value is None else fmt.duration(value)


class PipelineScreen(DeckScreen):
    SCREEN_TITLE = "Pipeline"
    HELP = (
        "The loop mldeck runs, stage by stage: a batch lands and is ingested and validated, "
        "scored by the champion, monitored for drift; drift or a poor performance estimate "
        "starts a retrain (with a cool-down), whose candidate is evaluated beside the champion, "
        "registered, then promoted at once when [gates] auto_approve allows it or once a person "
        "approves it. Each box shows the stage's last run: status, start time, duration and "
        "what it did. It redraws as jobs run. Enter opens the last run of the stage under the "
        "cursor (left/right and up/down move it)."
    )
    BINDINGS = [
        Binding("left,h", "move(-1)", "Previous stage", show=False, id="pipeline-left"),
        Binding("right,l", "move(1)", "Next stage", show=False, id="pipeline-right"),
        # Before the scroll area's own up/down: it took them when the graph was taller than it.
        Binding("up,k", "move_row(-1)", "Stage above", show=False, id="pipeline-up", priority=True),
        Binding(
            "down,j", "move_row(1)", "Stage below", show=False, id="pipeline-down", priority=True
        ),
        Binding("enter", "open", "Open last run", id="pipeline-open"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._view: PipelineView | None = None
        self.cursor = 0
        # The layout last drawn: boxes per row, and lines per row (the boxes and what joins
        # the row to the next).
        self._per_row = 4
        self._row_lines = 0

    def compose_body(self) -> ComposeResult:
        yield Plain(id="pipeline-scheduler")
        with VerticalScroll(id="pipeline-scroll"):
            yield Plain(id="pipeline-graph")
        yield Plain(id="pipeline-health")

    def on_mount(self) -> None:
        # Running stages show their growing duration; the store's changes redraw the rest.
        self.set_interval(2.0, self._tick)

    def _tick(self) -> None:
        view = self._view
        running = view is not None and any(s.status == "running" for s in view.stages)
        if running and self.is_current:
            self.reload()

    def fetch(self, store: Store) -> PipelineView:
        return pipeline_view(store, self.deck.workspace.settings.jobs)

    def show(self, view: PipelineView) -> None:
        self._view = view
        self.query_one("#pipeline-scheduler", Static).update(
            scheduler_line(view, getattr(self.deck, "scheduler", None))  # type: ignore[arg-type]
        )
        self.query_one("#pipeline-graph", Static).update(self.draw(view))
        health = Text()
        # "Checks", as the Overview calls them: its "Health" row is the model's health (KPIs).
        health.append("Checks ", style="bold")
        if not view.health:
            health.append("no check yet (a [jobs.schedules] health job, or 'mldeck jobs health')")
        for check in view.health:
            health.append(f"{check.name} ")
            health.append(check.status, style=self._color(check.status))
            health.append("  ")
        self.query_one("#pipeline-health", Static).update(health)

    def _color(self, status: str) -> str:
        variable = RUN_STATUS.get(status) or EXTRA_STATUS.get(status)
        if status in ("ok",):
            variable = "status-succeeded"
        elif status == "warn":
            variable = "status-warning"
        elif status == "fail":
            variable = "status-failed"
        color = rich_color(self.app.theme_variables.get(variable or "status-muted", ""))
        return f"{color} bold" if status in ("failed", "orphaned", "fail") else color

    def _box(self, index: int, stage: Stage, box: int = BOX) -> list[Text]:
        inner = box - 2
        selected = index == self.cursor
        edge = "bold reverse" if selected else "dim"
        title = f" {stage.name} "
        top = Text("┌", style=edge)
        top.append(title, style="bold reverse" if selected else "bold")
        top.append("─" * (inner - len(title)) + "┐", style=edge)
        lines = [top]
        status = stage.status or "-"
        when = stage.when.astimezone().strftime("%H:%M:%S") if stage.when else ""
        rows = [
            (_fit(status, inner), self._color(status) if stage.status else "dim"),
            (_fit(f"{when} {_duration(stage.duration)}".strip(), inner), ""),
            (_fit(stage.detail, inner), "dim"),
        ]
        for text, style in rows:
            line = Text("│", style=edge)
            line.append(text, style=style)
            line.append("│", style=edge)
            lines.append(line)
        lines.append(Text("└" + "─" * inner + "┘", style=edge))
        return lines

    def on_resize(self) -> None:
        # Drawn once the new layout is in place: drawn now, the boxes sized for the new width
        # were wrapped at the graph's old width.
        self.call_after_refresh(self._redraw)

    def _redraw(self) -> None:
        if self._view is not None:
            self.query_one("#pipeline-graph", Static).update(self.draw(self._view))

    def draw(self, view: PipelineView) -> Text:
        width = self.query_one("#pipeline-scroll").size.width or 80
        if width < 4 * BOX + 3 * len(ARROW):  # narrower than the two rows of four
            return self._draw_narrow(view, width)
        stages = view.stages
        size = min(WIDEST_BOX, (width - 3 * len(ARROW)) // 4)
        out = Text(no_wrap=True, overflow="crop")
        for row in range(2):
            boxes = [self._box(i, stages[i], size) for i in range(row * 4, row * 4 + 4)]
            self._per_row, self._row_lines = 4, len(boxes[0]) + 2
            for n in range(len(boxes[0])):
                for b, box in enumerate(boxes):
                    out.append_text(box[n])
                    if b < 3:
                        out.append(ARROW if n == 1 else GAP, style="bold")
                out.append("\n")
            if row == 0:
                # monitor (the last box of the first row) feeds retrain (the first of the next).
                used = 4 * size + 3 * len(ARROW)
                corner = used - size // 2 - 1
                out.append(" " * (size // 2) + "┌" + "─" * (corner - size // 2 - 1) + "┘\n",
                           style="bold")  # fmt: skip
                out.append(" " * (size // 2) + "▼ drift or a poor estimate → retrain (policy)\n",
                           style="bold")  # fmt: skip
        return out

    def _draw_narrow(self, view: PipelineView, width: int) -> Text:
        """As many boxes per row as fit (at least one), rows joined by a down arrow."""
        per_row = max(1, (width + len(ARROW)) // (BOX + len(ARROW)))
        out = Text(no_wrap=True, overflow="crop")
        for start in range(0, 8, per_row):
            indexes = list(range(start, min(start + per_row, 8)))
            boxes = [self._box(i, view.stages[i]) for i in indexes]
            self._per_row, self._row_lines = per_row, len(boxes[0]) + 1
            for n in range(len(boxes[0])):
                for b, box in enumerate(boxes):
                    out.append_text(box[n])
                    if b < len(boxes) - 1:
                        out.append(ARROW if n == 1 else GAP, style="bold")
                out.append("\n")
            if indexes[-1] < 7:
                note = " drift: retrain (policy)" if indexes[-1] == 3 else ""
                out.append(" " * (BOX // 2) + "▼" + note + "\n", style="bold")
        return out

    def action_move(self, step: int) -> None:
        target = self.cursor + step
        if 0 <= target < 8 and self._view is not None:
            self.cursor = target
            self.query_one("#pipeline-graph", Static).update(self.draw(self._view))
            self._show_cursor()

    def action_move_row(self, rows: int) -> None:
        """To the box above or below, as the boxes are laid out now (four per row, or as many
        as fit); from a short last row's neighbour above, to its last box."""
        per_row = self._per_row
        row, last_row = self.cursor // per_row, 7 // per_row
        if 0 <= row + rows <= last_row:
            self.action_move(min(7, self.cursor + rows * per_row) - self.cursor)

    def _show_cursor(self) -> None:
        """The cursor's row scrolled into view (a narrow terminal shows a few rows at a time)."""
        scroll = self.query_one("#pipeline-scroll", VerticalScroll)
        top = (self.cursor // self._per_row) * self._row_lines
        scroll.scroll_to_region(Region(0, top, 1, self._row_lines), animate=False)

    def action_open(self) -> None:
        if self._view is None:
            return
        stage = self._view.stages[self.cursor]
        if stage.run_id is not None:
            self.app.push_screen(RunDetailScreen(stage.run_id))
        else:
            self.notify(f"{stage.name}: no run to open", timeout=4)
