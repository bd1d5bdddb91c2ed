"""Tests for evaluate_classifier and evaluate_model: exact numbers, JSON shape, slices, errors.

The evaluate_model tests train real scikit-learn models on the shared data sets and compare
every number with a direct scikit-learn (or independent) computation.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    median_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
    top_k_accuracy_score,
)

from loopline.errors import DataError
from loopline.evaluate.gate import metric_value
from loopline.evaluate.metrics import (
    evaluate_classifier,
    evaluate_model,
    greater_is_better,
    register_metric,
)


class KeywordModel:
    """Scores P(positive) from keywords; exposes predict_proba/classes_ like sklearn."""

    classes_ = np.array(["negative", "positive"])

    def __init__(self, column: str = "text") -> None:
        self.column = column
        self.seen_columns: list[str] = []

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen_columns = list(frame.columns)
        texts = frame[self.column].str.lower()
        p = np.where(texts.str.contains("good"), 0.9, np.where(texts.str.contains("bad"), 0.1, 0.6))
        return np.column_stack([1 - p, p])


class ThreeClassModel:
    """A LoadedModel-like object: ``classes`` and ``input_columns`` instead of ``classes_``."""

    classes: ClassVar[list[str]] = ["neg", "neu", "pos"]
    input_columns: ClassVar[list[str]] = ["body"]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        assert list(frame.columns) == ["body"]
        return np.array([self._row(text) for text in frame["body"]])

    @staticmethod
    def _row(text: str) -> list[float]:
        if "bad" in text:
            return [0.7, 0.2, 0.1]
        if "good" in text:
            return [0.1, 0.2, 0.7]
        return [0.2, 0.6, 0.2]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [
                "good",  # short, positive -> positive
                "bad",  # short, negative -> negative
                "this is fine " * 4,  # 52 chars (medium), positive -> positive (0.6)
                "bad movie by @someone " * 5,  # 110 chars (long), positive -> negative (wrong)
                "good stuff http://example.com #win",  # short, negative -> positive (wrong)
                "nothing special here, really nothing at all, just words",  # medium, negative
            ],
            "label": ["positive", "negative", "positive", "positive", "negative", "negative"],
        }
    )


def test_headline_metrics_match_sklearn(frame: pd.DataFrame) -> None:
    result = evaluate_classifier(KeywordModel(), frame)
    y_true = frame["label"].to_numpy()
    y_pred = np.array(["positive", "negative", "positive", "negative", "positive", "positive"])
    proba = KeywordModel().predict_proba(frame)[:, 1]
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(3 / 6)
    assert result["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y_true == "positive", proba))


def test_confusion_matrix_and_per_class(frame: pd.DataFrame) -> None:
    result = evaluate_classifier(KeywordModel(), frame)
    assert result["confusion_matrix"] == {
        "labels": ["negative", "positive"],
        "matrix": [[1, 2], [1, 2]],  # rows: true label, columns: predicted label
    }
    assert result["per_class"]["positive"] == {
        "precision": pytest.approx(2 / 4),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3)),
        "support": 3,
    }
    assert result["per_class"]["negative"]["support"] == 3


def test_slices_cover_length_and_twitter_markers(frame: pd.DataFrame) -> None:
    slices = evaluate_classifier(KeywordModel(), frame)["slices"]
    assert {name: s["n"] for name, s in slices.items()} == {
        "short": 3,
        "medium": 2,
        "long": 1,
        "has_url": 1,
        "has_mention": 1,
        "has_hashtag": 1,
    }
    assert slices["short"]["accuracy"] == pytest.approx(2 / 3)
    assert slices["long"]["accuracy"] == 0.0
    assert slices["has_url"] == {"n": 1, "accuracy": 0.0, "macro_f1": 0.0}


def test_length_boundaries_and_empty_slices_are_left_out() -> None:
    frame = pd.DataFrame(
        {"text": ["g" * 39, "g" * 40, "g" * 100, "g" * 101], "label": ["positive"] * 4}
    )
    slices = evaluate_classifier(KeywordModel(), frame)["slices"]
    assert {name: s["n"] for name, s in slices.items()} == {"short": 1, "medium": 2, "long": 1}


def test_result_is_json_serialisable(frame: pd.DataFrame) -> None:
    result = evaluate_classifier(KeywordModel(), frame)
    assert json.loads(json.dumps(result)) == result


def test_roc_auc_is_none_with_one_class_present(frame: pd.DataFrame) -> None:
    positives = frame[frame["label"] == "positive"]
    result = evaluate_classifier(KeywordModel(), positives)
    assert result["roc_auc"] is None
    assert result["n"] == 3


def test_multiclass_uses_ovr_macro_auc_and_model_input_columns() -> None:
    frame = pd.DataFrame(
        {
            "tweet": ["good", "bad", "meh", "good bad", "so bad", "fine"],
            "y": ["pos", "neg", "neu", "neg", "neu", "pos"],
        }
    )
    model = ThreeClassModel()
    result = evaluate_classifier(model, frame, text_column="tweet", label_column="y")
    proba = model.predict_proba(frame[["tweet"]].rename(columns={"tweet": "body"}))
    expected = roc_auc_score(frame["y"], proba, multi_class="ovr", labels=model.classes)
    assert result["roc_auc"] == pytest.approx(expected)
    assert result["confusion_matrix"]["labels"] == ["neg", "neu", "pos"]


def test_text_column_is_renamed_to_what_the_model_expects() -> None:
    model = KeywordModel()
    frame = pd.DataFrame({"tweet": ["good", "bad"], "label": ["positive", "negative"]})
    result = evaluate_classifier(model, frame, text_column="tweet")
    assert model.seen_columns == ["text"]
    assert result["accuracy"] == 1.0


def test_labels_unknown_to_the_model_count_as_errors() -> None:
    frame = pd.DataFrame({"text": ["good", "bad"], "label": ["positive", "mixed"]})
    result = evaluate_classifier(KeywordModel(), frame)
    assert result["accuracy"] == 0.5
    assert result["confusion_matrix"]["labels"] == ["mixed", "negative", "positive"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"text": ["a"]}), "missing \\['label'\\]"),
        (pd.DataFrame({"text": [], "label": []}), "empty"),
        (pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}), "1 of 2 evaluation rows"),
    ],
)
def test_bad_frames_raise_data_error(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DataError, match=message):
        evaluate_classifier(KeywordModel(), frame)


def test_model_without_predict_proba_is_rejected() -> None:
    class NoProba:
        classes_: ClassVar[list[str]] = ["a", "b"]

    with pytest.raises(DataError, match="no predict_proba"):
        evaluate_classifier(NoProba(), pd.DataFrame({"text": ["x"], "label": ["a"]}))


# --- evaluate_classifier pin: today's implementation, kept verbatim as an oracle -----------------

_LEGACY_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_LEGACY_MENTION_RE = re.compile(r"(?<!\w)@\w+")
_LEGACY_HASHTAG_RE = re.compile(r"(?<!\w)#\w+")
_LEGACY_SLICES: dict[str, Callable[[str], bool]] = {
    "short": lambda t: len(t) < 40,
    "medium": lambda t: 40 <= len(t) <= 100,
    "long": lambda t: len(t) > 100,
    "has_url": lambda t: bool(_LEGACY_URL_RE.search(t)),
    "has_mention": lambda t: bool(_LEGACY_MENTION_RE.search(t)),
    "has_hashtag": lambda t: bool(_LEGACY_HASHTAG_RE.search(t)),
}


def _legacy_evaluate_classifier(
    model: Any, df: pd.DataFrame, text_column: str = "text", label_column: str = "label"
) -> dict[str, Any]:
    """evaluate_classifier as it was before evaluate_model existed (the pinned behaviour)."""
    texts = df[text_column].astype(str).tolist()
    y_true = df[label_column].astype(str).to_numpy()
    input_columns = getattr(model, "input_columns", None) or ["text"]
    frame = df[[text_column]].astype(str).rename(columns={text_column: input_columns[0]})
    proba = np.asarray(model.predict_proba(frame), dtype=float)
    raw_classes = getattr(model, "classes", None)
    if raw_classes is None:
        raw_classes = model.classes_
    classes = np.asarray([str(c) for c in raw_classes], dtype=object)
    y_pred = classes[proba.argmax(axis=1)]
    slices: dict[str, Any] = {}
    for name, predicate in _LEGACY_SLICES.items():
        mask = np.fromiter((predicate(t) for t in texts), dtype=bool, count=len(texts))
        if int(mask.sum()):
            slices[name] = {"n": int(mask.sum()), **_legacy_scores(y_true[mask], y_pred[mask])}
    return {
        "n": len(y_true),
        **_legacy_scores(y_true, y_pred),
        "roc_auc": _legacy_roc_auc(y_true, proba, classes),
        "confusion_matrix": _legacy_confusion(y_true, y_pred, classes),
        "per_class": _legacy_per_class(y_true, y_pred, classes),
        "slices": slices,
    }


def _legacy_labels(y_true: np.ndarray, y_pred: np.ndarray, classes: Any = ()) -> list[str]:
    return sorted(set(y_true.tolist()) | set(y_pred.tolist()) | {str(c) for c in classes})


def _legacy_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    labels = _legacy_labels(y_true, y_pred)
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
    }


def _legacy_roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float | None:
    if len(set(y_true.tolist())) < 2:
        return None
    columns: Sequence[int] = [1] if len(classes) == 2 else range(len(classes))
    aucs = []
    for i in columns:
        is_class = y_true == classes[i]
        if is_class.any() and not is_class.all():
            aucs.append(float(roc_auc_score(is_class, proba[:, i])))
    return sum(aucs) / len(aucs) if aucs else None


def _legacy_confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Any) -> dict[str, Any]:
    labels = _legacy_labels(y_true, y_pred, classes)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {"labels": labels, "matrix": matrix.astype(int).tolist()}


def _legacy_per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: Any) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = _legacy_labels(y_true, y_pred, classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def _read_tweets(path: Path, label: str, n: int) -> pd.DataFrame:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [next(f).rstrip("\\n") for _ in range(n)]
    return pd.DataFrame({"text": lines, "label": label})


def test_evaluate_classifier_output_is_pinned_on_a_real_sentiment_model(
    shared_data: Path,
) -> None:
    from loopline.train.text import train_text_classifier

    folder = shared_data / "sentiment" / "sentiment140_train_sample"
    tweets = pd.concat(
        [
            _read_tweets(folder / "positive_tweets_50k.txt.gz", "positive", 2000),
            _read_tweets(folder / "negative_tweets_50k.txt.gz", "negative", 2000),
        ],
        ignore_index=True,
    ).sample(frac=1.0, random_state=0)
    model = train_text_classifier(tweets.iloc[:3000])
    test = tweets.iloc[3000:].rename(columns={"text": "tweet", "label": "polarity"})

    result = evaluate_classifier(model, test, text_column="tweet", label_column="polarity")
    expected = _legacy_evaluate_classifier(model, test, "tweet", "polarity")
    # Same keys in the same order, same float bits: the serialised forms are equal.
    assert json.dumps(result) == json.dumps(expected)
    assert set(result["slices"]) == set(_LEGACY_SLICES)


@pytest.mark.parametrize("labels", ["default", "one_class", "unknown_label"])
def test_evaluate_classifier_output_is_pinned_on_fake_models(
    frame: pd.DataFrame, labels: str
) -> None:
    if labels == "one_class":
        frame = frame[frame["label"] == "positive"]
    elif labels == "unknown_label":
        frame = frame.assign(label=["positive", "mixed", "negative", "mixed", "x", "negative"])
    assert json.dumps(evaluate_classifier(KeywordModel(), frame)) == json.dumps(
        _legacy_evaluate_classifier(KeywordModel(), frame)
    )
    three = frame.rename(columns={"label": "y"}).assign(
        y=["pos", "neg", "neu", "neg", "neu", "pos"][: len(frame)]
    )
    assert json.dumps(evaluate_classifier(ThreeClassModel(), three, label_column="y")) == (
        json.dumps(_legacy_evaluate_classifier(ThreeClassModel(), three, label_column="y"))
    )


# --- evaluate_model: binary, imbalanced (fraud handbook) ----------------------------------------

FRAUD_FEATURES = ["TX_AMOUNT", "TX_HOUR", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]


@functools.cache
def _fraud_month(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, parse_dates=["TX_DATETIME"])
    hour = df["TX_DATETIME"].dt.hour
    return df.assign(
        TX_HOUR=hour,
        TX_DURING_WEEKEND=(df["TX_DATETIME"].dt.day_of_week >= 5).astype(int),
        TX_DURING_NIGHT=(hour <= 6).astype(int),
    )


@functools.cache
def _fraud_model(path: Path) -> tuple[Any, pd.DataFrame]:
    """A gradient-boosting model on the first 3 weeks of April 2018, and the last week."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    df = _fraud_month(path)
    train = df[df["TX_TIME_DAYS"] < 21]
    test = df[df["TX_TIME_DAYS"] >= 23].reset_index(drop=True)
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0)
    model.fit(train[FRAUD_FEATURES], train["TX_FRAUD"])
    return model, test


