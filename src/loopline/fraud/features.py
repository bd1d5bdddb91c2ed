"""The heavy model's features: the online set's definitions with more windows, plus two
definition types that :mod:`loopline.features.definitions` cannot express, computed
offline in DuckDB.

- :class:`History` — per entity, statistics of a value over the entity's **earlier**
  events in ``(t - days, t)`` (the current event and any event at exactly the same time
  left out), and how the current value stands against them: ``std``, ``max``, ``median``
  and ``mean`` of the history; ``z`` (the value minus the history's mean, over its
  standard deviation), ``ratio`` (the value over the history's mean), ``ratio_median``
  and ``ratio_max``. The Fraud Detection Handbook's third scenario (chapter 3.2: a card
  whose credentials leaked pays five times its usual amounts) shows up here, where a
  window that includes the current transaction would dilute it.
- :class:`DelayedLabelTiming` — per entity, the positive labels known at ``t`` (events in
  ``(t - delay - days, t - delay]``, as :class:`~loopline.features.definitions.DelayedLabelRate`
  counts them): how many, and how many days have passed since the first and since the
  last of them. A terminal compromised at day ``d`` is fraudulent until ``d + 28`` in the
  book's second scenario; the age of its first known fraud tells how long it has been.

Both use only what is known at the time of the event (amounts of earlier events; labels
``delay`` days old), so they are point-in-time correct. A statistic with no history (no
earlier event, fewer than two for ``std``, a zero denominator) is NaN: the heavy model
(LightGBM) takes missing values as such.

:func:`heavy_features` is the whole set: a :class:`HeavyFeatureSet` holding the
:class:`~loopline.features.definitions.FeatureSet` part (computed by
:func:`loopline.features.offline.compute_offline`) and the new definitions (computed
here); :func:`compute_heavy` computes both for a frame of transactions.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from loopline.errors import DataError, LooplineError
from loopline.features.definitions import (
    DAY_US,
    CalendarFlags,
    DelayedLabelRate,
    FeatureSet,
    Window,
    checked_aggregations,
    window_days,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HISTORY_AGGREGATIONS",
    "DelayedLabelTiming",
    "HeavyFeatureSet",
    "History",
    "compute_extras",
    "compute_heavy",
    "heavy_features",
]

HISTORY_AGGREGATIONS = (
    "count",
    "mean",
    "std",
    "max",
    "median",
    "z",
    "ratio",
    "ratio_median",
    "ratio_max",
)


@dataclass(frozen=True)
class History:
    """Per ``entity``, ``aggregations`` of ``value`` over its events in ``(t - days, t)``.

    Names: ``{prefix}_PREV_{AGG}_{value_name}_{days}D`` (``AGG`` upper-cased), e.g.
    ``CUSTOMER_PREV_Z_AMOUNT_30D``; ``prefix`` defaults to the entity column,
    ``value_name`` to the value column.
    """

    entity: str
    value: str
    aggregations: tuple[str, ...] = ("mean", "std", "max", "z", "ratio")
    days: tuple[int, ...] = (30,)
    prefix: str | None = None
    value_name: str | None = None

    kind: ClassVar[str] = "history"

    def __post_init__(self) -> None:
        where = f"History({self.entity})"
        aggregations = checked_aggregations(self.aggregations, HISTORY_AGGREGATIONS, where)
        object.__setattr__(self, "aggregations", aggregations)
        object.__setattr__(self, "days", window_days(self.days, where))
        for name in ("entity", "value"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise LooplineError(f"History.{name} must name a column")

    @property
    def outputs(self) -> list[tuple[str, str, int]]:
        """``(name, aggregation, days)`` of each feature, days first then aggregations."""
        prefix = self.prefix or self.entity
        value = self.value_name or self.value
        return [
            (f"{prefix}_PREV_{agg.upper()}_{value}_{days}D", agg, days)
            for days in self.days
            for agg in self.aggregations
        ]


@dataclass(frozen=True)
class DelayedLabelTiming:
    """Per ``entity``, the positives among its events in ``(t - delay - days, t - delay]``.

    ``{prefix}_KNOWN_{positive}S_{days}D`` counts them (a missing label counts as 0);
    ``{prefix}_DAYS_SINCE_FIRST_{positive}_{days}D`` and ``..._LAST_...`` are the days
    (with fractions) from the first and the last of them to ``t``: NaN when there is none.
    """

    entity: str
    label: str
    days: int = 35
    delay: int = 7
    prefix: str | None = None
    positive: str = "FRAUD"

    kind: ClassVar[str] = "delayed_label_timing"

    def __post_init__(self) -> None:
        where = f"DelayedLabelTiming({self.entity})"
        (days,) = window_days(self.days, where)
        object.__setattr__(self, "days", days)
        if type(self.delay) is not int or self.delay <= 0:
            raise LooplineError(
                f"{where}: delay must be a positive whole number of days, got {self.delay!r}"
            )
        for name in ("entity", "label"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise LooplineError(f"DelayedLabelTiming.{name} must name a column")

    @property
    def outputs(self) -> list[tuple[str, str, int]]:
        p, y, d = self.prefix or self.entity, self.positive, self.days
        return [
            (f"{p}_KNOWN_{y}S_{d}D", "count", d),
            (f"{p}_DAYS_SINCE_FIRST_{y}_{d}D", "first", d),
            (f"{p}_DAYS_SINCE_LAST_{y}_{d}D", "last", d),
        ]


Extra = History | DelayedLabelTiming


@dataclass(frozen=True)
class HeavyFeatureSet:
    """The heavy model's features: ``base`` (computed by ``compute_offline``) and
    ``extra`` (the new definitions, computed by :func:`compute_extras`)."""

    base: FeatureSet
    extra: tuple[Extra, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", tuple(self.extra))
        for feature in self.extra:
            if not isinstance(feature, History | DelayedLabelTiming):
                raise LooplineError(f"unknown extra feature definition {feature!r}")
        names = self.names
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise LooplineError(f"feature names repeat: {', '.join(repeated)}")

    @property
    def extra_names(self) -> tuple[str, ...]:
        return tuple(name for feature in self.extra for name, _, _ in feature.outputs)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.base.names, *self.extra_names)

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns read (the label included)."""
        cols = dict.fromkeys(self.base.columns)
        for feature in self.extra:
            cols.setdefault(feature.entity, None)
            cols.setdefault(feature.value if isinstance(feature, History) else feature.label)
        return tuple(cols)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "extra": [{"kind": f.kind, **dataclasses.asdict(f)} for f in self.extra],
        }


