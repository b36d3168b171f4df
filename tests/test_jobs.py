"""Orchestration: schedules, the lease, the job runner (real worker processes), orphans, health
checks, the scheduler's misfire policy and the retrain policies, on real stores."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mldeck import provenance
from mldeck.config import parse_settings
from mldeck.errors import ConfigError, MldeckError, NotFound
from mldeck.jobs import policies
from mldeck.jobs.health import run_checks
from mldeck.jobs.lease import LeaseKeeper, holder
from mldeck.jobs.orphans import mark_orphans
from mldeck.jobs.runner import JobRequest, JobRunner, attempt_folder, backoff_seconds
from mldeck.jobs.scheduler import DeckScheduler
from mldeck.jobs.schedules import (
    add,
    edit,
    get_schedule,
    list_schedules,
    request_run,
    set_paused,
    sync_from_settings,
)
from mldeck.jobs.settings import JobSettings, check_cron, cron_trigger, parse_every
from mldeck.store.models import (
    Alert,
    AuditEvent,
    HealthCheck,
    Lease,
    ModelVersion,
    Run,
    RunStatus,
    Schedule,
    utcnow,
)
from mldeck.workspace import Workspace, load_workspace

from .conftest import at_once
from .jobs_helpers import (
    copy_workspace,
    count,
    make_template,
    open_store,
    pid_alive,
    wait_for,
)

FAST = """
[jobs]
lease_seconds = 3
retry_base_seconds = 0.2
retry_max_seconds = 1
min_free_disk_mb = 0
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(tmp_path_factory.mktemp("jobs-template") / "ws")


@pytest.fixture
def ws_store(template: Path, tmp_path: Path):
    workspace = copy_workspace(template, tmp_path / "ws", FAST)
    store = open_store(workspace)
    yield workspace, store
    store.close()


# -- settings and the schedule table ----------------------------------------------------------------
def test_schedule_settings_are_checked():
    assert parse_every("90s") == 90 and parse_every("2h") == 7200
    with pytest.raises(ValueError, match="not an interval"):
        parse_every("soon")
    with pytest.raises(ValueError, match=r"'0s' is no interval: a job runs every 1s or more"):
        parse_every("0s")  # a number and a unit, but nothing to wait
    with pytest.raises(ConfigError, match="crontab"):
        parse_settings('[jobs.schedules.a]\nkind = "health"\ncron = "61 * * * *"\n')
    with pytest.raises(ConfigError, match="either cron"):
        parse_settings('[jobs.schedules.a]\nkind = "health"\ncron = "* * * * *"\nevery = "1m"\n')
    with pytest.raises(ConfigError, match="kind"):
        parse_settings('[jobs.schedules.a]\nkind = "dance"\nevery = "1m"\n')


def test_sync_keeps_table_edits_until_the_config_entry_changes(store):
    settings = JobSettings.model_validate({"schedules": {
        "nightly": {"kind": "train", "cron": "0 2 * * *"},
        "health": {"kind": "health", "every": "5m"},
    }})  # fmt: skip
    assert {c.change for c in sync_from_settings(store, settings)} == {"added"}
    edit(store, "health", every="1m")
    set_paused(store, "nightly", True)
    assert sync_from_settings(store, settings) == []  # unchanged config: the edits stay
    assert get_schedule(store, "health").interval_seconds == 60
    changed = JobSettings.model_validate(
        {"schedules": {"health": {"kind": "health", "every": "10m"}}}
    )
    changes = {(c.name, c.change) for c in sync_from_settings(store, changed)}
    assert changes == {("health", "updated"), ("nightly", "removed")}
    assert get_schedule(store, "health").interval_seconds == 600
    with pytest.raises(NotFound, match="no schedule named 'nightly'"):
        get_schedule(store, "nightly")
    with store.read() as session:
        actions = session.execute(select(AuditEvent.action)).scalars().all()
    assert actions.count("schedule.edit") == 1 and "schedule.pause" in actions


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('kind = "drift"\nparams = {dataset_version_id = "three"}', "a dataset version's id"),
        ('kind = "health"\nparams = {dataset = "x"}', "takes no parameters, not 'dataset'"),
        ('kind = "score"\nparams = {version = 3}', "takes dataset_version_id, trigger"),
        ('kind = "retrain"\nparams = {reasons = "drift"}', "a list of sentences"),
        # A person's trigger would put the scheduler's work under the user's name in the audit.
        ('kind = "train"\nparams = {trigger = "manual"}', "not 'manual'"),
        ('kind = "train"\nparams = {trigger = "banana"}', "one of: schedule, new_data, drift"),
    ],
)
def test_a_schedules_parameters_are_checked_when_the_config_is_read(entry, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_settings(f'[jobs.schedules.a]\n{entry}\nevery = "1m"\n')


@pytest.mark.parametrize(
    ("cron", "fires"),
    [
        (
            "0 9 * * 1-5",
            [
                "Mon 07 09:00",
                "Tue 08 09:00",
                "Wed 09 09:00",
                "Thu 10 09:00",
                "Fri 11 09:00",
                "Mon 14 09:00",
            ],
        ),
        ("0 2 * * 0", ["Sun 13 02:00", "Sun 20 02:00"]),
        ("0 2 * * 7", ["Sun 13 02:00", "Sun 20 02:00"]),
        ("0 2 * * 5-7", ["Fri 11 02:00", "Sat 12 02:00", "Sun 13 02:00", "Fri 18 02:00"]),
        ("0 2 * * */3", ["Wed 09 02:00", "Sat 12 02:00", "Sun 13 02:00", "Wed 16 02:00"]),
        ("0 2 * * SAT,sun", ["Sat 12 02:00", "Sun 13 02:00", "Sat 19 02:00"]),
        # Both the day of the month and the weekday restricted: either fires, as in crontab.
        ("0 0 8 * mon", ["Mon 07 00:00", "Tue 08 00:00", "Mon 14 00:00"]),
    ],
)
def test_a_cron_weekday_is_read_as_crontab_reads_it(cron, fires):
    """APScheduler's own crontab parser counts weekday 0 as Monday: '1-5' ran Tuesday to
    Saturday, '0' on Mondays, and '7' was refused."""
    from datetime import UTC, datetime

    trigger = cron_trigger(check_cron(cron))
    when, seen = datetime(2026, 12, 6, 12, 0, tzinfo=UTC), []  # a Sunday, noon
    for _ in fires:
        when = trigger.get_next_fire_time(None, when)
        seen.append(when.strftime("%a %d %H:%M"))
        when += timedelta(seconds=1)
    assert seen == fires


@pytest.mark.parametrize(
    ("cron", "fires"),
    [("0 0 1 jan-dec/3 *", ["2027-01", "2027-04", "2027-07", "2027-10"]),
     ("0 0 1 JAN/6 *", ["2027-01", "2027-07", "2028-01"]),
     ("0 0 1 1-12/3 *", ["2027-01", "2027-04", "2027-07", "2027-10"])],
)  # fmt: skip
def test_a_step_after_month_names_is_kept(cron, fires):
    """APScheduler drops a step written after month names: 'jan-dec/3' fired every month."""
    from datetime import UTC, datetime

    trigger = cron_trigger(check_cron(cron))
    when, seen = datetime(2026, 12, 6, 12, 0, tzinfo=UTC), []
    for _ in fires:
        when = trigger.get_next_fire_time(None, when)
        seen.append(when.strftime("%Y-%m"))
        when += timedelta(seconds=1)
    assert seen == fires


@pytest.mark.parametrize(
    ("cron", "problem"),
    [("0 2 * * 8", "'8' is not a weekday"), ("0 2 * * 5-1", "'5-1' run backwards"),
     ("0 2 * * 1/0", "a step is a whole number"), ("0 2 * *", "wrong number of fields"),
     ("0 0 * jan-dec/0 *", "Increment must be higher than 0"),
     ("0 0 * janvier *", "'janvier' is not a month")],
)  # fmt: skip
def test_a_cron_weekday_that_is_none_is_refused(cron, problem):
    with pytest.raises(ValueError, match=problem):
        check_cron(cron)


def test_schedule_edits_are_checked(store):
    sync_from_settings(store, JobSettings.model_validate(
        {"schedules": {"h": {"kind": "health", "every": "5m"}}}))  # fmt: skip
    with pytest.raises(MldeckError, match="not a crontab"):
        edit(store, "h", cron="every day")
    with pytest.raises(MldeckError, match=r"'0 0 31 2 \*' never fires"):
        edit(store, "h", cron="0 0 31 2 *")  # no 31 February: it would look paused
    with pytest.raises(MldeckError, match="nothing to change"):
        edit(store, "h")
    with pytest.raises(MldeckError, match="--params: a health job takes no parameters"):
        edit(store, "h", params={"dataset_version_id": 1})
    with pytest.raises(MldeckError, match="between 1 second and 7 days"):
        edit(store, "h", timeout_seconds=7 * 86400 + 1)
    with pytest.raises(MldeckError, match="already active"):
        set_paused(store, "h", False)
    request_run(store, "h")
    assert get_schedule(store, "h").run_requested_at is not None


def _pause_at_once(root: str, started, barrier, results) -> None:
    """In a spawned process: pause the schedule 'h' once the others are ready."""
    from mldeck.workspace import load_workspace, open_workspace_store

    store = open_workspace_store(load_workspace(Path(root)))
    barrier.wait()
    started.release()
    try:
        set_paused(store, "h", True)
        results.put("paused")
    except MldeckError as exc:
        results.put(str(exc))
    finally:
        store.close()


def test_processes_pausing_a_schedule_at_once_pause_it_once(workspace, store):
    """The 'already paused' check is made in the write turn: of four processes pausing at
    once, one pauses it and three are told it is already paused (one audit event, not four).
    The test holds the write turn while they start, so each has read the schedule before any
    of them writes."""
    import multiprocessing

    add(store, "h", "health", every="5m")
    started = multiprocessing.get_context("spawn").Semaphore(0)

    def hold_the_write_turn() -> None:
        with store.write():
            for _ in range(4):
                assert started.acquire(timeout=120)
            threading.Event().wait(0.5)  # they read the schedule, then wait for the turn

    holder = threading.Thread(target=hold_the_write_turn)
    holder.start()
    outcome = at_once(_pause_at_once, [(str(workspace.root), started)] * 4)
    holder.join()
    assert sorted(outcome) == ["paused"] + ["schedule h is already paused"] * 3
    with store.read() as session:
        pauses = session.execute(
            select(AuditEvent.id).where(AuditEvent.action == "schedule.pause")
        ).all()
    assert len(pauses) == 1


def test_a_schedule_added_with_the_cli_keeps_its_name_against_the_config(store):
    add(store, "nightly2", "health", every="5m")
    settings = JobSettings.model_validate(
        {"schedules": {"nightly2": {"kind": "train", "cron": "0 2 * * *"}}}
    )
    for _ in range(2):  # the config entry is not applied, at any sync
        (change,) = sync_from_settings(store, settings)
        assert (change.name, change.change) == ("nightly2", "kept")
        assert "added with 'mldeck jobs add'" in change.describe()
        row = get_schedule(store, "nightly2")
        assert (row.kind, row.interval_seconds, row.source) == ("health", 300, "cli")
    # The entry leaving the config does not remove the CLI's schedule either.
    assert sync_from_settings(store, JobSettings()) == []
    assert get_schedule(store, "nightly2").source == "cli"


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("t", {"timeout_seconds": -1}, "between 1 second and 7 days"),
        # Longer than mldeck.toml allows; 10**20 would not even fit the store's column.
        ("t", {"timeout_seconds": 10**20}, r"between 1 second and 7 days \(604800 s\)"),
        ("r", {"retries": -3}, "between 0 and 10"),
        ("", {}, "letters, digits"),
        (" padded", {}, "letters, digits"),
        # mldeck.toml could not hold it as a [jobs.schedules.NAME] key either.
        ("nightly train", {}, r"schedule name 'nightly train': letters, digits, '\.', '_'"),
        ("ok\n", {}, "letters, digits"),
    ],
)
def test_a_schedule_added_with_the_cli_is_checked_like_an_edit(store, name, options, problem):
    with pytest.raises(MldeckError, match=problem):
        add(store, name, "health", every="5m", **options)
    with store.read() as session:
        assert session.execute(select(Schedule)).first() is None


