"""Commands for monitoring: ``mldeck drift ...``, ``mldeck alerts ...``, ``mldeck kpis``.

Registered on the main app by :mod:`mldeck.cli`; they share its output helpers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mldeck import formatting as fmt
from mldeck.cli import (
    MAX_LIMIT,
    JsonOption,
    _more,
    _open,
    _print_json,
    _section,
    _table,
    app,
    number_between,
    out,
)
from mldeck.errors import MldeckError
from mldeck.sections import MAX_ID

drift_app = typer.Typer(
    help="Drift and performance of scored batches against the reference.", no_args_is_help=True
)
app.add_typer(drift_app, name="drift")
alerts_app = typer.Typer(help="List, acknowledge and resolve alerts.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _statistic(feature: dict[str, Any]) -> str:
    if feature.get("p_value") is not None:
        return f"p={feature['p_value']:.3g}"
    if feature.get("statistic") is None and feature.get("note"):
        return feature["note"]  # why there is no figure: no values, not in the batch
    return _num(feature.get("statistic"))


@drift_app.command("check")
def drift_check(
    batch: Annotated[
        str,
        typer.Argument(
            metavar="VERSION", help="A dataset version (id, dataset:vN, sha256 prefix) to check."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", metavar="NAME", help="Registered model (default: the champion's)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a batch: drift per feature, label, prediction and multivariate drift, estimated and
    realized performance; raises the alerts its rules call for. Exit status 0 quiet, 3 drift
    (of the dataset, the joint distribution, the champion's scores or the label), an alert of
    the batch's rules, or an alert about the store (stale data, a failed step) raised by this
    check; one about the store opened before is listed, not counted ('mldeck alerts check')."""
    from mldeck.monitor import check_batch

    ws, store = _open()
    result = check_batch(ws, store, batch, model=model)
    if as_json:
        _print_json(result.as_dict())
    else:
        _print_report(result.summary(), result.report_id)
        for alert in result.alerts:
            word = _alert_word(alert)
            out.print(f"alert {alert.alert_id} {word} [{alert.severity}]: {alert.title}",
                      markup=False)  # fmt: skip
        for problem in result.hook_problems:
            print(f"mldeck: warning: {problem}", file=sys.stderr)
    if result.any_drift or result.alerting:
        raise typer.Exit(3)


def _print_report(summary: dict[str, Any], report_id: int) -> None:
    drifted = "DATASET DRIFT" if summary["dataset_drift"] else "no dataset drift"
    share, threshold = fmt.apart(summary["drift_share"], summary["share_threshold"], percent=True)
    out.print(
        f"{summary['batch']} vs {summary['reference']} (report {report_id}): "
        f"{summary['n_drifted']} of {summary['n_features']} features drifted "
        f"({share}, threshold {threshold}): {drifted}",
        markup=False,
    )
    table = _table("FEATURE", "METHOD", "SCORE", "THRESHOLD", "DRIFT")
    extra = [summary.get(k) for k in ("label", "prediction")]
    for feature in [*summary["features"], *filter(None, extra)]:
        name = feature["feature"]
        if feature.get("role") in ("label", "prediction"):
            name = f"{name} ({feature['role']})"
        table.add_row(
            name,
            feature["method"],
            _statistic(feature),
            f"{feature['threshold']:g}",
            "DRIFT" if feature["drifted"] else "-",
        )
    out.print(table)
    for feature in summary["features"]:  # why, beside a score that looks quiet
        if feature["drifted"] and feature.get("note") and feature.get("statistic") is not None:
            out.print(f"{feature['feature']}: {feature['note']}", markup=False)
    multi = summary.get("multivariate")
    if multi:  # under a heading of its own: it is the features' (it read as the model's)
        _section("Joint distribution", {"multivariate": (
            f"PCA reconstruction error {multi['error']:.3f} (reference "
            f"{multi['reference_error']:.3f}, threshold {multi['threshold']:.3f})"
            + (": DRIFT" if multi["drifted"] else "")
        )})  # fmt: skip
    elif summary.get("multivariate_note"):
        _section("Joint distribution", {"multivariate": summary["multivariate_note"]})
    items: dict[str, str] = {}
    estimated = summary.get("estimated")
    if estimated and estimated.get("value") is not None:
        band = ""
        if estimated.get("lower") is not None:
            band = f" [{estimated['lower']:.3f}, {estimated['upper']:.3f}]"
        reference = estimated.get("reference")
        items[f"estimated {estimated['metric']}"] = f"{estimated['value']:.3f}{band}" + (
            "" if reference is None else f" (holdout {reference:.3f})"
        )
    from mldeck.ml.settings import ALL_METRICS

    realized = summary.get("realized")
    if realized:
        # The metrics only: labels recorded later also name their file and run.
        shown = {k: v for k, v in realized.items() if k in ALL_METRICS and v is not None}
        source = (
            f" (latest labels: {realized['labels_file']})" if realized.get("labels_file") else ""
        )
        items["realized"] = (
            ", ".join(f"{k} {v:.3f}" for k, v in shown.items())
            + f" on {fmt.plural(int(realized.get('labelled_rows', 0)), 'labelled row')}{source}"
            if shown
            else "none"
        )
        if realized.get("unclassed_labels"):
            items["realized"] += (f"; {fmt.plural(realized['unclassed_labels'], 'label')} naming "
                                  "no class of the model left out")  # fmt: skip
    if summary.get("model"):
        items["model"] = summary["model"]
    if summary.get("model_note"):
        items["not scored"] = summary["model_note"].removeprefix("not scored: ")
    _section("Model", items)


