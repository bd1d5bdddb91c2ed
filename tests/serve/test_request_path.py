"""The request path's cheaper parts behave as the plain ones did.

Columnar prediction logging (one :class:`PredictionBatch` per micro-batch), per-request
metrics added to Prometheus in bulk, one timer for every request's timeout, the lean path's
shared preprocessing, token-tuple word n-grams and cache counters: each checked for what it
must keep (rows, counts, exact probabilities), never for how fast it is.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.core.predlog import (
    ParquetSink,
    PredictionBatch,
    PredictionLogger,
    PredictionRecord,
    PredictionRows,
    read_predictions,
)
from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import create_app, start_in_thread
from loopline.serve.inference import LinearTextPredictor, build_predictor
from loopline.serve.metrics import DeferredMetrics
from loopline.train.text import TextClassifierParams

with warnings.catch_warnings():
    # Starlette warns that its test client will move to the `httpx2` package; httpx works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
T0_US = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
GOOD = ["love", "great", "happy", "wonderful", "nice"]
BAD = ["hate", "awful", "sad", "terrible", "bad"]


def texts_and_labels(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        words, label = (GOOD, "positive") if i % 2 else (BAD, "negative")
        negated = "not " if i % 7 == 0 else ""
        picked = " ".join(rng.choice(words, size=3))
        rows.append((f"I {negated}{picked} this, thing #{i} @user http://x.co/{i}", label))
    return pd.DataFrame(rows, columns=["text", "label"])


def loaded_model(model: Any, version: str = "1") -> LoadedModel:
    info = ModelVersionInfo("sentiment", version, None, ["champion"], {}, None, None, {})
    return LoadedModel(info, model, ["text"], [str(c) for c in model.classes_])


class Constant:
    """Answers 'pos' with probability 0.75; hangs while ``gate`` is cleared."""

    classes_ = np.array(["neg", "pos"])

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.gate.wait(10)
        return np.tile([0.25, 0.75], (len(frame), 1))


def batch(first: int, rows: int, model: str = "sentiment") -> PredictionBatch:
    return PredictionBatch(
        model,
        "3",
        "champion",
        [f"b-{first + i}" for i in range(rows)],
        [T0_US + i for i in range(rows)],
        {"text": [f"text {first + i}" for i in range(rows)]},
        ["pos"] * rows,
        {"neg": [0.25] * rows, "pos": [0.75] * rows},
        [1.5] * rows,
    )


def record(i: int, **extra_inputs: Any) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r-{i}",
        ts=T0 + timedelta(seconds=i),
        model_name="sentiment",
        model_version="3",
        route="champion",
        inputs={"text": f"record {i}", **extra_inputs},
        label="neg",
        probabilities={"neg": 0.6, "pos": 0.4},
        latency_ms=2.0,
    )


class RecordingSink:
    def __init__(self) -> None:
        self.writes: list[list[PredictionRecord]] = []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.writes.append(list(records))  # a generic sink sees records

    def close(self) -> None:
        pass


# --- the prediction log, column by column ---------------------------------------------------


def test_a_batch_reads_as_records() -> None:
    rows = batch(0, 3)
    assert len(rows) == 3
    first = rows[0]
    assert first.request_id == "b-0" and first.ts == T0 and first.inputs == {"text": "text 0"}
    assert first.probabilities == {"neg": 0.25, "pos": 0.75} and first.label == "pos"
    assert [r.request_id for r in rows[1:]] == ["b-1", "b-2"]
    assert [r.request_id for r in PredictionRows([record(1), rows, record(2)])] == [
        "r-1",
        "b-0",
        "b-1",
        "b-2",
        "r-2",
    ]
    assert PredictionRows([record(1), rows])[-1].request_id == "b-2"


def test_log_batch_takes_all_rows_or_none_and_writes_split_batches_in_order() -> None:
    sink = RecordingSink()
    logger = PredictionLogger("recording", max_queue=10, batch_size=4, sink=sink)
    assert logger.log_batch(batch(0, 6))
    assert not logger.log_batch(batch(100, 5))  # 6 + 5 > max_queue: none of them
    assert logger.dropped == 5
    assert logger.log(record(1))
    assert logger.log_batch(batch(200, 3))
    logger.start()
    logger.close()

    assert all(len(write) <= 4 for write in sink.writes)
    written = [r.request_id for write in sink.writes for r in write]
    assert written == [f"b-{i}" for i in range(6)] + ["r-1"] + [f"b-{200 + i}" for i in range(3)]
    assert logger.written == 10 and logger.pending == 0


def test_records_and_batches_round_trip_through_one_parquet_segment(tmp_path: Path) -> None:
    rows = PredictionRows([record(1, n=5), batch(0, 2), record(2), batch(10, 1, "fraud")])
    ParquetSink(tmp_path).write(rows)

    sentiment = read_predictions(str(tmp_path), "sentiment")
    assert sentiment["request_id"].tolist() == ["b-0", "b-1", "r-1", "r-2"]  # by ts
    by_id = sentiment.set_index("request_id")
    assert by_id.loc["r-1", "input.n"] == 5 and pd.isna(by_id.loc["b-0", "input.n"])
    assert by_id.loc["b-1", "input.text"] == "text 1"
    assert by_id.loc["b-1", "ts"] == pd.Timestamp(T0) + pd.Timedelta(microseconds=1)
    assert by_id.loc["b-0", "proba.pos"] == 0.75 and by_id.loc["r-2", "proba.pos"] == 0.4
    assert read_predictions(str(tmp_path), "fraud")["request_id"].tolist() == ["b-10"]


def test_the_server_logs_single_and_list_requests_row_by_row(tmp_path: Path) -> None:
    logger = PredictionLogger(str(tmp_path / "log"))
    before = datetime.now(UTC)
    with TestClient(create_app(loaded_model(Constant()), prediction_log=logger)) as client:
        client.post("/predict", json={"text": "one"}, headers={"X-Request-ID": "single"})
        client.post("/predict", json=[{"text": "a"}, {"text": "b"}], headers={"X-Request-ID": "L"})
    after = datetime.now(UTC)  # leaving the client shut the app down: the log is flushed

    logged = read_predictions(str(tmp_path / "log")).set_index("request_id")
    assert sorted(logged.index) == ["L.0", "L.1", "single"]
    assert logged.loc["L.1", "input.text"] == "b" and logged.loc["single", "input.text"] == "one"
    assert set(logged["prediction"]) == {"pos"} and set(logged["proba.pos"]) == {0.75}
    assert (logged["latency_ms"] > 0).all()
    assert (logged["ts"] >= before - timedelta(milliseconds=1)).all()
    assert (logged["ts"] <= after).all()


# --- metrics --------------------------------------------------------------------------------


def test_deferred_metrics_equal_direct_observations_once_the_loop_turns() -> None:
    values = [0.0002, 0.0007, 0.003, 0.003, 0.02, 0.7, 9.0, 0.0]
    buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def metrics() -> tuple[CollectorRegistry, Any, Any]:
        registry = CollectorRegistry()
        counter = Counter("requests", "r", ["status"], registry=registry).labels("200")
        histogram = Histogram("seconds", "s", ["route"], buckets=buckets, registry=registry)
        return registry, counter, histogram.labels("/predict")

    direct, counter, histogram = metrics()
    for value in values:
        counter.inc()
        histogram.observe(value)
    deferred_registry, deferred_counter, deferred_histogram = metrics()
    deferred = DeferredMetrics()

    async def scenario() -> tuple[bytes, bytes]:
        for value in values:
            deferred.inc(deferred_counter)
            deferred.observe(deferred_histogram, value)
        pending = generate_latest(deferred_registry)
        await asyncio.sleep(0)  # the flush runs once the loop turns
        return pending, generate_latest(deferred_registry)

    pending, flushed = asyncio.run(scenario())

    assert b'requests_total{status="200"} 0.0' in pending
    strip = [line for line in flushed.split(b"\n") if b"_created" not in line]
    expected = [line for line in generate_latest(direct).split(b"\n") if b"_created" not in line]
    assert strip == expected


def test_lean_cache_counters_are_served_as_metrics() -> None:
    data = texts_and_labels()
    model = TextClassifierParams(min_df=1, max_iter=200).build()
    model.fit(data[["text"]], data["label"])
    with TestClient(create_app(loaded_model(model))) as client:
        predictor = client.app.state.service.router.champion.current.predictor  # type: ignore[attr-defined]
        assert isinstance(predictor, LinearTextPredictor)
        start = predictor.cache_stats()
        client.post("/predict", json={"text": "brand newword here"})
        first = predictor.cache_stats()
        client.post("/predict", json={"text": "brand newword here"})
        second = predictor.cache_stats()
        metrics = client.get("/metrics").text

    for cache in ("char_wb", "lexicon"):
        assert first[cache][0] - start[cache][0] == 3  # three words / tokens looked up
        assert first[cache][1] - start[cache][1] >= 1  # "newword" was new
        assert second[cache][0] - first[cache][0] == 3
        assert second[cache][1] == first[cache][1]  # all cached the second time
        lookups, misses = second[cache]
        labels = f'cache="{cache}",route="champion",version="1"'
        assert f"loopline_lean_cache_lookups_total{{{labels}}} {float(lookups)}" in metrics
        assert f"loopline_lean_cache_misses_total{{{labels}}} {float(misses)}" in metrics


# --- timeouts -------------------------------------------------------------------------------


def test_every_queued_request_times_out_and_later_ones_are_answered() -> None:
    model = Constant()
    with start_in_thread(loaded_model(model), timeout_ms=200, max_wait_us=0) as server:
        model.gate.clear()  # hung: the first request is in the model, the rest wait
        answers: list[int] = []

        def send(i: int) -> None:
            response = httpx.post(f"{server.url}/predict", json={"text": f"t{i}"}, timeout=10)
            answers.append(response.status_code)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        model.gate.set()
        later = httpx.post(f"{server.url}/predict", json={"text": "later"}, timeout=10)
        metrics = httpx.get(f"{server.url}/metrics").text

    assert answers == [504] * 5
    assert later.status_code == 200
    assert 'loopline_rejected_requests_total{reason="timeout"} 5.0' in metrics


# --- the lean path's shortcuts stay exact ---------------------------------------------------


def test_the_default_models_word_features_reuse_the_char_features_normalisation() -> None:
    data = texts_and_labels()
    model = TextClassifierParams(min_df=1, max_iter=200).build()
    model.fit(data[["text"]], data["label"])
    predictor = build_predictor(loaded_model(model))
    assert isinstance(predictor, LinearTextPredictor)
    word, char = predictor._groups[0].blocks  # type: ignore[union-attr]
    assert word.derived_from == char.prepare_key


@pytest.mark.parametrize(
    "features",
    [
        # negation marking without tweet normalisation: lowercase_negated after str.lower
        TextClassifierParams(normalize=False, lexicon=False, min_df=1),
        # a token pattern whose tokens may hold anything: n-grams joined, not tupled
        [("w", TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, 3)), "text")],
        # weighted alike but not adjacent: two groups around a differently weighted block
        [
            ("a", TfidfVectorizer(sublinear_tf=True), "text"),
            ("b", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)), "text"),
            ("c", TfidfVectorizer(sublinear_tf=True, ngram_range=(2, 2)), "text"),
        ],
    ],
    ids=["lowercase-negated", "spaceful-tokens", "groups"],
)
def test_lean_shortcuts_give_the_pipelines_probabilities(features: Any) -> None:
    data = texts_and_labels()
    if isinstance(features, TextClassifierParams):
        model = features.build()
    else:
        model = Pipeline([("f", ColumnTransformer(features)), ("c", LogisticRegression())])
    model.fit(data[["text"]], data["label"])
    texts = [*data["text"], "NOT good, not at all!", "", "  spaced   out  "]
    predictor = build_predictor(loaded_model(model))

    assert predictor.kind == "linear-text"
    expected = model.predict_proba(pd.DataFrame({"text": texts}))
    for size in (1, 7, len(texts)):
        got = np.vstack(
            [predictor.predict_proba([texts[i : i + size]]) for i in range(0, len(texts), size)]
        )
        np.testing.assert_array_equal(got, expected)
