"""Label-noise audit: find items whose given label is probably wrong.

:func:`noise_audit` gets out-of-fold predicted probabilities by cross-validation (each item is
scored by a model that never saw it; by default TF-IDF + logistic regression for texts, or
logistic regression on given features) and hands them to cleanlab's confident learning
(``cleanlab.filter.find_label_issues``), which flags the items whose label disagrees with
what the per-class confidence thresholds expect. Flagged items come ranked by
*self-confidence* (the out-of-fold probability of the given label), lowest first, ready to
send to the review queue.

:func:`rater_overlap` measures how well a set of flagged items matches the items on which
human raters disagreed (precision against a top-k set, and the enrichment over random).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopline.errors import LooplineError

__all__ = ["AuditResult", "noise_audit", "rater_overlap"]


@dataclass
class AuditResult:
    """What :func:`noise_audit` found.

    ``issues`` are the flagged row indices, most suspicious first; ``scores`` is each row's
    label quality (self-confidence: the out-of-fold probability of its given label; low =
    suspicious); ``oof_proba`` the out-of-fold probabilities (n, k) over ``classes``;
    ``labels`` the given labels as class indices.
    """

    issues: np.ndarray
    scores: np.ndarray
    oof_proba: np.ndarray
    labels: np.ndarray
    classes: list[Hashable]
    n_folds: int
    notes: list[str] = field(default_factory=list)

    @property
    def suggested(self) -> np.ndarray:
        """The class index the out-of-fold model prefers for each row."""
        return np.asarray(self.oof_proba.argmax(axis=1))

    def to_frame(self, all_rows: bool = False) -> pd.DataFrame:
        """One row per flagged item (or per item with ``all_rows``), most suspicious first.

        Columns: ``index, rank, given_label, suggested_label, label_quality, is_issue``.
        """
        rows = self.issues if not all_rows else np.argsort(self.scores, kind="stable")
        is_issue = np.zeros(len(self.scores), dtype=bool)
        is_issue[self.issues] = True
        rank = np.full(len(self.scores), -1)
        rank[self.issues] = np.arange(1, len(self.issues) + 1)
        names = np.asarray(self.classes, dtype=object)
        return pd.DataFrame(
            {
                "index": rows,
                "rank": rank[rows],
                "given_label": names[self.labels[rows]],
                "suggested_label": names[self.suggested[rows]],
                "label_quality": self.scores[rows],
                "is_issue": is_issue[rows],
            }
        )


def noise_audit(
    texts_or_features: Sequence[str] | pd.Series | np.ndarray | Any,
    labels: Sequence[Hashable] | np.ndarray | pd.Series,
    *,
    n_folds: int = 5,
    seed: int = 0,
    model: Any = None,
) -> AuditResult:
    """Flag likely mislabelled items with cross-validated probabilities + confident learning.

    Args:
        texts_or_features: a sequence of texts, or a feature matrix (dense or scipy sparse).
        labels: the given label of each item (any hashable values; at least two classes).
        n_folds: cross-validation folds (lowered to the size of the smallest class if needed).
        seed: seeds the fold split (and the default model).
        model: an sklearn classifier with ``predict_proba`` (cloned per fold); default
            TF-IDF (word 1-2 + character 2-5 grams) + logistic regression for texts,
            logistic regression for features.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X, is_text = _inputs(texts_or_features)
    classes, y = _encode(labels, _length(X))
    notes: list[str] = []
    smallest = int(np.bincount(y).min())
    if smallest < 2:
        raise LooplineError(
            f"class {classes[int(np.bincount(y).argmin())]!r} has {smallest} item; "
            "cross-validation needs at least 2 per class",
            hint="drop or merge the rare class before the audit",
        )
    if n_folds < 2:
        raise LooplineError(f"n_folds must be at least 2, found {n_folds}")
    if smallest < n_folds:
        notes.append(f"n_folds lowered from {n_folds} to {smallest}, the smallest class size")
        n_folds = smallest
    estimator = clone(model) if model is not None else _default_model(is_text, len(classes), seed)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    oof = cross_val_predict(estimator, X, y, cv=folds, method="predict_proba")
    oof = np.asarray(oof, dtype=np.float64)
    return _confident_learning(oof, y, classes, n_folds, notes)


