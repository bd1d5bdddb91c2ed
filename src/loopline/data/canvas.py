"""Detection data from real handwriting: MNIST digits placed on larger canvases.

:func:`generate_canvases` draws canvases of several MNIST digits each (random scale and
position, no two digits overlapping), computes each digit's tight box from its ink, and
writes a COCO dataset folder (``images/*.png`` and ``annotations.json``, through
:func:`~loopline.data.detection.write_coco`) that :func:`~loopline.data.detection.read_detection`
reads back. The ten digits are the ten classes (names ``"0"`` .. ``"9"``, ids 0 .. 9).

The MNIST images are split in two disjoint pools (:data:`TRAIN_POOL`, :data:`HELDOUT_POOL`):
training canvases only ever use digits of one, held-out canvases only of the other, so a
detector is scored on handwriting it has never seen. :func:`write_canvas_dataset` makes the
usual project layout, ``train/`` and ``heldout/`` side by side; :func:`add_canvases` appends
new canvases to an existing folder (what "new images arrived" looks like).

Canvas ``i`` of a folder depends only on ``(seed, pool, i)``: the same call writes the same
bytes, and adding canvases later yields exactly those a larger first call would have made.

MNIST is read from gzip IDX files (``t10k-images-idx3-ubyte.gz`` and its labels), as
published. Pillow is imported inside the functions.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from loopline.data.detection import (
    Annotation,
    Category,
    DetectionDataset,
    DetectionImage,
    read_coco,
    write_coco,
)
from loopline.data.folders import require_folder
from loopline.errors import DataError

__all__ = [
    "ANNOTATIONS_FILE",
    "CLASSES",
    "HELDOUT_POOL",
    "MNIST_ENV",
    "TRAIN_POOL",
    "CanvasSpec",
    "Digits",
    "add_canvases",
    "find_mnist",
    "generate_canvases",
    "load_mnist",
    "write_canvas_dataset",
]

Pool = Literal["train", "heldout"]
TRAIN_POOL: Pool = "train"
HELDOUT_POOL: Pool = "heldout"
CLASSES = [str(d) for d in range(10)]
ANNOTATIONS_FILE = "annotations.json"
#: Where :func:`find_mnist` looks first: a folder holding the MNIST IDX files.
MNIST_ENV = "LOOPLINE_MNIST"

_IMAGES = "t10k-images-idx3-ubyte"
_LABELS = "t10k-labels-idx1-ubyte"
# Pixels (0-255) at or above this count as ink for the tight box; the faint anti-aliased
# rim around a stroke is left out, as a person drawing the box would.
_INK = 64
_POOL_IDS = {TRAIN_POOL: 1, HELDOUT_POOL: 2}


@dataclass(frozen=True)
class Digits:
    """MNIST digits: ``images`` (n x 28 x 28, uint8, white ink on black) and ``labels`` (n)."""

    images: np.ndarray
    labels: np.ndarray

    def pool(self, which: Pool) -> np.ndarray:
        """Indexes of the digits in pool ``which``: every fifth digit is held out.

        Interleaved rather than a cut: the MNIST test set's first half is written more
        neatly than its second, and both pools should hold both.
        """
        index = np.arange(len(self.labels))
        held = index % 5 == 4
        return index[held] if which == HELDOUT_POOL else index[~held]


@dataclass(frozen=True)
class CanvasSpec:
    """How canvases look: ``size`` (square, pixels), digits per canvas (``min_digits`` ..
    ``max_digits``), digit side in pixels (``min_scale`` .. ``max_scale``; an MNIST digit is
    28 px with its ink in the middle ~20)."""

    size: int = 128
    min_digits: int = 3
    max_digits: int = 5
    min_scale: int = 24
    max_scale: int = 44

    def check(self) -> None:
        """Raise :class:`~loopline.errors.DataError` when the numbers cannot make canvases."""
        if not 1 <= self.min_digits <= self.max_digits:
            raise DataError(
                f"digits per canvas {self.min_digits}..{self.max_digits} is not a range",
                hint="use 1 <= min_digits <= max_digits",
            )
        if not 8 <= self.min_scale <= self.max_scale <= self.size:
            raise DataError(
                f"digit sizes {self.min_scale}..{self.max_scale} px do not fit {self.size} px "
                "canvases",
                hint="use 8 <= min_scale <= max_scale <= size",
            )


def find_mnist(folder: str | Path | None = None) -> Path:
    """The folder holding MNIST's IDX files: ``folder``, else ``$LOOPLINE_MNIST``, else the
    shared data beside a source checkout (``../shared/data/images/mnist``)."""
    candidates = [Path(folder).expanduser()] if folder is not None else []
    if folder is None and os.environ.get(MNIST_ENV):
        candidates.append(Path(os.environ[MNIST_ENV]).expanduser())
    if folder is None:
        checkout = Path(__file__).resolve().parents[3]
        candidates.append(checkout.parent / "shared" / "data" / "images" / "mnist")
    for candidate in candidates:
        if _idx_file(candidate, _IMAGES) is not None:
            return candidate
    raise DataError(
        "MNIST not found: no t10k-images-idx3-ubyte(.gz) in "
        + ", ".join(str(c) for c in candidates),
        hint=f"download the four MNIST files into a folder and pass it, or set ${MNIST_ENV}",
    )


def load_mnist(folder: str | Path | None = None) -> Digits:
    """Read MNIST's test set (10,000 digits) from its gzip (or plain) IDX files."""
    base = find_mnist(folder)
    images_file, labels_file = _idx_file(base, _IMAGES), _idx_file(base, _LABELS)
    if images_file is None or labels_file is None:
        raise DataError(
            f"MNIST in {base} lacks {_LABELS}(.gz)", hint="put the labels file beside the images"
        )
    images = _read_idx(images_file, magic=2051)
    labels = _read_idx(labels_file, magic=2049)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(
            f"MNIST files in {base} do not match: {images.shape} images, {labels.shape} labels",
            hint="use the images and labels files of the same MNIST set",
        )
    return Digits(images=images, labels=labels)


