"""The dashboard's FastAPI app and its server (``loopline ui``).

Pages are rendered on the server with Jinja2 (autoescaped); the one stylesheet and the one
small script ship in the package (``static/``), so the dashboard works offline. Routes::

    GET  /runs  /runs/{id}  /artifacts/{hash}  /artifacts/{hash}/files/{path}
    GET  /lineage?ref=NAME@ALIAS  /lineage/request?id=ID
    GET  /models?name=NAME&page=N&compare=V
    GET  /monitoring?model=NAME&window=...  /monitoring/report?model=NAME&...
    GET  /data  /data/{name}/{version}  /data/{name}/diff?a=V&b=W
    GET  /review, and the labeling pages of each queue under /label/{queue}/
    POST /api/models/{name}/promote {"version", "alias"?, "reason", "actor"?}
    POST /api/models/{name}/rollback {"reason", "actor"?}

The two POST routes move aliases as ``loopline models promote/rollback`` do, recorded in the
alias history with the reason and the actor, behind the admin token of ``loopline serve``'s
admin routes (``Authorization: Bearer <token>``; none: 401, wrong: 403). Without a
configured token they answer 403: the dashboard is then read-only.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from loopline.errors import LooplineError, ModelNotFound
from loopline.serve.admin import check_admin_token
from loopline.serve.http import ApiError, error_response
from loopline.ui.views import Dashboard, NotFound

if TYPE_CHECKING:
    import jinja2

    from loopline.config import Settings

__all__ = ["create_app", "open_dashboard", "serve_ui"]

_MAX_ACTOR = 100
_WARM_TIMEOUT_S = 300.0  # MLflow and SciPy take seconds to import, minutes on a busy machine
_MAX_REASON = 500
_ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="6" '
    b'fill="none" stroke="#2754c5" stroke-width="3"/></svg>'
)
_NAV = (
    ("runs", "/runs", "Runs"),
    ("lineage", "/lineage", "Lineage"),
    ("models", "/models", "Models"),
    ("monitoring", "/monitoring", "Monitoring"),
    ("data", "/data", "Data"),
    ("review", "/review", "Review"),
)


_Body = TypeVar("_Body", bound=BaseModel)


class PromoteIn(BaseModel):
    """An alias move asked for from the models page."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=20, pattern=r"^\s*[0-9]+\s*$")
    alias: str = Field(default="champion", min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=_MAX_REASON)
    actor: str = Field(default="admin", min_length=1, max_length=_MAX_ACTOR)


