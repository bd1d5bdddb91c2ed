"""A trained project from the command line: what `loopline run` says about its model,
which run id `models list` shows, and unknown model names.

One project is trained once for the module (`loopline init` + `loopline run`, without the
slow noise audit); a second run with a badly regularised model fails the gate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def loopline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Trained:
    def __init__(self, root: Path, first_run: str) -> None:
        self.root = root
        self.first_run = first_run  # what the first `loopline run` printed


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    base = tmp_path_factory.mktemp("trained")
    root = base / "proj"
    ok(loopline("init", str(root), "--template", "sentiment", cwd=base))
    first = ok(loopline("run", "sentiment", "--param", "audit_rows=0", cwd=root))
    yield Trained(root, first)


def models(root: Path) -> list[dict[str, Any]]:
    return list(json.loads(ok(loopline("models", "list", "--json", cwd=root))))


def test_run_says_the_gate_passed_and_the_model_is_champion(trained: Trained) -> None:
    lines = trained.first_run.splitlines()

    assert "model sentiment version 1 registered · gate passed · now champion" in lines


def test_a_failed_gate_says_why_and_which_version_stays_champion(trained: Trained) -> None:
    done = loopline(
        "run", "sentiment", "--param", "audit_rows=0", "--param", "C=0.0001", "--json",
        cwd=trained.root,
    )  # fmt: skip

    summary = json.loads(ok(done))
    [outcome] = summary["models"]
    assert outcome["model"] == "sentiment" and outcome["version"] == "2"
    assert outcome["gate_passed"] is False and outcome["promoted"] is False
    assert outcome["champion"] == "1"
    assert "gate failed (macro_f1 " in outcome["summary"]
    assert "< floor 0.6000" in outcome["summary"]
    assert outcome["summary"].endswith("champion stays version 1")


def test_models_list_shows_the_loopline_run_id_that_runs_show_takes(trained: Trained) -> None:
    runs = {r["id"] for r in json.loads(ok(loopline("runs", "list", "--json", cwd=trained.root)))}
    listed = models(trained.root)

    assert listed
    for version in listed:
        assert version["run_id"] in runs
        assert version["mlflow_run_id"] and version["mlflow_run_id"] != version["run_id"]
    table = ok(loopline("models", "list", cwd=trained.root))
    assert listed[-1]["run_id"] in table
    assert listed[-1]["mlflow_run_id"] not in table
    shown = ok(loopline("runs", "show", listed[-1]["run_id"], cwd=trained.root))
    assert f"run {listed[-1]['run_id']}" in shown


def test_runs_show_accepts_an_mlflow_run_id(trained: Trained) -> None:
    version = models(trained.root)[-1]

    full = ok(loopline("runs", "show", version["mlflow_run_id"], "--json", cwd=trained.root))
    prefix = ok(loopline("runs", "show", version["mlflow_run_id"][:10], cwd=trained.root))

    assert json.loads(full)["id"] == version["run_id"]
    assert f"run {version['run_id']}" in prefix


@pytest.mark.parametrize("ref", ["", " ", "%", "_"])
def test_runs_show_takes_a_prefix_not_a_pattern(trained: Trained, ref: str) -> None:
    """A run id is its first characters: '' and LIKE's wildcards match no run."""
    done = loopline("runs", "show", ref, cwd=trained.root)
    assert done.returncode == 2, done.stdout
    assert "no run id given" in done.stderr or f"no run with id {ref!r}" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["models", "history", "nosuch"],
        ["models", "rollback", "nosuch"],
        ["models", "promote", "nosuch", "1"],
        ["lineage", "nosuch"],
    ],
    ids=" ".join,
)
def test_an_unknown_model_name_lists_the_registered_ones(trained: Trained, args: list[str]) -> None:
    done = loopline(*args, cwd=trained.root)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "no registered model named 'nosuch'" in done.stderr
    assert "hint: registered models: sentiment" in done.stderr
    assert "Traceback" not in done.stderr


def test_models_history_of_a_known_name_shows_its_alias_moves(trained: Trained) -> None:
    events = json.loads(ok(loopline("models", "history", "sentiment", "--json", cwd=trained.root)))

    assert [(e["alias"], e["version"]) for e in events][:1] == [("champion", "1")]
