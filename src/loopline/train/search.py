"""Hyperparameter search with Optuna: trials in parallel as Ray tasks on the Ray executor.

:func:`search_model` tries settings of an estimator drawn by Optuna's TPE sampler, scores
each by cross-validation on the training data (scikit-learn's ``cross_val_score``), and
refits the best on all of it. The trials are asked for in rounds of ``batch`` and told back
in order, so the sampler sees the same history however the trials of a round run:
sequentially in this process, or at once as Ray tasks when the search itself runs inside a
Ray task (a step on the Ray executor). With a seed, both give the same trials, the same
scores and the same best settings.

Optuna (``pip install 'loopline[search]'``) and Ray are imported only when used.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from loopline.errors import DataError, LooplineError

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from loopline.train.model import Model

__all__ = ["SearchResult", "search_model"]

Task = Literal["auto", "classification", "regression"]
_SPACE_HINT = (
    'e.g. {"C": {"low": 0.01, "high": 100, "log": true}, "max_depth": {"low": 2, "high": 8}, '
    '"criterion": ["gini", "entropy"]}: a list to choose from, or low/high (integers when both '
    "are integers; log and step optional)"
)


@dataclass(frozen=True)
class SearchResult:
    """The refitted best model and every trial (number, params, score), best first."""

    model: Model
    trials: pd.DataFrame
    best_params: dict[str, Any]
    best_score: float
    scoring: str
    parallel: Literal["ray", "sequential"]


def search_model(
    data: pd.DataFrame,
    estimator: Any,
    space: Mapping[str, Any],
    *,
    target: str,
    features: Sequence[str] | None = None,
    task: Task = "auto",
    trials: int = 20,
    batch: int = 4,
    scoring: str | None = None,
    cv: int = 3,
    seed: int = 0,
) -> SearchResult:
    """Search ``space`` for the settings of ``estimator`` that score best; refit the best.

    ``space`` maps each parameter (``set_params`` names, e.g. ``"clf__C"`` inside a
    pipeline) to a list of choices or to ``{"low", "high", "log", "step"}``. Each of the
    ``trials`` is scored by ``cv``-fold cross-validation on ``data`` with scikit-learn's
    ``scoring`` (default ``f1_macro`` for classifiers, ``neg_root_mean_squared_error`` for
    regressors; higher is better). Trials come in rounds of ``batch``: they run as Ray tasks
    when this runs inside a Ray task, else one after another; the result is the same.
    """
    import numpy as np
    from sklearn.base import clone

    from loopline.train.model import _check_columns, _task, fit_model

    optuna = _optuna()
    if trials < 1 or batch < 1 or cv < 2:
        raise LooplineError(
            f"search needs trials >= 1, batch >= 1 and cv >= 2; found trials={trials}, "
            f"batch={batch}, cv={cv}",
            hint="e.g. trials=20, batch=4, cv=3",
        )
    distributions = _distributions(space)
    _check_names(estimator, distributions)
    chosen_features = _check_columns(data, features, target, None)
    chosen_task = _task(estimator, data[target]) if task == "auto" else task
    if chosen_task != "classification" and chosen_task != "regression":
        raise LooplineError(
            f"search tunes classifiers and regressors, not {chosen_task} models",
            hint="train this model with the train step",
        )
    chosen_scoring = scoring or (
        "f1_macro" if chosen_task == "classification" else "neg_root_mean_squared_error"
    )
    _check_scoring(chosen_scoring)
    # The labels as given (not as text, as the final fit sees them): scorers such as
    # average_precision look for the positive label 1.
    X, y = data[chosen_features], data[target]
    if y.isna().any():
        raise DataError(
            f"{int(y.isna().sum())} of {len(data)} rows have no {target!r}",
            hint="drop or label them before the search",
        )
    folds = _folds(chosen_task, cv, seed)
    ray = _ray_inside_task()
    shared = (ray.put(X), ray.put(y)) if ray is not None else (X, y)
    remote = ray.remote(_cross_validate) if ray is not None else None
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    while len(study.trials) < trials:
        asked = [study.ask(distributions) for _ in range(min(batch, trials - len(study.trials)))]
        candidates = [clone(estimator).set_params(**t.params) for t in asked]
        if remote is not None:
            scores = ray.get([remote.remote(c, *shared, chosen_scoring, folds) for c in candidates])
        else:
            scores = [_cross_validate(c, X, y, chosen_scoring, folds) for c in candidates]
        for trial, score in zip(asked, scores, strict=True):
            if math.isfinite(score):
                study.tell(trial, score)
            else:  # e.g. a setting the estimator rejects on some fold: not a candidate
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    finished = [t for t in study.trials if t.value is not None]
    if not finished:
        raise DataError(
            f"none of the {trials} trials could be scored with {chosen_scoring!r}",
            hint="check the search space against the estimator's parameters and the data",
        )
    best = max(finished, key=lambda t: (t.value, -t.number))
    model = fit_model(
        data,
        clone(estimator).set_params(**best.params),
        features=chosen_features,
        target=target,
        task=chosen_task,
    )
    import pandas as pd

    table = pd.DataFrame(
        [
            {
                "number": t.number,
                "score": np.nan if t.value is None else float(t.value),
                **{f"param.{k}": v for k, v in t.params.items()},
            }
            for t in study.trials
        ]
    )
    table = table.sort_values(["score", "number"], ascending=[False, True], na_position="last")
    return SearchResult(
        model=model,
        trials=table.reset_index(drop=True),
        best_params=dict(best.params),
        best_score=float(best.value),
        scoring=chosen_scoring,
        parallel="ray" if ray is not None else "sequential",
    )


def _cross_validate(estimator: Any, X: Any, y: Any, scoring: str, folds: Any) -> float:
    """One trial: the mean cross-validated score (NaN where a fold could not be fitted)."""
    from sklearn.model_selection import cross_val_score

    scores = cross_val_score(estimator, X, y, scoring=scoring, cv=folds, error_score=float("nan"))
    return float(scores.mean())


def _check_names(estimator: Any, distributions: Mapping[str, Any]) -> None:
    """Every searched parameter is one of the estimator's (``set_params`` names)."""
    import difflib

    known = list(estimator.get_params(deep=True)) if hasattr(estimator, "get_params") else []
    for name in distributions:
        if name not in known:
            # A pipeline's step parameters are "<step>__<name>": "C" means "clf__C".
            nested = [k for k in known if k.endswith(f"__{name}")]
            close = nested or difflib.get_close_matches(name, known, n=1)
            raise LooplineError(
                f"{type(estimator).__name__} has no parameter {name!r} to search",
                hint=f"did you mean {close[0]!r}?" if close else "see its get_params() for names",
            )


