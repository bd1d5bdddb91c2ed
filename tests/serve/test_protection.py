"""Protection: admin bearer token, API keys, feedback validation, and a schema-driven fuzz run."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.core.feedback import read_feedback
from loopline.core.metadata import MetadataStore
from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import create_app, start_in_thread

with warnings.catch_warnings():
    # Starlette warns that its test client will move to the `httpx2` package; httpx works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "tok-9f8e7d6c5b4a-do-not-log"
KEYS = ("key-one", "key-two")


class Keyword:
    """'positive' when the text contains 'good'."""

    classes_ = np.array(["negative", "positive"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        good = np.array(["good" in t for t in frame["text"]], dtype=float)
        return np.column_stack([0.9 - 0.8 * good, 0.1 + 0.8 * good])


@pytest.fixture
def loaded() -> LoadedModel:
    info = ModelVersionInfo("sentiment", "7", None, ["champion"], {}, None, None, {})
    return LoadedModel(info, Keyword(), ["text"], ["negative", "positive"])


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    return MetadataStore(f"sqlite:///{tmp_path}/m.db")


def test_admin_routes_need_the_bearer_token_which_never_reaches_logs_or_answers(
    loaded: LoadedModel, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # everything any logger emits, uvicorn's included
    with start_in_thread(create_app(loaded, admin_token=TOKEN)) as server:
        url = f"{server.url}/admin/reload"
        missing = httpx.post(url)
        not_bearer = httpx.post(url, headers={"Authorization": f"Basic {TOKEN}"})
        wrong = httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}x"})
        prefix = httpx.post(url, headers={"Authorization": f"Bearer {TOKEN[:-1]}"})
        right = httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
        rollback = httpx.post(f"{server.url}/admin/rollback", headers={"Authorization": "Bearer x"})

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert not_bearer.status_code == 401
    assert wrong.status_code == 403
    assert prefix.status_code == 403
    assert rollback.status_code == 403
    assert right.status_code == 200
    assert right.json()["routes"]["champion"]["model_version"] == "7"
    answers = [missing, not_bearer, wrong, prefix, right, rollback]
    assert all(TOKEN[:12] not in r.text for r in answers)
    out, err = capfd.readouterr()
    assert TOKEN[:12] not in caplog.text + out + err


def test_without_a_token_the_admin_routes_do_not_exist(loaded: LoadedModel) -> None:
    client = TestClient(create_app(loaded))

    for path in ("/admin/reload", "/admin/rollback"):
        response = client.post(path, headers={"Authorization": "Bearer anything"})
        assert response.status_code == 404
    assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


def test_api_keys_guard_predict_and_feedback_but_not_health(
    loaded: LoadedModel, store: MetadataStore
) -> None:
    app = create_app(loaded, api_keys=KEYS, feedback_store=store)
    with TestClient(app) as client:
        none = client.post("/predict", json={"text": "good"})
        wrong = client.post("/predict", json={"text": "good"}, headers={"X-API-Key": "nope"})
        right = client.post("/predict", json={"text": "good"}, headers={"X-API-Key": KEYS[1]})
        feedback = client.post("/feedback", json={"request_id": "r", "label": "positive"})
        health = client.get("/health")

    assert none.status_code == 401
    assert wrong.status_code == 401
    assert "X-API-Key" in none.json()["error"]
    assert right.status_code == 200
    assert feedback.status_code == 401
    assert health.status_code == 200


def test_feedback_is_validated_and_stored(loaded: LoadedModel, store: MetadataStore) -> None:
    with TestClient(create_app(loaded, feedback_store=store)) as client:
        answer = client.post("/predict", json={"text": "good day"}).json()
        stored = client.post(
            "/feedback", json={"request_id": answer["request_id"], "label": "positive"}
        )
        missing = client.post("/feedback", json={"label": "positive"})
        empty = client.post("/feedback", json={"request_id": " ", "label": "positive"})
        unknown_label = client.post("/feedback", json={"request_id": "r1", "label": "meh"})
        extra = client.post("/feedback", json={"request_id": "r1", "label": "positive", "x": 1})
        not_json = client.post("/feedback", content=b"{", headers={"content-type": "text/plain"})

    assert stored.status_code == 201
    assert stored.json()["request_id"] == answer["request_id"]
    assert missing.status_code == 422
    assert "request_id is missing" in missing.json()["error"]
    assert empty.status_code == 422
    assert "request_id is empty" in empty.json()["error"]
    assert unknown_label.status_code == 422
    assert "not one of the model's classes: negative, positive" in unknown_label.json()["error"]
    assert extra.status_code == 422
    assert not_json.status_code == 400
    rows = read_feedback(store)
    assert list(rows["request_id"]) == [answer["request_id"]]
    assert list(rows["label"]) == ["positive"]
    assert list(rows["model_name"]) == ["sentiment"]


# --- schema-driven fuzzing ---------------------------------------------------------------


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for the (small) subset of JSON Schema that the app's OpenAPI uses."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 50))
    if kind == "array":
        return st.lists(
            from_schema(schema["items"], defs),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, defs) for k, v in properties.items() if k in required},
            optional={k: from_schema(v, defs) for k, v in properties.items() if k not in required},
        )
    return st.none()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@pytest.fixture
def fuzz_client(loaded: LoadedModel, store: MetadataStore) -> Iterator[TestClient]:
    app = create_app(loaded, feedback_store=store, admin_token=TOKEN, max_items=5)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_fuzzing_the_openapi_bodies_finds_no_5xx(fuzz_client: TestClient) -> None:
    document = fuzz_client.get("/openapi.json").json()
    defs = document.get("components", {}).get("schemas", {})
    operations = [
        (path, method, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]
    assert {p for p, _, _ in operations} >= {"/predict", "/feedback", "/admin/reload"}
    seen: list[int] = []

    for path, method, operation in operations:
        schema = (
            operation.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema")
        )
        valid = from_schema(schema, defs) if schema else st.none()
        fuzz_operation(fuzz_client, path, method, valid | JSON, seen)  # valid, or any JSON

    assert 200 in seen and 422 in seen


ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "X-Request-ID": ASCII,
        "X-Request-Key": ASCII,
        "X-API-Key": ASCII,
        "Authorization": st.sampled_from(["", "Bearer", f"Bearer {TOKEN}", "Basic x"]) | ASCII,
    },
)


def fuzz_operation(
    client: TestClient, path: str, method: str, bodies: st.SearchStrategy[Any], seen: list[int]
) -> None:
    """Send generated bodies and headers to one operation; fail on any 5xx."""

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, headers=HEADERS)
    def call(body: Any, headers: dict[str, str]) -> None:
        response = client.request(
            method.upper(), path, json=body, headers={k: v.strip() for k, v in headers.items()}
        )
        seen.append(response.status_code)
        assert response.status_code < 500, (path, body, response.text)

    call()
