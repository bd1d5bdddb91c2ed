"""The compact detector: it learns, it is deterministic, and it reads every image form alike.

The runs here are tiny on purpose (seconds): small canvases with one or two digits, all
labelled "digit", so that finding them is learnable in a few dozen steps. The full task
(ten digits, mAP@0.5 >= 0.9) is measured by benchmarks/vision.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from loopline.data.canvas import HELDOUT_POOL, CanvasSpec, Digits, generate_canvases, load_mnist  # noqa: E402
from loopline.data.detection_table import detection_table  # noqa: E402
from loopline.errors import DataError, LooplineError  # noqa: E402
from loopline.evaluate.detection import evaluate_detector  # noqa: E402
from loopline.train.detector import DetectorParams, detect, is_detector, train_detector  # noqa: E402
from loopline.train.mlflow_io import load_model, save_model  # noqa: E402
from loopline.train.model import Model  # noqa: E402

MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images" / "mnist"
SMALL = CanvasSpec(size=64, min_digits=1, max_digits=2, min_scale=20, max_scale=30)
QUICK = DetectorParams(epochs=8, batch_size=16, width=16, threads=1)


def digit_table(folder: Path, count: int, digits: Digits, pool: str = "train") -> pd.DataFrame:
    """Canvases with every box labelled "digit": one class, learnable in seconds."""
    table = detection_table(generate_canvases(folder, count, digits=digits, spec=SMALL,
                                              pool=pool))  # type: ignore[arg-type]  # fmt: skip
    table["boxes"] = [[{**b, "label": "digit"} for b in boxes] for boxes in table["boxes"]]
    table.attrs["classes"] = ["digit"]
    return table


@pytest.fixture(scope="module")
def sets() -> dict[str, pd.DataFrame]:
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    digits = load_mnist(MNIST)
    folder = Path(tempfile.mkdtemp(prefix="detector-test-"))
    return {
        "train": digit_table(folder / "train", 64, digits),
        "heldout": digit_table(folder / "heldout", 32, digits, HELDOUT_POOL),
    }


@pytest.fixture(scope="module")
def trained(sets: dict[str, pd.DataFrame]) -> Model:
    return train_detector(sets["train"], QUICK)


def test_a_tiny_run_learns_to_find_unseen_digits(
    trained: Model, sets: dict[str, pd.DataFrame]
) -> None:
    assert is_detector(trained) and trained.classes == ["digit"]
    assert (trained.features, trained.task, trained.flavor) == (["image"], "detection", "pytorch")
    metrics = evaluate_detector(trained, sets["heldout"])
    assert metrics["map50"] > 0.4, metrics  # an untrained network finds nothing (below)
    untrained = train_detector(sets["train"], DetectorParams(epochs=1, learning_rate=1e-9,
                                                             width=16, threads=1))  # fmt: skip
    assert evaluate_detector(untrained, sets["heldout"])["map50"] < 0.05


def test_training_is_deterministic_for_a_seed(sets: dict[str, pd.DataFrame]) -> None:
    few = sets["train"].head(32)
    few.attrs = sets["train"].attrs
    params = DetectorParams(epochs=2, batch_size=16, width=16, threads=1, seed=5)
    first = train_detector(few, params)
    # a time budget that is never reached changes nothing
    again = train_detector(few, DetectorParams(**{**params.__dict__, "max_seconds": 3600.0}))
    other = train_detector(few, DetectorParams(**{**params.__dict__, "seed": 6}))

    def weights(model: Model) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in model.estimator.state_dict().items()}

    a, b, c = weights(first), weights(again), weights(other)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_bytes_files_arrays_and_frames_give_the_same_boxes(
    trained: Model, sets: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    from PIL import Image

    images = list(sets["heldout"]["image"].head(4))
    files = []
    for i, data in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(data)
    arrays = [np.asarray(Image.open(f)) for f in files]
    colour = [np.stack([a, a, a], axis=2) for a in arrays]
    found = detect(trained, images, min_score=0.1)
    assert found == detect(trained, files, min_score=0.1) == detect(trained, arrays, min_score=0.1)
    assert found == detect(trained, colour, min_score=0.1)
    assert any(found) and all(d["label"] == "digit" for image in found for d in image)
    assert all(d["score"] >= 0.1 for image in found for d in image)
    assert all(d["score"] >= 0.3 for image in detect(trained, images) for d in image)  # default
    served = trained.predict(pd.DataFrame({"image": images}))  # at the model's threshold
    assert list(served) == detect(trained, images)
    # Any size works; the same digits on a larger black image are found in the same places
    # (scores move a little: the network sees black beyond the old edges, not padding).
    bigger = np.zeros((100, 140), dtype=np.uint8)
    bigger[:64, :64] = arrays[0]
    again = detect(trained, [bigger], min_score=0.05)[0]
    for d in found[0]:
        assert any(np.allclose(d["box"], e["box"], atol=1.0) for e in again), (d, again)


def test_the_mlflow_model_folder_gives_back_the_same_detector(
    trained: Model, sets: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    save_model(trained, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, Model) and loaded.describe() == trained.describe()
    images = list(sets["heldout"]["image"].head(3))
    assert detect(loaded, images) == detect(trained, images)
    assert loaded.estimator.get_params()["epochs"] == QUICK.epochs  # what MLflow logs


def test_bad_inputs_and_settings_are_refused(trained: Model, sets: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(DataError, match=r"image 1 is not an image \(4 bytes"):
        detect(trained, [sets["heldout"]["image"][0], b"junk"])
    with pytest.raises(DataError, match="image 0 is empty"):
        detect(trained, [b""])
    with pytest.raises(LooplineError, match="epochs=0"):
        train_detector(sets["train"], DetectorParams(epochs=0))
    unlabeled = sets["train"].head(2).assign(boxes=[[], []])
    with pytest.raises(DataError, match="2 images with 0 boxes"):
        train_detector(unlabeled, QUICK)
    unknown = sets["train"].head(2).copy()
    unknown.attrs = {"classes": ["cat"]}
    with pytest.raises(DataError, match=r"box labels \['digit'\] are not among"):
        train_detector(unknown, QUICK)
    if not torch.cuda.is_available():
        with pytest.raises(LooplineError, match="no CUDA device"):
            train_detector(sets["train"].head(2), DetectorParams(epochs=1, device="cuda"))


def test_a_time_budget_ends_training_early(sets: dict[str, pd.DataFrame]) -> None:
    params = DetectorParams(epochs=500, batch_size=16, width=16, threads=1, max_seconds=1.0)
    trained = train_detector(sets["train"], params).estimator.settings
    assert 0 < trained["steps"] < 500 * 4  # 64 images: 4 steps an epoch
    assert trained["images_seen"] <= trained["steps"] * 16
