"""Models: every registered version with its aliases, gates and approval, and one version in
detail (metrics beside the champion's, gates, lineage, history) with approve / promote /
rollback / archive behind a confirmation dialog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from mldeck import formatting as fmt
from mldeck.errors import MldeckError
from mldeck.jobs.policies import history_actions, promoted_once_approved
from mldeck.ml import registry
from mldeck.store.engine import Store
from mldeck.store.queries import (
    AuditRow,
    ModelVersionDetail,
    ModelVersionRow,
    RunFilter,
    RunRow,
    list_model_versions,
    list_runs,
    model_version_detail,
    numeric_metrics,
)
from mldeck.tui.screens.base import DeckScreen
from mldeck.tui.screens.confirm import ConfirmScreen
from mldeck.tui.styles import rich_color, status_text
from mldeck.tui.widgets.table import DeckTable
from mldeck.tui.widgets.text import Plain

WINDOW = 200

_VERSION_STATUS = {
    "candidate": "queued",
    "approved": "succeeded",
    "rejected": "failed",
    "archived": "cancelled",
}


def version_status(app: App, status: str) -> Text:
    """A version's status in the colour of the run status that means the same."""
    text = status_text(app, _VERSION_STATUS.get(status, status))
    text.plain = status
    return text


def alias_text(app: App, aliases: tuple[str, ...]) -> Text:
    """The aliases of a version, ``champion`` in the theme's champion colour."""
    text = Text()
    color = rich_color(app.theme_variables.get("champion", ""))
    for index, alias in enumerate(aliases):
        if index:
            text.append(", ")
        if alias == registry.CHAMPION:
            text.append(f"★ {alias}", style=f"bold {color}".strip())
        else:
            text.append(alias)
    return text


def gates_text(app: App, row: ModelVersionRow) -> Text:
    """``3✓`` or ``2✓ 1✗`` (passed, failed); ``none`` when no gate was evaluated."""
    if not row.gates_passed and not row.gates_failed:
        return Text("none", style="dim")
    text = Text(f"{row.gates_passed}✓")
    if row.gates_failed:
        color = rich_color(app.theme_variables.get("status-failed", ""))
        text.append(f" {row.gates_failed}✗", style=f"bold {color}".strip())
    return text


def key_metric(metrics: dict[str, Any], primary: str) -> float | None:
    """The value of *primary* among the (flattened) metrics, if it is there."""
    found = numeric_metrics(metrics)
    if primary in found:
        return found[primary]
    for name, value in found.items():
        if name.rsplit(".", 1)[-1] == primary:
            return value
    return None


