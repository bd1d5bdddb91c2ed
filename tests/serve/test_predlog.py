"""The prediction log: both sinks, never blocking, flushing on close, surviving failures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopline.config import load_settings
from loopline.core import predlog
from loopline.core.predlog import (
    BASE_COLUMNS,
    PredictionLogger,
    PredictionRecord,
    open_prediction_logger,
    read_predictions,
)
from loopline.errors import ConfigError, DataError, LooplineError

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def record(
    i: int,
    *,
    model: str = "sentiment",
    version: str = "3",
    route: str = "champion",
    ts: datetime | None = None,
    inputs: dict[str, Any] | None = None,
) -> PredictionRecord:
    positive = (i % 10) / 10
    return PredictionRecord(
        request_id=f"req-{i}",
        ts=ts or T0 + timedelta(seconds=i),
        model_name=model,
        model_version=version,
        route=route,
        inputs=inputs if inputs is not None else {"text": f"text number {i}", "n": i},
        label="positive" if positive >= 0.5 else "negative",
        probabilities={"negative": 1 - positive, "positive": positive},
        latency_ms=0.5 + i,
    )


def write_all(url: str, records: Sequence[PredictionRecord], **options: Any) -> PredictionLogger:
    logger = PredictionLogger(url, **options)
    logger.start()
    assert all(logger.log(r) for r in records)
    logger.close()
    return logger


class GatedSink:
    """Blocks in write() until released: the writer is stuck, as on a slow database."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.written: list[PredictionRecord] = []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.entered.set()
        self.release.wait(10)
        self.written.extend(records)

    def close(self) -> None:
        pass


class FlakySink:
    """Fails the first ``failures`` writes (or all of them when None)."""

    def __init__(self, failures: int | None) -> None:
        self.failures = failures
        self.calls = 0
        self.written: list[PredictionRecord] = []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise OSError("disk on fire")
        self.written.extend(records)

    def close(self) -> None:
        pass


def check_round_trip(frame: pd.DataFrame, records: Sequence[PredictionRecord]) -> None:
    assert list(frame.columns) == [
        *BASE_COLUMNS,
        "input.text",
        "input.n",
        "prediction",
        "proba.negative",
        "proba.positive",
    ]
    assert len(frame) == len(records)
    assert frame["ts"].is_monotonic_increasing
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    by_id = frame.set_index(["model_name", "request_id", "route"])
    for r in records:
        row = by_id.loc[(r.model_name, r.request_id, r.route)]
        assert row["ts"] == r.ts
        assert row["model_version"] == r.model_version
        assert row["input.text"] == r.inputs["text"]
        assert row["input.n"] == r.inputs["n"]
        assert row["prediction"] == r.label
        assert row["proba.positive"] == pytest.approx(r.probabilities["positive"])
        assert row["latency_ms"] == pytest.approx(r.latency_ms)


def mixed_records() -> list[PredictionRecord]:
    """Champion and shadow of one model, another model, logged out of time order."""
    records = [record(i) for i in range(30, 0, -1)]
    records += [record(i, version="4", route="shadow") for i in range(1, 11)]
    records += [record(i, model="fraud", version="1") for i in range(5)]
    return records


def test_parquet_round_trip(tmp_path: Path) -> None:
    records = mixed_records()
    logger = write_all(str(tmp_path), records, batch_size=7)
    assert logger.stats() == {
        "accepted": 45,
        "written": 45,
        "pending": 0,
        "dropped": 0,
        "failures": 0,
        "lost": 0,
    }
    check_round_trip(read_predictions(str(tmp_path)), records)
    sentiment = read_predictions(tmp_path.as_uri(), model_name="sentiment")
    check_round_trip(sentiment, [r for r in records if r.model_name == "sentiment"])
    # One folder per model; each holds only finished segments named seg-<ts>-<pid>-<seq>.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fraud", "sentiment"]
    names = [p.name for p in (tmp_path / "sentiment").iterdir()]
    assert names and all(n.startswith("seg-") and n.endswith(".parquet") for n in names)
    assert all(len(n.split("-")) == 4 for n in names)


