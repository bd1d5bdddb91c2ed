"""Windowed performance with delayed labels, and the concept-drift signal."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from loopline.errors import DataError, LooplineError
from loopline.monitor.performance import (
    attach_labels,
    detect_concept_drift,
    iter_windows,
    label_relation_changes,
    parse_window,
    pick_positive_label,
    windowed_performance,
)

T0 = pd.Timestamp("2026-05-01", tz="UTC")


def log(n: int = 8, *, hours: float = 1.0, version: str = "1") -> pd.DataFrame:
    """A prediction log in the predlog layout: one prediction every ``hours``."""
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": [T0 + pd.Timedelta(hours=hours * i) for i in range(n)],
            "model_version": version,
            "route": "champion",
            "input.x": np.arange(n, dtype=float),
            "prediction": (["1", "0"] * n)[:n],
        }
    )


def feedback(labels: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": list(labels),
            "label": list(labels.values()),
            "source": "api",
            "model_name": "m",
            "created_at": datetime(2026, 5, 2, tzinfo=UTC),
        }
    )


@pytest.mark.parametrize(
    ("text", "seconds", "rows"),
    [
        ("1h", 3600, None),
        ("1H", 3600, None),
        ("1D", 86400, None),
        ("30min", 1800, None),
        ("500", None, 500),
        ("250 rows", None, 250),
        (100, None, 100),
    ],
)
def test_parse_window(text: str | int, seconds: float | None, rows: int | None) -> None:
    spec = parse_window(text)
    assert spec.rows == rows
    assert (spec.duration.total_seconds() if spec.duration is not None else None) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1h", "0"])
def test_parse_window_rejects_nonsense(text: str) -> None:
    with pytest.raises(LooplineError, match="window"):
        parse_window(text)


def test_time_windows_are_aligned_and_keep_empty_ones() -> None:
    frame = log(4, hours=1.5).iloc[[0, 3]]  # 00:00 and 04:30: nothing in between
    windows = list(iter_windows(frame, "1h"))
    assert [w.start.hour for w in windows] == [0, 1, 2, 3, 4]
    assert [len(w.frame) for w in windows] == [1, 0, 0, 0, 1]
    assert list(iter_windows(frame.iloc[:0], "1h")) == []
    assert [len(w.frame) for w in iter_windows(log(5), "2")] == [2, 2, 1]


def test_labels_join_by_request_id_only_and_unknown_ids_are_counted() -> None:
    predictions = log(4)
    labels = feedback({"r0": "1", "r1": "1", "ghost-1": "0", "ghost-2": "1"})
    joined, unmatched = attach_labels(predictions, labels)
    assert unmatched == 2
    assert joined["label_true"].tolist()[:2] == ["1", "1"]
    assert joined["label_true"].isna().tolist() == [False, False, True, True]
    assert len(joined) == len(predictions)


def test_windowed_metrics_and_coverage() -> None:
    frame, _ = attach_labels(log(8), feedback({"r0": "1", "r1": "1", "r2": "1", "r4": "0"}))
    report = windowed_performance(frame, "4h", positive_label="1")
    first, second = report.series(None)
    assert (first.n_predictions, first.n_labeled, first.label_coverage) == (4, 3, 0.75)
    assert first.accuracy == pytest.approx(2 / 3)  # r0 and r2 right, r1 wrong
    assert first.precision == 1.0 and first.recall == pytest.approx(2 / 3)
    assert second.n_labeled == 1 and second.accuracy == 0.0 and second.recall is None
    assert report.series("1")[0].n_predictions == 4
    assert report.overall is not None and report.overall.n_labeled == 4
    assert report.to_dict()["windows"][0]["label_coverage"] == 0.75


def test_shadow_predictions_count_for_their_version_only() -> None:
    champion = log(4)
    shadow = log(4, version="2").assign(route="shadow", prediction="1")
    frame, _ = attach_labels(pd.concat([champion, shadow]), feedback({"r1": "1"}))
    report = windowed_performance(frame, "1D")
    assert report.overall is not None and report.overall.n_predictions == 4
    assert report.by_version["1"].accuracy == 0.0
    assert report.by_version["2"].accuracy == 1.0


def test_no_feedback_and_empty_log_give_messages_not_crashes() -> None:
    frame, unmatched = attach_labels(log(4), feedback({}).iloc[:0])
    report = windowed_performance(frame, "1h")
    assert unmatched == 0
    assert all(w.accuracy is None for w in report.windows)
    assert any("no feedback labels" in m for m in report.messages)

    empty = windowed_performance(frame.iloc[:0], "1h")
    assert empty.windows == [] and empty.overall is None
    assert any("no rows" in m for m in empty.messages)


def test_missing_column_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"no column\(s\) \['prediction'\]"):
        windowed_performance(log(4).drop(columns=["prediction"]), "1h")
    with pytest.raises(DataError, match="request_id"):
        attach_labels(log(4).drop(columns=["request_id"]), feedback({"r0": "1"}))


def test_positive_label_guess() -> None:
    assert pick_positive_label(["legit", "fraud"]) == "fraud"
    assert pick_positive_label([0, 1]) == "1"
    assert pick_positive_label(["a", "b"]) == "b"
    assert pick_positive_label(["a", "b", "c"]) is None


def _drifting_concept(n_windows: int = 8, per: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for w in range(n_windows):
        x = rng.random(per)
        truth = x > 0.5
        if w >= n_windows // 2:
            truth = ~truth  # the relation flips; the inputs do not move
        noisy = np.where(rng.random(per) < 0.1, ~truth, truth)
        rows.append(
            pd.DataFrame(
                {
                    "request_id": [f"w{w}-{i}" for i in range(per)],
                    "ts": T0 + pd.Timedelta(days=w) + pd.to_timedelta(np.arange(per), unit="min"),
                    "input.x": x,
                    "prediction": np.where(x > 0.5, "1", "0"),
                    "label_true": np.where(noisy, "1", "0"),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_concept_drift_needs_a_drop_with_stable_inputs() -> None:
    frame = _drifting_concept()
    report = windowed_performance(frame, "1D")
    stable = {w.start.isoformat(): 0.0 for w in report.series(None)}
    signal = detect_concept_drift(report, input_drift=stable)
    assert signal.detected
    assert signal.since == (T0 + pd.Timedelta(days=4)).isoformat()
    assert signal.baseline_source.startswith("first")
    assert len(signal.degraded_windows) == 4

    moved = {key: 0.6 for key in stable}
    blamed = detect_concept_drift(report, input_drift=moved)
    assert not blamed.detected and len(blamed.degraded_windows) == 4
    assert any("input drift" in e for e in blamed.evidence)

    with_reference = detect_concept_drift(report, input_drift=stable, reference={"accuracy": 0.9})
    assert with_reference.baseline == 0.9 and with_reference.baseline_source == "reference profile"


def test_concept_drift_without_labels_says_why() -> None:
    report = windowed_performance(_drifting_concept().assign(label_true=pd.NA), "1D")
    signal = detect_concept_drift(report)
    assert not signal.detected and signal.baseline is None
    assert "not enough labelled predictions" in signal.evidence[0]


def test_relation_change_is_large_for_a_flip_and_small_for_noise() -> None:
    frame = _drifting_concept()
    frame["input.noise"] = np.random.default_rng(0).random(len(frame))
    recent = frame["ts"] >= T0 + pd.Timedelta(days=4)
    changes = label_relation_changes(frame, ["input.x", "input.noise"], ~recent, recent)
    by_name = {c["feature"]: c["change"] for c in changes}
    assert by_name["input.x"] > 0.6
    assert by_name["input.noise"] < 0.1


def test_recall_is_judged_on_actual_positives_only() -> None:
    # 40 labels per window but only about 20 actual positives: too few to judge recall.
    report = windowed_performance(_drifting_concept(per=40), "1D")
    stable = {w.start.isoformat(): 0.0 for w in report.series(None)}
    recall = detect_concept_drift(
        report,
        input_drift=stable,
        metric="recall",
        reference={"recall": 0.9, "positive_label": "1"},
    )
    assert not recall.detected
    assert "at least 30 actual positives" in recall.evidence[0]
    accuracy = detect_concept_drift(report, input_drift=stable, reference={"accuracy": 0.9})
    assert accuracy.detected
    # A reference measured for another positive class is not used as the baseline.
    other = detect_concept_drift(
        report, metric="recall", min_labels=10, reference={"recall": 0.9, "positive_label": "0"}
    )
    assert other.baseline_source != "reference profile"


def test_a_fall_from_the_first_window_with_moved_inputs_is_not_called_skew() -> None:
    # Accuracy is low from the first window on. With the inputs drifted in those windows the
    # fall coincides with data drift; only with stable inputs is it a training/serving gap.
    report = windowed_performance(_drifting_concept(), "1D")
    keys = [w.start.isoformat() for w in report.series(None)]

    moved = detect_concept_drift(
        report, input_drift=dict.fromkeys(keys, 1.0), reference={"accuracy": 0.99}
    )
    assert not moved.detected and moved.degraded_windows[0]["start"] == keys[0]
    assert not any("skew" in line for line in moved.evidence)
    assert not moved.from_first_window

    stable = detect_concept_drift(
        report, input_drift=dict.fromkeys(keys, 0.0), reference={"accuracy": 0.99}
    )
    assert stable.detected and stable.from_first_window
    assert any("skew" in line for line in stable.evidence)
