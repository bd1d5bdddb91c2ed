"""Model performance in production, computed when the delayed labels arrive.

Serving logs every prediction; ground truth comes later through ``POST /feedback`` or the
review queue and is joined to the log by request id. This module turns such a joined frame
into metrics per time window (or per N rows) and per model version, and looks for concept
drift: performance that falls while the inputs barely move.

Column conventions are those of the prediction log (:mod:`loopline.core.predlog`):
``request_id``, ``ts`` (UTC), ``model_version``, ``prediction``, ``proba.<class>``,
``input.<column>``; the joined ground truth is ``label_true`` (missing = no feedback yet).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopline.errors import DataError, LooplineError

__all__ = [
    "BUILTIN_METRICS",
    "CARD_COLUMNS",
    "LABEL",
    "PREDICTION",
    "TS",
    "ConceptDriftSignal",
    "LiveMetric",
    "PerformanceReport",
    "ScoredRows",
    "Window",
    "WindowPerformance",
    "WindowSpec",
    "attach_labels",
    "card_precision_at_k",
    "check_metric",
    "detect_concept_drift",
    "find_card_column",
    "get_live_metric",
    "iter_windows",
    "label_relation_changes",
    "live_metric_names",
    "metric_of_frame",
    "metric_weight",
    "parse_duration",
    "parse_window",
    "performance_metric_names",
    "pick_positive_label",
    "register_live_metric",
    "sample_name",
    "served",
    "windowed_performance",
]

TS = "ts"
PREDICTION = "prediction"
LABEL = "label_true"
VERSION = "model_version"
REQUEST_ID = "request_id"
ROUTE = "route"
# The prediction log's column prefixes (loopline.core.predlog; repeated to keep this light).
INPUT_PREFIX = "input."
PROBA_PREFIX = "proba."

# Class names that usually mean "the event we look for" in a binary problem.
_POSITIVE_NAMES = ("1", "true", "yes", "positive", "pos", "fraud", "spam", "churn", "default")
_ROWS = re.compile(r"^\s*(\d+)\s*(rows?)?\s*$", re.IGNORECASE)


# --- windows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSpec:
    """How to cut a log into windows: a fixed duration, or a fixed number of rows."""

    text: str
    duration: pd.Timedelta | None = None
    rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the spec as the user wrote it plus what it means)."""
        return {
            "window": self.text,
            "seconds": None if self.duration is None else self.duration.total_seconds(),
            "rows": self.rows,
        }


def parse_window(spec: str | int | WindowSpec) -> WindowSpec:
    """Parse ``"1h"``, ``"1D"``, ``"30min"``, ``"7d"`` (durations) or ``"500"``/``"500rows"``.

    Raises:
        LooplineError: the text is neither a positive duration nor a positive row count.
    """
    if isinstance(spec, WindowSpec):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    text = str(spec).strip()
    match = _ROWS.match(text)
    if match:
        rows = int(match.group(1))
        if rows <= 0:
            raise LooplineError(f"window must hold at least one row, found {text!r}")
        return WindowSpec(text=text, rows=rows)
    duration = parse_duration(text)
    if duration is None or duration <= pd.Timedelta(0):
        raise LooplineError(
            f"cannot read the window {text!r}",
            hint="use a duration such as 30min, 1h, 1D or 7D, or a row count such as 1000",
        )
    return WindowSpec(text=text, duration=duration)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "min"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "D"),
    **dict.fromkeys(("w", "week", "weeks"), "W"),
}


