"""The ready step that trains the compact detector (:mod:`loopline.train.detector`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.train.model import Model

__all__ = ["train_detector"]


@step
def train_detector(
    data: pd.DataFrame,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 4e-3,
    width: int = 32,
    seed: int = 0,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    max_seconds: float | None = None,
    score_threshold: float = 0.3,
) -> Model:
    """Train a detector from scratch on a detection table (from ``read_detection``).

    A small CenterNet, deterministic for a ``seed`` on the CPU; ``device="auto"`` trains on
    CUDA when there is one. ``width`` scales the network, ``max_seconds`` caps the wall
    time, ``score_threshold`` is the lowest score the served model reports. Returns a
    detection :class:`~loopline.train.model.Model` (input column ``image``) that
    ``evaluate_detector``, ``gate_detector`` and ``register`` take like any other model.
    """
    from loopline.train.detector import DetectorParams
    from loopline.train.detector import train_detector as fit

    params = DetectorParams(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        width=width,
        seed=seed,
        device=device,
        max_seconds=max_seconds,
        score_threshold=score_threshold,
    )
    return fit(data, params)
