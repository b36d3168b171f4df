"""The ``mldeck`` command line, run for real in child processes."""

from __future__ import annotations

import json
import math
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mldeck import formatting as fmt
from mldeck.config import CONFIG_FILE
from mldeck.store.engine import SCHEMA_REVISION, open_store
from mldeck.workspace import init_workspace, load_workspace, open_workspace_store

USER_SCRIPT = """\
import mldeck

with mldeck.start_run(name="cli-run", kind="train", params={"C": 1.0}) as run:
    run.log_metric("loss", 0.5)
    run.log_metric("loss", 0.25)
    run.log("hello from the script")
print(run.id)
"""

FAILING_SCRIPT = """\
import mldeck

with mldeck.start_run(name="cli-broken", kind="evaluate"):
    raise RuntimeError("evaluation exploded")
"""


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A user mistake: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("mldeck: error: ")
    for needle in needles:
        assert needle in line
    return line


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, cli, run_python):
    """A workspace made by ``mldeck init`` holding one run that succeeded and one that failed."""
    base = tmp_path_factory.mktemp("cli")
    result = cli("init", "ws", cwd=base)
    assert result.returncode == 0, result.stderr
    root = base / "ws"
    (base / "train.py").write_text(USER_SCRIPT)
    (base / "evaluate.py").write_text(FAILING_SCRIPT)
    done = run_python(base / "train.py", cwd=root)
    assert done.returncode == 0, done.stderr
    failed = run_python(base / "evaluate.py", cwd=root)
    assert failed.returncode == 1 and "evaluation exploded" in failed.stderr
    return root, int(done.stdout.strip())


def test_init_creates_a_workspace(tmp_path, cli):
    result = cli("init", "project", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "project"
    assert "Created workspace 'project'" in result.stdout
    assert (root / CONFIG_FILE).is_file()
    assert (root / ".mldeck" / "store.db").is_file()
    assert (root / ".mldeck" / "artifacts").is_dir()
    assert (root / "data" / "incoming").is_dir()
    store = open_store(load_workspace(root).db_url)
    try:
        assert store.schema_revision() == SCHEMA_REVISION
    finally:
        store.close()


def test_init_takes_its_folder_from_workspace_and_refuses_two(tmp_path, cli):
    """`mldeck init --workspace DIR` made a workspace of the current folder, not DIR."""
    for args in (("init", "--workspace", "w1"), ("-w", "w2", "init"), ("init", "-w", "w3", "w3")):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w1", "w2", "w3"]
    assert all((tmp_path / w / CONFIG_FILE).is_file() for w in ("w1", "w2", "w3"))
    assert_one_line_error(cli("init", "a", "-w", "b", cwd=tmp_path), "two folders given")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # MLDECK_WORKSPACE names the workspace to use, not the one to create.
    env = {"MLDECK_WORKSPACE": str(tmp_path / "w1")}
    assert cli("init", "w4", cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "w4" / CONFIG_FILE).is_file()


def test_init_with_a_name(tmp_path, cli):
    result = cli("init", str(tmp_path / "p"), "--name", 'Churn "v2" ✓', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_workspace(tmp_path / "p").name == 'Churn "v2" ✓'


def test_init_refuses_an_existing_workspace(tracked, cli, file_state):
    root, _ = tracked
    files = [root / CONFIG_FILE, root / ".mldeck" / "store.db"]
    before = [file_state(f) for f in files]
    assert_one_line_error(cli("init", str(root), cwd=root.parent), "already an mldeck workspace")
    assert [file_state(f) for f in files] == before


def test_outside_a_workspace(tmp_path, cli):
    result = cli("runs", "list", cwd=tmp_path)
    assert_one_line_error(result, "mldeck init")
    assert result.stdout == ""


def test_workspace_that_does_not_exist(tmp_path, cli):
    assert_one_line_error(
        cli("--workspace", "/does/not/exist", "runs", "list", cwd=tmp_path), "does not exist"
    )


def test_workspace_from_the_environment(tracked, tmp_path, cli):
    root, run_id = tracked
    result = cli("runs", "list", "--json", cwd=tmp_path, env={"MLDECK_WORKSPACE": str(root)})
    assert result.returncode == 0, result.stderr
    assert run_id in [run["id"] for run in json.loads(result.stdout)["runs"]]


def corrupt_store(root: Path) -> Path:
    path = root / ".mldeck" / "store.db"
    path.write_bytes(b"\x00garbage, not a database\xff" * 500)
    return path


def foreign_store(root: Path) -> Path:
    import sqlite3

    path = root / ".mldeck" / "store.db"
    path.unlink()
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    return path


def unknown_config_key(root: Path) -> Path:
    path = root / CONFIG_FILE
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[console]\n", "[console]\nflavour = 'mint'\n"), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (corrupt_store, ("not an SQLite database",)),
        (foreign_store, ("not an mldeck store", "customers")),
        (unknown_config_key, ("unknown key 'flavour'", "allowed: theme")),
    ],
    ids=["corrupted-store", "foreign-store", "unknown-config-key"],
)
def test_bad_workspace_files_are_reported_and_kept(tmp_path, cli, file_state, damage, needles):
    root = init_workspace(tmp_path / "ws").root
    open_workspace_store(load_workspace(root)).close()
    damaged = damage(root)
    before = file_state(damaged)
    assert_one_line_error(cli("runs", "list", cwd=root), *needles)
    assert_one_line_error(cli("init", ".", cwd=root), "already an mldeck workspace")
    assert file_state(damaged) == before


