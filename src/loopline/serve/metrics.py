"""The server's Prometheus metrics, correct across worker processes."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import prometheus_client.values
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["DeferredMetrics", "LeanCacheCollector", "ServeMetrics", "multiprocess_mode"]

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
    # Collectors of this process's own values (e.g. LeanCacheCollector), rendered beside the
    # merged ones in multiprocess mode.
    local: list[Collector] = field(default_factory=list)

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
            for collector in self.local:
                merged.register(collector)
            return generate_latest(merged)
        return generate_latest(self.registry)

    def add_local(self, collector: Collector) -> None:
        """Register a collector of this process's values (rendered by every worker for
        itself in multiprocess mode)."""
        self.registry.register(collector)
        self.local.append(collector)

    def observe_batch(self, rows: int, seconds: float) -> None:
        """Record one model call (called from the model's worker thread)."""
        self.prediction_seconds.observe(seconds)
        self.batch_rows.observe(rows)
        self.items.inc(rows)


class LeanCacheCollector(Collector):
    """The lean inference path's cache counters, read from the served models when scraped.

    ``loopline_lean_cache_lookups_total`` and ``loopline_lean_cache_misses_total``, by route,
    model version and cache (``char_wb``: words of character n-gram vectorizers;
    ``lexicon``: tokens of the sentiment lexicon scorer), since each model was loaded. The
    predictors count in plain integers on the request path; nothing is done per request
    for Prometheus. With several workers, each reports its own.
    """

    def __init__(self, served: Callable[[], Iterable[tuple[str, str, Any]]]) -> None:
        self._served = served  # (route, version, predictor) of each model served now

    def collect(self) -> Iterator[CounterMetricFamily]:
        """One sample per route, version and cache."""
        labels = ["route", "version", "cache"]
        lookups = CounterMetricFamily(
            "loopline_lean_cache_lookups",
            "Look-ups in the lean inference path's per-word and per-token caches.",
            labels=labels,
        )
        misses = CounterMetricFamily(
            "loopline_lean_cache_misses",
            "Look-ups that missed the lean inference path's caches (computed, then cached).",
            labels=labels,
        )
        for route, version, predictor in self._served():
            stats = getattr(predictor, "cache_stats", None)
            if stats is None:
                continue
            for cache, (looked_up, missed) in stats().items():
                lookups.add_metric([route, version, cache], looked_up)
                misses.add_metric([route, version, cache], missed)
        yield lookups
        yield misses


class DeferredMetrics:
    """Per-request counts and observations kept in plain Python on the event loop, added to
    their Prometheus metrics in bulk once per loop iteration.

    ``Counter.inc`` and ``Histogram.observe`` take a lock each (and write a file per value
    with several workers): about 2 us per request for the request counter, the latency
    histogram and the routed counter. Here a request costs a dict update and a bisect, and
    the flush, scheduled with ``call_soon`` when the first value arrives, adds everything
    that arrived meanwhile (all the answers of a micro-batch) at once, before the loop polls
    for more requests. Call :meth:`flush` before reading the metrics (the ``/metrics`` route
    does). Use from the event loop thread only.
    """

    def __init__(self) -> None:
        self._counts: dict[Any, int] = {}  # counter child -> pending increments
        self._observed: dict[Any, _Observations] = {}  # histogram child -> pending values
        self._scheduled = False

    def inc(self, counter: Any) -> None:
        """``counter.inc()``, deferred (``counter``: a labelled child of a Counter)."""
        self._counts[counter] = self._counts.get(counter, 0) + 1
        if not self._scheduled:
            self._schedule()

    def observe(self, histogram: Any, value: float) -> None:
        """``histogram.observe(value)``, deferred (a labelled child of a Histogram)."""
        observations = self._observed.get(histogram)
        if observations is None:
            observations = self._observed[histogram] = _Observations(histogram)
        observations.add(value)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing would flush later
            self.flush()
            return
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Add everything counted and observed so far to the Prometheus metrics."""
        self._scheduled = False
        counts, self._counts = self._counts, {}
        for counter, n in counts.items():
            counter.inc(n)
        for observations in self._observed.values():
            observations.flush()


class _Observations:
    """Values waiting for one histogram child: per-bucket counts and their sum.

    Added with the child's own bucket and sum values (``_upper_bounds``, ``_buckets``,
    ``_sum``: what ``Histogram.observe`` updates, one inc per bucket instead of per value);
    a prometheus_client without them gets ``observe`` per value.
    """

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        bounds = getattr(histogram, "_upper_bounds", None)
        buckets = getattr(histogram, "_buckets", None)
        exact = getattr(histogram, "_sum", None) is not None
        self._bounds: list[float] | None = None
        if exact and bounds is not None and buckets is not None and len(bounds) == len(buckets):
            self._bounds = list(bounds)
        self._counts = [0] * len(self._bounds or ())
        self._sum = 0.0
        self._values: list[float] = []  # without bucket access: observed one by one

    def add(self, value: float) -> None:
        if self._bounds is None:
            self._values.append(value)
            return
        # observe() counts a value in the first bucket whose upper bound is >= value.
        index = bisect.bisect_left(self._bounds, value)
        if index < len(self._counts):
            self._counts[index] += 1
            self._sum += value
        else:  # NaN or beyond +Inf: let observe() decide
            self._values.append(value)

    def flush(self) -> None:
        histogram = self.histogram
        if self._sum or any(self._counts):
            counts, self._counts = self._counts, [0] * len(self._counts)
            total, self._sum = self._sum, 0.0
            histogram._sum.inc(total)
            for bucket, n in zip(histogram._buckets, counts, strict=True):
                if n:
                    bucket.inc(n)
        values, self._values = self._values, []
        for value in values:
            histogram.observe(value)