@pytest.fixture
def fraud(shared_data: Path) -> tuple[Any, pd.DataFrame]:
    path = shared_data / "fraud" / "fraud_handbook_simulated" / "transactions_2018-04.csv.gz"
    return _fraud_model(path)


def _precision_recall_at_k(y: np.ndarray, score: np.ndarray, k: int) -> tuple[float, float]:
    """Independent top-k: pandas' nlargest keeps the first rows among equal scores."""
    top = pd.Series(score).nlargest(k, keep="first").index.to_numpy()
    hits = int(y[top].sum())
    return hits / k, hits / int(y.sum())


def test_binary_metrics_equal_sklearn_on_imbalanced_fraud(
    fraud: tuple[Any, pd.DataFrame],
) -> None:
    model, test = fraud
    result = evaluate_model(model, test, target="TX_FRAUD", k=[100, 1000])
    x, y = test[FRAUD_FEATURES], test["TX_FRAUD"].to_numpy()
    proba = model.predict_proba(x)
    y_pred = model.predict(x)

    assert list(result) == [
        "n",
        "accuracy",
        "macro_f1",
        "roc_auc",
        "average_precision",
        "log_loss",
        "brier",
        "confusion_matrix",
        "per_class",
        "precision_at_k",
        "recall_at_k",
    ]
    assert result["n"] == len(test) == 67315
    assert result["accuracy"] == accuracy_score(y, y_pred)
    assert result["macro_f1"] == pytest.approx(f1_score(y, y_pred, average="macro"), abs=1e-15)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, proba[:, 1]), abs=1e-15)
    assert result["average_precision"] == pytest.approx(
        average_precision_score(y, proba[:, 1]), abs=1e-15
    )
    assert result["log_loss"] == pytest.approx(log_loss(y, proba), abs=1e-15)
    assert result["brier"] == pytest.approx(brier_score_loss(y, proba[:, 1]), abs=1e-15)
    assert result["confusion_matrix"] == {
        "labels": ["0", "1"],
        "matrix": confusion_matrix(y, y_pred).tolist(),
    }
    assert result["per_class"]["1"]["support"] == int(y.sum())
    for k in (100, 1000):
        precision, recall = _precision_recall_at_k(y, proba[:, 1], k)
        assert result["precision_at_k"][str(k)] == precision
        assert result["recall_at_k"][str(k)] == recall
    # The fraud model is far better than the 0.9 % base rate at the top of its ranking.
    assert result["precision_at_k"]["100"] > 0.2
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_at_k_metrics_are_readable_by_the_gate_with_a_direction(
    fraud: tuple[Any, pd.DataFrame],
) -> None:
    model, test = fraud
    result = evaluate_model(model, test, target="TX_FRAUD", metrics=["roc_auc"], k=100)
    assert set(result) == {"roc_auc", "precision_at_k", "recall_at_k"}
    assert metric_value(result, "precision_at_k.100") == result["precision_at_k"]["100"]
    assert greater_is_better("precision_at_k.100") is True
    assert greater_is_better("recall_at_k.100") is True


