"""`loopline predict-remote` against a real server shows each answer's request id.

The request id is what ``POST /feedback`` takes, so the command must show it, in the
table and in ``--json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import RunningServer, start_in_thread

TEXTS = ["I love this, wonderful", "I hate this, awful"]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    good, bad = ["love", "great", "wonderful"], ["hate", "awful", "sad"]
    rows = [(f"I {good[i % 3]} this {i}", "positive") for i in range(30)]
    rows += [(f"I {bad[i % 3]} this {i}", "negative") for i in range(30)]
    data = pd.DataFrame(rows, columns=["text", "label"])
    model = Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", TfidfVectorizer(), "text")])),
            ("classifier", LogisticRegression()),
        ]
    ).fit(data[["text"]], data["label"])
    info = ModelVersionInfo("sentiment", "7", None, ["champion"], {}, None, None, {})
    loaded = LoadedModel(info, model, ["text"], [str(c) for c in model.classes_])
    with start_in_thread(loaded) as running:
        yield running


def predict_remote(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "loopline", "predict-remote", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_json_answers_carry_the_request_id(server: RunningServer, tmp_path: Path) -> None:
    done = predict_remote(server.url, *TEXTS, "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert [a["text"] for a in answers] == TEXTS
    ids = [a["request_id"] for a in answers]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)
    assert {a["model_version"] for a in answers} == {"7"}
    assert {a["route"] for a in answers} == {"champion"}


def test_the_table_shows_the_request_id(server: RunningServer, tmp_path: Path) -> None:
    done = predict_remote(server.url, TEXTS[0], cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "request" in done.stdout
    body = [line for line in done.stdout.splitlines() if TEXTS[0] in line]
    assert len(body) == 1
    cells = [c.strip() for c in body[0].split("│") if c.strip()]
    # text, label, p, version, request id, latency
    assert cells[3] == "7"
    assert len(cells) == 6 and cells[4] not in ("", "-")
