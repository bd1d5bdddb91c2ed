"""The heavy model re-scores decided transactions in batch (``loopline stream rescore``).

:func:`rescore` reads the recent decisions not yet scored by the current
``fraud-heavy@champion`` (those of the last ``heavy_max_age_days`` of event time, the only
ones whose score can still weigh on new transactions), builds the heavy model's inputs
from each row's masked features (or with ``fraud.heavy_features``, a ``module:function``
that takes that frame and returns the heavy model's inputs, e.g. features over a longer
history computed offline), scores them, and writes each score back to its decision row
(``batch_score``, ``batch_version``, ``batch_scored_at``). The decision service reads
those scores (:class:`~loopline.stream.heavy.HeavyScores`) for the customers' next
transactions.

A transaction's **first** heavy score is also a prediction of the heavy model in the
project's prediction log (with ``fraud.prediction_log``, as the fast model's decisions
are): request id = transaction id, time = transaction time, the version that scored it,
route ``champion``, as inputs the amount, the heavy model's inputs and the customer
(``heavy_keys``, pseudonymised as the decision stored it), so that ``loopline monitor
report fraud-heavy`` joins it with the feedback the labels and reviews write. A re-score
(a new champion) updates the score the decision service reads but logs nothing again:
monitoring judges each version on the transactions it scored first.

A transaction that was allowed but whose heavy score reaches the review threshold is
**newly suspicious**: it goes to the review queue (source ``rescore``, priority = its
expected loss, payload = its masked features, both scores and the reason) in the same
database transaction as its score. The original decision is never rewritten: it is the
record of what was answered.

Each chunk of ``chunk`` rows is one short transaction, so the decision service, writing to
the same database, waits at most that long. Running it again scores only what is new (or
everything recent again after a new heavy champion).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import sqlalchemy as sa

from loopline.core import schema
from loopline.errors import ConfigError, LooplineError
from loopline.stream.decisions import DecisionLog, ReviewItem
from loopline.stream.policy import FraudSettings, fraud_settings
from loopline.stream.scoring import Scorer
from loopline.stream.source import StreamError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.config import Settings
    from loopline.core.predlog import PredictionBatch, PredictionLogger

__all__ = ["RescoreResult", "decision_frame", "rescore"]

FeatureFn = Callable[["pd.DataFrame"], "pd.DataFrame"]


@dataclass(frozen=True)
class RescoreResult:
    """What one re-score did."""

    model: str
    version: str
    scored: int
    unscorable: int
    newly_suspicious: int
    logged: int  # first scores logged as the heavy model's predictions
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decision_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Decision rows as a frame: ``tx_id``, ``tx_time``, the decision's columns and one
    column per masked feature (its JSON ``features``)."""
    import pandas as pd

    features = [orjson.loads(r["features"]) if r.get("features") else {} for r in rows]
    frame = pd.DataFrame(features)
    meta = pd.DataFrame(
        {
            "tx_id": [r["tx_id"] for r in rows],
            "tx_time": pd.to_datetime([r.get("tx_time") for r in rows], utc=True),
            "decision_action": [r.get("action") for r in rows],
            "decision_score": [r.get("score") for r in rows],
            "decision_fast_score": [r.get("fast_score") for r in rows],
            "decision_reason": [r.get("reason") for r in rows],
        }
    )
    frame = frame.drop(columns=[c for c in meta.columns if c in frame.columns])
    return pd.concat([meta, frame], axis=1)


def _feature_fn(spec: str | None) -> FeatureFn | None:
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    try:
        fn: FeatureFn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"fraud.heavy_features {spec!r} cannot be imported: {exc}",
            hint="name a function as module:function (it takes the decisions' frame and "
            "returns the heavy model's inputs)",
        ) from None
    return fn


