"""Image folders on the real COCO8 JPEGs: inventory, labels, bad files, statistics."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.data.images import image_statistics, read_image_folder
from loopline.errors import DataError

PIL = pytest.importorskip("PIL")


def coco8(shared_data: Path) -> Path:
    return shared_data / "images" / "coco8" / "images"


@pytest.fixture
def class_folders(shared_data: Path, tmp_path: Path) -> Path:
    """COCO8 copied as root/<label>/<image>: the train images under "train", val under "val"."""
    root = tmp_path / "classes"
    for split in ("train", "val"):
        shutil.copytree(coco8(shared_data) / split, root / split)
    return root


def test_reads_every_coco8_image_sorted_by_path(shared_data: Path) -> None:
    df = read_image_folder(coco8(shared_data))
    assert list(df.columns) == [
        "path",
        "label",
        "width",
        "height",
        "mode",
        "format",
        "bytes",
        "sha256",
    ]
    assert len(df) == 8
    assert df["path"].tolist() == sorted(df["path"])
    assert all(Path(p).is_absolute() for p in df["path"])
    assert df["label"].value_counts().to_dict() == {"train": 4, "val": 4}
    assert set(df["mode"]) == {"RGB"} and set(df["format"]) == {"JPEG"}
    assert df[["width", "height"]].max().max() == 640
    assert df[["width", "height"]].min().min() >= 381
    first = Path(df["path"].iloc[0])
    assert first.name == "000000000009.jpg"
    assert df["bytes"].iloc[0] == first.stat().st_size
    assert df["sha256"].iloc[0] == hashlib.sha256(first.read_bytes()).hexdigest()


def test_labels_come_from_the_folder_names(class_folders: Path) -> None:
    (class_folders / "val" / "extra").mkdir()
    shutil.copy(class_folders / "val" / "000000000036.jpg", class_folders / "val" / "extra")
    shutil.copy(class_folders / "val" / "000000000042.jpg", class_folders)  # at the top
    (class_folders / "notes.txt").write_text("not an image")  # other extensions are ignored
    df = read_image_folder(class_folders)
    assert len(df) == 10
    labels = dict(
        zip(
            df["path"].map(lambda p: Path(p).relative_to(class_folders).as_posix()),
            df["label"],
            strict=True,
        )
    )
    assert labels["train/000000000009.jpg"] == "train"
    assert labels["val/extra/000000000036.jpg"] == "val/extra"
    assert pd.isna(labels["000000000042.jpg"])
    # The same bytes under another name have the same digest.
    digests = df.set_index(df["path"].map(lambda p: Path(p).name))["sha256"]
    assert digests["000000000042.jpg"].nunique() == 1
    unlabelled = read_image_folder(class_folders, labels="none")
    assert "label" not in unlabelled.columns and len(unlabelled) == 10


def test_truncated_and_fake_images_are_listed_by_name(class_folders: Path) -> None:
    good = class_folders / "train" / "000000000009.jpg"
    data = good.read_bytes()
    (class_folders / "train" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (class_folders / "val" / "fake.jpg").write_text("this is not a JPEG")
    with pytest.raises(DataError) as info:
        read_image_folder(class_folders)
    message = info.value.message
    assert message.startswith("2 of 10 images in ")
    assert "train/cut.jpg (image file is truncated" in message
    assert "val/fake.jpg (not an image Pillow can identify)" in message
    assert info.value.hint is not None


def test_long_lists_of_bad_files_are_cut_at_20(tmp_path: Path) -> None:
    for i in range(25):
        (tmp_path / f"bad{i:02d}.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"25 of 25 images .*bad19\.png .*and 5 more") as info:
        read_image_folder(tmp_path)
    assert "bad20.png" not in info.value.message


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match=r"no images in .*found \.md"):
        read_image_folder(tmp_path)
    with pytest.raises(DataError, match="image folder not found"):
        read_image_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="expected a folder of images, found a file"):
        read_image_folder(tmp_path / "readme.md")


def test_extensions_choose_the_files(class_folders: Path) -> None:
    shutil.copy(class_folders / "train" / "000000000009.jpg", class_folders / "copy.JPEG")
    assert len(read_image_folder(class_folders, extensions=["jpeg"])) == 1
    assert len(read_image_folder(class_folders)) == 9  # the default includes .jpeg, any case


def test_statistics_match_pil_and_numpy(shared_data: Path) -> None:
    from PIL import Image

    paths = sorted(coco8(shared_data).rglob("*.jpg"))
    stats = image_statistics(paths)
    assert list(stats.columns) == [
        "width",
        "height",
        "aspect",
        "brightness",
        "contrast",
        "saturation",
    ]
    assert len(stats) == 8
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"), dtype=np.float64)
            hsv = np.asarray(img.convert("RGB").convert("HSV"), dtype=np.float64)
            width, height = img.size
        row = stats.iloc[i]
        assert row["width"] == width and row["height"] == height
        assert row["aspect"] == pytest.approx(width / height)
        assert row["brightness"] == pytest.approx(gray.mean())
        assert row["contrast"] == pytest.approx(gray.std())
        assert row["saturation"] == pytest.approx(hsv[..., 1].mean())
        assert 0 <= row["brightness"] <= 255 and 0 <= row["saturation"] <= 255


def test_statistics_of_other_modes(tmp_path: Path) -> None:
    from PIL import Image

    gray = tmp_path / "gray.png"
    Image.new("L", (40, 20), color=100).save(gray)
    red = tmp_path / "red.png"
    Image.new("RGBA", (10, 10), color=(255, 0, 0, 255)).save(red)
    stats = image_statistics([gray, str(red)])
    assert stats["aspect"].tolist() == [2.0, 1.0]
    assert stats["brightness"].iloc[0] == 100 and stats["contrast"].iloc[0] == 0
    assert stats["saturation"].tolist() == [0.0, 255.0]
    assert image_statistics([]).empty


def test_statistics_name_a_bad_file(shared_data: Path, tmp_path: Path) -> None:
    good = coco8(shared_data) / "val" / "000000000061.jpg"
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"1 of 3 images cannot be read: .*cut\.jpg \(image file"):
        image_statistics([good, cut, good])
    with pytest.raises(DataError, match=r"missing\.jpg \(file not found\)"):
        image_statistics([tmp_path / "missing.jpg"])