def generate_canvases(
    folder: str | Path,
    count: int,
    *,
    pool: Pool = TRAIN_POOL,
    seed: int = 0,
    digits: Digits | None = None,
    spec: CanvasSpec = CanvasSpec(),
) -> DetectionDataset:
    """Write ``count`` canvases as a new COCO dataset folder ``folder`` and return it.

    ``folder`` must not exist or be empty; it is written under a temporary name and
    renamed, so a failure leaves nothing behind. Digits come from ``pool`` of ``digits``
    (default: :func:`load_mnist`). Returns the dataset as :func:`read_coco` reads it.
    """
    target = Path(folder).expanduser()
    _write_new_folder(
        target, lambda temp: _write(temp, count, pool, seed, digits, spec, start=0, existing=None)
    )
    return read_coco(target / ANNOTATIONS_FILE, images_dir=target / "images")


def add_canvases(
    folder: str | Path,
    count: int,
    *,
    pool: Pool = TRAIN_POOL,
    seed: int = 0,
    digits: Digits | None = None,
    spec: CanvasSpec = CanvasSpec(),
) -> DetectionDataset:
    """Append ``count`` new canvases to the canvas folder ``folder`` and return it.

    The new canvases continue the numbering (canvas ``n`` of ``seed`` and ``pool``, as a
    larger :func:`generate_canvases` call would have made it). Images are written first and
    the annotations file is replaced last, in one rename: a reader sees the old dataset or
    the new one, never a mixture.
    """
    base = require_folder(
        folder, name="canvas folder", expected="a canvas folder", holds=ANNOTATIONS_FILE
    )
    existing = read_coco(base / ANNOTATIONS_FILE, images_dir=base / "images")
    start = max((im.id for im in existing.images), default=0)
    _write(base, count, pool, seed, digits, spec, start=start, existing=existing)
    return read_coco(base / ANNOTATIONS_FILE, images_dir=base / "images")


def write_canvas_dataset(
    root: str | Path,
    *,
    train: int = 1_000,
    heldout: int = 200,
    seed: int = 0,
    mnist: str | Path | None = None,
    spec: CanvasSpec = CanvasSpec(),
) -> Path:
    """Write ``root/train`` and ``root/heldout``, canvas folders drawn from the two
    disjoint MNIST pools; returns ``root``. All or nothing: ``root`` appears complete (it
    must not exist, or be an empty folder)."""
    digits = load_mnist(mnist)
    base = Path(root).expanduser()

    def fill(temp: Path) -> None:
        for pool, count in ((TRAIN_POOL, train), (HELDOUT_POOL, heldout)):
            generate_canvases(temp / pool, count, pool=pool, seed=seed, digits=digits, spec=spec)

    _write_new_folder(base, fill)
    return base


