"""A DataTable with the keys terminal users expect (j/k/g/G, ctrl+d/ctrl+u)."""

from __future__ import annotations

from typing import Any

from rich.text import Text, TextType
from textual import events
from textual.binding import Binding
from textual.render import measure
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey


class DeckTable(DataTable):
    """Row-cursor table; rows are keyed by the id of what they show."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
        Binding("ctrl+d", "page_down", "Page down", show=False),
        Binding("ctrl+u", "page_up", "Page up", show=False),
    ]

    def __init__(self, *, follow_top: bool = False, **kwargs) -> None:
        """*follow_top*: a list whose newest row comes first; a cursor on its top row stays on
        the top row as new rows arrive (it kept its row, scrolled below the new ones)."""
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self.follow_top = follow_top

    def add_column(self, label: TextType, **kwargs: Any) -> ColumnKey:
        """A column whose label is shown as written: labels name a file's columns."""
        return super().add_column(Text(label) if isinstance(label, str) else label, **kwargs)

    async def _on_idle(self, event: events.Idle) -> None:
        """After DataTable measures new rows (it does so once idle), drop its rendered rows.
        Pinned textual caches a row's rendering under a key without the column widths, so a
        row drawn between ``add_row`` and this measurement would keep the narrower widths (its
        cells cut to the headers' width) until the table next changed."""
        measuring = self._require_update_dimensions or bool(self._updated_cells)
        await super()._on_idle(event)
        if measuring:
            self._clear_caches()
            self.refresh()

    def replace_rows(self, rows: list[tuple[str, tuple]]) -> None:
        """Show *rows* ((key, cells) pairs), keeping the cursor on the same key when it remains.
        Text cells are shown as they are: what comes from files and users (a check's detail
        naming ``[data] csv_separator``, a run's name) is never read as markup."""
        current = self.selected_key()
        at_top = self.follow_top and self.cursor_row == 0
        scroll_x = self.scroll_x  # clear() scrolls back to the left: a reload every few seconds
        self.clear()
        # Columns measured afresh: clear() keeps each column's widest cell so far, so a table
        # never narrowed (after the terminal did, its last columns stayed off-screen).
        for column in self.columns.values():
            if column.auto_width:
                column.content_width = measure(self.app.console, column.label, 1)
        for key, cells in rows:
            self.add_row(*(Text(c) if isinstance(c, str) else c for c in cells), key=key)
        if current is not None and current in self.rows and not at_top:
            self.move_cursor(row=self.get_row_index(current), animate=False)
        if scroll_x:
            # Once the new rows are measured (the table is as wide as before, or narrower).
            self.call_after_refresh(self.scroll_to, x=scroll_x, animate=False, immediate=True)

    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
