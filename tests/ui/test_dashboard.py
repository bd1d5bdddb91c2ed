"""`loopline ui`: the dashboard over a real project, in a real headless Chromium.

One project per module: the sentiment demo (`run_demo`: a pipeline run, a served model
with predictions and delayed labels, a drifted stream, a retrain promoted by the gate, a
review queue from the noise audit), about 35 s here, then a tiny run of the vision template
in the same project (30 training and 20 held-out digit canvases, one epoch of a width-8
detector: about 15 s; skipped without PyTorch or MNIST): a detection model with its mAP, its
folder version and a table of image bytes. The fraud demo is not run: it takes well over a
minute on its own (tests/examples/test_fraud_demo.py is marked slow).

The dashboard is served on a real port (uvicorn in a thread, and once through the
`loopline ui` command). The browser checks every page for console errors and takes a
screenshot of each (into $LOOPLINE_UI_SCREENSHOTS, default .bench/ui-screenshots); it
promotes and rolls back from the models page with the admin token and without it, and
checks keyboard use and that every control has an accessible name. The pages are also
read from a PostgreSQL copy of the project's metadata.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest

from _browser import CHROMIUM_ARGS, chromium_or_skip
from loopline import pipeline
from loopline.config import Settings, load_settings
from loopline.serve.server import RunningServer, start_in_thread
from loopline.steps import read_text
from loopline.ui import create_app, open_dashboard

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-admin-token"
READY_S = 180  # /ready waits for MLflow and SciPy to load: slow on a busy machine


def _screenshots() -> Path:
    folder = Path(os.environ.get("LOOPLINE_UI_SCREENSHOTS", REPO / ".bench" / "ui-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def loopline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class Project:
    def __init__(
        self, root: Path, settings: Settings, summary: dict[str, Any], vision: str | None
    ) -> None:
        self.root = root
        self.settings = settings
        self.summary = summary
        self.vision_run = vision  # the vision run's id; None without PyTorch or MNIST

    def history(self) -> list[dict[str, Any]]:
        """`loopline models history sentiment --json`, as a user would read it."""
        done = loopline("models", "history", "sentiment", "--json", cwd=self.root)
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    from loopline.examples.sentiment.demo import run_demo
    from loopline.examples.sentiment.synthetic import generate_tweets

    root = tmp_path_factory.mktemp("ui") / "project"
    root.mkdir()
    settings = load_settings(root)
    summary = run_demo(settings)
    assert summary["monitoring"]["retrain"]["version"] == "2"  # two versions to move between
    # A later batch of tweets read as the next version of the dataset: one cheap step.
    later = root / "later_tweets.csv"
    generate_tweets(1000, seed=11, period="late")[["text", "label"]].to_csv(later, index=False)
    tweets_update.run(settings, source=str(later))
    return Project(root, settings, summary, _vision_run(root, settings))


def _vision_run(root: Path, settings: Settings) -> str | None:
    """The vision template's pipeline on a few canvases, in the same project: its run id."""
    if importlib.util.find_spec("torch") is None:
        return None
    from loopline.data.canvas import find_mnist, write_canvas_dataset
    from loopline.templates.vision import vision

    try:
        find_mnist()
    except Exception:  # the checkout's shared data is not there
        return None
    canvases = root / "data" / "canvases"
    write_canvas_dataset(canvases, train=30, heldout=20)
    result = vision.run(settings, source=str(canvases), epochs=1, width=8, min_map50=0.0)
    assert result.status == "completed", result
    return result.run_id


def _vision(project: Project) -> str:
    pytest.importorskip("torch")
    if project.vision_run is None:
        pytest.skip("MNIST not found: no vision run in the project")
    return project.vision_run


@pipeline(name="tweets-update")
def tweets_update(source: str) -> None:
    read_text(source=source, dataset="tweets", labels=["negative", "positive"])


@pytest.fixture(scope="module")
def served(project: Project) -> Iterator[RunningServer]:
    dashboard = open_dashboard(project.settings)
    with start_in_thread(create_app(dashboard, TOKEN), ready_timeout=READY_S) as server:
        yield server
    dashboard.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


