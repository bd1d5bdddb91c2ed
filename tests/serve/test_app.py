"""The prediction app, in process: body shapes, validation errors, limits and metrics."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import create_app

with warnings.catch_warnings():
    # Starlette warns that its test client will move to the `httpx2` package; httpx works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

VADER = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "sentiment"
    / "vader"
    / "tweets_GroundTruth.txt"
)


def sentiment_data(limit: int = 1_000) -> pd.DataFrame:
    """~1,000 labelled VADER tweets, or synthetic texts where the shared data is absent."""
    if VADER.exists():
        raw = pd.read_csv(
            VADER, sep="\t", header=None, names=["id", "mean", "text"], quoting=csv.QUOTE_NONE
        )
        raw = raw[(raw["mean"] > 0.05) | (raw["mean"] < -0.05)].head(limit)
        labels = np.where(raw["mean"] > 0.05, "positive", "negative")
        return pd.DataFrame({"text": raw["text"].astype(str).to_numpy(), "label": labels})
    rng = np.random.default_rng(0)
    good, bad = ["love", "great", "happy", "wonderful"], ["hate", "awful", "sad", "terrible"]
    rows = [
        (f"I {rng.choice(good if i % 2 else bad)} this {i}", "positive" if i % 2 else "negative")
        for i in range(limit)
    ]
    return pd.DataFrame(rows, columns=["text", "label"])


def train_sentiment_model() -> Pipeline:
    data = sentiment_data()
    # ColumnTransformer over "text": a bare TfidfVectorizer would iterate over column names.
    model = Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", TfidfVectorizer(), "text")])),
            ("classifier", LogisticRegression(max_iter=1_000)),
        ]
    )
    return model.fit(data[["text"]], data["label"])


class CountingModel:
    """Wraps an estimator and counts predict_proba calls (one per request is the contract)."""

    def __init__(self, inner: Pipeline) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        return np.asarray(self.inner.predict_proba(frame))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return train_sentiment_model()


@pytest.fixture
def loaded(pipeline: Pipeline) -> LoadedModel:
    info = ModelVersionInfo(
        name="sentiment",
        version="3",
        run_id="run-abc",
        aliases=["champion"],
        tags={"owner": "tests"},
        dataset_version="ds-123",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        metrics={"accuracy": 0.81},
    )
    classes = [str(c) for c in pipeline.classes_]
    return LoadedModel(info, CountingModel(pipeline), ["text"], classes)


@pytest.fixture
def client(loaded: LoadedModel) -> Iterator[TestClient]:
    app = create_app(loaded, max_body_bytes=4_000, max_items=5)
    loaded.model.calls.clear()  # forget the warm-up call made while loading
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_single_item_gets_one_prediction_with_version(client: TestClient) -> None:
    response = client.post("/predict", json={"text": "I love this, what a wonderful day"})

    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == "sentiment"
    assert body["model_version"] == "3"
    prediction = body["prediction"]
    assert prediction["label"] == "positive"
    assert set(prediction["probabilities"]) == {"negative", "positive"}
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    assert prediction["label"] == max(
        prediction["probabilities"], key=prediction["probabilities"].get
    )


@pytest.mark.parametrize("envelope", [False, True], ids=["list", "inputs"])
def test_batch_matches_the_model_in_order_with_one_model_call(
    client: TestClient, loaded: LoadedModel, envelope: bool
) -> None:
    texts = ["I love it, great", "This is awful, I hate it", "so happy today"]
    items = [{"text": text} for text in texts]

    response = client.post("/predict", json={"inputs": items} if envelope else items)

    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "3"
    expected = loaded.predict_proba(pd.DataFrame({"text": texts}))
    got = [[p["probabilities"][c] for c in loaded.classes] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected)
    assert [p["label"] for p in body["predictions"]] == [
        loaded.classes[i] for i in expected.argmax(axis=1)
    ]
    # One model call for the whole batch (the test's own call above comes after it).
    assert loaded.model.calls[0] == len(texts)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"txt": "hi"}, {(("body", "text"), "missing"), (("body", "txt"), "extra_forbidden")}),
        ({"text": "hi", "user": "x"}, {(("body", "user"), "extra_forbidden")}),
        ({"text": 5}, {(("body", "text"), "string_type")}),
        ([{"text": "ok"}, {"text": None}], {(("body", 1, "text"), "string_type")}),
        ({"inputs": [{"text": "ok"}, {}]}, {(("body", "inputs", 1, "text"), "missing")}),
    ],
    ids=["missing-and-extra", "extra", "wrong-type", "list-item", "inputs-item"],
)
def test_bad_fields_give_422_with_field_level_detail(
    client: TestClient, body: Any, expected: set[tuple[tuple[Any, ...], str]]
) -> None:
    response = client.post("/predict", json=body)

    assert response.status_code == 422
    error = response.json()
    assert error["error"].startswith("invalid request body: body.")
    assert {(tuple(d["loc"]), d["type"]) for d in error["detail"]} == expected
    assert all(d["msg"] for d in error["detail"])


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b'{"text": "unterminated', 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"42", 422, "object or list"),
        (b"[]", 422, "empty"),
        (b'{"inputs": "hello"}', 422, "'inputs' must be a list"),
    ],
    ids=["malformed", "empty", "scalar", "empty-list", "inputs-not-list"],
)
def test_unusable_bodies_give_a_clear_4xx(
    client: TestClient, content: bytes, status: int, words: str
) -> None:
    response = client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == status
    assert words in response.json()["error"]
    assert response.json()["detail"]


def test_too_many_items_gives_413(client: TestClient) -> None:
    response = client.post("/predict", json=[{"text": "hi"}] * 6)

    assert response.status_code == 413
    assert "limit is 5" in response.json()["error"]


def test_oversized_body_gives_413_with_or_without_content_length(client: TestClient) -> None:
    declared = client.post("/predict", json={"text": "x" * 5_000})

    def chunks() -> Iterator[bytes]:  # a generator body is sent without Content-Length
        yield b'{"text": "'
        for _ in range(10):
            yield b"y" * 1_000
        yield b'"}'

    streamed = client.post("/predict", content=chunks())

    for response in (declared, streamed):
        assert response.status_code == 413
        assert "limit of 4000 bytes" in response.json()["error"]


def test_a_body_just_under_the_limit_is_served(client: TestClient) -> None:
    response = client.post("/predict", json={"text": "z" * 3_900})

    assert response.status_code == 200


def test_health_ready_and_model_describe_the_served_model(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == "3"

    model = client.get("/model").json()
    assert model == {
        "name": "sentiment",
        "version": "3",
        "run_id": "run-abc",
        "dataset_version": "ds-123",
        "created_at": "2026-01-02T03:04:05+00:00",
        "metrics": {"accuracy": 0.81},
        "aliases": ["champion"],
        "input_columns": ["text"],
        "classes": ["negative", "positive"],
        "routes": {
            "champion": {
                "name": "sentiment",
                "version": "3",
                "ref": "sentiment/3",
                "inference": "dataframe",
            }
        },
    }


def metric(text: str, sample: str) -> float:
    """The value of one Prometheus sample line (``name{labels}``), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_items_and_latency(client: TestClient) -> None:
    ok = 'loopline_http_requests_total{method="POST",route="/predict",status="200"}'
    bad = 'loopline_http_requests_total{method="POST",route="/predict",status="422"}'
    before = client.get("/metrics").text

    client.post("/predict", json={"text": "good"})
    client.post("/predict", json=[{"text": "a"}, {"text": "b"}])
    client.post("/predict", json={"nope": 1})
    response = client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    assert metric(after, ok) - metric(before, ok) == 2
    assert metric(after, bad) - metric(before, bad) == 1
    items = "loopline_predicted_items_total"
    assert metric(after, items) - metric(before, items) == 3
    count = "loopline_prediction_latency_seconds_count"
    assert metric(after, count) - metric(before, count) == 2
    assert metric(after, 'loopline_model_info{name="sentiment",route="champion",version="3"}') == 1


def test_each_app_has_its_own_metrics_registry(loaded: LoadedModel) -> None:
    first = TestClient(create_app(loaded))
    second = TestClient(create_app(loaded))
    sample = "loopline_predicted_items_total"

    first.post("/predict", json={"text": "hello"})

    assert metric(first.get("/metrics").text, sample) == 1
    assert metric(second.get("/metrics").text, sample) == 0


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    response = client.get("/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "detail": []}


def test_a_failing_model_gives_500_with_the_error_shape(loaded: LoadedModel) -> None:
    class Broken:
        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            if "hi" in list(frame["text"]):  # passes the warm-up made while loading
                raise RuntimeError("boom")
            return np.full((len(frame), 2), 0.5)

    broken = LoadedModel(loaded.info, Broken(), ["text"], loaded.classes)
    client = TestClient(create_app(broken), raise_server_exceptions=False)

    response = client.post("/predict", json={"text": "hi"})

    assert response.status_code == 500
    assert "RuntimeError" in response.json()["error"]


def test_openapi_documents_the_item_fields(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]

    item = body["schema"]["anyOf"][0]
    assert item["required"] == ["text"]
    assert item["additionalProperties"] is False