def test_precision_at_k_breaks_ties_by_row_order_and_is_none_beyond_the_rows() -> None:
    class Constant:
        classes_ = np.array([0, 1])

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            score = np.where(frame["x"] > 0, 0.8, 0.2)
            return np.column_stack([1 - score, score])

    # Rows 1, 2, 4 tie at the top score; only row 2 and row 3 are positives.
    df = pd.DataFrame({"x": [0, 1, 1, 0, 1], "y": [0, 0, 1, 1, 0]})
    result = evaluate_model(Constant(), df, target="y", metrics="n", k=[1, 2, 3, 9])
    assert result["precision_at_k"] == {"1": 0.0, "2": 0.5, "3": 1 / 3, "9": None}
    assert result["recall_at_k"] == {"1": 0.0, "2": 0.5, "3": 0.5, "9": None}


def test_column_slices_categorical_numeric_and_flags(fraud: tuple[Any, pd.DataFrame]) -> None:
    model, test = fraud
    test = test.assign(scenario=test["TX_FRAUD_SCENARIO"].map("s{}".format))
    test["CUSTOMER"] = test["CUSTOMER_ID"].astype(str)
    slices_asked = ["scenario", "CUSTOMER", "TX_AMOUNT", "TX_DURING_WEEKEND"]
    result = evaluate_model(model, test, target="TX_FRAUD", metrics="n", slices=slices_asked)
    slices = result["slices"]
    assert list(slices) == slices_asked
    y_true = test["TX_FRAUD"].astype(str).to_numpy()
    y_pred = model.predict(test[FRAUD_FEATURES]).astype(str)

    def expected(mask: np.ndarray) -> dict[str, Any]:
        return {
            "n": int(mask.sum()),
            "accuracy": accuracy_score(y_true[mask], y_pred[mask]),
            "macro_f1": f1_score(
                y_true[mask],
                y_pred[mask],
                labels=sorted(set(y_true[mask]) | set(y_pred[mask])),
                average="macro",
                zero_division=0,
            ),
        }

    counts = test["scenario"].value_counts()
    assert {name: s["n"] for name, s in slices["scenario"].items()} == counts.to_dict()
    for value in counts.index:
        assert slices["scenario"][value] == expected((test["scenario"] == value).to_numpy())

    # Many values: the 20 most frequent customers, most frequent first.
    customers = test["CUSTOMER"].value_counts()
    assert len(slices["CUSTOMER"]) == 20
    assert [s["n"] for s in slices["CUSTOMER"].values()] == customers.iloc[:20].tolist()

    # Numeric: the quartile bins pandas' qcut makes, labelled by interval.
    bins = pd.qcut(test["TX_AMOUNT"], 4)
    edges = np.quantile(test["TX_AMOUNT"], [0, 0.25, 0.5, 0.75, 1])
    assert list(slices["TX_AMOUNT"]) == [
        f"[{edges[0]:.6g}, {edges[1]:.6g}]",
        f"({edges[1]:.6g}, {edges[2]:.6g}]",
        f"({edges[2]:.6g}, {edges[3]:.6g}]",
        f"({edges[3]:.6g}, {edges[4]:.6g}]",
    ]
    for code, value in enumerate(slices["TX_AMOUNT"].values()):
        assert value == expected((bins.cat.codes == code).to_numpy())

    # A 0/1 flag is sliced by value, not into quartiles.
    weekend = test["TX_DURING_WEEKEND"].to_numpy()
    assert slices["TX_DURING_WEEKEND"] == {
        "0": expected(weekend == 0),
        "1": expected(weekend == 1),
    }
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_slices_report_missing_values_separately() -> None:
    class Half:
        classes_ = np.array(["a", "b"])

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            return np.tile([0.7, 0.3], (len(frame), 1))

    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["u", None, "u"], "y": ["a", "b", "a"]})
    result = evaluate_model(Half(), df, target="y", features=["x"], slices=["c"])
    assert result["slices"]["c"] == {
        "u": {"n": 2, "accuracy": 1.0, "macro_f1": 1.0},
        "<missing>": {"n": 1, "accuracy": 0.0, "macro_f1": 0.0},
    }


