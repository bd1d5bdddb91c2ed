"""The ready step that scores a detection model: COCO mAP (:mod:`loopline.evaluate.detection`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate_detector"]


@step
def evaluate_detector(model: Any, data: pd.DataFrame) -> dict[str, Any]:
    """mAP of the detection ``model`` on a detection table (``read_detection``'s output):
    ``map50``, ``map50_95``, ``map75``, AP at 0.5 per class and the counts, computed by
    pycocotools' COCO evaluation."""
    from loopline.evaluate.detection import evaluate_detector as score

    return score(model, data)