def heavy_features(
    *,
    delay: int = 7,
    id: str = "TRANSACTION_ID",
    time: str = "TX_DATETIME",
    customer: str = "CUSTOMER_ID",
    terminal: str = "TERMINAL_ID",
    amount: str = "TX_AMOUNT",
    label: str = "TX_FRAUD",
) -> HeavyFeatureSet:
    """The heavy model's features (chosen on validation weeks of April-May 2018).

    The online set (the handbook's 14: flags, customer count and mean amount over 1/7/30
    days, terminal count and delayed fraud rate over 1/7/30 days), plus the terminal's
    own traffic over 1/7/30 days (no labels needed, so no delay); the customer's earlier
    amounts over 30 days (``History``: mean, std, max, the current amount's z-score and
    ratio to the mean); the terminal's known frauds over 35 days before the delay
    (``DelayedLabelTiming``: how many, days since the first and the last).
    """
    base = FeatureSet(
        features=(
            CalendarFlags(),
            Window(customer, amount, ("count", "mean"), (1, 7, 30), "CUSTOMER", "AMOUNT"),
            DelayedLabelRate(terminal, label, (1, 7, 30), delay, "TERMINAL"),
            Window(terminal, None, ("count",), (1, 7, 30), "TERMINAL_NOW"),
        ),
        id=id,
        time=time,
        subject=customer,
    )
    extra: tuple[Extra, ...] = (
        History(
            customer, amount, ("mean", "std", "max", "z", "ratio"), (30,), "CUSTOMER", "AMOUNT"
        ),
        DelayedLabelTiming(terminal, label, 35, delay, "TERMINAL"),
    )
    return HeavyFeatureSet(base, extra)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _history_sql(feature: History, i: int) -> tuple[dict[str, str], list[str]]:
    """Window definitions and output expressions of one History definition."""
    e, v = _q(feature.entity), _q(feature.value)
    windows: dict[str, str] = {}
    cols: list[str] = []
    for name, agg, days in feature.outputs:
        frame = f"h{i}_{days}"
        # strictly earlier events: (t - days, t), i.e. from t - days + 1us to t - 1us
        windows[frame] = (
            f"PARTITION BY {e} ORDER BY __ts RANGE BETWEEN {days * DAY_US - 1} PRECEDING "
            "AND 1 PRECEDING"
        )
        x = f"CAST({v} AS DOUBLE)"
        mean = f"avg({x}) OVER {frame}"
        std = f"stddev_samp({x}) OVER {frame}"
        top = f"max({x}) OVER {frame}"
        median = f"median({x}) OVER {frame}"
        expr = {
            "count": f"count({x}) OVER {frame}",
            "mean": mean,
            "std": std,
            "max": top,
            "median": median,
            "z": f"({x} - {mean}) / nullif({std}, 0)",
            "ratio": f"{x} / nullif({mean}, 0)",
            "ratio_median": f"{x} / nullif({median}, 0)",
            "ratio_max": f"{x} / nullif({top}, 0)",
        }[agg]
        cols.append(f"CAST({expr} AS DOUBLE) AS {_q(name)}")
    return windows, cols


