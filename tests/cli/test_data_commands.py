"""`loopline data snapshot|diff|check-detection` on COCO8 and broken copies of it.

The commands run in-process through the console entry point (:func:`loopline.cli.main`),
which turns user errors into one line and exit code 2, as the installed command does.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loopline.cli import main

Runner = Callable[..., tuple[int, str, str]]


def loopline(
    *args: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``loopline ARGS``; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["loopline", *args])
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


@pytest.fixture
def run(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Runner:
    def call(*args: str) -> tuple[int, str, str]:
        return loopline("-C", str(project), *args, monkeypatch=monkeypatch, capsys=capsys)

    return call


@pytest.fixture
def coco8(shared_data: Path) -> Path:
    return shared_data / "images" / "coco8"


def test_snapshot_twice_reads_nothing_the_second_time(
    run: Runner, coco8: Path, project: Path
) -> None:
    code, out, err = run("data", "snapshot", str(coco8))
    assert code == 0, err
    first_line, second_line = out.splitlines()
    snapshot_id = first_line.removeprefix("snapshot ")
    assert len(snapshot_id) == 64
    total = sum(p.stat().st_size for p in coco8.rglob("*") if p.is_file())
    assert second_line.startswith(f"19 files · {total:,} bytes · 19 re-hashed, 0 unchanged")
    assert (project / ".loopline" / "snapshots" / f"{snapshot_id}.json").is_file()

    code, out, _ = run("data", "snapshot", str(coco8), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["id"] == snapshot_id
    assert (summary["files"], summary["rehashed"], summary["reused"]) == (19, 0, 19)


def test_snapshots_go_to_the_configured_state_folder(
    run: Runner, coco8: Path, project: Path
) -> None:
    (project / "loopline.yaml").write_text("home: state\n")

    code, out, err = run("data", "snapshot", str(coco8), "--json")
    assert code == 0, err
    snapshot_id = json.loads(out)["id"]
    assert (project / "state" / "snapshots" / f"{snapshot_id}.json").is_file()
    code, out, err = run("data", "diff", snapshot_id[:8], str(coco8), "--json")
    assert code == 0, err
    assert json.loads(out)["a"] == snapshot_id


def test_diff_of_a_snapshot_and_a_changed_folder(run: Runner, coco8: Path, tmp_path: Path) -> None:
    folder = tmp_path / "labels"
    shutil.copytree(coco8 / "labels", folder)
    code, out, _ = run("data", "snapshot", str(folder))
    snapshot_id = out.splitlines()[0].removeprefix("snapshot ")
    (folder / "train" / "000000000009.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "val" / "000000000036.txt").unlink()
    (folder / "val" / "new.txt").write_text("1 0.5 0.5 0.2 0.2\n")

    code, out, err = run("data", "diff", snapshot_id[:8], str(folder))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{snapshot_id[:12]} -> ")
    assert lines[1:] == [
        "+ val/new.txt",
        "- val/000000000036.txt",
        "~ train/000000000009.txt",
        "1 added, 1 removed, 1 changed",
    ]
    code, out, _ = run("data", "diff", snapshot_id, snapshot_id, "--json")
    assert code == 0 and json.loads(out)["changed"] == []
    code, out, _ = run("data", "diff", snapshot_id, snapshot_id)
    assert out.splitlines()[1] == "no changes"


def test_bad_references_are_one_line_errors(run: Runner, tmp_path: Path) -> None:
    code, out, err = run("data", "diff", "abcd1234", str(tmp_path))
    assert code == 2 and out == ""
    assert "error: no snapshot 'abcd1234'" in err and "hint:" in err
    assert "Traceback" not in err
    code, _, err = run("data", "snapshot", str(tmp_path / "missing"))
    assert code == 2 and "error: folder not found" in err


def test_check_detection_passes_on_coco8(run: Runner, coco8: Path) -> None:
    code, out, err = run("data", "check-detection", str(coco8))
    assert code == 0, err
    assert (
        out.splitlines()[0] == f"yolo dataset {coco8.resolve()}: passed"
    )  # the command shows the real path
    assert "8 images, 30 boxes, 12 of 80 classes used; 0 errors, 1 warnings" in out
    assert "person 10" in out

    code, out, _ = run("data", "check-detection", str(coco8), "--format", "yolo", "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"] and report["class_counts"]["person"] == 10


def test_check_detection_fails_with_every_bad_file(
    run: Runner, coco8: Path, tmp_path: Path
) -> None:
    root = tmp_path / "broken"
    for sub in ("images", "labels"):
        shutil.copytree(coco8 / sub, root / sub)
    shutil.copy(coco8 / "classes.txt", root)
    jpeg = root / "images" / "val" / "000000000061.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:2000])
    with (root / "labels" / "val" / "000000000049.txt").open("a") as f:
        f.write("99 0.5 0.5 0.1 0.1\n")

    code, out, _ = run("data", "check-detection", str(root))
    assert code == 1
    assert "FAILED" in out
    assert "error: unreadable_image: images/val/000000000061.jpg:" in out
    assert "error: unknown_class: labels/val/000000000049.txt:" in out

    code, out, _ = run("data", "check-detection", str(root), "--min-side", "500", "--json")
    report = json.loads(out)
    assert code == 1 and report["errors"] > 2
    assert {p["kind"] for p in report["problems"]} >= {"too_small", "unreadable_image"}


def test_check_detection_input_errors(run: Runner, coco8: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "annotations": []')
    code, _, err = run("data", "check-detection", str(bad))
    assert code == 2 and "is not valid JSON" in err and "hint:" in err

    root = tmp_path / "yolo"
    for sub in ("images", "labels"):
        shutil.copytree(coco8 / sub, root / sub)
    shutil.copy(coco8 / "classes.txt", root)
    (root / "labels" / "train" / "000000000030.txt").write_text("0 0.5 0.5\n")
    code, _, err = run("data", "check-detection", str(root))
    assert code == 2
    assert "labels/train/000000000030.txt:1 (expected 5 fields, found 3" in err

    code, _, err = run("data", "check-detection", str(coco8), "--format", "voc")
    assert code == 2 and "unknown --format 'voc'" in err
    code, _, err = run("data", "check-detection", str(tmp_path / "nowhere"))
    assert code == 2 and "dataset not found" in err
