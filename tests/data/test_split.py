"""split_frame on real data: time splits with a label-delay gap, group and stratified splits."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest

from loopline.data.split import group_split, split_frame
from loopline.data.tables import read_table_source
from loopline.errors import DataError


@functools.cache
def _read(path: Path) -> pd.DataFrame:
    return read_table_source(path)


@pytest.fixture
def fraud(shared_data: Path) -> pd.DataFrame:
    """April 2018 of the Fraud Detection Handbook's simulated transactions (288,062 rows)."""
    path = shared_data / "fraud" / "fraud_handbook_simulated" / "transactions_2018-04.csv.gz"
    return _read(path).copy()


@pytest.fixture
def spam(shared_data: Path) -> pd.DataFrame:
    """The five YouTube Spam Collection files (1,956 comments)."""
    return _read(shared_data / "spam_youtube").copy()


# ---------------------------------------------------------------------------------------------
# time


def test_time_split_with_cutoff_and_label_delay_gap(fraud: pd.DataFrame) -> None:
    cutoff = pd.Timestamp("2018-04-22")
    train, test = split_frame(fraud, how="time", time="TX_DATETIME", cutoff="2018-04-22", gap="7D")
    assert list(train.columns) == list(fraud.columns) == list(test.columns)
    assert train.index.tolist() == list(range(len(train)))
    assert train["TX_DATETIME"].max() < cutoff - pd.Timedelta("7D")
    assert not train["TX_DATETIME"].between(cutoff - pd.Timedelta("7D"), cutoff).any()
    assert test["TX_DATETIME"].min() >= cutoff
    assert test["TX_DATETIME"].min().date() == cutoff.date()  # the test starts at the cutoff
    assert train["TX_DATETIME"].is_monotonic_increasing
    assert test["TX_DATETIME"].is_monotonic_increasing
    times = fraud["TX_DATETIME"]
    assert len(train) == int((times < cutoff - pd.Timedelta("7D")).sum())
    assert len(test) == int((times >= cutoff).sum())
    # Every row is on one side or in the gap, once.
    assert not set(train["TRANSACTION_ID"]) & set(test["TRANSACTION_ID"])


def test_time_split_without_cutoff_takes_the_last_share(fraud: pd.DataFrame) -> None:
    train, test = split_frame(fraud, how="time", time="TX_DATETIME", test_size=0.25)
    assert len(train) + len(test) == len(fraud)
    assert train["TX_DATETIME"].max() < test["TX_DATETIME"].min()
    assert len(test) == pytest.approx(0.25 * len(fraud), abs=5)


def test_time_split_parses_string_times(spam: pd.DataFrame) -> None:
    dated = spam.dropna(subset=["DATE"]).copy()
    dated["DATE"] = dated["DATE"].dt.strftime("%Y-%m-%dT%H:%M:%S")  # as text
    train, test = split_frame(dated, how="time", time="DATE", cutoff="2015-01-01")
    assert (pd.to_datetime(train["DATE"]) < pd.Timestamp("2015-01-01")).all()
    assert (pd.to_datetime(test["DATE"]) >= pd.Timestamp("2015-01-01")).all()
    assert test["DATE"].dtype == dated["DATE"].dtype  # values are returned as they were


