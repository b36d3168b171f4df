"""Commands for orchestration: ``mldeck jobs ...`` and ``mldeck daemon``.

Registered on the main app by :mod:`mldeck.cli`; they share its output helpers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mldeck import formatting as fmt
from mldeck.cli import JsonOption, _open, _print_json, _table, app, out
from mldeck.errors import MldeckError

if TYPE_CHECKING:
    from mldeck.store.engine import Store
    from mldeck.workspace import Workspace

jobs_app = typer.Typer(
    help="Scheduled jobs: list, run now, pause, resume, edit, add, remove; health checks.",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="The schedule's name (see 'mldeck jobs list').")
]


def _open_jobs() -> tuple[Workspace, Store]:
    """The workspace and store, with [jobs.schedules] of mldeck.toml synced into the table."""
    from sqlalchemy.exc import OperationalError

    from mldeck.jobs.runner import store_write_error
    from mldeck.jobs.schedules import sync_from_settings

    ws, store = _open()
    try:
        changes = sync_from_settings(store, ws.settings.jobs)
    except OperationalError as exc:
        raise store_write_error(ws, exc) from None
    for change in changes:  # a config entry shadowed by a CLI schedule: said, not ignored
        if change.change == "kept":
            print(f"mldeck: warning: {change.describe()}", file=sys.stderr)
    return ws, store


def _acting(ws: Workspace, store: Store) -> Any:
    from mldeck.jobs.lease import holder

    found = holder(store, ws.settings.jobs.lease_seconds)
    return found if found is not None and found.alive else None


@jobs_app.command("list")
def jobs_list(as_json: JsonOption = False) -> None:
    """The schedules with their next fire time (in local time; UTC in --json), last run and
    outcome, and which process runs the scheduler."""
    from mldeck.jobs.schedules import list_schedules, next_fire_time, state, timing

    ws, store = _open_jobs()
    rows = list_schedules(store)
    acting = _acting(ws, store)
    if as_json:
        _print_json({
            "total": len(rows),  # every list --json starts with its total
            "scheduler": None if acting is None else {
                "role": acting.role, "host": acting.host, "pid": acting.pid,
                "heartbeat_at": acting.heartbeat_at.isoformat()},
            "schedules": [{
                "name": r.name, "kind": r.kind, "cron": r.cron or None,
                "interval_seconds": r.interval_seconds, "state": state(r), "params": r.params,
                "timeout_seconds": r.timeout_seconds, "retries": r.retries,
                "next_fire_at": _iso(next_fire_time(r)), "last_run_id": r.last_run_id,
                "last_status": r.last_status or None, "last_run_at": _iso(r.last_run_at),
                "source": r.source} for r in rows],
        })  # fmt: skip
        return
    out.print(
        f"scheduler: {acting.describe()}" if acting is not None
        else "scheduler: none running (start 'mldeck daemon', or open the console)",
        markup=False,
    )  # fmt: skip
    if not rows:
        out.print("no schedules: add [jobs.schedules.NAME] to mldeck.toml, or 'mldeck jobs add'")
        return
    table = _table("NAME", "KIND", "WHEN", "STATE", "NEXT", "LAST RUN", "OUTCOME")
    for r in rows:
        last = f"run {r.last_run_id}, {fmt.when(r.last_run_at)}" if r.last_run_id else "-"
        table.add_row(r.name, r.kind, timing(r), state(r), fmt.when(next_fire_time(r)) or "-",
                      last, r.last_status or "-")  # fmt: skip
    out.print(table)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


@jobs_app.command("run")
def jobs_run(
    name: NameArgument,
    here: Annotated[
        bool,
        typer.Option("--here", help="Run it in this process even when a scheduler is running."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a job now. With a scheduler running, it is asked to run it (and this returns at
    once); otherwise the job runs here, in a worker process, with its timeout and retries.
    Exit status 1 when the job did not succeed."""
    from mldeck.jobs.runner import JobRequest, JobRunner
    from mldeck.jobs.schedules import get_schedule, request_run
    from mldeck.store.models import RunTrigger

    ws, store = _open_jobs()
    row = get_schedule(store, name)
    acting = None if here else _acting(ws, store)
    if acting is not None:
        request_run(store, name)
        if as_json:
            _print_json({"job": name, "requested": True, "scheduler_pid": acting.pid})
        else:
            out.print(f"asked the scheduler ({acting.describe()}) to run {name} now; "
                      "follow it with 'mldeck jobs list' or 'mldeck runs list'", markup=False)  # fmt: skip
        return
    say = None if as_json else (lambda line: out.print(f"  {line}", markup=False))
    runner = JobRunner(ws, store, on_event=say)
    outcome = runner.run(JobRequest.from_schedule(row, trigger=RunTrigger.MANUAL))
    runner.wait_for_hooks()  # the alerts it opened: their hooks run before the command ends
    if as_json:
        _print_json(outcome.as_dict())
    else:
        word = "run" if len(outcome.run_ids) == 1 else "runs"
        out.print(f"{name}: {outcome.status} ({word} {', '.join(map(str, outcome.run_ids))})",
                  markup=False)  # fmt: skip
        if outcome.error:
            out.print(outcome.error, markup=False)
    if not outcome.succeeded:
        raise typer.Exit(1)


