"""Image folders: an inventory of the images (with labels from folder names) and statistics.

:func:`read_image_folder` lists the images under a folder and decodes every one of them once,
so a truncated or corrupt file is found when the data is collected, not in the middle of
training. :func:`image_statistics` computes the per-image numbers (size, brightness,
contrast, saturation) that a monitoring reference profile keeps for image inputs.

Pillow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopline.data.folders import require_folder
from loopline.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "image_statistics", "read_image_folder"]

#: File extensions read as images by default.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_MAX_LISTED = 20
_STAT_COLUMNS = ("width", "height", "aspect", "brightness", "contrast", "saturation")


def read_image_folder(
    root: str | Path,
    *,
    labels: Literal["folder", "none"] = "folder",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> pd.DataFrame:
    """One row per image file under ``root`` (searched recursively), sorted by path.

    Columns: ``path`` (absolute), ``label`` (with ``labels="folder"``: the image's parent
    folder relative to ``root``, e.g. ``cat`` for ``root/cat/1.jpg`` and ``a/b`` for
    ``root/a/b/1.jpg``; missing for images directly in ``root``), ``width``, ``height``,
    ``mode`` (Pillow's, e.g. ``RGB``), ``format`` (``JPEG``, ``PNG`` ...), ``bytes`` (file
    size) and ``sha256`` (of the file's bytes, to find duplicates and pin versions).

    Files are chosen by extension (case-insensitive; hidden files and folders are skipped)
    and every one is fully decoded once, which catches truncated files. Raises
    :class:`~loopline.errors.DataError` when ``root`` is missing or holds no images, and
    when any image cannot be read: the message lists every bad file (the first 20, then a
    count) with the reason, and nothing is returned.
    """
    if labels not in ("folder", "none"):
        raise DataError(
            f"unknown labels={labels!r}: expected 'folder' or 'none'",
            hint="labels='folder' takes each image's label from its folder name",
        )
    base = require_folder(
        root,
        name="image folder",
        expected="a folder of images",
        holds="the images (one sub-folder per label)",
    )
    suffixes = tuple(_normalise_extension(e) for e in extensions)
    files = sorted(
        p
        for p in base.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(base).parts)
    )
    if not files:
        others = sorted(
            {p.suffix.lower() or "(no extension)" for p in base.rglob("*") if p.is_file()}
        )
        raise DataError(
            f"no images in {base}: expected files ending in {', '.join(suffixes)} "
            f"(in sub-folders too); found {', '.join(others) or 'no files at all'}",
            hint="check the path, or pass extensions=[...] for other image types",
        )
    rows: list[dict[str, Any]] = []
    bad: list[tuple[Path, str]] = []
    for p in files:
        try:
            data = p.read_bytes()
            width, height, mode, fmt = _decode(data)
        except _ImageError as exc:
            bad.append((p, str(exc)))
            continue
        except OSError as exc:
            bad.append((p, f"cannot read the file: {exc.strerror or exc}"))
            continue
        row: dict[str, Any] = {"path": str(p.resolve())}
        if labels == "folder":
            parent = p.parent.relative_to(base).as_posix()
            row["label"] = None if parent == "." else parent
        row.update(
            width=width,
            height=height,
            mode=mode,
            format=fmt,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        rows.append(row)
    if bad:
        raise _bad_images(bad, len(files), base)
    df = pd.DataFrame(rows)
    for column in ("path", "mode", "format", "sha256") + (("label",) if labels == "folder" else ()):
        df[column] = df[column].astype("str")
    for column in ("width", "height", "bytes"):
        df[column] = df[column].astype("int64")
    return df


def image_statistics(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Per-image statistics, one row per path in the order given.

    Columns (all numeric): ``width``, ``height``, ``aspect`` (width / height),
    ``brightness`` (mean of the grayscale ``L`` image, 0-255), ``contrast`` (standard
    deviation of ``L``), ``saturation`` (mean of the S channel of the HSV image, 0-255).
    Images in other modes (palette, RGBA, CMYK, 16-bit ...) are converted by Pillow.
    Raises :class:`~loopline.errors.DataError` naming every file that cannot be read.
    """
    from PIL import Image

    rows: list[tuple[float, ...]] = []
    bad: list[tuple[Path, str]] = []
    for item in paths:
        p = Path(item).expanduser()
        try:
            with Image.open(p) as img:
                img.load()
                gray = np.asarray(img.convert("L"), dtype=np.float64)
                rgb = img if img.mode == "RGB" else img.convert("RGB")
                saturation = np.asarray(rgb.convert("HSV"), dtype=np.uint8)[..., 1]
                width, height = img.size
        except FileNotFoundError:
            bad.append((p, "file not found"))
            continue
        except Exception as exc:  # Pillow's decoders raise many kinds on corrupt data
            bad.append((p, _reason(exc)))
            continue
        rows.append(
            (
                float(width),
                float(height),
                width / height if height else float("nan"),
                float(gray.mean()),
                float(gray.std()),
                float(saturation.mean(dtype=np.float64)),
            )
        )
    if bad:
        raise _bad_images(bad, len(paths), None)
    out = pd.DataFrame(rows, columns=list(_STAT_COLUMNS), dtype="float64")
    out[["width", "height"]] = out[["width", "height"]].astype("int64")
    return out


# ---------------------------------------------------------------------------------------------
# helpers


class _ImageError(Exception):
    """An image file that Pillow cannot identify or decode (message: the reason)."""


def _decode(data: bytes) -> tuple[int, int, str, str]:
    """(width, height, mode, format) of an encoded image, after decoding all of it."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            img.load()  # decode every pixel: a truncated file fails here
            return img.width, img.height, img.mode, fmt
    except Exception as exc:  # Pillow's decoders raise many kinds on corrupt data
        raise _ImageError(_reason(exc)) from None


def _reason(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can identify"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


def _bad_images(bad: list[tuple[Path, str]], total: int, base: Path | None) -> DataError:
    def name(p: Path) -> str:
        if base is not None:
            try:
                return p.relative_to(base).as_posix()
            except ValueError:
                pass
        return str(p)

    listed = "; ".join(f"{name(p)} ({reason})" for p, reason in bad[:_MAX_LISTED])
    more = f"; ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    where = f" in {base}" if base is not None else ""
    return DataError(
        f"{len(bad)} of {total} images{where} cannot be read: {listed}{more}",
        hint="remove or replace those files (download them again; a truncated file was cut "
        "off during a copy), then read the folder again",
    )


def _normalise_extension(ext: str) -> str:
    ext = ext.strip().lower()
    return ext if ext.startswith(".") else f".{ext}"