def test_time_split_errors(fraud: pd.DataFrame, spam: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'TX_TIME_DAYS' holds int64 numbers, not dates"):
        split_frame(fraud, how="time", time="TX_TIME_DAYS")
    with pytest.raises(DataError, match=r"'CONTENT' holds values that are not dates"):
        split_frame(spam, how="time", time="CONTENT")
    with pytest.raises(DataError, match="245 rows have no 'DATE' value"):
        split_frame(spam, how="time", time="DATE")
    with pytest.raises(DataError, match="left the test side empty"):
        split_frame(fraud, how="time", time="TX_DATETIME", cutoff="2019-01-01")
    with pytest.raises(DataError, match="left the train side empty"):
        split_frame(fraud, how="time", time="TX_DATETIME", cutoff="2018-04-05", gap="7D")
    with pytest.raises(DataError, match="cutoff must be a date or time, found 'next week'"):
        split_frame(fraud, how="time", time="TX_DATETIME", cutoff="next week")
    with pytest.raises(DataError, match="gap must be a time span"):
        split_frame(fraud, how="time", time="TX_DATETIME", cutoff="2018-04-22", gap="a week")
    with pytest.raises(DataError, match="a time split needs the time column"):
        split_frame(fraud, how="time")


# ---------------------------------------------------------------------------------------------
# group and stratified


def test_group_split_keeps_each_author_on_one_side(spam: pd.DataFrame) -> None:
    train, test = split_frame(spam, how="group", group="AUTHOR", test_size=0.2, seed=3)
    assert len(train) + len(test) == len(spam)
    assert not set(train["AUTHOR"]) & set(test["AUTHOR"])
    authors = spam["AUTHOR"].nunique()
    assert test["AUTHOR"].nunique() == pytest.approx(0.2 * authors, abs=1)
    # The rows keep their original order.
    numbered = spam.assign(row=range(len(spam)))
    train, _ = split_frame(numbered, how="group", group="AUTHOR", test_size=0.2, seed=3)
    assert train["row"].is_monotonic_increasing


def test_group_split_stratified_by_label(spam: pd.DataFrame) -> None:
    train, test = split_frame(spam, how="group", group="AUTHOR", label="CLASS", seed=1)
    assert not set(train["AUTHOR"]) & set(test["AUTHOR"])
    for cls, total in spam["CLASS"].value_counts().items():
        assert (test["CLASS"] == cls).sum() == pytest.approx(0.2 * total, abs=3)


def test_stratified_split_keeps_label_shares(spam: pd.DataFrame) -> None:
    train, test = split_frame(spam, how="stratified", label="CLASS", test_size=0.25)
    assert len(test) == 489 and len(train) == 1467
    for cls, total in spam["CLASS"].value_counts().items():
        assert abs((test["CLASS"] == cls).sum() - 0.25 * total) <= 1
        assert abs((train["CLASS"] == cls).sum() - 0.75 * total) <= 1


def test_random_split_sizes_and_order(spam: pd.DataFrame) -> None:
    numbered = spam.assign(row=range(len(spam)))
    train, test = split_frame(numbered, test_size=0.3, seed=5)
    assert len(test) == 587 and len(train) == 1369
    assert sorted([*train["row"], *test["row"]]) == list(range(len(spam)))
    assert train["row"].is_monotonic_increasing and test["row"].is_monotonic_increasing


@pytest.mark.parametrize(
    "kwargs",
    [
        {"how": "random"},
        {"how": "stratified", "label": "CLASS"},
        {"how": "group", "group": "AUTHOR"},
        {"how": "group", "group": "AUTHOR", "label": "CLASS"},
    ],
)
def test_same_data_and_seed_give_the_same_split(spam: pd.DataFrame, kwargs: dict) -> None:
    first = split_frame(spam, seed=11, **kwargs)
    again = split_frame(spam.copy(), seed=11, **kwargs)
    other = split_frame(spam, seed=12, **kwargs)
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert first[1]["COMMENT_ID"].tolist() != other[1]["COMMENT_ID"].tolist()


def test_split_errors(spam: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"unknown column 'AUTHRO'") as info:
        split_frame(spam, how="group", group="AUTHRO")
    assert info.value.hint is not None and "did you mean 'AUTHOR'" in info.value.hint
    for size in (0, 1, 1.5, -0.1):
        with pytest.raises(DataError, match="test_size must be between 0 and 1"):
            split_frame(spam, test_size=size)
    with pytest.raises(DataError, match="a stratified split needs the label column"):
        split_frame(spam, how="stratified")
    lonely = spam.copy()
    lonely.loc[0, "CLASS"] = 7
    with pytest.raises(DataError, match="cannot stratify by 'CLASS': class '7' has a single row"):
        split_frame(lonely, how="stratified", label="CLASS")
    with pytest.raises(DataError, match="unknown split how='kfold'"):
        split_frame(spam, how="kfold")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="cannot split an empty table"):
        split_frame(spam.head(0))
    with pytest.raises(DataError, match="cannot make a random split of 1 row with"):
        split_frame(spam.head(1))
    with pytest.raises(DataError, match="every row is in the same group"):
        split_frame(spam.assign(AUTHOR="x"), how="group", group="AUTHOR")
    with pytest.raises(DataError, match="cutoff= and gap= apply to time splits"):
        split_frame(spam, cutoff="2015-01-01")


def test_group_split_is_unchanged() -> None:
    """The sentiment pipeline's split still keeps duplicate texts together, stratified."""
    texts = [f"t{i % 30}" for i in range(60)]
    df = pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 30})
    train, test = group_split(df, test_size=0.2, seed=0)
    assert not set(train["text"]) & set(test["text"])
    assert len(train) + len(test) == 60
