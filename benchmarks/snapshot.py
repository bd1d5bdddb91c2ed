"""Folder versions: Loopline's snapshot vs ``dvc add``, on a tree of 10,000 image files.

Data: the 10,000 MNIST test images (``../shared/data/images/mnist``) written once as small
PNG files into ``<digit>/<index>.png`` under a temporary folder (never into the project),
and 100 more files (the first 100 digits again, as JPEG, under ``added/``) for the second
round. Nothing is downloaded.

Every tool gets the same treatment:

- **Same files.** Each repeat copies the tree twice (file contents and mtimes kept): one
  copy for Loopline, one for DVC. The copies are made, and DVC's repository is made
  (``git init`` + ``dvc init``), before the clock; then a pause of ``--settle`` seconds
  (Loopline's snapshot re-reads files written within 2 s of its previous snapshot, and
  both tools see the same settled tree).
- **What the clock covers.** The whole command, run as a subprocess, interpreter start-up
  included: ``loopline -C PROJECT data snapshot TREE --json`` and ``dvc add TREE`` (with
  ``DVC_NO_ANALYTICS=1``; DVC moves the files into its cache and links them back, as
  it does for its users).
- **First and incremental.** *First*: no previous snapshot in a fresh project, and a fresh
  DVC repository and cache. *Incremental*: the 100 files added to both copies, the same
  command again (Loopline reads only files whose size, mtime or inode changed; DVC
  consults its state database of mtimes and inodes).
- **Cache.** Warm for both: the files were just written and copied, so the page cache
  holds them. A cold cache (dropping caches needs root) is not measured.
- **Repeats.** ``--repeats`` rounds (default 3), each on fresh copies; the tool that goes
  first alternates between rounds. The median is reported and every time printed.

    .venv/bin/python benchmarks/snapshot.py [--files 10000] [--added 100] [--repeats 3]

The last line is one JSON object: ``files``, ``added``, ``repeats``; ``snapshot_s`` and
``dvc_add_s`` (first, medians), ``snapshot_incremental_s`` and ``dvc_add_incremental_s``
(medians), ``ratio_first`` and ``ratio_incremental`` (DVC's time / Loopline's),
``snapshot_startup_s`` (the median time of ``loopline data snapshot`` on an empty folder: the
command's fixed cost, inside both of Loopline's figures), ``times``
(every timed run), ``rehashed`` (files Loopline read in each round) and ``machine``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from _machine import command_env, machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "images" / "mnist" / "t10k-images-idx3-ubyte.gz"
BIN = Path(sys.executable).parent
ENV = command_env(
    DVC_NO_ANALYTICS="1",
    GIT_AUTHOR_NAME="bench",
    GIT_AUTHOR_EMAIL="bench@loopline.invalid",
    GIT_COMMITTER_NAME="bench",
    GIT_COMMITTER_EMAIL="bench@loopline.invalid",
)


def mnist_digits() -> np.ndarray:
    """The 10,000 MNIST test images, 28 x 28 uint8 (IDX: a 16-byte header, then pixels)."""
    raw = gzip.decompress(MNIST.read_bytes())
    count = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, 28, 28)


def write_tree(root: Path, digits: np.ndarray, files: int) -> None:
    """``files`` PNGs, ten folders; the MNIST images again (inverted) past the 10,000th."""
    for index in range(files):
        image = digits[index % len(digits)]
        if index >= len(digits):
            image = 255 - image
        folder = root / str(index % 10)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")


def add_files(root: Path, digits: np.ndarray, count: int) -> None:
    """``count`` new JPEG files under ``root/added``."""
    (root / "added").mkdir()
    for index in range(count):
        Image.fromarray(digits[index]).save(root / "added" / f"{index:03d}.jpg", quality=90)


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Seconds the whole command took, and its stdout; stops the benchmark if it failed."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stdout


def one_round(
    base: Path, tree: Path, digits: np.ndarray, added: int, settle: float, dvc_first: bool
) -> dict[str, Any]:
    """Both tools on fresh copies of ``tree``: first time, then after adding files."""
    ours, theirs, project = base / "ours" / "images", base / "dvc" / "images", base / "project"
    shutil.copytree(tree, ours)
    shutil.copytree(tree, theirs)
    project.mkdir()
    (project / "loopline.yaml").write_text("pipelines: {}\n")
    timed(["git", "init", "-q"], theirs.parent)
    timed([str(BIN / "dvc"), "init", "-q"], theirs.parent)
    snapshot = [str(BIN / "loopline"), "-C", str(project), "data", "snapshot", str(ours), "--json"]
    dvc_add = [str(BIN / "dvc"), "add", "-q", "images"]
    result: dict[str, Any] = {}
    # The command's fixed cost (interpreter, imports, settings): a snapshot of an empty folder.
    (base / "empty").mkdir()
    result["ours_startup"], _ = timed([*snapshot[:-2], str(base / "empty"), "--json"], project)
    for phase in ("first", "incremental"):
        if phase == "incremental":
            add_files(ours, digits, added)
            add_files(theirs, digits, added)
        time.sleep(settle)
        order = ["dvc", "ours"] if dvc_first else ["ours", "dvc"]
        for tool in order:
            if tool == "ours":
                seconds, out = timed(snapshot, project)
                summary = json.loads(out)
                result[f"ours_{phase}"] = seconds
                result[f"rehashed_{phase}"] = summary["rehashed"]
                result[f"files_{phase}"] = summary["files"]
            else:
                result[f"dvc_{phase}"], _ = timed(dvc_add, theirs.parent)
    return result


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--added", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each timing")
    args = parser.parse_args()
    for tool in ("loopline", "dvc"):
        if not (BIN / tool).exists():
            sys.exit(f"{BIN / tool} not found: install with `pip install -e '.[dev]'`")

    digits = mnist_digits()
    with tempfile.TemporaryDirectory(prefix="loopline-bench-snapshot-") as scratch:
        tree = Path(scratch) / "tree"
        start = time.perf_counter()
        write_tree(tree, digits, args.files)
        size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        print(
            f"tree: {args.files} PNG files, {size / 1e6:.1f} MB, written in "
            f"{time.perf_counter() - start:.1f} s; then {args.added} JPEG files added"
        )
        rounds = []
        for index in range(args.repeats):
            base = Path(scratch) / f"round{index}"
            found = one_round(base, tree, digits, args.added, args.settle, index % 2 == 1)
            rounds.append(found)
            print(
                f"round {index + 1}: loopline {found['ours_first']:.2f} s, dvc add "
                f"{found['dvc_first']:.2f} s; after +{args.added}: loopline "
                f"{found['ours_incremental']:.2f} s ({found['rehashed_incremental']} files "
                f"read), dvc add {found['dvc_incremental']:.2f} s",
                flush=True,
            )
            shutil.rmtree(base)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 3)

    ours_first, dvc_first = median("ours_first"), median("dvc_first")
    ours_inc, dvc_inc = median("ours_incremental"), median("dvc_incremental")
    print(f"\n{'':34}{'loopline snapshot':>18}{'dvc add':>10}{'ratio':>8}")
    for label, ours, theirs in (
        (f"first ({args.files} files)", ours_first, dvc_first),
        (f"incremental (+{args.added} files)", ours_inc, dvc_inc),
    ):
        print(f"{label:34}{ours:>16.2f} s{theirs:>8.2f} s{theirs / ours:>7.1f}x")
    print(f"(medians of {args.repeats}; the whole command, interpreter start-up included)")
    startup = median("ours_startup")
    print(f"loopline's fixed cost (a snapshot of an empty folder): {startup:.2f} s")
    info = machine_info(load_start, ["loopline", "dvc", "dvc-data"])
    print(f"load average at start {info['load_start']}, at end {info['load_end']}")
    summary = {
        "files": args.files,
        "added": args.added,
        "repeats": args.repeats,
        "snapshot_s": ours_first,
        "dvc_add_s": dvc_first,
        "snapshot_incremental_s": ours_inc,
        "dvc_add_incremental_s": dvc_inc,
        "ratio_first": round(dvc_first / ours_first, 2),
        "ratio_incremental": round(dvc_inc / ours_inc, 2),
        "snapshot_startup_s": startup,
        "times": {
            key: [round(r[key], 3) for r in rounds]
            for key in (
                "ours_first",
                "dvc_first",
                "ours_incremental",
                "dvc_incremental",
                "ours_startup",
            )
        },
        "rehashed": {
            "first": [r["rehashed_first"] for r in rounds],
            "incremental": [r["rehashed_incremental"] for r in rounds],
        },
        "machine": info,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
