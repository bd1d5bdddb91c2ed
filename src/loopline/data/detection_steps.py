"""The read step of detection datasets: read COCO or YOLO, validate, stop on a bad report.

Reading and validating are one step, as for tables: a dataset with errors (unreadable
images, boxes outside their image, unknown classes, labels without images...) never
reaches the artifact store. What passes goes on as a detection table (see
:mod:`loopline.data.detection_table`): the images' bytes and their named boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.data.dvc import FolderVersion

__all__ = ["read_detection"]


@step
def read_detection(
    images: FolderVersion | str | Path,
    *,
    part: str | None = None,
    format: Literal["coco", "yolo"] | None = None,
    min_side: int = 32,
    max_side: int = 10_000,
) -> pd.DataFrame:
    """Read the detection dataset in ``images`` (a folder version from ``version_images``,
    or a path), in its sub-folder ``part`` when given (e.g. ``train``, ``heldout``).

    COCO or YOLO is recognised from the files unless ``format`` says. Every image is
    decoded and every box checked (``min_side``/``max_side`` bound the image sides); a
    report with errors stops the run with a message naming each bad file. Returns one row
    per image: ``file_name``, ``image`` (bytes), ``width``, ``height``, ``boxes``.
    """
    from loopline.data import detection
    from loopline.data.detection_table import detection_table

    folder = Path(images if isinstance(images, str | Path) else images.path)
    dataset = detection.read_detection(folder / part if part else folder, format)
    rules = detection.DetectionRules(min_side=min_side, max_side=max_side)
    detection.require_valid(detection.validate_detection(dataset, rules))
    return detection_table(dataset)
