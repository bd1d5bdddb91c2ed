"""Micro-batching and the lean inference path: fewer model calls, each caller's own rows."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline

from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import start_in_thread
from loopline.serve.batching import MicroBatcher, QueueFull
from loopline.serve.inference import (
    QUICK_TEXT_CHARS,
    FramePredictor,
    LinearTextPredictor,
    TextPipelinePredictor,
    build_predictor,
)
from loopline.train.text import TextClassifierParams, build_text_classifier

GOOD = ["love", "great", "happy", "wonderful", "nice"]
BAD = ["hate", "awful", "sad", "terrible", "bad"]


def texts_and_labels(n: int = 300, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = [GOOD, BAD, ["meh", "okay", "fine"]][:classes]
    labels = ["positive", "negative", "neutral"][:classes]
    rows = []
    for i in range(n):
        k = i % classes
        picked = " ".join(rng.choice(words[k], size=3))
        rows.append((f"I {picked} this thing #{i} @user http://x.co/{i}", labels[k]))
    return pd.DataFrame(rows, columns=["text", "label"])


def loaded_model(model: Any, version: str = "1") -> LoadedModel:
    info = ModelVersionInfo("sentiment", version, None, ["champion"], {}, None, None, {})
    return LoadedModel(info, model, ["text"], [str(c) for c in model.classes_])


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return texts_and_labels()


# --- lean inference ------------------------------------------------------------------------


def test_lean_path_gives_the_dataframe_paths_probabilities_for_the_reference_model(
    data: pd.DataFrame,
) -> None:
    # The real sentiment model: word + char TF-IDF with a custom preprocessor, float32.
    params = TextClassifierParams(min_df=1, max_iter=200)
    model = build_text_classifier(params).fit(data[["text"]], data["label"])
    loaded = loaded_model(model)
    texts = [*data["text"].head(50), "", "ÜNÏCÖDÉ 😀 soooo gooood", "unseen words only"]

    predictor = build_predictor(loaded)
    lean = predictor.predict_proba([texts])
    frame = FramePredictor(loaded).predict_proba([texts])

    assert predictor.kind == "linear-text"
    np.testing.assert_array_equal(lean, frame)  # bit for bit, not just close
    np.testing.assert_array_equal(lean, model.predict_proba(pd.DataFrame({"text": texts})))
    # Small batches are quick enough for the event loop; big ones go to the worker thread.
    assert predictor.is_quick([texts])
    assert not predictor.is_quick([["x" * 100] * (QUICK_TEXT_CHARS // 100 + 1)])
    for featureless in ([""], ["", "   "]):  # batches without a single known feature
        np.testing.assert_array_equal(
            predictor.predict_proba([featureless]),
            FramePredictor(loaded).predict_proba([featureless]),
        )


@pytest.mark.parametrize(
    ("features", "classifier", "classes", "kind"),
    [
        (
            [("w", CountVectorizer(binary=True), "text")],
            LogisticRegression(max_iter=300),
            3,
            "linear-text",
        ),
        (
            [("w", TfidfVectorizer(norm="l1", sublinear_tf=True), "text")],
            LogisticRegression(max_iter=300),
            2,
            "linear-text",
        ),
        (
            [("w", TfidfVectorizer(), "text")],
            SGDClassifier(loss="log_loss", random_state=0),
            2,
            "text-pipeline",
        ),
        (
            # Each vectorizer keeps its own weighting: counts, binary l2, sublinear l1, none.
            [
                ("count", CountVectorizer(), "text"),
                ("binary", TfidfVectorizer(binary=True, use_idf=False), "text"),
                ("l1", TfidfVectorizer(analyzer="char_wb", sublinear_tf=True, norm="l1"), "text"),
                ("raw", TfidfVectorizer(analyzer="char", ngram_range=(1, 2), norm=None), "text"),
            ],
            LogisticRegression(max_iter=500),
            3,
            "linear-text",
        ),
    ],
    ids=["count-multiclass", "tfidf-l1", "other-classifier", "mixed-vectorizers"],
)
def test_each_lean_variant_matches_the_pipeline(
    features: list[Any], classifier: Any, classes: int, kind: str
) -> None:
    data = texts_and_labels(classes=classes)
    model = Pipeline([("f", ColumnTransformer(features)), ("c", classifier)])
    model.fit(data[["text"]], data["label"])
    texts = list(data["text"].tail(20))

    predictor = build_predictor(loaded_model(model))

    assert predictor.kind == kind
    np.testing.assert_allclose(
        predictor.predict_proba([texts]),
        model.predict_proba(pd.DataFrame({"text": texts})),
        rtol=0,
        atol=1e-12,
    )


def test_other_models_fall_back_to_one_dataframe_per_batch() -> None:
    class Echo:
        classes_ = np.array(["a", "b"])

        def __init__(self) -> None:
            self.frames: list[pd.DataFrame] = []

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            self.frames.append(frame)
            return np.tile([0.25, 0.75], (len(frame), 1))

    echo = Echo()
    predictor = build_predictor(loaded_model(echo))
    echo.frames.clear()

    proba = predictor.predict_proba([["x", "y", "z"]])

    assert predictor.kind == "dataframe"
    assert len(echo.frames) == 1
    assert list(echo.frames[0]["text"]) == ["x", "y", "z"]
    assert proba.shape == (3, 2)
    assert LinearTextPredictor.from_model(echo, ["text"]) is None
    assert TextPipelinePredictor.from_model(echo, ["text"]) is None


# --- the batcher -------------------------------------------------------------------------


class SlowEcho:
    """A batch function that records its calls and holds each one for ``delay_s``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, columns: Sequence[Sequence[str]]) -> list[str]:
        self.release.wait(10)
        self.calls.append(len(columns[0]))
        time.sleep(self.delay_s)
        return [text.upper() for text in columns[0]]


