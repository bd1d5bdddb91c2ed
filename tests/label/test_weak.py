"""The emoticon and VADER labeling rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from loopline.label.weak import ABSTAIN, emoticon_lf, vader_lf

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
