"""The durable decision log: one row per transaction, written once per batch.

The ``decisions`` table lives in the project's metadata database (SQLite by default,
PostgreSQL via ``metadata_url``), keyed by transaction id. :meth:`DecisionLog.write` inserts
a whole batch in ONE database transaction and skips ids already there (``ON CONFLICT DO
NOTHING``), so two consumers that both got a redelivered message still leave one decision.
The consumer commits here first and acknowledges the broker after: a crash in between only
causes a redelivery, which :meth:`DecisionLog.decided` recognises.

The decision service (:mod:`loopline.stream.policy`) records in each row both models'
names and versions (or ``unavailable``), the masked features, the thresholds, the action,
the reason and the fallback used; transactions sent to review become tasks of the review
queue in the **same** transaction as their decisions (a review is never lost nor queued
for a decision that was not made).

**Durability** (``commit``, ``synchronous``): by default a batch is one transaction (group
commit) on a SQLite file in WAL mode with ``synchronous=NORMAL``: a committed decision
survives the process being killed (SIGKILL included), not a power cut.
``synchronous="FULL"`` adds an fsync per commit (survives a power cut) and
``commit="each"`` makes every decision its own transaction (what group commit saves);
``benchmarks/fraud_latency.py --durability`` measures the three.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from loopline.core import schema
from loopline.core.metadata import MetadataStore
from loopline.core.sqlite_wal import WalCheckpointer
from loopline.stream.source import StreamError

__all__ = ["Decision", "DecisionLog", "ReviewItem"]

# SQLite accepts at most 32,766 bound parameters per statement; stay far below.
_IN_CHUNK = 900


@dataclass(slots=True)
class Decision:
    """What the consumer decided about one transaction.

    The fields after ``produced_at`` are the decision service's (None: the log's defaults,
    or not recorded); ``review`` is the review-queue item written with the decision.
    """

    tx_id: str
    score: float | None
    flagged: bool
    message_id: str | None = None
    attempt: int | None = None
    features: dict[str, Any] | None = None
    produced_at: float | None = None
    action: str | None = None
    reason: str | None = None
    fallback: str | None = None
    fast_score: float | None = None
    model_name: str | None = None
    model_version: str | None = None
    heavy_model: str | None = None
    heavy_version: str | None = None
    heavy_score: float | None = None
    thresholds: dict[str, Any] | None = None
    tx_time: datetime | None = None
    review: ReviewItem | None = None


@dataclass(slots=True)
class ReviewItem:
    """A task for the review queue: its priority (higher first) and masked payload."""

    priority: float
    payload: dict[str, Any]
    source: str = "stream"


def _stamp(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _insert_ignoring_duplicates(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (tx_id) DO NOTHING`` in the store's SQL dialect."""
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(schema.decisions).on_conflict_do_nothing(index_elements=["tx_id"])
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(schema.decisions).on_conflict_do_nothing(index_elements=["tx_id"])
    return schema.decisions.insert()  # pragma: no cover - SQLite and PostgreSQL only


