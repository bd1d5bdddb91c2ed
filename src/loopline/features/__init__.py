"""Features written once, computed offline and online with the same values.

- :mod:`.definitions`: the declarative types (:class:`Window`, :class:`DelayedLabelRate`,
  :class:`CalendarFlags`) and :class:`FeatureSet`; :func:`handbook_features` is the Fraud
  Detection Handbook's set.
- :mod:`.offline`: :func:`compute_offline`, point-in-time correct and out of core (DuckDB).
- :mod:`.online`: :class:`OnlineFeatureStore` and its two implementations,
  :class:`EmbeddedFeatureStore` (SQLite, no server; the default) and
  :class:`RedisFeatureStore`.
- :mod:`.steps`: the ``compute_features`` pipeline step.
"""

from __future__ import annotations

from loopline.features.definitions import (
    CalendarFlags,
    DelayedLabelRate,
    FeatureSet,
    Window,
    handbook_features,
)
from loopline.features.offline import compute_offline
from loopline.features.online import (
    DEGRADED,
    EmbeddedFeatureStore,
    OnlineFeatureStore,
    RedisFeatureStore,
    StoreUnavailable,
    is_degraded,
    open_feature_store,
)

__all__ = [
    "DEGRADED",
    "CalendarFlags",
    "DelayedLabelRate",
    "EmbeddedFeatureStore",
    "FeatureSet",
    "OnlineFeatureStore",
    "RedisFeatureStore",
    "StoreUnavailable",
    "Window",
    "compute_offline",
    "handbook_features",
    "is_degraded",
    "open_feature_store",
]
