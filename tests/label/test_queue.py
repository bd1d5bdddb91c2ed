"""The human labeling queue: persistence, several annotators, agreement, human labels, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from loopline.cli.label import label_app
from loopline.core.metadata import SCHEMA_HEAD, MetadataStore
from loopline.errors import DataError, LooplineError
from loopline.label.agreement import agreement_report, load_vader_ratings
from loopline.label.queue import (
    HUMAN_LABEL_COLUMNS,
    LabelQueue,
    UnknownTask,
    load_human_labels,
    override_labels,
)

LABELS = ["negative", "positive"]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/m.db"


@pytest.fixture
def queue(url: str) -> LabelQueue:
    q = LabelQueue(url, labels=LABELS)
    q.add_items(
        [
            {"item_id": "a", "text": "love it"},
            {"item_id": "b", "text": "hate it"},
            {"item_id": "c", "text": "meh"},
        ]
    )
    return q


# -- migrations --------------------------------------------------------------------------------
def _alembic_config() -> object:
    from alembic.config import Config

    import loopline.core.metadata as metadata_module

    config = Config()
    config.set_main_option(
        "script_location", str(Path(metadata_module.__file__).with_name("migrations"))
    )
    return config


def test_a_0001_database_upgrades_to_the_label_queue_schema(url: str) -> None:
    from alembic import command

    # Build a database as the previous release left it, with a run in it.
    engine = sa.create_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn  # type: ignore[attr-defined]
        command.upgrade(config, "0001_initial")  # type: ignore[arg-type]
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, pipeline, status, params, executor, started_at) "
                "VALUES ('r1', 'sentiment', 'completed', '{}', 'threads', '2026-11-01')"
            )
        )
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("label_tasks")
    engine.dispose()

    store = MetadataStore(url)
    with store.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        tables = set(sa.inspect(conn).get_table_names())
    assert version == SCHEMA_HEAD
    assert {"label_queues", "label_tasks", "label_assignments", "label_annotations"} <= tables
    assert [r["id"] for r in store.list_runs()] == ["r1"]  # nothing lost
    queue = LabelQueue(store, labels=LABELS)
    queue.add_items([{"item_id": "x", "text": "fine"}])
    queue.submit(queue.tasks()["id"][0], "ana", "positive")
    assert queue.stats()["annotations"] == 1


def test_migrations_match_the_table_definitions(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from loopline.core.schema import metadata

    store = MetadataStore(url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_the_label_queue_migration_downgrades_cleanly(url: str) -> None:
    from alembic import command

    MetadataStore(url).close()
    engine = sa.create_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn  # type: ignore[attr-defined]
        command.downgrade(config, "0001_initial")  # type: ignore[arg-type]
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("label_annotations")
        assert sa.inspect(conn).has_table("runs")


# -- adding items ------------------------------------------------------------------------------
def test_add_items_from_a_frame_keeps_extra_fields_and_skips_known_items(url: str) -> None:
    queue = LabelQueue(url, labels=LABELS)
    frame = pd.DataFrame(
        {"item_id": [1, 2], "text": ["one", "two"], "score": [0.25, None], "lang": ["en", "de"]}
    )
    assert queue.add_items(frame, source="active_learning", priority=2.0) == 2
    assert queue.add_items(frame) == 0  # already there
    tasks = queue.tasks()
    assert list(tasks["item_id"]) == ["1", "2"]
    assert tasks["payload"][0] == {"score": 0.25, "lang": "en"}
    assert tasks["payload"][1] == {"score": None, "lang": "de"}
    assert set(tasks["source"]) == {"active_learning"} and set(tasks["priority"]) == {2.0}


def test_item_ids_derive_from_the_text(url: str) -> None:
    queue = LabelQueue(url, labels=LABELS)
    assert queue.add_items([{"text": "same words"}]) == 1
    assert queue.add_items([{"text": "same words"}]) == 0
    assert queue.tasks()["item_id"][0].startswith("t")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"item_id": "a", "text": "x"}, {"item_id": "a", "text": "y"}], "appears twice"),
        ([{"payload": {"k": 1}}], "no item_id and no text"),
        ([{"item_id": "a"}], "neither text nor payload"),
        ([{"item_id": "a", "text": 3}], "text must be a string"),
        ([{"item_id": "a", "text": "x", "priority": "high"}], "priority must be a number"),
        (["just text"], "expected items as dicts"),
        ("text", "DataFrame or a list of dicts"),
    ],
)
def test_bad_items_are_rejected_before_anything_is_written(
    url: str, items: object, message: str
) -> None:
    queue = LabelQueue(url, labels=LABELS)
    with pytest.raises(LooplineError, match=message):
        queue.add_items(items)
    assert queue.tasks().empty


def test_bad_source_is_rejected(url: str) -> None:
    with pytest.raises(LooplineError, match="source must be"):
        LabelQueue(url, labels=LABELS).add_items([{"text": "x"}], source="Bad Source!")


# -- labelling ---------------------------------------------------------------------------------
def test_next_task_follows_priority_and_skips_what_you_labelled(url: str) -> None:
    queue = LabelQueue(url, labels=LABELS)
    queue.add_items([{"item_id": "low", "text": "l"}], priority=0.0)
    queue.add_items([{"item_id": "high", "text": "h"}], source="noise_audit", priority=5.0)
    first = queue.next_task("ana")
    assert first is not None and first.item_id == "high" and first.source == "noise_audit"
    queue.submit(first.id, "ana", "positive", lead_time_s=1.5)
    second = queue.next_task("ana")
    assert second is not None and second.item_id == "low"
    assert queue.next_task("ana", exclude=[second.id]) is None
    queue.submit(second.id, "ana", "negative")
    assert queue.next_task("ana") is None
    assert queue.progress("ana") == {"total": 2, "open": 0, "done": 2, "mine": 2}


def test_several_annotators_per_item(url: str) -> None:
    queue = LabelQueue(url, labels=LABELS, annotations_per_item=2)
    queue.add_items([{"item_id": "a", "text": "x"}, {"item_id": "b", "text": "y"}])
    task = queue.next_task("ana")
    assert task is not None
    queue.submit(task.id, "ana", "positive")
    assert queue.get_task(task.id).status == "open"  # one of two labels
    # Bob gets the half-done item first, so items get finished.
    bobs = queue.next_task("bob")
    assert bobs is not None and bobs.id == task.id and bobs.annotations == 1
    queue.submit(task.id, "bob", "negative")
    assert queue.get_task(task.id).status == "done"
    other = queue.next_task("cy")
    assert other is not None and other.item_id == "b"
    ann = queue.annotations()
    assert list(ann["annotator"]) == ["ana", "bob"]
    assert ann["created_at"].dt.tz is not None


def test_assigned_tasks_go_only_to_their_assignees(url: str) -> None:
    queue = LabelQueue(url, labels=LABELS)
    queue.add_items([{"item_id": "private", "text": "x"}], priority=9, assignees=["ana"])
    queue.add_items([{"item_id": "open", "text": "y"}])
    ana, bob = queue.next_task("ana"), queue.next_task("bob")
    assert ana is not None and ana.item_id == "private"
    assert bob is not None and bob.item_id == "open"
    with pytest.raises(LooplineError, match=r"assigned to \['ana'\], not to 'bob'"):
        queue.submit(ana.id, "bob", "positive")


def test_labels_outside_the_set_are_rejected(queue: LabelQueue) -> None:
    task = queue.next_task("ana")
    assert task is not None
    with pytest.raises(LooplineError, match=r"label 'neutral' is not in queue 'default'"):
        queue.submit(task.id, "ana", "neutral")
    with pytest.raises(UnknownTask, match="no task 999"):
        queue.submit(999, "ana", "positive")
    with pytest.raises(LooplineError, match="annotator must be a non-empty string"):
        queue.submit(task.id, "  ", "positive")
    with pytest.raises(LooplineError, match="lead_time_s must be 0 or more"):
        queue.submit(task.id, "ana", "positive", lead_time_s=-1)
    assert queue.annotations().empty


def test_a_queue_without_labels_says_how_to_set_them(url: str) -> None:
    queue = LabelQueue(url, "empty")
    queue.add_items([{"text": "x"}])
    with pytest.raises(LooplineError, match="has no label set"):
        queue.submit(int(queue.tasks()["id"][0]), "ana", "x")


def test_resubmitting_replaces_and_undo_takes_back(queue: LabelQueue) -> None:
    task = queue.next_task("ana")
    assert task is not None
    queue.submit(task.id, "ana", "negative")
    queue.submit(task.id, "ana", "positive")
    assert list(queue.annotations()["label"]) == ["positive"]
    back = queue.undo("ana")
    assert back is not None and back.id == task.id and back.status == "open"
    assert queue.annotations().empty
    assert queue.undo("ana") is None


def test_configure_keeps_labels_in_use(queue: LabelQueue) -> None:
    task = queue.next_task("ana")
    assert task is not None
    queue.submit(task.id, "ana", "negative")
    queue.configure(labels=["negative", "neutral", "positive"])
    assert queue.label_set == ["negative", "neutral", "positive"]
    with pytest.raises(LooplineError, match=r"labels \['negative'\] that the new label set"):
        queue.configure(labels=["positive"])
    with pytest.raises(LooplineError, match="interval agreement needs numeric labels"):
        queue.configure(level="interval")
    with pytest.raises(LooplineError, match="annotations_per_item must be 1 or more"):
        queue.configure(annotations_per_item=0)
    queue.configure(annotations_per_item=2)
    assert queue.get_task(task.id).status == "open"  # needs a second label now


def test_queues_are_separate_and_persistent(url: str) -> None:
    LabelQueue(url, "one", labels=LABELS).add_items([{"item_id": "a", "text": "x"}])
    LabelQueue(url, "two", labels=["spam", "ham"]).add_items([{"item_id": "a", "text": "y"}])
    reopened = LabelQueue(url, "two")
    assert reopened.label_set == ["spam", "ham"]
    assert list(reopened.tasks()["text"]) == ["y"]


# -- resolved labels, stats, human-label dataset ------------------------------------------------
def _vote(queue: LabelQueue, votes: dict[str, dict[str, str]]) -> None:
    ids = queue.tasks().set_index("item_id")["id"]
    for item, by_annotator in votes.items():
        for annotator, label in by_annotator.items():
            queue.submit(int(ids[item]), annotator, label)


def test_label_policies(queue: LabelQueue) -> None:
    _vote(
        queue,
        {
            "a": {"x": "positive", "y": "positive", "z": "negative"},
            "b": {"x": "negative", "y": "positive"},  # a tie
            "c": {"x": "negative"},
        },
    )
    majority = queue.labels().set_index("item_id")
    assert majority.loc["a", "label"] == "positive"
    assert majority.loc["a", "agreement"] == pytest.approx(2 / 3)
    assert majority.loc["a", "n_annotations"] == 3
    assert not majority.loc["b", "resolved"] and majority.loc["b", "label"] is None
    unanimous = queue.labels("unanimous").set_index("item_id")
    assert list(unanimous["resolved"]) == [False, False, True]
    latest = queue.labels("latest").set_index("item_id")
    assert latest.loc["b", "label"] == "positive" and latest.loc["b", "agreement"] == 0.5
    with pytest.raises(LooplineError, match="policy must be one of"):
        queue.labels("vote")  # type: ignore[arg-type]

    dataset = queue.export_dataset()
    assert list(dataset.columns) == HUMAN_LABEL_COLUMNS
    assert list(dataset["item_id"]) == ["a", "c"]
    assert set(dataset["label_source"]) == {"human"}
    assert list(queue.export_dataset(min_annotations=2)["item_id"]) == ["a"]
    assert list(queue.export_dataset(min_agreement=0.9)["item_id"]) == ["c"]

    disagreements = queue.disagreements()
    assert list(disagreements["item_id"]) == ["b", "a"]
    assert disagreements["votes"][1] == {"positive": 2, "negative": 1}


def test_stats_with_two_annotators_match_direct_computation(queue: LabelQueue) -> None:
    _vote(
        queue,
        {
            "a": {"ana": "positive", "bob": "positive"},
            "b": {"ana": "negative", "bob": "positive"},
            "c": {"ana": "negative", "bob": "negative"},
        },
    )
    stats = queue.stats()
    assert stats["tasks"] == {
        "total": 3,
        "open": 0,
        "done": 3,
        "labelled": 3,
        "by_source": {"manual": 3},
    }
    assert stats["annotators"] == {"ana": 3, "bob": 3}
    assert stats["label_counts"] == {"negative": 3, "positive": 3}
    assert stats["disagreements"] == 1
    agreement = stats["agreement"]
    assert agreement["cohen_kappa"] == pytest.approx(
        cohen_kappa_score(
            ["positive", "negative", "negative"], ["positive", "positive", "negative"]
        )
    )
    assert agreement["percent_agreement"] == pytest.approx(2 / 3)
    assert agreement["alpha_nominal"] == pytest.approx(
        agreement_report(queue.annotations())["alpha_nominal"]
    )


def test_empty_queue_stats_and_labels(url: str) -> None:
    queue = LabelQueue(url, labels=LABELS)
    stats = queue.stats()
    assert stats["annotations"] == 0 and stats["agreement"]["alpha_nominal"] is None
    assert queue.labels().empty and list(queue.export_dataset().columns) == HUMAN_LABEL_COLUMNS


def test_vader_ratings_in_a_queue_give_the_direct_agreement(
    shared_data: Path, tmp_path: Path
) -> None:
    ratings = load_vader_ratings(shared_data / "sentiment" / "vader" / "tweets_anonDataRatings.txt")
    queue = LabelQueue(
        f"sqlite:///{tmp_path}/m.db",
        "vader",
        labels=[str(v) for v in range(-4, 5)],
        level="interval",
        annotations_per_item=20,
    )
    annotations = pd.DataFrame(
        {
            "item_id": ratings["item_id"],
            "annotator": "rater_" + ratings["annotator"].astype(str),
            "label": ratings["rating"].astype(str),
        }
    )
    items = [{"item_id": i, "text": f"tweet {i}"} for i in ratings["item_id"].unique()]
    assert queue.add_annotations(annotations, items=items, source="vader") == len(ratings)

    stats = queue.stats()
    direct = agreement_report(ratings, value="rating", levels=("nominal", "interval"))
    assert stats["annotations"] == 159_750 and stats["tasks"]["done"] == 4200
    for key in ("alpha_interval", "alpha_nominal", "percent_agreement", "fleiss_kappa"):
        assert stats["agreement"][key] == pytest.approx(direct[key], abs=1e-12), key
    assert stats["agreement"]["alpha_interval"] == pytest.approx(0.78349, abs=1e-5)


def test_add_annotations_is_all_or_nothing(url: str) -> None:
    queue = LabelQueue(url, labels=LABELS)
    items = [{"item_id": "a", "text": "x"}]
    bad = [
        {"item_id": "a", "annotator": "ana", "label": "positive"},
        {"item_id": "a", "annotator": "bob", "label": "maybe"},
    ]
    with pytest.raises(LooplineError, match=r"annotation 1 .*'maybe' is not in the label set"):
        queue.add_annotations(bad, items=items)
    assert queue.tasks().empty and queue.annotations().empty
    with pytest.raises(LooplineError, match="not in queue 'default'"):
        queue.add_annotations([{"item_id": "zz", "annotator": "ana", "label": "positive"}])
    assert queue.tasks().empty


def test_load_human_labels_never_creates_a_queue(url: str, queue: LabelQueue) -> None:
    _vote(queue, {"a": {"ana": "positive"}})
    assert list(load_human_labels(url)["label"]) == ["positive"]
    empty = load_human_labels(url, queue="nobody-labelled-here")
    assert empty.empty and list(empty.columns) == HUMAN_LABEL_COLUMNS
    with queue.store.engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM label_queues")).scalars().all()
    assert names == ["default"]


def test_override_labels_prefers_human_labels() -> None:
    weak = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "text": ["love", "hate", "meh"],
            "label": ["negative", "negative", "positive"],
            "label_source": ["vader", "emoticon", "vader"],
            "sample_weight": [0.6, 0.7, 0.8],
        }
    )
    human = pd.DataFrame(
        {"item_id": ["a", "z"], "text": ["love", "new"], "label": ["positive", "negative"]}
    )
    out = override_labels(weak, human)
    assert list(out["label"]) == ["positive", "negative", "positive", "negative"]
    assert list(out["label_source"]) == ["human", "emoticon", "vader", "human"]
    assert list(out["sample_weight"]) == [1.0, 0.7, 0.8, 1.0]
    assert list(weak["label"]) == ["negative", "negative", "positive"]  # input untouched
    by_text = override_labels(weak.drop(columns=["item_id"]), human, key="text")
    assert list(by_text["label_source"])[:3] == ["human", "emoticon", "vader"]
    kept = override_labels(weak.drop(columns="label_source"), human, append_missing=False)
    assert list(kept["label_source"]) == ["human", "weak", "weak"]
    with pytest.raises(DataError, match="expected a 'item_id' column in df"):
        override_labels(weak.drop(columns=["item_id"]), human)


@pytest.mark.postgres
def test_queue_on_postgresql(postgres_url: str) -> None:
    queue = LabelQueue(postgres_url, labels=LABELS, annotations_per_item=2)
    queue.add_items([{"item_id": str(i), "text": f"t{i}"} for i in range(3)], assignees=["ana"])
    task = queue.next_task("ana", exclude=[999])
    assert task is not None
    queue.submit(task.id, "ana", "positive")
    assert queue.next_task("bob") is None  # everything is assigned to ana
    queue.add_annotations([{"item_id": task.item_id, "annotator": "bob", "label": "negative"}])
    assert queue.get_task(task.id).status == "done"
    assert queue.stats()["disagreements"] == 1
    queue.close()


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_queue_add_next_submit_stats(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(project))
    items = project / "items.csv"
    items.write_text("item_id,text\n1,great day\n2,awful day\n", encoding="utf-8")
    runner = CliRunner()

    added = runner.invoke(
        label_app, ["queue", "add", str(items), "--labels", "negative,positive", "--json"]
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["added"] == 2

    shown = runner.invoke(label_app, ["queue", "next", "--annotator", "ana"])
    assert shown.exit_code == 0 and "great day" in shown.output
    task = json.loads(runner.invoke(label_app, ["queue", "next", "--json"]).output)["task"]

    done = runner.invoke(
        label_app, ["queue", "submit", str(task["id"]), "positive", "--annotator", "ana"]
    )
    assert done.exit_code == 0 and "saved 'positive'" in done.output
    bad = runner.invoke(label_app, ["queue", "submit", str(task["id"]), "meh", "-a", "ana"])
    assert isinstance(bad.exception, LooplineError)  # the main CLI prints it as one line

    stats = json.loads(runner.invoke(label_app, ["queue", "stats", "--json"]).output)
    assert stats["annotations"] == 1 and stats["annotators"] == {"ana": 1}
    table = runner.invoke(label_app, ["queue", "stats"])
    assert table.exit_code == 0 and "alpha_nominal" in table.output

    store = MetadataStore(f"sqlite:///{project / '.loopline' / 'metadata.db'}")
    assert list(LabelQueue(store).annotations()["label"]) == ["positive"]


def test_cli_reads_json_lines_and_reports_bad_files(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(project))
    good = project / "items.jsonl"
    good.write_text('{"text": "a"}\n{"text": "b", "lang": "en"}\n', encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(label_app, ["queue", "add", str(good), "--labels", "x,y"])
    assert result.exit_code == 0 and "added 2 item(s)" in result.output
    broken = project / "broken.jsonl"
    broken.write_text('{"text": "a"\n', encoding="utf-8")
    result = runner.invoke(label_app, ["queue", "add", str(broken)])
    assert isinstance(result.exception, DataError)
    assert "not valid JSON Lines" in str(result.exception)
    missing = runner.invoke(label_app, ["queue", "add", str(project / "nope.csv")])
    assert isinstance(missing.exception, DataError)
