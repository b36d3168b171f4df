"""Overview: the workspace at a glance (runs, data, models, alerts, the store, the last runs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rich.text import Text
from sqlalchemy.engine import make_url
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable

from mldeck import formatting as fmt
from mldeck.monitor.kpis import Kpis, kpis
from mldeck.store.engine import Store
from mldeck.store.queries import Overview, integrity_check, overview
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.screens.runs import BESIDE_NAME, RunDetailScreen, run_cells
from mldeck.tui.styles import rich_color
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Packed, Plain


@dataclass
class OverviewData:
    figures: Overview
    integrity: str | None
    kpis: Kpis
    health: tuple[str, str] = ("", "")  # worst status of the latest health checks, one line


class Card(Plain):
    """A bordered box with a title and a few lines of figures."""


LAST_RUNS = 8  # the fewest last runs listed (more when the terminal is taller)


class OverviewScreen(DeckScreen):
    SCREEN_TITLE = "Overview"
    HELP = (
        "The workspace at a glance: how many runs ran and how they ended, the data, the models "
        "and the champion, open alerts ('!' lists them), the operations KPIs of the last 30 "
        "days ('mldeck kpis' explains each), and the state of the metadata store. The table lists "
        "the last runs: press Enter on one to open it. Everything refreshes on its own when "
        "another process (a script, the CLI, the scheduler) writes to the store."
    )
    BINDINGS = [Binding("i", "check_store", "Check store", id="check-store")]

    def __init__(self) -> None:
        super().__init__()
        self._integrity: str | None = None
        self._asked = False
        self._room = LAST_RUNS  # rows the Last runs table has room for (it fills the height)

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="cards"):
            yield Card(id="card-runs")
            yield Card(id="card-data")
            yield Card(id="card-models")
            yield Card(id="card-alerts")
        yield Packed(id="kpi-line")
        yield Packed(id="store-line")
        table = DeckTable(id="last-runs", follow_top=True)
        table.border_title = "Last runs"
        yield table

    def on_mount(self) -> None:
        titles = {"runs": "Runs", "data": "Data", "models": "Models", "alerts": "Alerts"}
        for key, title in titles.items():
            self.query_one(f"#card-{key}", Card).border_title = title
        table = self.query_one("#last-runs", DeckTable)
        table.add_columns("ID", "NAME", "KIND", "STATUS", "STARTED", "TIME")
        # The ages shown ('data 4m old') move with the clock, not only with the store.
        self.set_interval(self.AGE_REFRESH_SECONDS, self._refresh_ages)

    AGE_REFRESH_SECONDS = 5.0  # a reload reads little (0.07 s on a demo store of a day)

    def _refresh_ages(self) -> None:
        if self.is_current:
            self.reload()

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_last_runs)

    def _fit_last_runs(self) -> None:
        """List as many last runs as the table has room for, once it is laid out (its size is
        within its border; the header takes a row), and at least LAST_RUNS."""
        height = self.query_one("#last-runs", DeckTable).size.height
        room = max(LAST_RUNS, height - 1) if height else self._room
        if room != self._room:
            self._room = room
            self.reload()

    def fetch(self, store: Store) -> OverviewData:
        figures = overview(store, last=self._room)
        if self._integrity is None:
            self._integrity = integrity_check(store)
            if self._asked:  # 'i' pressed: say the answer, not only in the Store line
                self._asked = False
                said = self._integrity
                self.app.call_from_thread(
                    self.notify, f"store integrity check: {said}",
                    severity="information" if said == "ok" else "error", timeout=6,
                )  # fmt: skip
        cost = self.deck.workspace.settings.monitor.cost_per_cpu_hour
        from mldeck.jobs.views import health_summary

        return OverviewData(figures, self._integrity, kpis(store, days=30, cost_per_cpu_hour=cost),
                            health_summary(store))  # fmt: skip

    def action_check_store(self) -> None:
        self._integrity = None
        self._asked = True
        self.reload()

    def show(self, data: OverviewData) -> None:
        o = data.figures
        var = self.app.theme_variables
        failed = rich_color(var.get("status-failed", ""))
        ok = rich_color(var.get("status-succeeded", ""))
        warn = rich_color(var.get("status-warning", ""))

        runs = Text()
        runs.append(fmt.plural(o.runs_total, "run") + "\n", style="bold")
        running = o.runs_by_status.get("running", 0)
        runs.append(f"{running} running\n")
        runs.append(f"{o.runs_last_24h} in last 24h\n")
        runs.append(f"{o.failed_last_24h} failed (24h)", style=failed if o.failed_last_24h else "")
        self.query_one("#card-runs", Card).update(runs)

        data_text = Text()
        versions = sum(o.dataset_versions_by_status.values())
        data_text.append(fmt.plural(o.datasets, "dataset") + "\n", style="bold")
        data_text.append(fmt.plural(versions, "version") + "\n")
        rejected = o.dataset_versions_by_status.get("rejected", 0)
        warned = o.dataset_versions_by_status.get("warned", 0)
        data_text.append(f"{rejected} rejected\n", style=failed if rejected else "")
        data_text.append(f"{warned} with warnings", style=warn if warned else "")
        self.query_one("#card-data", Card).update(data_text)

        models = Text()
        models.append(fmt.plural(o.registered_models, "model") + "\n", style="bold")
        models.append(fmt.plural(o.model_versions, "version") + "\n")
        champion_color = rich_color(var.get("champion", ""))
        if o.champions:
            for champ in o.champions[:2]:
                models.append(f"★ {champ.model}:{champ.version}\n", style=champion_color)
        else:
            models.append("no champion", style="dim")
        self.query_one("#card-models", Card).update(models)

        alerts = Text()
        open_total = sum(o.open_alerts_by_severity.values())
        unseen = open_total - o.acknowledged_alerts
        alerts.append(f"{unseen} open\n", style=f"bold {failed}" if unseen else "bold")
        if o.acknowledged_alerts:
            alerts.append(f"{o.acknowledged_alerts} acknowledged\n")
        for severity in ("critical", "warning", "info"):
            count = o.open_alerts_by_severity.get(severity, 0)
            if count:
                alerts.append(f"{count} {severity}\n")
        if not open_total:
            alerts.append("all quiet", style=ok)
        self.query_one("#card-alerts", Card).update(alerts)

        self.query_one("#kpi-line", Packed).update(kpi_text(data.kpis, failed))

        info = o.store
        where = info.url
        if info.backend == "sqlite":
            # The URL's database, decoded: a folder named 'demo [b]' is '%5Bb%5D' in the URL.
            where = _relative(make_url(info.url).database or "", self.deck.workspace.root)
        integrity = data.integrity or "?"
        store = [Text(f"{info.backend} {where}"), Text(fmt.size(info.size_bytes))]
        if info.journal_mode:
            store.append(Text(info.journal_mode.upper()))
        store.append(Text(f"schema {info.schema_revision}"))
        store.append(Text.assemble("integrity ", (integrity, ok if integrity == "ok"
                                                  else f"bold {failed}")))  # fmt: skip
        incoming = _relative(str(self.deck.workspace.incoming_dir), self.deck.workspace.root)
        watched = [Text(f"{incoming}/ {self.deck.watcher_state}")]
        worst, said = data.health
        if worst:  # once a health check has run ([jobs.schedules] or 'mldeck jobs health')
            watched.append(Text.assemble(("Checks ", "bold"), (said, {"ok": ok, "warn": warn}
                                         .get(worst, f"bold {failed}"))))  # fmt: skip
        self.query_one("#store-line", Packed).update([("Store", store), ("Incoming", watched)])

        table = self.query_one("#last-runs", DeckTable)
        table.replace_rows(
            [(str(row.id), run_cells(self.app, row, beside=BESIDE_NAME)[:6]) for row in o.last_runs]
        )
        table.border_subtitle = (
            "" if o.last_runs else "no runs yet: see the README's tracking example"
        )
        self.call_after_refresh(self._fit_last_runs)  # laid out now: its room is known

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.push_screen(RunDetailScreen(int(event.row_key.value)))


def kpi_text(k: Kpis, alarm: str) -> list[tuple[str, list[Text]]]:
    """The KPIs as two labelled rows of items: delivery, then the model's health (30 days)."""

    def hours(value: float | None) -> str:
        return "-" if value is None else fmt.duration(timedelta(hours=value))

    delivery = [
        Text(f"{fmt.plural(k.promotions, 'promotion')} in {k.window_days:g}d"),
        Text(f"lead time {hours(k.lead_time_hours)}"),
        Text(f"change failures {fmt.share(k.change_failure_rate)}"),
        Text(f"restore {hours(k.time_to_restore_hours)}"),
    ]
    health: list[Text] = []
    last = k.quality[-1] if k.quality else None
    if last is not None:
        batch = Text(f"{last['batch']} ")
        if last.get("estimated") is not None:
            batch.append(f"est {last['estimated']:.3f} ")
        if last.get("realized") is not None:
            batch.append(f"real {last['realized']:.3f} ")
        batch.append("drift ")
        batch.append(f"{last['drift_share']:.0%}", style=alarm if last["dataset_drift"] else "")
        health.append(batch)
    health.append(Text(
        "no data yet" if k.data_freshness_hours is None
        else f"data {hours(k.data_freshness_hours)} old"
    ))  # fmt: skip
    health.append(Text(f"runs ok {fmt.share(k.pipeline_success_rate)}"))
    if k.latency_ms_per_1k_p50 is not None:
        health.append(Text(f"p50/p95 {k.latency_ms_per_1k_p50:.0f}/"
                           f"{k.latency_ms_per_1k_p95:.0f} ms per 1k"))  # fmt: skip
    return [("Delivery", delivery), ("Health", health)]


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
