"""The ready step of the monitoring stage: the reference profile stored with each model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

# The column names of the prediction log, which live traffic is compared under.
PREDICTION = "prediction"
PROBA_PREFIX = "proba."


@step
def profile(
    model: Any,
    data: pd.DataFrame,
    *,
    max_rows: int = 5_000,
    seed: int = 0,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    text: list[str] | None = None,
    images: list[str] | None = None,
    slices: list[str] | None = None,
) -> dict[str, Any]:
    """The reference profile monitoring compares live traffic with: the model's input
    columns, its predictions (and class probabilities) and performance by slice, on
    held-out ``data`` the model did not train on.

    Column kinds are guessed unless ``numeric``/``categorical``/``text`` name them;
    ``images`` names columns of image paths, profiled by their statistics (width, height,
    brightness, contrast, ...; see :func:`loopline.data.images.image_statistics`). A seeded
    sample of ``max_rows`` is plenty for a reference and keeps this step cheap.
    """
    from loopline.data.images import image_statistics
    from loopline.monitor.profile import build_profile, guess_kind
    from loopline.train.model import as_model

    trained = as_model(model)
    sample = data.sample(min(max_rows, len(data)), random_state=seed)
    frame = sample[trained.features].reset_index(drop=True)
    kinds: dict[str, list[str]] = {
        "numeric": list(numeric or []),
        "categorical": list(categorical or []),
        "text": list(text or []),
    }
    stated = bool(numeric or categorical or text or images)
    for column in images or []:
        stats = image_statistics(frame[column].tolist()).add_prefix(f"{column}.")
        frame = frame.drop(columns=column).join(stats)
        kinds["numeric"].extend(stats.columns)
    if stated:  # the columns not named keep their guessed kind
        named = {c for names in kinds.values() for c in names}
        for column in frame.columns:
            kind = guess_kind(frame[column]) if column not in named else None
            if kind in kinds:
                kinds[kind].append(str(column))
    probabilities: list[str] = []
    if trained.task == "classification":
        proba = trained.predict_proba(sample)
        classes = trained.classes_
        frame[PREDICTION] = [classes[i] for i in proba.argmax(axis=1)]
        for i, name in enumerate(classes):
            frame[PROBA_PREFIX + name] = proba[:, i]
            probabilities.append(PROBA_PREFIX + name)
    else:
        frame[PREDICTION] = trained.predict(sample)
    labels = None
    if trained.target and trained.target in sample:
        labels = trained.target
        values = sample[labels].to_numpy()
        frame[labels] = values.astype(str) if trained.task == "classification" else values
    for column in slices or []:
        if column not in frame:
            frame[column] = sample[column].to_numpy()
    return build_profile(
        frame,
        numeric=kinds["numeric"] if stated else None,
        categorical=kinds["categorical"] if stated else None,
        text=kinds["text"] if stated else None,
        prediction=PREDICTION,
        probabilities=probabilities,
        labels=labels,
        slices=slices,
    ).to_dict()
