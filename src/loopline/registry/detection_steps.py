"""The promotion gate of detection models: the candidate's mAP against the champion's.

The rules and the decision are the gate's own (:mod:`loopline.evaluate.gate`); what differs
from :func:`~loopline.registry.steps.gate` is how the champion is scored on the same data:
COCO mAP on a detection table instead of metrics on a DataFrame of features. The decision
goes to :func:`~loopline.registry.steps.register` like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.step import step
from loopline.registry.steps import _champion_state, decide_against_champion

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext
    from loopline.train.model import Model

__all__ = ["gate_detector"]


@step(cache_extra=_champion_state)
def gate_detector(
    model: Model,
    data: pd.DataFrame,
    metrics: dict[str, Any],
    ctx: RunContext,
    *,
    model_name: str,
    metric: str = "map50",
    min_value: float | None = None,
    min_improvement: float = 0.001,
    max_regression: float | None = None,
) -> dict[str, Any]:
    """Decide whether the detection ``model`` may replace ``model_name``'s champion.

    ``metrics`` are the candidate's (``evaluate_detector`` on ``data``); the champion is
    scored on the same ``data``. It passes when ``metric`` (``map50``, ``map50_95``,
    ``map75`` or ``ap50_per_class.<name>``) reaches ``min_value`` and beats the champion's
    by ``min_improvement`` (``max_regression=x`` tolerates a drop of x instead).
    """
    from loopline.evaluate.detection import evaluate_detector
    from loopline.evaluate.gate import GateRules

    rules = GateRules(
        metric=metric,
        min_value=min_value,
        min_improvement=-max_regression if max_regression is not None else min_improvement,
        greater_is_better=True,
    )
    return decide_against_champion(
        ctx, model_name, metrics, rules, lambda champion: evaluate_detector(champion.model, data)
    )
