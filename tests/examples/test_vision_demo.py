"""`loopline demo vision` end to end, at a tiny size: git + DVC, train, serve, new images,
the watcher's version 2 and the champion's DVC lineage."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from loopline.cli import app

pytestmark = pytest.mark.slow  # two detector trainings and a server: about a minute


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's steps at a size that trains in seconds (the flow is what is tested)."""
    pytest.importorskip("torch")
    pytest.importorskip("dvc")
    from loopline.data.canvas import find_mnist
    from loopline.examples.vision import demo

    try:
        find_mnist()
    except Exception as exc:  # the checkout's shared data is not there
        pytest.skip(f"MNIST not found: {exc}")
    monkeypatch.setattr(demo, "TRAIN_CANVASES", 40)
    monkeypatch.setattr(demo, "HELDOUT_CANVASES", 20)
    monkeypatch.setattr(demo, "NEW_CANVASES", 60)
    monkeypatch.setattr(demo, "SERVED_IMAGES", 2)
    params = {**demo.PARAMS, "epochs": 2, "width": 8, "min_map50": 0.0}
    monkeypatch.setattr(demo, "PARAMS", params)


def test_the_vision_demo_versions_trains_serves_and_retrains_by_itself(
    tiny_demo: None, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["-C", str(tmp_path), "demo", "vision", "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)

    assert (tmp_path / ".git").is_dir() and (tmp_path / "data" / "canvases.dvc").is_file()
    assert summary["first"]["version"] == "1" and summary["first"]["promoted"]
    assert 0.0 <= summary["first"]["metrics"]["map50"] <= 1.0
    served = summary["serving"]["answers"]
    assert len(served) == 2 and all(a["model_version"] == "1" for a in served)
    assert all(0 <= a["found"] <= len(a["digits"]) for a in served)
    [event] = summary["watch"]  # one run for the 60 new images, started by the watcher
    assert (event["status"], event["version"]) == ("completed", "2")
    assert "60 added" in event["trigger"]
    champion = summary["champion"]
    expected = "2" if event["promoted"] else "1"
    assert champion["version"] == expected
    if event["promoted"]:
        assert champion["dataset_version"] == "canvases:v2"
        second = summary["dvc"]["second_commit"]
        assert any(f"git {second[:12]}" in line for line in champion["data"])
        assert champion["started_by"].startswith("new data in ")
        assert "data/canvases.dvc" in champion["started_by"]

    # A second demo in the same project is refused before anything is written.
    again = CliRunner().invoke(app, ["-C", str(tmp_path), "demo", "vision"])
    assert again.exit_code != 0
    assert "already has a vision champion" in str(again.exception)
