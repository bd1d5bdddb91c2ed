"""Hot swap: the server follows its registry alias under load, with zero failed requests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.core.metadata import MetadataStore
from loopline.registry.models import ModelRegistry
from loopline.serve import create_app, start_in_thread
from loopline.serve.routing import RegistryModel

pytestmark = [
    # Both warnings come from inside MLflow 3.17 (SQLAlchemy 2 and pandas 3 deprecations).
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
    pytest.mark.filterwarnings("ignore:Operation with range is deprecated"),
]

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def train(flip: bool) -> Pipeline:
    rng = np.random.default_rng(1)
    good, bad = ["love", "great", "happy"], ["hate", "awful", "sad"]
    texts = [f"I {rng.choice(good if i % 2 else bad)} it {i}" for i in range(200)]
    positive = np.arange(200) % 2 == (0 if flip else 1)
    data = pd.DataFrame({"text": texts, "label": np.where(positive, "positive", "negative")})
    model = Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", TfidfVectorizer(), "text")])),
            ("classifier", LogisticRegression(max_iter=500)),
        ]
    )
    return model.fit(data[["text"]], data["label"])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """A real MLflow registry with versions 1 and 2 of 'sentiment'; v1 is the champion."""
    tmp = tmp_path_factory.mktemp("registry")
    registry = ModelRegistry(
        f"sqlite:///{tmp}/mlflow.db",
        artifact_location=(tmp / "mlruns").as_uri(),
        history=MetadataStore(f"sqlite:///{tmp}/m.db"),
    )
    example = pd.DataFrame({"text": ["I love it", "I hate it"]})
    for flip in (False, True):  # v2 answers the opposite of v1: swaps are visible
        registry.register(
            train(flip),
            name="sentiment",
            params={"flip": flip},
            metrics={},
            dataset_version=None,
            input_example=example,
        )
    return registry


@pytest.fixture
def champion_v1(registry: ModelRegistry) -> Iterator[ModelRegistry]:
    registry.set_alias("sentiment", "champion", "1", reason="test start", actor="tests")
    yield registry


@dataclass
class Answer:
    started: float
    ended: float
    status: int
    version: str | None


class Load:
    """A few threads posting /predict continuously, recording when and what came back."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post(f"{self.url}/predict", json={"text": "I love it"})
                    version = response.json().get("model_version")
                    status = response.status_code
                except httpx.HTTPError:
                    status, version = 0, None
                self.answers.append(Answer(started, time.monotonic(), status, version))


def versions_during(
    timeline: list[tuple[float, float, str]], first: str, started: float, ended: float
) -> set[str]:
    """Every version that was current at some instant of [started, ended].

    ``timeline`` holds (change begun, swap done, new version); during a change both the old
    and the new version are acceptable (the swap instant lies somewhere inside it).
    """
    allowed = set()
    current = first
    begin = float("-inf")
    for change_begun, swap_done, version in timeline:
        if started <= change_begun and begin <= ended:
            allowed.add(current)  # current was live during part of the request
        if started <= swap_done and change_begun <= ended:
            allowed |= {current, version}  # the request overlaps the swap window
        current, begin = version, swap_done
    if begin <= ended:
        allowed.add(current)
    return allowed


