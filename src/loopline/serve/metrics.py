"""The server's Prometheus metrics, correct across worker processes."""

from __future__ import annotations

from dataclasses import dataclass

import prometheus_client.values
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServeMetrics", "multiprocess_mode"]

# Buckets in seconds, dense around the 1-10 ms where a single TF-IDF + linear prediction lands.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps values in PROMETHEUS_MULTIPROC_DIR (several workers).

    prometheus_client decides once, when it is first imported.
    """
    return prometheus_client.values.ValueClass is not prometheus_client.values.MutexValue


@dataclass(frozen=True)
class ServeMetrics:
    """The Prometheus metrics of one app, in their own registry (two apps never share counters).

    With several worker processes (prometheus_client's multiprocess mode) every worker writes
    its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and :meth:`render` sums them, so
    ``/metrics`` is the same whichever worker answers it.
    """

    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    prediction_seconds: Histogram
    batch_rows: Histogram
    items: Counter
    routed: Counter
    rejected: Counter
    log_dropped: Counter
    shadow_dropped: Counter
    swaps: Counter
    model_info: Gauge
    feedback_orphaned: Counter

    @classmethod
    def create(cls) -> ServeMetrics:
        """Register the metrics in a fresh registry."""
        registry = CollectorRegistry(auto_describe=True)
        return cls(
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
                "Time of one model call (a micro-batch of one or more requests).",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            batch_rows=Histogram(
                "loopline_batch_rows",
                "Rows scored per model call (micro-batch size).",
                buckets=_BATCH_BUCKETS,
                registry=registry,
            ),
            items=Counter("loopline_predicted_items", "Items (rows) predicted.", registry=registry),
            routed=Counter(
                "loopline_routed_requests",
                "Prediction requests answered, by route (champion/canary) and model version.",
                ["route", "version"],
                registry=registry,
            ),
            rejected=Counter(
                "loopline_rejected_requests",
                "Prediction requests refused: queue_full (503) or timeout (504).",
                ["reason"],
                registry=registry,
            ),
            log_dropped=Counter(
                "loopline_prediction_log_dropped",
                "Prediction records dropped because the prediction log fell behind.",
                registry=registry,
            ),
            shadow_dropped=Counter(
                "loopline_shadow_dropped",
                "Shadow copies not scored because the shadow model's queue was full.",
                registry=registry,
            ),
            swaps=Counter(
                "loopline_model_swaps",
                "Hot swaps to a new model version, by route.",
                ["route"],
                registry=registry,
            ),
            model_info=Gauge(
                "loopline_model_info",
                "The models being served, by route (value 1; 0 once swapped out).",
                ["name", "version", "route"],
                registry=registry,
                multiprocess_mode="livemax",
            ),
            feedback_orphaned=Counter(
                "loopline_feedback_orphaned",
                "Feedback labels stored for a request id that this process had not answered "
                "lately: a wrong id, or a prediction answered by another worker, before a "
                "restart or too long ago. Monitoring's join of feedback and prediction log "
                "has the final count of labels with no prediction.",
                registry=registry,
            ),
        )

    def render(self) -> bytes:
        """The Prometheus text exposition (summed over worker processes when there are several)."""
        if multiprocess_mode():
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)

    def observe_batch(self, rows: int, seconds: float) -> None:
        """Record one model call (called from the model's worker thread)."""
        self.prediction_seconds.observe(seconds)
        self.batch_rows.observe(rows)
        self.items.inc(rows)