class Page:
    """A browser tab that records console errors and uncaught script errors."""

    def __init__(self, browser: Any, base: str) -> None:
        self.page = browser.new_page(viewport={"width": 1360, "height": 900})
        self.page.set_default_timeout(20_000)
        self.base = base
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None and response.status == 200, (path, response and response.status)
        return self.page

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def tab(browser: Any, served: RunningServer) -> Iterator[Page]:
    page = Page(browser, served.url)
    yield page
    page.close()


def _links(page: Any, pattern: str) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    return [h for h in hrefs if re.fullmatch(pattern, h)]


def _unnamed_controls(page: Any) -> list[str]:
    """Inputs, selects and buttons (of the page and its frames) without an accessible name."""
    script = """() => [...document.querySelectorAll(
        "input:not([type=hidden]), select, textarea, button")].filter(el => {
          const labelled = el.labels && [...el.labels].some(l => l.textContent.trim());
          const aria = (el.getAttribute("aria-label") || "").trim();
          const by = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean)
            .some(id => (document.getElementById(id)?.textContent || "").trim());
          const text = el.tagName === "BUTTON" && el.textContent.trim();
          return !(labelled || aria || by || text || (el.title || "").trim());
        }).map(el => el.outerHTML.slice(0, 120))"""
    return [str(x) for frame in page.frames for x in frame.evaluate(script)]


# -- every page -------------------------------------------------------------------------------
def test_every_page_renders_with_data_and_no_console_errors(tab: Page, project: Project) -> None:
    shots = _screenshots()
    run_id = project.summary["run_id"]
    pages: dict[str, str] = {}

    page = tab.open("/runs")
    assert page.locator("#runs-table tbody tr").count() >= 2  # the demo's run and its retrain
    assert run_id in page.inner_text("#runs-table")
    pages["runs"] = "/runs"

    page = tab.open(f"/runs/{run_id}")
    dag = page.locator("svg.dag")
    assert dag.locator("a.node").count() == page.locator("#steps-table tbody tr").count() >= 8
    assert dag.locator("path.edge").count() >= 8
    steps = page.inner_text("#steps-table")
    assert "train" in steps and "completed" in steps and "tweets:v1" in steps
    assert page.inner_text("#code-version").strip()
    pages["run"] = f"/runs/{run_id}"

    # Artifacts: a table's first rows, a JSON document's metrics.
    artifacts = _links(page, r"/artifacts/[0-9a-f]+")
    shown = {"table": None, "metrics": None}
    for href in dict.fromkeys(artifacts):
        page = tab.open(href)
        if shown["table"] is None and page.locator("#preview-table").count():
            assert page.locator("#preview-table tbody tr").count() > 0
            shown["table"] = href
        metrics = page.locator("#preview-metrics")
        if shown["metrics"] is None and metrics.count() and "accuracy" in metrics.inner_text():
            shown["metrics"] = href  # evaluate's output
        if all(shown.values()):
            break
    assert all(shown.values()), shown
    pages["artifact-table"], pages["artifact-metrics"] = shown["table"], shown["metrics"]

    page = tab.open("/lineage?ref=sentiment/1")
    assert "sentiment version 1" in page.inner_text("#lineage-title")
    assert "tweets:v1" in page.inner_text("#lineage-datasets")
    assert "train" in page.inner_text("#lineage-steps")
    assert "gate passed" in page.inner_text("#lineage-moves")
    assert re.match(r"\d+ logged", page.inner_text("#lineage-predictions"))
    requests = _links(page, r"/lineage/request\?id=.+")
    assert requests
    pages["lineage"] = "/lineage?ref=sentiment/1"

    page = tab.open(requests[0])
    assert "sentiment version 1" in page.inner_text("#request-models")
    assert "tweets:v1" in page.inner_text("#request-models")
    pages["request"] = requests[0]

    page = tab.open("/models")
    assert page.get_attribute(".alias-champion[data-alias]", "data-version") == "2"
    assert "passed" in page.inner_text("#versions-table")
    compare = page.inner_text("#compare-table")
    assert "version 1" in compare and "version 2" in compare and "accuracy" in compare
    assert "loopline run" in page.inner_text("#history-table")
    pages["models"] = "/models"

    page = tab.open("/monitoring?model=sentiment&window=100")
    frame = page.frame_locator("#report")
    assert "Diagnosis" in frame.locator("#summary").inner_text()
    assert frame.locator("svg").count() > 0  # drift over time, performance: charts
    assert "recommendation: retrain" in frame.locator("#summary").inner_text()
    pages["monitoring"] = "/monitoring?model=sentiment&window=100"

    page = tab.open("/data")
    assert "tweets" in page.inner_text("main")
    page = tab.open("/data/tweets/1")
    assert "text" in page.inner_text("table.profile")
    pages["data"], pages["dataset"] = "/data", "/data/tweets/1"
    # The later tweets: new slang drifts the text; none of the rows is an old one.
    page = tab.open("/data/tweets/diff?a=1&b=2")
    assert "4,000 → 1,000: 1,000 added, 4,000 removed" in page.inner_text("#diff-summary")
    drifted = page.locator("#diff-table tr", has=page.locator("th", has_text="text"))
    assert "yes" in drifted.inner_text()
    pages["data-diff"] = "/data/tweets/diff?a=1&b=2"
    # The labels that came back through /feedback: none at the first run, all at the retrain.
    page = tab.open("/data/production_labels/diff?a=1&b=2")
    n = project.summary["monitoring"]["drifted_requests"]
    assert f"0 → {n}: {n} added, 0 removed" in page.inner_text("#diff-summary")
    assert page.locator("#diff-no-drift").count() == 1

    page = tab.open("/review")
    assert "sentiment" in page.inner_text("#queues-table")
    pages["review"] = "/review"
    page = tab.open("/label/sentiment/")
    page.wait_for_function("document.body.dataset.ready === '1'")
    assert page.text_content("#item-text")
    page.screenshot(path=str(shots / "label.png"))
    page = tab.open("/label/sentiment/review")
    page.wait_for_function("document.body.dataset.ready === '1'")
    assert page.locator("#review-summary").count() == 1

    _shoot_and_check_names(tab, pages)
    assert tab.errors == []