# -- the lease -------------------------------------------------------------------------------------
def test_one_holder_at_a_time_and_release_hands_over(store):
    first = LeaseKeeper(store, role="daemon", lease_seconds=30)
    second = LeaseKeeper(store, role="console", lease_seconds=30)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.renew()
    assert holder(store, 30).holder == first.id
    first.release()
    assert second.try_acquire()
    assert not first.renew()  # it lost the lease: it must stop acting


def test_a_holder_stopped_past_its_lease_finds_the_takeover_before_it_acts(store):
    """A daemon stopped (SIGSTOP) past its lease and resumed started due jobs before its control
    loop renewed and saw that another process had taken over: two processes acting."""
    from mldeck.store.models import Lease

    first = LeaseKeeper(store, role="daemon", lease_seconds=4)
    second = LeaseKeeper(store, role="daemon", lease_seconds=4)
    assert first.try_acquire()
    assert first.still_held()  # renewed just now: no write needed
    # first stops for longer than its lease: its heartbeat ages, second takes over.
    with store.write() as session:
        lease = session.get(Lease, first.name)
        lease.heartbeat_at = lease.heartbeat_at - timedelta(seconds=60)
        session.add(lease)
    first._renewed -= 60
    assert second.try_acquire()
    assert first.held  # what it believed when it stopped
    assert not first.still_held() and not first.held


HOLD = """
import sys, time
from mldeck.jobs.lease import LeaseKeeper
from mldeck.store.engine import open_store

keeper = LeaseKeeper(open_store(sys.argv[1]), role="daemon", lease_seconds=float(sys.argv[2]))
assert keeper.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holding_process(store, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, store.url, str(seconds)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_dead_holder_is_replaced_at_once(store):
    proc = _holding_process(store, 3600)
    mine = LeaseKeeper(store, role="console", lease_seconds=3600)
    assert not mine.try_acquire()
    proc.kill()
    proc.wait()
    assert mine.try_acquire()  # same host, its process is gone: no need to wait


def test_a_silent_holder_is_replaced_after_the_lease_time(store):
    proc = _holding_process(store, 1)  # alive but never renews
    try:
        mine = LeaseKeeper(store, role="console", lease_seconds=1)
        assert not mine.try_acquire()
        wait_for(mine.try_acquire, "the silent holder's lease to expire")
    finally:
        proc.kill()
        proc.wait()


# -- the runner and its workers ----------------------------------------------------------------------
def _run(store, run_id: int) -> Run:
    with store.read() as session:
        return session.get(Run, run_id)


def test_a_job_runs_in_a_worker_and_commits_its_result_last(ws_store):
    workspace, store = ws_store
    outcome = JobRunner(workspace, store).run(JobRequest("health", "health"))
    assert outcome.status == RunStatus.SUCCEEDED, outcome.error
    run = _run(store, outcome.run_id)
    assert run.pid != os.getpid() and run.kind == "health" and run.trigger == "schedule"
    folder = attempt_folder(workspace, run.id)
    assert (folder / "result.json").is_file() and not (folder / "result.json.tmp").exists()
    assert outcome.result["checks"]
    assert count(store, HealthCheck, HealthCheck.run_id == run.id) == 7


def test_a_crash_is_retried_then_failed_with_its_traceback(ws_store):
    workspace, store = ws_store
    (workspace.root / "crash.marker").touch()
    outcome = JobRunner(workspace, store).run(JobRequest("train", "train", retries=2))
    assert outcome.status == RunStatus.FAILED
    assert len(outcome.run_ids) == 3  # one attempt and two retries, each its own run
    folders = {attempt_folder(workspace, run_id) for run_id in outcome.run_ids}
    assert len(folders) == 3 and all(f.is_dir() for f in folders)
    for attempt, run_id in enumerate(outcome.run_ids, start=1):
        run = _run(store, run_id)
        assert run.status == RunStatus.FAILED and run.params["attempt"] == attempt
        assert "crash.marker says crash" in run.error
    assert count(store, ModelVersion) == 0


@pytest.mark.parametrize("change", ["pause", "disable"])
def test_a_schedule_paused_or_disabled_between_attempts_is_not_tried_again(ws_store, change):
    """The retries went on after the pause (up to an hour of them with retries = 10)."""
    workspace, store = ws_store
    (workspace.root / "crash.marker").touch()
    add(store, "train", "train", cron="0 3 1 1 *", retries=5)
    request = JobRequest.from_schedule(get_schedule(store, "train"), trigger="schedule")
    runner = JobRunner(workspace, store)
    original = runner._attempt

    def attempt_then_change(*args):
        found = original(*args)
        if change == "pause":
            set_paused(store, "train", True)
        else:
            edit(store, "train", enabled=False)
        return found

    runner._attempt = attempt_then_change
    outcome = runner.run(request)
    assert outcome.status == RunStatus.FAILED and len(outcome.run_ids) == 1


def test_a_persons_run_of_a_paused_schedule_keeps_its_attempts(ws_store):
    """'jobs run' runs a paused schedule too: its retries were cut as the pause's."""
    workspace, store = ws_store
    (workspace.root / "crash.marker").touch()
    add(store, "train", "train", cron="0 3 1 1 *", retries=1)
    set_paused(store, "train", True)
    request = JobRequest.from_schedule(get_schedule(store, "train"), trigger="manual")
    outcome = JobRunner(workspace, store).run(request)
    assert outcome.status == RunStatus.FAILED and len(outcome.run_ids) == 2


def test_backoff_grows_and_is_capped_with_jitter():
    settings = JobSettings(retry_base_seconds=2, retry_max_seconds=10)
    waits = [backoff_seconds(settings, attempt) for attempt in (1, 2, 3, 4, 5)]
    assert 2 <= waits[0] <= 3 and 4 <= waits[1] <= 6 and 8 <= waits[2] <= 12
    assert all(10 <= w <= 15 for w in waits[3:])


def _slow(workspace) -> None:
    (workspace.root / "slow.marker").touch()


def test_a_worker_for_a_run_not_in_the_store_says_so(ws_store):
    workspace, _ = ws_store
    result = subprocess.run(
        [sys.executable, "-m", "mldeck.jobs.worker", "--workspace", str(workspace.root),
         "--run", "999", "--parent", str(os.getpid())],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.strip() == "mldeck: error: run 999 is not in the workspace's store"


def test_a_timeout_kills_the_worker_and_its_children(ws_store):
    workspace, store = ws_store
    _slow(workspace)
    # 15 s: room for a loaded machine to start the worker and its child before the timeout
    outcome = JobRunner(workspace, store).run(JobRequest("train", "train", timeout_seconds=15))
    assert outcome.status == RunStatus.FAILED and "timed out after 15s" in outcome.error
    child = int((workspace.root / "child.pid").read_text())
    fitting = int((workspace.root / "fitting.pid").read_text())
    wait_for(lambda: not pid_alive(child) and not pid_alive(fitting), "the process group to die")
    with store.read() as session:
        inner = session.execute(select(Run).where(Run.parent_run_id.is_(None),
                                                  Run.kind == "train", Run.pid == fitting))  # fmt: skip
        (job,) = inner.scalars()
        assert job.status == RunStatus.FAILED
        # Its training step says the same, not "cancelled: interrupted (KeyboardInterrupt)" (the
        # worker's SIGTERM ended it first).
        steps = session.execute(select(Run).where(Run.parent_run_id == job.id)).scalars().all()
    assert [(r.status, r.error) for r in steps] == [
        (RunStatus.FAILED, f"killed: job run {job.id} timed out after 15s (the worker and its "
                           "children were killed)")
    ]  # fmt: skip
    assert count(store, ModelVersion) == 0


def test_a_running_step_is_linked_to_its_job_while_it_runs(ws_store):
    """A step was linked to its job only when the job ended: lists showed a running training
    as a run of its own, and one left by a killed worker stayed so."""
    workspace, store = ws_store
    _slow(workspace)
    runner = JobRunner(workspace, store)
    job = threading.Thread(
        target=runner.run, args=(JobRequest("train", "train", timeout_seconds=600),)
    )
    job.start()
    try:
        pids = workspace.root / "fitting.pid"
        wait_for(pids.exists, "the worker to start fitting")
        fitting = int(pids.read_text())

        def linked() -> bool:
            with store.read() as session:
                runs = session.execute(select(Run).where(Run.pid == fitting)).scalars().all()
            jobs = [r for r in runs if r.parent_run_id is None]
            steps = [r for r in runs if r.parent_run_id is not None]
            return len(jobs) == 1 and [s.parent_run_id for s in steps] == [jobs[0].id]

        wait_for(linked, "the running training to be linked to its job")
    finally:
        runner.stop()
        job.join(60)


def test_ctrl_c_on_a_job_kills_its_worker_and_keeps_the_training_a_step_of_the_job(ws_store):
    """Ctrl-C on 'mldeck jobs run --here' kills the worker at once (SIGKILL: it cannot link
    the training it started): the runner ends that training and makes it the job's step."""
    workspace, store = ws_store
    _slow(workspace)
    pids = workspace.root / "fitting.pid"

    def interrupt() -> None:
        wait_for(pids.exists, "the worker to start fitting")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        JobRunner(workspace, store).run(JobRequest("train", "train", timeout_seconds=600))
    fitting = int(pids.read_text())
    wait_for(lambda: not pid_alive(fitting), "the worker to die")
    with store.read() as session:
        runs = session.execute(select(Run).where(Run.pid == fitting).order_by(Run.id)).scalars()
        (job, training) = runs.all()
    assert job.status == RunStatus.CANCELLED and job.parent_run_id is None
    assert (training.status, training.parent_run_id) == (RunStatus.CANCELLED, job.id)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_on_jobs_run_cancels_its_runs(ws_store, signum):
    """'timeout mldeck jobs run', a CI cancelled, an SSH session closed: the runs stayed
    'running', and the next scheduler ran the manual job again as a scheduled one."""
    from .jobs_helpers import environ

    workspace, store = ws_store
    _slow(workspace)
    add(store, "train", "train", cron="0 3 1 1 *", timeout_seconds=600)
    pids = workspace.root / "fitting.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mldeck.cli", "--workspace", str(workspace.root), "jobs", "run",
         "train"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ(),
    )  # fmt: skip
    try:
        wait_for(pids.exists, "the worker to start fitting")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert f"mldeck: stopped ({signal.Signals(signum).name})" in err
    fitting = int(pids.read_text())
    wait_for(lambda: not pid_alive(fitting), "the worker to die")
    with store.read() as session:
        statuses = session.execute(select(Run.status).where(Run.kind.in_(["train"]))).scalars()
        assert set(statuses) == {RunStatus.CANCELLED}
    # The schedule's row, what 'jobs list' shows, says so too (it said 'running' for good).
    assert get_schedule(store, "train").last_status == RunStatus.CANCELLED


