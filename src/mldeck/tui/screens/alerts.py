"""Alerts, from any screen with '!': the active ones (or all), acknowledged and resolved here
with a confirmation, as 'mldeck alerts ack | resolve' does."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from mldeck import formatting as fmt
from mldeck.monitor import alerts as alerting
from mldeck.store.engine import Store
from mldeck.store.models import Alert
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.screens.confirm import ConfirmScreen
from mldeck.tui.styles import rich_color
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Plain

_SEVERITY_VARIABLE = {"critical": "status-failed", "warning": "status-warning"}


class AlertsScreen(DeckScreen):
    SUBTITLE = "Alerts"
    SCREEN_TITLE = "Alerts"
    WRITES = frozenset({"change"})
    HELP = (
        "Alerts raised by the rules of [monitor] in mldeck.toml (dataset or feature drift, the "
        "joint distribution, the champion's scores, estimated or realized performance below a "
        "threshold, stale data, a failed pipeline step). An alert that fires again while open "
        "counts its occurrences (SEEN) instead of repeating; CHANGED is when it last fired or "
        "changed state. Acknowledge one to say someone is on it; "
        "resolve it when it is fixed (a condition that clears resolves its alert by itself). "
        "Every change is in the audit trail."
    )
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="alerts-back"),
        Binding("a", "change('acknowledge')", "Acknowledge", id="alerts-ack"),
        Binding("r", "change('resolve')", "Resolve", id="alerts-resolve"),
        Binding("s", "toggle_all", "Active/all", id="alerts-all"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.show_all = False
        self._alerts: dict[str, Alert] = {}

    def compose_body(self) -> ComposeResult:
        yield DeckTable(id="alerts-table", follow_top=True)
        yield Plain(id="alert-detail")

    def on_mount(self) -> None:
        table = self.query_one("#alerts-table", DeckTable)
        table.add_columns("ID", "SEVERITY", "STATUS", "SEEN", "CHANGED", "ALERT")
        table.focus()

    def fetch(self, store: Store) -> list[Alert]:
        return alerting.list_alerts(store, status=None if self.show_all else "active", limit=500)

    def show(self, rows: list[Alert]) -> None:
        self._alerts = {str(a.id): a for a in rows}
        var = self.app.theme_variables
        table = self.query_one("#alerts-table", DeckTable)
        cells = []
        for alert in rows:
            color = rich_color(var.get(_SEVERITY_VARIABLE.get(alert.severity, ""), ""))
            cells.append((str(alert.id), (
                str(alert.id), Text(alert.severity, style=color), alert.status,
                f"{alert.occurrences}x", fmt.when(alert.updated_at), alert.title,
            )))  # fmt: skip
        table.replace_rows(cells)
        which = "alert" if self.show_all else "active alert"
        table.border_title = fmt.plural(len(rows), which)
        table.border_subtitle = "" if rows else "nothing to see: all quiet"
        self._show_detail()

    def _show_detail(self) -> None:
        key = self.query_one("#alerts-table", DeckTable).selected_key()
        alert = self._alerts.get(key or "")
        detail = self.query_one("#alert-detail", Static)
        if alert is None:
            detail.update("")
            return
        text = Text()
        text.append(f"{alert.rule}", style="bold")
        text.append(f" · raised {fmt.when(alert.created_at)}")
        if alert.acknowledged_by:
            text.append(f" · acknowledged by {alert.acknowledged_by}")
        if alert.resolved_at:
            text.append(f" · resolved {fmt.when(alert.resolved_at)}")
        text.append("\n" + alert.title)
        if alert.message:
            text.append("\n" + alert.message, style="dim")
        details = {k: v for k, v in (alert.details or {}).items()
                   if k not in ("histogram", "frequencies")}  # fmt: skip
        text.append("\n" + _compact(details), style="dim")
        detail.update(text)

    @on(DataTable.RowHighlighted, "#alerts-table")
    def _highlighted(self) -> None:
        self._show_detail()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self.reload()

    def action_change(self, action: str) -> None:
        key = self.query_one("#alerts-table", DeckTable).selected_key()
        alert = self._alerts.get(key or "")
        if self.deck.read_only:
            return
        if alert is None:  # an empty list: said, not a key that does nothing
            verb = "acknowledge" if action == "acknowledge" else "resolve"
            where = "" if self.show_all else " (s shows resolved ones too)"
            self.notify(f"no alert to {verb}: the list is empty{where}", timeout=6)
            return
        done = ("resolved",) if action == "resolve" else ("acknowledged", "resolved")
        if alert.status in done:  # said now, not after a dialog
            self.notify(f"alert {alert.id} is already {alert.status}", timeout=6)
            return
        verb = "Acknowledge" if action == "acknowledge" else "Resolve"
        what = (
            "Say someone is on it: the alert stays active, counted in the top bar, until it is "
            "resolved (by a person, or by itself when its condition clears)."
            if action == "acknowledge"
            else "Close it as fixed: it leaves the active alerts; a later check that finds its "
            "condition again raises a new one."
        )
        dialog = ConfirmScreen(
            f"{verb} alert {alert.id}", f"{alert.title}\n\n{what}", placeholder="note (optional)"
        )
        self.app.push_screen(dialog, lambda note: self._confirmed(action, alert.id, note))

    def _confirmed(self, action: str, alert_id: int, note: str | None) -> None:
        if note is None:
            return
        change = alerting.acknowledge if action == "acknowledge" else alerting.resolve

        def apply() -> None:
            alert = change(self.deck.store, alert_id, note=note)
            self.app.call_from_thread(self._done, f"alert {alert.id} {alert.status}")

        self.run_worker(apply, thread=True, group="change", exit_on_error=False)

    def _done(self, message: str) -> None:
        self.notify(message, timeout=6)
        self.reload()


def _compact(details: dict[str, Any]) -> str:
    text = json.dumps(details, default=str, ensure_ascii=False)
    return text if len(text) <= 300 else text[:299] + "…"
