"""mldeck: a terminal ops console for the whole lifecycle of a machine-learning model.

The tracking API for users' scripts lives at the top level: ``mldeck.start_run`` and friends.
It is imported on first use, so that ``import mldeck.data.validate`` (a worker, a benchmark)
does not load the store and the registry with it.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers (``as``: re-exported)
    from mldeck.errors import MldeckError as MldeckError
    from mldeck.ml.registry import load_model as load_model
    from mldeck.tracking import ActiveRun as ActiveRun
    from mldeck.tracking import active_run as active_run
    from mldeck.tracking import log_artifact as log_artifact
    from mldeck.tracking import log_metric as log_metric
    from mldeck.tracking import log_metrics as log_metrics
    from mldeck.tracking import log_param as log_param
    from mldeck.tracking import log_params as log_params
    from mldeck.tracking import set_tag as set_tag
    from mldeck.tracking import start_run as start_run

try:
    __version__ = metadata.version("mldeck")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

# The public API: each name and the module that defines it.
_API = {
    "MldeckError": "mldeck.errors",
    "load_model": "mldeck.ml.registry",
    **dict.fromkeys(
        ("ActiveRun", "active_run", "log_artifact", "log_metric", "log_metrics", "log_param",
         "log_params", "set_tag", "start_run"),
        "mldeck.tracking",
    ),
}  # fmt: skip

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mldeck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
