"""`loopline serve` as a process: worker processes with shared metrics, graceful shutdown under
load (no acknowledged prediction missing from the log), and one-line CLI errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.config import load_settings
from loopline.core.predlog import read_predictions
from loopline.registry.project import open_registry

pytestmark = [
    # Both warnings come from inside MLflow 3.17 (SQLAlchemy 2 and pandas 3 deprecations).
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
    pytest.mark.filterwarnings("ignore:Operation with range is deprecated"),
]

PREDICT_OK = 'loopline_http_requests_total{method="POST",route="/predict",status="200"}'


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose registry has sentiment version 1 as the champion."""
    root = tmp_path_factory.mktemp("project")
    rng = np.random.default_rng(0)
    texts = [f"I {rng.choice(['love', 'hate'])} it {i}" for i in range(200)]
    data = pd.DataFrame({"text": texts})
    labels = np.where(data["text"].str.contains("love"), "positive", "negative")
    model = Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", TfidfVectorizer(), "text")])),
            ("classifier", LogisticRegression(max_iter=500)),
        ]
    ).fit(data, labels)
    registry = open_registry(load_settings(root))
    version = registry.register(
        model,
        name="sentiment",
        params={},
        metrics={},
        dataset_version=None,
        input_example=data.head(2),
    )
    registry.promote("sentiment", version.version, reason="tests", actor="tests")
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def scratch_tmp(tmp_path: Path) -> Path:
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    return folder


def start_serve(project: Path, tmpdir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    command = [sys.executable, "-m", "loopline", "-C", str(project), "serve", "sentiment"]
    child = subprocess.Popen(
        [*command, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"server exited early: {child.communicate()[1]}")
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return child, url
        except httpx.TransportError:
            time.sleep(0.1)
    child.kill()
    raise AssertionError("server was not ready in time")


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[str]]]:
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


def metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_workers_share_one_set_of_metrics(
    project: Path, scratch_tmp: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    child, url = start_serve(project, scratch_tmp, "--workers", "2", "--no-log")
    stopper.append(child)
    n = 60
    for i in range(n):  # a new connection each time: the kernel spreads them over workers
        response = httpx.post(f"{url}/predict", json={"text": f"I love it {i}"})
        assert response.status_code == 200
    (metrics_dir,) = scratch_tmp.glob("loopline-metrics-*")
    writers = {p.name for p in metrics_dir.glob("counter_*.db")}

    totals = {metric(httpx.get(f"{url}/metrics").text, PREDICT_OK) for _ in range(8)}

    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert totals == {float(n)}  # whichever worker answered /metrics
    assert len(writers) == 2  # both workers served and wrote their counters
    assert "2 workers" in err
    assert not list(scratch_tmp.glob("loopline-metrics-*"))  # removed at exit


def test_sigterm_under_load_loses_no_acknowledged_prediction(
    project: Path, scratch_tmp: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    child, url = start_serve(project, scratch_tmp, "--poll-interval", "0")
    stopper.append(child)
    acknowledged: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post(f"{url}/predict", json={"text": "I love it"})
                except httpx.TransportError:
                    return  # the server stopped accepting
                if response.status_code == 200:
                    acknowledged.append(response.json()["request_id"])
                else:
                    errors.append(response.text)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    stop.set()
    for thread in threads:
        thread.join()

    assert child.returncode == 0, err
    logged = read_predictions(str(project / ".loopline" / "predictions"))
    missing = set(acknowledged) - set(logged["request_id"])
    print(f"{len(acknowledged)} acknowledged, {len(logged)} logged, {len(missing)} missing")
    assert len(acknowledged) > 50
    assert errors == []
    assert missing == set()


def loopline(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", "-C", str(project), "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["sentiment", "--canary", "sentiment@challenger"], "cannot read the canary spec"),
        (["sentiment", "--canary", "sentiment@challenger:200"], "at most 100"),
        (["nosuchmodel"], "no registered model named 'nosuchmodel'"),
        (["sentiment@nosuchalias"], "has no alias 'nosuchalias'"),
    ],
    ids=["canary-spec", "canary-percent", "unknown-model", "unknown-alias"],
)
def test_cli_errors_are_one_line(project: Path, args: list[str], words: str) -> None:
    done = loopline(project, *args, "--port", str(free_port()))

    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_busy_port_is_one_line(project: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        done = loopline(project, "sentiment", "--port", str(sock.getsockname()[1]))

    assert done.returncode == 2
    assert "cannot listen on 127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr
