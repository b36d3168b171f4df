"""The line at the top of every screen: workspace, the numbered sections, champion, mode."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from mldeck.tui.screens import SECTIONS
from mldeck.tui.styles import rich_color


class TopBar(Static):
    """Shows where you are and what the app knows about the workspace (set by the screen)."""

    DEFAULT_CSS = """
    TopBar { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    section: reactive[str] = reactive("")
    screen_title: reactive[str] = reactive("")
    champion: reactive[str] = reactive("")
    problem: reactive[str] = reactive("")
    # Active alerts (open or acknowledged) and how many of them are critical.
    alerts: reactive[tuple[int, int]] = reactive((0, 0))

    def __init__(self, workspace_name: str, read_only: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.workspace_name = workspace_name
        self.read_only = read_only

    def render(self) -> Text:
        # Tighter and tighter until it fits: other sections by number only, then without the
        # workspace's name and the word "champion" (the star says it), then without the other
        # sections and the screen's title (the alerts were cut at 40 columns).
        for level in range(4):
            text = self._line(level)
            if text.cell_len <= self.content_size.width or self.content_size.width <= 0:
                break
        return text

    def _line(self, level: int) -> Text:
        variables = self.app.theme_variables
        compact = level > 0
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("mldeck", style="bold")
        text.append(f" {self.workspace_name} │" if level < 2 else " │")
        for number, (mode, title) in enumerate(SECTIONS, start=1):
            if mode == self.section:
                text.append(f" {number} {title} ", style="bold reverse")
            elif level > 2:
                continue
            elif compact:
                text.append(f" {number}", style="bold")
            else:
                text.append(f" {number}", style="bold")
                text.append(f" {title} ", style="dim")
        if compact and level < 3:
            text.append(" ")
        if self.screen_title and level < 3:
            text.append(f"› {self.screen_title} ", style="bold")
        if self.problem:  # the store: more urgent than anything else here, and said first
            text.append("│ ")
            text.append(self.problem, style=f"bold {rich_color(variables.get('error', ''))}")
            text.append(" ")
        if self.read_only:  # why a key that changes state is refused: said before it is pressed
            text.append("│ ")
            text.append("read-only", style="bold")
            text.append(" ")
        active, critical = self.alerts
        if active:  # before the champion: the first thing cut at 80 columns is the least urgent
            variable = "error" if critical else "warning"
            text.append("│ ")
            text.append(
                f"▲ {active} alert{'s' if active > 1 else ''} " if level < 3 else f"▲ {active} ",
                style=f"bold {rich_color(variables.get(variable, ''))}",
            )
        text.append("│ champion " if level < 2 else "│ ★ ")
        if self.champion:
            text.append(self.champion, style=f"bold {rich_color(variables.get('champion', ''))}")
        else:
            text.append("none", style="dim")
        return text
