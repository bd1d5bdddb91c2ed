"""BentoML service for ``benchmarks/serving.py``: the registered sentiment model, adaptive batching.

Runs only in the benchmark's own virtualenv (``.bench/bentoml-venv``, made by the benchmark),
never in the project's. The model is the same MLflow model folder that ``loopline serve`` and
``mlflow models serve`` load; its path comes from ``LOOPLINE_BENCH_MODEL_DIR``. Requests are
``{"texts": ["one tweet"]}``: BentoML gathers concurrent requests into one model call.

    LOOPLINE_BENCH_MODEL_DIR=... .bench/bentoml-venv/bin/bentoml serve \
        bentoml_service:Sentiment --working-dir benchmarks/serving_support --port 3000
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

# BentoML's adaptive batching: at most this many rows per model call. max_latency_ms is the
# latency budget past which BentoML answers 503, set far above what this model needs so the
# benchmark measures throughput, not rejections.
MAX_BATCH_SIZE = 64
MAX_LATENCY_MS = 10_000


# No access log line per request: Loopline and the trivial endpoint write none either.
@bentoml.service(workers=1, traffic={"timeout": 60}, logging={"access": {"enabled": False}})
class Sentiment:
    """The pickled scikit-learn pipeline behind one batchable endpoint."""

    def __init__(self) -> None:
        import mlflow.sklearn

        self.model = mlflow.sklearn.load_model(os.environ["LOOPLINE_BENCH_MODEL_DIR"])
        self.classes = [str(c) for c in self.model.classes_]

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """One ``{"label", "probabilities"}`` per text (the same shape as Loopline's)."""
        import pandas as pd

        proba = self.model.predict_proba(pd.DataFrame({"text": texts}))
        return [
            {
                "label": self.classes[int(row.argmax())],
                "probabilities": dict(zip(self.classes, row.tolist(), strict=True)),
            }
            for row in proba
        ]
