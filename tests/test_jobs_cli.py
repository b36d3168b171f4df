"""``mldeck jobs ...`` as a user runs it (a child process on a real workspace)."""

from __future__ import annotations

import json
import re

import pytest

from mldeck.workspace import Workspace

from .test_cli import assert_one_line_error

JOBS = """
[jobs]
min_free_disk_mb = 0
retry_base_seconds = 0.1

[jobs.schedules.health]
kind = "health"
every = "15m"

[jobs.schedules.nightly]
kind = "train"
cron = "0 2 * * *"
retries = 2
"""


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write(JOBS)
    return workspace


def test_list_shows_the_config_schedules_and_nobody_acting(ws, cli):
    done = cli("jobs", "list", cwd=ws.root)
    assert done.returncode == 0, done.stderr
    assert "scheduler: none running" in done.stdout
    assert "health" in done.stdout and "every 15m" in done.stdout
    assert "cron 0 2 * * *" in done.stdout
    data = json.loads(cli("jobs", "list", "--json", cwd=ws.root).stdout)
    assert data["scheduler"] is None and data["total"] == len(data["schedules"]) == 2
    by_name = {s["name"]: s for s in data["schedules"]}
    assert by_name["nightly"]["retries"] == 2 and by_name["nightly"]["state"] == "active"
    assert by_name["health"]["next_fire_at"] is not None


def test_pause_resume_edit_and_add(ws, cli):
    assert cli("jobs", "pause", "health", cwd=ws.root).returncode == 0
    assert_one_line_error(cli("jobs", "pause", "health", cwd=ws.root), "already paused")
    data = json.loads(cli("jobs", "list", "--json", cwd=ws.root).stdout)
    paused = {s["name"]: s for s in data["schedules"]}["health"]
    assert paused["state"] == "paused" and paused["next_fire_at"] is None
    assert cli("jobs", "resume", "health", cwd=ws.root).returncode == 0
    assert cli("jobs", "edit", "health", "--disable", cwd=ws.root).returncode == 0
    # Disabled and not paused: resuming says what stops it ("already active" was not true).
    assert_one_line_error(cli("jobs", "resume", "health", cwd=ws.root),
                          "schedule health is not paused; it is disabled ('mldeck jobs edit "
                          "health --enable' lets it run)")  # fmt: skip
    paused_too = cli("jobs", "pause", "health", cwd=ws.root)
    assert paused_too.returncode == 0 and "it is disabled as well" in paused_too.stdout
    resumed = cli("jobs", "resume", "health", cwd=ws.root).stdout
    assert "it is disabled, so it does not run until enabled" in resumed
    assert cli("jobs", "edit", "health", "--enable", cwd=ws.root).returncode == 0
    edited = cli("jobs", "edit", "health", "--every", "5m", "--retries", "1", cwd=ws.root)
    assert edited.returncode == 0 and "every 5m" in edited.stdout and "retries 1" in edited.stdout
    assert_one_line_error(cli("jobs", "edit", "health", "--cron", "soon", cwd=ws.root),
                          "not a crontab expression")  # fmt: skip
    assert_one_line_error(cli("jobs", "edit", "health", "--params", "[1]", cwd=ws.root),
                          "JSON object")  # fmt: skip
    assert_one_line_error(cli("jobs", "pause", "nope", cwd=ws.root), "no schedule named 'nope'")
    added = cli("jobs", "add", "drift-hourly", "--kind", "drift", "--every", "1h", cwd=ws.root)
    assert added.returncode == 0, added.stderr
    assert_one_line_error(
        cli("jobs", "add", "drift-hourly", "--kind", "drift", "--every", "1h", cwd=ws.root),
        "exists",
    )
    assert_one_line_error(
        cli("jobs", "add", "x", "--kind", "dance", "--every", "1h", cwd=ws.root), "unknown job kind"
    )
    # A sync from mldeck.toml leaves the CLI's schedule and the table's edits alone.
    data = json.loads(cli("jobs", "list", "--json", cwd=ws.root).stdout)
    by_name = {s["name"]: s for s in data["schedules"]}
    assert by_name["drift-hourly"]["source"] == "cli"
    assert by_name["health"]["interval_seconds"] == 300


