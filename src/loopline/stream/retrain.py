"""Retraining the heavy model on the cases whose truth is known.

:func:`heavy_retrain` builds a pipeline of library steps -- *frame* → ``split`` (by time)
→ ``train`` → ``evaluate`` → ``gate`` → ``register`` (with ``profile``) -- for
``fraud-heavy``; its first step, the training frame producer, is a step you pass, so the
same pipeline trains on whatever frame a project builds. The default producer,
:func:`labelled_decisions`, takes every decided transaction whose true label is known
(the analysts' reviews, source ``review``; the true labels that arrived days later, e.g.
source ``delayed``; any other feedback) with the masked features the decision recorded.
Because it reads the feedback table and the decision log, their state is part of its
cache key: a new label makes the next run train again, no new label makes it a cache hit.

Like every pipeline run, the registered version records its lineage: the
``labelled_decisions`` dataset version it was trained on, the run, the code version.

    from loopline.stream.retrain import heavy_retrain
    result = heavy_retrain().run(settings, model_name="fraud-heavy")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from loopline.core import schema
from loopline.core.pipeline import Pipeline, pipeline
from loopline.core.step import Step, step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext

__all__ = ["DEFAULT_FEATURES", "heavy_retrain", "labelled_decisions"]

#: The handbook's features and the amount: what the heavy model trains on by default.
DEFAULT_FEATURES: tuple[str, ...] = (
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *(f"CUSTOMER_{k}_{d}D" for d in (1, 7, 30) for k in ("TX", "MEAN_AMOUNT")),
    *(f"TERMINAL_{k}_{d}D" for d in (1, 7, 30) for k in ("TX", "RISK")),
)
_POSITIVE = {"1", "1.0", "true", "fraud"}
_NEGATIVE = {"0", "0.0", "false", "legit"}


def _labels_state(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """The feedback labels and the decision log change outside the pipeline."""
    from loopline.core.feedback import feedback_watermark

    d = schema.decisions
    with ctx.metadata.engine.connect() as conn:
        count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(d.c.decided_at))).one()
    return f"{feedback_watermark(ctx.metadata)}|decisions:{count}:{last}"


@step(dataset="labelled_decisions", cache_extra=_labels_state)
def labelled_decisions(
    ctx: RunContext,
    *,
    sources: list[str] | None = None,
    target: str = "TX_FRAUD",
    time: str = "TX_DATETIME",
) -> pd.DataFrame:
    """Decided transactions with a known label (the latest feedback of ``sources``, all
    sources by default): ``tx_id``, the masked features the decision recorded, ``time``
    (a datetime), ``target`` (1 fraud, 0 legit) and ``label_source``; in time order."""
    import pandas as pd

    fb, d = schema.feedback, schema.decisions
    query = sa.select(fb.c.request_id, fb.c.label, fb.c.source).order_by(fb.c.created_at, fb.c.id)
    if sources:
        query = query.where(fb.c.source.in_(sources))
    latest: dict[str, tuple[int, str]] = {}
    with ctx.metadata.engine.connect() as conn:
        for request_id, label, source in conn.execute(query):
            text = str(label).strip().lower()
            if text in _POSITIVE or text in _NEGATIVE:
                latest[str(request_id)] = (int(text in _POSITIVE), str(source))
        ids = sorted(latest)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found = conn.execute(
                sa.select(d.c.tx_id, d.c.features, d.c.tx_time).where(d.c.tx_id.in_(chunk))
            )
            for tx_id, features, tx_time in found:
                record = orjson.loads(features) if features else {}
                label, source = latest[str(tx_id)]
                record.update(
                    {
                        "tx_id": str(tx_id),
                        time: record.get(time) or tx_time,
                        target: label,
                        "label_source": source,
                    }
                )
                rows.append(record)
    if not rows:
        return pd.DataFrame(
            {
                "tx_id": pd.Series(dtype="str"),
                time: pd.Series(dtype="datetime64[ns]"),
                target: pd.Series(dtype="int64"),
                "label_source": pd.Series(dtype="str"),
            }
        )
    frame = pd.DataFrame(rows)
    stamps = pd.to_datetime(frame[time], utc=True, format="mixed")
    frame[time] = stamps.dt.tz_localize(None)
    frame[target] = frame[target].astype("int64")
    return frame.sort_values([time, "tx_id"], kind="stable").reset_index(drop=True)


def heavy_retrain(
    frame: Step = labelled_decisions, *, name: str = "fraud-heavy-retrain"
) -> Pipeline:
    """The heavy model's retraining pipeline, its training frame made by ``frame`` (a step
    called with the pipeline's ``frame_params``; default :func:`labelled_decisions`).

    Parameters of the pipeline: ``model_name`` (``fraud-heavy``), ``features`` (the
    handbook's 14 and the amount), ``target``, ``time``, ``test_size`` and ``gap`` of the
    time split, the gate's ``metric`` (``average_precision``), ``min_value`` and
    ``min_improvement``, ``k`` of precision at k, ``model`` (an unfitted estimator;
    default LightGBM) and ``frame_params``.
    """
    from loopline.data.steps import split
    from loopline.evaluate.steps import evaluate
    from loopline.monitor.steps import profile
    from loopline.registry.steps import gate, register
    from loopline.train.steps import train

    def retrain(
        model_name: str = "fraud-heavy",
        features: list[str] | None = None,
        target: str = "TX_FRAUD",
        time: str = "TX_DATETIME",
        test_size: float = 0.25,
        gap: str | None = None,
        metric: str = "average_precision",
        min_value: float | None = None,
        min_improvement: float = 0.001,
        k: int = 100,
        model: Any = None,
        frame_params: dict[str, Any] | None = None,
    ) -> None:
        if model is None:
            from lightgbm import LGBMClassifier

            model = LGBMClassifier(
                n_estimators=200, learning_rate=0.05, num_leaves=31, random_state=0, verbose=-1
            )
        data = frame(**(frame_params or {}))
        train_df, test_df = split(data, by="time", time=time, test_size=test_size, gap=gap)
        fitted = train(
            train_df, model=model, features=list(features or DEFAULT_FEATURES), target=target
        )
        metrics = evaluate(fitted, test_df, k=k)
        decision = gate(
            fitted,
            test_df,
            metrics,
            model_name=model_name,
            metric=metric,
            min_value=min_value,
            min_improvement=min_improvement,
        )
        register(fitted, decision, example=test_df, reference=profile(fitted, test_df))

    retrain.__doc__ = f"Retrain the heavy model on the frame of step {frame.name}."
    return pipeline(retrain, name=name)
