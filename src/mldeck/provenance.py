"""Where a run came from: code version (git commit, dirty flag, entry-point hash) and environment."""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = ("mldeck", "numpy", "polars", "scikit-learn", "scipy", "skops", "sqlalchemy")


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def hostname() -> str:
    return socket.gethostname()


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(folder: Path, entry_point: Path | None = None) -> dict[str, Any]:
    """Git commit and dirty flag of *folder* (if it is in a repository) and the entry point's hash."""
    info: dict[str, Any] = {}
    commit = _git(folder, "rev-parse", "HEAD")
    if commit:
        info["git_commit"] = commit
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
        info["git_dirty"] = bool(status)
    if entry_point is not None and entry_point.is_file():
        info["entry_point"] = str(entry_point)
        info["entry_point_sha256"] = file_sha256(entry_point)
    return info


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that decide a model's behaviour."""
    packages = {}
    for name in TRACKED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": packages,
    }


def process_start_time(pid: int) -> float | None:
    """The start time of process *pid* in clock ticks since boot (Linux), to tell reused pids apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces or parentheses; fields after the last ")" are fixed.
    fields = stat[stat.rfind(")") + 2 :].split()
    return float(fields[19])
