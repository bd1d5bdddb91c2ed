"""Import and export a labeling queue in Label Studio's JSON task format.

A Label Studio export is a JSON list of tasks::

    [{"id": 1,
      "data": {"text": "great day"},
      "annotations": [{"completed_by": 3, "lead_time": 4.2, "created_at": "2026-...",
                       "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                   "value": {"choices": ["positive"]}}]}],
      "predictions": []}]

Import checks every task before writing anything: one malformed task and nothing is
imported, and the error names each bad task by its position and id. Export writes the same
shape, so a queue goes to Label Studio and back without loss.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from loopline.errors import DataError, LooplineError
from loopline.label.queue import LabelQueue

__all__ = [
    "ImportSummary",
    "LabelStudioError",
    "export_labelstudio",
    "import_labelstudio",
    "labelstudio_config",
    "parse_labelstudio",
]

# How many task problems one error message lists before it summarises the rest.
_SHOWN_PROBLEMS = 5


class LabelStudioError(DataError):
    """A Label Studio file that cannot be imported; ``problems`` lists every bad task."""

    def __init__(self, message: str, problems: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote: new tasks, annotations, and annotations skipped as empty."""

    tasks: int
    new_tasks: int
    annotations: int
    skipped_annotations: int


@dataclass
class _Parsed:
    items: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    skipped: int
    labels_seen: list[str]


# -- import -----------------------------------------------------------------------------------
def _load_json(source: str | Path | Sequence[Any]) -> tuple[Any, str]:
    if not isinstance(source, (str, Path)):
        return source, "<tasks>"
    path = Path(source)
    if not path.is_file():
        raise DataError(f"Label Studio file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text), str(path)
    except json.JSONDecodeError as exc:
        raise LabelStudioError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            [f"line {exc.lineno}, column {exc.colno}: {exc.msg}"],
            hint="export the project again from Label Studio as JSON",
        ) from None


