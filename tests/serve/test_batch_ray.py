"""``loopline predict --engine ray``: Ray Data over Parquet shards of real tweets gives the
single-process path's answers, row for row, with the model version on every row.

The model is a TF-IDF + logistic regression trained on Sentiment140 tweets and registered in
the project's MLflow registry; the shards hold other tweets of the same sample (a few blanked,
which both paths leave unscored).
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
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.config import load_settings
from loopline.registry.project import open_registry
from loopline.train.model import fit_model

pytest.importorskip("ray.data")

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

# Runs the CLI in a fresh process and says whether Ray was imported along the way.
CLI = """
import sys
from loopline.cli import main
try:
    main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print("ray imported" if "ray" in sys.modules else "ray not imported", file=sys.stderr)
"""


def tweets(folder: Path, name: str, start: int, stop: int) -> list[str]:
    with gzip.open(folder / f"{name}_tweets_50k.txt.gz", "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle][start:stop]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose registry holds sentiment version 1 (champion), and 4 Parquet shards
    of 3,000 tweets each that the model has not seen."""
    data = SHARED / "sentiment" / "sentiment140_train_sample"
    if not data.is_dir():
        pytest.skip(f"shared data not found at {data}")
    root = tmp_path_factory.mktemp("ray-batch")
    train = pd.DataFrame(
        {
            "text": tweets(data, "positive", 0, 3000) + tweets(data, "negative", 0, 3000),
            "label": ["positive"] * 3000 + ["negative"] * 3000,
        }
    )
    words = ColumnTransformer([("tfidf", TfidfVectorizer(min_df=2), "text")])
    model = fit_model(
        train,
        Pipeline([("words", words), ("lr", LogisticRegression(max_iter=300))]),
        features=["text"],
        target="label",
    )
    registry = open_registry(load_settings(root))
    version = registry.register(
        model,
        name="sentiment",
        params={},
        metrics={},
        dataset_version=None,
        input_example=train[["text"]].head(3),
    )
    registry.promote("sentiment", version.version, reason="test", actor="test")
    unseen = tweets(data, "positive", 10_000, 16_000) + tweets(data, "negative", 10_000, 16_000)
    frame = pd.DataFrame({"id": range(len(unseen)), "text": unseen})
    frame.loc[frame["id"] % 997 == 0, "text"] = "   "  # blank: kept, not scored
    shards = root / "shards"
    shards.mkdir()
    for number, part in enumerate(range(0, len(frame), 3000)):
        frame.iloc[part : part + 3000].to_parquet(shards / f"part-{number}.parquet", index=False)
    return root


def predict(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "predict", "sentiment", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        timeout=300,
        check=False,
    )


def test_ray_data_scores_the_shards_exactly_as_the_single_process_path(project: Path) -> None:
    single = predict(project, "shards", "single.parquet", "--json")
    assert single.returncode == 0, single.stderr
    assert "ray not imported" in single.stderr
    on_ray = predict(
        project, "shards", "scored", "--engine", "ray", "--concurrency", "2",
        "--chunk-rows", "1000", "--json",
    )  # fmt: skip
    assert on_ray.returncode == 0, on_ray.stderr
    summary = json.loads(on_ray.stdout)
    assert (summary["rows"], summary["model_version"]) == (12_000, "1")
    assert summary["rows_empty"] == json.loads(single.stdout)["rows_empty"] == 13

    expected = pd.read_parquet(project / "single.parquet").sort_values("id", ignore_index=True)
    got = pd.read_parquet(project / "scored").sort_values("id", ignore_index=True)
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected)
    assert set(got["model_version"]) == {"1"} and set(got["model_name"]) == {"sentiment"}
    assert got["prediction"].isna().sum() == 13
    # The predictions are the model's, not a constant: both classes, mostly right.
    truth = (got["id"] < 6000).map({True: "positive", False: "negative"})
    scored = got["prediction"].notna()
    assert (got.loc[scored, "prediction"] == truth[scored]).mean() > 0.7
    assert not list(project.glob(".scored.tmp-*"))


def test_the_ray_engine_refuses_csv_and_an_existing_output(project: Path) -> None:
    pd.DataFrame({"text": ["fine"]}).to_csv(project / "in.csv", index=False)
    refused = predict(project, "in.csv", "out", "--engine", "ray")
    assert refused.returncode != 0
    assert "the Ray engine reads Parquet" in refused.stderr
    assert "Traceback" not in refused.stderr
    (project / "taken").mkdir()
    (project / "taken" / "x.parquet").write_bytes(b"")
    taken = predict(project, "shards", "taken", "--engine", "ray")
    assert taken.returncode != 0 and "already exists" in taken.stderr
    assert not (project / "out").exists()