def _confident_learning(
    oof: np.ndarray, y: np.ndarray, classes: list[Hashable], n_folds: int, notes: list[str]
) -> AuditResult:
    from cleanlab.filter import find_label_issues

    # n_jobs=1: cleanlab's worker pool costs more than it saves at review-queue sizes.
    issues = find_label_issues(
        labels=y, pred_probs=oof, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    scores = oof[np.arange(len(y)), y]
    return AuditResult(
        issues=np.asarray(issues, dtype=np.int64),
        scores=scores,
        oof_proba=oof,
        labels=y,
        classes=classes,
        n_folds=n_folds,
        notes=notes,
    )


def _inputs(data: Any) -> tuple[Any, bool]:
    """(X, is_text): texts become a list of str; features stay a matrix."""
    import scipy.sparse as sp

    if sp.issparse(data):
        return data, False
    if isinstance(data, pd.DataFrame):
        raise LooplineError(
            "noise_audit takes a sequence of texts or a feature matrix, found a DataFrame",
            hint="pass df['text'] for texts, or df[feature_columns].to_numpy()",
        )
    if isinstance(data, np.ndarray) and data.ndim == 2:
        return data, False
    values = list(data)
    if values and all(isinstance(v, str) for v in values):
        return values, True
    array = np.asarray(values)
    if array.ndim == 2 and np.issubdtype(array.dtype, np.number):
        return array, False
    raise LooplineError(
        "noise_audit expected texts (strings) or a 2-d numeric feature matrix, "
        f"found {type(data).__name__} of {array.dtype} with shape {array.shape}",
        hint="fill missing texts with '' first",
    )


def _length(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _encode(labels: Any, n: int) -> tuple[list[Hashable], np.ndarray]:
    values = pd.Series(list(labels))
    if len(values) != n:
        raise LooplineError(f"expected {n} labels, one per item, found {len(values)}")
    if values.isna().any():
        raise LooplineError(
            f"{int(values.isna().sum())} labels are missing",
            hint="audit only the labelled items",
        )
    codes, uniques = pd.factorize(values, sort=True)
    if len(uniques) < 2:
        raise LooplineError(
            f"the audit needs at least two classes, found {list(uniques)}",
        )
    return list(uniques), codes.astype(np.int64)


def _default_model(is_text: bool, n_classes: int, seed: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    # liblinear is ~10x faster than lbfgs on sparse TF-IDF for two classes.
    solver = "liblinear" if n_classes == 2 else "lbfgs"
    classifier = LogisticRegression(max_iter=2000, solver=solver, random_state=seed)
    if not is_text:
        return classifier
    # Word 1-2 grams plus character 2-5 grams (Loopline's default text model): characters
    # catch emoticons, elongations and misspellings that the word tokenizer drops.
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    )
    return make_pipeline(features, classifier)


def rater_overlap(
    flagged: Sequence[int] | np.ndarray,
    disagreement: Sequence[float] | np.ndarray,
    top: int | None = None,
) -> dict[str, float]:
    """How much the flagged items coincide with the items raters disagreed on most.

    ``disagreement`` is a per-item score (e.g. the share of raters against the majority);
    the reference set is the ``top`` items by it (default: as many as were flagged). Returns
    ``precision`` (share of flagged items in the reference set), ``base_rate`` (the share a
    random pick would get), ``enrichment`` (their ratio), ``mean_disagreement_flagged`` and
    ``mean_disagreement_all``.
    """
    score = np.asarray(disagreement, dtype=np.float64)
    picked = np.asarray(flagged, dtype=np.int64)
    n = score.shape[0]
    if picked.size == 0:
        raise LooplineError("no flagged items to compare", hint="run the audit first")
    k = int(top) if top is not None else int(picked.size)
    if not 0 < k <= n:
        raise LooplineError(f"top must lie in 1..{n}, found {k}")
    reference = np.zeros(n, dtype=bool)
    reference[np.argsort(-score, kind="stable")[:k]] = True
    precision = float(reference[picked].mean())
    base_rate = k / n
    return {
        "flagged": float(picked.size),
        "top": float(k),
        "precision": precision,
        "base_rate": base_rate,
        "enrichment": precision / base_rate,
        "mean_disagreement_flagged": float(score[picked].mean()),
        "mean_disagreement_all": float(score.mean()),
    }
