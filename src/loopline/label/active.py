"""Active learning: which items should a person label next?

:func:`select_for_labeling` scores every candidate item by a weighted mix of

- **uncertainty** of the current model: ``1 - (p_top - p_second)`` (margin) or the
  normalised entropy of its predicted probabilities;
- **LF disagreement**: the normalised entropy of the votes of the LFs that did not abstain
  (0 when fewer than two LFs vote or all agree);
- **diversity**: picks are made greedily, and each candidate's score gains the weighted
  cosine distance to the nearest item already picked (a max-min / k-center rule), so a
  batch does not spend the budget on near-duplicates.

Every part is scaled to [0, 1] before weighting; parts whose input is missing drop out. The
result is deterministic for a given ``seed`` (the seed only breaks exact ties).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from loopline.errors import LooplineError

__all__ = ["lf_disagreement", "select_for_labeling", "uncertainty"]

ABSTAIN = -1
_POOL_FACTOR = 20  # diversity looks at the top budget*20 items by base score


def uncertainty(proba: np.ndarray, method: Literal["margin", "entropy"] = "margin") -> np.ndarray:
    """Per-row uncertainty in [0, 1] of predicted probabilities (n, k)."""
    p = _check_proba(proba)
    if method == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return np.asarray(1.0 - (top2[:, 1] - top2[:, 0]))
    if method == "entropy":
        return _entropy(p)
    raise LooplineError(f"uncertainty method must be 'margin' or 'entropy', found {method!r}")


def lf_disagreement(L: np.ndarray, cardinality: int | None = None) -> np.ndarray:
    """Per-row vote entropy in [0, 1] among the LFs that voted (abstains are ignored)."""
    matrix = np.asarray(L)
    if matrix.ndim != 2:
        raise LooplineError(f"expected a 2-d label matrix, found shape {matrix.shape}")
    k = cardinality or max(int(matrix.max()) + 1 if matrix.size else 2, 2)
    counts = np.stack([np.count_nonzero(np.equal(matrix, c), axis=1) for c in range(k)], axis=1)
    total = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(total, 1)
    return np.where(total[:, 0] > 1, _entropy(shares), 0.0)


def _entropy(p: np.ndarray) -> np.ndarray:
    k = p.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return np.asarray(terms.sum(axis=1) / np.log(k)) if k > 1 else np.zeros(p.shape[0])


def _check_proba(proba: np.ndarray) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise LooplineError(
            f"expected predicted probabilities of shape (n, k>=2), found {p.shape}",
            hint="pass model.predict_proba(X)",
        )
    return p


def select_for_labeling(
    budget: int,
    *,
    proba: np.ndarray | None = None,
    L: np.ndarray | None = None,
    features: Any = None,
    weights: Sequence[float] = (1.0, 1.0, 1.0),
    exclude: Iterable[int] | None = None,
    seed: int = 0,
    uncertainty_method: Literal["margin", "entropy"] = "margin",
) -> list[int]:
    """Pick up to ``budget`` row indices for a person to label, best first.

    Args:
        budget: how many items to pick (fewer when fewer candidates remain).
        proba: the current model's predicted probabilities (n, k), for uncertainty.
        L: the label matrix (n, m) of LF votes, for LF disagreement.
        features: a dense array or scipy sparse matrix (n, d), e.g. TF-IDF or embeddings,
            for diversity (cosine distance).
        weights: weights of (uncertainty, disagreement, diversity); a part whose input is
            not given is left out.
        exclude: indices never to pick (already labelled, or queued).
        seed: breaks exact ties between equal scores.
        uncertainty_method: ``"margin"`` or ``"entropy"``.
    """
    if budget < 0:
        raise LooplineError(f"budget must be >= 0, found {budget}")
    w_unc, w_dis, w_div = _check_weights(weights)
    n = _common_length(proba, L, features)
    parts: list[tuple[float, np.ndarray]] = []
    if proba is not None and w_unc > 0:
        parts.append((w_unc, uncertainty(proba, uncertainty_method)))
    if L is not None and w_dis > 0:
        k = np.asarray(proba).shape[1] if proba is not None else None
        parts.append((w_dis, lf_disagreement(L, k)))
    use_diversity = features is not None and w_div > 0
    if not parts and not use_diversity:
        raise LooplineError(
            "nothing to score items by",
            hint="pass proba=, L= or features= with a positive weight for it",
        )
    total = sum(w for w, _ in parts) + (w_div if use_diversity else 0.0)
    base = sum((w / total) * part for w, part in parts) if parts else np.zeros(n)
    # A tiny seeded jitter makes ties resolve the same way on every run with the same seed.
    base = np.asarray(base, dtype=np.float64) + 1e-9 * np.random.default_rng(seed).random(n)

    candidates = np.ones(n, dtype=bool)
    for i in exclude or ():
        if not 0 <= int(i) < n:
            raise LooplineError(f"exclude holds index {i}, outside 0..{n - 1}")
        candidates[int(i)] = False
    pool = np.flatnonzero(candidates)
    budget = min(budget, pool.size)
    if budget == 0:
        return []
    if not use_diversity:
        return [int(i) for i in pool[np.argsort(-base[pool], kind="stable")[:budget]]]
    if parts:  # diversity re-ranks the best candidates only: the rest would not be picked anyway
        size = min(pool.size, max(budget * _POOL_FACTOR, 1000))
        pool = pool[np.argsort(-base[pool], kind="stable")[:size]]
    return _greedy_diverse(base[pool], _unit_rows(features, pool), w_div / total, budget, pool)


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(w) for w in weights)
    if len(values) != 3 or any(w < 0 for w in values) or not np.isfinite(values).all():
        raise LooplineError(
            f"weights must be three non-negative numbers (uncertainty, disagreement, "
            f"diversity), found {weights!r}"
        )
    return values[0], values[1], values[2]


def _common_length(*inputs: Any) -> int:
    lengths = {int(x.shape[0]) for x in inputs if x is not None}
    if len(lengths) > 1:
        raise LooplineError(
            f"proba, L and features must have one row per item, found lengths {sorted(lengths)}"
        )
    if not lengths:
        raise LooplineError("nothing to score items by", hint="pass proba=, L= or features=")
    return lengths.pop()


def _unit_rows(features: Any, rows: np.ndarray) -> Any:
    """The chosen rows, L2-normalised, so that a dot product is a cosine similarity."""
    import scipy.sparse as sp

    if sp.issparse(features):
        X = sp.csr_matrix(features)[rows].astype(np.float64)
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1))).ravel()
        return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ X
    X = np.asarray(features, dtype=np.float64)[rows]
    if X.ndim != 2:
        raise LooplineError(f"features must be 2-d (n, d), found shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _greedy_diverse(
    base: np.ndarray, X: Any, weight: float, budget: int, pool: np.ndarray
) -> list[int]:
    """Max-min selection: each pick maximises base score + weight * distance to the picked set."""
    # Before any pick every candidate is "far" (distance 1), so the first pick is the best base.
    nearest = np.ones(base.shape[0])
    picked: list[int] = []
    taken = np.zeros(base.shape[0], dtype=bool)
    for _ in range(budget):
        score = np.where(taken, -np.inf, base + weight * nearest)
        best = int(np.argmax(score))
        picked.append(best)
        taken[best] = True
        similarity = X @ X[best].T
        if hasattr(similarity, "toarray"):
            similarity = similarity.toarray()
        # Cosine distance, capped at 1: "orthogonal" is as different as it gets here.
        distance = np.clip(1.0 - np.asarray(similarity).ravel(), 0.0, 1.0)
        nearest = np.minimum(nearest, distance)
    return [int(pool[i]) for i in picked]
