"""The HTTP prediction service: a FastAPI app around registry-followed models.

The app never loads a model from anything a client sends: it serves the model *sources* the
caller configured (a :class:`LoadedModel`, or a registry reference such as
``sentiment@champion`` that it re-resolves on ``POST /admin/reload`` and on a timer).

Request bodies for ``POST /predict`` (``text`` stands for the model's input columns)::

    {"text": "great day"}                          -> one prediction
    [{"text": "great day"}, {"text": "awful"}]     -> a list of predictions
    {"inputs": [{"text": "great day"}, ...]}       -> a list of predictions

Optional headers: ``X-Request-ID`` (your id for the request, else one is generated),
``X-Request-Key`` (a user or session id: with a canary, the same key always gets the same
model), ``X-API-Key`` (required when API keys are configured).

Answers::

    {"request_id": "...", "model_name": "sentiment", "model_version": "3", "route": "champion",
     "prediction": {"label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9}}}

and for a list, ``"predictions": [{"request_id": "<id>.0", "label": ..., ...}, ...]``: each
item has its own id, for ``POST /feedback``. ``route`` is ``champion`` or ``canary``.

Every error answers ``{"error": "<one-line message>", "detail": [{"loc", "msg", "type"}]}``.

Empty input: a text (string) input that is empty or only whitespace is refused with 422 and
nothing of the request is scored, since a model answers even "" with a confident label. The
detail names each such value, e.g. ``{"loc": ["body", "inputs", 2, "text"], "msg": "text is
empty or only whitespace", "type": "string_too_short"}`` for the third item of a batch. Text
with at least one other character is scored exactly as sent (not stripped). Numeric and
boolean inputs (typed from the model's signature) are never "empty": 0 and false are values.

``POST /feedback`` (see :mod:`loopline.serve.admin`) stores every label, and answers 201 with
``"matched": true`` when this process answered that request id recently, else 202 with
``"matched": false`` and a ``warning`` (counted in ``loopline_feedback_orphaned_total``).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack, cast

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from loopline.errors import LooplineError
from loopline.serve.admin import add_admin_routes, add_feedback_route
from loopline.serve.batching import BatcherClosed, BatchItem, MicroBatcher, QueueFull
from loopline.serve.http import (
    ApiError,
    JSONBytesResponse,
    add_service_routes,
    install_error_handlers,
    loc_error,
)
from loopline.serve.inference import build_predictor, column_types, probe_columns
from loopline.serve.metrics import (
    DeferredMetrics,
    LeanCacheCollector,
    ServeMetrics,
)
from loopline.serve.routing import (
    CANARY_ROUTE,
    CHAMPION_ROUTE,
    SHADOW_ROUTE,
    FixedModel,
    ModelSlot,
    ModelSource,
    Router,
    ServedModel,
    freeze_heap,
    serving_lifespan,
)

if TYPE_CHECKING:
    import numpy as np

    from loopline.core.metadata import MetadataStore
    from loopline.core.predlog import PredictionLogger
    from loopline.registry.models import LoadedModel

__all__ = ["AppOptions", "RecentRequests", "create_app"]

log = logging.getLogger(__name__)

# Client request ids are echoed into logs and answers: keep them short and harmless. 48
# characters leave room for the ".<index>" of batch items within the feedback table's 64.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,48}")

_EMPTY_TEXT = "text is empty or only whitespace"
# Documents (in the OpenAPI schema) the check that _InputSpec makes itself, with its own error.
_TEXT_FIELD: dict[str, Any] = {
    "description": "Text to classify; empty or whitespace-only text is refused (422).",
    "json_schema_extra": {"minLength": 1},
}


class AppOptions(TypedDict, total=False):
    """Keyword options of :func:`create_app` (all optional).

    ``max_body_bytes``: larger bodies get 413 before being read in full. ``max_items``:
    larger batches get 413. ``max_batch_size``/``max_wait_us``: micro-batching (rows per
    model call, longest wait for company at an idle model). ``max_queue``: requests waiting
    per model before 503. ``timeout_ms``: a request not answered in time gets 504.
    ``poll_interval_s``: how often registry references are re-resolved (0: only on
    ``POST /admin/reload``). ``admin_token``: enables the ``/admin`` routes (none: they are
    not mounted). ``api_keys``: when non-empty, ``/predict`` and ``/feedback`` need one in
    ``X-API-Key``.
    """

    max_body_bytes: int
    max_items: int
    max_batch_size: int
    max_wait_us: int
    max_queue: int
    timeout_ms: int
    poll_interval_s: float
    admin_token: str | None
    api_keys: Sequence[str]


_DEFAULTS: dict[str, Any] = {
    "max_body_bytes": 1_000_000,
    "max_items": 1_000,
    "max_batch_size": 64,
    "max_wait_us": 1_000,
    "max_queue": 1_024,
    "timeout_ms": 10_000,
    "poll_interval_s": 10.0,
    "admin_token": None,
    "api_keys": (),
}


# --- the /predict fast path ------------------------------------------------------------------


PREDICT_PATH = "/predict"


class ModelServerApp(FastAPI):
    """The FastAPI app, except that ``POST /predict`` goes to :class:`PredictFastPath` first."""

    predict_fast_path: PredictFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch ``POST /predict`` to the fast path, everything else to FastAPI."""
        fast_path = self.predict_fast_path
        if (
            fast_path is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and _route_path(scope) == PREDICT_PATH
        ):
            await fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class _ClientGone(Exception):
    """The client disconnected before its body arrived."""


