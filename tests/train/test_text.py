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
    LEXICON_FEATURES,
    LexiconScores,
    TextClassifierParams,
    build_text_classifier,
    lowercase_negated,
    mark_negation,
    normalize_tweet,
    normalize_tweet_negated,
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


def test_pipeline_selects_the_text_column_with_word_char_tfidf_and_lexicon(model) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression

    features, classifier = model.steps[0][1], model.steps[-1][1]
    assert isinstance(features, ColumnTransformer)
    assert [(n, c) for n, _, c in features.transformers] == [
        ("word", "text"),
        ("char", "text"),
        ("lexicon", "text"),
    ]
    assert features.named_transformers_["char"].analyzer == "char_wb"
    # Negation scopes are marked for word n-grams only; char n-grams see the plain text.
    assert features.named_transformers_["word"].preprocessor is normalize_tweet_negated
    assert features.named_transformers_["char"].preprocessor is normalize_tweet
    assert isinstance(features.named_transformers_["lexicon"], LexiconScores)
    names = features.get_feature_names_out()
    assert [n.removeprefix("lexicon__") for n in names[-3:]] == list(LEXICON_FEATURES)
    assert any(n.startswith("word__neg_") for n in names)
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
    word, char, _ = (t for _, t, _ in pipeline.steps[0][1].transformers)
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


def test_fitted_model_loads_and_predicts_the_same_in_another_process(model, tmp_path) -> None:
    import subprocess
    import sys

    import cloudpickle

    frame = pd.DataFrame({"text": ["not bad at all :)", "I HATE this!!!", "ok", ""]})
    (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(model))
    code = (
        "import pickle, sys, json, pandas as pd\n"
        "m = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "f = pd.DataFrame({'text': json.loads(sys.argv[2])})\n"
        "print(json.dumps(m.predict_proba(f).tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "model.pkl"), json.dumps(list(frame["text"]))],
        capture_output=True,
        text=True,
        check=True,
    )
    np.testing.assert_array_equal(np.array(json.loads(done.stdout)), model.predict_proba(frame))


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        ("i don't like this movie, but ok", "i don't neg_like neg_this neg_movie, but ok"),
        ("not good at all!", "not neg_good neg_at neg_all!"),
        ("no way. great", "no neg_way. great"),
        ("cant wait 4 it", "cant neg_wait neg_4 neg_it"),
        ("nothing", "nothing"),
        ("knot notable", "knot notable"),  # whole words only
        ("good stuff", "good stuff"),
    ],
)
def test_mark_negation_marks_words_up_to_the_next_punctuation(text: str, marked: str) -> None:
    assert mark_negation(text) == marked


@pytest.mark.parametrize(
    "cue",
    [
        "not",
        "no",
        "never",
        "cannot",
        "nothing",
        "nobody",
        "none",
        "nowhere",
        "neither",
        "nor",
        "without",
        "don't",
        "mustn't",
        "won't",
        "aint",
        "cant",
        "dont",
        "wont",
        "didnt",
        "doesnt",
        "isnt",
        "arent",
        "wasnt",
        "werent",
        "havent",
        "hasnt",
        "hadnt",
        "couldnt",
        "shouldnt",
        "wouldnt",
    ],
)
def test_every_negation_cue_opens_a_scope(cue: str) -> None:
    # mark_negation skips the regex for texts without any cue's letters: none may be missed.
    assert mark_negation(f"so {cue} good, fine") == f"so {cue} neg_good, fine"


def test_negated_preprocessors_normalize_or_lowercase_first() -> None:
    assert (
        normalize_tweet_negated("NOT good @Bob http://x.co")
        == "not neg_good  @neg_user  neg_httpurl "
    )
    assert lowercase_negated("NOT Good") == "not neg_good"


@pytest.fixture(scope="module")
def lexicon() -> LexiconScores:
    return LexiconScores().fit(["unused"])


