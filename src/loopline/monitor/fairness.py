"""Fairness by a chosen group column, on evaluation data and over time in production.

The metrics are fairlearn's (MIT): per group the selection rate (share predicted
positive), true-positive and false-positive rates, and for the whole the
demographic-parity difference (largest gap in selection rate) and the equalized-odds
difference (largest gap in TPR or FPR). In production the selection rate uses every
logged prediction, while TPR/FPR and equalized odds use only the predictions whose
label has arrived.

A numeric column can be grouped into bands (``bands=[20, 50, 100, 220]`` gives
``< 20``, ``[20, 50)``, ..., ``>= 220``): a transaction's amount band is the group column
the fraud system has (the Fraud Detection Handbook's data has no demographic column).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopline.errors import DataError, LooplineError
from loopline.monitor.performance import (
    LABEL,
    PREDICTION,
    WindowSpec,
    iter_windows,
    parse_window,
    pick_positive_label,
)

__all__ = [
    "MISSING_GROUP",
    "FairnessReport",
    "GroupMetrics",
    "band_labels",
    "fairness_metrics",
    "fairness_of_frame",
    "fairness_over_time",
    "resolve_group_column",
]

# Rows whose group value is missing form a group of their own: dropping them would hide
# exactly the rows a broken pipeline stopped describing.
MISSING_GROUP = "(missing)"


@dataclass
class GroupMetrics:
    """Metrics of one group."""

    group: str
    count: int
    n_labeled: int
    selection_rate: float | None
    tpr: float | None
    fpr: float | None
    accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "group": self.group,
            "count": self.count,
            "n_labeled": self.n_labeled,
            "selection_rate": _round(self.selection_rate),
            "tpr": _round(self.tpr),
            "fpr": _round(self.fpr),
            "accuracy": _round(self.accuracy),
        }


@dataclass
class FairnessReport:
    """Fairness metrics of one set of predictions (evaluation data or one window)."""

    group_column: str
    positive_label: str
    groups: list[GroupMetrics]
    demographic_parity_difference: float | None
    equalized_odds_difference: float | None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "group_column": self.group_column,
            "positive_label": self.positive_label,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "demographic_parity_difference": _round(self.demographic_parity_difference),
            "equalized_odds_difference": _round(self.equalized_odds_difference),
            "groups": [g.to_dict() for g in self.groups],
            "messages": list(self.messages),
        }


def fairness_metrics(
    y_pred: Sequence[Any] | pd.Series | np.ndarray,
    groups: Sequence[Any] | pd.Series | np.ndarray,
    *,
    y_true: Sequence[Any] | pd.Series | np.ndarray | None = None,
    positive_label: Any,
    group_column: str = "group",
) -> FairnessReport:
    """Selection rate, TPR/FPR per group and the parity differences (fairlearn).

    Args:
        y_pred: predicted classes, one per row.
        groups: the group of each row (missing values form the group ``(missing)``).
        y_true: true classes; missing entries (no label yet) are left out of TPR/FPR and
            equalized odds only. ``None``: no labels at all (selection rates only).
        positive_label: the class counted as the positive outcome (one-vs-rest for more
            than two classes).
        group_column: the name reported for the grouping.

    Raises:
        DataError: the inputs have different lengths or hold no rows.
    """
    pred = pd.Series(np.asarray(y_pred, dtype=object)).reset_index(drop=True)
    group = _group_values(groups)
    truth = (
        pd.Series([None] * len(pred), dtype=object)
        if y_true is None
        else pd.Series(np.asarray(y_true, dtype=object))
    )
    if not len(pred) == len(group) == len(truth):
        raise DataError(
            f"fairness needs one group and one label per prediction: found {len(pred)} "
            f"predictions, {len(group)} groups, {len(truth)} labels"
        )
    positive = str(positive_label)
    report = FairnessReport(group_column, positive, [], None, None)
    valid = pred.notna().to_numpy()
    if not valid.any():
        report.messages.append("no predictions to measure")
        return report
    selected = (pred[valid].astype(str) == positive).astype(int).to_numpy()
    labeled = valid & truth.notna().to_numpy()
    by_group = _selection_frame(selected, group[valid].to_numpy())
    report.demographic_parity_difference = _dp_difference(selected, group[valid].to_numpy())
    rates = None
    if labeled.any():
        actual = (truth[labeled].astype(str) == positive).astype(int).to_numpy()
        chosen = (pred[labeled].astype(str) == positive).astype(int).to_numpy()
        rates, report.equalized_odds_difference = _rates(actual, chosen, group[labeled].to_numpy())
    else:
        report.messages.append("no labels yet: only selection rates can be measured")
    report.groups = _group_rows(by_group, rates)
    return report


def _group_values(groups: Sequence[Any] | pd.Series | np.ndarray) -> pd.Series:
    values = pd.Series(np.asarray(groups, dtype=object))
    return values.where(values.notna(), MISSING_GROUP).astype(str).reset_index(drop=True)


def _selection_frame(selected: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    from fairlearn.metrics import MetricFrame, count, selection_rate

    # Selection rate depends on predictions only: pass them as y_true too, which lets it
    # cover predictions whose label has not arrived yet.
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "count": count},
        y_true=selected,
        y_pred=selected,
        sensitive_features=pd.Series(groups, name="group"),
    )
    return frame.by_group


def _dp_difference(selected: np.ndarray, groups: np.ndarray) -> float:
    from fairlearn.metrics import demographic_parity_difference

    return float(demographic_parity_difference(selected, selected, sensitive_features=groups))


def _rates(
    actual: np.ndarray, chosen: np.ndarray, groups: np.ndarray
) -> tuple[pd.DataFrame, float | None]:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        equalized_odds_difference,
        false_positive_rate,
        true_positive_rate,
    )

    def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))

    frame = MetricFrame(
        metrics={
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "accuracy": accuracy,
            "n_labeled": count,
        },
        y_true=actual,
        y_pred=chosen,
        sensitive_features=pd.Series(groups, name="group"),
    )
    by_group = frame.by_group
    # A group with no actual positives has no TPR (fairlearn says 0 with a warning); one
    # with no actual negatives has no FPR. Report those as unknown, not as 0.
    frame_groups = pd.Series(groups)
    positives = pd.Series(actual).groupby(frame_groups.to_numpy()).sum()
    negatives = pd.Series(1 - actual).groupby(frame_groups.to_numpy()).sum()
    by_group["tpr"] = by_group["tpr"].where(positives.reindex(by_group.index) > 0)
    by_group["fpr"] = by_group["fpr"].where(negatives.reindex(by_group.index) > 0)
    eod: float | None = None
    if len(set(actual.tolist())) == 2:
        eod = float(equalized_odds_difference(actual, chosen, sensitive_features=groups))
    return by_group, eod


def _group_rows(selection: pd.DataFrame, rates: pd.DataFrame | None) -> list[GroupMetrics]:
    rows = []
    for group, values in selection.iterrows():
        rate_row = rates.loc[group] if rates is not None and group in rates.index else None
        rows.append(
            GroupMetrics(
                group=str(group),
                count=int(values["count"]),
                n_labeled=0 if rate_row is None else int(rate_row["n_labeled"]),
                selection_rate=float(values["selection_rate"]),
                tpr=None if rate_row is None else _float(rate_row["tpr"]),
                fpr=None if rate_row is None else _float(rate_row["fpr"]),
                accuracy=None if rate_row is None else _float(rate_row["accuracy"]),
            )
        )
    return sorted(rows, key=lambda g: -g.count)


def resolve_group_column(frame: pd.DataFrame, column: str) -> str:
    """The frame's column for a user's group name: ``sex`` matches ``input.sex`` too.

    Raises:
        LooplineError: no such column, listing the ones there are.
    """
    for candidate in (column, f"input.{column}"):
        if candidate in frame.columns:
            return candidate
    inputs = sorted(c.removeprefix("input.") for c in frame.columns if c.startswith("input."))
    raise LooplineError(
        f"the group column {column!r} is not in the prediction log",
        hint=f"choose one of the logged inputs: {', '.join(inputs) or '(none logged)'}",
    )


def band_labels(values: pd.Series | np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Numbers as the band they fall in: edges ``[20, 50]`` give ``< 20``, ``[20, 50)`` and
    ``>= 50``; a missing value stays missing (its own group, :data:`MISSING_GROUP`).

    Raises:
        LooplineError: no edges, edges not increasing, or values that are not numbers.
    """
    cuts = [float(e) for e in edges]
    if not cuts or any(b <= a for a, b in itertools.pairwise(cuts)):
        raise LooplineError(
            f"band edges must be increasing numbers, found {list(edges)!r}",
            hint="e.g. --bands 20,50,100,220 for amount bands",
        )
    raw = pd.Series(np.asarray(values, dtype=object))
    numbers = pd.to_numeric(raw, errors="coerce")
    if (numbers.isna() & raw.notna()).any():
        bad = raw[numbers.isna() & raw.notna()].iloc[0]
        raise LooplineError(
            f"bands need a numeric column; found the value {bad!r}",
            hint="leave out --bands to group by the column's values",
        )
    names = [f"< {_edge(cuts[0])}"]
    names += [f"[{_edge(a)}, {_edge(b)})" for a, b in itertools.pairwise(cuts)]
    names.append(f">= {_edge(cuts[-1])}")
    x = numbers.to_numpy(dtype=float, na_value=np.nan)
    index = np.searchsorted(np.asarray(cuts), x, side="right")
    out = np.asarray(names, dtype=object)[np.minimum(index, len(names) - 1)]
    out[numbers.isna().to_numpy()] = None
    return out


