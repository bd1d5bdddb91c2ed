"""The labeling page: its JSON API, and a real headless Chromium labelling with the keyboard."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _browser import CHROMIUM_ARGS, chromium_or_skip
from loopline.label.queue import LabelQueue
from loopline.label.web import PAGE, create_label_app

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def queue(tmp_path: Path) -> LabelQueue:
    q = LabelQueue(f"sqlite:///{tmp_path}/m.db", "tweets", labels=LABELS)
    # Priorities fix the order the page shows them in: a, b, c, d.
    q.add_items(
        [
            {"item_id": "a", "text": "what a lovely morning", "priority": 4},
            {"item_id": "b", "text": "the bus was late again", "priority": 3},
            {"item_id": "c", "text": "it is tuesday", "priority": 2},
            {"item_id": "d", "text": "<b>not bold</b> & fine", "priority": 1},
        ]
    )
    return q


@pytest.fixture
def client(queue: LabelQueue) -> TestClient:
    return TestClient(create_label_app(queue, annotator_default="guest"))


# -- JSON API ----------------------------------------------------------------------------------
def test_label_through_the_api(client: TestClient, queue: LabelQueue) -> None:
    config = client.get("/api/config").json()
    assert config == {
        "queue": "tweets",
        "labels": LABELS,
        "annotations_per_item": 1,
        "annotator_default": "guest",
    }
    first = client.get("/api/next", params={"annotator": "ana"}).json()
    assert first["task"]["item_id"] == "a" and first["progress"]["open"] == 4
    saved = client.post(
        "/api/label",
        json={"task_id": first["task"]["id"], "annotator": "ana", "label": "positive"},
    )
    assert saved.status_code == 200 and saved.json()["progress"]["mine"] == 1
    skipped = client.get(
        "/api/next", params={"annotator": "ana", "exclude": str(first["task"]["id"] + 1)}
    ).json()
    assert skipped["task"]["item_id"] == "c"
    undone = client.post("/api/undo", json={"annotator": "ana"}).json()
    assert undone["task"]["item_id"] == "a" and queue.annotations().empty
    assert client.post("/api/undo", json={"annotator": "ana"}).json()["task"] is None


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", "/api/label", {"task_id": 1, "annotator": "ana", "label": "great"}, 400,
         "label 'great' is not in queue 'tweets'"),
        ("post", "/api/label", {"task_id": 999, "annotator": "ana", "label": "neutral"}, 404,
         "no task 999 in queue 'tweets'"),
        ("post", "/api/label", {"task_id": 1, "label": "neutral"}, 422,
         "invalid annotator: Field required"),
        ("post", "/api/label", {"task_id": "one", "annotator": "a", "label": "neutral"}, 422,
         "invalid task_id"),
        ("post", "/api/label", {"task_id": 1, "annotator": "a", "label": "x", "extra": 1}, 422,
         "invalid extra"),
        ("get", "/api/next?annotator=ana&exclude=1,x", None, 400,
         "exclude must be comma-separated task ids"),
        ("get", "/api/next", None, 422, "invalid annotator"),
        ("get", "/api/nowhere", None, 404, "Not Found"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_4xx(
    client: TestClient,
    queue: LabelQueue,
    method: str,
    path: str,
    body: Any,
    status: int,
    message: str,
) -> None:
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert queue.annotations().empty


def test_stats_and_disagreements(client: TestClient, queue: LabelQueue) -> None:
    ids = queue.tasks().set_index("item_id")["id"]
    for annotator, label in (("ana", "positive"), ("bob", "negative"), ("cy", "positive")):
        queue.submit(int(ids["a"]), annotator, label)
    stats = client.get("/api/stats").json()
    assert stats["annotations"] == 3 and stats["disagreements"] == 1
    assert stats["agreement"]["cohen_kappa"] is None  # three annotators
    items = client.get("/api/disagreements").json()["items"]
    assert items == [
        {
            "task_id": int(ids["a"]),
            "item_id": "a",
            "text": "what a lovely morning",
            "label": "positive",
            "agreement": pytest.approx(2 / 3),
            "n_annotations": 3,
            "votes": {"positive": 2, "negative": 1},
            "context": {"current_label": None, "suggestions": []},
        }
    ]


def test_the_page_is_self_contained(client: TestClient) -> None:
    for path in ("/", "/review"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
    # No external assets: nothing loads from another host.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", PAGE)
    assert "<script src" not in PAGE and "<link" not in PAGE


# -- a real browser ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(queue: LabelQueue) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(
        create_label_app(queue), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the labeling server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _current_task(page: Any) -> str:
    return str(page.get_attribute("#item", "data-task-id") or "")


def _press_and_wait(page: Any, key: str) -> None:
    """Press one key and wait until the page shows the next item."""
    before = _current_task(page)
    page.keyboard.press(key)
    page.wait_for_function(
        "before => document.body.dataset.ready === '1' && "
        "document.getElementById('item').dataset.taskId !== before",
        arg=before,
    )


def test_label_three_items_with_the_keyboard_in_chromium(
    served: str, queue: LabelQueue, tmp_path: Path
) -> None:
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(served + "/")
            page.wait_for_function("document.body.dataset.ready === '1'")
            assert page.text_content("#item-text") == "what a lovely morning"
            assert page.locator("#buttons button").all_inner_texts() == [
                "1negative",
                "2neutral",
                "3positive",
            ]

            # Type the annotator name: focus the field, replace its text, Enter saves it.
            page.focus("#annotator")
            page.keyboard.press("Control+A")
            page.keyboard.type("keyboard-kim")
            page.keyboard.press("Enter")
            page.wait_for_function("document.body.dataset.ready === '1'")

            _press_and_wait(page, "3")  # a: positive
            _press_and_wait(page, "s")  # b: skipped
            _press_and_wait(page, "1")  # c: negative
            assert page.text_content("#item-text") == "<b>not bold</b> & fine"  # text, not HTML
            _press_and_wait(page, "2")  # d: neutral
            assert "press r" in (page.text_content("#item-text") or "")
            assert "you labelled 3" in (page.text_content("#progress") or "")
            assert page.evaluate("localStorage.getItem('loopline.annotator')") == "keyboard-kim"
            page.screenshot(path=str(tmp_path / "label-page.png"))

            # The skipped item comes back with r; u takes back the last label.
            _press_and_wait(page, "r")
            assert page.text_content("#item-text") == "the bus was late again"
            _press_and_wait(page, "u")
            assert page.text_content("#item-text") == "<b>not bold</b> & fine"
            _press_and_wait(page, "2")
        finally:
            browser.close()

    stored = LabelQueue(queue.store, "tweets").annotations()
    assert list(zip(stored["item_id"], stored["label"], strict=True)) == [
        ("a", "positive"),
        ("c", "negative"),
        ("d", "neutral"),
    ]
    assert set(stored["annotator"]) == {"keyboard-kim"}
    assert stored["lead_time_s"].notna().all()


def test_review_page_lists_disagreements_in_chromium(served: str, queue: LabelQueue) -> None:
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ids = queue.tasks().set_index("item_id")["id"]
    queue.submit(int(ids["b"]), "ana", "negative")
    queue.submit(int(ids["b"]), "bob", "neutral")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(served + "/review")
            page.wait_for_function("document.body.dataset.ready === '1'")
            rows = page.locator("#review-rows tr")
            assert rows.count() == 1
            assert "the bus was late again" in rows.first.inner_text()
            page.fill("#annotator", "reviewer")
            rows.first.get_by_role("button", name="negative").click()
            page.wait_for_function(
                "document.getElementById('review-status').textContent.startsWith('Saved')"
            )
        finally:
            browser.close()
    votes = queue.annotations().query("item_id == 'b'")["label"].value_counts().to_dict()
    assert votes == {"negative": 2, "neutral": 1}


def test_cli_serve_checks_the_queue_then_runs_uvicorn(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from loopline.cli.label import label_app
    from loopline.errors import LooplineError

    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(project))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    runner = CliRunner()
    empty = runner.invoke(label_app, ["serve", "--queue", "nothing"])
    assert isinstance(empty.exception, LooplineError) and not calls
    assert "has no label set" in str(empty.exception)

    url = f"sqlite:///{project / '.loopline' / 'metadata.db'}"
    LabelQueue(url, "tweets", labels=LABELS).close()
    result = runner.invoke(label_app, ["serve", "--queue", "tweets", "--port", "9911"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:9911/" in result.output
    assert calls[0]["port"] == 9911 and calls[0]["host"] == "127.0.0.1"
    assert TestClient(calls[0]["app"]).get("/api/config").json()["queue"] == "tweets"
