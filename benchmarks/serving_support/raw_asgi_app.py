"""The HTTP ceiling for ``benchmarks/serving.py``: a raw ASGI app that answers a constant.

No framework at all: it reads the whole request body (as every real server must), ignores
it and answers a precomputed JSON document, so its throughput is what uvicorn alone reaches
on this machine with the same settings as the servers measured against it. The FastAPI
variant (``trivial_app.py``) is kept beside it as a second reference.

    .venv/bin/python -m uvicorn raw_asgi_app:app --app-dir benchmarks/serving_support
"""

from __future__ import annotations

from typing import Any

ANSWER = b'{"prediction":{"label":"positive"}}'
HEALTH = b'{"status":"ok"}'
_NOT_FOUND = b'{"error":"not found"}'


def _start(status: int, body: bytes) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {"type": "http.response.start", "status": status, "headers": headers}


_ANSWER_START = _start(200, ANSWER)
_HEALTH_START = _start(200, HEALTH)
_NOT_FOUND_START = _start(404, _NOT_FOUND)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``POST /predict``: read the body, answer the constant; ``GET /health``: ok."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # the whole body, chunk by chunk
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/predict" and scope["method"] == "POST":
        start, body = _ANSWER_START, ANSWER
    elif path == "/health":
        start, body = _HEALTH_START, HEALTH
    else:
        start, body = _NOT_FOUND_START, _NOT_FOUND
    await send(start)
    await send({"type": "http.response.body", "body": body})
