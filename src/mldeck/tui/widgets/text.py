"""Text shown as written."""

from __future__ import annotations

import io

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text
from textual.geometry import Size
from textual.visual import VisualType
from textual.widget import Widget
from textual.widgets import Static


class Plain(Static):
    """A Static whose strings are shown as written, never parsed as markup.

    The console's text comes from the store, the workspace and the user: file, column and
    dataset names, errors, hints naming config tables (``[data] csv_separator``,
    ``[monitor]``). Parsed as markup, brackets would vanish or, unbalanced (``[/x``), stop the
    console. Styled text is passed as a Rich ``Text``."""

    def __init__(self, content: VisualType = "", **kwargs) -> None:
        super().__init__(content, markup=False, **kwargs)


_FOLDING = Console(file=io.StringIO(), width=1000)


class Packed(Widget):
    """Labelled rows of items ("Delivery 1 promotion · lead time 2h · ..."), as many items per
    line as fit the width; an item that does not fit starts a line of its own, indented under
    the label. Items are never cut in two, and nothing is cut off at the end."""

    SEPARATOR = " · "

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[tuple[str, list[Text]]] = []

    def update(self, rows: list[tuple[str, list[Text]]]) -> None:
        self.rows = rows
        self.refresh(layout=True)

    def lines(self, width: int) -> list[Text]:
        out: list[Text] = []
        for label, items in self.rows:
            indent = cell_len(label) + 1
            line = Text(label + " ", style="")
            line.stylize("bold", 0, len(label))
            used, first = indent, True
            for item in items:
                size = item.cell_len + (0 if first else len(self.SEPARATOR))
                if not first and used + size > width:
                    out.append(line)
                    line, used, first = Text(" " * indent), indent, True
                    size = item.cell_len
                if not first:
                    line.append(self.SEPARATOR)
                line.append_text(item)
                used, first = used + size, False
            out.append(line)
        # An item wider than the whole line (a long path) is folded, not cut.
        folded: list[Text] = []
        for line in out:
            if line.cell_len <= width:
                folded.append(line)
            else:
                folded.extend(line.wrap(_FOLDING, width, overflow="fold", no_wrap=False))
        return folded

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> Text:
        width = self.content_size.width or self.size.width
        return Text("\n").join(self.lines(max(width, 1)))