def _shoot_and_check_names(tab: Page, pages: dict[str, str]) -> None:
    """A screenshot of each page; every control on it has an accessible name."""
    shots = _screenshots()
    for name, path in pages.items():
        page = tab.open(path)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=name != "monitoring")
        assert _unnamed_controls(page) == [], name


def test_every_vision_page_renders_its_detection_data(tab: Page, project: Project) -> None:
    run_id = _vision(project)
    pages: dict[str, str] = {}

    page = tab.open("/runs")
    assert run_id in page.inner_text("#runs-table") and "vision" in page.inner_text("#runs-table")

    page = tab.open(f"/runs/{run_id}")
    dag = page.locator("svg.dag")
    assert dag.locator("a.node").count() == page.locator("#steps-table tbody tr").count() == 7
    steps = page.inner_text("#steps-table")
    assert "train_detector" in steps and "evaluate_detector" in steps and "canvases:v1" in steps
    pages["vision-run"] = f"/runs/{run_id}"

    # The detection table shows its images as thumbnails and a summary, never their bytes.
    shown: dict[str, str | None] = {"table": None, "metrics": None, "folder": None}
    for href in dict.fromkeys(_links(page, r"/artifacts/[0-9a-f]+")):
        page = tab.open(href)
        if page.locator("#preview-table").count():
            table = page.locator("#preview-table")
            assert "image" in table.locator("thead").inner_text()
            text = table.inner_text()
            assert re.search(r"PNG 128×128, [\d,]+ bytes", text) and "\\x" not in text, text[:300]
            assert '"box":[' in text and "array(" not in text  # boxes as JSON, not NumPy's repr
            thumbnails = table.locator("figure.thumb img")
            assert thumbnails.count() == table.locator("tbody tr").count() > 0
            assert page.evaluate(
                "[...document.querySelectorAll('figure.thumb img')]"
                ".every(i => i.complete && i.naturalWidth === 128)"
            )
            shown["table"] = href
        metrics = page.locator("#preview-metrics")
        if metrics.count() and re.search(r"^map50\s", metrics.inner_text(), re.M):
            assert "accuracy" not in metrics.inner_text()
            shown["metrics"] = shown["metrics"] or href  # evaluate_detector's, then the gate's
        if page.locator("#folder-version").count():
            folder = page.inner_text("#folder-version")
            assert re.match(r"snapshot [0-9a-f]{12} · 52 files · ", folder), folder
            shown["folder"] = href
    assert all(shown.values()), shown
    pages["vision-table"] = str(shown["table"])
    pages["vision-metrics"] = str(shown["metrics"])
    pages["vision-folder"] = str(shown["folder"])

    page = tab.open("/models?name=vision")
    assert page.get_attribute(".alias-champion[data-alias]", "data-version") == "1"
    assert "passed" in page.inner_text("#versions-table")
    assert "canvases:v1" in page.inner_text("#versions-table")
    compare = page.inner_text("#compare-table")
    assert "version 1" in compare and re.search(r"^map50\s", compare, re.M), compare
    pages["vision-models"] = "/models?name=vision"

    page = tab.open("/lineage?ref=vision/1")
    assert "vision version 1" in page.inner_text("#lineage-title")
    assert "canvases:v1" in page.inner_text("#lineage-datasets")
    chain = page.inner_text("#lineage-steps")
    assert "train_detector" in chain and "version_images" in chain
    assert re.search(r"snapshot [0-9a-f]{12} · 52 files", chain), chain
    assert "gate passed" in page.inner_text("#lineage-moves")
    pages["vision-lineage"] = "/lineage?ref=vision/1"

    page = tab.open("/data")
    assert "canvases" in page.inner_text("main") and "tweets" in page.inner_text("main")
    page = tab.open("/data/canvases/1")
    assert page.inner_text("#folder-version").startswith("snapshot ")
    pages["vision-data"] = "/data/canvases/1"

    _shoot_and_check_names(tab, pages)
    assert tab.errors == []


