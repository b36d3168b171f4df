"""``mldeck runs list | show | compare`` on runs whose text is hostile or long: names, params,
metric keys, logs and errors are shown as printable lines, and tables keep the column that
names their rows."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from mldeck.store.models import Metric, Run, RunKind, RunLog, RunStatus, utcnow

# Text a script may hand the tracking API: a screen-clearing escape, a colour, a new line that
# would make a second row (or a fake log line), a carriage return that would overwrite one.
HOSTILE = "evil\x1b[2Jname\nsecond\rover"


@pytest.fixture
def runs(workspace, store):
    """A run with hostile text everywhere a runs table shows it, and a plain one beside it."""
    with store.write() as session:
        evil = Run(name=HOSTILE, kind=RunKind.TRAIN, status=RunStatus.FAILED,
                   params={"k\x1b[31m": "v\x1b[2J", "p\nq": 1}, tags={"t\x1b": "x"},
                   started_at=utcnow(), ended_at=utcnow(),
                   error="Traceback (most recent call last):\n  ...\nRuntimeError: boom\x1b[2J")  # fmt: skip
        plain = Run(name="plain", kind=RunKind.TRAIN, status=RunStatus.SUCCEEDED)
        session.add_all([evil, plain])
        session.flush()
        session.add(Metric(run_id=evil.id, key="lo\x1bss", value=0.5))
        session.add(RunLog(run_id=evil.id, message="line one\x1b[2J\nfake 2026 info injected"))
        for i in range(30):
            session.add(RunLog(run_id=plain.id, message=f"log {i}"))
        return workspace.root, evil.id, plain.id


def assert_printable(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text, repr(text)


def test_runs_tables_show_hostile_text_as_printable_lines(runs, cli):
    root, evil, plain = runs
    listed = cli("runs", "list", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert_printable(listed.stdout)
    _, *rows = listed.stdout.splitlines()
    assert len(rows) == 2  # one line per run: the name's new line is not a row of its own
    assert any(row.split()[:2] == [str(evil), "evil?[2Jname?second?over"] for row in rows)

    shown = cli("runs", "show", str(evil), cwd=root)
    assert shown.returncode == 0, shown.stderr
    assert_printable(shown.stdout)
    lines = shown.stdout.splitlines()
    assert lines[0] == f"Run {evil}  evil?[2Jname?second?over"
    for needle in ('k?[31m  "v\\u001b[2J"', "p?q", "t?", "lo?ss", "RuntimeError: boom?[2J"):
        assert any(needle in line for line in lines), needle
    # A log message of two lines goes on under itself, never as a log line of its own.
    (logged,) = [line for line in lines if "line one" in line]
    following = lines[lines.index(logged) + 1]
    assert following.strip() == "fake 2026 info injected"
    assert following.startswith(" " * logged.index("line one"))

    compared = cli("runs", "compare", str(evil), str(plain), cwd=root)
    assert compared.returncode == 0, compared.stderr
    assert_printable(compared.stdout)
    assert f"#{evil} evil?[2Jname?second?over" in compared.stdout
    assert "param.k?[31m" in compared.stdout and "v?[2J" in compared.stdout


def test_runs_show_json_honours_logs(runs, cli):
    root, _, plain = runs

    def messages(*args: str) -> tuple[list[str], int]:
        done = cli("runs", "show", str(plain), "--json", *args, cwd=root)
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        return [line["message"] for line in data["logs"]], data["log_count"]

    assert messages("--logs", "3") == (["log 27", "log 28", "log 29"], 30)
    assert messages("--logs", "0") == ([], 30)
    assert messages() == ([f"log {i}" for i in range(30)], 30)  # a script gets them all
    text = cli("runs", "show", str(plain), cwd=root).stdout
    assert "Logs (last 20 of 30)" in text and "log 9\n" not in text and "log 10\n" in text


@pytest.mark.parametrize("width", [40, 60, 80])
def test_a_compare_table_keeps_its_field_names_whole_on_a_narrow_terminal(width):
    """The FIELD column names the rows of 'runs compare': cut, two fields would read alike."""
    from mldeck.cli import _table

    names = ["env.packages.scikit-learn", "env.packages.scikit-image", "metric.val.roc_auc"]
    table = _table("", "FIELD", "#12 train churn on the full history", "#13 train churn again")
    for name in names:
        table.add_row("*", name, "a value that is rather long to fit", "another long value")
    console = Console(width=width, soft_wrap=True, highlight=False, markup=False, emoji=False)
    with console.capture() as captured:
        console.print(table)
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= width
    assert [line.split()[:2] for line in lines[1:]] == [["*", name] for name in names]


def test_runs_show_lists_every_artifact_even_of_one_name(workspace, store, tmp_path, cli):
    """Artifacts were a section keyed by name: a checkpoint logged each epoch showed once."""
    import mldeck

    with mldeck.start_run(name="epochs", workspace=workspace) as run:
        for epoch in range(3):
            checkpoint = tmp_path / "checkpoint.pt"
            checkpoint.write_bytes(f"weights {epoch}".encode())
            run.log_artifact(checkpoint)
    text = cli("runs", "show", "epochs", cwd=workspace.root).stdout
    section = text.split("Artifacts", 1)[1]
    assert section.count("checkpoint.pt") == 3


def test_a_run_named_by_digits_or_with_outer_spaces_is_found_by_its_name(workspace, store, cli):
    """'runs show 2024' said "no run 2024" beside a run named "2024" (a number was an id only),
    and a name's outer spaces, kept by start_run, were stripped from the reference."""
    import mldeck

    with mldeck.start_run(name="2024", workspace=workspace) as year:
        pass
    with mldeck.start_run(name="  padded  ", workspace=workspace) as padded:
        pass
    shown = json.loads(cli("runs", "show", "2024", "--json", cwd=workspace.root).stdout)
    assert shown["id"] == year.id
    shown = json.loads(cli("runs", "show", "  padded  ", "--json", cwd=workspace.root).stdout)
    assert shown["id"] == padded.id
    # A number is an id first: run 1 is run 1 whatever the others are named.
    assert json.loads(cli("runs", "show", "1", "--json", cwd=workspace.root).stdout)["id"] == 1
    missing = cli("runs", "show", "999", cwd=workspace.root)
    assert missing.returncode != 0 and "no run 999" in missing.stderr
