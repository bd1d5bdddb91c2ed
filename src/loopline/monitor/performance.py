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

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopline.errors import DataError, LooplineError

__all__ = [
    "LABEL",
    "PREDICTION",
    "TS",
    "ConceptDriftSignal",
    "PerformanceReport",
    "Window",
    "WindowPerformance",
    "WindowSpec",
    "attach_labels",
    "detect_concept_drift",
    "iter_windows",
    "label_relation_changes",
    "parse_duration",
    "parse_window",
    "pick_positive_label",
    "served",
    "windowed_performance",
]

TS = "ts"
PREDICTION = "prediction"
LABEL = "label_true"
VERSION = "model_version"
REQUEST_ID = "request_id"
ROUTE = "route"

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


# --- metrics ------------------------------------------------------------------------------


@dataclass
class WindowPerformance:
    """Metrics of one window (and one model version, or all versions when ``None``)."""

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

    def sample_size(self, metric: str) -> int:
        """The rows a metric is computed from: labelled predictions, except precision
        (predicted positives) and recall (actual positives)."""
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
        """One metric by name (``accuracy``, ``macro_f1``, ``precision``, ``recall``)."""
        value = getattr(self, name, None)
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
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


@dataclass
class PerformanceReport:
    """Performance over windows plus the totals, and what could not be measured."""

    window: WindowSpec
    positive_label: str | None
    windows: list[WindowPerformance]
    overall: WindowPerformance | None
    by_version: dict[str, WindowPerformance] = field(default_factory=dict)
    unmatched_feedback: int = 0
    messages: list[str] = field(default_factory=list)

    def series(self, model_version: str | None = None) -> list[WindowPerformance]:
        """The windows of one model version (``None``: all versions together)."""
        return [w for w in self.windows if w.model_version == model_version]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            **self.window.to_dict(),
            "positive_label": self.positive_label,
            "overall": None if self.overall is None else self.overall.to_dict(),
            "by_version": {k: v.to_dict() for k, v in self.by_version.items()},
            "windows": [w.to_dict() for w in self.windows],
            "unmatched_feedback": self.unmatched_feedback,
            "messages": list(self.messages),
        }


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
) -> PerformanceReport:
    """Accuracy, macro-F1, precision/recall and label coverage per window.

    Args:
        frame: the prediction log with ``ts``, ``prediction`` and ``label_true`` (see
            :func:`attach_labels`); ``model_version`` is optional.
        window: a duration (``"1h"``, ``"1D"``) or a row count (``"1000"``).
        positive_label: the class for precision/recall; guessed for two classes when
            ``None`` (see :func:`pick_positive_label`).
        by_version: also report each model version separately in each window.
        unmatched_feedback: how many feedback rows matched no logged prediction (reported).

    Raises:
        DataError: a required column is missing from the log.
    """
    spec = parse_window(window)
    _require(frame, [TS, PREDICTION], "the prediction log")
    frame = _with_label_column(frame)
    messages = _coverage_messages(served(frame), unmatched_feedback)
    observed = pd.concat([frame[PREDICTION].dropna(), frame[LABEL].dropna()])
    positive = positive_label or pick_positive_label(observed.astype(str).unique())
    versions = _versions(frame) if by_version else []
    windows: list[WindowPerformance] = []
    for win in iter_windows(frame, spec):
        windows.extend(_measure_all(win.frame, win.start, win.end, versions, positive))
    overall, per_version = None, {}
    if len(frame):
        ts = pd.to_datetime(frame[TS], utc=True)
        overall, *rest = _measure_all(frame, ts.min(), ts.max(), versions, positive)
        per_version = {str(w.model_version): w for w in rest}
    empty = sum(1 for w in windows if w.model_version is None and w.n_predictions == 0)
    if empty:
        messages.append(f"{empty} window(s) hold no predictions at all (a gap in the log)")
    return PerformanceReport(
        spec, positive, windows, overall, per_version, unmatched_feedback, messages
    )


def _measure_all(
    part: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    versions: list[str],
    positive: str | None,
) -> list[WindowPerformance]:
    """All served versions together first, then each version (shadow rows included)."""
    results = [_measure(served(part), start, end, None, positive)]
    for version in versions:
        rows = part[part[VERSION].astype("string") == version]
        if len(rows):
            results.append(_measure(rows, start, end, version, positive))
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
) -> WindowPerformance:
    labeled = part[part[LABEL].notna() & part[PREDICTION].notna()]
    result = WindowPerformance(start, end, version, len(part), len(labeled))
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
    return result


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    labels = sorted(set(y_true) | set(y_pred))
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


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
            f"(need windows with at least {min_labels} {_SAMPLE_NAMES.get(metric, 'labels')})"
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
    labels = sum(w.n_labeled for w in first)
    value = sum((w.metric(metric) or 0.0) * w.n_labeled for w in first) / labels
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
) -> list[dict[str, Any]]:
    """How much the feature-to-label relation moved between two sets of labelled rows.

    For each feature the labelled rows are binned (quantiles of the baseline for numbers,
    the most frequent values for categories) and the label distribution inside each bin is
    compared: the score is the total-variation distance between baseline and recent label
    distributions, averaged over bins weighted by their recent size (0 = same relation,
    1 = opposite). Returned largest change first; features without enough rows are skipped.

    Args:
        frame: labelled rows with ``label_true`` and the feature columns.
        features: columns to examine.
        baseline, recent: boolean masks over ``frame`` selecting the two periods.
    """
    results = []
    for column in features:
        if column not in frame.columns:
            continue
        keys = _bin_keys(frame[column], baseline, bins)
        if keys is None:
            continue
        score, detail = _relation_score(frame[LABEL].astype(str), keys, baseline, recent, min_rows)
        if score is not None:
            results.append({"feature": column, "change": _round(score), "bins": detail})
    return sorted(results, key=lambda r: -r["change"])


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