def rescore(
    settings: Settings,
    *,
    model: str | None = None,
    features: FeatureFn | None = None,
    since: datetime | None = None,
    chunk: int = 2_000,
    config: FraudSettings | None = None,
) -> RescoreResult:
    """Score the recent decisions with the heavy model (see the module's docstring).

    ``model`` overrides ``fraud.heavy_model``; ``features`` overrides
    ``fraud.heavy_features``; ``since`` (event time) overrides the
    ``heavy_max_age_days`` window.
    """
    from loopline.core.metadata import MetadataStore
    from loopline.core.predlog import open_prediction_logger
    from loopline.registry.project import open_registry
    from loopline.stream.reviews import open_review_queue

    started = time.perf_counter()
    fraud = config or fraud_settings(settings)
    ref = model or fraud.heavy_model
    if ref is None:
        raise ConfigError(
            "no heavy model to re-score with: fraud.heavy_model is null",
            hint="set fraud.heavy_model (e.g. fraud-heavy@champion) or pass --model",
        )
    build = features or _feature_fn(fraud.heavy_features)
    assert settings.metadata_url is not None
    store = MetadataStore(settings.metadata_url)
    log: DecisionLog | None = None
    predictions: PredictionLogger | None = None
    try:
        loaded = open_registry(settings, store).load(ref)
        name, version = loaded.info.name, str(loaded.info.version)
        scorer = Scorer(loaded.model)
        if fraud.review_queue is not None:
            open_review_queue(store, fraud.review_queue)
        log = DecisionLog(store, source="rescore", review_queue=fraud.review_queue)
        if fraud.prediction_log:
            predictions = open_prediction_logger(settings)
        d = schema.decisions
        floor = since
        if floor is None:
            with log.engine.connect() as conn:
                newest = conn.execute(sa.select(sa.func.max(d.c.tx_time))).scalar()
            if newest is not None:
                floor = newest - timedelta(days=fraud.heavy_max_age_days)
        where = sa.or_(d.c.batch_version.is_(None), d.c.batch_version != version)
        if floor is not None:
            where = sa.and_(where, sa.or_(d.c.tx_time >= floor, d.c.tx_time.is_(None)))
        scored = unscorable = suspicious = logged = 0
        after = ""
        while True:
            query = sa.select(d).where(where, d.c.tx_id > after).order_by(d.c.tx_id).limit(chunk)
            with log.engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query)]
            if not rows:
                break
            after = rows[-1]["tx_id"]
            began = time.perf_counter()
            stored = decision_frame(rows)
            inputs = _inputs(scorer, stored if build is None else build(stored), ref)
            scores = _score(scorer, inputs)
            per_row_ms = 1000.0 * (time.perf_counter() - began) / len(rows)
            stamp = datetime.now(UTC)
            updates, reviews, first = [], [], []
            for i, (row, score) in enumerate(zip(rows, scores, strict=True)):
                value = None if score is None or not np.isfinite(score) else float(score)
                updates.append({"key": row["tx_id"], "s": value, "v": version, "at": stamp})
                if value is None:
                    unscorable += 1
                    continue
                scored += 1
                if row["batch_version"] is None:  # never re-scored before: its first score
                    first.append((i, value))
                item = _newly_suspicious(row, value, version, fraud)
                if item is not None:
                    reviews.append({**_task(row["tx_id"], item, fraud, stamp)})
            _write(log, updates, reviews)
            suspicious += len(reviews)
            if predictions is not None and first:
                batch = _predictions(
                    name, version, rows, stored, inputs, first, fraud, per_row_ms, stamp
                )
                logged += len(batch) if predictions.log_batch(batch) else 0
                # Written now, not when the logger gets to it: once committed above, these
                # rows are no longer first scores, so a crash before the write would lose
                # their predictions for good.
                predictions.flush()
    finally:
        if predictions is not None:
            predictions.close()
        if log is not None:
            log.close()
        store.close()
    return RescoreResult(
        model=name,
        version=version,
        scored=scored,
        unscorable=unscorable,
        newly_suspicious=suspicious,
        logged=logged,
        seconds=round(time.perf_counter() - started, 3),
    )


def _inputs(scorer: Scorer, frame: pd.DataFrame, ref: str) -> pd.DataFrame:
    """The model's input columns of ``frame``, numeric (NaN where missing or not a number)."""
    columns = scorer.columns
    missing = [c for c in columns if c not in frame.columns]
    if len(missing) == len(columns):
        raise LooplineError(
            f"the heavy model {ref} reads {columns}, none of which the decision log holds",
            hint="set fraud.heavy_features to a module:function that computes them",
        )
    return frame.reindex(columns=columns).apply(_numeric)


