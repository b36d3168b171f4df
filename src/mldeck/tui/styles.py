"""Theme variables → Rich styles, for text drawn in tables and panels."""

from __future__ import annotations

from functools import lru_cache

from rich.text import Text
from textual.app import App
from textual.color import Color, ColorParseError

_STATUS_VARIABLE = {
    "succeeded": "status-succeeded",
    "ok": "status-succeeded",
    "accepted": "status-succeeded",
    "running": "status-running",
    "queued": "status-queued",
    "pending": "status-queued",
    "failed": "status-failed",
    "fail": "status-failed",
    "rejected": "status-failed",
    "orphaned": "status-orphaned",
    "cancelled": "status-muted",
    "skipped": "status-muted",
    "warn": "status-warning",
    "warned": "status-warning",
}


@lru_cache(maxsize=256)
def rich_color(value: str) -> str:
    """A Rich colour name for a Textual colour value ('' if it cannot be parsed)."""
    if not value:
        return ""
    try:
        return Color.parse(value).rich_color.name
    except (ColorParseError, ValueError):
        return ""


def status_text(app: App, status: str, suffix: str = "") -> Text:
    """*status* written out in its theme colour (the word is always there, colour is extra)."""
    variable = _STATUS_VARIABLE.get(status, "status-muted")
    color = rich_color(app.theme_variables.get(variable, ""))
    bold = " bold" if status in ("failed", "orphaned", "rejected", "fail") else ""
    return Text(status + suffix, style=f"{color}{bold}".strip())
