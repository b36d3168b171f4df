"""Audit: the hash-chained trail of every change of state that matters, newest first, and its
verification, as 'mldeck audit list | verify' give them."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from mldeck import formatting as fmt
from mldeck.audit import Verification
from mldeck.store.engine import Store
from mldeck.store.queries import AuditRow, list_audit_events
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.styles import rich_color
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Plain

WINDOW = 500


class AuditScreen(DeckScreen):
    SCREEN_TITLE = "Audit"
    HELP = (
        "The audit trail, newest first (the newest 500 events): promotions, rollbacks, approvals, "
        "archives, schedules changed, alerts opened and resolved, batches validated again, the "
        "pipeline's decisions; who did it, when, and the details. Each event holds the hash of "
        "the one before it, so an edited or deleted event breaks the chain: v verifies it (as "
        "'mldeck audit verify') and says which events do not hold. The head's hash, kept "
        "elsewhere, lets a later check see events deleted from the end ('mldeck audit verify "
        "--head HASH')."
    )
    BINDINGS = [
        Binding("v", "verify", "Verify chain", id="audit-verify"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._events: dict[str, AuditRow] = {}
        self._verdict: Text | None = None
        self._total = 0  # events in the trail, as last read
        self._covered = 0  # events the last verification covered

    def compose_body(self) -> ComposeResult:
        yield DeckTable(id="audit-table", follow_top=True)
        yield Plain(id="audit-detail")
        yield Plain(id="audit-status")

    def on_mount(self) -> None:
        table = self.query_one("#audit-table", DeckTable)
        table.add_columns("ID", "TIME", "ACTOR", "ACTION", "ENTITY")
        table.focus()

    def fetch(self, store: Store) -> tuple[list[AuditRow], int]:
        return list_audit_events(store, limit=WINDOW)

    def show(self, data: tuple[list[AuditRow], int]) -> None:
        rows, total = data
        self._events = {str(row.id): row for row in rows}
        self._total = total
        table = self.query_one("#audit-table", DeckTable)
        table.replace_rows(
            [
                (
                    str(row.id),
                    (Text(str(row.id), justify="right"), fmt.when_short(row.ts), row.actor,
                     row.action, f"{row.entity_type} {row.entity_id}".strip() or "-"),
                )
                for row in rows
            ]
        )  # fmt: skip
        table.border_title = (
            f"newest {len(rows)} of {total} events"
            if total > len(rows)
            else fmt.plural(total, "event")
        )
        table.border_subtitle = "" if rows else "no audit events yet"
        self._show_detail()
        self._show_status()

    def _show_detail(self) -> None:
        key = self.query_one("#audit-table", DeckTable).selected_key()
        event = self._events.get(key or "")
        detail = self.query_one("#audit-detail", Static)
        if event is None:
            detail.update("")
            return
        text = Text()
        text.append(event.action, style="bold")
        # The entity whole here: its column is cut at 80 columns ('model_versio').
        entity = f"{event.entity_type} {event.entity_id}".strip()
        text.append(f" by {event.actor} · {fmt.when(event.ts)}"
                    + (f" · {entity}" if entity else "") + f" · hash {event.hash[:16]}")  # fmt: skip
        if event.details:
            text.append("\n" + _details(event.details), style="dim")
        if event.damaged:
            text.append(f"\ndamaged: {event.damaged} (run 'mldeck audit verify')", style="bold")
        detail.update(text)

    def _show_status(self) -> None:
        status = self.query_one("#audit-status", Static)
        if self._verdict is None:
            status.update(Text("v verifies the hash chain", style="dim"))
            return
        text = self._verdict.copy()
        newer = self._total - self._covered
        if newer > 0:  # the trail grew since: the verdict is not about those events
            text.append(f"\n{fmt.plural(newer, 'newer event')} not verified yet: v checks again",
                        style="dim")  # fmt: skip
        status.update(text)

    @on(DataTable.RowHighlighted, "#audit-table")
    def _highlighted(self) -> None:
        self._show_detail()

    def action_verify(self) -> None:
        """Recompute the hash chain in a worker thread and say whether it holds."""
        self.query_one("#audit-status", Static).update(Text("verifying the chain…", style="dim"))
        self.run_worker(self._verify, thread=True, exclusive=True, group="verify",
                        exit_on_error=False)  # fmt: skip

    def _verify(self) -> None:
        from mldeck.audit import verify
        from mldeck.store.queries import audit_head

        store = self.deck.store
        head = audit_head(store)  # read first: the verification covers it
        result = verify(store)
        self.app.call_from_thread(self._verified, result, head)

    def _verified(self, result: Verification, head: AuditRow | None) -> None:
        var = self.app.theme_variables
        text = Text()
        if result.ok:
            text.append(f"chain intact: {fmt.plural(result.events, 'event')}",
                        style=f"bold {rich_color(var.get('status-succeeded', ''))}")  # fmt: skip
            if head is not None:
                text.append(f" · head event {head.id} {head.hash}")
            self.notify(f"audit trail: {fmt.plural(result.events, 'event')}, chain intact",
                        timeout=6)  # fmt: skip
        else:
            text.append(f"chain BROKEN: {fmt.plural(len(result.problems), 'problem')} in "
                        f"{fmt.plural(result.events, 'event')}",
                        style=f"bold {rich_color(var.get('status-failed', ''))}")  # fmt: skip
            text.append(" · " + "; ".join(result.problems[:3]))
            if len(result.problems) > 3:
                text.append(f"; … ('mldeck audit verify' lists all {len(result.problems)})")
            self.notify("audit trail: chain BROKEN (see the line under the table)",
                        severity="error", timeout=10)  # fmt: skip
        self._verdict, self._covered = text, result.events
        self._show_status()


def _details(details: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={json.dumps(v, default=str, ensure_ascii=False)}" for k, v in details.items()
    )