def parse_labelstudio(
    source: str | Path | Sequence[Any], label_set: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Check a Label Studio export and turn it into queue items and annotations.

    ``source`` is a file path or the already-parsed list. With ``label_set`` every chosen
    label must be in it. Returns ``(items, annotations, skipped)``; skipped counts cancelled
    or empty annotations. Raises :class:`LabelStudioError` naming every malformed task.
    """
    data, name = _load_json(source)
    parsed = _parse(data, name, None if label_set is None else list(label_set))
    return parsed.items, parsed.annotations, parsed.skipped


def _parse(data: Any, name: str, label_set: list[str] | None) -> _Parsed:
    if not isinstance(data, list):
        raise LabelStudioError(
            f"{name}: expected a JSON list of tasks, found {_json_type(data)}",
            [f"top level is {_json_type(data)}"],
            hint="Label Studio's JSON export is a list: [{'data': {'text': ...}}, ...]",
        )
    if not data:
        raise LabelStudioError(f"{name}: the task list is empty", ["no tasks"])
    parsed = _Parsed([], [], 0, [])
    problems: list[str] = []
    seen_items: dict[str, int] = {}
    for index, task in enumerate(data):
        where = _where(index, task)
        try:
            _parse_task(task, index, label_set, parsed, seen_items)
        except _TaskProblem as problem:
            problems.append(f"{where}: {problem}")
    if problems:
        raise LabelStudioError(_problem_message(name, problems, len(data)), problems)
    return parsed


class _TaskProblem(Exception):
    """What is wrong with one task (collected, then reported all together)."""


def _where(index: int, task: Any) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return f"task {index}" + (f" (id {task_id!r})" if task_id is not None else "")


def _problem_message(name: str, problems: list[str], total: int) -> str:
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    more = len(problems) - _SHOWN_PROBLEMS
    tail = f"; and {more} more" if more > 0 else ""
    return (
        f"{name}: {len(problems)} of {total} task(s) are malformed, nothing was imported: "
        f"{shown}{tail}"
    )


def _parse_task(
    task: Any,
    index: int,
    label_set: list[str] | None,
    parsed: _Parsed,
    seen_items: dict[str, int],
) -> None:
    if not isinstance(task, dict):
        raise _TaskProblem(f"expected an object, found {_json_type(task)}")
    task_id = task.get("id")
    if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, int | str)):
        raise _TaskProblem(f"id must be a number or string, found {_json_type(task_id)}")
    data = task.get("data")
    if not isinstance(data, dict):
        raise _TaskProblem(f"data must be an object with a text field, found {_json_type(data)}")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        found = "missing" if "text" not in data else f"{_json_type(text)} {text!r}"[:60]
        raise _TaskProblem(f"data.text must be a non-empty string, found {found}")
    item_id = _item_id(data, task_id, index)
    if item_id in seen_items:
        raise _TaskProblem(f"item {item_id!r} repeats task {seen_items[item_id]}")
    annotations = _parse_annotations(task.get("annotations", []), label_set, parsed)
    predictions = task.get("predictions", [])
    if not isinstance(predictions, list):
        raise _TaskProblem(f"predictions must be a list, found {_json_type(predictions)}")
    seen_items[item_id] = index
    payload = {k: v for k, v in data.items() if k not in ("text", "item_id")}
    if predictions:
        payload["predictions"] = predictions
    parsed.items.append({"item_id": item_id, "text": text, "payload": payload})
    parsed.annotations.extend(dict(a, item_id=item_id) for a in annotations)


def _item_id(data: dict[str, Any], task_id: Any, index: int) -> str:
    # Our own exports carry the queue's item_id in data; plain Label Studio tasks have ids.
    value = data.get("item_id", task_id)
    if value is None:
        return f"labelstudio-{index}"
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise _TaskProblem(f"data.item_id must be a non-empty string, found {value!r}")
    return str(value).strip()


def _parse_annotations(
    annotations: Any, label_set: list[str] | None, parsed: _Parsed
) -> list[dict[str, Any]]:
    if not isinstance(annotations, list):
        raise _TaskProblem(f"annotations must be a list, found {_json_type(annotations)}")
    rows: list[dict[str, Any]] = []
    annotators: set[str] = set()
    for number, annotation in enumerate(annotations):
        where = f"annotation {number}"
        if not isinstance(annotation, dict):
            raise _TaskProblem(f"{where}: expected an object, found {_json_type(annotation)}")
        if annotation.get("was_cancelled"):
            parsed.skipped += 1
            continue
        label = _choice(annotation.get("result"), where, label_set)
        if label is None:
            parsed.skipped += 1
            continue
        annotator = _annotator(annotation.get("completed_by"), where)
        if annotator in annotators:
            raise _TaskProblem(f"{where}: {annotator!r} annotated this task twice")
        annotators.add(annotator)
        if label not in parsed.labels_seen:
            parsed.labels_seen.append(label)
        rows.append(
            {
                "annotator": annotator,
                "label": label,
                "created_at": _created_at(annotation.get("created_at"), where),
                "lead_time_s": _lead_time(annotation.get("lead_time"), where),
            }
        )
    return rows


def _choice(result: Any, where: str, label_set: list[str] | None) -> str | None:
    """The single chosen label of an annotation's result list (None when it is empty)."""
    if result is None or result == []:
        return None
    if not isinstance(result, list):
        raise _TaskProblem(f"{where}: result must be a list, found {_json_type(result)}")
    choices = [r for r in result if isinstance(r, dict) and r.get("type") == "choices"]
    if len(choices) != 1:
        raise _TaskProblem(f"{where}: expected one result of type 'choices', found {len(choices)}")
    value = choices[0].get("value")
    picked = value.get("choices") if isinstance(value, dict) else None
    if not (isinstance(picked, list) and len(picked) == 1 and isinstance(picked[0], str)):
        raise _TaskProblem(
            f"{where}: value.choices must be a list with exactly one label, "
            f"found {json.dumps(picked)[:60]}"
        )
    label = picked[0]
    if label_set is not None and label not in label_set:
        raise _TaskProblem(f"{where}: label {label!r} is not in the label set {label_set}")
    return label


def _annotator(completed_by: Any, where: str) -> str:
    # Label Studio writes a user id (int), sometimes an object with email/id; keep it readable.
    if completed_by is None:
        return "labelstudio"
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    if isinstance(completed_by, bool) or not isinstance(completed_by, int | str):
        raise _TaskProblem(f"{where}: completed_by must be a user id, found {completed_by!r}")
    name = str(completed_by).strip()
    if not name or len(name) > 200:
        raise _TaskProblem(f"{where}: completed_by must be 1-200 characters, found {name!r}")
    return name


def _created_at(value: Any, where: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise _TaskProblem(f"{where}: created_at must be an ISO 8601 time, found {value!r}")
    return stamp if stamp.tzinfo else stamp.tz_localize("UTC")


def _lead_time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _TaskProblem(f"{where}: lead_time must be seconds (>= 0), found {value!r}")
    return float(value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def import_labelstudio(
    queue: LabelQueue,
    source: str | Path | Sequence[Any],
    labels: Sequence[str] | None = None,
) -> ImportSummary:
    """Import a Label Studio export into ``queue``, all or nothing.

    The label set is, in order of preference: ``labels``, the queue's own, or the labels the
    file uses (in order of first use). Every task is checked before anything is written.
    """
    data, name = _load_json(source)
    wanted = list(labels) if labels is not None else queue.label_set or None
    parsed = _parse(data, name, wanted)
    if wanted is None:
        wanted = parsed.labels_seen
        if not wanted:
            raise LooplineError(
                f"{name} has no labelled annotations and queue {queue.name!r} has no label set",
                hint="pass labels=[...] (CLI: --labels a,b)",
            )
    if wanted != queue.label_set:
        queue.configure(labels=wanted)
    before = len(queue.tasks())
    written = queue.add_annotations(parsed.annotations, items=parsed.items, source="labelstudio")
    return ImportSummary(
        tasks=len(parsed.items),
        new_tasks=len(queue.tasks()) - before,
        annotations=written,
        skipped_annotations=parsed.skipped,
    )


# -- export -----------------------------------------------------------------------------------
def export_labelstudio(
    queue: LabelQueue,
    path: str | Path | None = None,
    from_name: str = "label",
    to_name: str = "text",
) -> list[dict[str, Any]]:
    """The queue as Label Studio tasks (written atomically to ``path`` when given).

    ``from_name``/``to_name`` name the Choices and Text tags of the labeling config (see
    :func:`labelstudio_config`). ``data.item_id`` keeps the queue's item id for a round trip.
    """
    tasks = queue.tasks()
    annotations = queue.annotations()
    by_task = {task_id: group for task_id, group in annotations.groupby("task_id")}
    exported = []
    for row in tasks.itertuples(index=False):
        payload = dict(row.payload)
        predictions = payload.pop("predictions", [])
        group = by_task.get(row.id)
        exported.append(
            {
                "id": int(row.id),
                "data": {"text": row.text, "item_id": row.item_id, **payload},
                "annotations": []
                if group is None
                else _export_annotations(group, from_name, to_name),
                "predictions": predictions,
            }
        )
    if path is not None:
        _write_atomic(Path(path), json.dumps(exported, ensure_ascii=False, indent=2))
    return exported


def _export_annotations(group: pd.DataFrame, from_name: str, to_name: str) -> list[dict[str, Any]]:
    out = []
    for ann in group.itertuples(index=False):
        out.append(
            {
                "id": int(ann.annotation_id),
                "completed_by": ann.annotator,
                "result": [
                    {
                        "from_name": from_name,
                        "to_name": to_name,
                        "type": "choices",
                        "value": {"choices": [ann.label]},
                        "origin": "manual",
                    }
                ],
                "was_cancelled": False,
                "created_at": ann.created_at.isoformat(),
                "lead_time": None if pd.isna(ann.lead_time_s) else float(ann.lead_time_s),
            }
        )
    return out


def _write_atomic(path: Path, text: str) -> None:
    # A reader never sees half a file: write beside it, then rename over it.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def labelstudio_config(
    labels: Sequence[str], from_name: str = "label", to_name: str = "text"
) -> str:
    """A Label Studio labeling config (XML) for single-choice text classification."""
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return (
        "<View>\n"
        f'  <Text name={quoteattr(to_name)} value="$text"/>\n'
        f'  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} choice="single">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )
