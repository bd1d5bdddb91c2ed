"""The ready step of the evaluate stage: score a model on held-out data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd


@step
def evaluate(
    model: Any,
    data: pd.DataFrame,
    *,
    metrics: str | list[Any] | None = None,
    k: int | list[int] | None = None,
    slices: list[str] | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """Score ``model`` on ``data``: the classification or regression metric set by default,
    or the ``metrics`` named (set names, metric names or functions ``fn(y_true, y_pred,
    proba, classes)``); ``k`` adds ranking metrics at k (precision/recall at k, top-k
    accuracy); ``slices`` names columns to break the metrics down by. The target and
    features are the model's own unless ``target`` is given."""
    from loopline.evaluate.metrics import evaluate_model
    from loopline.train.model import as_model

    trained = as_model(model)
    if trained.task == "detection":
        from loopline.errors import LooplineError

        raise LooplineError(
            "evaluate scores tables of features; a detection model is scored on images",
            hint="use the evaluate_detector step (COCO mAP) for it",
        )
    return evaluate_model(
        trained,
        data,
        target=target or _target(trained),
        features=trained.features,
        task=trained.task,
        metrics=metrics,
        k=k,
        slices=slices,
    )


def _target(model: Any) -> str:
    from loopline.errors import DataError

    if not model.target:
        raise DataError(
            "the model does not say which column it predicts",
            hint="pass target=COLUMN to evaluate",
        )
    return str(model.target)