class PredictFastPath:
    """Answers ``POST /predict`` straight from ASGI, ahead of FastAPI's whole middleware stack.

    FastAPI's per-request work (its own and Starlette's middlewares, routing, dependency
    solving) costs about as much as the model's share of a batched request, so
    :class:`ModelServerApp` hands this route here first; it is still registered with FastAPI
    for the OpenAPI document. It does what the middlewares would: the body size limit,
    the error shape, and the request metrics.
    """

    def __init__(self, service: PredictionService, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        metrics = service.metrics
        self._seconds = metrics.request_seconds.labels(PREDICT_PATH)
        self._count_by_status: dict[int, Any] = {}
        self._deferred = service.deferred

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        declared = api_key = given_id = request_key = None
        for name, value in scope["headers"]:  # the few headers /predict reads
            if name == b"content-length":
                declared = value
            elif name == b"x-request-id":
                given_id = value.decode("latin-1")
            elif name == b"x-request-key":
                request_key = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
        service = self.service
        try:
            if service.api_keys:
                service.check_api_key(api_key)
            request_id = _request_id(given_id)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body = message.get("body", b"")  # the whole body in one message (usual)
                self._check_size(declared, len(body))
            else:
                body = await self._read_body(receive, declared, message)
            future, per_model, rows, batch = service.submit(body, request_id, request_key, started)
            try:
                results = await future
            except asyncio.CancelledError:
                raise service.timed_out() from None
            body = service.finish(per_model, request_id, results, rows, batch)
            status = 200
            headers = [
                (b"x-request-id", request_id.encode()),
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
        except ApiError as exc:
            status = exc.status
            body = orjson.dumps({"error": exc.error, "detail": exc.detail})
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", b"%d" % len(body)))
        except _ClientGone:
            self._record(499, started)  # nginx's code for "client closed the request"
            return
        except Exception as exc:
            log.exception("POST /predict failed")
            status = 500
            message_text = f"internal server error ({type(exc).__name__}); see the server log"
            body = orjson.dumps({"error": message_text, "detail": []})
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self._record(status, started)

    def _record(self, status: int, started: float) -> None:
        counter = self._count_by_status.get(status)
        if counter is None:
            counter = self.service.metrics.requests.labels(PREDICT_PATH, "POST", str(status))
            self._count_by_status[status] = counter
        deferred = self._deferred
        deferred.inc(counter)
        deferred.observe(self._seconds, time.perf_counter() - started)

    def _check_size(self, declared: bytes | None, size: int) -> None:
        """A declared Content-Length must be a number; neither it nor the body may pass the
        limit."""
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise ApiError(400, "Content-Length header is not a valid integer") from None
            if length > self.max_body_bytes:
                raise self._too_large()
        if size > self.max_body_bytes:
            raise self._too_large()

    async def _read_body(self, receive: Receive, declared: bytes | None, message: Message) -> bytes:
        """The whole body from its first ``message`` on, refusing more than
        ``max_body_bytes`` before reading it all."""
        self._check_size(declared, 0)
        chunks = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            message = await receive()

    def _too_large(self) -> ApiError:
        message = f"request body is larger than the limit of {self.max_body_bytes} bytes"
        return ApiError(413, message, [loc_error(["body"], message, "body_too_large")])


def _route_path(scope: Scope) -> str:
    """The request's path below any root path."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


# --- request parsing and validation --------------------------------------------------------


@dataclass(frozen=True)
class _InputSpec:
    """How to read the model's input columns out of a request body."""

    columns: list[str]
    item_model: type[BaseModel]
    field_names: list[str]  # attribute name on item_model for each column, same order
    items_adapter: TypeAdapter[list[BaseModel]]
    max_items: int
    kinds: list[tuple[type, ...]]  # the JSON value types each column takes as they are
    # (column, JSON value types, is text) per column: what the fast path checks, in one tuple
    checks: tuple[tuple[str, tuple[type, ...], bool], ...]
    text_fields: list[tuple[str, str]]  # (attribute name, column) of the text columns

    @classmethod
    def build(cls, columns: list[str], kinds: list[tuple[type, ...]], max_items: int) -> _InputSpec:
        """Create the pydantic item model: one required field per input column, typed as the
        model's signature says (text, number, integer, boolean; text when it says nothing).

        Fields are named ``c0, c1, ...`` with the column as alias, so any column name works
        (spaces, leading underscores, names that clash with BaseModel attributes) while errors
        still point at the column name the client sent.
        """
        field_names = [f"c{i}" for i in range(len(columns))]
        texts = [kind == (str,) for kind in kinds]
        fields: dict[str, Any] = {
            name: (kind[0], Field(alias=column, **(_TEXT_FIELD if text else {})))
            for name, column, kind, text in zip(field_names, columns, kinds, texts, strict=True)
        }
        item_model = create_model("PredictItem", __config__=ConfigDict(extra="forbid"), **fields)
        return cls(
            columns=columns,
            item_model=item_model,
            field_names=field_names,
            items_adapter=TypeAdapter(list[item_model]),  # type: ignore[valid-type]
            max_items=max_items,
            kinds=kinds,
            checks=tuple(zip(columns, kinds, texts, strict=True)),
            text_fields=[
                (name, column)
                for name, column, text in zip(field_names, columns, texts, strict=True)
                if text
            ],
        )

    def shape_hint(self) -> str:
        example = ", ".join(
            f'"{column}": ' + ('"..."' if kind == (str,) else kind[0].__name__)
            for column, kind in zip(self.columns, self.kinds, strict=True)
        )
        return f'send {{{example}}}, a list of such objects, or {{"inputs": [...]}}'

    def parse(self, body: bytes) -> tuple[list[list[Any]], int, bool]:
        """Parse and validate a body into (one list per input column, rows, is a batch).

        Well-formed bodies are checked by hand (exact keys, ``str`` values) without building
        a pydantic model per item; anything else goes through pydantic, which accepts the
        same bodies and explains what is wrong with the others.
        """
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if not body.strip():
                raise ApiError(
                    400,
                    f"request body is empty; {self.shape_hint()}",
                    [loc_error(["body"], "empty body", "json_invalid")],
                ) from None
            message = f"request body is not valid JSON ({exc})"
            raise ApiError(400, message, [loc_error(["body"], str(exc), "json_invalid")]) from exc
        fast = self._fast(payload)
        if fast is not None:
            return fast
        raw_items, prefix, batch = self._split(payload)
        if batch and not raw_items:
            raise ApiError(
                422,
                "the list of items is empty; send at least one item",
                [loc_error(prefix, "list is empty", "too_short")],
            )
        if len(raw_items) > self.max_items:
            message = (
                f"{len(raw_items)} items in one request; the limit is {self.max_items}, "
                "split the batch"
            )
            raise ApiError(413, message, [loc_error(prefix, message, "too_many_items")])
        try:
            items = self.items_adapter.validate_python(raw_items)
        except ValidationError as exc:
            raise _validation_api_error(exc, prefix, batch) from exc
        self._refuse_empty_texts(items, prefix, batch)
        columns = [[getattr(item, name) for item in items] for name in self.field_names]
        return columns, len(items), batch

    def _refuse_empty_texts(self, items: list[BaseModel], prefix: list[Any], batch: bool) -> None:
        """422 naming every empty or whitespace-only text value (the fast path sends such
        bodies here), so that a model never answers a confident label for nothing."""
        detail = []
        for index, item in enumerate(items):
            for name, column in self.text_fields:
                value = getattr(item, name)
                if not value or value.isspace():
                    loc = [*prefix, index, column] if batch else [*prefix, column]
                    detail.append(loc_error(loc, _EMPTY_TEXT, "string_too_short"))
        if detail:
            where = ".".join(str(part) for part in detail[0]["loc"])
            more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
            message = (
                f"invalid request body: {where}: {_EMPTY_TEXT}{more}; send the text to classify"
            )
            raise ApiError(422, message, detail)

    def _fast(self, payload: Any) -> tuple[list[list[Any]], int, bool] | None:
        """The common well-formed shapes, or None (then pydantic decides)."""
        if type(payload) is dict:
            row = self._row(payload)
            return None if row is None else ([[value] for value in row], 1, False)
        if type(payload) is list and 0 < len(payload) <= self.max_items:
            rows = [self._row(item) if type(item) is dict else None for item in payload]
            if any(row is None for row in rows):
                return None
            return [list(column) for column in zip(*rows, strict=True)], len(rows), True
        return None

    def _row(self, item: dict[str, Any]) -> list[Any] | None:
        """The item's values in column order if it is exactly right, else None: the keys
        are the columns, each value has its column's type, and no text is empty or blank."""
        if len(item) != len(self.columns):
            return None
        values = []
        for column, kind, text in self.checks:
            value = item.get(column)
            if type(value) not in kind or (text and (not value or value.isspace())):
                return None
            values.append(value)
        return values

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
                            loc_error(
                                ["body", "inputs"], "Input should be a valid list", "list_type"
                            )
                        ],
                    )
                return inputs, ["body", "inputs"], True
            return [payload], ["body"], False
        raise ApiError(
            422,
            f"request body must be a JSON object or list; {self.shape_hint()}",
            [loc_error(["body"], "Input should be an object or a list", "model_type")],
        )