def _timing_sql(feature: DelayedLabelTiming, i: int) -> tuple[dict[str, str], list[str]]:
    e, y = _q(feature.entity), _q(feature.label)
    frame = f"t{i}"
    windows = {
        frame: (
            f"PARTITION BY {e} ORDER BY __ts RANGE BETWEEN "
            f"{(feature.delay + feature.days) * DAY_US - 1} PRECEDING AND "
            f"{feature.delay * DAY_US} PRECEDING"
        )
    }
    positive = f"coalesce(CAST({y} AS DOUBLE), 0) > 0"
    when = f"CASE WHEN {positive} THEN __ts END"
    count, first, last = (name for name, _, _ in feature.outputs)
    cols = [
        f"CAST(count({when}) OVER {frame} AS BIGINT) AS {_q(count)}",
        f"(__ts - min({when}) OVER {frame}) / {float(DAY_US)} AS {_q(first)}",
        f"(__ts - max({when}) OVER {frame}) / {float(DAY_US)} AS {_q(last)}",
    ]
    return windows, cols


def extra_queries(features: HeavyFeatureSet) -> list[str]:
    """One query per entity over table ``src`` (``rowid`` = input row, ``__ts`` in
    microseconds), each giving ``__row`` and that entity's extra features."""
    queries = []
    entities = dict.fromkeys(f.entity for f in features.extra)
    for entity in entities:
        windows: dict[str, str] = {}
        cols = ["rowid AS __row"]
        for i, feature in enumerate(features.extra):
            if feature.entity != entity:
                continue
            w, c = (
                _history_sql(feature, i)
                if isinstance(feature, History)
                else _timing_sql(feature, i)
            )
            windows.update(w)
            cols.extend(c)
        clause = ", ".join(f"{name} AS ({spec})" for name, spec in windows.items())
        queries.append(f"SELECT {', '.join(cols)} FROM src WINDOW {clause}")
    return queries


def compute_extras(
    frame: pd.DataFrame,
    features: HeavyFeatureSet,
    *,
    memory_limit: str = "2GB",
    threads: int | None = None,
) -> pd.DataFrame:
    """The extra (new-type) features of ``features`` for every row of ``frame``, in its
    row order (a fresh index), one column per name of :attr:`HeavyFeatureSet.extra_names`."""
    import duckdb
    import numpy as np
    import pandas as pd

    names = features.extra_names
    if not features.extra:
        return pd.DataFrame(index=pd.RangeIndex(len(frame)))
    time = features.base.time
    needed = list(dict.fromkeys([time, *(c for f in features.extra for c in _columns(f))]))
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"the data has no column(s) {missing}")
    spill = tempfile.mkdtemp(prefix="loopline-fraud-features-")
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": spill,
        "preserve_insertion_order": True,
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__input", frame[needed])
        cols = ", ".join(_q(c) for c in needed if c != time)
        con.execute(
            f"CREATE TABLE src AS SELECT {cols}, "
            f"epoch_us(CAST({_q(time)} AS TIMESTAMP)) AS __ts FROM __input"
        )
        columns: dict[str, Any] = {}
        for sql in extra_queries(features):
            result = dict(con.execute(sql).fetchnumpy())
            rows = np.asarray(result.pop("__row"))
            for name, values in result.items():
                array = np.ma.filled(values, np.nan) if np.ma.isMaskedArray(values) else values
                array = np.asarray(array, dtype=float)
                placed = np.empty_like(array)
                placed[rows] = array
                columns[name] = placed
    except duckdb.Error as exc:
        raise DataError(f"computing the heavy features failed: {exc}") from exc
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return pd.DataFrame({name: columns[name] for name in names})


def _columns(feature: Extra) -> tuple[str, str]:
    return (feature.entity, feature.value if isinstance(feature, History) else feature.label)


def compute_heavy(
    frame: pd.DataFrame,
    features: HeavyFeatureSet | None = None,
    *,
    threads: int | None = None,
    memory_limit: str = "2GB",
) -> pd.DataFrame:
    """Every feature of ``features`` (:func:`heavy_features` by default) for every row of
    ``frame``: the id column and :attr:`HeavyFeatureSet.names`, in ``frame``'s row order."""
    import pandas as pd

    from loopline.features.offline import compute_offline

    features = features or heavy_features()
    base = compute_offline(frame, features.base, threads=threads, memory_limit=memory_limit)
    extra = compute_extras(frame, features, threads=threads, memory_limit=memory_limit)
    return pd.concat([base.reset_index(drop=True), extra], axis=1)
