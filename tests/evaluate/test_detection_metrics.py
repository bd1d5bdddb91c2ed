"""COCO mAP through pycocotools, checked on hand-made cases whose answer is worked out here."""

from __future__ import annotations

import pytest

from loopline.errors import DataError
from loopline.evaluate.detection import detection_metrics

CLASSES = ["cat", "dog"]


def box(label: str, x: float, y: float, w: float, h: float, score: float | None = None) -> dict:
    found = {"label": label, "box": [x, y, w, h]}
    return found if score is None else {**found, "score": score}


def test_perfect_detections_score_one() -> None:
    truth = [[box("cat", 10, 10, 20, 20)], [box("dog", 5, 5, 30, 10), box("cat", 50, 50, 8, 8)]]
    found = [[{**b, "score": 0.9} for b in image] for image in truth]
    metrics = detection_metrics(truth, found, CLASSES)
    assert metrics["map50"] == metrics["map50_95"] == metrics["map75"] == 1.0
    assert metrics["ap50_per_class"] == {"cat": 1.0, "dog": 1.0}
    assert (metrics["images"], metrics["boxes"], metrics["detections"]) == (2, 3, 3)


def test_a_false_positive_and_a_loose_box_cost_what_coco_says() -> None:
    """cat: two true boxes found exactly (scores 0.9 and 0.7) around a false positive (0.8).
    Ranked: TP, FP, TP -> precision 1 up to recall 0.5, then 2/3 up to recall 1; COCO
    interpolates at 101 recall points: AP = (51 * 1 + 50 * 2/3) / 101 at every IoU.
    dog: one box found with IoU 0.62 (10 x 6.2 inside 10 x 10): a hit at IoU 0.5, 0.55 and
    0.6, a miss at the seven stricter thresholds: AP 1 at 0.5, 0.3 over 0.5:0.95."""
    truth = [
        [box("cat", 0, 0, 10, 10), box("dog", 40, 40, 10, 10)],
        [box("cat", 20, 20, 10, 10)],
    ]
    found = [
        [box("cat", 0, 0, 10, 10, 0.9), box("cat", 70, 70, 10, 10, 0.8),
         box("dog", 40, 40, 10, 6.2, 0.95)],
        [box("cat", 20, 20, 10, 10, 0.7)],
    ]  # fmt: skip
    metrics = detection_metrics(truth, found, CLASSES)
    cat = (51 + 50 * 2 / 3) / 101
    assert metrics["ap50_per_class"]["cat"] == pytest.approx(cat, abs=1e-6)
    assert metrics["ap50_per_class"]["dog"] == pytest.approx(1.0)
    assert metrics["map50"] == pytest.approx((cat + 1.0) / 2, abs=1e-6)
    assert metrics["map50_95"] == pytest.approx((cat + 0.3) / 2, abs=1e-6)
    assert metrics["map75"] == pytest.approx(cat / 2, abs=1e-6)  # the dog box misses at 0.75


def test_a_wrong_label_is_a_miss_and_a_false_positive() -> None:
    truth = [[box("cat", 0, 0, 10, 10)], [box("dog", 0, 0, 10, 10)]]
    found = [[box("dog", 0, 0, 10, 10, 0.9)], [box("dog", 0, 0, 10, 10, 0.8)]]
    metrics = detection_metrics(truth, found, CLASSES)
    # cat: never found (AP 0). dog: its false positive ranks above its hit -> precision
    # 1/2 at every recall point.
    assert metrics["ap50_per_class"] == {"cat": 0.0, "dog": pytest.approx(0.5)}
    assert metrics["map50"] == pytest.approx(0.25)


def test_nothing_found_is_zero_and_a_class_without_boxes_is_left_out() -> None:
    truth = [[box("cat", 0, 0, 10, 10)]]
    assert detection_metrics(truth, [[]], CLASSES) == {
        "map50": 0.0,
        "map50_95": 0.0,
        "map75": 0.0,
        "ap50_per_class": {"cat": 0.0, "dog": None},
        "images": 1,
        "boxes": 1,
        "detections": 0,
    }
    metrics = detection_metrics(truth, [[box("cat", 0, 0, 10, 10, 0.5)]], CLASSES)
    assert metrics["ap50_per_class"] == {"cat": 1.0, "dog": None}
    assert metrics["map50"] == 1.0  # the mean is over classes with true boxes


def test_mismatched_inputs_are_refused() -> None:
    truth = [[box("cat", 0, 0, 10, 10)]]
    with pytest.raises(DataError, match="2 lists of detections for 1 images"):
        detection_metrics(truth, [[], []], CLASSES)
    with pytest.raises(DataError, match="'bird' is not one of the classes"):
        detection_metrics(truth, [[box("bird", 0, 0, 1, 1, 0.5)]], CLASSES)