def _insert_tasks_ignoring_duplicates(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (queue, item_id) DO NOTHING`` into the review queue."""
    cols = ["queue", "item_id"]
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(schema.label_tasks).on_conflict_do_nothing(index_elements=cols)
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(schema.label_tasks).on_conflict_do_nothing(index_elements=cols)
    return schema.label_tasks.insert()  # pragma: no cover - SQLite and PostgreSQL only


def _sqlite_engine(path: str, synchronous: str = "NORMAL") -> sa.Engine:
    """The decision log's own connections to a SQLite store: WAL, ``synchronous=NORMAL``
    (a commit appends to the log, no fsync; ``FULL``: an fsync per commit), foreign keys
    on, and no automatic checkpoint on commit.

    SQLite copies the log back into the database (a checkpoint, two fsyncs: 8-20 ms on this
    machine's disk) on the commit that finds the log over 1,000 pages, several times a
    second at 1,000 decisions/s: that commit, and every message waiting behind it, would be
    late. :class:`~loopline.core.sqlite_wal.WalCheckpointer` does it in a background
    thread instead.
    """
    engine = sa.create_engine(
        f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    return engine


class DecisionLog:
    """Decisions from one source; ``model_name``, ``model_version`` and ``threshold`` are
    the defaults of rows whose :class:`Decision` does not name them.

    ``store`` is a :class:`~loopline.core.metadata.MetadataStore` or its URL; opening it
    upgrades the schema to the newest migration. ``review_queue`` names the label queue
    that :attr:`Decision.review` items go to (it must exist: ``LabelQueue(store, name,
    labels=[...])`` creates it). ``commit`` and ``synchronous``: see the module.
    """

    def __init__(
        self,
        store: MetadataStore | str,
        *,
        source: str,
        model_name: str | None = None,
        model_version: str | None = None,
        threshold: float | None = None,
        review_queue: str | None = None,
        code_version: str | None = None,
        commit: Literal["batch", "each"] = "batch",
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if commit not in ("batch", "each") or synchronous not in ("NORMAL", "FULL"):
            raise StreamError(
                f"commit must be batch or each and synchronous NORMAL or FULL, found "
                f"{commit!r} and {synchronous!r}"
            )
        self.store = store if isinstance(store, MetadataStore) else MetadataStore(store)
        self._owns_store = not isinstance(store, MetadataStore)
        self.source = source
        self.model_name = model_name
        self.model_version = model_version
        self.threshold = threshold
        self.review_queue = review_queue
        self.code_version = code_version
        self.commit = commit
        self.synchronous = synchronous
        self.engine = self.store.engine
        self._checkpointer: WalCheckpointer | None = None
        self._writing = threading.Lock()  # the checkpointer's last round waits on it
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if database and database != ":memory:":
            self.engine = _sqlite_engine(database, synchronous)
            self._checkpointer = WalCheckpointer(
                database, name="decision-log-checkpoint", lock=self._writing
            )
        self._insert: Any = _insert_ignoring_duplicates(self.engine.dialect.name)
        self._insert_tasks: Any = _insert_tasks_ignoring_duplicates(self.engine.dialect.name)
        # SQLite: the batch goes to the driver as plain SQL (see write()).
        self._raw = self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
            self.engine.dispose()
        if self._owns_store:
            self.store.close()

    def decided(self, tx_ids: Iterable[str]) -> set[str]:
        """The ids among ``tx_ids`` that already have a decision.

        Asked once per batch, so it is plain SQL on the driver (27 µs against 97 µs through
        SQLAlchemy's expression layer for a batch of two, measured on SQLite here).
        """
        ids = list(dict.fromkeys(tx_ids))
        found: set[str] = set()
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = tuple(ids[start : start + _IN_CHUNK])
                sql = (
                    f"SELECT tx_id FROM decisions WHERE tx_id IN ({', '.join([mark] * len(chunk))})"
                )
                found.update(row[0] for row in conn.exec_driver_sql(sql, chunk))
        return found

    def _row(self, d: Decision, decided_at: datetime) -> dict[str, Any]:
        return {
            "tx_id": d.tx_id,
            "model_name": d.model_name if d.model_name is not None else self.model_name,
            "model_version": d.model_version if d.model_version is not None else self.model_version,
            "score": d.score,
            "flagged": d.flagged,
            "threshold": self.threshold,
            "source": self.source,
            "message_id": d.message_id,
            "attempt": d.attempt,
            "features": None if d.features is None else _json(d.features),
            "produced_at": _stamp(d.produced_at),
            "decided_at": decided_at,
            "action": d.action,
            "reason": d.reason,
            "fallback": d.fallback,
            "fast_score": d.fast_score,
            "heavy_model": d.heavy_model,
            "heavy_version": d.heavy_version,
            "heavy_score": d.heavy_score,
            "thresholds": None if d.thresholds is None else _json(d.thresholds),
            "tx_time": _aware(d.tx_time),
            "code_version": self.code_version,
        }

    def _task(self, d: Decision, stamp: datetime) -> dict[str, Any]:
        assert d.review is not None
        return {
            "queue": self.review_queue,
            "item_id": d.tx_id,
            "text": None,
            "payload": _json(d.review.payload),
            "source": d.review.source,
            "priority": float(d.review.priority),
            "status": "open",
            "created_at": stamp,
        }

    def write(self, decisions: Sequence[Decision]) -> float:
        """Insert the batch (and its review tasks) in one transaction, or one transaction
        per decision with ``commit="each"``; returns the commit time (epoch seconds).

        Each row's ``decided_at`` is stamped just before the insert is executed; the commit
        follows at once (SQLite in WAL mode: an append to the log, no fsync unless
        ``synchronous="FULL"``).
        """
        import time

        if not decisions:
            return time.time()
        if any(d.review is not None for d in decisions) and self.review_queue is None:
            raise StreamError("a decision has a review item but the log names no review_queue")
        decided_at = datetime.now(UTC)
        groups = [[d] for d in decisions] if self.commit == "each" else [list(decisions)]
        for group in groups:
            rows = [self._row(d, decided_at) for d in group]
            tasks = [self._task(d, decided_at) for d in group if d.review is not None]
            with self._writing, self.engine.begin() as conn:
                if self._raw:
                    # Plain SQL on the driver: SQLAlchemy's statement compilation and
                    # per-value conversions cost more than the insert itself here.
                    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                    cursor.executemany(_SQLITE_INSERT, [_sqlite_values(r) for r in rows])
                    if tasks:
                        cursor.executemany(_SQLITE_TASK, [_sqlite_task(t) for t in tasks])
                    cursor.close()
                else:
                    conn.execute(self._insert, rows)
                    if tasks:
                        conn.execute(self._insert_tasks, tasks)
        return time.time()

    def rows(self, tx_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Decision rows (all, or those of ``tx_ids``), oldest first."""
        table = schema.decisions
        query = sa.select(table).order_by(table.c.decided_at, table.c.tx_id)
        if tx_ids is not None:
            query = query.where(table.c.tx_id.in_(list(tx_ids)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def count(self) -> int:
        """How many transactions have a decision."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(schema.decisions)).scalar_one()
            )


_COLUMNS = [c.name for c in schema.decisions.columns]
_SQLITE_INSERT = (
    f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (tx_id) DO NOTHING"
)
_TASK_COLUMNS = ["queue", "item_id", "text", "payload", "source", "priority", "status",
                 "created_at"]  # fmt: skip
_SQLITE_TASK = (
    f"INSERT INTO label_tasks ({', '.join(_TASK_COLUMNS)}) VALUES "
    f"({', '.join('?' * len(_TASK_COLUMNS))}) ON CONFLICT (queue, item_id) DO NOTHING"
)


def _sqlite_time(value: Any) -> Any:
    """A datetime as SQLAlchemy stores it in SQLite (UTC wall time, microseconds)."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"


def _sqlite_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        _sqlite_time(v) if isinstance(v, datetime) else (int(v) if isinstance(v, bool) else v)
        for v in (row.get(c) for c in _COLUMNS)
    )


def _sqlite_task(task: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(_sqlite_time(task[c]) for c in _TASK_COLUMNS)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _plain(value: Any) -> Any:
    iso = getattr(value, "isoformat", None)
    if iso is not None:
        return iso()
    item = getattr(value, "item", None)
    if item is not None:
        return item()
    return str(value)


def _aware(value: datetime | None) -> datetime | None:
    """A transaction's own time as UTC (a naive time is taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
