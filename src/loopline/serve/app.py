"""The HTTP prediction service: a FastAPI app around one already-loaded model.

The app never resolves or loads models itself: the caller hands it a :class:`LoadedModel`,
so nothing a client sends can make the server read a model from an arbitrary path.

Request bodies for ``POST /predict`` (``text`` stands for the model's input columns)::

    {"text": "great day"}                          -> one prediction
    [{"text": "great day"}, {"text": "awful"}]     -> a list of predictions
    {"inputs": [{"text": "great day"}, ...]}       -> a list of predictions

Every error answers ``{"error": "<one-line message>", "detail": [{"loc", "msg", "type"}]}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    import numpy as np

    from loopline.registry.models import LoadedModel

__all__ = ["create_app"]

# Buckets in seconds, dense around the 1-10 ms where a single TF-IDF + linear prediction lands.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
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
    """An error answer: HTTP status, a one-line message and field-level details."""

    def __init__(self, status: int, error: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail or []


def _error_response(
    status: int, error: str, detail: list[dict[str, Any]] | None = None
) -> Response:
    return JSONBytesResponse({"error": error, "detail": detail or []}, status_code=status)


# --- metrics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeMetrics:
    """The Prometheus metrics of one app, in their own registry (two apps never share counters)."""

    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    prediction_seconds: Histogram
    items: Counter
    model_info: Gauge

    @classmethod
    def create(cls, model_name: str, model_version: str) -> ServeMetrics:
        """Register the metrics in a fresh registry and publish the served model's identity."""
        registry = CollectorRegistry(auto_describe=True)
        metrics = cls(
            registry=registry,
            requests=Counter(
                "loopline_http_requests",
                "HTTP requests answered, by route template, method and status code.",
                ["route", "method", "status"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "loopline_http_request_duration_seconds",
                "Time from receiving a request to the end of its response, by route template.",
                ["route"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            prediction_seconds=Histogram(
                "loopline_prediction_latency_seconds",
                "Time spent building the input frame and calling the model, per request.",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            items=Counter(
                "loopline_predicted_items",
                "Items (rows) predicted.",
                registry=registry,
            ),
            model_info=Gauge(
                "loopline_model_info",
                "The model being served (value is always 1).",
                ["name", "version"],
                registry=registry,
            ),
        )
        metrics.model_info.labels(name=model_name, version=model_version).set(1)
        return metrics


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
            await _error_response(400, "Content-Length header is not a valid integer")(
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
        response = _error_response(413, message, detail)
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


# --- request parsing and validation --------------------------------------------------------


@dataclass(frozen=True)
class _InputSpec:
    """How to read the model's input columns out of a request body."""

    columns: list[str]
    item_model: type[BaseModel]
    field_names: list[str]  # attribute name on item_model for each column, same order
    items_adapter: TypeAdapter[list[BaseModel]]
    max_items: int

    @classmethod
    def build(cls, columns: list[str], max_items: int) -> _InputSpec:
        """Create the pydantic item model: one required ``str`` field per input column.

        Fields are named ``c0, c1, ...`` with the column as alias, so any column name works
        (spaces, leading underscores, names that clash with BaseModel attributes) while errors
        still point at the column name the client sent.
        """
        field_names = [f"c{i}" for i in range(len(columns))]
        fields: dict[str, Any] = {
            name: (str, Field(alias=column))
            for name, column in zip(field_names, columns, strict=True)
        }
        item_model = create_model("PredictItem", __config__=ConfigDict(extra="forbid"), **fields)
        return cls(
            columns=columns,
            item_model=item_model,
            field_names=field_names,
            items_adapter=TypeAdapter(list[item_model]),  # type: ignore[valid-type]
            max_items=max_items,
        )

    def shape_hint(self) -> str:
        example = ", ".join(f'"{column}": "..."' for column in self.columns)
        return f'send {{{example}}}, a list of such objects, or {{"inputs": [...]}}'

    def parse(self, body: bytes) -> tuple[list[BaseModel], bool]:
        """Parse and validate a body; returns the items and whether the client sent a batch."""
        if not body.strip():
            raise ApiError(
                400,
                f"request body is empty; {self.shape_hint()}",
                [_loc_error(["body"], "empty body", "json_invalid")],
            )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            message = f"request body is not valid JSON ({exc})"
            raise ApiError(400, message, [_loc_error(["body"], str(exc), "json_invalid")]) from exc

        raw_items, prefix, batch = self._split(payload)
        if batch and not raw_items:
            raise ApiError(
                422,
                "the list of items is empty; send at least one item",
                [_loc_error(prefix, "list is empty", "too_short")],
            )
        if len(raw_items) > self.max_items:
            message = (
                f"{len(raw_items)} items in one request; the limit is {self.max_items}, "
                "split the batch"
            )
            raise ApiError(413, message, [_loc_error(prefix, message, "too_many_items")])
        try:
            items = self.items_adapter.validate_python(raw_items)
        except ValidationError as exc:
            raise _validation_api_error(exc, prefix, batch) from exc
        return items, batch

    def _split(self, payload: Any) -> tuple[list[Any], list[Any], bool]:
        """Tell the three accepted shapes apart: (raw items, error-location prefix, is batch)."""
        if isinstance(payload, list):
            return payload, ["body"], True
        if isinstance(payload, dict):
            # {"inputs": [...]} is the batch envelope unless "inputs" is itself a model column.
            if payload.keys() == {"inputs"} and "inputs" not in self.columns:
                inputs = payload["inputs"]
                if not isinstance(inputs, list):
                    raise ApiError(
                        422,
                        "'inputs' must be a list of objects",
                        [
                            _loc_error(
                                ["body", "inputs"], "Input should be a valid list", "list_type"
                            )
                        ],
                    )
                return inputs, ["body", "inputs"], True
            return [payload], ["body"], False
        raise ApiError(
            422,
            f"request body must be a JSON object or list; {self.shape_hint()}",
            [_loc_error(["body"], "Input should be an object or a list", "model_type")],
        )

    def frame(self, items: list[BaseModel]) -> pd.DataFrame:
        """Build the model's input DataFrame column by column (no per-row dicts).

        Column order follows the dict; passing ``columns=`` as well would cost pandas a
        reindex (~2x the construction time of a one-row frame).
        """
        return pd.DataFrame(
            {
                column: [getattr(item, name) for item in items]
                for column, name in zip(self.columns, self.field_names, strict=True)
            }
        )


def _loc_error(loc: list[Any], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def _validation_api_error(exc: ValidationError, prefix: list[Any], batch: bool) -> ApiError:
    """Turn pydantic errors into field-level details whose ``loc`` points into the sent body."""
    detail = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = list(error["loc"])
        if not batch:
            loc = loc[1:]  # a single item was validated as a one-element list: drop the index
        detail.append(_loc_error(prefix + loc, error["msg"], error["type"]))
    first = detail[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return ApiError(422, f"invalid request body: {where}: {first['msg']}{more}", detail)


# --- scoring ---------------------------------------------------------------------------------


def _format_predictions(proba: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """One ``{"label", "probabilities"}`` dict per row; ``tolist`` turns numpy floats into
    plain floats in one C call instead of one conversion per cell."""
    best = proba.argmax(axis=1).tolist()
    return [
        {"label": classes[index], "probabilities": dict(zip(classes, row, strict=True))}
        for index, row in zip(best, proba.tolist(), strict=True)
    ]


# --- the app ---------------------------------------------------------------------------------


def create_app(
    loaded: LoadedModel, *, max_body_bytes: int = 1_000_000, max_items: int = 1_000
) -> FastAPI:
    """Build the prediction service for one loaded model.

    Args:
        loaded: the model to serve, already resolved and loaded by the caller.
        max_body_bytes: larger request bodies are refused with 413 before being read in full.
        max_items: larger batches are refused with 413.

    Routes: ``POST /predict``, ``GET /health`` (liveness), ``GET /ready`` (readiness),
    ``GET /model`` (what is served), ``GET /metrics`` (Prometheus text format).
    """
    if max_body_bytes <= 0 or max_items <= 0:
        raise ValueError("max_body_bytes and max_items must be positive")
    info = loaded.info
    classes = [str(c) for c in loaded.classes]
    spec = _InputSpec.build(list(loaded.input_columns), max_items)
    metrics = ServeMetrics.create(info.name, info.version)
    identity = {"model_name": info.name, "model_version": info.version}

    app = FastAPI(
        title=f"Loopline model server: {info.name}/{info.version}",
        version=info.version,
        default_response_class=JSONBytesResponse,
    )
    app.state.loaded = loaded
    app.state.metrics = metrics
    _install_error_handlers(app)

    def score(items: list[BaseModel]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        proba = loaded.predict_proba(spec.frame(items))
        metrics.prediction_seconds.observe(time.perf_counter() - started)
        metrics.items.inc(len(items))
        return _format_predictions(proba, classes)

    @app.post("/predict", openapi_extra=_openapi_request_body(spec))
    async def predict(request: Request) -> Response:
        """Predict one item or a batch; one model call per request."""
        # The body is parsed by hand (not a FastAPI body parameter) to accept three shapes and
        # to report errors with locations inside the body the client actually sent.
        items, batch = spec.parse(await request.body())
        # The model runs in the threadpool so a slow batch never stalls /health or /ready.
        predictions = await run_in_threadpool(score, items)
        if batch:
            return JSONBytesResponse({**identity, "predictions": predictions})
        return JSONBytesResponse({**identity, "prediction": predictions[0]})

    health_body = orjson.dumps({"status": "ok"})
    ready_body = orjson.dumps({"status": "ready", **identity})
    model_body = orjson.dumps(_model_description(loaded, classes))

    @app.get("/health")
    def health() -> Response:
        """Liveness: the process answers."""
        return JSONBytesResponse(health_body)

    @app.get("/ready")
    def ready() -> Response:
        """Readiness: the model is loaded (it always is once the app exists)."""
        if app.state.loaded is None:
            return _error_response(503, "no model loaded yet")
        return JSONBytesResponse(ready_body)

    @app.get("/model")
    def model() -> Response:
        """What is being served: identity, lineage, metrics, inputs and classes."""
        return JSONBytesResponse(model_body)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of this app's own registry."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Added last = outermost: metrics also count the 413s that the size limit answers.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    paths = frozenset(getattr(route, "path", "") for route in app.routes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, paths=paths)
    return app


def _model_description(loaded: LoadedModel, classes: list[str]) -> dict[str, Any]:
    info = loaded.info
    return {
        "name": info.name,
        "version": info.version,
        "run_id": info.run_id,
        "dataset_version": info.dataset_version,
        "created_at": info.created_at.isoformat() if info.created_at else None,
        "metrics": dict(info.metrics),
        "aliases": list(info.aliases),
        "input_columns": list(loaded.input_columns),
        "classes": classes,
    }


def _openapi_request_body(spec: _InputSpec) -> dict[str, Any]:
    """Document the three accepted body shapes, since the body is not a FastAPI parameter."""
    item = spec.item_model.model_json_schema(by_alias=True)
    batch = {"type": "array", "items": item, "minItems": 1, "maxItems": spec.max_items}
    envelope = {
        "type": "object",
        "properties": {"inputs": batch},
        "required": ["inputs"],
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"anyOf": [item, batch, envelope]}}},
        }
    }


def _install_error_handlers(app: FastAPI) -> None:
    """Give every error the same ``{"error", "detail"}`` shape, including 404/405 and 500."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc.status, exc.error, exc.detail)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _error_response(exc.status_code, str(exc.detail))

    async def request_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = [
            _loc_error(list(e.get("loc", [])), str(e.get("msg", "")), str(e.get("type", "")))
            for e in exc.errors()
        ]
        return _error_response(422, "invalid request", detail)

    async def unexpected_error(_: Request, exc: Exception) -> Response:
        # The traceback still reaches the server log; the client only learns that it failed.
        return _error_response(
            500, f"internal server error ({type(exc).__name__}); see the server log"
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(Exception, unexpected_error)
