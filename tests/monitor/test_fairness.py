"""Fairness metrics by group: they must be fairlearn's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from loopline.errors import DataError, LooplineError
from loopline.monitor.fairness import (
    fairness_metrics,
    fairness_of_frame,
    fairness_over_time,
    resolve_group_column,
)

# A small loan book: group a is approved more often and with more false approvals.
Y_TRUE = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0])
Y_PRED = np.array([1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0])
GROUPS = np.array(["a"] * 6 + ["b"] * 6)


def test_matches_fairlearn_on_a_known_example() -> None:
    report = fairness_metrics(Y_PRED, GROUPS, y_true=Y_TRUE, positive_label=1, group_column="sex")

    frame = MetricFrame(
        metrics={"sel": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=Y_TRUE,
        y_pred=Y_PRED,
        sensitive_features=GROUPS,
    ).by_group
    by_group = {g.group: g for g in report.groups}
    for group in ("a", "b"):
        assert by_group[group].selection_rate == pytest.approx(frame.loc[group, "sel"])
        assert by_group[group].tpr == pytest.approx(frame.loc[group, "tpr"])
        assert by_group[group].fpr == pytest.approx(frame.loc[group, "fpr"])
    assert report.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(Y_TRUE, Y_PRED, sensitive_features=GROUPS)
    )
    assert report.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(Y_TRUE, Y_PRED, sensitive_features=GROUPS)
    )
    # And by hand: a approves 5/6, b 1/6; TPR 3/3 vs 1/3; FPR 2/3 vs 0/3.
    assert by_group["a"].selection_rate == pytest.approx(5 / 6)
    assert report.demographic_parity_difference == pytest.approx(4 / 6)
    assert report.equalized_odds_difference == pytest.approx(2 / 3)
    assert report.to_dict()["group_column"] == "sex"


def test_string_classes_and_missing_groups() -> None:
    labels = np.where(Y_TRUE == 1, "approve", "deny")
    preds = np.where(Y_PRED == 1, "approve", "deny")
    groups = GROUPS.astype(object)
    groups[0] = None
    report = fairness_metrics(preds, groups, y_true=labels, positive_label="approve")
    assert {g.group for g in report.groups} == {"a", "b", "(missing)"}
    assert sum(g.count for g in report.groups) == len(preds)


def test_selection_rate_uses_unlabelled_predictions_too() -> None:
    truth = Y_TRUE.astype(object)
    truth[:3] = None  # labels not arrived yet
    report = fairness_metrics(Y_PRED, GROUPS, y_true=truth, positive_label=1)
    a = next(g for g in report.groups if g.group == "a")
    assert a.count == 6 and a.n_labeled == 3 and a.selection_rate == pytest.approx(5 / 6)

    unlabelled = fairness_metrics(Y_PRED, GROUPS, positive_label=1)
    assert unlabelled.equalized_odds_difference is None
    assert all(g.tpr is None for g in unlabelled.groups)
    assert "no labels yet" in unlabelled.messages[0]


def test_undefined_rates_are_none_not_zero() -> None:
    # Group b has no actual positives: its TPR does not exist.
    report = fairness_metrics(
        [1, 0, 1, 0], ["a", "a", "b", "b"], y_true=[1, 0, 0, 0], positive_label=1
    )
    b = next(g for g in report.groups if g.group == "b")
    assert b.tpr is None and b.fpr == pytest.approx(0.5)


def test_frame_helpers_resolve_logged_columns_and_windows() -> None:
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2026-05-01", periods=12, freq="6h", tz="UTC"),
            "input.sex": GROUPS,
            "prediction": Y_PRED.astype(str),
            "label_true": Y_TRUE.astype(str),
        }
    )
    assert resolve_group_column(frame, "sex") == "input.sex"
    report = fairness_of_frame(frame, "sex")
    assert report.positive_label == "1"
    assert report.demographic_parity_difference == pytest.approx(4 / 6)
    windows = fairness_over_time(frame, "sex", "1D")
    assert len(windows) == 3 and windows[0].start == pd.Timestamp("2026-05-01", tz="UTC")

    with pytest.raises(LooplineError, match="'age' is not in the prediction log"):
        fairness_of_frame(frame, "age")
    multi = frame.assign(prediction=["x", "y", "z"] * 4)
    with pytest.raises(LooplineError, match="positive"):
        fairness_of_frame(multi, "sex")
    assert fairness_of_frame(multi, "sex", positive_label="x").groups[0].count == 6
    with pytest.raises(DataError, match="one group"):
        fairness_metrics([1, 0], ["a"], positive_label=1)