def test_runs_list_json_holds_the_scripts_runs(tracked, cli):
    root, run_id = tracked
    result = cli("runs", "list", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["total"] == 2
    by_name = {run["name"]: run for run in data["runs"]}
    assert by_name["cli-run"]["id"] == run_id
    assert by_name["cli-run"]["status"] == "succeeded"
    assert by_name["cli-run"]["kind"] == "train"
    assert by_name["cli-run"]["trigger"] == "script"
    assert by_name["cli-broken"]["status"] == "failed"
    assert [run["name"] for run in data["runs"]] == ["cli-broken", "cli-run"]  # newest first


def test_runs_list_filters(tracked, cli):
    root, run_id = tracked
    result = cli("runs", "list", "--status", "failed", "--json", cwd=root)
    assert [run["name"] for run in json.loads(result.stdout)["runs"]] == ["cli-broken"]
    result = cli("runs", "list", "--kind", "train", "--name", "cli", "--json", cwd=root)
    assert [run["id"] for run in json.loads(result.stdout)["runs"]] == [run_id]
    result = cli("runs", "list", "--limit", "1", cwd=root)
    assert result.returncode == 0
    assert "cli-broken" in result.stdout and "(1 of 2 shown" in result.stdout
    result = cli("runs", "list", "--status", "cancelled", cwd=root)
    assert result.returncode == 0 and "No runs match." in result.stdout


def test_runs_list_table(tracked, cli):
    root, run_id = tracked
    result = cli("runs", "list", cwd=root)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split()[:5] == ["ID", "NAME", "KIND", "TRIGGER", "STATUS"]
    assert any(
        row.split()[:5] == [str(run_id), "cli-run", "train", "script", "succeeded"] for row in rows
    )


def test_runs_show_json(tracked, cli):
    root, run_id = tracked
    result = cli("runs", "show", str(run_id), "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["id"] == run_id and data["name"] == "cli-run"
    assert data["params"] == {"C": 1.0}
    (loss,) = data["metrics"]
    assert (loss["key"], loss["last"], loss["count"], loss["last_step"]) == ("loss", 0.25, 2, 1)
    assert [line["message"] for line in data["logs"]] == ["hello from the script"]
    assert data["error"] is None
    assert data["code_version"]["entry_point"].endswith(".py")


def test_runs_show_by_name_and_failed_run(tracked, cli):
    root, _ = tracked
    result = cli("runs", "show", "cli-run", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "cli-run" in result.stdout and "Metrics" in result.stdout and "loss" in result.stdout
    assert "hello from the script" in result.stdout
    failed = cli("runs", "show", "cli-broken", cwd=root)
    assert failed.returncode == 0, failed.stderr
    assert "RuntimeError: evaluation exploded" in failed.stdout


def test_runs_show_links_a_job_run_and_its_steps(tmp_path, cli):
    """A scheduled job's run and the run its step makes (same name): each says which is which."""
    from mldeck.store.models import Run, RunKind

    root = init_workspace(tmp_path / "ws", name="ws").root
    store = open_workspace_store(load_workspace(root))
    try:
        with store.write() as session:
            job = Run(name="drift churn:v6", kind=RunKind.DRIFT)
            session.add(job)
            session.flush()
            step = Run(name="drift churn:v6", kind=RunKind.DRIFT, parent_run_id=job.id)
            session.add(step)
            session.flush()
            job_id, step_id = job.id, step.id
    finally:
        store.close()
    shown = cli("runs", "show", str(job_id), cwd=root)
    assert shown.returncode == 0, shown.stderr
    assert f"steps    run {step_id}  drift churn:v6" in shown.stdout
    shown = cli("runs", "show", str(step_id), cwd=root)
    assert f"step of  run {job_id}  drift churn:v6" in shown.stdout
    data = json.loads(cli("runs", "show", str(job_id), "--json", cwd=root).stdout)
    assert data["parent"] is None and data["children"] == [
        {"id": step_id, "name": "drift churn:v6"}
    ]
    # The list tells them apart too: the step names its job.
    listed = cli("runs", "list", cwd=root).stdout.splitlines()
    assert listed[1].split()[:5] == [str(step_id), "drift", "churn:v6", "·", "step"]
    assert f"churn:v6 · step of {job_id} " in listed[1]
    assert listed[2].split()[:4] == [str(job_id), "drift", "churn:v6", "drift"]
    rows = json.loads(cli("runs", "list", "--json", cwd=root).stdout)["runs"]
    assert [(r["id"], r["parent_run_id"]) for r in rows] == [(step_id, job_id), (job_id, None)]


def test_runs_show_unknown(tracked, cli):
    root, _ = tracked
    assert_one_line_error(cli("runs", "show", "999", cwd=root), "no run 999")
    assert_one_line_error(cli("runs", "show", "no-such-run", cwd=root), "'no-such-run'")


def test_runs_list_unknown_status(tracked, cli):
    root, _ = tracked
    line = assert_one_line_error(cli("runs", "list", "--status", "bogus", cwd=root), "'bogus'")
    assert "succeeded" in line and "failed" in line


@pytest.mark.parametrize(
    "command",
    [[], ["init"], ["tui"], ["demo"], ["runs"], ["runs", "list"], ["runs", "show"]],
    ids=lambda c: " ".join(c) or "root",
)
def test_help_on_every_command(tmp_path, cli, command):
    result = cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # asking for help creates nothing


def test_a_nan_metric_is_told_from_a_missing_one_in_compare_json():
    """Both were null: a diverged run looked like one that never logged the metric."""
    from mldeck.cli import _finite
    from mldeck.store.queries import ComparedField, RunComparison

    field = ComparedField("metric", "a", [math.nan, None, 0.5], [True, False, True])
    compared = RunComparison([], [field])
    (field,) = json.loads(json.dumps(_finite(compared.as_dict())))["fields"]
    assert field["values"] == [None, None, 0.5]
    assert field["present"] == [True, False, True]


def test_runs_compare(tracked, cli):
    root, run_id = tracked
    answer = cli("runs", "compare", "cli-run", "cli-broken", "--json", cwd=root)
    assert answer.returncode == 0, answer.stderr
    compared = json.loads(answer.stdout)
    assert [r["name"] for r in compared["runs"]] == ["cli-run", "cli-broken"]
    fields = {f["key"]: f for f in compared["fields"]}
    assert fields["status"]["values"] == ["succeeded", "failed"] and fields["status"]["differs"]
    assert fields["loss"]["values"] == [0.25, None] and fields["C"]["values"] == [1.0, None]
    assert fields["loss"]["present"] == [True, False]
    # Why the failed one failed: its error's last line, beside nothing for the other.
    assert fields["error"]["values"][0] is None
    assert fields["error"]["values"][1].endswith("evaluation exploded")
    text = cli("runs", "compare", str(run_id), "cli-broken", "--diff", cwd=root)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["FIELD", f"#{run_id}", "cli-run"]
    assert any(line.split()[:4] == ["*", "metric.loss", "0.25", "-"] for line in lines)
    assert not any(" env.python " in f" {line} " for line in lines)  # equal: left out
    assert "fields differ" in lines[-1]
    assert_one_line_error(cli("runs", "compare", "cli-run", cwd=root), "compare 2 to 8")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["models", "approve", "churn:1"],
            ["Missing option '--reason'", "'mldeck models approve -h'"],
        ),
        (["data", "show"], ["Missing argument 'VERSION'", "(see 'mldeck data show -h')"]),
        (["data", "list", "--stat"], ["No such option: --stat", "--status"]),
        (["runs", "list", "--limit", "0"], ["Invalid value for '--limit'"]),
        (["bogus"], ["No such command 'bogus'", "(see 'mldeck -h')"]),
        (["train"], ["No such command 'train'", "(did you mean 'mldeck run train'?)"]),
        (["demo", "never-made", "--feed", "1"], ["Invalid value for '--feed'"]),
        (
            ["runs", "list", "--kind"],
            ["'--kind' requires an argument", "(see 'mldeck runs list -h')"],
        ),
    ],
    ids=[
        "missing option",
        "missing argument",
        "unknown option",
        "out of range",
        "unknown command",
        "a command of a group",
        "demo week too short",
        "option without its value",
    ],
)
def test_usage_mistakes_are_one_line_like_other_errors(tracked, cli, args, needles):
    """Click's own format (usage, a hint, a blank line, the error) is not what every other
    mistake looks like: one line naming it and where the help is, exit status 2."""
    result = cli(*args, cwd=tracked[0])
    assert result.returncode == 2
    assert_one_line_error(result, *needles)


