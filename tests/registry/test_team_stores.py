"""A team's stores end to end: PostgreSQL metadata, an S3 API artifact store (moto's
server) and an MLflow tracking server process (PostgreSQL backend, artifacts proxied into
S3). A pipeline runs, registers and serves batch predictions through them, and a second
project pointing at the same stores (a team mate's checkout) sees the same runs, model and
cache.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _team_stores import BUCKET, PIPELINE, TeamStores

from loopline.config import load_settings
from loopline.core.artifacts import ArtifactStore
from loopline.core.metadata import MetadataStore

pytestmark = pytest.mark.postgres


def loopline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``loopline`` command in ``cwd``, with the team's AWS variables in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
        check=False,
    )


def spam_project(root: Path, stores: TeamStores, data: Path) -> Path:
    """A project whose pipeline trains the spam model, configured for the team stores."""
    root.mkdir()
    (root / "pipeline.py").write_text(PIPELINE)
    stores.configure(
        root,
        "pipelines:\n  spam: pipeline.py:spam\n"
        f"params:\n  spam:\n    source: {data / 'spam_youtube'}\n",
    )
    return root


def test_a_pipeline_runs_registers_and_predicts_on_the_team_stores(
    team_stores: TeamStores, tmp_path: Path, shared_data: Path
) -> None:
    alice = spam_project(tmp_path / "alice", team_stores, shared_data)
    done = loopline("run", "spam", "--json", cwd=alice)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["status"] == "completed"

    # Metadata: the run and its steps are in PostgreSQL, not in a local SQLite file.
    assert not (alice / ".loopline" / "metadata.db").exists()
    store = MetadataStore(team_stores.metadata_url, create=False)
    try:
        recorded = store.get_run(first["run_id"])
        assert {s["step"] for s in recorded["steps"]} >= {"train", "gate", "register"}
        history = store.alias_history("spam")
    finally:
        store.close()
    assert [(e["alias"], e["version"]) for e in history] == [("champion", "1")]

    # Artifacts: every step output is a complete artifact in the S3 bucket.
    artifacts = ArtifactStore(team_stores.artifact_root)
    outputs = {h for step in first["steps"].values() for h in step["outputs"].values()}
    assert outputs <= set(artifacts.list_hashes())
    model_hash = first["steps"]["train"]["outputs"]["output"]
    assert f"artifacts/{model_hash[:2]}/{model_hash}/meta.json" in team_stores.s3_keys("artifacts/")
    assert not team_stores.s3_keys("artifacts/.tmp/")  # nothing staged is left behind

    # MLflow: the version lives on the tracking server, its files in S3 through the proxy.
    listed = loopline("models", "list", "--json", cwd=alice)
    assert listed.returncode == 0, listed.stderr
    versions = json.loads(listed.stdout)
    assert [(v["name"], v["version"], v["aliases"]) for v in versions] == [
        ("spam", "1", ["champion"])
    ]
    mlmodels = [k for k in team_stores.s3_keys("mlflow/") if k.endswith("/MLmodel")]
    assert len(mlmodels) == 1
    assert not (alice / ".loopline" / "mlruns").exists()

    # A team mate's checkout: same stores, so the same run is a full cache hit, and batch
    # prediction loads the champion from the server.
    bob = spam_project(tmp_path / "bob", team_stores, shared_data)
    again = loopline("run", "spam", "--json", cwd=bob)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert {s["status"] for s in second["steps"].values()} == {"cached"}
    texts = pd.DataFrame({"id": [1, 2], "text": ["check out my channel!!!", "love this song"]})
    texts.to_parquet(bob / "in.parquet")
    scored = loopline("predict", "spam", "in.parquet", "out.parquet", "--json", cwd=bob)
    assert scored.returncode == 0, scored.stderr
    out = pd.read_parquet(bob / "out.parquet")
    assert list(out["model_version"]) == ["1", "1"]
    assert list(out["prediction"]) == ["spam", "ham"]
    assert load_settings(bob).artifact_root == f"s3://{BUCKET}/artifacts"


def sentiment_project(root: Path, stores: TeamStores, data: Path) -> Path:
    """The sentiment template on 1,500 Sentiment140 tweets of each class, on the team stores."""
    root.mkdir()
    rows = []
    folder = data / "sentiment" / "sentiment140_train_sample"
    for label in ("negative", "positive"):
        with gzip.open(folder / f"{label}_tweets_50k.txt.gz", "rt", encoding="utf-8") as handle:
            rows += [
                {"text": line.rstrip("\n"), "label": label}
                for _, line in zip(range(1500), handle, strict=False)
            ]
    pd.DataFrame(rows).to_csv(root / "tweets.csv", index=False)
    stores.configure(
        root,
        "pipelines:\n  sentiment: loopline.templates.sentiment:sentiment\n"
        f"params:\n  sentiment:\n    source: {root / 'tweets.csv'}\n    audit_rows: 300\n",
    )
    return root


def test_the_sentiment_pipeline_on_ray_gives_the_thread_runs_hashes_then_a_full_cache_hit(
    team_stores: TeamStores, tmp_path: Path, shared_data: Path
) -> None:
    pytest.importorskip("ray")
    root = sentiment_project(tmp_path / "carol", team_stores, shared_data)
    threads = loopline("run", "sentiment", "--executor", "threads", "--json", cwd=root)
    assert threads.returncode == 0, threads.stderr
    on_threads = json.loads(threads.stdout)
    # Every step again, as Ray tasks (the cache would otherwise answer them all).
    ray = loopline("run", "sentiment", "--executor", "ray", "--no-cache", "--json", cwd=root)
    assert ray.returncode == 0, ray.stderr
    on_ray = json.loads(ray.stdout)
    assert {s["status"] for s in on_ray["steps"].values()} == {"completed"}
    # The same bytes from every step whose output is a function of its inputs, the trained
    # model included. Not so for four: a profile records its creation time (two thread runs
    # differ the same way: compared without it below); audit, gate and register act on the
    # world the first run changed (the review queue holds the rows audit flags, version 1
    # is champion).
    differ = {"profile", "audit", "gate", "register"}
    assert differ < set(on_threads["steps"])
    for name, step in on_threads["steps"].items():
        if name not in differ:
            assert on_ray["steps"][name]["outputs"] == step["outputs"], name
    artifacts = ArtifactStore(team_stores.artifact_root)
    profiles = [
        artifacts.load(run["steps"]["profile"]["outputs"]["output"]) for run in (on_threads, on_ray)
    ]
    assert profiles[0].pop("created_at") != profiles[1].pop("created_at")
    assert profiles[0] == profiles[1]
    first, second = on_threads["models"][0], on_ray["models"][0]
    assert (first["version"], first["new"], first["promoted"]) == ("1", True, True)
    assert (second["version"], second["new"]) == ("1", False)  # the same recipe: reused

    store = MetadataStore(team_stores.metadata_url, create=False)
    try:
        steps = store.get_run(on_ray["run_id"])["steps"]
    finally:
        store.close()
    assert all(s["worker"] for s in steps), "each step ran as a Ray task, with its worker"

    again = loopline("run", "sentiment", "--executor", "ray", "--json", cwd=root)
    assert again.returncode == 0, again.stderr
    assert {s["status"] for s in json.loads(again.stdout)["steps"].values()} == {"cached"}