def _edge(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def fairness_of_frame(
    frame: pd.DataFrame,
    group_column: str,
    *,
    positive_label: Any = None,
    prediction_column: str = PREDICTION,
    label_column: str = LABEL,
    bands: Sequence[float] | None = None,
) -> FairnessReport:
    """Fairness of a frame of predictions, e.g. evaluation data or a slice of the log.

    ``label_column`` may be absent or partly missing (labels not arrived yet). The
    positive class is guessed for two classes when not given. ``bands``: group a numeric
    column by these band edges (see :func:`band_labels`) instead of by its values.

    Raises:
        LooplineError: the group or prediction column is missing, or no positive class can
            be chosen (more than two classes and no ``positive_label``).
    """
    column = resolve_group_column(frame, group_column)
    if prediction_column not in frame.columns:
        raise DataError(f"no {prediction_column!r} column to measure fairness on")
    truth = frame[label_column] if label_column in frame.columns else None
    positive = positive_label if positive_label is not None else _guess_positive(frame, truth)
    groups = frame[column].to_numpy() if bands is None else band_labels(frame[column], bands)
    name = column.removeprefix("input.")
    return fairness_metrics(
        frame[prediction_column].to_numpy(),
        groups,
        y_true=None if truth is None else truth.to_numpy(),
        positive_label=positive,
        group_column=name if bands is None else f"{name} band",
    )


def _guess_positive(frame: pd.DataFrame, truth: pd.Series | None) -> str:
    observed = frame[PREDICTION].dropna().astype(str).unique().tolist()
    if truth is not None:
        observed += truth.dropna().astype(str).unique().tolist()
    positive = pick_positive_label(observed)
    if positive is None:
        raise LooplineError(
            f"cannot tell which class is the positive outcome among {sorted(set(observed))}",
            hint="pass --positive LABEL (positive_label=... in Python): fairness metrics "
            "are computed one-vs-rest",
        )
    return positive


def fairness_over_time(
    frame: pd.DataFrame,
    group_column: str,
    window: str | int | WindowSpec = "1D",
    *,
    positive_label: Any = None,
    bands: Sequence[float] | None = None,
) -> list[FairnessReport]:
    """:func:`fairness_of_frame` for each window of a prediction log (empty windows skipped).

    The positive class is chosen once for the whole log so every window reports the same
    thing; ``bands`` as in :func:`fairness_of_frame`.
    """
    spec = parse_window(window)
    column = resolve_group_column(frame, group_column)
    truth = frame[LABEL] if LABEL in frame.columns else None
    positive = positive_label if positive_label is not None else _guess_positive(frame, truth)
    reports = []
    for win in iter_windows(frame, spec):
        if win.frame.empty:
            continue
        report = fairness_of_frame(win.frame, column, positive_label=positive, bands=bands)
        report.start, report.end = win.start, win.end
        reports.append(report)
    return reports


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