def test_an_overlapping_fire_and_the_concurrency_limit_skip_and_are_recorded(ws_store):
    workspace, store = ws_store
    _slow(workspace)
    runner = JobRunner(workspace, store, workspace.settings.jobs.model_copy(
        update={"max_concurrent": 1}))  # fmt: skip
    add(store, "train", "train", cron="0 3 1 1 *", timeout_seconds=600)
    fire = JobRequest.from_schedule(get_schedule(store, "train"), trigger="schedule")
    first = threading.Thread(target=runner.run, args=(fire,))
    first.start()
    try:
        wait_for(lambda: (workspace.root / "fitting.pid").exists(), "the first job to run")
        again = runner.run(fire)
        other = runner.run(JobRequest("evaluate", "evaluate"))
        # A health check is outside the limit: it runs while the only slot is taken.
        checked = runner.run(JobRequest("health", "health"))
        assert checked.status == RunStatus.SUCCEEDED, checked.error
        # The schedule's row still shows the run that goes on, not the fire skipped beside it.
        row = get_schedule(store, "train")
        assert row.last_status == RunStatus.RUNNING and row.last_run_id != again.run_id
        assert _run(store, row.last_run_id).status == RunStatus.RUNNING
    finally:
        runner.stop()
        first.join(60)
    assert again.status == RunStatus.SKIPPED and "still running" in again.error
    assert other.status == RunStatus.SKIPPED and "concurrency limit (1 job)" in other.error
    skipped = _run(store, again.run_id)
    assert skipped.status == RunStatus.SKIPPED
    assert skipped.created_at == skipped.started_at == skipped.ended_at  # an instant, not < 0 s
    assert count(store, ModelVersion) == 0


def test_a_request_waiting_for_a_slot_is_not_the_job_running(ws_store):
    """A request waits for the slot; a fire of the same job meanwhile is turned away for that
    reason (not "still running"), and the request then runs."""
    workspace, store = ws_store
    runner = JobRunner(workspace, store, workspace.settings.jobs.model_copy(
        update={"max_concurrent": 1}))  # fmt: skip
    runner._slots.acquire()  # another job holds the only slot
    outcome: list = []
    asked = threading.Thread(
        target=lambda: outcome.append(
            runner.run(JobRequest("evaluate", "evaluate"), wait_for_slot=True)
        )
    )
    asked.start()
    try:
        wait_for(lambda: "evaluate" in runner._waiting, "the request to wait")
        fire = runner.run(JobRequest("evaluate", "evaluate"))
    finally:
        runner._slots.release()
        asked.join(120)
    assert fire.status == RunStatus.SKIPPED
    assert fire.error == "a run of evaluate asked for is waiting for a free slot"
    # It ran (and failed on its own: this workspace has no champion to evaluate), not skipped.
    assert [o.status for o in outcome] == [RunStatus.FAILED]
    assert "skipped" not in outcome[0].error


def test_no_free_disk_fails_the_job_before_it_starts(ws_store):
    workspace, store = ws_store
    settings = workspace.settings.jobs.model_copy(update={"min_free_disk_mb": 10**12})
    outcome = JobRunner(workspace, store, settings).run(JobRequest("train", "train", retries=3))
    assert outcome.status == RunStatus.FAILED and len(outcome.run_ids) == 1
    assert outcome.error.startswith("not started: only") and "min_free_disk_mb" in outcome.error


# -- orphans ---------------------------------------------------------------------------------------
def _running(store, **fields) -> int:
    now = utcnow()
    run = Run(name="r", status=RunStatus.RUNNING, created_at=now, started_at=now,
              heartbeat_at=now, **fields)  # fmt: skip
    with store.write() as session:
        session.add(run)
        session.flush()
        return run.id


def test_orphans_by_dead_pid_reused_pid_and_stale_heartbeat(store):
    host = provenance.hostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = os.getpid()
    mine = provenance.process_start_time(me)
    gone = _running(store, host=host, pid=dead.pid, pid_started_at=1.0)
    reused = _running(store, host=host, pid=me, pid_started_at=mine - 1)
    alive = _running(store, host=host, pid=me, pid_started_at=mine)
    elsewhere_fresh = _running(store, host="other-box", pid=1)
    stale = utcnow() - timedelta(hours=1)
    elsewhere_stale = _running(store, host="other-box", pid=1)
    with store.write() as session:
        session.get(Run, elsewhere_stale).heartbeat_at = stale
    marked = {o.run_id: o.reason for o in mark_orphans(store, stale_seconds=600)}
    assert set(marked) == {gone, reused, elsewhere_stale}
    assert "is gone" in marked[gone] and "no heartbeat since" in marked[elsewhere_stale]
    assert _run(store, alive).status == RunStatus.RUNNING
    assert _run(store, elsewhere_fresh).status == RunStatus.RUNNING
    assert _run(store, gone).status == RunStatus.ORPHANED
    # It ended at its last sign of life, not when found (its duration read the time to find it).
    orphan = _run(store, elsewhere_stale)
    assert orphan.ended_at == stale and orphan.error.startswith(
        f"orphaned: no heartbeat since {stale:%Y-%m-%d %H:%M:%S} UTC (from other-box) (found "
    )


# -- health ------------------------------------------------------------------------------------------
def test_health_checks_are_stored_and_raise_then_resolve_alerts(ws_store):
    workspace, store = ws_store
    report = run_checks(workspace, store)
    by_name = {c.name: c for c in report.checks}
    assert by_name["store"].status == "ok" and by_name["champion"].status == "warn"
    assert by_name["scheduler"].status == "warn"
    with store.read() as session:
        rules = set(session.execute(select(Alert.rule).where(Alert.status == "open")).scalars())
    assert {"health:champion", "health:scheduler"} <= rules
    keeper = LeaseKeeper(store, role="daemon", lease_seconds=30)
    keeper.try_acquire()
    run_checks(workspace, store)
    with store.read() as session:
        scheduler_alert = session.execute(select(Alert).where(Alert.rule == "health:scheduler"))
        assert scheduler_alert.scalar_one().status == "resolved"
    assert count(store, HealthCheck) == 14
    keeper.release()  # a clean stop: the scheduler did run, and is not running now
    (after,) = [c for c in run_checks(workspace, store).checks if c.name == "scheduler"]
    assert after.status == "warn" and after.message.startswith("no scheduler is running")


# -- the scheduler ---------------------------------------------------------------------------------
def _scheduler(workspace, store, said: list[str] | None = None) -> DeckScheduler:
    """A daemon's scheduler, started and acting; what it says is appended to *said*."""
    scheduler = DeckScheduler(workspace, store, role="daemon", tick_seconds=0.2,
                              on_event=None if said is None else said.append)  # fmt: skip
    scheduler.start()
    wait_for(lambda: scheduler.acting and scheduler._aps is not None, "the scheduler to act")
    return scheduler


def test_a_scheduler_that_starts_acting_resolves_the_no_scheduler_alert(ws_store):
    """'no scheduler is running' stayed open beside a running daemon until the next health
    check, which the demo and a plain daemon never schedule."""
    from mldeck.jobs.health import run_checks
    from mldeck.monitor.alerts import list_alerts

    workspace, store = ws_store
    run_checks(workspace, store)
    assert "health:scheduler" in {a.dedup_key for a in list_alerts(store)}
    scheduler = _scheduler(workspace, store)
    try:
        wait_for(lambda: "health:scheduler" not in {a.dedup_key for a in list_alerts(store)},
                 "the scheduler's alert to be resolved")  # fmt: skip
    finally:
        scheduler.stop()


def _first_runs_at_start(workspace, store, name: str, what: str) -> tuple[list[Run], list[str]]:
    """Start a scheduler, wait for schedule *name*'s first finished runs, stop it: the runs and
    what the scheduler said."""
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        return wait_for(lambda: _finished(store, name), what), said
    finally:
        scheduler.stop()


def _runs_of(store, name: str) -> list[Run]:
    with store.read() as session:
        query = select(Run).where(Run.name == name).order_by(Run.id)
        return list(session.execute(query).scalars())


def _finished(store, name: str, n: int = 1) -> list[Run]:
    runs = _runs_of(store, name)
    done = [r for r in runs if RunStatus(r.status).finished]
    return runs if len(done) >= n else []


def _schedule_with_an_orphaned_run(store, name: str) -> int:
    """A health schedule *name* whose last run a dead process left (marked orphaned by
    someone else): that run's id."""
    add(store, name, "health", cron="0 3 1 1 *")
    with store.write() as session:
        run = Run(name=name, kind="health", trigger="schedule", status=RunStatus.ORPHANED,
                  error="its process 999999 is gone")  # fmt: skip
        session.add(run)
        session.flush()
        row = session.execute(select(Schedule).where(Schedule.name == name)).scalar_one()
        row.last_run_id = run.id
        session.add(row)
        return run.id


def test_a_schedule_orphaned_while_no_scheduler_acted_runs_again_once(ws_store):
    """Its run was marked orphaned by someone else ('mldeck jobs health' after a kill -9): the
    next scheduler to act runs the schedule again all the same, and only once."""
    workspace, store = ws_store
    orphaned = _schedule_with_an_orphaned_run(store, "h")
    scheduler = _scheduler(workspace, store)
    try:
        runs = wait_for(lambda: _finished(store, "h", 2), "the schedule to run again")
    finally:
        scheduler.stop()
    assert [r.status for r in runs] == [RunStatus.ORPHANED, RunStatus.SUCCEEDED]
    assert runs[1].tags["reason"] == f"its run {orphaned} was orphaned ([jobs] rerun_orphaned)"
    again = _scheduler(workspace, store)  # the next scheduler: nothing left to run again
    again.stop()
    with store.read() as session:
        reruns = session.execute(
            select(AuditEvent.details).where(AuditEvent.action == "schedule.rerun")
        ).scalars()
        assert [d["orphaned_run"] for d in reruns] == [orphaned]


def test_a_standby_scheduler_taking_over_syncs_the_config_as_it_is_now(ws_store):
    """A standby took over with mldeck.toml as it was when it started: its schedules undid a
    'jobs edit' made since (the file changed, then the schedule was edited)."""
    from mldeck.config import load_settings
    from mldeck.workspace import load_workspace

    workspace, store = ws_store
    config = workspace.config_path
    config.write_text(config.read_text() + '\n[jobs.schedules.a]\nkind = "health"\nevery = "1h"\n')
    standby = DeckScheduler(load_workspace(workspace.root), store, role="daemon",
                            tick_seconds=0.2)  # fmt: skip
    # Meanwhile, under the acting scheduler: the file changes (synced), then an edit.
    time.sleep(0.01)
    config.write_text(config.read_text().replace('every = "1h"', 'every = "2h"'))
    sync_from_settings(store, load_settings(config).jobs)
    edit(store, "a", every="3h")
    standby.start()
    try:
        wait_for(lambda: standby.acting and standby._aps is not None, "the scheduler to act")
        time.sleep(0.6)  # a few ticks: the file is followed too
        assert get_schedule(store, "a").interval_seconds == 3 * 3600
    finally:
        standby.stop()


def test_a_paused_schedule_whose_run_was_orphaned_is_not_run_again(ws_store):
    """The pause was ignored: a scheduler starting after a kill -9 ran it again (a new model)."""
    workspace, store = ws_store
    _schedule_with_an_orphaned_run(store, "h")
    set_paused(store, "h", True)
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        wait_for(lambda: any("not run again while the schedule is paused" in m for m in said),
                 "the scheduler to say so")  # fmt: skip
    finally:
        scheduler.stop()
    assert count(store, Run, Run.name == "h") == 1


def test_an_interval_schedule_made_while_the_clock_ran_ahead_fires_once_it_is_right():
    """Anchored at its creation a day ahead, an every-minute schedule waited a day."""
    from mldeck.jobs.schedules import make_trigger
    from mldeck.store.models import utcnow

    ahead = Schedule(name="h", kind="health", every="1m", created_at=utcnow() + timedelta(days=1))
    fire = make_trigger(ahead).get_next_fire_time(None, utcnow())
    assert fire - utcnow() <= timedelta(minutes=1)