def test_help_names_what_options_take_in_words(tmp_path, cli):
    ingest = cli("data", "ingest", "--help", cwd=tmp_path)
    assert "--dataset NAME" in ingest.stdout and "{FILE}..." in ingest.stdout
    listing = cli("runs", "list", "--help", cwd=tmp_path)
    assert "--limit N" in listing.stdout and "--status STATUS" in listing.stdout
    # Every option of the commands defined in cli.py: a word, not the type ('<int range>').
    import typer

    from mldeck.cli import app

    def commands(group):
        for command in group.commands.values():
            yield from commands(command) if hasattr(command, "commands") else [command]

    raw = []
    for command in commands(typer.main.get_command(app)):
        if command.callback.__module__ != "mldeck.cli":
            continue  # cli_jobs.py, cli_monitor.py
        ctx = type(command).context_class(command)
        for param in command.params:
            record = param.get_help_record(ctx)
            if param.param_type_name == "option" and record and "<" in record[0]:
                raw.append(f"{command.name}: {record[0]}")
    assert raw == []


def test_a_command_group_alone_shows_its_help(tmp_path, cli):
    result = cli("data", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Usage: mldeck data" in result.stdout + result.stderr and "revalidate" in result.stderr


def test_version(tmp_path, cli):
    import mldeck

    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"mldeck {mldeck.__version__}"


@pytest.mark.parametrize("args", [["runs", "show"], ["runs", "list", "--limit", "0"]])
def test_usage_errors_are_one_line(tmp_path, cli, args):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# -- the human formatting the commands print ----------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (-3, "0.0s"), (2.345, "2.3s"), (42, "42s"), (59.6, "1m00s"), (3725, "1h02m")],
)
def test_format_duration(seconds, text):
    value = None if seconds is None else timedelta(seconds=seconds)
    assert fmt.duration(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (5 * 1024**2, "5.0 MB")],
)
def test_format_size(value, text):
    assert fmt.size(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "NaN"),
        (float("inf"), "inf"),
        (3.0, "3"),
        (0.5, "0.5"),
        (0.123456, "0.1235"),
        (1234.5, "1234.5"),
        (1e-5, "1e-05"),
        (2.5e7, "25000000"),
        (25_000_000.5, "2.5e+07"),
    ],
)
def test_format_number(value, text):
    assert fmt.number(value) == text


