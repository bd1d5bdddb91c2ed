"""Label models: majority vote and the Dawid-Skene LabelModel (synthetic and spam data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loopline.errors import LooplineError
from loopline.examples.spam import LABEL_SET, load_spam_split, spam_lfs
from loopline.label.lf import apply_lfs
from loopline.label.model import LabelModel, MajorityVoter, label_model_from_dict

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def synthetic(
    n: int = 4000, k: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes drawn from the Dawid-Skene model: (L, y, true accuracy of each LF)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    accuracy = np.array([0.95, 0.9, 0.85, 0.75, 0.65, 0.6])
    coverage = np.array([0.3, 0.5, 0.4, 0.6, 0.7, 0.5])
    L = np.full((n, accuracy.size), -1, dtype=np.int8)
    for j, (acc, cov) in enumerate(zip(accuracy, coverage, strict=True)):
        votes = rng.random(n) < cov
        right = rng.random(n) < acc
        wrong = (y + rng.integers(1, k, size=n)) % k
        L[votes, j] = np.where(right, y, wrong)[votes]
    return L, y, accuracy


def test_majority_vote_probabilities_and_ties() -> None:
    L = np.array([[1, 1, 0], [0, 1, -1], [-1, -1, -1], [0, 0, -1]])
    voter = MajorityVoter(2).fit(L)
    assert voter.predict_proba(L).tolist() == [[0, 1], [0.5, 0.5], [0.5, 0.5], [1, 0]]
    assert voter.predict(L).tolist() == [1, -1, -1, 0]  # ties abstain by default
    random_ties = voter.predict(L, tie_policy="random")
    assert set(random_ties[[1, 2]]) <= {0, 1}
    assert np.array_equal(random_ties, voter.predict(L, tie_policy="random"))  # seeded
    assert voter.score(L, [1, 0, 0, 0], tie_policy="abstain") == 0.5  # abstain counts as wrong
    balanced = MajorityVoter(2).fit(L, class_balance=[0.2, 0.8])
    assert balanced.predict_proba(L)[2].tolist() == [0.2, 0.8]


def test_label_model_beats_majority_vote_on_dawid_skene_data() -> None:
    L, y, accuracy = synthetic(k=3)
    model = LabelModel(3).fit(L)
    majority = MajorityVoter(3).fit(L)
    assert model.score(L, y) > majority.score(L, y) + 0.01
    # The EM recovers each LF's accuracy.
    assert np.abs(model.lf_accuracies() - accuracy).max() < 0.05
    assert model.converged and model.n_iter < model.max_iter
    proba = model.predict_proba(L)
    assert proba.shape == (len(y), 3) and np.allclose(proba.sum(axis=1), 1)


def test_fit_is_deterministic_and_round_trips_through_json() -> None:
    L, y, _ = synthetic(seed=1)
    first = LabelModel(2).fit(L)
    second = LabelModel(2).fit(L)
    assert np.array_equal(first.predict_proba(L), second.predict_proba(L))
    stored = json.loads(json.dumps(first.to_dict()))
    restored = LabelModel.from_dict(stored)
    assert np.allclose(restored.predict_proba(L), first.predict_proba(L))
    assert isinstance(label_model_from_dict(stored), LabelModel)
    voter = label_model_from_dict(json.loads(json.dumps(MajorityVoter(2).fit(L).to_dict())))
    assert isinstance(voter, MajorityVoter) and voter.score(L, y) > 0.5


def test_class_balance_can_be_given_and_all_abstain_rows_follow_it() -> None:
    L, _, _ = synthetic(seed=2)
    model = LabelModel(2, abstain="missing").fit(L, class_balance=[0.3, 0.7])
    assert model.class_balance is not None and model.class_balance.tolist() == [0.3, 0.7]
    assert np.allclose(model.predict_proba(np.full((1, L.shape[1]), -1)), [[0.3, 0.7]])


@pytest.mark.parametrize("mode", ["uncovered", "informative", "missing"])
def test_every_abstain_mode_fits_bipolar_lfs(mode: str) -> None:
    L, y, _ = synthetic(seed=3)
    covered = (L != -1).any(axis=1)
    model = LabelModel(2, abstain=mode).fit(L)  # type: ignore[arg-type]
    assert model.score(L[covered], y[covered]) > 0.85


def test_bad_input_says_what_was_expected() -> None:
    L, _, _ = synthetic(n=50)
    with pytest.raises(LooplineError, match="not fitted"):
        LabelModel(2).predict_proba(L)
    with pytest.raises(LooplineError, match="summing to 1"):
        LabelModel(2).fit(L, class_balance=[0.5, 0.2])
    with pytest.raises(LooplineError, match="cardinality is 2"):
        LabelModel(2).fit(np.array([[2, -1]]))
    with pytest.raises(LooplineError, match="fitted on 6 LFs, L has 2"):
        LabelModel(2).fit(L).predict_proba(L[:, :2])
    with pytest.raises(LooplineError, match="tie_policy"):
        MajorityVoter(2).fit(L).predict(L, tie_policy="first")  # type: ignore[arg-type]
    with pytest.raises(LooplineError, match="expected a stored LabelModel"):
        LabelModel.from_dict({"kind": "Other"})
    with pytest.raises(LooplineError, match="2-d integer label matrix"):
        LabelModel(2).fit(np.zeros((3, 2)))


@pytest.fixture(scope="module")
def spam_matrices() -> dict[str, np.ndarray]:
    if not (SHARED / "spam_youtube").is_dir():
        pytest.skip("shared spam data not found")
    split = load_spam_split(SHARED / "spam_youtube")
    lfs = spam_lfs()
    out = {
        name: apply_lfs(getattr(split, name), lfs, LABEL_SET).L
        for name in ("train", "dev", "valid")
    }
    out |= {f"y_{name}": getattr(split, name)["label"].to_numpy() for name in ("dev", "valid")}
    return out


def test_label_model_beats_or_equals_majority_vote_on_spam(spam_matrices: dict) -> None:
    """Fit without labels on the training videos; judge on the dev sample and validation set."""
    m = spam_matrices
    model = LabelModel(2).fit(m["train"])
    majority = MajorityVoter(2).fit(m["train"])
    for name in ("dev", "valid"):
        ours = model.score(m[name], m[f"y_{name}"])
        baseline = majority.score(m[name], m[f"y_{name}"])
        assert ours >= baseline, (name, ours, baseline)
        assert ours >= 0.9
