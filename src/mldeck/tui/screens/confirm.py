"""A confirmation dialog for a change of state: what will happen, a reason, Confirm / Cancel."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input

from mldeck.tui.widgets.text import Plain


class ConfirmScreen(ModalScreen[str | None]):
    """Dismissed with the reason typed (possibly empty) on confirm, or None on cancel."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="confirm-cancel")]

    def __init__(
        self,
        title: str,
        description: str,
        *,
        placeholder: str | None = "reason",
        required: bool = False,
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        """*placeholder* None: nothing typed is recorded, so no field is asked for. *required*:
        the dialog stays open until something is typed. *check*: what is wrong with the text
        typed (None when nothing is); the dialog says it and stays open, the text kept."""
        super().__init__()
        self.required = required
        self.check = check
        self.title_text = title
        self.description = description
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box") as box:
            box.border_title = Text(self.title_text)  # as written: it names datasets, models
            # The field and the buttons are docked at the bottom: a description taller than
            # the screen scrolls above them instead of pushing them off it.
            with Vertical(id="confirm-actions"):
                if self.placeholder is not None:
                    yield Input(placeholder=self.placeholder, id="confirm-reason")
                with Horizontal(id="confirm-buttons"):
                    yield Button("Confirm", variant="primary", id="confirm-ok")
                    yield Button("Cancel", id="confirm-no")
            with VerticalScroll(id="confirm-scroll"):
                yield Plain(self.description, id="confirm-description")

    def on_mount(self) -> None:
        if self.placeholder is None:
            self.query_one("#confirm-ok", Button).focus()  # Enter confirms
        else:
            self.query_one("#confirm-reason", Input).focus()

    @on(Input.Submitted, "#confirm-reason")
    @on(Button.Pressed, "#confirm-ok")
    def _confirm(self) -> None:
        if self.placeholder is None:
            self.dismiss("")
        else:
            field = self.query_one("#confirm-reason", Input)
            if self.required and not field.value.strip():
                self.notify("a reason is required: say why", severity="warning", timeout=4)
                field.focus()
                return
            problem = self.check(field.value.strip()) if self.check is not None else None
            if problem:
                self.notify(problem, severity="warning", timeout=6)
                field.focus()
                return
            self.dismiss(field.value.strip())

    @on(Button.Pressed, "#confirm-no")
    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitScreen(ConfirmScreen):
    """Quitting while work started here still runs: q again (the key that opened it), Enter or
    Confirm quits; escape or Cancel stays. A modal screen hides the app's own bindings, so the
    dialog binds q itself."""

    BINDINGS = [Binding("q", "confirm", "Quit", id="quit-confirm")]

    def __init__(self, description: str) -> None:
        super().__init__(
            "Quit mldeck",
            f"{description}\n\nq or Enter quits; escape stays.",
            placeholder=None,
        )

    def action_confirm(self) -> None:
        self.dismiss("")
