"""The ``mldeck`` command line. Every command works on the workspace found from ``--workspace``,
``MLDECK_WORKSPACE`` or the current folder upwards; anything the console does, a command does too.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mldeck import formatting as fmt
from mldeck.errors import MldeckError, NotFound, disk_full, interrupted

if TYPE_CHECKING:
    from mldeck.store.engine import Store
    from mldeck.workspace import Workspace

app = typer.Typer(
    name="mldeck",
    help="A terminal ops console for the whole lifecycle of a machine-learning model.\n\n"
    "Without a command, opens the console on the workspace.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
data_app = typer.Typer(
    help="Ingest, validate and inspect data (dataset versions, reports, quarantine).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

# Tables fit the terminal; piped output is not squeezed to 80 columns. Text is printed as
# written (no Rich markup, no emoji codes): names, paths and errors may hold brackets, as in
# "[data] reference", or colons, as in a dataset "pets:cat" whose version is "pets:cat:v1".
out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True,
              width=None if sys.stdout.isatty() else 200)  # fmt: skip


def _heading(title: str, rest: str = "", *, gap: bool = True) -> None:
    """A section's title in bold, then *rest* as written."""
    out.print(Text.assemble("\n" if gap else "", (title, "bold"), rest))


WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        metavar="FOLDER",
        envvar="MLDECK_WORKSPACE",
        help="Workspace folder (default: the current folder or the nearest parent with mldeck.toml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def number_between(low: float, high: float | None = None) -> Any:
    """A parser for a float option from *low* to *high*: typer's own range check lets 'nan'
    through to a message about the bounds ('should be less than or equal to 36500')."""

    def parse(text: Any) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{text!r} is not a number") from None
        if math.isnan(value) or value < low or (high is not None and value > high):
            wanted = f"{low:g} or more" if high is None else f"from {low:g} to {high:g}"
            raise typer.BadParameter(f"a number {wanted}, not {text!r}")
        return value

    return parse


class State:
    workspace: Path | None = None
    # Given as --workspace / -w on the command line (not by MLDECK_WORKSPACE): 'init' and 'demo'
    # then take it as their folder.
    workspace_given: Path | None = None


def _folder(directory: Path | None, default: Path) -> Path:
    """The folder 'init' or 'demo' works in: FOLDER, or --workspace, or *default*; both given
    and different is an error (one of them would be ignored)."""
    given = State.workspace_given
    if directory is not None and given is not None and directory.resolve() != given.resolve():
        raise MldeckError(
            f"two folders given: {directory} and --workspace {given}; give one of them"
        )
    return directory or given or default


def _version(value: bool) -> None:
    if value:
        import mldeck

        print(f"mldeck {mldeck.__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    workspace: WorkspaceOption = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    State.workspace = workspace
    # By name: typer may bring its own copy of Click, and of its ParameterSource.
    from_cli = getattr(ctx.get_parameter_source("workspace"), "name", "") == "COMMANDLINE"
    State.workspace_given = workspace if from_cli else None
    if ctx.invoked_subcommand is None:
        _open_console(workspace, read_only=False)


# The largest --limit: more rows than any store holds, small enough for SQLite's integers.
MAX_LIMIT = 1_000_000_000


def _open(workspace: Path | None = None) -> tuple[Workspace, Store]:
    from mldeck.workspace import discover, open_workspace_store

    ws = discover(workspace or State.workspace)
    return ws, open_workspace_store(ws)


def _open_console(
    workspace: Path | None, *, read_only: bool, demo_feed_seconds: float | None = None
) -> None:
    ws, store = _open(workspace)
    from mldeck.tui.app import MldeckApp

    read_only = read_only or ws.settings.console.read_only
    if demo_feed_seconds is not None:
        if read_only:
            raise MldeckError(
                "--feed drops new data into the workspace: not in a read-only console"
            )
        from mldeck.demo.feed import check_demo_workspace

        check_demo_workspace(ws)
    MldeckApp(ws, store, read_only=read_only, run_scheduler=True,
              demo_feed_seconds=demo_feed_seconds).run()  # fmt: skip


def _more(shown: int, total: int) -> None:
    """Say that a list was cut at --limit."""
    if total > shown:
        out.print(f"({shown} of {total} shown; use --limit to see more)")


def _print_json(payload: Any) -> None:
    """Strict JSON (NaN and infinities become null) that jq and browsers accept."""
    text = json.dumps(_finite(payload), indent=2, default=str, ensure_ascii=False, allow_nan=False)
    print(fmt.whole_text(text))  # a stored name's undecodable byte: U+FFFD, not a crash


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@app.command()
def init(
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="FOLDER",
            help="Folder to make a workspace of (created if missing; default: --workspace, "
            "else the current folder).",
            show_default=False,
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Fill it with the demo data, config and a first tracked run."),
    ] = False,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Project name (default: the folder's name).")
    ] = None,
) -> None:
    """Create a workspace: mldeck.toml, .mldeck/ (store, artifacts) and data/incoming/."""
    directory = _folder(directory, Path("."))
    if demo:
        from mldeck.demo.workspace import create_demo_workspace

        ws = create_demo_workspace(directory, name=name, echo=_step)
    else:
        from mldeck.workspace import create_workspace_store

        ws, store = create_workspace_store(directory, name=name)
        store.close()
    out.print(f"Created workspace '{ws.name}' in {ws.root}")
    out.print(f"Open the console with: mldeck --workspace {_shell_quote(ws.root)}")


def _step(message: str) -> None:
    out.print(f"  {message}")


def _shell_quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


@app.command()
def tui(
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, change nothing.")
    ] = False,
) -> None:
    """Open the console (the default when no command is given)."""
    _open_console(None, read_only=read_only)


@app.command("demo")
def demo_command(
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="FOLDER",
            help="Where the demo workspace lives (created if missing; default: --workspace, "
            "else ./mldeck-demo).",
            show_default=False,
        ),
    ] = None,
    feed: Annotated[
        float | None,
        typer.Option(
            "--feed",
            parser=number_between(2),
            metavar="SECONDS",
            help="Fast-forward demo time: drop a new week of data into data/incoming/ every "
            "SECONDS (2 or more) while the console is open (normal, covariate shift, normal, "
            "concept drift, corrupted, prior shift, then again).",
        ),
    ] = None,
) -> None:
    """Open the console on the demo workspace, creating it first if it does not exist."""
    from mldeck.config import CONFIG_FILE

    directory = _folder(directory, Path("mldeck-demo"))
    if not (directory / CONFIG_FILE).exists():
        from mldeck.demo.workspace import create_demo_workspace, serve_first_model

        out.print(f"Creating the demo workspace in {directory} ...")
        workspace = create_demo_workspace(directory, echo=_step)
        serve_first_model(workspace, echo=_step)
    _open_console(directory, read_only=False, demo_feed_seconds=feed)