@jobs_app.command("pause")
def jobs_pause(name: NameArgument) -> None:
    """Pause a schedule (a running job finishes; no new fire until it is resumed)."""
    from mldeck.jobs.schedules import set_paused

    _, store = _open_jobs()
    row = set_paused(store, name, True)
    if row.enabled:
        out.print(f"paused {name}", markup=False)
    else:  # 'jobs list' goes on saying disabled: that is what stops it first
        out.print(f"paused {name}; it is disabled as well ('jobs list' says disabled until "
                  f"'mldeck jobs edit {name} --enable')", markup=False)  # fmt: skip


@jobs_app.command("resume")
def jobs_resume(name: NameArgument) -> None:
    """Resume a paused schedule."""
    from mldeck.jobs.schedules import set_paused

    _, store = _open_jobs()
    row = set_paused(store, name, False)
    if row.enabled:
        out.print(f"resumed {name}", markup=False)
    else:  # resumed, but a disabled schedule still never runs
        out.print(f"resumed {name}; it is disabled, so it does not run until enabled "
                  f"('mldeck jobs edit {name} --enable')", markup=False)  # fmt: skip


ParamsOption = Annotated[
    str | None,
    typer.Option(
        "--params", metavar="JSON", help='Parameters as JSON, e.g. {"dataset_version_id": 3}.'
    ),
]


def _params(text: str | None, store: Any) -> dict[str, Any] | None:
    """``--params`` as a JSON object (None when not given); a dataset version it names must
    exist now, not only when the job first runs."""
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise MldeckError(f"--params is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise MldeckError('--params must be a JSON object, e.g. {"dataset_version_id": 3}')
    version = parsed.get("dataset_version_id")
    if isinstance(version, int) and not isinstance(version, bool):
        from mldeck.store.models import Dataset, DatasetVersion
        from mldeck.store.queries import resolve_version

        try:
            resolve_version(store, str(version))
        except MldeckError:
            raise MldeckError(f"--params: no dataset version {version} (see 'mldeck data list')"
                              ) from None  # fmt: skip
        with store.read() as session:
            row = session.get(DatasetVersion, version)
            if row is not None and row.status == "rejected":  # every run of it would fail
                name = session.get(Dataset, row.dataset_id).name
                raise MldeckError(
                    f"--params: {name}:v{row.version} (dataset version {version}) was rejected "
                    "by validation; scoring and drift take accepted or warned batches"
                )
    return parsed


@jobs_app.command("edit")
def jobs_edit(
    name: NameArgument,
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron",
            metavar="CRON",
            help="Crontab expression (UTC; weekday 0 or 7 is Sunday, as in crontab).",
        ),
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", metavar="INTERVAL", help="Interval: 90s, 15m, 2h, 1d.")
    ] = None,
    timeout: Annotated[
        int | None, typer.Option("--timeout", metavar="SECONDS", help="Seconds per attempt.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", metavar="N", help="Attempts after a failure.")
    ] = None,
    params: ParamsOption = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Turn the schedule on or off.")
    ] = None,
) -> None:
    """Change a schedule in the store (the running scheduler follows within seconds). A later
    change of the same entry in mldeck.toml is applied over it."""
    from mldeck.jobs.schedules import edit, timing

    _, store = _open_jobs()
    row = edit(store, name, cron=cron, every=every, timeout_seconds=timeout, retries=retries,
               enabled=enabled, params=_params(params, store))  # fmt: skip
    out.print(f"{name}: {timing(row)}, timeout {row.timeout_seconds}s, retries {row.retries}"
              f"{'' if row.enabled else ', disabled'}", markup=False)  # fmt: skip


@jobs_app.command("add")
def jobs_add(
    name: NameArgument,
    kind: Annotated[
        str,
        typer.Option(
            "--kind", metavar="KIND", help="train, evaluate, retrain, drift, score, health."
        ),
    ],
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            metavar="CRON",
            help="Crontab expression (UTC; weekday 0 or 7 is Sunday, as in crontab).",
        ),
    ] = "",
    every: Annotated[
        str, typer.Option("--every", metavar="INTERVAL", help="Interval: 90s, 15m, 2h, 1d.")
    ] = "",
    timeout: Annotated[
        int, typer.Option("--timeout", metavar="SECONDS", help="Seconds per attempt.")
    ] = 3600,
    retries: Annotated[
        int, typer.Option("--retries", metavar="N", help="Attempts after a failure.")
    ] = 0,
    params: ParamsOption = None,
) -> None:
    """Add a schedule to the store (kept apart from mldeck.toml's, which syncs never touch it;
    'mldeck jobs remove' deletes it)."""
    from mldeck.jobs.schedules import add, timing

    _, store = _open_jobs()
    row = add(store, name, kind, cron=cron, every=every, timeout_seconds=timeout, retries=retries,
              params=_params(params, store))  # fmt: skip
    out.print(f"added {name}: {kind}, {timing(row)}", markup=False)


