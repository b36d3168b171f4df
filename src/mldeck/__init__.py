"""mldeck: a terminal ops console for the whole lifecycle of a machine-learning model.

The tracking API for users' scripts lives at the top level: ``mldeck.start_run`` and friends.
"""

from importlib import metadata

from mldeck.errors import MldeckError
from mldeck.ml.registry import load_model
from mldeck.tracking import (
    ActiveRun,
    active_run,
    log_artifact,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    start_run,
)

try:
    __version__ = metadata.version("mldeck")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "ActiveRun",
    "MldeckError",
    "__version__",
    "active_run",
    "load_model",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "start_run",
]
