"""A model trained again from the same data, code and parameters is the same model.

`loopline run --no-cache` twice on unchanged inputs used to register (and promote, on a
tie) a second version, because the pickled model's bytes differ between processes (a
CountVectorizer keeps its stop words in a set, whose order follows the hash seed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PIPELINE = """
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline

from loopline import pipeline, step
from loopline.steps import evaluate, gate, read_table, register, split, train


@step
def comments(table: pd.DataFrame) -> pd.DataFrame:
    labels = table["CLASS"].map({0: "ham", 1: "spam"})
    return pd.DataFrame({"text": table["CONTENT"], "label": labels, "author": table["AUTHOR"]})


@pipeline
def spam(source: str) -> None:
    data = comments(read_table(source, dataset="comments"))
    train_df, test_df = split(data, by="group", group="author", test_size=0.25)
    words = ColumnTransformer([("words", CountVectorizer(min_df=2, max_df=0.5), "text")])
    model = train(train_df, model=Pipeline([("words", words), ("nb", MultinomialNB())]),
                  features=["text"], target="label")
    metrics = evaluate(model, test_df)
    register(model, gate(model, test_df, metrics, model_name="spam"), example=test_df)
"""


def loopline(*args: str, cwd: Path, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        timeout=600,
        check=False,
    )


def test_retraining_from_the_same_recipe_reuses_the_version(
    tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    (tmp_path / "loopline.yaml").write_text(
        "pipelines:\n  spam: pipeline.py:spam\n"
        f"params:\n  spam:\n    source: {shared_data / 'spam_youtube'}\n"
    )
    runs = []
    for seed in ("1", "2"):  # another process, another set order
        done = loopline("run", "spam", "--no-cache", "--json", cwd=tmp_path, hash_seed=seed)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    trained = [run["steps"]["train"]["outputs"]["output"] for run in runs]
    # Another process, another hash seed: the same bytes (no save time, uuid or set order
    # in the stored model), and one registered version.
    assert trained[0] == trained[1]
    versions = json.loads(loopline("models", "list", "--json", cwd=tmp_path).stdout)
    assert [v["version"] for v in versions] == ["1"]
    history = json.loads(loopline("models", "history", "spam", "--json", cwd=tmp_path).stdout)
    assert [(e["alias"], e["version"]) for e in history] == [("champion", "1")]
