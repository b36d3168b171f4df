"""Long work started from the console runs as an ``mldeck`` command in a child process.

A thread cannot be stopped: a training run started in one kept the console's process alive,
its screen blank, until the training ended. A child process can be interrupted: quitting the
console sends it SIGINT, and the command ends its run as cancelled (as Ctrl-C in a terminal
does) within a second or so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from mldeck.errors import MldeckError

# How long quitting waits for an interrupted command to record its end before killing it.
STOP_SECONDS = 10.0


class Children:
    """The ``mldeck`` commands the console is running; ``interrupt_all`` stops them."""

    def __init__(self, workspace_root: Path) -> None:
        self.workspace_root = workspace_root
        self._running: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def run_json(self, *args: str, ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
        """Run ``mldeck ARGS --json`` and return what it printed; MldeckError with its error
        line when it exits with a status not in *ok*, or was interrupted."""
        command = [sys.executable, "-m", "mldeck.cli", "-w", str(self.workspace_root), *args,
                   "--json"]  # fmt: skip
        with self._lock:
            if self._stopping:
                raise MldeckError("the console is closing")
            # Its own session: a hang-up of the console's terminal does not kill it half-way.
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, env=dict(os.environ),
                                    cwd=self.workspace_root,
                                    start_new_session=True)  # fmt: skip
            self._running.add(proc)
        try:
            stdout, stderr = proc.communicate()
        finally:
            with self._lock:
                self._running.discard(proc)
        if proc.returncode == 130:
            raise MldeckError(f"'mldeck {' '.join(args)}' was interrupted")
        if proc.returncode not in ok:
            lines = [line for line in stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise MldeckError(last.removeprefix("mldeck: error: "))
        result = last_json(stdout)
        if result is None:
            raise MldeckError(f"'mldeck {' '.join(args)}' printed no result")
        return result

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def interrupt_all(self, timeout: float = STOP_SECONDS) -> None:
        """Interrupt every running command and wait for them to end (killed after *timeout*)."""
        with self._lock:
            self._stopping = True
            running = list(self._running)
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in running:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with self._lock:  # ended: not running any more, whenever their threads get to say so
            self._running.difference_update(running)


def last_json(text: str) -> Any:
    """The JSON document that ends *text* (``--json`` prints it last; a model's fit or a user's
    entry point may print lines before it), or None."""
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start][:1] in ("{", "["):
            try:
                return json.loads("\n".join(lines[start:]))
            except json.JSONDecodeError:
                continue
    return None