def test_an_acting_scheduler_finds_orphans_and_takes_over_watching_later(ws_store, monkeypatch):
    from mldeck.data.watcher import IncomingWatcher
    from mldeck.jobs import scheduler as scheduler_module

    workspace, store = ws_store
    monkeypatch.setattr(scheduler_module, "ORPHAN_SWEEP_SECONDS", 0.0)
    holder_watcher = IncomingWatcher(workspace, store)  # another process's watcher
    assert holder_watcher.start()
    scheduler = DeckScheduler(workspace, store, role="daemon", tick_seconds=0.2,
                              watch_incoming=True)  # fmt: skip
    scheduler.start()
    try:
        wait_for(lambda: scheduler.acting, "the scheduler to act")
        assert scheduler.watcher is None
        # A run whose process died after the takeover (a stalled daemon's worker).
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        late = _running(store, host=provenance.hostname(), pid=dead.pid, pid_started_at=1.0)
        wait_for(lambda: _run(store, late).status == RunStatus.ORPHANED, "the sweep")
        holder_watcher.stop(timeout=10)  # the other watcher stops: this one takes over
        wait_for(lambda: scheduler.watcher is not None, "the takeover of data/incoming/")
    finally:
        scheduler.stop(timeout=30)
        holder_watcher.stop(timeout=10)


def test_missed_fire_times_are_coalesced_into_one_run_at_start(ws_store):
    workspace, store = ws_store
    add(store, "health", "health", every="1h")
    add(store, "old", "health", every="1h")
    with store.write() as session:
        for name, hours in (("health", 5), ("old", 30)):
            row = session.execute(select(Schedule).where(Schedule.name == name)).scalar_one()
            row.last_fire_at = utcnow() - timedelta(hours=hours, minutes=30)
            session.add(row)
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        runs = wait_for(lambda: _finished(store, "health"), "the coalesced run")
        skipped = wait_for(lambda: _finished(store, "old"), "the missed fire to be recorded")
        fires = scheduler.next_fire_times()
    finally:
        scheduler.stop()
    # Five missed hourly fire times became one run; the next fire is in the future.
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED]
    assert fires["health"] > utcnow()
    # Said as what happens, not as a next fire time hours ago.
    assert "schedule health (health) active, runs now" in said
    # The newest missed time of "old" is 30 min old, within the hour of grace: one run too.
    assert [r.status for r in skipped] == [RunStatus.SUCCEEDED]


def test_a_schedule_that_never_fired_runs_once_for_the_fires_it_missed(ws_store):
    """Added while no scheduler ran, its missed fires were dropped in silence: neither a run nor
    a 'missed' record."""
    workspace, store = ws_store
    add(store, "fresh", "health", every="20s")
    with store.write() as session:
        row = session.execute(select(Schedule).where(Schedule.name == "fresh")).scalar_one()
        row.created_at = utcnow() - timedelta(seconds=50)  # two fire times ago
        session.add(row)
    runs, said = _first_runs_at_start(workspace, store, "fresh", "the coalesced run")
    assert runs[0].status == RunStatus.SUCCEEDED
    assert any(line.startswith("fresh: fire times missed since ") for line in said), said


def test_a_fire_time_older_than_the_grace_is_recorded_as_missed(ws_store):
    workspace, store = ws_store
    three_hours_ago = utcnow() - timedelta(hours=3)
    add(store, "daily", "health", cron=f"{three_hours_ago:%M %H} * * *")
    with store.write() as session:
        row = session.execute(select(Schedule)).scalar_one()
        row.last_fire_at = utcnow() - timedelta(days=3)
        session.add(row)
    runs, said = _first_runs_at_start(workspace, store, "daily", "the missed fire to be recorded")
    assert runs[0].status == RunStatus.SKIPPED and "misfire grace" in runs[0].error
    # Said as what happens: not run, next tomorrow (it said "runs now", then recorded a miss).
    assert not any("runs now" in line for line in said), said
    assert any("more than 3600s ago (misfire grace): not run" in line for line in said), said
    assert any(line.startswith("schedule daily (health) active, next ") for line in said), said


def test_the_scheduler_follows_table_edits_and_run_requests(ws_store):
    workspace, store = ws_store
    add(store, "health", "health", cron="0 3 1 1 *")
    scheduler = _scheduler(workspace, store)
    try:
        set_paused(store, "health", True)
        wait_for(lambda: scheduler.next_fire_times().get("health", 1) is None, "the pause")
        request_run(store, "health")  # run now works on a paused schedule too
        runs = wait_for(lambda: _finished(store, "health"), "the requested run")
        assert runs[0].trigger == "manual" and runs[0].status == RunStatus.SUCCEEDED
        set_paused(store, "health", False)
        wait_for(lambda: scheduler.next_fire_times().get("health"), "the resume")
    finally:
        scheduler.stop()
    assert get_schedule(store, "health").run_requested_at is None
    assert holder(store, 3) is None  # released on stop


def test_a_run_request_older_than_the_misfire_grace_is_said_and_not_run(ws_store):
    """A 'jobs run' asked while no scheduler acted ran at the next start, however old."""
    workspace, store = ws_store
    add(store, "health", "health", cron="0 3 1 1 *")
    request_run(store, "health")
    with store.write() as session:
        row = session.execute(select(Schedule).where(Schedule.name == "health")).scalar_one()
        row.run_requested_at = row.run_requested_at - timedelta(hours=2)
        session.add(row)
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        wait_for(lambda: get_schedule(store, "health").run_requested_at is None, "the request")
    finally:
        scheduler.stop()
    assert any("is more than 3600s old (misfire grace): not run" in line for line in said), said
    assert count(store, Run, Run.name == "health") == 0


def test_a_run_request_made_while_a_scheduler_acts_runs_whatever_the_clocks(ws_store):
    """A request timed by a machine whose clock is behind (a shared server's store) is not a
    request left over from before this scheduler."""
    workspace, store = ws_store
    add(store, "health", "health", cron="0 3 1 1 *")
    scheduler = _scheduler(workspace, store)
    try:
        request_run(store, "health")
        with store.write() as session:
            row = session.execute(select(Schedule).where(Schedule.name == "health")).scalar_one()
            if row.run_requested_at is not None:
                row.run_requested_at = row.run_requested_at - timedelta(hours=2)
                session.add(row)
        runs = wait_for(lambda: _finished(store, "health"), "the requested run")
        assert runs[0].trigger == "manual"
    finally:
        scheduler.stop()


def test_the_watchdog_restarts_a_dead_scheduler_thread(ws_store):
    workspace, store = ws_store
    scheduler = _scheduler(workspace, store)
    try:
        first = scheduler._aps
        first.shutdown(wait=True)  # its thread ends, as an uncaught error would end it
        wait_for(lambda: scheduler._aps is not first and scheduler._aps.running, "a restart")
    finally:
        scheduler.stop()
    with store.read() as session:
        events = session.execute(select(AuditEvent.action)).scalars().all()
    assert "scheduler.restarted" in events


def test_retrain_cooldown_holds_back_a_second_automatic_retrain(ws_store):
    workspace, store = ws_store
    scheduler = _scheduler(workspace, store)
    try:
        first = scheduler.trigger_retrain(["dataset drift: test"], source="test")
        second = scheduler.trigger_retrain(["dataset drift: again"], source="test")
    finally:
        scheduler.stop()
    assert first is not None and first.succeeded, first
    assert first.result["decision"] == "held by gates"  # the dummy model fails min roc_auc
    assert second is None
    retrains = _runs_of(store, "retrain")
    assert [r.status for r in retrains] == [RunStatus.SUCCEEDED, RunStatus.SKIPPED]
    assert "cool-down" in retrains[1].error
    with store.read() as session:
        events = dict(session.execute(select(AuditEvent.action, AuditEvent.actor)).all())
    assert {"retrain.triggered", "retrain.cooldown", "retrain.held_by_gates"} <= set(events)
    assert events["model_version.register"] == policies.ACTOR  # the retrain's version
    assert count(store, ModelVersion) == 1


@pytest.mark.parametrize("cooldown", [60, 0])
def test_a_trigger_during_a_retrain_does_not_wait_for_it(template, tmp_path, cooldown):
    """A drift check asking for a retrain while one runs returns at once: the retrain's lock
    was held for the whole retrain, so every batch's pipeline that asked waited for it (and
    with two pipeline threads, no batch was scored meanwhile). The request is deferred and
    decided when the first ends: with a cool-down it is skipped; without, it retrains."""
    workspace = copy_workspace(template, tmp_path / "ws",
                               FAST.replace("[jobs]", f"[jobs]\nretrain_cooldown_minutes = {cooldown}"))  # fmt: skip
    store = open_store(workspace)
    scheduler = _scheduler(workspace, store)
    try:
        first = threading.Thread(target=scheduler.trigger_retrain, args=(["dataset drift: test"],),
                                 kwargs={"source": "check one"})  # fmt: skip
        first.start()
        wait_for(lambda: [r for r in _runs_of(store, "retrain") if r.status == RunStatus.RUNNING],
                 "the first retrain to run")  # fmt: skip
        assert scheduler.trigger_retrain(["dataset drift: again"], source="check two") is None
        returned = utcnow()
        first.join(120)
        wait_for(lambda: _finished(store, "retrain", 2), "two retrain runs")
    finally:
        scheduler.stop()
        store.close()
    retrains = _runs_of(store, "retrain")
    assert returned < retrains[0].ended_at.replace(tzinfo=returned.tzinfo)
    with store.read() as session:
        deferred = session.execute(
            select(AuditEvent.details).where(AuditEvent.action == "retrain.deferred")
        ).scalar_one()
    assert deferred["source"] == "check two"
    if cooldown:
        assert [r.status for r in retrains] == [RunStatus.SUCCEEDED, RunStatus.SKIPPED]
        assert re.match(r"skipped: cool-down \d+m left: the automatic retrain run \d+ started",
                        retrains[1].error)  # fmt: skip
    else:
        assert [r.status for r in retrains] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
        assert retrains[1].params["reasons"] == ["dataset drift: again"]


@pytest.mark.parametrize("status", [RunStatus.ORPHANED, RunStatus.CANCELLED])
def test_an_automatic_retrain_interrupted_by_a_crash_or_stop_runs_again_once(ws_store, status):
    workspace, store = ws_store
    reasons = ["dataset drift: churn:v2: 4 of 21 features drifted"]
    with store.write() as session:  # as a daemon killed -9 (or stopped) mid-retrain left it
        run = Run(name="retrain", kind="retrain", trigger="drift", status=status,
                  params={"job": "retrain", "job_kind": "retrain", "reasons": reasons})  # fmt: skip
        session.add(run)
        session.flush()
        interrupted = run.id
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        (again,) = wait_for(lambda: _finished(store, "retrain", 2)[1:], "the retrain to run again")
    finally:
        scheduler.stop()
    assert again.status == RunStatus.SUCCEEDED and again.params["reasons"] == reasons
    assert f"retrain run {interrupted} was {status} before it ended; retraining again" in said
    scheduler = _scheduler(workspace, store)  # a later start does not run it a third time
    scheduler.stop()
    assert len(_runs_of(store, "retrain")) == 2
    with store.read() as session:
        query = select(AuditEvent).where(AuditEvent.action == "retrain.resume")
        (event,) = session.execute(query).scalars().all()
    assert event.details["interrupted_run"] == interrupted and event.actor == policies.ACTOR


@pytest.mark.parametrize(
    ("status", "held"),
    [
        (RunStatus.SUCCEEDED, True),
        (RunStatus.FAILED, True),
        (RunStatus.RUNNING, True),
        (RunStatus.CANCELLED, False),  # the scheduler stopped under it
        (RunStatus.ORPHANED, False),  # its process died
        (RunStatus.SKIPPED, False),
    ],
)
def test_only_a_retrain_that_ran_holds_the_next_one_back(ws_store, status, held):
    workspace, store = ws_store
    with store.write() as session:
        run = Run(name="retrain", kind="retrain", trigger="drift", status=status)
        session.add(run)
        session.flush()
        run_id = run.id
    left, by = policies.cooldown_left(workspace, store)
    assert (left > 0, by) == ((True, run_id) if held else (False, None))