def test_concurrent_requests_share_model_calls_and_get_their_own_rows() -> None:
    model = SlowEcho(delay_s=0.02)

    async def scenario() -> list[list[str]]:
        batcher = MicroBatcher(model, max_batch_size=64, max_wait_us=2_000)
        texts = [[f"request {i} row {j}" for j in range(i % 3 + 1)] for i in range(40)]
        futures = [batcher.submit([rows], len(rows)) for rows in texts]
        answers = await asyncio.gather(*futures)
        await batcher.aclose()
        assert answers == [[t.upper() for t in rows] for rows in texts]
        return answers

    answers = asyncio.run(scenario())

    assert len(answers) == 40
    assert sum(model.calls) == sum(i % 3 + 1 for i in range(40))
    assert len(model.calls) <= 4  # 40 requests, at most a few model calls


def test_batches_never_exceed_max_batch_size_rows() -> None:
    model = SlowEcho(delay_s=0.005)

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=16, max_wait_us=500)
        futures = [batcher.submit([[f"t{i}"]], 1) for i in range(100)]
        answers = await asyncio.gather(*futures)
        assert [a[0] for a in answers] == [f"T{i}" for i in range(100)]
        await batcher.aclose()

    asyncio.run(scenario())

    assert max(model.calls) <= 16
    assert sum(model.calls) == 100


def test_a_lone_request_is_not_held_for_company() -> None:
    model = SlowEcho()

    async def scenario() -> None:
        # An hour of max_wait: a lone request that waited for others would never come back.
        batcher = MicroBatcher(model, max_wait_us=3_600_000_000)
        for i in range(3):
            future = batcher.submit([[f"x{i}"]], 1)
            assert batcher.queued == 0  # handed to the model at once, not held for company
            assert await future == [f"X{i}"]
        await batcher.aclose()

    asyncio.run(scenario())

    assert model.calls == [1, 1, 1]


def test_past_max_queue_submit_fails_at_once() -> None:
    model = SlowEcho()
    model.release.clear()  # the first batch blocks in the worker

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_queue=5, max_wait_us=0)
        running = batcher.submit([["first"]], 1)  # handed to the worker at once
        assert batcher.queued == 0
        queued = [batcher.submit([[f"q{i}"]], 1) for i in range(5)]
        assert batcher.queued == 5
        # Refused by the call itself, while the model is still stuck on "first": a plain
        # function (nothing to await), so the caller never waits for the model.
        with pytest.raises(QueueFull):
            batcher.submit([["one too many"]], 1)
        assert batcher.submit_nowait([["shadow copy"]], 1) is False
        assert not running.done() and model.calls == []
        model.release.set()
        assert await running == ["FIRST"]
        assert [await f for f in queued] == [[f"Q{i}"] for i in range(5)]
        await batcher.aclose()

    asyncio.run(scenario())

    assert sum(model.calls) == 6  # the refused ones were never scored


def test_a_caller_that_gave_up_is_skipped_and_errors_reach_every_caller() -> None:
    seen: list[str] = []

    def flaky(columns: Sequence[Sequence[str]]) -> list[str]:
        seen.extend(columns[0])
        if "boom" in columns[0]:
            raise RuntimeError("model failed")
        return list(columns[0])

    async def scenario() -> None:
        batcher = MicroBatcher(flaky, max_wait_us=0)
        first = batcher.submit([["first"]], 1)
        # "first" went to the worker; until its answer is delivered on this loop (after the
        # next await), the rest queue behind it.
        abandoned = batcher.submit([["abandoned"]], 1)
        abandoned.cancel()
        boom = batcher.submit([["boom"]], 1)
        other = batcher.submit([["other"]], 1)
        assert await first == ["first"]
        for future in (boom, other):  # same batch: both see the error
            with pytest.raises(RuntimeError, match="model failed"):
                await future
        await batcher.aclose()

    asyncio.run(scenario())

    assert "abandoned" not in seen


