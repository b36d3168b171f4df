"""The worker process of one job attempt: ``python -m mldeck.jobs.worker --run N ...``.

It attaches to the run the runner created (heartbeat, progress, logs through the tracking API),
runs the step, writes ``result.json`` into the attempt's folder last (temp file, fsync, rename)
and exits 0; a user-fixable error ends the run failed with its one line (3), anything else with
its traceback (1). It watches its parent: when the scheduler that started it dies (kill -9), it
kills its own process group at once, so no orphaned training goes on to register a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from sqlalchemy import select, update

PARENT_CHECK_SECONDS = 0.2


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        time.sleep(PARENT_CHECK_SECONDS)


def _terminated(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the run ends as cancelled, through the tracking API


def _write_result(folder: Path, result: dict) -> None:
    tmp = folder / "result.json.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2, default=str, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / "result.json")


def _adopt_children(store, run_id: int) -> None:
    """The runs the step made in this process become children of the job's run."""
    from mldeck.store.models import Run

    unlinked = (Run.pid == os.getpid(), Run.id != run_id, Run.parent_run_id.is_(None))
    # Read first: a write would take the store's write turn and make every console reload,
    # every second of every job, for nothing most of the time.
    with store.read() as session:
        if session.execute(select(Run.id).where(*unlinked).limit(1)).first() is None:
            return
    with store.write() as session:
        session.execute(update(Run).where(*unlinked).values(parent_run_id=run_id))


ADOPT_SECONDS = 1.0  # how soon a step's new run is linked to its job


def _keep_adopting(store, run_id: int, done: threading.Event) -> None:
    while not done.wait(ADOPT_SECONDS):
        try:
            _adopt_children(store, run_id)
        except Exception:  # a busy or lost store: the link is made at the end all the same
            continue


WORKER_ERROR = "mldeck: error: "  # how a worker's last line of output gives its one-line reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mldeck.jobs.worker")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    if os.getppid() != args.parent:
        return 4  # the scheduler is already gone
    threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    signal.signal(signal.SIGTERM, _terminated)

    from mldeck import tracking
    from mldeck.errors import MldeckError
    from mldeck.jobs.runner import attempt_folder
    from mldeck.jobs.steps import STEPS
    from mldeck.store.models import Run, RunStatus
    from mldeck.workspace import load_workspace, open_workspace_store

    try:
        workspace = load_workspace(Path(args.workspace))
        store = open_workspace_store(workspace)
    except MldeckError as exc:  # mldeck.toml broken since the scheduler started, a store gone
        print(f"{WORKER_ERROR}{exc}", file=sys.stderr)
        return 3
    # The step's own runs (train, score) go through the tracking API: share this store.
    with tracking._stores_lock:
        tracking._stores[f"{workspace.root}|{workspace.db_url}"] = (
            workspace,
            store,
            store.file_identity(),
        )
    with store.read() as session:
        run = session.get(Run, args.run)
    if run is None:  # the scheduler wrote it before starting this process: not the same store
        print(f"mldeck: error: run {args.run} is not in the workspace's store", file=sys.stderr)
        return 3
    params = dict(run.params)
    params.setdefault("trigger", run.trigger)
    active = tracking.ActiveRun(workspace, store, run.id, run.name)
    folder = attempt_folder(workspace, run.id)
    step = STEPS[params["job_kind"]]
    # The step's runs are linked to the job as they appear, not only when it ends: lists showed
    # a running step as a run of its own, and a step left by a killed worker stayed unlinked.
    adopting = threading.Event()
    threading.Thread(target=_keep_adopting, args=(store, run.id, adopting), daemon=True).start()
    try:
        with active:
            try:
                result = step(workspace, store, active, params)
            except MldeckError as exc:
                active.log("".join(traceback.format_exception(exc)), level="error")
                active.end(RunStatus.FAILED, error=str(exc))
                print(f"{WORKER_ERROR}{exc}", file=sys.stderr)
                return 3
            finally:
                adopting.set()
                _adopt_children(store, run.id)
            _write_result(folder, result)
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def _leave(code: int) -> None:
    """Exit with *code*, even past a thread the step's libraries left running: not a daemon
    thread, it kept the process alive after the job was done (its result written, its run
    ended) until the job's timeout killed it, and a finished training was failed and retried."""
    left = [t for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()]  # fmt: skip
    if not left:
        sys.exit(code)
    print(f"mldeck: the job is done; {len(left)} thread(s) it left running "
          f"({', '.join(t.name for t in left)}) end with the worker", file=sys.stderr)  # fmt: skip
    # What exiting normally would do first: runs a step left open (no `with`) are ended with
    # their metrics, and logs flushed.
    from mldeck import tracking

    tracking._end_open_runs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _leave(main())
