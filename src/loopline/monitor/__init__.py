"""Monitoring: reference profiles, drift tests, and (in sibling modules) performance with
delayed labels, fairness over time, reports and diagnosis.

Build a :class:`Profile` at training time with :func:`build_profile`; compare a window of
logged data with it using :func:`drift_report`. Names are imported lazily, so
``import loopline.monitor`` stays cheap (no pandas or SciPy until they are used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.monitor.drift import DriftConfig, DriftReport, FeatureDrift, drift_report
    from loopline.monitor.profile import Profile, build_profile

_EXPORTS = {
    "build_profile": "loopline.monitor.profile",
    "Profile": "loopline.monitor.profile",
    "drift_report": "loopline.monitor.drift",
    "DriftConfig": "loopline.monitor.drift",
    "DriftReport": "loopline.monitor.drift",
    "FeatureDrift": "loopline.monitor.drift",
}

__all__ = [
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "Profile",
    "build_profile",
    "drift_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loopline.monitor' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
