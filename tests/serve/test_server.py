"""The model server on a real port: start/stop, signals, the HTTP client, and the registry."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.errors import LooplineError
from loopline.registry.models import LoadedModel, ModelRegistry, ModelVersionInfo
from loopline.serve import RunningServer, predict_remote, start_in_thread

VADER = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "sentiment"
    / "vader"
    / "tweets_GroundTruth.txt"
)
SRC = Path(__file__).resolve().parents[2] / "src"


def sentiment_data(limit: int = 1_000) -> pd.DataFrame:
    """~1,000 labelled VADER tweets, or synthetic texts where the shared data is absent."""
    if VADER.exists():
        raw = pd.read_csv(
            VADER, sep="\t", header=None, names=["id", "mean", "text"], quoting=csv.QUOTE_NONE
        )
        raw = raw[(raw["mean"] > 0.05) | (raw["mean"] < -0.05)].head(limit)
        labels = np.where(raw["mean"] > 0.05, "positive", "negative")
        return pd.DataFrame({"text": raw["text"].astype(str).to_numpy(), "label": labels})
    good, bad = ["love", "great", "happy"], ["hate", "awful", "sad"]
    rows = [
        (f"I {(good if i % 2 else bad)[i % 3]} this {i}", "positive" if i % 2 else "negative")
        for i in range(limit)
    ]
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return sentiment_data()


@pytest.fixture(scope="module")
def pipeline(data: pd.DataFrame) -> Pipeline:
    # ColumnTransformer over "text": a bare TfidfVectorizer would iterate over column names.
    model = Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", TfidfVectorizer(), "text")])),
            ("classifier", LogisticRegression(max_iter=1_000)),
        ]
    )
    return model.fit(data[["text"]], data["label"])


@pytest.fixture(scope="module")
def loaded(pipeline: Pipeline) -> LoadedModel:
    info = ModelVersionInfo("sentiment", "3", "run-abc", ["champion"], {}, "ds-1", None, {})
    return LoadedModel(info, pipeline, ["text"], [str(c) for c in pipeline.classes_])


@pytest.fixture(scope="module")
def server(loaded: LoadedModel) -> Iterator[RunningServer]:
    with start_in_thread(loaded, max_body_bytes=2_000) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serves_predictions_on_a_real_port(server: RunningServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert server.port > 0

    response = httpx.post(f"{server.url}/predict", json={"text": "I love this, great!"})

    assert response.status_code == 200
    assert response.json()["model_version"] == "3"
    assert response.json()["prediction"]["label"] == "positive"
    assert httpx.get(f"{server.url}/ready").status_code == 200


def test_streamed_oversized_body_gives_413_and_the_server_keeps_serving(
    server: RunningServer,
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: uvicorn receives it chunked
        yield b'{"text": "'
        for _ in range(20):
            yield b"x" * 500
        yield b'"}'

    response = httpx.post(f"{server.url}/predict", content=chunks())

    assert response.status_code == 413
    assert "limit of 2000 bytes" in response.json()["error"]
    assert httpx.post(f"{server.url}/predict", json={"text": "fine"}).status_code == 200


def test_stop_frees_the_port(loaded: LoadedModel) -> None:
    running = start_in_thread(loaded)
    assert httpx.get(f"{running.url}/health").json() == {"status": "ok"}

    running.stop()

    assert not running.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.url}/health")
    with socket.socket() as sock:  # the port can be bound again
        sock.bind(("127.0.0.1", running.port))


def test_a_busy_port_is_a_clear_error(loaded: LoadedModel, server: RunningServer) -> None:
    with pytest.raises(LooplineError, match="cannot listen on") as caught:
        start_in_thread(loaded, port=server.port)

    assert "--port" in (caught.value.hint or "")


def test_predict_remote_returns_one_timed_prediction_per_text(server: RunningServer) -> None:
    texts = ["I love it, wonderful", "I hate this, awful", "so happy"]

    results = predict_remote(server.url, texts)

    assert [r["text"] for r in results] == texts
    assert results[0]["label"] == "positive"
    assert results[1]["label"] == "negative"
    for result in results:
        assert result["model_version"] == "3"
        assert set(result["probabilities"]) == {"negative", "positive"}
        assert result["latency_ms"] > 0


def test_predict_remote_on_a_closed_port_says_how_to_start_a_server() -> None:
    with pytest.raises(LooplineError, match="cannot reach the model server") as caught:
        predict_remote(f"http://127.0.0.1:{free_port()}", ["hello"], timeout=2.0)

    assert "loopline serve" in (caught.value.hint or "")


def test_predict_remote_reports_the_servers_error_message(server: RunningServer) -> None:
    with pytest.raises(LooplineError, match=r"answered 413: .*limit of 2000 bytes"):
        predict_remote(f"{server.url}/predict", ["x" * 5_000])


def test_predict_remote_refuses_a_single_string(server: RunningServer) -> None:
    with pytest.raises(LooplineError, match="not a single string"):
        predict_remote(server.url, "hello")


# Both warnings come from inside MLflow 3.17 (SQLAlchemy 2 and pandas 3 deprecations).
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
@pytest.mark.filterwarnings("ignore:Operation with range is deprecated")
def test_serves_a_model_loaded_from_a_real_mlflow_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline, data: pd.DataFrame
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # MLflow writes under HOME on first use
    registry = ModelRegistry(
        f"sqlite:///{tmp_path}/mlflow.db", artifact_location=(tmp_path / "mlruns").as_uri()
    )
    registry.register(
        pipeline,
        name="sentiment",
        params={"C": 1.0},
        metrics={"accuracy": 0.8},
        dataset_version="ds-42",
        input_example=data[["text"]].head(3),
    )
    loaded = registry.load("sentiment/1")
    texts = ["I love this", "terrible, awful day"]

    with start_in_thread(loaded) as running:
        model = httpx.get(f"{running.url}/model").json()
        body = httpx.post(f"{running.url}/predict", json=[{"text": t} for t in texts]).json()

    assert model["name"] == "sentiment"
    assert model["version"] == "1"
    assert model["dataset_version"] == "ds-42"
    assert model["run_id"] == loaded.info.run_id
    assert model["input_columns"] == ["text"]
    assert body["model_version"] == "1"
    expected = pipeline.predict_proba(pd.DataFrame({"text": texts}))
    got = [[p["probabilities"][c] for c in model["classes"]] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected)


# A model server in a child process, so real signals can be sent to it. Its model is a plain
# object with the LoadedModel attributes the app uses, and answers slowly so a request is
# still in flight when the signal arrives.
SERVE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from types import SimpleNamespace
    import numpy as np
    from loopline.serve import serve

    class Slow:
        input_columns = ["text"]
        classes = ["negative", "positive"]
        info = SimpleNamespace(name="slow", version="1", run_id=None, dataset_version=None,
                               created_at=None, metrics={}, aliases=[])

        def predict_proba(self, frame):
            if "hi" in list(frame["text"]):  # not the warm-up call made while loading
                Path("predicting").touch()
                time.sleep(1.0)
            return np.full((len(frame), 2), 0.5)

    serve(Slow(), port=int(sys.argv[1]))
    print("returned normally", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_finishes_in_flight_requests_and_returns_on_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, child)
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{url}/predict", json={"text": "hi"}))
        )
        request.start()
        wait_for(lambda: (tmp_path / "predicting").exists())  # the prediction is running

        child.send_signal(sig)
        out, err = child.communicate(timeout=20)
        request.join(timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert child.returncode == 0, err
    assert "returned normally" in out
    assert answers
    assert answers[0].status_code == 200


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def wait_until_ready(url: str, child: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"server exited early: {child.communicate()[1]}")
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("server was not ready in time")
