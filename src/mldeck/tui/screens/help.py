"""The ``?`` help: what the current screen shows and every key that works on it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable

from mldeck.tui.widgets.text import Plain


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="help-close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self._for = screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = f"Help · {getattr(self._for, 'SCREEN_TITLE', '') or 'mldeck'}"
            box.border_subtitle = "esc closes"
            about = getattr(self._for, "HELP", "")
            if about:
                yield Plain(about, id="help-about")
            yield Plain(self._keys(), id="help-keys")

    def _keys(self) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        groups: dict[str, dict[str, list[str]]] = {"screen": {}, "app": {}, "widget": {}}
        for active in self._for.active_bindings.values():
            binding = active.binding
            if not binding.description:
                continue
            if isinstance(active.node, App):
                group = groups["app"]
            elif isinstance(active.node, Screen):
                group = groups["screen"]
            else:
                group = groups["widget"]
            # The footer's word, or the longer one a screen's binding gives for help (its
            # tooltip; the app's are Textual's own sentences).
            said = binding.description if group is groups["app"] else binding.tooltip
            keys = group.setdefault(said or binding.description, [])
            display = self.app.get_key_display(binding)
            if display not in keys:
                keys.append(display)
        for group in ("screen", "app"):
            for description, keys in groups[group].items():
                grid.add_row(Text(" ".join(keys)), Text(description))  # as written, like all text
        if self._for.query(DataTable):  # only where there is a table to move in
            grid.add_row("j k g G", "Move in tables: down, up, first, last")
        if groups["widget"]:
            grid.add_row("", "")
            grid.add_row("", Text("In the focused widget", style="bold"))
            for description, keys in groups["widget"].items():
                grid.add_row(Text(" ".join(keys)), Text(description, style="dim"))
        return grid

    def action_dismiss(self) -> None:
        self.dismiss(None)
