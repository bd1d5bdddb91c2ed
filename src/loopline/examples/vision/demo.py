"""``loopline demo vision``: the vision system end to end, offline, in a few minutes.

The project folder becomes a git + DVC repository (as DVC's users keep one): digit canvases
drawn from real MNIST images are written to ``data/canvases`` (``train/`` and ``heldout/``,
COCO), ``dvc add``-ed and pushed to a local remote. The vision template trains a detector,
measures mAP on the held-out canvases, gates and registers it; the champion is served on a
real port and answers held-out images. Then 500 new canvases arrive, ``dvc add`` and a commit
record them, and one pass of the watcher (``loopline watch --on-new-data data/canvases``)
sees DVC's new hash, runs the pipeline again and registers version 2, promoted only if its
mAP@0.5 beats the champion's. Nobody is involved between the new images and the new model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.config import Settings
from loopline.errors import LooplineError

if TYPE_CHECKING:
    from rich.console import Console

    from loopline.core.runner import RunEvent

MODEL = "vision"
CANVASES = Path("data") / "canvases"
TRAIN_CANVASES = 500
HELDOUT_CANVASES = 150
NEW_CANVASES = 500
SERVED_IMAGES = 5
# The template's detector on a schedule that fits a few minutes on two cores (about 30 s of
# training per 500 canvases when the machine is not busy; at most 150 s when it is).
PARAMS: dict[str, Any] = {
    "source": str(CANVASES),
    "epochs": 10,
    "width": 32,
    "max_seconds": 150.0,
    "min_map50": 0.5,
}
# The demo's own commits: a fresh machine may have no git identity.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Loopline demo",
    "GIT_AUTHOR_EMAIL": "demo@loopline.invalid",
    "GIT_COMMITTER_NAME": "Loopline demo",
    "GIT_COMMITTER_EMAIL": "demo@loopline.invalid",
    "DVC_NO_ANALYTICS": "1",
}


def demo_settings(settings: Settings) -> Settings:
    """The project's settings with the vision pipeline, its demo parameters and the
    watcher's retrain rule (the project's own ``loopline.yaml`` is left as it is)."""
    pipelines = {**settings.pipelines, MODEL: "loopline.templates.vision:vision"}
    # The canvases by their full path: the demo runs from any working directory.
    source = str(settings.project_root / PARAMS["source"])
    params = {**settings.params, MODEL: {**PARAMS, "source": source}}
    monitoring = {**settings.monitoring, "retrain": {"pipeline": MODEL}}
    return settings.model_copy(
        update={"pipelines": pipelines, "params": params, "monitoring": monitoring}
    )


def run_demo(
    settings: Settings,
    *,
    data: Path | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Version the canvases with DVC, train, evaluate, register, serve, add 500 canvases,
    let the watcher retrain; returns a JSON-able summary. ``data`` is a folder holding
    MNIST's ``t10k-*-idx*-ubyte.gz`` files (default: the checkout's shared data)."""
    from loopline.core.metadata import MetadataStore
    from loopline.data.canvas import add_canvases, write_canvas_dataset
    from loopline.orchestrate.watch import Watcher
    from loopline.templates.vision import vision

    say = progress or (lambda _: None)
    _require_tools()
    settings = demo_settings(settings)
    root = settings.project_root
    assert settings.metadata_url
    store = MetadataStore(settings.metadata_url)
    try:
        if store.current_alias(MODEL, "champion") is not None:
            raise LooplineError(
                f"this project already has a {MODEL} champion (a vision demo ran here before)",
                hint="run the demo in an empty folder: `loopline -C NEW_FOLDER demo vision`",
            )
        canvases = root / CANVASES
        if not canvases.exists():
            say(f"writing {TRAIN_CANVASES} + {HELDOUT_CANVASES} canvases of MNIST digits")
            write_canvas_dataset(
                canvases, train=TRAIN_CANVASES, heldout=HELDOUT_CANVASES, mnist=data
            )
        repo = _DemoRepo(root, remote=settings.home_dir / "demo" / "vision" / "dvc-remote")
        first_commit = repo.track(str(CANVASES), "canvases: first version")
        say("training the first detector")
        first = vision.run(settings, on_event=on_event, **settings.params[MODEL])
        serving = _serve(settings, canvases / "heldout")

        # The watcher starts from the data as it is: what arrives after that is new.
        watcher = Watcher(settings, store, on_new_data=canvases)
        watcher.run_once()
        say(f"{NEW_CANVASES} new canvases arrive; dvc add, git commit")
        add_canvases(canvases / "train", NEW_CANVASES)
        second_commit = repo.track(str(CANVASES), f"canvases: {NEW_CANVASES} new images")
        say("the watcher sees DVC's new hash and retrains")
        events = watcher.run_once()
        champion = _champion(settings, store)
    finally:
        store.close()
    return {
        "project": str(root),
        "dvc": {"first_commit": first_commit, "second_commit": second_commit},
        "first": _registered(first),
        "serving": serving,
        "watch": events,
        "champion": champion,
    }


def _require_tools() -> None:
    """torch and dvc are the ``vision`` extra's; git is the machine's."""
    missing = [name for name in ("torch", "dvc") if not _importable(name)]
    if missing:
        raise LooplineError(
            f"the vision demo needs {' and '.join(missing)}, not installed here",
            hint="pip install 'loopline[vision]'",
        )
    if shutil.which("git") is None:
        raise LooplineError("the vision demo needs git", hint="install git (apt-get install git)")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