class RollbackIn(BaseModel):
    """A rollback asked for from the models page."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=_MAX_REASON)
    actor: str = Field(default="admin", min_length=1, max_length=_MAX_ACTOR)


def _templates() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("loopline.ui", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["seconds"] = lambda s: "-" if s is None else f"{s:.2f} s"
    env.filters["short"] = lambda h, n=12: (h or "")[:n]
    env.filters["number"] = _number
    env.filters["size"] = _size
    env.filters["pretty"] = lambda v: _pretty(v)
    env.globals["nav"] = _NAV
    return env


def _when(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)[:19].replace("T", " ")


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _pretty(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()


class _QueuePages:
    """The labeling and review pages of every queue, each under ``/label/{queue}/``.

    The app of :func:`loopline.label.web.create_label_app` is made on the first request
    for a queue (queues are created while the dashboard runs) and kept; a queue that does
    not exist is a 404, never created.
    """

    def __init__(self, dashboard: Dashboard, page: Callable[..., Response]) -> None:
        self._dashboard = dashboard
        self._page = page
        self._apps: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _app_for(self, name: str) -> Any:
        from loopline.label.queue import LabelQueue, list_queues
        from loopline.label.web import create_label_app

        with self._lock:
            if name not in self._apps:
                known = {q["name"] for q in list_queues(self._dashboard.store)}
                if name not in known:
                    return None
                queue = LabelQueue(self._dashboard.store, name)
                self._apps[name] = create_label_app(queue)
            return self._apps[name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = str(scope["path_params"]["queue"])
        app = await run_in_threadpool(self._app_for, name)
        if app is None:
            error = NotFound(f"no labeling queue named {name!r}", hint="see the review page")
            await self._page(error)(scope, receive, send)
            return
        await app(scope, receive, send)


def create_app(dashboard: Dashboard, admin_token: str | None = None) -> FastAPI:
    """The dashboard app over ``dashboard``'s stores; ``admin_token`` enables alias moves."""
    templates = _templates()
    expected = admin_token.encode() if admin_token else None
    app = FastAPI(title="Loopline dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("loopline.ui") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    def render(name: str, active: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        text = templates.get_template(name).render(
            active=active, admin=expected is not None, **context
        )
        return HTMLResponse(text, status_code=status)

    def error_page(exc: LooplineError) -> HTMLResponse:
        status = 404 if isinstance(exc, NotFound | ModelNotFound) else 400
        context = {"message": exc.message, "hint": exc.hint, "status": status}
        return render("error.html", "", context, status=status)

    @app.exception_handler(LooplineError)
    async def _user_error(request: Request, exc: LooplineError) -> Response:
        if request.url.path.startswith("/api/"):
            status = 404 if isinstance(exc, NotFound | ModelNotFound) else 409
            return error_response(status, exc.message)
        return error_page(exc)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return error_response(exc.status_code, str(exc.detail))
        return error_page(NotFound(f"no page at {request.url.path}", hint="use the menu above"))

    # -- pages ---------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return Response(status_code=307, headers={"Location": "/runs"})

    @app.get("/ready", include_in_schema=False)
    def ready() -> Response:
        """200 once the dashboard is warm (see :meth:`Dashboard.warm`), 503 before."""
        warm = dashboard.warmed.is_set()
        return JSONResponse({"ready": warm}, status_code=200 if warm else 503)

    @app.get("/favicon.ico", include_in_schema=False)
    def icon() -> Response:
        return Response(_ICON, media_type="image/svg+xml")

    @app.get("/runs", response_class=HTMLResponse)
    def runs(
        pipeline: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        page: int = 1,
    ) -> HTMLResponse:
        return render("runs.html", "runs", dashboard.runs(pipeline, status, since, until, page))

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(run_id: str) -> HTMLResponse:
        return render("run.html", "runs", dashboard.run(run_id))

    @app.get("/artifacts/{digest}", response_class=HTMLResponse)
    def artifact(digest: str) -> HTMLResponse:
        return render("artifact.html", "runs", dashboard.artifact(digest))

    @app.get("/artifacts/{digest}/files/{path:path}")
    def artifact_file(digest: str, path: str) -> FileResponse:
        return FileResponse(dashboard.artifact_file(digest, path))

    @app.get("/lineage", response_class=HTMLResponse)
    def lineage(ref: str | None = None) -> HTMLResponse:
        return render("lineage.html", "lineage", dashboard.lineage(ref))

    @app.get("/lineage/request", response_class=HTMLResponse)
    def request_lineage(request_id: str = Query("", alias="id")) -> HTMLResponse:
        return render("request.html", "lineage", dashboard.request(request_id))

    @app.get("/models", response_class=HTMLResponse)
    def models(
        name: str | None = None, page: int = 1, compare: list[str] = Query(default=[])
    ) -> HTMLResponse:
        return render("models.html", "models", dashboard.models(name, page, compare))

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring(request: Request) -> HTMLResponse:
        params = _monitor_params(request)
        return render("monitoring.html", "monitoring", dashboard.monitoring(params))

    @app.get("/monitoring/report", response_class=HTMLResponse)
    def monitoring_report(request: Request) -> HTMLResponse:
        try:
            return HTMLResponse(dashboard.monitoring_report(_monitor_params(request)))
        except LooplineError as exc:  # shown inside the page's frame, without the menu
            return render("report_error.html", "", {"message": exc.message, "hint": exc.hint})

    @app.get("/data", response_class=HTMLResponse)
    def data() -> HTMLResponse:
        return render("data.html", "data", dashboard.data())

    @app.get("/data/{name}/diff", response_class=HTMLResponse)
    def dataset_diff(name: str, a: int, b: int) -> HTMLResponse:
        return render("diff.html", "data", dashboard.dataset_diff(name, a, b))

    @app.get("/data/{name}/{version}", response_class=HTMLResponse)
    def dataset(name: str, version: int) -> HTMLResponse:
        return render("dataset.html", "data", dashboard.dataset(name, version))

    @app.get("/review", response_class=HTMLResponse)
    def review() -> HTMLResponse:
        return render("review.html", "review", dashboard.review())

    app.mount("/label/{queue}", _QueuePages(dashboard, error_page))

    # -- alias moves, behind the admin token ---------------------------------------------
    def authorize(request: Request) -> None:
        if expected is None:
            raise ApiError(
                403,
                "alias moves are off: start `loopline ui` with the admin token set "
                "(LOOPLINE_ADMIN_TOKEN)",
            )
        check_admin_token(request.headers.get("authorization"), expected)

    def actor_of(request: Request, actor: str) -> str:
        host = request.client.host if request.client else "unknown"
        return f"{actor.strip()} (loopline ui from {host})"

    @app.post("/api/models/{name}/promote")
    async def promote(name: str, request: Request) -> dict[str, Any]:
        authorize(request)
        body = _parse(PromoteIn, await request.body())
        version, alias = body.version.strip(), body.alias.strip()
        reason, actor = body.reason.strip(), actor_of(request, body.actor)
        registry = dashboard.registry
        if alias == "champion":
            await run_in_threadpool(registry.promote, name, version, reason=reason, actor=actor)
        else:
            await run_in_threadpool(
                registry.set_alias, name, alias, version, reason=reason, actor=actor
            )
        return {
            "model": name,
            "alias": alias,
            "version": version,
            "reason": reason,
            "actor": actor,
            "message": f"{name}@{alias} -> version {version}",
        }

    @app.post("/api/models/{name}/rollback")
    async def rollback(name: str, request: Request) -> dict[str, Any]:
        authorize(request)
        body = _parse(RollbackIn, await request.body())
        reason, actor = body.reason.strip(), actor_of(request, body.actor)
        info = await run_in_threadpool(
            dashboard.registry.rollback, name, reason=reason, actor=actor
        )
        return {
            "model": name,
            "alias": "champion",
            "version": info.version,
            "reason": reason,
            "actor": actor,
            "message": f"{name}@champion -> version {info.version}",
        }

    return app