# -- alias moves from the page ----------------------------------------------------------------
def _submit_with_keyboard(page: Any, form: str, values: list[str]) -> None:
    """Focus the form's first text field, type each value and Tab to the next, then Enter."""
    first = page.locator(f"{form} input:not([type=hidden])").first
    first.focus()
    for i, value in enumerate(values):
        if i:
            page.keyboard.press("Tab")
        page.keyboard.press("Control+A")
        if value:
            page.keyboard.type(value)
        else:
            page.keyboard.press("Delete")
    page.keyboard.press("Enter")


def test_rollback_and_promote_from_the_page_move_the_alias_with_actor_and_reason(
    tab: Page, project: Project
) -> None:
    page = tab.open("/models")
    before = len(project.history())

    with page.expect_navigation():  # a move reloads the page
        _submit_with_keyboard(page, "#rollback-form", ["bad release in the ui test", "ana", TOKEN])
    page.wait_for_selector("#flash:not([hidden])")
    assert "sentiment@champion -> version 1" in page.inner_text("#flash")
    assert page.get_attribute(".alias-champion[data-alias]", "data-version") == "1"

    page.select_option("#p-version", "2")
    with page.expect_navigation():
        _submit_with_keyboard(page, "#promote-form", ["champion", "fixed, back to 2", "bo", TOKEN])
    page.wait_for_selector("#flash:not([hidden])")
    assert "sentiment@champion -> version 2" in page.inner_text("#flash")

    moves = project.history()[before:]
    champion = [(m["version"], m["actor"], m["reason"]) for m in moves if m["alias"] == "champion"]
    assert champion == [
        ("1", "ana (loopline ui from 127.0.0.1)", "bad release in the ui test"),
        ("2", "bo (loopline ui from 127.0.0.1)", "fixed, back to 2"),
    ]
    assert "fixed, back to 2" in page.inner_text("#history-table")
    assert tab.errors == []


