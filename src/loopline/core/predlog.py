"""The prediction log: every served prediction, written asynchronously in batches.

The server calls :meth:`PredictionLogger.log` on the response path. It only appends the
record to a bounded in-memory queue (a lock held for a list append, no I/O) and returns;
a background thread writes the queue in batches to a *sink*, chosen by URL:

* a folder (the default, ``<project>/.loopline/predictions``): one Parquet segment per
  flushed batch and model,
  ``<folder>/<model_name>/seg-<UTC yyyymmddTHHMMSS.ffffff>-<pid>-<seq>.parquet``,
  stamped with the newest record's ``ts``. Each segment is written to a hidden
  temp name, fsynced and renamed, so a reader never sees half a segment, and several
  processes (server workers) write side by side without coordination.
* ``postgresql://...``: a ``predictions`` table (created when missing), filled with ``COPY``.

:func:`read_predictions` reads either back as the same DataFrame (see :data:`BASE_COLUMNS`).

A store like the metadata and artifact stores, so it lives in ``core``: ``serve`` writes it
and ``monitor`` reads it without importing ``serve``.

Durability, and what a crash can lose
-------------------------------------
A record is written at most ``flush_interval_s`` seconds after it was accepted, or as soon
as ``batch_size`` records are waiting. While the sink keeps up, a crash (SIGKILL, OOM, power
loss) therefore loses at most the records accepted in the last ``flush_interval_s`` seconds,
no more than ``batch_size`` of them waiting plus the one batch being written at that moment.
When the sink is slow or failing, the backlog (and so the crash window) grows, but never past
``max_queue`` records: beyond that :meth:`~PredictionLogger.log` drops new records and counts
them in :attr:`~PredictionLogger.dropped` instead of slowing the server down. A graceful
:meth:`~PredictionLogger.close` (also run at interpreter exit) writes every accepted record
before it returns. A failed write is retried with backoff, so in the rare case where a commit
succeeds but its acknowledgement is lost, a batch can be written twice (at-least-once).
"""

from __future__ import annotations

import atexit
import bisect
import csv
import io
import itertools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload
from urllib.parse import quote, urlparse

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from loopline.errors import ConfigError, DataError, LooplineError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.config import Settings

__all__ = [
    "BASE_COLUMNS",
    "ParquetSink",
    "PostgresSink",
    "PredictionBatch",
    "PredictionLogger",
    "PredictionRecord",
    "PredictionRows",
    "PredictionSink",
    "empty_predictions",
    "open_prediction_logger",
    "open_sink",
    "read_predictions",
    "records_to_table",
]

_log = logging.getLogger(__name__)

ROUTES = ("champion", "canary", "shadow")
#: The columns every frame from :func:`read_predictions` starts with; then one ``input.<col>``
#: per input field, ``prediction``, and one ``proba.<class>`` per class.
BASE_COLUMNS = ("request_id", "ts", "model_name", "model_version", "route", "latency_ms")
INPUT_PREFIX = "input."
PROBA_PREFIX = "proba."
PREDICTION = "prediction"
TABLE_NAME = "predictions"

