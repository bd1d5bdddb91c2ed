"""MNIST canvases: seeded, tight boxes from the ink, disjoint pools, atomic writes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loopline.data.canvas import (
    ANNOTATIONS_FILE,
    CLASSES,
    HELDOUT_POOL,
    TRAIN_POOL,
    CanvasSpec,
    Digits,
    add_canvases,
    find_mnist,
    generate_canvases,
    load_mnist,
    write_canvas_dataset,
)
from loopline.data.detection import read_detection, validate_detection
from loopline.errors import DataError

MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images" / "mnist"


@pytest.fixture(scope="module")
def digits() -> Digits:
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    return load_mnist(MNIST)


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def test_mnist_is_read_as_published(digits: Digits) -> None:
    assert digits.images.shape == (10_000, 28, 28) and digits.images.dtype == np.uint8
    assert digits.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # MNIST's test set
    train, held = digits.pool(TRAIN_POOL), digits.pool(HELDOUT_POOL)
    assert len(train) == 8_000 and len(held) == 2_000
    assert not set(train) & set(held) and len(set(train) | set(held)) == 10_000
    assert sorted(set(digits.labels[held].tolist())) == list(range(10))  # every digit held out


def test_the_same_seed_writes_the_same_bytes(digits: Digits, tmp_path: Path) -> None:
    a = generate_canvases(tmp_path / "a", 6, seed=3, digits=digits)
    generate_canvases(tmp_path / "b", 6, seed=3, digits=digits)
    generate_canvases(tmp_path / "c", 6, seed=4, digits=digits)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")
    assert len(a.images) == 6 and 6 * 3 <= len(a.annotations) <= 6 * 5
    assert [c.name for c in a.categories] == CLASSES == [str(d) for d in range(10)]


def test_boxes_are_tight_around_the_ink_and_cover_all_of_it(digits: Digits, tmp_path: Path) -> None:
    dataset = generate_canvases(tmp_path / "set", 12, seed=1, digits=digits)
    assert validate_detection(dataset).errors == []
    for image in dataset.images:
        pixels = np.asarray(Image.open(image.path))
        assert pixels.shape == (128, 128) and Image.open(image.path).mode == "L"
        covered = np.zeros_like(pixels, dtype=bool)
        for a in (a for a in dataset.annotations if a.image_id == image.id):
            x, y, w, h = (int(v) for v in a.bbox)
            assert a.bbox == (x, y, w, h) and w > 2 and h > 2
            crop = pixels[y : y + h, x : x + w] >= 64
            # tight: ink on every edge of the box
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            covered[y : y + h, x : x + w] = True
        # complete: no ink outside the boxes (digits never overlap, so none is missed)
        assert not ((pixels >= 64) & ~covered).any()


def test_a_box_holds_the_digit_its_label_names(digits: Digits, tmp_path: Path) -> None:
    """The label is the MNIST label of the digit drawn there: a nearest-neighbour match of
    the box's content against the pool's digits, each scaled to the same box, agrees."""
    dataset = generate_canvases(tmp_path / "set", 3, seed=7, digits=digits, pool=HELDOUT_POOL)
    pool = digits.pool(HELDOUT_POOL)

    def shape(pixels: np.ndarray) -> np.ndarray:  # the ink's bounding box, at 14 x 14
        ink = np.argwhere(pixels >= 64)
        (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
        crop = pixels[top:bottom, left:right].astype(np.float32)
        return np.asarray(Image.fromarray(crop).resize((14, 14)))

    candidates = np.stack([shape(digits.images[index]) for index in pool])
    for image in dataset.images:
        pixels = np.asarray(Image.open(image.path))
        for a in (a for a in dataset.annotations if a.image_id == image.id):
            x, y, w, h = (int(v) for v in a.bbox)
            distance = ((candidates - shape(pixels[y : y + h, x : x + w])) ** 2).sum(axis=(1, 2))
            assert int(digits.labels[pool[distance.argmin()]]) == a.category_id


def test_adding_canvases_continues_the_same_sequence(digits: Digits, tmp_path: Path) -> None:
    generate_canvases(tmp_path / "whole", 7, seed=2, digits=digits)
    generate_canvases(tmp_path / "grown", 4, seed=2, digits=digits)
    grown = add_canvases(tmp_path / "grown", 3, seed=2, digits=digits)
    assert files(tmp_path / "whole") == files(tmp_path / "grown")
    assert [im.id for im in grown.images] == list(range(1, 8))
    ids = [a.id for a in grown.annotations]
    assert ids == sorted(set(ids))


def test_the_dataset_layout_and_its_pools(digits: Digits, tmp_path: Path) -> None:
    root = tmp_path / "canvases"
    write_canvas_dataset(
        root, train=5, heldout=3, mnist=find_mnist(MNIST), spec=CanvasSpec(size=96)
    )
    assert sorted(p.name for p in root.iterdir()) == ["heldout", "train"]
    train, held = read_detection(root / "train"), read_detection(root / "heldout")
    assert (len(train.images), len(held.images)) == (5, 3)
    assert {(im.width, im.height) for im in train.images} == {(96, 96)}
    # the held-out canvases draw other digits: not a single canvas in common
    assert not {im.sha256 for im in train.images} & {im.sha256 for im in held.images}


def test_bad_requests_leave_nothing_behind(digits: Digits, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not overwriting"):
        generate_canvases(taken, 2, digits=digits)
    with pytest.raises(DataError, match="not overwriting"):
        write_canvas_dataset(taken, train=1, heldout=1, mnist=MNIST)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    with pytest.raises(DataError, match="min_digits <= max_digits"):
        generate_canvases(
            tmp_path / "x", 2, digits=digits, spec=CanvasSpec(min_digits=4, max_digits=2)
        )
    with pytest.raises(DataError, match="canvas folder not found"):
        add_canvases(tmp_path / "missing", 2, digits=digits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary leftovers


def test_mnist_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MNIST not found") as found:
        find_mnist(tmp_path)
    assert "LOOPLINE_MNIST" in str(found.value.hint)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01rest"))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01"))
    with pytest.raises(DataError, match="not an MNIST IDX file"):
        load_mnist(tmp_path)


def test_annotations_are_coco_json(digits: Digits, tmp_path: Path) -> None:
    generate_canvases(tmp_path / "set", 2, digits=digits)
    data = json.loads((tmp_path / "set" / ANNOTATIONS_FILE).read_text())
    assert {"images", "annotations", "categories"} <= data.keys()
    assert data["images"][0] == {
        "id": 1, "file_name": "canvas_000001.png", "width": 128, "height": 128
    }  # fmt: skip