def test_aclose_answers_everything_queued_and_runs_after_batch() -> None:
    logged: list[str] = []
    model = SlowEcho(delay_s=0.01)

    async def scenario() -> list[list[str]]:
        batcher = MicroBatcher(
            model,
            after_batch=lambda batch: logged.extend(i.results[0] for i in batch),
            max_batch_size=4,
        )
        futures = [batcher.submit([[f"r{i}"]], 1) for i in range(12)]
        await batcher.aclose()  # returns once all 12 are answered and logged
        assert all(f.done() for f in futures)
        return [f.result() for f in futures]

    answers = asyncio.run(scenario())

    assert answers == [[f"R{i}"] for i in range(12)]
    assert sorted(logged) == sorted(f"R{i}" for i in range(12))


def test_quick_batches_run_on_the_event_loop_and_others_in_the_worker_thread() -> None:
    threads: dict[str, int] = {}

    def echo(columns: Sequence[Sequence[str]]) -> list[str]:
        for text in columns[0]:
            threads[text] = threading.get_ident()
        return [text.upper() for text in columns[0]]

    async def scenario() -> int:
        batcher = MicroBatcher(
            echo, run_inline=lambda columns: len(columns[0][0]) < 10, max_wait_us=0
        )
        short = await batcher.submit([["short"]], 1)
        long = await batcher.submit([["a much longer text"]], 1)
        assert (short, long) == (["SHORT"], ["A MUCH LONGER TEXT"])
        # Concurrent quick requests still share calls, and each gets its own rows.
        answers = await asyncio.gather(*(batcher.submit([[f"q{i}"]], 1) for i in range(20)))
        assert answers == [[f"Q{i}"] for i in range(20)]
        await batcher.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())

    assert threads["short"] == loop_thread
    assert threads["q7"] == loop_thread
    assert threads["a much longer text"] != loop_thread


