"""Text shown as written."""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


class Plain(Static):
    """A Static whose strings are shown as written, never parsed as markup.

    The console's text comes from the store, the workspace and the user: file, column and
    dataset names, errors, hints naming config tables (``[data] csv_separator``,
    ``[monitor]``). Parsed as markup, brackets would vanish or, unbalanced (``[/x``), stop the
    console. Styled text is passed as a Rich ``Text``."""

    def __init__(self, content: VisualType = "", **kwargs) -> None:
        super().__init__(content, markup=False, **kwargs)
