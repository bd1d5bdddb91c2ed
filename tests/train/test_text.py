"""Tests for the TF-IDF + logistic-regression text classifier."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.errors import DataError
from loopline.train.text import (
    TextClassifierParams,
    build_text_classifier,
    normalize_tweet,
    train_text_classifier,
)

SENTIMENT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sentiment"
ROWS_PER_CLASS = 2000


def _sentiment140_head(n: int) -> pd.DataFrame:
    rows: list[tuple[str, str]] = []
    for label in ("positive", "negative"):
        path = SENTIMENT / "sentiment140_train_sample" / f"{label}_tweets_50k.txt.gz"
        if not path.exists():
            pytest.skip(f"shared data not found: {path}")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows += [(line.rstrip("\n"), label) for line in itertools.islice(f, n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def _vader_gold() -> pd.DataFrame:
    path = SENTIMENT / "vader" / "tweets_GroundTruth.txt"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    df = pd.read_csv(
        path, sep="\t", header=None, names=["id", "mean", "text"], quoting=csv.QUOTE_NONE
    )
    df = df[(df["mean"] > 0.05) | (df["mean"] < -0.05)]
    return pd.DataFrame(
        {"text": df["text"], "label": np.where(df["mean"] > 0.05, "positive", "negative")}
    )


@pytest.fixture(scope="module")
def train_df() -> pd.DataFrame:
    return _sentiment140_head(ROWS_PER_CLASS)


@pytest.fixture(scope="module")
def model(train_df: pd.DataFrame):
    return train_text_classifier(train_df)


def test_learns_sentiment_that_transfers_to_human_rated_tweets(model) -> None:
    # 4,000 training rows reach ~0.76 on VADER's gold tweets (the full 100k sample ~0.83).
    gold = _vader_gold()
    accuracy = (model.predict(gold[["text"]]) == gold["label"].to_numpy()).mean()
    assert accuracy >= 0.70


def test_pipeline_selects_the_text_column_with_word_and_char_tfidf(model) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression

    features, classifier = model.steps[0][1], model.steps[-1][1]
    assert isinstance(features, ColumnTransformer)
    assert [(n, c) for n, _, c in features.transformers] == [("word", "text"), ("char", "text")]
    assert features.named_transformers_["char"].analyzer == "char_wb"
    assert isinstance(classifier, LogisticRegression)
    assert list(model.classes_) == ["negative", "positive"]


def test_one_prediction_per_row_of_a_one_column_frame(model) -> None:
    # The MLflow pyfunc trap: a bare TfidfVectorizer would see the column names, not rows.
    frame = pd.DataFrame({"text": ["I love this", "I hate this", "meh"]})
    assert model.predict(frame).shape == (3,)
    assert model.predict_proba(frame).shape == (3, 2)
    assert list(model.predict(frame[:2])) == ["positive", "negative"]


def test_fitted_model_pickles_and_predicts_the_same(model) -> None:
    frame = pd.DataFrame({"text": ["what a great day @bob http://t.co/x", "worst day ever"]})
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(frame), model.predict_proba(frame))


def test_normalize_tweet_replaces_urls_mentions_and_long_repeats() -> None:
    text = "Sooooo GOOD @Bob_1 see http://t.co/abc &amp; www.x.com ï¿½ \ufffdok"
    assert normalize_tweet(text) == "soo good  @user  see  httpurl  &  httpurl  ok"


def test_without_normalization_sklearn_still_lowercases(train_df: pd.DataFrame) -> None:
    params = TextClassifierParams(normalize=False, max_features_char=5000)
    fitted = train_text_classifier(train_df.sample(400, random_state=0), params)
    vocabulary = fitted.named_steps["features"].named_transformers_["word"].vocabulary_
    assert all(token == token.lower() for token in vocabulary)


def test_params_reach_the_estimators() -> None:
    params = TextClassifierParams(
        word_ngram_range=(1, 1), char_ngram_range=(3, 4), min_df=1, C=0.5, class_weight="balanced"
    )
    pipeline = build_text_classifier(params)
    word, char = (t for _, t, _ in pipeline.steps[0][1].transformers)
    assert word.ngram_range == (1, 1) and char.ngram_range == (3, 4) and word.min_df == 1
    classifier = pipeline.steps[-1][1]
    assert classifier.C == 0.5 and classifier.class_weight == "balanced"
    assert json.loads(json.dumps(params.to_dict()))["C"] == 0.5


def test_sample_weight_changes_the_fit(train_df: pd.DataFrame) -> None:
    small = train_df.sample(600, random_state=0)
    params = TextClassifierParams(max_features_char=5000)
    weights = np.where(small["label"] == "positive", 5.0, 1.0)
    plain = train_text_classifier(small, params)
    weighted = train_text_classifier(small, params, sample_weight=weights)
    probe = pd.DataFrame({"text": ["ok i guess"]})
    assert weighted.predict_proba(probe)[0, 1] > plain.predict_proba(probe)[0, 1]


def test_labels_are_strings_even_if_given_as_numbers() -> None:
    df = pd.DataFrame({"text": ["good", "bad", "great", "awful"] * 5, "label": [1, 0, 1, 0] * 5})
    fitted = train_text_classifier(df, TextClassifierParams(min_df=1))
    assert list(fitted.classes_) == ["0", "1"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"tweet": ["a"], "label": ["x"]}), "missing ['text']"),
        (pd.DataFrame({"text": [], "label": []}), "empty"),
        (pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]}), "at least 2 distinct labels"),
        (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", None]}), "no label"),
    ],
)
def test_bad_training_frames_raise_a_data_error(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")) as exc:
        train_text_classifier(frame)
    assert exc.value.hint


def test_sample_weight_of_the_wrong_length_is_rejected() -> None:
    df = pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]})
    with pytest.raises(DataError, match="sample_weight has 3 entries"):
        train_text_classifier(df, sample_weight=np.ones(3))
