"""The detector's network, its training targets, loss and decoding (imports torch).

A compact CenterNet (Zhou et al., "Objects as Points", 2019): a small encoder-decoder turns
an image into maps at a quarter of its resolution: one heatmap per class that peaks at
object centres, and at each centre the box's width and height and the sub-cell offset of
the centre. Decoding keeps the local maxima of the heatmaps (a 3x3 max-pool stands in for
non-maximum suppression) and reads the box there. Fully convolutional: any image size works;
objects should be about as large as in training.

Only :mod:`loopline.train.detector` imports this module, inside its functions, so torch
stays optional for the rest of Loopline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from loopline.data.pixels import ImageInput, gray_pixels

STRIDE = 4
#: Image sides are padded to a multiple of this: the network halves them four times.
MULTIPLE = 16
# Heatmap logits start at this value (a prior of 0.1): the focal loss starts calm.
_PRIOR_BIAS = -math.log((1 - 0.1) / 0.1)


def _conv(inputs: int, outputs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class CenterNet(nn.Module):
    """Encoder down to 1/16 of the image, decoder back up to 1/4 with skip connections,
    and a head at 1/4 with three outputs: class heatmaps, box sizes and centre offsets.

    ``width`` scales every layer's channels. ``score_threshold`` is the default for
    serving (evaluation reads every detection down to a much lower score). ``settings``
    records how the network was trained (MLflow shows them as the run's parameters).
    """

    def __init__(self, num_classes: int, width: int = 32, score_threshold: float = 0.3) -> None:
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.score_threshold = score_threshold
        self.settings: dict[str, Any] = {"width": width, "num_classes": num_classes}
        self.stem = nn.Sequential(_conv(1, w // 2, 2), _conv(w // 2, w, 2), _conv(w, w))  # /4
        self.down8 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.down16 = nn.Sequential(
            _conv(2 * w, 3 * w, 2), _conv(3 * w, 3 * w), _conv(3 * w, 3 * w, dilation=2)
        )
        self.lateral8 = nn.Conv2d(3 * w, 2 * w, 1)
        self.up8 = _conv(2 * w, 2 * w)
        self.lateral4 = nn.Conv2d(2 * w, w, 1)
        self.up4 = _conv(w, w)
        # One shared 3x3 layer, then one 1x1 output per map: heatmaps, sizes, offsets.
        self.head = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(w, num_classes + 4, 1)
        assert self.out.bias is not None
        nn.init.constant_(self.out.bias[:num_classes], _PRIOR_BIAS)

    def start_sizes_at(self, log_width: float, log_height: float) -> None:
        """Make the untrained network predict this size everywhere (the training boxes'
        mean, in log cells): boxes are about right from the first step, and the steps go
        to finding and telling objects apart."""
        assert self.out.bias is not None
        with torch.no_grad():
            self.out.bias[self.num_classes : self.num_classes + 2] = torch.tensor(
                [log_width, log_height]
            )

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The training settings, under scikit-learn's name for them (what the registry
        logs as parameters)."""
        return dict(self.settings)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: (n, 1, h, w) in 0..1, h and w multiples of 16. Returns (n, classes +
        4, h/4, w/4): heatmap logits, then the log of width and height (in cells), then
        the centre's offset within its cell."""
        c4 = self.stem(images)
        c8 = self.down8(c4)
        c16 = self.down16(c8)
        p8 = self.up8(c8 + F.interpolate(self.lateral8(c16), scale_factor=2.0, mode="nearest"))
        p4 = self.up4(c4 + F.interpolate(self.lateral4(p8), scale_factor=2.0, mode="nearest"))
        return self.out(self.head(p4))

    def detect(
        self,
        images: Sequence[ImageInput],
        classes: Sequence[str],
        *,
        min_score: float | None = None,
        max_detections: int = 100,
        batch_size: int = 16,
    ) -> list[list[dict[str, Any]]]:
        """Each image's detections, best first: ``{"label", "score", "box": [x, y, w, h]}``
        (pixels, clipped to the image). ``images`` are encoded bytes, files or arrays of any
        size; ``min_score`` defaults to :attr:`score_threshold`."""
        threshold = self.score_threshold if min_score is None else min_score
        device = next(self.parameters()).device
        found: list[list[dict[str, Any]]] = []
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(images), batch_size):
                chunk = [
                    gray_pixels(image, f"image {start + i}")
                    for i, image in enumerate(images[start : start + batch_size])
                ]
                batch = torch.from_numpy(pad_batch(chunk)).to(device).float() / 255.0
                with torch.no_grad():
                    output = self(batch)
                rows = decode(
                    output, self.num_classes, min_score=threshold, max_detections=max_detections
                )
                for pixels, boxes in zip(chunk, rows, strict=True):
                    found.append([_detection(row, classes, pixels.shape) for row in boxes])
        finally:
            self.train(was_training)
        return found


