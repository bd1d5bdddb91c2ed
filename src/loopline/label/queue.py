"""The human labeling and review queue, kept in the metadata store.

A queue has a name, an ordered label set and a target number of annotations per item. Items
come in from a person (``manual``), active learning, the label-noise audit or a Label Studio
import; annotators pull them one at a time (:meth:`LabelQueue.next_task`) and submit labels.
The resolved human labels (:meth:`LabelQueue.export_dataset`) are a plain DataFrame that the
pipeline records as a dataset version and that :func:`override_labels` lays over weak labels.

Everything is in SQL tables (``label_queues``, ``label_tasks``, ``label_assignments``,
``label_annotations``), so several annotators, the web page and the CLI can share one queue.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from loopline.core import schema
from loopline.core.metadata import MetadataStore, now
from loopline.errors import DataError, LooplineError
from loopline.label.agreement import Level, agreement_report

__all__ = [
    "HUMAN_LABEL_COLUMNS",
    "LabelQueue",
    "Policy",
    "Task",
    "UnknownTask",
    "list_queues",
    "load_human_labels",
    "override_labels",
]

Policy = Literal["majority", "unanimous", "latest"]
_POLICIES = ("majority", "unanimous", "latest")
_LEVELS = ("nominal", "ordinal", "interval")
_SOURCE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_NAME_MAX = 200
# Keeps IN (...) lists well below every database's bound-parameter limit.
_CHUNK = 500

#: Columns of :meth:`LabelQueue.export_dataset` (the human-label dataset).
HUMAN_LABEL_COLUMNS = ["item_id", "text", "label", "label_source", "n_annotations", "agreement"]


class UnknownTask(LooplineError):
    """A task id that is not in this queue."""


@dataclass(frozen=True)
class Task:
    """One item waiting for (or holding) human labels."""

    id: int
    queue: str
    item_id: str
    text: str | None
    payload: dict[str, Any]
    source: str
    priority: float
    status: str
    created_at: datetime
    annotations: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601)."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


class LabelQueue:
    """A persistent labeling queue named ``name`` in the metadata store.

    ``store`` is a SQLAlchemy URL or an open :class:`MetadataStore`. The queue is created on
    first use; ``labels`` (ordered), ``annotations_per_item`` and ``level`` (``nominal``,
    ``ordinal`` or ``interval``: how agreement is measured) are stored with it, and passing
    them again changes them (see :meth:`configure`).
    """

    def __init__(
        self,
        store: str | MetadataStore,
        name: str = "default",
        labels: Sequence[str] | None = None,
        annotations_per_item: int | None = None,
        level: str | None = None,
    ) -> None:
        self._owns_store = isinstance(store, str)
        self.store = MetadataStore(store) if isinstance(store, str) else store
        self.name = _check_name(name, "queue name")
        self._config = self._load_or_create()
        if labels is not None or annotations_per_item is not None or level is not None:
            self.configure(labels, annotations_per_item, level)

    # -- configuration -------------------------------------------------------------------
    @property
    def label_set(self) -> list[str]:
        """The allowed labels, in keyboard order (empty until configured)."""
        return list(self._config["labels"])

    @property
    def annotations_per_item(self) -> int:
        """How many annotators should label each item before it is done."""
        return int(self._config["annotations_per_item"])

    @property
    def level(self) -> str:
        """Measurement level for agreement: nominal, ordinal or interval."""
        return str(self._config["level"])

    def _load_or_create(self) -> dict[str, Any]:
        found = self._read_config()
        if found is not None:
            return found
        with self.store._tx() as conn:
            exists = conn.execute(
                sa.select(schema.label_queues.c.name).where(schema.label_queues.c.name == self.name)
            ).scalar()
            if exists is None:
                conn.execute(
                    schema.label_queues.insert().values(
                        name=self.name,
                        labels="[]",
                        annotations_per_item=1,
                        level="nominal",
                        created_at=now(),
                    )
                )
        config = self._read_config()
        assert config is not None
        return config

    def _read_config(self) -> dict[str, Any] | None:
        lq = schema.label_queues
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(lq).where(lq.c.name == self.name)).first()
        if row is None:
            return None
        config = dict(row._mapping)
        config["labels"] = orjson.loads(config["labels"])
        return config

    def configure(
        self,
        labels: Sequence[str] | None = None,
        annotations_per_item: int | None = None,
        level: str | None = None,
    ) -> None:
        """Change the label set, the annotations wanted per item or the agreement level.

        A new label set must still contain every label already given; ``interval`` needs
        numeric labels. Task status is recomputed when the per-item target changes.
        """
        values: dict[str, Any] = {}
        new_labels = self.label_set if labels is None else _check_labels(labels)
        new_level = self.level if level is None else level
        if new_level not in _LEVELS:
            raise LooplineError(f"level must be one of {', '.join(_LEVELS)}, found {new_level!r}")
        if new_level == "interval":
            _require_numeric(new_labels)
        if labels is not None:
            self._check_labels_in_use(new_labels)
            values["labels"] = orjson.dumps(new_labels).decode()
        if level is not None:
            values["level"] = new_level
        if annotations_per_item is not None:
            if isinstance(annotations_per_item, bool) or int(annotations_per_item) < 1:
                raise LooplineError(
                    f"annotations_per_item must be 1 or more, found {annotations_per_item!r}",
                    hint="e.g. --per-item 2 (Python: the annotations_per_item argument)",
                )
            values["annotations_per_item"] = int(annotations_per_item)
        if not values:
            return
        lq = schema.label_queues
        with self.store._tx() as conn:
            conn.execute(lq.update().where(lq.c.name == self.name).values(**values))
            if "annotations_per_item" in values:
                self._refresh_status(conn, None, values["annotations_per_item"])
        self._config = self._read_config() or self._config

    def _check_labels_in_use(self, labels: list[str]) -> None:
        la, lt = schema.label_annotations, schema.label_tasks
        with self.store.engine.connect() as conn:
            used = conn.execute(
                sa.select(la.c.label)
                .join(lt, lt.c.id == la.c.task_id)
                .where(lt.c.queue == self.name)
                .distinct()
            ).scalars()
            missing = sorted(set(used) - set(labels))
        if missing:
            raise LooplineError(
                f"queue {self.name!r} already has annotations with labels {missing} "
                f"that the new label set {labels} leaves out",
                hint="keep every label in use in the label set",
            )

    def _require_labels(self) -> list[str]:
        labels = self.label_set
        if not labels:
            raise LooplineError(
                f"queue {self.name!r} has no label set",
                hint="set one with `loopline label queue add FILE --labels a,b` "
                "(Python: the labels argument of LabelQueue)",
            )
        return labels

    # -- adding items --------------------------------------------------------------------
    def add_items(
        self,
        items: pd.DataFrame | Sequence[Mapping[str, Any]],
        source: str = "manual",
        priority: float = 0.0,
        assignees: Sequence[str] | None = None,
    ) -> int:
        """Add items to label; return how many were new.

        Each item has an ``item_id`` (derived from the text when absent) and a ``text`` and/or
        a ``payload`` dict; any other fields become the payload. A ``priority`` field overrides
        ``priority`` per item (higher is served first). ``assignees`` restricts the new tasks
        to those annotators. Items already in the queue are left as they are.
        """
        rows = _item_rows(items, _check_source(source), priority)
        people = [_check_name(a, "assignee") for a in assignees or []]
        with self.store._tx() as conn:
            return self._insert_items(conn, rows, people)

    def _insert_items(
        self, conn: sa.Connection, rows: list[dict[str, Any]], assignees: list[str]
    ) -> int:
        existing = set(self._task_ids(conn, [r["item_id"] for r in rows]))
        fresh = [r for r in rows if r["item_id"] not in existing]
        if not fresh:
            return 0
        stamp = now()
        conn.execute(
            schema.label_tasks.insert(),
            [dict(r, queue=self.name, status="open", created_at=stamp) for r in fresh],
        )
        if assignees:
            ids = self._task_ids(conn, [r["item_id"] for r in fresh])
            conn.execute(
                schema.label_assignments.insert(),
                [{"task_id": i, "annotator": a} for i in ids.values() for a in assignees],
            )
        return len(fresh)

    def _task_ids(self, conn: sa.Connection, item_ids: Sequence[str]) -> dict[str, int]:
        lt = schema.label_tasks
        found: dict[str, int] = {}
        for chunk in _chunks(list(item_ids)):
            query = sa.select(lt.c.item_id, lt.c.id).where(
                lt.c.queue == self.name, lt.c.item_id.in_(chunk)
            )
            found.update({item: int(task) for item, task in conn.execute(query)})
        return found

    def add_annotations(
        self,
        annotations: pd.DataFrame | Sequence[Mapping[str, Any]],
        items: pd.DataFrame | Sequence[Mapping[str, Any]] | None = None,
        source: str = "import",
    ) -> int:
        """Import finished annotations in one transaction; return how many were written.

        ``annotations`` has ``item_id``, ``annotator`` and ``label`` (optional ``created_at``
        and ``lead_time_s``). ``items`` adds the items they refer to first. Everything is
        checked before anything is written: one bad row and nothing is imported. An
        annotator's earlier label on the same item is replaced.
        """
        labels = self._require_labels()
        rows = _annotation_rows(annotations, labels)
        item_rows = [] if items is None else _item_rows(items, _check_source(source), 0.0)
        with self.store._tx() as conn:
            self._insert_items(conn, item_rows, [])
            task_ids = self._task_ids(conn, sorted({r["item_id"] for r in rows}))
            unknown = sorted({r["item_id"] for r in rows} - set(task_ids))
            if unknown:
                raise LooplineError(
                    f"{len(unknown)} annotation item(s) are not in queue {self.name!r}, "
                    f"e.g. {unknown[:3]}",
                    hint="add those items first (Python: add_items, or the items argument)",
                )
            written = self._upsert_annotations(conn, rows, task_ids)
            self._refresh_status(conn, sorted(set(task_ids.values())), None)
        return written

    def _upsert_annotations(
        self, conn: sa.Connection, rows: list[dict[str, Any]], task_ids: dict[str, int]
    ) -> int:
        la = schema.label_annotations
        stamp = now()
        records = [
            {
                "task_id": task_ids[r["item_id"]],
                "annotator": r["annotator"],
                "label": r["label"],
                "lead_time_s": r.get("lead_time_s"),
                "created_at": r.get("created_at") or stamp,
            }
            for r in rows
        ]
        # Replace earlier labels by the same annotators on these tasks, then insert in bulk.
        pairs = {(r["task_id"], r["annotator"]) for r in records}
        for chunk in _chunks(sorted(set(task_ids.values()))):
            old = conn.execute(
                sa.select(la.c.id, la.c.task_id, la.c.annotator).where(la.c.task_id.in_(chunk))
            ).all()
            stale = [i for i, task, who in old if (task, who) in pairs]
            for ids in _chunks(stale):
                conn.execute(la.delete().where(la.c.id.in_(ids)))
        if records:
            conn.execute(la.insert(), records)
        return len(records)

    def _refresh_status(
        self, conn: sa.Connection, task_ids: list[int] | None, per_item: int | None
    ) -> None:
        """Set ``done``/``open`` from the annotation count (all tasks when ids is None)."""
        lt, la = schema.label_tasks, schema.label_annotations
        target = per_item or self.annotations_per_item
        count = (
            sa.select(sa.func.count())
            .select_from(la)
            .where(la.c.task_id == lt.c.id)
            .scalar_subquery()
        )
        status = sa.case((count >= target, "done"), else_="open")
        base = lt.update().where(lt.c.queue == self.name).values(status=status)
        if task_ids is None:
            conn.execute(base)
            return
        for chunk in _chunks(task_ids):
            conn.execute(base.where(lt.c.id.in_(chunk)))

    # -- labeling ------------------------------------------------------------------------
    def next_task(self, annotator: str, exclude: Iterable[int] = ()) -> Task | None:
        """The next open task for ``annotator``, or None when there is nothing left.

        Skips tasks this annotator already labelled, tasks assigned to others and the ids
        in ``exclude`` (what they skipped). Highest priority first; among equals, items that
        already have some labels come first so multi-annotated items get finished.
        """
        who = _check_name(annotator, "annotator")
        lt, la, asg = schema.label_tasks, schema.label_annotations, schema.label_assignments
        done_by_me = sa.exists().where(la.c.task_id == lt.c.id, la.c.annotator == who)
        assigned = sa.exists().where(asg.c.task_id == lt.c.id)
        assigned_to_me = sa.exists().where(asg.c.task_id == lt.c.id, asg.c.annotator == who)
        count = self._count_column()
        query = (
            sa.select(lt, count)
            .where(
                lt.c.queue == self.name,
                lt.c.status == "open",
                ~done_by_me,
                sa.or_(~assigned, assigned_to_me),
            )
            .order_by(lt.c.priority.desc(), count.desc(), lt.c.id)
            .limit(1)
        )
        skipped = [int(i) for i in exclude]
        if skipped:
            query = query.where(lt.c.id.notin_(skipped))
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _task(dict(row._mapping))

    def _count_column(self) -> sa.Label[int]:
        lt, la = schema.label_tasks, schema.label_annotations
        return (
            sa.select(sa.func.count())
            .select_from(la)
            .where(la.c.task_id == lt.c.id)
            .scalar_subquery()
            .label("annotations")
        )

    def get_task(self, task_id: int) -> Task:
        """One task of this queue; :class:`UnknownTask` if there is none with that id."""
        lt = schema.label_tasks
        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(lt, self._count_column()).where(
                    lt.c.queue == self.name, lt.c.id == int(task_id)
                )
            ).first()
        if row is None:
            raise UnknownTask(
                f"no task {task_id} in queue {self.name!r}",
                hint="take a task id from `loopline label queue next` "
                "(Python: next_task; web: GET /api/next)",
            )
        return _task(dict(row._mapping))

    def submit(
        self,
        task_id: int,
        annotator: str,
        label: str,
        lead_time_s: float | None = None,
    ) -> int:
        """Record ``annotator``'s ``label`` for a task and return the annotation id.

        The label must be in the queue's label set. A second submission by the same
        annotator replaces the first. The task is ``done`` once it has enough labels.
        """
        who = _check_name(annotator, "annotator")
        value = self._check_label(label)
        seconds = _check_lead_time(lead_time_s)
        task = self.get_task(task_id)
        la, asg = schema.label_annotations, schema.label_assignments
        with self.store._tx() as conn:
            allowed = (
                conn.execute(sa.select(asg.c.annotator).where(asg.c.task_id == task.id))
                .scalars()
                .all()
            )
            if allowed and who not in allowed:
                raise LooplineError(
                    f"task {task.id} is assigned to {sorted(allowed)}, not to {who!r}",
                    hint="ask for your next task instead",
                )
            conn.execute(la.delete().where(la.c.task_id == task.id, la.c.annotator == who))
            result = conn.execute(
                la.insert().values(
                    task_id=task.id,
                    annotator=who,
                    label=value,
                    lead_time_s=seconds,
                    created_at=now(),
                )
            )
            self._refresh_status(conn, [task.id], None)
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def _check_label(self, label: Any) -> str:
        labels = self._require_labels()
        # Numeric label sets (e.g. a -4..4 scale) may be given as ints.
        value = str(label) if isinstance(label, int) and not isinstance(label, bool) else label
        if not isinstance(value, str) or value not in labels:
            raise LooplineError(
                f"label {label!r} is not in queue {self.name!r}'s label set {labels}",
                hint="use one of the listed labels, or widen the label set when adding items: "
                "`loopline label queue add FILE --labels a,b,c` "
                "(Python: the labels argument of configure)",
            )
        return value

    def undo(self, annotator: str) -> Task | None:
        """Delete ``annotator``'s most recent annotation in this queue; return its task."""
        who = _check_name(annotator, "annotator")
        la, lt = schema.label_annotations, schema.label_tasks
        with self.store._tx() as conn:
            last = conn.execute(
                sa.select(la.c.id, la.c.task_id)
                .join(lt, lt.c.id == la.c.task_id)
                .where(lt.c.queue == self.name, la.c.annotator == who)
                .order_by(la.c.created_at.desc(), la.c.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            conn.execute(la.delete().where(la.c.id == last.id))
            self._refresh_status(conn, [int(last.task_id)], None)
        return self.get_task(int(last.task_id))

    # -- reading -------------------------------------------------------------------------
    def tasks(self, status: str | None = None) -> pd.DataFrame:
        """All tasks (optionally only ``open`` or ``done``) with their annotation counts."""
        lt = schema.label_tasks
        query = sa.select(lt, self._count_column()).where(lt.c.queue == self.name)
        if status is not None:
            query = query.where(lt.c.status == status)
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.order_by(lt.c.id))]
        columns = [c.name for c in lt.columns] + ["annotations"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["payload"] = [orjson.loads(p) if isinstance(p, str) else {} for p in frame["payload"]]
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    def annotations(self) -> pd.DataFrame:
        """Every annotation: ``annotation_id, task_id, item_id, text, source, annotator,
        label, lead_time_s, created_at`` (UTC), oldest first."""
        la, lt = schema.label_annotations, schema.label_tasks
        query = (
            sa.select(
                la.c.id.label("annotation_id"),
                la.c.task_id,
                lt.c.item_id,
                lt.c.text,
                lt.c.source,
                la.c.annotator,
                la.c.label,
                la.c.lead_time_s,
                la.c.created_at,
            )
            .join(lt, lt.c.id == la.c.task_id)
            .where(lt.c.queue == self.name)
            .order_by(la.c.id)
        )
        with self.store.engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        frame["lead_time_s"] = frame["lead_time_s"].astype("float64")
        return frame

    def labels(self, policy: Policy = "majority") -> pd.DataFrame:
        """One resolved human label per annotated item.

        Columns: ``item_id, text, label, n_annotations, agreement`` (share of the item's
        annotations that match ``label``), ``resolved`` and ``label_source`` (``human``).
        Policies: ``majority`` (most votes; a tie is unresolved), ``unanimous`` (resolved
        only when all agree) and ``latest`` (the most recent annotation wins, e.g. after a
        review). Unresolved items keep ``label`` None.
        """
        if policy not in _POLICIES:
            raise LooplineError(f"policy must be one of {', '.join(_POLICIES)}, found {policy!r}")
        return _resolve(self.annotations(), policy)

    def disagreements(self, min_annotations: int = 2) -> pd.DataFrame:
        """Items whose annotators disagree, least agreement first, with the vote counts."""
        ann = self.annotations()
        resolved = _resolve(ann, "majority")
        mask = (resolved["n_annotations"] >= min_annotations) & (resolved["agreement"] < 1.0)
        out = resolved[mask].copy()
        votes = ann.groupby("item_id")["label"].agg(lambda s: s.value_counts().to_dict())
        out["votes"] = out["item_id"].map(votes)
        return out.sort_values(["agreement", "item_id"]).reset_index(drop=True)

    def progress(self, annotator: str | None = None) -> dict[str, int]:
        """Task counts (``total, open, done``) and, for an annotator, how many they did."""
        lt, la = schema.label_tasks, schema.label_annotations
        with self.store.engine.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.select(lt.c.status, sa.func.count())
                    .where(lt.c.queue == self.name)
                    .group_by(lt.c.status)
                ).all()
            )
            mine = 0
            if annotator:
                mine = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(la.join(lt, lt.c.id == la.c.task_id))
                    .where(lt.c.queue == self.name, la.c.annotator == annotator)
                ).scalar_one()
        open_, done = int(counts.get("open", 0)), int(counts.get("done", 0))
        return {"total": open_ + done, "open": open_, "done": done, "mine": int(mine)}

    def stats(self) -> dict[str, Any]:
        """Counts, per-annotator counts, label counts and agreement statistics.

        ``tasks`` counts the queue's items: ``total``, ``open``, ``done`` (has the labels
        it needs), ``labelled`` (has at least one label) and ``by_source``. The agreement
        statistics count only labelled items (their ``items`` equals ``tasks.labelled``).

        ``agreement`` holds percent agreement, Fleiss' kappa, Krippendorff's alpha at the
        nominal level (and at the queue's level when that is ordinal or interval) and
        Cohen's kappa when exactly two annotators took part.
        """
        ann = self.annotations()
        tasks = self.tasks()
        levels: list[Level] = ["nominal"]
        if self.level != "nominal":
            levels.append(self.level)  # type: ignore[arg-type]
        values = ann["label"]
        if self.level == "interval":
            values = values.astype("float64")
        elif self.level == "ordinal":
            # Ordinal distance follows the label set's order, not the labels' spelling.
            values = values.map({label: i for i, label in enumerate(self.label_set)})
        agreement = agreement_report(ann.assign(value=values), value="value", levels=tuple(levels))
        resolved = _resolve(ann, "majority")
        multi = resolved[resolved["n_annotations"] >= 2]
        return {
            "queue": self.name,
            "labels": self.label_set,
            "level": self.level,
            "annotations_per_item": self.annotations_per_item,
            "tasks": {
                "total": len(tasks),
                "open": int((tasks["status"] == "open").sum()),
                "done": int((tasks["status"] == "done").sum()),
                "labelled": int((tasks["annotations"] > 0).sum()),
                "by_source": _counts(tasks["source"]),
            },
            "annotations": len(ann),
            "annotators": _counts(ann["annotator"]),
            "label_counts": _counts(ann["label"]),
            "disagreements": int((multi["agreement"] < 1.0).sum()),
            "ties": int((~resolved["resolved"]).sum()) if len(resolved) else 0,
            "median_lead_time_s": _median(ann["lead_time_s"]),
            "agreement": agreement,
        }

    def export_dataset(
        self,
        policy: Policy = "majority",
        min_annotations: int = 1,
        min_agreement: float = 0.0,
    ) -> pd.DataFrame:
        """The human-label dataset for the next training run (see :data:`HUMAN_LABEL_COLUMNS`).

        Keeps resolved items with at least ``min_annotations`` labels and at least
        ``min_agreement`` agreement; ``label_source`` is ``human``. Record the frame as a
        dataset version and pass it to :func:`override_labels`.
        """
        resolved = self.labels(policy)
        keep = (
            resolved["resolved"]
            & (resolved["n_annotations"] >= min_annotations)
            & (resolved["agreement"] >= min_agreement)
        )
        return resolved.loc[keep, HUMAN_LABEL_COLUMNS].reset_index(drop=True)

    def close(self) -> None:
        """Release the store if this queue opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> LabelQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- module-level helpers ---------------------------------------------------------------------
def load_human_labels(
    store: str | MetadataStore,
    queue: str = "default",
    policy: Policy = "majority",
    min_annotations: int = 1,
    min_agreement: float = 0.0,
) -> pd.DataFrame:
    """The human-label dataset of ``queue``; an empty frame if the queue does not exist.

    This is the function a pipeline step calls (and records as a dataset version): it never
    creates a queue, so it works on a project where nobody has labelled anything yet.
    """
    opened = MetadataStore(store) if isinstance(store, str) else store
    try:
        with opened.engine.connect() as conn:
            exists = conn.execute(
                sa.select(schema.label_queues.c.name).where(schema.label_queues.c.name == queue)
            ).scalar()
        if exists is None:
            return _empty_human_labels()
        return LabelQueue(opened, queue).export_dataset(policy, min_annotations, min_agreement)
    finally:
        if isinstance(store, str):
            opened.close()


def list_queues(store: str | MetadataStore) -> list[dict[str, Any]]:
    """Every queue with its label set and task counts (``total``, ``open``, ``done``), by name.

    Reads only: unlike opening a :class:`LabelQueue`, it never creates a queue.
    """
    opened = MetadataStore(store) if isinstance(store, str) else store
    lq, lt = schema.label_queues, schema.label_tasks
    try:
        with opened.engine.connect() as conn:
            queues = conn.execute(sa.select(lq.c.name, lq.c.labels).order_by(lq.c.name)).all()
            counts = conn.execute(
                sa.select(lt.c.queue, lt.c.status, sa.func.count()).group_by(
                    lt.c.queue, lt.c.status
                )
            ).all()
    finally:
        if isinstance(store, str):
            opened.close()
    by_queue: dict[str, dict[str, int]] = {}
    for name, status, n in counts:
        by_queue.setdefault(name, {})[str(status)] = int(n)
    summaries = []
    for name, labels in queues:
        found = by_queue.get(name, {})
        open_, done = found.get("open", 0), found.get("done", 0)
        summaries.append(
            {
                "name": str(name),
                "labels": list(orjson.loads(labels)),
                "total": open_ + done,
                "open": open_,
                "done": done,
            }
        )
    return summaries


def override_labels(
    df: pd.DataFrame,
    human: pd.DataFrame,
    key: str = "item_id",
    append_missing: bool = True,
) -> pd.DataFrame:
    """Lay human labels over weak labels; return a new frame.

    Rows of ``df`` whose ``key`` (``item_id`` or ``text``) has a human label get that label
    and ``label_source = "human"`` (and ``sample_weight`` 1.0 when the frame has one: a person
    is sure). Other rows keep their label and source (``weak`` when ``df`` had none).
    ``append_missing`` adds human-labelled items that ``df`` lacks (e.g. rows every labeling
    function abstained on), so no human label is lost. When ``human`` has the same key twice
    the last row wins.
    """
    for frame, name in ((df, "df"), (human, "human")):
        if key not in frame.columns:
            raise DataError(
                f"expected a {key!r} column in {name} to match human labels on, "
                f"found {list(frame.columns)}",
                hint="match on item_id or text (the key argument)",
            )
    if "label" not in human.columns:
        raise DataError(f"expected a 'label' column in human, found {list(human.columns)}")
    human = human[human["label"].notna()].drop_duplicates(key, keep="last")
    mapping = pd.Series(list(human["label"]), index=list(human[key]))
    out = df.copy()
    if "label_source" not in out.columns:
        out["label_source"] = "weak"
    hit = out[key].isin(mapping.index)
    if "label" not in out.columns:
        out["label"] = None
    out["label"] = out["label"].astype(object)
    out.loc[hit, "label"] = out.loc[hit, key].map(mapping)
    out["label_source"] = out["label_source"].astype(object)
    out.loc[hit, "label_source"] = "human"
    if "sample_weight" in out.columns:
        out.loc[hit, "sample_weight"] = 1.0
    if append_missing:
        out = _append_human_only(out, human, key)
    return out.reset_index(drop=True)


def _append_human_only(out: pd.DataFrame, human: pd.DataFrame, key: str) -> pd.DataFrame:
    extra = human[~human[key].isin(out[key])]
    if extra.empty:
        return out
    columns = [c for c in dict.fromkeys([key, "text", "label"]) if c in extra.columns]
    rows = extra[columns].assign(label_source="human")
    if "sample_weight" in out.columns:
        rows = rows.assign(sample_weight=1.0)
    return pd.concat([out, rows], ignore_index=True)


def _empty_human_labels() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in HUMAN_LABEL_COLUMNS})


def _resolve(ann: pd.DataFrame, policy: str) -> pd.DataFrame:
    """One row per annotated item: the resolved label under ``policy`` and agreement."""
    columns = [*HUMAN_LABEL_COLUMNS, "resolved"]
    if ann.empty:
        frame = _empty_human_labels()
        frame["resolved"] = pd.Series(dtype=bool)
        return frame[columns]
    votes = pd.crosstab(ann["item_id"], ann["label"])
    order = ann.drop_duplicates("item_id")[["item_id", "task_id", "text"]].set_index("item_id")
    votes = votes.loc[order.index]
    counts = votes.to_numpy()
    total = counts.sum(axis=1)
    top = counts.max(axis=1)
    if policy == "latest":
        latest = ann.sort_values(["created_at", "annotation_id"]).groupby("item_id").last()
        label = latest.loc[order.index, "label"].to_numpy(dtype=object)
        matched = counts[np.arange(len(counts)), [votes.columns.get_loc(v) for v in label]]
        resolved = np.ones(len(counts), dtype=bool)
    else:
        label = votes.columns.to_numpy(dtype=object)[counts.argmax(axis=1)]
        matched = top
        tie = (counts == top[:, None]).sum(axis=1) > 1
        resolved = ~tie if policy == "majority" else top == total
    frame = pd.DataFrame(
        {
            "item_id": order.index.to_numpy(dtype=object),
            "text": order["text"].to_numpy(dtype=object),
            # object dtype keeps None for unresolved items (a str column would turn it to NaN)
            "label": pd.Series(np.where(resolved, label, None), dtype=object),
            "label_source": "human",
            "n_annotations": total.astype(np.int64),
            "agreement": matched / total,
            "resolved": resolved,
        }
    )
    return frame[columns]


def _task(row: Mapping[str, Any]) -> Task:
    created = row["created_at"]
    return Task(
        id=int(row["id"]),
        queue=str(row["queue"]),
        item_id=str(row["item_id"]),
        text=row["text"],
        payload=orjson.loads(row["payload"]) if row["payload"] else {},
        source=str(row["source"]),
        priority=float(row["priority"]),
        status=str(row["status"]),
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        annotations=int(row["annotations"]),
    )


def _records(data: pd.DataFrame | Sequence[Mapping[str, Any]], what: str) -> list[dict[str, Any]]:
    if isinstance(data, pd.DataFrame):
        return [dict(r) for r in data.to_dict("records")]
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise LooplineError(
            f"expected {what} as a DataFrame or a list of dicts, found {type(data).__name__}"
        )
    records = []
    for index, record in enumerate(data):
        if not isinstance(record, Mapping):
            raise LooplineError(
                f"expected {what} as dicts, found {type(record).__name__} at position {index}"
            )
        records.append(dict(record))
    return records


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _item_rows(
    items: pd.DataFrame | Sequence[Mapping[str, Any]], source: str, priority: float
) -> list[dict[str, Any]]:
    """Validate items and turn them into ``label_tasks`` rows (all checked before any write)."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(_records(items, "items")):
        text = record.pop("text", None)
        text = None if _missing(text) else text
        if text is not None and not isinstance(text, str):
            raise LooplineError(f"item {index}: text must be a string, found {type(text).__name__}")
        item_id = _item_id(record.pop("item_id", None), text, index)
        if item_id in seen:
            raise LooplineError(
                f"item_id {item_id!r} appears twice in the input (items {seen[item_id]} "
                f"and {index})",
                hint="give each item a unique item_id",
            )
        seen[item_id] = index
        payload = _payload(record, index)
        rank = _priority(payload.pop("priority", priority), index)
        if text is None and not payload:
            raise LooplineError(f"item {index} ({item_id!r}) has neither text nor payload")
        rows.append(
            {
                "item_id": item_id,
                "text": text,
                "payload": orjson.dumps(payload, default=str).decode() if payload else None,
                "source": source,
                "priority": rank,
            }
        )
    return rows


