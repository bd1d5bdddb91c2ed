"""The lean serving path on the sentiment reference model: same probabilities as the pipeline.

The default text model stacks word TF-IDF (negation scopes marked), char TF-IDF and VADER
lexicon scores before a logistic regression. The lean path must recognise that shape and
give the scikit-learn pipeline's probabilities bit for bit on real tweets.
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDClassifier

from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve.inference import (
    PROBE_TEXTS,
    FramePredictor,
    LinearTextPredictor,
    TextPipelinePredictor,
    build_predictor,
)
from loopline.train.text import LexiconScores, TextClassifierParams

SENTIMENT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sentiment"
TRAIN_ROWS_PER_CLASS = 3_000
SCORED_ROWS_PER_CLASS = 5_500  # + VADER's 4,200 tweets: ~15,000 real tweets scored


def _tweets(label: str, start: int, stop: int) -> list[str]:
    path = SENTIMENT / "sentiment140_train_sample" / f"{label}_tweets_50k.txt.gz"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in itertools.islice(f, start, stop)]


def _vader_texts() -> list[str]:
    path = SENTIMENT / "vader" / "tweets_GroundTruth.txt"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 2)[2] for line in lines if line.count("\t") >= 2]


def _loaded(model: Any) -> LoadedModel:
    info = ModelVersionInfo("sentiment", "1", None, ["champion"], {}, None, None, {})
    return LoadedModel(info, model, ["text"], [str(c) for c in model.classes_])


@pytest.fixture(scope="module")
def train_frame() -> pd.DataFrame:
    n = TRAIN_ROWS_PER_CLASS
    rows = [(t, "positive") for t in _tweets("positive", 0, n)]
    rows += [(t, "negative") for t in _tweets("negative", 0, n)]
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="module")
def scored_texts() -> list[str]:
    start, stop = TRAIN_ROWS_PER_CLASS, TRAIN_ROWS_PER_CLASS + SCORED_ROWS_PER_CLASS
    texts = _tweets("positive", start, stop) + _tweets("negative", start, stop) + _vader_texts()
    return [*texts, *PROBE_TEXTS, "", "   ", "NOT GOOD!!! :(", "no no no", "&lt;3 &amp; ♥ 😀😀"]


@pytest.fixture(scope="module")
def model(train_frame: pd.DataFrame) -> Any:
    return TextClassifierParams().build().fit(train_frame[["text"]], train_frame["label"])


def _in_batches(predictor: Any, texts: list[str], size: int) -> np.ndarray:
    return np.vstack(
        [predictor.predict_proba([texts[i : i + size]]) for i in range(0, len(texts), size)]
    )


def test_the_default_model_is_served_by_the_linear_lean_path(model: Any) -> None:
    names = [name for name, _, _ in model.steps[0][1].transformers_]
    assert names == ["word", "char", "lexicon"]
    predictor = build_predictor(_loaded(model))
    assert isinstance(predictor, LinearTextPredictor)
    assert predictor.kind == "linear-text"


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_lean_path_equals_the_pipeline_bit_for_bit_on_real_tweets(
    model: Any, scored_texts: list[str], compiled: bool
) -> None:
    assert len(scored_texts) >= 10_000
    expected = model.predict_proba(pd.DataFrame({"text": scored_texts}))
    predictor = build_predictor(_loaded(model))
    assert isinstance(predictor, LinearTextPredictor)
    if not compiled:  # the path of an installation without the C extension
        predictor = LinearTextPredictor.from_model(model, ["text"], compiled=False)
        assert predictor is not None
    # Batch sizes the server uses (1 and 16) and a large one; caches warm up in between.
    for size in (1_000, 16):
        np.testing.assert_array_equal(_in_batches(predictor, scored_texts, size), expected)
    singles = scored_texts[:300] + scored_texts[-300:]
    np.testing.assert_array_equal(
        _in_batches(predictor, singles, 1),
        model.predict_proba(pd.DataFrame({"text": singles})),
    )


def test_the_generic_text_path_also_accepts_the_lexicon_scorer(
    train_frame: pd.DataFrame, scored_texts: list[str]
) -> None:
    # Another classifier: not the linear path, but still no DataFrame per batch.
    model = TextClassifierParams().build()
    model.steps[-1] = ("classifier", SGDClassifier(loss="log_loss", random_state=0))
    model.fit(train_frame[["text"]], train_frame["label"])
    predictor = build_predictor(_loaded(model))
    assert isinstance(predictor, TextPipelinePredictor)
    texts = scored_texts[:2_000]
    np.testing.assert_allclose(
        predictor.predict_proba([texts]),
        model.predict_proba(pd.DataFrame({"text": texts})),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "params",
    [
        TextClassifierParams(negation=False, lexicon=False),  # the previous default
        TextClassifierParams(lexicon=False),
        TextClassifierParams(negation=False, normalize=False),
    ],
    ids=["previous-default", "negation-only", "lexicon-without-normalization"],
)
def test_other_shapes_of_the_text_model_stay_lean_and_exact(
    params: TextClassifierParams, train_frame: pd.DataFrame, scored_texts: list[str]
) -> None:
    small = train_frame.sample(2_000, random_state=0)
    model = params.build().fit(small[["text"]], small["label"])
    predictor = build_predictor(_loaded(model))
    assert predictor.kind == "linear-text"
    texts = scored_texts[::5]
    np.testing.assert_array_equal(
        _in_batches(predictor, texts, 64), model.predict_proba(pd.DataFrame({"text": texts}))
    )


def test_a_scorer_whose_score_texts_disagrees_with_transform_is_not_served_linear(
    train_frame: pd.DataFrame,
) -> None:
    class Drifting(LexiconScores):
        """score_texts differs from what the model was trained and checked with."""

        def score_texts(self, texts: Any) -> np.ndarray:
            return super().score_texts(texts) + 0.5

        def transform(self, X: Any) -> np.ndarray:
            return super().score_texts(X)

    small = train_frame.sample(1_000, random_state=0)
    model = TextClassifierParams().build()
    features = model.steps[0][1]
    features.transformers = [
        (name, Drifting() if name == "lexicon" else t, c) for name, t, c in features.transformers
    ]
    model.fit(small[["text"]], small["label"])
    predictor = build_predictor(_loaded(model))
    # The self-check catches it; the generic path calls transform, as the pipeline does.
    assert isinstance(predictor, TextPipelinePredictor)
    texts = list(train_frame["text"].tail(200))
    np.testing.assert_allclose(
        predictor.predict_proba([texts]),
        FramePredictor(_loaded(model)).predict_proba([texts]),
        rtol=0,
        atol=1e-12,
    )
