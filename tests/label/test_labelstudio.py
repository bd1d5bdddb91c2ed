"""Label Studio JSON: round trips, and malformed files that import nothing and name the task."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from loopline.cli.label import label_app
from loopline.errors import DataError, LooplineError
from loopline.label.labelstudio import (
    LabelStudioError,
    export_labelstudio,
    import_labelstudio,
    labelstudio_config,
    parse_labelstudio,
)
from loopline.label.queue import LabelQueue

LABELS = ["negative", "positive"]


def _task(task_id: int, text: Any, *choices: tuple[Any, Any], **extra: Any) -> dict[str, Any]:
    """A Label Studio task with one annotation per (annotator, choices) pair."""
    annotations = [
        {
            "id": 100 + n,
            "completed_by": who,
            "result": [
                {
                    "id": f"r{n}",
                    "from_name": "sentiment",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": picked},
                }
            ],
            "created_at": "2026-11-20T10:00:00.000000Z",
            "lead_time": 3.5,
        }
        for n, (who, picked) in enumerate(choices)
    ]
    return {"id": task_id, "data": {"text": text}, "annotations": annotations, **extra}


def _good_tasks() -> list[dict[str, Any]]:
    return [
        _task(1, "love it", (1, ["positive"]), (2, ["positive"])),
        _task(2, "hate it", (1, ["negative"])),
        _task(3, "no labels yet", predictions=[{"result": [], "score": 0.4}]),
    ]


@pytest.fixture
def queue(tmp_path: Path) -> LabelQueue:
    return LabelQueue(f"sqlite:///{tmp_path}/m.db", labels=LABELS)


def _write(tmp_path: Path, data: Any, name: str = "export.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_import_a_label_studio_export(queue: LabelQueue, tmp_path: Path) -> None:
    tasks = _good_tasks()
    tasks[1]["annotations"].append({"completed_by": 3, "was_cancelled": True, "result": []})
    summary = import_labelstudio(queue, _write(tmp_path, tasks))
    assert (summary.tasks, summary.new_tasks, summary.annotations) == (3, 3, 3)
    assert summary.skipped_annotations == 1
    ann = queue.annotations()
    assert list(zip(ann["item_id"], ann["annotator"], ann["label"], strict=True)) == [
        ("1", "1", "positive"),
        ("1", "2", "positive"),
        ("2", "1", "negative"),
    ]
    assert list(ann["lead_time_s"]) == [3.5, 3.5, 3.5]
    assert str(ann["created_at"][0]) == "2026-11-20 10:00:00+00:00"
    tasks_frame = queue.tasks().set_index("item_id")
    # Predictions are kept as suggestions; the file's control name is kept for export.
    assert tasks_frame.loc["3", "payload"] == {
        "predictions": [{"result": [], "score": 0.4}],
        "_labelstudio": {
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "data_key": "text",
        },
    }
    assert summary.predictions == 1
    assert tasks_frame.loc["1", "source"] == "labelstudio"
    # Importing the same file again changes nothing.
    again = import_labelstudio(queue, _write(tmp_path, tasks))
    assert again.new_tasks == 0 and len(queue.annotations()) == 3


def test_export_round_trips(queue: LabelQueue, tmp_path: Path) -> None:
    queue.add_items([{"item_id": "x1", "text": "sunny", "lang": "en"}, {"text": "rain"}])
    ids = queue.tasks().set_index("item_id")["id"]
    queue.submit(int(ids["x1"]), "ana", "positive", lead_time_s=2.0)
    queue.submit(int(ids["x1"]), "bob", "negative")
    path = tmp_path / "out" / "tasks.json"
    exported = export_labelstudio(queue, path)
    assert json.loads(path.read_text(encoding="utf-8")) == exported
    first = exported[0]
    assert first["data"] == {"text": "sunny", "item_id": "x1", "lang": "en"}
    assert first["annotations"][0]["result"][0]["value"] == {"choices": ["positive"]}
    assert first["annotations"][0]["completed_by"] == "ana"

    copy = LabelQueue(queue.store, "copy")
    import_labelstudio(copy, path)
    assert copy.label_set == ["positive", "negative"]  # taken from the file, first use first
    columns = ["item_id", "text", "annotator", "label", "lead_time_s", "created_at"]
    assert copy.annotations()[columns].equals(queue.annotations()[columns])
    assert list(copy.tasks()["payload"]) == list(queue.tasks()["payload"])

    def without_ids(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for task in tasks:
            task.pop("id")
            for ann in task["annotations"]:
                ann.pop("id")
        return tasks

    assert without_ids(export_labelstudio(copy)) == without_ids(exported)


def _assert_nothing_imported(queue: LabelQueue) -> None:
    assert queue.tasks().empty and queue.annotations().empty


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda t: t[1]["data"].pop("text"), r"task 1 \(id 2\): data.text must be .* missing"),
        (lambda t: t[1].pop("data"), r"task 1 \(id 2\): data must be an object"),
        (
            lambda t: t[1]["annotations"][0]["result"][0]["value"].update(choices="negative"),
            r"task 1 \(id 2\): annotation 0: value.choices must be a list with exactly one label",
        ),
        (
            lambda t: t[1]["annotations"][0]["result"][0]["value"].update(
                choices=["negative", "positive"]
            ),
            r"task 1 \(id 2\): annotation 0: value.choices must be a list",
        ),
        (
            lambda t: t[1]["annotations"][0]["result"][0]["value"].update(choices=["meh"]),
            r"task 1 \(id 2\): annotation 0: label 'meh' is not in the label set",
        ),
        (
            lambda t: t[1]["annotations"][0]["result"][0].update(type="textarea"),
            r"task 1 \(id 2\): annotation 0: expected one result of type 'choices', found 0",
        ),
        (
            lambda t: t[1].update(annotations={"result": []}),
            r"task 1 \(id 2\): annotations must be a list",
        ),
        (
            lambda t: t[1]["annotations"][0].update(lead_time="slow"),
            r"task 1 \(id 2\): annotation 0: lead_time must be seconds",
        ),
        (
            lambda t: t[1]["annotations"][0].update(created_at="yesterday"),
            r"task 1 \(id 2\): annotation 0: created_at must be an ISO 8601 time",
        ),
        (lambda t: t.__setitem__(1, "hate it"), r"task 1: expected an object, found a string"),
        (
            lambda t: t[1]["annotations"].append(t[1]["annotations"][0]),
            r"task 1 \(id 2\): annotation 1: '1' annotated this task twice",
        ),
    ],
)
def test_a_malformed_task_imports_nothing_and_is_named(
    queue: LabelQueue, tmp_path: Path, break_it: Any, message: str
) -> None:
    tasks = _good_tasks()
    break_it(tasks)
    with pytest.raises(LabelStudioError, match=message) as caught:
        import_labelstudio(queue, _write(tmp_path, tasks))
    assert "nothing was imported" in str(caught.value)
    _assert_nothing_imported(queue)


def test_every_bad_task_is_listed(queue: LabelQueue, tmp_path: Path) -> None:
    tasks = _good_tasks()
    tasks[0]["data"]["text"] = ""
    tasks[2]["data"] = {"body": "no text"}
    with pytest.raises(LabelStudioError) as caught:
        import_labelstudio(queue, _write(tmp_path, tasks))
    error = caught.value
    assert "2 of 3 task(s) are malformed" in str(error)
    assert [p.split(":")[0] for p in error.problems] == ["task 0 (id 1)", "task 2 (id 3)"]
    _assert_nothing_imported(queue)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[{"id": 1, "data": {"text": "a"}},\n {"id": 2, "data": }]',
            r"line 2, column 20: Expecting value",
        ),
        ('{"id": 1, "data": {"text": "a"}}', r"expected a JSON list of tasks, found an object"),
        ("[]", r"the task list is empty"),
    ],
)
def test_invalid_json_says_where(
    queue: LabelQueue, tmp_path: Path, content: str, message: str
) -> None:
    with pytest.raises(LabelStudioError, match=message):
        import_labelstudio(queue, _write(tmp_path, content))
    _assert_nothing_imported(queue)


def test_missing_file_and_unusable_label_sets(tmp_path: Path) -> None:
    queue = LabelQueue(f"sqlite:///{tmp_path}/m.db", "fresh")
    with pytest.raises(DataError, match="not found"):
        import_labelstudio(queue, tmp_path / "missing.json")
    with pytest.raises(LooplineError, match="no labelled annotations"):
        import_labelstudio(queue, [{"data": {"text": "a"}}])
    summary = import_labelstudio(queue, [{"data": {"text": "a"}}], labels=["x", "y"])
    assert summary.new_tasks == 1 and queue.label_set == ["x", "y"]
    assert queue.tasks()["item_id"][0] == "labelstudio-0"


def test_parse_only_checks(tmp_path: Path) -> None:
    items, annotations, skipped = parse_labelstudio(_good_tasks(), LABELS)
    assert [i["item_id"] for i in items] == ["1", "2", "3"]
    assert len(annotations) == 3 and skipped == 0
    with pytest.raises(LabelStudioError, match="not in the label set"):
        parse_labelstudio(_good_tasks(), ["spam", "ham"])


def test_labeling_config_is_valid_xml() -> None:
    root = ET.fromstring(labelstudio_config(["neg", 'say "hi"'], from_name="sentiment"))
    choices = root.find("Choices")
    assert choices is not None and choices.get("name") == "sentiment"
    assert [c.get("value") for c in choices] == ["neg", 'say "hi"']


def test_cli_import_and_export(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(project))
    runner = CliRunner()
    source = _write(project, _good_tasks())
    result = runner.invoke(label_app, ["import", str(source), "--labels", "negative,positive"])
    assert result.exit_code == 0, result.output
    assert "imported 3 task(s) (3 new) and 3 annotation(s)" in result.output
    target = project / "back.json"
    result = runner.invoke(label_app, ["export", str(target)])
    assert result.exit_code == 0 and "wrote 3 task(s) with 3 annotation(s)" in result.output
    assert len(json.loads(target.read_text(encoding="utf-8"))) == 3

    bad = _good_tasks()
    bad[0]["annotations"][0]["result"][0]["value"]["choices"] = ["meh"]
    result = runner.invoke(label_app, ["import", str(_write(project, bad, "bad.json"))])
    assert isinstance(result.exception, LabelStudioError)
    assert "task 0 (id 1)" in str(result.exception)


# -- a realistic round trip: names, predictions, annotators ------------------------------------
SENTIMENT_CONFIG = """<View>
  <Header value="How does the tweet feel?"/>
  <Text name="tweet" value="$text"/>
  <Choices name="sentiment" toName="tweet" choice="single" showInline="true">
    <Choice value="negative"/>
    <Choice value="positive"/>
  </Choices>
