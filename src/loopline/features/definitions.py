"""Feature definitions, written once and computed offline (:mod:`.offline`) and online
(:mod:`.online`) from the same objects.

A :class:`FeatureSet` names the id and time columns of the events (transactions) and holds
small declarative definitions:

- :class:`Window` — per entity (e.g. a customer), aggregations of a value over the events
  of the last ``days`` days, the current event included: the window ``(t - days, t]``.
- :class:`DelayedLabelRate` — per entity (e.g. a terminal), the number of events and the
  share of positive labels (e.g. frauds) in a window that ends ``delay`` days before the
  event: ``(t - delay - days, t - delay]``. Offline, every label counts as known ``delay``
  days after its event; online, a label counts from the time it is actually known.
- :class:`CalendarFlags` — weekend and night flags of the event's time.

They are frozen dataclasses of strings, numbers and tuples, so a feature set is a step
parameter like any other (the runner fingerprints dataclasses by their fields), and
:meth:`FeatureSet.to_dict` / :meth:`FeatureSet.from_dict` turn it into JSON and back.

Window edges follow the Fraud Detection Handbook (chapter 3, "Baseline feature
transformation"), which uses pandas' time-based ``rolling("<n>d")``: open on the left,
closed on the right. Events at exactly the same time as the current one count when they
came before it (in the input's row order offline, in arrival order online), as pandas'
rolling windows over a stably sorted frame do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from loopline.errors import LooplineError

__all__ = [
    "AGGREGATIONS",
    "CalendarFlags",
    "DelayedLabelRate",
    "Feature",
    "FeatureSet",
    "Window",
    "handbook_features",
]

AGGREGATIONS = ("count", "sum", "mean")
DAY_US = 86_400_000_000  # one day in microseconds, the resolution of every computation


def window_days(value: Any, where: str) -> tuple[int, ...]:
    """``value`` (a whole number or several) as a tuple of distinct positive day counts."""
    days = (value,) if isinstance(value, int) else tuple(value)
    if not days or any(type(d) is not int or d <= 0 for d in days):
        raise LooplineError(
            f"{where}: days must be positive whole numbers, got {value!r}",
            hint="e.g. days=(1, 7, 30)",
        )
    if len(set(days)) != len(days):
        raise LooplineError(f"{where}: days {days!r} repeat a window")
    return days


def checked_aggregations(
    value: str | tuple[str, ...], allowed: tuple[str, ...], where: str
) -> tuple[str, ...]:
    """``value`` (one aggregation or several) as a tuple, each one of ``allowed``."""
    aggregations = (value,) if isinstance(value, str) else tuple(value)
    unknown = [a for a in aggregations if a not in allowed]
    if unknown or not aggregations:
        raise LooplineError(
            f"{where}: unknown aggregation(s) {unknown or '(none)'}",
            hint=f"choose among {', '.join(allowed)}",
        )
    return aggregations


def _column(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise LooplineError(f"{where} must name a column, got {value!r}")
    return value


@dataclass(frozen=True)
class Window:
    """Per ``entity``, aggregations of ``value`` over the events in ``(t - days, t]``.

    ``aggregations`` are ``count`` (events in the window, the current one included),
    ``sum`` and ``mean`` of ``value``. Names: ``{prefix}_TX_{days}D`` for the count,
    ``{prefix}_SUM_{value_name}_{days}D`` and ``{prefix}_MEAN_{value_name}_{days}D``;
    ``prefix`` defaults to the entity column, ``value_name`` to the value column.
    """

    entity: str
    value: str | None = None
    aggregations: tuple[str, ...] = ("count", "mean")
    days: tuple[int, ...] = (1, 7, 30)
    prefix: str | None = None
    value_name: str | None = None

    kind: ClassVar[str] = "window"

    def __post_init__(self) -> None:
        _column(self.entity, "Window.entity")
        where = f"Window({self.entity})"
        aggregations = checked_aggregations(self.aggregations, AGGREGATIONS, where)
        object.__setattr__(self, "aggregations", aggregations)
        object.__setattr__(self, "days", window_days(self.days, where))
        if any(a != "count" for a in self.aggregations) and self.value is None:
            raise LooplineError(
                f"Window({self.entity}): sum and mean need a value column",
                hint="e.g. Window('CUSTOMER_ID', 'TX_AMOUNT')",
            )
        if self.value is not None:
            _column(self.value, f"Window({self.entity}).value")

    @property
    def outputs(self) -> list[tuple[str, str, int]]:
        """``(name, aggregation, days)`` of each feature, days first then aggregations."""
        prefix = self.prefix or self.entity
        value = self.value_name or self.value
        pattern = {
            "count": "{p}_TX_{d}D",
            "sum": "{p}_SUM_{v}_{d}D",
            "mean": "{p}_MEAN_{v}_{d}D",
        }
        return [
            (pattern[agg].format(p=prefix, v=value, d=days), agg, days)
            for days in self.days
            for agg in self.aggregations
        ]


@dataclass(frozen=True)
class DelayedLabelRate:
    """Per ``entity``, the events in ``(t - delay - days, t - delay]`` and their label rate.

    The count (``{prefix}_TX_{days}D``) and the sum of ``label`` over it divided by the
    count, 0 when the window is empty (``{prefix}_{rate_name}_{days}D``). A missing label
    counts as 0. ``delay`` (days, > 0) is how long labels take to be known: offline each
    label counts as known exactly ``delay`` days after its event; online a label counts
    from its ``known_at`` on, so a label later than the delay is left out until it comes.
    """

    entity: str
    label: str
    days: tuple[int, ...] = (1, 7, 30)
    delay: int = 7
    prefix: str | None = None
    rate_name: str = "RISK"
    count: bool = True

    kind: ClassVar[str] = "delayed_label_rate"

    def __post_init__(self) -> None:
        _column(self.entity, "DelayedLabelRate.entity")
        _column(self.label, "DelayedLabelRate.label")
        where = f"DelayedLabelRate({self.entity})"
        object.__setattr__(self, "days", window_days(self.days, where))
        if type(self.delay) is not int or self.delay <= 0:
            raise LooplineError(
                f"{where}: delay must be a positive whole number of days, got {self.delay!r}",
                hint="a label is never known at the moment of its transaction; the handbook "
                "uses delay=7",
            )

    @property
    def outputs(self) -> list[tuple[str, str, int]]:
        """``(name, "count" | "rate", days)`` of each feature, days first."""
        prefix = self.prefix or self.entity
        out: list[tuple[str, str, int]] = []
        for days in self.days:
            if self.count:
                out.append((f"{prefix}_TX_{days}D", "count", days))
            out.append((f"{prefix}_{self.rate_name}_{days}D", "rate", days))
        return out


@dataclass(frozen=True)
class CalendarFlags:
    """``weekend`` = weekday >= ``weekend_from`` (Monday is 0); ``night`` = hour <= ``night_until``.

    Read from the wall-clock time of ``time`` (the feature set's time column when None);
    time-zone-aware times are converted to UTC first.
    """

    time: str | None = None
    weekend: str = "TX_DURING_WEEKEND"
    night: str = "TX_DURING_NIGHT"
    weekend_from: int = 5
    night_until: int = 6

    kind: ClassVar[str] = "calendar_flags"

    def __post_init__(self) -> None:
        if not 0 <= self.weekend_from <= 7 or not -1 <= self.night_until <= 23:
            raise LooplineError(
                f"CalendarFlags: weekend_from {self.weekend_from} must be 0-7 and night_until "
                f"{self.night_until} an hour 0-23"
            )

    @property
    def outputs(self) -> list[tuple[str, str, int]]:
        return [(self.weekend, "weekend", 0), (self.night, "night", 0)]


Feature = Window | DelayedLabelRate | CalendarFlags
_KINDS: dict[str, type[Window] | type[DelayedLabelRate] | type[CalendarFlags]] = {
    cls.kind: cls for cls in (Window, DelayedLabelRate, CalendarFlags)
}


@dataclass(frozen=True)
class FeatureSet:
    """The definitions, with the events' ``id`` and ``time`` columns.

    ``subject`` is the entity column that names a data subject (a customer): what
    :meth:`OnlineFeatureStore.forget <loopline.features.online.OnlineFeatureStore.forget>`
    erases by default. :attr:`names` lists the features in a stable order (the order of
    the definitions, each one's days in order).
    """

    features: tuple[Feature, ...]
    id: str = "TRANSACTION_ID"
    time: str = "TX_DATETIME"
    subject: str | None = None

    def __post_init__(self) -> None:
        features = tuple(self.features)
        object.__setattr__(self, "features", features)
        if not features:
            raise LooplineError("a FeatureSet needs at least one feature definition")
        for feature in features:
            if not isinstance(feature, Window | DelayedLabelRate | CalendarFlags):
                raise LooplineError(
                    f"unknown feature definition {feature!r}",
                    hint="use Window, DelayedLabelRate or CalendarFlags",
                )
        _column(self.id, "FeatureSet.id")
        _column(self.time, "FeatureSet.time")
        names = [name for feature in features for name, _, _ in feature.outputs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise LooplineError(
                f"feature names repeat: {', '.join(repeated)}",
                hint="give the definitions different prefixes",
            )
        labels = {f.label for f in features if isinstance(f, DelayedLabelRate)}
        if len(labels) > 1:
            raise LooplineError(
                f"delayed label rates use several label columns: {sorted(labels)}",
                hint="one feature set takes one label (add_label sets it); use two sets",
            )
        clash = {self.id, self.time} & set(names)
        if clash:
            raise LooplineError(f"feature names clash with the id/time columns: {sorted(clash)}")
        if self.subject is not None and self.subject not in self.entities:
            raise LooplineError(
                f"subject {self.subject!r} is none of the entity columns {self.entities}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """Every feature's name, in a stable order."""
        return tuple(name for feature in self.features for name, _, _ in feature.outputs)

    @property
    def entities(self) -> tuple[str, ...]:
        """The entity columns, in the order they first appear."""
        seen: dict[str, None] = {}
        for feature in self.features:
            if isinstance(feature, Window | DelayedLabelRate):
                seen.setdefault(feature.entity, None)
        return tuple(seen)

    @property
    def label(self) -> str | None:
        """The label column of the delayed label rates (None when there are none)."""
        for feature in self.features:
            if isinstance(feature, DelayedLabelRate):
                return feature.label
        return None

    def values(self, entity: str) -> tuple[str, ...]:
        """The value columns the windows of ``entity`` aggregate, in order."""
        seen: dict[str, None] = {}
        for feature in self.features:
            if isinstance(feature, Window) and feature.entity == entity and feature.value:
                seen.setdefault(feature.value, None)
        return tuple(seen)

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns the features read (the label column included)."""
        cols: dict[str, None] = {self.id: None, self.time: None}
        for feature in self.features:
            if isinstance(feature, CalendarFlags):
                cols.setdefault(feature.time or self.time, None)
            elif isinstance(feature, Window):
                cols.setdefault(feature.entity, None)
                if feature.value:
                    cols.setdefault(feature.value, None)
            else:
                cols.setdefault(feature.entity, None)
                cols.setdefault(feature.label, None)
        return tuple(cols)

    @property
    def horizon_days(self) -> int:
        """How far back any feature looks: the longest window, plus the delay for rates."""
        longest = 0
        for feature in self.features:
            if isinstance(feature, Window):
                longest = max(longest, *feature.days)
            elif isinstance(feature, DelayedLabelRate):
                longest = max(longest, feature.delay + max(feature.days))
        return longest

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description; :meth:`from_dict` reads it back."""
        return {
            "id": self.id,
            "time": self.time,
            "subject": self.subject,
            "features": [
                {"kind": f.kind, **_jsonable(dataclasses.asdict(f))} for f in self.features
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSet:
        features = []
        for item in data.get("features", []):
            fields = dict(item)
            kind = fields.pop("kind", None)
            if kind not in _KINDS:
                raise LooplineError(
                    f"unknown feature kind {kind!r}", hint=f"one of {', '.join(_KINDS)}"
                )
            for key in ("days", "aggregations"):
                if isinstance(fields.get(key), list):
                    fields[key] = tuple(fields[key])
            try:
                features.append(_KINDS[kind](**fields))
            except TypeError as exc:
                raise LooplineError(f"bad {kind} definition {item!r}: {exc}") from None
        rest = {k: data[k] for k in ("id", "time", "subject") if k in data}
        return cls(features=tuple(features), **rest)

    def digest(self) -> str:
        """A short hash of the definitions: an online store refuses another feature set."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def handbook_features(
    *,
    windows: tuple[int, ...] = (1, 7, 30),
    delay: int = 7,
    id: str = "TRANSACTION_ID",
    time: str = "TX_DATETIME",
    customer: str = "CUSTOMER_ID",
    terminal: str = "TERMINAL_ID",
    amount: str = "TX_AMOUNT",
    label: str = "TX_FRAUD",
) -> FeatureSet:
    """The Fraud Detection Handbook's baseline features (chapter 3), 14 of them.

    ``TX_DURING_WEEKEND``, ``TX_DURING_NIGHT``; per customer ``CUSTOMER_TX_{n}D`` and
    ``CUSTOMER_MEAN_AMOUNT_{n}D`` over ``(t - n, t]``; per terminal ``TERMINAL_TX_{n}D`` and
    ``TERMINAL_RISK_{n}D`` over ``(t - delay - n, t - delay]``, for n in ``windows``. The
    names are those of the ``tabular`` template (the handbook's own are
    ``CUSTOMER_ID_NB_TX_{n}DAY_WINDOW`` etc.). The customer is the data subject.
    """
    return FeatureSet(
        features=(
            CalendarFlags(),
            Window(customer, amount, ("count", "mean"), windows, "CUSTOMER", "AMOUNT"),
            DelayedLabelRate(terminal, label, windows, delay, "TERMINAL"),
        ),
        id=id,
        time=time,
        subject=customer,
    )
