"""The vision template end to end at tiny size, then `loopline serve` on a real port:
upload a held-out canvas, get its digits' boxes back; bad uploads get a 4xx that says why.

The canvases are small (64 px, one or two digits, every box labelled "digit") so that the
detector learns them in seconds; benchmarks/vision.py measures the full ten-digit task.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("pycocotools")

from loopline.data.canvas import (
    ANNOTATIONS_FILE,
    HELDOUT_POOL,
    TRAIN_POOL,
    CanvasSpec,
    generate_canvases,
    load_mnist,
)
from loopline.data.detection import Category, read_coco, write_coco

MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images" / "mnist"
SMALL = CanvasSpec(size=64, min_digits=1, max_digits=2, min_scale=20, max_scale=30)


def loopline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loopline", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


def one_class_canvases(root: Path) -> Path:
    """train/ and heldout/ canvas folders, every box relabelled as the one class "digit"."""
    digits = load_mnist(MNIST)
    for pool, count in ((TRAIN_POOL, 96), (HELDOUT_POOL, 16)):
        folder = root / pool
        dataset = generate_canvases(folder, count, pool=pool, digits=digits, spec=SMALL)
        dataset.categories = [Category(0, "digit")]
        dataset.annotations = [replace(a, category_id=0) for a in dataset.annotations]
        write_coco(dataset, folder / ANNOTATIONS_FILE)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    base = tmp_path_factory.mktemp("vision")
    data = one_class_canvases(base / "canvases")
    made = loopline("init", "project", "--template", "vision", "--data", str(data), cwd=base)
    assert made.returncode == 0, made.stderr
    root = base / "project"
    done = loopline("run", "vision", "--param", "epochs=16", "--param", "width=16",
                    "--param", "min_map50=0.3", "--json", cwd=root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loopline",
            "serve",
            "vision@champion",
            "--port",
            str(port),
            "--poll-interval",
            "1",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, server.communicate()[1]
        assert time.monotonic() < deadline, "the server did not get ready"
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield {"root": root, "data": data, "run": json.loads(done.stdout), "url": url}
    server.send_signal(signal.SIGTERM)
    server.communicate(timeout=60)


def iou(a: list[float], b: list[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def test_the_template_trains_evaluates_gates_and_registers(project: dict[str, Any]) -> None:
    steps = project["run"]["steps"]
    assert list(steps) == [
        "version_images",
        "read_detection",
        "read_detection_2",
        "train_detector",
        "evaluate_detector",
        "gate_detector",
        "register",
    ]
    assert all(step["status"] == "completed" for step in steps.values())
    [model] = project["run"]["models"]
    assert (model["model"], model["version"], model["promoted"]) == ("vision", "1", True)
    assert model["dataset_version"] == "canvases:v1"
    assert model["reasons"][0].startswith("map50 ")
    listed = json.loads(loopline("models", "list", "--json", cwd=project["root"]).stdout)
    assert [(m["version"], m["aliases"]) for m in listed] == [("1", ["champion"])]
    assert listed[0]["metrics"]["map50"] >= 0.3  # logged in MLflow with the version
    assert {"map50_95", "map75", "ap50_per_class.digit"} <= listed[0]["metrics"].keys()


def test_a_broken_image_stops_the_run_before_training(tmp_path: Path) -> None:
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    data = tmp_path / "canvases"
    digits = load_mnist(MNIST)
    for pool, count in ((TRAIN_POOL, 4), (HELDOUT_POOL, 2)):
        generate_canvases(data / pool, count, pool=pool, digits=digits, spec=SMALL)
    broken = data / "train" / "images" / "canvas_000002.png"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    made = loopline("init", "p", "--template", "vision", "--data", str(data), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    done = loopline("run", "vision", cwd=tmp_path / "p")
    assert done.returncode != 0
    assert "canvas_000002.png" in done.stderr and "unreadable_image" in done.stderr
    assert "Traceback" not in done.stderr
    listed = loopline("models", "list", "--json", cwd=tmp_path / "p")
    assert json.loads(listed.stdout or "[]") == []  # nothing trained, nothing registered


def test_an_uploaded_canvas_gets_its_digits_back(project: dict[str, Any]) -> None:
    heldout = read_coco(project["data"] / "heldout" / ANNOTATIONS_FILE,
                        images_dir=project["data"] / "heldout" / "images")  # fmt: skip
    matched = total = 0
    answered: dict[str, str] = {}  # request id -> sha256 of the image sent
    with httpx.Client(base_url=project["url"], timeout=60) as client:
        for image in heldout.images[:6]:
            # A model trained for seconds is found right but not yet sure of itself: ask for
            # what it finds above 0.15 rather than its serving threshold of 0.3.
            with image.path.open("rb") as handle:
                answer = client.post("/predict", params={"min_score": 0.15},
                                     files={"image": (image.file_name, handle)})  # fmt: skip
            assert answer.status_code == 200, answer.text
            body = answer.json()
            answered[body["request_id"]] = hashlib.sha256(image.path.read_bytes()).hexdigest()
            assert (body["model_name"], body["model_version"]) == ("vision", "1")
            assert (body["width"], body["height"]) == (64, 64)
            found = body["detections"]
            assert all(d["label"] == "digit" and d["score"] >= 0.15 for d in found)
            for truth in (a for a in heldout.annotations if a.image_id == image.id):
                total += 1
                matched += any(iou(d["box"], list(truth.bbox)) >= 0.5 for d in found)
            raw = client.post("/predict?min_score=0.15", content=image.path.read_bytes(),
                              headers={"Content-Type": "image/png"})  # fmt: skip
            assert raw.status_code == 200 and raw.json()["detections"] == found
            served = client.post("/predict", content=image.path.read_bytes()).json()
            assert served["detections"] == [d for d in found if d["score"] >= 0.3]
    assert matched >= 0.7 * total, (matched, total)
    description = httpx.get(f"{project['url']}/model").json()
    assert (description["task"], description["classes"]) == ("detection", ["digit"])
    # every answer is in the prediction log (flushed every second) with the model version
    folder = project["root"] / ".loopline" / "predictions" / "vision"
    deadline = time.monotonic() + 30
    while True:
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        logged = pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()
        if files and set(answered) <= set(logged["request_id"]):
            break
        assert time.monotonic() < deadline, "the answers did not reach the prediction log"
        time.sleep(0.5)
    rows = logged.set_index("request_id").loc[list(answered)]
    assert list(rows["input.image_sha256"]) == list(answered.values())
    assert set(rows["model_version"]) == {"1"} and set(rows["prediction"]) <= {"digit", ""}


def test_bad_uploads_get_a_4xx_that_says_why(project: dict[str, Any]) -> None:
    with httpx.Client(base_url=project["url"], timeout=30) as client:
        text = client.post("/predict", content=b"name,amount\nada,3\n",
                           headers={"Content-Type": "text/csv"})  # fmt: skip
        assert text.status_code == 415
        assert "is not an image" in text.json()["error"] and "multipart" in text.json()["error"]
        form = client.post("/predict", files={"photo": ("a.txt", b"hello")})
        assert form.status_code == 415 and "is not an image" in form.json()["error"]
        empty = client.post("/predict", content=b"", headers={"Content-Type": "image/png"})
        assert empty.status_code == 400 and "empty" in empty.json()["error"]
        two = client.post("/predict", files=[("a", ("a.png", b"x")), ("b", ("b.png", b"y"))])
        assert two.status_code == 422 and "no file field 'image'" in two.json()["error"]
        png = (project["data"] / "heldout" / "images" / "canvas_000001.png").read_bytes()
        truncated = client.post("/predict", content=png[: len(png) // 2])
        assert truncated.status_code == 415 and "cannot be decoded" in truncated.json()["error"]
        score = client.post("/predict?min_score=2", content=png)
        assert score.status_code == 422 and "between 0 and 1" in score.json()["error"]
        assert client.get("/ready").status_code == 200  # the server lives on


def test_a_new_champion_is_swapped_in_while_serving(project: dict[str, Any]) -> None:
    """Runs last: another seed makes version 2; promoted, the server follows the alias."""
    again = loopline("run", "vision", "--param", "epochs=16", "--param", "width=16",
                     "--param", "min_map50=0.3", "--param", "seed=1", "--json",
                     cwd=project["root"])  # fmt: skip
    assert again.returncode == 0, again.stderr
    [model] = json.loads(again.stdout)["models"]
    assert (model["version"], model["dataset_version"]) == ("2", "canvases:v1")
    if not model["promoted"]:  # the gate wants a better mAP; promote it by hand then
        promoted = loopline("models", "promote", "vision", "2", cwd=project["root"])
        assert promoted.returncode == 0, promoted.stderr
    png = (project["data"] / "heldout" / "images" / "canvas_000001.png").read_bytes()
    deadline = time.monotonic() + 60
    while httpx.get(f"{project['url']}/ready").json()["model_version"] != "2":
        assert time.monotonic() < deadline, "the server kept version 1"
        time.sleep(0.5)
    answer = httpx.post(f"{project['url']}/predict", content=png, timeout=30)
    assert answer.status_code == 200 and answer.json()["model_version"] == "2"
