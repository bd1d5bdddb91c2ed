"""The label stage of a text pipeline: given labels, LFs + label model, and human labels.

Rows that come with a label keep it (``label_source="given"``). Rows without one get the
label model's most likely class over the labeling functions' votes, weighted by its
confidence (``label_source="label_model"``; ``lfs`` names the LFs that voted). Human labels
from the review queue override both (``label_source="human"``). The LF analysis is computed
on a seeded sample of the given-label rows, used as the dev set for empirical accuracies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopline.label.analysis import lf_summary
from loopline.label.lf import ABSTAIN, LabelingFunction, apply_lfs, emoticon, vader
from loopline.label.model import LabelModel
from loopline.label.queue import override_labels

DEFAULT_TEXT_LFS: tuple[LabelingFunction, ...] = (emoticon, vader)


def label_texts(
    df: pd.DataFrame,
    label_set: Sequence[str],
    *,
    human: pd.DataFrame | None = None,
    lfs: Sequence[LabelingFunction] = DEFAULT_TEXT_LFS,
    dev_rows: int = 2_000,
    seed: int = 0,
    keep_given: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label every row it can; return ``(labelled frame, report)``.

    Labelled rows that carry a ``label_source`` (e.g. ``feedback`` for production labels)
    keep it. The frame gains ``label_source``, ``lfs`` and ``sample_weight`` columns; rows no source
    could label are dropped (counted in the report). The report holds the LF analysis
    (``lf_summary``), any LF problems, and the counts per label source.

    ``keep_given=False`` is weak supervision proper: the rows' own labels serve only as the
    dev set of the LF analysis (``dev_rows`` of them), and every row is labelled by the
    label model (labels with a ``label_source``, such as human ones, still count).
    """
    labels = list(label_set)
    frame = df.reset_index(drop=True).copy()
    if "label" not in frame:
        frame["label"] = None
    given = frame["label"].notna().to_numpy()
    dev = _dev_sample(np.flatnonzero(given), dev_rows, seed)
    voted_labels_all = frame["label"].to_numpy().copy()
    if not keep_given:
        sourced = (
            frame["label_source"].notna().to_numpy()
            if "label_source" in frame
            else np.zeros(len(frame), dtype=bool)
        )
        frame.loc[~sourced, "label"] = None
        given = given & sourced
    to_vote = np.union1d(np.flatnonzero(~given), dev)
    matrix = apply_lfs(frame.iloc[to_vote], list(lfs), label_set=labels)
    names = matrix.lf_names
    is_dev = np.isin(to_vote, dev)
    summary = _dev_summary(matrix.L, names, voted_labels_all[to_vote], is_dev, labels)

    sources = np.full(len(frame), None, dtype=object)
    sources[given] = "given"
    if "label_source" in frame:  # rows that say where their label came from keep it
        known = given & frame["label_source"].notna().to_numpy()
        sources[known] = frame["label_source"].to_numpy()[known]
    frame["label_source"] = sources
    frame["lfs"] = ""
    frame["sample_weight"] = 1.0
    unlabelled = ~given[to_vote]
    if unlabelled.any():
        _fill_from_label_model(frame, to_vote[unlabelled], matrix.L[unlabelled], labels, names)
    if human is not None and not human.empty:
        frame = override_labels(frame, human, key="text")
    dropped = int(frame["label"].isna().sum())
    frame = frame[frame["label"].notna()].reset_index(drop=True)
    report = {
        "lf_summary": summary,
        "lf_problems": matrix.problems,
        "label_sources": {str(k): int(v) for k, v in frame["label_source"].value_counts().items()},
        "unlabelled_dropped": dropped,
        "dev_rows": len(dev),
    }
    return frame, report


def _dev_sample(candidates: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(candidates) <= size:
        return candidates
    return np.sort(np.random.default_rng(seed).choice(candidates, size, replace=False))


def _fill_from_label_model(
    frame: pd.DataFrame, rows: np.ndarray, L: np.ndarray, labels: list[str], names: list[str]
) -> None:
    covered = (L != ABSTAIN).any(axis=1)
    if not covered.any():
        return
    model = LabelModel(cardinality=len(labels)).fit(L)
    proba = model.predict_proba(L[covered])
    target = rows[covered]
    frame.loc[target, "label"] = np.asarray(labels, dtype=object)[proba.argmax(axis=1)]
    frame.loc[target, "sample_weight"] = proba.max(axis=1)
    frame.loc[target, "label_source"] = "label_model"
    frame.loc[target, "lfs"] = [
        ",".join(n for n, vote in zip(names, row, strict=True) if vote != ABSTAIN)
        for row in L[covered]
    ]


def _dev_summary(
    L: np.ndarray,
    names: list[str],
    voted_labels: np.ndarray,
    is_dev: np.ndarray,
    labels: list[str],
) -> list[dict[str, Any]]:
    """LF statistics; empirical accuracy against the given labels of the dev rows."""
    if L.shape[0] == 0:
        return []
    if not is_dev.any():
        return lf_summary(L, names, label_set=labels)
    codes = {label: i for i, label in enumerate(labels)}
    y_dev = np.array([codes.get(v, ABSTAIN) for v in voted_labels[is_dev]])
    return lf_summary(L[is_dev], names, Y_dev=y_dev, label_set=labels)
