"""Ready steps of the label stage: people's labels, weak labels, and the noise audit.

``human_labels`` reads the review queue, which changes outside any pipeline: its annotation
watermark is part of the step's cache key, declared here so that no pipeline has to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext
    from loopline.label.lf import LabelingFunction


def _queue_state(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """Human labels live in the review queue: its annotations are part of the cache key.

    A cheap fingerprint of the queue's annotations (their count, last id and time), which
    changes whenever a label is added, replaced or undone. It runs on every run, cached or
    not, so it imports only SQLAlchemy: the queue module's pandas import cost a fully
    cached run 0.5 s.
    """
    import sqlalchemy as sa

    from loopline.core import schema

    queue = params["queue"]
    ann, tasks = schema.label_annotations, schema.label_tasks
    query = (
        sa.select(sa.func.count(ann.c.id), sa.func.max(ann.c.id), sa.func.max(ann.c.created_at))
        .select_from(ann.join(tasks, ann.c.task_id == tasks.c.id))
        .where(tasks.c.queue == queue)
    )
    with ctx.metadata.engine.connect() as conn:
        count, last_id, last_time = conn.execute(query).one()
    return f"{queue}:{count}:{last_id}:{last_time}"


@step(dataset="human_labels", cache_extra=_queue_state)
def human_labels(ctx: RunContext, *, queue: str) -> pd.DataFrame:
    """The labels people gave in the review queue ``queue`` (empty until someone labels)."""
    from loopline.label.queue import load_human_labels

    return load_human_labels(ctx.metadata, queue)


@step(outputs=("labelled", "report"))
def label(
    data: pd.DataFrame,
    human: pd.DataFrame | None = None,
    production: pd.DataFrame | None = None,
    *,
    labels: list[str],
    lfs: list[LabelingFunction] | None = None,
    given: Literal["keep", "dev"] = "keep",
    dev_rows: int = 2_000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label the ``text`` rows: given labels, then a label model over ``lfs`` for the gaps,
    then ``human`` labels from the review queue override both.

    ``production`` rows (true labels sent back by the server) join the data first.
    ``given="dev"`` is weak supervision: the data's own labels only measure the LFs on
    ``dev_rows`` of them, and the label model labels every row. ``lfs`` defaults to the
    emoticon and VADER LFs. Returns the labelled frame (with ``label_source``, ``lfs`` and
    ``sample_weight`` columns) and a report with the LF analysis.
    """
    import pandas as pd

    from loopline.label.stage import DEFAULT_TEXT_LFS, label_texts

    combined = data
    if production is not None and len(production):
        combined = pd.concat([data, production], ignore_index=True)
    return label_texts(
        combined,
        labels,
        human=human,
        lfs=DEFAULT_TEXT_LFS if lfs is None else lfs,
        dev_rows=dev_rows,
        seed=seed,
        keep_given=given == "keep",
    )


# Cross-validating a text model holds the GIL: a child process keeps it off train's back.
@step(executor="processes")
def audit(
    train: pd.DataFrame,
    ctx: RunContext,
    *,
    queue: str,
    labels: list[str],
    max_rows: int = 2_000,
    max_flagged: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Flag likely mislabelled ``text`` rows (confident learning) and queue them for review
    in ``queue``; returns how many were audited, flagged and queued, with examples.

    Each queued item carries, for the reviewer, its current label (``given_label``) and the
    model's view of it: the out-of-fold model's label (``model_label``), that label's
    probability (``model_probability``) and the probability it gives the current label
    (``given_label_probability``)."""
    import numpy as np

    from loopline.label.audit import noise_audit
    from loopline.label.queue import LabelQueue

    sample = train.sample(min(max_rows, len(train)), random_state=seed).reset_index(drop=True)
    result = noise_audit(sample["text"], sample["label"], seed=seed)
    rows = np.asarray(result.issues, dtype=np.int64)
    suggested = result.suggested[rows]
    classes = np.asarray(result.classes, dtype=object)
    view = sample.iloc[rows].assign(
        given_label=sample["label"].iloc[rows].to_numpy(),
        model_label=classes[suggested],
        model_probability=result.oof_proba[rows, suggested].round(4),
        given_label_probability=result.scores[rows].round(4),
    )
    # A text repeated in the data is one item for a reviewer.
    flagged = view.drop_duplicates("text").head(max_flagged)
    review = LabelQueue(ctx.metadata, queue, labels=list(labels))
    added = review.add_items(
        flagged[
            ["text", "given_label", "model_label", "model_probability", "given_label_probability"]
        ],
        source="noise_audit",
        priority=1.0,
    )
    return {
        "queue": queue,
        "audited_rows": len(sample),
        "flagged": len(result.issues),
        "queued": added,
        "examples": flagged[["text", "label"]].head(5).to_dict("records"),
    }
