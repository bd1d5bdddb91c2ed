"""Tests for evaluate_classifier: exact numbers on a fake model, JSON shape, slices, errors."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from loopline.errors import DataError
from loopline.evaluate.metrics import evaluate_classifier


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
