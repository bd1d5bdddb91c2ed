"""A compact object detector trained from scratch with PyTorch (the ``vision`` extra).

:func:`train_detector` fits a small CenterNet (:mod:`loopline.train.centernet`) on a
detection dataset (or a detection table) and returns a :class:`~loopline.train.model.Model`
with ``task="detection"``: the ``nn.Module`` as its estimator, the class names as its
``classes`` and one input column, ``image``. Such a model goes through the loop's MLflow
format, registry and artifact store like any other PyTorch model; :meth:`Model.predict
<loopline.train.model.Model.predict>` on a frame of encoded images returns each image's
boxes. :func:`detect` does the same for a list of images.

No downloaded weights: everything is learnt from the dataset. Training is deterministic for
a seed on the CPU (with the same number of threads); it uses CUDA when one is available
(``device="auto"``). torch is imported inside the functions.

A detection is ``{"label": "7", "score": 0.98, "box": [x, y, w, h]}``: the box in pixels
from the image's top-left corner, as COCO writes boxes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from loopline.data.detection_table import detection_table, table_boxes, table_classes
from loopline.data.pixels import ImageInput, gray_pixels
from loopline.errors import DataError, LooplineError
from loopline.train.model import Model

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from loopline.data.detection import DetectionDataset

__all__ = [
    "BOXES",
    "IMAGE_COLUMN",
    "DetectorParams",
    "describe",
    "detect",
    "is_detector",
    "train_detector",
]

#: The input column of a detection model: encoded image bytes (PNG, JPEG ...).
IMAGE_COLUMN = "image"
#: What a detection model predicts (its ``target``).
BOXES = "boxes"
_INSTALL_HINT = "install PyTorch with `pip install loopline[vision]`"


@dataclass(frozen=True)
class DetectorParams:
    """Training settings of :func:`train_detector`.

    ``width`` scales the network (channels of its first stage); ``max_seconds`` ends
    training within that much wall time, its learning-rate schedule following the clock
    when the clock is further along than the steps (only then does the result depend on
    the machine's speed);
    ``device`` is ``auto`` (CUDA when available), ``cpu`` or ``cuda``; ``threads`` the CPU
    threads torch may use (None: the cores this process may run on). ``score_threshold``
    is the lowest score the served model reports.
    """

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 4e-3
    weight_decay: float = 1e-4
    width: int = 32
    seed: int = 0
    max_seconds: float | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    score_threshold: float = 0.3

    def check(self) -> None:
        """Raise :class:`~loopline.errors.LooplineError` for settings that cannot train."""
        bad = [
            f"{name}={value}"
            for name, value in (
                ("epochs", self.epochs),
                ("batch_size", self.batch_size),
                ("learning_rate", self.learning_rate),
                ("width", self.width),
            )
            if not value > 0
        ]
        if self.width % 2:
            bad.append(f"width={self.width} (must be even)")
        if self.device not in ("auto", "cpu", "cuda"):
            bad.append(f"device={self.device!r}")
        if bad:
            raise LooplineError(
                f"cannot train a detector with {', '.join(bad)}",
                hint="epochs, batch_size, learning_rate and an even width must be positive; "
                "device is auto, cpu or cuda",
            )


def train_detector(
    data: DetectionDataset | pd.DataFrame,
    params: DetectorParams = DetectorParams(),
    *,
    progress: Callable[[str], None] | None = None,
) -> Model:
    """Train a detector on every image and box of ``data``; returns a detection
    :class:`~loopline.train.model.Model` on the CPU.

    ``data`` is a :class:`~loopline.data.detection.DetectionDataset` or a detection table
    (:func:`~loopline.data.detection_table.detection_table`). Images are read as grayscale
    and padded (right and bottom) to a common size that is a multiple of 16. ``progress``
    gets one line per epoch (loss, seconds).
    """
    torch = _torch()
    from loopline.data.detection import DetectionDataset
    from loopline.train import centernet

    params.check()
    frame = detection_table(data) if isinstance(data, DetectionDataset) else data
    classes = table_classes(frame)
    boxes = table_boxes(frame)
    if not len(frame) or not any(boxes):
        raise DataError(
            f"cannot train a detector on {len(frame)} images with "
            f"{sum(len(b) for b in boxes)} boxes",
            hint="train on a dataset with labelled images",
        )
    index_of = {name: i for i, name in enumerate(classes)}
    unknown = sorted({b["label"] for image in boxes for b in image} - index_of.keys())
    if unknown:
        raise DataError(
            f"box labels {unknown} are not among the classes {classes}",
            hint="list every class in the dataset's categories",
        )
    images = centernet.pad_batch(
        [
            gray_pixels(image, f"image {i} ({name})")
            for i, (image, name) in enumerate(zip(frame["image"], frame["file_name"], strict=True))
        ]
    )
    height, width = images.shape[2:]
    target = np.stack(
        [
            centernet.targets(
                [(index_of[b["label"]], *b["box"]) for b in image], len(classes), height, width
            )
            for image in boxes
        ]
    )
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(params.threads or _cores())
    try:
        network = _fit(torch, centernet, images, target, len(classes), params, progress)
    finally:
        torch.set_num_threads(saved_threads)
    return Model(
        estimator=network,
        features=[IMAGE_COLUMN],
        target=BOXES,
        task="detection",
        classes=classes,
    )


def _fit(
    torch: Any,
    centernet: Any,
    images: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    params: DetectorParams,
    progress: Callable[[str], None] | None,
) -> Any:
    device = _device(torch, params.device)
    torch.manual_seed(params.seed)
    order = torch.Generator().manual_seed(params.seed)
    network = centernet.CenterNet(num_classes, params.width, params.score_threshold)
    centres = target[:, num_classes + 4] > 0
    network.start_sizes_at(*(float(target[:, num_classes + k][centres].mean()) for k in (0, 1)))
    network.to(device)
    inputs = torch.from_numpy(images).to(device)
    labels = torch.from_numpy(target).to(device)
    network.settings.update(describe(params))
    steps = -(-len(images) // params.batch_size)
    total = params.epochs * steps
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    started = time.perf_counter()
    network.train()
    step = seen = 0
    for epoch in range(params.epochs):
        loss_sum = 0.0
        for batch in torch.randperm(len(images), generator=order).split(params.batch_size):
            progress_made = _progress(step, total, started, params.max_seconds)
            if progress_made >= 1.0:
                break
            for group in optimiser.param_groups:
                group["lr"] = params.learning_rate * _one_cycle(progress_made)
            batch = batch.to(device)
            output = network(inputs[batch].float() / 255.0)
            loss = centernet.loss(output, labels[batch], num_classes)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += float(loss.detach())
            step += 1
            seen += len(batch)
        elapsed = time.perf_counter() - started
        if progress is not None:
            progress(
                f"epoch {epoch + 1}/{params.epochs}: loss {loss_sum / steps:.4f}, {elapsed:.0f} s"
            )
        if _progress(step, total, started, params.max_seconds) >= 1.0:
            if step < total and progress is not None:
                progress(f"time is up after {step} of {total} steps (max_seconds)")
            break
    network.settings.update(steps=step, images_seen=seen)
    return network.cpu().eval()


def detect(
    model: Model | Any,
    images: Sequence[ImageInput],
    *,
    min_score: float | None = None,
    max_detections: int = 100,
    batch_size: int = 16,
) -> list[list[dict[str, Any]]]:
    """The detections of each image, best first: ``{"label", "score", "box": [x, y, w,
    h]}``.

    ``model`` is a detection :class:`~loopline.train.model.Model` (or its network);
    ``images`` are encoded bytes, paths or pixel arrays of any size. ``min_score`` defaults
    to the model's ``score_threshold``. Raises :class:`~loopline.errors.DataError` naming
    the first input that is not an image.
    """
    _torch()
    network = model.estimator if isinstance(model, Model) else model
    classes = (
        list(model.classes or [])
        if isinstance(model, Model)
        else [str(i) for i in range(network.num_classes)]
    )
    return network.detect(
        images,
        classes,
        min_score=min_score,
        max_detections=max_detections,
        batch_size=batch_size,
    )


def is_detector(model: Any) -> bool:
    """Whether ``model`` (a :class:`~loopline.train.model.Model` or anything else) is a
    detection model."""
    return isinstance(model, Model) and model.task == "detection"


def describe(params: DetectorParams) -> dict[str, Any]:
    """The settings as JSON-able data (what MLflow shows as the run's parameters)."""
    return {"detector": "centernet", **asdict(params)}


# ---------------------------------------------------------------------------------------------


def _progress(step: int, total: int, started: float, max_seconds: float | None) -> float:
    """How far training is, 0..1: by steps, or by the clock when that is further along."""
    done = step / total
    if max_seconds is None:
        return done
    clock = (time.perf_counter() - started) / max_seconds
    # The clock takes over only when it is ahead by more than the step about to run: a run
    # that keeps pace with its budget follows the step count exactly (and is reproducible).
    return clock if clock > (step + 1) / total else done


def _one_cycle(progress: float) -> float:
    """The learning rate's share of its peak: a linear warm-up over the first fifth, then a
    cosine down to nearly zero (the one-cycle policy, driven by progress rather than by
    step count so that a time budget anneals too)."""
    if progress < 0.2:
        return 0.04 + 0.96 * progress / 0.2
    return 0.5 * (1 + math.cos(math.pi * (progress - 0.2) / 0.8)) + 1e-3


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _device(torch: Any, wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise LooplineError(
            "device='cuda' was asked for but torch sees no CUDA device",
            hint="use device='auto' (CUDA when there is one) or 'cpu'",
        )
    use_cuda = wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise LooplineError("the detector needs PyTorch", hint=_INSTALL_HINT) from None
    return torch
