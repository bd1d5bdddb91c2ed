"""Import and export a labeling queue in Label Studio's JSON task format.

A Label Studio export is a JSON list of tasks::

    [{"id": 1,
      "data": {"text": "great day"},
      "annotations": [{"completed_by": 3, "lead_time": 4.2, "created_at": "2026-...",
                       "result": [{"from_name": "sentiment", "to_name": "tweet",
                                   "type": "choices", "value": {"choices": ["positive"]}}]}],
      "predictions": [{"model_version": "bert-v2", "score": 0.93, "result": [...]}]}]

Import checks every task before writing anything: one malformed task and nothing is
imported, and the error names each bad task by its position and id. ``from_name`` and
``to_name`` are the names of the labeling config's Choices control and the object it labels
(a Text tag); import keeps them with each task (taken from the file, or from the project's
labeling config when one is given), and export writes them back, so the exported file still
matches the project's labeling config. Model ``predictions`` (model version, score, result)
are kept with their task as model suggestions: the labeling page shows them, the import
summary counts them, and export writes them back.

What a round trip (Label Studio -> import -> export) changes: annotation and prediction ids
(Label Studio assigns new ones on import anyway), task ids of items whose id is not a number
(their queue id goes into ``data.item_id``), the result region ids and Label Studio's own
bookkeeping fields (``updated_at``, ``project``, ``inner_id``, counts, ...). Cancelled and
empty annotations are skipped (and counted); ``created_at`` keeps its time, not its spelling.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from loopline.core.files import write_atomic
from loopline.errors import DataError, LooplineError
from loopline.label.queue import LabelQueue

__all__ = [
    "ImportSummary",
    "LabelStudioError",
    "LabelStudioNames",
    "export_labelstudio",
    "import_labelstudio",
    "labelstudio_config",
    "labelstudio_names",
    "parse_labelstudio",
]

# How many task problems one error message lists before it summarises the rest.
_SHOWN_PROBLEMS = 5
# Where a task's Label Studio names live in its payload (never written into ``data``).
_NAMES_KEY = "_labelstudio"
_PREDICTION_KEYS = ("model_version", "score", "result")


class LabelStudioError(DataError):
    """A Label Studio file that cannot be imported; ``problems`` lists every bad task."""

    def __init__(self, message: str, problems: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote: tasks, new tasks, annotations, annotations skipped as empty or
    cancelled, and model predictions kept as suggestions."""

    tasks: int
    new_tasks: int
    annotations: int
    skipped_annotations: int
    predictions: int = 0


@dataclass(frozen=True)
class LabelStudioNames:
    """How a Label Studio project names things: the Choices control (``from_name``), the
    object it labels (``to_name``), the result ``type`` and the task data field holding the
    text (``data_key``: ``text`` for ``<Text value="$text"/>``). ``labels`` are the config's
    choices, in order (empty when the names come from a file)."""

    from_name: str = "label"
    to_name: str = "text"
    type: str = "choices"
    data_key: str = "text"
    labels: tuple[str, ...] = field(default=(), compare=False)

    def stored(self) -> dict[str, str]:
        """The names as kept in a task's payload."""
        found = asdict(self)
        found.pop("labels")
        return found


@dataclass
class _Parsed:
    items: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    skipped: int
    labels_seen: list[str]
    predictions: int = 0


# -- the labeling config ----------------------------------------------------------------------
def labelstudio_names(config: str | Path) -> LabelStudioNames:
    """The names a Label Studio labeling config (XML text, or a file holding it) gives its
    single-choice classification: the one ``<Choices>`` tag, the object it labels, the data
    field that object shows, and the choices in order."""
    text = _config_text(config)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise LabelStudioError(
            f"the labeling config is not valid XML: {exc}",
            [str(exc)],
            hint="copy it from the project's Settings > Labeling Interface > Code",
        ) from None
    choices = list(root.iter("Choices"))
    if len(choices) != 1:
        found = ", ".join(repr(c.get("name")) for c in choices)
        raise LabelStudioError(
            "the labeling config has no <Choices> tag"
            if not choices
            else f"the labeling config has {len(choices)} <Choices> tags ({found}); "
            "a queue holds one label per item",
            ["labeling config"],
            hint="use a config with one <Choices> tag (a text classification project)",
        )
    tag = choices[0]
    from_name, to_name = tag.get("name") or "", tag.get("toName") or ""
    if not from_name or not to_name:
        raise LabelStudioError(
            "the labeling config's <Choices> tag needs a name and a toName attribute",
            ["labeling config"],
        )
    data_key = "text"
    target = next((e for e in root.iter() if e is not tag and e.get("name") == to_name), None)
    value = "" if target is None else (target.get("value") or "")
    if value.startswith("$") and len(value) > 1:
        data_key = value[1:]
    labels = tuple(str(c.get("value")) for c in tag.iter("Choice") if c.get("value"))
    return LabelStudioNames(from_name, to_name, "choices", data_key, labels)


