"""The lean path's n-gram look-ups give exactly the n-grams scikit-learn counts.

``_WordNgrams`` looks a batch's word n-grams up by integer keys of token ids and
``_WordCachedCharNgrams`` computes the character n-grams of a batch's new words from
character codes; both must find, text by text, the same vocabulary columns (with repeats) as
the fitted vectorizer's own analyzer, whatever the characters (outside the vocabulary, astral,
lone surrogates, the separator the char path joins words with), the n-gram range, and when
their keys would not fit (the fallbacks). Each test runs on the numpy path and on the
compiled kernels (``loopline.serve._lean``).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from loopline.serve.inference import KERNELS, _WordCachedCharNgrams, _WordNgrams

_WORDS = [
    "good", "bad", "not", "don't", "i", "u", "sooo", "a", "ok", "love", "hate", "x", "it's",
    "naïve", "ünïcödé", "straße", "ΣΑΣ", "日本語", "😀", "👍🏽", "a_b", "123", "n't", "''",
]  # fmt: skip
# Characters the vectorizers never saw: they must make an n-gram unknown, never match.
_UNSEEN = ["\x00", "\ud800", "\U0001f680", "ж", "\u2003", "q"]


@pytest.fixture(params=["numpy", "compiled"])
def kernels(request: pytest.FixtureRequest) -> Any:
    if request.param == "numpy":
        return None
    if KERNELS is None:
        pytest.skip("the C extension loopline.serve._lean is not built")
    return KERNELS


def _texts(count: int, seed: int, words: list[str]) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        picked = rng.choices(words, k=rng.randint(0, 12))
        if rng.random() < 0.3:  # glue words together and add punctuation
            picked = ["".join(picked[:2]) + rng.choice(",.!?'"), *picked[2:]]
        texts.append(rng.choice([" ", "  ", "\t", " \n "]).join(picked))
    return [*texts, "", "   ", "a" * 80, " ".join(_WORDS)]


def _expected(vectorizer: Any, texts: list[str]) -> list[Counter[int]]:
    analyze = vectorizer.build_analyzer()
    vocabulary = vectorizer.vocabulary_
    return [Counter(vocabulary[g] for g in analyze(text) if g in vocabulary) for text in texts]


def _found(indices: Any, texts: list[str]) -> list[Counter[int]]:
    rows, columns = indices(texts)
    assert np.all(np.diff(rows) >= 0), "entries must come grouped by row"
    found: list[Counter[int]] = [Counter() for _ in texts]
    for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
        found[row][column] += 1
    return found


@pytest.mark.parametrize("ngram_range", [(2, 5), (1, 3), (3, 3), (4, 6), (2, 12)])
def test_char_wb_ngrams_of_new_words_match_the_analyzer(
    ngram_range: tuple[int, int], kernels: Any
) -> None:
    train = _texts(300, 0, _WORDS)
    # The lean path hands the vectorizers preprocessed texts: compare on those.
    vectorizer = CountVectorizer(analyzer="char_wb", ngram_range=ngram_range, lowercase=False)
    vectorizer.fit(train)
    indices = _WordCachedCharNgrams(vectorizer, vectorizer.vocabulary_, kernels=kernels)
    # (2, 12): twelve codes of the vocabulary's characters do not fit in a key (fallback);
    # (4, 6): one-character words are shorter than an n-gram (sklearn's own code).
    assert (indices._codes is None) == (ngram_range == (2, 12))
    texts = _texts(400, 1, _WORDS + _UNSEEN + [w + u for w in _WORDS[:6] for u in _UNSEEN])
    # In batches: words new to the cache, repeated within a batch, then cached.
    for start in range(0, len(texts), 37):
        batch = texts[start : start + 37]
        assert _found(indices, batch) == _expected(vectorizer, batch)
    assert indices.misses < indices.lookups


def test_char_wb_cache_stays_bounded_and_exact_when_full(kernels: Any) -> None:
    train = _texts(200, 2, _WORDS)
    vectorizer = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=False)
    vectorizer.fit(train)
    indices = _WordCachedCharNgrams(
        vectorizer, vectorizer.vocabulary_, max_words=5, kernels=kernels
    )
    texts = _texts(100, 3, _WORDS + _UNSEEN)
    assert _found(indices, texts) == _expected(vectorizer, texts)
    assert len(indices._cache) == 5


@pytest.mark.parametrize(
    "settings",
    [
        {"ngram_range": (1, 2), "token_pattern": r"(?u)\b\w[\w']*\b"},
        {"ngram_range": (1, 1)},
        {"ngram_range": (2, 3)},
        {"ngram_range": (1, 3), "stop_words": ["not", "a"]},
        {"ngram_range": (1, 2), "token_pattern": r"\S+"},  # a term "a b" is ambiguous
        {"ngram_range": (1, 12)},  # keys of 12 token ids do not fit in an int64
    ],
    ids=["sentiment", "unigrams", "bigrams-trigrams", "stop-words", "other-pattern", "long"],
)
def test_word_ngrams_match_the_analyzer(settings: dict[str, Any], kernels: Any) -> None:
    train = _texts(300, 4, _WORDS)
    vectorizer = CountVectorizer(analyzer="word", lowercase=False, **settings).fit(train)
    indices = _WordNgrams(vectorizer, vectorizer.vocabulary_, kernels)
    fallback = settings.get("token_pattern") == r"\S+" or settings["ngram_range"][1] == 12
    assert (indices._ids is None) == fallback
    texts = _texts(300, 5, _WORDS + _UNSEEN)
    for start in range(0, len(texts), 50):
        batch = texts[start : start + 50]
        assert _found(indices, batch) == _expected(vectorizer, batch)
