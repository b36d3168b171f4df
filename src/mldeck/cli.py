"""The ``mldeck`` command line. Every command works on the workspace found from ``--workspace``,
``MLDECK_WORKSPACE`` or the current folder upwards; anything the console does, a command does too.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mldeck import formatting as fmt
from mldeck.errors import MldeckError

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

# Tables fit the terminal; piped output is not squeezed to 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="MLDECK_WORKSPACE",
        help="Workspace folder (default: the current folder or the nearest parent with mldeck.toml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class State:
    workspace: Path | None = None


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
    if ctx.invoked_subcommand is None:
        _open_console(workspace, read_only=False)


def _open(workspace: Path | None = None) -> tuple[Workspace, Store]:
    from mldeck.workspace import discover, open_workspace_store

    ws = discover(workspace or State.workspace)
    return ws, open_workspace_store(ws)


def _open_console(workspace: Path | None, *, read_only: bool) -> None:
    ws, store = _open(workspace)
    from mldeck.tui.app import MldeckApp

    MldeckApp(ws, store, read_only=read_only or ws.settings.console.read_only).run()


def _print_json(payload: Any) -> None:
    """Strict JSON (NaN and infinities become null) that jq and browsers accept."""
    print(json.dumps(_finite(payload), indent=2, default=str, ensure_ascii=False, allow_nan=False))


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
        Path, typer.Argument(help="Folder to make a workspace of (created if missing).")
    ] = Path("."),
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Fill it with the demo data, config and a first tracked run."),
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="Project name (default: the folder's name).")
    ] = None,
) -> None:
    """Create a workspace: mldeck.toml, .mldeck/ (store, artifacts) and data/incoming/."""
    if demo:
        from mldeck.demo.workspace import create_demo_workspace

        ws = create_demo_workspace(directory, name=name, echo=_step)
    else:
        from mldeck.workspace import init_workspace, open_workspace_store

        ws = init_workspace(directory, name=name)
        open_workspace_store(ws).close()
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
        Path, typer.Argument(help="Where the demo workspace lives (created if missing).")
    ] = Path("mldeck-demo"),
) -> None:
    """Open the console on the demo workspace, creating it first if it does not exist."""
    from mldeck.config import CONFIG_FILE

    if not (directory / CONFIG_FILE).exists():
        from mldeck.demo.workspace import create_demo_workspace

        out.print(f"Creating the demo workspace in {directory} ...")
        create_demo_workspace(directory, echo=_step)
    _open_console(directory, read_only=False)


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind.")] = None,
    trigger: Annotated[str | None, typer.Option(help="Only runs with this trigger.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Only runs whose name contains this.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (newest first).")] = 50,
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
            row.name,
            row.kind,
            row.trigger,
            status_text,
            fmt.when(row.started_at or row.created_at),
            fmt.duration(row.duration),
        )
    out.print(table)
    if total > len(rows):
        out.print(f"({len(rows)} of {total} shown; use --limit to see more)")


@runs_app.command("show")
def runs_show(
    run: Annotated[str, typer.Argument(help="Run id, or name (the newest run of that name).")],
    logs: Annotated[int, typer.Option(min=0, help="How many of the last log lines to show.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show one run: status, params, metrics, artifacts, inputs, logs and error."""
    from mldeck.store.queries import RunRow, resolve_run, run_detail

    _, store = _open()
    detail = run_detail(store, resolve_run(store, run), log_limit=logs if not as_json else 10_000)
    if as_json:
        _print_json(detail.as_dict())
        return
    info = detail.as_dict()
    out.print(f"[bold]Run {info['id']}[/bold]  {info['name']}")
    for label, value in (
        ("kind", info["kind"]),
        ("trigger", info["trigger"]),
        ("status", info["status"]),
        ("started", fmt.when(detail.run.started_at)),
        ("ended", fmt.when(detail.run.ended_at)),
        ("duration", fmt.duration(RunRow.of(detail.run).duration)),
        ("user", f"{info['user']}@{info['host']}" if info["host"] else info["user"]),
    ):
        out.print(f"  {label:<9}{value}")
    code = detail.run.code_version
    if code.get("git_commit"):
        dirty = " (dirty)" if code.get("git_dirty") else ""
        out.print(f"  {'code':<9}{code['git_commit'][:12]}{dirty}")
    _section("Params", {k: json.dumps(v) for k, v in detail.run.params.items()})
    _section("Tags", {k: json.dumps(v) for k, v in detail.run.tags.items()})
    if detail.metrics:
        out.print("\n[bold]Metrics[/bold]")
        table = _table(*("KEY", "LAST", "STEP", "MIN", "MAX", "POINTS"))
        for metric in detail.metrics:
            table.add_row(
                metric.key,
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
            {a.name: f"{a.path} ({fmt.size(a.size_bytes)})" for a in detail.artifacts},
        )
    if detail.logs:
        shown = len(detail.logs)
        note = f" (last {shown} of {detail.log_count})" if detail.log_count > shown else ""
        out.print(f"\n[bold]Logs[/bold]{note}")
        for line in detail.logs:
            out.print(f"  {fmt.when(line.ts)} {line.level:<7} {line.message}", markup=False)
    if detail.run.error:
        out.print("\n[bold]Error[/bold]")
        out.print(detail.run.error.rstrip(), markup=False)