def test_ten_alias_moves_under_load_fail_no_request(champion_v1: ModelRegistry) -> None:
    registry = champion_v1
    app = create_app(
        RegistryModel(registry, "sentiment@champion"), admin_token=TOKEN, poll_interval_s=0
    )
    timeline: list[tuple[float, float, str]] = []
    with start_in_thread(app) as server, Load(server.url) as load:
        time.sleep(0.3)
        for change in range(10):
            begun = time.monotonic()
            if change % 2 == 0:
                registry.promote("sentiment", "2", reason=f"change {change}", actor="tests")
                target = "2"
            else:
                registry.rollback("sentiment", reason=f"change {change}", actor="tests")
                target = "1"
            reload = httpx.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60)
            assert reload.status_code == 200, reload.text
            assert reload.json()["routes"]["champion"]["model_version"] == target
            timeline.append((begun, time.monotonic(), target))
            time.sleep(0.2)
        metrics = httpx.get(f"{server.url}/metrics").text

    answers = load.answers
    failed = [a for a in answers if a.status != 200]
    mismatched = [
        a for a in answers if a.version not in versions_during(timeline, "1", a.started, a.ended)
    ]
    by_version = Counter(a.version for a in answers)
    print(f"{len(answers)} requests, {len(failed)} failed, {len(mismatched)} mismatched")
    assert len(answers) > 100
    assert failed == []
    assert mismatched == []
    assert by_version["1"] > 0 and by_version["2"] > 0
    assert 'loopline_model_swaps_total{route="champion"} 10.0' in metrics


def test_the_poller_follows_the_alias_without_a_reload(champion_v1: ModelRegistry) -> None:
    registry = champion_v1
    app = create_app(RegistryModel(registry, "sentiment@champion"), poll_interval_s=0.1)
    with start_in_thread(app) as server, Load(server.url, threads=2) as load:
        time.sleep(0.2)
        registry.promote("sentiment", "2", reason="poller test", actor="tests")
        deadline = time.monotonic() + 20
        while load.answers[-1].version != "2":
            if time.monotonic() > deadline:
                pytest.fail("the server did not follow the alias")
            time.sleep(0.05)
        time.sleep(0.2)

    assert all(a.status == 200 for a in load.answers)
    assert load.answers[-1].version == "2"


def test_admin_rollback_moves_the_alias_records_who_and_why_and_the_server_follows(
    champion_v1: ModelRegistry,
) -> None:
    registry = champion_v1
    registry.promote("sentiment", "2", reason="before rollback", actor="tests")
    app = create_app(
        RegistryModel(registry, "sentiment@champion"), admin_token=TOKEN, poll_interval_s=0
    )
    with start_in_thread(app) as server:
        before = httpx.post(f"{server.url}/predict", json={"text": "x"}).json()["model_version"]
        response = httpx.post(
            f"{server.url}/admin/rollback",
            headers=AUTH,
            json={"reason": "accuracy dropped", "actor": "alice"},
            timeout=60,
        )
        after = httpx.post(f"{server.url}/predict", json={"text": "x"}).json()["model_version"]

    assert before == "2"
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    assert response.json()["previous_version"] == "2"
    assert after == "1"
    event = [e for e in registry.alias_history("sentiment") if e["alias"] == "champion"][-1]
    assert event["reason"] == "accuracy dropped"
    assert event["actor"].startswith("alice (POST /admin/rollback from 127.0.0.1")
    assert event["version"] == "1"
    assert event["previous_version"] == "2"


def test_rollback_is_refused_for_a_pinned_version(champion_v1: ModelRegistry) -> None:
    app = create_app(RegistryModel(champion_v1, "sentiment/1"), admin_token=TOKEN)
    with start_in_thread(app) as server:
        response = httpx.post(f"{server.url}/admin/rollback", headers=AUTH)

    assert response.status_code == 409
    assert "sentiment/1" in response.json()["error"]


def test_reload_never_loads_anything_but_the_configured_reference(
    champion_v1: ModelRegistry, tmp_path: Path
) -> None:
    app = create_app(
        RegistryModel(champion_v1, "sentiment@champion"), admin_token=TOKEN, poll_interval_s=0
    )
    with start_in_thread(app) as server:
        # Parameters a client might try: they are ignored (the route takes none).
        response = httpx.post(
            f"{server.url}/admin/reload?path={tmp_path}&ref=other@x",
            headers=AUTH,
            json={"path": str(tmp_path), "model": "other@x"},
        )
        routes = httpx.get(f"{server.url}/model").json()["routes"]

    assert response.status_code == 200
    assert routes["champion"]["ref"] == "sentiment@champion"
    assert routes["champion"]["version"] == "1"
