"""A small client for the prediction server: one request per text, each one timed.

Only httpx is imported here, so the client works without loading FastAPI, pandas or the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from loopline.errors import LooplineError

__all__ = ["predict_remote"]

_START_HINT = "is the server running? start it with `loopline serve NAME@champion`"


def predict_remote(
    url: str, texts: Sequence[str], timeout: float = 10.0, *, column: str = "text"
) -> list[dict[str, Any]]:
    """Send each text as its own ``POST /predict`` and return one result per text, in order.

    One request per text (rather than one batch) makes each request's latency measurable.
    Each result is ``{"text", "label", "probabilities", "request_id", "model_name",
    "model_version", "route", "latency_ms"}``; ``request_id`` is the server's id of the
    prediction (what ``POST /feedback`` takes), ``latency_ms`` the client-side round trip.

    Args:
        url: the server's base URL (``http://127.0.0.1:8000``) or its ``/predict`` URL.
        texts: the texts to classify.
        timeout: seconds to wait for each request.
        column: the model's input column that receives each text.

    Raises:
        LooplineError: the server cannot be reached, times out, or answers an error.
    """
    if isinstance(texts, str):
        # A lone string is a Sequence[str] too, and would be sent one character at a time.
        raise LooplineError("texts must be a list of strings, not a single string")
    endpoint = _predict_url(url)
    results: list[dict[str, Any]] = []
    with httpx.Client(timeout=timeout) as client:
        for text in texts:
            started = time.perf_counter()
            response = _post(client, endpoint, {column: text})
            latency_ms = (time.perf_counter() - started) * 1000.0
            body = _json_body(response, endpoint)
            results.append(
                {
                    "text": text,
                    **body["prediction"],
                    "request_id": body.get("request_id"),
                    "model_name": body.get("model_name"),
                    "model_version": body.get("model_version"),
                    "route": body.get("route"),
                    "latency_ms": latency_ms,
                }
            )
    return results


def _predict_url(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/predict") else f"{base}/predict"


def _post(client: httpx.Client, endpoint: str, payload: dict[str, str]) -> httpx.Response:
    try:
        return client.post(endpoint, json=payload)
    except httpx.TimeoutException as exc:
        raise LooplineError(
            f"the model server at {endpoint} did not answer within {client.timeout.read} s",
            hint="pass a larger timeout, or check the server's load",
        ) from exc
    except httpx.TransportError as exc:
        raise LooplineError(
            f"cannot reach the model server at {endpoint}: {exc}", hint=_START_HINT
        ) from exc


def _json_body(response: httpx.Response, endpoint: str) -> dict[str, Any]:
    """The decoded answer; a non-2xx answer becomes a LooplineError with the server's message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict) and "prediction" in body:
        return body
    if isinstance(body, dict) and "error" in body:
        message = str(body["error"])
    else:
        message = response.text[:200] or response.reason_phrase
    raise LooplineError(
        f"the model server at {endpoint} answered {response.status_code}: {message}"
    )
