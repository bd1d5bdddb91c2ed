"""Deterministic train/test splits.

:func:`group_split` is the text pipelines' split: stratified by label, duplicate texts kept
on one side. :func:`split_frame` is the general one: random, stratified, by group (rows of
one customer, author or session on one side) or by time (train on the past, test on the
future, with an optional gap for labels that arrive late).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from loopline.data.tables import parse_datetimes, require_columns
from loopline.errors import DataError

__all__ = ["group_split", "split_frame"]

SplitHow = Literal["random", "stratified", "group", "time"]
_HOWS: tuple[str, ...] = ("random", "stratified", "group", "time")


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


def split_frame(
    df: pd.DataFrame,
    *,
    how: SplitHow = "random",
    test_size: float = 0.2,
    label: str | None = None,
    group: str | None = None,
    time: str | None = None,
    cutoff: str | None = None,
    gap: str | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into (train, test); the same data and seed always give the same split.

    - ``how="random"``: a seeded random ``test_size`` share of the rows
      (:func:`sklearn.model_selection.train_test_split`).
    - ``"stratified"``: the same, keeping each ``label`` value's share equal on both sides.
    - ``"group"``: rows sharing a ``group`` value stay on one side
      (:class:`~sklearn.model_selection.GroupShuffleSplit`: ``test_size`` is the share of
      *groups*, so the share of rows varies with the group sizes). With ``label`` too, the
      split is also stratified: groups are visited in a seeded order, largest first (the
      greedy rule of :class:`~sklearn.model_selection.StratifiedGroupKFold`), and each
      goes to test when that brings the test side's per-label row counts closer to
      ``test_size`` of each label's rows; then ``test_size`` is a share of rows. A row
      without a group value is a group of its own.
    - ``"time"``: rows ordered by ``time`` (datetimes, or strings pandas parses); test is
      every row at or after ``cutoff`` (a date/time string), or without a cutoff the last
      ``test_size`` share of the rows (rows sharing the boundary time all go to test).
      ``gap`` (a pandas Timedelta string such as ``"7D"``) drops the rows in the ``gap``
      before the test period from train: with a 7-day label delay, train ends 7 days
      before the test starts. Both sides come out sorted by time.

    The random, stratified and group splits keep the rows in their original order. Both
    sides keep the columns in their original order, with a fresh index. Raises
    :class:`~loopline.errors.DataError` for unknown columns, ``test_size`` outside (0, 1),
    a label class with a single row when stratifying, a time column that is not
    datetime-like, and a split that would leave a side empty.
    """
    if how not in _HOWS:
        raise DataError(
            f"unknown split how={how!r}: expected one of {', '.join(_HOWS)}",
            hint="random, stratified (needs label=), group (needs group=) or time (needs time=)",
        )
    if not isinstance(test_size, int | float) or not 0.0 < test_size < 1.0:
        raise DataError(
            f"test_size must be between 0 and 1 (exclusive), found {test_size!r}",
            hint="pass the test share as a fraction, e.g. test_size=0.2",
        )
    needed = {"stratified": ("label", label), "group": ("group", group), "time": ("time", time)}
    if how in needed and needed[how][1] is None:
        name = needed[how][0]
        raise DataError(
            f"a {how} split needs the {name} column: pass {name}='column name'",
            hint=f"e.g. split_frame(df, how={how!r}, {name}=...)",
        )
    if how != "time" and (cutoff is not None or gap is not None):
        raise DataError(
            f"cutoff= and gap= apply to time splits, not to how={how!r}",
            hint="pass how='time' and time='column', or drop cutoff/gap",
        )
    named = [c for c in (label, group, time) if c is not None]
    require_columns(df, named, what=f"split how={how!r}")
    if df.empty:
        raise DataError("cannot split an empty table", hint="check the steps before the split")

    if how == "time":
        assert time is not None
        train_pos, test_pos = _time_split(df, time, test_size, cutoff, gap)
    elif how == "group":
        assert group is not None
        train_pos, test_pos = _group_split(df, group, label, test_size, seed)
    else:
        train_pos, test_pos = _random_split(df, how, label, test_size, seed)
    if len(train_pos) == 0 or len(test_pos) == 0:
        side = "train" if len(train_pos) == 0 else "test"
        raise DataError(
            f"the {how} split of {_count(len(df), 'row')} left the {side} side empty",
            hint="use more data, another test_size"
            + (", another cutoff or a shorter gap" if how == "time" else ""),
        )
    train = df.iloc[train_pos].reset_index(drop=True)
    test = df.iloc[test_pos].reset_index(drop=True)
    return train, test


def _labels(df: pd.DataFrame, label: str) -> pd.Series:
    values = df[label]
    missing = int(values.isna().sum())
    if missing:
        raise DataError(
            f"cannot stratify by {label!r}: {missing:,} rows have no {label} value",
            hint="drop or label those rows first, or split without label=",
        )
    return values