</View>
"""


def _result(label: str, region: str) -> dict[str, Any]:
    return {
        "value": {"choices": [label]},
        "id": region,
        "from_name": "sentiment",
        "to_name": "tweet",
        "type": "choices",
        "origin": "manual",
    }


def _annotation(number: int, task: int, user: int, label: str, lead: float) -> dict[str, Any]:
    """One annotation as Label Studio 1.x writes it in a JSON export."""
    return {
        "id": number,
        "completed_by": user,
        "result": [_result(label, f"reg{number}")],
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": f"2026-03-0{task}T10:1{number % 10}:00.123456Z",
        "updated_at": f"2026-03-0{task}T10:1{number % 10}:00.123456Z",
        "draft_created_at": None,
        "lead_time": lead,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"0b5c-{number}",
        "import_id": None,
        "last_action": None,
        "task": task,
        "project": 7,
        "updated_by": user,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def _prediction(number: int, task: int, label: str, score: float) -> dict[str, Any]:
    return {
        "id": number,
        "model_version": "tweet-bert-2026-02",
        "created_ago": "2 weeks",
        "result": [dict(_result(label, f"pred{number}"), origin="prediction")],
        "score": score,
        "cluster": None,
        "neighbors": None,
        "mislabeling": 0.0,
        "created_at": "2026-02-20T08:00:00.000000Z",
        "updated_at": "2026-02-20T08:00:00.000000Z",
        "model": None,
        "model_run": None,
        "task": task,
        "project": 7,
    }


def _export_task(task: int, text: str, annotations: list[Any], predictions: list[Any]) -> Any:
    return {
        "id": task,
        "annotations": annotations,
        "file_upload": "4b1e-tweets.json",
        "drafts": [],
        "predictions": predictions,
        "data": {"text": text, "user": f"@user{task}"},
        "meta": {},
        "created_at": "2026-02-19T09:00:00.000000Z",
        "updated_at": "2026-03-05T10:00:00.000000Z",
        "inner_id": task,
        "total_annotations": len(annotations),
        "cancelled_annotations": 0,
        "total_predictions": len(predictions),
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 7,
        "updated_by": 1,
        "comment_authors": [],
    }


def _real_export() -> list[dict[str, Any]]:
    """A Label Studio project export: choices `sentiment` on text object `tweet`, two
    annotators (user ids 1 and 2), model predictions with a version and a score."""
    return [
        _export_task(
            1,
            "just landed in lisbon, sun is out!",
            [_annotation(11, 1, 1, "positive", 4.2), _annotation(12, 1, 2, "positive", 6.0)],
            [_prediction(101, 1, "positive", 0.97)],
        ),
        _export_task(
            2,
            "my flight got cancelled again",
            [_annotation(13, 2, 1, "negative", 3.1), _annotation(14, 2, 2, "positive", 9.5)],
            [_prediction(102, 2, "negative", 0.88)],
        ),
        _export_task(3, "monday meeting at 9", [], [_prediction(103, 3, "positive", 0.51)]),
        _export_task(4, "no model has seen this one", [_annotation(15, 4, 2, "negative", 2.0)], []),
    ]


def _essentials(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Label Studio imports from an export (its own bookkeeping aside)."""

    def result(r: dict[str, Any]) -> dict[str, Any]:
        return {k: r[k] for k in ("from_name", "to_name", "type", "value")}

    return [
        {
            "id": task["id"],
            "data": task["data"],
            "annotations": [
                {
                    "completed_by": a["completed_by"],
                    "result": [result(r) for r in a["result"]],
                    "was_cancelled": a["was_cancelled"],
                    "lead_time": a["lead_time"],
                    "created_at": pd.Timestamp(a["created_at"]),
                }
                for a in task["annotations"]
            ],
            "predictions": [
                {
                    "model_version": p["model_version"],
                    "score": p["score"],
                    "result": [result(r) for r in p["result"]],
                }
                for p in task["predictions"]
            ],
        }
        for task in tasks
    ]