def test_lexicon_scores_follow_vader(lexicon: LexiconScores) -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    texts = [
        "I love this, what a wonderful day!",
        "This is awful and I hate it",
        "not bad at all",
        "I don't like it",
        "The plot was good, but the characters are uncompelling",
        "VADER is VERY SMART, handsome, and FUNNY!!!",
        "it was kinda good",
        "Make sure you :) or :D today!",
        "Catch utf-8 emoji such as 💘 and 💋 and 😁",
        "&lt;3 you",
        "the book was ok?",
        "",
        "   ",
    ]
    scores = lexicon.transform(texts)
    assert scores.shape == (len(texts), 3) and scores.dtype == np.float32
    as_float64 = LexiconScores(dtype="float64").fit(None).transform(texts)
    assert as_float64.dtype == np.float64 and np.allclose(as_float64, scores, atol=1e-7)
    for text, (compound, positive, negative) in zip(texts, scores, strict=True):
        expected = vader.polarity_scores(text.replace("&lt;", "<"))
        assert compound == pytest.approx(expected["compound"], abs=5e-4), text
        assert positive == pytest.approx(expected["pos"], abs=5e-4), text
        assert negative == pytest.approx(expected["neg"], abs=5e-4), text


def test_lexicon_rules_negation_caps_but_and_emphasis(lexicon: LexiconScores) -> None:
    def compound(text: str) -> float:
        return lexicon.score(text)[0]

    assert compound("good") > 0 > compound("not good")
    assert compound("bad") < 0 < compound("not bad")
    assert compound("no good") < 0  # "no" negates the next sentiment word
    assert compound("it is GOOD today") > compound("it is good today") > 0
    assert compound("very good") > compound("good") > compound("kinda good")
    assert compound("good!!!") > compound("good")
    assert compound("bad but good") > 0 > compound("good but bad")
    assert lexicon.score("nothing to see here") == (0.0, 0.0, 0.0)


def test_lexicon_scores_are_a_well_behaved_estimator(lexicon: LexiconScores) -> None:
    import pickle

    from sklearn.base import clone

    column = pd.Series(["so happy :)", "sad"], name="text")
    assert np.array_equal(lexicon.transform(column), lexicon.transform(column.to_frame()))
    assert np.array_equal(lexicon.transform(column), lexicon.transform(column.to_numpy()))
    assert list(lexicon.get_feature_names_out()) == list(LEXICON_FEATURES)
    copy = clone(lexicon)
    assert copy.get_params() == lexicon.get_params() and not hasattr(copy, "lexicon_")
    with pytest.raises(ValueError, match="not fitted"):
        copy.transform(column)
    with pytest.raises(ValueError, match="invalid parameter"):
        copy.set_params(nope=1)
    with pytest.raises(ValueError, match="one text column"):
        lexicon.transform(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    # The lexicon travels with the model; the per-token cache and its counters do not.
    restored = pickle.loads(pickle.dumps(lexicon))
    assert "_cache" in lexicon.__dict__ and "_cache" not in restored.__dict__
    assert lexicon.cache_stats()[0] > 0 and restored.cache_stats() == (0, 0)
    assert restored.lexicon_ == lexicon.lexicon_
    assert np.array_equal(restored.transform(column), lexicon.transform(column))


def test_lexicon_cache_is_bounded() -> None:
    small = LexiconScores(max_cached_tokens=5).fit(None)
    small.transform([f"word{i} good" for i in range(50)])
    assert len(small._cache) == 5
    # 100 tokens looked up: "good" was kept and hit 49 times, each word<i> was a miss.
    assert small.cache_stats() == (100, 51)
    assert small.score("good") == LexiconScores().fit(None).score("good")


def test_negation_and_lexicon_can_be_turned_off() -> None:
    plain = build_text_classifier(TextClassifierParams(negation=False, lexicon=False))
    features = plain.steps[0][1]
    assert [n for n, _, _ in features.transformers] == ["word", "char"]
    assert features.transformers[0][1].preprocessor is normalize_tweet
    unnormalized = build_text_classifier(TextClassifierParams(normalize=False))
    word = unnormalized.steps[0][1].transformers[0][1]
    assert word.preprocessor is lowercase_negated
    assert unnormalized.steps[0][1].transformers[1][1].preprocessor is None
    params = TextClassifierParams(negation=False, lexicon=False).to_dict()
    assert params["negation"] is False and params["lexicon"] is False
