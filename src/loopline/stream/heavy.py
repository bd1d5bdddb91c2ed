"""The heavy model's latest batch scores, looked up online by customer.

The heavy model never runs on the decision path: ``loopline stream rescore``
(:func:`loopline.stream.rescore.rescore`) scores decided transactions in batch and writes
each one's ``batch_score`` back to its decision row. :class:`HeavyScores` keeps, per value
of each ``heavy_keys`` field (the customer's pseudonym by default), the score of that
customer's **latest** re-scored transaction, when it is suspicious (at least the review
threshold; a later, lower score removes it). A new transaction of that customer looks it up
(a dict read) and the policy combines it with the fast score; a score counts for
``heavy_max_age_days`` of event time after its transaction.

A daemon thread reads the rows re-scored since the last look every ``refresh_s`` seconds
(an indexed query on ``batch_scored_at``), so the decision path never waits for the
database. :meth:`HeavyScores.available` is False while the heavy model is not registered
(``version`` None, set by the service's model watcher) or when nothing was re-scored for
``stale_s`` seconds: the policy then decides on the fast model alone and flags
``heavy_unavailable``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from loopline.core import schema

__all__ = ["HeavyScores"]

_log = logging.getLogger("loopline.stream")
_DAY_S = 86_400.0


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch of a datetime (naive = UTC) or ISO text; None otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return None


class HeavyScores:
    """Per-customer latest heavy scores from the decision log (see the module)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        name: str,
        version: str | None,
        keys: Sequence[str] = ("CUSTOMER_ID",),
        min_score: float = 0.5,
        max_age_days: float = 7.0,
        stale_s: float | None = 86_400.0,
        time_field: str = "TX_DATETIME",
        refresh_s: float = 2.0,
    ) -> None:
        self.engine = engine
        self.name = name
        self._version = version
        self.keys = tuple(keys)
        self.min_score = min_score
        self.max_age_s = max_age_days * _DAY_S
        self.stale_s = stale_s
        self.time_field = time_field
        self.refresh_s = refresh_s
        # (key, value) -> (score, event time in epoch seconds, version)
        self._latest: dict[tuple[str, str], tuple[float, float, str]] = {}
        self._watermark: datetime | None = None
        self._last_rescore: float | None = None  # wall clock of the newest re-score seen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.load()

    # -- state -----------------------------------------------------------------------------
    @property
    def version(self) -> str | None:
        """The heavy model's registered version; None while it is unavailable."""
        return self._version

    def set_version(self, version: str | None) -> None:
        self._version = version

    def available(self) -> bool:
        if self._version is None:
            return False
        if self.stale_s is None:
            return True
        last = self._last_rescore
        return last is not None and time.time() - last <= self.stale_s

    def lookup(self, record: Mapping[str, Any]) -> tuple[float, str] | None:
        """The highest suspicious latest score among the record's keys, with its version,
        when its transaction is at most ``max_age_days`` older than this one."""
        if not self._latest:
            return None
        now = _epoch(record.get(self.time_field))
        best: tuple[float, str] | None = None
        for key in self.keys:
            value = record.get(key)
            if value is None:
                continue
            found = self._latest.get((key, str(value)))
            if found is None:
                continue
            score, at, version = found
            if now is not None and not (0.0 <= now - at <= self.max_age_s):
                continue
            if best is None or score > best[0]:
                best = (score, version)
        return best

    # -- reading the log -------------------------------------------------------------------
    def load(self) -> int:
        """Read the re-scores newer than the last look; returns how many rows were read."""
        d = schema.decisions
        query = (
            sa.select(d.c.features, d.c.tx_time, d.c.batch_score, d.c.batch_version,
                      d.c.batch_scored_at)
            .where(d.c.batch_scored_at.is_not(None))
            .order_by(d.c.batch_scored_at)
        )  # fmt: skip
        if self._watermark is not None:
            query = query.where(d.c.batch_scored_at > self._watermark)
        else:
            with self.engine.connect() as conn:
                newest, last = conn.execute(
                    sa.select(sa.func.max(d.c.tx_time), sa.func.max(d.c.batch_scored_at))
                ).one()
            self._last_rescore = _epoch(last)
            since = _epoch(newest)
            if since is not None:  # only what can still count for new transactions
                floor = datetime.fromtimestamp(since - self.max_age_s, UTC)
                query = query.where(d.c.tx_time >= floor)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return 0
        updates: dict[tuple[str, str], tuple[float, float, str] | None] = {}
        for features, tx_time, score, version, _ in rows:
            at = _epoch(tx_time)
            if score is None or at is None:
                continue
            record = orjson.loads(features) if features else {}
            for key in self.keys:
                value = record.get(key)
                if value is None:
                    continue
                slot = (key, str(value))
                known = updates.get(slot, self._latest.get(slot))
                if known is not None and known[1] > at:
                    continue  # an older transaction's score: the latest stays
                keep = float(score) >= self.min_score
                updates[slot] = (float(score), at, str(version)) if keep else None
        with self._lock:
            latest = dict(self._latest)
            for slot, value in updates.items():
                if value is None:
                    latest.pop(slot, None)
                else:
                    latest[slot] = value
            self._latest = latest  # swapped whole: readers never see a half update
        self._watermark = rows[-1][4]
        self._last_rescore = _epoch(rows[-1][4])
        return len(rows)

    def start(self) -> None:
        """Refresh in a daemon thread every ``refresh_s`` seconds (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="heavy-scores", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.load()
            except Exception as exc:  # the database is busy or gone: try again next round
                _log.warning("heavy scores: could not read the decision log: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(timeout=5)
            self._thread = None