def test_without_the_token_the_buttons_are_refused(tab: Page, project: Project) -> None:
    page = tab.open("/models")
    champion = page.get_attribute(".alias-champion[data-alias]", "data-version")
    before = project.history()

    _submit_with_keyboard(page, "#rollback-form", ["no token", "eve", ""])
    page.wait_for_function("document.getElementById('admin-result').textContent.includes('(')")
    assert page.inner_text("#admin-result").startswith("Refused (401)")

    page.select_option("#p-version", "1")
    _submit_with_keyboard(page, "#promote-form", ["champion", "wrong token", "eve", "guess"])
    page.wait_for_function("document.getElementById('admin-result').textContent.includes('403')")
    assert "the admin token is not valid" in page.inner_text("#admin-result")
    page.screenshot(path=str(_screenshots() / "models-refused.png"))

    page = tab.open("/models")
    assert page.get_attribute(".alias-champion[data-alias]", "data-version") == champion
    assert project.history() == before


# -- keyboard ---------------------------------------------------------------------------------
def test_keyboard_reaches_the_menu_and_controls_and_enter_filters(tab: Page) -> None:
    page = tab.open("/runs")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    reached = []
    for _ in range(16):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent")
        )
    assert {"Runs", "Models", "Monitoring", "Review"} <= set(reached)
    assert {"f-pipeline", "f-status", "f-since"} <= set(reached)

    page.focus("#f-status")
    page.keyboard.press("ArrowDown")  # all -> completed
    page.focus("#f-until")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "status=completed" in page.url
    assert set(page.locator("#runs-table .badge").all_inner_texts()) == {"completed"}

    # The DAG's boxes are links: Tab reaches them and Enter jumps to the step's row.
    run_link = page.locator("#runs-table a").first.get_attribute("href")
    page = tab.open(str(run_link))
    first_node = page.locator("svg.dag a.node").first
    first_node.focus()
    with page.expect_event("framenavigated"):
        page.keyboard.press("Enter")
    assert re.search(r"#step-[0-9a-f]+$", page.url)
    assert tab.errors == []


