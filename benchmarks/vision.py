"""The detector on held-out MNIST canvases: mAP after at most 10 minutes of CPU training.

Data: canvases of 128 x 128 px with 3 to 5 real MNIST digits each (24 to 44 px, digits as
the ten classes, tight boxes from the ink), drawn by ``loopline.data.canvas`` from
``../shared/data/images/mnist``: ``--train`` training canvases from one pool of MNIST
digits, ``--heldout`` canvases from the other (disjoint) pool, written to a temporary
folder. Nothing is downloaded; the detector (``loopline.train.detector``, a compact
CenterNet) starts from random weights.

What the clock covers: ``train_s`` is the training call alone (reading the images and
building the targets included, generating the canvases not); evaluation (``eval_s``) runs the
model on every held-out canvas and scores it with pycocotools' COCO evaluation (mAP@0.5,
mAP@0.5:0.95). Training stops at ``--epochs`` or at ``--max-seconds`` of wall time,
whichever comes first; the learning-rate schedule follows the clock when the clock is ahead,
so a slow (busy) machine gets a shorter but complete schedule. The default cap of 540 s
keeps training within the 10 minutes the task allows, with room for its set-up.

The machine is shared: torch's threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, unless
set) rather than spinning against other processes.

    .venv/bin/python benchmarks/vision.py [--train 1500] [--heldout 300] [--epochs 10]
                                          [--max-seconds 540] [--threads N] [--seed 0]

The last line is one JSON object: ``map50``, ``map50_95``, ``map75``, ``train_s``,
``eval_s``, ``epochs_done``, ``steps``, ``images_per_s`` (training images per second),
``ap50_per_class``, the settings, and ``machine``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is first imported

from _machine import machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "images" / "mnist"


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1_500, help="training canvases")
    parser.add_argument("--heldout", type=int, default=300, help="held-out canvases")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=32, help="the network's channels")
    parser.add_argument("--max-seconds", type=float, default=540.0, help="training time cap")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from loopline.data.canvas import write_canvas_dataset
    from loopline.data.detection import read_detection
    from loopline.evaluate.detection import evaluate_detector
    from loopline.train.detector import DetectorParams, train_detector

    folder = Path(tempfile.mkdtemp(prefix="loopline-vision-bench-"))
    try:
        started = time.perf_counter()
        write_canvas_dataset(
            folder / "canvases", train=args.train, heldout=args.heldout, seed=args.seed, mnist=MNIST
        )
        generate_s = time.perf_counter() - started
        train_set = read_detection(folder / "canvases" / "train")
        heldout = read_detection(folder / "canvases" / "heldout")
        print(
            f"{len(train_set.images)} training canvases ({len(train_set.annotations)} digits), "
            f"{len(heldout.images)} held-out ({len(heldout.annotations)} digits), "
            f"made in {generate_s:.1f} s",
            flush=True,
        )
        params = DetectorParams(
            epochs=args.epochs,
            width=args.width,
            seed=args.seed,
            max_seconds=args.max_seconds,
            threads=args.threads,
            device="cpu",
        )
        started = time.perf_counter()
        model = train_detector(train_set, params, progress=lambda line: print(line, flush=True))
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        metrics = evaluate_detector(model, heldout)
        eval_s = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    trained = model.estimator.settings
    summary: dict[str, Any] = {
        "map50": metrics["map50"],
        "map50_95": metrics["map50_95"],
        "map75": metrics["map75"],
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "generate_s": round(generate_s, 1),
        "epochs_done": round(trained["images_seen"] / args.train, 2),
        "steps": trained["steps"],
        "images_per_s": round(trained["images_seen"] / train_s, 1),
        "ap50_per_class": metrics["ap50_per_class"],
        "settings": {
            **vars(args),
            "batch_size": params.batch_size,
            "threads_used": args.threads or len(os.sched_getaffinity(0)),
        },
        "machine": machine_info(load_start, ["loopline", "torch", "pycocotools", "numpy"]),
    }
    print(
        f"\nmAP@0.5 {metrics['map50']:.3f} · mAP@0.5:0.95 {metrics['map50_95']:.3f} · "
        f"mAP@0.75 {metrics['map75']:.3f} on {len(heldout.images)} held-out canvases"
    )
    print(
        f"training {train_s:.1f} s ({summary['epochs_done']} epochs, {trained['steps']} steps, "
        f"{summary['images_per_s']} images/s) · evaluation {eval_s:.1f} s"
    )
    info = summary["machine"]
    print(f"load average at start {info['load_start']}, at end {info['load_end']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
