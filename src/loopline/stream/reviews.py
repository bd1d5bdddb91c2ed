"""Analysts in the loop: the review queue's labels become feedback and late labels.

Transactions the decision service sends to review (and those the heavy model's re-score
finds newly suspicious) are tasks of the label queue ``fraud.review_queue`` (labels
``fraud`` and ``legit``; payload: the masked features, both scores and the reason; no raw
personal data, since payloads are built from the masked message). Analysts label them on
the labeling page (``loopline label serve --queue fraud-review``) or with
``loopline label queue submit``.

:func:`apply_reviews` (``loopline stream apply-reviews``) moves new labels on, idempotently:

- **feedback** for the transaction id (the rows of ``core.feedback.record_feedback``,
  source ``review``, label ``1`` for fraud and ``0`` for legit: the models' classes), one
  row per model that predicted it (the fast model and, with ``fraud.heavy_model``, the
  heavy one, whose first score ``stream rescore`` logged), all in one database
  transaction: monitoring joins feedback with a model's predictions by request id and
  model name, and the heavy model's retraining reads it;
- a **late label** for the online feature store (``add_label(tx_id, label, known_at)``), so
  terminal-risk features count it from then on.

A label is applied when the item's latest annotation differs from the last label applied
(none yet, or an analyst changed their mind); running it twice changes nothing.

``known_at`` is the label's time **on the stream's clock**: the event time of the newest
transaction decided when the analyst submitted the label (at least the reviewed
transaction's own time). In production the two clocks agree; in a replay of old
transactions the label still arrives "later" in the transactions' own time, as it would
have, instead of years after every transaction.

:func:`record_labels` does the same for labels from elsewhere (the true labels that arrive
days later, chargebacks): feedback with their source and the late label with their own
``known_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from loopline.core import schema
from loopline.errors import LooplineError
from loopline.stream.policy import FraudSettings, fraud_settings, model_name

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore

__all__ = [
    "LABEL_VALUES",
    "REVIEW_LABELS",
    "ReviewsApplied",
    "apply_reviews",
    "event_time_at",
    "open_review_queue",
    "record_labels",
]

#: The review queue's labels: an analyst's decision on a transaction.
REVIEW_LABELS = ("fraud", "legit")
#: What each becomes in feedback and in the feature store (the fast model's classes).
LABEL_VALUES = {"fraud": "1", "legit": "0"}


def open_review_queue(store: Any, name: str) -> Any:
    """The review queue ``name`` (created with the labels ``fraud``, ``legit``)."""
    from loopline.label.queue import LabelQueue

    queue = LabelQueue(store, name)
    if not queue.label_set:
        queue.configure(labels=list(REVIEW_LABELS))
    return queue


@dataclass(frozen=True)
class ReviewsApplied:
    """What :func:`apply_reviews` moved on."""

    queue: str
    applied: int
    unchanged: int
    fraud: int
    legit: int
    feature_store: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _utc(value: Any) -> datetime:
    import pandas as pd

    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def event_time_at(engine: sa.Engine, wall: datetime) -> datetime | None:
    """The stream's clock at wall time ``wall``: the event time of the transaction decided
    last at or before it (None when nothing was decided by then)."""
    d = schema.decisions
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(d.c.tx_time)
            .where(d.c.decided_at <= wall, d.c.tx_time.is_not(None))
            .order_by(d.c.decided_at.desc())
            .limit(1)
        ).scalar()
    return None if found is None else _utc(found)


def _tx_times(engine: sa.Engine, tx_ids: Sequence[str]) -> dict[str, datetime]:
    d = schema.decisions
    found: dict[str, datetime] = {}
    with engine.connect() as conn:
        for start in range(0, len(tx_ids), 500):
            chunk = list(tx_ids[start : start + 500])
            query = sa.select(d.c.tx_id, d.c.tx_time).where(d.c.tx_id.in_(chunk))
            for tx_id, when in conn.execute(query):
                if when is not None:
                    found[str(tx_id)] = _utc(when)
    return found


def _last_applied(store: MetadataStore, source: str) -> dict[str, str]:
    fb = schema.feedback
    query = (
        sa.select(fb.c.request_id, fb.c.label)
        .where(fb.c.source == source)
        .order_by(fb.c.created_at, fb.c.id)
    )
    with store.engine.connect() as conn:
        return {str(r): str(label) for r, label in conn.execute(query)}


def _add_labels(features: Any, labels: list[tuple[str, float, datetime]]) -> None:
    if not labels:
        return
    many = getattr(features, "add_labels", None)
    if callable(many):
        many(labels)
        return
    for tx_id, value, known_at in labels:
        features.add_label(tx_id, value, known_at)


def record_labels(
    settings: Settings,
    labels: Iterable[tuple[str, str | int, Any]],
    *,
    source: str = "delayed",
    features: Any = None,
    store: MetadataStore | None = None,
    config: FraudSettings | None = None,
) -> int:
    """Labels ``(tx_id, label, known_at)`` (label ``1``/``0``, ``fraud``/``legit``;
    ``known_at`` on the transactions' clock): a late label for the feature store (the
    ``fraud.features`` store, or ``features``), then feedback with ``source`` for each
    model that predicted the transactions."""
    from loopline.core.metadata import MetadataStore

    fraud = config or fraud_settings(settings)
    rows = [(str(t), _label(v), _utc(k)) for t, v, k in labels]
    opened = store is None
    if store is None:
        assert settings.metadata_url is not None
        store = MetadataStore(settings.metadata_url)
    online, close = _feature_store(settings, fraud, features)
    try:
        if online is not None:
            _add_labels(online, [(t, float(v), k) for t, v, k in rows])
        _record_feedback(store, [(t, v) for t, v, _ in rows], source, fraud)
    finally:
        if close:
            online.close()
        if opened:
            store.close()
    return len(rows)


def _record_feedback(
    store: MetadataStore, labels: Sequence[tuple[str, str]], source: str, fraud: FraudSettings
) -> None:
    """Each ``(tx_id, label)`` as feedback for every model that predicted the transaction
    (the fast model and, with ``fraud.heavy_model``, the heavy one), in one database
    transaction: a label counts for both models or for neither."""
    from loopline.core.feedback import record_feedback_many

    models = [model_name(fraud.fast_model)]
    if fraud.heavy_model is not None:
        models.append(model_name(fraud.heavy_model))
    record_feedback_many(
        store, [(tx_id, label, m) for tx_id, label in labels for m in models], source=source
    )


def _label(value: Any) -> str:
    text = str(value).strip().lower()
    if text in LABEL_VALUES:
        return LABEL_VALUES[text]
    if text in ("1", "0", "1.0", "0.0", "true", "false"):
        return "1" if text in ("1", "1.0", "true") else "0"
    raise LooplineError(
        f"a fraud label is fraud/legit or 1/0, found {value!r}", hint="send 1 (fraud) or 0"
    )


def _feature_store(settings: Settings, fraud: FraudSettings, given: Any) -> tuple[Any, bool]:
    if given is not None:
        return given, False
    if fraud.features == "none":
        return None, False
    from loopline.stream.stores import open_features

    return open_features(fraud.features, settings), True


def apply_reviews(
    settings: Settings,
    *,
    features: Any = None,
    config: FraudSettings | None = None,
) -> ReviewsApplied:
    """Move the review queue's new labels to feedback and the feature store (see the
    module's docstring); ``features`` overrides the ``fraud.features`` store."""
    from loopline.core.metadata import MetadataStore
    from loopline.label.queue import LabelQueue

    fraud = config or fraud_settings(settings)
    if fraud.review_queue is None:
        raise LooplineError(
            "no review queue: fraud.review_queue is null", hint="set fraud.review_queue"
        )
    assert settings.metadata_url is not None
    store = MetadataStore(settings.metadata_url)
    online: Any = None
    close = False
    try:
        lq = schema.label_queues
        with store.engine.connect() as conn:
            exists = conn.execute(
                sa.select(lq.c.name).where(lq.c.name == fraud.review_queue)
            ).scalar()
        if exists is None:  # nothing was ever sent to review
            return ReviewsApplied(fraud.review_queue, 0, 0, 0, 0, fraud.features != "none")
        annotations = LabelQueue(store, fraud.review_queue).annotations()
        latest = annotations.sort_values(["created_at", "annotation_id"]).drop_duplicates(
            "item_id", keep="last"
        )
        applied = _last_applied(store, "review")
        todo = [
            (str(item), LABEL_VALUES.get(str(label), str(label)), _utc(when))
            for item, label, when in zip(
                latest["item_id"], latest["label"], latest["created_at"], strict=True
            )
            if applied.get(str(item)) != LABEL_VALUES.get(str(label), str(label))
        ]
        times = _tx_times(store.engine, [t for t, _, _ in todo])
        clock: dict[datetime, datetime | None] = {}
        labels: list[tuple[str, float, datetime]] = []
        for tx_id, value, when in todo:
            if when not in clock:
                clock[when] = event_time_at(store.engine, when)
            candidates = [t for t in (times.get(tx_id), clock[when]) if t is not None]
            known_at = max(candidates) if candidates else when
            labels.append((tx_id, float(value), known_at))
        online, close = _feature_store(settings, fraud, features)
        if online is not None:
            _add_labels(online, labels)
        # The feedback last: it marks the label as applied.
        _record_feedback(store, [(t, v) for t, v, _ in todo], "review", fraud)
        fraud_count = sum(v == "1" for _, v, _ in todo)
        return ReviewsApplied(
            queue=fraud.review_queue,
            applied=len(todo),
            unchanged=len(latest) - len(todo),
            fraud=fraud_count,
            legit=len(todo) - fraud_count,
            feature_store=online is not None,
        )
    finally:
        if close and online is not None:
            online.close()
        store.close()
