"""The compiled kernels of the lean path (``loopline.serve._lean``).

``LinearTextPredictor`` counts, weights and scores in C when the extension is built; its
numpy path does the same where it is not. Both must give scikit-learn's probabilities bit
for bit for every model shape the predictor accepts (float32 and float64, one class score
or several, binary counts, l1/l2/no norm, with and without idf and sublinear tf, several
groups of vectorizers), and the kernels must refuse inconsistent input without touching the
scores. CI sets ``REQUIRE_LEAN_KERNELS=1`` so that a failed build cannot pass unseen as
skipped tests.
"""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.serve.inference import KERNELS, LinearTextPredictor
from loopline.train.text import LexiconScores, normalize_tweet

SENTIMENT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sentiment"


def _kernels() -> Any:
    if KERNELS is None:
        pytest.skip("the C extension loopline.serve._lean is not built")
    return KERNELS


def test_the_kernels_are_built_where_ci_requires_them() -> None:
    if not os.environ.get("REQUIRE_LEAN_KERNELS"):
        pytest.skip("REQUIRE_LEAN_KERNELS is not set")
    assert KERNELS is not None, "loopline.serve._lean did not build: see pip's output"


def _tweets(label: str, count: int) -> list[str]:
    path = SENTIMENT / "sentiment140_train_sample" / f"{label}_tweets_50k.txt.gz"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in itertools.islice(f, 20_000, 20_000 + count)]


@pytest.fixture(scope="module")
def tweets() -> pd.DataFrame:
    positive, negative, neutral = _tweets("positive", 1_500), _tweets("negative", 1_500), []
    # A third class for the multiclass models: tweets with a question mark.
    rows = [(t, "positive") for t in positive] + [(t, "negative") for t in negative]
    frame = pd.DataFrame(rows, columns=["text", "label"])
    neutral = frame["text"].str.contains("?", regex=False)
    frame["three"] = np.where(neutral, "question", frame["label"])
    return frame


def _pipeline(vectorizers: list[tuple[str, Any]], **classifier: Any) -> Pipeline:
    features = ColumnTransformer([(name, v, "text") for name, v in vectorizers])
    return Pipeline([("features", features), ("classifier", LogisticRegression(**classifier))])


