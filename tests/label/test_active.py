"""Active learning: uncertainty, LF disagreement and diversity-aware selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from loopline.errors import LooplineError
from loopline.label.active import lf_disagreement, select_for_labeling, uncertainty


def test_uncertainty_margin_and_entropy() -> None:
    proba = np.array([[1.0, 0.0], [0.5, 0.5], [0.8, 0.2]])
    assert np.allclose(uncertainty(proba), [0.0, 1.0, 0.4])
    entropy = uncertainty(proba, "entropy")
    assert entropy[0] == 0.0 and entropy[1] == pytest.approx(1.0) and 0 < entropy[2] < 1


def test_lf_disagreement_is_vote_entropy_of_voting_lfs() -> None:
    L = np.array([[1, 0, -1], [1, 1, -1], [0, -1, -1], [-1, -1, -1], [1, 0, 0]])
    d = lf_disagreement(L)
    assert d[0] == pytest.approx(1.0)  # one vote each way
    assert d[1] == 0.0 and d[2] == 0.0 and d[3] == 0.0  # agreement, one vote, no vote
    assert 0 < d[4] < 1


def test_selects_the_most_uncertain_first_and_respects_exclude() -> None:
    proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.99, 0.01]])
    assert select_for_labeling(2, proba=proba) == [1, 2]
    assert select_for_labeling(2, proba=proba, exclude=[1]) == [2, 0]
    assert select_for_labeling(10, proba=proba) == [1, 2, 0, 3]  # budget above n
    assert select_for_labeling(0, proba=proba) == []


def test_mixes_uncertainty_and_disagreement_by_weight() -> None:
    proba = np.array([[0.5, 0.5], [0.9, 0.1]])
    L = np.array([[1, 1], [1, 0]])  # row 1: the LFs disagree
    assert select_for_labeling(1, proba=proba, L=L, weights=(1, 0, 0)) == [0]
    assert select_for_labeling(1, proba=proba, L=L, weights=(0, 1, 0)) == [1]
    assert select_for_labeling(1, L=L) == [1]


def test_diversity_skips_near_duplicates() -> None:
    # Rows 0-2 are the same item (most uncertain); row 3 is different and a bit less uncertain.
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.52, 0.48], [0.6, 0.4], [0.95, 0.05]])
    features = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.7, 0.7]])
    without = select_for_labeling(2, proba=proba, weights=(1, 0, 0))
    with_diversity = select_for_labeling(2, proba=proba, features=features, weights=(1, 0, 1))
    assert without == [0, 1]
    assert with_diversity == [0, 3]
    sparse = select_for_labeling(
        2, proba=proba, features=sp.csr_matrix(features), weights=(1, 0, 1)
    )
    assert sparse == with_diversity


def test_pure_diversity_is_farthest_first_and_seeded() -> None:
    rng = np.random.default_rng(0)
    centers = np.eye(4) * 10
    features = np.vstack([c + rng.normal(0, 0.1, (25, 4)) for c in centers])
    picked = select_for_labeling(4, features=features, seed=3)
    assert sorted(i // 25 for i in picked) == [0, 1, 2, 3]  # one per cluster
    assert picked == select_for_labeling(4, features=features, seed=3)


def test_bad_input_says_what_was_expected() -> None:
    proba = np.array([[0.5, 0.5], [0.9, 0.1]])
    with pytest.raises(LooplineError, match="nothing to score"):
        select_for_labeling(1)
    with pytest.raises(LooplineError, match="one row per item"):
        select_for_labeling(1, proba=proba, L=np.zeros((3, 2), dtype=int))
    with pytest.raises(LooplineError, match="three non-negative numbers"):
        select_for_labeling(1, proba=proba, weights=(1, -1, 0))
    with pytest.raises(LooplineError, match=r"outside 0\.\.1"):
        select_for_labeling(1, proba=proba, exclude=[5])
    with pytest.raises(LooplineError, match="budget"):
        select_for_labeling(-1, proba=proba)
