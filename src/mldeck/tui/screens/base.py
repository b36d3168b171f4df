"""What every screen shares: the top bar, the footer, loading data off the event loop, help text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from mldeck.tui.widgets.topbar import TopBar

if TYPE_CHECKING:
    from mldeck.store.engine import Store
    from mldeck.tui.app import MldeckApp


class DeckScreen(Screen):
    """A screen that shows the result of store queries.

    Subclasses implement ``fetch(store)`` (runs in a thread, store queries only, returns plain data)
    and ``show(data)`` (runs on the event loop, updates widgets). ``reload()`` runs one then the
    other; the app calls it when another process wrote to the store.
    """

    SCREEN_TITLE: ClassVar[str] = ""
    # A title shown after the sections in the top bar (for screens pushed over a section).
    SUBTITLE: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    # Actions that change something: off in a read-only console (shown dimmed in the footer;
    # their keys say why nothing happens).
    WRITES: ClassVar[frozenset[str]] = frozenset()

    @property
    def deck(self) -> MldeckApp:
        return self.app  # type: ignore[return-value]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action in self.WRITES and self.deck.read_only else True

    def on_key(self, event: events.Key) -> None:
        """A key whose action a read-only console turned off says so, instead of nothing."""
        if not self.deck.read_only:
            return
        active = self.app.active_bindings.get(event.key)
        action = active.binding.action.split("(", 1)[0] if active is not None else ""
        if active is not None and not active.enabled and action in self.WRITES:
            event.stop()
            self.notify(
                f"{active.binding.description or active.binding.action}: this console is "
                "read-only (--read-only or [console] read_only); it changes nothing",
                severity="warning",
            )

    def compose(self) -> ComposeResult:
        yield TopBar(self.deck.workspace.name, self.deck.read_only)
        yield from self.compose_body()
        yield Footer(show_command_palette=False)  # ":" is in every help screen

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.sync_topbar()
        # Load once the screen's widgets are laid out (a table filled before it was ever
        # displayed can keep its header's column widths).
        self.call_after_refresh(self.reload)

    def on_resize(self, event: events.Resize) -> None:
        """A new width: shown again (cells cut to the width, and tables measured afresh)."""
        width = event.size.width
        if hasattr(self, "_loaded_seq") and width != getattr(self, "_shown_width", width):
            self.reload()
        self._shown_width = width

    def on_screen_resume(self) -> None:
        self.sync_topbar()
        if self.deck.seen_seq != getattr(self, "_loaded_seq", None):
            self.reload()

    def sync_topbar(self) -> None:
        bars = self.query(TopBar)
        if not bars:  # not composed yet (the app's poll can come first); on_mount syncs it
            return
        bar = bars.first()
        bar.section = self.deck.current_mode
        bar.screen_title = self.subtitle()
        bar.champion = self.deck.champion_label
        bar.problem = self.deck.store_problem
        bar.alerts = self.deck.alert_counts

    def subtitle(self) -> str:
        return self.SUBTITLE

    def reload(self) -> None:
        """Fetch in a worker thread, then show; a newer reload replaces an older one."""
        if not self.is_mounted:  # the app's poll can come first; on_mount loads anyway
            return
        self._loaded_seq = self.deck.seen_seq
        self.run_worker(
            self._fetch_then_show, thread=True, exclusive=True, group="reload", exit_on_error=False
        )

    def _fetch_then_show(self) -> None:
        data = self.fetch(self.deck.store)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show, data)

    def fetch(self, store: Store) -> Any:
        """Read what the screen shows (in a worker thread; store queries only)."""
        return None

    def show(self, data: Any) -> None:
        """Put *data* on screen (on the event loop)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.deck.report_error(event.worker.error)