@jobs_app.command("remove")
def jobs_remove(name: NameArgument) -> None:
    """Delete a schedule added with 'mldeck jobs add' (its past runs are kept; a running job
    finishes). Schedules from mldeck.toml are removed there."""
    from mldeck.jobs.schedules import remove

    _, store = _open_jobs()
    remove(store, name)
    out.print(f"removed {name}", markup=False)


@jobs_app.command("health")
def jobs_health(as_json: JsonOption = False) -> None:
    """Run the health checks now: store integrity, free disk, data freshness, champion file
    hash, scheduler heartbeat, repeated failures, orphaned runs. Exit status 1 on a failure."""
    from mldeck.jobs.health import run_checks
    from mldeck.monitor import alerts

    ws, store = _open_jobs()
    report = run_checks(ws, store)
    # The hooks of the alerts the checks opened (a damaged champion file paged no one).
    problems = alerts.run_hooks(alerts.opened(store, ws.settings, report.opened),
                                ws.settings.monitor.alert_command,
                                ws.settings.monitor.alert_command_timeout, ws.root)  # fmt: skip
    if as_json:
        _print_json({**report.as_dict(), "hook_problems": problems})
    else:
        table = _table("CHECK", "STATUS", "DETAIL", wrap="DETAIL")
        for check in report.checks:
            table.add_row(check.name, check.status, check.message)
        out.print(table)
    for problem in problems:
        print(f"mldeck: warning: {problem}", file=sys.stderr)
    if report.status == "fail":
        raise typer.Exit(1)


@app.command("daemon")
def daemon(
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log", metavar="FILE", help="Log file (default: .mldeck/daemon.log in the workspace)."
        ),
    ] = None,
) -> None:
    """Run the scheduler headless (for tmux or a systemd unit) until SIGTERM, SIGHUP or Ctrl-C,
    a clean stop once it has started: exit status 0 (a service manager stopping it is no
    failure).

    Only one process acts per workspace: a second daemon (or a console) waits and takes over
    within [jobs] lease_seconds when the acting one dies. The daemon also watches
    data/incoming/ and runs the pipeline on every new batch. It logs to .mldeck/daemon.log.
    """
    from mldeck.jobs.scheduler import DeckScheduler

    ws, store = _open_jobs()
    if log_file is not None and log_file.resolve() != (ws.state_dir / "daemon.log").resolve():
        ws.refuse_overwriting_own(log_file, "the log")
    path = log_file or ws.state_dir / "daemon.log"
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise MldeckError(f"cannot write the log {path}: {exc.strerror or exc}") from None
    # The pid tells apart the daemons that share a log (the acting one and a standby).
    handler.setFormatter(
        logging.Formatter("%(asctime)s pid %(process)d %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # "1 change detected" per event
    say = _Stdout()
    scheduler = DeckScheduler(ws, store, role="daemon", watch_incoming=True,
                              on_event=say)  # fmt: skip
    stopping = []

    def _stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        scheduler.stop(timeout=0)

    # SIGHUP too: a daemon started with '&' in an SSH session gets it when the session closes;
    # killed by it, it left its runs 'running' and its lease held until another scheduler came.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    say(f"mldeck daemon on {ws.root} (pid {scheduler.lease.pid}), logging to {path}")
    logging.getLogger("mldeck.daemon").info("daemon started on %s", ws.root)
    scheduler.start()
    said = ""
    while scheduler.running:
        scheduler._thread.join(2.0)  # type: ignore[union-attr]
        if scheduler.acting or stopping:
            said = ""
            continue
        try:
            acting = _acting(ws, store)
        except Exception:  # the store out of reach: the scheduler's own loop says so, once
            continue
        if acting is not None and acting.holder != scheduler.lease.id:
            line = f"standby: {acting.describe()} runs the scheduler; taking over if it stops"
            if line != said:  # said once per holder, not every look
                said = line
                say(line)
                logging.getLogger("mldeck.daemon").info(line)
    logging.getLogger("mldeck.daemon").info("daemon stopped")
    say("mldeck daemon stopped")
    sys.exit(0)


class _Stdout:
    """The daemon's lines on stdout until it goes away (the reader of its pipe gone: '| head',
    a 'tee' stopped): the log keeps them and the daemon goes on. Each line then logged a
    traceback ('on_event failed') to the log."""

    def __init__(self) -> None:
        self.gone = False
        with contextlib.suppress(AttributeError, ValueError):  # a name the locale cannot spell
            sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]

    def __call__(self, line: str) -> None:
        if self.gone:
            return
        try:
            print(line, flush=True)
        except OSError as exc:
            if not isinstance(exc, BrokenPipeError):  # a full disk under '> out.log': this line
                return
            self._away()
        except ValueError:
            if sys.stdout.closed:
                self._away()

    def _away(self) -> None:
        """The pipe's reader is gone, or the file closed: nothing more goes there."""
        self.gone = True
        logging.getLogger("mldeck.daemon").warning(
            "stdout is gone: the daemon's lines go to this log only"
        )
        try:  # nothing left to flush there, at exit either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