@drift_app.command("list")
def drift_list(
    limit: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_LIMIT,
            metavar="N",
            help="At most this many reports (the newest batches' first).",
        ),
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List drift reports with estimated and realized performance: the newest batch first (in
    the order the batches arrived, so a batch checked late is listed where it arrived), each
    batch's newest check first."""
    from mldeck.monitor.queries import count_reports, list_reports

    _, store = _open()
    rows = list_reports(store, limit=limit)
    total = count_reports(store)
    if as_json:
        _print_json({"total": total, "reports": [row.as_dict() for row in rows]})
        return
    if not rows:
        out.print("No drift reports yet: see 'mldeck drift check BATCH'.")
        return
    # A report is named as 'drift show' and 'drift report' take it: a bare number there is a
    # batch (a dataset version id), as in every data command.
    table = _table(
        "REPORT", "BATCH", "CHECKED", "DRIFTED", "DATASET", "ESTIMATED", "REALIZED", "ALERTS"
    )
    for row in rows:
        table.add_row(
            f"report:{row.id}",
            row.batch,
            fmt.when(row.created_at),
            f"{row.n_drifted}/{row.n_features}",
            "DRIFT" if row.dataset_drift else "-",
            "-" if row.estimated is None else f"{row.metric} {row.estimated:.3f}",
            "-" if row.realized is None else f"{row.realized:.3f}",
            str(row.alerts or "-"),
        )
    out.print(table)
    _more(len(rows), total)


