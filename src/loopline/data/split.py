"""Deterministic, stratified train/test splits that keep duplicate texts on one side."""

from __future__ import annotations

import pandas as pd

from loopline.errors import DataError


def group_split(
    df: pd.DataFrame,
    test_size: float = 0.2,
    seed: int = 0,
    group_column: str = "text",
    label_column: str = "label",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into (train, test).

    Rows with the same ``group_column`` value (exact duplicate texts) always land on the
    same side, so a model is never tested on a text it was trained on. Within each label,
    groups are ordered by a seeded hash and the first ``test_size`` share goes to test:
    the split is stratified, and the same data and seed always give the same split,
    whatever the row order.
    """
    if not 0.0 < test_size < 1.0:
        raise DataError(f"test_size must be between 0 and 1, found {test_size}")
    if df.empty:
        raise DataError("cannot split an empty dataset", hint="check the ingest and label steps")
    key = f"loopline{seed:08d}"[-16:]
    group_hash = pd.util.hash_pandas_object(df[group_column], index=False, hash_key=key)
    groups = pd.DataFrame({"hash": group_hash.to_numpy(), "label": df[label_column].to_numpy()})
    # A duplicated text is one group, stratified by the label of its first occurrence.
    first = groups.drop_duplicates("hash").sort_values("hash")
    rank = first.groupby("label", sort=False).cumcount()
    size = first.groupby("label", sort=False)["hash"].transform("size")
    test_hashes = first["hash"][rank < (size * test_size).round()]
    in_test = groups["hash"].isin(test_hashes).to_numpy()
    train, test = df[~in_test].reset_index(drop=True), df[in_test].reset_index(drop=True)
    if train.empty or test.empty:
        raise DataError(
            f"split of {len(df)} rows left an empty {'train' if train.empty else 'test'} side",
            hint="use more data or another test_size",
        )
    return train, test
