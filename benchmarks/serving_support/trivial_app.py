"""The HTTP ceiling for ``benchmarks/serving.py``: a FastAPI endpoint that returns a constant.

It reads the request body (as every real server must) and answers a precomputed JSON
document, so its throughput is what uvicorn + FastAPI reach on this machine with no model.

    .venv/bin/python -m uvicorn trivial_app:app --app-dir benchmarks/serving_support
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

ANSWER = b'{"prediction":{"label":"positive"}}'

app = FastAPI(title="trivial constant endpoint")


@app.post("/predict")
async def predict(request: Request) -> Response:
    """Read the body, ignore it, answer the constant."""
    await request.body()
    return Response(ANSWER, media_type="application/json")


@app.get("/health")
async def health() -> Response:
    """Readiness probe for the benchmark."""
    return Response(b'{"status":"ok"}', media_type="application/json")
