"""Agreement statistics against published worked examples, scikit-learn, and the VADER raters."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from loopline.errors import DataError
from loopline.label.agreement import (
    agreement_report,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_from_counts,
    load_vader_ratings,
    percent_agreement,
    rating_sign,
    value_counts_matrix,
)

NA = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1-5, with missing ratings. Published: nominal .743, ordinal .815,
# interval .849, ratio .797.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NA, NA, NA],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NA, 3],
    [NA, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NA],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NA],
]

# Fleiss' kappa worked example (Wikipedia, "Fleiss' kappa"): 10 subjects, 14 raters,
# 5 categories; kappa = 0.210.
FLEISS_EXAMPLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


@pytest.mark.parametrize(
    ("level", "published"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_krippendorff_alpha_matches_the_2011_worked_example(level: str, published: float) -> None:
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level), 3) == published  # type: ignore[arg-type]


def test_alpha_ignores_units_with_a_single_rating() -> None:
    # Unit 11 had one rating only in the example; more lone ratings change nothing.
    extra = [[*row, NA] for row in KRIPPENDORFF_2011]
    extra[0][-1] = 5
    assert krippendorff_alpha(extra) == pytest.approx(krippendorff_alpha(KRIPPENDORFF_2011))


def test_alpha_accepts_string_categories_and_none_as_missing() -> None:
    coded = [[None if isinstance(v, float) else f"c{v}" for v in row] for row in KRIPPENDORFF_2011]
    assert krippendorff_alpha(coded) == pytest.approx(0.743, abs=5e-4)


def test_alpha_edge_cases() -> None:
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "interval") == 1.0
    # One value throughout: no expected disagreement, so alpha is undefined.
    assert math.isnan(krippendorff_alpha([[1, 1, 1], [1, 1, 1]]))
    assert math.isnan(krippendorff_alpha([[1, NA], [NA, 2]]))
    assert math.isnan(krippendorff_alpha_from_counts(np.zeros((0, 0)), []))
    with pytest.raises(ValueError, match="level must be one of"):
        krippendorff_alpha([[1, 2], [1, 2]], "cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numeric values"):
        krippendorff_alpha([["a", "b"], ["a", "b"]], "interval")


def test_alpha_from_counts_equals_alpha_from_the_reliability_matrix() -> None:
    units, values = [], []
    for row in KRIPPENDORFF_2011:
        for unit, value in enumerate(row):
            units.append(unit)
            values.append(value)
    counts, order = value_counts_matrix(units, values)
    assert order == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert counts.sum() == 41  # 48 cells, 7 of them missing
    assert krippendorff_alpha_from_counts(counts, order, "interval") == pytest.approx(
        krippendorff_alpha(KRIPPENDORFF_2011, "interval")
    )


def test_fleiss_kappa_matches_the_worked_example() -> None:
    assert round(fleiss_kappa(FLEISS_EXAMPLE), 3) == 0.210


def test_fleiss_kappa_edge_cases() -> None:
    assert math.isnan(fleiss_kappa(np.zeros((0, 3))))
    assert math.isnan(fleiss_kappa(np.array([[3, 0], [3, 0]])))  # one category only
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == 1.0


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_scikit_learn(weights: str | None) -> None:
    rng = np.random.default_rng(7)
    first = rng.integers(0, 5, 300)
    second = np.where(rng.random(300) < 0.6, first, rng.integers(0, 5, 300))
    ours = cohen_kappa(list(first), list(second), weights)  # type: ignore[arg-type]
    assert ours == pytest.approx(cohen_kappa_score(first, second, weights=weights))


def test_cohen_kappa_with_labels_and_gaps() -> None:
    first = ["pos", "neg", "pos", None, "neu", "pos", "neg"]
    second = ["pos", "neg", "neg", "pos", "neu", "pos", None]
    pairs = [(a, b) for a, b in zip(first, second, strict=True) if a and b]
    expected = cohen_kappa_score([a for a, _ in pairs], [b for _, b in pairs])
    assert cohen_kappa(first, second) == pytest.approx(expected)
    with pytest.raises(ValueError, match="one rating per item"):
        cohen_kappa(["a"], ["a", "b"])
    assert math.isnan(cohen_kappa([None], ["a"]))


def test_percent_agreement_counts_agreeing_pairs() -> None:
    # Item 1: 3 raters all agree (3/3 pairs); item 2: 2 of 3 agree (1/3 pairs); item 3: 1 rating.
    counts = np.array([[3, 0], [2, 1], [1, 0]])
    assert percent_agreement(counts) == pytest.approx((1 + 1 / 3) / 2)
    assert math.isnan(percent_agreement(np.zeros((0, 0))))


def test_agreement_report_of_two_annotators() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "item_id": ["a", "a", "b", "b", "c", "c", "d"],
            "annotator": ["x", "y", "x", "y", "x", "y", "x"],
            "label": ["pos", "pos", "neg", "pos", "neg", "neg", "pos"],
        }
    )
    report = agreement_report(frame)
    assert report["items"] == 4 and report["ratings"] == 7 and report["annotators"] == 2
    assert report["items_multi_rated"] == 3
    assert report["percent_agreement"] == pytest.approx(2 / 3)
    assert report["cohen_kappa"] == pytest.approx(
        cohen_kappa_score(["pos", "neg", "neg"], ["pos", "pos", "neg"])
    )
    with pytest.raises(DataError, match="'rating' column"):
        agreement_report(frame, value="rating")


def test_rating_sign() -> None:
    assert [rating_sign(v) for v in (-3, 0, 0.5)] == ["negative", "neutral", "positive"]


def test_vader_rater_agreement(shared_data: Path) -> None:
    ratings = load_vader_ratings(shared_data / "sentiment" / "vader" / "tweets_anonDataRatings.txt")
    assert len(ratings) == 159_750
    assert ratings["item_id"].nunique() == 4200
    assert ratings["rating"].between(-4, 4).all()
    per_item = ratings.groupby("item_id").size()
    assert per_item.min() == 20 and per_item.max() == 99

    report = agreement_report(ratings, value="rating", levels=("nominal", "interval"))
    signs = ratings.assign(sign=ratings["rating"].map(rating_sign))
    sign_report = agreement_report(signs, value="sign")
    # Cross-checked against the `krippendorff` package (0.9.0) on the same data.
    assert report["alpha_interval"] == pytest.approx(0.78349, abs=1e-5)
    assert report["alpha_nominal"] == pytest.approx(0.27132, abs=1e-5)
    assert sign_report["alpha_nominal"] == pytest.approx(0.62648, abs=1e-5)
    assert sign_report["percent_agreement"] == pytest.approx(0.74290, abs=1e-5)
    assert sign_report["fleiss_kappa"] == pytest.approx(0.58996, abs=1e-5)


def test_vader_loader_reports_the_bad_line(tmp_path: Path) -> None:
    good = "1\t0.5\t1.0\t[1, 0, 1]\r\n"
    path = tmp_path / "ratings.txt"
    path.write_text(good + "2\t0.1\t1.0\t[1, 9]\r\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ratings.txt:2: expected a list of integer ratings"):
        load_vader_ratings(path)
    path.write_text(good + "3\t0.1\t[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r":2: expected 4 tab-separated fields"):
        load_vader_ratings(path)
    path.write_text("4\t0\t0\t[1, 2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r":1: the ratings field is not a list literal"):
        load_vader_ratings(path)
    with pytest.raises(DataError, match="not found"):
        load_vader_ratings(tmp_path / "missing.txt")


def _old_cohen_kappa(rater_a: list[Any], rater_b: list[Any], weights: str | None) -> float:
    """The hand-written kappa Loopline used before scikit-learn: the oracle for equality."""

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and np.isnan(v))

    def key(v: Any) -> tuple[int, Any]:
        return (0, v) if isinstance(v, int | float) else (1, str(v))

    pairs = [
        (a, b) for a, b in zip(rater_a, rater_b, strict=True) if not (missing(a) or missing(b))
    ]
    if not pairs:
        return float("nan")
    categories = sorted({v for pair in pairs for v in pair}, key=key)
    index = {value: i for i, value in enumerate(categories)}
    size = len(categories)
    confusion = np.zeros((size, size))
    for a, b in pairs:
        confusion[index[a], index[b]] += 1
    if weights is None:
        weight = 1.0 - np.eye(size)
    else:
        grid = np.abs(np.subtract.outer(np.arange(size), np.arange(size))).astype(float)
        weight = grid if weights == "linear" else grid**2
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / confusion.sum()
    disagreement_expected = float((weight * expected).sum())
    if disagreement_expected == 0:
        return float("nan")
    return 1.0 - float((weight * confusion).sum()) / disagreement_expected


def _random_ratings(rng: np.random.Generator, kind: str) -> tuple[list[Any], list[Any]]:
    n = int(rng.integers(1, 80))
    pools: dict[str, list[Any]] = {
        "ints": [-2, -1, 0, 1, 2, 3, 10, 11],
        "strings": ["neg", "neu", "pos", "spam"],
        "mixed": [0, 1, 2.5, "a", "b", "10"],
    }
    pool = pools[kind][: int(rng.integers(2, len(pools[kind]) + 1))]
    first = [pool[i] for i in rng.integers(0, len(pool), n)]
    second = [a if rng.random() < 0.5 else pool[int(rng.integers(0, len(pool)))] for a in first]
    for ratings in (first, second):  # gaps: None and NaN
        for i in np.flatnonzero(rng.random(n) < 0.1):
            ratings[i] = None if rng.random() < 0.5 else float("nan")
    return first, second


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("kind", ["ints", "strings", "mixed"])
def test_cohen_kappa_equals_the_former_formula(weights: str | None, kind: str) -> None:
    rng = np.random.default_rng([("ints", "strings", "mixed").index(kind), len(weights or "")])
    for _ in range(40):
        first, second = _random_ratings(rng, kind)
        expected = _old_cohen_kappa(first, second, weights)
        got = cohen_kappa(first, second, weights)  # type: ignore[arg-type]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_undefined_and_extreme_cases_equal_the_former_formula(
    weights: str | None,
) -> None:
    cases: list[tuple[list[Any], list[Any]]] = [
        ([], []),  # no items
        ([None, "a"], ["b", None]),  # no complete pair
        (["a", "a", "a"], ["a", "a", "a"]),  # one category: chance agreement is 1
        ([3, 3, None], [3, 3, 1]),  # one category once the gap is dropped
        (["a", "a"], ["b", "b"]),  # disjoint labels
        ([1, 2, 3, 1], [1, 2, 3, 1]),  # perfect agreement
        ([1, 2, 1, 2], [2, 1, 2, 1]),  # perfect disagreement
        ([1, "x", 2.0, "x"], [1.0, "x", 2, 1]),  # 1 == 1.0 is one label, as before
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's undefined-metric warnings never show
        for first, second in cases:
            got = cohen_kappa(first, second, weights)  # type: ignore[arg-type]
            expected = _old_cohen_kappa(first, second, weights)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"], weights))  # type: ignore[arg-type]
    assert cohen_kappa([1, 2, 3, 1], [1, 2, 3, 1], weights) == 1.0  # type: ignore[arg-type]
