"""A detection dataset as one table: what pipeline steps pass between them.

:func:`detection_table` turns a :class:`~loopline.data.detection.DetectionDataset` into a
pandas DataFrame with one row per image: ``file_name``, ``image`` (the file's bytes, so the
table is the data itself and stays valid whatever happens to the folder later),
``width``, ``height`` and ``boxes`` (a list of ``{"label": name, "box": [x, y, w, h]}``).
The class names, in class-id order, travel in ``frame.attrs["classes"]`` (kept by Parquet).
A detection model reads the ``image`` column, so the table is also a model's input example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.data.detection import DetectionDataset

__all__ = ["COLUMNS", "detection_table", "table_boxes", "table_classes"]

COLUMNS = ["file_name", "image", "width", "height", "boxes"]


def detection_table(dataset: DetectionDataset) -> pd.DataFrame:
    """One row per image of ``dataset`` (in its order), with its bytes and named boxes."""
    import pandas as pd

    names = {c.id: c.name for c in dataset.categories}
    boxes: dict[int, list[dict[str, Any]]] = {im.id: [] for im in dataset.images}
    for a in dataset.annotations:
        boxes[a.image_id].append({"label": names[a.category_id], "box": list(a.bbox)})
    rows = []
    for im in dataset.images:
        try:
            data = im.path.read_bytes()
        except OSError as exc:
            raise DataError(
                f"cannot read {im.path}: {exc.strerror}",
                hint="validate the dataset first (`loopline data check-detection DIR`)",
            ) from None
        rows.append(
            {
                "file_name": im.file_name,
                "image": data,
                "width": im.width,
                "height": im.height,
                "boxes": boxes[im.id],
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.attrs["classes"] = [c.name for c in sorted(dataset.categories, key=lambda c: c.id)]
    return frame


def table_classes(frame: pd.DataFrame) -> list[str]:
    """The class names of a detection table (its ``attrs``, else the labels it uses)."""
    _check(frame)
    classes = frame.attrs.get("classes")
    if classes:
        return [str(c) for c in classes]
    return sorted({box["label"] for image in table_boxes(frame) for box in image})


def table_boxes(frame: pd.DataFrame) -> list[list[dict[str, Any]]]:
    """The boxes of each row as plain lists: ``{"label": str, "box": [x, y, w, h]}``
    (Parquet gives them back as arrays)."""
    _check(frame)
    return [
        [{"label": str(b["label"]), "box": [float(v) for v in b["box"]]} for b in image]
        for image in frame["boxes"]
    ]


def _check(frame: Any) -> None:
    columns = getattr(frame, "columns", None)
    missing = [c for c in ("image", "boxes") if columns is None or c not in columns]
    if missing:
        found = list(columns) if columns is not None else type(frame).__name__
        raise DataError(
            f"not a detection table: no {', '.join(missing)} column (found {found})",
            hint="make one with loopline.data.detection_table.detection_table(dataset)",
        )
