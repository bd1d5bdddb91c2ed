"""Empty input at /predict: empty or whitespace-only text is refused with 422 (numbers are not
text and are never "empty"), and /feedback says whether it knows the request id."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopline.core.feedback import read_feedback
from loopline.core.metadata import MetadataStore
from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import create_app

with warnings.catch_warnings():
    # Starlette warns that its test client will move to the `httpx2` package; httpx works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient


class Recording:
    """'positive' when the text contains 'good'; remembers every text it was asked about."""

    classes_ = np.array(["negative", "positive"])

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen.extend(frame["text"])
        good = np.array(["good" in t for t in frame["text"]], dtype=float)
        return np.column_stack([0.9 - 0.8 * good, 0.1 + 0.8 * good])


class Amounts:
    """A tabular model: 'fraud' for large amounts; reads numbers and a category."""

    classes_ = np.array(["fraud", "ok"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        large = (frame["amount"].to_numpy(dtype=float) > 100).astype(float)
        return np.column_stack([large, 1 - large])


def info(name: str = "sentiment") -> ModelVersionInfo:
    return ModelVersionInfo(name, "7", None, ["champion"], {}, None, None, {})


@pytest.fixture
def text_model() -> LoadedModel:
    return LoadedModel(info(), Recording(), ["text"], ["negative", "positive"])


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    return MetadataStore(f"sqlite:///{tmp_path}/m.db")


@pytest.fixture
def client(text_model: LoadedModel, store: MetadataStore) -> Iterator[TestClient]:
    with TestClient(create_app(text_model, feedback_store=store)) as test_client:
        text_model.model.seen.clear()  # forget the warm-up
        yield test_client


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"text": ""}, ["body", "text"]),
        ({"text": "  \t\n "}, ["body", "text"]),
        ({"text": "\u3000\u00a0"}, ["body", "text"]),  # Unicode spaces are whitespace too
        ([{"text": "good day"}, {"text": " "}], ["body", 1, "text"]),
        (
            {"inputs": [{"text": "ok"}, {"text": "fine"}, {"text": ""}]},
            ["body", "inputs", 2, "text"],
        ),
    ],
    ids=["empty", "whitespace", "unicode-space", "list-item", "inputs-item"],
)
def test_empty_or_whitespace_text_gives_422_naming_the_item(
    client: TestClient, text_model: LoadedModel, body: Any, loc: list[Any]
) -> None:
    response = client.post("/predict", json=body)

    assert response.status_code == 422, response.text
    error = response.json()
    assert error["detail"] == [
        {"loc": loc, "msg": "text is empty or only whitespace", "type": "string_too_short"}
    ]
    where = ".".join(str(part) for part in loc)
    assert error["error"] == (
        f"invalid request body: {where}: text is empty or only whitespace; "
        "send the text to classify"
    )
    assert text_model.model.seen == []  # nothing of the request was scored


def test_every_empty_item_of_a_batch_is_named(client: TestClient) -> None:
    response = client.post("/predict", json=[{"text": ""}, {"text": "good"}, {"text": "\n"}])

    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [
        ["body", 0, "text"],
        ["body", 2, "text"],
    ]
    assert "whitespace (and 1 more); send the text" in response.json()["error"]


def test_text_with_a_word_is_still_scored_as_sent(
    client: TestClient, text_model: LoadedModel
) -> None:
    response = client.post("/predict", json=[{"text": " good "}, {"text": "x"}])

    assert response.status_code == 200
    assert text_model.model.seen == [" good ", "x"]  # not stripped


def test_numeric_inputs_are_not_subject_to_the_empty_text_rule() -> None:
    types = {"amount": "double", "count": "long", "category": "string"}
    model = LoadedModel(info("fraud"), Amounts(), list(types), ["fraud", "ok"], input_types=types)
    client = TestClient(create_app(model))

    zero = client.post("/predict", json={"amount": 0, "count": 0, "category": "food"})
    large = client.post("/predict", json={"amount": 250.5, "count": 3, "category": "travel"})
    empty_category = client.post("/predict", json={"amount": 1, "count": 0, "category": " "})

    assert zero.status_code == 200 and zero.json()["prediction"]["label"] == "ok"
    assert large.status_code == 200 and large.json()["prediction"]["label"] == "fraud"
    assert empty_category.status_code == 422
    assert empty_category.json()["detail"][0]["loc"] == ["body", "category"]


def test_openapi_says_text_must_not_be_empty(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    text = body["schema"]["anyOf"][0]["properties"]["text"]

    assert text["type"] == "string"
    assert text["minLength"] == 1
    assert "whitespace" in text["description"]


# --- feedback for request ids the server does or does not know ---------------------------


def metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


ORPHANED = "loopline_feedback_orphaned_total"


def test_feedback_for_an_answered_request_is_matched(client: TestClient) -> None:
    single = client.post("/predict", json={"text": "good"}).json()["request_id"]
    batch = client.post(
        "/predict", json=[{"text": "a"}, {"text": "b"}], headers={"X-Request-ID": "mine.7"}
    ).json()

    answers = [
        client.post("/feedback", json={"request_id": request_id, "label": "positive"})
        for request_id in (single, batch["predictions"][1]["request_id"])
    ]

    assert [a.status_code for a in answers] == [201, 201]
    assert answers[1].json()["request_id"] == "mine.7.1"
    assert all(a.json()["matched"] is True for a in answers)
    assert all("warning" not in a.json() for a in answers)
    assert metric(client.get("/metrics").text, ORPHANED) == 0


@pytest.mark.parametrize("request_id", ["no-such-id", "mine.2", "mine.01", "mine"])
def test_feedback_for_an_unknown_request_id_is_stored_as_orphaned_and_counted(
    client: TestClient, store: MetadataStore, request_id: str
) -> None:
    # "mine" answered a batch of two: its items are mine.0 and mine.1, not mine, mine.01...
    client.post("/predict", json=[{"text": "a"}, {"text": "b"}], headers={"X-Request-ID": "mine"})

    response = client.post("/feedback", json={"request_id": request_id, "label": "negative"})

    assert response.status_code == 202
    body = response.json()
    assert body["matched"] is False and body["request_id"] == request_id
    assert "not one this server answered" in body["warning"]
    assert isinstance(body["feedback_id"], int)
    stored = read_feedback(store)
    assert list(stored["request_id"]) == [request_id]  # kept: it may join the log later
    assert metric(client.get("/metrics").text, ORPHANED) == 1


def test_the_feedback_route_documents_both_answers(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/feedback"]["post"]

    assert {"201", "202"} <= set(operation["responses"])
    assert "matched" in operation["description"]
