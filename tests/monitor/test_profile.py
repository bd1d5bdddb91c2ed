"""Reference profiles: sketches are exact where they claim to be, small, and JSON round-trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loopline.errors import DataError
from loopline.monitor.profile import (
    CategoricalSketch,
    NumericSketch,
    Profile,
    TextSketch,
    build_profile,
    category_keys,
    guess_kind,
    numeric_sketch,
    token_counts,
    tokenize,
)


def _frame(n: int = 5000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 0.5, n),
            "hour": rng.integers(0, 24, n),
            "flag": rng.random(n) < 0.2,
            "country": rng.choice(["fr", "de", "es"], n, p=[0.5, 0.3, 0.2]),
            "comment": [f"great product {i % 50} would buy again, order {i}" for i in range(n)],
            "when": pd.date_range("2024-01-01", periods=n, freq="min"),
            "tx_id": np.arange(n),
        }
    )


def test_kinds_are_guessed_and_unprofilable_columns_skipped_with_a_reason() -> None:
    profile = build_profile(_frame())
    kinds = {name: col.kind for name, col in profile.columns.items()}
    assert kinds == {
        "amount": "numeric",
        "hour": "numeric",
        "flag": "categorical",
        "country": "categorical",
        "comment": "text",
    }
    assert "timestamp" in profile.skipped["when"]
    assert "identifier" in profile.skipped["tx_id"]
    assert guess_kind(pd.Series(["a1", "b2"] * 10)) == "categorical"


def test_stated_kinds_profile_exactly_the_listed_columns() -> None:
    profile = build_profile(_frame(), numeric=["hour"], categorical=["country"])
    assert list(profile.columns) == ["hour", "country"]
    assert profile.skipped == {}


def test_numeric_sketch_counts_are_exact_at_every_edge() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=20_000)
    sketch = numeric_sketch(x)
    assert sketch is not None and not sketch.discrete
    edges = np.array(sketch.edges)
    assert np.all(np.diff(edges) > 0)
    expected = (x[None, :] <= edges[:, None]).sum(axis=1)
    assert sketch.cum_counts == expected.tolist()
    assert sketch.n == x.size and sketch.min == x.min() and sketch.max == x.max()
    assert sketch.p50 == pytest.approx(np.median(x), abs=0.02)
    assert sketch.scale == pytest.approx(1.0, rel=0.05)  # IQR/1.349 of a standard normal


def test_few_distinct_values_are_kept_exactly_and_marked_discrete() -> None:
    x = np.random.default_rng(2).poisson(2.0, 10_000).astype(float)
    sketch = numeric_sketch(x)
    assert sketch is not None and sketch.discrete
    assert sketch.edges == sorted(set(x.tolist()))
    assert numeric_sketch(np.array([np.nan, np.inf])) is None


def test_categorical_sketch_keeps_top_k_and_lumps_the_rest() -> None:
    values = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5 + [None] * 10)
    profile = build_profile(pd.DataFrame({"c": values}), categorical=["c"], top_k=2)
    col = profile.columns["c"]
    assert isinstance(col.sketch, CategoricalSketch)
    assert col.sketch.counts == {"a": 50, "b": 30}
    assert col.sketch.other == 20 and col.sketch.n_unique == 4 and not col.sketch.complete
    assert col.n_missing == 10 and col.missing_rate == pytest.approx(10 / 110)


def test_category_keys_unify_ints_floats_and_strings() -> None:
    assert list(category_keys(pd.Index([1.0, 2.5, np.nan]))) == ["1", "2.5", "nan"]
    assert list(category_keys(pd.Index([1, 2]))) == ["1", "2"]
    assert list(category_keys(pd.Index([True, False]))) == ["True", "False"]


def test_tokenizer_is_the_same_for_one_text_and_a_column() -> None:
    texts = pd.Series(["I LOVE it!! http://x.co/a @bob", "don't stop", "  "])
    assert tokenize(texts[0]) == ["i", "love", "it", "_url_", "_user_"]
    expected: dict[str, int] = {}
    for text in texts:
        for token in tokenize(text):
            expected[token] = expected.get(token, 0) + 1
    assert token_counts(texts).to_dict() == expected


def test_text_sketch_has_vocabulary_lengths_and_dispersion() -> None:
    docs = pd.Series([f"word{i % 7} common text {i}" for i in range(400)])
    profile = build_profile(pd.DataFrame({"t": docs}), text=["t"], top_tokens=5)
    sketch = profile.columns["t"].sketch
    assert isinstance(sketch, TextSketch)
    assert list(sketch.tokens)[:2] == ["common", "text"] and len(sketch.tokens) == 5
    assert sketch.n_tokens == 4 * 400
    assert sketch.vocabulary_size == 2 + 7 + 400  # common, text, word0..6, "0".."399"
    assert sketch.n_docs == 400 and sketch.dispersion >= 1.0
    assert sketch.length.min == len("word0 common text 0")


def test_profile_round_trips_through_json_and_stays_small() -> None:
    df = _frame(50_000)
    df["pred"] = df["country"].where(df["flag"], "fr")
    df["proba"] = np.random.default_rng(3).random(len(df))
    profile = build_profile(df, prediction="pred", probabilities="proba", labels="country")
    text = json.dumps(profile.to_dict(), allow_nan=False)
    assert len(text) < 40_000  # KBs, not the 50,000 rows
    again = Profile.from_dict(json.loads(text))
    assert again.to_dict() == profile.to_dict()
    roles = {name: col.role for name, col in again.columns.items()}
    assert roles["pred"] == "prediction" and roles["proba"] == "probability"
    assert roles["country"] == "label" and "country" not in again.features
    assert isinstance(again.columns["amount"].sketch, NumericSketch)


def test_performance_overall_and_by_slice() -> None:
    df = pd.DataFrame(
        {
            "y": [1, 1, 0, 0, 1, 0, 0, 0],
            "p": [1, 0, 0, 1, 1, 0, 0, 0],
            "segment": ["a", "a", "a", "a", "b", "b", "b", "b"],
        }
    )
    profile = build_profile(
        df, categorical=["segment"], prediction="p", labels="y", slices=["segment"]
    )
    assert profile.performance is not None
    overall = profile.performance["overall"]
    assert overall["n"] == 8 and overall["accuracy"] == pytest.approx(6 / 8)
    assert overall["positive_label"] == 1
    assert overall["precision"] == pytest.approx(2 / 3)
    assert overall["recall"] == pytest.approx(2 / 3)
    by_segment = profile.performance["slices"]["segment"]
    assert by_segment["a"]["accuracy"] == 0.5 and by_segment["b"]["accuracy"] == 1.0
    json.dumps(profile.performance, allow_nan=False)


def test_all_missing_reference_column_has_no_sketch() -> None:
    df = pd.DataFrame({"x": [np.nan] * 10, "y": range(10)})
    profile = build_profile(df, numeric=["x", "y"])
    assert profile.columns["x"].sketch is None and profile.columns["x"].missing_rate == 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_profile(pd.DataFrame()), "empty"),
        (lambda: build_profile(pd.DataFrame({"a": [1]}), numeric=["b"]), "not in the data"),
        (lambda: build_profile([1, 2]), "DataFrame"),  # type: ignore[arg-type]
        (lambda: Profile.from_dict({"format": "loopline.profile", "version": 99}), "version"),
        (lambda: Profile.from_dict({"something": "else"}), "not a Loopline"),
    ],
)
def test_bad_input_gets_a_data_error_with_a_hint(call: object, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        call()  # type: ignore[operator]
    assert info.value.hint
