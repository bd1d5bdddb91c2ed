"""Label models: combine the votes of labeling functions into probabilistic labels.

:class:`MajorityVoter` is the baseline. :class:`LabelModel` is a Dawid-Skene model fitted by
expectation-maximisation (EM), with no gold labels:

- every item has a hidden true class ``y`` drawn from the class balance ``pi``;
- every LF ``j`` emits an outcome from ``{abstain, 0, ..., k-1}`` according to its own
  confusion matrix ``theta_j[y, outcome]``, independently of the other LFs given ``y``.

How abstains count (``abstain=``) is the design choice that matters most with real LFs, which
are mostly *unipolar* (a spam LF only ever votes spam) and catch *different* cases of the same
class (one spam comment has a link, another says "check out my channel"):

- ``"uncovered"`` (default): the confusion matrices include the abstain outcome (so each LF's
  firing rate per class is learnt), but an LF's silence counts as evidence only on rows where
  *no* LF voted. On a covered row, the silence of the other spam LFs says nothing, because
  same-class LFs are complementary rather than independent; on a row nobody covers, the
  silence of all of them is real evidence (mostly "not spam").
- ``"informative"``: classic Dawid-Skene, every abstain is evidence. Under-complementary LFs
  this lets the largest LF define the class: e.g. link-only spam is "explained" as ham
  because the check-out LF is silent on it.
- ``"missing"``: abstains are ignored everywhere (the crowd-worker treatment). Fine for LFs
  that vote several classes; with unipolar LFs it is not identifiable.

Each confusion row has a Dirichlet prior that expects votes to be right more often than not,
which keeps EM away from the label-swapped solution and smooths LFs with few votes. The class
balance is taken as given, or estimated from the votes (the average majority-vote share of
the covered rows): estimating it inside EM drifts with correlated LFs (``estimate_balance=
"em"`` does it anyway). EM starts from the majority vote and runs on the distinct rows of
``L`` only (label matrices repeat a lot), so a fit takes milliseconds. It is deterministic.

Both models share an sklearn-like API::

    model = LabelModel(cardinality=2).fit(L_train)
    proba = model.predict_proba(L_train)          # (n, k) probabilistic labels
    y = model.predict(L_train, tie_policy="abstain")
    model.score(L_dev, Y_dev)                     # accuracy
    LabelModel.from_dict(json.loads(json.dumps(model.to_dict())))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from loopline.errors import LooplineError

__all__ = ["LabelModel", "MajorityVoter", "label_model_from_dict"]

ABSTAIN = -1
TiePolicy = Literal["abstain", "random"]
AbstainMode = Literal["uncovered", "informative", "missing"]
BalanceMode = Literal["votes", "em"]
_TIE_TOL = 1e-9
_FORMAT = 1


def _as_matrix(L: Any) -> np.ndarray:
    """Accept a label matrix or an :class:`~loopline.label.lf.LabelMatrixResult`."""
    matrix = np.asarray(getattr(L, "L", L))
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.integer):
        raise LooplineError(
            f"expected a 2-d integer label matrix, found shape {matrix.shape} of {matrix.dtype}",
            hint="pass apply_lfs(...).L (class indices, -1 = abstain)",
        )
    if matrix.size and matrix.min() < ABSTAIN:
        raise LooplineError(
            f"label matrix values must be -1 (abstain) or class indices, found {matrix.min()}"
        )
    return matrix.astype(np.int64, copy=False)


def _infer_cardinality(L: Any, matrix: np.ndarray, given: int | None) -> int:
    if given is not None:
        k = given
    elif getattr(L, "label_set", None) is not None:
        k = len(L.label_set)
    else:
        k = max(int(matrix.max()) + 1 if matrix.size else 0, 2)
    if k < 2:
        raise LooplineError(f"cardinality must be at least 2, found {k}")
    if matrix.size and matrix.max() >= k:
        raise LooplineError(
            f"label matrix holds class {int(matrix.max())} but cardinality is {k}",
            hint="pass cardinality=len(label_set)",
        )
    return k


def _check_balance(class_balance: Sequence[float] | np.ndarray | None, k: int) -> np.ndarray | None:
    if class_balance is None:
        return None
    balance = np.asarray(class_balance, dtype=np.float64)
    if balance.shape != (k,) or (balance <= 0).any() or not np.isclose(balance.sum(), 1.0):
        raise LooplineError(
            f"class_balance must be {k} positive probabilities summing to 1, "
            f"found {balance.tolist()}",
            hint="e.g. class_balance=[0.5, 0.5], or leave it out to estimate it",
        )
    return balance


def _ties_to_labels(proba: np.ndarray, tie_policy: TiePolicy, seed: int) -> np.ndarray:
    """Argmax per row; rows whose top probabilities tie abstain or get a seeded random pick."""
    if tie_policy not in ("abstain", "random"):
        raise LooplineError(
            f"tie_policy must be 'abstain' or 'random', found {tie_policy!r}",
        )
    top = proba.max(axis=1, keepdims=True)
    tied = proba >= top - _TIE_TOL
    labels = proba.argmax(axis=1).astype(np.int64)
    multi = tied.sum(axis=1) > 1
    if not multi.any():
        return labels
    if tie_policy == "abstain":
        labels[multi] = ABSTAIN
        return labels
    rng = np.random.default_rng(seed)
    noise = rng.random(proba.shape)
    labels[multi] = np.where(tied[multi], noise[multi], -1.0).argmax(axis=1)
    return labels


class _Base:
    """Shared predict / score / checks for the label models."""

    cardinality: int | None
    seed: int = 0

    def predict_proba(self, L: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def _require_fit(self) -> int:
        if self.cardinality is None or not getattr(self, "_fitted", False):
            raise LooplineError(f"{type(self).__name__} is not fitted", hint="call .fit(L) first")
        return self.cardinality

    def predict(
        self, L: Any, tie_policy: TiePolicy = "abstain", seed: int | None = None
    ) -> np.ndarray:
        """Most probable class per row; ties abstain (-1) or are broken at random (seeded)."""
        return _ties_to_labels(
            self.predict_proba(L), tie_policy, self.seed if seed is None else seed
        )

    def score(
        self,
        L: Any,
        Y: Sequence[int] | np.ndarray,
        tie_policy: TiePolicy = "random",
        seed: int | None = None,
    ) -> float:
        """Accuracy on the rows with a gold label (``Y != -1``); an abstained prediction counts
        as wrong, so ``tie_policy="abstain"`` never flatters a model."""
        gold = np.asarray(Y).astype(np.int64)
        matrix = _as_matrix(L)
        if gold.shape != (matrix.shape[0],):
            raise LooplineError(
                f"Y must hold one label per row of L ({matrix.shape[0]}), found shape {gold.shape}"
            )
        known = gold != ABSTAIN
        if not known.any():
            raise LooplineError("Y has no gold labels (all -1)", hint="pass labelled rows")
        pred = self.predict(matrix, tie_policy=tie_policy, seed=seed)
        return float((pred[known] == gold[known]).mean())


class MajorityVoter(_Base):
    """The baseline: each row's label is the class most LFs voted for.

    Rows where no LF votes get the class balance (uniform unless given to :meth:`fit`);
    ties share the probability equally among the tied classes.
    """

    def __init__(self, cardinality: int | None = None) -> None:
        self.cardinality = cardinality
        self.class_balance: np.ndarray | None = None
        self._fitted = False

    def fit(
        self,
        L: Any,
        class_balance: Sequence[float] | np.ndarray | None = None,
        seed: int = 0,
    ) -> MajorityVoter:
        """Record the cardinality and the class balance for uncovered rows (nothing to learn)."""
        matrix = _as_matrix(L)
        self.cardinality = _infer_cardinality(L, matrix, self.cardinality)
        balance = _check_balance(class_balance, self.cardinality)
        self.class_balance = (
            balance if balance is not None else np.full(self.cardinality, 1.0 / self.cardinality)
        )
        self.seed = seed
        self._fitted = True
        return self

    def predict_proba(self, L: Any) -> np.ndarray:
        """One-hot of the majority class per row, split evenly on ties."""
        k = self._require_fit()
        matrix = _as_matrix(L)
        counts = np.stack([(matrix == c).sum(axis=1) for c in range(k)], axis=1).astype(float)
        top = counts.max(axis=1, keepdims=True)
        winners = (counts == top) & (top > 0)
        proba = winners / np.maximum(winners.sum(axis=1, keepdims=True), 1)
        assert self.class_balance is not None
        proba[top[:, 0] == 0] = self.class_balance
        return proba

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        self._require_fit()
        assert self.class_balance is not None
        return {
            "kind": "MajorityVoter",
            "format": _FORMAT,
            "cardinality": self.cardinality,
            "class_balance": self.class_balance.tolist(),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MajorityVoter:
        """Rebuild a fitted voter from :meth:`to_dict` output."""
        _check_kind(data, "MajorityVoter")
        voter = cls(int(data["cardinality"]))
        voter.class_balance = _check_balance(data["class_balance"], int(data["cardinality"]))
        voter.seed = int(data.get("seed", 0))
        voter._fitted = True
        return voter


@dataclass(frozen=True)
class _Patterns:
    """The distinct rows of a label matrix, as outcome codes (0 = abstain, 1 + class)."""

    outcomes: np.ndarray  # (u, m) int
    counts: np.ndarray  # (u,) how many rows share each pattern
    inverse: np.ndarray  # (n,) pattern of each row

    @classmethod
    def of(cls, matrix: np.ndarray) -> _Patterns:
        if matrix.shape[0] == 0:
            empty = np.zeros((0, matrix.shape[1]), dtype=np.int64)
            return cls(empty, np.zeros(0), np.zeros(0, dtype=np.int64))
        k1 = int(matrix.max()) + 2  # outcomes per LF: abstain + classes
        m = matrix.shape[1]
        if m * np.log2(k1) < 62:
            # Rows as base-k1 integers: a 1-d unique is much faster than np.unique(axis=0).
            keys = (matrix + 1) @ (k1 ** np.arange(m, dtype=np.int64))
            _, first, inverse, counts = np.unique(
                keys, return_index=True, return_inverse=True, return_counts=True
            )
            unique = matrix[first]
        else:
            unique, inverse, counts = np.unique(
                matrix, axis=0, return_inverse=True, return_counts=True
            )
        return cls(unique + 1, counts.astype(np.float64), inverse.reshape(-1))


class LabelModel(_Base):
    """A Dawid-Skene label model fitted by EM (see the module docstring).

    Parameters:
        cardinality: number of classes ``k`` (inferred from ``L`` or its label set if None).
        abstain: ``"uncovered"``, ``"informative"`` or ``"missing"``: when an LF's silence
            counts as evidence (see the module docstring).
        prior_strength: pseudo-votes of the Dirichlet prior on each confusion row; larger
            pulls LFs with few votes harder towards the prior accuracy.
        prior_accuracy: the accuracy the prior expects of a vote (spread over the wrong
            classes for the rest).
        max_iter, tol: EM stops after ``max_iter`` rounds or when no parameter moves by
            more than ``tol``.
        estimate_balance: how :meth:`fit` estimates the class balance when none is given:
            ``"votes"`` (average majority-vote share of covered rows) or ``"em"``.
    """

    def __init__(
        self,
        cardinality: int | None = None,
        *,
        abstain: AbstainMode = "uncovered",
        prior_strength: float = 2.0,
        prior_accuracy: float = 0.7,
        max_iter: int = 200,
        tol: float = 1e-6,
        estimate_balance: BalanceMode = "votes",
    ) -> None:
        if abstain not in ("uncovered", "informative", "missing"):
            raise LooplineError(
                f"abstain must be 'uncovered', 'informative' or 'missing', found {abstain!r}"
            )
        if estimate_balance not in ("votes", "em"):
            raise LooplineError(
                f"estimate_balance must be 'votes' or 'em', found {estimate_balance!r}"
            )
        if not 0.0 < prior_accuracy < 1.0 or prior_strength < 0:
            raise LooplineError(
                "prior_accuracy must lie in (0, 1) and prior_strength be >= 0, found "
                f"{prior_accuracy} and {prior_strength}"
            )
        self.cardinality = cardinality
        self.abstain: AbstainMode = abstain
        self.prior_strength = float(prior_strength)
        self.prior_accuracy = float(prior_accuracy)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.estimate_balance: BalanceMode = estimate_balance
        self.class_balance: np.ndarray | None = None
        self.confusions: np.ndarray | None = None  # (m, k, k+1): P(outcome | class) per LF
        self.n_iter = 0
        self.converged = False
        self._fitted = False

    # ----------------------------------------------------------------------- fitting
    def fit(
        self,
        L: Any,
        class_balance: Sequence[float] | np.ndarray | None = None,
        seed: int = 0,
    ) -> LabelModel:
        """Fit the LF confusion matrices (and the class balance unless given) by EM.

        ``class_balance`` (k probabilities) fixes the class prior, e.g. the label shares of a
        gold dev set; without it the prior is estimated (see ``estimate_balance``).
        ``seed`` only seeds random tie-breaking in :meth:`predict`; EM is deterministic.
        """
        matrix = _as_matrix(L)
        k = _infer_cardinality(L, matrix, self.cardinality)
        fixed_balance = _check_balance(class_balance, k)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise LooplineError(
                f"cannot fit a label model on an empty label matrix (shape {matrix.shape})"
            )
        self.cardinality, self.seed = k, seed
        patterns = _Patterns.of(matrix)
        prior = self._prior(matrix.shape[1], k)
        onehot = np.eye(k + 1)[patterns.outcomes]  # (u, m, k+1)

        posterior = _majority_posterior(patterns.outcomes, k)
        if fixed_balance is None and self.estimate_balance == "votes":
            fixed_balance = _vote_balance(posterior, patterns)
        balance = fixed_balance if fixed_balance is not None else np.full(k, 1.0 / k)
        confusions = np.zeros((matrix.shape[1], k, k + 1))
        self.converged = False
        for iteration in range(1, self.max_iter + 1):
            new_conf, new_balance = self._m_step(posterior, patterns.counts, onehot, prior)
            if fixed_balance is not None:
                new_balance = fixed_balance
            moved = max(
                float(np.abs(new_conf - confusions).max()),
                float(np.abs(new_balance - balance).max()),
            )
            confusions, balance = new_conf, new_balance
            posterior = self._posterior(patterns.outcomes, confusions, balance)
            self.n_iter = iteration
            if moved < self.tol:
                self.converged = True
                break
        self.confusions, self.class_balance = confusions, balance
        self._fitted = True
        return self

    def _prior(self, m: int, k: int) -> np.ndarray:
        """Dirichlet pseudo-counts (m, k, k+1): a vote is right with ``prior_accuracy``.

        The abstain outcome gets one share as well, so that an LF with no votes at all for
        a class keeps a finite, neutral likelihood.
        """
        s, acc = self.prior_strength, self.prior_accuracy
        row = np.full(k + 1, s * (1 - acc) / max(k - 1, 1))
        prior = np.broadcast_to(row, (m, k, k + 1)).copy()
        for c in range(k):
            prior[:, c, c + 1] = s * acc
        prior[:, :, 0] = s
        return prior

    def _m_step(
        self,
        posterior: np.ndarray,
        counts: np.ndarray,
        onehot: np.ndarray,
        prior: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        weighted = posterior * counts[:, None]  # (u, k): expected rows per pattern and class
        expected = np.einsum("uc,ujo->jco", weighted, onehot) + prior
        if self.abstain == "missing":
            expected[:, :, 0] = 0.0  # the vote distribution given that the LF voted
        confusions = expected / expected.sum(axis=2, keepdims=True)
        # A flat Dirichlet(2) prior on the balance keeps a rare class from collapsing to 0.
        balance = weighted.sum(axis=0) + 1.0
        return confusions, balance / balance.sum()

    def _posterior(
        self, outcomes: np.ndarray, confusions: np.ndarray, balance: np.ndarray
    ) -> np.ndarray:
        """P(class | outcomes) for each row of ``outcomes`` (u, m)."""
        with np.errstate(divide="ignore"):
            log_conf = np.log(confusions)  # (m, k, k+1)
        m = outcomes.shape[1]
        # log P(outcomes | c) = sum_j log theta_j[c, outcome_j], less the abstains that are
        # not evidence under the chosen abstain mode
        per_lf = log_conf[np.arange(m)[None, :], :, outcomes]  # (u, m, k)
        silent = outcomes == 0
        if self.abstain == "missing":
            per_lf[silent] = 0.0
        elif self.abstain == "uncovered":
            per_lf[silent & ~silent.all(axis=1, keepdims=True)] = 0.0
        logits = per_lf.sum(axis=1) + np.log(balance)[None, :]
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    # ----------------------------------------------------------------------- inference
    def predict_proba(self, L: Any) -> np.ndarray:
        """P(class | LF votes) for every row of ``L`` (n, k)."""
        k = self._require_fit()
        assert self.confusions is not None and self.class_balance is not None
        matrix = _as_matrix(L)
        if matrix.shape[1] != self.confusions.shape[0]:
            raise LooplineError(
                f"the model was fitted on {self.confusions.shape[0]} LFs, L has {matrix.shape[1]}",
                hint="apply the same LFs, in the same order, as for fitting",
            )
        if matrix.size and matrix.max() >= k:
            raise LooplineError(f"L holds class {int(matrix.max())}, the model has {k} classes")
        if matrix.shape[0] == 0:
            return np.zeros((0, k))
        patterns = _Patterns.of(matrix)
        proba = self._posterior(patterns.outcomes, self.confusions, self.class_balance)
        return proba[patterns.inverse]

    def lf_accuracies(self) -> np.ndarray:
        """Estimated accuracy of each LF when it votes: P(vote = y | LF votes)."""
        self._require_fit()
        assert self.confusions is not None and self.class_balance is not None
        voted = self.confusions[:, :, 1:]  # (m, k, k)
        joint = voted * self.class_balance[None, :, None]
        correct = np.einsum("jcc->j", joint)
        return correct / np.maximum(joint.sum(axis=(1, 2)), 1e-12)

    # ----------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters and settings of the fitted model."""
        self._require_fit()
        assert self.confusions is not None and self.class_balance is not None
        return {
            "kind": "LabelModel",
            "format": _FORMAT,
            "cardinality": self.cardinality,
            "abstain": self.abstain,
            "prior_strength": self.prior_strength,
            "prior_accuracy": self.prior_accuracy,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "estimate_balance": self.estimate_balance,
            "class_balance": self.class_balance.tolist(),
            "confusions": self.confusions.tolist(),
            "n_iter": self.n_iter,
            "converged": self.converged,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelModel:
        """Rebuild a fitted model from :meth:`to_dict` output."""
        _check_kind(data, "LabelModel")
        k = int(data["cardinality"])
        model = cls(
            k,
            abstain=data.get("abstain", "uncovered"),
            prior_strength=float(data.get("prior_strength", 2.0)),
            prior_accuracy=float(data.get("prior_accuracy", 0.7)),
            max_iter=int(data.get("max_iter", 200)),
            tol=float(data.get("tol", 1e-6)),
            estimate_balance=data.get("estimate_balance", "votes"),
        )
        confusions = np.asarray(data["confusions"], dtype=np.float64)
        if confusions.ndim != 3 or confusions.shape[1:] != (k, k + 1):
            raise LooplineError(
                f"stored confusions have shape {confusions.shape}, expected (n_lfs, {k}, {k + 1})"
            )
        model.confusions = confusions
        model.class_balance = _check_balance(data["class_balance"], k)
        model.n_iter = int(data.get("n_iter", 0))
        model.converged = bool(data.get("converged", False))
        model.seed = int(data.get("seed", 0))
        model._fitted = True
        return model


def _majority_posterior(outcomes: np.ndarray, k: int) -> np.ndarray:
    """EM's starting point: each pattern's vote shares, uniform where nobody votes."""
    counts = np.stack([(outcomes == c + 1).sum(axis=1) for c in range(k)], axis=1).astype(float)
    total = counts.sum(axis=1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1), 1.0 / k)


def _vote_balance(posterior: np.ndarray, patterns: _Patterns) -> np.ndarray:
    """Class balance from the votes: the average majority-vote share over covered rows.

    Laplace-smoothed so that no class gets probability 0; uniform when nothing is covered.
    """
    covered = (patterns.outcomes > 0).any(axis=1)
    weights = patterns.counts * covered
    k = posterior.shape[1]
    shares = (posterior * weights[:, None]).sum(axis=0) + 1.0
    return shares / (weights.sum() + k)


def _check_kind(data: dict[str, Any], kind: str) -> None:
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise LooplineError(
            f"expected a stored {kind}, found {found!r}",
            hint="pass the dict that to_dict() produced",
        )
    if int(data.get("format", _FORMAT)) > _FORMAT:
        raise LooplineError(
            f"stored {kind} has format {data['format']}, this Loopline reads up to {_FORMAT}",
            hint="upgrade Loopline",
        )


def label_model_from_dict(data: dict[str, Any]) -> LabelModel | MajorityVoter:
    """Rebuild whichever model :meth:`to_dict` stored."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "MajorityVoter":
        return MajorityVoter.from_dict(data)
    return LabelModel.from_dict(data)
