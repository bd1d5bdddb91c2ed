"""The fraud reference system's two models.

- :func:`fast_model` scores each transaction as it arrives, from the **online** features
  (the handbook's set, :func:`loopline.features.definitions.handbook_features`, plus the
  transaction's amount: :data:`FAST_FEATURES`): a standardised logistic regression, which
  the stream consumer's :class:`~loopline.stream.scoring.Scorer` scores in NumPy (about
  15 µs a transaction).
- :func:`heavy_model` re-scores in batch from the heavy features
  (:func:`loopline.fraud.features.heavy_features`, computed offline: :func:`heavy_columns`):
  LightGBM with settings chosen on validation weeks of April and May 2018 (the protocol of
  :mod:`loopline.fraud.metrics`), never on the June weeks it is reported on.

:func:`handbook_baselines` are the Fraud Detection Handbook's own classifiers with their
published settings, for comparison.
"""

from __future__ import annotations

from typing import Any

from loopline.features.definitions import handbook_features

__all__ = [
    "FAST_FEATURES",
    "HEAVY_PARAMS",
    "fast_model",
    "handbook_baselines",
    "heavy_columns",
    "heavy_model",
]

#: the fast model's inputs: the amount and the 14 online (handbook) features
FAST_FEATURES: tuple[str, ...] = ("TX_AMOUNT", *handbook_features().names)

#: the heavy model's LightGBM settings, picked on April-May test weeks (never on June's):
#: many small, shrunk trees on row and column samples. `benchmarks/fraud_quality.py
#: --train-start 2018-05-04` shows them on the May weeks, the default run on June's.
HEAVY_PARAMS: dict[str, Any] = {
    "n_estimators": 500,
    "learning_rate": 0.02,
    "num_leaves": 15,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
}


def fast_model(*, C: float = 1.0) -> Any:
    """An unfitted ``StandardScaler`` + ``LogisticRegression`` pipeline for
    :data:`FAST_FEATURES` (the shape the stream's lean NumPy path scores)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(C=C, max_iter=1000, random_state=0)),
        ]
    )


def heavy_columns(**kwargs: Any) -> tuple[str, ...]:
    """The heavy model's inputs: the amount and every heavy feature (``kwargs`` go to
    :func:`~loopline.fraud.features.heavy_features`)."""
    from loopline.fraud.features import heavy_features

    return ("TX_AMOUNT", *heavy_features(**kwargs).names)


def heavy_model(*, n_jobs: int | None = None, random_state: int = 0, **overrides: Any) -> Any:
    """An unfitted ``LGBMClassifier`` with :data:`HEAVY_PARAMS` (``overrides`` replace
    some); ``n_jobs`` None lets LightGBM use every core."""
    from lightgbm import LGBMClassifier

    params = {**HEAVY_PARAMS, **overrides}
    if n_jobs is not None:
        params["n_jobs"] = n_jobs
    return LGBMClassifier(random_state=random_state, verbose=-1, **params)


def handbook_baselines(*, n_jobs: int = -1, tuned: bool = True) -> dict[str, Any]:
    """The handbook's classifiers, unfitted, each after a ``StandardScaler`` as the book
    scales every input (chapter 3.4, ``fit_model_and_get_predictions``, ``scale=True``).

    - ``lr``: ``LogisticRegression(random_state=0)`` (chapter 3.4).
    - ``rf``: ``RandomForestClassifier(random_state=0, n_jobs=-1)``: 100 trees of unlimited
      depth (chapter 3.4).
    - ``xgb``: ``XGBClassifier(random_state=0, n_jobs=-1)``: 100 trees of depth 6,
      learning rate 0.3 (chapter 3.4).
    - with ``tuned``, chapter 5.3's best settings on its validation weeks:
      ``rf_tuned`` 100 trees of depth 20 (best for all three metrics), ``xgb_tuned``
      50 trees of depth 3 at learning rate 0.3 (best for AP; 100 trees for AUC, 25 for
      CP@100).

    XGBoost is imported only when asked for: it is a development dependency.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    models = {
        "lr": make_pipeline(StandardScaler(), LogisticRegression(random_state=0)),
        "rf": make_pipeline(
            StandardScaler(), RandomForestClassifier(random_state=0, n_jobs=n_jobs)
        ),
        "xgb": make_pipeline(StandardScaler(), XGBClassifier(random_state=0, n_jobs=n_jobs)),
    }
    if tuned:
        models["rf_tuned"] = make_pipeline(
            StandardScaler(),
            RandomForestClassifier(n_estimators=100, max_depth=20, random_state=0, n_jobs=n_jobs),
        )
        models["xgb_tuned"] = make_pipeline(
            StandardScaler(),
            XGBClassifier(
                n_estimators=50,
                max_depth=3,
                learning_rate=0.3,
                random_state=0,
                n_jobs=n_jobs,
            ),
        )
    return models
