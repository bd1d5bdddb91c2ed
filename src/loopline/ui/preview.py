"""Previews of stored artifacts: the first rows of a table, a JSON document and the metrics
in it, an array's shape and first values, images, and the files of anything else.

A table cell holding an image's bytes (a detection table's ``image`` column) is shown as a
thumbnail and a one-line summary (format, size), never as the bytes; nested values (a
detection's boxes) are shown as JSON, not as NumPy's repr.

Only what is cheap to read is read: a Parquet file's first batch (never the whole table),
an array memory-mapped, JSON up to a size. Pickled objects and models are never loaded
(loading runs their code); their files are listed instead.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import orjson

from loopline.registry.models import flatten_metrics

__all__ = ["IMAGE_SUFFIXES", "preview_artifact", "table_preview"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
_ROWS = 20
_CELL = 120  # characters shown per table cell
_JSON_BYTES = 200_000
_FILES = 50
_IMAGES = 12
_THUMBNAIL_BYTES = 64_000  # larger images are summarised only: the page stays light
_BROWSER_IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def _clip(text: str) -> str:
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _image_cell(data: bytes) -> str | dict[str, str]:
    """An image's bytes as a summary and, for formats a browser shows, a thumbnail."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind, (width, height) = image.format or "image", image.size
    except (UnidentifiedImageError, OSError):
        return f"{len(data):,} bytes"
    text = f"{kind} {width}×{height}, {len(data):,} bytes"
    mime = Image.MIME.get(kind)
    if mime not in _BROWSER_IMAGES or len(data) > _THUMBNAIL_BYTES:
        return text
    return {"text": text, "src": f"data:{mime};base64,{base64.b64encode(data).decode()}"}


def _cell(value: Any) -> str | dict[str, str]:
    if isinstance(value, bytes | bytearray | memoryview):
        return _image_cell(bytes(value))
    if isinstance(value, list | tuple | dict) or getattr(value, "ndim", 0) > 0:
        options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        return _clip(orjson.dumps(value, option=options, default=_plain).decode())
    return _clip(str(value))


def _plain(value: Any) -> Any:
    """What orjson cannot write: an object array (a detection's boxes) as a list, once per
    level; anything else as its text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def table_preview(frame: Any, total_rows: int | None = None) -> dict[str, Any]:
    """Columns and the first rows of a DataFrame as cells: text, or an image's summary and
    thumbnail (``{"text", "src"}``)."""
    head = frame.head(_ROWS)
    return {
        "columns": [str(c) for c in head.columns],
        "rows": [[_cell(v) for v in row] for row in head.itertuples(index=False)],
        "total_rows": len(frame) if total_rows is None else total_rows,
    }


def _parquet(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    first = next(parquet.iter_batches(batch_size=_ROWS), None)
    table = parquet.schema_arrow.empty_table() if first is None else first
    frame = table.to_pandas()
    return table_preview(frame, parquet.metadata.num_rows)


def _json(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size > _JSON_BYTES:
        with path.open("rb") as handle:
            text = handle.read(_JSON_BYTES).decode("utf-8", errors="replace")
        return {"text": text + "\n…", "truncated": True, "metrics": {}}
    value = orjson.loads(path.read_bytes())
    metrics = flatten_metrics(value) if isinstance(value, dict) else {}
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return {"text": text, "truncated": False, "metrics": metrics}


def _array(path: Path) -> dict[str, Any]:
    import numpy as np

    array = np.load(path, mmap_mode="r", allow_pickle=False)
    first = np.asarray(array.reshape(-1)[:_ROWS]).tolist()
    return {"shape": list(array.shape), "dtype": str(array.dtype), "first": first}


def preview_artifact(folder: Path, materializer: str) -> dict[str, Any]:
    """What the artifact page shows of the artifact stored in ``folder``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "meta.json")
    found: dict[str, Any] = {
        "files": [
            {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size}
            for p in files[:_FILES]
        ],
        "more_files": max(0, len(files) - _FILES),
        "images": [
            p.relative_to(folder).as_posix() for p in files if p.suffix.lower() in IMAGE_SUFFIXES
        ][:_IMAGES],
    }
    if materializer == "pandas.parquet" and (folder / "data.parquet").is_file():
        found["table"] = _parquet(folder / "data.parquet")
    elif (folder / "data.json").is_file():
        found["json"] = _json(folder / "data.json")
    elif materializer == "numpy.npy" and (folder / "data.npy").is_file():
        found["array"] = _array(folder / "data.npy")
    return found