@drift_app.command("show")
def drift_show(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF",
            help="A batch (dataset:vN, id) or report (report:ID, as drift list names it).",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Show the newest drift report of a batch (or a report by #ID)."""
    from mldeck.monitor.queries import report_detail, resolve_report

    _, store = _open()
    detail = report_detail(store, resolve_report(store, ref))
    if as_json:
        _print_json(detail.as_dict())
    else:
        _print_report(detail.summary, detail.row.id)


@drift_app.command("report")
def drift_report(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF",
            help="A batch (dataset:vN, id) or report (report:ID, as drift list names it).",
        ),
    ],
    html_file: Annotated[
        str | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Write a self-contained HTML report here ('-': to standard output).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a drift report to share: self-contained HTML (charts inline) or JSON."""
    from mldeck.monitor.queries import report_detail, resolve_report, timeline
    from mldeck.monitor.report import render_html

    if html_file is None and not as_json:
        raise MldeckError("say what to write: --html FILE, --json, or both")
    if html_file == "-" and as_json:
        raise MldeckError("--html - and --json would both go to standard output: choose one")
    html = None if html_file in (None, "-") else Path(html_file)
    if html is not None and (not html_file.strip() or html.name in ("", ".", "..")):
        raise MldeckError(f"--html {html_file!r}: name the file to write the report to")
    ws, store = _open()
    if html is not None:
        if html.is_symlink():  # the page it names is written, the link kept
            html = html.resolve()
        ws.refuse_overwriting_own(html, "the report")
        _refuse_replacing_other_than_html(html)
    detail = report_detail(store, resolve_report(store, ref))
    if html_file is not None:
        # The history as it stood when the report was made: a report shared stays what it was.
        history = timeline(store, limit=50, dataset=detail.dataset, until=detail.row.id)
        text = render_html(detail, history, project=ws.settings.project.name)
    if html_file == "-":  # a pipe to a mailer or a web server's folder: the page, nothing else
        sys.stdout.write(text)
        return
    if html is not None:
        tmp = html.with_name(f".{html.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(html)
        except BaseException as exc:  # a folder there, a full disk, Ctrl-C: no temp file left
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise MldeckError(f"cannot write {html}: {exc.strerror or exc}") from None
            raise
        if not as_json:
            out.print(f"{detail.row.batch}: report written to {html}", markup=False)
    if as_json:
        _print_json(detail.as_dict())


def _refuse_replacing_other_than_html(path: Path) -> None:
    """An existing file is replaced only when it is an earlier report: a page of one's own, a
    data file or a script named by mistake is not overwritten."""
    from mldeck.monitor.report import is_report

    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:  # none there yet; a folder, no permission: writing it says why
        return
    if head.strip() and not is_report(head):
        raise MldeckError(f"{fmt.shown(str(path))} exists and is not a drift report: the report "
                          "replaces only an earlier report; name another file")  # fmt: skip


@drift_app.command("labels")
def drift_labels(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A file with the id column and the target.")
    ],
    batch: Annotated[
        str | None,
        typer.Option(
            "--batch",
            metavar="VERSION",
            help="The batch the file labels (needed when its ids are in several batches).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record labels that arrived after their batch: joined by [data] id_column to the stored
    predictions of every monitored batch (or of --batch alone), giving each its realized
    performance. A file whose ids are in several monitored batches is refused unless --batch
    says which one it labels.

    Exit status: 0 when every id was in a monitored batch and no alert fires; 3 when the
    realized performance raised or repeats an alert (as drift check), or when some ids were in
    no monitored batch (a batch not checked for drift yet, an unknown id), or all of them in
    batches not checked yet: those labels are not kept, and passing the file again once their
    batch is checked records them (labels already recorded count once); 2 when none of the ids
    is in any batch (another file, or ids written otherwise)."""
    from mldeck.errors import NotYet
    from mldeck.monitor.labels import record_labels

    ws, store = _open()
    try:
        outcome = record_labels(ws, store, file, batch=batch)
    except NotYet as exc:
        if as_json:  # a warning (exit 3), not an error: scripts get JSON as for any outcome
            _print_json({"file": file.name, "rows": None, "matched": 0, "unlabelled": None,
                         "unmatched": None, "unmatched_examples": [], "unchecked": [],
                         "elsewhere": [], "batches": [], "alerts": [], "hook_problems": [],
                         "kept": 0, "warning": str(exc)})  # fmt: skip
            print(f"mldeck: warning: {exc}", file=sys.stderr)
            raise typer.Exit(NotYet.exit_code) from None
        raise
    if as_json:
        _print_json({"file": outcome.file, "rows": outcome.rows, "matched": outcome.matched,
                     "unlabelled": outcome.unlabelled, "unmatched": outcome.unmatched,
                     "unmatched_examples": outcome.unmatched_examples,
                     "unchecked": outcome.unchecked, "elsewhere": outcome.elsewhere,
                     "batches": [b.as_dict() for b in outcome.batches],
                     "alerts": [a.payload for a in outcome.alerts],
                     "hook_problems": outcome.hook_problems})  # fmt: skip
        if outcome.unmatched or outcome.alerts:
            raise typer.Exit(3)
        return
    skipped = (
        f" ({outcome.unlabelled} rows without an id or a label skipped)"
        if outcome.unlabelled
        else ""
    )
    out.print(f"{file.name}: {fmt.plural(outcome.rows, 'label')}, {outcome.matched} matched a "
              "scored batch"
              f"{skipped}", markup=False)  # fmt: skip
    for item in outcome.batches:
        from mldeck.ml.settings import ALL_METRICS

        shown = ", ".join(f"{k} {v:.3f}" for k, v in item.realized.items()
                          if k in ALL_METRICS and v is not None)  # fmt: skip
        if item.run_id is None:
            out.print(f"  {item.batch}: no new label (all were recorded before); {item.rows} "
                      f"labelled rows: {shown}", markup=False)  # fmt: skip
        else:
            out.print(f"  {item.batch}: {fmt.plural(item.new, 'new label')}, "
                      f"{fmt.plural(item.rows, 'labelled row')}: {shown} "
                      f"(run {item.run_id})", markup=False)  # fmt: skip
    for alert in outcome.alerts:
        word = _alert_word(alert)
        out.print(f"alert {alert.alert_id} {word} [{alert.severity}]: {alert.title}", markup=False)
    for problem in outcome.hook_problems:
        print(f"mldeck: warning: {problem}", file=sys.stderr)
    if outcome.unmatched and outcome.elsewhere:  # --batch named: they are in another batch
        examples = ", ".join(repr(i) for i in outcome.unmatched_examples)
        more = ", ..." if outcome.unmatched > len(outcome.unmatched_examples) else ""
        others = ", ".join(outcome.elsewhere)
        print(f"mldeck: warning: {fmt.plural(outcome.unmatched, 'id')} ({examples}{more}) not in "
              f"{batch}: {others} {'holds' if len(outcome.elsewhere) == 1 else 'hold'} some; "
              f"those labels are not kept (pass the file with --batch {outcome.elsewhere[0]} for "
              "them)", file=sys.stderr)  # fmt: skip
    elif outcome.unmatched:
        examples = ", ".join(repr(i) for i in outcome.unmatched_examples)
        more = ", ..." if outcome.unmatched > len(outcome.unmatched_examples) else ""
        batch = outcome.unchecked[0] if outcome.unchecked else "BATCH"
        held = (f" ({', '.join(outcome.unchecked)}, not checked yet, "
                f"{'holds' if len(outcome.unchecked) == 1 else 'hold'} some)"
                if outcome.unchecked else "")  # fmt: skip
        print(f"mldeck: warning: {fmt.plural(outcome.unmatched, 'id')} ({examples}{more}) in no "
              f"monitored batch{held}: those labels are not kept; a batch takes labels once it is "
              f"checked ('mldeck drift check {batch}'), then pass this file again (labels already "
              "recorded count once)", file=sys.stderr)  # fmt: skip
    if outcome.unmatched or outcome.alerts:  # a script acts on what the labels revealed
        raise typer.Exit(3)


@alerts_app.command("list")
def alerts_list(
    status: Annotated[
        str,
        typer.Option(
            metavar="STATUS",
            help="active (open or acknowledged), open, acknowledged, resolved, all.",
        ),
    ] = "active",
    limit: Annotated[
        int,
        typer.Option(min=1, max=MAX_LIMIT, metavar="N", help="At most this many (newest first)."),
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List alerts, newest first (by default those still open or acknowledged)."""
    from mldeck.monitor.alerts import alert_payload, count_alerts, list_alerts

    allowed = ("active", "open", "acknowledged", "resolved", "all")
    if status not in allowed:
        raise MldeckError(f"--status {status!r}: use one of {', '.join(allowed)}")
    _, store = _open()
    wanted = None if status == "all" else status
    rows = list_alerts(store, status=wanted, limit=limit)
    total = count_alerts(store, status=wanted)
    if as_json:
        _print_json({"total": total, "alerts": [alert_payload(a) for a in rows]})
        return
    if not rows:
        out.print("No alerts." if status == "all" else f"No {status} alerts.")
        return
    table = _table("ID", "SEVERITY", "STATUS", "SEEN", "CHANGED", "ALERT", wrap="ALERT")
    for alert in rows:
        table.add_row(str(alert.id), alert.severity, alert.status, f"{alert.occurrences}x",
                      fmt.when(alert.updated_at), alert.title)  # fmt: skip
    out.print(table)
    _more(len(rows), total)


def _alert_change(action: str, alert_id: int, note: str, as_json: bool = False) -> None:
    from mldeck.monitor import alerts

    _, store = _open()
    change = alerts.acknowledge if action == "acknowledge" else alerts.resolve
    alert = change(store, alert_id, note=note)
    if as_json:  # the alert as it is now, as 'alerts list --json' lists it
        _print_json(alerts.alert_payload(alert))
        return
    out.print(f"alert {alert.id} {alert.status}: {alert.title}", markup=False)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[
        int, typer.Argument(min=1, max=MAX_ID, metavar="ID", help="The alert's id.")
    ],
    note: Annotated[
        str, typer.Option("--note", "-m", metavar="TEXT", help="Why, for the audit trail.")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Acknowledge an open alert (someone is on it); it stays active until resolved."""
    _alert_change("acknowledge", alert_id, note, as_json)


@alerts_app.command("resolve")
def alerts_resolve(
    alert_id: Annotated[
        int, typer.Argument(min=1, max=MAX_ID, metavar="ID", help="The alert's id.")
    ],
    note: Annotated[
        str, typer.Option("--note", "-m", metavar="TEXT", help="What was done, for the audit.")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Resolve an alert."""
    _alert_change("resolve", alert_id, note, as_json)


@alerts_app.command("check")
def alerts_check(as_json: JsonOption = False) -> None:
    """Evaluate the rules that look at the store (data freshness, failed steps) now, and list
    every alert still open (a batch's drift or metric alerts too).

    Exit status 0 when no alert is open, 3 when one is raised or still open (acknowledged ones
    included: resolve an alert to stop it counting), so a cron line or a script can act on it."""
    from mldeck.monitor import alerts

    ws, store = _open()
    rules = alerts.default_rules(ws.settings)
    with store.write() as session:  # a rule renamed or removed: its alert is closed, said
        retired = alerts.retire_orphans(session, rules)
    for alert_id in retired:
        print(f"mldeck: alert {alert_id} resolved: its rule is no longer in mldeck.toml",
              file=sys.stderr)  # fmt: skip
    raised = alerts.apply(store, alerts.store_signals(store, rules))
    problems = alerts.run_hooks(raised, ws.settings.monitor.alert_command,
                                ws.settings.monitor.alert_command_timeout, ws.root)  # fmt: skip
    seen = {alert.alert_id for alert in raised}
    others = [a for a in alerts.list_alerts(store, status="active", limit=MAX_LIMIT)
              if a.id not in seen]  # fmt: skip
    if as_json:
        found = [r.payload for r in raised] + [alerts.alert_payload(a) for a in others]
        # As every list --json, and the hooks' problems as 'drift check --json' has them.
        _print_json({"total": len(found), "alerts": found, "hook_problems": problems})
    else:
        for alert in raised:
            word = _alert_word(alert)
            out.print(f"alert {alert.alert_id} {word} [{alert.severity}]: {alert.title}",
                      markup=False)  # fmt: skip
        for row in others:
            word = "acknowledged" if row.status == "acknowledged" else "still open"
            out.print(f"alert {row.id} {word} [{row.severity}]: {row.title}", markup=False)
        if not raised and not others:
            out.print("Nothing to alert.")
    for problem in problems:
        print(f"mldeck: warning: {problem}", file=sys.stderr)
    if raised or others:
        raise typer.Exit(3)


def _alert_word(alert: Any) -> str:
    """How a raised alert stands: raised just now, or open or acknowledged from before."""
    if alert.new:
        return "raised"
    return "acknowledged" if alert.payload.get("status") == "acknowledged" else "still open"


@app.command("kpis")
def kpis_command(
    days: Annotated[
        float,
        typer.Option(
            parser=number_between(0.01, 36500),
            metavar="DAYS",
            help="The window, in days (0.01 to 36500).",
        ),
    ] = 30,
    as_json: JsonOption = False,
) -> None:
    """Delivery and model-health KPIs over the last DAYS days."""
    from mldeck.monitor.kpis import kpis, sections

    ws, store = _open()
    figures = kpis(store, days=days, cost_per_cpu_hour=ws.settings.monitor.cost_per_cpu_hour)
    if as_json:
        _print_json(figures.as_dict())
        return
    for title, items in sections(figures).items():
        _section(title, items)