_TS_TYPE = pa.timestamp("us", tz="UTC")
_TS_DTYPE = "datetime64[us, UTC]"
_SEGMENT_GLOB = "seg-*.parquet"
_STAMP_FORMAT = "%Y%m%dT%H%M%S.%f"
# Shared by every logger in the process, so two loggers never pick the same segment name.
_SEGMENT_SEQ = itertools.count()
_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One served prediction.

    ``ts`` is the time of the request in UTC (a naive datetime is taken as UTC); ``route`` is
    ``"champion"``, ``"canary"`` or ``"shadow"``; ``label`` is the predicted class and
    ``probabilities`` maps each class to its probability.
    """

    request_id: str
    ts: datetime
    model_name: str
    model_version: str
    route: str
    inputs: dict[str, Any]
    label: str
    probabilities: dict[str, float]
    latency_ms: float


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PredictionBatch(Sequence[PredictionRecord]):
    """Predictions of one model version and route, column by column.

    What the server logs per micro-batch: one object (and one lock in
    :meth:`PredictionLogger.log_batch`) for all its rows instead of one record each, and
    columns that become Arrow arrays without visiting each record. Row ``i`` is the
    :class:`PredictionRecord` ``batch[i]``; ``ts_us`` holds the request times in
    microseconds since the Unix epoch (UTC), ``inputs`` and ``probabilities`` one list per
    input column and per class.
    """

    __slots__ = (
        "inputs",
        "labels",
        "latency_ms",
        "model_name",
        "model_version",
        "probabilities",
        "request_ids",
        "route",
        "ts_us",
    )

    def __init__(
        self,
        model_name: str,
        model_version: str,
        route: str,
        request_ids: list[str],
        ts_us: list[int],
        inputs: dict[str, list[Any]],
        labels: list[str],
        probabilities: dict[str, list[float]],
        latency_ms: list[float],
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.route = route
        self.request_ids = request_ids
        self.ts_us = ts_us
        self.inputs = inputs
        self.labels = labels
        self.probabilities = probabilities
        self.latency_ms = latency_ms

    def __len__(self) -> int:
        return len(self.request_ids)

    @overload
    def __getitem__(self, index: int) -> PredictionRecord: ...

    @overload
    def __getitem__(self, index: slice) -> PredictionBatch: ...

    def __getitem__(self, index: int | slice) -> PredictionRecord | PredictionBatch:
        if isinstance(index, slice):
            return PredictionBatch(
                self.model_name,
                self.model_version,
                self.route,
                self.request_ids[index],
                self.ts_us[index],
                {key: values[index] for key, values in self.inputs.items()},
                self.labels[index],
                {key: values[index] for key, values in self.probabilities.items()},
                self.latency_ms[index],
            )
        return PredictionRecord(
            request_id=self.request_ids[index],
            ts=_EPOCH + timedelta(microseconds=self.ts_us[index]),
            model_name=self.model_name,
            model_version=self.model_version,
            route=self.route,
            inputs={key: values[index] for key, values in self.inputs.items()},
            label=self.labels[index],
            probabilities={key: values[index] for key, values in self.probabilities.items()},
            latency_ms=self.latency_ms[index],
        )

    def __repr__(self) -> str:
        return (
            f"PredictionBatch({self.model_name!r}, {self.model_version!r}, {self.route!r}, "
            f"{len(self)} rows)"
        )

    def takes(self, other: PredictionBatch) -> bool:
        """Whether ``other``'s rows can be appended to this batch's columns (same model
        version and route, the same input and class columns in the same order)."""
        return (
            self.model_name == other.model_name
            and self.model_version == other.model_version
            and self.route == other.route
            and list(self.inputs) == list(other.inputs)
            and list(self.probabilities) == list(other.probabilities)
        )

    def copy(self) -> PredictionBatch:
        """A batch with its own lists (the caller's can then be left alone)."""
        return self[:]

    def extend(self, other: PredictionBatch) -> None:
        """Append ``other``'s rows (see :meth:`takes`)."""
        self.request_ids.extend(other.request_ids)
        self.ts_us.extend(other.ts_us)
        for key, values in self.inputs.items():
            values.extend(other.inputs[key])
        self.labels.extend(other.labels)
        for key, values in self.probabilities.items():
            values.extend(other.probabilities[key])
        self.latency_ms.extend(other.latency_ms)


# A run of the log's queue: one record, or the rows of one batch.
_Chunk = PredictionRecord | PredictionBatch
#: rows a queued batch grows to before the next one starts (the writer then still splits
#: a batch at ``batch_size``)
_COALESCE_ROWS = 10_000


class PredictionRows(Sequence[PredictionRecord]):
    """What the writer hands a sink: records and batches, read as one sequence of records.

    A sink that iterates gets :class:`PredictionRecord` objects; the built-in sinks read the
    batches column by column instead (:func:`records_to_table`).
    """

    __slots__ = ("_ends", "chunks")

    def __init__(self, chunks: Sequence[_Chunk]) -> None:
        self.chunks = list(chunks)
        self._ends = list(itertools.accumulate(_rows_in(chunk) for chunk in self.chunks))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, index: int) -> PredictionRecord: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PredictionRecord]: ...

    def __getitem__(self, index: int | slice) -> PredictionRecord | Sequence[PredictionRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("prediction row index out of range")
        at = bisect.bisect_right(self._ends, index)
        chunk = self.chunks[at]
        if isinstance(chunk, PredictionRecord):
            return chunk
        return chunk[index - (self._ends[at - 1] if at else 0)]

    def __iter__(self) -> Iterator[PredictionRecord]:
        for chunk in self.chunks:
            if isinstance(chunk, PredictionRecord):
                yield chunk
            else:
                yield from chunk


def _rows_in(chunk: _Chunk) -> int:
    return 1 if isinstance(chunk, PredictionRecord) else len(chunk)


def _chunks_of(records: Sequence[PredictionRecord]) -> list[_Chunk]:
    """The records as runs: a batch's rows stay one chunk."""
    if isinstance(records, PredictionRows):
        return records.chunks
    if isinstance(records, PredictionBatch):
        return [records]
    return list(records)


# --- sinks ----------------------------------------------------------------------------------


class PredictionSink(Protocol):
    """Where batches of records go. ``write`` either stores the whole batch or raises."""

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Store ``records`` durably; raise on failure (the logger retries)."""
        ...

    def close(self) -> None:
        """Release connections or handles."""
        ...


class ParquetSink:
    """Parquet segments under ``folder/<model_name>/``, one per batch and model, atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the prediction log folder {self.folder}: {exc.strerror or exc}",
                hint="set prediction_log_url (LOOPLINE_PREDICTION_LOG_URL) to a writable "
                "folder or a postgresql:// URL",
            ) from None

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Write one segment per model; all of them become visible together, or none."""
        staged: list[tuple[Path, Path]] = []
        try:
            for name, group in _group_by_model(records).items():
                staged.append(self._stage(name, group))
        except BaseException:
            for temp, _ in staged:
                temp.unlink(missing_ok=True)
            raise
        for temp, final in staged:
            os.replace(temp, final)

    def _stage(self, model_name: str, records: Sequence[PredictionRecord]) -> tuple[Path, Path]:
        """Write ``records`` to a hidden temp file; return it with its final name."""
        table = records_to_table(records)
        stamp = pc.max(table.column("ts")).as_py() or datetime.now(UTC)
        folder = self.folder / model_folder_name(model_name)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / (
            f"seg-{stamp.strftime(_STAMP_FORMAT)}-{os.getpid()}-{next(_SEGMENT_SEQ)}.parquet"
        )
        # Hidden and without the .parquet suffix: readers glob seg-*.parquet only.
        temp = folder / f".{final.name}.tmp"
        try:
            with open(temp, "wb") as handle:
                pq.write_table(table, handle, compression="zstd")
                handle.flush()
                # Without fsync a power loss could leave a renamed but empty segment.
                os.fsync(handle.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp, final

    def close(self) -> None:
        """Nothing to release: each segment is closed when written."""


class PostgresSink:
    """A ``predictions`` table in PostgreSQL, created when missing, filled with ``COPY``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _sql_engine(url)
        self._table_ready = False

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Insert ``records`` in one transaction (one ``COPY``)."""
        if not self._table_ready:
            # Here rather than in __init__: a database that is down at start-up is retried.
            ensure_predictions_table(self.engine)
            self._table_ready = True
        with self.engine.begin() as conn:
            _copy_into(conn, records)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


predictions_metadata = sa.MetaData()
predictions_table = sa.Table(
    TABLE_NAME,
    predictions_metadata,
    # Text, not String(n): a long value must never make a whole batch fail forever.
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON object
    sa.Column("prediction", sa.Text, nullable=False),
    sa.Column("probabilities", sa.Text, nullable=False),  # JSON object
    sa.Index("ix_predictions_model_ts", "model_name", "ts"),
    sa.Index("ix_predictions_request_id", "request_id"),
)
_COPY_COLUMNS = [c.name for c in predictions_table.columns]
_COPY_SQL = f"COPY {TABLE_NAME} ({', '.join(_COPY_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"


def ensure_predictions_table(engine: sa.Engine) -> None:
    """Create the ``predictions`` table and its indexes unless they exist."""
    try:
        predictions_metadata.create_all(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        # Several workers may race to create it; losing that race is fine.
        if not sa.inspect(engine).has_table(TABLE_NAME):
            raise


def _copy_payload(records: Sequence[PredictionRecord]) -> bytes:
    """The batch as CSV for ``COPY``; every field quoted, so nothing turns into NULL."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows(
        (
            r.request_id,
            _iso_utc(r.ts),
            r.model_name,
            r.model_version,
            r.route,
            r.latency_ms,
            _json(r.inputs),
            r.label,
            _json(r.probabilities),
        )
        for r in records
    )
    # PostgreSQL text cannot hold NUL, and lone surrogates are not UTF-8: clean them here,
    # once per batch, so one odd record cannot make its batch fail on every retry.
    return buffer.getvalue().encode("utf-8", "replace").replace(b"\x00", b"")