def _monitor_params(request: Request) -> dict[str, str]:
    keys = ("model", "window", "since", "until", "group", "positive")
    return {k: request.query_params.get(k, "").strip() for k in keys}


def _parse(model: type[_Body], body: bytes) -> _Body:
    """The JSON body as ``model``, or a 422 naming the first bad field."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, f"invalid {where}: {first['msg']}") from None


def open_dashboard(settings: Settings) -> Dashboard:
    """The project's stores for the dashboard; nothing is created.

    Raises :class:`~loopline.errors.LooplineError` when nothing is recorded in the project
    yet (no metadata store).
    """
    from loopline.core.artifacts import ArtifactStore
    from loopline.core.metadata import MetadataStore, StoreMissing
    from loopline.registry.project import open_registry

    assert settings.metadata_url and settings.artifact_root
    try:
        store = MetadataStore(settings.metadata_url, create=False)
    except StoreMissing as exc:
        raise LooplineError(
            f"nothing is recorded in the project {settings.project_root} yet: no metadata "
            f"store at {exc.where} ({exc.why})",
            hint="run a pipeline first: `loopline run` (or `loopline demo sentiment`)",
        ) from None
    registry = open_registry(settings, store, create=False)
    dashboard = Dashboard(settings, store, registry, ArtifactStore(settings.artifact_root))
    # The dashboard answers /ready once warm; it accepts connections (and a busy port
    # fails) at once.
    threading.Thread(target=dashboard.warm, name="loopline-ui-warm", daemon=True).start()
    return dashboard


def serve_ui(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    admin_token: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard in the foreground until SIGINT or SIGTERM.

    A busy port fails at once with a :class:`~loopline.errors.LooplineError`. ``announce``
    gets the URL once the dashboard answers.
    """
    from loopline.serve.server import start_in_thread

    dashboard = open_dashboard(settings)
    stop = threading.Event()
    handlers = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        app = create_app(dashboard, admin_token)
        with start_in_thread(app, host, port, ready_timeout=_WARM_TIMEOUT_S) as server:
            if announce is not None:
                announce(f"dashboard on {server.url} (project {settings.project_root})")
            stop.wait()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        dashboard.store.close()
