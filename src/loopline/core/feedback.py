"""Ground-truth labels that arrive after a prediction, joined to it by request id.

``POST /feedback {request_id, label}`` (and the review queue) call :func:`record_feedback`;
monitoring reads them back with :func:`read_feedback` and pairs them with the prediction log
using :func:`join_feedback`. Feedback for a request id that is not (yet) in the log is kept:
the log is written asynchronously, so a label can arrive before its prediction is flushed.
It sits in ``core`` beside the prediction log, for the same reason: ``serve`` writes it and
``monitor`` reads it without importing ``serve``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from loopline.core import schema
from loopline.errors import DataError, LooplineError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.metadata import MetadataStore

__all__ = [
    "FEEDBACK_COLUMNS",
    "join_feedback",
    "read_feedback",
    "record_feedback",
    "record_feedback_many",
]

FEEDBACK_COLUMNS = ("request_id", "label", "source", "model_name", "created_at")
LABEL_TRUE = "label_true"

# The column sizes of the ``feedback`` table: checked here so SQLite and PostgreSQL agree.
_MAX_LENGTH = {"request_id": 64, "label": 200, "source": 50, "model_name": 200}


def record_feedback(
    store: MetadataStore,
    request_id: str,
    label: str,
    *,
    model_name: str | None = None,
    source: str = "api",
) -> int:
    """Store the true ``label`` of the prediction ``request_id``; return the feedback id.

    A later label for the same request id supersedes the earlier one (both are kept).
    Raises :class:`~loopline.errors.LooplineError` for an empty or over-long value.
    """
    values = _feedback_row(request_id, label, source, model_name, datetime.now(UTC))
    with store._tx() as conn:
        result = conn.execute(schema.feedback.insert().values(**values))
        key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def record_feedback_many(
    store: MetadataStore, labels: Iterable[tuple[str, str, str | None]], *, source: str
) -> int:
    """Store several ``(request_id, label, model_name)`` in one database transaction (all
    or none), checked as :func:`record_feedback` checks one; returns how many."""
    now = datetime.now(UTC)
    rows = [_feedback_row(r, label, source, model, now) for r, label, model in labels]
    if rows:
        with store._tx() as conn:
            conn.execute(schema.feedback.insert(), rows)
    return len(rows)


def _feedback_row(
    request_id: Any, label: Any, source: Any, model_name: Any, created_at: datetime
) -> dict[str, Any]:
    return {
        "request_id": _text("request_id", request_id, required=True),
        "label": _text("label", label, required=True),
        "source": _text("source", source, required=True),
        "model_name": _text("model_name", model_name, required=False),
        "created_at": created_at,
    }


def _text(field: str, value: Any, *, required: bool) -> str | None:
    """``value`` as a stripped string; numbers (not booleans) are accepted as their text."""
    if value is None and not required:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        found = "an empty string" if isinstance(value, str) else repr(value)
        raise LooplineError(
            f"feedback needs a non-empty {field}; found {found}",
            hint=_HINTS[field],
        )
    value = value.strip()
    limit = _MAX_LENGTH[field]
    if len(value) > limit:
        raise LooplineError(
            f"feedback {field} is {len(value)} characters long; at most {limit} fit",
            hint=_HINTS[field],
        )
    return value


_HINTS = {
    "request_id": "send the request_id the prediction response carried",
    "label": "send the true class, one of the model's classes (e.g. 'positive')",
    "source": "name where the label came from, e.g. 'api' or 'review'",
    "model_name": "leave model_name out or pass the served model's name",
}


def read_feedback(
    store: MetadataStore, model_name: str | None = None, since: datetime | None = None
) -> pd.DataFrame:
    """The latest label per request id, as columns :data:`FEEDBACK_COLUMNS`.

    ``model_name`` keeps feedback for that model *and* feedback sent without a model name
    (request ids identify the prediction either way); ``since`` keeps labels recorded at or
    after it (a naive datetime is UTC). Rows are sorted by ``created_at``.
    """
    fb = schema.feedback
    query = sa.select(
        fb.c.request_id, fb.c.label, fb.c.source, fb.c.model_name, fb.c.created_at
    ).order_by(fb.c.created_at, fb.c.id)
    if model_name is not None:
        query = query.where(sa.or_(fb.c.model_name == model_name, fb.c.model_name.is_(None)))
    if since is not None:
        query = query.where(fb.c.created_at >= _aware(since))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return _latest_per_request(_feedback_frame(rows))


def _feedback_frame(rows: Sequence[Any]) -> pd.DataFrame:
    import pandas as pd

    if rows:
        frame = pd.DataFrame([tuple(row) for row in rows], columns=list(FEEDBACK_COLUMNS))
    else:
        frame = pd.DataFrame({name: pd.Series(dtype="str") for name in FEEDBACK_COLUMNS})
    # SQLite hands back naive datetimes even for timezone-aware columns: they are UTC.
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    return frame


def _latest_per_request(frame: pd.DataFrame) -> pd.DataFrame:
    # Rows arrive ordered by (created_at, id): the last one per request id is the newest.
    return frame.drop_duplicates("request_id", keep="last").reset_index(drop=True)


def feedback_watermark(store: MetadataStore, model_name: str | None = None) -> str:
    """A cheap fingerprint of the stored feedback: changes whenever a label arrives.

    Pipelines put it in the cache key of the step that reads production labels.
    """
    fb = schema.feedback
    query = sa.select(sa.func.count(fb.c.id), sa.func.max(fb.c.id))
    if model_name is not None:
        query = query.where(sa.or_(fb.c.model_name == model_name, fb.c.model_name.is_(None)))
    with store.engine.connect() as conn:
        count, last = conn.execute(query).one()
    return f"feedback:{model_name}:{count}:{last}"


def join_feedback(predictions: pd.DataFrame, feedback: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Add ``label_true`` to ``predictions`` by request id; count feedback with no prediction.

    Every prediction row is kept (a left join; NaN where no label came back), in its order
    and with its index; shadow and champion rows of one request get the same label. When
    ``feedback`` holds several labels for a request id, the last row wins (as from
    :func:`read_feedback`). Returns ``(joined, unmatched_feedback_count)``, the count being
    the request ids with feedback that no prediction in ``predictions`` has.
    """
    _require_columns(predictions, ["request_id"], "predictions")
    _require_columns(feedback, ["request_id", "label"], "feedback")
    latest = feedback.drop_duplicates("request_id", keep="last").set_index("request_id")["label"]
    joined = predictions.assign(**{LABEL_TRUE: predictions["request_id"].map(latest)})
    unmatched = int((~latest.index.isin(predictions["request_id"])).sum())
    return joined, unmatched


def _require_columns(frame: pd.DataFrame, needed: list[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"the {what} frame needs columns {needed}; missing {missing}, "
            f"found {list(frame.columns)}",
            hint=f"pass the frame returned by read_{what}()",
        )


def _aware(value: datetime) -> datetime:
    # In UTC, not just aware: SQLite compares the stored wall-clock text.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