def _copy_into(conn: sa.Connection, records: Sequence[PredictionRecord]) -> None:
    cursor = conn.connection.cursor()
    try:
        if hasattr(cursor, "copy"):  # psycopg 3
            with cursor.copy(_COPY_SQL) as copy:
                copy.write(_copy_payload(records))
        elif hasattr(cursor, "copy_expert"):  # psycopg2
            cursor.copy_expert(_COPY_SQL, io.BytesIO(_copy_payload(records)))
        else:  # another driver: a batched INSERT
            conn.execute(predictions_table.insert(), _row_dicts(records))
    finally:
        cursor.close()


def _row_dicts(records: Sequence[PredictionRecord]) -> list[dict[str, Any]]:
    return [
        {
            "request_id": r.request_id,
            "ts": _utc(r.ts),
            "model_name": r.model_name,
            "model_version": r.model_version,
            "route": r.route,
            "latency_ms": r.latency_ms,
            "inputs": _json(r.inputs),
            "prediction": r.label,
            "probabilities": _json(r.probabilities),
        }
        for r in records
    ]


def _sql_engine(url: str) -> sa.Engine:
    from loopline.core.dburl import sqlalchemy_url

    try:
        return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=2)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the driver for {url.split(':', 1)[0]} is not installed ({exc.name})",
            hint="pip install 'loopline[postgres]'",
        ) from None
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"cannot read the prediction log URL: {exc}",
            hint="write postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
        ) from None


