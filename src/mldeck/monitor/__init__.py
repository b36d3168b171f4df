"""Monitoring: drift, realized and estimated performance, alerts and the operations KPIs.

``check_batch(workspace, store, dataset_version_id, trigger=...)`` is the monitor step of the
loop; it is imported lazily so that ``mldeck.config`` can read ``monitor.settings`` without
pulling in polars and scipy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MonitorResult", "check_batch"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mldeck.monitor import check

        return getattr(check, name)
    raise AttributeError(f"module 'mldeck.monitor' has no attribute {name!r}")
