"""The generated starter data: YouTube comments and card transactions in the real files' formats."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.examples.spam_comments import generate_comments, write_comments
from loopline.examples.transactions import generate_transactions, write_transactions

REAL_SPAM = Path("spam_youtube") / "Youtube01-Psy.csv"
REAL_TX = Path("fraud") / "fraud_handbook_simulated" / "transactions_2018-04.csv.gz"


@pytest.fixture(scope="module")
def comments() -> dict[str, pd.DataFrame]:
    return generate_comments()


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return generate_transactions()


# --- YouTube comments -------------------------------------------------------------------


def test_spam_files_read_back_with_the_real_columns_and_dtypes(
    tmp_path: Path, shared_data: Path
) -> None:
    real = pd.read_csv(shared_data / REAL_SPAM)
    paths = write_comments(tmp_path)
    assert [p.name for p in paths] == [f"Youtube0{i}-Generated.csv" for i in range(1, 6)]
    total = 0
    for path in paths:
        raw = path.read_bytes()
        assert raw.startswith(b"COMMENT_ID,AUTHOR,DATE,CONTENT,CLASS\n")  # UTF-8, no BOM
        assert raw.endswith(b"\n") and b"\r\n" not in raw
        frame = pd.read_csv(path)
        assert list(frame.columns) == list(real.columns)
        assert frame.dtypes.to_dict() == real.dtypes.to_dict()
        assert set(frame["CLASS"]) == {0, 1}
        assert frame["COMMENT_ID"].notna().all() and frame["CONTENT"].notna().all()
        total += len(frame)
    assert total == 1_500


def test_spam_frames_look_like_the_collection(comments: dict[str, pd.DataFrame]) -> None:
    frames = list(comments.values())
    everything = pd.concat(frames, ignore_index=True)
    assert 0.4 < everything["CLASS"].mean() < 0.6
    assert everything["COMMENT_ID"].is_unique
    # ISO dates, with and without microseconds; the fourth file has none on its spam rows.
    dates = everything["DATE"].dropna()
    assert dates.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?").all()
    assert frames[3]["DATE"].isna().sum() > 50
    assert all(f["DATE"].notna().all() for i, f in enumerate(frames) if i != 3)
    # Site quirks: U+FEFF at the end, HTML escapes and line breaks.
    content = everything["CONTENT"]
    assert content.str.endswith("\ufeff").mean() > 0.5
    assert content.str.contains("<br />", regex=False).any()
    assert content.str.contains("&#39;", regex=False).any()


def test_spam_and_ham_overlap(comments: dict[str, pd.DataFrame]) -> None:
    everything = pd.concat(comments.values(), ignore_index=True)
    spam = everything[everything["CLASS"] == 1]["CONTENT"]
    ham = everything[everything["CLASS"] == 0]["CONTENT"]
    link = r"https?://|www\.|\.com|bit\.ly|watch\?v="
    assert spam.str.contains(r"https?://").any()  # links with a scheme ...
    assert spam.str.contains(r"(?<!//)www\.|(?<![/\w])bit\.ly|\w  \. com").any()  # ... and without
    assert (~spam.str.contains(link)).mean() > 0.3  # spam without a link
    assert ham.str.contains(link).any()  # ham with a (lyrics) link
    assert ham.str.contains("lyrics", case=False).any()
    assert spam.str.contains("gift card", case=False).any()
    assert spam.str.contains("like this comment", case=False).any()
    assert spam.str.contains("please", case=False).mean() > 0.2
    assert ham.str.contains(r"20\d\d\?").any()  # "who is watching in 2015?"
    assert (ham.str.len() <= 6).any()  # "lol"


def test_spammers_repost_the_same_text(comments: dict[str, pd.DataFrame]) -> None:
    for frame in comments.values():
        spam = frame[frame["CLASS"] == 1]
        reposts = spam[spam.duplicated(["AUTHOR", "CONTENT"], keep=False)]
        assert len(reposts) >= 5
        assert (reposts.groupby(["AUTHOR", "CONTENT"]).size() >= 2).all()


def test_spam_generation_is_deterministic(tmp_path: Path) -> None:
    first = write_comments(tmp_path / "a", seed=7)
    again = write_comments(tmp_path / "b", seed=7)
    other = write_comments(tmp_path / "c", seed=8)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert all(a.read_bytes() != c.read_bytes() for a, c in zip(first, other, strict=True))


def test_generate_comments_sizes() -> None:
    frames = generate_comments(200, seed=3, videos=7)
    assert len(frames) == 7
    assert sum(len(f) for f in frames.values()) == 200
    assert list(frames)[-1] == "Youtube07-Generated.csv"
    with pytest.raises(ValueError):
        generate_comments(10, videos=0)


def test_spam_is_learnable_but_not_trivial(comments: dict[str, pd.DataFrame]) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB

    frames = list(comments.values())
    train = pd.concat(frames[:4], ignore_index=True)
    test = frames[4]
    vectorizer = CountVectorizer()
    model = MultinomialNB().fit(vectorizer.fit_transform(train["CONTENT"]), train["CLASS"])
    accuracy = (model.predict(vectorizer.transform(test["CONTENT"])) == test["CLASS"]).mean()
    assert 0.75 <= accuracy <= 0.99, accuracy


# --- Card transactions ------------------------------------------------------------------


def test_transactions_read_back_like_the_real_file(
    tmp_path: Path, shared_data: Path, transactions: pd.DataFrame
) -> None:
    real = pd.read_csv(shared_data / REAL_TX, nrows=1_000)
    path = write_transactions(tmp_path / "transactions_2018-04.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        header, first = handle.readline(), handle.readline()
    assert header == ",".join(real.columns) + "\n"
    assert re.fullmatch(
        r"0,2018-04-01 \d\d:\d\d:\d\d,\d+,\d+,\d+\.\d{1,2},\d+,0,[01],[0-3]\n", first
    )
    back = pd.read_csv(path)
    assert list(back.columns) == list(real.columns)
    assert back.dtypes.to_dict() == real.dtypes.to_dict()
    pd.testing.assert_frame_equal(back, transactions)  # the frame is what the file holds


def test_transactions_times_and_ids(transactions: pd.DataFrame) -> None:
    tx = transactions
    assert 80_000 < len(tx) < 200_000
    assert (tx["TRANSACTION_ID"].to_numpy() == np.arange(len(tx))).all()
    assert tx["TX_TIME_SECONDS"].is_monotonic_increasing
    stamps = pd.to_datetime(tx["TX_DATETIME"], format="%Y-%m-%d %H:%M:%S")
    assert stamps.is_monotonic_increasing
    since = (stamps - pd.Timestamp("2018-04-01")).dt.total_seconds().astype("int64")
    assert (since == tx["TX_TIME_SECONDS"]).all()
    assert (tx["TX_TIME_DAYS"] == tx["TX_TIME_SECONDS"] // 86_400).all()
    assert tx["TX_TIME_DAYS"].between(0, 59).all() and tx["TX_TIME_DAYS"].nunique() == 60
    hours = stamps.dt.hour
    assert 10 <= hours.median() <= 14  # around noon
    assert (tx["TX_AMOUNT"] >= 0).all()  # as in the real files, a few round to 0.0
    assert (tx["TX_AMOUNT"] == tx["TX_AMOUNT"].round(2)).all()
    assert 40 < tx["TX_AMOUNT"].mean() < 70
    assert tx["CUSTOMER_ID"].between(0, 999).all() and tx["TERMINAL_ID"].between(0, 1_999).all()


def test_transactions_fraud_scenarios(transactions: pd.DataFrame) -> None:
    tx = transactions
    scenario, amount = tx["TX_FRAUD_SCENARIO"], tx["TX_AMOUNT"]
    assert 0.003 <= tx["TX_FRAUD"].mean() <= 0.015
    assert set(scenario) == {0, 1, 2, 3}
    assert (tx["TX_FRAUD"] == (scenario > 0)).all()
    # Scenario 1 is exactly the amounts above 220 that no other scenario claimed.
    assert ((scenario == 1) == ((amount > 220) & ~scenario.isin([2, 3]))).all()
    assert (tx.loc[amount > 220, "TX_FRAUD"] == 1).all()
    # Scenario 2: a few terminals, every one of their transactions fraud for a while.
    compromised = tx.loc[scenario == 2, ["TERMINAL_ID", "TX_TIME_DAYS"]].drop_duplicates()
    assert compromised["TERMINAL_ID"].nunique() < 100
    same_day = tx.merge(compromised, on=["TERMINAL_ID", "TX_TIME_DAYS"])
    assert (same_day["TX_FRAUD"] == 1).all()
    # Scenario 3: stolen credentials, spent at about five times the usual amount.
    stolen = tx[scenario == 3]
    assert stolen["CUSTOMER_ID"].nunique() < 150
    assert stolen["TX_AMOUNT"].mean() > 3 * tx.loc[scenario == 0, "TX_AMOUNT"].mean()


def test_transactions_are_deterministic(tmp_path: Path) -> None:
    small = {"customers": 200, "terminals": 400, "days": 20}
    first = write_transactions(tmp_path / "a.csv.gz", seed=5, **small)
    again = write_transactions(tmp_path / "b" / "a.csv.gz", seed=5, **small)
    other = write_transactions(tmp_path / "c.csv.gz", seed=6, **small)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    plain = write_transactions(tmp_path / "a.csv", seed=5, **small)
    assert plain.read_bytes() == gzip.decompress(first.read_bytes())


def test_transactions_other_sizes() -> None:
    tiny = generate_transactions(customers=3, terminals=2, days=2, start="2020-02-28", seed=1)
    assert tiny.columns[0] == "TRANSACTION_ID"
    assert tiny["TX_DATETIME"].str.startswith(("2020-02-28", "2020-02-29")).all()
    empty = generate_transactions(days=0)
    assert len(empty) == 0 and list(empty.columns) == list(tiny.columns)


def test_generated_comments_fit_the_spam_tutorial_split(tmp_path: Path) -> None:
    from loopline.examples.spam import load_spam_split

    write_comments(tmp_path)
    split = load_spam_split(tmp_path)
    assert len(split.test) == 250 and len(split.dev) == 100
    assert set(split.valid["label"]) == {0, 1}
