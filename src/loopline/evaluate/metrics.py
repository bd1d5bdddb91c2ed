"""Classification metrics with slices, as a JSON-able dict.

``evaluate_classifier`` scores any model exposing ``predict_proba`` on a DataFrame (a fitted
scikit-learn pipeline, or a registry ``LoadedModel``) against labelled text. The result goes
to MLflow, the promotion gate and reports, so it contains only plain ``int``/``float``/``str``
/``list``/``dict``/``None`` values.

scikit-learn is imported inside the functions: importing this module must stay cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from loopline.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SHORT_TEXT_MAX = 40  # characters; "short" is < 40
LONG_TEXT_MIN = 100  # characters; "long" is > 100, "medium" is 40..100

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<!\w)@\w+")
_HASHTAG_RE = re.compile(r"(?<!\w)#\w+")

# name -> predicate on the raw text; evaluated in this order so reports read naturally.
SLICES: dict[str, Callable[[str], bool]] = {
    "short": lambda t: len(t) < SHORT_TEXT_MAX,
    "medium": lambda t: SHORT_TEXT_MAX <= len(t) <= LONG_TEXT_MIN,
    "long": lambda t: len(t) > LONG_TEXT_MIN,
    "has_url": lambda t: bool(_URL_RE.search(t)),
    "has_mention": lambda t: bool(_MENTION_RE.search(t)),
    "has_hashtag": lambda t: bool(_HASHTAG_RE.search(t)),
}


def evaluate_classifier(
    model: Any,
    df: pd.DataFrame,
    text_column: str = "text",
    label_column: str = "label",
) -> dict[str, Any]:
    """Score ``model`` on ``df`` and return a JSON-able metrics dict.

    Keys:

    - ``n``, ``accuracy``;
    - ``macro_f1``: over the labels present in the data or the predictions;
    - ``roc_auc``: binary, from the probability of the second class in ``classes_``;
      multiclass, the one-vs-rest macro average; ``None`` when the labels hold one class;
    - ``confusion_matrix``: ``labels`` (the model's classes plus any other label seen) and
      ``matrix`` (rows: true label, columns: predicted label);
    - ``per_class``: precision, recall, f1 and support per label;
    - ``slices``: ``n``/``accuracy``/``macro_f1`` per slice (``short`` < 40 characters,
      ``medium`` 40-100, ``long`` > 100, ``has_url``, ``has_mention``, ``has_hashtag``),
      only for slices with at least one row.

    The model receives a DataFrame whose single column is named after the model's input
    column (``input_columns[0]`` for a registry ``LoadedModel``, else ``text``), so a
    dataset whose text lives in another column can be scored without renaming it first.
    """
    _check_frame(df, text_column, label_column)
    texts = df[text_column].astype(str).tolist()
    y_true = df[label_column].astype(str).to_numpy()
    proba, classes = _predict_proba(model, df[[text_column]].astype(str), text_column)
    y_pred = classes[proba.argmax(axis=1)]
    return {
        "n": len(y_true),
        **_scores(y_true, y_pred),
        "roc_auc": _roc_auc(y_true, proba, classes),
        "confusion_matrix": _confusion(y_true, y_pred, classes),
        "per_class": _per_class(y_true, y_pred, classes),
        "slices": _slices(texts, y_true, y_pred),
    }


def _check_frame(df: pd.DataFrame, text_column: str, label_column: str) -> None:
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"evaluation data needs columns {text_column!r} and {label_column!r}; "
            f"missing {missing}, found {list(df.columns)}",
            hint="pass text_column=/label_column= naming your columns",
        )
    if len(df) == 0:
        raise DataError("evaluation data is empty", hint="check the dataset path and filters")
    n_missing = int(df[label_column].isna().sum())
    if n_missing:
        raise DataError(
            f"{n_missing} of {len(df)} evaluation rows have no label in {label_column!r}",
            hint="drop unlabeled rows before evaluating",
        )


def _predict_proba(model: Any, frame: pd.DataFrame, text_column: str) -> tuple[np.ndarray, Any]:
    """Return (probabilities, class labels as a string array) from either model kind."""
    import numpy as np

    input_columns = getattr(model, "input_columns", None) or ["text"]
    frame = frame.rename(columns={text_column: input_columns[0]})
    if not hasattr(model, "predict_proba"):
        raise DataError(
            f"cannot evaluate a {type(model).__name__}: it has no predict_proba()",
            hint="use a probabilistic classifier (e.g. LogisticRegression)",
        )
    proba = np.asarray(model.predict_proba(frame), dtype=float)
    raw_classes = getattr(model, "classes", None)
    if raw_classes is None:
        raw_classes = model.classes_
    classes = np.asarray([str(c) for c in raw_classes], dtype=object)
    return proba, classes


def _labels(y_true: np.ndarray, y_pred: np.ndarray, classes: Any = ()) -> list[str]:
    """Sorted labels seen in the data, plus ``classes`` (e.g. all the model's classes)."""
    return sorted(set(y_true.tolist()) | set(y_pred.tolist()) | {str(c) for c in classes})


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    labels = _labels(y_true, y_pred)
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
    }


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float | None:
    """Binary: AUC of the positive (second) class; multiclass: macro one-vs-rest AUC.

    Computed per class by hand rather than with ``multi_class="ovr"`` so that a test set
    missing some of the model's classes still gets a score over the classes it has.
    """
    from sklearn.metrics import roc_auc_score

    if len(set(y_true.tolist())) < 2:
        return None  # AUC is undefined without both positives and negatives
    columns: Sequence[int] = [1] if len(classes) == 2 else range(len(classes))
    aucs = []
    for i in columns:
        is_class = y_true == classes[i]
        if is_class.any() and not is_class.all():
            aucs.append(float(roc_auc_score(is_class, proba[:, i])))
    return sum(aucs) / len(aucs) if aucs else None


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Any) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    # All model classes are included so matrices of different evaluations line up.
    labels = _labels(y_true, y_pred, classes)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {"labels": labels, "matrix": matrix.astype(int).tolist()}


def _per_class(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Any
) -> dict[str, dict[str, float | int]]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = _labels(y_true, y_pred, classes)
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


def _slices(
    texts: list[str], y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, dict[str, float | int]]:
    import numpy as np

    result: dict[str, dict[str, float | int]] = {}
    for name, predicate in SLICES.items():
        mask = np.fromiter((predicate(t) for t in texts), dtype=bool, count=len(texts))
        n = int(mask.sum())
        if n:
            result[name] = {"n": n, **_scores(y_true[mask], y_pred[mask])}
    return result
