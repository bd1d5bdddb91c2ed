"""HTTP plumbing shared by the server's routes: JSON answers, the error shape, middlewares.

Every error answers ``{"error": "<one-line message>", "detail": [{"loc", "msg", "type"}]}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from loopline.serve.metrics import ServeMetrics

__all__ = [
    "ApiError",
    "BodySizeLimitMiddleware",
    "JSONBytesResponse",
    "MetricsMiddleware",
    "error_response",
    "install_error_handlers",
    "json_object",
    "loc_error",
    "openapi_json_body",
]

_UNMATCHED_ROUTE = "<unmatched>"


class JSONBytesResponse(Response):
    """A JSON response serialized with orjson (several times faster than the stdlib encoder)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialize ``content``; bytes pass through, so precomputed bodies cost nothing."""
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


class ApiError(Exception):
    """An error answer: HTTP status, a one-line message, field-level details, headers."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail or []
        self.headers = headers


def error_response(
    status: int,
    error: str,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return JSONBytesResponse(
        {"error": error, "detail": detail or []}, status_code=status, headers=headers
    )


def loc_error(loc: list[Any], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


class MetricsMiddleware:
    """Counts requests by route *template*, not raw path, so label cardinality stays bounded."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        # Requests answered before routing (a 413 for a declared Content-Length) carry no
        # route; their raw path is used only when it is one of these fixed route paths.
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router stores the matched route in the shared scope dict.
            route = scope.get("route")
            template = getattr(route, "path", None) or self._known_path(scope["path"])
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - started)

    def _known_path(self, path: str) -> str:
        return path if path in self.paths else _UNMATCHED_ROUTE


# --- body size limit -----------------------------------------------------------------------


class _BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the limit."""


class BodySizeLimitMiddleware:
    """Answers 413 for bodies over ``max_bytes``, before the app buffers them.

    A declared Content-Length is checked up front; chunked bodies (no Content-Length) are
    counted as they stream in, and reading stops at the first chunk past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await error_response(400, "Content-Length header is not a valid integer")(
                scope, receive, send
            )
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return

        seen = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:  # the app answered before reading everything: nothing to fix
                return
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is larger than the limit of {self.max_bytes} bytes"
        detail = [{"loc": ["body"], "msg": message, "type": "body_too_large"}]
        response = error_response(413, message, detail)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; None when absent, -1 when it is not a number."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


def json_object(body: bytes, hint: str) -> dict[str, Any]:
    """The body as a JSON object, or a 400/422 that says what to send."""
    try:
        payload = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON ({exc}); {hint}") from None
    if not isinstance(payload, dict):
        raise ApiError(
            422,
            f"request body must be a JSON object; {hint}",
            [loc_error(["body"], "Input should be an object", "model_type")],
        )
    return payload


def openapi_json_body(
    properties: dict[str, Any], required: list[str], body_required: bool = True
) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": body_required,
            "content": {"application/json": {"schema": schema}},
        }
    }


def install_error_handlers(app: FastAPI) -> None:
    """Give every error the same ``{"error", "detail"}`` shape, including 404/405 and 500."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    async def request_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = [
            loc_error(list(e.get("loc", [])), str(e.get("msg", "")), str(e.get("type", "")))
            for e in exc.errors()
        ]
        return error_response(422, "invalid request", detail)

    async def unexpected_error(_: Request, exc: Exception) -> Response:
        # The traceback still reaches the server log; the client only learns that it failed.
        return error_response(
            500, f"internal server error ({type(exc).__name__}); see the server log"
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(Exception, unexpected_error)


_HEALTHY = orjson.dumps({"status": "ok"})


def add_service_routes(
    app: FastAPI,
    metrics: ServeMetrics,
    *,
    serving: Callable[[], tuple[str, str]],
    max_body_bytes: int,
    before_render: Callable[[], None] | None = None,
) -> None:
    """Finish a model service: what every one has, added after its own routes.

    ``GET /health`` (liveness: the process answers), ``GET /ready`` (readiness, with the
    ``(name, version)`` that ``serving`` gives: the models are loaded once the app exists),
    ``GET /metrics`` (Prometheus text; ``before_render`` runs first, on the event loop),
    then the body size limit and, outermost, the request metrics (which also count the 413s
    that the size limit answers).
    """
    from prometheus_client import CONTENT_TYPE_LATEST

    @app.get("/health")
    def health() -> Response:
        """Liveness: the process answers."""
        return JSONBytesResponse(_HEALTHY)

    @app.get("/ready")
    def ready() -> Response:
        """Readiness: the models are loaded (they always are once the app exists)."""
        name, version = serving()
        return JSONBytesResponse({"status": "ready", "model_name": name, "model_version": version})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition (summed over worker processes)."""
        if before_render is not None:
            before_render()
        text = await asyncio.to_thread(metrics.render)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    paths = frozenset(getattr(route, "path", "") for route in app.routes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, paths=paths)