def _is_sql_url(url: str) -> bool:
    return url.startswith(("postgresql:", "postgresql+", "postgres:"))


def _folder_of(url: str) -> Path | None:
    """The folder a URL names, or None when it is not a local path."""
    if url.startswith("file://"):
        return Path(urlparse(url).path)
    if "://" in url:
        return None
    return Path(url).expanduser()


def open_sink(url: str) -> PredictionSink:
    """The sink for a ``prediction_log_url``: a folder (Parquet) or ``postgresql://`` (table)."""
    if _is_sql_url(url):
        return PostgresSink(url)
    folder = _folder_of(url)
    if folder is None:
        raise ConfigError(
            f"unsupported prediction log location {_safe_url(url)!r}",
            hint="use a folder (Parquet segments) or a postgresql://USER@HOST/DB URL",
        )
    return ParquetSink(folder)


# --- the logger -----------------------------------------------------------------------------


class PredictionLogger:
    """Accepts prediction records without blocking; a background thread writes them in batches.

    ``log()`` never waits for I/O: it appends to a queue of at most ``max_queue`` records and
    returns False (counting the record in :attr:`dropped`) when the queue is full. The writer
    thread flushes ``batch_size`` records at a time, or whatever is waiting every
    ``flush_interval_s`` seconds. A failing write is logged, counted in :attr:`failures` and
    retried with exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``);
    meanwhile ``log()`` keeps accepting until the queue is full.

    Crash window: while the sink keeps up, a crash loses at most the records accepted in the
    last ``flush_interval_s`` seconds (at most ``batch_size`` waiting plus the batch being
    written); with a slow or failing sink, at most ``max_queue``. :meth:`close` writes every
    accepted record first, waiting up to ``timeout_s``.

    Every write is one Parquet segment per model, fsynced: at high rates ``batch_size``
    bounds the segment size, so it is large enough (10,000) that the fsync (~6 ms of CPU
    on the reference machine) costs well under a microsecond per record; the time bound of
    the crash window does not depend on it. :meth:`log_batch` queues a micro-batch's rows
    (a :class:`PredictionBatch`) with one lock.

    Create and start one per process (e.g. in each server worker's start-up), not before a
    fork: the writer thread does not survive ``fork()``.
    """

    retry_initial_s: float = 0.1
    retry_max_s: float = 10.0

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 100_000,
        batch_size: int = 10_000,
        flush_interval_s: float = 1.0,
        sink: PredictionSink | None = None,
    ) -> None:
        """Open the sink for ``url`` (or use ``sink``); call :meth:`start` to begin writing."""
        _check_limits(max_queue, batch_size, flush_interval_s)
        self.url = url
        self._where = _safe_url(url)
        self._sink = sink if sink is not None else open_sink(url)
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._buffer: deque[_Chunk] = deque()  # records and batches, oldest first
        self._buffered = 0  # rows in _buffer
        self._coalescing: PredictionBatch | None = None  # the queue's own last batch
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)  # notified after each write
        self._wake = threading.Event()  # log() filled a batch, flush() or close() was called
        self._stop = threading.Event()  # write everything, then exit
        self._abort = threading.Event()  # close() timed out: exit now
        self._thread: threading.Thread | None = None
        self._closed = False
        self._accepted = 0
        self._taken = 0  # records handed to the writer so far (a prefix of the accepted ones)
        self._flush_target = 0  # flush(): write without waiting until _taken reaches this
        self._written = 0
        self._dropped = 0
        self._failures = 0
        self._lost = 0
        self.last_error: str | None = None

    # -- counters ------------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Records refused by :meth:`log` because the queue was full or the logger closed."""
        return self._dropped

    @property
    def written(self) -> int:
        """Records stored by the sink."""
        return self._written

    @property
    def pending(self) -> int:
        """Records accepted but not yet written (queued or being written)."""
        return self._accepted - self._written - self._lost

    @property
    def failures(self) -> int:
        """Failed write attempts (each is retried)."""
        return self._failures

    @property
    def lost(self) -> int:
        """Accepted records abandoned because :meth:`close` timed out (normally 0)."""
        return self._lost

    def stats(self) -> dict[str, int]:
        """All counters at once, e.g. for a metrics endpoint."""
        return {
            "accepted": self._accepted,
            "written": self._written,
            "pending": self.pending,
            "dropped": self._dropped,
            "failures": self._failures,
            "lost": self._lost,
        }

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background writer (idempotent)."""
        with self._lock:
            if self._closed:
                raise LooplineError(
                    "this prediction logger is closed", hint="open a new one to log again"
                )
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="loopline-prediction-log", daemon=True
            )
            self._thread.start()
        # Daemon thread so a stuck sink cannot hang the interpreter; flush at exit instead.
        atexit.register(self._close_at_exit)

    def __enter__(self) -> PredictionLogger:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log(self, record: PredictionRecord) -> bool:
        """Queue ``record`` for writing; False (and ``dropped`` += 1) when the queue is full.

        Never waits for I/O: safe to call on the response path.
        """
        with self._lock:
            if self._closed or self.pending >= self._max_queue:
                self._dropped += 1
                return False
            self._buffer.append(record)
            self._accepted += 1
            self._buffered += 1
            filled = self._buffered == self._batch_size
        if filled:  # only on the crossing: an Event.set() per record would cost a lock each
            self._wake.set()
        return True

    def log_batch(self, batch: PredictionBatch) -> bool:
        """Queue all rows of ``batch``, or none: False (and ``dropped`` += its rows) when
        they do not all fit in the queue.

        One lock for the whole batch; never waits for I/O.
        """
        rows = len(batch)
        if not rows:
            return True
        with self._lock:
            if self._closed or self.pending + rows > self._max_queue:
                self._dropped += rows
                return False
            self._queue(batch)
            self._accepted += rows
            before = self._buffered
            self._buffered = before + rows
            filled = before < self._batch_size <= self._buffered
        if filled:
            self._wake.set()
        return True

    def _queue(self, batch: PredictionBatch) -> None:
        """Append ``batch`` to the queue, into the last queued batch when it takes it.

        Small batches (a decision service's 1-3 rows at 1,000 decisions/s) would otherwise
        reach the writer as hundreds of chunks a second, each visited in Python with the
        GIL held; that once-a-second burst stalled the deciding thread 10-20 ms and set
        ``benchmarks/fraud_latency.py``'s p99. Appending costs the caller a few list
        extends. The queue's own copy is made on the first append, so the caller's lists
        are never changed.
        """
        buffer = self._buffer
        last = buffer[-1] if buffer else None
        if isinstance(last, PredictionBatch) and len(last) < _COALESCE_ROWS and last.takes(batch):
            if last is not self._coalescing:
                last = buffer[-1] = self._coalescing = last.copy()
            last.extend(batch)
        else:
            buffer.append(batch)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write every record accepted so far now; True once they are all written."""
        with self._lock:
            target = self._accepted
            self._flush_target = max(self._flush_target, target)
            if self._thread is None and not self._closed and target > self._written:
                raise LooplineError(
                    "the prediction logger was never started", hint="call start() first"
                )
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(
                lambda: self._written + self._lost >= target, timeout=timeout_s
            )

    def close(self, timeout_s: float = 30.0) -> None:
        """Write every accepted record, then stop the writer and the sink (idempotent).

        If the sink keeps failing for ``timeout_s`` seconds, give up: the records still
        waiting are counted in :attr:`lost` and reported in the log.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            never_started = self._thread is None
        atexit.unregister(self._close_at_exit)
        if never_started:
            if self.pending == 0:
                self._sink.close()
                return
            self._thread = threading.Thread(
                target=self._run, name="loopline-prediction-log", daemon=True
            )
            self._thread.start()
        assert self._thread is not None
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._give_up(timeout_s)
            return
        self._sink.close()

    def _give_up(self, timeout_s: float) -> None:
        self._abort.set()
        with self._progress:
            self._lost = self._accepted - self._written
            self._progress.notify_all()
        _log.error(
            "prediction log %s: gave up after %.0f s with %d records unwritten (last error: %s)",
            self._where,
            timeout_s,
            self._lost,
            self.last_error,
        )

    def _close_at_exit(self) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            # pyarrow loads its time zone data on the first tz-aware timestamp (~0.15 s, GIL
            # held): pay that now rather than in the first flush under load.
            pa.array([datetime.now(UTC)], _TS_TYPE)
            self._write_loop()
        except Exception:  # a bug here must not go unnoticed; log() keeps working regardless
            _log.exception("prediction log %s: the writer thread crashed", self._where)

    def _write_loop(self) -> None:
        next_flush = time.monotonic() + self._interval
        while not self._abort.is_set():
            draining = self._stop.is_set()
            urgent = draining or self._taken < self._flush_target
            if not urgent and self._buffered < self._batch_size:
                timeout = next_flush - time.monotonic()
                if timeout > 0:
                    self._wake.wait(timeout)
                    # Cleared before re-checking the buffer, so a wake-up is never missed.
                    self._wake.clear()
                    continue
            batch = self._take()
            next_flush = time.monotonic() + self._interval
            if batch:
                self._write_with_retry(batch)
            elif draining:
                return

    def _take(self) -> PredictionRows:
        """Up to ``batch_size`` rows from the head of the queue (a batch may be split)."""
        chunks: list[_Chunk] = []
        with self._lock:
            room = self._batch_size
            buffer = self._buffer
            while buffer and room:
                chunk = buffer[0]
                size = _rows_in(chunk)
                if size > room:
                    assert isinstance(chunk, PredictionBatch)
                    chunks.append(chunk[:room])
                    buffer[0] = chunk[room:]
                    size = room
                else:
                    chunks.append(buffer.popleft())
                room -= size
            taken = self._batch_size - room
            self._buffered -= taken
            self._taken += taken
        return PredictionRows(chunks)

    def _write_with_retry(self, batch: PredictionRows) -> None:
        delay = self.retry_initial_s
        while True:
            try:
                self._sink.write(batch)
            except Exception as exc:
                self._note_failure(exc, len(batch), delay)
                if self._abort.wait(delay):
                    return  # close() gave up; these records are counted as lost there
                delay = min(delay * 2, self.retry_max_s)
                continue
            with self._progress:
                self._written += len(batch)
                if self._abort.is_set():  # finished after close() gave up on it
                    self._lost = max(0, self._lost - len(batch))
                self._progress.notify_all()
            return

    def _note_failure(self, exc: Exception, size: int, delay: float) -> None:
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        # The traceback once; afterwards one line per attempt (attempts are rate-limited).
        _log.warning(
            "prediction log %s: writing %d records failed (%s); retrying in %.1f s",
            self._where,
            size,
            self.last_error,
            delay,
            exc_info=first,
        )


def open_prediction_logger(settings: Settings, *, start: bool = True) -> PredictionLogger:
    """The project's prediction logger (``settings.prediction_log_url``), started by default."""
    assert settings.prediction_log_url is not None
    logger = PredictionLogger(settings.prediction_log_url)
    if start:
        logger.start()
    return logger


def _check_limits(max_queue: int, batch_size: int, flush_interval_s: float) -> None:
    if max_queue < 1 or batch_size < 1 or not flush_interval_s > 0:
        raise ConfigError(
            "the prediction logger needs max_queue >= 1, batch_size >= 1 and "
            f"flush_interval_s > 0; found {max_queue}, {batch_size}, {flush_interval_s}",
            hint="the defaults are max_queue=100000, batch_size=10000, flush_interval_s=1.0",
        )


# --- records <-> Arrow ----------------------------------------------------------------------


def records_to_table(records: Sequence[PredictionRecord]) -> pa.Table:
    """The records as one Arrow table with the columns of :func:`read_predictions`.

    Input values keep their type when a column converts cleanly; a column with mixed or
    nested values is stored as JSON text, so no record content can make a write fail.
    :class:`PredictionBatch` rows (alone or in :class:`PredictionRows`) are read column by
    column.
    """
    chunks = _chunks_of(records)
    request_ids: list[Any] = []
    model_names: list[Any] = []
    model_versions: list[Any] = []
    routes: list[Any] = []
    latencies: list[Any] = []
    labels: list[Any] = []
    times: list[pa.Array] = []
    batch_times: list[int] = []  # of the batches since the last run of records
    input_keys = _keys(_mapping_keys(chunk, "inputs") for chunk in chunks)
    proba_keys = _keys(_mapping_keys(chunk, "probabilities") for chunk in chunks)
    inputs: dict[str, list[Any]] = {key: [] for key in input_keys}
    probabilities: dict[str, list[Any]] = {key: [] for key in proba_keys}
    run: list[PredictionRecord] = []  # consecutive records, converted together

    def add_records() -> None:
        request_ids.extend(r.request_id for r in run)
        model_names.extend(r.model_name for r in run)
        model_versions.extend(r.model_version for r in run)
        routes.extend(r.route for r in run)
        latencies.extend(r.latency_ms for r in run)
        labels.extend(r.label for r in run)
        if batch_times:
            times.append(pa.array(batch_times, _TS_TYPE))
            batch_times.clear()
        # Arrow converts aware datetimes to UTC itself and reads naive ones as UTC.
        times.append(pa.array([r.ts for r in run], _TS_TYPE))
        for key, values in inputs.items():
            values.extend(r.inputs.get(key) for r in run)
        for key, values in probabilities.items():
            values.extend(r.probabilities.get(key) for r in run)
        run.clear()

    for chunk in chunks:
        if isinstance(chunk, PredictionRecord):
            run.append(chunk)
            continue
        if run:
            add_records()
        size = len(chunk)
        request_ids.extend(chunk.request_ids)
        model_names.extend([chunk.model_name] * size)
        model_versions.extend([chunk.model_version] * size)
        routes.extend([chunk.route] * size)
        latencies.extend(chunk.latency_ms)
        labels.extend(chunk.labels)
        batch_times.extend(chunk.ts_us)
        for key, values in inputs.items():
            column = chunk.inputs.get(key)
            values.extend(column if column is not None else [None] * size)
        for key, values in probabilities.items():
            column = chunk.probabilities.get(key)
            values.extend(column if column is not None else [None] * size)
    if run:
        add_records()
    if batch_times:
        times.append(pa.array(batch_times, _TS_TYPE))
    if not times:
        ts = pa.array([], _TS_TYPE)
    else:
        ts = times[0] if len(times) == 1 else pa.concat_arrays(times)
    columns: dict[str, pa.Array] = {
        "request_id": _text_array(request_ids),
        "ts": ts,
        "model_name": _text_array(model_names),
        "model_version": _text_array(model_versions),
        "route": _text_array(routes),
        "latency_ms": _float_array(latencies),
    }
    for key, values in inputs.items():
        columns[INPUT_PREFIX + key] = _value_array(values)
    columns[PREDICTION] = _text_array(labels)
    for key, values in probabilities.items():
        columns[PROBA_PREFIX + key] = _float_array(values)
    return pa.table(columns)


def _mapping_keys(chunk: _Chunk, field: str) -> Mapping[str, Any]:
    """The inputs (or probabilities) of a chunk, by name: a record's values, a batch's
    columns."""
    mapping: Mapping[str, Any] = getattr(chunk, field)
    return mapping


def _keys(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    """The union of the keys, in first-seen order."""
    return list(dict.fromkeys(itertools.chain.from_iterable(mappings)))


def _text_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowException, UnicodeError, TypeError, ValueError):
        return pa.array([_clean_text(v) for v in values], pa.string())


def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace").decode("utf-8")


def _float_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.float64())
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([_to_float(v) for v in values], pa.float64())


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _value_array(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowException, UnicodeError, TypeError, ValueError, OverflowError):
        return _json_text_array(values)
    if pa.types.is_nested(array.type):
        return _json_text_array(values)  # monitoring wants flat columns
    return array