def test_a_noted_time_is_shown_in_local_time_as_every_other(monkeypatch):
    """'data quarantine' showed a note's failure time as raw UTC ISO text."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert fmt.when_text("2026-12-07T03:13:59+00:00") == "2026-12-07 12:13:59"
        assert fmt.when_text("sometime") == "sometime"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    ("text", "width", "shown"),
    [("drift churn:v31", 20, "drift churn:v31"), ("drift churn:v31", 10, "drift…:v31"),
     ("validate week_13_shift.csv", 14, "validat…ft.csv"), ("ab", 1, "…b")],
)  # fmt: skip
def test_a_name_cut_in_the_middle_keeps_its_end(text, width, shown):
    """Runs named 'drift churn:v31' and 'drift churn:v32' were both 'drift churn:v…'."""
    assert fmt.cut_middle(text, width) == shown
    assert len(shown) <= max(width, 2)


@pytest.mark.parametrize(
    "args",
    [["--workspace=/x", "jobs", "run", "a"], ["-w/x", "jobs", "run", "a"],
     ["-w", "/x", "jobs", "run", "a"]],
)  # fmt: skip
def test_the_command_is_found_past_a_workspace_option_in_one_argument(args):
    """'--workspace=DIR jobs run' read as the console: SIGTERM was not handled for it."""
    import typer

    from mldeck.cli import _command_path, app

    assert _command_path(typer.main.get_command(app), args) == "mldeck jobs run"


def test_a_steps_name_keeps_its_batch_before_its_job():
    """'drift churn:v6 · step of 38' cut in the middle kept 'step of 38' and lost the batch."""
    from mldeck.store.queries import RunRow
    from mldeck.tui.screens.runs import _fitted_label

    step = RunRow(id=39, name="drift churn:v6", kind="drift", status="succeeded", trigger="x",
                  created_at=None, started_at=None, ended_at=None, progress=None,
                  progress_message="", user="", parent_id=38)  # fmt: skip
    assert _fitted_label(step, 40) == "drift churn:v6 · step of 38"
    assert _fitted_label(step, 18) == "drift churn:v6 ↳38"
    # Shorter: the verb goes first (the KIND column beside says it), then the batch is cut.
    assert _fitted_label(step, 14) == "churn:v6 ↳38"
    assert _fitted_label(step, 10) == "chu…v6 ↳38"


def test_format_when_and_progress():
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert fmt.when(None) == "-"
    assert fmt.when(moment) == moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert fmt.progress(0.456, "running") == "46%"
    assert fmt.progress(0.456, "succeeded") == ""
    assert fmt.progress(None, "running") == ""


def test_format_plural():
    assert fmt.plural(1, "run") == "1 run"
    assert fmt.plural(0, "run") == "0 runs"
    assert fmt.plural(2, "query", "queries") == "2 queries"


@pytest.mark.parametrize("polars_panic", [False, True])
def test_an_interrupted_command_says_so_and_exits_130(monkeypatch, capsys, polars_panic):
    """Ctrl-C while the command works, also when it came while polars called back into Python
    (its panic is the same Ctrl-C): one line, no traceback."""
    from mldeck import cli

    from .test_tracking import POLARS_PANIC

    def pressed_ctrl_c(*_args, **_kwargs):
        raise POLARS_PANIC if polars_panic else KeyboardInterrupt

    monkeypatch.setattr(cli, "_open", pressed_ctrl_c)
    with pytest.raises(SystemExit) as exited:
        cli.main(["runs", "list"])
    assert exited.value.code == 130
    assert capsys.readouterr().err == "mldeck: interrupted\n"


def test_a_second_interrupt_does_not_cut_the_cleanup_of_the_first(monkeypatch):
    from mldeck import cli

    monkeypatch.setattr(cli, "_INTERRUPTED", {})
    with pytest.raises(KeyboardInterrupt):
        cli._interrupt(2, None)
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        assert cli._interrupt(2, None) is None  # the run's end is being recorded: let it finish
        # Pressed again later (a cleanup stuck on a busy store): the user can still get out.
        monkeypatch.setattr(cli, "INTERRUPT_GRACE_SECONDS", 0.0)
        with pytest.raises(KeyboardInterrupt):
            cli._interrupt(2, None)


@pytest.mark.parametrize(
    "args",
    [
        ["kpis", "--days", "1000000"],
        ["runs", "list", "--limit", "99999999999999999999"],
        ["audit", "list", "--limit", "99999999999999999999"],
        ["alerts", "ack", "99999999999999999999"],
    ],
    ids=lambda a: " ".join(a),
)
def test_numbers_out_of_range_are_usage_errors(tracked, cli, args):
    result = cli(*args, cwd=tracked[0])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Invalid value" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["kpis", "--days", "nan"], "'--days': a number from 0.01 to 36500, not 'nan'"),
        (["kpis", "--days", "inf"], "'--days': a number from 0.01 to 36500, not 'inf'"),
        (["kpis", "--days", "week"], "'--days': 'week' is not a number"),
        (["runs", "reproduce", "1", "--tolerance", "nan"], "a number 0 or more, not 'nan'"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_a_float_option_says_its_range_for_nan_too(tracked, cli, args, needle):
    """'nan' compares false with both bounds: it read 'should be less than or equal to 36500'."""
    assert_one_line_error(cli(*args, cwd=tracked[0]), needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["drift", "show", "#99999999999999999999"], "no drift report 99999999999999999999"),
        (
            ["models", "show", "churn:99999999999999999999"],
            "no model version churn:99999999999999999999",
        ),
        (["data", "show", "churn:v99999999999999999999"], "no dataset version"),
        (["data", "list", "--status", "bogus"], "unknown status 'bogus'"),
        (["daemon", "--log", "."], "cannot write the log"),
        (["runs", "list", "-w"], "-w needs a workspace folder"),
        (["data", "infer", "no-such.csv"], "cannot infer from no-such.csv: no such file"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_references_beyond_sqlite_integers_and_bad_options_are_one_line(tracked, cli, args, needle):
    assert_one_line_error(cli(*args, cwd=tracked[0]), needle)


URLS_THAT_CANNOT_WORK = [
    ("garbage", "is not a database URL"),
    ("postgresql://u:secret@host:abc/db", "'postgresql://u:***@host:abc/db' is not a database"),
    ("mysql://u@localhost/db", "database driver"),
    ("postgres+psycopg://u@localhost/db", "kind of database SQLAlchemy does not know ('postgres"),
    # A server that is not there: psycopg's message and its hint, on one line.
    ("postgresql+psycopg://u@127.0.0.1:9/db", "connection failed"),
]


@pytest.mark.parametrize(("url", "needle"), URLS_THAT_CANNOT_WORK)
def test_a_store_url_that_cannot_work_is_one_line(tracked, cli, url, needle):
    assert_one_line_error(cli("runs", "list", cwd=tracked[0], env={"MLDECK_DB_URL": url}), needle)


@pytest.mark.parametrize(("url", "needle"), URLS_THAT_CANNOT_WORK[:2])
def test_a_bad_store_url_for_a_workspace_with_data_is_one_line(cli, tmp_path, url, needle):
    """The workspace holds files another store recorded: the URL's own error, not a traceback
    on the way to the message that names the URL."""
    assert cli("init", "ws", cwd=tmp_path).returncode == 0
    data = tmp_path / "one.csv"
    data.write_text("a,b\n1,2\n")
    assert cli("data", "ingest", str(data), cwd=tmp_path / "ws").returncode == 0
    result = cli("runs", "list", cwd=tmp_path / "ws", env={"MLDECK_DB_URL": url})
    assert_one_line_error(result, needle)


def test_alerts_check_exits_3_while_something_alerts(cli, tmp_path):
    assert cli("init", "ws", cwd=tmp_path).returncode == 0
    root = tmp_path / "ws"
    quiet = cli("alerts", "check", cwd=root)
    assert (quiet.returncode, quiet.stdout.strip()) == (0, "Nothing to alert.")
    with open(root / "mldeck.toml", "a", encoding="utf-8") as fh:  # stale after 0.36 s
        fh.write('\n[[monitor.alerts]]\nname = "stale"\nwhen = "freshness"\nhours = 0.0001\n')
    data = tmp_path / "one.csv"
    data.write_text("a,b\n1,2\n")
    assert cli("data", "ingest", str(data), cwd=root).returncode == 0
    stale = cli("alerts", "check", cwd=root)
    assert stale.returncode == 3 and stale.stdout.startswith("alert 1 raised [warning]: "), stale
    assert cli("alerts", "check", "--json", cwd=root).returncode == 3  # still open


def test_a_filter_that_matches_nothing_says_so(cli, tmp_path):
    assert cli("init", "ws", cwd=tmp_path).returncode == 0
    root = tmp_path / "ws"
    data = tmp_path / "one.csv"
    data.write_text("a,b\n1,2\n")
    assert cli("data", "ingest", str(data), cwd=root).returncode == 0
    result = cli("data", "list", "--status", "rejected", cwd=root)
    assert (result.returncode, result.stdout.strip()) == (0, "No dataset versions match.")
    # A dataset that does not exist is a typo, said with the datasets there are (as 'models
    # list --model' says): "No dataset versions match." read as an empty dataset.
    typo = cli("data", "list", "--dataset", "nope", cwd=root)
    assert_one_line_error(typo, "no dataset 'nope' (datasets: ")


@pytest.mark.parametrize("width", [40, 50, 60, 80, 120])
def test_a_table_fits_a_narrow_terminal_without_cutting_ids(width):
    from rich.console import Console

    from mldeck.cli import _table

    table = _table("ID", "NAME", "KIND", "TRIGGER", "STATUS", "STARTED", "DURATION")
    for run_id in (7, 12345):
        table.add_row(str(run_id), "validate a rather long file name.csv", "validate", "manual",
                      "cancelled", "2026-12-05 07:19:14", "0.5s")  # fmt: skip
    console = Console(width=width, soft_wrap=True, highlight=False, markup=False, emoji=False)
    with console.capture() as captured:
        console.print(table)
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= width
    assert [line.split()[0] for line in lines] == ["ID", "7", "12345"]  # ids whole, first
    assert "NAME" in lines[0] and "STATUS" in lines[0]
    if width >= 120:  # room for everything: nothing left out, nothing cut
        assert "DURATION" in lines[0] and "validate a rather long file name.csv" in lines[1]
    elif width == 80:  # the widest cells are cut first
        assert "TRIGGER" in lines[0] and "…" in lines[1]
    else:  # then the least useful column goes
        assert "TRIGGER" not in lines[0]


def test_a_very_long_name_in_a_key_column_is_cut_not_the_verdicts_dropped():
    """One 250-character feature name left no room: METHOD, SCORE and DRIFT were dropped for
    every row of 'drift check'."""
    from rich.console import Console

    from mldeck.cli import _table

    table = _table("FEATURE", "METHOD", "SCORE", "THRESHOLD", "DRIFT")
    table.add_row("a", "wasserstein", "5.1", "0.1", "DRIFT")
    table.add_row("f_" + "x" * 250, "wasserstein", "0.01", "0.1", "-")
    console = Console(width=120, soft_wrap=True, highlight=False, markup=False, emoji=False)
    with console.capture() as captured:
        console.print(table)
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= 120
    assert lines[0].split() == ["FEATURE", "METHOD", "SCORE", "THRESHOLD", "DRIFT"]
    assert lines[1].split() == ["a", "wasserstein", "5.1", "0.1", "DRIFT"]
    assert lines[2].split()[0].endswith("…") and lines[2].split()[-1] == "-"


def test_a_table_measures_wide_characters_by_their_cells_and_keeps_ids_at_any_width():
    from rich.console import Console

    from mldeck.cli import _table

    def render(width: int, *rows: tuple[str, ...]) -> list[str]:
        table = _table("ID", "NAME", "STATUS", "ALERT", wrap="ALERT")
        for row in rows:
            table.add_row(*row)
        console = Console(width=width, soft_wrap=True, highlight=False, markup=False, emoji=False)
        with console.capture() as captured:
            console.print(table)
        return captured.get().splitlines()

    row = ("123456789", "训练数据模型 churn 基线", "open", "a long alert text to wrap")
    assert "训练数据模型 churn 基线" in render(200, row)[1]  # two cells per character, not one
    narrow = render(20, row)
    assert narrow[0].split()[0] == "ID" and narrow[1].split()[0] == "123456789"
    assert render(20)[0].startswith("ID")  # an empty table draws its headers without error


def test_an_unwritable_quarantine_folder_is_one_line_and_leaves_no_run_running(tmp_path, cli):
    assert cli("init", "ws", cwd=tmp_path).returncode == 0
    root = tmp_path / "ws"
    quarantine = root / "data" / "quarantine"
    if quarantine.is_dir():
        quarantine.rmdir()
    quarantine.write_text("not a folder")  # as unusable as a read-only one, even for root
    (tmp_path / "ab.csv").write_text("a,b\n1,2\n")
    result = cli("data", "ingest", str(tmp_path / "ab.csv"), cwd=root)
    assert_one_line_error(result, str(quarantine))
    assert result.returncode == 2
    runs = json.loads(cli("runs", "list", "--json", cwd=root).stdout)["runs"]
    assert runs and {r["status"] for r in runs} == {"failed"}


def test_small_cli_answers_say_what_is_true(tmp_path, cli):
    assert cli("init", "ws", cwd=tmp_path).returncode == 0
    root = tmp_path / "ws"
    (tmp_path / "ab.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "header.csv").write_text("a,b\n")
    # Dataset names prefix version references: empty, padded or with ':' are refused.
    for bad in ("", "  ", "churn:v2", "a/b"):
        result = cli("data", "ingest", "--dataset", bad, str(tmp_path / "ab.csv"), cwd=root)
        assert_one_line_error(result, "a dataset's name")
    assert (
        cli("data", "ingest", "--dataset", "one", str(tmp_path / "ab.csv"), cwd=root).returncode
        == 0
    )
    # The same content named for another dataset is one version: said, not silently ignored.
    again = cli("data", "ingest", "--dataset", "two", str(tmp_path / "ab.csv"), cwd=root)
    assert_one_line_error(again, "already stored as one:v1", "not added to dataset 'two'")
    # A header without rows teaches nothing about types or nulls.
    assert_one_line_error(cli("data", "infer", str(tmp_path / "header.csv"), cwd=root),
                          "no rows")  # fmt: skip
    assert_one_line_error(cli("jobs", "edit", "x", cwd=root), "--enable/--disable")