def _item_id(value: Any, text: str | None, index: int) -> str:
    if _missing(value):
        if text is None:
            raise LooplineError(
                f"item {index} has no item_id and no text to derive one from",
                hint="add an item_id column/key",
            )
        # A stable id from the text, so adding the same text twice does not duplicate it.
        return "t" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    item_id = str(value)
    if not item_id or len(item_id) > _NAME_MAX:
        raise LooplineError(
            f"item {index}: item_id must be 1-{_NAME_MAX} characters, found {item_id[:40]!r}"
        )
    return item_id


def _payload(record: dict[str, Any], index: int) -> dict[str, Any]:
    explicit = record.pop("payload", None)
    if explicit is not None and not _missing(explicit) and not isinstance(explicit, Mapping):
        raise LooplineError(
            f"item {index}: payload must be a dict, found {type(explicit).__name__}"
        )
    payload = dict(explicit) if isinstance(explicit, Mapping) else {}
    for name, value in record.items():
        payload.setdefault(str(name), None if _missing(value) else _plain(value))
    return payload


def _plain(value: Any) -> Any:
    # numpy scalars and timestamps from DataFrames become JSON-friendly Python values.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return value


def _priority(value: Any, index: int) -> float:
    try:
        rank = float(value)
    except (TypeError, ValueError):
        raise LooplineError(f"item {index}: priority must be a number, found {value!r}") from None
    if not math.isfinite(rank):
        raise LooplineError(f"item {index}: priority must be finite, found {value!r}")
    return rank