def _write_new_folder(target: Path, fill: Callable[[Path], None]) -> None:
    """Make ``target`` (missing or an empty folder) all at once: ``fill`` writes a temporary
    folder beside it, which is then renamed; on any failure nothing is left behind."""
    _check_new(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        fill(temp)
        if target.exists():
            target.rmdir()
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _check_new(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(
            f"not overwriting {target}: it exists and is not an empty folder",
            hint="choose a new folder, or add canvases to it with add_canvases()",
        )


# ---------------------------------------------------------------------------------------------


def _write(
    folder: Path,
    count: int,
    pool: Pool,
    seed: int,
    digits: Digits | None,
    spec: CanvasSpec,
    *,
    start: int,
    existing: DetectionDataset | None,
) -> None:
    from PIL import Image

    if count < 0:
        raise DataError(f"cannot make {count} canvases", hint="pass a count of 0 or more")
    if pool not in _POOL_IDS:
        raise DataError(f"unknown pool {pool!r}", hint="use 'train' or 'heldout'")
    spec.check()
    source = digits if digits is not None else load_mnist()
    chosen = source.pool(pool)
    images_dir = folder / "images"
    images_dir.mkdir(exist_ok=True)
    images = list(existing.images) if existing else []
    annotations = list(existing.annotations) if existing else []
    next_box = max((a.id for a in annotations), default=0) + 1
    written: list[Path] = []
    try:
        for image_id in range(start + 1, start + count + 1):
            rng = np.random.default_rng([seed, _POOL_IDS[pool], image_id])
            pixels, boxes = _canvas(rng, source, chosen, spec)
            name = f"canvas_{image_id:06d}.png"
            path = images_dir / name
            if path.exists():
                raise DataError(
                    f"{path} exists but is not in {ANNOTATIONS_FILE}",
                    hint="remove stray images from the canvas folder, or pick a new folder",
                )
            Image.fromarray(pixels, mode="L").save(path)
            written.append(path)
            images.append(DetectionImage(image_id, name, path, spec.size, spec.size, ""))
            for label, box in boxes:
                annotations.append(Annotation(next_box, image_id, label, box))
                next_box += 1
        dataset = DetectionDataset(
            root=folder,
            images_dir=images_dir,
            format="coco",
            categories=[Category(i, name) for i, name in enumerate(CLASSES)],
            images=images,
            annotations=annotations,
        )
        write_coco(dataset, folder / ANNOTATIONS_FILE)
    except BaseException:
        for path in written:  # what this call added; the annotations file is unchanged
            path.unlink(missing_ok=True)
        raise


def _canvas(
    rng: np.random.Generator, digits: Digits, chosen: np.ndarray, spec: CanvasSpec
) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
    """One canvas and its boxes; digits never overlap (a placement that would is retried,
    and after 50 tries the canvas keeps the digits it has)."""
    from PIL import Image

    canvas = np.zeros((spec.size, spec.size), dtype=np.uint8)
    placed: list[tuple[int, int, int]] = []  # x, y, side of each digit's square
    boxes: list[tuple[int, tuple[float, float, float, float]]] = []
    wanted = int(rng.integers(spec.min_digits, spec.max_digits + 1))
    for _ in range(50):
        if len(placed) == wanted:
            break
        side = int(rng.integers(spec.min_scale, spec.max_scale + 1))
        x, y = (int(v) for v in rng.integers(0, spec.size - side + 1, size=2))
        index = int(chosen[rng.integers(len(chosen))])
        if any(_overlap((x, y, side), other) for other in placed):
            continue
        patch = np.asarray(
            Image.fromarray(digits.images[index]).resize((side, side), Image.Resampling.BILINEAR)
        )
        ys, xs = np.nonzero(patch >= _INK)
        if len(xs) == 0:
            continue
        region = canvas[y : y + side, x : x + side]
        np.maximum(region, patch, out=region)
        x0, y0 = x + int(xs.min()), y + int(ys.min())
        box = (float(x0), float(y0), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
        boxes.append((int(digits.labels[index]), box))
        placed.append((x, y, side))
    return canvas, boxes


def _overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    (ax, ay, aside), (bx, by, bside) = a, b
    return ax < bx + bside and bx < ax + aside and ay < by + bside and by < ay + aside


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path, *, magic: int) -> np.ndarray:
    """An IDX array (big-endian header: magic, then one 32-bit size per dimension)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path} is not an MNIST IDX file (magic number {found}, expected {magic})",
            hint="use the files as published (t10k-images-idx3-ubyte.gz and its labels)",
        )
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
