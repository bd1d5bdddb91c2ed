"""Helpers of the stream tests (transactions, URLs, ports) and two feature-store wrappers.

The tests use the real online store (``loopline.features.EmbeddedFeatureStore``) and the
real PII masker (``loopline.data.pii.PiiMasker``). Two helpers stand beside them, for tests
only:

- :class:`Hooked` wraps a store to stop dead inside a batch, where a kill test SIGKILLs
  the consumer;
- :class:`RedisFeatures` is a minimal Redis-backed store whose connection can die after it
  was opened, to show what the consumer does when Redis goes away mid-stream.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

# What the models of these tests read from the online store (loopline.features' handbook set).
FEATURES = ["CUSTOMER_TX_1D", "CUSTOMER_MEAN_AMOUNT_1D"]

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
PII_KEY = "1:stream-tests-secret-0123456789abcdef"
POLICY = {
    "name": "stream-tests",
    "columns": {
        "CUSTOMER_ID": {"kind": "identifier", "pii": "customer_id"},
        "email": {"kind": "mask", "pii": "email"},
    },
    "scan": [],
    "unknown": "keep",
}


def transactions(count: int, start: int = 0, customers: int = 5) -> list[dict[str, Any]]:
    """Handbook-shaped transactions, each with a personal e-mail address."""
    return [
        {
            "TRANSACTION_ID": i,
            "TX_DATETIME": f"2018-04-01 00:{(i // 60) % 60:02d}:{i % 60:02d}",
            "CUSTOMER_ID": 100 + i % customers,
            "TERMINAL_ID": 7,
            "TX_AMOUNT": float(10 + (i * 37) % 300),
            "email": f"person{i % customers}@example.com",
        }
        for i in range(start, start + count)
    ]


def free_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hooked:
    """An online feature store that slows down and stops dead where a kill test wants it:
    after ``marker_after`` updates it writes ``marker`` and sleeps ``hang_s`` seconds."""

    def __init__(
        self,
        store: Any,
        *,
        delay_s: float = 0.0,
        marker: str | Path | None = None,
        marker_after: int = 0,
        hang_s: float = 0.0,
    ) -> None:
        self.store = store
        self.delay_s = delay_s
        self.marker = Path(marker) if marker else None
        self.marker_after = marker_after
        self.hang_s = hang_s
        self.calls = 0

    def update_and_read(self, tx: Mapping[str, Any]) -> dict[str, float]:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        answer: dict[str, float] = self.store.update_and_read(tx)
        if self.marker is not None and self.calls == self.marker_after:
            self.marker.write_text("in a batch")
            time.sleep(self.hang_s)
        return answer


def customer_counts(store: Any, masker: Any, customers: range) -> dict[int, float]:
    """How many transactions the store counted per customer, read through its public API:
    a probe transaction late the same day sees all of them (plus itself) in its 1-day window."""
    counts = {}
    for n, customer in enumerate(customers):
        probe = {
            "TRANSACTION_ID": 10**9 + n,
            "TX_DATETIME": datetime(2018, 4, 1, 23, 59),
            "CUSTOMER_ID": customer,
            "TERMINAL_ID": 7,
            "TX_AMOUNT": 1.0,
        }
        counts[customer] = store.update_and_read(masker.mask_record(probe))["CUSTOMER_TX_1D"] - 1
    return counts


class RedisFeatures:
    """Per-customer counts in Redis (``HINCRBY``), idempotent by a ``SET NX`` per tx."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self.prefix = prefix

    def update_and_read(self, tx: Mapping[str, Any]) -> dict[str, float]:
        key = f"{self.prefix}:customer:{tx['CUSTOMER_ID']}"
        if self.redis.set(f"{self.prefix}:seen:{tx['TRANSACTION_ID']}", 1, nx=True):
            self.redis.hincrby(key, "n", 1)
            self.redis.hincrbyfloat(key, "total", float(tx["TX_AMOUNT"]))
        state = self.redis.hgetall(key)
        n = float(state[b"n"])
        return {FEATURES[0]: n, FEATURES[1]: float(state[b"total"]) / n}


class MemorySource:
    """A source without a broker for tests that drive ``Consumer.process`` directly: it
    records what was acknowledged and dead-lettered."""

    name = "memory"
    exhausted = False

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.dead: list[Any] = []

    async def fetch(self, max_messages: int, timeout: float) -> list[Any]:
        return []

    async def ack(self, messages: Any) -> None:
        self.acked.extend(m.id for m in messages)

    async def dead_letter(self, letters: Any) -> None:
        self.dead.extend(letters)


def messages(records: list[dict[str, Any]]) -> list[Any]:
    """Records as stream messages (their id is the transaction id)."""
    from loopline.stream.message import Message

    return [Message(str(r["TRANSACTION_ID"]), dict(r)) for r in records]


class Flaky:
    """An online store that is down (raises StoreUnavailable, counts nothing) while
    ``down`` is True."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.down = False
        self.features = store.features

    def update_and_read(self, tx: Mapping[str, Any]) -> dict[str, float]:
        from loopline.features import StoreUnavailable

        if self.down:
            raise StoreUnavailable("Redis at redis://127.0.0.1:1/0 failed: connection refused")
        answer: dict[str, float] = self.store.update_and_read(tx)
        return answer

    def add_labels(self, labels: Any) -> int:
        return int(self.store.add_labels(labels))
