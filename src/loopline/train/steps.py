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


@step(outputs=("model", "trials"))
def search(
    data: pd.DataFrame,
    *,
    model: Any,
    space: dict[str, Any],
    target: str,
    features: list[str] | None = None,
    task: Literal["auto", "classification", "regression"] = "auto",
    trials: int = 20,
    batch: int = 4,
    scoring: str | None = None,
    cv: int = 3,
    seed: int = 0,
) -> tuple[Model, pd.DataFrame]:
    """Search ``space`` for ``model``'s best settings with Optuna; train the best on ``data``.

    ``model`` is an unfitted estimator, ``space`` maps its parameters (``set_params``
    names) to a list of choices or ``{"low", "high", "log", "step"}``. Each trial is scored
    by ``cv``-fold cross-validation with scikit-learn's ``scoring`` (default macro-F1 or
    negated RMSE). On the Ray executor the trials of each round of ``batch`` run as Ray
    tasks; elsewhere one after another, with the same result for a given ``seed``.
    Returns the best model (for ``evaluate``, ``gate`` and ``register`` as from ``train``)
    and the trials, best first (``number``, ``score``, ``param.<name>``).
    """
    from loopline.train.search import search_model

    found = search_model(
        data,
        model,
        space,
        target=target,
        features=features,
        task=task,
        trials=trials,
        batch=batch,
        scoring=scoring,
        cv=cv,
        seed=seed,
    )
    return found.model, found.trials
