"""A small labeling and review page for a :class:`LabelQueue`, served by FastAPI.

``/`` shows one item at a time with a button per label; the keyboard does everything:
``1``-``9`` pick a label in order, ``s`` skips, ``u`` undoes your last label. The annotator's
name is kept in the browser's localStorage. ``/review`` lists the items whose annotators
disagree, with their votes, so a reviewer can add a deciding label. The page is one
self-contained HTML document (inline CSS and JS, no CDN), so it works offline.

Each task (and each disagreement) carries a ``context`` for the reviewer: the item's current
label (``given_label`` in its payload: what the data says, e.g. for an item the noise audit
sent) and what models think of it: the audit's out-of-fold model (``model_label``,
``model_probability``, ``given_label_probability``) and Label Studio predictions.

JSON API (errors answer ``{"error": "<one line>", "detail": [...]}`` with a 4xx status)::

    GET  /api/config                          labels, queue name, default annotator
    GET  /api/next?annotator=A&exclude=1,2    {"task": {...} | null, "progress": {...}}
    POST /api/label {task_id, annotator, label, lead_time_s?}
    POST /api/undo  {annotator}               {"task": the task labelled last, or null}
    GET  /api/stats                           counts and agreement statistics
    GET  /api/disagreements?limit=100         items whose annotators disagree
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopline.errors import LooplineError
from loopline.label.queue import LabelQueue, Task, UnknownTask

__all__ = ["create_label_app", "review_context", "serve_label_app"]


class LabelIn(BaseModel):
    """One label submitted from the page or a script."""

    model_config = ConfigDict(extra="forbid")

    task_id: int = Field(ge=1)
    annotator: str = Field(min_length=1, max_length=200)
    label: str = Field(min_length=1, max_length=200)
    lead_time_s: float | None = Field(default=None, ge=0)


class UndoIn(BaseModel):
    """Whose last label to take back."""

    model_config = ConfigDict(extra="forbid")

    annotator: str = Field(min_length=1, max_length=200)


def _error(status: int, message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail or []}, status_code=status)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    detail = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body", "query")) or "request"
    return f"invalid {where}: {first['msg']}", detail


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = _validation_message(exc)
        return _error(422, message, detail)

    @app.exception_handler(UnknownTask)
    async def _unknown(_request: Request, exc: UnknownTask) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(LooplineError)
    async def _user_error(_request: Request, exc: LooplineError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))


def _parse_exclude(raw: str) -> list[int]:
    """``"3,7,9"`` -> ``[3, 7, 9]`` (the ids the annotator skipped in this session)."""
    ids = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        if not part.isdigit():
            raise LooplineError(
                f"exclude must be comma-separated task ids, found {part!r}",
                hint="e.g. exclude=3,7",
            )
        ids.append(int(part))
    return ids


def _json_safe(value: Any) -> Any:
    # NaN is not JSON; undefined statistics travel as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def review_context(payload: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """What a reviewer should see beside an item: its current label and models' views.

    ``current_label`` is the payload's ``given_label``; ``suggestions`` lists a model's view
    kept with the item (``model_label`` with ``model_probability``, and the probability it
    gives the current label: the noise audit's, for items from ``source`` ``noise_audit``)
    and each Label Studio prediction that chose a label.
    """
    current = payload.get("given_label")
    suggestions: list[dict[str, Any]] = []
    if payload.get("model_label") is not None:
        suggestions.append(
            {
                "model": "noise audit" if source == "noise_audit" else "model",
                "label": str(payload["model_label"]),
                "score": _number(payload.get("model_probability")),
                "current_label_score": _number(payload.get("given_label_probability")),
            }
        )
    predictions = payload.get("predictions")
    for prediction in predictions if isinstance(predictions, list) else []:
        label = _predicted_choice(prediction)
        if label is not None:
            suggestions.append(
                {
                    "model": str(prediction.get("model_version") or "Label Studio prediction"),
                    "label": label,
                    "score": _number(prediction.get("score")),
                    "current_label_score": None,
                }
            )
    return {"current_label": None if current is None else str(current), "suggestions": suggestions}


def _predicted_choice(prediction: Any) -> str | None:
    """The first label a Label Studio prediction chose (None when it chose none)."""
    result = prediction.get("result") if isinstance(prediction, dict) else None
    for region in result if isinstance(result, list) else []:
        value = region.get("value") if isinstance(region, dict) else None
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list) and choices:
            return str(choices[0])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _task_json(task: Task | None) -> dict[str, Any] | None:
    if task is None:
        return None
    return dict(task.to_dict(), context=review_context(task.payload, task.source))


def create_label_app(queue: LabelQueue, annotator_default: str = "annotator") -> FastAPI:
    """The labeling page and its JSON API for ``queue``."""
    app = FastAPI(title=f"Loopline labeling: {queue.name}", docs_url=None, redoc_url=None)
    _install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse)
    def label_page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/review", response_class=HTMLResponse)
    def review_page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {
            "queue": queue.name,
            "labels": queue.label_set,
            "annotations_per_item": queue.annotations_per_item,
            "annotator_default": annotator_default,
        }

    @app.get("/api/next")
    def next_task(
        annotator: str = Query(min_length=1, max_length=200),
        exclude: str = Query(default="", max_length=20000),
    ) -> dict[str, Any]:
        task = queue.next_task(annotator, exclude=_parse_exclude(exclude))
        return {
            "task": _task_json(task),
            "progress": queue.progress(annotator),
        }

    @app.post("/api/label")
    def label(body: LabelIn) -> dict[str, Any]:
        annotation_id = queue.submit(body.task_id, body.annotator, body.label, body.lead_time_s)
        return {"annotation_id": annotation_id, "progress": queue.progress(body.annotator)}

    @app.post("/api/undo")
    def undo(body: UndoIn) -> dict[str, Any]:
        task = queue.undo(body.annotator)
        return {
            "task": _task_json(task),
            "progress": queue.progress(body.annotator),
        }

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        return dict(_json_safe(queue.stats()))

    @app.get("/api/disagreements")
    def disagreements(
        limit: int = Query(default=100, ge=1, le=1000),
        min_annotations: int = Query(default=2, ge=2),
    ) -> dict[str, Any]:
        frame = queue.disagreements(min_annotations).head(limit)
        tasks = queue.tasks().set_index("item_id")
        items = [
            {
                "task_id": int(tasks.at[row.item_id, "id"]),
                "item_id": row.item_id,
                "text": row.text,
                "label": row.label,
                "agreement": float(row.agreement),
                "n_annotations": int(row.n_annotations),
                "votes": {str(k): int(v) for k, v in row.votes.items()},
                "context": review_context(
                    tasks.at[row.item_id, "payload"], tasks.at[row.item_id, "source"]
                ),
            }
            for row in frame.itertuples(index=False)
        ]
        return {"items": items}

    return app


def serve_label_app(
    queue: LabelQueue,
    host: str = "127.0.0.1",
    port: int = 8765,
    annotator_default: str = "annotator",
) -> None:
    """Serve the labeling page with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_label_app(queue, annotator_default), host=host, port=port, log_level="info")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Loopline labeling</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #d8dde6; --accent: #2754c5; --bg: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
         color: var(--fg); background: var(--bg); }
  header { display: flex; gap: 1rem; align-items: center; padding: .75rem 1.25rem;
           background: #fff; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  header h1 { font-size: 1.05rem; margin: 0; }
  header nav a { margin-right: .75rem; color: var(--accent); text-decoration: none; }
  header nav a.active { font-weight: 600; text-decoration: underline; }
  header label { margin-left: auto; color: var(--muted); font-size: .9rem; }
  header input { font: inherit; padding: .2rem .4rem; border: 1px solid var(--line);
                 border-radius: 4px; width: 11rem; }
  main { max-width: 52rem; margin: 1.5rem auto; padding: 0 1.25rem; }
  #progress { color: var(--muted); font-size: .9rem; margin-bottom: .75rem; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1.25rem; }
  #item-text { font-size: 1.25rem; white-space: pre-wrap; word-break: break-word;
               min-height: 3rem; }
  #item-meta { color: var(--muted); font-size: .8rem; margin-top: .5rem; }
  #item-context, td.context { font-size: .9rem; }
  #item-context { margin-top: .75rem; padding: .5rem .75rem; border-radius: 6px;
                  background: #f0f4ff; }
  td.context { color: var(--muted); }
  #buttons { display: flex; flex-wrap: wrap; gap: .5rem; margin-top: 1rem; }
  button { font: inherit; padding: .45rem .9rem; border: 1px solid var(--line);
           border-radius: 6px; background: #fff; cursor: pointer; }
  button:hover, button:focus { border-color: var(--accent); outline: none; }
  button kbd { color: var(--muted); margin-right: .35rem; font-size: .85em; }
  #status { min-height: 1.5rem; margin-top: .75rem; font-size: .9rem; }
  #status.error { color: #b42318; }
  .help { color: var(--muted); font-size: .85rem; margin-top: 1rem; }
  table { width: 100%; border-collapse: collapse; background: #fff; }
  th, td { text-align: left; padding: .5rem; border-bottom: 1px solid var(--line);
           vertical-align: top; font-size: .95rem; }
  td.votes { white-space: nowrap; color: var(--muted); }
  td button { margin: 0 .25rem .25rem 0; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header>
  <h1 id="title">Loopline labeling</h1>
  <nav><a href="./" id="nav-label">Label</a><a href="review" id="nav-review">Review</a></nav>
  <label>Annotator <input id="annotator" autocomplete="off" spellcheck="false"></label>
</header>
<main>
  <section id="label-view" hidden>
    <div id="progress"></div>
    <div class="card" id="item">
      <div id="item-text"></div>
      <div id="item-meta"></div>
      <div id="item-context" hidden></div>
      <div id="buttons"></div>
    </div>
    <div id="status" role="status" aria-live="polite"></div>
    <p class="help">Keys: <kbd>1</kbd>-<kbd>9</kbd> pick a label &middot; <kbd>s</kbd> skip
      &middot; <kbd>u</kbd> undo your last label &middot; <kbd>r</kbd> bring skipped items back
      &middot; <kbd>Enter</kbd> in the name field saves it.</p>
  </section>
  <section id="review-view" hidden>
    <div id="review-summary" class="help"></div>
    <table><thead><tr><th>Item</th><th>Current label &amp; model</th><th>Votes</th>
      <th>Agreement</th><th>Your label</th></tr>
    </thead><tbody id="review-rows"></tbody></table>
    <div id="review-status" role="status"></div>
  </section>
</main>
<script>
"use strict";
const STORE_KEY = "loopline.annotator";
const state = { labels: [], task: null, skipped: [], busy: false, shownAt: 0 };
const $ = (id) => document.getElementById(id);
const reviewMode = /\\/review\\/*$/.test(location.pathname);

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)
  };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

function annotator() { return $("annotator").value.trim(); }

function setStatus(message, isError) {
  const el = $(reviewMode ? "review-status" : "status");
  el.textContent = message || "";
  el.className = isError ? "error" : "";
}

function showProgress(p) {
  $("progress").textContent = "Done " + p.done + " of " + p.total + " items \\u00b7 open " +
    p.open + " \\u00b7 you labelled " + p.mine +
    (state.skipped.length ? " \\u00b7 skipped " + state.skipped.length : "");
}

function percent(score) {
  return typeof score === "number" ? " (" + Math.round(score * 100) + "%)" : "";
}

// "Current label: negative · Model (noise audit): positive (93%); current label 7%"
function contextText(context) {
  if (!context) return "";
  const parts = [];
  if (context.current_label !== null && context.current_label !== undefined) {
    parts.push("Current label: " + context.current_label);
  }
  for (const s of context.suggestions || []) {
    let text = "Model (" + s.model + "): " + s.label + percent(s.score);
    if (typeof s.current_label_score === "number") {
      text += "; current label " + Math.round(s.current_label_score * 100) + "%";
    }
    parts.push(text);
  }
  return parts.join(" \\u00b7 ");
}

function render(task) {
  state.task = task;
  state.shownAt = performance.now();
  const item = $("item");
  const buttons = $("buttons");
  buttons.replaceChildren();
  if (!task) {
    item.dataset.taskId = "";
    $("item-text").textContent = state.skipped.length
      ? "Nothing left but the items you skipped: press r to see them again."
      : "Nothing left to label. Thank you!";
    $("item-meta").textContent = "";
    $("item-context").hidden = true;
  } else {
    item.dataset.taskId = String(task.id);
    $("item-text").textContent = task.text || JSON.stringify(task.payload);
    $("item-meta").textContent = "item " + task.item_id + " \\u00b7 from " + task.source +
      " \\u00b7 " + task.annotations + " label(s) so far";
    const context = contextText(task.context);
    $("item-context").textContent = context;
    $("item-context").hidden = !context;
    state.labels.forEach((label, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.label = label;
      if (i < 9) {
        const key = document.createElement("kbd");
        key.textContent = String(i + 1);
        button.append(key);
      }
      button.append(document.createTextNode(label));
      button.addEventListener("click", () => submit(label));
      buttons.append(button);
    });
  }
  document.body.dataset.ready = "1";
}

async function loadNext() {
  if (!annotator()) { setStatus("Enter your name first.", true); render(null); return; }
  state.busy = true;
  document.body.dataset.ready = "0";
  try {
    const query = "annotator=" + encodeURIComponent(annotator()) +
      "&exclude=" + state.skipped.join(",");
    const data = await api("api/next?" + query);
    showProgress(data.progress);
    render(data.task);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    state.busy = false;
  }
}

async function submit(label) {
  if (!state.task || state.busy) return;
  state.busy = true;
  document.body.dataset.ready = "0";
  const seconds = (performance.now() - state.shownAt) / 1000;
  try {
    await api("api/label", {task_id: state.task.id, annotator: annotator(), label: label,
                             lead_time_s: Math.round(seconds * 1000) / 1000});
    setStatus("Saved \\u201c" + label + "\\u201d for item " + state.task.item_id + ".");
  } catch (err) {
    setStatus(err.message, true);
    state.busy = false;
    document.body.dataset.ready = "1";
    return;
  }
  state.busy = false;
  await loadNext();
}

function skip() {
  if (!state.task || state.busy) return;
  state.skipped.push(state.task.id);
  setStatus("Skipped item " + state.task.item_id + ".");
  loadNext();
}

async function undo() {
  if (state.busy) return;
  state.busy = true;
  try {
    const data = await api("api/undo", {annotator: annotator()});
    showProgress(data.progress);
    if (data.task) {
      state.skipped = state.skipped.filter((id) => id !== data.task.id);
      render(data.task);
      setStatus("Took back your label on item " + data.task.item_id + ".");
    } else {
      setStatus("Nothing to undo.");
    }
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    state.busy = false;
  }
}

function onKey(event) {
  const typing = event.target instanceof HTMLInputElement;
  if (typing) {
    if (event.key === "Enter") event.target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || reviewMode) return;
  if (/^[1-9]$/.test(event.key)) {
    const label = state.labels[Number(event.key) - 1];
    if (label !== undefined) { event.preventDefault(); submit(label); }
  } else if (event.key === "s") {
    event.preventDefault(); skip();
  } else if (event.key === "u") {
    event.preventDefault(); undo();
  } else if (event.key === "r") {
    event.preventDefault(); state.skipped = []; loadNext();
  }
}

async function loadReview() {
  try {
    const data = await api("api/disagreements?limit=200");
    const rows = $("review-rows");
    rows.replaceChildren();
    $("review-summary").textContent = data.items.length
      ? data.items.length + " item(s) where annotators disagree, least agreement first."
      : "No disagreements yet.";
    for (const item of data.items) {
      const tr = document.createElement("tr");
      tr.dataset.taskId = String(item.task_id);
      const text = document.createElement("td");
      text.textContent = item.text || item.item_id;
      const context = document.createElement("td");
      context.className = "context";
      context.textContent = contextText(item.context) || "\\u2013";
      const votes = document.createElement("td");
      votes.className = "votes";
      votes.textContent = Object.entries(item.votes).map(([k, v]) => k + ": " + v).join(", ");
      const agreement = document.createElement("td");
      agreement.textContent = Math.round(item.agreement * 100) + "%";
      const actions = document.createElement("td");
      for (const label of state.labels) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.addEventListener("click", async () => {
          try {
            await api("api/label", {task_id: item.task_id, annotator: annotator(), label});
            setStatus("Saved \\u201c" + label + "\\u201d for item " + item.item_id + ".");
            loadReview();
          } catch (err) { setStatus(err.message, true); }
        });
        actions.append(button);
      }
      tr.append(text, context, votes, agreement, actions);
      rows.append(tr);
    }
    document.body.dataset.ready = "1";
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function start() {
  const config = await api("api/config");
  state.labels = config.labels;
  $("title").textContent = "Loopline labeling \\u00b7 " + config.queue;
  const field = $("annotator");
  field.value = localStorage.getItem(STORE_KEY) || config.annotator_default || "";
  field.addEventListener("change", () => {
    localStorage.setItem(STORE_KEY, annotator());
    if (!reviewMode) { state.skipped = []; loadNext(); }
  });
  document.addEventListener("keydown", onKey);
  $(reviewMode ? "nav-review" : "nav-label").className = "active";
  $(reviewMode ? "review-view" : "label-view").hidden = false;
  if (reviewMode) loadReview(); else loadNext();
}

start().catch((err) => setStatus(err.message, true));
</script>
</body>
</html>
"""