def _score(scorer: Scorer, inputs: pd.DataFrame) -> list[float | None]:
    """One score per row; rows missing an input the model cannot do without get None."""
    complete = inputs.notna().all(axis=1).to_numpy()
    out: list[float | None] = [None] * len(inputs)
    records = inputs.to_dict("records")
    done = [i for i in range(len(records)) if complete[i]]
    partial = [i for i in range(len(records)) if not complete[i]]
    for group in (done, partial):
        if not group:
            continue
        try:
            values = scorer.score([records[i] for i in group])
        except StreamError:
            if group is done:
                raise
            continue  # a model that takes no missing value: those rows stay unscored
        for i, value in zip(group, values, strict=True):
            out[i] = float(value)
    return out


def _predictions(
    name: str,
    version: str,
    rows: list[dict[str, Any]],
    stored: pd.DataFrame,
    inputs: pd.DataFrame,
    first: list[tuple[int, float]],
    fraud: FraudSettings,
    per_row_ms: float,
    stamp: datetime,
) -> PredictionBatch:
    """The first scores (row index, score) as the heavy model's predictions, column-wise
    as the decision service logs the fast model's; ``stored`` is the decisions' frame,
    ``inputs`` the model's inputs, both row for row with ``rows``."""
    from loopline.core.predlog import PredictionBatch
    from loopline.features.online import to_microseconds

    at = [i for i, _ in first]
    p = [value for _, value in first]
    amount = fraud.cost.amount_field
    # The amount first, as in the fast model's rows; the customer (``heavy_keys``, already
    # pseudonymised in the stored features) so that monitoring can rank cards for card
    # precision@100.
    logged: dict[str, Any] = {}
    if amount in stored.columns:
        logged[amount] = stored[amount]
    logged |= {c: inputs[c] for c in inputs.columns}
    logged |= {k: stored[k] for k in fraud.heavy_keys if k in stored.columns}
    review = fraud.thresholds.review
    now_us = to_microseconds(stamp)
    return PredictionBatch(
        model_name=name,
        model_version=version,
        route="champion",
        request_ids=[str(rows[i]["tx_id"]) for i in at],
        ts_us=[
            now_us if rows[i].get("tx_time") is None else to_microseconds(rows[i]["tx_time"])
            for i in at
        ],
        inputs={k: column.iloc[at].tolist() for k, column in logged.items()},
        labels=["1" if x >= review else "0" for x in p],
        probabilities={"0": [1.0 - x for x in p], "1": p},
        latency_ms=[per_row_ms] * len(at),
    )


def _numeric(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def _newly_suspicious(
    row: dict[str, Any], score: float, version: str, fraud: FraudSettings
) -> ReviewItem | None:
    if fraud.review_queue is None or row.get("action") not in ("allow", None):
        return None
    review = fraud.thresholds.review
    if score < review:
        return None
    features = orjson.loads(row["features"]) if row.get("features") else {}
    amount = features.get(fraud.cost.amount_field)
    amount = float(amount) if isinstance(amount, int | float) else 0.0
    priority = score * amount if fraud.cost.kind == "expected_loss" else score
    reason = (
        f"rescore: heavy score {score:.3f} (v{version}) >= review {review}; "
        f"decided {row.get('action') or 'unflagged'}: {row.get('reason') or '-'}"
    )
    return ReviewItem(
        priority=priority,
        source="rescore",
        payload={
            "features": features,
            "action": row.get("action"),
            "score": row.get("score"),
            "fast_score": row.get("fast_score"),
            "heavy_score": score,
            "reason": reason,
            "fallback": (row.get("fallback") or "").split(",") if row.get("fallback") else [],
            "expected_loss": priority,
        },
    )


def _task(tx_id: str, item: ReviewItem, fraud: FraudSettings, stamp: datetime) -> dict[str, Any]:
    return {
        "queue": fraud.review_queue,
        "item_id": tx_id,
        "text": None,
        "payload": orjson.dumps(item.payload, default=str).decode(),
        "source": item.source,
        "priority": float(item.priority),
        "status": "open",
        "created_at": stamp,
    }


def _write(log: DecisionLog, updates: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> None:
    d = schema.decisions
    statement = (
        d.update()
        .where(d.c.tx_id == sa.bindparam("key"))
        .values(
            batch_score=sa.bindparam("s"),
            batch_version=sa.bindparam("v"),
            batch_scored_at=sa.bindparam("at"),
        )
    )
    with log.engine.begin() as conn:
        if updates:
            conn.execute(statement, updates)
        if tasks:
            conn.execute(log._insert_tasks, tasks)