def parse_duration(text: str) -> pd.Timedelta | None:
    """``"30min"``, ``"1h"``/``"1H"``, ``"1D"``/``"1d"``, ``"2w"`` as a Timedelta, else None.

    Parsed here rather than by ``pd.Timedelta(text)`` because pandas keeps changing which
    unit spellings it accepts ("H" and "d" are deprecated in pandas 3).
    """
    match = _DURATION.match(text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        return None
    return pd.Timedelta(float(match.group(1)), unit=unit)


@dataclass(frozen=True)
class Window:
    """One window of the log: its position, bounds and rows (possibly none)."""

    index: int
    start: pd.Timestamp
    end: pd.Timestamp
    frame: pd.DataFrame

    @property
    def key(self) -> str:
        """A stable name for the window: its start as ISO-8601."""
        return self.start.isoformat()


def iter_windows(frame: pd.DataFrame, window: str | int | WindowSpec) -> Iterator[Window]:
    """Cut ``frame`` (with a ``ts`` column) into consecutive windows, oldest first.

    Duration windows are aligned to multiples of the duration since the epoch, so two
    reports over the same log agree on the boundaries; windows with no rows between the
    first and the last are yielded too (empty), because a hole in the log is information.
    Row windows hold ``rows`` predictions each in time order (the last may be shorter).
    """
    spec = parse_window(window)
    if frame.empty:
        return
    ordered = frame.sort_values(TS, kind="stable")
    ts = pd.to_datetime(ordered[TS], utc=True)
    if spec.rows is not None:
        for index, begin in enumerate(range(0, len(ordered), spec.rows)):
            part = ordered.iloc[begin : begin + spec.rows]
            part_ts = ts.iloc[begin : begin + spec.rows]
            yield Window(index, part_ts.iloc[0], part_ts.iloc[-1], part)
        return
    assert spec.duration is not None
    origin = ts.iloc[0].floor(spec.duration)
    slot = ((ts - origin) // spec.duration).to_numpy()
    last = int(slot[-1])
    bounds = np.searchsorted(slot, np.arange(last + 2))
    for index in range(last + 1):
        start = origin + index * spec.duration
        part = ordered.iloc[bounds[index] : bounds[index + 1]]
        yield Window(index, start, start + spec.duration, part)


# --- joining labels ---------------------------------------------------------------------


def attach_labels(predictions: pd.DataFrame, feedback: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Return ``predictions`` with ``label_true`` (missing where no feedback came back yet),
    and the number of feedback labels whose request id is not in ``predictions``.

    ``feedback`` is what :func:`loopline.core.feedback.read_feedback` returns. Labels are
    matched by request id only (through :func:`loopline.core.feedback.join_feedback`), so
    feedback for an unknown request id is counted and never attached to another prediction.
    """
    from loopline.core.feedback import join_feedback

    _require(predictions, [REQUEST_ID], "the prediction log")
    if feedback.empty:
        empty = pd.Series(pd.NA, index=predictions.index, dtype="string")
        return predictions.assign(**{LABEL: empty}), 0
    joined, unmatched = join_feedback(predictions.drop(columns=[LABEL], errors="ignore"), feedback)
    return joined.astype({LABEL: "string"}), unmatched


def served(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose prediction was answered to a client: shadow predictions repeat a
    request that the champion answered, so counting them would count that request twice."""
    if ROUTE not in frame.columns:
        return frame
    return frame[frame[ROUTE].astype("string").fillna("") != "shadow"]


# --- score-based metrics (pluggable) ------------------------------------------------------

#: Metrics of the predicted classes, always computed (see :class:`WindowPerformance`).
BUILTIN_METRICS = ("accuracy", "macro_f1", "precision", "recall")
#: Input columns taken as the card (or customer) id when none is named: card precision@k
#: ranks cards, not transactions. Pseudonymised ids work as well as raw ones.
CARD_COLUMNS = ("card", "card_id", "CARD_ID", "CUSTOMER_ID", "customer_id")
_CP_AT = re.compile(r"^cp_at_(\d+)$")


@dataclass(frozen=True)
class ScoredRows:
    """The labelled predictions of one window as a score-based metric sees them.

    ``y_true``: whether the label is the positive class; ``score``: the logged probability
    of the positive class (``None`` when the log has none); ``card``: the card id of each
    row (``None`` without a card column); ``day``: the UTC calendar day of each prediction.
    Rows without a finite score are left out of all four.
    """

    y_true: np.ndarray
    score: np.ndarray | None
    card: np.ndarray | None
    day: np.ndarray

    @property
    def positives(self) -> int:
        return int(self.y_true.sum())

    @property
    def negatives(self) -> int:
        return int(len(self.y_true) - self.y_true.sum())


@dataclass(frozen=True)
class LiveMetric:
    """A performance metric computed per window from the scores of the labelled rows.

    ``compute`` returns the value (``None`` when undefined in that window, e.g. average
    precision without a positive label) and the sample size it rests on, which decides
    whether a window is judged (``min_labels``) and how noisy it is (concept drift and
    version comparisons use two standard errors of a proportion at that size).
    ``sample_name`` says what the sample counts, for messages.
    """

    name: str
    compute: Callable[[ScoredRows], tuple[float | None, int]]
    needs_card: bool = False
    sample_name: str = "labelled predictions"
    description: str = ""


def _average_precision(rows: ScoredRows) -> tuple[float | None, int]:
    from sklearn.metrics import average_precision_score

    if rows.score is None or rows.positives == 0 or rows.negatives == 0:
        return None, rows.positives
    return float(average_precision_score(rows.y_true, rows.score)), rows.positives


def _roc_auc(rows: ScoredRows) -> tuple[float | None, int]:
    from sklearn.metrics import roc_auc_score

    sample = min(rows.positives, rows.negatives)
    if rows.score is None or sample == 0:
        return None, sample
    return float(roc_auc_score(rows.y_true, rows.score)), sample


def card_precision_at_k(
    y_true: np.ndarray, score: np.ndarray, card: np.ndarray, day: np.ndarray, k: int = 100
) -> tuple[float | None, int]:
    """Card precision top-``k`` (the Fraud Detection Handbook's CP@k, chapter 4.3) and the
    number of card slots it judged (``k`` per day).

    For each day in order: each card's score is its highest score that day and its label
    the highest label (fraudulent when any labelled transaction is); the ``k`` cards with
    the highest scores are the ones an analyst team checks, and the day's precision is
    the share of them that are fraudulent, divided by ``k`` even on a day with fewer cards.
    Cards found (fraudulent and in the top ``k``) on an earlier day of the same rows are
    left out, as the team has blocked them. CP@k is the mean of the daily precisions.
    Ties in score are broken by the card id. ``None`` without rows.
    """
    if len(y_true) == 0:
        return None, 0
    # Cards as integer codes in sorted order, so ties in score go by the card id.
    codes, _cards = pd.factorize(np.asarray(card), sort=True)
    table = pd.DataFrame(
        {"day": day, "card": codes, "score": score, "fraud": np.asarray(y_true, dtype=np.int8)}
    )
    found_before = np.zeros(len(_cards), dtype=bool)
    per_day: list[float] = []
    for _day, rows in table.groupby("day", sort=True):
        rows = rows[~found_before[rows["card"].to_numpy()]]
        cards = rows.groupby("card", sort=True).agg(score=("score", "max"), fraud=("fraud", "max"))
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.index.to_numpy()[top["fraud"].to_numpy() == 1]
        per_day.append(len(found) / k)
        found_before[found] = True
    return float(np.mean(per_day)), k * len(per_day)


def _card_precision(k: int) -> Callable[[ScoredRows], tuple[float | None, int]]:
    def compute(rows: ScoredRows) -> tuple[float | None, int]:
        if rows.score is None or rows.card is None:
            return None, 0
        return card_precision_at_k(rows.y_true, rows.score, rows.card, rows.day, k)

    return compute


_LIVE_METRICS: dict[str, LiveMetric] = {
    "average_precision": LiveMetric(
        "average_precision",
        _average_precision,
        sample_name="labelled positives",
        description="average precision of the positive class's probability (scikit-learn)",
    ),
    "roc_auc": LiveMetric(
        "roc_auc",
        _roc_auc,
        sample_name="labelled rows of the rarer class",
        description="area under the ROC curve of the positive class's probability",
    ),
}


def register_live_metric(metric: LiveMetric) -> None:
    """Add (or replace) a score-based metric; it is then usable in reports, ``diagnose``,
    alert rules and the automatic rollback under ``metric.name``."""
    if metric.name in BUILTIN_METRICS:
        raise LooplineError(f"{metric.name!r} is a built-in metric and cannot be replaced")
    _LIVE_METRICS[metric.name] = metric


def get_live_metric(name: str) -> LiveMetric | None:
    """The registered score-based metric ``name``; ``cp_at_<k>`` is card precision@k for
    any k. ``None`` for a built-in or unknown name."""
    if name in _LIVE_METRICS:
        return _LIVE_METRICS[name]
    match = _CP_AT.match(name)
    if match and int(match.group(1)) > 0:
        k = int(match.group(1))
        return LiveMetric(
            name,
            _card_precision(k),
            needs_card=True,
            sample_name=f"card slots ({k} per labelled day)",
            description=f"card precision@{k}: fraudulent share of the {k} highest-scored "
            "cards per day, averaged over days (Fraud Detection Handbook)",
        )
    return None


def live_metric_names() -> list[str]:
    """The score-based metrics by name (``cp_at_<k>`` stands for every k)."""
    return [*_LIVE_METRICS, "cp_at_100"]


def performance_metric_names() -> list[str]:
    """Every performance metric a report, ``diagnose``, a rule or a rollback can follow."""
    return [*BUILTIN_METRICS, *live_metric_names()]


def check_metric(name: str) -> None:
    """Raise :class:`LooplineError` (listing the known ones) for an unknown metric name."""
    if name not in BUILTIN_METRICS and get_live_metric(name) is None:
        raise LooplineError(
            f"unknown performance metric {name!r}",
            hint=f"use one of {', '.join(performance_metric_names())} (cp_at_K for any K)",
        )


def find_card_column(frame: pd.DataFrame, card_column: str | None = None) -> str | None:
    """The log's card-id column: ``card_column`` (as given or as ``input.<name>``), else
    the first of :data:`CARD_COLUMNS` that is logged, else ``None``.

    Raises:
        LooplineError: ``card_column`` is named but not in the log.
    """
    if card_column is not None:
        for candidate in (card_column, INPUT_PREFIX + card_column):
            if candidate in frame.columns:
                return candidate
        logged = sorted(
            c.removeprefix(INPUT_PREFIX) for c in frame.columns if c.startswith(INPUT_PREFIX)
        )
        raise LooplineError(
            f"the card column {card_column!r} is not in the prediction log",
            hint="card precision@k ranks cards per day: name a logged input "
            f"({', '.join(logged) or 'none logged'})",
        )
    for name in CARD_COLUMNS:
        if INPUT_PREFIX + name in frame.columns:
            return INPUT_PREFIX + name
    return None


@dataclass(frozen=True)
class _ScoreSource:
    """Where a window's score-based metrics read from: the metrics, the score and card
    columns and the positive class."""

    metrics: tuple[LiveMetric, ...]
    positive: str | None
    score_column: str | None
    card_column: str | None


def _score_source(
    frame: pd.DataFrame,
    metrics: Sequence[str] | None,
    positive: str | None,
    card_column: str | None,
    messages: list[str],
) -> _ScoreSource:
    """The score-based metrics to compute: the ones asked for, or (``metrics=None``) every
    one the log supports: average precision and ROC AUC when a probability of the positive
    class is logged, card precision@100 too when a card column is."""
    card = find_card_column(frame, card_column)
    score = PROBA_PREFIX + positive if positive is not None else None
    if score is not None and score not in frame.columns:
        score = None
    if metrics is None:
        names = [] if score is None else ["average_precision", "roc_auc"]
        names += ["cp_at_100"] if score is not None and card is not None else []
    else:
        for name in metrics:
            check_metric(name)
        names = [name for name in dict.fromkeys(metrics) if name not in BUILTIN_METRICS]
    chosen = tuple(m for m in (get_live_metric(n) for n in names) if m is not None)
    if chosen and score is None:
        messages.append(
            f"{', '.join(m.name for m in chosen)} need the logged probability of the positive "
            f"class ({PROBA_PREFIX}{positive or '<class>'}), which the log does not have"
        )
    needs_card = [m.name for m in chosen if m.needs_card]
    if needs_card and card is None:
        messages.append(
            f"{', '.join(needs_card)} rank cards per day and need a card column "
            f"(log one of {', '.join(CARD_COLUMNS)} as an input, or name it with --card)"
        )
    return _ScoreSource(chosen, positive, score, card)


def _scored_rows(labeled: pd.DataFrame, source: _ScoreSource) -> ScoredRows:
    y_true = (labeled[LABEL].astype(str) == str(source.positive)).to_numpy()
    utc = pd.to_datetime(labeled[TS], utc=True).dt.tz_localize(None)
    day = utc.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    if source.score_column is None:
        return ScoredRows(y_true, None, None, day)
    score = pd.to_numeric(labeled[source.score_column], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(score)
    card = None
    if source.card_column is not None:
        card = labeled[source.card_column].astype("string").fillna("(missing)").to_numpy()
        card = card[keep]
    return ScoredRows(y_true[keep], score[keep], card, day[keep])


def metric_of_frame(
    frame: pd.DataFrame,
    metric: str,
    *,
    positive_label: str | None = None,
    card_column: str | None = None,
) -> tuple[float | None, int]:
    """One performance metric over the labelled rows of ``frame`` (a prediction log with
    ``label_true``), and the sample size it rests on (see :class:`WindowPerformance`).

    Raises:
        LooplineError: an unknown metric, or a named card column that is not logged.
    """
    check_metric(metric)
    frame = _with_label_column(frame)
    observed = pd.concat([frame[PREDICTION].dropna(), frame[LABEL].dropna()])
    positive = positive_label or pick_positive_label(observed.astype(str).unique())
    source = _score_source(frame, [metric], positive, card_column, [])
    ts = pd.to_datetime(frame[TS], utc=True)
    start = ts.min() if len(frame) else pd.Timestamp(0, tz="UTC")
    end = ts.max() if len(frame) else start
    result = _measure(frame, start, end, None, positive, source)
    return result.metric(metric), result.sample_size(metric)


# --- metrics ------------------------------------------------------------------------------


@dataclass
class WindowPerformance:
    """Metrics of one window (and one model version, or all versions when ``None``).

    ``scores`` holds the score-based metrics (average precision, ROC AUC, card
    precision@k, registered ones: see :func:`get_live_metric`) and ``samples`` the sample
    size of each (labelled positives for average precision, card slots for CP@k).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    model_version: str | None
    n_predictions: int
    n_labeled: int
    accuracy: float | None = None
    macro_f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    n_label_positive: int = 0
    n_predicted_positive: int = 0
    scores: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)

    def sample_size(self, metric: str) -> int:
        """The rows a metric is computed from: labelled predictions, except precision
        (predicted positives), recall (actual positives) and the score-based metrics
        (their own sample: see :class:`LiveMetric`)."""
        if metric in self.samples:
            return self.samples[metric]
        if metric == "precision":
            return self.n_predicted_positive
        if metric == "recall":
            return self.n_label_positive
        return self.n_labeled

    @property
    def label_coverage(self) -> float | None:
        """Share of the window's predictions that have feedback."""
        return None if self.n_predictions == 0 else self.n_labeled / self.n_predictions

    def metric(self, name: str) -> float | None:
        """One metric by name (``accuracy``, ``macro_f1``, ``precision``, ``recall``, or a
        score-based one such as ``average_precision``, ``roc_auc``, ``cp_at_100``)."""
        if name in self.scores:
            value = self.scores[name]
            return None if value is None else float(value)
        value = getattr(self, name, None)
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (score-based metrics under their names, their sample sizes in
        ``metric_samples``)."""
        out = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "model_version": self.model_version,
            "n_predictions": self.n_predictions,
            "n_labeled": self.n_labeled,
            "label_coverage": _round(self.label_coverage),
            "accuracy": _round(self.accuracy),
            "macro_f1": _round(self.macro_f1),
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "n_label_positive": self.n_label_positive,
            "n_predicted_positive": self.n_predicted_positive,
        }
        if self.scores:
            out.update({name: _round(value) for name, value in self.scores.items()})
            out["metric_samples"] = dict(self.samples)
        return out


@dataclass
class PerformanceReport:
    """Performance over windows plus the totals, and what could not be measured.

    ``metrics``: the score-based metrics computed (besides the built-in ones);
    ``card_column``: the log column card precision@k ranked cards by.
    """

    window: WindowSpec
    positive_label: str | None
    windows: list[WindowPerformance]
    overall: WindowPerformance | None
    by_version: dict[str, WindowPerformance] = field(default_factory=dict)
    unmatched_feedback: int = 0
    messages: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    card_column: str | None = None

    def series(self, model_version: str | None = None) -> list[WindowPerformance]:
        """The windows of one model version (``None``: all versions together)."""
        return [w for w in self.windows if w.model_version == model_version]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = {
            **self.window.to_dict(),
            "positive_label": self.positive_label,
            "overall": None if self.overall is None else self.overall.to_dict(),
            "by_version": {k: v.to_dict() for k, v in self.by_version.items()},
            "windows": [w.to_dict() for w in self.windows],
            "unmatched_feedback": self.unmatched_feedback,
            "messages": list(self.messages),
        }
        if self.metrics:
            out["metrics"] = list(self.metrics)
            out["card_column"] = (
                None if self.card_column is None else self.card_column.removeprefix(INPUT_PREFIX)
            )
        return out


def pick_positive_label(classes: Sequence[Any]) -> str | None:
    """The class to report precision/recall for: a conventional "positive" name if one of
    two classes has it, else the second of two classes in sorted order; ``None`` when
    there are more than two classes (macro-F1 covers those)."""
    names = sorted({str(c) for c in classes if not _is_missing(c)})
    if len(names) != 2:
        return None
    for name in names:
        if name.lower() in _POSITIVE_NAMES:
            return name
    return names[1]


def windowed_performance(
    frame: pd.DataFrame,
    window: str | int | WindowSpec = "1D",
    *,
    positive_label: str | None = None,
    by_version: bool = True,
    unmatched_feedback: int = 0,
    metrics: Sequence[str] | None = None,
    card_column: str | None = None,
) -> PerformanceReport:
    """Accuracy, macro-F1, precision/recall, score-based metrics and label coverage per
    window.

    Args:
        frame: the prediction log with ``ts``, ``prediction`` and ``label_true`` (see
            :func:`attach_labels`); ``model_version`` is optional.
        window: a duration (``"1h"``, ``"7D"``) or a row count (``"1000"``).
        positive_label: the class for precision/recall and the score-based metrics;
            guessed for two classes when ``None`` (see :func:`pick_positive_label`).
        by_version: also report each model version separately in each window.
        unmatched_feedback: how many feedback rows matched no logged prediction (reported).
        metrics: the metrics wanted: the built-in ones are always computed; the
            score-based ones (``average_precision``, ``roc_auc``, ``cp_at_<k>``,
            registered ones) when named. ``None``: every score-based metric the log
            supports (a logged probability of the positive class; a card column for CP@100).
        card_column: the input column with the card id for card precision@k (default: the
            first logged of :data:`CARD_COLUMNS`).

    The score-based metrics use only labelled rows: ``n_labeled`` and ``label_coverage``
    of a window say how much of it the delayed labels cover so far.

    Raises:
        DataError: a required column is missing from the log.
        LooplineError: an unknown metric, or a named card column that is not logged.
    """
    spec = parse_window(window)
    _require(frame, [TS, PREDICTION], "the prediction log")
    frame = _with_label_column(frame)
    messages = _coverage_messages(served(frame), unmatched_feedback)
    observed = pd.concat([frame[PREDICTION].dropna(), frame[LABEL].dropna()])
    positive = positive_label or pick_positive_label(observed.astype(str).unique())
    source = _score_source(frame, metrics, positive, card_column, messages)
    versions = _versions(frame) if by_version else []
    windows: list[WindowPerformance] = []
    for win in iter_windows(frame, spec):
        windows.extend(_measure_all(win.frame, win.start, win.end, versions, positive, source))
    overall, per_version = None, {}
    if len(frame):
        ts = pd.to_datetime(frame[TS], utc=True)
        overall, *rest = _measure_all(frame, ts.min(), ts.max(), versions, positive, source)
        per_version = {str(w.model_version): w for w in rest}
    empty = sum(1 for w in windows if w.model_version is None and w.n_predictions == 0)
    if empty:
        messages.append(f"{empty} window(s) hold no predictions at all (a gap in the log)")
    return PerformanceReport(
        spec,
        positive,
        windows,
        overall,
        per_version,
        unmatched_feedback,
        messages,
        [m.name for m in source.metrics],
        source.card_column if any(m.needs_card for m in source.metrics) else None,
    )


def _measure_all(
    part: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    versions: list[str],
    positive: str | None,
    source: _ScoreSource | None = None,
) -> list[WindowPerformance]:
    """All served versions together first, then each version (shadow rows included)."""
    results = [_measure(served(part), start, end, None, positive, source)]
    for version in versions:
        rows = part[part[VERSION].astype("string") == version]
        if len(rows):
            results.append(_measure(rows, start, end, version, positive, source))
    return results


def _with_label_column(frame: pd.DataFrame) -> pd.DataFrame:
    if LABEL in frame.columns:
        return frame
    return frame.assign(**{LABEL: pd.Series(pd.NA, index=frame.index, dtype="string")})


def _coverage_messages(frame: pd.DataFrame, unmatched: int) -> list[str]:
    messages = []
    if frame.empty:
        messages.append("the prediction log holds no rows in this period")
    elif frame[LABEL].notna().sum() == 0:
        messages.append(
            "no feedback labels joined any logged prediction: performance cannot be measured "
            "(post labels to /feedback or label items in the review queue)"
        )
    if unmatched:
        messages.append(
            f"{unmatched} feedback label(s) name request ids that are not in the log "
            "(ignored, never matched to another prediction)"
        )
    return messages


def _versions(frame: pd.DataFrame) -> list[str]:
    if VERSION not in frame.columns:
        return []
    return sorted(frame[VERSION].dropna().astype(str).unique(), key=_version_key)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (10**9, version)


def _measure(
    part: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    version: str | None,
    positive: str | None,
    source: _ScoreSource | None = None,
) -> WindowPerformance:
    labeled = part[part[LABEL].notna() & part[PREDICTION].notna()]
    result = WindowPerformance(start, end, version, len(part), len(labeled))
    if source is not None and source.metrics:
        result.scores = {m.name: None for m in source.metrics}
        result.samples = {m.name: 0 for m in source.metrics}
    if labeled.empty:
        return result
    y_true = labeled[LABEL].astype(str).to_numpy()
    y_pred = labeled[PREDICTION].astype(str).to_numpy()
    result.accuracy = float(np.mean(y_true == y_pred))
    result.macro_f1 = _macro_f1(y_true, y_pred)
    if positive is not None:
        result.precision, result.recall = _precision_recall(y_true, y_pred, positive)
        result.n_label_positive = int(np.sum(y_true == positive))
        result.n_predicted_positive = int(np.sum(y_pred == positive))
    if source is not None and source.metrics and positive is not None:
        rows = _scored_rows(labeled, source)
        for metric in source.metrics:
            value, sample = metric.compute(rows)
            result.scores[metric.name] = None if value is None or _is_missing(value) else value
            result.samples[metric.name] = int(sample)
    return result


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes seen in either array (scikit-learn's ``f1_score(...,
    average="macro", zero_division=0)``, counted with numpy: the log can be long)."""
    codes, _classes = pd.factorize(np.concatenate([y_true, y_pred]), sort=True)
    size = len(_classes)
    truth, predicted = codes[: len(y_true)], codes[len(y_true) :]
    hits = np.bincount(truth[truth == predicted], minlength=size)
    actual = np.bincount(truth, minlength=size)
    chosen = np.bincount(predicted, minlength=size)
    denominator = actual + chosen
    f1 = np.divide(2 * hits, denominator, out=np.zeros(size), where=denominator > 0)
    return float(f1.mean())


def _precision_recall(
    y_true: np.ndarray, y_pred: np.ndarray, positive: str
) -> tuple[float | None, float | None]:
    # None (not 0) when undefined: no positive prediction / no positive label in the window.
    predicted = y_pred == positive
    actual = y_true == positive
    hits = float(np.sum(predicted & actual))
    precision = hits / predicted.sum() if predicted.any() else None
    recall = hits / actual.sum() if actual.any() else None
    return precision, recall


# --- concept drift ------------------------------------------------------------------------


@dataclass
class ConceptDriftSignal:
    """Whether performance fell while the inputs stayed put, with the evidence.

    ``from_first_window``: the metric is below the reference profile's already in the first
    judged window, with stable inputs there: a gap between training and serving rather than
    a change over time.
    """

    detected: bool
    metric: str
    baseline: float | None
    baseline_source: str
    degraded_windows: list[dict[str, Any]] = field(default_factory=list)
    since: str | None = None
    evidence: list[str] = field(default_factory=list)
    from_first_window: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "detected": self.detected,
            "metric": self.metric,
            "baseline": _round(self.baseline),
            "baseline_source": self.baseline_source,
            "since": self.since,
            "from_first_window": self.from_first_window,
            "degraded_windows": self.degraded_windows,
            "evidence": list(self.evidence),
        }


def detect_concept_drift(
    performance: PerformanceReport,
    *,
    input_drift: Mapping[str, float] | None = None,
    reference: Mapping[str, Any] | None = None,
    metric: str = "accuracy",
    min_drop: float = 0.05,
    min_labels: int = 30,
    max_input_drift: float = 0.2,
    baseline_windows: int | None = None,
) -> ConceptDriftSignal:
    """Flag concept drift: ``metric`` falls clearly below its baseline while input drift is low.

    Args:
        performance: from :func:`windowed_performance` (the all-versions series is used).
        input_drift: share of features flagged as drifted per window, keyed by the window
            start in ISO-8601 (:attr:`Window.key`); windows not in it count as unknown.
        reference: the reference metrics (from the model's profile); when absent the mean
            of the first labelled windows is the baseline.
        metric: ``accuracy``, ``macro_f1``, ``precision`` or ``recall``.
        min_drop: the smallest fall that counts, in metric units.
        min_labels: windows with fewer labelled predictions (for precision: predicted
            positives; for recall: actual positives) are not judged.
        max_input_drift: above this share of drifted features a fall is blamed on data
            drift, not on concept drift.
        baseline_windows: how many first labelled windows make the baseline (default: a
            quarter of them, at least one).

    A window is *degraded* when its metric is below the baseline by more than ``min_drop``
    and by more than two standard errors of a proportion at the window's label count, so a
    small labelled sample does not raise a false alarm.
    """
    series = [
        w
        for w in performance.series(None)
        if w.sample_size(metric) >= min_labels and w.metric(metric) is not None
    ]
    baseline, source, judged = _baseline(
        series, reference, metric, baseline_windows, performance.positive_label
    )
    signal = ConceptDriftSignal(False, metric, baseline, source)
    if baseline is None or not judged:
        signal.evidence.append(
            f"not enough labelled predictions to judge {metric} "
            f"(need windows with at least {min_labels} {sample_name(metric)})"
        )
        return signal
    drift = dict(input_drift or {})
    for win in judged:
        value = win.metric(metric)
        assert value is not None
        # Two standard errors of a proportion at this window's sample size.
        spread = math.sqrt(max(baseline * (1 - baseline), 1e-4) / win.sample_size(metric))
        margin = max(min_drop, 2 * spread)
        if baseline - value <= margin:
            continue
        share = drift.get(win.start.isoformat())
        signal.degraded_windows.append(
            {
                "start": win.start.isoformat(),
                "value": _round(value),
                "drop": _round(baseline - value),
                "n_labeled": win.n_labeled,
                "input_drift_share": _round(share),
                "inputs_stable": share is not None and share <= max_input_drift,
            }
        )
    concept = [d for d in signal.degraded_windows if d["inputs_stable"]]
    signal.detected = bool(concept)
    if concept:
        signal.since = concept[0]["start"]
    signal.evidence.extend(_concept_evidence(signal, concept, max_input_drift))
    first = judged[0].start.isoformat() if judged else None
    if (
        source == "reference profile"
        and concept[:1]
        and concept[0]["start"] == first
        and signal.degraded_windows[0]["start"] == first
    ):
        # Below the reference from the very first window with inputs like the training
        # data: no change over time, but a gap between evaluation and production. (With the
        # inputs moved there, the fall coincides with data drift, said above.)
        signal.from_first_window = True
        signal.evidence.append(
            f"{metric} is below the reference already in the first window: a difference "
            "between training and serving (feature computation skew, or an optimistic "
            "evaluation) rather than a change over time"
        )
    return signal


_SAMPLE_NAMES = {"precision": "predicted positives", "recall": "actual positives"}


def sample_name(metric: str) -> str:
    """What the sample of ``metric`` counts ("labels", "actual positives", ...)."""
    live = get_live_metric(metric)
    if live is not None:
        return live.sample_name
    return _SAMPLE_NAMES.get(metric, "labels")


def metric_weight(window: WindowPerformance, metric: str) -> int:
    """How much a window weighs when windows are pooled: its labelled predictions, or for
    a score-based metric its own sample (labelled positives for average precision)."""
    return window.samples.get(metric, window.n_labeled)


def _baseline(
    series: list[WindowPerformance],
    reference: Mapping[str, Any] | None,
    metric: str,
    baseline_windows: int | None,
    positive_label: str | None = None,
) -> tuple[float | None, str, list[WindowPerformance]]:
    ref_value = (reference or {}).get(metric)
    ref_positive = (reference or {}).get("positive_label")
    if (
        metric in ("precision", "recall")
        and ref_positive is not None
        and (str(ref_positive) != positive_label)
    ):
        ref_value = None  # measured for another class: not comparable
    if isinstance(ref_value, int | float) and not _is_missing(ref_value):
        return float(ref_value), "reference profile", series
    if len(series) < 2:
        return None, "none", []
    count = baseline_windows or max(1, len(series) // 4)
    count = min(count, len(series) - 1)
    first = series[:count]
    labels = sum(metric_weight(w, metric) for w in first)
    value = sum((w.metric(metric) or 0.0) * metric_weight(w, metric) for w in first) / labels
    return value, f"first {count} labelled window(s)", series[count:]


def _concept_evidence(
    signal: ConceptDriftSignal, concept: list[dict[str, Any]], max_input_drift: float
) -> list[str]:
    evidence = []
    name, base = signal.metric, signal.baseline
    if concept:
        worst = max(concept, key=lambda d: d["drop"])
        evidence.append(
            f"{name} fell from {base:.3f} ({signal.baseline_source}) to {worst['value']:.3f} "
            f"in the window starting {worst['start']} ({worst['n_labeled']} labels), "
            f"while at most {max_input_drift:.0%} of the input features drifted"
        )
        evidence.append(
            f"{len(concept)} window(s) degraded with stable inputs since {signal.since}"
        )
    data = [d for d in signal.degraded_windows if not d["inputs_stable"]]
    if data:
        unknown = [d for d in data if d["input_drift_share"] is None]
        if len(unknown) < len(data):
            evidence.append(
                f"{len(data) - len(unknown)} degraded window(s) also show input drift: "
                "that fall coincides with moved inputs (data drift or a broken feed)"
            )
        if unknown:
            evidence.append(f"{len(unknown)} degraded window(s) have no input-drift measure")
    if not signal.degraded_windows and base is not None:
        evidence.append(f"{name} stayed within reach of its baseline {base:.3f}")
    return evidence


def label_relation_changes(
    frame: pd.DataFrame,
    features: Sequence[str],
    baseline: pd.Series,
    recent: pd.Series,
    *,
    bins: int = 5,
    min_rows: int = 30,
    positive_label: str | None = None,
    rare_share: float = 0.1,
) -> list[dict[str, Any]]:
    """How much the feature-to-label relation moved between two sets of labelled rows.

    For each feature the labelled rows are binned (quantiles of the baseline for numbers,
    the most frequent values for categories) and the label distribution inside each bin is
    compared: the score is the total-variation distance between baseline and recent label
    distributions, averaged over bins weighted by their recent size (0 = same relation,
    1 = opposite). Returned largest change first; features without enough rows are skipped.

    A binary label whose positive class is rare (under ``rare_share`` of the baseline's
    labels, as fraud is) would give tiny distances whatever happens, so it is measured as
    described in :func:`_rare_relation_changes` instead (``"measure": "positive_spread"``,
    with a p-value and a Benjamini-Hochberg q-value per feature).

    Args:
        frame: labelled rows with ``label_true`` and the feature columns.
        features: columns to examine.
        baseline, recent: boolean masks over ``frame`` selecting the two periods.
        positive_label: the positive class of a binary label (guessed when ``None``).
        rare_share: below this share of positives in the baseline a binary label is rare.
    """
    labels = frame[LABEL].astype(str)
    positive = _rare_positive(
        labels[baseline | recent], labels[baseline], positive_label, rare_share
    )
    if positive is not None:
        return _rare_relation_changes(
            frame, features, (labels == positive).to_numpy(), baseline, recent, bins, positive
        )
    results = []
    for column in features:
        if column not in frame.columns:
            continue
        keys = _bin_keys(frame[column], baseline, bins)
        if keys is None:
            continue
        score, detail = _relation_score(labels, keys, baseline, recent, min_rows)
        if score is not None:
            results.append({"feature": column, "change": _round(score), "bins": detail})
    return sorted(results, key=lambda r: -r["change"])


def _rare_positive(
    both: pd.Series, before: pd.Series, positive_label: str | None, rare_share: float
) -> str | None:
    """The positive class when the label is binary and that class is rare, else None."""
    classes = sorted(set(both.unique()))
    if len(classes) != 2 or before.empty:
        return None
    positive = str(positive_label) if positive_label is not None else pick_positive_label(classes)
    if positive not in classes:
        return None
    return positive if float((before == positive).mean()) < rare_share else None


# Too few positives in a period to say where along a feature they fall.
_MIN_POSITIVES = 20
# Days each period needs for the day-block permutation test, and the permutations drawn.
_MIN_DAYS = 3
_PERMUTATIONS = 500


def _rare_relation_changes(
    frame: pd.DataFrame,
    features: Sequence[str],
    positive: np.ndarray,
    baseline: pd.Series,
    recent: pd.Series,
    bins: int,
    positive_label: str,
) -> list[dict[str, Any]]:
    """The relation between each feature and a rare positive class, compared between the
    baseline and the recent rows with the base rate and the feature's own drift factored
    out.

    The feature is cut into bins (quantiles of the baseline; a value that fills several
    quantiles, such as the zeros of a risk score, gets its own bin and the rest is cut
    again). Within the recent rows' bins, the positives the baseline's per-bin rates
    predict are compared with the positives observed, both as shares of their total: the
    ``change`` is the total-variation distance between the two (0 = the positives fall
    along the feature as before, whatever the base rate; 0.1 = a tenth of them fall in
    other bins than the baseline predicts).

    ``p_value`` comes from a permutation test with whole days as blocks: the days of both
    periods are shuffled between them (seeded) and the change measured again. Rare events
    come in bursts (a compromised card or terminal makes many frauds over days), so a
    test that took every labelled row as independent would call noise significant; days
    are exchangeable under "nothing changed". ``q_value`` is its Benjamini-Hochberg
    adjustment over the features; both are ``None`` with fewer than 3 days in a period
    (judged on the change alone then, never significant).
    """
    before, after = baseline.to_numpy(), recent.to_numpy()
    if positive[before].sum() < _MIN_POSITIVES or positive[after].sum() < _MIN_POSITIVES:
        return []
    both = before | after
    days = pd.to_datetime(frame[TS], utc=True).dt.floor("D") if TS in frame.columns else None
    day_codes, recent_days = _day_blocks(days, both, after)
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []
    for column in features:
        if column not in frame.columns:
            continue
        codes, names = _rare_bins(frame[column], before, bins)
        if len(names) < 2:
            continue
        size = len(names)
        n = np.array([np.bincount(codes[m], minlength=size) for m in (before, after)], float)
        y = np.array(
            [np.bincount(codes[m], weights=positive[m], minlength=size) for m in (before, after)]
        )
        change = _spread_change(n[0], y[0], n[1], y[1])
        if change is None:
            continue
        p_value = None
        if recent_days is not None and day_codes is not None:
            p_value = _block_permutation_p(
                codes[both], positive[both], day_codes, recent_days, size, change, rng
            )
        kept = (n > 0).all(axis=0)
        rate = np.divide(y, n, out=np.zeros_like(y), where=n > 0)
        results.append(
            {
                "feature": column,
                "change": _round(change),
                "measure": "positive_spread",
                "positive_label": positive_label,
                "p_value": p_value,
                "positives": [int(y[0].sum()), int(y[1].sum())],
                "bins": [
                    {
                        "bin": names[i],
                        "rate_before": _round(float(rate[0, i]), 5),
                        "rate_after": _round(float(rate[1, i]), 5),
                        "n_recent": int(n[1, i]),
                    }
                    for i in np.flatnonzero(kept)
                ],
            }
        )
    tested = [r for r in results if r["p_value"] is not None]
    for item, q in zip(tested, _bh([r["p_value"] for r in tested]), strict=True):
        item["q_value"] = q
    for item in results:
        item.setdefault("q_value", None)
    return sorted(results, key=lambda r: -r["change"])


def _spread_change(
    n_before: np.ndarray, y_before: np.ndarray, n_after: np.ndarray, y_after: np.ndarray
) -> float | None:
    """Total-variation distance between the recent positives' spread over the bins and
    the spread the baseline's per-bin rates predict at the recent bin sizes."""
    keep = (n_before > 0) & (n_after > 0) & ((y_before + y_after) > 0)
    if keep.sum() < 2:
        return None
    expected = n_after[keep] * y_before[keep] / n_before[keep]
    observed = y_after[keep]
    if expected.sum() == 0 or observed.sum() == 0:
        return None
    return 0.5 * float(np.abs(expected / expected.sum() - observed / observed.sum()).sum())


def _day_blocks(
    days: pd.Series | None, both: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Day codes of the compared rows and which days are recent; ``(None, None)`` when a
    period has fewer than :data:`_MIN_DAYS` days or a day falls in both periods."""
    if days is None:
        return None, None
    codes, uniques = pd.factorize(days[both], sort=True)
    recent = np.zeros(len(uniques), dtype=bool)
    recent[np.unique(codes[after[both]])] = True
    older = np.zeros(len(uniques), dtype=bool)
    older[np.unique(codes[~after[both]])] = True
    if (recent & older).any() or min(recent.sum(), older.sum()) < _MIN_DAYS:
        return None, None
    return codes, recent


def _block_permutation_p(
    codes: np.ndarray,
    positive: np.ndarray,
    day_codes: np.ndarray,
    recent_days: np.ndarray,
    size: int,
    observed: float,
    rng: np.random.Generator,
) -> float:
    """Share of day shuffles whose change is at least ``observed`` (with the observed one
    counted, so never 0)."""
    n_days = len(recent_days)
    cell = day_codes * size + codes
    n = np.bincount(cell, minlength=n_days * size).reshape(n_days, size).astype(float)
    y = np.bincount(cell, weights=positive, minlength=n_days * size).reshape(n_days, size)
    at_least = 0
    for _ in range(_PERMUTATIONS):
        shuffled = rng.permutation(recent_days)
        older = ~shuffled
        change = _spread_change(
            n[older].sum(axis=0),
            y[older].sum(axis=0),
            n[shuffled].sum(axis=0),
            y[shuffled].sum(axis=0),
        )
        at_least += change is not None and change >= observed - 1e-12
    return (1 + at_least) / (1 + _PERMUTATIONS)


def _rare_bins(values: pd.Series, before: np.ndarray, bins: int) -> tuple[np.ndarray, list[str]]:
    """Integer bin codes of ``values`` and the bins' names (missing values: a bin of
    their own); numbers are cut at baseline quantiles, other values by their most
    frequent baseline values."""
    numbers = pd.to_numeric(values, errors="coerce")
    present = values.notna().to_numpy()
    if numbers.notna().sum() >= 0.9 * present.sum() and present.any():
        x = numbers.to_numpy(dtype=float, na_value=np.nan)
        ref = x[before & np.isfinite(x)]
        if ref.size == 0:
            return np.zeros(len(values), dtype=np.int64), []
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
        if len(edges) < bins - 1:  # one value fills several quantiles: cut the rest again
            above = ref[ref > edges[-1]]
            if above.size:
                more = np.quantile(above, np.linspace(0, 1, bins - len(edges) + 1)[1:-1])
                edges = np.unique(np.concatenate([edges, more]))
        codes = np.searchsorted(edges, x, side="left")  # bins (e[i-1], e[i]]
        names = [f"<= {_num(edges[0])}"]
        names += [f"({_num(a)}, {_num(b)}]" for a, b in itertools.pairwise(edges)]
        names.append(f"> {_num(edges[-1])}")
        missing = ~np.isfinite(x)
        if missing.any():
            codes = np.where(missing, len(names), codes)
            names.append("(missing)")
        return codes.astype(np.int64), names
    text = values.astype("string").fillna("(missing)")
    top = list(text[before].value_counts().index[:bins])
    names = [*map(str, top), "(other)"]
    lookup = {value: i for i, value in enumerate(top)}
    codes = np.array([lookup.get(v, len(top)) for v in text.to_numpy()], dtype=np.int64)
    return codes, names


def _bh(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in the input order."""
    m = len(p_values)
    if m == 0:
        return []
    order = np.argsort(p_values)
    ranked = np.asarray(p_values, dtype=float)[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _bin_keys(values: pd.Series, baseline: pd.Series, bins: int) -> pd.Series | None:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() >= 0.9 * values.notna().sum() and values.notna().any():
        ref = numbers[baseline & numbers.notna()]
        if ref.nunique() > bins:
            edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
            keys = pd.Series(np.searchsorted(edges, numbers, side="right"), index=values.index)
            return keys.astype(str).where(numbers.notna(), "(missing)")
    text = values.astype("string").fillna("(missing)")
    top = text[baseline].value_counts().index[:bins]
    if len(top) == 0:
        return None
    return text.where(text.isin(top), "(other)")


def _relation_score(
    labels: pd.Series, keys: pd.Series, baseline: pd.Series, recent: pd.Series, min_rows: int
) -> tuple[float | None, list[dict[str, Any]]]:
    if baseline.sum() < min_rows or recent.sum() < min_rows:
        return None, []
    before = pd.crosstab(keys[baseline], labels[baseline])
    after = pd.crosstab(keys[recent], labels[recent])
    classes = before.columns.union(after.columns)
    before = before.reindex(columns=classes, fill_value=0)
    after = after.reindex(columns=classes, fill_value=0)
    total, weight, detail = 0.0, 0, []
    for key in after.index.intersection(before.index):
        n_before, n_after = int(before.loc[key].sum()), int(after.loc[key].sum())
        if n_before < 5 or n_after < 5:  # too few rows in the bin to compare rates
            continue
        p_before = before.loc[key] / n_before
        p_after = after.loc[key] / n_after
        distance = float(0.5 * np.abs(p_before - p_after).sum())
        total += distance * n_after
        weight += n_after
        detail.append({"bin": str(key), "distance": _round(distance), "n_recent": n_after})
    if weight == 0:
        return None, []
    return total / weight, detail


# --- helpers ------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} has no column(s) {missing}; found {sorted(map(str, frame.columns))}",
            hint="was the log written by `loopline serve`? check prediction_log_url",
        )


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or _is_missing(value):
        return None
    return round(float(value), digits)