# --- evaluate_model: multiclass (digits) ---------------------------------------------------------


@functools.cache
def _digits_model() -> tuple[Any, pd.DataFrame]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    digits = load_digits(as_frame=True)
    df = digits.frame
    train, test = df.iloc[:1200], df.iloc[1200:].reset_index(drop=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(train.drop(columns="target"), train["target"])
    return model, test


class ReversedClasses:
    """The same classifier with its classes (and probability columns) in reverse order."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes = [str(c) for c in model.classes_][::-1]
        self.features = list(model.feature_names_in_)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict_proba(frame))[:, ::-1]


def test_multiclass_metrics_equal_sklearn_on_digits() -> None:
    model, test = _digits_model()
    # Features default to the pipeline's feature_names_in_ (every pixel column).
    result = evaluate_model(model, test, target="target", k=[1, 3])
    x, y = test.drop(columns="target"), test["target"].to_numpy()
    proba, y_pred = model.predict_proba(x), model.predict(x)

    assert "average_precision" not in result and "brier" not in result
    assert "precision_at_k" not in result
    assert result["n"] == len(test)
    assert result["accuracy"] == accuracy_score(y, y_pred)
    assert result["macro_f1"] == pytest.approx(f1_score(y, y_pred, average="macro"), abs=1e-15)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert result["log_loss"] == pytest.approx(log_loss(y, proba), abs=1e-15)
    assert result["top_k_accuracy"]["1"] == result["accuracy"]
    assert result["top_k_accuracy"]["3"] == top_k_accuracy_score(
        y, proba, k=3, labels=model.classes_
    )
    assert result["top_k_accuracy"]["3"] > result["accuracy"]
    assert result["confusion_matrix"]["labels"] == [str(d) for d in range(10)]

    # Scores follow the model's class order, whatever it is.
    reordered = evaluate_model(ReversedClasses(model), test, target="target", k=[1, 3])
    assert reordered["top_k_accuracy"] == result["top_k_accuracy"]
    assert reordered["log_loss"] == pytest.approx(result["log_loss"], abs=1e-12)
    assert reordered["roc_auc"] == pytest.approx(result["roc_auc"], abs=1e-12)
    assert reordered["accuracy"] == result["accuracy"]


def test_top_k_counts_labels_unknown_to_the_model_as_misses() -> None:
    model, test = _digits_model()
    test = test.assign(target=test["target"].astype(str))
    test.loc[:9, "target"] = "ten"
    result = evaluate_model(model, test, target="target", k=3)
    known = test["target"] != "ten"
    proba = model.predict_proba(test.drop(columns="target"))
    hits = top_k_accuracy_score(
        test.loc[known, "target"].astype(int), proba[known.to_numpy()], k=3, normalize=False
    )
    assert result["top_k_accuracy"]["3"] == pytest.approx(hits / len(test))
    assert result["log_loss"] is None  # the loss of a label the model cannot predict


# --- evaluate_model: regression -----------------------------------------------------------------


def test_regression_metrics_equal_sklearn_on_diabetes() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    df = load_diabetes(as_frame=True).frame
    train, test = df.iloc[:340], df.iloc[340:].reset_index(drop=True)
    model = Ridge(alpha=0.1).fit(train.drop(columns="target"), train["target"])
    result = evaluate_model(model, test, target="target", slices=["bmi"])
    y, y_pred = test["target"].to_numpy(), model.predict(test.drop(columns="target"))

    assert list(result) == ["n", "rmse", "mae", "r2", "median_ae", "mape", "slices"]
    assert result["n"] == len(test)
    assert result["rmse"] == root_mean_squared_error(y, y_pred)
    assert result["mae"] == mean_absolute_error(y, y_pred)
    assert result["r2"] == r2_score(y, y_pred)
    assert result["median_ae"] == median_absolute_error(y, y_pred)
    assert result["mape"] == mean_absolute_percentage_error(y, y_pred)
    bins = pd.qcut(test["bmi"], 4).cat.codes.to_numpy()
    assert [s["n"] for s in result["slices"]["bmi"].values()] == np.bincount(bins).tolist()
    first = next(iter(result["slices"]["bmi"].values()))
    assert first["rmse"] == root_mean_squared_error(y[bins == 0], y_pred[bins == 0])
    assert first["mae"] == mean_absolute_error(y[bins == 0], y_pred[bins == 0])
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_regression_on_tx_amount_has_no_mape_when_a_target_is_zero(shared_data: Path) -> None:
    from sklearn.linear_model import Ridge

    path = shared_data / "fraud" / "fraud_handbook_simulated" / "transactions_2018-04.csv.gz"
    df = _fraud_month(path)
    features = ["TX_HOUR", "TX_DURING_WEEKEND", "TX_DURING_NIGHT", "TX_FRAUD"]
    train, test = df[df["TX_TIME_DAYS"] < 21], df[df["TX_TIME_DAYS"] >= 23]
    assert (test["TX_AMOUNT"] == 0).sum() == 1  # one free transaction in the last week
    model = Ridge().fit(train[features], train["TX_AMOUNT"])
    result = evaluate_model(model, test, target="TX_AMOUNT", features=features)
    y, y_pred = test["TX_AMOUNT"].to_numpy(), model.predict(test[features])
    assert result["mape"] is None
    assert result["rmse"] == root_mean_squared_error(y, y_pred)
    assert result["r2"] == r2_score(y, y_pred)
    # Fraud (scenario 1: amounts over 220) is the one strong signal of the amount here.
    assert result["r2"] > 0


# --- evaluate_model: text model gets the text slices ---------------------------------------------


@functools.cache
def _spam_model(folder: Path) -> tuple[Any, pd.DataFrame]:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import Pipeline

    frames = [
        pd.read_csv(path).rename(columns={"CONTENT": "text", "CLASS": "label"})
        for path in sorted(folder.glob("Youtube0*.csv"))
    ]
    train, test = pd.concat(frames[:4], ignore_index=True), frames[4]
    model = Pipeline(
        [
            ("features", ColumnTransformer([("bow", CountVectorizer(), "text")])),
            ("classifier", MultinomialNB()),
        ]
    )
    model.fit(train[["text"]], train["label"])
    return model, test


def test_text_model_gets_the_text_slices(shared_data: Path) -> None:
    model, test = _spam_model(shared_data / "spam_youtube")
    result = evaluate_model(model, test, target="label", k=50)
    texts = test["text"].astype(str)
    y_true = test["label"].astype(str).to_numpy()
    y_pred = model.predict(test[["text"]]).astype(str)
    masks = {
        "short": (texts.str.len() < 40).to_numpy(),
        "medium": texts.str.len().between(40, 100).to_numpy(),
        "long": (texts.str.len() > 100).to_numpy(),
        "has_url": texts.str.contains(r"https?://|www\.", case=False).to_numpy(),
    }
    slices = result["slices"]
    assert set(masks) <= set(slices) <= set(_LEGACY_SLICES)
    for name, mask in masks.items():
        assert slices[name]["n"] == int(mask.sum()) > 0
        assert slices[name]["accuracy"] == accuracy_score(y_true[mask], y_pred[mask])
    # Spam comments carry links: the url slice is mostly spam and well caught.
    assert slices["has_url"]["accuracy"] > 0.8
    assert result["accuracy"] == accuracy_score(y_true, y_pred)
    assert result["precision_at_k"]["50"] > 0.9
    # evaluate_classifier reports the same slices for the same model and data.
    assert slices == evaluate_classifier(model, test)["slices"]


# --- evaluate_model: pluggable metrics and errors -------------------------------------------------


def test_callable_and_registered_metrics_appear_under_their_names(
    fraud: tuple[Any, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("loopline.evaluate.metrics._REGISTERED", {})
    model, test = fraud
    seen: dict[str, Any] = {}

    def false_alarm_rate(
        y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: list[str] | None
    ) -> float:
        seen.update(proba=proba, classes=classes, y_true=y_true)
        negatives = y_true == "0"
        return float((y_pred[negatives] == "1").mean())

    def missed_fraud_amount(
        y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: list[str] | None
    ) -> np.float64:
        missed = (y_true == "1") & (y_pred == "0")
        return np.float64(test["TX_AMOUNT"].to_numpy()[missed].sum())

    register_metric(
        "missed_fraud_amount", missed_fraud_amount, task="classification", greater_is_better=False
    )
    result = evaluate_model(
        model,
        test,
        target="TX_FRAUD",
        metrics=["accuracy", false_alarm_rate, "missed_fraud_amount"],
    )
    assert list(result) == ["accuracy", "false_alarm_rate", "missed_fraud_amount"]
    y, y_pred = test["TX_FRAUD"].to_numpy(), model.predict(test[FRAUD_FEATURES])
    assert result["false_alarm_rate"] == float((y_pred[y == 0] == 1).mean())
    missed = test.loc[(y == 1) & (y_pred == 0), "TX_AMOUNT"].sum()
    assert result["missed_fraud_amount"] == pytest.approx(missed)
    assert type(result["missed_fraud_amount"]) is float
    assert seen["classes"] == ["0", "1"]
    assert seen["proba"].shape == (len(test), 2)
    assert greater_is_better("missed_fraud_amount") is False
    assert greater_is_better("slices.short.missed_fraud_amount") is False

    # A metric registered for the other task is refused with what to do.
    register_metric("pinball", lambda *_: 0.0, task="regression")
    with pytest.raises(DataError, match="registered for regression"):
        evaluate_model(model, test, target="TX_FRAUD", metrics=["pinball"])


def test_greater_is_better_for_known_dotted_and_unknown_metrics() -> None:
    for name in [
        "accuracy",
        "macro_f1",
        "roc_auc",
        "average_precision",
        "r2",
        "precision_at_k",
        "recall_at_k",
        "top_k_accuracy",
    ]:
        assert greater_is_better(name) is True, name
    for name in ["log_loss", "brier", "rmse", "mae", "median_ae", "mape"]:
        assert greater_is_better(name) is False, name
    assert greater_is_better("slices.short.accuracy") is True
    assert greater_is_better("slices.TX_AMOUNT.(2.5, 40.1].rmse") is False
    assert greater_is_better("top_k_accuracy.3") is True
    assert greater_is_better("precision_at_100") is True
    assert greater_is_better("per_class.spam.recall") is True
    assert greater_is_better("n") is None
    assert greater_is_better("no_such_metric") is None


def test_unknown_metric_name_lists_the_known_ones(fraud: tuple[Any, pd.DataFrame]) -> None:
    model, test = fraud
    with pytest.raises(DataError, match="unknown metric 'recal'") as error:
        evaluate_model(model, test.head(100), target="TX_FRAUD", metrics=["recal"])
    for known in ("classification", "regression", "accuracy", "roc_auc", "rmse", "mape"):
        assert known in error.value.message
    with pytest.raises(DataError, match="'rmse' does not fit a model evaluated as classif"):
        evaluate_model(model, test.head(100), target="TX_FRAUD", metrics="rmse")


def test_metric_functions_need_a_usable_name(fraud: tuple[Any, pd.DataFrame]) -> None:
    model, test = fraud
    with pytest.raises(DataError, match="__name__"):
        evaluate_model(model, test.head(10), target="TX_FRAUD", metrics=[lambda *a: 1.0])
    with pytest.raises(DataError, match="built into Loopline"):
        register_metric("accuracy", lambda *a: 1.0, task="classification")


def test_missing_feature_columns_are_named(fraud: tuple[Any, pd.DataFrame]) -> None:
    model, test = fraud
    frame = test.drop(columns=["TX_HOUR", "TX_DURING_NIGHT"])
    with pytest.raises(DataError, match=r"missing \['TX_HOUR', 'TX_DURING_NIGHT'\]") as error:
        evaluate_model(model, frame, target="TX_FRAUD")
    assert "TRANSACTION_ID" in error.value.message  # the frame's columns are listed
    with pytest.raises(DataError, match=r"missing \['nope'\]"):
        evaluate_model(model, test, target="TX_FRAUD", features=["TX_AMOUNT", "nope"])
    with pytest.raises(DataError, match=r"slice columns \['nope'\]"):
        evaluate_model(model, test, target="TX_FRAUD", slices=["nope"])


@pytest.mark.parametrize(
    ("target", "values", "message"),
    [
        ("y", [1, None, 0], "1 of 3 evaluation rows have no value in target 'y'"),
        ("label", [1, 0, 1], "needs the target column 'label'"),
    ],
)
def test_bad_targets_raise_data_error(target: str, values: list[Any], message: str) -> None:
    model, _ = _digits_model()
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": values})
    with pytest.raises(DataError, match=message):
        evaluate_model(model, frame, target=target, features=["x"])


def test_k_needs_a_probabilistic_classifier() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    df = load_diabetes(as_frame=True).frame
    model = Ridge().fit(df.drop(columns="target"), df["target"])
    with pytest.raises(DataError, match="need a classifier"):
        evaluate_model(model, df, target="target", k=10)
    with pytest.raises(DataError, match="positive integer"):
        evaluate_model(model, df, target="target", k=0)


def test_classifier_without_predict_proba_is_scored_on_predict() -> None:
    class Rule:
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return np.where(frame["x"] > 1, "b", "a")

    df = pd.DataFrame({"x": [0, 1, 2, 3], "y": ["a", "b", "b", "b"]})
    result = evaluate_model(Rule(), df, target="y", task="classification")
    assert result["accuracy"] == 0.75
    assert result["roc_auc"] is None and result["log_loss"] is None
    assert result["confusion_matrix"] == {"labels": ["a", "b"], "matrix": [[1, 0], [1, 2]]}


def test_auto_task_treats_a_classifier_without_probabilities_as_a_classifier() -> None:
    from sklearn.svm import LinearSVC

    _, test = _digits_model()
    x = test.drop(columns="target")
    svc = LinearSVC().fit(x, test["target"])
    result = evaluate_model(svc, test, target="target")
    assert result["accuracy"] == accuracy_score(test["target"], svc.predict(x))
    assert result["roc_auc"] is None
    assert "rmse" not in result