def _require_classes(values: pd.Series, label: str) -> None:
    counts = values.value_counts()
    single = [str(k) for k, n in counts.items() if n < 2]
    if single:
        shown = ", ".join(repr(s) for s in single[:5]) + (", ..." if len(single) > 5 else "")
        raise DataError(
            f"cannot stratify by {label!r}: class {shown} has a single row",
            hint="every class needs at least 2 rows to appear on both sides: add data, "
            "merge or drop the rare class, or use how='random'",
        )


def _random_split(
    df: pd.DataFrame, how: str, label: str | None, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    stratify = None
    if how == "stratified":
        assert label is not None
        stratify = _labels(df, label).to_numpy()
        _require_classes(df[label], label)
    positions = np.arange(len(df))
    try:
        train_pos, test_pos = train_test_split(
            positions, test_size=test_size, random_state=seed, shuffle=True, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(
            f"cannot make a {how} split of {_count(len(df), 'row')} with "
            f"test_size={test_size}: {exc}",
            hint="use more data or a larger test_size (each class needs a row on each side)",
        ) from None
    return np.sort(train_pos), np.sort(test_pos)


def _group_codes(values: pd.Series) -> np.ndarray:
    """An integer per group; each row without a group value is a group of its own."""
    codes, _ = pd.factorize(values)
    missing = codes < 0
    if missing.any():
        codes = codes.copy()
        codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return codes


def _group_split(
    df: pd.DataFrame, group: str, label: str | None, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    codes = _group_codes(df[group])
    n_groups = int(codes.max()) + 1
    if n_groups < 2:
        raise DataError(
            f"cannot split by group {group!r}: every row is in the same group",
            hint="a group split needs at least 2 groups; check the group column",
        )
    if label is None:
        from sklearn.model_selection import GroupShuffleSplit

        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        try:
            train_pos, test_pos = next(splitter.split(np.zeros(len(df)), groups=codes))
        except ValueError as exc:
            raise DataError(
                f"cannot split {n_groups:,} groups of {group!r} with test_size={test_size}: {exc}",
                hint="use more groups or another test_size",
            ) from None
        return np.sort(train_pos), np.sort(test_pos)
    labels = _labels(df, label)
    _require_classes(labels, label)
    in_test = _stratified_groups(codes, pd.factorize(labels)[0], n_groups, test_size, seed)
    positions = np.arange(len(df))
    return positions[~in_test[codes]], positions[in_test[codes]]


def _stratified_groups(
    codes: np.ndarray, label_codes: np.ndarray, n_groups: int, test_size: float, seed: int
) -> np.ndarray:
    """Per group: does it go to test? Greedy, to bring each label's test count to target."""
    n_labels = int(label_codes.max()) + 1
    counts = np.zeros((n_groups, n_labels), dtype=np.int64)
    np.add.at(counts, (codes, label_codes), 1)
    target = counts.sum(axis=0) * test_size
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]  # largest first
    in_test = np.zeros(n_groups, dtype=bool)
    current = np.zeros(n_labels, dtype=np.float64)
    for g in order:
        added = current + counts[g]
        if np.square(added - target).sum() < np.square(current - target).sum():
            in_test[g] = True
            current = added
    return in_test


def _time_split(
    df: pd.DataFrame, time: str, test_size: float, cutoff: str | None, gap: str | None
) -> tuple[np.ndarray, np.ndarray]:
    times = parse_datetimes(df[time], time)
    missing = int(times.isna().sum())
    if missing:
        raise DataError(
            f"cannot split by time: {missing:,} rows have no {time!r} value",
            hint="drop those rows first (df.dropna(subset=[...])), or split another way",
        )
    order = np.argsort(times.to_numpy(), kind="stable")
    ordered = times.iloc[order]
    tz = getattr(times.dt, "tz", None)
    if cutoff is not None:
        boundary = _timestamp(cutoff, "cutoff", tz)
    else:
        n_test = max(1, math.ceil(len(df) * test_size - 1e-9))
        boundary = ordered.iloc[len(df) - n_test]
    delay = pd.Timedelta(0)
    if gap is not None:
        try:
            delay = pd.Timedelta(gap)
        except (ValueError, TypeError):
            raise DataError(
                f"gap must be a time span such as '7D' or '12h', found {gap!r}",
                hint="use a pandas Timedelta string: '7D', '36h', '1D 12h'",
            ) from None
        if delay < pd.Timedelta(0):
            raise DataError(f"gap must not be negative, found {gap!r}", hint="e.g. gap='7D'")
    is_test = (ordered >= boundary).to_numpy()
    is_train = (ordered < boundary - delay).to_numpy()
    return order[is_train], order[is_test]


def _timestamp(text: str, what: str, tz: object) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if stamp is pd.NaT or pd.isna(stamp):
        raise DataError(
            f"{what} must be a date or time, found {text!r}",
            hint="e.g. cutoff='2018-04-22' or '2018-04-22 12:00'",
        )
    if tz is not None and stamp.tzinfo is None:
        stamp = stamp.tz_localize(tz)
    elif tz is None and stamp.tzinfo is not None:
        raise DataError(
            f"{what} {text!r} has a time zone but the time column has none",
            hint="drop the offset from the cutoff, or localise the column (Series.dt.tz_localize)",
        )
    return stamp


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
