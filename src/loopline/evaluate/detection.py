"""Detection metrics: COCO mean average precision, computed by pycocotools.

:func:`detection_metrics` scores detections against the true boxes with the COCO evaluation
itself (``pycocotools.cocoeval.COCOeval``, the reference implementation detection papers
report): ``map50`` (mAP at IoU 0.5, PASCAL VOC's measure), ``map50_95`` (averaged over IoU
0.5 to 0.95, COCO's headline number) and ``map75``, plus AP at 0.5 per class.
:func:`evaluate_detector` runs a detection model on a dataset's images first.

Metrics are plain floats (``None`` where undefined), ready for MLflow and the gate, whose
direction is "higher is better".
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from loopline.errors import DataError, LooplineError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.data.detection import DetectionDataset

__all__ = ["detection_metrics", "evaluate_detector"]

#: Detections scored per image: COCO's own limit.
MAX_DETECTIONS = 100
# Evaluation reads detections down to this score: AP integrates over every threshold, and
# a cut at the serving threshold would hide the recall the model has.
_EVAL_MIN_SCORE = 0.01


def detection_metrics(
    truth: Sequence[Sequence[dict[str, Any]]],
    detections: Sequence[Sequence[dict[str, Any]]],
    classes: Sequence[str],
) -> dict[str, Any]:
    """COCO mAP of ``detections`` against the true boxes ``truth``: one list per image
    each, in the same order; a true box is ``{"label", "box": [x, y, w, h]}``, a detection
    adds its ``score``. ``classes`` are the class names.

    Returns ``map50``, ``map50_95``, ``map75``, ``ap50_per_class`` (class name -> AP at IoU
    0.5; None for a class without true boxes), and the counts ``images``, ``boxes`` and
    ``detections``. Raises :class:`~loopline.errors.DataError` when the lists do not pair
    up or a label is not one of ``classes``.
    """
    if len(detections) != len(truth):
        raise DataError(
            f"{len(detections)} lists of detections for {len(truth)} images",
            hint="pass one list of detections per image, in the order of the true boxes",
        )
    category_of = {str(name): i + 1 for i, name in enumerate(classes)}
    gt = [
        {"image_id": image_id, "category_id": _category(b, category_of), "bbox": _box(b)}
        for image_id, boxes in enumerate(truth, start=1)
        for b in boxes
    ]
    results = [
        {
            "image_id": image_id,
            "category_id": _category(d, category_of),
            "bbox": _box(d),
            "score": float(d["score"]),
        }
        for image_id, found in enumerate(detections, start=1)
        for d in found
    ]
    counts = {"images": len(truth), "boxes": len(gt), "detections": len(results)}
    if not results or not gt:
        # Nothing found, or nothing to find: no precision to speak of (COCOeval cannot load
        # an empty list of results).
        present = {b["category_id"] for b in gt}
        per_class = {name: (0.0 if category_of[name] in present else None) for name in category_of}
        zero = 0.0 if gt else None
        return {"map50": zero, "map50_95": zero, "map75": zero, "ap50_per_class": per_class,
                **counts}  # fmt: skip
    return {**_cocoeval(len(truth), gt, results, category_of), **counts}


def evaluate_detector(
    model: Any,
    data: DetectionDataset | pd.DataFrame,
    *,
    min_score: float = _EVAL_MIN_SCORE,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Run the detection ``model`` on every image of ``data`` (a dataset or a detection
    table) and score it with :func:`detection_metrics` (detections down to ``min_score``,
    at most 100 per image), over the model's classes."""
    from loopline.data.detection import DetectionDataset
    from loopline.data.detection_table import detection_table, table_boxes
    from loopline.train.detector import detect, is_detector

    if not is_detector(model):
        raise LooplineError(
            f"{type(model).__name__} is not a detection model",
            hint="train one with loopline.train.detector.train_detector (or the "
            "train_detector step)",
        )
    frame = detection_table(data) if isinstance(data, DetectionDataset) else data
    truth = table_boxes(frame)
    found = detect(
        model,
        list(frame["image"]),
        min_score=min_score,
        max_detections=MAX_DETECTIONS,
        batch_size=batch_size,
    )
    return detection_metrics(truth, found, model.classes_)


def _category(box: dict[str, Any], category_of: dict[str, int]) -> int:
    label = str(box["label"])
    if label not in category_of:
        raise DataError(
            f"label {label!r} is not one of the classes ({', '.join(category_of)})",
            hint="score a model on data with the classes it was trained on",
        )
    return category_of[label]


def _box(box: dict[str, Any]) -> list[float]:
    return [float(v) for v in box["box"]]


def _cocoeval(
    images: int,
    gt: list[dict[str, Any]],
    results: list[dict[str, Any]],
    category_of: dict[str, int],
) -> dict[str, Any]:
    import numpy as np

    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise LooplineError(
            "detection metrics need pycocotools",
            hint="install them with `pip install loopline[vision]`",
        ) from None
    truth = COCO()
    truth.dataset = {
        # COCOeval reads only ids from images; sizes matter only for area ranges of boxes.
        "images": [{"id": i} for i in range(1, images + 1)],
        "annotations": [
            {**b, "id": i, "area": b["bbox"][2] * b["bbox"][3], "iscrowd": 0}
            for i, b in enumerate(gt, start=1)
        ],
        "categories": [{"id": i, "name": name} for name, i in category_of.items()],
    }
    # pycocotools reports its progress on stdout; the numbers are returned instead.
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        predicted = truth.loadRes(results)
        evaluation = COCOeval(truth, predicted, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    # precision: [IoU threshold, recall point, class, area range, max detections]; the first
    # threshold is 0.5, area range 0 is "all", the last max-detections setting is 100.
    precision = evaluation.eval["precision"][0, :, :, 0, -1]
    per_class: dict[str, float | None] = {}
    for k, category_id in enumerate(evaluation.params.catIds):
        values = precision[:, k]
        values = values[values > -1]
        name = truth.cats[category_id]["name"]
        per_class[name] = round(float(np.mean(values)), 6) if values.size else None
    return {
        "map50": _metric(stats[1]),
        "map50_95": _metric(stats[0]),
        "map75": _metric(stats[2]),
        "ap50_per_class": per_class,
    }


def _metric(value: float) -> float | None:
    # COCOeval writes -1 where a metric is undefined (no ground truth in that setting).
    return None if value < 0 else round(float(value), 6)