def _validation_api_error(exc: ValidationError, prefix: list[Any], batch: bool) -> ApiError:
    """Turn pydantic errors into field-level details whose ``loc`` points into the sent body."""
    detail = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = list(error["loc"])
        if not batch:
            loc = loc[1:]  # a single item was validated as a one-element list: drop the index
        detail.append(loc_error(prefix + loc, error["msg"], error["type"]))
    first = detail[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return ApiError(422, f"invalid request body: {where}: {first['msg']}{more}", detail)


# --- scoring ---------------------------------------------------------------------------------


class _Predictions(list[dict[str, Any]]):
    """One ``{"label", "probabilities"}`` dict per row (what the answers carry), with the
    batch's ``labels`` and probability matrix ``proba`` (what the prediction log reads)."""

    __slots__ = ("labels", "proba")

    def __init__(self, rows: Iterable[dict[str, Any]], labels: list[str], proba: Any) -> None:
        super().__init__(rows)
        self.labels = labels
        self.proba = proba


def _format_predictions(proba: np.ndarray, classes: list[str]) -> _Predictions:
    """One ``{"label", "probabilities"}`` dict per row; ``tolist`` turns numpy floats into
    plain floats in one C call instead of one conversion per cell."""
    labels = [classes[index] for index in proba.argmax(axis=1).tolist()]
    rows = (
        {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
        for label, row in zip(labels, proba.tolist(), strict=True)
    )
    return _Predictions(rows, labels, proba)


# What the prediction log needs to know about a request in a batch: its request id, the
# perf_counter() when it arrived, and whether it is a list request (each row gets
# "<request_id>.<index>"). A plain tuple: one is made per request.
_RequestMeta = tuple[str, float, bool]


class _PerModel:
    """What the routes keep for each served model: its input spec, its child of the
    routed-requests counter (``labels()`` costs per request), and the part of its answers
    that never changes, serialized once."""

    __slots__ = ("_identity", "answered", "spec")

    def __init__(self, spec: _InputSpec, answered: Any, served: ServedModel) -> None:
        self.spec = spec
        self.answered = answered
        identity = {"model_name": served.name, "model_version": served.version}
        # '"model_name":...,"model_version":...,"route":...' without the braces
        self._identity = orjson.dumps({**identity, "route": served.route})[1:-1]

    def answer(self, request_id: str, results: list[dict[str, Any]], batch: bool) -> bytes:
        """The JSON answer: ``{"request_id", "model_name", "model_version", "route",
        "prediction"}``, or ``"predictions"`` with an id per item for a list request."""
        if batch:
            predictions = orjson.dumps(
                [{"request_id": f"{request_id}.{i}", **result} for i, result in enumerate(results)]
            )
            key = b',"predictions":'
        else:
            predictions = orjson.dumps(results[0])
            key = b',"prediction":'
        return b"".join(
            (
                b'{"request_id":',
                orjson.dumps(request_id),
                b",",
                self._identity,
                key,
                predictions,
                b"}",
            )
        )


class _Deadlines:
    """Cancels the futures of requests not answered within ``timeout_s``, with one timer.

    A timer per request (``loop.call_later``) showed in profiles; requests time out in the
    order they arrived, so one timer armed for the oldest outstanding request does. Answered
    requests leave the queue from its head as they finish (mostly in order), so it holds
    little more than the requests in flight.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._queue: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop | None) -> None:
        """Cancel ``future`` (on ``loop``, where it was created) if it is not done in time."""
        if loop is None:
            loop = asyncio.get_running_loop()
        if loop is not self._loop:  # another loop (a test client's): start afresh there
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._queue.clear()
            self._loop = loop
        queue = self._queue
        while queue and queue[0][1].done():
            queue.popleft()
        queue.append((loop.time() + self.timeout_s, future))
        if self._timer is None:
            self._timer = loop.call_at(queue[0][0], self._expire)

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        queue = self._queue
        now = loop.time()
        while queue and (queue[0][1].done() or queue[0][0] <= now):
            _, future = queue.popleft()
            if not future.done():
                future.cancel()
        if queue:
            self._timer = loop.call_at(queue[0][0], self._expire)


class PredictionService:
    """The state behind the routes: models and routing, metrics, options, the log."""

    def __init__(
        self,
        options: dict[str, Any],
        metrics: ServeMetrics,
        prediction_log: PredictionLogger | None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.prediction_log = prediction_log
        self.timeout_s = options["timeout_ms"] / 1000.0
        self.deadlines = _Deadlines(self.timeout_s)
        # Per-request metrics, added to Prometheus once per event loop iteration.
        self.deferred = DeferredMetrics()
        self.api_keys = [key.encode() for key in options["api_keys"] if key]
        self.router: Router  # set by create_app once the slots exist
        self.served: dict[int, _PerModel] = {}  # id(ServedModel) -> what the routes need
        # The request ids answered lately, for POST /feedback (None: no feedback route).
        self.recent: RecentRequests | None = None

    def answered(self, request_id: str) -> bool:
        """Whether this process answered ``request_id`` recently (see :class:`RecentRequests`)."""
        return self.recent is not None and self.recent.answered(request_id)

    # -- building a served model (any thread) -------------------------------------------

    def build_served(self, loaded: LoadedModel, route: str) -> ServedModel:
        """Predictor (lean path if exact), warm-up, and a batcher with its worker thread."""
        predictor = build_predictor(loaded)
        classes = [str(c) for c in loaded.classes]

        def predict(columns: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
            return _format_predictions(predictor.predict_proba(columns), classes)

        # Warm-up: the first call of a freshly loaded model pays for lazy initialisation, and
        # a model that cannot predict at all is refused here rather than swapped in.
        if getattr(loaded, "task", "classification") != "classification":
            raise LooplineError(
                f"model {loaded.info.name}/{loaded.info.version} is a {loaded.task} model; "
                "the server answers classifiers only (so far)",
                hint="score it in batch from Python with the registry's load()",
            )
        try:
            predict(probe_columns(loaded))
        except Exception as exc:
            raise LooplineError(
                f"model {loaded.info.name}/{loaded.info.version} failed its warm-up "
                f"prediction: {type(exc).__name__}: {exc}",
                hint="check that the model scores a DataFrame of its input columns",
            ) from exc
        options = self.options
        batcher = MicroBatcher(
            predict,
            after_batch=self._log_hook(loaded, route),
            on_batch=self.metrics.observe_batch,
            # A shadow model stays in its thread: its work must never hold up a response.
            run_inline=predictor.is_quick if route != SHADOW_ROUTE else None,
            max_batch_size=options["max_batch_size"],
            max_wait_us=options["max_wait_us"],
            max_queue=options["max_queue"],
            name=f"{route}-{loaded.info.name}-{loaded.info.version}",
        )
        served = ServedModel(loaded, predictor, batcher, route)
        freeze_heap()
        self.served[id(served)] = _PerModel(
            _InputSpec.build(
                list(loaded.input_columns), column_types(loaded), options["max_items"]
            ),
            self.metrics.routed.labels(route, loaded.info.version),
            served,
        )
        self.metrics.model_info.labels(loaded.info.name, loaded.info.version, route).set(1)
        log.info(
            "%s: %s/%s ready (%s inference)",
            route,
            loaded.info.name,
            loaded.info.version,
            predictor.kind,
        )
        return served

    def on_swap(self, old: ServedModel, new: ServedModel) -> None:
        """Metrics bookkeeping after a hot swap."""
        self.served.pop(id(old), None)
        if (old.name, old.version) != (new.name, new.version):
            self.metrics.model_info.labels(old.name, old.version, old.route).set(0)
        self.metrics.swaps.labels(new.route).inc()

    def _log_hook(
        self, loaded: LoadedModel, route: str
    ) -> Callable[[list[BatchItem]], None] | None:
        """Writes the answered rows of a batch to the prediction log (after the answers went
        out, in the worker thread or the event loop), as one columnar
        :class:`~loopline.core.predlog.PredictionBatch`: one lock and no per-row objects."""
        logger = self.prediction_log
        if logger is None:
            return None
        from loopline.core.predlog import PredictionBatch

        name, version = loaded.info.name, loaded.info.version
        columns = list(loaded.input_columns)
        classes = [str(c) for c in loaded.classes]
        dropped = self.metrics.log_dropped

        def write(batch: list[BatchItem]) -> None:
            done = time.perf_counter()
            now_us = time.time_ns() // 1000
            answered = [i for i in batch if i.future is None or not i.future.cancelled()]
            if not answered:
                return  # all timed out: the clients got 504s, not these predictions
            metas = [item.meta for item in answered]
            waits = [done - started for _, started, _ in metas]
            if not any(is_batch for _, _, is_batch in metas):  # single items (the usual)
                ids = [request_id for request_id, _, _ in metas]
                ts_us = [now_us - int(waited * 1_000_000) for waited in waits]
                latency_ms = [waited * 1000.0 for waited in waits]
            else:
                ids, ts_us, latency_ms = [], [], []
                for item, (request_id, _, is_batch), waited in zip(
                    answered, metas, waits, strict=True
                ):
                    rows = item.rows
                    if is_batch:
                        ids.extend([f"{request_id}.{index}" for index in range(rows)])
                    else:
                        ids.append(request_id)
                    ts_us.extend([now_us - int(waited * 1_000_000)] * rows)  # arrival
                    latency_ms.extend([waited * 1000.0] * rows)
            predictions = getattr(batch, "results", None)
            if len(answered) == len(batch) and isinstance(predictions, _Predictions):
                # Every row of the model call: its columns and probability matrix as they are.
                # (The lists are the batch's own: nothing changes them once it is scored.)
                values = list(getattr(batch, "columns", ()))
                labels = predictions.labels
                proba = predictions.proba
                probabilities = {c: proba[:, j].tolist() for j, c in enumerate(classes)}
            else:
                values = [[] for _ in columns]
                results: list[dict[str, Any]] = []
                for item in answered:
                    for target, column in zip(values, item.columns, strict=True):
                        target.extend(column)
                    results.extend(item.results)
                labels = [result["label"] for result in results]
                found = [result["probabilities"] for result in results]
                probabilities = {c: [p[c] for p in found] for c in classes}
            record = PredictionBatch(
                name,
                version,
                route,
                ids,
                ts_us,
                dict(zip(columns, values, strict=True)),
                labels,
                probabilities,
                latency_ms,
            )
            if not logger.log_batch(record):
                dropped.inc(len(ids))

        return write

    # -- the prediction route (event loop) ------------------------------------------------

    async def predict(self, request: Request) -> Response:
        """The FastAPI route (documents /predict; requests normally take the fast path)."""
        started = time.perf_counter()
        headers = request.headers
        body, request_id = await self.answer(
            request.body,
            headers.get("x-api-key"),
            headers.get("x-request-id"),
            headers.get("x-request-key"),
            started,
        )
        return JSONBytesResponse(body, headers={"x-request-id": request_id})

    async def answer(
        self,
        read_body: Callable[[], Awaitable[bytes]],
        api_key: str | None,
        request_id_header: str | None,
        request_key: str | None,
        started: float,
    ) -> tuple[bytes, str]:
        """Check, parse, route, queue on the chosen model, await its batch; return the JSON
        answer and the request id. Errors raise :class:`ApiError`."""
        if self.api_keys:
            self.check_api_key(api_key)
        request_id = _request_id(request_id_header)
        body = await read_body()
        future, per_model, rows, batch = self.submit(body, request_id, request_key, started)
        try:
            results = await future
        except asyncio.CancelledError:
            raise self.timed_out() from None
        return self.finish(per_model, request_id, results, rows, batch), request_id

    def submit(
        self, body: bytes, request_id: str, request_key: str | None, started: float
    ) -> tuple[asyncio.Future[list[Any]], _PerModel, int, bool]:
        """Parse ``body``, route it and queue it on the chosen model (no await: the request
        is queued on the model that is current now, and its answer names that model even
        if a swap follows). Returns the future of its results, the model's route data, the
        row count and whether it is a list request."""
        served = self.router.choose(request_key).current
        per_model = self.served[id(served)]
        columns, rows, batch = per_model.spec.parse(body)
        meta: _RequestMeta = (request_id, started, batch)
        batcher = served.batcher
        try:
            future = batcher.submit(columns, rows, meta)
        except (QueueFull, BatcherClosed) as exc:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                503,
                f"the server is at capacity ({exc}); retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        if self.router.shadow is not None:
            self._shadow(columns, rows, meta, served)
        self.deadlines.watch(future, batcher.loop)
        return future, per_model, rows, batch

    def timed_out(self) -> ApiError:
        """The 504 for a request whose future was cancelled by its deadline (re-raises the
        cancellation when it is the request itself that is being cancelled)."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError  # the request itself is being cancelled
        self.metrics.rejected.labels("timeout").inc()
        return ApiError(504, f"the model did not answer within {self.options['timeout_ms']} ms")

    def finish(
        self,
        per_model: _PerModel,
        request_id: str,
        results: list[dict[str, Any]],
        rows: int,
        batch: bool,
    ) -> bytes:
        """Count an answered request and render its JSON answer."""
        self.deferred.inc(per_model.answered)
        if self.recent is not None:
            self.recent.add(request_id, rows if batch else 0)
        return per_model.answer(request_id, results, batch)

    def _shadow(
        self, columns: list[list[Any]], rows: int, meta: _RequestMeta, served: ServedModel
    ) -> None:
        """Queue a copy for the shadow model; never waits, never fails the request."""
        shadow = self.router.shadow
        if shadow is None:
            return
        target = shadow.current
        if list(target.loaded.input_columns) != list(served.loaded.input_columns):
            return  # the shadow model reads other inputs: nothing comparable to send
        if not target.batcher.submit_nowait(columns, rows, meta):
            self.metrics.shadow_dropped.inc()

    def check_api_key(self, given: str | None) -> None:
        """401 unless ``given`` is one of the configured keys (constant-time compare)."""
        if given:
            candidate = given.encode()
            # Compare with every key, so the time does not tell which one nearly matched.
            matches = [hmac.compare_digest(candidate, key) for key in self.api_keys]
            if any(matches):
                return
        raise ApiError(
            401,
            "a valid API key is required: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )


#: How many answered requests :class:`RecentRequests` remembers at least (twice that at most).
RECENT_REQUESTS = 50_000


class RecentRequests:
    """The request ids this process answered lately, so ``POST /feedback`` can tell whether
    it knows the prediction a label is for.

    Two generations of ``{request_id: rows}`` (0 for a single item; a batch's items are
    ``<request_id>.<index>``): when the current one holds ``size`` ids it becomes the
    previous one and the oldest are forgotten. One dict store per answered request; memory
    stays bounded (about 100 bytes per id).
    """

    __slots__ = ("_current", "_previous", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}

    def add(self, request_id: str, rows: int) -> None:
        """Remember an answered request: ``rows`` items for a batch, 0 for a single item."""
        current = self._current
        current[request_id] = rows
        if len(current) >= self._size:
            self._previous = current
            self._current = {}

    def answered(self, request_id: str) -> bool:
        """Whether a prediction logged under ``request_id`` was answered here lately."""
        if self._rows(request_id) == 0:
            return True
        base, dot, index = request_id.rpartition(".")
        # ASCII digits without leading zeros: the indexes that answers actually carry
        if not dot or not (index.isascii() and index.isdigit()) or str(int(index)) != index:
            return False
        rows = self._rows(base)
        return rows is not None and int(index) < rows

    def _rows(self, request_id: str) -> int | None:
        rows = self._current.get(request_id)
        return self._previous.get(request_id) if rows is None else rows


# Generated request ids: a random per-process prefix and a counter. Unique across workers and
# restarts, and far cheaper than a uuid4 per request (os.urandom measured ~40 us here).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def _request_id(given: str | None) -> str:
    if given is None:
        return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"
    if _REQUEST_ID.fullmatch(given) is None:
        raise ApiError(
            422,
            "X-Request-ID must be 1-48 characters: letters, digits, '.', '_', ':' or '-'",
            [
                loc_error(
                    ["header", "x-request-id"], "invalid request id", "string_pattern_mismatch"
                )
            ],
        )
    return given


# --- the app ---------------------------------------------------------------------------------


def create_app(
    champion: LoadedModel | ModelSource,
    *,
    canary: LoadedModel | ModelSource | None = None,
    canary_percent: float | None = None,
    shadow: LoadedModel | ModelSource | None = None,
    prediction_log: PredictionLogger | None = None,
    feedback_store: MetadataStore | None = None,
    **options: Unpack[AppOptions],
) -> FastAPI:
    """Build the prediction service.

    Args:
        champion: the model that answers: a loaded model (served as is) or a source such as
            :class:`~loopline.serve.routing.RegistryModel` (followed: hot-swapped when its
            alias moves). Loaded here, before the app is returned.
        canary: a second model answering ``canary_percent`` % of requests (sticky by the
            ``X-Request-Key`` header).
        shadow: a model that scores a copy of every request off the response path; its
            answers only go to the prediction log (route ``shadow``).
        prediction_log: where every prediction is recorded, after it is answered. The app
            starts it at start-up and closes it (flushing every accepted record) at shutdown.
        feedback_store: enables ``POST /feedback`` (ground-truth labels by request id).
        **options: see :class:`AppOptions`.

    Routes: ``POST /predict``, ``POST /feedback`` (with a store), ``GET /health``
    (liveness), ``GET /ready`` (readiness), ``GET /model`` (what is served), ``GET /metrics``
    (Prometheus), and with an admin token ``POST /admin/reload`` and ``POST /admin/rollback``.
    A detection model gets the image service of :mod:`loopline.serve.vision` instead.
    """
    opts = _check_options({**_DEFAULTS, **options})
    if (canary is None) != (canary_percent is None):
        raise ValueError("pass canary and canary_percent together")
    from loopline.serve.vision import create_detection_app, serves_detection

    if serves_detection(champion):  # images in, boxes out: its own service and routes
        return create_detection_app(
            champion, prediction_log=prediction_log, canary=canary, shadow=shadow, **opts
        )
    metrics = ServeMetrics.create()
    service = PredictionService(opts, metrics, prediction_log)

    def slot(route: str, model: LoadedModel | ModelSource) -> ModelSlot:
        return ModelSlot(route, _source(model), service.build_served, service.on_swap)

    service.router = Router(
        slot(CHAMPION_ROUTE, champion),
        slot(CANARY_ROUTE, canary) if canary is not None else None,
        canary_percent or 0.0,
        slot(SHADOW_ROUTE, shadow) if shadow is not None else None,
    )
    router = service.router
    first = router.champion.current

    app = ModelServerApp(
        title=f"Loopline model server: {first.name}",
        version=first.version,
        default_response_class=JSONBytesResponse,
        lifespan=serving_lifespan(
            router.slots,
            opts["poll_interval_s"],
            prediction_log,
            after_batchers=service.deferred.flush,
        ),
    )
    app.state.service = service
    app.state.metrics = metrics
    install_error_handlers(app)

    app.add_api_route(
        PREDICT_PATH,
        service.predict,
        methods=["POST"],
        summary="Predict one item or a batch",
        openapi_extra=_openapi_request_body(service.served[id(first)].spec),
    )
    if feedback_store is not None:
        service.recent = RecentRequests(RECENT_REQUESTS)
        add_feedback_route(app, service, feedback_store)
    if opts["admin_token"]:
        add_admin_routes(app, service, opts["admin_token"])
    else:
        log.info("admin routes are off: no admin token is configured")

    @app.get("/model")
    def model() -> Response:
        """What is being served: the champion's identity, lineage, inputs, and the routes."""
        return JSONBytesResponse(_model_description(router))

    metrics.add_local(
        LeanCacheCollector(
            lambda: [
                (slot.route, slot.current.version, slot.current.predictor) for slot in router.slots
            ]
        )
    )
    app.predict_fast_path = PredictFastPath(service, opts["max_body_bytes"])

    def serving() -> tuple[str, str]:
        current = router.champion.current
        return current.name, current.version

    # /metrics flushes the counts kept on the event loop, where the requests are counted.
    add_service_routes(
        app,
        metrics,
        serving=serving,
        max_body_bytes=opts["max_body_bytes"],
        before_render=service.deferred.flush,
    )
    return app


def _source(model: LoadedModel | ModelSource) -> ModelSource:
    """A model source as is; anything else is a loaded model (duck-typed) served as is."""
    if hasattr(model, "current_version") and hasattr(model, "load"):
        return cast("ModelSource", model)
    return FixedModel(cast("LoadedModel", model))


def _check_options(opts: dict[str, Any]) -> dict[str, Any]:
    unknown = set(opts) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
    for key in ("max_body_bytes", "max_items", "max_batch_size", "max_queue", "timeout_ms"):
        if opts[key] <= 0:
            raise ValueError(f"{key} must be positive, got {opts[key]}")
    if opts["max_wait_us"] < 0 or opts["poll_interval_s"] < 0:
        raise ValueError("max_wait_us and poll_interval_s must not be negative")
    opts["api_keys"] = tuple(opts["api_keys"] or ())
    return opts


def _model_description(router: Router) -> dict[str, Any]:
    current = router.champion.current
    loaded = current.loaded
    info = loaded.info
    routes: dict[str, Any] = {}
    for slot in router.slots:
        served = slot.current
        routes[slot.route] = {
            "name": served.name,
            "version": served.version,
            "ref": slot.source.ref,
            "inference": served.predictor.kind,
        }
    if router.canary is not None:
        routes[CANARY_ROUTE]["percent"] = router.canary_percent
    return {
        "name": info.name,
        "version": info.version,
        "run_id": info.run_id,
        "dataset_version": info.dataset_version,
        "created_at": info.created_at.isoformat() if info.created_at else None,
        "metrics": dict(info.metrics),
        "aliases": list(info.aliases),
        "input_columns": list(loaded.input_columns),
        "classes": [str(c) for c in loaded.classes],
        "routes": routes,
    }


# --- OpenAPI and errors ----------------------------------------------------------------------


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