# -- without the browser ----------------------------------------------------------------------
def test_bad_requests_get_a_clear_answer(served: RunningServer, project: Project) -> None:
    from loopline.core.metadata import MetadataStore

    store = MetadataStore(str(project.settings.metadata_url), create=False)
    table = store.list_datasets("tweets")[0]["artifact_hash"]
    store.close()
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get(f"/artifacts/{table}/files/data.parquet").status_code == 200
        # A file outside the artifact's folder is never served, however the path is spelled.
        escape = client.get(f"/artifacts/{table}/files/..%2F..%2F..%2Fmetadata.db")
        assert escape.status_code == 404 and "has no file" in escape.text
        assert client.get(f"/artifacts/{table}/files/meta.json").status_code == 404
        assert client.get("/runs?since=yesterday").status_code == 400
        assert "not a date" in client.get("/runs?since=yesterday").text
        assert client.get("/runs?status=exploded").status_code == 400
        assert client.get("/runs/ffffffffffffffff").status_code == 404
        assert client.get("/artifacts/not-a-hash").status_code == 404
        assert client.get("/models?name=nosuch").status_code == 404
        assert client.get("/label/nosuch/").status_code == 404
        assert client.get("/lineage?ref=sentiment/99").status_code == 404
        bad = client.post(
            "/api/models/sentiment/promote",
            json={"version": "x", "reason": "r"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert bad.status_code == 422 and "version" in bad.json()["error"]
        missing = client.post(
            "/api/models/sentiment/promote",
            json={"version": "99", "reason": "r"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert missing.status_code == 404 and "no version '99'" in missing.json()["error"]
        assert client.get("/").headers.get("location") == "/runs"


def test_a_read_only_dashboard_refuses_alias_moves(project: Project) -> None:
    dashboard = open_dashboard(project.settings)
    with (
        start_in_thread(create_app(dashboard), ready_timeout=READY_S) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        page = client.get("/models").text
        answer = client.post(
            "/api/models/sentiment/rollback",
            json={"reason": "r"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    dashboard.store.close()
    assert "Alias moves are off" in page
    assert answer.status_code == 403 and "LOOPLINE_ADMIN_TOKEN" in answer.json()["error"]


def test_the_pages_read_a_postgresql_store(project: Project, postgres_url: str) -> None:
    """The project's metadata copied row by row into PostgreSQL: the same pages, same data."""
    import sqlalchemy as sa

    from loopline.core import schema
    from loopline.core.metadata import MetadataStore

    source = MetadataStore(str(project.settings.metadata_url), create=False)
    target = MetadataStore(postgres_url)  # creates Loopline's schema there
    with source.engine.connect() as read, target.engine.begin() as write:
        for table in schema.metadata.sorted_tables:
            rows = [dict(r._mapping) for r in read.execute(sa.select(table))]
            for row in rows:  # SQLite gives naive UTC times back
                for key, value in row.items():
                    if hasattr(value, "tzinfo") and value.tzinfo is None:
                        row[key] = value.replace(tzinfo=UTC)
            if rows:
                write.execute(table.insert(), rows)
    source.close()
    target.close()
    settings = load_settings(project.root, metadata_url=postgres_url)
    dashboard = open_dashboard(settings)
    run_id = project.summary["run_id"]
    vision = ("/lineage?ref=vision/1", "/data/canvases/1") if project.vision_run else ()
    try:
        with (
            start_in_thread(create_app(dashboard, TOKEN), ready_timeout=READY_S) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            pages = {
                path: client.get(path)
                for path in (
                    "/runs",
                    "/runs?status=completed&since=2000-01-01",
                    f"/runs/{run_id}",
                    "/lineage?ref=sentiment/1",
                    "/models",
                    "/data",
                    "/data/tweets/1",
                    "/review",
                    *vision,
                )
            }
    finally:
        dashboard.store.close()
    assert {p: r.status_code for p, r in pages.items()} == dict.fromkeys(pages, 200)
    assert (
        run_id in pages["/runs"].text
        and run_id in pages["/runs?status=completed&since=2000-01-01"].text
    )
    assert pages[f"/runs/{run_id}"].text.count('class="node status-') >= 8
    assert "tweets:v1" in pages["/lineage?ref=sentiment/1"].text
    assert "gate passed" in pages["/models"].text
    for path in vision:  # the folder version read back through the PostgreSQL store
        assert re.search(r"snapshot [0-9a-f]{12} · 52 files", pages[path].text), path


def test_loopline_ui_command_serves_on_the_port_given(project: Project) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, LOOPLINE_ADMIN_TOKEN=TOKEN, NO_COLOR="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "loopline", "ui", "--port", str(port), "--host", "127.0.0.1"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + READY_S
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, process.poll()
        answer = httpx.get(f"http://127.0.0.1:{port}/runs", timeout=30)
        assert answer.status_code == 200
        assert project.summary["run_id"] in answer.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "alias moves on" in stderr and f"dashboard on http://127.0.0.1:{port}" in stderr


def test_loopline_ui_on_a_busy_port_fails_with_a_hint(project: Project) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        done = loopline("ui", "--port", str(sock.getsockname()[1]), cwd=project.root)
    assert done.returncode == 2
    assert "cannot listen on 127.0.0.1" in done.stderr and "--port" in done.stderr


def test_loopline_ui_outside_a_project_says_so(tmp_path: Path) -> None:
    done = loopline("ui", cwd=tmp_path)
    assert done.returncode == 2
    assert "no Loopline project" in done.stderr and "Traceback" not in done.stderr


def test_loopline_ui_where_nothing_ran_says_so_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "loopline.yaml").write_text("")
    done = loopline("ui", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "nothing is recorded in the project" in done.stderr and "loopline run" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loopline.yaml"]