def _annotation_rows(
    annotations: pd.DataFrame | Sequence[Mapping[str, Any]], labels: list[str]
) -> list[dict[str, Any]]:
    """Validate imported annotations; the first problem raises before anything is written."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    allowed = set(labels)
    for index, record in enumerate(_records(annotations, "annotations")):
        missing = [k for k in ("item_id", "annotator", "label") if _missing(record.get(k))]
        if missing:
            raise LooplineError(f"annotation {index}: missing {', '.join(missing)}")
        item_id = _item_id(record["item_id"], None, index)
        who = _check_name(str(record["annotator"]), f"annotation {index}: annotator")
        label = record["label"]
        label = str(label) if isinstance(label, (int, np.integer)) else label
        if label not in allowed:
            raise LooplineError(
                f"annotation {index} (item {item_id!r}): label {label!r} is not in the "
                f"label set {labels}"
            )
        if (item_id, who) in seen:
            raise LooplineError(
                f"annotation {index}: annotator {who!r} labels item {item_id!r} twice"
            )
        seen.add((item_id, who))
        created = record.get("created_at")
        rows.append(
            {
                "item_id": item_id,
                "annotator": who,
                "label": label,
                "lead_time_s": _check_lead_time(record.get("lead_time_s")),
                "created_at": None if _missing(created) else _timestamp(created, index),
            }
        )
    return rows


def _timestamp(value: Any, index: int) -> datetime:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise LooplineError(
            f"annotation {index}: created_at is not a timestamp: {value!r}"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(UTC)
    return stamp.to_pydatetime()


def _check_lead_time(value: Any) -> float | None:
    if _missing(value):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise LooplineError(f"lead_time_s must be a number of seconds, found {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise LooplineError(f"lead_time_s must be 0 or more seconds, found {value!r}")
    return seconds


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LooplineError(f"{what} must be a non-empty string, found {value!r}")
    name = value.strip()
    if len(name) > _NAME_MAX:
        raise LooplineError(f"{what} must be at most {_NAME_MAX} characters, found {len(name)}")
    return name


def _check_source(source: str) -> str:
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise LooplineError(
            f"source must be a short lower-case name, found {source!r}",
            hint="e.g. --source manual, active_learning, noise_audit or labelstudio "
            "(Python: the source argument)",
        )
    return source


def _check_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str):
        raise LooplineError(
            f"labels must be a list of strings, found the string {labels!r}",
            hint="give a list such as ['negative', 'positive'] "
            "(command line: --labels negative,positive)",
        )
    values = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in labels]
    for value in values:
        _check_name(value, "label")
    if len(set(values)) != len(values):
        raise LooplineError(f"labels must be unique, found {values}")
    return [v.strip() for v in values]


def _require_numeric(labels: list[str]) -> None:
    try:
        [float(v) for v in labels]
    except ValueError:
        raise LooplineError(
            f"interval agreement needs numeric labels, found {labels}",
            hint="use the nominal or ordinal level for named categories (the level argument)",
        ) from None


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def _median(values: pd.Series) -> float | None:
    clean = values.dropna()
    return None if clean.empty else float(clean.median())


def _chunks(values: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