class ModelsScreen(DeckScreen):
    SCREEN_TITLE = "Models"
    WRITES = frozenset({"train"})
    HELP = (
        "Every registered model version, newest first per model: its status, aliases (the "
        "champion is starred), how many gates it passed (✓) and failed (✗), the latest approval decision "
        "and the key metric ([model] primary_metric). Enter opens a version, where it can be "
        "approved or rejected, promoted to champion or challenger, rolled back to or archived. "
        "n trains a new candidate."
    )

    BINDINGS = [Binding("n", "train", "Train candidate", id="models-train")]

    def __init__(self) -> None:
        super().__init__()
        self._training: list[RunRow] = []  # trainings under way, as last read

    def compose_body(self) -> ComposeResult:
        yield DeckTable(id="models-table", follow_top=True)
        yield Plain(id="models-status")

    def action_train(self) -> None:
        """Train a candidate as `mldeck run train` does, in a child process, after confirming;
        first, in a worker thread, whether mldeck.toml as it is now says what to train."""
        self.run_worker(self._trainable, thread=True, group="train-check", exclusive=True,
                        exit_on_error=False)  # fmt: skip

    def _trainable(self) -> None:
        """What the training would refuse before it starts a run ([model] target not set, a
        broken mldeck.toml) is said now, and no dialog asks to start it."""
        from mldeck.ml.train import TrainSpec
        from mldeck.workspace import load_workspace

        try:  # the file as the command would read it (it may have changed since the start)
            spec = TrainSpec.from_workspace(load_workspace(self.deck.workspace.root))
        except MldeckError as exc:
            self.app.call_from_thread(self.notify, f"cannot train: {exc}", severity="error",
                                      timeout=10)  # fmt: skip
            return
        self.app.call_from_thread(self._ask_to_train, spec.model)

    def _ask_to_train(self, model: str) -> None:
        what = (
            f"Train a new candidate of {model} from [model] in mldeck.toml, evaluate it "
            "beside the champion and check the gates. Progress shows on the Runs screen."
        )
        if self._training:  # a second press while the first one trains: said, not hidden
            runs = ", ".join(f"run {run.id}" for run in self._training)
            what += f" A training is under way ({runs}): this starts another one beside it."
        self.app.push_screen(
            ConfirmScreen(f"Train {model}", what, placeholder=None), self._train_confirmed
        )

    def _train_confirmed(self, note: str | None) -> None:
        if note is None:
            return
        self.notify("training started: follow it on the Runs screen (2)", timeout=6)
        self.run_worker(self._train, thread=True, group="train", exit_on_error=False)

    def _train(self) -> None:
        # As 'mldeck run train' in a child process: quitting the console interrupts it (the run
        # ends cancelled) instead of waiting for the training to end. Exit 3: a gate failed.
        result = self.deck.child_commands.run_json("run", "train", ok=(0, 3))
        gates = "all gates passed" if result["gates_passed"] else "a gate failed"
        message = (
            f"registered {result['model']}:{result['version']} (run {result['run_id']}); {gates}"
        )
        self.app.call_from_thread(self.notify, message, title="Trained", timeout=10)

    def on_mount(self) -> None:
        primary = self.deck.workspace.settings.model.primary
        table = self.query_one("#models-table", DeckTable)
        table.add_columns(
            "VERSION", "STATUS", "ALIASES", "GATES", "APPROVAL", primary.upper(), "CREATED"
        )
        table.focus()

    def fetch(self, store: Store) -> tuple[list[ModelVersionRow], int, list[RunRow]]:
        rows, total = list_model_versions(store, limit=WINDOW)
        running, _ = list_runs(store, RunFilter(status="running", kind="train"), limit=20)
        return rows, total, [run for run in running if run.parent_id is None]

    def show(self, data: tuple[list[ModelVersionRow], int, list[RunRow]]) -> None:
        rows, total, training = data
        self._training = training
        primary = self.deck.workspace.settings.model.primary
        table = self.query_one("#models-table", DeckTable)
        table.replace_rows(
            [
                (
                    str(row.id),
                    (
                        row.label,
                        version_status(self.app, row.status),
                        alias_text(self.app, row.aliases),
                        gates_text(self.app, row),
                        row.decision or Text("none", style="dim"),
                        Text(fmt.number(key_metric(row.metrics, primary)), justify="right"),
                        fmt.when(row.created_at)[:16],
                    ),
                )
                for row in rows
            ]
        )
        if total == 0:
            message = "no model versions yet (n trains one)"
        elif total > len(rows):
            message = f"showing {len(rows)} of {total} model versions"
        else:
            message = fmt.plural(total, "model version")
        if training:  # a candidate on its way: said here, not only on the Runs screen
            runs = ", ".join(
                f"run {run.id} {fmt.progress(run.progress, run.status)}".rstrip()
                for run in training
            )
            message += f" · training now: {runs} (2 Runs)"
        self.query_one("#models-status", Static).update(message)

    @on(DataTable.RowSelected, "#models-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(ModelVersionScreen(int(event.row_key.value)))


# The actions on a version: (verb shown in the dialog, whether a reason is required).
_ACTIONS = {
    "approve": ("Approve", True),
    "reject": ("Reject", True),
    "promote": ("Promote to champion", False),
    "challenger": ("Make challenger", False),
    "rollback": ("Roll back to", True),
    "archive": ("Archive", False),
}


class ModelVersionScreen(DeckScreen):
    SCREEN_TITLE = "Model version"
    WRITES = frozenset({"change"})
    HELP = (
        "One model version: its metrics beside the current champion's, each gate with its result "
        "and detail, its lineage (dataset versions → training run → version) and its history "
        "(the audit trail: registration, approvals, promotions); m, t, l and h show those tabs. "
        "a approves, r rejects, p promotes to champion, c makes it the challenger (scored in "
        "shadow beside the champion), b rolls the champion back to this version, x archives "
        "it; each asks for confirmation first, with a reason (required to approve, reject or "
        "roll back, optional otherwise). Read-only consoles cannot change anything."
    )
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="model-back"),
        Binding("m", "tab('metrics')", "Metrics", show=False, id="model-tab-metrics"),
        Binding("t", "tab('gates')", "Gates", show=False, id="model-tab-gates"),
        Binding("l", "tab('lineage')", "Lineage", show=False, id="model-tab-lineage"),
        Binding("h", "tab('history')", "History", show=False, id="model-tab-history"),
        Binding("a", "change('approve')", "Approve", id="model-approve"),
        # r and c are said by ? (the footer has no room left for them at 80 columns).
        Binding("r", "change('reject')", "Reject", show=False, id="model-reject"),
        Binding("p", "change('promote')", "Promote", id="model-promote"),
        Binding("c", "change('challenger')", "Challenger", show=False, id="model-challenger"),
        Binding("b", "change('rollback')", "Rollback", id="model-rollback"),
        Binding("x", "change('archive')", "Archive", id="model-archive"),
    ]

    def __init__(self, model_version_id: int) -> None:
        super().__init__()
        self.model_version_id = model_version_id
        self.row: ModelVersionRow | None = None
        self.champion: ModelVersionRow | None = None
        # Waiting for approval after an automatic retrain: approving it makes it the champion.
        self._promoted_on_approval = False
        # Each table's DETAIL by row key: the highlighted row's is shown whole under the table
        # (a narrow terminal cuts the column: "roc_auc 0.802 vs champion v2 0.7795: no worse (allo").
        self._whole: dict[str, dict[str, str]] = {"model-gates": {}, "model-history": {}}

    def compose_body(self) -> ComposeResult:
        yield Plain(id="model-summary")
        with TabbedContent(initial="metrics", id="model-tabs"):
            with TabPane("Metrics", id="metrics"):
                yield DeckTable(id="model-metrics")
            with TabPane("Gates", id="gates"):
                yield DeckTable(id="model-gates")
                yield Plain(id="model-gates-whole", classes="whole")
            with TabPane("Lineage", id="lineage"), VerticalScroll():
                yield Plain(id="model-lineage")
            with TabPane("History", id="history"):
                yield DeckTable(id="model-history")
                yield Plain(id="model-history-whole", classes="whole")

    def on_mount(self) -> None:
        self.query_one("#model-gates", DeckTable).add_columns("GATE", "RESULT", "DETAIL")
        self.query_one("#model-history", DeckTable).add_columns("TIME", "WHO", "WHAT", "DETAIL")
        self.query_one("#model-metrics", DeckTable).focus()  # j/k move in it at once

    def subtitle(self) -> str:
        return self.row.label if self.row is not None else f"version {self.model_version_id}"

    def fetch(self, store: Store) -> ModelVersionDetail:
        return model_version_detail(store, self.model_version_id)

    def show(self, detail: ModelVersionDetail) -> None:
        row = detail.row
        self.row, self.champion = row, detail.champion
        actions = history_actions(detail.history)
        self._promoted_on_approval = promoted_once_approved(
            self.deck.workspace.settings.jobs.promote_on_approval, actions, row.aliases
        )
        self.sync_topbar()
        summary = Text(no_wrap=True, overflow="ellipsis")
        summary.append(row.label, style="bold")
        summary.append(" ")
        summary.append_text(version_status(self.app, row.status))
        if row.aliases:
            summary.append(" · ")
            summary.append_text(alias_text(self.app, row.aliases))
        summary.append(f" · approval {row.decision or 'none'}")
        if row.decided_by:
            summary.append(f" by {row.decided_by}")
        run = detail.run
        summary.append(f"\nrun {f'#{run.id} {run.name}' if run else 'none'}")
        summary.append(f" · created {fmt.when(row.created_at)}")
        champion = detail.champion
        if champion is not None:
            summary.append(f" · champion {champion.label}")
        elif registry.CHAMPION not in row.aliases:
            summary.append(" · no champion")
        self.query_one("#model-summary", Static).update(summary)

        metrics = self.query_one("#model-metrics", DeckTable)
        # Beside the champion; or, this version being it, the champion it was judged against.
        other = champion or detail.evaluated_against
        header = ("METRIC", "THIS", other.label.upper() if other else "CHAMPION", "DELTA")
        if tuple(str(c.label) for c in metrics.columns.values()) != header:
            metrics.clear(columns=True)
            metrics.add_columns(*header)
        metrics.replace_rows(
            [
                (
                    c.key,
                    (
                        c.key,
                        Text(fmt.number(c.value), justify="right"),
                        Text("-" if other is None else fmt.number(c.champion), justify="right"),
                        Text("" if c.delta is None else f"{c.delta:+.4g}", justify="right"),
                    ),
                )
                for c in detail.comparison
            ]
        )
        metrics.border_subtitle = (
            "no metrics recorded"
            if not detail.comparison
            else f"{champion.label} on its own holdout, not this version's"
            if champion is not None and not detail.champion_same_holdout
            else f"{other.label}: the champion it was judged against, on its holdout"
            if champion is None and other is not None
            else ""
        )

        gates = self.query_one("#model-gates", DeckTable)
        said = {str(i): gate.detail or _figures(gate.metric, gate.value, gate.threshold)
                for i, gate in enumerate(detail.gates)}  # fmt: skip
        self._whole["model-gates"] = {key: f"{detail.gates[int(key)].gate}: {text}"
                                      for key, text in said.items()}  # fmt: skip
        gates.replace_rows(
            [
                (str(index), (gate.gate, _result(self.app, gate.passed), said[str(index)]))
                for index, gate in enumerate(detail.gates)
            ]
        )
        gates.border_subtitle = "" if detail.gates else "no gates evaluated"

        self.query_one("#model-lineage", Static).update(_lineage(detail))

        history = self.query_one("#model-history", DeckTable)
        said = {str(event.id): _what(row.model, event, lost) for event, lost in detail.timeline()}
        self._whole["model-history"] = {
            key: f"{what}: {text}" for key, (what, text) in said.items()
        }
        history.replace_rows(
            [
                (str(event.id), (fmt.when(event.ts), event.actor, *said[str(event.id)]))
                for event, _lost in reversed(detail.timeline())
            ]
        )
        for table_id in self._whole:
            self._say_whole(table_id)

    @on(DataTable.RowHighlighted, "#model-gates, #model-history")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id is not None:
            self._say_whole(event.data_table.id)

    def _say_whole(self, table_id: str) -> None:
        """Under the table: the highlighted row's detail, whole."""
        key = self.query_one(f"#{table_id}", DeckTable).selected_key()
        text = self._whole[table_id].get(key or "", "")
        self.query_one(f"#{table_id}-whole", Static).update(Text(text))

    def action_tab(self, tab: str) -> None:
        self.query_one("#model-tabs", TabbedContent).active = tab

    @on(TabbedContent.TabActivated, "#model-tabs")
    def _focus_tab(self, event: TabbedContent.TabActivated) -> None:
        # The tab's content takes the keys (by letter or by click): j/k then move in its table
        # (the gate or event whose detail is said whole under it), not in the hidden metrics.
        for kind in (DeckTable, VerticalScroll):
            if found := event.pane.query(kind):
                found.first().focus()
                return

    def action_change(self, action: str) -> None:
        row = self.row
        if row is None or self.deck.read_only:
            return
        verb, needs_reason = _ACTIONS[action]
        if action == "rollback":
            # What the registry would refuse is said at once, not after a reason is typed.
            champion = self.champion
            if champion is None and "champion" in row.aliases:  # the detail compares to others
                self.notify(f"{row.label} is the champion: a rollback goes to an earlier version"
                            " (open that version and press b)", severity="warning", timeout=6)  # fmt: skip
                return
            if champion is None:
                self.notify(f"{row.model} has no champion to roll back from: promote a version",
                            severity="warning", timeout=6)  # fmt: skip
                return
            if row.version >= champion.version:
                self.notify(f"a rollback goes to an earlier version than the champion "
                            f"{champion.label}: to make {row.label} the champion, promote it (p)",
                            severity="warning", timeout=6)  # fmt: skip
                return
            what = f"Roll the champion of {row.model} back from {champion.label} to {row.label}."
        elif action == "promote":
            what = f"Make {row.label} the champion of {row.model}."
            if "challenger" in row.aliases:  # said after the change; said before it too
                what += " It stops being the challenger."
        elif action == "challenger":
            what = (f"Make {row.label} the challenger of {row.model}: scored in shadow beside "
                    "the champion on every batch, its predictions never served.")  # fmt: skip
            if self.champion is None and "champion" not in row.aliases:
                what += f" {row.model} has no champion yet: it is scored once there is one."
        elif action == "reject":
            what = (f"Reject {row.label}: your decision and its reason are recorded; it cannot "
                    "be promoted to champion unless approved later.")  # fmt: skip
            if "challenger" in row.aliases:
                what += " It stops being the challenger."
        elif action == "archive":
            what = (f"Archive {row.label} for good: it can no longer be approved, promoted or "
                    "rolled back to. Its files and history are kept.")  # fmt: skip
            if row.aliases:
                what += f" It loses its {', '.join(row.aliases)} alias."
        else:
            what = f"Approve {row.label}: your decision and its reason are recorded."
        if action == "approve" and row.gates_failed:  # approving is allowed; say what it means
            what += (f" It failed {fmt.plural(row.gates_failed, 'gate')} (see Gates: t): "
                     "approved, it is still not promoted unless the promotion is forced.")  # fmt: skip
        elif action == "approve" and self._promoted_on_approval:
            # Not only a record: the scheduler acts on it (jobs.policies.promote_approved).
            what += (f" It waits for approval after an automatic retrain: once approved, the "
                     f"scheduler makes it the champion of {row.model} "
                     "([jobs] promote_on_approval).")  # fmt: skip
        elif action == "approve":
            what += " It can then be promoted to champion (p)."
        hint = "reason (required)" if needs_reason else "reason (optional)"
        dialog = ConfirmScreen(f"{verb} {row.label}", what, placeholder=hint, required=needs_reason)
        self.run_worker(lambda: self._ask_unless_refused(action, row.label, dialog), thread=True,
                        group="change", exit_on_error=False)  # fmt: skip

    def _ask_unless_refused(self, action: str, ref: str, dialog: ConfirmScreen) -> None:
        """What the registry would refuse (not approved, failed gates, the champion archived...)
        is said at once, before a reason is typed for nothing (in a worker thread)."""
        auto = registry.auto_approve_policy(self.deck.workspace.settings)
        options: dict[str, Any] = {"reason": "(asked in the console)"}
        if action in ("promote", "rollback", "challenger"):  # its model file checked, as applied
            options.update(auto_approve=auto, root=self.deck.workspace.root)
        if action == "challenger":
            options["alias"] = registry.CHALLENGER
        elif action == "reject":
            options["reject"] = True
        change = {"reject": "approve", "challenger": "promote"}.get(action, action)
        refused = registry.refusal(self.deck.store, change, ref, **options)
        if refused:
            self.app.call_from_thread(self.notify, refused, severity="warning", timeout=8)
        else:
            self.app.call_from_thread(self.app.push_screen, dialog,
                                      lambda reason: self._confirmed(action, ref, reason))  # fmt: skip

    def _confirmed(self, action: str, ref: str, reason: str | None) -> None:
        if reason is None:
            return
        self.run_worker(
            lambda: self._apply(action, ref, reason),
            thread=True,
            group="change",
            exit_on_error=False,
        )

    def _apply(self, action: str, ref: str, reason: str) -> None:
        """Run the registry change (in a worker thread); errors reach report_error."""
        store = self.deck.store
        auto = registry.auto_approve_policy(self.deck.workspace.settings)
        root = self.deck.workspace.root
        calls: dict[str, Callable[[], registry.Change]] = {
            "approve": lambda: registry.approve(store, ref, reason=reason),
            "reject": lambda: registry.approve(store, ref, reason=reason, reject=True),
            "promote": lambda: registry.promote(
                store, ref, reason=reason, auto_approve=auto, root=root
            ),
            "challenger": lambda: registry.promote(
                store, ref, alias=registry.CHALLENGER, reason=reason, auto_approve=auto, root=root
            ),
            "rollback": lambda: registry.rollback(
                store, ref, reason=reason, auto_approve=auto, root=root
            ),
            "archive": lambda: registry.archive(store, ref, reason=reason),
        }
        change = calls[action]()
        self.app.call_from_thread(self._done, change)

    def _done(self, change: registry.Change) -> None:
        self.notify(change.describe(), title="Done", timeout=8)
        self.reload()


