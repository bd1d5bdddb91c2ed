"""Detection datasets on the real COCO8 (YOLO labels) and on broken copies of it."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from loopline.data.detection import (
    DetectionRules,
    Problem,
    read_coco,
    read_detection,
    read_yolo,
    require_valid,
    validate_detection,
    write_coco,
)
from loopline.errors import DataError

PIL = pytest.importorskip("PIL")

# Boxes per class in COCO8, as listed in ../shared/data/SOURCES.md.
COCO8_CLASSES = {
    "person": 10,
    "orange": 4,
    "bowl": 3,
    "elephant": 2,
    "giraffe": 2,
    "horse": 2,
    "potted plant": 2,
    "broccoli": 1,
    "dog": 1,
    "umbrella": 1,
    "vase": 1,
    "zebra": 1,
}


@pytest.fixture
def coco8(shared_data: Path) -> Path:
    return shared_data / "images" / "coco8"


@pytest.fixture
def copy(coco8: Path, tmp_path: Path) -> Path:
    """A writable copy of COCO8 (images, labels, classes.txt) to break."""
    root = tmp_path / "coco8"
    for sub in ("images", "labels"):
        shutil.copytree(coco8 / sub, root / sub)
    shutil.copy(coco8 / "classes.txt", root)
    return root


def kinds(problems: list[Problem]) -> set[tuple[str, str, str]]:
    return {(p.kind, p.file, p.severity) for p in problems}


def test_reads_coco8_yolo_labels_into_absolute_boxes(coco8: Path) -> None:
    ds = read_yolo(coco8)
    assert ds.format == "yolo" and len(ds.images) == 8 and len(ds.annotations) == 30
    assert len(ds.categories) == 80 and ds.categories[0].name == "person"
    first = ds.images[0]
    assert first.file_name == "train/000000000009.jpg"
    assert (first.width, first.height) == (640, 480)
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert first.label_file == "labels/train/000000000009.txt"
    # First line of labels/train/000000000009.txt: 45 0.479492 0.688771 0.955609 0.5955
    box = next(a for a in ds.annotations if a.image_id == first.id)
    assert box.category_id == 45
    assert box.bbox == pytest.approx(
        (
            (0.479492 - 0.955609 / 2) * 640,
            (0.688771 - 0.5955 / 2) * 480,
            0.955609 * 640,
            0.5955 * 480,
        )
    )
    names = {c.id: c.name for c in ds.categories}
    assert Counter(names[a.category_id] for a in ds.annotations) == COCO8_CLASSES
    assert ds.labels_without_images == []


def test_coco8_passes_validation_with_only_the_unused_classes_warning(coco8: Path) -> None:
    report = validate_detection(read_detection(coco8))
    assert report.passed and report.images == 8 and report.annotations == 30
    assert [p.kind for p in report.problems] == ["unused_classes"]
    assert "68 of 80 classes have no boxes" in report.problems[0].detail
    assert {k: v for k, v in report.class_counts.items() if v} == COCO8_CLASSES
    assert len(report.class_counts) == 80
    require_valid(report)  # no errors: nothing raised
    as_dict = report.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict and as_dict["errors"] == 0


def test_broken_copy_reports_every_problem_with_its_file(copy: Path) -> None:
    images, labels = copy / "images", copy / "labels"
    # A JPEG cut off in the middle of a copy.
    jpeg = images / "train" / "000000000025.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    # A box whose right half is outside the image, a box of no area, a class past the list.
    with (labels / "train" / "000000000009.txt").open("a") as f:
        f.write("0 0.95 0.5 0.3 0.2\n0 0.5 0.5 0 0.1\n80 0.5 0.5 0.1 0.1\n")
    # A label file without its image, an image without its label file.
    shutil.copy(labels / "val" / "000000000036.txt", labels / "val" / "orphan.txt")
    (labels / "val" / "000000000042.txt").unlink()
    # The same picture twice (under another name, with its labels).
    shutil.copy(images / "train" / "000000000030.jpg", images / "val" / "again.jpg")
    shutil.copy(labels / "train" / "000000000030.txt", labels / "val" / "again.txt")

    report = validate_detection(read_yolo(copy))

    assert not report.passed
    found = kinds(report.problems)
    expected = {
        ("unreadable_image", "images/train/000000000025.jpg", "error"),
        ("box_outside", "labels/train/000000000009.txt", "error"),
        ("degenerate_box", "labels/train/000000000009.txt", "error"),
        ("unknown_class", "labels/train/000000000009.txt", "error"),
        ("label_without_image", "labels/val/orphan.txt", "error"),
        ("image_without_labels", "images/val/000000000042.jpg", "warning"),
        ("duplicate_image", "images/val/again.jpg", "warning"),
    }
    assert expected <= found
    assert len(report.errors) == 5  # nothing else is wrong with the copy
    truncated = next(p for p in report.problems if p.kind == "unreadable_image")
    assert "truncated" in truncated.detail
    outside = next(p for p in report.problems if p.kind == "box_outside")
    assert "outside the 640x480 image" in outside.detail
    unknown = next(p for p in report.problems if p.kind == "unknown_class")
    assert "class id 80 is not among the 80 classes" in unknown.detail
    duplicate = next(p for p in report.problems if p.kind == "duplicate_image")
    assert duplicate.detail == "same content as images/train/000000000030.jpg"
    assert [p.severity for p in report.problems] == sorted(
        (p.severity for p in report.problems), key=lambda s: s != "error"
    )
    text = report.format_text()
    assert "FAILED" in text and "5 errors" in text
    assert "error: box_outside: labels/train/000000000009.txt: box" in text

    with pytest.raises(DataError) as caught:
        require_valid(report)
    message = str(caught.value)
    assert "has 5 errors" in message
    for name in ("images/train/000000000025.jpg", "labels/val/orphan.txt"):
        assert name in message
    assert "orphan" in message and "image_without_labels" not in message
    assert caught.value.hint and "check-detection" in caught.value.hint


def test_modes_and_sizes_follow_the_rules(copy: Path) -> None:
    from PIL import Image

    gray = copy / "images" / "val" / "000000000036.jpg"
    with Image.open(gray) as img:
        img.convert("L").save(gray)
    cmyk = copy / "images" / "val" / "000000000049.jpg"
    with Image.open(cmyk) as img:
        img.convert("CMYK").save(cmyk)
    ds = read_yolo(copy)

    default = validate_detection(ds)
    assert kinds(default.errors) == {("wrong_mode", "images/val/000000000049.jpg", "error")}
    assert "mode CMYK, expected RGB or L" in default.errors[0].detail

    strict = validate_detection(ds, DetectionRules(modes=("RGB",), min_side=400, max_side=600))
    found = kinds(strict.errors)
    assert ("wrong_mode", "images/val/000000000036.jpg", "error") in found
    small = {f for k, f, _ in found if k == "too_small"}
    large = {f for k, f, _ in found if k == "too_large"}
    assert small == {"images/" + im.file_name for im in ds.images if min(im.width, im.height) < 400}
    assert small  # COCO8 has a 381 px side
    assert large == {"images/" + im.file_name for im in ds.images if max(im.width, im.height) > 600}


def test_rare_classes_get_a_warning(coco8: Path) -> None:
    # 1 of 30 boxes is 3.3%: under a 5% share.
    report = validate_detection(read_yolo(coco8), DetectionRules(min_class_share=0.05))
    rare = {p.detail.split("'")[1] for p in report.problems if p.kind == "rare_class"}
    assert rare == {name for name, n in COCO8_CLASSES.items() if n / 30 < 0.05}
    assert report.passed


def test_yolo_to_coco_and_back_keeps_every_box(coco8: Path, tmp_path: Path) -> None:
    yolo = read_yolo(coco8)
    written = write_coco(yolo, tmp_path / "instances.json")
    assert written == tmp_path / "instances.json"
    assert [p.name for p in tmp_path.iterdir()] == ["instances.json"]  # no temp file left

    back = read_coco(written, images_dir=yolo.images_dir)
    assert back.format == "coco"
    assert back.categories == yolo.categories
    assert back.images == [
        type(im)(im.id, im.file_name, im.path, im.width, im.height, im.sha256) for im in yolo.images
    ]
    assert back.annotations == yolo.annotations
    report = validate_detection(back)
    assert report.passed and report.class_counts == validate_detection(yolo).class_counts

    raw = json.loads(written.read_text())
    assert raw["annotations"][0]["area"] == pytest.approx(
        raw["annotations"][0]["bbox"][2] * raw["annotations"][0]["bbox"][3]
    )
    # read_detection finds the format, and the JSON file's folder is the default image root.
    shutil.copytree(yolo.images_dir, tmp_path / "train2017")
    coco_dir = tmp_path / "train2017"
    write_coco(back, coco_dir / "annotations.json")
    again = read_detection(coco_dir)
    assert again.format == "coco" and again.annotations == yolo.annotations
    assert validate_detection(again).passed


def test_coco_problems_missing_images_orphans_and_sizes(coco8: Path, tmp_path: Path) -> None:
    path = write_coco(read_yolo(coco8), tmp_path / "coco.json")
    data = json.loads(path.read_text())
    data["images"][0]["width"] = 999
    data["images"][1]["file_name"] = "train/gone.jpg"
    data["annotations"][0]["image_id"] = 4242
    data["annotations"][1]["category_id"] = 4242
    path.write_text(json.dumps(data))
    report = validate_detection(read_coco(path, images_dir=coco8 / "images"))
    found = kinds(report.errors)
    assert ("size_mismatch", "train/000000000009.jpg", "error") in found
    assert ("missing_image", "train/gone.jpg", "error") in found
    assert ("label_without_image", "coco.json: annotation 1 (image_id 4242)", "error") in found
    assert any(k == "unknown_class" for k, _, _ in found)


def test_bad_yolo_lines_are_listed_with_file_and_line(copy: Path) -> None:
    label = copy / "labels" / "train" / "000000000030.txt"
    label.write_text(label.read_text() + "12 0.5 0.5\nperson 0.1 0.1 0.2 0.2\n")
    with pytest.raises(DataError) as caught:
        read_yolo(copy)
    message = str(caught.value)
    assert "2 bad label lines" in message
    assert "labels/train/000000000030.txt:3 (expected 5 fields, found 3" in message
    assert "labels/train/000000000030.txt:4 (not an integer class and four numbers" in message
    assert "class cx cy w h" in message


def test_two_images_for_one_label_name_are_refused(copy: Path) -> None:
    shutil.copy(copy / "images/train/000000000009.jpg", copy / "images/train/000000000009.png")
    with pytest.raises(DataError, match="share one label file name") as caught:
        read_yolo(copy)
    assert "000000000009.jpg and 000000000009.png" in str(caught.value)


def test_class_names_from_data_yaml(copy: Path) -> None:
    (copy / "classes.txt").unlink()
    with pytest.raises(DataError, match=r"expected data.yaml .* or classes.txt"):
        read_yolo(copy)
    (copy / "data.yaml").write_text("names:\n  0: person\n  45: bowl\n")
    assert [(c.id, c.name) for c in read_yolo(copy).categories] == [(0, "person"), (45, "bowl")]
    (copy / "data.yaml").write_text("names: [person, bicycle]\n")
    assert [c.name for c in read_yolo(copy).categories] == ["person", "bicycle"]
    (copy / "data.yaml").write_text("nc: 2\n")
    with pytest.raises(DataError, match="has no class names"):
        read_yolo(copy)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"images": []}', "expected an object with the lists 'images', 'annotations'"),
        (
            '{"images": [{"id": 1, "file_name": "a.jpg", "width": 5}], "annotations": '
            '[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2]}], "categories": []}',
            "2 malformed entries",
        ),
    ],
)
def test_malformed_coco_json_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        read_coco(path)
    assert caught.value.hint
    if "malformed" in message:
        text = str(caught.value)
        assert "images[0] (missing or wrong type: height (int))" in text
        assert "annotations[0] (bbox must be [x, y, width, height] numbers, found [1, 2])" in text


def test_missing_paths_and_unknown_formats(tmp_path: Path, coco8: Path) -> None:
    with pytest.raises(DataError, match="dataset not found"):
        read_detection(tmp_path / "nope")
    with pytest.raises(DataError, match="no dataset in"):
        read_detection(tmp_path)
    with pytest.raises(DataError, match=r"not a YOLO dataset: .* has no images/ folder"):
        read_detection(coco8 / "images", "yolo")
    with pytest.raises(DataError, match="unknown detection format"):
        read_detection(coco8, "voc")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="does not exist"):
        write_coco(read_yolo(coco8), tmp_path / "missing" / "out.json")
