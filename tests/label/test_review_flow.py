"""From the noise audit to a reviewer: the queue statistics, which queue `label serve` opens,
the demo's pointer to it, and what the reviewer sees of an audited item."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from loopline.cli.label import label_app
from loopline.core.metadata import MetadataStore
from loopline.errors import LooplineError
from loopline.label.queue import LabelQueue
from loopline.label.web import PAGE, create_label_app

LABELS = ["negative", "positive"]


def _url(project: Path) -> str:
    return f"sqlite:///{project / '.loopline' / 'metadata.db'}"


# -- queue stats -------------------------------------------------------------------------------
def test_stats_header_and_table_count_the_same_items(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(project))
    (project / ".loopline").mkdir()
    with LabelQueue(_url(project), "tweets", labels=LABELS) as queue:
        queue.add_items([{"text": f"tweet {i}"} for i in range(5)])
        first = queue.next_task("ana")
        assert first is not None
        queue.submit(first.id, "ana", "positive")
        queue.submit(first.id, "bob", "negative")
        second = queue.next_task("ana")
        assert second is not None
        queue.submit(second.id, "ana", "negative")

    runner = CliRunner()
    stats = json.loads(
        runner.invoke(label_app, ["queue", "stats", "-q", "tweets", "--json"]).output
    )
    assert stats["tasks"]["total"] == 5 and stats["tasks"]["labelled"] == 2
    assert stats["agreement"]["items"] == 2  # the agreement statistics count labelled items

    shown = runner.invoke(label_app, ["queue", "stats", "-q", "tweets"])
    assert shown.exit_code == 0, shown.output
    header = shown.output.splitlines()[0]
    assert re.search(r"5 item\(s\), 2 with a label \(2 done, 3 open\)", header), header
    rows = {
        m.group(1).strip(): m.group(2)
        for m in re.finditer(r"^\W*([a-z][a-z0-9 +()',_]*?)\s*│\s*(\S+)", shown.output, re.M)
    }
    assert rows["items with a label"] == "2"
    assert rows["items with 2+ labels"] == "1"
    assert rows["labels given"] == "3"
    assert "items" not in rows  # no bare count that reads like the header's and is not


# -- which queue `label serve` opens ----------------------------------------------------------
@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    return calls


def _served_queue(call: dict[str, Any]) -> str:
    return str(TestClient(call["app"]).get("/api/config").json()["queue"])


def test_serve_without_queue_opens_the_only_queue_with_work(
    project: Path, monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(project))
    (project / ".loopline").mkdir()
    with LabelQueue(_url(project), "sentiment", labels=LABELS) as audit_queue:
        audit_queue.add_items([{"text": "i love it"}, {"text": "so sad"}], source="noise_audit")

    runner = CliRunner()
    result = runner.invoke(label_app, ["serve"])
    assert result.exit_code == 0, result.output
    assert "queue 'default' has nothing to label" in result.output
    assert "opening queue 'sentiment'" in result.output
    assert _served_queue(served[-1]) == "sentiment"
    # Looking did not create an empty `default` queue.
    from loopline.label.queue import list_queues

    assert [q["name"] for q in list_queues(_url(project))] == ["sentiment"]

    # Asked for by name, `default` is what opens (and it has no label set).
    named = runner.invoke(label_app, ["serve", "--queue", "default"])
    assert isinstance(named.exception, LooplineError)
    assert "has no label set" in str(named.exception)
    assert "queue 'sentiment' has 2 open" in str(named.exception.hint)

    # With two queues holding work, it names them instead of picking one.
    with LabelQueue(_url(project), "spam", labels=["ham", "spam"]) as other:
        other.add_items([{"text": "buy now"}])
    two = runner.invoke(label_app, ["serve"])
    assert isinstance(two.exception, LooplineError) and len(served) == 1
    assert "sentiment (2 open)" in str(two.exception) and "spam (1 open)" in str(two.exception)
    assert "loopline label serve --queue sentiment" in str(two.exception.hint)

    # A `default` queue with work is served as before.
    with LabelQueue(_url(project), "default", labels=LABELS) as default:
        default.add_items([{"text": "ok"}])
    assert runner.invoke(label_app, ["serve"]).exit_code == 0
    assert _served_queue(served[-1]) == "default"


def test_list_queues_counts_open_tasks(tmp_path: Path) -> None:
    from loopline.label.queue import list_queues

    url = f"sqlite:///{tmp_path}/m.db"
    assert list_queues(url) == []
    with LabelQueue(url, "b", labels=LABELS) as queue:
        queue.add_items([{"text": "x"}, {"text": "y"}])
        task = queue.next_task("ana")
        assert task is not None
        queue.submit(task.id, "ana", "positive")
    LabelQueue(url, "a").close()
    assert list_queues(url) == [
        {"name": "a", "labels": [], "total": 0, "open": 0, "done": 0},
        {"name": "b", "labels": LABELS, "total": 2, "open": 1, "done": 1},
    ]


# -- the demo's pointer ------------------------------------------------------------------------
def _demo_summary() -> dict[str, Any]:
    return {
        "data": {"dataset_version": "tweets:v1", "rows": 10, "generated": True, "source": ""},
        "validation": {"passed": True, "label_counts": {}, "warnings": []},
        "labeling": {"sources": {"given": 10}, "lf_summary": []},
        "audit": {"flagged": 3, "audited_rows": 10, "queued": 3, "queue": "sentiment"},
        "model": {"name": "sentiment", "version": 1, "champion": 1, "promoted": True},
        "metrics": {},
        "gate": {"passed": True, "reasons": []},
        "serving": {"url": "http://127.0.0.1:1", "model_version": 1, "predictions": []},
        "monitoring": {
            "diagnosis": {"summary": "", "recommendation": "", "evidence": []},
            "drifted_requests": 0,
            "report": "",
            "retrain": {
                "version": 2,
                "promoted": False,
                "gate": [],
                "champion": 1,
                "server_followed_to": 1,
            },
        },
        "run_id": "r",
        "cache_hits": 0,
        "artifacts": "",
        "mlflow": "",
    }


def test_demo_summary_sends_the_reviewer_to_the_audit_queue() -> None:
    from loopline.examples.sentiment.demo import print_summary

    console = Console(record=True, width=400)
    print_summary(_demo_summary(), console)
    assert "`loopline label serve --queue sentiment`" in console.export_text()


# -- what a reviewer sees of an audited item ---------------------------------------------------
def _noisy_tweets() -> pd.DataFrame:
    good = [f"what a great lovely happy day number {i}" for i in range(60)]
    bad = [f"what an awful sad terrible day number {i}" for i in range(60)]
    frame = pd.DataFrame(
        {"text": good + bad, "label": ["positive"] * 60 + ["negative"] * 60}, dtype=object
    )
    frame.loc[[3, 7, 65], "label"] = ["negative", "negative", "positive"]  # mislabelled
    return frame


def test_the_audit_step_stores_the_models_view(tmp_path: Path) -> None:
    from loopline.label.steps import audit

    store = MetadataStore(f"sqlite:///{tmp_path}/m.db")
    result = audit.fn(_noisy_tweets(), SimpleNamespace(metadata=store), queue="sentiment",
                      labels=LABELS)  # fmt: skip
    assert result["queue"] == "sentiment" and result["queued"] >= 3
    tasks = LabelQueue(store, "sentiment").tasks().set_index("text")
    for text, given, other in (
        ("what a great lovely happy day number 3", "negative", "positive"),
        ("what an awful sad terrible day number 5", "positive", "negative"),
    ):
        payload = tasks.loc[text, "payload"]
        assert payload["given_label"] == given
        assert payload["model_label"] == other
        assert 0.5 < payload["model_probability"] <= 1.0
        assert payload["given_label_probability"] == pytest.approx(
            1.0 - payload["model_probability"], abs=1e-3
        )


@pytest.fixture
def review_queue(tmp_path: Path) -> LabelQueue:
    queue = LabelQueue(f"sqlite:///{tmp_path}/m.db", "sentiment", labels=LABELS)
    queue.add_items(
        [
            {
                "item_id": "a1",
                "text": "what a lovely day",
                "given_label": "negative",
                "model_label": "positive",
                "model_probability": 0.93,
                "given_label_probability": 0.07,
                "priority": 2,
            },
            {"item_id": "p1", "text": "plain item", "priority": 1},
        ],
        source="noise_audit",
    )
    return queue


def test_the_labeling_api_shows_the_current_label_and_the_models_view(
    review_queue: LabelQueue,
) -> None:
    client = TestClient(create_label_app(review_queue))
    task = client.get("/api/next", params={"annotator": "ana"}).json()["task"]
    assert task["item_id"] == "a1"
    assert task["context"] == {
        "current_label": "negative",
        "suggestions": [
            {"model": "noise audit", "label": "positive", "score": 0.93,
             "current_label_score": 0.07},
        ],
    }  # fmt: skip
    client.post("/api/label", json={"task_id": task["id"], "annotator": "ana", "label": "positive"})
    plain = client.get("/api/next", params={"annotator": "ana"}).json()["task"]
    assert plain["context"] == {"current_label": None, "suggestions": []}
    undone = client.post("/api/undo", json={"annotator": "ana"}).json()["task"]
    assert undone["context"]["current_label"] == "negative"

    # The review page's rows carry the same view.
    client.post("/api/label", json={"task_id": task["id"], "annotator": "bob", "label": "negative"})
    client.post("/api/label", json={"task_id": task["id"], "annotator": "ana", "label": "positive"})
    items = client.get("/api/disagreements").json()["items"]
    assert [i["item_id"] for i in items] == ["a1"]
    assert items[0]["context"] == task["context"]


def test_the_page_renders_the_current_label_and_the_models_view(
    review_queue: LabelQueue,
) -> None:
    client = TestClient(create_label_app(review_queue))
    for path in ("/", "/review"):
        html = client.get(path).text
        assert 'id="item-context"' in html
        assert "Current label" in html and "Model" in html
    # Both views render the context with one function.
    assert PAGE.count("contextText(") >= 3


def test_the_page_script_words_the_context() -> None:
    """Run the page's own contextText in Node (the browser tests need Chromium)."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    script = PAGE.split("<script>")[1].split("</script>")[0]
    functions = re.search(
        r"function percent\(.*?\n}\n.*?function contextText\(.*?\n}\n", script, re.S
    )
    assert functions is not None
    context = {
        "current_label": "negative",
        "suggestions": [
            {"model": "noise audit", "label": "positive", "score": 0.93,
             "current_label_score": 0.07},
            {"model": "bert-v2", "label": "positive", "score": None, "current_label_score": None},
        ],
    }  # fmt: skip
    program = functions.group(0) + (
        f"console.log(contextText({json.dumps(context)}));"
        'console.log(JSON.stringify(contextText({"current_label": null, "suggestions": []})));'
    )
    shown = subprocess.run(
        [node, "-e", program], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert shown == [
        "Current label: negative · Model (noise audit): positive (93%); current label 7% · "
        "Model (bert-v2): positive",
        '""',
    ]