def test_a_failed_retrain_holds_the_next_back_until_the_settings_change(ws_store):
    """No retry on every batch of a broken setting; but fixed, the next drift retrains at once
    (the failed run kept the alerts open with no retrain for the whole cool-down)."""
    import os

    workspace, store = ws_store
    config = workspace.config_path
    written = (utcnow() - timedelta(minutes=5)).timestamp()
    os.utime(config, (written, written))  # the settings as they were before the failure
    with store.write() as session:
        run = Run(name="retrain", kind="retrain", trigger="drift", status=RunStatus.FAILED,
                  created_at=utcnow() - timedelta(seconds=30))  # fmt: skip
        session.add(run)
    assert policies.cooldown_left(workspace, store)[0] > 0
    os.utime(config)  # mldeck.toml edited since the failure
    assert policies.cooldown_left(workspace, store) == (0.0, None)


def test_a_version_waiting_after_a_retrain_is_promoted_once_approved(ws_store):
    from mldeck.ml.registry import approve, resolve

    workspace, store = ws_store
    outcome = JobRunner(workspace, store).run(JobRequest("train", "train"))
    assert outcome.succeeded
    version = resolve(store, "churn:1")
    policies.record(store, policies.AWAITING, "test", entity_type="model_version",
                    entity_id=version.id)  # fmt: skip
    assert policies.promote_approved(workspace, store) == []  # not approved yet
    with store.write() as session:  # gates are policy; this test is about approval
        session.get(ModelVersion, version.id).metrics = {}
        from mldeck.store.models import GateResult

        for gate in session.execute(select(GateResult)).scalars():
            gate.passed = True
            session.add(gate)
    approve(store, "churn:1", reason="looked at it")
    done = policies.promote_approved(workspace, store)
    assert [d.ref for d in done] == ["churn:1"]
    assert resolve(store, "churn@champion").id == version.id
    assert policies.promote_approved(workspace, store) == []  # once


def test_a_job_done_but_for_a_thread_left_running_succeeds_once(ws_store):
    """A thread the training left running kept the worker alive after the job was done: it was
    killed at its timeout, failed, and retried, registering the same model twice."""
    workspace, store = ws_store
    (workspace.root / "linger.marker").touch()
    runner = JobRunner(workspace, store)
    outcome = runner.run(JobRequest("train", "train", timeout_seconds=60, retries=1))
    assert outcome.succeeded, outcome
    assert count(store, ModelVersion) == 1


def test_approving_a_waiting_retrain_from_the_cli_says_the_scheduler_promotes_it(ws_store, cli):
    """The console's dialog said so; 'models approve' did not, and the scheduler then made the
    version champion over a manual rollback, to the user's surprise."""
    workspace, store = ws_store
    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    from mldeck.ml.registry import resolve

    for ref in ("churn:1", "churn:2"):
        policies.record(store, policies.AWAITING, "test", entity_type="model_version",
                        entity_id=resolve(store, ref).id)  # fmt: skip
    # Failed gates: approved, not promoted (and not said to be).
    failed = cli("models", "approve", "churn:1", "-m", "looked at it", cwd=workspace.root)
    assert failed.returncode == 0 and "it is not promoted" in failed.stdout
    assert "scheduler" not in failed.stdout
    with store.write() as session:  # gates are policy; this test is about approval
        from mldeck.store.models import GateResult

        for gate in session.execute(select(GateResult)).scalars():
            gate.passed = True
            session.add(gate)
    # No scheduler runs: it was said to promote it "now", and nothing happened.
    said = cli("models", "approve", "churn:2", "-m", "looked at it", cwd=workspace.root)
    assert said.returncode == 0, said.stderr
    assert "no scheduler runs now: the next to start" in said.stdout
    assert "makes it the champion of churn" in said.stdout
    policies.promote_approved(workspace, store)
    assert resolve(store, "churn@champion").id == resolve(store, "churn:2").id
    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    policies.record(store, policies.AWAITING, "test", entity_type="model_version",
                    entity_id=resolve(store, "churn:3").id)  # fmt: skip
    with store.write() as session:
        for gate in session.execute(select(GateResult)).scalars():
            gate.passed = True
            session.add(gate)
    from mldeck.jobs.lease import LeaseKeeper

    keeper = LeaseKeeper(store, role="daemon", lease_seconds=workspace.settings.jobs.lease_seconds)
    assert keeper.try_acquire()
    renewing = threading.Event()

    def renew() -> None:  # as a daemon does: the lease lasts 3 s, the command may take longer
        while not renewing.wait(0.5):
            keeper.renew()

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    try:
        said = cli("models", "approve", "churn:3", "-m", "looked at it", cwd=workspace.root)
    finally:
        renewing.set()
        thread.join()
        keeper.release()
    assert "the scheduler now makes it the champion of churn" in said.stdout, said.stdout


def test_an_older_retrain_approved_after_a_newer_one_serves_is_not_promoted(ws_store):
    """Two retrains waited (churn:1, then churn:2); churn:2 approved became the champion, then
    approving churn:1 made the older model the champion again, in silence."""
    from mldeck.ml.registry import approve, resolve
    from mldeck.store.models import GateResult

    workspace, store = ws_store
    runner = JobRunner(workspace, store)
    for _ in range(2):
        assert runner.run(JobRequest("train", "train")).succeeded
    with store.write() as session:  # gates are policy; this test is about approval
        for gate in session.execute(select(GateResult)).scalars():
            gate.passed = True
            session.add(gate)
    for number in (1, 2):
        policies.record(store, policies.AWAITING, "test", entity_type="model_version",
                        entity_id=resolve(store, f"churn:{number}").id)  # fmt: skip
    approve(store, "churn:2", reason="newer")
    policies.promote_approved(workspace, store)
    assert resolve(store, "churn@champion").id == resolve(store, "churn:2").id
    approve(store, "churn:1", reason="also fine")
    assert policies.promote_approved(workspace, store) == []
    assert resolve(store, "churn@champion").version == 2
    with store.read() as session:
        (event,) = session.execute(select(AuditEvent).where(
            AuditEvent.action == policies.SUPERSEDED)).scalars().all()  # fmt: skip
    assert event.details["reason"].startswith("churn:1 is older than the champion churn:2")
    assert policies.promote_approved(workspace, store) == []  # said once, not at every look


def _waiting_after_a_retrain(workspace, store) -> ModelVersion:
    """churn:1 trained, its gates passed (gates are policy; these tests are about approval),
    waiting for approval as an automatic retrain's version does."""
    from mldeck.ml.registry import resolve
    from mldeck.store.models import GateResult

    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    version = resolve(store, "churn:1")
    with store.write() as session:
        for gate in session.execute(select(GateResult)).scalars():
            gate.passed = True
            session.add(gate)
    policies.record(store, policies.AWAITING, "test", entity_type="model_version",
                    entity_id=version.id)  # fmt: skip
    return version


def test_a_waiting_version_made_the_challenger_is_still_promoted_once_approved(ws_store):
    """Its promotion to challenger counted as "settled": approving it then promoted nothing,
    without a word."""
    from mldeck.ml.registry import approve, promote, resolve

    workspace, store = ws_store
    version = _waiting_after_a_retrain(workspace, store)
    promote(store, "churn:1", alias="challenger", reason="shadow it first")
    with store.read() as session:
        assert policies.awaiting(session) == [str(version.id)]
    approve(store, "churn:1", reason="fine in shadow")
    (done,) = policies.promote_approved(workspace, store)
    assert not done.refused and resolve(store, "churn@champion").id == version.id


def test_a_refused_promotion_on_approval_is_recorded_once_until_its_cause_goes(ws_store):
    """Its model file gone, each refusal was an audit event, which woke the scheduler to try
    again: a new event every second for as long as the file stayed away (under the version's
    label, not its id, so the version's history showed none of them)."""
    from mldeck.ml.registry import approve, resolve
    from mldeck.store.artifacts import resolve as artifact_path
    from mldeck.store.models import Artifact

    workspace, store = ws_store
    version = _waiting_after_a_retrain(workspace, store)
    approve(store, "churn:1", reason="fine")
    with store.read() as session:
        stored = session.get(Artifact, version.artifact_id).path
    model_file = artifact_path(workspace.root, stored)
    kept = model_file.read_bytes()
    model_file.unlink()
    (refused,) = policies.promote_approved(workspace, store)
    assert refused.refused and refused.ref == "churn:1"
    for _ in range(3):
        assert policies.promote_approved(workspace, store) == []
    with store.read() as session:
        events = session.execute(select(AuditEvent).where(
            AuditEvent.action == policies.REFUSED)).scalars().all()  # fmt: skip
    assert [e.entity_id for e in events] == [str(version.id)]
    model_file.write_bytes(kept)
    (done,) = policies.promote_approved(workspace, store)
    assert not done.refused and resolve(store, "churn@champion").id == version.id


def test_a_version_the_scheduler_trains_is_registered_by_the_scheduler(ws_store):
    workspace, store = ws_store
    runner = JobRunner(workspace, store)
    assert runner.run(JobRequest("nightly", "train")).succeeded  # a schedule's fire
    assert runner.run(JobRequest("nightly", "train", trigger="manual")).succeeded  # a person's
    with store.read() as session:
        events = session.execute(
            select(AuditEvent.action, AuditEvent.actor)
            .where(AuditEvent.action.in_(("model.create", "model_version.register")))
            .order_by(AuditEvent.id)
        ).all()
    assert [tuple(e) for e in events] == [
        ("model.create", policies.ACTOR),
        ("model_version.register", policies.ACTOR),
        ("model_version.register", provenance.current_user()),
    ]


def test_scoring_a_batch_twice_with_the_same_champion_makes_one_output(ws_store):
    from mldeck.data.ingest import ingest_file
    from mldeck.ml.registry import approve, promote

    workspace, store = ws_store
    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    approve(store, "churn:1", reason="test")
    promote(store, "churn:1", force=True, reason="the dummy model fails the gates")
    batch = ingest_file(workspace, store, workspace.data_dir / "samples" / "batch_01_normal.csv")
    request = JobRequest("score", "score", {"dataset_version_id": batch.version_id})
    first = JobRunner(workspace, store).run(request)
    again = JobRunner(workspace, store).run(request)
    assert first.succeeded and again.succeeded
    scored_by = first.result["champion"]["run_id"]
    assert again.result == {"dataset_version_id": batch.version_id,
                            "already_scored_by_run": scored_by}  # fmt: skip
    assert count(store, Run, Run.kind == "score", Run.parent_run_id.is_not(None)) == 1
    # The evaluate job: the champion's realized performance on the newest labelled batch.
    evaluated = JobRunner(workspace, store).run(JobRequest("evaluate", "evaluate"))
    assert evaluated.succeeded, evaluated.error
    assert evaluated.result["dataset_version_id"] == batch.version_id
    assert evaluated.result["model"] == "churn:1" and evaluated.result["rows"] > 0
    assert evaluated.result["metrics"]["roc_auc"] == 0.5  # the dummy model knows nothing
    # A version the store does not hold fails the job with one line, not an AttributeError.
    missing = JobRequest("evaluate", "evaluate", {"dataset_version_id": 99999})
    failed = JobRunner(workspace, store).run(missing)
    assert not failed.succeeded and "no dataset version 99999" in failed.error
    assert "Traceback" not in failed.error


def test_a_stopped_runner_starts_no_new_job(ws_store):
    workspace, store = ws_store
    runner = JobRunner(workspace, store)
    runner.stop()
    outcome = runner.run(JobRequest("health", "health"))
    assert outcome.status == RunStatus.SKIPPED and "stopping" in outcome.error
    assert not attempt_folder(workspace, outcome.run_id).exists()


