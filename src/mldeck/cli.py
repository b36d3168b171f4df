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

out = Console(highlight=False, soft_wrap=True)

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
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "KIND", "TRIGGER", "STATUS", "STARTED", "DURATION"):
        table.add_column(column, no_wrap=column != "NAME")
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
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("KEY", "LAST", "STEP", "MIN", "MAX", "POINTS"):
            table.add_column(column)
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