def test_run_here_and_health(ws, cli):
    done = cli("jobs", "run", "health", cwd=ws.root)
    assert done.returncode == 0, done.stderr
    (run_id,) = re.findall(r"health: succeeded \(run (\d+)\)", done.stdout)
    failed = cli("jobs", "run", "nightly", "--json", cwd=ws.root)
    outcome = json.loads(failed.stdout)
    assert failed.returncode == 1 and outcome["status"] == "failed"
    assert len(outcome["run_ids"]) == 3  # two retries
    listed = cli("jobs", "list", cwd=ws.root).stdout
    assert re.search(rf"\brun {run_id}, \d\d\d\d-\d\d-\d\d \d\d:\d\d", listed), listed
    assert "[model] target is not set" in outcome["error"]
    health = cli("jobs", "health", "--json", cwd=ws.root)
    checks = {c["name"]: c["status"] for c in json.loads(health.stdout)["checks"]}
    assert checks["store"] == "ok" and checks["scheduler"] == "warn"
    # One failed job is one failure, whatever its retries (its 3 attempts read as "the last 3
    # runs failed" and opened a critical alert) ...
    assert checks["failures"] == "ok", health.stdout
    # ... three failed jobs in a row of one schedule fail the check (exit status 1).
    for _ in range(2):
        assert cli("jobs", "run", "nightly", cwd=ws.root).returncode == 1
    health = cli("jobs", "health", "--json", cwd=ws.root)
    checks = {c["name"]: c["status"] for c in json.loads(health.stdout)["checks"]}
    assert checks["failures"] == "fail" and health.returncode == 1


def test_add_with_params_and_remove(ws, cli):
    bad = cli("jobs", "add", "s1", "--kind", "score", "--every", "1h", "--params",
              '{"dataset_version_id": "x"}', cwd=ws.root)  # fmt: skip
    assert_one_line_error(bad, "--params")
    # A dataset version that does not exist is said now, not when the job first runs.
    missing = cli("jobs", "add", "s1", "--kind", "score", "--every", "1h", "--params",
                  '{"dataset_version_id": 1}', cwd=ws.root)  # fmt: skip
    assert_one_line_error(missing, "--params: no dataset version 1")
    (ws.root / "first.csv").write_text("a,b\n1,x\n2,y\n", encoding="utf-8")
    assert cli("data", "ingest", "first.csv", "--reference", cwd=ws.root).returncode == 0
    added = cli("jobs", "add", "s1", "--kind", "score", "--every", "1h", "--params",
                '{"dataset_version_id": 1}', cwd=ws.root)  # fmt: skip
    assert added.returncode == 0, added.stderr
    # A rejected batch is never scored nor checked: every run would fail and alert.
    (ws.root / "semi.csv").write_text("a;b\n1;x\n", encoding="utf-8")
    assert cli("data", "ingest", "semi.csv", cwd=ws.root).returncode == 4
    rejected = cli("jobs", "add", "d1", "--kind", "drift", "--every", "1h", "--params",
                   '{"dataset_version_id": 2}', cwd=ws.root)  # fmt: skip
    assert_one_line_error(rejected, "--params: default:v2 (dataset version 2) was rejected by "
                          "validation")  # fmt: skip
    data = json.loads(cli("jobs", "list", "--json", cwd=ws.root).stdout)
    assert {s["name"]: s for s in data["schedules"]}["s1"]["params"] == {"dataset_version_id": 1}
    # A schedule from mldeck.toml is not removed from the CLI: the config would bring it back.
    assert_one_line_error(cli("jobs", "remove", "health", cwd=ws.root), "mldeck.toml")
    assert_one_line_error(cli("jobs", "remove", "nope", cwd=ws.root), "no schedule named 'nope'")
    removed = cli("jobs", "remove", "s1", cwd=ws.root)
    assert removed.returncode == 0 and "removed s1" in removed.stdout
    data = json.loads(cli("jobs", "list", "--json", cwd=ws.root).stdout)
    assert "s1" not in {s["name"] for s in data["schedules"]}
    assert "health" in {s["name"] for s in data["schedules"]}
    audit = cli("audit", "list", "--json", cwd=ws.root).stdout
    assert "schedule.removed" in audit


def test_a_config_schedule_shadowed_by_a_cli_one_is_said_by_jobs_list(ws, cli):
    """`jobs add X` then `[jobs.schedules.X]` in mldeck.toml: the entry was ignored in silence
    (only a running scheduler said so)."""
    assert cli("jobs", "add", "sweep", "--kind", "health", "--every", "5m",
               cwd=ws.root).returncode == 0  # fmt: skip
    with open(ws.config_path, "a", encoding="utf-8") as fh:
        fh.write('\n[jobs.schedules.sweep]\nkind = "train"\ncron = "0 2 * * *"\n')
    listed = cli("jobs", "list", cwd=ws.root)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.strip() == (
        "mldeck: warning: schedule sweep in mldeck.toml is not applied: a schedule of that name "
        "was added with 'mldeck jobs add' and stays as it is (rename one of them)"
    )


def test_a_line_stdout_cannot_spell_does_not_silence_the_daemon():
    """A batch named 'été.csv' under an ASCII locale was taken for stdout gone: every later
    line of the daemon was lost."""
    import subprocess
    import sys

    from .conftest import clean_environ

    code = ("from mldeck.cli_jobs import _Stdout; say = _Stdout(); "
            "say('a'); say('batch_été.csv accepted'); say('b'); print('c')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean_environ(), "PYTHONIOENCODING": "ascii"}, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["a", "batch_?t?.csv accepted", "b", "c"]