def test_an_interval_past_a_year_is_refused_where_it_is_given(store):
    with pytest.raises(ValueError, match="at most 365d"):
        parse_every("99999999999d")
    with pytest.raises(MldeckError, match="at most 365d"):
        add(store, "big", "health", every="366d")
    with pytest.raises(ConfigError, match="at most 365d"):
        parse_settings('[jobs.schedules.a]\nkind = "health"\nevery = "3000000d"\n')
    assert parse_every("365d") == 365 * 86400


@pytest.mark.parametrize(
    ("reasons", "performance"),
    [
        (["realized roc_auc below 0.75: churn:v2: realized roc_auc 0.529 < 0.75"], True),
        (["estimated roc_auc below 0.7: churn:v3: estimated roc_auc 0.650 < 0.7"], True),
        (["dataset drift: churn:v3: 4 of 21 features drifted (19%)"], False),
        (
            [
                "realized roc_auc below 0.75: churn:v2: realized roc_auc 0.529 < 0.75",
                "dataset drift: churn:v2: 5 of 21 features drifted",
            ],
            False,
        ),
    ],
)
def test_a_retrain_for_a_metric_below_its_floor_is_a_performance_retrain(reasons, performance):
    from mldeck.jobs.scheduler import _about_performance

    assert all(_about_performance(r) for r in reasons) is performance


def test_a_batch_whose_pipeline_never_finished_goes_through_it_after_a_restart(ws_store):
    from mldeck import audit
    from mldeck.data.ingest import ingest_file
    from mldeck.jobs.scheduler import PIPELINE_START
    from mldeck.store.models import DriftReport, RunTrigger

    workspace, store = ws_store
    sample = workspace.data_dir / "samples" / "batch_01_normal.csv"
    batch = ingest_file(workspace, store, sample, trigger=RunTrigger.NEW_DATA)
    with store.write() as session:  # a scheduler claimed it, then was stopped before its steps
        audit.append(session, PIPELINE_START, entity_type="dataset_version",
                     entity_id=batch.version_id, details={"batch": "churn:v2"},
                     actor=policies.ACTOR)  # fmt: skip

    def checked() -> bool:
        with store.read() as session:
            query = select(DriftReport.id).where(DriftReport.dataset_version_id == batch.version_id)
            return session.execute(query).first() is not None

    scheduler = _scheduler(workspace, store)
    try:
        wait_for(checked, "the resumed pipeline's drift check")
    finally:
        scheduler.stop(timeout=60)


def test_a_batch_revalidated_into_accepted_goes_through_its_pipeline_at_once(
    ws_store, tmp_path, cli
):
    """Rejected on arrival (its pipeline stopped there), then fixed with 'data revalidate': it
    waited for the next scheduler start to be scored and checked."""
    from mldeck.data.ingest import ingest_file
    from mldeck.store.models import DriftReport, RunTrigger

    workspace, store = ws_store
    sample = workspace.data_dir / "samples" / "batch_01_normal.csv"
    semi = tmp_path / "batch_semi.csv"
    semi.write_text(sample.read_text(encoding="utf-8").replace(",", ";"), encoding="utf-8")
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        batch = ingest_file(workspace, store, semi, trigger=RunTrigger.NEW_DATA)
        assert batch.status == "rejected"
        wait_for(lambda: any("the pipeline stops here" in m for m in said), "the claim")
        done = cli("data", "revalidate", f"churn:v{batch.version}", "--separator", ";",
                   cwd=workspace.root)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "next: the scheduler scores it with the champion and checks its drift" in done.stdout

        def checked() -> bool:
            with store.read() as session:
                query = select(DriftReport.id).where(
                    DriftReport.dataset_version_id == batch.version_id)  # fmt: skip
                return session.execute(query).first() is not None

        wait_for(checked, "the revalidated batch's drift check")
        assert any("revalidated, now accepted: score, then check drift" in m for m in said)
    finally:
        scheduler.stop(timeout=60)


def test_a_pipeline_that_keeps_failing_is_run_again_at_most_three_times(ws_store):
    """Run again after each failure (a store out of reach), but not forever while one process
    acts: the fourth failure is said with the command that runs it by hand."""
    from mldeck import audit
    from mldeck.data.ingest import ingest_file
    from mldeck.jobs.scheduler import PIPELINE_START

    workspace, store = ws_store
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        scheduler.runner.stop()  # every pipeline now ends at once, without its drift report
        sample = workspace.data_dir / "samples" / "batch_01_normal.csv"
        batch = ingest_file(workspace, store, sample)  # by hand: no tick claims it
        with store.write() as session:  # claimed as a scheduler does
            audit.append(session, PIPELINE_START, entity_type="dataset_version",
                         entity_id=batch.version_id, details={"batch": "churn:v2"},
                         actor=policies.ACTOR)  # fmt: skip
        for _ in range(5):
            scheduler._resume_pipelines()
            wait_for(lambda: not scheduler._in_flight, "the pipeline to end")
    finally:
        scheduler.stop(timeout=60)
    assert sum("its pipeline did not finish; running it again" in m for m in said) == 3
    assert [m for m in said if "not run again" in m] == [
        "churn:v2: its pipeline failed 4 times; not run again ('mldeck drift check churn:v2' "
        "runs it by hand)"
    ]


def test_a_pipeline_that_failed_is_run_again_when_mldeck_toml_changes(ws_store):
    """A batch that came while mldeck.toml was broken failed its steps; fixing the file left it
    unscored and unchecked until the scheduler was started again."""
    from mldeck import audit
    from mldeck.data.ingest import ingest_file
    from mldeck.jobs.scheduler import PIPELINE_START
    from mldeck.store.models import DriftReport

    workspace, store = ws_store
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        sample = workspace.data_dir / "samples" / "batch_01_normal.csv"
        batch = ingest_file(workspace, store, sample)  # by hand: no tick claims it
        with store.write() as session:  # claimed, and its steps failed on the broken file
            audit.append(session, PIPELINE_START, entity_type="dataset_version",
                         entity_id=batch.version_id, details={"batch": "churn:v2"},
                         actor=policies.ACTOR)  # fmt: skip
        with open(workspace.config_path, "a", encoding="utf-8") as fh:
            fh.write("\n# fixed\n")  # the fix
        wait_for(lambda: count(store, DriftReport, DriftReport.dataset_version_id
                               == batch.version_id), "the batch's drift report")  # fmt: skip
    finally:
        scheduler.stop(timeout=60)
    assert "churn:v2: its pipeline did not finish; running it again" in said


def test_a_batch_that_arrived_beyond_the_misfire_grace_is_said_not_skipped_in_silence(ws_store):
    """Taken by 'mldeck data watch' while no scheduler acted, hours ago: like a missed fire it
    is not run late, but it is claimed, said and audited, naming the command that checks it."""
    from mldeck.data.ingest import ingest_file
    from mldeck.jobs.scheduler import PIPELINE_START
    from mldeck.store.models import DatasetVersion, DriftReport, RunTrigger

    workspace, store = ws_store
    sample = workspace.data_dir / "samples" / "batch_01_normal.csv"
    batch = ingest_file(workspace, store, sample, trigger=RunTrigger.NEW_DATA)
    with store.write() as session:
        version = session.get(DatasetVersion, batch.version_id)
        version.arrived_at = utcnow() - timedelta(hours=2)  # the grace is an hour by default
        session.add(version)

    def claimed() -> list:
        with store.read() as session:
            query = select(AuditEvent.details).where(AuditEvent.action == PIPELINE_START)
            return session.execute(query).scalars().all()

    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        (details,) = wait_for(claimed, "the late batch to be claimed")
        # An edit of mldeck.toml runs again the pipelines that did not finish: not this one.
        with open(workspace.config_path, "a", encoding="utf-8") as fh:
            fh.write("\n# a comment\n")
        wait_for(lambda: "mldeck.toml changed: no schedule changed" in said, "the edit seen")
        time.sleep(1)  # five ticks: a resumed pipeline would have started
    finally:
        scheduler.stop(timeout=60)
    assert not [line for line in said if "running it again" in line]
    assert details["reason"] == (
        "new batch churn:v2 arrived more than [jobs] misfire_grace_seconds (3600 s) ago, while "
        "no scheduler acted: not run now ('mldeck drift check churn:v2' scores it and checks "
        "its drift)"
    )
    assert details["reason"] in said
    assert count(store, DriftReport) == 0 and not _runs_of(store, "score churn:v2")


def test_a_store_url_edited_under_a_running_scheduler_is_said(ws_store, caplog):
    """Only 'no schedule changed' was said, and every job then failed on the new store; a
    daemon's log has it as a warning (its problems with mldeck.toml were logged as INFO)."""
    workspace, store = ws_store
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        text = workspace.config_path.read_text()
        assert 'url = ""' in text
        workspace.config_path.write_text(text.replace('url = ""', 'url = "sqlite:///other.db"'))
        wait_for(lambda: any("[store] url changed" in line for line in said), "the edit said")
    finally:
        scheduler.stop(timeout=60)
    assert (
        "mldeck.toml: [store] url changed: this scheduler keeps the store it opened, while each "
        "job it starts opens the new one and fails; start the daemon (or console) again to move "
        "to the new store"
    ) in said
    assert not (workspace.root / "other.db").exists()
    assert [r.levelname for r in caplog.records if "[store] url changed" in r.getMessage()] == [
        "WARNING"
    ]


def test_a_broken_config_fails_the_job_in_one_line_and_opens_then_resolves_its_alert(ws_store):
    workspace, store = ws_store
    config = workspace.root / "mldeck.toml"
    good = config.read_text()
    config.write_text(good + "\nbroken = [\n")  # broken after the scheduler read it
    runner = JobRunner(workspace, store)
    outcome = runner.run(JobRequest("health", "health", retries=0))
    assert outcome.status == RunStatus.FAILED
    error = _run(store, outcome.run_id).error
    assert error.startswith(f"{config} is not valid TOML") and "Traceback" not in error
    with store.read() as session:
        alert = session.execute(select(Alert).where(Alert.rule == "failed pipeline step"))
        alert = alert.scalar_one()
    assert alert.status == "open" and alert.details["kind"] == "health"
    assert alert.details["run_id"] == outcome.run_id  # the run that failed, to open from it
    config.write_text(good)
    assert runner.run(JobRequest("health", "health")).status == RunStatus.SUCCEEDED
    with store.read() as session:
        assert session.get(Alert, alert.id).status == "resolved"


def _failed_step_alerts(store) -> list[Alert]:
    with store.read() as session:
        query = select(Alert).where(Alert.rule == "failed pipeline step").order_by(Alert.id)
        return list(session.execute(query).scalars())


def test_a_cancelled_job_does_not_repeat_the_alert_of_an_earlier_failure(ws_store):
    workspace, store = ws_store
    (workspace.root / "crash.marker").touch()
    failed = JobRunner(workspace, store).run(JobRequest("train", "train"))
    assert failed.status == RunStatus.FAILED
    (alert,) = _failed_step_alerts(store)
    assert alert.status == "open" and alert.occurrences == 1
    (workspace.root / "crash.marker").unlink()
    _slow(workspace)
    said: list[str] = []
    runner = JobRunner(workspace, store, on_event=said.append)
    outcomes: list = []
    job = threading.Thread(target=lambda: outcomes.append(runner.run(JobRequest("train", "train"))))
    job.start()
    wait_for(lambda: (workspace.root / "fitting.pid").exists(), "the training to start")
    runner.stop()
    job.join()
    assert outcomes[0].status == RunStatus.CANCELLED
    (alert,) = _failed_step_alerts(store)
    assert alert.status == "open" and alert.occurrences == 1  # seen once: it failed once
    assert not [line for line in said if line.startswith("alert opened")]