F32 = {"dtype": np.float32}
SHAPES: dict[str, tuple[list[tuple[str, Any]], str, dict[str, Any]]] = {
    # sklearn's defaults: float64 everywhere, one l2-normalised word TF-IDF block.
    "float64-defaults": ([("word", TfidfVectorizer())], "label", {}),
    # the sentiment model's shape: word + char_wb in one group, then a dense scorer.
    "float32-sublinear-lexicon": (
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, **F32)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(2, 4),
                    sublinear_tf=True,
                    preprocessor=normalize_tweet,
                    **F32,
                ),
            ),
            ("lexicon", LexiconScores()),
        ],
        "label",
        {"solver": "saga", "max_iter": 300},
    ),
    "multiclass-float32": (
        [
            ("word", TfidfVectorizer(sublinear_tf=True, **F32)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3), **F32)),
        ],
        "three",
        {"solver": "saga", "max_iter": 300},
    ),
    # three groups that weight differently: binary l1 without idf, raw counts, l2 with idf.
    "groups-binary-l1-counts": (
        [
            ("binary", TfidfVectorizer(binary=True, norm="l1", use_idf=False, sublinear_tf=True)),
            # (CountVectorizer's default int64 counts take the numpy path)
            ("counts", CountVectorizer(analyzer="char_wb", ngram_range=(2, 3), dtype=float)),
            ("plain", TfidfVectorizer(norm=None, ngram_range=(2, 2))),
        ],
        "three",
        {"max_iter": 300},
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_model_shape_scores_bit_for_bit_on_both_paths(
    shape: str, tweets: pd.DataFrame
) -> None:
    _kernels()
    vectorizers, target, classifier = SHAPES[shape]
    train, scored = tweets.iloc[::2], tweets.iloc[1::2]
    model = _pipeline(vectorizers, **classifier).fit(train[["text"]], train[target])
    texts = [*scored["text"], "", "   ", "😀 ünïcödé", "a " * 300]
    expected = model.predict_proba(pd.DataFrame({"text": texts}))
    compiled = LinearTextPredictor.from_model(model, ["text"])
    plain = LinearTextPredictor.from_model(model, ["text"], compiled=False)
    assert compiled is not None and plain is not None
    assert compiled._kernels is not None and plain._kernels is None
    for size in (16, 1, 500):
        for predictor in (compiled, plain):
            got = np.vstack(
                [predictor.predict_proba([texts[i : i + size]]) for i in range(0, len(texts), size)]
            )
            np.testing.assert_array_equal(got, expected)


def test_a_model_whose_vectorizers_and_coefficients_differ_in_dtype_uses_numpy(
    tweets: pd.DataFrame,
) -> None:
    model = _pipeline([("word", TfidfVectorizer(dtype=np.float32))], solver="lbfgs")
    model.fit(tweets[["text"]], tweets["label"])
    predictor = LinearTextPredictor.from_model(model, ["text"])
    assert predictor is not None
    if model.steps[-1][1].coef_.dtype != np.float32:
        assert predictor._kernels is None
    texts = list(tweets["text"][:300])
    np.testing.assert_array_equal(
        predictor.predict_proba([texts]), model.predict_proba(pd.DataFrame({"text": texts}))
    )


def test_key_table_finds_each_key_and_only_those() -> None:
    kernels = _kernels()
    rng = np.random.default_rng(0)
    keys = rng.choice(2**40, size=5_000, replace=False).astype(np.int64)
    values = np.arange(keys.size, dtype=np.int64)
    table = kernels.KeyTable(np.append(keys, keys[:10]), np.append(values, values[:10] + 99))
    assert len(table) == keys.size + 10
    probe = np.concatenate([keys, keys + 2**41, [-5]]).astype(np.int64)  # keys < 2**40
    found = np.frombuffer(table.find(probe), dtype=np.int64)
    np.testing.assert_array_equal(found[: keys.size], values)  # a repeated key: the first
    assert (found[keys.size :] == -1).all()
    with pytest.raises(ValueError, match=">= 0"):
        kernels.KeyTable(np.array([3, -1], np.int64), np.array([0, 1], np.int64))
    with pytest.raises(ValueError, match="differ in length"):
        kernels.KeyTable(np.array([3], np.int64), np.array([0, 1], np.int64))
    with pytest.raises(TypeError, match="8 bytes"):
        kernels.KeyTable(np.array([3], np.int32), np.array([0], np.int64))


def test_inconsistent_input_is_refused_and_leaves_the_scores_as_they_were() -> None:
    kernels = _kernels()
    scores = np.array([0.5, -0.25], dtype=np.float32)
    weights = np.ones((4, 2), dtype=np.float32)
    starts = np.array([0, 4], dtype=np.int64)
    rows, columns = np.array([0, 1, 1], np.int64), np.array([0, 3, 4], np.int64)
    with pytest.raises(ValueError, match="out of range"):
        kernels.accumulate_group(scores, 1, [(rows, columns)], starts, weights, None, False, 2)
    np.testing.assert_array_equal(scores, [0.5, -0.25])
    with pytest.raises(ValueError, match="rows and columns differ"):
        kernels.accumulate_group(scores, 1, [(rows, columns[:2])], starts, weights, None, 0, 2)
    with pytest.raises(TypeError, match="weights"):  # float64 weights for float32 scores
        kernels.accumulate_group(scores, 1, [], starts, weights.astype(np.float64), None, 0, 2)
    table = np.ones(2, dtype=np.float32)  # shorter than the 3 entries of row 1
    with pytest.raises(ValueError, match="log_table"):
        kernels.accumulate_group(
            scores, 1, [(rows * 0 + 1, np.array([0, 3, 3], np.int64))], starts, weights, table, 0, 2
        )
    np.testing.assert_array_equal(scores, [0.5, -0.25])
    with pytest.raises(ValueError, match="add up"):
        empty = kernels.KeyTable(np.zeros(0, np.int64), np.zeros(0, np.int64))
        kernels.word_entries([0, 1], [3], 4, 1, 2, np.zeros(4, np.int64), (None, None, empty))
    with pytest.raises(ValueError, match="out of range"):
        kernels.word_entries([0, 9], [2], 4, 1, 1, np.zeros(4, np.int64), (None, None))
    with pytest.raises(ValueError, match="add up"):
        kernels.packed_entries([b"\0\0\0\0"], [2])
    with pytest.raises(ValueError, match="add up"):  # a negative count cannot balance the sum
        kernels.packed_entries([b"\0\0\0\0" * 2], [-1, 3])
    with pytest.raises(ValueError, match="shapes"):
        kernels.accumulate_dense(scores, 1, np.ones(3, np.float32), 2, np.ones(4, np.float32), 0)
