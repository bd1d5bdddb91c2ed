"""Feedback labels: validation, latest-wins, and the join to the prediction log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from loopline.core.feedback import join_feedback, read_feedback, record_feedback
from loopline.core.metadata import MetadataStore
from loopline.errors import DataError, LooplineError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    metadata = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    yield metadata
    metadata.close()


def predictions(*rows: tuple[str, str]) -> pd.DataFrame:
    """A prediction-log-shaped frame of (request_id, route) rows."""
    return pd.DataFrame(
        {
            "request_id": [r for r, _ in rows],
            "route": [route for _, route in rows],
            "prediction": ["positive"] * len(rows),
        },
        index=[10 * i for i in range(len(rows))],
    )


def test_latest_label_per_request_wins(store: MetadataStore) -> None:
    first = record_feedback(store, "req-1", "negative", model_name="sentiment")
    second = record_feedback(store, "req-2", "positive", source="review")
    third = record_feedback(store, "req-1", "positive", model_name="sentiment")
    assert first < second < third
    frame = read_feedback(store)
    assert list(frame.columns) == ["request_id", "label", "source", "model_name", "created_at"]
    assert dict(zip(frame["request_id"], frame["label"], strict=True)) == {
        "req-1": "positive",
        "req-2": "positive",
    }
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert frame["created_at"].is_monotonic_increasing


def test_read_filters_by_model_and_time(store: MetadataStore) -> None:
    record_feedback(store, "a", "positive", model_name="sentiment")
    record_feedback(store, "b", "negative", model_name="fraud")
    record_feedback(store, "c", "negative")  # no model name: request ids identify it anyway
    time.sleep(0.01)
    cut = datetime.now(UTC)
    record_feedback(store, "d", "positive", model_name="sentiment")
    assert sorted(read_feedback(store, "sentiment")["request_id"]) == ["a", "c", "d"]
    assert read_feedback(store, "sentiment", since=cut)["request_id"].tolist() == ["d"]
    # A naive time is UTC; an aware one in another zone is converted.
    naive = cut.replace(tzinfo=None)
    assert read_feedback(store, since=naive)["request_id"].tolist() == ["d"]
    elsewhere = cut.astimezone(timezone(timedelta(hours=5)))
    assert read_feedback(store, since=elsewhere)["request_id"].tolist() == ["d"]
    assert read_feedback(store, since=cut + timedelta(days=1)).empty


def test_empty_store_gives_typed_empty_frame(store: MetadataStore) -> None:
    frame = read_feedback(store)
    assert frame.empty
    assert list(frame.columns) == ["request_id", "label", "source", "model_name", "created_at"]


@pytest.mark.parametrize(
    ("request_id", "label", "match"),
    [
        ("", "positive", "non-empty request_id"),
        ("   ", "positive", "non-empty request_id"),
        (None, "positive", "non-empty request_id"),
        ("req-1", "", "non-empty label"),
        ("req-1", None, "non-empty label"),
        ("req-1", True, "non-empty label"),
        ("x" * 65, "positive", "at most 64"),
    ],
)
def test_bad_feedback_is_refused_with_a_hint(
    store: MetadataStore, request_id: object, label: object, match: str
) -> None:
    with pytest.raises(LooplineError, match=match) as info:
        record_feedback(store, request_id, label)  # type: ignore[arg-type]
    assert info.value.hint
    assert read_feedback(store).empty  # nothing recorded


def test_numeric_labels_are_stored_as_text(store: MetadataStore) -> None:
    record_feedback(store, " req-1 ", 1)  # type: ignore[arg-type]
    assert read_feedback(store)[["request_id", "label"]].values.tolist() == [["req-1", "1"]]


def test_join_adds_labels_and_counts_unmatched_feedback(store: MetadataStore) -> None:
    record_feedback(store, "req-1", "negative")
    record_feedback(store, "req-1", "positive")  # a correction: the latest wins
    record_feedback(store, "req-3", "negative")
    record_feedback(store, "never-logged", "positive")  # stored, then reported unmatched
    preds = predictions(("req-1", "champion"), ("req-1", "shadow"), ("req-2", "champion"))
    preds.loc[40] = ["req-3", "champion", "negative"]
    joined, unmatched = join_feedback(preds, read_feedback(store))
    assert unmatched == 1
    assert joined.index.tolist() == preds.index.tolist()  # a left join: rows and order kept
    assert joined["label_true"].tolist()[:2] == ["positive", "positive"]
    assert pd.isna(joined.loc[20, "label_true"])
    assert joined.loc[40, "label_true"] == "negative"
    assert "label_true" not in preds.columns


def test_join_with_raw_duplicates_and_no_feedback() -> None:
    raw = pd.DataFrame({"request_id": ["a", "a"], "label": ["x", "y"]})
    joined, unmatched = join_feedback(predictions(("a", "champion")), raw)
    assert joined["label_true"].tolist() == ["y"] and unmatched == 0
    empty = pd.DataFrame({"request_id": [], "label": []})
    joined, unmatched = join_feedback(predictions(("a", "champion")), empty)
    assert joined["label_true"].isna().all() and unmatched == 0


def test_join_names_missing_columns() -> None:
    with pytest.raises(DataError, match="missing \\['label'\\]"):
        join_feedback(predictions(("a", "champion")), pd.DataFrame({"request_id": ["a"]}))
    with pytest.raises(DataError, match="predictions frame"):
        join_feedback(pd.DataFrame({"id": ["a"]}), pd.DataFrame({"request_id": [], "label": []}))


@pytest.mark.postgres
def test_feedback_on_postgres(postgres_url: str) -> None:
    store = MetadataStore(postgres_url)
    try:
        record_feedback(store, "req-1", "negative", model_name="sentiment")
        record_feedback(store, "req-1", "positive", model_name="sentiment")
        frame = read_feedback(store, "sentiment", since=datetime.now(UTC) - timedelta(hours=1))
        assert frame[["request_id", "label"]].values.tolist() == [["req-1", "positive"]]
        assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    finally:
        store.close()