@pytest.mark.parametrize("with_config", [False, True])
def test_a_label_studio_export_survives_a_round_trip(tmp_path: Path, with_config: bool) -> None:
    source = _write(tmp_path, _real_export())
    queue = LabelQueue(f"sqlite:///{tmp_path}/m.db", "tweets")
    options = {"config": SENTIMENT_CONFIG} if with_config else {}
    summary = import_labelstudio(queue, source, **options)
    assert (summary.tasks, summary.annotations) == (4, 5)
    assert getattr(summary, "predictions", None) == 3
    assert queue.label_set == ["negative", "positive"] if with_config else ["positive", "negative"]
    assert list(queue.annotations()["annotator"]) == ["1", "2", "1", "2", "2"]

    exported = export_labelstudio(queue, tmp_path / "back.json")
    assert _essentials(exported) == _essentials(_real_export())
    # Names come back exactly as Label Studio's config has them, so the file loads there again.
    names = {(r["from_name"], r["to_name"], r["type"]) for t in exported for a in t["annotations"]
             for r in a["result"]}  # fmt: skip
    assert names == {("sentiment", "tweet", "choices")}

    # And through Loopline once more: the same tasks, annotations and suggestions.
    again = LabelQueue(queue.store, "again")
    import_labelstudio(again, tmp_path / "back.json")
    assert _essentials(export_labelstudio(again)) == _essentials(exported)


