"""Serving object detectors: an image in, boxes out.

:func:`~loopline.serve.app.create_app` hands a detection model (``task="detection"``, see
:mod:`loopline.train.detector`) to :func:`create_detection_app`; the JSON routes of
tabular and text models are left as they are. ``POST /predict`` takes one image, either way
a client would send a file:

- ``multipart/form-data`` with the image in a file field named ``image`` (or the form's only
  file): ``curl -F image=@canvas.png http://127.0.0.1:8000/predict``;
- the image's bytes as the whole body (``Content-Type: image/png``, ``image/jpeg`` or
  ``application/octet-stream``): ``curl --data-binary @canvas.png -H 'Content-Type:
  image/png' ...``.

Answer::

    {"request_id": "...", "model_name": "vision", "model_version": "2", "route": "champion",
     "width": 128, "height": 128,
     "detections": [{"label": "7", "score": 0.97, "box": [x, y, w, h]}, ...]}

with boxes in pixels from the image's top-left corner, best first; ``?min_score=0.5``
raises the model's own reporting threshold for one request. A body that is not an image
gets 415 (or 400 for an empty one) with the usual ``{"error", "detail"}`` shape; too large
gets 413.

Requests are micro-batched (concurrent images share one forward pass), the model follows
its registry alias (hot swap on promote or rollback, as for every model) and each answer
goes to the prediction log: the image's sha256 and size as inputs, the most confident
label, and per class the best score in the image. Canary and shadow routing are for
tabular and text models only so far.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from loopline.errors import DataError, LooplineError
from loopline.serve.batching import BatcherClosed, BatchItem, MicroBatcher, QueueFull
from loopline.serve.http import (
    ApiError,
    JSONBytesResponse,
    add_service_routes,
    install_error_handlers,
    loc_error,
)
from loopline.serve.metrics import ServeMetrics
from loopline.serve.routing import (
    CHAMPION_ROUTE,
    FixedModel,
    ModelSlot,
    ModelSource,
    RegistryModel,
    ServedModel,
    serving_lifespan,
)

if TYPE_CHECKING:
    from loopline.core.predlog import PredictionLogger
    from loopline.registry.models import LoadedModel

__all__ = ["DetectionPredictor", "create_detection_app", "serves_detection"]

log = logging.getLogger(__name__)

PREDICT_PATH = "/predict"
DETECTION_TASK = "detection"
_FIELD = "image"
_IMAGE_HINT = (
    "send one image: multipart/form-data with a file field 'image' "
    "(curl -F image=@photo.png URL/predict), or its bytes as the body "
    "(curl --data-binary @photo.png -H 'Content-Type: image/png' URL/predict)"
)
# A request's image with the values the answer and the log need.
_Item = tuple[np.ndarray, float | None]


def serves_detection(model: LoadedModel | ModelSource) -> bool:
    """Whether ``model`` (a loaded model or a registry reference) is a detection model.

    A registry reference is answered from the version's ``loopline.json`` (a few hundred
    bytes), not by loading the model twice.
    """
    if isinstance(model, RegistryModel):
        registry = model.registry
        info = registry.resolve(model.ref)
        uri = registry.client.get_model_version_download_uri(info.name, info.version)
        return _task_in(uri) == DETECTION_TASK
    if isinstance(model, FixedModel):
        return model.loaded.task == DETECTION_TASK
    return getattr(model, "task", None) == DETECTION_TASK


def _task_in(folder_uri: str) -> str | None:
    """The ``task`` in the ``loopline.json`` of a model folder (None: no such file)."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from loopline.train.mlflow_io import DESCRIPTION_FILE

    parsed = urlparse(folder_uri)
    if parsed.scheme in ("", "file"):  # a local store: read the file where it is
        path = Path(url2pathname(parsed.path)) / DESCRIPTION_FILE
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    else:
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        try:
            text = mlflow.artifacts.load_text(f"{folder_uri}/{DESCRIPTION_FILE}")
        except (MlflowException, OSError):
            text = None
    # No description: a model saved by another tool, so not one of Loopline's detectors.
    task = orjson.loads(text).get("task") if text else None
    return str(task) if task else None


class DetectionPredictor:
    """Runs a detection model on a batch of images (one input column of pixel arrays)."""

    kind = "detector"

    def __init__(self, loaded: LoadedModel) -> None:
        model = loaded.model
        self._network = model.estimator
        self._classes = list(model.classes_)

    def is_quick(self, columns: Sequence[Sequence[Any]]) -> bool:
        """Never: a forward pass takes milliseconds to tens of them; it runs off the loop."""
        return False

    def predict_proba(self, columns: Sequence[Sequence[Any]]) -> np.ndarray:
        """A detector has boxes, not class probabilities: see :meth:`detect`."""
        raise LooplineError("a detection model has no class probabilities; call detect()")

    def detect(self, columns: Sequence[Sequence[_Item]]) -> list[list[dict[str, Any]]]:
        """The detections of each image, with each request's own ``min_score`` (the
        model's threshold where None) applied on top of the lowest one asked for."""
        items = columns[0]
        asked = [score for _, score in items if score is not None]
        lowest = min([self._network.score_threshold, *asked])
        found = self._network.detect([pixels for pixels, _ in items], self._classes,
                                     min_score=lowest)  # fmt: skip
        floor = self._network.score_threshold
        return [
            [d for d in boxes if d["score"] >= (floor if score is None else score)]
            for (_, score), boxes in zip(items, found, strict=True)
        ]


def create_detection_app(
    champion: LoadedModel | ModelSource,
    *,
    prediction_log: PredictionLogger | None = None,
    canary: object | None = None,
    shadow: object | None = None,
    **options: Any,
) -> FastAPI:
    """The service of a detection model (see the module's description).

    ``options`` are :class:`~loopline.serve.app.AppOptions` already checked by
    :func:`~loopline.serve.app.create_app`; ``max_items``, ``admin_token`` and the
    feedback store do not apply to images.
    """
    if canary is not None or shadow is not None:
        raise LooplineError(
            "canary and shadow routing serve tabular and text models; a detection model is "
            "served on its own",
            hint="drop --canary/--shadow, or serve the challenger on another port",
        )
    metrics = ServeMetrics.create()
    source = champion if hasattr(champion, "load") else FixedModel(cast("LoadedModel", champion))
    batching = {k: options[k] for k in ("max_batch_size", "max_wait_us", "max_queue")}
    batching["max_batch_size"] = min(batching["max_batch_size"], 16)  # images, not rows

    def build(loaded: LoadedModel, route: str) -> ServedModel:
        if loaded.task != DETECTION_TASK:
            raise LooplineError(
                f"model {loaded.info.ref} is a {loaded.task} model, not a detector",
                hint="serve it on its own: `loopline serve` picks the right service",
            )
        predictor = DetectionPredictor(loaded)
        try:  # the first call pays for lazy initialisation; a broken model is refused here
            predictor.detect([[(np.zeros((64, 64), dtype=np.uint8), None)]])
        except Exception as exc:
            raise LooplineError(
                f"model {loaded.info.ref} failed its warm-up detection: {exc}",
                hint="check that it was trained with loopline.train.detector",
            ) from exc
        batcher = MicroBatcher(
            predictor.detect,
            after_batch=_log_hook(prediction_log, loaded, route),
            on_batch=metrics.observe_batch,
            name=f"{route}-{loaded.info.name}-{loaded.info.version}",
            **batching,
        )
        metrics.model_info.labels(loaded.info.name, loaded.info.version, route).set(1)
        return ServedModel(loaded, predictor, batcher, route)

    def on_swap(old: ServedModel, new: ServedModel) -> None:
        metrics.model_info.labels(old.name, old.version, old.route).set(0)
        metrics.swaps.labels(new.route).inc()

    slot = ModelSlot(CHAMPION_ROUTE, cast("ModelSource", source), build, on_swap)
    timeout_s = options["timeout_ms"] / 1000.0
    api_keys = [key for key in options.get("api_keys", ()) if key]
    app = FastAPI(
        title=f"Loopline detection server: {slot.current.name}",
        version=slot.current.version,
        default_response_class=JSONBytesResponse,
        lifespan=serving_lifespan([slot], options["poll_interval_s"], prediction_log),
    )
    install_error_handlers(app)
    counter = iter(range(1 << 62))

    @app.post(PREDICT_PATH, summary="Detect objects in one image", openapi_extra=_OPENAPI_BODY)
    async def predict(request: Request, min_score: float | None = None) -> Response:
        """Boxes of the objects in the uploaded image (see the module's description)."""
        started = time.perf_counter()
        if api_keys and request.headers.get("x-api-key") not in api_keys:
            raise ApiError(401, "a valid API key is required: send it in the X-API-Key header")
        if min_score is not None and not 0.0 <= min_score <= 1.0:
            message = f"min_score must be between 0 and 1, got {min_score}"
            raise ApiError(422, message, [loc_error(["query", "min_score"], message, "range")])
        request_id = request.headers.get("x-request-id") or f"det-{next(counter):x}"
        data = await _image_bytes(request)
        try:
            pixels = await asyncio.to_thread(_decode, data)
        except DataError as exc:
            status = 400 if not data else 415
            raise ApiError(
                status, f"{exc.message}; {_IMAGE_HINT}", [loc_error(["body"], exc.message, "image")]
            ) from None
        served = slot.current
        meta = (request_id, started, hashlib.sha256(data).hexdigest())
        try:
            future = served.batcher.submit([[(pixels, min_score)]], 1, meta)
        except (QueueFull, BatcherClosed) as exc:
            metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                503,
                f"the server is at capacity ({exc}); retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        try:
            results = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            metrics.rejected.labels("timeout").inc()
            raise ApiError(
                504, f"the model did not answer within {options['timeout_ms']} ms"
            ) from None
        body = {
            "request_id": request_id,
            "model_name": served.name,
            "model_version": served.version,
            "route": served.route,
            "width": int(pixels.shape[1]),
            "height": int(pixels.shape[0]),
            "detections": results[0],
        }
        return JSONBytesResponse(body, headers={"x-request-id": request_id})

    @app.get("/model")
    def model() -> Response:
        """What is served: the model's identity, lineage, classes and how to call it."""
        current = slot.current
        info = current.loaded.info
        return JSONBytesResponse(
            {
                "name": info.name,
                "version": info.version,
                "run_id": info.run_id,
                "dataset_version": info.dataset_version,
                "created_at": info.created_at.isoformat() if info.created_at else None,
                "metrics": dict(info.metrics),
                "aliases": list(info.aliases),
                "task": DETECTION_TASK,
                "classes": [str(c) for c in current.loaded.classes],
                "input": _IMAGE_HINT,
                "routes": {current.route: {"ref": slot.source.ref, "inference": "detector"}},
            }
        )

    def serving() -> tuple[str, str]:
        return slot.current.name, slot.current.version

    add_service_routes(app, metrics, serving=serving, max_body_bytes=options["max_body_bytes"])
    app.state.slot = slot
    return app


async def _image_bytes(request: Request) -> bytes:
    """The uploaded image: the file of a multipart form, or the whole body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return await request.body()
    async with request.form() as form:
        files = [(key, value) for key, value in form.multi_items() if hasattr(value, "read")]
        chosen = [v for k, v in files if k == _FIELD] or ([files[0][1]] if len(files) == 1 else [])
        if not chosen:
            named = ", ".join(repr(k) for k, _ in files) or "none"
            message = f"the form has no file field {_FIELD!r} (file fields: {named})"
            raise ApiError(422, f"{message}; {_IMAGE_HINT}",
                           [loc_error(["body", _FIELD], message, "missing")])  # fmt: skip
        upload = chosen[0]
        return cast("bytes", await upload.read())


def _decode(data: bytes) -> np.ndarray:
    from loopline.data.pixels import decode_image

    return decode_image(data, "the uploaded body")


def _log_hook(
    logger: PredictionLogger | None, loaded: LoadedModel, route: str
) -> Callable[[list[BatchItem]], None] | None:
    """Writes each answered image to the prediction log: sha256 and size as inputs, the most
    confident label ("" when nothing was found) and the best score per class."""
    if logger is None:
        return None
    from loopline.core.predlog import PredictionBatch

    classes = [str(c) for c in loaded.classes]

    def write(batch: list[BatchItem]) -> None:
        done = time.perf_counter()
        now_us = time.time_ns() // 1000
        answered = [i for i in batch if i.future is None or not i.future.cancelled()]
        if not answered:
            return
        found = [item.results[0] for item in answered]
        best = {c: [max((d["score"] for d in f if d["label"] == c), default=0.0) for f in found]
                for c in classes}  # fmt: skip
        pixels = [item.columns[0][0][0] for item in answered]
        record = PredictionBatch(
            loaded.info.name,
            loaded.info.version,
            route,
            [item.meta[0] for item in answered],
            [now_us - int((done - item.meta[1]) * 1_000_000) for item in answered],
            {
                "image_sha256": [item.meta[2] for item in answered],
                "width": [int(p.shape[1]) for p in pixels],
                "height": [int(p.shape[0]) for p in pixels],
                "objects": [len(f) for f in found],
            },
            [f[0]["label"] if f else "" for f in found],
            best,
            [(done - item.meta[1]) * 1000.0 for item in answered],
        )
        logger.log_batch(record)

    return write


_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {_FIELD: {"type": "string", "format": "binary"}},
                    "required": [_FIELD],
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
