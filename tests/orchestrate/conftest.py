"""A Loopline project that is also a git + DVC repository, as DVC's users keep one.

Its tweets live in ``data/tweets/`` (CSV files of generated tweets), ``dvc add``-ed and
pushed to a local remote; ``pipeline.py`` versions the folder (DVC's hash and the git
revision), reads it, trains, gates and registers. The repository is made once per session
with the real ``git`` and ``dvc`` commands and copied for each test that changes it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from _git_dvc import sh

PIPELINE = '''\
"""Tweets kept in a DVC-tracked folder: versioned, read, trained, gated, registered."""

from pathlib import Path

import pandas as pd

from loopline import pipeline, step
from loopline.data.dvc import FolderVersion
from loopline.steps import evaluate, gate, profile, register, split, train, version_images
from loopline.train.text import TextClassifierParams


@step
def read_tweets(folder: FolderVersion) -> pd.DataFrame:
    """Every CSV file of the folder in name order: its content, not where it was read."""
    files = sorted(Path(folder.path).glob("*.csv"))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


@pipeline
def tweets(source: str = "data/tweets", model_name: str = "tweets", seed: int = 0) -> None:
    """Train a tweet sentiment model from the DVC-tracked folder; the gate decides."""
    data = read_tweets(version_images(source, dataset="tweets"))
    train_df, test_df = split(data, by="stratified", label="label", test_size=0.25, seed=seed)
    model = train(train_df, model=TextClassifierParams(seed=seed), features=["text"],
                  target="label")  # fmt: skip
    metrics = evaluate(model, test_df)
    # New data decides: any model reaching 0.6 macro-F1 on its test set replaces the champion.
    decision = gate(model, test_df, metrics, model_name=model_name, min_value=0.6,
                    min_improvement=-1.0)  # fmt: skip
    register(model, decision, example=test_df, reference=profile(model, test_df, text=["text"]))
'''

CONFIG = """\
pipelines:
  tweets: pipeline.py:tweets
monitoring:
  retrain: {pipeline: tweets}
"""


def write_tweets(path: Path, rows: int, seed: int) -> None:
    """``rows`` generated tweets (text, label) as a CSV file."""
    from loopline.examples.sentiment.synthetic import generate_tweets

    path.parent.mkdir(parents=True, exist_ok=True)
    generate_tweets(rows, seed=seed).to_csv(path, index=False)


@dataclass(frozen=True)
class DvcProject:
    """A project that is a git + DVC repository, ``data`` (a folder in it) ``dvc add``-ed;
    ``first`` is the commit of its first version. The methods change the data as a DVC
    user does."""

    root: Path
    first: str
    data: str = "data/tweets"

    @classmethod
    def create(cls, root: Path, remote: Path, data: str = "data/tweets") -> DvcProject:
        """``git init``, ``dvc init`` with ``remote`` as the default remote, Loopline's
        state ignored by git, ``data`` added, committed and pushed."""
        remote.mkdir(parents=True, exist_ok=True)
        sh(root, "git", "init", "-q")
        sh(root, "dvc", "init", "-q")
        sh(root, "dvc", "remote", "add", "-d", "local", str(remote))
        with (root / ".gitignore").open("a") as ignore:
            ignore.write(".loopline/\n")
        project = cls(root, "", data)
        return cls(root, project.add_version(f"{data}, first version"), data)

    def git(self, *args: str) -> str:
        return sh(self.root, "git", *args)

    def dvc(self, *args: str) -> str:
        return sh(self.root, "dvc", *args)

    def write_tweets(self, name: str, rows: int, seed: int) -> Path:
        """A new CSV file of generated tweets in ``data/tweets``."""
        path = self.root / "data" / "tweets" / name
        write_tweets(path, rows, seed)
        return path

    def add_version(self, message: str, *, push: bool = True) -> str:
        """``dvc add`` the data folder, commit, push (unless not): the new commit."""
        self.dvc("add", "-q", self.data)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        if push:
            self.dvc("push", "-q")
        return self.git("rev-parse", "HEAD")


@pytest.fixture(scope="session")
def dvc_template(tmp_path_factory: pytest.TempPathFactory) -> DvcProject:
    """The git + DVC tweets project, made once; copy it (``dvc_project``) to change it."""
    pytest.importorskip("dvc")
    base = tmp_path_factory.mktemp("dvc-project")
    root = base / "project"
    root.mkdir()
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "loopline.yaml").write_text(CONFIG)
    write_tweets(root / "data" / "tweets" / "part-1.csv", 600, seed=0)
    return DvcProject.create(root, base / "remote")


@pytest.fixture
def dvc_project(dvc_template: DvcProject, tmp_path: Path) -> DvcProject:
    """A copy of the git + DVC project of its own (the DVC remote is shared)."""
    root = tmp_path / "project"
    shutil.copytree(dvc_template.root, root, symlinks=True)
    return DvcProject(root, dvc_template.first)


@pytest.fixture
def make_dvc_project(tmp_path: Path) -> Callable[[Path, str], DvcProject]:
    """Makes a project folder a git + DVC repository with ``data`` (a folder in it) added:
    :meth:`DvcProject.create`, with a DVC remote of its own."""
    pytest.importorskip("dvc")
    return lambda root, data: DvcProject.create(root, tmp_path / "dvc-remote", data)