def test_a_retrain_that_trains_resolves_the_alert_of_a_failed_training(ws_store):
    workspace, store = ws_store
    (workspace.root / "crash.marker").touch()
    runner = JobRunner(workspace, store)
    assert runner.run(JobRequest("train", "train")).status == RunStatus.FAILED
    (alert,) = _failed_step_alerts(store)
    assert alert.status == "open" and alert.details["kind"] == "train"
    (workspace.root / "crash.marker").unlink()
    retrain = JobRequest("retrain", "retrain", {"reasons": ["dataset drift: test"]}, "drift")
    assert runner.run(retrain).succeeded  # its training run succeeded: the last of its kind
    (alert,) = _failed_step_alerts(store)
    assert alert.status == "resolved"


def test_a_failed_step_someone_resolved_stays_resolved_until_another_run_fails(ws_store):
    from mldeck.monitor import alerts

    workspace, store = ws_store
    rules = [r for r in alerts.default_rules(workspace.settings) if r.when == "failed_run"]

    def failed_run() -> int:
        with store.write() as session:
            run = Run(name="train", kind="train", trigger="schedule", status=RunStatus.FAILED)
            session.add(run)
            session.flush()
            return run.id

    def look() -> None:  # what a drift check, 'alerts check' or a job's end does
        alerts.apply(store, alerts.store_signals(store, rules))

    first = failed_run()
    look()
    (alert,) = _failed_step_alerts(store)
    alerts.resolve(store, alert.id, note="known: the config is being fixed")
    look()
    assert [(a.status, a.details["run_id"]) for a in _failed_step_alerts(store)] == [
        ("resolved", first)
    ]
    second = failed_run()
    look()
    assert [(a.status, a.details["run_id"]) for a in _failed_step_alerts(store)] == [
        ("resolved", first),
        ("open", second),
    ]


def test_the_acting_scheduler_follows_schedules_changed_in_the_config(ws_store):
    workspace, store = ws_store
    config = workspace.root / "mldeck.toml"
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        good = config.read_text()
        config.write_text(good + '\n[jobs.schedules.checkup]\nkind = "health"\nevery = "2h"\n')
        wait_for(lambda: "checkup" in scheduler.next_fire_times(), "the new schedule")
        assert "schedule checkup added from mldeck.toml" in said
        assert get_schedule(store, "checkup").interval_seconds == 7200
        config.write_text(good + "\nbroken = [\n")  # nothing changes, and it says why
        wait_for(lambda: any("cannot be used" in m for m in said), "the refusal")
        refusal = next(m for m in said if "cannot be used" in m)
        # The schedules stay, but every job reads the file afresh: said, not left to surprise.
        assert refusal.endswith("each job reads the file when it starts and fails until it is "
                                "fixed")  # fmt: skip
        assert "checkup" in scheduler.next_fire_times()
        config.write_text(good)  # the entry removed: so is the schedule
        wait_for(lambda: "checkup" not in scheduler.next_fire_times(), "the removal")
    finally:
        scheduler.stop()
    assert "checkup" not in [s.name for s in list_schedules(store)]


def test_a_run_asked_for_waits_for_a_slot_where_a_fire_would_be_skipped(ws_store):
    workspace, store = ws_store
    one_slot = workspace.settings.jobs.model_copy(update={"max_concurrent": 1})
    workspace = Workspace(workspace.root, workspace.settings.model_copy(update={"jobs": one_slot}))
    _slow(workspace)
    # 12 s: room for a loaded machine to start it before its timeout
    add(store, "slow-train", "train", cron="0 3 1 1 *", timeout_seconds=12)
    add(store, "evaluate", "evaluate", cron="0 3 1 1 *")
    scheduler = _scheduler(workspace, store)
    try:
        request_run(store, "slow-train")
        wait_for(lambda: (workspace.root / "fitting.pid").exists(), "the slow job to hold the slot")
        request_run(store, "evaluate")  # asked for while the only slot is taken
        runs = wait_for(lambda: _finished(store, "evaluate"), "the requested run")
    finally:
        scheduler.stop()
    # It ran once the slot was free (and failed on its own: no champion here), not skipped.
    (slow,) = _runs_of(store, "slow-train")
    assert [r.status for r in runs] == [RunStatus.FAILED] and "skipped" not in runs[0].error
    assert slow.status == RunStatus.FAILED and runs[0].started_at >= slow.ended_at  # timed out


def test_a_burst_of_pipelines_waiting_for_a_slot_does_not_hold_back_a_schedules_fire(ws_store):
    """Pipelines wait for a job slot in threads of their own: with more of them queued than
    the scheduler has threads, a schedule still fires on time, and a fire that finds every slot
    taken is skipped for that reason, not as "the previous run is still running"."""
    workspace, store = ws_store
    one_slot = workspace.settings.jobs.model_copy(update={"max_concurrent": 1})
    workspace = Workspace(workspace.root, workspace.settings.model_copy(update={"jobs": one_slot}))
    scheduler = _scheduler(workspace, store)
    slots = scheduler.runner._slots
    slots.acquire()  # the only slot is taken: every pipeline below waits for it
    try:
        for n in range(1, 20):  # more than the scheduler's threads (max_concurrent + 8)
            scheduler._queue_pipeline(f"pipeline:burst{n}", 10_000 + n, f"burst:v{n}")
        add(store, "e", "evaluate", every="1s")
        scheduler.wake()
        (skipped, *_) = wait_for(lambda: _finished(store, "e"), "the schedule's fire")
    finally:
        scheduler.stop(timeout=60)
        slots.release()  # the waiting pipelines see the scheduler stopping and end
    assert skipped.status == RunStatus.SKIPPED
    assert skipped.error == "skipped: the concurrency limit (1 job) is reached"


def test_a_pipeline_stopped_before_scoring_does_not_say_it_checks_drift_anyway(ws_store):
    """SIGTERM while a batch waits to be scored: the pipeline stops there (it is resumed when a
    scheduler acts again) instead of saying it checks drift anyway and then skipping that too."""
    from mldeck.data.ingest import ingest_file
    from mldeck.ml.registry import approve, promote

    workspace, store = ws_store
    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    approve(store, "churn:1", reason="test")
    promote(store, "churn:1", force=True, reason="the dummy model fails the gates")
    batch = ingest_file(workspace, store, workspace.data_dir / "samples" / "batch_01_normal.csv")
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        scheduler.runner.stop()  # what a SIGTERM does first
        scheduler._pipeline(batch.version_id, "churn:v2")
    finally:
        scheduler.stop(timeout=60)
    about = [m for m in said if m.startswith("churn:v2")]
    assert about == ["churn:v2: not scored (the scheduler is stopping); its pipeline runs again "
                     "when a scheduler next acts"]  # fmt: skip
    assert not _runs_of(store, "drift churn:v2")


def test_a_batch_of_a_dataset_without_a_reference_is_not_checked_for_drift(ws_store):
    """A new workspace's first batches: each drift step failed ("no reference to compare
    with"), was retried, failed again and raised the "drift run failed" alert; and the next
    scheduler ran such a pipeline again as one that "did not finish"."""
    from mldeck.data.ingest import ingest_file
    from mldeck.store.models import Dataset, RunTrigger
    from mldeck.workspace import load_workspace

    workspace, store = ws_store
    config = workspace.config_path.read_text(encoding="utf-8")
    workspace.config_path.write_text(re.sub(r"(?m)^reference = .*\n", "", config), "utf-8")
    with store.write() as session:
        for dataset in session.execute(select(Dataset)).scalars():
            dataset.reference_version_id = None
            session.add(dataset)
    workspace = load_workspace(workspace.root)
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        ingest_file(workspace, store, workspace.data_dir / "samples" / "batch_01_normal.csv",
                    trigger=RunTrigger.NEW_DATA)  # fmt: skip
        wait_for(lambda: any("no reference to compare its drift with" in m for m in said),
                 "the drift step to be skipped")  # fmt: skip
    finally:
        scheduler.stop(timeout=60)
    assert not _runs_of(store, "drift churn:v2")
    said.clear()
    again = _scheduler(workspace, store, said)
    again.stop(timeout=60)
    assert not any("did not finish" in m for m in said), said


def test_a_console_leaves_the_scheduler_to_a_daemon_waiting_for_it(ws_store):
    """A console acting while a daemon waits hands the lease over once none of its work is under
    way (quitting a console ends its jobs; a daemon's go on), and does not take it back; nor does
    a console take a free lease a daemon waits for."""
    workspace, store = ws_store
    said: list[str] = []
    console = DeckScheduler(workspace, store, role="console", tick_seconds=0.2,
                            on_event=said.append)  # fmt: skip
    daemon = DeckScheduler(workspace, store, role="daemon", tick_seconds=0.2)
    console.start()
    try:
        wait_for(lambda: console.acting, "the console to act")
        daemon.start()
        wait_for(lambda: daemon.acting, "the waiting daemon to be handed the scheduler")
        assert not console.acting
        assert any(m.startswith("scheduler: handing over to daemon pid ") for m in said), said
        assert holder(store, 30).role == "daemon"
        # The daemon stops for a moment (its lease released) and waits again at once: the lease
        # is free, and the console leaves it to the daemon.
        other = DeckScheduler(workspace, store, role="daemon", tick_seconds=0.2)
        other.lease.stand_by()
        daemon.stop(timeout=60)
        other.start()
        wait_for(lambda: other.acting, "the other daemon to act")
        assert not console.acting
        other.stop(timeout=60)
    finally:
        daemon.stop(timeout=60)
        console.stop(timeout=60)
    with store.read() as session:  # no standby note left behind by a daemon that stopped
        names = session.execute(select(Lease.name)).scalars().all()
    assert not [n for n in names if n.startswith("standby:")], names


def test_freshness_does_not_call_the_reference_a_batch(workspace, store, tmp_path):
    from mldeck.data.ingest import ingest_file
    from mldeck.jobs.health import check_freshness

    assert check_freshness(workspace, store).message == "no data ingested yet"
    first = tmp_path / "first.csv"
    first.write_text("a,b\n1,x\n2,y\n", encoding="utf-8")
    ingest_file(workspace, store, first, as_reference=True)
    said = check_freshness(workspace, store).message
    assert said.startswith("no batch yet (the reference arrived 0.0 h ago)"), said
    batch = tmp_path / "batch.csv"
    batch.write_text("a,b\n3,x\n", encoding="utf-8")
    ingest_file(workspace, store, batch)
    assert check_freshness(workspace, store).message == "newest batch 0.0 h old"


def test_a_freshness_rule_says_its_limit_at_the_scale_it_was_set(workspace, store, tmp_path):
    """A limit of a few seconds is said as seconds, not as '0.0 h (limit 0.0001 h)'."""
    from mldeck.data.ingest import ingest_file
    from mldeck.monitor.alerts import store_signals
    from mldeck.monitor.settings import AlertRule

    batch = tmp_path / "batch.csv"
    batch.write_text("a,b\n3,x\n", encoding="utf-8")
    ingest_file(workspace, store, batch)
    time.sleep(0.5)
    rule = AlertRule(name="stale", when="freshness", hours=0.0001, severity="warning")
    (signal,) = store_signals(store, [rule])
    assert signal.firing and re.fullmatch(r"no new data for \d\.\ds \(limit 0\.4s\)", signal.title)


def test_a_rejected_batch_is_no_new_data(workspace, store, tmp_path):
    """An upstream sending only files validation rejects kept the freshness alert quiet."""
    from mldeck.data.ingest import ingest_file
    from mldeck.jobs.health import check_freshness
    from mldeck.monitor.alerts import store_signals
    from mldeck.monitor.settings import AlertRule

    batch = tmp_path / "batch.csv"
    batch.write_text("a,b\n3,x\n", encoding="utf-8")
    ingest_file(workspace, store, batch)
    time.sleep(0.5)
    rule = AlertRule(name="stale", when="freshness", hours=0.0001, severity="warning")
    assert store_signals(store, [rule])[0].firing
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n", encoding="utf-8")  # no rows: rejected
    assert ingest_file(workspace, store, bad).status == "rejected"
    assert store_signals(store, [rule])[0].firing
    assert check_freshness(workspace, store).message == "newest batch 0.0 h old"
    assert check_freshness(workspace, store).value >= 0.5 / 3600