@pytest.mark.postgres
def test_postgres_round_trip_matches_parquet(postgres_url: str, tmp_path: Path) -> None:
    records = mixed_records()
    odd = [
        record(100, inputs={"text": "nul\x00 and surrogate \ud800", "n": 2**70}),
        record(101, inputs={"text": {"nested": [1, 2]}, "n": None}),
    ]
    write_all(postgres_url, records + odd, batch_size=7)
    write_all(str(tmp_path), records + odd, batch_size=7)
    from_sql = read_predictions(postgres_url)
    from_parquet = read_predictions(str(tmp_path))
    normal = ~from_sql["request_id"].isin(["req-100", "req-101"])
    check_round_trip(from_sql[normal], records)
    # Odd values are stored (cleaned or as JSON text) instead of failing the batch forever.
    assert len(from_sql) == len(from_parquet) == len(records) + 2
    assert list(from_sql.columns) == list(from_parquet.columns)
    same = ["request_id", "ts", "model_name", "model_version", "route", "prediction"]
    pd.testing.assert_frame_equal(
        from_sql[same].sort_values(["ts", "model_name", "request_id", "route"], ignore_index=True),
        from_parquet[same].sort_values(
            ["ts", "model_name", "request_id", "route"], ignore_index=True
        ),
    )
    fraud = read_predictions(postgres_url, model_name="fraud", since=T0 + timedelta(seconds=2))
    assert fraud["request_id"].tolist() == ["req-2", "req-3", "req-4"]


