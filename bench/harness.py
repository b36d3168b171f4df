"""What the benchmarks share: measuring a child process (memory, CPU) and judging ratios.

Imported by the scripts beside it (``python bench/NAME.py`` puts this folder on the path).
"""

from __future__ import annotations

import resource
from typing import Any


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