def test_an_inline_batch_takes_in_the_requests_queued_before_the_loop_comes_to_it() -> None:
    calls: list[list[str]] = []

    def echo(columns: Sequence[Sequence[str]]) -> list[str]:
        calls.append(list(columns[0]))
        return [text.upper() for text in columns[0]]

    async def scenario() -> list[list[str]]:
        # max_wait_us=0: the first request dispatches at once, yet the 9 submitted in the
        # same loop iteration still share its model call (the thread path would not wait).
        batcher = MicroBatcher(echo, run_inline=lambda columns: True, max_wait_us=0)
        futures = [batcher.submit([[f"r{i}"]], 1) for i in range(10)]
        answers = await asyncio.gather(*futures)
        # A batch formed with nobody left waiting (all timed out) leaves the batcher idle.
        gone = batcher.submit([["gone"]], 1)
        gone.cancel()
        await asyncio.sleep(0)
        assert await batcher.submit([["next"]], 1) == ["NEXT"]
        await batcher.aclose()
        return [list(answer) for answer in answers]

    answers = asyncio.run(scenario())

    assert answers == [[f"R{i}"] for i in range(10)]
    assert calls[0] == [f"r{i}" for i in range(10)]
    assert calls[1:] == [["next"]]


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_a_failing_hook_is_logged_and_later_batches_are_still_answered(
    inline: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_hook(batch: list[Any]) -> None:
        raise ValueError("log sink broke")

    async def scenario() -> None:
        batcher = MicroBatcher(
            SlowEcho(),
            after_batch=failing_hook,
            run_inline=(lambda columns: True) if inline else None,
            max_wait_us=0,
        )
        for i in range(3):
            assert await batcher.submit([[f"x{i}"]], 1) == [f"X{i}"]
        await batcher.aclose()

    asyncio.run(scenario())

    assert caplog.text.count("a batch hook failed") == 3
    assert "log sink broke" in caplog.text


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_a_batch_is_counted_before_its_callers_are_answered(
    inline: bool, caplog: pytest.LogCaptureFixture
) -> None:
    counted: list[int] = []

    def count(rows: int, seconds: float) -> None:
        counted.append(rows)
        if rows == 2:
            raise ValueError("metrics broke")

    async def scenario() -> None:
        batcher = MicroBatcher(
            SlowEcho(),
            on_batch=count,
            run_inline=(lambda columns: True) if inline else None,
            max_wait_us=0,
        )
        # A client reading /metrics right after its answer must find its rows counted.
        assert await batcher.submit([["a"]], 1) == ["A"]
        assert counted == [1]
        assert await batcher.submit([["b", "c"]], 2) == ["B", "C"]
        assert counted == [1, 2]
        await batcher.aclose()

    asyncio.run(scenario())

    assert "the batch metrics hook failed" in caplog.text


# --- over HTTP -----------------------------------------------------------------------------


class SlowModel:
    """Counts its calls and takes ``delay_s`` (only for texts starting with "slow": not for
    the warm-up made while loading); class 'pos' if 'good' is in the text."""

    classes_ = np.array(["neg", "pos"])

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls: list[int] = []
        self.gate = threading.Event()  # cleared: the model hangs until it is set again
        self.gate.set()
        self.entered = threading.Event()  # set when a call is waiting at the gate

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append(len(frame))
        if self.delay_s and any(t.startswith(("slow", "good", "bad")) for t in frame["text"]):
            time.sleep(self.delay_s)
        good = np.array(["good" in t for t in frame["text"]], dtype=float)
        return np.column_stack([1 - good * 0.9, 0.1 + good * 0.8])


def post_concurrently(url: str, bodies: list[Any], **kwargs: Any) -> list[httpx.Response]:
    results: list[httpx.Response | None] = [None] * len(bodies)

    def send(i: int) -> None:
        results[i] = httpx.post(f"{url}/predict", json=bodies[i], timeout=30, **kwargs)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def test_http_requests_are_batched_and_each_gets_its_own_answer() -> None:
    model = SlowModel(delay_s=0.05)
    with start_in_thread(loaded_model(model)) as server:
        model.calls.clear()
        bodies = [{"text": f"{'good' if i % 2 else 'bad'} request {i}"} for i in range(24)]
        answers = post_concurrently(server.url, bodies)

    assert [a.status_code for a in answers] == [200] * 24
    for i, answer in enumerate(answers):
        assert answer.json()["prediction"]["label"] == ("pos" if i % 2 else "neg")
    assert sum(model.calls) == 24
    assert len(model.calls) < 24  # gathered


def test_http_past_the_queue_bound_gets_503_with_retry_after_at_once() -> None:
    model = SlowModel(delay_s=0.0)
    answers: list[httpx.Response] = []

    def send(text: str) -> None:
        answers.append(httpx.post(f"{server.url}/predict", json={"text": text}, timeout=30))

    with start_in_thread(loaded_model(model), max_queue=4, max_wait_us=0) as server:
        model.gate.clear()  # the model hangs: requests pile up in the queue
        model.entered.clear()
        threads = [threading.Thread(target=send, args=("first",))]
        threads[0].start()
        assert model.entered.wait(10)  # "first" is in the (hung) model; the queue is empty
        threads += [threading.Thread(target=send, args=(f"b{i}",)) for i in range(8)]
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 10
        while len(answers) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused_while_hung = list(answers)  # answered although the model never returned
        model.gate.set()
        for thread in threads:
            thread.join()

    assert [a.status_code for a in refused_while_hung] == [503] * 4
    assert all(a.headers["retry-after"] == "1" for a in refused_while_hung)
    assert "capacity" in refused_while_hung[0].json()["error"]
    assert sorted(a.status_code for a in answers) == [200] * 5 + [503] * 4


def test_http_request_past_its_timeout_gets_504() -> None:
    model = SlowModel(delay_s=0.0)
    with start_in_thread(loaded_model(model), timeout_ms=100) as server:
        model.gate.clear()  # the model never answers until the request has timed out
        try:
            response = httpx.post(f"{server.url}/predict", json={"text": "slow"}, timeout=10)
        finally:
            model.gate.set()
        metrics = httpx.get(f"{server.url}/metrics").text

    assert response.status_code == 504
    assert "100 ms" in response.json()["error"]
    assert 'loopline_rejected_requests_total{reason="timeout"} 1.0' in metrics


def test_request_ids_are_echoed_or_generated() -> None:
    model = SlowModel(delay_s=0.0)
    with start_in_thread(loaded_model(model)) as server:
        given = httpx.post(
            f"{server.url}/predict", json={"text": "good"}, headers={"X-Request-ID": "abc-1"}
        )
        generated = httpx.post(f"{server.url}/predict", json=[{"text": "a"}, {"text": "b"}])
        bad = httpx.post(
            f"{server.url}/predict", json={"text": "a"}, headers={"X-Request-ID": "no spaces"}
        )

    assert given.json()["request_id"] == "abc-1"
    assert given.headers["x-request-id"] == "abc-1"
    assert given.json()["route"] == "champion"
    body = generated.json()
    assert len(body["request_id"]) >= 16
    assert [p["request_id"] for p in body["predictions"]] == [
        f"{body['request_id']}.0",
        f"{body['request_id']}.1",
    ]
    assert bad.status_code == 422
    assert "X-Request-ID" in bad.json()["error"]