class _DemoRepo:
    """The project as a git + DVC repository with a local DVC remote (made if needed)."""

    def __init__(self, root: Path, remote: Path) -> None:
        self.root = root
        if not (root / ".git").exists():
            self._run("git", "init", "-q")
        if not (root / ".dvc").exists():
            self._run(sys.executable, "-m", "dvc", "init", "-q")
        remote.mkdir(parents=True, exist_ok=True)
        self._run(sys.executable, "-m", "dvc", "remote", "add", "-f", "-d", "demo", str(remote))
        # Loopline's own state is not data: git leaves it alone (as DVC leaves its cache).
        ignore = root / ".gitignore"
        known = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
        if ".loopline/" not in known:
            with ignore.open("a", encoding="utf-8") as out:
                out.write(".loopline/\n")

    def track(self, data: str, message: str) -> str:
        """``dvc add`` ``data``, commit and ``dvc push``, as a DVC user records new data;
        returns the commit."""
        self._run(sys.executable, "-m", "dvc", "add", "-q", data)
        self._run("git", "add", "-A")
        self._run("git", "commit", "-q", "-m", message)
        self._run(sys.executable, "-m", "dvc", "push", "-q")
        return self._run("git", "rev-parse", "HEAD")

    def _run(self, *command: str) -> str:
        done = subprocess.run(
            command,
            cwd=self.root,
            env={**os.environ, **GIT_IDENTITY},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            shown = " ".join(["dvc" if command[0] == sys.executable else command[0], *command[1:]])
            shown = shown.replace("dvc -m dvc", "dvc")
            raise LooplineError(
                f"`{shown}` failed in {self.root}: {done.stderr.strip() or done.stdout.strip()}",
                hint="the vision demo keeps its project in git + DVC; run it in an empty folder",
            )
        return done.stdout.strip()


def _serve(settings: Settings, heldout: Path) -> dict[str, Any]:
    """Serve the champion on a real port and send it held-out canvases; how many of their
    digits it finds (label and box, IoU >= 0.5)."""
    from loopline.data.detection import read_coco
    from loopline.serve.server import ServeConfig, build_app, start_in_thread

    dataset = read_coco(heldout / "annotations.json", images_dir=heldout / "images")
    names = {c.id: c.name for c in dataset.categories}
    server = start_in_thread(
        build_app(ServeConfig(model=f"{MODEL}@champion", project_root=str(settings.project_root)))
    )
    answers = []
    try:
        for image in dataset.images[:SERVED_IMAGES]:
            request = urllib.request.Request(
                f"{server.url}/predict",
                data=image.path.read_bytes(),
                headers={"Content-Type": "image/png"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
            truth = [a for a in dataset.annotations if a.image_id == image.id]
            found = _matched(answer["detections"], truth, names)
            answers.append(
                {
                    "image": image.file_name,
                    "digits": sorted(names[a.category_id] for a in truth),
                    "detected": [d["label"] for d in answer["detections"]],
                    "found": found,
                    "model_version": answer["model_version"],
                }
            )
    finally:
        server.stop()
    return {"url": server.url, "answers": answers}


def _matched(detections: list[dict[str, Any]], truth: list[Any], names: dict[int, str]) -> int:
    """How many true boxes a detection of the same label covers with IoU >= 0.5."""
    left = Counter(range(len(detections)))
    found = 0
    for box in truth:
        for i, det in enumerate(detections):
            if (
                left[i]
                and det["label"] == names[box.category_id]
                and _iou(det["box"], box.bbox) >= 0.5
            ):
                left[i] = 0
                found += 1
                break
    return found


def _iou(a: list[float], b: tuple[float, float, float, float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def _registered(result: Any) -> dict[str, Any]:
    registered = result.load("register")
    return {
        "run_id": result.run_id,
        "metrics": result.load("evaluate_detector"),
        "version": registered.version,
        "promoted": registered.promoted,
        "champion": registered.champion,
    }


def _champion(settings: Settings, store: Any) -> dict[str, Any]:
    """The champion after the watcher's pass: its version, data version, DVC hash and git
    revision, and why its run started (as ``loopline lineage vision@champion`` shows)."""
    from loopline.data.dvc import folder_versions_among
    from loopline.orchestrate.watch import trigger_of

    version = store.current_alias(MODEL, "champion")
    found = store.lineage(MODEL, version)
    run_id = (found["run"] or {}).get("id")
    folders = folder_versions_among([s["output"] for s in found["steps"]], settings, store)
    trigger = trigger_of(store, MODEL, run_id) if run_id else None
    return {
        "version": version,
        "dataset_version": found["model"]["dataset_version"],
        "data": [folder.describe() for folder in folders.values()],
        "run_id": run_id,
        "started_by": trigger["message"] if trigger else None,
    }


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The demo's summary as a few readable lines."""
    first = summary["first"]
    metrics = first["metrics"]
    console.print(
        f"[bold]vision v{first['version']}[/] mAP@0.5 {metrics.get('map50')} "
        f"mAP@0.5:0.95 {metrics.get('map50_95')} "
        f"({'promoted' if first['promoted'] else 'not promoted'})"
    )
    for answer in summary["serving"]["answers"]:
        console.print(
            f"  served {answer['image']}: {answer['found']}/{len(answer['digits'])} digits found "
            f"(true {' '.join(answer['digits'])}; detected {' '.join(answer['detected'])})"
        )
    for event in summary["watch"]:
        if "version" in event:
            outcome = "promoted" if event.get("promoted") else "not promoted (the gate said no)"
            console.print(
                f"watch: {event.get('trigger')} -> {MODEL} v{event['version']}, {outcome}"
            )
        else:
            console.print(f"watch: {event}")
    champion = summary["champion"]
    console.print(
        f"[bold]champion[/]: {MODEL} v{champion['version']} on {champion['dataset_version']}"
        + "".join(f"; {line}" for line in champion["data"])
    )
    if champion["started_by"]:
        console.print(f"  started by loopline watch: {champion['started_by']}")