def test_predictions_are_checked_and_counted(queue: LabelQueue, tmp_path: Path) -> None:
    tasks = _good_tasks()
    tasks[0]["predictions"] = [{"model_version": "v1", "score": "high", "result": []}]
    with pytest.raises(LabelStudioError, match=r"task 0 \(id 1\): prediction 0: score must be"):
        import_labelstudio(queue, _write(tmp_path, tasks))
    tasks[0]["predictions"] = ["positive"]
    with pytest.raises(LabelStudioError, match=r"prediction 0: expected an object"):
        import_labelstudio(queue, _write(tmp_path, tasks))
    _assert_nothing_imported(queue)


def test_a_config_that_does_not_match_the_file_is_named(queue: LabelQueue, tmp_path: Path) -> None:
    other = SENTIMENT_CONFIG.replace('name="sentiment"', 'name="mood"')
    with pytest.raises(LabelStudioError, match=r"from_name 'sentiment'.*Choices tag is 'mood'"):
        import_labelstudio(queue, _write(tmp_path, _real_export()), config=other)
    with pytest.raises(LabelStudioError, match="no <Choices> tag"):
        import_labelstudio(queue, _write(tmp_path, _real_export()), config="<View/>")
    _assert_nothing_imported(queue)


def test_the_text_object_names_the_data_field(tmp_path: Path) -> None:
    tasks = _real_export()
    for task in tasks:
        task["data"] = {"tweet": task["data"].pop("text"), **task["data"]}
    config = SENTIMENT_CONFIG.replace('value="$text"', 'value="$tweet"')
    queue = LabelQueue(f"sqlite:///{tmp_path}/m.db", "tweets")
    import_labelstudio(queue, _write(tmp_path, tasks), config=config)
    assert queue.tasks()["text"][0] == "just landed in lisbon, sun is out!"
    assert _essentials(export_labelstudio(queue)) == _essentials(tasks)
    # Without the config, the results' object name finds the field too.
    guessed = LabelQueue(queue.store, "guessed")
    import_labelstudio(guessed, _write(tmp_path, tasks))
    assert _essentials(export_labelstudio(guessed)) == _essentials(tasks)


def test_cli_import_counts_predictions_and_takes_a_config(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(project))
    source = _write(project, _real_export())
    config = project / "config.xml"
    config.write_text(SENTIMENT_CONFIG, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(label_app, ["import", str(source), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "3 prediction(s) kept as model suggestions" in " ".join(result.output.split())
    target = project / "back.json"
    assert runner.invoke(label_app, ["export", str(target)]).exit_code == 0
    assert _essentials(json.loads(target.read_text(encoding="utf-8"))) == _essentials(
        _real_export()
    )
