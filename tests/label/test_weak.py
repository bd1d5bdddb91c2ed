"""Weak labeling: emoticon and VADER labeling functions, majority vote, label sources."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from loopline.data.ingest import read_vader_ground_truth
from loopline.errors import DataError
from loopline.label.weak import (
    ABSTAIN,
    apply_labels,
    emoticon_lf,
    label_source_counts,
    vader_lf,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("great day :)", "positive"),
        ("great day :-)", "positive"),
        ("haha :D", "positive"),
        ("see you =)", "positive"),
        ("wink ;)", "positive"),
        ("smile : )", "positive"),
        ("so sad :(", "negative"),
        ("so sad :-(", "negative"),
        ("I cried :'(", "negative"),
        ("mixed :) :(", ABSTAIN),
        ("no emoticons here", ABSTAIN),
        ("read http://example.com/a", ABSTAIN),  # "://" is not a frown
        (":Dave is here", ABSTAIN),  # ":D" running into a word is not a grin
        ("(see page 8)", ABSTAIN),
    ],
)
def test_emoticon_lf(text: str, expected: str | None) -> None:
    assert emoticon_lf(text) == expected


def test_vader_lf() -> None:
    assert vader_lf("I love this, it is wonderful") == "positive"
    assert vader_lf("this is terrible and I hate it") == "negative"
    assert vader_lf("the bus leaves at noon") is ABSTAIN
    assert vader_lf("good", threshold=0.99) is ABSTAIN


def sample() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": ["I love it :)", "awful day :(", "the table", "good", "bad", "fine"],
            "label": ["positive", None, None, "negative", "", None],
            "user": ["a", "b", "c", "d", "e", "f"],
        }
    )


def test_existing_keeps_labelled_rows_only() -> None:
    out = apply_labels(sample(), "existing")
    assert out["text"].tolist() == ["I love it :)", "good"]
    assert out["label"].tolist() == ["positive", "negative"]  # given labels win
    assert set(out["label_source"]) == {"given"}
    assert "user" in out.columns
    assert label_source_counts(out) == {"given": 2}


def test_weak_ignores_existing_labels_and_names_the_voters() -> None:
    out = apply_labels(sample(), "weak")
    by_text = out.set_index("text")
    assert by_text.loc["I love it :)", "label_source"] == "emoticon+vader"
    assert by_text.loc["awful day :(", "label"] == "negative"
    assert by_text.loc["good", "label"] == "positive"  # VADER, not the given "negative"
    assert by_text.loc["good", "label_source"] == "vader"
    assert "the table" not in by_text.index  # every LF abstained: dropped
    assert out.index.tolist() == list(range(len(out)))


def test_existing_then_weak_fills_only_the_gaps() -> None:
    out = apply_labels(sample(), "existing_then_weak")
    by_text = out.set_index("text")
    assert by_text.loc["good", "label"] == "negative"
    assert by_text.loc["good", "label_source"] == "given"
    assert by_text.loc["awful day :(", "label_source"] == "emoticon+vader"
    counts = label_source_counts(out)
    assert counts["given"] == 2 and sum(counts.values()) == len(out)


def test_a_tie_abstains_and_custom_lfs_are_accepted() -> None:
    def always_positive_lf(text: str) -> str | None:
        return "positive"

    def always_negative_lf(text: str) -> str | None:
        return "negative"

    def silent(text: str) -> str | None:
        return ABSTAIN

    df = pd.DataFrame({"text": ["a", "b"]})
    assert apply_labels(df, "weak", lfs=[always_positive_lf, always_negative_lf]).empty
    out = apply_labels(df, "weak", lfs=[always_positive_lf, always_negative_lf, always_positive_lf])
    assert out["label"].tolist() == ["positive", "positive"]
    assert out["label_source"].iloc[0] == "always_positive+always_positive"
    out = apply_labels(df, "weak", lfs=[silent, always_negative_lf])
    assert out["label_source"].tolist() == ["always_negative"] * 2


def test_weak_labels_agree_with_human_ratings_on_vader_tweets() -> None:
    truth = read_vader_ground_truth(SHARED / "sentiment" / "vader" / "tweets_GroundTruth.txt")
    out = apply_labels(truth.drop(columns="label"), "weak")
    assert len(out) > 0.9 * len(truth)
    merged = out.merge(truth[["id", "label"]], on="id", suffixes=("", "_human"))
    assert (merged["label"] == merged["label_human"]).mean() > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "guess"}, "unknown labeling strategy 'guess'"),
        ({"strategy": "weak", "lfs": ["textblob"]}, "unknown labeling function 'textblob'"),
        ({"strategy": "weak", "lfs": []}, "no labeling functions"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        apply_labels(sample(), **kwargs)  # type: ignore[arg-type]


def test_bad_frames() -> None:
    with pytest.raises(DataError, match="expected a 'text' column"):
        apply_labels(pd.DataFrame({"tweet": ["x"]}), "weak")
    with pytest.raises(DataError, match="strategy 'existing' needs a 'label' column"):
        apply_labels(pd.DataFrame({"text": ["x"]}), "existing")
    with pytest.raises(DataError, match="label_source"):
        label_source_counts(pd.DataFrame({"text": ["x"]}))
