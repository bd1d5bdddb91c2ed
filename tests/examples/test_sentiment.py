"""The sentiment reference system end to end, on generated and on real data."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopline.config import load_settings
from loopline.core.artifacts import ArtifactStore
from loopline.core.metadata import MetadataStore
from loopline.examples.sentiment.demo import run_demo
from loopline.templates.sentiment import sentiment


def loopline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_demo_runs_the_whole_loop_and_reruns_from_cache(project: Path) -> None:
    settings = load_settings(project)
    summary = run_demo(settings)
    assert summary["data"]["generated"] is True
    assert summary["data"]["dataset_version"] == "tweets:v1"
    assert summary["validation"]["passed"] is True
    assert summary["gate"]["passed"] is True
    assert summary["model"]["version"] == "1" and summary["model"]["promoted"] is True
    assert summary["metrics"]["test"]["accuracy"] > 0.75
    assert summary["metrics"]["held_out"]["accuracy"] > 0.75
    served = summary["serving"]
    assert served["url"].startswith("http://127.0.0.1:")
    assert len(served["predictions"]) == 5
    for answer in served["predictions"]:
        assert answer["label"] in {"negative", "positive"}
        assert answer["model_version"] == "1"
    # The drifted stream is diagnosed, its labels retrain the model, the server follows.
    monitoring = summary["monitoring"]
    assert monitoring["drifted_requests"] > 0
    assert monitoring["diagnosis"]["recommendation"] == "retrain"
    assert "text" in monitoring["diagnosis"]["drifted_features"]
    assert Path(monitoring["report"]).is_file()
    retrained = monitoring["retrain"]
    assert (retrained["version"], retrained["promoted"]) == ("2", True)
    assert retrained["server_followed_to"] == "2"
    # Unchanged inputs: the next demo's pipeline run is that retrain run, all from cache.
    again = run_demo(settings)
    steps = len(sentiment.build(source="x", gold="y").nodes)
    assert again["cache_hits"] == f"{steps}/{steps}"
    assert again["model"]["version"] == "2"
    store = MetadataStore(settings.metadata_url)
    history = store.alias_history("sentiment")
    champion_moves = [e["version"] for e in history if e["alias"] == "champion"]
    assert champion_moves[:2] == ["1", "2"]
    lineage = store.lineage("sentiment", "1")
    steps = {s["step"]: s for s in lineage["steps"]}
    assert {"train", "split", "label", "read_text", "human_labels"} <= set(steps)
    assert steps["label"]["datasets"]["data"] == "tweets:v1"
    assert lineage["run"]["id"] == summary["run_id"]
    shown = loopline("lineage", "sentiment@champion", "--json", cwd=project)
    assert json.loads(shown.stdout)["model"]["dataset_version"] == "tweets:v1"


def test_a_worse_candidate_is_registered_but_not_promoted(project: Path) -> None:
    settings = load_settings(project)
    champion = run_demo(settings)["monitoring"]["retrain"]["champion"]
    from loopline.examples.sentiment.demo import generated_data

    data, held_out = generated_data(settings)
    worse = sentiment.run(settings, source=str(data), gold=str(held_out), C=0.0005)
    decision = worse.load("gate")
    assert decision["passed"] is False
    assert decision["champion_version"] == champion
    registered = worse.load("register")
    assert registered.promoted is False
    assert registered.version == str(int(champion) + 1)
    assert registered.champion == champion


@pytest.mark.postgres
def test_sentiment_pipeline_with_postgresql_metadata(project: Path, postgres_url: str) -> None:
    settings = load_settings(project, metadata_url=postgres_url)
    summary = run_demo(settings)
    assert summary["model"]["promoted"] is True
    store = MetadataStore(postgres_url)
    assert (
        store.current_alias("sentiment", "champion") == summary["monitoring"]["retrain"]["champion"]
    )
    assert store.list_datasets("tweets")[0]["version"] == 1
    assert store.model_version("sentiment", "1")["dataset_version"] == "tweets:v1"
    store.close()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_INPUTS: dict[str, tuple[str, bytes | None, str]] = {
    "missing file": ("missing.csv", None, "not found"),
    "empty file": ("empty.csv", b"", "empty"),
    "wrong columns": ("cols.csv", b"message,sentiment\nhello,positive\nbye,negative\n", "text"),
    "non-utf8 bytes": (
        "latin.csv",
        b"text,label\ncaf\xe9 time,positive\nbad,negative\n",
        "cannot decode",
    ),
    "malformed row": (
        "rows.csv",
        b"text,label\nfine,positive\nbroken,row,negative,extra\nok,negative\n",
        "line",
    ),
    "label outside schema": (
        "labels.csv",
        b"text,label\n"
        + b"".join(f"text {i},positive\n".encode() for i in range(20))
        + b"meh text,meh\n",
        "meh",
    ),
}


def _state(project: Path) -> tuple[list[str], str]:
    settings = load_settings(project)
    assert settings.artifact_root
    hashes = ArtifactStore(settings.artifact_root).list_hashes()
    models = loopline("models", "list", "--json", cwd=project)
    return hashes, models.stdout


def test_bad_inputs_fail_clearly_and_change_nothing(project: Path) -> None:
    first = loopline("demo", "sentiment", "--json", cwd=project)
    assert first.returncode == 0, first.stderr
    before = _state(project)
    for case, (name, content, expected) in BAD_INPUTS.items():
        path = project / name
        if content is not None:
            _write(path, content)
        done = loopline("run", "sentiment", "--param", f"source={path}", cwd=project)
        assert done.returncode == 2, f"{case}: {done.stderr}"
        assert expected in done.stderr, f"{case}: {done.stderr}"
        assert "Traceback" not in done.stderr, case
        assert _state(project) == before, f"{case} changed the stores"


def test_serve_with_unknown_model_or_alias_is_a_clear_error(project: Path) -> None:
    assert loopline("demo", "sentiment", "--json", cwd=project).returncode == 0
    for ref, expected in (("nosuch@champion", "nosuch"), ("sentiment@staging", "staging")):
        done = loopline("serve", ref, "--port", "0", cwd=project)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr


def _sentiment140_subset(shared_data: Path, target: Path, per_class: int) -> Path:
    rows: list[dict[str, Any]] = []
    folder = shared_data / "sentiment" / "sentiment140_train_sample"
    for label in ("negative", "positive"):
        with gzip.open(folder / f"{label}_tweets_50k.txt.gz", "rt", encoding="utf-8") as handle:
            for _, line in zip(range(per_class), handle, strict=False):
                rows.append({"text": line.rstrip("\n"), "label": label})
    pd.DataFrame(rows).to_csv(target, index=False)
    return target


def _completed_steps(db: Path) -> set[str]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT step FROM step_runs WHERE status = 'completed'")
            return {r[0] for r in rows.fetchall()}
    except sqlite3.OperationalError:  # the runner is still creating the tables
        return set()


def test_sigkill_during_training_then_rerun_resumes(project: Path, shared_data: Path) -> None:
    data = _sentiment140_subset(shared_data, project / "tweets.csv", per_class=20_000)
    cmd = [sys.executable, "-m", "loopline", "run", "sentiment", "--param", f"source={data}"]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = project / ".loopline" / "metadata.db"
    deadline = time.monotonic() + 300
    while "split" not in _completed_steps(db):
        assert proc.poll() is None, "the run ended before training started"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # inside train now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "train" not in _completed_steps(db)
    runs = loopline("runs", "list", "--json", cwd=project)
    assert json.loads(runs.stdout)[0]["status"] == "killed"
    done = loopline("run", "sentiment", "--param", f"source={data}", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    steps = {k: v["status"] for k, v in json.loads(done.stdout)["steps"].items()}
    assert steps["read_text"] == steps["label"] == steps["split"] == "cached"
    assert steps["train"] == "completed" and steps["register"] == "completed"


@pytest.mark.slow
def test_trained_on_sentiment140_reaches_80_percent_on_vader_gold(
    project: Path, shared_data: Path
) -> None:
    sentiment_dir = shared_data / "sentiment"
    result = sentiment.run(
        load_settings(project),
        source=str(sentiment_dir / "sentiment140_train_sample"),
        gold=str(sentiment_dir / "vader" / "tweets_GroundTruth.txt"),
    )
    gold = result.load("evaluate_2")
    assert gold["n"] == 2824 + 1268
    assert gold["accuracy"] >= 0.80


def test_audit_queues_items_and_human_labels_flow_into_the_next_run(project: Path) -> None:
    from loopline.examples.sentiment.demo import generated_data
    from loopline.label.queue import LabelQueue

    settings = load_settings(project)
    summary = run_demo(settings)
    assert summary["audit"]["queued"] > 0
    store = MetadataStore(settings.metadata_url)
    queue = LabelQueue(store, "sentiment")
    task = queue.next_task("alice")
    assert task is not None and task.source == "noise_audit"
    flipped = "negative" if task.payload.get("given_label") == "positive" else "positive"
    queue.submit(task.id, "alice", flipped)

    data, held_out = generated_data(settings)
    result = sentiment.run(settings, source=str(data), gold=str(held_out))
    assert result.steps["read_text"].status == "cached"
    assert result.steps["human_labels"].status == "completed"
    assert result.steps["label"].status == "completed"
    labelled = result.load("label", "labelled").set_index("text")
    assert labelled.loc[task.text, "label_source"] == "human"
    assert labelled.loc[task.text, "label"] == flipped
    assert result.steps["human_labels"].dataset_version == 2
