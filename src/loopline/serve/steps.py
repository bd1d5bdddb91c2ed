"""The ready step of the serving stage: true labels that production sent back.

The feedback table changes outside any pipeline; its watermark is part of the step's
cache key, declared here so that no pipeline has to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext


def _feedback_state(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """Production labels arrive through /feedback: the feedback table is in the cache key."""
    from loopline.core.feedback import feedback_watermark

    return feedback_watermark(ctx.metadata, params["model_name"])


@step(dataset="production_labels", cache_extra=_feedback_state)
def production_labels(ctx: RunContext, *, model_name: str, target: str = "label") -> pd.DataFrame:
    """Served inputs of ``model_name`` whose true label came back through ``POST /feedback``:
    one row per request, the input columns under their own names, the label in ``target``
    and ``label_source="feedback"``."""
    import pandas as pd

    from loopline.core.feedback import LABEL_TRUE, join_feedback, read_feedback
    from loopline.core.predlog import INPUT_PREFIX, read_predictions

    assert ctx.settings.prediction_log_url
    served = read_predictions(ctx.settings.prediction_log_url, model_name)
    inputs = [c for c in served.columns if c.startswith(INPUT_PREFIX)]
    if served.empty or not inputs:
        columns = {c.removeprefix(INPUT_PREFIX): pd.Series(dtype="str") for c in inputs}
        empty = pd.DataFrame(
            {**columns, target: pd.Series(dtype="str"), "label_source": pd.Series(dtype="str")}
        )
        return empty if inputs else _empty_text(target)
    joined, _unmatched = join_feedback(served, read_feedback(ctx.metadata, model_name))
    # One row per request (a shadow copy shares its request's label).
    labelled = joined[joined[LABEL_TRUE].notna()].drop_duplicates("request_id")
    out = labelled[[*inputs, LABEL_TRUE]].rename(
        columns={**{c: c.removeprefix(INPUT_PREFIX) for c in inputs}, LABEL_TRUE: target}
    )
    return out.reset_index(drop=True).assign(label_source="feedback")


def _empty_text(target: str) -> pd.DataFrame:
    """Nothing served yet: an empty frame shaped like a text dataset."""
    import pandas as pd

    return pd.DataFrame(
        {
            "text": pd.Series(dtype="str"),
            target: pd.Series(dtype="str"),
            "label_source": pd.Series(dtype="str"),
        }
    )