@data_app.command("ingest")
def data_ingest(
    files: Annotated[list[Path], typer.Argument(help="CSV, Parquet or NDJSON files.")],
    dataset: Annotated[
        str | None, typer.Option(help="Dataset name (default: [data] dataset).")
    ] = None,
    reference: Annotated[
        bool,
        typer.Option("--reference", help="Make this file the dataset's reference (baseline)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest files as dataset versions: store, validate, profile, quarantine offenders.

    Exit status: 0 all accepted, 3 some accepted with warnings, 4 some rejected, 2 a file could
    not be ingested at all (the others still are).
    """
    from mldeck.data.ingest import EXIT, ingest_file

    ws, store = _open()
    outcomes, errors = [], []
    for path in files:
        try:
            outcome = ingest_file(ws, store, path, dataset=dataset, as_reference=reference)
        except MldeckError as exc:  # one bad path never stops the others
            errors.append({"source": str(path), "error": str(exc)})
            print(f"mldeck: error: {exc}", file=sys.stderr)
            continue
        outcomes.append(outcome)
        if not as_json:
            _print_outcome(outcome)
    if as_json:
        _print_json([*(o.as_dict() for o in outcomes), *errors])
    worst = max((EXIT.get(o.status, 0) for o in outcomes), default=0)
    if worst or errors:
        raise typer.Exit(worst or MldeckError.exit_code)


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


@data_app.command("list")
def data_list(
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status: accepted, warned or rejected.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (newest first).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List dataset versions, newest first."""
    from mldeck.store.queries import list_versions

    _, store = _open()
    rows, total = list_versions(store, dataset=dataset, status=status, limit=limit)
    _print_versions(
        rows, total, as_json, empty="No dataset versions yet: see 'mldeck data ingest'."
    )


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
    if total > len(rows):
        out.print(f"({len(rows)} of {total} shown; use --limit to see more)")


@data_app.command("show")
def data_show(
    version: Annotated[str, typer.Argument(help="Version id, dataset:vN, or a sha256 prefix.")],
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
    out.print(
        f"[bold]{row.label}[/bold]  {row.status.upper()}"
        + ("  (reference)" if row.is_reference else "")
    )
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
        out.print("\n[bold]Checks[/bold]")
        table = _table(*("RESULT", "CHECK", "ROWS", "DETAIL"), wrap="DETAIL")
        order = {"fail": 0, "warn": 1, "pass": 2}
        for check in sorted(checks, key=lambda c: order.get(c["status"], 3)):
            name = f"{check['check']}({check['column']})" if check["column"] else check["check"]
            table.add_row(check["status"], name, str(check["failed_rows"] or ""), check["detail"])
        out.print(table)
    columns = detail.profile.get("columns", {})
    if columns:
        out.print("\n[bold]Profile[/bold]")
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
    limit: Annotated[int, typer.Option(min=1, help="At most this many (newest first).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List what is in quarantine: rejected batches and the offending rows of accepted ones."""
    from mldeck.store.queries import list_versions

    ws, store = _open()
    rows, total = list_versions(store, quarantined=True, limit=limit)
    if as_json:
        _print_json({"total": total, "versions": [row.as_dict() for row in rows]})
        return
    if not rows:
        out.print("Quarantine is empty.")
        return
    table = _table(*("VERSION", "STATUS", "SOURCE", "QUARANTINED AS"), wrap="QUARANTINED AS")
    for row in rows:
        table.add_row(row.label, row.status, Path(row.source_path).name, row.quarantine_path)
    out.print(table)
    out.print(f"(files are in {ws.quarantine_dir}; 'mldeck data show VERSION' gives the reasons)")


@data_app.command("infer")
def data_infer(
    file: Annotated[Path, typer.Argument(help="A reference file (CSV, Parquet or NDJSON).")],
    dataset: Annotated[str | None, typer.Option(help="Dataset name to write.")] = None,
    write: Annotated[
        bool,
        typer.Option("--write", help="Append to mldeck.toml (only if it has no [data] section)."),
    ] = False,
) -> None:
    """Print (or write) a starting set of expectations inferred from a reference file."""
    from mldeck.data.infer import expectations_toml
    from mldeck.data.readers import ReadError, open_source
    from mldeck.data.validate import reference_profile

    ws, _ = _open()
    try:
        source = open_source(file, separator=ws.settings.data.csv_separator)
    except ReadError as exc:
        raise MldeckError(f"cannot infer from {file}: {exc}") from None
    from mldeck.data.expectations import DataSettings

    profiled = reference_profile(source, DataSettings(table={"unique_ids": False}))
    if profiled.read_error:
        raise MldeckError(f"cannot infer from {file}: {profiled.read_error}")
    try:
        relative = str(file.resolve().relative_to(ws.root))
    except ValueError:
        relative = str(file.resolve())
    text = expectations_toml(
        profiled, dataset=dataset or ws.settings.data.dataset, reference=relative
    )
    if not write:
        print(text, end="")
        return
    from mldeck.data.infer import append_to_config

    append_to_config(ws.config_path, text)
    out.print(
        f"Wrote the expectations for {len(profiled.profile['columns'])} columns to {ws.config_path}"
    )


@data_app.command("watch")
def data_watch() -> None:
    """Watch data/incoming/ and ingest each file once it is complete, until Ctrl-C.

    A file is taken once it has not changed for [data] settle_seconds; hidden and temporary
    names (.tmp, .part, .partial, .crdownload, ~ ...) are skipped until renamed, and subfolders
    are ignored. Files already waiting are taken first. Each content is ingested once; a file
    that cannot be read is rejected and copied to data/quarantine/ with the reason. Prints one
    line per file. Only one watcher runs per workspace.
    """
    from mldeck.data.watcher import IncomingWatcher

    ws, store = _open()
    watcher = IncomingWatcher(ws, store, on_event=lambda line: out.print(line, markup=False))
    if not watcher.start():
        raise MldeckError(
            f"another watcher is already running on this workspace ({watcher.lock_path} is held)"
        )
    out.print("Ctrl-C stops the watcher.", markup=False)
    watcher.run_forever()


# Columns that must stay readable when a narrow terminal squeezes a table.
MIN_WIDTHS = {"STATUS": 9, "RESULT": 6, "ARRIVED": 19, "STARTED": 19, "VERSION": 10}


def _table(*columns: str, wrap: str | None = None) -> Table:
    """A borderless table whose columns keep to one line (ellipsis), except *wrap*."""
    table = Table(box=None, pad_edge=False, header_style="bold", collapse_padding=True)
    for column in columns:
        if column == wrap:
            table.add_column(column, overflow="fold", min_width=len(column))
        else:
            width = max(len(column), MIN_WIDTHS.get(column, 0))
            table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=width)
    return table


def _section(title: str, items: dict[str, str]) -> None:
    if not items:
        return
    out.print(f"\n[bold]{title}[/bold]")
    width = max(len(k) for k in items) + 2
    for key, value in items.items():
        out.print(f"  {key:<{width}}{value}", markup=False)


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
            front.append(arg)
            value = next(args, None)
            if value is not None:
                front.append(value)
        elif arg.startswith("--workspace="):
            front.append(arg)
        else:
            rest.append(arg)
    return front + rest


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and a non-zero exit status."""
    command = typer.main.get_command(app)
    args = _workspace_first(list(sys.argv[1:] if argv is None else argv))
    try:
        command.main(args=args, prog_name="mldeck", standalone_mode=True)
    except MldeckError as exc:
        print(f"mldeck: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
