"""The ready step of the train stage: fit any estimator, or call a training function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.train.model import Model


@step
def train(
    data: pd.DataFrame,
    *,
    model: Any,
    target: str,
    features: list[str] | None = None,
    task: Literal["auto", "classification", "regression"] = "auto",
    sample_weight: str | None = None,
) -> Model:
    """Train ``model`` on ``data[features]`` to predict ``data[target]``.

    ``model`` is an unfitted estimator (scikit-learn, a pipeline, LightGBM's
    ``LGBMClassifier``...; its class and parameters are part of the cache key), a
    description whose ``build()`` returns one (a cached run then never imports the
    library), or a training function ``fn(X, y)`` returning a fitted estimator or a PyTorch
    ``nn.Module`` (its code is part of the key; for classification ``y`` holds integer codes
    of the sorted labels).
    ``features`` defaults to every other column; ``sample_weight`` names a weight column.
    Returns a :class:`~loopline.train.model.Model` that later steps use without being told
    the features or target again.
    """
    from loopline.train.model import fit_model

    return fit_model(
        data, model, features=features, target=target, task=task, sample_weight=sample_weight
    )