def _config_text(config: str | Path) -> str:
    if isinstance(config, str) and config.lstrip().startswith("<"):
        return config
    path = Path(config)
    if not path.is_file():
        raise DataError(
            f"labeling config not found: {path}",
            hint="save the project's Settings > Labeling Interface > Code as an XML file",
        )
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None


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
    source: str | Path | Sequence[Any],
    label_set: Sequence[str] | None = None,
    config: str | Path | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Check a Label Studio export and turn it into queue items and annotations.

    ``source`` is a file path or the already-parsed list. With ``label_set`` every chosen
    label must be in it; with ``config`` (a labeling config) every annotation must use its
    Choices tag. Returns ``(items, annotations, skipped)``; skipped counts cancelled or empty
    annotations. Raises :class:`LabelStudioError` naming every malformed task.
    """
    data, name = _load_json(source)
    names = None if config is None else labelstudio_names(config)
    parsed = _parse(data, name, None if label_set is None else list(label_set), names)
    return parsed.items, parsed.annotations, parsed.skipped


def _parse(
    data: Any, name: str, label_set: list[str] | None, config: LabelStudioNames | None
) -> _Parsed:
    if not isinstance(data, list):
        raise LabelStudioError(
            f"{name}: expected a JSON list of tasks, found {_json_type(data)}",
            [f"top level is {_json_type(data)}"],
            hint="export the project from Label Studio as JSON: a list of tasks like "
            '[{"data": {"text": "..."}}]',
        )
    if not data:
        raise LabelStudioError(f"{name}: the task list is empty", ["no tasks"])
    parsed = _Parsed([], [], 0, [])
    problems: list[str] = []
    seen_items: dict[str, int] = {}
    default = config or _file_names(data)
    for index, task in enumerate(data):
        where = _where(index, task)
        try:
            _parse_task(task, index, label_set, parsed, seen_items, config, default)
        except _TaskProblem as problem:
            problems.append(f"{where}: {problem}")
    if problems:
        hint = None
        if any("data." in p and "missing" in p for p in problems):
            hint = (
                "give the project's labeling config (--config FILE; Python: the config "
                "argument): its text object names the data field that holds the text"
            )
        raise LabelStudioError(_problem_message(name, problems, len(data)), problems, hint)
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


def _results(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``choices`` result of a task: its annotations' first, then its predictions'."""
    found = []
    for key in ("annotations", "predictions"):
        entries = task.get(key)
        for entry in entries if isinstance(entries, list) else []:
            result = entry.get("result") if isinstance(entry, dict) else None
            for region in result if isinstance(result, list) else []:
                if isinstance(region, dict) and region.get("type") == "choices":
                    found.append(region)
    return found


def _names_of(region: dict[str, Any], data_key: str) -> LabelStudioNames | None:
    from_name, to_name = region.get("from_name"), region.get("to_name")
    if not (isinstance(from_name, str) and from_name and isinstance(to_name, str) and to_name):
        return None
    return LabelStudioNames(from_name, to_name, "choices", data_key)


def _file_names(data: list[Any]) -> LabelStudioNames | None:
    """The names the file's first ``choices`` result uses (None when it has none)."""
    for task in data:
        for region in _results(task) if isinstance(task, dict) else []:
            names = _names_of(region, "text")
            if names is not None:
                return names
    return None


def _data_key(data: dict[str, Any], config: LabelStudioNames | None, to_name: str | None) -> str:
    """The data field holding the text: the config's, else ``text``, else the object name."""
    if config is not None:
        return config.data_key
    if "text" not in data and to_name is not None and isinstance(data.get(to_name), str):
        return to_name
    return "text"


