"""YouTube spam: the Snorkel spam tutorial's data split and a set of spam labeling functions.

The data is the UCI YouTube Spam Collection (five CSV files, one per video). The split is the
one the Snorkel spam tutorial uses: files 01-04 are the training set, whose labels are
hidden except for a 100-row dev sample; file 05 is split into a validation set and a
250-row test set (stratified). Labels are ``0 = ham``, ``1 = spam``.

The LFs below were written by looking at the dev sample and the validation set only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from loopline.errors import DataError
from loopline.label.lf import (
    ABSTAIN,
    LabelingFunction,
    has_url,
    keyword_lf,
    labeling_function,
    regex_lf,
    url_lf,
)

__all__ = ["HAM", "LABEL_SET", "SPAM", "SpamSplit", "load_spam_split", "spam_lfs"]

HAM, SPAM = 0, 1
LABEL_SET = ("ham", "spam")
_SEED = 123  # the tutorial's random_state, for the shuffles and both samples


@dataclass(frozen=True)
class SpamSplit:
    """Frames with columns ``author, date, text, label, video``; ``train`` labels are -1."""

    train: pd.DataFrame
    dev: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def load_spam_split(data_dir: str | Path, seed: int = _SEED) -> SpamSplit:
    """Read ``Youtube01-Psy.csv`` ... ``Youtube05-Shakira.csv`` and split them like the tutorial.

    Each file is shuffled (seeded); the dev set is 100 rows sampled from files 01-04 (whose
    labels are then hidden in ``train``); file 05 is split into validation and a stratified
    250-row test set.
    """
    from sklearn.model_selection import train_test_split

    files = sorted(Path(data_dir).glob("Youtube0*.csv"))
    if len(files) != 5:
        raise DataError(
            f"expected the 5 YouTube spam files Youtube01..05*.csv in {data_dir}, "
            f"found {len(files)}",
            hint="point data_dir at shared/data/spam_youtube",
        )
    frames = [_read(path, video) for video, path in enumerate(files, start=1)]
    frames = [f.sample(frac=1, random_state=seed).reset_index(drop=True) for f in frames]
    train = pd.concat(frames[:4], ignore_index=True)
    dev = train.sample(100, random_state=seed).reset_index(drop=True)
    train = train.assign(label=-1)
    valid, test = train_test_split(
        frames[4], test_size=250, random_state=seed, stratify=frames[4]["label"]
    )
    return SpamSplit(train, dev, valid.reset_index(drop=True), test.reset_index(drop=True))


def _read(path: Path, video: int) -> pd.DataFrame:
    df = pd.read_csv(path)
    df.columns = [str(c).lower() for c in df.columns]
    missing = {"content", "class"} - set(df.columns)
    if missing:
        raise DataError(
            f"{path.name}: expected CONTENT and CLASS columns, missing {', '.join(sorted(missing))}"
        )
    df = df.drop(columns="comment_id", errors="ignore")
    df = df.rename(columns={"class": "label", "content": "text"})
    df["label"] = df["label"].astype(int)
    df["video"] = video
    return df


@labeling_function(label_set=LABEL_SET)
def short_comment(text: str) -> int:
    """Very short comments are mostly ham ("so good", "lol"), unless they are a bare link."""
    if len(text.split()) < 5 and not has_url(text):
        return HAM
    return ABSTAIN


def spam_lfs() -> list[LabelingFunction]:
    """Eleven spam LFs in the spirit of the Snorkel tutorial's (ham = 0, spam = 1)."""
    return [
        regex_lf("check_out", r"check.*out", SPAM),
        regex_lf("subscribe", r"\bsub(?:scri\w*)?\b", SPAM),
        url_lf(SPAM, name="link"),
        regex_lf(
            "my_channel",
            r"\bmy\s+(?:\w+\s+)?(?:channel|videos?|page|music|songs?|covers?|profile|playlist)",
            SPAM,
        ),
        keyword_lf("please", ["please", "plz", "pls"], SPAM),
        regex_lf("money", r"\b(?:money|free|earn|win|gift|cash|paid)\b|\$\s?\d", SPAM),
        regex_lf("like_this", r"\b(?:like|thumbs up)\b.{0,25}\b(?:this comment|if)\b", SPAM),
        keyword_lf("song", ["song"], HAM),
        short_comment,
        keyword_lf("love", ["love", "best", "amazing", "awesome"], HAM),
        regex_lf("views", r"\b(?:billion|views)\b", HAM),
    ]
