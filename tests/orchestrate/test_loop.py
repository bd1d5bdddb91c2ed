"""The whole loop without a person: serve, drift, alert, retrain, promote, follow, roll back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from loopline.config import load_settings
from loopline.core.metadata import MetadataStore
from loopline.core.predlog import read_predictions
from loopline.examples.sentiment.synthetic import generate_tweets
from loopline.orchestrate.watch import Watcher
from loopline.registry.project import open_registry
from loopline.serve.server import ServeConfig, build_app, start_in_thread
from loopline.templates.sentiment import sentiment


def send(url: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One request per row, then its true label as feedback (labels arrive later)."""
    answers = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for text in frame["text"]:
            answer = client.post("/predict", json={"text": text})
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        for answer, label in zip(answers, frame["label"], strict=True):
            sent = client.post(
                "/feedback", json={"request_id": answer["request_id"], "label": label}
            )
            assert sent.status_code == 201, sent.text
    return answers


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def served_version(url: str) -> str:
    return str(httpx.get(f"{url}/model", timeout=5).json()["version"])


def test_serve_drift_alert_retrain_follow_then_automatic_rollback(project: Path) -> None:
    early = project / "early.csv"
    generate_tweets(3000, seed=0).to_csv(early, index=False)
    settings = load_settings(
        project,
        monitoring={
            "rules": [
                {
                    "name": "accuracy-drop",
                    "model": "sentiment",
                    "metric": "accuracy",
                    "op": "<",
                    "threshold": 0.8,
                    "window": "200",
                    "min_rows": 100,
                    "actions": ["log", "retrain"],
                    "cooldown_s": 3600,
                }
            ],
            "retrain": {"pipeline": "sentiment", "params": {"source": str(early), "audit_rows": 0}},
            "auto_rollback": [
                {"model": "sentiment", "metric": "accuracy", "margin": 0.05, "min_labels": 100}
            ],
        },
    )
    store = MetadataStore(settings.metadata_url or "")
    registry = open_registry(settings, store)
    first = sentiment.run(settings, source=str(early), audit_rows=0)
    assert first.load("register").promoted is True

    config = ServeConfig(
        model="sentiment@champion", project_root=str(project), options={"poll_interval_s": 0.2}
    )
    server = start_in_thread(build_app(config))
    try:
        # Drifted traffic (a later period: new slang, sarcasm), with true labels as feedback.
        late = generate_tweets(900, seed=7, period="late")
        answers = send(server.url, late.iloc[:250])
        assert {a["model_version"] for a in answers} == {"1"}
        log_url = settings.prediction_log_url or ""
        wait_for(lambda: len(read_predictions(log_url, "sentiment")) >= 250, "the log flush")

        watcher = Watcher(settings, store, on_drift=True)
        events = watcher.run_once()
        alert = next(e for e in events if e.get("rule") == "accuracy-drop")
        retrained = next(a for a in alert["actions"] if a["action"] == "retrain")
        assert retrained["status"] == "done", retrained
        assert (retrained["version"], retrained["promoted"]) == ("2", True)
        wait_for(lambda: served_version(server.url) == "2", "the server to follow v2")

        # v2 serves the same kind of traffic well.
        assert {a["model_version"] for a in send(server.url, late.iloc[250:500])} == {"2"}

        # A deliberately worse v3 (trained on shuffled labels) is promoted by hand ...
        from loopline.train.text import train_text_classifier

        noisy = pd.read_csv(early).assign(
            label=lambda d: d["label"].sample(frac=1, random_state=1).to_numpy()
        )
        bad = registry.register(
            train_text_classifier(noisy),
            name="sentiment",
            params={},
            metrics={},
            dataset_version="shuffled",
            input_example=noisy[["text"]].head(2),
        )
        registry.promote("sentiment", bad.version, reason="manual: try v3", actor="test")
        wait_for(lambda: served_version(server.url) == "3", "the server to follow v3")
        send(server.url, late.iloc[500:750])
        wait_for(lambda: len(read_predictions(log_url, "sentiment")) >= 750, "the log flush")

        # ... and the automatic rollback returns to v2, which the server follows.
        rolled = next(e for e in watcher.run_once() if e.get("trigger") == "auto_rollback")
        assert (rolled["rolled_back_from"], rolled["champion"]) == ("3", "2")
        wait_for(lambda: served_version(server.url) == "2", "the server to follow the rollback")
    finally:
        server.stop()

    history = [(e["alias"], e["version"], e["reason"]) for e in store.alias_history("sentiment")]
    champion_moves = [(v, r) for alias, v, r in history if alias == "champion"]
    assert [v for v, _ in champion_moves] == ["1", "2", "3", "2"]
    assert champion_moves[0][1].startswith("gate passed")
    assert champion_moves[1][1].startswith("gate passed")
    assert champion_moves[2][1] == "manual: try v3"
    assert champion_moves[3][1].startswith("automatic rollback: live accuracy of v3")
    kinds = {(a["rule"], a["action"], a["status"]) for a in store.alerts("sentiment")}
    assert ("accuracy-drop", "retrain", "done") in kinds
    assert ("auto_rollback", "rollback", "done") in kinds