def _parse_task(
    task: Any,
    index: int,
    label_set: list[str] | None,
    parsed: _Parsed,
    seen_items: dict[str, int],
    config: LabelStudioNames | None,
    default: LabelStudioNames | None,
) -> None:
    if not isinstance(task, dict):
        raise _TaskProblem(f"expected an object, found {_json_type(task)}")
    task_id = task.get("id")
    if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, int | str)):
        raise _TaskProblem(f"id must be a number or string, found {_json_type(task_id)}")
    data = task.get("data")
    if not isinstance(data, dict):
        raise _TaskProblem(f"data must be an object with a text field, found {_json_type(data)}")
    own = next(
        (n for r in _results(task) if (n := _names_of(r, "text")) is not None), None
    ) if config is None else None  # fmt: skip
    names = config or own or default
    key = _data_key(data, config, None if names is None else names.to_name)
    text = data.get(key)
    if not isinstance(text, str) or not text.strip():
        found = "missing" if key not in data else f"{_json_type(text)} {text!r}"[:60]
        raise _TaskProblem(f"data.{key} must be a non-empty string, found {found}")
    item_id = _item_id(data, task_id, index)
    if item_id in seen_items:
        raise _TaskProblem(f"item {item_id!r} repeats task {seen_items[item_id]}")
    annotations = _parse_annotations(task.get("annotations", []), label_set, parsed, config)
    predictions = _parse_predictions(task.get("predictions", []))
    seen_items[item_id] = index
    payload: dict[str, Any] = {k: v for k, v in data.items() if k not in (key, "item_id")}
    if predictions:
        payload["predictions"] = predictions
        parsed.predictions += len(predictions)
    base = names or LabelStudioNames()
    kept = LabelStudioNames(base.from_name, base.to_name, base.type, key)
    if kept != LabelStudioNames():  # the defaults need no keeping
        payload[_NAMES_KEY] = kept.stored()
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
    annotations: Any,
    label_set: list[str] | None,
    parsed: _Parsed,
    config: LabelStudioNames | None,
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
        label = _choice(annotation.get("result"), where, label_set, config)
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


def _choice(
    result: Any, where: str, label_set: list[str] | None, config: LabelStudioNames | None
) -> str | None:
    """The single chosen label of an annotation's result list (None when it is empty)."""
    if result is None or result == []:
        return None
    if not isinstance(result, list):
        raise _TaskProblem(f"{where}: result must be a list, found {_json_type(result)}")
    choices = [r for r in result if isinstance(r, dict) and r.get("type") == "choices"]
    if config is not None:
        ours = [r for r in choices if r.get("from_name") == config.from_name]
        if choices and not ours:
            raise _TaskProblem(
                f"{where}: result from_name {choices[0].get('from_name')!r} does not match the "
                f"labeling config, whose Choices tag is {config.from_name!r}"
            )
        choices = ours
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


def _parse_predictions(predictions: Any) -> list[dict[str, Any]]:
    """Model predictions as kept with the task: model version, score and result."""
    if not isinstance(predictions, list):
        raise _TaskProblem(f"predictions must be a list, found {_json_type(predictions)}")
    kept = []
    for number, prediction in enumerate(predictions):
        where = f"prediction {number}"
        if not isinstance(prediction, dict):
            raise _TaskProblem(f"{where}: expected an object, found {_json_type(prediction)}")
        result = prediction.get("result", [])
        if not isinstance(result, list):
            raise _TaskProblem(f"{where}: result must be a list, found {_json_type(result)}")
        version = prediction.get("model_version")
        if version is not None and not isinstance(version, str):
            raise _TaskProblem(f"{where}: model_version must be a string, found {version!r}")
        entry = {k: prediction[k] for k in _PREDICTION_KEYS if k in prediction}
        if prediction.get("score") is not None:
            entry["score"] = _score(prediction["score"], where)
        kept.append(entry)
    return kept


