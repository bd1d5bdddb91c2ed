"""Previews of stored artifacts: the first rows of a table, a JSON document and the metrics
in it, an array's shape and first values, images, and the files of anything else.

Only what is cheap to read is read: a Parquet file's first batch (never the whole table),
an array memory-mapped, JSON up to a size. Pickled objects and models are never loaded
(loading runs their code); their files are listed instead.
"""

from __future__ import annotations

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


def _cell(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def table_preview(frame: Any, total_rows: int | None = None) -> dict[str, Any]:
    """Columns and the first rows of a DataFrame as text cells."""
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