def _result(app: App, passed: bool) -> Text:
    text = status_text(app, "ok" if passed else "fail")
    text.plain = "pass" if passed else "fail"
    return text


def _figures(metric: str, value: float | None, threshold: float | None) -> str:
    if not metric:
        return ""
    return f"{metric} {fmt.number(value)} vs {fmt.number(threshold)}"


def _what(model: str, event: AuditRow, lost: bool) -> tuple[str, str]:
    """An event of a version's history as WHAT and DETAIL; *lost*: another version's promotion
    or rollback that took an alias from it."""
    if not lost:
        return event.action, _details(event.details)
    details = event.details
    taker = f"{model}:{details.get('version')}"
    what = f"lost {details.get('alias') or 'champion'}"
    rest = {k: v for k, v in details.items()
            if k not in ("alias", "version", "previous_version", "schema_digest")
            and not (k == "forced" and not v)}  # fmt: skip
    return what, " ".join(filter(None, [f"to {taker} ({event.action.split('.')[-1]})",
                                        _details(rest)]))  # fmt: skip


def _details(details: dict[str, Any]) -> str:
    """The interesting part of an audit event's details, on one line."""
    parts = [
        f"{key}={value}"
        for key, value in details.items()
        if key not in ("model", "schema", "code_version") and value not in (None, "", [], {})
    ]
    text = " ".join(parts)
    return text if len(text) <= 120 else text[:119] + "…"


def _lineage(detail: ModelVersionDetail) -> Text:
    """Dataset versions → run → this version, one step per line."""
    text = Text()
    if detail.inputs:
        for dataset, version, _id, sha256, role in detail.inputs:
            text.append(f"dataset {dataset} v{version}", style="bold")
            text.append(f"  {role} · sha256 {sha256[:12]}\n")
    else:
        text.append("no dataset versions recorded\n", style="dim")
    run = detail.run
    text.append("  ↓\n")
    if run is not None:
        text.append(f"run #{run.id} {run.name}", style="bold")
        text.append(f"  {run.kind} · {run.status} · {fmt.when(run.started_at or run.created_at)}\n")
    else:
        text.append("no run recorded\n", style="dim")
    text.append("  ↓\n")
    text.append(f"version {detail.row.label}", style="bold")
    if detail.artifact is not None:
        artifact = detail.artifact
        text.append(f"  {artifact.name} · {fmt.size(artifact.size_bytes)}")
        text.append(f" · sha256 {artifact.sha256[:12]}")
    code = detail.code_version.get("git_commit")
    if code:
        text.append(f"\ncode {str(code)[:12]}")
    return text