def _score(value: Any, where: str) -> float:
    # Label Studio itself reads the score with float(); so do we, but say when it fails.
    try:
        score = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score):
        raise _TaskProblem(f"{where}: score must be a number or null, found {value!r}")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else score


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
    config: str | Path | None = None,
) -> ImportSummary:
    """Import a Label Studio export into ``queue``, all or nothing.

    ``config`` is the project's labeling config (XML text or a file): its Choices and Text
    tags name the control, the object and the data field, and every annotation must use
    that control. Without it the names come from the file. Either way they are kept with
    each task, so :func:`export_labelstudio` writes them back. Model predictions are kept
    with their task as suggestions (counted in the summary).

    The label set is, in order of preference: ``labels``, the queue's own, the config's
    choices, or the labels the file uses (in order of first use). Every task is checked
    before anything is written.
    """
    names = None if config is None else labelstudio_names(config)
    data, name = _load_json(source)
    wanted = list(labels) if labels is not None else queue.label_set or None
    if wanted is None and names is not None and names.labels:
        wanted = list(names.labels)
    parsed = _parse(data, name, wanted, names)
    if wanted is None:
        wanted = parsed.labels_seen
        if not wanted:
            raise LooplineError(
                f"{name} has no labelled annotations and queue {queue.name!r} has no label set",
                hint="name the label set: --labels a,b (Python: the labels argument)",
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
        predictions=parsed.predictions,
    )


# -- export -----------------------------------------------------------------------------------
def export_labelstudio(
    queue: LabelQueue,
    path: str | Path | None = None,
    from_name: str | None = None,
    to_name: str | None = None,
    config: str | Path | None = None,
) -> list[dict[str, Any]]:
    """The queue as Label Studio tasks (written atomically to ``path`` when given).

    Each task's results name the Choices control and the object it labels as the task was
    imported with (default ``label`` and ``text``); ``config`` (the project's labeling
    config) or ``from_name``/``to_name`` override them. Kept predictions are written back.
    A task's ``id`` is its item id when that is a number; other items keep theirs in
    ``data.item_id``, so a round trip keeps every item.
    """
    override: dict[str, str] = {} if config is None else labelstudio_names(config).stored()
    if from_name is not None:
        override["from_name"] = from_name
    if to_name is not None:
        override["to_name"] = to_name
    tasks = queue.tasks()
    annotations = queue.annotations()
    by_task = {task_id: group for task_id, group in annotations.groupby("task_id")}
    exported = []
    for row in tasks.itertuples(index=False):
        payload = dict(row.payload)
        predictions = payload.pop("predictions", [])
        names = LabelStudioNames().stored() | _stored_names(payload.pop(_NAMES_KEY, None))
        names |= override
        key = names["data_key"]
        data = {key: row.text, **{k: v for k, v in payload.items() if k != key}}
        task_id = _numeric_id(row.item_id)
        if task_id is None:
            task_id = int(row.id)
            data["item_id"] = row.item_id
        group = by_task.get(row.id)
        exported.append(
            {
                "id": task_id,
                "data": data,
                "annotations": [] if group is None else _export_annotations(group, names),
                "predictions": predictions,
            }
        )
    if path is not None:
        write_atomic(Path(path), json.dumps(exported, ensure_ascii=False, indent=2))
    return exported


def _stored_names(found: Any) -> dict[str, str]:
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if k in LabelStudioNames().stored() and v}


def _numeric_id(item_id: str) -> int | None:
    """The item id as a Label Studio task id, when it is one (``"17"`` but not ``"017"``)."""
    if item_id.isascii() and item_id.isdigit() and str(int(item_id)) == item_id:
        return int(item_id)
    return None


def _user(annotator: str) -> int | str | dict[str, str]:
    """``completed_by`` as Label Studio imports it: a user id, or an email to look up."""
    if _numeric_id(annotator) is not None:
        return int(annotator)
    if "@" in annotator:
        return {"email": annotator}
    return annotator


def _export_annotations(group: pd.DataFrame, names: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for ann in group.itertuples(index=False):
        out.append(
            {
                "id": int(ann.annotation_id),
                "completed_by": _user(str(ann.annotator)),
                "result": [
                    {
                        "from_name": names["from_name"],
                        "to_name": names["to_name"],
                        "type": names["type"],
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


def labelstudio_config(
    labels: Sequence[str], from_name: str = "label", to_name: str = "text", data_key: str = "text"
) -> str:
    """A Label Studio labeling config (XML) for single-choice text classification."""
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return (
        "<View>\n"
        f"  <Text name={quoteattr(to_name)} value={quoteattr('$' + data_key)}/>\n"
        f'  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} choice="single">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )
