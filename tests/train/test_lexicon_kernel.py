"""The compiled lexicon scores (``loopline.train._lexicon``) equal ``LexiconScores.score``.

``score_texts`` runs in C when the extension is built; the Python ``score`` is the
reference. Both must give the same float64 scores bit for bit on real tweets (Sentiment140,
VADER's own tweets, upper-cased copies) and on texts that reach every rule, and count the
cache's look-ups and misses alike.
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopline.train import text
from loopline.train.text import LexiconScores

SENTIMENT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sentiment"

CRAFTED: list[Any] = [
    "NOT GOOD!!! :(", "no no no", "no good", "&lt;3 &amp; ♥ 😀😀", "kind of good",
    "very very GOOD but BAD", "", "   ", "?? !!!! ???? good", "good?? great???", "GOOD",
    "good GOOD bad", "isn't bad", "extremely not good but great!!!!!!", "but", "good but",
    "KINDA GOOD", "so VERY bad", "never ever happy", "without love :)", "😀", "😡 no 😀",
    "hello\u2003good\tbad\nugly", "ünïcödé good", 5, 3.5, None,
]  # fmt: skip


def _texts() -> list[Any]:
    path = SENTIMENT / "sentiment140_train_sample" / "positive_tweets_50k.txt.gz"
    negative = SENTIMENT / "sentiment140_train_sample" / "negative_tweets_50k.txt.gz"
    vader = SENTIMENT / "vader" / "tweets_GroundTruth.txt"
    if not (path.exists() and negative.exists() and vader.exists()):
        pytest.skip(f"shared data not found under {SENTIMENT}")
    tweets = []
    for source in (path, negative):
        with gzip.open(source, "rt", encoding="utf-8") as f:
            tweets += [line.rstrip("\n") for line in itertools.islice(f, 4_000)]
    lines = vader.read_text(encoding="utf-8").splitlines()
    tweets += [line.split("\t", 2)[2] for line in lines if line.count("\t") >= 2]
    return tweets + [t.upper() for t in tweets[:2_000]] + CRAFTED


def test_compiled_scores_equal_the_python_rules_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if text.LEXICON_KERNEL is None:
        pytest.skip("the C extension loopline.train._lexicon is not built")
    texts = _texts()
    assert len(texts) >= 10_000
    reference = LexiconScores(dtype="float64").fit(None)
    expected = np.array([reference.score(t if isinstance(t, str) else str(t)) for t in texts])
    compiled = LexiconScores(dtype="float64").fit(None)
    # In batches, as the server scores them: the cache fills as it goes.
    got = np.vstack([compiled.score_texts(texts[i : i + 16]) for i in range(0, len(texts), 16)])
    np.testing.assert_array_equal(got.view(np.int64), expected.view(np.int64))
    assert compiled.cache_stats() == reference.cache_stats()
    monkeypatch.setattr(text, "LEXICON_KERNEL", None)
    python = LexiconScores().fit(None).score_texts(texts)
    np.testing.assert_array_equal(python, got.astype(np.float32))


def test_a_broken_cache_entry_is_an_error_not_a_wrong_score() -> None:
    if text.LEXICON_KERNEL is None:
        pytest.skip("the C extension loopline.train._lexicon is not built")
    scores = LexiconScores().fit(None)
    scores._token_cache()["good"] = ("good", "not a number", 0.0, False, False)
    with pytest.raises(TypeError):
        scores.score_texts(["good day"])
    out = np.zeros(3)
    with pytest.raises(ValueError, match="len\\(texts\\) \\* 3"):
        text.LEXICON_KERNEL.score_texts(["a", "b"], {}, str, str, out)