def test_close_flushes_everything_logged_from_many_threads(tmp_path: Path) -> None:
    logger = PredictionLogger(str(tmp_path), batch_size=500, flush_interval_s=0.05)
    logger.start()
    accepted: list[int] = []

    def client(k: int) -> None:
        accepted.append(sum(logger.log(record(k * 10_000 + i)) for i in range(3_000)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.close()
    assert sum(accepted) == 12_000 and logger.dropped == 0
    assert logger.written == 12_000 and logger.pending == 0
    frame = read_predictions(str(tmp_path))
    assert frame["request_id"].nunique() == len(frame) == 12_000
    assert not [p for p in (tmp_path / "sentiment").iterdir() if not p.name.startswith("seg-")]


def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    sink = GatedSink()
    logger = PredictionLogger("gated", max_queue=100, batch_size=10, sink=sink)
    logger.start()
    try:
        results = [logger.log(record(i)) for i in range(10)]
        logger.flush(timeout_s=0)  # hand the first batch to the (stuck) writer now
        assert sink.entered.wait(5)
        results += [logger.log(record(i)) for i in range(10, 1_000)]
        # All 990 calls returned while the writer was still stuck in the sink: none of
        # them waited on it.
        stuck = not sink.release.is_set() and sink.written == [] and logger.written == 0
    finally:
        sink.release.set()
        logger.close()
    assert stuck
    # The batch in the writer's hands still counts: memory holds at most max_queue records.
    assert sum(results) == 100 and logger.dropped == 900
    assert len(sink.written) == logger.written == 100


def test_failing_sink_is_retried_without_blocking_log(caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink(failures=3)
    logger = PredictionLogger("flaky", batch_size=5, flush_interval_s=0.01, sink=sink)
    logger.retry_initial_s = 0.01
    logger.start()
    with caplog.at_level(logging.WARNING, logger="loopline.core.predlog"):
        assert all(logger.log(record(i)) for i in range(50))
        assert logger.flush(timeout_s=10)
        logger.close()
    assert logger.failures == 3 and logger.written == 50
    assert [r.request_id for r in sink.written] == [f"req-{i}" for i in range(50)]
    assert "disk on fire" in caplog.text and logger.last_error == "OSError: disk on fire"


def test_close_gives_up_on_a_dead_sink_and_counts_the_loss() -> None:
    logger = PredictionLogger("dead", batch_size=5, sink=FlakySink(failures=None))
    logger.retry_initial_s = 0.01
    logger.start()
    assert all(logger.log(record(i)) for i in range(20))
    logger.close(timeout_s=0.3)  # returns although the sink never recovers
    assert logger.lost == 20 and logger.written == 0 and logger.failures >= 1
    assert logger.log(record(99)) is False and logger.dropped == 1
    logger.close()  # idempotent
    with pytest.raises(LooplineError, match="closed"):
        logger.start()


def test_records_are_written_within_the_flush_interval(tmp_path: Path) -> None:
    logger = PredictionLogger(str(tmp_path), batch_size=1_000, flush_interval_s=0.05)
    logger.start()
    try:
        for i in range(3):
            logger.log(record(i))
        deadline = time.monotonic() + 10
        while logger.written < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Written by the timer, not by close(): this is the crash window.
        assert logger.written == 3
        assert len(read_predictions(str(tmp_path))) == 3
    finally:
        logger.close()


def test_read_filters_by_model_and_time(tmp_path: Path) -> None:
    url = str(tmp_path)
    hour = timedelta(hours=1)
    # Three flushes, one per hour of traffic, so since= can also skip whole segments.
    for h in range(3):
        write_all(
            url, [record(h * 100 + i, ts=T0 + h * hour + timedelta(seconds=i)) for i in range(4)]
        )
    write_all(url, [record(500, model="fraud", ts=T0 + hour)])
    window = read_predictions(url, "sentiment", since=T0 + hour, until=T0 + 2 * hour)
    assert window["request_id"].tolist() == ["req-100", "req-101", "req-102", "req-103"]
    # Naive datetimes are UTC.
    naive = read_predictions(url, since=(T0 + 2 * hour).replace(tzinfo=None))
    assert naive["request_id"].tolist() == ["req-200", "req-201", "req-202", "req-203"]
    assert read_predictions(url, "fraud")["request_id"].tolist() == ["req-500"]
    assert read_predictions(url, "unknown-model").empty


def test_a_failed_write_leaves_no_segment_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = predlog.ParquetSink(tmp_path)
    real = predlog.records_to_table
    calls = {"n": 0}

    def fail_on_second_model(records: Sequence[PredictionRecord]) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("no space left on device")
        return real(records)

    monkeypatch.setattr(predlog, "records_to_table", fail_on_second_model)
    with pytest.raises(OSError):
        sink.write([record(1), record(2, model="fraud")])
    # The first model's segment was staged but never published, and its temp file is gone.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_empty_and_unreadable_locations(tmp_path: Path) -> None:
    empty = read_predictions(str(tmp_path / "nothing-yet"))
    assert empty.empty and list(empty.columns) == [*BASE_COLUMNS, "prediction"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        read_predictions(str(a_file))
    write_all(str(tmp_path / "log"), [record(1)])
    (tmp_path / "log" / "sentiment" / "seg-20260101T000000.000000-1-1.parquet").write_bytes(b"x")
    with pytest.raises(DataError, match="cannot read prediction log segment"):
        read_predictions(str(tmp_path / "log"))
    with pytest.raises(DataError, match="unsupported"):
        read_predictions("s3://bucket/predictions")
    with pytest.raises(DataError, match="cannot read predictions"):
        read_predictions("postgresql://nobody@127.0.0.1:1/none")


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        PredictionLogger(str(tmp_path), batch_size=0)
    with pytest.raises(ConfigError, match="unsupported"):
        PredictionLogger("s3://bucket/predictions")
    (tmp_path / "occupied").write_text("x")
    with pytest.raises(ConfigError, match="cannot create"):
        PredictionLogger(str(tmp_path / "occupied" / "log"))


def test_open_prediction_logger_uses_the_project_settings(project: Path) -> None:
    settings = load_settings(project)
    with open_prediction_logger(settings) as logger:
        logger.log(record(1))
    assert read_predictions(str(project / ".loopline" / "predictions"))["request_id"].tolist() == [
        "req-1"
    ]
