"""Digit detection: version the images, validate them, train a detector, mAP, gate, register.

Run it with `loopline run vision`; serve the champion with `loopline serve vision` and POST
an image to /predict (`curl -F image=@canvas.png http://127.0.0.1:8000/predict`) to get its
boxes. The data folder holds two COCO sets, train/ and heldout/ (images/ + annotations.json):
`loopline init --template vision` draws them from real MNIST digits. Add images to train/
and run again: a new model version, promoted only if its mAP@0.5 is better.
"""

from loopline import pipeline
from loopline.steps import (
    evaluate_detector,
    gate_detector,
    read_detection,
    register,
    train_detector,
    version_images,
)


@pipeline
def vision(
    source: str = "data/canvases",
    model_name: str = "vision",
    epochs: int = 10,
    width: int = 32,
    seed: int = 0,
    max_seconds: float | None = None,
    min_map50: float = 0.5,
) -> None:
    """Train a digit detector; it replaces the champion only if its mAP@0.5 is higher."""
    images = version_images(source, dataset="canvases")  # DVC's hash, or a snapshot
    train_set = read_detection(images, part="train")  # bad images or boxes stop the run
    heldout = read_detection(images, part="heldout")
    model = train_detector(train_set, epochs=epochs, width=width, seed=seed,
                           max_seconds=max_seconds)  # fmt: skip
    metrics = evaluate_detector(model, heldout)  # mAP@0.5 and @0.5:0.95 (pycocotools)
    decision = gate_detector(model, heldout, metrics, model_name=model_name, min_value=min_map50)
    register(model, decision, example=heldout)
