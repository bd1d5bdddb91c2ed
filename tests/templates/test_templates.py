"""The three starter templates (and a PyTorch model) through the whole loop, as a user runs it.

Each project is made with `loopline init --template ... --data <real data>`, trained with
`loopline run`, served with `loopline serve` on a real port, sent real rows and their true
labels, and checked with `loopline monitor report`: text (scikit-learn), tabular gradient
boosting (LightGBM) and a small PyTorch network go through the same library steps.
"""

from __future__ import annotations

import gzip
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from loopline.templates import TEMPLATES

HERE = Path(__file__).parent


def loopline(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_files_are_short_and_use_only_the_library(name: str) -> None:
    text = TEMPLATES[name].pipeline_file.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 60
    assert "loopline.examples" not in text
    assert "cache_extra" not in text
    assert re.search(r"^from loopline\.steps import", text, re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """`loopline serve` in a child process; stopped with SIGTERM (the log is flushed)."""

    def __init__(self, project: Path, model: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.child = subprocess.Popen(
            [sys.executable, "-m", "loopline", "serve", model, "--port", port],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.child.poll() is None, self.child.communicate()[1]
            assert time.monotonic() < deadline, "server not ready"
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            self.child.communicate(timeout=60)


def serve_score_and_monitor(
    project: Path, model_name: str, rows: list[dict[str, Any]], labels: list[str]
) -> dict[str, Any]:
    served = Served(project, f"{model_name}@champion")
    try:
        answers = []
        with httpx.Client(base_url=served.url, timeout=30) as client:
            for row, label in zip(rows, labels, strict=True):
                answer = client.post("/predict", json=row)
                assert answer.status_code == 200, answer.text
                answers.append(answer.json())
                feedback = {"request_id": answers[-1]["request_id"], "label": label}
                assert client.post("/feedback", json=feedback).status_code == 201
            batch = client.post("/predict", json={"inputs": rows[:3]})
            assert batch.status_code == 200 and len(batch.json()["predictions"]) == 3
    finally:
        served.stop()
    assert {a["model_version"] for a in answers} == {"1"}
    report = loopline("monitor", "report", model_name, "--window", "100", "--json", cwd=project)
    assert report.returncode == 0, report.stderr
    return {"answers": answers, "report": json.loads(report.stdout)}


def run_pipeline(project: Path, name: str) -> dict[str, Any]:
    done = loopline("run", name, "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed"
    models = json.loads(loopline("models", "list", "--json", cwd=project).stdout)
    assert [(m["version"], m["aliases"]) for m in models] == [("1", ["champion"])]
    again = json.loads(loopline("run", name, "--json", cwd=project).stdout)
    assert again["cache_hits"] == len(again["steps"])  # nothing changed: all from cache
    return summary


def check_report(report: dict[str, Any], feature: str, n: int) -> None:
    text = json.dumps(report)
    assert feature in text  # the input is compared with its reference profile
    assert '"n_labeled": ' + str(n) in text or f'"n_labeled": {n}' in text


@pytest.fixture
def init(tmp_path: Path) -> Iterator[Any]:
    def make(template: str, data: Path, name: str = "project") -> Path:
        project = tmp_path / name
        done = loopline("init", str(project), "--template", template, "--data", str(data),
                        cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return project

    yield make


def sentiment140_rows(shared_data: Path, per_class: int, skip: int = 0) -> pd.DataFrame:
    rows = []
    folder = shared_data / "sentiment" / "sentiment140_train_sample"
    for label in ("negative", "positive"):
        with gzip.open(folder / f"{label}_tweets_50k.txt.gz", "rt", encoding="utf-8") as handle:
            lines = [
                line.rstrip("\n") for _, line in zip(range(skip + per_class), handle, strict=False)
            ]
        rows += [{"text": text, "label": label} for text in lines[skip:]]
    return pd.DataFrame(rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_new_project_on_generated_data_ends_with_a_champion(name: str, tmp_path: Path) -> None:
    """What a new user sees first: `init` without --data, then `run`: a served champion,
    not a model that fails the template's own gate."""
    done = loopline("init", "project", "--template", name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_pipeline(tmp_path / "project", name)


@pytest.mark.slow
def test_sentiment_template_on_real_tweets(init: Any, shared_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "tweets.csv"
    sentiment140_rows(shared_data, 3_000).to_csv(data, index=False)
    project = init("sentiment", data)
    run_pipeline(project, "sentiment")
    unseen = sentiment140_rows(shared_data, 100, skip=3_000).sample(frac=1, random_state=0)
    result = serve_score_and_monitor(
        project, "sentiment", [{"text": t} for t in unseen["text"]], list(unseen["label"])
    )
    accuracy = (
        pd.Series([a["prediction"]["label"] for a in result["answers"]]) == unseen["label"].values
    ).mean()
    assert accuracy > 0.65
    check_report(result["report"], "text", len(unseen))


@pytest.mark.slow
def test_spam_template_on_the_youtube_comments(init: Any, shared_data: Path) -> None:
    project = init("spam", shared_data / "spam_youtube")
    summary = run_pipeline(project, "spam")
    assert summary["steps"]["label"]["status"] == "completed"
    comments = pd.read_csv(shared_data / "spam_youtube" / "Youtube05-Shakira.csv").head(120)
    labels = comments["CLASS"].map({0: "ham", 1: "spam"})
    result = serve_score_and_monitor(
        project, "spam", [{"text": t} for t in comments["CONTENT"]], list(labels)
    )
    predicted = [a["prediction"]["label"] for a in result["answers"]]
    assert (pd.Series(predicted) == labels.values).mean() > 0.8
    check_report(result["report"], "text", len(comments))


def fraud_subset(shared_data: Path, target: Path, until: str = "2018-05-16") -> Path:
    """April and the first half of May: a month and a half, enough history for the 30-day
    features and a few hundred frauds to learn from."""
    folder = shared_data / "fraud" / "fraud_handbook_simulated"
    months = [pd.read_csv(folder / f"transactions_2018-0{m}.csv.gz") for m in (4, 5)]
    frame = pd.concat(months, ignore_index=True)
    frame[frame["TX_DATETIME"] < until].to_csv(target, index=False)
    return target


def fraud_rows(project: Path, source: Path, n: int) -> tuple[list[dict[str, Any]], list[str]]:
    from loopline.templates.tabular import FEATURES, features

    tx = features.fn(pd.read_csv(source)).tail(n)
    rows = [
        {k: (int(v) if k.startswith("TX_DURING") else float(v)) for k, v in row.items()}
        for row in tx[FEATURES].to_dict("records")
    ]
    return rows, [str(v) for v in tx["TX_FRAUD"]]


@pytest.mark.slow
def test_tabular_template_on_the_fraud_handbook_data(
    init: Any, shared_data: Path, tmp_path: Path
) -> None:
    data = fraud_subset(shared_data, tmp_path / "transactions.csv")
    project = init("tabular", data)
    run_pipeline(project, "tabular")
    lineage = json.loads(loopline("lineage", "fraud", "--json", cwd=project).stdout)
    assert lineage["model"]["dataset_version"] == "transactions:v1"
    rows, labels = fraud_rows(project, data, 300)
    result = serve_score_and_monitor(project, "fraud", rows, labels)
    assert all(set(a["prediction"]["probabilities"]) == {"0", "1"} for a in result["answers"])
    check_report(result["report"], "TX_AMOUNT", len(rows))


@pytest.mark.slow
def test_a_pytorch_model_goes_through_the_same_steps(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data = fraud_subset(shared_data, tmp_path / "transactions.csv")
    project = tmp_path / "torch-project"
    project.mkdir()
    (project / "pipeline.py").write_text((HERE / "torch_pipeline.py").read_text())
    (project / "loopline.yaml").write_text(
        f"pipelines:\n  mlp: pipeline.py:mlp\nparams:\n  mlp:\n    source: {data}\n"
    )
    run_pipeline(project, "mlp")
    lineage = json.loads(loopline("lineage", "fraud-mlp", "--json", cwd=project).stdout)
    assert lineage["model"]["dataset_version"] == "transactions:v1"
    rows, labels = fraud_rows(project, data, 300)
    result = serve_score_and_monitor(project, "fraud-mlp", rows, labels)
    assert all(set(a["prediction"]["probabilities"]) == {"0", "1"} for a in result["answers"])
    check_report(result["report"], "TX_AMOUNT", len(rows))