def _check_scoring(scoring: str) -> None:
    from sklearn.metrics import get_scorer

    try:
        get_scorer(scoring)
    except ValueError:
        raise LooplineError(
            f"unknown scoring {scoring!r}",
            hint="a scikit-learn scorer name (sklearn.metrics.get_scorer_names()), e.g. "
            "f1_macro, roc_auc, average_precision, neg_root_mean_squared_error",
        ) from None


def _folds(task: str, cv: int, seed: int) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold

    if task == "classification":
        return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return KFold(n_splits=cv, shuffle=True, random_state=seed)


def _distributions(space: Mapping[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The search space in Optuna's terms; a clear error for anything else."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if not isinstance(space, Mapping) or not space:
        raise LooplineError("the search space is empty", hint=_SPACE_HINT)
    found: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list | tuple):
            if not spec:
                raise LooplineError(f"search space {name!r} has no choices", hint=_SPACE_HINT)
            found[name] = CategoricalDistribution(list(spec))
            continue
        if not isinstance(spec, Mapping) or not {"low", "high"} <= set(spec):
            raise LooplineError(
                f"search space {name!r} must be a list of choices or low/high; found {spec!r}",
                hint=_SPACE_HINT,
            )
        unknown = sorted(set(spec) - {"low", "high", "log", "step"})
        if unknown:
            raise LooplineError(
                f"search space {name!r} has unknown keys {unknown}", hint=_SPACE_HINT
            )
        low, high = spec["low"], spec["high"]
        try:
            if isinstance(low, int) and isinstance(high, int):
                found[name] = IntDistribution(
                    low, high, log=bool(spec.get("log", False)), step=int(spec.get("step", 1))
                )
            else:
                found[name] = FloatDistribution(
                    float(low), float(high), log=bool(spec.get("log", False)), step=spec.get("step")
                )
        except (TypeError, ValueError) as exc:
            raise LooplineError(f"search space {name!r}: {exc}", hint=_SPACE_HINT) from None
    return found


def _optuna() -> Any:
    try:
        import optuna
    except ModuleNotFoundError:
        raise LooplineError(
            "hyperparameter search needs Optuna, which is not installed",
            hint="pip install 'loopline[search]'",
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _ray_inside_task() -> Any:
    """The ``ray`` module when this code runs inside a Ray task (a step on the Ray
    executor), else None. Ray is never imported here: a Ray worker has imported it."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray if ray.get_runtime_context().worker.mode == ray.WORKER_MODE else None