def test_the_pipelines_score_stage_says_there_is_no_champion_to_score_with(ws_store):
    """Until a version is promoted the pipeline skips scoring: the stage says why it never ran."""
    from mldeck.jobs.views import pipeline_view
    from mldeck.ml.registry import approve, promote

    workspace, store = ws_store

    def score_stage() -> str:
        stages = {stage.name: stage for stage in pipeline_view(store, JobSettings()).stages}
        return stages["score"].detail

    assert score_stage() == "no champion yet"
    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    assert score_stage() == "no champion yet"  # a candidate scores nothing
    approve(store, "churn:1", reason="test")
    promote(store, "churn:1", force=True, reason="the dummy model fails the gates")
    assert score_stage() == "never ran"


# -- alert hooks: where they run, and what they may hold ---------------------------------------
def _with_hook(workspace: Workspace, command: str, timeout: int = 20) -> Workspace:
    config = workspace.root / "mldeck.toml"
    hook = f"[monitor]\nalert_command = {json.dumps(command)}\nalert_command_timeout = {timeout}\n"
    config.write_text(config.read_text().replace("\n[monitor]\n", "\n" + hook, 1))
    return load_workspace(workspace.root)


def test_a_failed_steps_hook_runs_after_its_job_holding_nothing(ws_store, tmp_path):
    """It ran in the job's thread, the job holding its slot and counted as running for as long
    as the hook ran (other jobs skipped: 'the concurrency limit is reached'); stopping the
    scheduler waited for it to time out."""
    workspace, store = ws_store
    go, out = tmp_path / "go", tmp_path / "hook.json"
    workspace = _with_hook(workspace, f"while [ ! -e '{go}' ]; do sleep 0.05; done; cat > '{out}'")
    (workspace.root / "crash.marker").touch()
    said: list[str] = []
    runner = JobRunner(workspace, store, on_event=said.append)
    assert runner.run(JobRequest("train", "train")).status == RunStatus.FAILED
    assert runner.running == [] and not out.exists()  # returned while its hook still waits
    go.touch()
    wait_for(lambda: out.exists() and out.read_text().endswith("}"), "the hook's input")
    assert json.loads(out.read_text())["rule"] == "failed pipeline step"
    # A hook still running when the scheduler stops is stopped with it.
    go.unlink()
    (alert,) = _failed_step_alerts(store)
    runner = JobRunner(workspace, store, on_event=said.append)
    with store.write() as session:
        session.get(Alert, alert.id).status = "resolved"
    assert runner.run(JobRequest("train2", "train")).status == RunStatus.FAILED
    runner.stop()
    wait_for(lambda: any("hook stopped: mldeck was stopping" in line for line in said),
             f"the hook to be stopped {said}", seconds=5)  # fmt: skip


def test_a_hook_set_while_the_scheduler_runs_is_used(ws_store, tmp_path):
    """A daemon or console used the alert_command of the file it started with: one set (or
    changed) since ran nothing, without a word, until a restart."""
    workspace, store = ws_store
    out = tmp_path / "hook.json"
    said: list[str] = []
    scheduler = _scheduler(workspace, store, said)
    try:
        _with_hook(workspace, f"cat > '{out}'")
        wait_for(lambda: any("mldeck.toml changed" in line for line in said), "the change seen")
        (workspace.root / "crash.marker").touch()
        assert scheduler.runner.run(JobRequest("train", "train")).status == RunStatus.FAILED
        wait_for(lambda: out.exists() and out.read_text().endswith("}"), "the hook's input")
    finally:
        scheduler.stop()
    assert json.loads(out.read_text())["rule"] == "failed pipeline step"


def test_health_alerts_run_their_hook_in_the_workspace(ws_store, cli):
    """A health check's alerts (a damaged champion file, a full disk) ran no hook; a relative
    command ran from wherever mldeck was called."""
    workspace, _ = ws_store
    hooks = workspace.root / "hooks"
    hooks.mkdir()
    (hooks / "save.sh").write_text('cat > "hooks/got-$$.json"\n')
    _with_hook(workspace, "sh hooks/save.sh")
    done = cli("jobs", "health", "--workspace", str(workspace.root), cwd=workspace.root / "data")
    assert done.returncode == 0, done.stderr
    got = [json.loads(p.read_text()) for p in hooks.glob("got-*.json")]
    assert sorted(p["rule"] for p in got) == ["health:champion", "health:scheduler"]
    again = cli("jobs", "health", "--workspace", str(workspace.root), cwd=workspace.root)
    assert again.returncode == 0 and len(list(hooks.glob("got-*.json"))) == 2  # still open


def test_jobs_run_waits_for_the_hooks_of_the_alerts_its_job_opened(ws_store, cli):
    """'jobs run health' without a scheduler returned while its hooks' thread started: the
    interpreter's shutdown failed it ("can't register atexit after shutdown", a traceback) and
    the page was never sent."""
    workspace, _ = ws_store
    (workspace.root / "save.sh").write_text('sleep 1; cat > "got-$$.json"\n')
    _with_hook(workspace, "sh save.sh")
    with open(workspace.root / "mldeck.toml", "a", encoding="utf-8") as config:
        config.write('\n[jobs.schedules.health]\nkind = "health"\nevery = "15m"\n')
    done = cli("jobs", "run", "health", cwd=workspace.root)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr
    got = [json.loads(p.read_text()) for p in workspace.root.glob("got-*.json")]
    assert sorted(p["rule"] for p in got) == ["health:champion", "health:scheduler"]


def test_a_stopped_command_stops_its_hooks_at_once(ws_store):
    """SIGTERM (and Ctrl-C) waited out the hook's whole timeout: the hook runs in a session of
    its own, out of reach of the terminal's signal."""
    workspace, _ = ws_store
    started = workspace.root / "hook.pid"
    _with_hook(workspace, f"echo $$ >> '{started}'; exec sleep 300", timeout=600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mldeck.cli", "jobs", "health"], cwd=workspace.root,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: started.exists() and len(started.read_text().split()) == 2, "both hooks")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped (SIGTERM)" in err
    for pid in map(int, started.read_text().split()):
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or
                 Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                 f"hook {pid} to end")  # fmt: skip


def test_the_pipelines_validate_stage_is_its_batchs_verdict(ws_store, tmp_path):
    """A rejected batch's validate run succeeded (it judged): the stage said 'succeeded', in
    green, while the Data screen said 'rejected'."""
    from mldeck.data.ingest import ingest_file
    from mldeck.jobs.views import pipeline_view

    workspace, store = ws_store

    def validate_stage():
        return next(s for s in pipeline_view(store, JobSettings()).stages if s.name == "validate")

    bad = tmp_path / "empty.csv"
    bad.write_text("a,b\n", encoding="utf-8")  # no rows: rejected
    version = ingest_file(workspace, store, bad)
    assert version.status == "rejected"
    stage = validate_stage()
    assert stage.status == "rejected"
    assert stage.detail == f"{version.dataset}:v{version.version} rejected: validate empty.csv"


def test_a_store_outage_is_told_from_a_bug_for_the_log():
    """An outage is one line in the log; a schema bug keeps its traceback (SQLite says a missing
    column with the same OperationalError as a locked database)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from mldeck.jobs.scheduler import _outage

    def error(text: str) -> OperationalError:
        return OperationalError("SELECT 1", {}, sqlite3.OperationalError(text))

    assert _outage(error("database is locked"))
    assert _outage(error("unable to open database file"))
    assert not _outage(error("no such column: run.nope"))
    assert not _outage(ValueError("database is locked"))


def test_a_persons_failed_script_is_not_a_failed_pipeline_step(ws_store):
    """A run of a person's own script (the tracking API) that fails is their experiment: it
    neither shows as the pipeline's evaluate stage nor opens a "failed pipeline step" alert."""
    from mldeck.jobs.views import pipeline_view
    from mldeck.monitor import alerts
    from mldeck.tracking import start_run

    workspace, store = ws_store
    assert JobRunner(workspace, store).run(JobRequest("train", "train")).succeeded
    with pytest.raises(RuntimeError), start_run("my-experiment", kind="train",
                                                       workspace=workspace):  # fmt: skip
        raise RuntimeError("a bad idea")
    rules = [r for r in alerts.default_rules(workspace.settings) if r.when == "failed_run"]
    alerts.apply(store, alerts.store_signals(store, rules))
    assert _failed_step_alerts(store) == []
    stages = {stage.name: stage for stage in pipeline_view(store, JobSettings()).stages}
    assert stages["evaluate"].status == RunStatus.SUCCEEDED
    assert stages["evaluate"].detail == "train churn"


def test_a_version_approved_before_a_rollback_by_hand_is_not_promoted_over_it(ws_store):
    """churn:3 waited after a retrain; a person approved it, then rolled the champion back
    (churn:2 to churn:1) before a scheduler ran: the scheduler then promoted churn:3 over the
    rollback, the later decision undone in silence."""
    from mldeck.ml.registry import approve, promote, resolve, rollback
    from mldeck.store.models import GateResult

    workspace, store = ws_store
    runner = JobRunner(workspace, store)
    for _ in range(3):
        assert runner.run(JobRequest("train", "train")).succeeded
    with store.write() as session:  # gates are policy; this test is about approval
        for gate in session.execute(select(GateResult)).scalars():
            gate.passed = True
            session.add(gate)
    for number in (1, 2):
        approve(store, f"churn:{number}", reason="fine")
        promote(store, f"churn:{number}", reason="by hand")
    policies.record(store, policies.AWAITING, "test", entity_type="model_version",
                    entity_id=resolve(store, "churn:3").id)  # fmt: skip
    approve(store, "churn:3", reason="looks good")
    rollback(store, "churn", reason="churn:2 misbehaves: back to churn:1")
    assert policies.promote_approved(workspace, store) == []
    assert resolve(store, "churn@champion").version == 1
    with store.read() as session:
        (event,) = session.execute(select(AuditEvent).where(
            AuditEvent.action == policies.SUPERSEDED)).scalars().all()  # fmt: skip
    assert event.details["reason"].startswith("churn:3 was approved before ")
    assert "changed the champion by hand (rollback to churn:1" in event.details["reason"]
    assert policies.promote_approved(workspace, store) == []
    with store.read() as session:  # said once, not at every look
        said = session.execute(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == policies.SUPERSEDED)).scalar_one()  # fmt: skip
    assert said == 1
    # Promoted by hand, it serves as asked.
    promote(store, "churn:3", reason="now, after all")
    assert resolve(store, "churn@champion").version == 3


def test_a_failed_step_alert_a_script_opened_before_is_resolved(ws_store):
    """Opened by a script's failure before scripts were left out, for a kind the pipeline never
    runs ('custom', the tracking API's default): no rule looked at it again, open for good."""
    from mldeck.monitor import alerts

    workspace, store = ws_store
    rules = [r for r in alerts.default_rules(workspace.settings) if r.when == "failed_run"]
    with store.write() as session:
        # The pipeline ran that kind too, but never to its end (cancelled).
        session.add(Run(name="job", kind="custom", trigger="schedule",
                        status=RunStatus.CANCELLED))  # fmt: skip
        session.add(Alert(rule=rules[0].name, severity="warning", status="open",
                          dedup_key=f"{rules[0].name}:custom",
                          title="the last custom run failed: experiment", details={}))  # fmt: skip
    alerts.apply(store, alerts.store_signals(store, rules))
    assert [a.status for a in _failed_step_alerts(store)] == ["resolved"]
