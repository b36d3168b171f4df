"""Errors a user can act on.

Every problem caused by input, configuration or environment (not by a bug) is raised as a
:class:`MldeckError` with one line that names the problem and, where there is one, the fix. The CLI
prints that line and exits non-zero; the console shows it in a notification.
"""

from __future__ import annotations

import errno


class MldeckError(Exception):
    """A problem the user can fix; ``str(err)`` is a complete one-line explanation."""

    exit_code = 2
    word = "error"  # how the CLI says it: "mldeck: error: ..."


class WorkspaceNotFound(MldeckError):
    """No workspace where one was looked for."""


class ConfigError(MldeckError):
    """``mldeck.toml`` cannot be read or does not describe a valid configuration."""


class StoreError(MldeckError):
    """The metadata store cannot be opened or is not an mldeck store."""


class NotFound(MldeckError):
    """A named object (run, dataset version, model version) does not exist."""


class NotADataFile(MldeckError):
    """A file of a type mldeck does not read: refused before anything is stored, and not retried."""


class NotYet(MldeckError):
    """Nothing is wrong, but what is asked for cannot be done yet (labels for a batch not checked
    for drift yet): said as a warning, exit status 3, as a partial case would be."""

    exit_code = 3
    word = "warning"


class WorkspaceFull(MldeckError):
    """The workspace's disk (or quota) is full: nothing is wrong with the file, try again later."""


def disk_full(exc: BaseException) -> bool:
    """Whether *exc* is a write refused for room: the disk or the user's quota is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def interrupted(exc: BaseException | None) -> bool:
    """Whether *exc* is a Ctrl-C: a KeyboardInterrupt, or the panic polars raises when one
    arrives while its Rust code is calling back into Python (pyo3's ``PanicException``, whose
    message carries the KeyboardInterrupt)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    return type(exc).__name__ == "PanicException" and "KeyboardInterrupt" in str(exc)