@runs_app.command("list")
def runs_list(
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only runs with this status.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(metavar="KIND", help="Only runs of this kind.")
    ] = None,
    trigger: Annotated[
        str | None, typer.Option(metavar="TRIGGER", help="Only runs with this trigger.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="TEXT", help="Only runs whose name contains this."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(min=1, max=MAX_LIMIT, metavar="N", help="At most this many (newest first)."),
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    from mldeck.store.queries import RunFilter, list_runs

    flt = RunFilter(text=name or "", status=status, kind=kind, trigger=trigger)
    _, store = _open()
    rows, total = list_runs(store, flt, limit=limit)
    if as_json:
        _print_json({"total": total, "runs": [row.as_dict() for row in rows]})
        return
    if not rows:
        out.print("No runs match." if total == 0 and flt.describe() else "No runs yet.")
        return
    table = _table(*("ID", "NAME", "KIND", "TRIGGER", "STATUS", "STARTED", "DURATION"))
    for row in rows:
        status_text = row.status + (
            f" {fmt.progress(row.progress, row.status)}" if row.status == "running" else ""
        )
        table.add_row(
            str(row.id),
            fmt.shown(row.label),
            fmt.shown(row.kind),
            fmt.shown(row.trigger),
            status_text,
            fmt.when(row.started_at or row.created_at),
            fmt.duration(row.duration),
        )
    out.print(table)
    _more(len(rows), total)


@runs_app.command("show")
def runs_show(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="Run id, or name (the newest run of that name; a number is an id first).",
        ),
    ],
    logs: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_LIMIT,
            metavar="N",
            help="How many of the last log lines to show (default: 20; with --json, all).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run: status, params, metrics, artifacts, inputs, logs and error."""
    from mldeck.store.queries import RunRow, resolve_run, run_detail

    _, store = _open()
    if logs is None:
        logs = MAX_LIMIT if as_json else 20
    detail = run_detail(store, resolve_run(store, run), log_limit=logs)
    if as_json:
        _print_json(detail.as_dict())
        return
    info = detail.as_dict()
    _heading(f"Run {info['id']}", f"  {fmt.shown(info['name'])}", gap=False)
    for label, value in (
        ("kind", info["kind"]),
        ("trigger", info["trigger"]),
        ("status", info["status"]),
        ("started", fmt.when(detail.run.started_at)),
        ("ended", fmt.when(detail.run.ended_at)),
        ("duration", fmt.duration(RunRow.of(detail.run).duration)),
        ("user", f"{info['user']}@{info['host']}" if info["host"] else info["user"]),
    ):
        out.print(f"  {label:<9}{fmt.shown(str(value))}")
    if detail.parent is not None:
        out.print(f"  {'step of':<9}run {detail.parent[0]}  {fmt.shown(detail.parent[1])}")
    for i, (child, name) in enumerate(detail.children):
        out.print(f"  {'steps' if i == 0 else '':<9}run {child}  {fmt.shown(name)}")
    code = detail.run.code_version
    if code.get("git_commit"):
        dirty = " (dirty)" if code.get("git_dirty") else ""
        out.print(f"  {'code':<9}{fmt.shown(str(code['git_commit'])[:12])}{dirty}")
    _section("Params", {k: json.dumps(v, ensure_ascii=False) for k, v in detail.run.params.items()})
    _section("Tags", {k: json.dumps(v, ensure_ascii=False) for k, v in detail.run.tags.items()})
    if detail.metrics:
        _heading("Metrics")
        table = _table(*("KEY", "LAST", "STEP", "MIN", "MAX", "POINTS"))
        for metric in detail.metrics:
            table.add_row(
                fmt.shown(metric.key),
                fmt.number(metric.last),
                str(metric.last_step),
                fmt.number(metric.minimum),
                fmt.number(metric.maximum),
                str(metric.count),
            )
        out.print(table)
    if detail.inputs:
        _section(
            "Inputs", {f"{d} v{v}": f"{sha[:12]} ({role})" for d, v, sha, role in detail.inputs}
        )
    if detail.artifacts:
        _section(
            "Artifacts",
            [(a.name, f"{a.path} ({fmt.size(a.size_bytes)})") for a in detail.artifacts],
        )
    if detail.logs:
        shown = len(detail.logs)
        note = f" (last {shown} of {detail.log_count})" if detail.log_count > shown else ""
        _heading("Logs", note)
        for line in detail.logs:
            # A message of several lines (a traceback) goes on under its own, indented past
            # the time and level, so no line of it reads as another log line.
            head = f"  {fmt.when(line.ts)} {fmt.shown(line.level):<7} "
            out.print(head + _shown_lines(line.message, " " * len(head)), markup=False)
    if detail.run.error:
        _heading("Error")
        out.print(_shown_lines(detail.run.error.rstrip()), markup=False)


def _shown_lines(text: str, indent: str = "") -> str:
    """Untrusted text of several lines (a log message, a traceback) as printable lines: each
    through ``fmt.shown`` (no escape sequence, no carriage return reaches the terminal), the
    lines after the first indented by *indent*."""
    return f"\n{indent}".join(fmt.shown(part) for part in text.splitlines() or [""])


@runs_app.command("compare")
def runs_compare(
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN", help="2 to 8 runs: ids, or names (the newest run of a name)."
        ),
    ],
    diff: Annotated[
        bool, typer.Option("--diff", help="Only the fields whose values differ.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Compare runs side by side: status and time, each metric's last value, params, inputs,
    tags, code version and environment. '*' marks the fields that differ; '-' is a field a run
    does not have."""
    from mldeck.store.queries import compare_runs, resolve_run

    _, store = _open()
    comparison = compare_runs(store, [resolve_run(store, ref) for ref in runs])
    if as_json:
        _print_json(comparison.as_dict())
        return
    fields = [f for f in comparison.fields if f.differs or not diff]
    table = _table("", "FIELD", *(f"#{row.id} {fmt.shown(row.name)}" for row in comparison.runs))
    for field in fields:
        table.add_row("*" if field.differs else "", fmt.shown(field.name),
                      *(fmt.shown(text) for text in field.texts()))  # fmt: skip
    out.print(table, markup=False)
    differing = sum(f.differs for f in comparison.fields)
    out.print(f"{differing} of {len(comparison.fields)} fields differ"
              + ("" if diff else " (--diff shows only those)"), markup=False)  # fmt: skip


# -- run: pipeline steps on demand ---------------------------------------------------------------

run_app = typer.Typer(help="Run a pipeline step now: train.", no_args_is_help=True)
app.add_typer(run_app, name="run")


@run_app.command("train")
def run_train(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Train on this file instead of the dataset's accepted versions (judged by [data]'s expectations first).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train [model], evaluate it beside the champion on the same holdout, check [gates] and
    register it as a candidate version.

    Exit status: 0 registered and every gate passed, 3 registered but a gate failed, 2 the run
    failed (nothing registered).
    """
    from mldeck.ml.train import train

    ws, store = _open()
    say = None if as_json else (lambda message: out.print(f"  {message}", markup=False))
    result = train(ws, store, data_file=data, progress=say)
    if as_json:
        _print_json(result.as_dict())
    else:
        _print_training(result)
    if not result.gates_passed:
        raise typer.Exit(3)


def _print_training(result: Any) -> None:
    from mldeck.ml.settings import METRICS

    metrics = result.metrics
    out.print(
        f"run {result.run_id}: registered {result.model}:{result.version} (candidate)",
        markup=False,
    )
    out.print(f"  model file {result.artifact_path}", markup=False)
    champion = result.champion or {}
    theirs = (champion.get("metrics") or {}) if champion else {}
    columns = ["METRIC", "CANDIDATE"]
    if champion:
        columns.append(f"CHAMPION v{champion['version']}")
    rows, split = metrics.get("holdout_rows"), metrics.get("split")
    _heading("Holdout", f" ({rows} rows, {split} split)")
    table = _table(*columns)
    names = [n for n in (*METRICS["classification"], *METRICS["regression"]) if n in metrics]
    names += [n for n in ("fairness_gap", "latency_ms_per_1k") if metrics.get(n) is not None]
    for name in names:
        row = [name, fmt.number(metrics.get(name))]
        if champion:
            row.append(fmt.number(theirs.get(name)) if theirs else "-")
        table.add_row(*row)
    out.print(table, markup=False)
    if champion.get("error"):
        out.print(f"  champion not evaluated: {champion['error']}", markup=False)
    if result.gates:
        _heading("Gates")
        table = _table("RESULT", "GATE", "DETAIL", wrap="DETAIL")
        for gate in result.gates:
            table.add_row("pass" if gate.passed else "FAIL", gate.gate, gate.detail)
        out.print(table, markup=False)


@runs_app.command("reproduce")
def runs_reproduce(
    run: Annotated[
        str, typer.Argument(metavar="RUN", help="A training run: its id, or its name (the newest).")
    ],
    tolerance: Annotated[
        float,
        typer.Option(
            parser=number_between(0),
            metavar="AMOUNT",
            help="Largest difference that still counts as a match.",
        ),
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Retrain a training run from its record (the same data versions by sha256, the same
    settings and seed) in a new run, and compare the holdout metrics.

    Exit status: 0 every metric matches, 1 some differ, 2 the retraining failed.
    """
    from mldeck.ml.train import reproduce

    ws, store = _open()
    say = None if as_json else (lambda message: out.print(f"  {message}", markup=False))
    result = reproduce(ws, store, run, tolerance=tolerance, progress=say)
    if as_json:
        _print_json(result.as_dict())
    else:
        out.print(f"run {result.new_run_id} retrained run {result.run_id}", markup=False)
        for note in result.notes:
            out.print(f"  note: {note}", markup=False)
        table = _table("METRIC", "OLD", "NEW", "MATCH")
        for match in result.matches:
            table.add_row(
                match.name,
                "NaN" if match.old is None else repr(match.old),
                "NaN" if match.new is None else repr(match.new),
                "yes" if match.match else "NO",
            )
        out.print(table, markup=False)
        differ = sum(not m.match for m in result.matches)
        out.print(
            f"all {len(result.matches)} metrics match"
            if not differ
            else f"{differ} of {len(result.matches)} metrics differ",
            markup=False,
        )
    if not result.all_match:
        raise typer.Exit(1)


@data_app.command("ingest")
def data_ingest(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="CSV, Parquet or NDJSON files.")
    ],
    dataset: Annotated[
        str | None, typer.Option(metavar="NAME", help="Dataset name (default: [data] dataset).")
    ] = None,
    reference: Annotated[
        bool,
        typer.Option("--reference", help="Make this file the dataset's reference (baseline)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest files as dataset versions: store, validate, profile, quarantine offenders.

    Exit status: 0 all accepted, 3 some accepted with warnings, 4 some rejected, 2 a file could
    not be ingested at all (the others still are; 2 wins over 3 and 4). A file already stored
    counts as its version's status (a rejected one again exits 4).
    """
    from mldeck.data.ingest import EXIT, ingest_file
    from mldeck.data.readers import open_elsewhere

    ws, store = _open()
    outcomes, errors = [], []
    noted: set[str] = set()  # the configured reference's notes, said once for all the files
    for path in files:
        try:
            if open_elsewhere(path):  # a copy taken now would be cut where the writer is
                raise MldeckError(
                    f"{fmt.shown(str(path))} is open in another process (still being written?): "
                    "not ingested; run again once it is closed"
                )
            outcome = ingest_file(ws, store, path, dataset=dataset, as_reference=reference)
        except MldeckError as exc:  # one bad path never stops the others
            errors.append({"source": fmt.shown(str(path)), "error": str(exc)})
            print(f"mldeck: error: {exc}", file=sys.stderr)
            continue
        outcomes.append(outcome)
        if not as_json:
            for note in outcome.notes:
                if note not in noted:
                    noted.add(note)
                    out.print(note, markup=False)
            _print_outcome(outcome)
    if as_json:
        _print_json([*(o.as_dict() for o in outcomes), *errors])
    worst = max((EXIT.get(o.status, 0) for o in outcomes), default=0)
    if errors:  # a file not ingested at all is what a script must not miss
        raise typer.Exit(MldeckError.exit_code)
    if worst:
        raise typer.Exit(worst)


def _print_outcome(outcome: Any) -> None:
    label = f"{outcome.dataset}:v{outcome.version}"
    if outcome.duplicate:
        out.print(f"{outcome.source}: already ingested as {label} ({outcome.status})", markup=False)
        for reason in outcome.reasons:
            out.print(f"  - {reason}", markup=False)
        return
    out.print(f"{outcome.source}: {label} {outcome.status.upper()}", markup=False)
    for reason in outcome.reasons:
        out.print(f"  - {reason}", markup=False)
    if outcome.quarantine_path:
        out.print(f"  quarantine: {outcome.quarantine_path}", markup=False)


@data_app.command("revalidate")
def data_revalidate(
    version: Annotated[
        str, typer.Argument(metavar="VERSION", help="Version id, dataset:vN, or a sha256 prefix.")
    ],
    separator: Annotated[
        str | None,
        typer.Option(
            "--separator",
            metavar="CHAR",
            help="Read this CSV with this separator (default: [data] csv_separator); it is "
            "recorded with the version and used whenever it is read again.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a stored version again under the current mldeck.toml.

    The same content is never ingested twice, so after fixing an expectation a rejection names,
    or with --separator for a file written with another separator, this gives the batch a
    second look. The previous report is kept (an artifact of the new run) and the change is in
    the audit trail. Exit status as for ingest: 0 accepted, 3 accepted with warnings, 4 rejected.
    """
    from mldeck.data.ingest import EXIT, revalidate
    from mldeck.store.queries import resolve_version

    ws, store = _open()
    result = revalidate(ws, store, resolve_version(store, version), separator=separator)
    if as_json:
        _print_json(result.as_dict())
    else:
        out.print(f"{result.label}: {result.previous} -> {result.status.upper()} "
                  f"(run {result.run_id})", markup=False)  # fmt: skip
        for reason in result.reasons:
            out.print(f"  - {reason}", markup=False)
        if result.quarantine_path:
            out.print(f"  quarantine: {result.quarantine_path}", markup=False)
        if result.status != "rejected" and result.previous == "rejected":
            if _pipeline_takes(ws, store, result.version_id):
                out.print("  next: the scheduler scores it with the champion and checks its "
                          "drift, now", markup=False)  # fmt: skip
            else:
                out.print(f"  next: 'mldeck drift check {result.label}' scores it with the "
                          "champion and checks its drift", markup=False)  # fmt: skip
    if EXIT.get(result.status, 0):
        raise typer.Exit(EXIT[result.status])


def _pipeline_takes(ws: Workspace, store: Store, version_id: int) -> bool:
    """Whether a scheduler acting now takes a batch revalidated into accepted through its
    pipeline: one claimed it on arrival (a new-data batch) and the pipeline is on."""
    from sqlalchemy import select

    from mldeck.jobs.lease import holder
    from mldeck.jobs.scheduler import PIPELINE_START
    from mldeck.store.models import AuditEvent

    acting = holder(store, ws.settings.jobs.lease_seconds)
    if not ws.settings.jobs.pipeline or acting is None or not acting.alive:
        return False
    with store.read() as session:
        claimed = session.execute(select(AuditEvent.id).where(
            AuditEvent.action == PIPELINE_START, AuditEvent.entity_type == "dataset_version",
            AuditEvent.entity_id == str(version_id)).limit(1)).first()  # fmt: skip
    return claimed is not None


@data_app.command("list")
def data_list(
    dataset: Annotated[str | None, typer.Option(metavar="NAME", help="Only this dataset.")] = None,
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help="Only this status: accepted, warned or rejected."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(min=1, max=MAX_LIMIT, metavar="N", help="At most this many (newest first)."),
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List dataset versions, newest first."""
    from mldeck.store.queries import list_versions

    if status is not None and status not in ("accepted", "warned", "rejected"):
        raise MldeckError(f"unknown status {status!r}: accepted, warned or rejected")
    _, store = _open()
    rows, total = list_versions(store, dataset=dataset, status=status, limit=limit)
    if dataset is not None and not rows:  # a typo, not an empty dataset (as models list says)
        from sqlmodel import select

        from mldeck.store.models import Dataset

        with store.read() as session:
            names = sorted(session.execute(select(Dataset.name)).scalars())
        if dataset not in names:
            raise NotFound(f"no dataset {dataset!r} (datasets: {', '.join(names) or 'none yet'})")
    if not rows and (dataset or status) and list_versions(store, limit=1)[1]:
        empty = "No dataset versions match."
    else:
        empty = "No dataset versions yet: see 'mldeck data ingest'."
    _print_versions(rows, total, as_json, empty=empty)


def _print_versions(rows: list, total: int, as_json: bool, empty: str) -> None:
    if as_json:
        _print_json({"total": total, "versions": [row.as_dict() for row in rows]})
        return
    if not rows:
        out.print(empty)
        return
    table = _table(*("ID", "VERSION", "STATUS", "ROWS", "SIZE", "ARRIVED", "SOURCE"))
    for row in rows:
        table.add_row(
            str(row.id),
            row.label + (" (reference)" if row.is_reference else ""),
            row.status,
            "-" if row.n_rows is None else str(row.n_rows),
            fmt.size(row.size_bytes),
            fmt.when(row.arrived_at),
            Path(row.source_path).name,
        )
    out.print(table)
    _more(len(rows), total)


@data_app.command("show")
def data_show(
    version: Annotated[
        str, typer.Argument(metavar="VERSION", help="Version id, dataset:vN, or a sha256 prefix.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show a dataset version: its validation report, schema and profile summary."""
    from mldeck.store.queries import resolve_version, version_detail

    _, store = _open()
    detail = version_detail(store, resolve_version(store, version))
    if as_json:
        _print_json(detail.as_dict())
        return
    row = detail.row
    _heading(row.label, f"  {row.status.upper()}" + ("  (reference)" if row.is_reference else ""),
             gap=False)  # fmt: skip
    for label, value in (
        ("source", row.source_path),
        ("stored", detail.stored_path),
        ("sha256", row.sha256),
        ("arrived", fmt.when(row.arrived_at)),
        (
            "shape",
            f"{row.n_rows} rows x {row.n_cols} columns" if row.n_rows is not None else "unreadable",
        ),
        ("size", fmt.size(row.size_bytes)),
        ("quarantine", row.quarantine_path or "-"),
    ):
        out.print(f"  {label:<11}{value}", markup=False)
    checks = detail.report.get("checks", [])
    if checks:
        _heading("Checks")
        table = _table(*("RESULT", "CHECK", "ROWS", "DETAIL"), wrap="DETAIL")
        order = {"fail": 0, "warn": 1, "pass": 2}
        for check in sorted(checks, key=lambda c: order.get(c["status"], 3)):
            name = f"{check['check']}({check['column']})" if check["column"] else check["check"]
            table.add_row(check["status"], name, str(check["failed_rows"] or ""), check["detail"])
        out.print(table)
    columns = detail.profile.get("columns", {})
    if columns:
        _heading("Profile")
        table = _table(*("COLUMN", "KIND", "NULLS", "MIN", "MEAN", "MAX", "TOP"))
        for name, col in columns.items():
            top = ""
            if col.get("frequencies"):
                top = ", ".join(f"{k} {v}" for k, v in list(col["frequencies"].items())[:3])
            table.add_row(
                name,
                col["kind"],
                str(col.get("nulls", "")),
                fmt.number(col["min"])
                if isinstance(col.get("min"), int | float)
                else str(col.get("min") or ""),
                fmt.number(col["mean"]) if isinstance(col.get("mean"), int | float) else "",
                fmt.number(col["max"])
                if isinstance(col.get("max"), int | float)
                else str(col.get("max") or ""),
                top,
            )
        out.print(table)


@data_app.command("quarantine")
def data_quarantine(
    limit: Annotated[
        int,
        typer.Option(min=1, max=MAX_LIMIT, metavar="N", help="At most this many (newest first)."),
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List what is in quarantine: rejected batches and the offending rows of accepted ones, and
    the files the watcher could not ingest at all (they have no version; the reason is beside
    each, in <name>.error.txt)."""
    from mldeck.data.ingest import rows_file_beside
    from mldeck.data.watcher import not_ingested
    from mldeck.store.queries import list_versions

    ws, store = _open()
    rows, total = list_versions(store, quarantined=True, limit=limit)
    files = not_ingested(ws)

    def rows_path(row: Any) -> str:
        if row.quarantine_path.endswith(".rows.parquet"):
            return row.quarantine_path
        beside = rows_file_beside(row.quarantine_path, row.source_path)
        return beside if beside and (ws.root / beside).is_file() else ""

    if as_json:
        versions = [{**row.as_dict(), "rows_path": rows_path(row)} for row in rows]
        _print_json({"total": total, "versions": versions,
                     "not_ingested": [f.as_dict() for f in files[:limit]]})  # fmt: skip
        return
    if not rows and not files:
        out.print("Quarantine is empty.")
        return
    if rows:
        table = _table(*("VERSION", "STATUS", "SOURCE", "QUARANTINED AS"), wrap="QUARANTINED AS")
        for row in rows:
            where = [row.quarantine_path]
            if (offending := rows_path(row)) and offending != row.quarantine_path:
                where.append(f"rows: {offending}")
            table.add_row(row.label, row.status, Path(row.source_path).name, "\n".join(where))
        out.print(table)
        _more(len(rows), total)
    if files:
        _heading("Not ingested", gap=bool(rows))
        table = _table(*("FILE", "FAILED AT", "REASON"), wrap="REASON")
        for found in files[:limit]:
            table.add_row(found.path, fmt.when_text(found.failed_at), found.reason)
        out.print(table)
        _more(min(len(files), limit), len(files))
    out.print(f"(files are in {ws.quarantine_dir}; 'mldeck data show VERSION' gives the reasons)")


@data_app.command("infer")
def data_infer(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A reference file (CSV, Parquet or NDJSON).")
    ],
    dataset: Annotated[
        str | None, typer.Option(metavar="NAME", help="Dataset name to write.")
    ] = None,
    write: Annotated[
        bool,
        typer.Option("--write", help="Append to mldeck.toml (only if it has no [data] section)."),
    ] = False,
    separator: Annotated[
        str | None,
        typer.Option(
            "--separator",
            metavar="CHAR",
            help="Read this CSV with this separator (default: [data] csv_separator); written "
            "as csv_separator when it is not a comma. A tab: --separator $'\\t'.",
        ),
    ] = None,
) -> None:
    """Print (or write) a starting set of expectations inferred from a reference file."""
    from mldeck.data.infer import expectations_toml
    from mldeck.data.readers import ReadError, check_separator, open_source
    from mldeck.data.validate import reference_profile

    ws, _ = _open()
    if separator is not None:
        check_separator(separator)
    if not file.exists():
        raise MldeckError(f"cannot infer from {file}: no such file")
    from mldeck.data.readers import unsupported_type

    if (why := unsupported_type(file)) is not None:  # as ingest says it ("no rows" before)
        raise MldeckError(f"cannot infer from {file}: {why}")
    try:
        source = open_source(file, separator=separator or ws.settings.data.csv_separator)
    except ReadError as exc:
        raise MldeckError(f"cannot infer from {file}: {exc}") from None
    from mldeck.data.expectations import DataSettings
    from mldeck.data.infer import numbers_read_as_text

    try:
        source = numbers_read_as_text(source)
    except Exception as exc:  # polars raises many types here; all mean "unreadable"
        raise MldeckError(f"cannot infer from {file}: {source.why(exc)}") from None
    profiled = reference_profile(source, DataSettings(table={"unique_ids": False}))
    if profiled.read_error:
        raise MldeckError(f"cannot infer from {file}: {profiled.read_error}")
    if not profiled.n_rows:  # every column would be "string", never null: nothing to learn
        raise MldeckError(f"cannot infer from {file}: it has a header but no rows")
    try:
        relative = str(file.resolve().relative_to(ws.root))
    except ValueError:
        relative = str(file.resolve())
    text = expectations_toml(
        profiled, dataset=dataset or ws.settings.data.dataset, reference=relative,
        separator=separator,
    )  # fmt: skip
    if not write:
        print(text, end="")
        return
    from mldeck.data.infer import append_to_config

    append_to_config(ws.config_path, text)
    out.print(
        f"Wrote the expectations for {fmt.plural(len(profiled.profile['columns']), 'column')} to {ws.config_path}"
    )


@data_app.command("watch")
def data_watch() -> None:
    """Watch data/incoming/ and ingest each file once it is complete, until Ctrl-C.

    A file is taken once it has not changed for [data] settle_seconds; hidden and temporary
    names (.tmp, .part, .partial, .crdownload, ~ ...) are skipped until renamed, and subfolders
    are ignored. Files already waiting are taken first. Each content is ingested once; a file
    that cannot be read is rejected and copied to data/quarantine/ with the reason. Prints one
    line per file. Only one watcher runs per workspace.

    Ctrl-C, SIGTERM or SIGHUP finish the file being ingested, then stop (exit status 128 plus
    the signal's number); a second Ctrl-C stops at once, the file left in data/incoming/.
    """
    import os
    import signal

    from mldeck import provenance
    from mldeck.data.watcher import IncomingWatcher
    from mldeck.store.models import RunStatus

    ws, store = _open()
    watcher = IncomingWatcher(ws, store, on_event=lambda line: out.print(line, markup=False))
    if not watcher.start():
        raise MldeckError(
            f"another watcher is already running on this workspace ({watcher.lock_path} is held)"
        )
    out.print("Ctrl-C stops the watcher.", markup=False)
    try:
        watcher.run_forever()
    except KeyboardInterrupt:  # a second Ctrl-C: the file being ingested stays in incoming/
        from mldeck.jobs.orphans import end_runs_of_process

        pid = os.getpid()
        end_runs_of_process(store, pid, provenance.process_start_time(pid),
                            status=RunStatus.CANCELLED, reason="interrupted: the watcher was "
                            "stopped at once (a second Ctrl-C); the file stays in incoming/")  # fmt: skip
        raise
    if watcher.stopped_by is not None:  # stopped cleanly, by a signal: its exit status says so
        name = signal.Signals(watcher.stopped_by).name
        if name != "SIGINT":  # a Ctrl-C's exit status is said by main(): it was said twice
            print(f"mldeck: stopped ({name})", file=sys.stderr)
        raise typer.Exit(128 + watcher.stopped_by)


# Columns that must stay readable when a narrow terminal squeezes a table.
MIN_WIDTHS = {"STATUS": 9, "RESULT": 6, "ARRIVED": 19, "STARTED": 19, "VERSION": 10}


# -- models ------------------------------------------------------------------------------------

models_app = typer.Typer(
    help="The model registry: versions, aliases, approvals, promotion, rollback, archive.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

ModelRefArgument = Annotated[
    str,
    typer.Argument(
        metavar="REF",
        help="A model version: NAME:VERSION (churn:3) or NAME@ALIAS (churn@champion).",
    ),
]


@models_app.command("list")
def models_list(
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="Only this model.")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LIMIT, metavar="N", help="At most this many versions.")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List model versions with their status, aliases, gates, approval and metrics."""
    from mldeck.store.queries import list_model_versions

    ws, store = _open()
    rows, total = list_model_versions(store, model=model, limit=limit)
    if model is not None and not rows:
        from mldeck.ml.registry import model_names

        names = model_names(store)
        if model not in names:  # a typo, not an empty model
            known = ", ".join(names) or "none yet"
            raise NotFound(f"no registered model {model!r} (registered: {known})")
    if as_json:
        _print_json({"total": total, "versions": [row.as_dict() for row in rows]})
        return
    if not rows:
        out.print("No model versions yet." if not model else f"No versions of model {model!r}.")
        return
    table = _table(*("VERSION", "STATUS", "ALIASES", "GATES", "APPROVAL", "METRICS", "CREATED"))
    for row in rows:
        if row.gates_failed:
            gates = f"{row.gates_failed} FAILED"
        else:
            gates = f"{row.gates_passed} passed" if row.gates_passed else "-"
        shown = _overall_metrics(row.metrics, ws.settings.model.primary)
        table.add_row(
            row.label,
            row.status,
            ", ".join(row.aliases) or "-",
            gates,
            f"{row.decision} by {row.decided_by}" if row.decision else "-",
            shown or "-",
            fmt.when(row.created_at),
        )
    out.print(table, markup=False)
    _more(len(rows), total)


def _overall_metrics(metrics: dict[str, Any], primary: str, count: int = 3) -> str:
    """A version's overall holdout metrics for a list: the primary metric first (what the gates
    and the console's list go by), then the other metrics, then other overall numbers. Nested
    figures (per slice, cross-validation, the champion's) are not overall metrics."""
    from mldeck.ml.settings import ALL_METRICS

    overall = {k: float(v) for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    order = sorted(overall, key=lambda k: (k != primary, k not in ALL_METRICS))[:count]
    return ", ".join(f"{fmt.shown(k)} {fmt.number(overall[k])}" for k in order)


@models_app.command("show")
def models_show(ref: ModelRefArgument, as_json: JsonOption = False) -> None:
    """Show a version: metrics beside the champion's, gates, approvals, lineage and history."""
    from mldeck.ml.registry import resolve, schema_digest
    from mldeck.store.queries import model_version_detail

    _, store = _open()
    detail = model_version_detail(store, resolve(store, ref).id)
    if as_json:
        _print_json(detail.as_dict())
        return
    row = detail.row
    aliases = f"  ({', '.join(row.aliases)})" if row.aliases else ""
    _heading(row.label, f"  {row.status}{aliases}", gap=False)
    code = detail.code_version
    commit = code.get("git_commit")
    items = {
        "created": fmt.when(row.created_at),
        "code": (commit[:12] + (" (dirty)" if code.get("git_dirty") else "")) if commit else "-",
        "schema": f"{schema_digest(detail.schema)} ({_schema_size(detail.schema)})",
        "file": (
            f"{detail.artifact.path} ({fmt.size(detail.artifact.size_bytes)})"
            if detail.artifact
            else "-"
        ),
    }
    for key, value in items.items():
        out.print(f"  {key:<9}{value}", markup=False)
    if detail.comparison:
        champion = detail.champion.label if detail.champion else None
        former = detail.evaluated_against.label if detail.evaluated_against else None
        _heading("Metrics")
        columns = (
            ("METRIC", "THIS", f"CHAMPION {champion}", "DELTA") if champion
            else ("METRIC", "THIS", f"JUDGED AGAINST {former}", "DELTA") if former
            else ("METRIC", "THIS")
        )  # fmt: skip
        table = _table(*columns)
        for item in detail.comparison:
            cells = [item.key, _number(item.value)]
            if champion or former:
                delta = item.delta
                cells += [_number(item.champion), "-" if delta is None else f"{delta:+.4g}"]
            table.add_row(*cells)
        out.print(table, markup=False)
        if champion and not detail.champion_same_holdout:
            out.print(f"  {champion}'s figures are from its own holdout, not this version's: "
                      "no delta between figures on different data", markup=False)  # fmt: skip
    if detail.gates:
        _heading("Gates")
        table = _table(*("RESULT", "GATE", "METRIC", "VALUE", "THRESHOLD", "DETAIL"), wrap="DETAIL")
        for gate in detail.gates:
            table.add_row(
                "pass" if gate.passed else "FAIL",
                gate.gate,
                gate.metric or "-",
                _number(gate.value),
                _number(gate.threshold),
                gate.detail,
            )
        out.print(table, markup=False)
    if detail.approvals:
        _section(
            "Approvals",
            [
                (
                    fmt.when(a.created_at),
                    f"{a.decision} by {a.user}"
                    + (" (automatic)" if a.automatic else "")
                    + (f": {a.reason}" if a.reason else ""),
                )
                for a in detail.approvals
            ],
        )
    _heading("Lineage")
    for dataset, number, _, sha, role in detail.inputs:
        out.print(f"  {dataset}:v{number} ({sha[:12]}, {role})", markup=False)
    if detail.run is not None:
        out.print(f"  -> run {detail.run.id} {detail.run.name} ({detail.run.status})", markup=False)
    out.print(f"  -> {row.label}", markup=False)
    if detail.history or detail.replaced_by:
        _heading("History")
        for event, lost in detail.timeline():
            reason = event.details.get("reason")
            extra = " FORCED" if event.details.get("forced") else ""
            alias = event.details.get("alias")  # a promotion to challenger is not to champion
            action = f"{event.action} ({alias})" if alias else event.action
            if lost:  # another version's promotion or rollback took the alias from this one
                taker = f"{row.model}:{event.details.get('version')}"
                action = f"lost {alias or 'champion'} to {taker} ({event.action.split('.')[-1]})"
            out.print(  # a reason or a name is shown, never sent to the terminal as it is
                f"  {fmt.when(event.ts)} {fmt.shown(action)} by {fmt.shown(event.actor)}{extra}"
                + (f": {fmt.shown(str(reason))}" if reason else ""),
                markup=False,
            )


def _number(value: float | None) -> str:
    return "-" if value is None else fmt.number(value)


def _schema_size(schema: dict[str, Any]) -> str:
    for key, word in (("features", "feature"), ("columns", "column")):
        value = schema.get(key)
        if isinstance(value, dict | list):
            return fmt.plural(len(value), word)
    return "no features recorded"


ReasonOption = Annotated[
    str, typer.Option("--reason", "-m", metavar="TEXT", help="Why (kept in the audit trail).")
]


@models_app.command("approve")
def models_approve(
    ref: ModelRefArgument,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", "-m", metavar="TEXT", help="Why (required; kept in the audit trail)."
        ),
    ],
    reject: Annotated[
        bool, typer.Option("--reject", help="Record a rejection instead of an approval.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Record your decision (you, now, why) to approve a version for promotion, or to reject it.
    A version waiting for approval after an automatic retrain is then made the champion by the
    scheduler ([jobs] promote_on_approval)."""
    from mldeck.jobs.policies import history_actions, promoted_once_approved
    from mldeck.ml.registry import approve
    from mldeck.store.queries import model_version_detail

    ws, store = _open()
    change = approve(store, ref, reason=reason, reject=reject)
    then = None
    if not reject and not change.failed_gates:  # failed gates: not promoted (said above)
        detail = model_version_detail(store, change.model_version_id)
        actions = history_actions(detail.history)
        if promoted_once_approved(ws.settings.jobs.promote_on_approval, actions,
                                  detail.row.aliases):  # fmt: skip
            from mldeck.jobs.lease import holder

            acting = holder(store, ws.settings.jobs.lease_seconds)
            when = (
                "the scheduler now makes it"
                if acting is not None and acting.alive
                else "no scheduler runs now: the next to start ('mldeck daemon', or the console) "
                "makes it"
            )
            then = (f"it waited for approval after an automatic retrain: {when} the champion of "
                    f"{change.model} ([jobs] promote_on_approval)")  # fmt: skip
    _print_change(change, as_json, [then] if then else [], then=then)


def _print_change(change: Any, as_json: bool, lines: list[str], **extra: Any) -> None:
    """A registry change: its line and *lines* after it, or all of it as JSON with *extra*."""
    if as_json:
        import dataclasses

        _print_json({"label": change.label, **dataclasses.asdict(change),
                     "message": change.describe(), **extra})  # fmt: skip
        return
    for line in [change.describe(), *lines]:
        out.print(line, markup=False)


@models_app.command("promote")
def models_promote(
    ref: ModelRefArgument,
    alias: Annotated[
        str,
        typer.Option(
            "--alias", metavar="ALIAS", help="champion (serves) or challenger (scored in shadow)."
        ),
    ] = "champion",
    force: Annotated[
        bool,
        typer.Option("--force", help="Promote despite failed gates (recorded as forced)."),
    ] = False,
    reason: ReasonOption = "",
    as_json: JsonOption = False,
) -> None:
    """Point an alias at a version. A champion must pass its gates and be approved (unless
    [gates] auto_approve); --force overrides failed gates, with a --reason."""
    from mldeck.ml.registry import auto_approve_policy, promote

    ws, store = _open()
    change = promote(store, ref, alias=alias, reason=reason, force=force,
                     auto_approve=auto_approve_policy(ws.settings), root=ws.root)  # fmt: skip
    _print_change(change, as_json, [])


@models_app.command("rollback")
def models_rollback(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF",
            help="NAME:VERSION to roll back to, or NAME for the newest earlier version that "
            "served as champion (each rollback steps further back).",
        ),
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", "-m", metavar="TEXT", help="Why (required; kept in the audit trail)."
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Roll back despite failed gates (recorded as forced).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Make an earlier version the champion again, with the schema and code it was trained with."""
    from mldeck.ml.registry import auto_approve_policy, rollback, schema_digest

    ws, store = _open()
    change = rollback(store, ref, reason=reason, force=force,
                      auto_approve=auto_approve_policy(ws.settings), root=ws.root)  # fmt: skip
    commit = change.code_version.get("git_commit")
    code = (
        (commit[:12] + (" (dirty)" if change.code_version.get("git_dirty") else ""))
        if commit
        else "-"
    )
    digest = schema_digest(change.schema)
    serving = (
        f"now serving: {change.label}, schema {digest} ({_schema_size(change.schema)}), code {code}"
    )
    _print_change(change, as_json, [serving], schema_digest=digest)


@models_app.command("archive")
def models_archive(
    ref: ModelRefArgument, reason: ReasonOption = "", as_json: JsonOption = False
) -> None:
    """Retire a version: it can no longer be approved, promoted or rolled back to."""
    from mldeck.ml.registry import archive

    _, store = _open()
    _print_change(archive(store, ref, reason=reason), as_json, [])


# -- backup ------------------------------------------------------------------------------------


@app.command("backup")
def backup(
    destination: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="A new folder for the copy (must not exist).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Copy the workspace to a new folder: the store as of one moment (SQLite's online backup,
    safe while the console or a daemon writes) and every file beside it. The copy is a
    workspace: open it with -w FOLDER; to restore, stop the console and daemon, move the
    workspace away and the copy in its place."""
    from mldeck.backup import backup_workspace

    ws, store = _open()
    said = (lambda _line: None) if as_json else (lambda line: out.print(line, markup=False))
    result = backup_workspace(ws, store, destination, on_step=said)
    if as_json:
        _print_json(result.as_dict())
        return
    out.print(
        f"backed up {ws.root} to {result.destination}: {fmt.plural(result.runs, 'run')}, "
        f"{fmt.plural(result.dataset_versions, 'dataset version')}, "
        f"{fmt.plural(result.model_versions, 'model version')}; "
        f"{fmt.plural(result.files, 'file')}, {fmt.size(result.file_bytes)}",
        markup=False,
    )
    if result.missing:
        out.print(f"not in the workspace already (named by the store, not copied): "
                  f"{', '.join(result.missing[:5])}"
                  + (f" and {len(result.missing) - 5} more" if len(result.missing) > 5 else ""),
                  markup=False)  # fmt: skip
    out.print(f"open it with: mldeck -w {result.destination}", markup=False)


# -- audit -------------------------------------------------------------------------------------


audit_app = typer.Typer(
    help="The audit trail: verify its hash chain, list its events.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            metavar="HASH",
            help="A head printed by an earlier verify and kept elsewhere: also check that the "
            "trail still holds it (catches events deleted from its end).",
        ),
    ] = None,
) -> None:
    """Recompute the hash chain. Exit 0 if intact, 1 naming each event that does not hold."""
    from mldeck.audit import verify
    from mldeck.store.queries import audit_event_by_hash, audit_head

    head = None if head is None else head.strip().lower()
    if head is not None and (len(head) < 12 or not all(c in "0123456789abcdef" for c in head)):
        raise MldeckError("--head takes at least 12 hex digits of a hash 'audit verify' printed")
    _, store = _open()
    latest = audit_head(store)  # read first: the verification below covers it
    result = verify(store)
    problems = list(result.problems)
    if head is not None and audit_event_by_hash(store, head) is None:
        problems.append(
            f"head {head[:12]} is no longer in the trail: events up to it were deleted or rewritten"
        )
    if not problems:
        out.print(f"{fmt.plural(result.events, 'event')}, chain intact", markup=False)
        if latest is not None:
            out.print(f"head: event {latest.id} {latest.hash}", markup=False)
        return
    for problem in problems:
        out.print(problem, markup=False)
    out.print(
        f"{fmt.plural(result.events, 'event')}, chain BROKEN: "
        f"{fmt.plural(len(problems), 'problem')}",
        markup=False,
    )
    raise typer.Exit(1)


@audit_app.command("list")
def audit_list(
    limit: Annotated[
        int,
        typer.Option(min=1, max=MAX_LIMIT, metavar="N", help="At most this many (newest first)."),
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List audit events, newest first."""
    from mldeck.store.queries import list_audit_events

    _, store = _open()
    rows, total = list_audit_events(store, limit=limit)
    if as_json:
        _print_json({"total": total, "events": [row.as_dict() for row in rows]})
        return
    if not rows:
        out.print("No audit events yet.")
        return
    table = _table(*("ID", "TIME", "ACTOR", "ACTION", "ENTITY", "DETAILS"), wrap="DETAILS")
    for row in rows:
        details = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in row.details.items())
        if row.damaged:  # see 'audit verify'
            details = f"DAMAGED: {row.damaged}"
        table.add_row(
            str(row.id),
            fmt.when(row.ts),
            row.actor,
            row.action,
            f"{row.entity_type} {row.entity_id}".strip() or "-",
            details,
        )
    out.print(table, markup=False)
    _more(len(rows), total)


# -- score -------------------------------------------------------------------------------------


@app.command("score")
def score(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|VERSION",
            help="A data file (ingested first), or a dataset version (id, dataset:vN).",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", metavar="NAME", help="Registered model (default: the one with a champion)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a batch with the champion, and the challenger in shadow; predictions are stored as a
    Parquet artifact and each model's scoring is a run with its latency and CPU cost."""
    from mldeck.ml.scoring import score_batch

    ws, store = _open()
    result = score_batch(ws, store, file, model=model)
    if as_json:
        _print_json(result.as_dict())
    else:
        batch = f"{result.dataset}:v{result.dataset_version}"
        for scored in filter(None, (result.champion, result.shadow)):
            role = "shadow " if scored.shadow else ""
            agreement = (
                f", agrees with the champion on {scored.agreement:.1%}"
                if scored.agreement is not None
                else ""
            )
            out.print(
                f"{batch}: {fmt.plural(scored.rows, 'row')} scored by {role}{scored.label} "
                f"({scored.alias}) in {scored.latency_ms:.1f} ms, "
                f"{scored.cpu_seconds_per_1k:.4f} CPU s per 1k{agreement} (run {scored.run_id})",
                markup=False,
            )
            out.print(f"  predictions: {scored.artifact_path}", markup=False)
    if result.shadow_error:
        print(
            f"mldeck: warning: the shadow challenger failed: {result.shadow_error}", file=sys.stderr
        )


# Columns that name a row: never cut below KEY_LEAST, whatever the width (a longer name, a
# 250-character feature, is cut to it: kept whole, it left no room for any other column).
KEY_LEAST = 40
KEY_COLUMNS = (
    "ID",
    "REPORT",
    "VERSION",
    "BATCH",
    "KEY",
    "FIELD",
    "FEATURE",
    "COLUMN",
    "CHECK",
    "GATE",
    "METRIC",
)
# On a terminal too narrow for a table, these columns go first, in this order.
DROPPED_FIRST = (
    "TRIGGER", "DURATION", "SOURCE", "SIZE", "KIND", "ROWS", "THRESHOLD", "METHOD", "POINTS",
    "STEP", "TOP", "MEAN", "NULLS", "APPROVAL", "GATES", "LAST RUN", "NEXT", "SEEN", "ACTOR",
    "ENTITY", "CHANGED", "MIN", "MAX", "ARRIVED", "STARTED", "CREATED", "TIME",
)  # fmt: skip


class _FittedTable(Table):
    """A table that fits the terminal: its widest cells are cut first, then its least useful
    columns (DROPPED_FIRST) are left out; the ids that name its rows are not cut below
    KEY_LEAST."""

    def __rich_console__(self, console: Any, options: Any) -> Any:
        while not self._fit(options.max_width):
            others = [c for c in self.columns if c.header not in KEY_COLUMNS]
            if not others:
                break  # only the ids are left: Rich lays them out as it can
            # DROPPED_FIRST in its order, then the right-most other column, a wrapping one last.
            named = [c for name in DROPPED_FIRST for c in others if c.header == name]
            plain = [c for c in others if c.overflow != "fold"]
            drop = (named or plain or others)[0 if named else -1]
            self.columns = [c for c in self.columns if c is not drop]
            for index, column in enumerate(self.columns):  # Rich finds the last column by it
                column._index = index
        yield from super().__rich_console__(console, options)

    def _fit(self, avail: int) -> bool:
        """Set each column's width so that the table takes at most *avail* cells, cutting the
        widest cuttable column first; False if even the least widths do not fit."""
        from rich.cells import cell_len

        natural, least = [], []
        for column in self.columns:
            longest = max((cell_len(str(cell)) for cell in column._cells), default=0)
            header = cell_len(str(column.header))
            natural.append(max(header, longest, column.min_width or 0))
            if column.header in KEY_COLUMNS:
                least.append(min(natural[-1], max(header, KEY_LEAST)))
            elif column.overflow == "fold":
                least.append(min(natural[-1], max(header, 16)))
            else:
                least.append(min(natural[-1], max(header, column.min_width or 0, 12)))
        gaps = len(self.columns) - 1
        if sum(least) + gaps > avail:
            return False
        widths = list(natural)
        excess = sum(widths) + gaps - avail
        while excess > 0:
            i = max(range(len(widths)), key=lambda k: widths[k] - least[k])
            cut = min(excess, widths[i] - least[i], max(1, (widths[i] - least[i]) // 2))
            widths[i] -= cut
            excess -= cut
        for column, width in zip(self.columns, widths, strict=True):
            column.width, column.min_width = width, None
        return True


def _table(*columns: str, wrap: str | None = None) -> Table:
    """A borderless table whose columns keep to one line (ellipsis), except *wrap*."""
    table = _FittedTable(box=None, pad_edge=False, header_style="bold", collapse_padding=True)
    for column in columns:
        if column == wrap:
            table.add_column(column, overflow="fold", min_width=len(column))
        else:
            width = max(len(column), MIN_WIDTHS.get(column, 0))
            table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=width)
    return table


def _section(title: str, items: dict[str, str] | list[tuple[str, str]]) -> None:
    """A titled list of label and value (pairs when two may share a label: approvals in one
    second, artifacts of one name); both can be untrusted text (a run's params, a reason), so
    each goes through ``fmt.shown``: one printable line."""
    if not items:
        return
    _heading(title)
    pairs = items.items() if isinstance(items, dict) else items
    shown = [(fmt.shown(str(k)), fmt.shown(str(v))) for k, v in pairs]
    width = max(len(k) for k, _ in shown) + 2
    for key, value in shown:
        out.print(f"  {key:<{width}}{value}", markup=False)


def _command_path(command: Any, args: list[str]) -> str:
    """``mldeck runs list`` for the arguments ``runs list --kind``: the (sub)commands named."""
    path = ["mldeck"]
    rest = iter(args)
    for arg in rest:
        if arg in ("-w", "--workspace"):  # the workspace option, first, and its folder
            next(rest, None)
            continue
        if arg.startswith("--workspace=") or (arg.startswith("-w") and len(arg) > 2):
            continue  # the same, with its folder in one argument
        sub = getattr(command, "commands", {}).get(arg)
        if sub is None:
            break
        path.append(arg)
        command = sub
    return " ".join(path)


def _workspace_first(argv: list[str]) -> list[str]:
    """Move ``--workspace DIR`` / ``-w DIR`` to the front, so it works after a subcommand too."""
    rest, front = [], []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            rest.append(arg)
            rest.extend(args)
            break
        if arg in ("--workspace", "-w"):
            value = next(args, None)
            if value is None:
                raise MldeckError(f"{arg} needs a workspace folder")
            front.extend((arg, value))
        elif arg.startswith("--workspace="):
            front.append(arg)
        else:
            rest.append(arg)
    return front + rest


def _interrupt(_signum: int, _frame: Any) -> None:
    """SIGINT while the command is not already stopping on one: KeyboardInterrupt.

    One Ctrl-C can arrive twice: polars raises KeyboardInterrupt from its own check, and Python's
    pending signal raises another a few instructions later, in the middle of the cleanup that
    records the interrupted run's end (which then stayed 'running'). While a KeyboardInterrupt is
    being handled, that cleanup (a short write) is left to finish; a Ctrl-C pressed again a
    second or more later still stops the command (a cleanup waiting on a busy store).
    """
    import time

    now = time.monotonic()
    if isinstance(sys.exc_info()[1], KeyboardInterrupt):
        first = _INTERRUPTED.setdefault("at", now)  # polars' own: this is the same Ctrl-C
        if now - first < INTERRUPT_GRACE_SECONDS:
            return
    _INTERRUPTED["at"] = now
    raise KeyboardInterrupt


def _stopped(signum: int, frame: Any) -> None:
    """SIGTERM or SIGHUP: the command stops as on Ctrl-C, and says which signal stopped it."""
    _INTERRUPTED["signal"] = signum
    _interrupt(signum, frame)


# The console's commands: Textual and the scheduler inside it have their own signal handling.
CONSOLE_COMMANDS = ("mldeck", "mldeck tui", "mldeck demo")

# When the command was first interrupted (a second Ctrl-C within the grace is the same one),
# and by which signal when it was not Ctrl-C.
_INTERRUPTED: dict[str, float] = {}
INTERRUPT_GRACE_SECONDS = 1.0


INTERRUPTED_EXIT = 130  # Ctrl-C's exit status (typer's too)


def _nested(group: Any, name: str, path: str) -> list[str]:
    """The commands named *name* inside *group*'s groups, as typed (``mldeck run train``)."""
    found = []
    for sub_name, sub in getattr(group, "commands", {}).items():
        if getattr(sub, "hidden", False):
            continue
        inner = getattr(sub, "commands", None)
        if inner is None:
            continue
        if name in inner and not getattr(inner[name], "hidden", False):
            found.append(f"{path} {sub_name} {name}")
        found += _nested(sub, name, f"{path} {sub_name}")
    return found


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and a non-zero exit status."""
    import signal
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    # Click's exception classes, wherever this typer takes Click from (its own copy or click).
    kinds = {kind.__name__: kind for kind in typer.BadParameter.__mro__}
    usage_error, click_error = kinds["UsageError"], kinds["ClickException"]
    command = typer.main.get_command(app)
    try:
        args = _workspace_first(list(sys.argv[1:] if argv is None else argv))
        if main_thread and _command_path(command, args) not in CONSOLE_COMMANDS:
            # SIGTERM (timeout, a CI cancelled) and SIGHUP (an SSH session closed) stop a
            # command as Ctrl-C does: its runs end cancelled (they stayed 'running', and a
            # scheduler then ran the job again). The console and the daemon have their own.
            for signum in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(signum) is signal.SIG_DFL:
                    signal.signal(signum, _stopped)
        code = command.main(args=args, prog_name="mldeck", standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a command group alone: its help
            exc.show()
            sys.exit(exc.exit_code)
        # One line, like every other error (Click prints usage, a hint, a blank line, the error).
        where = exc.ctx.command_path if exc.ctx is not None else _command_path(command, args)
        hint = f" (see '{where} -h')"
        unknown = re.fullmatch(r"No such command '(.+)'\.?", exc.format_message().strip())
        if unknown and (found := _nested(command, unknown.group(1), "mldeck")):
            hint = f" (did you mean '{found[0]}'?)"  # 'mldeck train' is 'mldeck run train'
        print(f"mldeck: error: {exc.format_message().rstrip('.')}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_error as exc:
        print(f"mldeck: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input at a prompt
        print("mldeck: error: aborted", file=sys.stderr)
        sys.exit(1)
    except MldeckError as exc:  # its text may quote a user's (a reason, a name): printable
        print(f"mldeck: {exc.word}: {fmt.said(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a read-only or full folder of the workspace, a file's permissions
        where = f" {exc.filename}" if exc.filename else ""
        if disk_full(exc):  # a library's write, often naming no file
            print(f"mldeck: error: the disk is full ({exc.strerror or exc}{where}): free room "
                  "on the workspace's disk and try again", file=sys.stderr)  # fmt: skip
            sys.exit(2)
        print(f"mldeck: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except BaseException as exc:  # a Ctrl-C: the runs it started ended cancelled on the way out
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):  # the store lost on the way (a server gone)
            from mldeck.store.engine import store_problem

            print(f"mldeck: error: {store_problem(exc)}; any run it left 'running' is marked "
                  "orphaned by the next health check", file=sys.stderr)  # fmt: skip
            sys.exit(2)
        from mldeck.store.engine import store_damaged

        if store_damaged(exc):
            print(f"mldeck: error: the store is damaged ({' '.join(str(exc.orig).split())}); "
                  "restore the workspace from a backup ('mldeck backup'), or move the store away "
                  "and start anew",
                  file=sys.stderr)  # fmt: skip
            sys.exit(2)
        # The server refused: a role without the right (42501) or a read-only server (25006).
        if getattr(getattr(exc, "orig", None), "sqlstate", None) in ("42501", "25006"):
            from mldeck.store.engine import store_problem

            print(f"mldeck: error: the store refuses this: {store_problem(exc)}", file=sys.stderr)
            sys.exit(2)
        if not interrupted(exc):
            raise
        code = INTERRUPTED_EXIT
    if code == INTERRUPTED_EXIT and "mldeck.monitor.alerts" in sys.modules:
        # Hooks run in a session of their own (the terminal's signal misses them): one still
        # running in a thread of ours held the exit for its whole timeout.
        sys.modules["mldeck.monitor.alerts"].stop_hooks()
    if code == INTERRUPTED_EXIT and "signal" in _INTERRUPTED:  # SIGTERM or SIGHUP
        signum = int(_INTERRUPTED["signal"])
        print(f"mldeck: stopped ({signal.Signals(signum).name})", file=sys.stderr)
        sys.exit(128 + signum)
    if code == INTERRUPTED_EXIT:  # Ctrl-C (typer turns it into this exit status)
        print("mldeck: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


# Command groups kept in their own modules register themselves on ``app``.
from mldeck import cli_jobs, cli_monitor  # noqa: E402, F401

if __name__ == "__main__":
    # Run as ``python -m mldeck.cli``: use the module as imported, where every command group
    # registered itself (this copy, ``__main__``, has none of them).
    from mldeck.cli import main as registered_main

    registered_main()