def pad_batch(pixels: Sequence[np.ndarray]) -> np.ndarray:
    """Images (h x w, uint8) as one (n, 1, h, w) uint8 array, padded with black at the right
    and bottom to the largest size, rounded up to a multiple of :data:`MULTIPLE`."""
    height = -(-max(p.shape[0] for p in pixels) // MULTIPLE) * MULTIPLE
    width = -(-max(p.shape[1] for p in pixels) // MULTIPLE) * MULTIPLE
    batch = np.zeros((len(pixels), 1, height, width), dtype=np.uint8)
    for i, p in enumerate(pixels):
        batch[i, 0, : p.shape[0], : p.shape[1]] = p
    return batch


def _detection(row: np.ndarray, classes: Sequence[str], shape: tuple[int, ...]) -> dict[str, Any]:
    cls, score, x, y, w, h = (float(v) for v in row)
    # Clipped to the image: a box is only ever reported where there are pixels.
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(shape[1]), x + w), min(float(shape[0]), y + h)
    box = [x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)]
    return {
        "label": str(classes[int(cls)]),
        "score": round(score, 4),
        "box": [round(v, 1) for v in box],
    }


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """The largest centre displacement (in cells) that keeps a box of this size at
    ``min_overlap`` IoU with itself: CenterNet's rule for how wide a peak to draw."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def targets(
    boxes: list[tuple[int, float, float, float, float]], num_classes: int, height: int, width: int
) -> np.ndarray:
    """Training targets of one image: (classes + 5, h/4, w/4) float32.

    Channels: one Gaussian peak per box on its class's heatmap, the log of width and height
    in cells and the centre's sub-cell offset at the centre cell, and a mask of centre
    cells.
    ``boxes`` are ``(class index, x, y, w, h)`` in pixels.
    """
    rows, cols = height // STRIDE, width // STRIDE
    out = np.zeros((num_classes + 5, rows, cols), dtype=np.float32)
    ys, xs = np.mgrid[0:rows, 0:cols]
    for cls, x, y, w, h in boxes:
        cx, cy = (x + w / 2) / STRIDE, (y + h / 2) / STRIDE
        col, row = min(int(cx), cols - 1), min(int(cy), rows - 1)
        radius = max(0.0, gaussian_radius(h / STRIDE, w / STRIDE))
        sigma = (2 * int(radius) + 1) / 6
        peak = np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
        np.maximum(out[cls], peak, out=out[cls])
        size = (math.log(max(w, 1.0) / STRIDE), math.log(max(h, 1.0) / STRIDE))
        out[num_classes:, row, col] = (*size, cx - col, cy - row, 1.0)
    return out


def loss(output: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """CenterNet's loss: penalty-reduced focal loss on the heatmaps, plus L1 on the log
    sizes and on the offsets at the centre cells, each per object. (Log sizes weigh a box
    twice too large as much as one half the size, and keep the terms of similar scale.)"""
    logits, boxes = output[:, :num_classes], output[:, num_classes:]
    heat, box_target = target[:, :num_classes], target[:, num_classes : num_classes + 4]
    mask = target[:, num_classes + 4 : num_classes + 5]
    objects = mask.sum().clamp(min=1.0)
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = heat.eq(1.0).float()
    negative_weight = (1 - heat).pow(4)
    focal = -(
        positive * (1 - prob).pow(2) * torch.log(prob)
        + (1 - positive) * negative_weight * prob.pow(2) * torch.log(1 - prob)
    ).sum()
    l1 = (F.l1_loss(boxes, box_target, reduction="none") * mask).sum(dim=(0, 2, 3))
    return (focal + l1.sum()) / objects


def decode(
    output: torch.Tensor, num_classes: int, *, min_score: float, max_detections: int
) -> list[np.ndarray]:
    """Boxes of each image from the network's output: one array per image of rows
    ``(class index, score, x, y, w, h)`` in pixels, best first."""
    heat = torch.sigmoid(output[:, :num_classes])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    n, _, _, cols = heat.shape
    scores, flat = peaks.reshape(n, -1).topk(min(max_detections, peaks[0].numel()))
    found = []
    for i in range(n):
        keep = scores[i] >= min_score
        index = flat[i][keep]
        cls = index // (heat.shape[2] * cols)
        cell = index % (heat.shape[2] * cols)
        row, col = cell // cols, cell % cols
        w, h, dx, dy = (output[i, num_classes + k].reshape(-1)[cell] for k in range(4))
        cx, cy = (col.float() + dx) * STRIDE, (row.float() + dy) * STRIDE
        bw, bh = w.clamp(max=8.0).exp() * STRIDE, h.clamp(max=8.0).exp() * STRIDE
        rows = torch.stack([cls.float(), scores[i][keep], cx - bw / 2, cy - bh / 2, bw, bh], dim=1)
        found.append(rows.cpu().numpy().astype(np.float64))
    return found
