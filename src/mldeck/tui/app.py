"""The console application: screens, navigation, themes, and following the store's changes."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from sqlalchemy.exc import OperationalError
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.notifications import Notify, SeverityLevel
from textual.screen import Screen
from textual.widgets._toast import Toast, ToastHolder, ToastRack
from textual.worker import Worker, WorkerState

from mldeck.errors import MldeckError
from mldeck.monitor.alerts import active_count
from mldeck.store.engine import Store, store_problem
from mldeck.store.queries import champions
from mldeck.tui.child import Children
from mldeck.tui.screens import SECTIONS
from mldeck.tui.screens.audit import AuditScreen
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.screens.data import DataScreen
from mldeck.tui.screens.drift import DriftScreen
from mldeck.tui.screens.help import HelpScreen
from mldeck.tui.screens.jobs import JobsScreen
from mldeck.tui.screens.models import ModelsScreen
from mldeck.tui.screens.overview import OverviewScreen
from mldeck.tui.screens.pipeline import PipelineScreen
from mldeck.tui.screens.runs import RunsScreen
from mldeck.tui.themes import DEFAULT_THEME, discover_themes
from mldeck.workspace import Workspace

# Notifications shown at once: the oldest information gives way to a new one.
MAX_TOASTS = 3
# A watcher line beyond this is cut in its toast (a rejection with its reasons ran to 20 lines
# over the tables at 80x24): about four lines of a toast at 80 columns.
WATCHER_TOAST_CHARS = 100


def _show_toasts(rack: ToastRack, notifications: Iterable) -> None:
    """``ToastRack.show``, the holder of each toast given way removed with it: Textual (8.2.8)
    removes the toast only, so every notice given way (``MAX_TOASTS``, a notice said again)
    left an empty holder mounted on each screen, keeping the toast and its rendering alive and
    laid out on every frame: a console fed a batch every few seconds grew for good."""
    for toast in rack.query(Toast):
        holder = toast.parent
        if toast._notification not in notifications and isinstance(holder, ToastHolder):
            holder.remove()
    _textual_show_toasts(rack, notifications)


_textual_show_toasts = ToastRack.show
ToastRack.show = _show_toasts  # type: ignore[method-assign]

# What ctrl+c says: 'q' is the console's key, ctrl+q Textual's, which also works in a text field.
QUIT_HINT = "Press q to quit (or ctrl+q, which also works while typing in a field)."


class MldeckApp(App):
    """The console over one workspace. It never changes state on its own event loop."""

    CSS_PATH = "app.tcss"
    TITLE = "mldeck"
    MODES: ClassVar = {
        "overview": OverviewScreen,
        "runs": RunsScreen,
        "data": DataScreen,
        "models": ModelsScreen,
        "drift": DriftScreen,
        "pipeline": PipelineScreen,
        "jobs": JobsScreen,
        "audit": AuditScreen,
    }
    DEFAULT_MODE = "overview"
    BINDINGS = [
        Binding("1", "switch_mode('overview')", "Overview", show=False, id="goto-overview"),
        Binding("2", "switch_mode('runs')", "Runs", show=False, id="goto-runs"),
        Binding("3", "switch_mode('data')", "Data", show=False, id="goto-data"),
        Binding("4", "switch_mode('models')", "Models", show=False, id="goto-models"),
        Binding("5", "switch_mode('drift')", "Drift", show=False, id="goto-drift"),
        Binding("6", "switch_mode('pipeline')", "Pipeline", show=False, id="goto-pipeline"),
        Binding("7", "switch_mode('jobs')", "Jobs", show=False, id="goto-jobs"),
        Binding("8", "switch_mode('audit')", "Audit", show=False, id="goto-audit"),
        Binding("exclamation_mark", "alerts", "Alerts", show=False, id="alerts"),
        Binding("question_mark", "help", "Help", id="help"),
        # Textual adds its own ctrl+p only when no binding names the palette: both are ours.
        Binding("colon,ctrl+p", "command_palette", "Commands", show=False, id="commands"),
        Binding("ctrl+r", "refresh", "Refresh", show=False, id="refresh"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        *,
        read_only: bool = False,
        poll_seconds: float | None = None,
        watch_incoming: bool = True,
        run_scheduler: bool = False,
        demo_feed_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self.run_scheduler = run_scheduler
        # Demo time, fast-forwarded: a new week into data/incoming/ every so many seconds.
        self.demo_feed_seconds = demo_feed_seconds
        self.demo_feed = None
        self.scheduler = None
        self.watch_incoming = watch_incoming
        self.watcher = None
        self._standby_watcher = None
        self.watcher_state = ""
        # A drift report a check from another screen made: the Drift screen shows it next.
        self.asked_report: int | None = None
        self.workspace = workspace
        self.store = store
        self.read_only = read_only
        self.poll_seconds = poll_seconds or workspace.settings.console.refresh_seconds
        self.seen_seq: int | None = None
        self.champion_label = ""
        self.alert_counts: tuple[int, int] = (0, 0)
        self.store_problem = ""
        self._store_file = self.store.file_identity()
        self._detached = False  # the store file moved: watching, scheduling and feeding stopped
        self.child_commands = Children(workspace.root)
        self._theme_problems: list[str] = []
        self._load_themes()

    # -- themes --------------------------------------------------------------------------------
    def _load_themes(self) -> None:
        themes, self._theme_problems = discover_themes(self.workspace.root / "themes")
        for theme in themes:
            self.register_theme(theme)
        wanted = self.workspace.settings.console.theme
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self._theme_problems.append(f"theme {wanted!r} not found; using {DEFAULT_THEME}")
            self.theme = DEFAULT_THEME

    def get_theme_variable_defaults(self) -> dict[str, str]:
        theme = self.current_theme
        return {
            "status-succeeded": theme.success or "green",
            "status-running": theme.primary,
            "status-queued": theme.secondary or theme.primary,
            "status-failed": theme.error or "red",
            "status-orphaned": theme.warning or "yellow",
            "status-warning": theme.warning or "yellow",
            "status-muted": theme.secondary or theme.primary,
            "champion": theme.accent or theme.primary,
        }

    # -- start-up and polling ------------------------------------------------------------------
    def on_mount(self) -> None:
        for problem in self._theme_problems:
            self.notify(problem, severity="warning", timeout=8)
        self._end_on_signals()
        self._start_watcher()
        self._start_scheduler()
        self._start_demo_feed()
        self._poll()

    def _start_demo_feed(self) -> None:
        if self.demo_feed_seconds is None or self.read_only:
            return
        from mldeck.demo.feed import DemoFeed

        self.demo_feed = DemoFeed(self.workspace, self.store, self.demo_feed_seconds,
                                  on_event=self._watcher_said)  # fmt: skip
        self.demo_feed.start()

    def _start_scheduler(self) -> None:
        """Embed the scheduler: it acts when no daemon does (the lease decides), else waits."""
        if self.read_only or not self.run_scheduler:
            return
        from mldeck.jobs.scheduler import DeckScheduler

        self.scheduler = DeckScheduler(self.workspace, self.store, role="console",
                                       on_event=self._scheduler_said)  # fmt: skip
        self.scheduler.start()

    def _scheduler_said(self, message: str) -> None:
        # mldeck.toml broken (or fixed) while the console runs: said in the console too, which
        # otherwise showed nothing until a job failed on the file.
        if message.startswith("mldeck.toml") or any(
            word in message
            for word in ("failed", "promoted", "orphaned", "triggered", "acting", "timed out")
        ):
            self.post_message(self.WatcherSaid(message, where="the Runs screen"))

    def _start_watcher(self) -> None:
        """Watch data/incoming/ in a background thread (one watcher per workspace)."""
        if self.read_only or not self.watch_incoming:
            self._look_at_watching()
            return
        from mldeck.data.watcher import IncomingWatcher

        self.watcher = IncomingWatcher(self.workspace, self.store, on_event=self._watcher_said)
        if self.watcher.start():
            self.watcher_state = "watched by this console"
        else:  # tried again at every poll: this console takes over when the other one stops
            self._standby_watcher = self.watcher
            self.watcher, self.watcher_state = None, "watched by another process"

    def _look_at_watching(self) -> None:
        """What a console that does not watch says: whether another process watches."""
        from mldeck.data.watcher import watched_elsewhere

        if watched_elsewhere(self.workspace):
            self.watcher_state = "watched by another process"
        else:
            self.watcher_state = "not watched (read-only)" if self.read_only else "not watched"

    def _take_over_watching(self) -> None:
        if (
            self.watcher is None
            and self._standby_watcher is None
            and (self.read_only or not self.watch_incoming)
        ):
            self._look_at_watching()  # the other watcher may have started or stopped
            return
        standby = self._standby_watcher
        if standby is None or not standby.start():
            return
        self.watcher, self._standby_watcher = standby, None
        self.watcher_state = "watched by this console"
        self.notify("this console now watches data/incoming/ (the other watcher stopped)",
                    timeout=6)  # fmt: skip
        if isinstance(self.screen, DeckScreen):
            self.screen.reload()

    class WatcherSaid(Message):
        """A line from the incoming-data watcher (posted from its thread, never blocking it)."""

        def __init__(self, text: str, where: str = "the Data screen") -> None:
            super().__init__()
            self.text = text
            self.where = where  # the screen that says it all

    def _watcher_said(self, message: str) -> None:
        self.post_message(self.WatcherSaid(message))

    def on_mldeck_app_watcher_said(self, event: WatcherSaid) -> None:
        lowered = event.text.lower()
        config = lowered.startswith("mldeck.toml")
        if (" rejected" in lowered or "not ingested" in lowered or "failed" in lowered
                or "cannot be used" in lowered):  # fmt: skip
            severity = "error"
        elif " warned" in lowered or "gone before" in lowered:
            severity = "warning"
        else:
            severity = "information"
        text = event.text
        # The reasons in full are on the Data screen (a batch) or the Runs screen (a job's run);
        # what is wrong with mldeck.toml is said nowhere else, so whole.
        if len(text) > WATCHER_TOAST_CHARS and not config:
            text = text[: WATCHER_TOAST_CHARS - 1].rstrip() + f"… ({event.where} has it all)"
        # A batch taken is news for a moment; a problem stays longer (a demo feed drops a week
        # every few seconds: its notices covered the tables' status columns most of the time).
        timeout = 4 if severity == "information" else 15 if config else 8
        self.notify(text, severity=severity, timeout=timeout)
        if "moved to" in lowered and isinstance(self.screen, DataScreen):
            self.screen.reload()  # a file quarantined without a version: the store did not change

    async def action_quit(self) -> None:
        """Quit; work started here (training, scoring, drift checks) is interrupted first, once
        confirmed (q again, Enter or ctrl+q confirms; escape stays)."""
        from mldeck.tui.screens.confirm import QuitScreen

        running = self.child_commands.running
        jobs = self._scheduled_jobs_running()
        if (running or jobs) and not isinstance(self.screen, QuitScreen):
            said = []
            if running:
                said.append(f"{'A command' if running == 1 else f'{running} commands'} started "
                            "here (training, scoring or a drift check) still running: quitting "
                            f"stops {'it' if running == 1 else 'them'}, and the runs end "
                            "cancelled.")  # fmt: skip
            if jobs:
                # A long retrain thrown away by one key: said, as the work started by hand is.
                said.append(f"The scheduler of this console is running {', '.join(jobs)}: "
                            "quitting stops the jobs, and their runs end cancelled (a daemon "
                            "keeps jobs running without a console: 'mldeck daemon').")  # fmt: skip
            what = "\n\n".join(said)

            def answered(note: str | None) -> None:
                if note is not None:
                    self.run_worker(self._quit_now(), group="quit")

            self.push_screen(QuitScreen(what), answered)
            return
        await self._quit_now()

    def _scheduled_jobs_running(self) -> list[str]:
        """The jobs the embedded scheduler runs now (none when it only stands by)."""
        scheduler = self.scheduler
        runner = scheduler.runner if scheduler is not None and scheduler.acting else None
        return runner.running if runner is not None else []

    def action_help_quit(self) -> None:
        """ctrl+c (Textual's binding): say how to quit, as plain text (Textual's own notice is
        markup, which ``notify`` here never parses: it showed ``[b]ctrl+q[/b]``)."""
        self.notify(QUIT_HINT, title="ctrl+c does not quit", timeout=6)

    def _end_on_signals(self) -> None:
        """SIGTERM and SIGHUP (a closed terminal, a dropped SSH session, `tmux kill-session`)
        quit as `q` confirmed does: the work started here ends cancelled and the scheduler
        stops. By default they killed the console at once, and its jobs read 'running' until
        the next scheduler marked them orphaned."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread takes signals (an app run by a test's worker thread)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, lambda: self.call_next(self._quit_now))

    async def _quit_now(self) -> None:
        if self.child_commands.running:
            self.notify("stopping the work started here (its runs end cancelled)…",
                        timeout=10)  # fmt: skip
            await asyncio.to_thread(self.child_commands.interrupt_all)
        self.exit()

    def on_unmount(self) -> None:
        self.child_commands.interrupt_all()
        self._stop_background()

    def _stop_background(self) -> None:
        """Stop the demo feed, the watcher and the embedded scheduler (at exit, or when the
        store file is no longer the workspace's)."""
        feed, watcher, scheduler = self.demo_feed, self.watcher, self.scheduler
        self.demo_feed = self.watcher = self._standby_watcher = self.scheduler = None
        if feed is not None:
            feed.stop()
        if watcher is not None:
            watcher.stop()
        if scheduler is not None:
            scheduler.stop()

    def _poll(self) -> None:
        self.run_worker(self._poll_store, thread=True, group="poll", exit_on_error=False)

    def _poll_store(self) -> None:
        """Read the change counter (cheap); read the champion only when something changed."""
        try:
            seq = self.store.change_seq()
            label = alerts = None
            if seq != self.seen_seq:
                label = ", ".join(f"{c.model}:{c.version}" for c in champions(self.store))
                alerts = active_count(self.store)
            problem = ""
            moved = self._store_file is not None and self.store.file_identity() != self._store_file
            if moved and not self._detached:
                # The open connection still writes the old file: files taken from
                # data/incoming/ now would be recorded where the workspace no longer looks.
                self._detached = True
                self._stop_background()
                self.watcher_state = "not watched (the store file moved)"
            if self._detached:
                state = "was moved or replaced" if moved else "was moved and is back"
                problem = (f"store file {self.store.sqlite_path} {state}: watching and scheduling"
                           " stopped; quit and reopen")  # fmt: skip
        except Exception as exc:  # the store went away: say so, keep polling
            seq, label, alerts, problem = self.seen_seq, None, None, store_problem(exc)
        self.call_from_thread(self._after_poll, seq, label, problem, alerts)

    def _after_poll(
        self, seq: int | None, label: str | None, problem: str, alerts: tuple[int, int] | None
    ) -> None:
        changed = seq != self.seen_seq
        self.seen_seq = seq
        if label is not None:
            self.champion_label = label
        if alerts is not None:
            self.alert_counts = alerts
        if problem != self.store_problem or label is not None:
            self.store_problem = problem
            if isinstance(self.screen, DeckScreen):
                self.screen.sync_topbar()
        self._take_over_watching()
        if changed and isinstance(self.screen, DeckScreen):
            self.screen.reload()
        self.set_timer(self.poll_seconds, self._poll)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.report_error(event.worker.error)
            if event.worker.group == "poll":
                self.set_timer(self.poll_seconds, self._poll)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is shown as written: its text comes from errors, file names and
        the store (``[data] reference``, ``[gates]``), never from markup (the *markup* asked for
        by a widget's own ``notify`` is ignored)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def _on_notify(self, event: Notify) -> None:
        """Before Textual's own handler adds the new one: at most ``MAX_TOASTS`` are shown at
        once, the oldest information giving way (a demo feed's stream of batches covered most
        of an 80x24 screen, a dialog's buttons included); warnings and errors stay their time."""
        shown = list(self._notifications)
        for same in [n for n in shown if n.message == event.notification.message]:
            self._unnotify(same, refresh=False)  # said again: one toast, shown anew
            shown.remove(same)
        informative = [n for n in shown if n.severity == "information"]
        for old in informative[: max(0, len(shown) - MAX_TOASTS + 1)]:
            self._unnotify(old, refresh=False)

    def report_error(self, error: BaseException | None) -> None:
        """The one place background errors reach the user: a notification, never a crash."""
        if error is None:
            return
        if isinstance(error, MldeckError):
            self.notify(str(error), severity="error", timeout=10)
        elif isinstance(error, OperationalError):
            # The store cannot be reached: the top bar says so (the poll sees it too); one
            # notice per outage, not a pop-up for every screen that tried to read.
            if not self.store_problem:
                self.store_problem = store_problem(error)
                self.notify(self.store_problem, severity="error", timeout=10)
                if isinstance(self.screen, DeckScreen):
                    self.screen.sync_topbar()
        else:
            self.notify(
                f"{type(error).__name__}: {error}",
                title="Unexpected error",
                severity="error",
                timeout=15,
            )

    # -- actions -------------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_alerts(self) -> None:
        from mldeck.tui.screens.alerts import AlertsScreen

        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen())

    def action_refresh(self) -> None:
        if isinstance(self.screen, DeckScreen):
            self.screen.reload()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for mode, title in SECTIONS:
            yield SystemCommand(
                f"Go to {title}", f"Show the {title} screen", lambda m=mode: self.switch_mode(m)
            )
        for status in ("failed", "running", "succeeded"):
            yield SystemCommand(
                f"Runs: {status}",
                f"List the runs whose status is {status}",
                lambda s=status: self._runs_filtered(f"status:{s}"),
            )
        for name in ("rejected", "warned", "quarantined"):
            yield SystemCommand(
                f"Data: {name}",
                f"List the dataset versions that are {name}",
                lambda n=name: self._data_filtered(n),
            )
        yield SystemCommand(
            "Alerts", "Active alerts: acknowledge, resolve (also '!')", self.action_alerts
        )
        yield SystemCommand(
            "Refresh", "Reload the current screen from the store", self.action_refresh
        )
        yield SystemCommand("Help", "What this screen shows and its keys", self.action_help)
        for command in super().get_system_commands(screen):
            # Textual's keys panel repeats the help and stays docked, squeezing the top bar,
            # until it is chosen again; '?' (Help) says the keys of every screen.
            if command.title != "Keys":
                yield command

    def _mode_base(self, mode: str) -> Screen:
        """Switch to *mode* with its own screen showing: the screens opened over it (a run's
        detail, the alerts) are closed, as going to a list filtered asks."""
        self.switch_mode(mode)
        while len(self.screen_stack) > 1:
            self.pop_screen()
        return self.screen

    def _runs_filtered(self, text: str) -> None:
        screen = self._mode_base("runs")
        if isinstance(screen, RunsScreen):
            screen.set_filter(text)

    def _data_filtered(self, name: str) -> None:
        screen = self._mode_base("data")
        if isinstance(screen, DataScreen):
            screen.set_filter(name)

    @property
    def workspace_root(self) -> Path:
        return self.workspace.root
