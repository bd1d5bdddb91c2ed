"""The step cache, end to end through `loopline run`: what re-runs after which edit.

Each run is a fresh process, as a user's would be, so an edited helper module is really
re-imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PIPELINE = """
from loopline import pipeline, step


@step
def load(n: int) -> list:
    return list(range(n))


@step
def transform(values: list) -> list:
    from helpers import scale  # imported inside the step: the case the key used to miss

    return [scale(v) for v in values]


@step
def total(values: list) -> int:
    return sum(values)


@step
def fit(values: list) -> float:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[v] for v in values], values)
    return float(model.coef_[0])


@pipeline
def numbers(n: int = 5) -> None:
    values = transform(load(n))
    total(values)
    fit(values)
"""

SITECUSTOMIZE = """
import os

fake = os.environ.get("FAKE_SKLEARN_VERSION")
if fake:
    import loopline.core.fingerprint as fingerprint

    real = fingerprint.distribution_version

    def patched(dist: str) -> str | None:
        return fake if dist == "scikit-learn" else real(dist)

    fingerprint.distribution_version = patched
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "helpers.py").write_text(
        "from deep import FACTOR\n\n\ndef scale(v):\n    return v * FACTOR\n"
    )
    (root / "deep.py").write_text("FACTOR = 2\n")
    (root / "unrelated.py").write_text("X = 1\n")
    (root / "loopline.yaml").write_text("pipelines:\n  numbers: pipeline.py:numbers\n")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    return root


def run(project: Path, fake_sklearn: str | None = None) -> dict[str, str]:
    env = {"PYTHONPATH": str(project.parent / "site")}
    if fake_sklearn:
        env["FAKE_SKLEARN_VERSION"] = fake_sklearn
    import os

    done = subprocess.run(
        [sys.executable, "-m", "loopline", "run", "numbers", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {name: s["status"] for name, s in json.loads(done.stdout)["steps"].items()}


ALL_CACHED = {"load": "cached", "transform": "cached", "total": "cached", "fit": "cached"}


def test_editing_a_helper_imported_inside_a_step_reruns_it_and_its_descendants(
    project: Path,
) -> None:
    assert set(run(project).values()) == {"completed"}
    assert run(project) == ALL_CACHED
    (project / "helpers.py").write_text(
        "from deep import FACTOR\n\n\ndef scale(v):\n    return v * FACTOR + 1\n"
    )
    assert run(project) == {
        "load": "cached",
        "transform": "completed",
        "total": "completed",
        "fit": "completed",
    }
    # A module the helper imports (transitively) counts too.
    (project / "deep.py").write_text("FACTOR = 3\n")
    assert run(project)["transform"] == "completed"


def test_editing_an_unrelated_file_is_a_full_cache_hit(project: Path) -> None:
    run(project)
    (project / "unrelated.py").write_text("X = 2\n")
    (project / "notes.txt").write_text("new file\n")
    assert run(project) == ALL_CACHED


def test_another_scikit_learn_version_is_another_key(project: Path) -> None:
    run(project)
    assert run(project) == ALL_CACHED
    changed = run(project, fake_sklearn="0.0.1-other")
    # Every step's output may depend on scikit-learn through Loopline itself, so every key
    # changes; the outputs are identical, so the steps after them find their inputs unchanged.
    assert changed["load"] == "completed" and changed["fit"] == "completed"