def _json_text_array(values: list[Any]) -> pa.Array:
    texts = [None if v is None else v if isinstance(v, str) else _json(v) for v in values]
    return _text_array(texts)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTS).decode()
    except (orjson.JSONEncodeError, TypeError):
        # orjson refuses ints beyond 64 bits and lone surrogates: the stdlib writes the ints,
        # and surrogates (not UTF-8, so no reader could load them) become "?".
        text = json.dumps(value, default=str, ensure_ascii=False)
        return text.encode("utf-8", "replace").decode("utf-8")


def _iso_utc(ts: datetime) -> str:
    # The offset is kept as is (PostgreSQL converts); naive means UTC, not the server's zone.
    return ts.isoformat() if ts.tzinfo is not None else ts.isoformat() + "+00:00"


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _group_by_model(records: Sequence[PredictionRecord]) -> dict[str, PredictionRows]:
    groups: dict[str, list[_Chunk]] = {}
    for chunk in _chunks_of(records):
        groups.setdefault(chunk.model_name, []).append(chunk)
    return {name: PredictionRows(chunks) for name, chunks in groups.items()}


def model_folder_name(model_name: str) -> str:
    """A safe folder name for a model (percent-encoded; never hidden, never ``..``)."""
    encoded = quote(str(model_name), safe="") or "_"
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def _safe_url(url: str) -> str:
    if _is_sql_url(url):
        try:
            return sa.engine.make_url(url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "<unreadable URL>"
    return url


# --- reading --------------------------------------------------------------------------------


def read_predictions(
    url: str,
    model_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """The logged predictions at ``url``, optionally of one model, with ``since <= ts < until``.

    Columns: :data:`BASE_COLUMNS` (``request_id``, ``ts`` in UTC, ``model_name``,
    ``model_version``, ``route``, ``latency_ms``), one ``input.<col>`` per input field,
    ``prediction``, one ``proba.<class>`` per class; rows sorted by ``ts``. Nothing logged
    yet gives an empty frame with the base columns. A naive ``since``/``until`` is UTC.
    """
    since_utc = _utc(since) if since is not None else None
    until_utc = _utc(until) if until is not None else None
    if _is_sql_url(url):
        frame = _read_sql(url, model_name, since_utc, until_utc)
    else:
        folder = _folder_of(url)
        if folder is None:
            raise DataError(
                f"cannot read predictions from {_safe_url(url)!r}: unsupported location",
                hint="use the prediction log folder or a postgresql:// URL",
            )
        frame = _read_folder(folder, model_name, since_utc, until_utc)
    return _standardize(frame)


def empty_predictions() -> pd.DataFrame:
    """An empty prediction frame with the base columns and their types."""
    import pandas as pd

    return pd.DataFrame(
        {
            "request_id": pd.Series(dtype="str"),
            "ts": pd.Series(dtype=_TS_DTYPE),
            "model_name": pd.Series(dtype="str"),
            "model_version": pd.Series(dtype="str"),
            "route": pd.Series(dtype="str"),
            "latency_ms": pd.Series(dtype="float64"),
            PREDICTION: pd.Series(dtype="str"),
        }
    )


def _read_folder(
    root: Path, model_name: str | None, since: datetime | None, until: datetime | None
) -> pd.DataFrame:
    import pandas as pd

    files = _segment_files(root, model_name)
    if since is not None:
        # A segment is named after its newest record: older segments hold nothing newer.
        files = [f for f in files if (_segment_stamp(f) or since) >= since]
    tables = [_read_segment(f) for f in files]
    if not tables:
        return empty_predictions()
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException:
        # An input column changed type between segments: let pandas fall back to object.
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    else:
        frame = table.to_pandas()
    if model_name is not None:
        frame = frame[frame["model_name"] == model_name]
    return _filter_time(frame, since, until)


def _segment_files(root: Path, model_name: str | None) -> list[Path]:
    hint = "set prediction_log_url to the folder the server logs to, or a postgresql:// URL"
    if not root.exists():
        return []  # nothing logged yet
    if not root.is_dir():
        raise DataError(f"the prediction log location {root} is not a folder", hint=hint)
    try:
        if model_name is not None:
            folders = [root / model_folder_name(model_name)]
        else:
            folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
        return [f for folder in folders if folder.is_dir() for f in folder.glob(_SEGMENT_GLOB)]
    except OSError as exc:
        raise DataError(
            f"cannot read the prediction log folder {root}: {exc.strerror or exc}", hint=hint
        ) from None


def _segment_stamp(path: Path) -> datetime | None:
    try:
        return datetime.strptime(path.name.split("-")[1], _STAMP_FORMAT).replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None  # a renamed file: read it rather than guess


def _read_segment(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"cannot read prediction log segment {path}: {exc}",
            hint="move the damaged file out of the folder; the other segments are intact",
        ) from None


def _filter_time(
    frame: pd.DataFrame, since: datetime | None, until: datetime | None
) -> pd.DataFrame:
    if since is not None:
        frame = frame[frame["ts"] >= since]
    if until is not None:
        frame = frame[frame["ts"] < until]
    return frame


def _read_sql(
    url: str, model_name: str | None, since: datetime | None, until: datetime | None
) -> pd.DataFrame:
    table = predictions_table
    query = sa.select(table).order_by(table.c.ts)
    if model_name is not None:
        query = query.where(table.c.model_name == model_name)
    if since is not None:
        query = query.where(table.c.ts >= since)
    if until is not None:
        query = query.where(table.c.ts < until)
    engine = _sql_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(TABLE_NAME):
                return empty_predictions()
            rows = conn.execute(query).all()
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(
            f"cannot read predictions from {_safe_url(url)}: {getattr(exc, 'orig', exc)}",
            hint="check that the database is running and prediction_log_url is right",
        ) from None
    finally:
        engine.dispose()
    return _frame_from_rows(rows)


def _frame_from_rows(rows: Sequence[sa.Row[Any]]) -> pd.DataFrame:
    import pandas as pd

    if not rows:
        return empty_predictions()
    columns = {name: [row._mapping[name] for row in rows] for name in _COPY_COLUMNS}
    base = pd.DataFrame({name: columns[name] for name in BASE_COLUMNS})
    inputs = _expand_json(columns["inputs"], INPUT_PREFIX)
    probabilities = _expand_json(columns["probabilities"], PROBA_PREFIX)
    prediction = pd.DataFrame({PREDICTION: columns["prediction"]})
    return pd.concat([base, inputs, prediction, probabilities], axis=1)


def _expand_json(texts: list[str], prefix: str) -> pd.DataFrame:
    import pandas as pd

    records = [_loads(text) for text in texts]
    frame = pd.DataFrame.from_records(records, index=range(len(records)))
    for name in frame.columns:
        # Only object columns can hold dicts/lists (pandas 3 gives text its own dtype).
        if (
            frame[name].dtype == object
            and frame[name].map(lambda v: isinstance(v, dict | list)).any()
        ):
            # Nested values as JSON text, as the Parquet sink stores them: columns stay flat.
            frame[name] = frame[name].map(lambda v: _json(v) if isinstance(v, dict | list) else v)
    return frame.add_prefix(prefix)


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # written by another tool, perhaps: be lenient
        value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _standardize(frame: pd.DataFrame) -> pd.DataFrame:
    """Same column order and types from every sink; rows sorted by time."""
    import pandas as pd

    if frame.empty and not len(frame.columns.difference(empty_predictions().columns)):
        return empty_predictions()
    frame = frame.copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype(_TS_DTYPE)
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    inputs = [c for c in frame.columns if c.startswith(INPUT_PREFIX)]
    probabilities = [c for c in frame.columns if c.startswith(PROBA_PREFIX)]
    ordered = [*BASE_COLUMNS, *inputs, PREDICTION, *probabilities]
    rest = [c for c in frame.columns if c not in ordered]
    return frame[ordered + rest].sort_values("ts", kind="stable", ignore_index=True)
