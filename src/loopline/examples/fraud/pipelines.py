"""The demo's pipelines: library steps plus two steps of the fraud system's own.

- **fraud-fast**: ``read_pii_table`` (CUSTOMER_ID pseudonymised at the door) ->
  ``compute_features`` (the handbook's 14 online features, offline) -> time ``split`` (the
  last quarter to test, a 7-day gap: the label delay) -> ``train``
  (:func:`~loopline.fraud.models.fast_model` on
  :data:`~loopline.fraud.models.FAST_FEATURES`) -> ``evaluate`` -> ``gate`` (average
  precision) -> ``register`` (with its reference ``profile``).
- **fraud-heavy**: the same with :func:`heavy_features` (the heavy feature set, DuckDB)
  and :func:`~loopline.fraud.models.heavy_model` (LightGBM) on
  :func:`~loopline.fraud.models.heavy_columns`.
- The heavy model's **retrain** is :func:`loopline.stream.retrain.heavy_retrain` with
  :func:`labelled_heavy` as its frame: the decided transactions whose label is known
  (reviews, delayed labels) with the heavy features the batch side computed for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.pipeline import pipeline
from loopline.core.step import step
from loopline.fraud.models import FAST_FEATURES, fast_model, heavy_columns, heavy_model
from loopline.steps import (
    compute_features,
    evaluate,
    gate,
    profile,
    read_pii_table,
    register,
    split,
    train,
)
from loopline.stream.retrain import heavy_retrain, labelled_decisions

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext

__all__ = ["POLICY", "fraud_fast", "fraud_heavy", "heavy_features", "labelled_heavy", "retrain"]

#: the PII policy at the door: the customer id is pseudonymised, the rest kept as is
POLICY: dict[str, Any] = {
    "name": "handbook-demo",
    "columns": {
        "CUSTOMER_ID": {"kind": "identifier", "pii": "customer_id"},
        "TERMINAL_ID": "keep",
    },
    "scan": [],
    "unknown": "keep",
}
TARGET = "TX_FRAUD"
TIME = "TX_DATETIME"


@step
def heavy_features(data: pd.DataFrame, *, threads: int = 2) -> pd.DataFrame:
    """``data`` with the heavy model's features appended
    (:func:`~loopline.fraud.features.compute_heavy`: point-in-time, labels counted
    ``delay`` days after their transaction)."""
    from loopline.fraud.features import compute_heavy

    computed = compute_heavy(data, threads=threads)
    out = data.copy()
    for name in computed.columns.drop("TRANSACTION_ID"):
        out[name] = computed[name].to_numpy()
    return out


@pipeline(name="fraud-fast")
def fraud_fast(source: str, model_name: str = "fraud-fast") -> None:
    """The fast model on the online (handbook) features of the history in ``source``."""
    tx = compute_features(read_pii_table(source, dataset="fraud-history", parse_dates=[TIME]))
    train_df, test_df = split(tx, by="time", time=TIME, test_size=0.25, gap="7D")
    model = train(train_df, model=fast_model(), features=list(FAST_FEATURES), target=TARGET)
    metrics = evaluate(model, test_df, k=100)
    decision = gate(model, test_df, metrics, model_name=model_name, metric="average_precision")
    register(model, decision, example=test_df, reference=profile(model, test_df))


@pipeline(name="fraud-heavy")
def fraud_heavy(source: str, model_name: str = "fraud-heavy", n_jobs: int = 2) -> None:
    """The heavy model on the heavy features of the history in ``source``."""
    tx = heavy_features(read_pii_table(source, dataset="fraud-history", parse_dates=[TIME]))
    train_df, test_df = split(tx, by="time", time=TIME, test_size=0.25, gap="7D")
    model = train(
        train_df, model=heavy_model(n_jobs=n_jobs), features=list(heavy_columns()), target=TARGET
    )
    metrics = evaluate(model, test_df, k=100)
    decision = gate(model, test_df, metrics, model_name=model_name, metric="average_precision")
    register(model, decision, example=test_df, reference=profile(model, test_df))


@step(dataset="labelled_decisions", cache_extra=labelled_decisions.cache_extra)
def labelled_heavy(ctx: RunContext, *, features: str, history: str | None = None) -> pd.DataFrame:
    """The decided transactions whose label is known (``labelled_decisions``: the analysts'
    reviews and the delayed labels, with the masked features each decision recorded), with
    the heavy features of the Parquet file ``features`` joined by transaction id; after
    the labelled ``history`` (a Parquet file of earlier transactions with the heavy
    features and the label), when given. In time order."""
    import pandas as pd

    decided = labelled_decisions.fn(ctx, target=TARGET, time=TIME)
    heavy = pd.read_parquet(features)
    decided["TRANSACTION_ID"] = pd.to_numeric(decided["tx_id"])
    overlap = [c for c in heavy.columns if c != "TRANSACTION_ID" and c in decided.columns]
    decided = decided.drop(columns=overlap)  # the batch side's values, as the model learnt
    frame = decided.merge(heavy, on="TRANSACTION_ID", how="left", validate="one_to_one")
    if history is not None:
        frame = pd.concat([pd.read_parquet(history), frame], ignore_index=True)
    return frame.sort_values([TIME, "TRANSACTION_ID"], kind="stable").reset_index(drop=True)


retrain = heavy_retrain(labelled_heavy, name="fraud-heavy-retrain")
