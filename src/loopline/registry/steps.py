"""Ready steps of the registry stage: the promotion gate and registration.

Both depend on the registry's state (the current champion), which changes outside any
pipeline; they declare it here (``cache_extra``), so pipelines never do. ``register``
returns a :class:`~loopline.core.lineage.ModelVersion`; the runner records its lineage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.lineage import ModelVersion
from loopline.core.step import step
from loopline.registry.models import CHAMPION, PREVIOUS

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from loopline.core.runner import RunContext
    from loopline.evaluate.gate import GateRules
    from loopline.registry.models import LoadedModel
    from loopline.train.model import Model


def _champion_state(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """Gate and register depend on the current champion: its model is part of their key.

    When the candidate itself is champion, the key is the one it had when it was promoted
    (the model it replaced, now ``previous``), so re-running an unchanged pipeline after a
    promotion is still a full cache hit.
    """
    name = params.get("model_name") or ""

    def model_of(version: str | None) -> str:
        if version is None:
            return "none"
        lineage = ctx.metadata.model_version(name, version)
        return lineage["model_hash"] if lineage else f"v{version}"

    champion = model_of(ctx.metadata.current_alias(name, CHAMPION))
    if champion == inputs.get("model"):
        return f"champion={model_of(ctx.metadata.current_alias(name, PREVIOUS))}"
    return f"champion={champion}"


@step(cache_extra=_champion_state)
def gate(
    model: Model,
    data: pd.DataFrame,
    metrics: dict[str, Any],
    ctx: RunContext,
    *,
    model_name: str,
    metric: str | None = None,
    min_value: float | None = None,
    min_improvement: float = 0.001,
    max_regression: float | None = None,
    k: int | list[int] | None = None,
) -> dict[str, Any]:
    """Decide whether the candidate may replace ``model_name``'s champion.

    ``metrics`` are the candidate's (from ``evaluate`` on ``data``); the champion is scored
    on the same ``data`` the same way. It passes when ``metric`` (default: macro-F1 for
    classifiers, RMSE for regressors; a dotted path reaches nested metrics) reaches
    ``min_value`` and beats the champion by at least ``min_improvement`` (in the metric's
    own direction; a retrain that is only as good never replaces the champion;
    ``max_regression=x`` is ``min_improvement=-x``). ``k`` as given to ``evaluate`` when
    the metric is one at k.
    """
    from loopline.evaluate.gate import GateRules, metric_value
    from loopline.evaluate.metrics import evaluate_model
    from loopline.train.model import as_model

    candidate = as_model(model)
    chosen = metric or ("macro_f1" if candidate.task == "classification" else "rmse")
    rules = GateRules(
        metric=chosen,
        min_value=min_value,
        min_improvement=-max_regression if max_regression is not None else min_improvement,
    )

    def score(champion: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "target": candidate.target or "",
            "features": champion.input_columns,
            "task": candidate.task,
            "k": k,
        }
        found = evaluate_model(champion.model, data, **options)
        if metric_value(found, chosen) is None:  # a metric outside the default set
            extra = evaluate_model(champion.model, data, metrics=[chosen.split(".")[0]], **options)
            found = {**found, **extra}
        return found

    return decide_against_champion(ctx, model_name, metrics, rules, score)


def decide_against_champion(
    ctx: RunContext,
    model_name: str,
    metrics: dict[str, Any],
    rules: GateRules,
    score: Callable[[LoadedModel], dict[str, Any]],
) -> dict[str, Any]:
    """The gate's decision for a candidate with ``metrics``: ``score`` gives the current
    champion's metrics on the same data (none when there is no champion yet). Shared by
    :func:`gate` and the detection gate, which score a model differently."""
    from loopline.evaluate.gate import decide
    from loopline.registry.project import open_registry

    champion_version = ctx.metadata.current_alias(model_name, CHAMPION)
    champion_metrics = None
    if champion_version is not None:
        champion = open_registry(ctx.settings, ctx.metadata).load(
            f"{model_name}/{champion_version}"
        )
        champion_metrics = score(champion)
    decision = decide(metrics, champion_metrics, rules).to_dict()
    decision["model_name"] = model_name
    decision["champion_version"] = champion_version
    return decision


@step(cache_extra=_champion_state)
def register(
    model: Model,
    decision: dict[str, Any] | None,
    example: pd.DataFrame,
    ctx: RunContext,
    *,
    reference: dict[str, Any] | None = None,
    model_name: str | None = None,
    experiment: str | None = None,
) -> ModelVersion:
    """Register the candidate in MLflow; move ``champion`` only if the gate passed.

    ``decision`` is the gate's (None: register without promoting); ``example`` rows give
    the MLflow signature and input example; ``reference`` is the model's reference profile
    for monitoring. A model whose recipe (training data, code and parameters) or content
    is already registered is not registered again: its version is reused.
    """
    from loopline.errors import LooplineError, ModelNotFound
    from loopline.registry.project import open_registry
    from loopline.train.model import as_model

    trained = as_model(model)
    name = model_name or (decision or {}).get("model_name")
    if not name:
        raise LooplineError(
            "register does not know the model's name",
            hint="pass model_name=..., or the decision of a gate that has one",
        )
    registry = open_registry(ctx.settings, ctx.metadata)
    model_hash = ctx.input_hash("model")
    recipe = ctx.recipe_of("model")
    existing = None
    known = ctx.metadata.version_by_recipe(name, recipe) if recipe else None
    if known is not None:
        try:
            existing = registry.resolve(f"{name}/{known}")
        except ModelNotFound:
            existing = None  # deleted from MLflow since: register it again
    if existing is None:
        existing = registry.find_version(name, "loopline.model_hash", model_hash)
    new = existing is None
    datasets = ctx.upstream_datasets("model")
    primary = max(datasets, key=lambda d: (d["rows"] or 0, d["name"]), default=None)
    if existing is None:
        saved = ctx.artifacts.local_folder(model_hash) / "model"
        passed = bool(decision and decision["passed"])
        existing = registry.register(
            trained,
            name=name,
            params=_params_of(trained),
            metrics=(decision or {}).get("candidate") or {},
            dataset_version=primary["label"] if primary else None,
            input_example=example[trained.features].head(5).reset_index(drop=True),
            saved_model=saved if (saved / "MLmodel").is_file() else None,
            experiment=experiment,
            tags={
                "loopline.model_hash": model_hash,
                "loopline.recipe": recipe or "",
                "loopline.datasets": ", ".join(d["label"] for d in datasets),
                "loopline.run_id": ctx.run_id,
                "loopline.gate": "none" if decision is None else "passed" if passed else "failed",
            },
        )
    champion = ctx.metadata.current_alias(name, CHAMPION)
    promoted = bool(decision and decision["passed"]) and champion != existing.version
    reasons = list((decision or {}).get("reasons") or [])
    if promoted:
        assert decision is not None
        why = {
            "actor": "loopline run",
            "run_id": ctx.run_id,
            "reason": "gate passed: " + "; ".join(decision["reasons"]),
        }
        # The gate compared with the champion of its time: if another run or user promoted
        # a version since, this candidate has not been compared with that one. (A decision
        # that does not say which champion it beat promotes as it is.)
        beaten = decision.get("champion_version")
        if "champion_version" in decision:
            promoted = registry.promote_if(name, existing.version, beaten, **why)
        else:
            registry.promote(name, existing.version, **why)
        if not promoted:
            now = ctx.metadata.current_alias(name, CHAMPION)
            reasons.append(
                f"not promoted: version {now} became champion after the gate compared with "
                f"{'no champion' if beaten is None else f'version {beaten}'}; run again to "
                "compare with it"
            )
    return ModelVersion(
        name=name,
        version=existing.version,
        promoted=promoted,
        champion=ctx.metadata.current_alias(name, CHAMPION),
        mlflow_run_id=existing.run_id,
        dataset_version=primary["label"] if primary else None,
        new=new,
        reasons=reasons,
    )


def _params_of(model: Model) -> dict[str, Any]:
    """What MLflow shows as the run's parameters: the estimator and its settings."""
    estimator = model.estimator
    params: dict[str, Any] = {
        "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        "features": ", ".join(model.features),
        "target": model.target,
        "task": model.task,
    }
    get_params = getattr(estimator, "get_params", None)
    if callable(get_params):
        params.update({k: v for k, v in get_params(deep=False).items() if not k.startswith("_")})
    return params
