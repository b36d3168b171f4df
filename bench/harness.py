"""What the benchmarks share: running each contender in a child process of its own, measuring
it there (wall and CPU time around the work only, peak memory), taking rounds, and judging
ratios.

Imported by the scripts beside it (``python bench/NAME.py`` puts this folder on the path). A
script maps contender names to ``prepare(args) -> work`` functions; its child mode calls
:func:`run_child`, its parent calls :func:`measure_rounds` with the script's own path.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "


def current_rss_mb() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``ru_maxrss`` is not used: it keeps the
    parent's resident size at the fork, so every child would seem to use at least what the
    parent holds. ``VmHWM`` belongs to the process image since its exec."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: less disturbed than wall time by
    other work on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ratio(a: Any, b: Any, attr: str = "seconds") -> float | None:
    """``a.attr / b.attr`` for two measures that both succeeded, else None."""
    if a is None or b is None or not a.ok or not b.ok or not getattr(b, attr):
        return None
    return getattr(a, attr) / getattr(b, attr)


def verdict(value: float | None, limit: float, *, at_least: bool = False) -> str:
    """``1.23 PASS`` against a target (at most *limit*, or at least it)."""
    if value is None:
        return "n/a"
    passed = value >= limit if at_least else value <= limit
    return f"{value:.2f} {'PASS' if passed else 'FAIL'}"


# -- the child: one contender, measured ------------------------------------------------------
def run_child(prepare: Callable[[Any], Callable[[], dict[str, Any]]], args: Any) -> None:
    """Set up (imports included, not timed), run the work once, print the measures as one line
    the parent reads. *args* has ``spawned_at`` (when the parent started this process)."""
    started = time.time()
    work = prepare(args)
    ready = time.time()
    rss_before = current_rss_mb()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    extra = work()
    seconds = time.perf_counter() - t0
    result = {
        "seconds": seconds,
        "cpu_s": cpu_seconds() - cpu0,
        "peak_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "setup_s": ready - started,
        "startup_s": started - args.spawned_at if args.spawned_at else None,
        "extra": extra,
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# -- the parent: spawning, rounds, summaries ---------------------------------------------------
@dataclass
class Measure:
    contender: str
    rows: int
    seconds: float | None = None
    cpu_s: float | None = None
    peak_mb: float | None = None
    rss_before_mb: float | None = None
    startup_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.seconds is not None


def spawn(
    script: str, *, run: str, timeout: float, python: str | None = None, **options: Any
) -> dict[str, Any]:
    """Run *script* ``--run RUN`` with *options* as ``--key value`` in a fresh process (with
    *python*, another interpreter, when given); its measures, or ``{"error": ...}``."""
    command = [python or sys.executable, script, "--run", run]
    for key, value in options.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    command += ["--spawned-at", repr(time.time())]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    lines = (done.stderr or done.stdout).strip().splitlines()
    return {"error": f"exit {done.returncode}: {lines[-1] if lines else 'no output'}"}


def summarise(name: str, rows: int, runs: list[dict[str, Any]], error: str | None) -> Measure:
    """Best wall time of the runs (with that run's CPU time), and the worst peak memory."""
    result = Measure(name, rows, runs=runs)
    if error or not runs:
        result.note = error or "no run"
        return result
    best = min(runs, key=lambda r: r["seconds"])
    result.seconds, result.cpu_s, result.extra = best["seconds"], best["cpu_s"], best["extra"]
    result.rss_before_mb, result.startup_s = best["rss_before_mb"], best["startup_s"]
    result.peak_mb = max(r["peak_mb"] for r in runs)
    return result


def measure_rounds(
    script: str,
    jobs: dict[str, dict[str, Any]],
    rows: int,
    repeat: int,
    timeout: float,
    limits: dict[str, int] | None = None,
) -> dict[str, Measure]:
    """Run every job (name -> :func:`spawn` options, with ``run``) *repeat* times (or its
    *limits*), one round of all jobs after another, so that other work on the machine disturbs
    them alike."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    errors: dict[str, str] = {}
    width = max((len(name) for name in jobs), default=0)
    for round_ in range(1, repeat + 1):
        for name, options in jobs.items():
            if name in errors or round_ > (limits or {}).get(name, repeat):
                continue
            print(f"{rows:>11,} rows, round {round_}/{repeat}: {name:<{width}}", end="", flush=True)
            run = spawn(script, timeout=timeout, **options)
            if "error" in run:
                errors[name] = run["error"]
                print(f" {run['error']}", flush=True)
            else:
                runs[name].append(run)
                print(f" {run['seconds']:7.2f} s  {run['peak_mb']:6.0f} MB", flush=True)
    return {name: summarise(name, rows, runs[name], errors.get(name)) for name in jobs}
