"""Acceptance: 500 new images re-train the vision system with no person involved.

The vision template's project (`loopline init --template vision`: digit canvases from real
MNIST, a detector trained from scratch) is a git + DVC repository with its canvases
`dvc add`-ed. 500 new canvases arrive in the training folder and `dvc add` is run again:
`loopline watch` produces version 2, registered and promoted by the gate (a higher mAP@0.5),
and `loopline lineage vision@champion` shows the new dataset version, DVC's hash and the git
revision, and why the run started. Small sizes keep it short: 60 training and 40 held-out
canvases, a narrow detector (width 8) trained for 3 epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from loopline.cli import app
from loopline.data.dvc import dvc_version

pytestmark = pytest.mark.slow  # two detector trainings: about 1-3 minutes on 2 cores

CONFIG = """\
pipelines:
  vision: pipeline.py:vision
params:
  vision: {source: data/canvases, epochs: 3, width: 8, min_map50: 0.0}
monitoring:
  retrain: {pipeline: vision}
"""


def loopline(root: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["-C", str(root), *args])
    assert result.exit_code == 0, result.output
    return result.stdout  # warnings of the libraries go to stderr


def test_500_new_images_give_a_promoted_v2_with_its_dvc_lineage(
    make_dvc_project: Callable[[Path, str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch")
    from loopline.data.canvas import add_canvases, find_mnist, write_canvas_dataset
    from loopline.templates import write_template

    try:
        find_mnist()
    except Exception as exc:  # the checkout's shared data is not there
        pytest.skip(f"MNIST not found: {exc}")
    root = tmp_path / "project"
    canvases = root / "data" / "canvases"
    write_canvas_dataset(canvases, train=60, heldout=40)
    write_template(root, "vision", data=canvases)  # the template's pipeline.py, verbatim
    (root / "loopline.yaml").write_text(CONFIG)
    project = make_dvc_project(root, "data/canvases")
    monkeypatch.chdir(root)

    first = orjson.loads(loopline(root, "run", "vision", "--json"))
    assert [(m["version"], m["promoted"]) for m in first["models"]] == [("1", True)]
    watch = ("watch", "--on-new-data", "data/canvases", "--settle", "0", "--once", "--json")
    assert orjson.loads(loopline(root, *watch)) == []  # what is there at the start is not new

    add_canvases(canvases / "train", 500)  # 500 new images (and their boxes)
    commit = project.add_version("500 new canvases", push=False)
    md5 = dvc_version(canvases).md5

    [event] = orjson.loads(loopline(root, *watch))
    assert event["status"] == "completed", event
    assert (event["model"], event["version"], event["promoted"]) == ("vision", "2", True)
    assert "500 added" in event["trigger"]
    assert orjson.loads(loopline(root, *watch)) == []  # its own run is no new data

    shown = loopline(root, "lineage", "vision@champion")
    assert "vision version 2" in shown and "data canvases:v2" in shown
    assert f"DVC md5 {md5} (data/canvases.dvc)" in shown and f"git {commit[:12]}" in shown
    assert "started by loopline watch: new data in data/canvases (data/canvases.dvc" in shown
    found = orjson.loads(loopline(root, "lineage", "vision@champion", "--json"))
    [data] = [s["data_version"] for s in found["steps"] if s["data_version"]]
    assert (data["dvc"]["md5"], data["dvc"]["git_rev"]) == (md5, commit)
    assert data["files"] == 560 + 40 + 2  # images and the two annotations.json
    assert found["model"]["dataset_version"] == "canvases:v2"
    [trigger] = found["trigger"]["triggers"]
    assert trigger["dvc"]["md5"] == md5 and trigger["dvc"]["git_rev"] == commit
    assert trigger["files"]["added"] == 500
