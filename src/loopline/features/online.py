"""Online features: updated on each transaction, read in well under a millisecond, equal to
the offline ones.

One protocol, :class:`OnlineFeatureStore`, two implementations with identical results:

- :class:`EmbeddedFeatureStore` (the default, no server): SQLite under the project's
  ``.loopline/``. Each :meth:`~OnlineFeatureStore.update_and_read` is one SQLite
  transaction that records the transaction id, adds its events and stores the answer, so a
  consumer killed at any point (SIGKILL included) either counted the transaction and
  remembers it, or did neither: redelivered after a restart, it is counted once.
- :class:`RedisFeatureStore`: one Lua script per transaction (update and read in one round
  trip, atomic), a sorted set of events per entity (score: time in microseconds), a
  sorted set of positive labels per entity, a hash per transaction (its time, the entity
  values labels need, its answer). Events older than the longest window plus the delay
  (plus a day of grace) are trimmed on each update, and keys expire after as long without
  use. A Redis that cannot be reached raises :class:`~loopline.errors.LooplineError`, or
  with ``fallback="degraded"`` returns the calendar flags, NaN for every feature that
  needs state and :data:`DEGRADED` = 1.0: never a number that looks right but is not.

Semantics shared by both (and by :func:`~loopline.features.offline.compute_offline`):
a transaction's window features include it and every transaction of the same entity that
arrived before it with a time in the window (transactions arriving in time order give
exactly the offline values); a delayed label rate counts the events in
``(t - delay - days, t - delay]`` and, among them, the labels whose ``known_at`` is not
after ``t``. Offline, every label is known exactly ``delay`` days after its event, so the
two agree when labels are fed at ``event time + delay``; a label that comes later than
that is left out online until it arrives (offline still counts it: offline is what the
model was trained on, online is what was knowable). The latest :meth:`add_label` for a
transaction wins. The label column of a transaction passed to ``update_and_read`` is
ignored: labels only come through ``add_label``.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from loopline.core.sqlite_wal import WalCheckpointer
from loopline.errors import LooplineError
from loopline.features.definitions import (
    DAY_US,
    CalendarFlags,
    DelayedLabelRate,
    FeatureSet,
    Window,
    handbook_features,
)

__all__ = [
    "DEGRADED",
    "EmbeddedFeatureStore",
    "OnlineFeatureStore",
    "RedisFeatureStore",
    "StoreUnavailable",
    "is_degraded",
    "open_feature_store",
    "to_microseconds",
]

DEGRADED = "FEATURES_DEGRADED"
"""Key set to 1.0 in an answer computed without the store (Redis down, ``fallback="degraded"``)."""


class StoreUnavailable(LooplineError):
    """The online store cannot be reached or failed: nothing was counted."""


_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000


@runtime_checkable
class OnlineFeatureStore(Protocol):
    """Per-transaction features from state kept across transactions (and restarts)."""

    features: FeatureSet

    def update_and_read(self, tx: Mapping[str, Any]) -> dict[str, float]:
        """Add ``tx`` (once per id) and return its features, computed as offline.

        A transaction id seen before changes nothing and gets the answer it got the first
        time. Keys are :attr:`FeatureSet.names`, in that order.
        """
        ...

    def add_label(self, tx_id: Any, label: float, known_at: Any) -> None:
        """``tx_id``'s label, known from ``known_at`` on (before or after the transaction)."""
        ...

    def forget(self, entity_value: Any, *, entity: str | None = None, dry_run: bool = False) -> int:
        """Erase an entity's state (the feature set's subject by default): its events, and
        for the subject the answers cached for its transactions. Returns the events erased
        (with ``dry_run``, only counts them)."""
        ...

    def close(self) -> None: ...


def is_degraded(answer: Mapping[str, float]) -> bool:
    """True when ``answer`` was computed without the store (see :data:`DEGRADED`)."""
    return bool(answer.get(DEGRADED))


# -- shared parsing and assembly ------------------------------------------------------


def to_microseconds(value: Any) -> int:
    """A time as microseconds since 1970-01-01 on the wall clock (aware times: in UTC).

    Takes ``datetime`` (and ``pandas.Timestamp``), ``numpy.datetime64`` and ISO 8601
    strings; the same reading DuckDB gives a ``TIMESTAMP`` offline.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LooplineError(
                f"cannot read time {value!r}", hint="use ISO 8601, e.g. 2018-04-01 00:00:31"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        nanos = getattr(value, "value", None)  # pandas.Timestamp: exact nanoseconds
        if isinstance(nanos, int) and hasattr(value, "asm8"):
            return nanos // 1000
        return (value - _EPOCH) // _US
    if type(value).__name__ == "datetime64":
        return int(value.astype("datetime64[us]").astype("int64"))
    raise LooplineError(
        f"cannot read time {value!r} ({type(value).__name__})",
        hint="give a datetime or an ISO 8601 string",
    )


def _flags(flag: CalendarFlags, us: int) -> tuple[float, float]:
    weekday = (us // DAY_US + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    hour = (us // _HOUR_US) % 24
    return float(weekday >= flag.weekend_from), float(hour <= flag.night_until)


class _Plan:
    """What a store needs from a feature set: entities, value columns, windows, times."""

    def __init__(self, features: FeatureSet, grace_days: float) -> None:
        self.features = features
        self.entities = features.entities
        self.values = {e: features.values(e) for e in self.entities}
        self.label_entities = tuple(
            dict.fromkeys(f.entity for f in features.features if isinstance(f, DelayedLabelRate))
        )
        self.times = tuple(
            dict.fromkeys(
                [features.time]
                + [f.time for f in features.features if isinstance(f, CalendarFlags) and f.time]
            )
        )
        self.retention_us = int((features.horizon_days + grace_days) * DAY_US)
        self.stateful = [
            name
            for feature in features.features
            if not isinstance(feature, CalendarFlags)
            for name, _, _ in feature.outputs
        ]
        self.names = features.names
        self.program = self._program()
        self.n_stats = sum(
            len(f.days) * (2 if isinstance(f, DelayedLabelRate) or f.value else 1)
            for f in features.features
            if not isinstance(f, CalendarFlags)
        )

    def parse(self, tx: Mapping[str, Any]) -> tuple[str, dict[str, int], list[str], list[tuple]]:
        """(id, times in µs, entity values, value tuples per entity) of a transaction."""
        fs = self.features
        try:
            tx_id = tx[fs.id]
            times = {col: to_microseconds(tx[col]) for col in self.times}
            entities = [tx[e] for e in self.entities]
            values = [tuple(tx[v] for v in self.values[e]) for e in self.entities]
        except KeyError as exc:
            raise LooplineError(
                f"the transaction has no {exc.args[0]!r}",
                hint=f"the feature set reads {list(fs.columns)} (the label is not needed)",
            ) from None
        if tx_id is None or any(v is None for v in entities):
            raise LooplineError(f"transaction {tx_id!r}: the id and entities must not be None")
        floats = []
        for entity, vals in zip(self.entities, values, strict=True):
            try:
                row = tuple(float(v) for v in vals)
            except (TypeError, ValueError):
                raise LooplineError(
                    f"transaction {tx_id!r}: {self.values[entity]} must be numbers, got {vals}"
                ) from None
            if any(math.isnan(v) for v in row):
                raise LooplineError(f"transaction {tx_id!r}: missing {self.values[entity]}")
            floats.append(row)
        return str(tx_id), times, [str(v) for v in entities], floats

    def _program(self) -> list[tuple[Any, ...]]:
        """How the raw statistics map to named features, worked out once.

        A store returns, per definition and window in order: for a :class:`Window` the
        count (and the sum of its value), for a :class:`DelayedLabelRate` the count and
        the sum of known labels. Each step here reads one window's numbers.
        """
        program: list[tuple[Any, ...]] = []
        for feature in self.features.features:
            if isinstance(feature, CalendarFlags):
                program.append(("flags", feature, feature.time or self.features.time))
                continue
            value = isinstance(feature, DelayedLabelRate) or bool(feature.value)
            for days in feature.days:
                named = {agg: name for name, agg, d in feature.outputs if d == days}
                program.append(("stats", value, named))
        return program

    def assemble(self, times: Mapping[str, int], stats: list[float]) -> dict[str, float]:
        """The answer (keys in :attr:`FeatureSet.names` order) from a store's statistics."""
        out: dict[str, float] = {}
        pos = 0
        for step in self.program:
            if step[0] == "flags":
                flag = step[1]
                out[flag.weekend], out[flag.night] = _flags(flag, times[step[2]])
                continue
            _, value, named = step
            n = float(stats[pos])
            total = float(stats[pos + 1]) if value else 0.0
            pos += 2 if value else 1
            for agg, name in named.items():
                if agg == "count":
                    out[name] = n
                elif agg == "sum":
                    out[name] = total
                else:  # mean of a window, rate of labels: 0 when the window is empty
                    out[name] = total / n if n else 0.0
        return {name: out[name] for name in self.names}

    def degraded(self, times: Mapping[str, int]) -> dict[str, float]:
        answer = self.assemble(times, [0.0] * self.n_stats)
        for name in self.stateful:
            answer[name] = math.nan
        answer[DEGRADED] = 1.0
        return answer


def _label_value(label: Any) -> float:
    try:
        value = float(label)
    except (TypeError, ValueError):
        raise LooplineError(f"a label must be a number (0/1), got {label!r}") from None
    if math.isnan(value):
        raise LooplineError("a label must not be NaN", hint="send labels only once known")
    return value


def _entity_index(plan: _Plan, entity: str | None) -> tuple[int, str]:
    entity = entity or plan.features.subject
    if entity is None:
        raise LooplineError(
            "forget needs an entity: the feature set names no subject",
            hint=f"pass entity=, one of {list(plan.entities)}",
        )
    if entity not in plan.entities:
        raise LooplineError(f"unknown entity {entity!r}", hint=f"one of {list(plan.entities)}")
    return plan.entities.index(entity), entity


# -- embedded (SQLite) ----------------------------------------------------------------


_EXPIRE_ROWS = 8  # per table and update: more than an update adds, so expiry keeps up
_EXPIRE_PAUSE_US = 60 * 1_000_000


class EmbeddedFeatureStore:
    """The online store without a server: one SQLite file, WAL mode, one transaction per
    update.

    Why SQLite and not an in-memory state with an append-only log: a committed update is
    durable against a killed process by construction (the id, the events and the answer
    go in one transaction; ``synchronous=NORMAL`` in WAL mode loses nothing on SIGKILL,
    at most the last transactions on power loss, without corrupting anything), memory
    stays flat however much history is kept, several consumers can share the file, and
    erasure is a ``DELETE`` with ``secure_delete`` on (the bytes are overwritten, and the
    WAL is checkpointed) instead of rewriting a log.

    ``path`` is the SQLite file, or a folder to keep ``online.sqlite`` in (by default
    ``<home>/features/`` of the project's settings).
    ``grace_days``: events are kept for the longest window + delay + this, in event time,
    so transactions up to that late still see complete windows.

    **Checkpoints** (``checkpoint``): SQLite's automatic checkpoint copies the write-ahead
    log into the database on the commit that finds it over 1,000 pages, with two fsyncs
    (4-10 ms each on a shared disk): that update, and every transaction waiting behind
    it, is late. With ``checkpoint="background"`` (the default) automatic checkpoints are
    off and a :class:`~loopline.core.sqlite_wal.WalCheckpointer` checkpoints from a daemon
    thread every ``checkpoint_interval_s`` (``PASSIVE``, never blocking the writer, until
    the log starts over), with a ``TRUNCATE`` under the store's lock only if the log
    still passes ``wal_limit_mb``.
    ``checkpoint="auto"`` is SQLite's own behaviour.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        features: FeatureSet | None = None,
        *,
        grace_days: float = 1.0,
        synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL",
        busy_timeout_s: float = 10.0,
        checkpoint: Literal["background", "auto"] = "background",
        checkpoint_interval_s: float = 0.2,
        wal_limit_mb: float = 64.0,
    ) -> None:
        self.features = features or handbook_features()
        self._plan = _Plan(self.features, grace_days)
        if path is None:
            from loopline.config import load_settings

            path = load_settings().home_dir / "features"
        self.path = Path(path)
        if self.path.is_dir() or not self.path.suffix:  # a folder: the file goes inside
            self.path = self.path / "online.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._keeper: WalCheckpointer | None = None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA secure_delete=ON")
            limit = int(wal_limit_mb * 1024 * 1024)
            self._db.execute(f"PRAGMA journal_size_limit={limit}")
            if checkpoint == "background":
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._setup()
        except LooplineError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise LooplineError(
                f"cannot open the feature store {self.path}: {exc}",
                hint="check the path is writable and not a different kind of file",
            ) from exc
        self._sql = self._statements()
        if checkpoint == "background":
            self._keeper = WalCheckpointer(
                self.path,
                name="feature-store-wal",
                interval=checkpoint_interval_s,
                limit=limit,
                lock=self._lock,
                busy_timeout_s=busy_timeout_s,
            )
        self._max_ts = 0
        self._clean_until = -(2**62)  # nothing known to be expired yet: look on the first update

    # schema
    def _setup(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'feature_set'").fetchone()
            digest = self.features.digest()
            if row is None:
                db.execute(
                    "INSERT INTO meta VALUES ('feature_set', ?), ('definition', ?)",
                    (digest, json.dumps(self.features.to_dict())),
                )
            elif row[0] != digest:
                raise LooplineError(
                    f"the feature store {self.path} holds another feature set ({row[0]}, "
                    f"not {digest})",
                    hint="use another path for these features, or delete the file to rebuild",
                )
            db.execute(
                "CREATE TABLE IF NOT EXISTS tx (seq INTEGER PRIMARY KEY, id TEXT NOT NULL "
                "UNIQUE, ts INTEGER NOT NULL, stats TEXT)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS labels (id TEXT PRIMARY KEY, label REAL NOT NULL, "
                "known_at INTEGER NOT NULL) WITHOUT ROWID"
            )
            for k, entity in enumerate(self._plan.entities):
                values = "".join(f", v{j} REAL" for j in range(len(self._plan.values[entity])))
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS ev{k} (entity TEXT NOT NULL, ts INTEGER NOT "
                    f"NULL, id TEXT NOT NULL{values}, PRIMARY KEY (entity, ts, id)) WITHOUT ROWID"
                )
                db.execute(f"CREATE INDEX IF NOT EXISTS ev{k}_ts ON ev{k} (ts)")
            # by time: expiry finds the oldest rows without scanning (see _expire)
            db.execute("CREATE INDEX IF NOT EXISTS tx_ts ON tx (ts)")
            db.execute("CREATE INDEX IF NOT EXISTS labels_known_at ON labels (known_at)")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _statements(self) -> dict[str, Any]:
        plan = self._plan
        inserts = []
        for k, entity in enumerate(plan.entities):
            n = len(plan.values[entity])
            cols = "".join(f", v{j}" for j in range(n))
            marks = ", ?" * n
            inserts.append(
                f"INSERT OR IGNORE INTO ev{k} (entity, ts, id{cols}) VALUES (?, ?, ?{marks})"
            )
        reads: list[tuple[str, Any]] = []
        for feature in plan.features.features:
            if isinstance(feature, Window):
                k = plan.entities.index(feature.entity)
                longest = max(feature.days) * DAY_US
                parts = []
                for days in feature.days:
                    parts.append(f"coalesce(sum(ts > :t - {days * DAY_US}), 0)")
                    if feature.value:
                        j = plan.values[feature.entity].index(feature.value)
                        parts.append(
                            f"coalesce(sum(CASE WHEN ts > :t - {days * DAY_US} THEN v{j} END), 0)"
                        )
                sql = (
                    f"SELECT {', '.join(parts)} FROM ev{k} WHERE entity = :e "
                    f"AND ts > :t - {longest} AND ts <= :t"
                )
                reads.append((sql, k))
            elif isinstance(feature, DelayedLabelRate):
                k = plan.entities.index(feature.entity)
                delay = feature.delay * DAY_US
                longest = max(feature.days) * DAY_US + delay
                parts = []
                for days in feature.days:
                    lo = (days * DAY_US) + delay
                    parts.append(f"coalesce(sum(e.ts > :t - {lo}), 0)")
                    parts.append(
                        f"coalesce(sum(CASE WHEN e.ts > :t - {lo} AND l.known_at <= :t "
                        "THEN l.label END), 0)"
                    )
                sql = (
                    f"SELECT {', '.join(parts)} FROM ev{k} AS e LEFT JOIN labels AS l "
                    f"ON l.id = e.id WHERE e.entity = :e AND e.ts > :t - {longest} "
                    f"AND e.ts <= :t - {delay}"
                )
                reads.append((sql, k))
        expire = [
            f"DELETE FROM ev{k} WHERE (entity, ts, id) IN (SELECT entity, ts, id FROM ev{k} "
            "WHERE ts <= ? ORDER BY ts LIMIT ?)"
            for k in range(len(plan.entities))
        ]
        expire.append(
            "DELETE FROM tx WHERE seq IN (SELECT seq FROM tx WHERE ts <= ? ORDER BY ts LIMIT ?)"
        )
        # a label goes after its transaction (one known before its transaction happened
        # stays while the transaction does, and is skipped meanwhile)
        expire.append(
            "DELETE FROM labels WHERE id IN (SELECT id FROM labels WHERE known_at <= ? AND "
            "NOT EXISTS (SELECT 1 FROM tx WHERE tx.id = labels.id) ORDER BY known_at LIMIT ?)"
        )
        return {"inserts": inserts, "reads": reads, "expire": expire}

    # the protocol
    def update_and_read(self, tx: Mapping[str, Any]) -> dict[str, float]:
        tx_id, times, entities, values = self._plan.parse(tx)
        ts = times[self.features.time]
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    row = db.execute("SELECT seq, stats FROM tx WHERE id = ?", (tx_id,)).fetchone()
                    if row is not None and row[1] is not None:
                        db.execute("COMMIT")
                        return self._plan.assemble(times, json.loads(row[1]))
                    if row is None:
                        db.execute("INSERT INTO tx (id, ts) VALUES (?, ?)", (tx_id, ts))
                        for sql, entity, vals in zip(
                            self._sql["inserts"], entities, values, strict=True
                        ):
                            db.execute(sql, (entity, ts, tx_id, *vals))
                    stats = self._read(ts, entities)
                    db.execute("UPDATE tx SET stats = ? WHERE id = ?", (json.dumps(stats), tx_id))
                    if ts > self._max_ts:
                        self._max_ts = ts
                    if self._max_ts - self._plan.retention_us > self._clean_until:
                        self._expire()
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreUnavailable(
                    f"the feature store {self.path} failed: {exc}",
                    hint="nothing was counted; deliver the transaction again",
                ) from exc
        return self._plan.assemble(times, stats)

    def _read(self, ts: int, entities: list[str]) -> list[float]:
        stats: list[float] = []
        for sql, k in self._sql["reads"]:
            row = self._db.execute(sql, {"t": ts, "e": entities[k]}).fetchone()
            stats.extend(float(x) for x in row)
        return stats

    def add_label(self, tx_id: Any, label: float, known_at: Any) -> None:
        self.add_labels([(tx_id, label, known_at)])

    def add_labels(self, labels: Iterable[tuple[Any, float, Any]]) -> int:
        """Several labels ``(tx_id, label, known_at)`` in one transaction; how many."""
        rows = [(str(i), _label_value(v), to_microseconds(k)) for i, v, k in labels]
        with self._lock:
            try:
                with self._transaction():
                    self._db.executemany(
                        "INSERT INTO labels (id, label, known_at) VALUES (?, ?, ?) ON CONFLICT "
                        "(id) DO UPDATE SET label = excluded.label, known_at = excluded.known_at",
                        rows,
                    )
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"the feature store {self.path} failed: {exc}") from exc
        return len(rows)

    def warm(self, transactions: Iterable[Mapping[str, Any]]) -> int:
        """Add past transactions without computing their features (catching up from
        history; idempotent like :meth:`update_and_read`). Returns how many were given."""
        plan = self._plan
        tx_rows: list[tuple[str, int]] = []
        ev_rows: list[list[tuple]] = [[] for _ in plan.entities]
        for tx in transactions:
            tx_id, times, entities, values = plan.parse(tx)
            ts = times[self.features.time]
            tx_rows.append((tx_id, ts))
            for k, (entity, vals) in enumerate(zip(entities, values, strict=True)):
                ev_rows[k].append((entity, ts, tx_id, *vals))
        with self._lock:
            try:
                with self._transaction():
                    self._db.executemany("INSERT OR IGNORE INTO tx (id, ts) VALUES (?, ?)", tx_rows)
                    for sql, rows in zip(self._sql["inserts"], ev_rows, strict=True):
                        self._db.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"the feature store {self.path} failed: {exc}") from exc
            if tx_rows:
                self._max_ts = max(self._max_ts, max(ts for _, ts in tx_rows))
        return len(tx_rows)

    def forget(self, entity_value: Any, *, entity: str | None = None, dry_run: bool = False) -> int:
        k, entity = _entity_index(self._plan, entity)
        value = str(entity_value)
        with self._lock:
            try:
                if dry_run:
                    sql = f"SELECT count(*) FROM ev{k} WHERE entity = ?"
                    return int(self._db.execute(sql, (value,)).fetchone()[0])
                with self._transaction():
                    ids = [
                        r[0]
                        for r in self._db.execute(
                            f"SELECT id FROM ev{k} WHERE entity = ?", (value,)
                        )
                    ]
                    if entity == self.features.subject:
                        # the cached answers hold the subject's aggregates: drop them (the
                        # id stays, so a redelivery is still not counted again)
                        self._db.executemany(
                            "UPDATE tx SET stats = NULL WHERE id = ?", [(i,) for i in ids]
                        )
                    self._db.execute(f"DELETE FROM ev{k} WHERE entity = ?", (value,))
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"erasing {entity}={value} failed: {exc}") from exc
        return len(ids)

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()
            self._keeper = None
        with self._lock:
            self._db.close()

    def __enter__(self) -> EmbeddedFeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # housekeeping
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _expire(self) -> None:
        """Delete, inside the update's transaction, at most ``_EXPIRE_ROWS`` rows per table
        that no window can reach any more (in event time), oldest first through the time
        indexes.

        Why a few rows per update and not one sweep per event day: a day's ``DELETE`` held
        the writer 45-65 ms on the handbook data (a scan of every event table; with the
        indexes, still one day of rows at once), and every transaction arriving meanwhile
        waited; that was most of the p99 of ``benchmarks/fraud_latency.py``. Deleting more
        rows per update than an update adds keeps the store bounded at any rate; once a
        round finds fewer than it may delete, nothing older is left and the next look is
        a minute of event time later.
        """
        cutoff = self._max_ts - self._plan.retention_us
        deleted = [
            self._db.execute(sql, (cutoff, _EXPIRE_ROWS)).rowcount for sql in self._sql["expire"]
        ]
        if max(deleted) < _EXPIRE_ROWS:
            self._clean_until = cutoff + _EXPIRE_PAUSE_US


# -- Redis ----------------------------------------------------------------------------

_UPDATE_LUA = r"""
local keep, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local PER_KEY, PER_ARG = 1 + NENT + NLAB, 2 + 2 * NENT
local function num(x) return string.format('%.0f', x) end

-- record one transaction (its keys after KEYS[kb], its arguments after ARGV[ab]) once
local function add(kb, ab)
  local txk = KEYS[kb + 1]
  if redis.call('HEXISTS', txk, 't') == 1 then return end
  local id, ts = ARGV[ab + 1], ARGV[ab + 2]
  local t = tonumber(ts)
  redis.call('HSET', txk, 't', ts)
  for k = 1, NENT do
    local key = KEYS[kb + 1 + k]
    redis.call('ZADD', key, ts, ARGV[ab + 2 + k])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. num(t - keep))
    redis.call('PEXPIRE', key, ttl)
  end
  for j = 1, NLAB do
    redis.call('HSET', txk, 'e' .. LABEL_ENT[j], ARGV[ab + 2 + NENT + LABEL_ENT[j]])
  end
  local lv = redis.call('HGET', txk, 'lv')
  if lv and tonumber(lv) ~= 0 then
    local member = id .. '\t' .. lv .. '\t' .. redis.call('HGET', txk, 'lk')
    for j = 1, NLAB do redis.call('ZADD', KEYS[kb + 1 + NENT + j], ts, member) end
    redis.call('HSET', txk, 'lm', member)
  end
  for j = 1, NLAB do
    local key = KEYS[kb + 1 + NENT + j]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. num(t - keep))
    redis.call('PEXPIRE', key, ttl)
  end
  redis.call('PEXPIRE', txk, ttl)
end

if ARGV[1] == 'add' then
  local n = #KEYS / PER_KEY
  for i = 0, n - 1 do add(i * PER_KEY, 3 + i * PER_ARG) end
  return n
end

-- 'read': one transaction, added, then its features
local txk = KEYS[1]
local cached = redis.call('HGET', txk, 'f')
if cached then return cached end
add(0, 3)
local t = tonumber(ARGV[5])
local out = {}
for _, w in ipairs(WINDOWS) do
  local rows = redis.call('ZRANGEBYSCORE', KEYS[1 + w.k], '(' .. num(t - w.longest), num(t),
                          'WITHSCORES')
  local n, s = {}, {}
  for d = 1, #w.days do n[d] = 0; s[d] = 0 end
  for r = 1, #rows, 2 do
    local score = tonumber(rows[r + 1])
    local v = 0
    if w.v > 0 then
      local _, _, field = string.find(rows[r], w.pattern)
      v = tonumber(field)
    end
    for d = 1, #w.days do
      if score > t - w.days[d] then n[d] = n[d] + 1; s[d] = s[d] + v end
    end
  end
  for d = 1, #w.days do
    out[#out + 1] = string.format('%d', n[d])
    if w.v > 0 then out[#out + 1] = string.format('%.17g', s[d]) end
  end
end
for _, r in ipairs(RATES) do
  local n, f = {}, {}
  for d = 1, #r.days do
    n[d] = redis.call('ZCOUNT', KEYS[1 + r.k], '(' .. num(t - r.delay - r.days[d]),
                      num(t - r.delay))
    f[d] = 0
  end
  local labels = redis.call('ZRANGEBYSCORE', KEYS[1 + NENT + r.j],
                            '(' .. num(t - r.delay - r.longest), num(t - r.delay), 'WITHSCORES')
  for i = 1, #labels, 2 do
    local score = tonumber(labels[i + 1])
    local _, _, value, known_at = string.find(labels[i], '^[^\t]*\t([^\t]*)\t([^\t]*)$')
    if tonumber(known_at) <= t then
      for d = 1, #r.days do
        if score > t - r.delay - r.days[d] then f[d] = f[d] + tonumber(value) end
      end
    end
  end
  for d = 1, #r.days do
    out[#out + 1] = string.format('%d', n[d])
    out[#out + 1] = string.format('%.17g', f[d])
  end
end
local answer = table.concat(out, ',')
redis.call('HSET', txk, 'f', answer)
redis.call('PEXPIRE', txk, ttl)
return answer
"""

_LABEL_LUA = r"""
local txk = KEYS[1]
local id, lv, lk, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = redis.call('HGET', txk, 't')
if (t and #KEYS == 1 and NLAB > 0) or (not t and #KEYS > 1) then return 'retry' end
if t then
  for j = 2, #KEYS do
    if redis.call('HGET', txk, 'e' .. LABEL_ENT[j - 1]) ~= ARGV[4 + j - 1] then
      return 'retry'
    end
  end
  local old = redis.call('HGET', txk, 'lm')
  for j = 2, #KEYS do
    if old then redis.call('ZREM', KEYS[j], old) end
  end
  redis.call('HDEL', txk, 'lm')
  if tonumber(lv) ~= 0 then
    local member = id .. '\t' .. lv .. '\t' .. lk
    for j = 2, #KEYS do redis.call('ZADD', KEYS[j], t, member) end
    redis.call('HSET', txk, 'lm', member)
  end
end
redis.call('HSET', txk, 'lv', lv, 'lk', lk)
redis.call('PEXPIRE', txk, ttl)
return 'ok'
"""


def _lua_table(items: list[dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, list | tuple):
            return "{" + ", ".join(value(x) for x in v) + "}"
        if isinstance(v, str):
            escaped = v.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t")
            return "'" + escaped + "'"
        return str(int(v))

    rows = ["{" + ", ".join(f"{k} = {value(v)}" for k, v in item.items()) + "}" for item in items]
    return "{" + ", ".join(rows) + "}"


class RedisFeatureStore:
    """The online store in Redis: update and read in one atomic round trip (a Lua script).

    Keys live under ``{prefix}`` (braces included: a Redis Cluster hash tag, so one
    transaction's keys share a slot and the scripts stay atomic there too):
    ``{prefix}:ev:<k>:<value>`` (events of entity k, score = time in µs, member = id and
    values), ``{prefix}:lab:<k>:<value>`` (positive labels: id, label, known_at),
    ``{prefix}:tx:<id>`` (time, entity values labels need, label, the answer) and
    ``{prefix}:meta`` (the feature set's digest: another set under the same prefix is
    refused). Events are trimmed on each update once older (in event time) than the
    longest window + delay + ``grace_days``; keys expire after as long without use (wall
    clock), which bounds how long a transaction id is remembered for deduplication.

    ``fallback``: ``"error"`` (default) raises :class:`LooplineError` when Redis cannot be
    reached or fails; ``"degraded"`` makes :meth:`update_and_read` answer with the
    calendar flags, NaN for every stateful feature and :data:`DEGRADED` = 1.0 instead. The
    transaction is then NOT recorded: the consumer must deliver it again once Redis is
    back (it is counted once: updates are idempotent by id). ``add_label`` and ``forget``
    always raise: a label or an erasure is never dropped silently.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "loopline:features",
        features: FeatureSet | None = None,
        *,
        fallback: Literal["error", "degraded"] = "error",
        timeout_s: float = 1.0,
        grace_days: float = 1.0,
    ) -> None:
        try:
            import redis
        except ImportError:
            raise LooplineError(
                "the Redis feature store needs the redis package", hint="pip install redis"
            ) from None
        if fallback not in ("error", "degraded"):
            raise LooplineError(f"unknown fallback {fallback!r}", hint="'error' or 'degraded'")
        self.features = features or handbook_features()
        self.url = url
        self.prefix = prefix
        self.fallback = fallback
        self._plan = _Plan(self.features, grace_days)
        self._redis = redis
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        )
        self._base = "{" + prefix + "}"
        plan = self._plan
        self._label_ent = [plan.entities.index(e) + 1 for e in plan.label_entities]
        windows, rates = [], []
        for feature in self.features.features:
            if isinstance(feature, Window):
                e = feature.entity
                v = plan.values[e].index(feature.value) + 1 if feature.value else 0
                windows.append(
                    {
                        "k": plan.entities.index(e) + 1,
                        "v": v,
                        "pattern": "^" + "[^\t]*\t" * v + "([^\t]*)",
                        "days": [d * DAY_US for d in feature.days],
                        "longest": max(feature.days) * DAY_US,
                    }
                )
            elif isinstance(feature, DelayedLabelRate):
                rates.append(
                    {
                        "k": plan.entities.index(feature.entity) + 1,
                        "j": plan.label_entities.index(feature.entity) + 1,
                        "delay": feature.delay * DAY_US,
                        "days": [d * DAY_US for d in feature.days],
                        "longest": max(feature.days) * DAY_US,
                    }
                )
        label_ent = "{" + ", ".join(str(k) for k in self._label_ent) + "}"
        header = (
            f"local NENT = {len(plan.entities)}\nlocal LABEL_ENT = {label_ent}\n"
            f"local NLAB = {len(self._label_ent)}\n"
            f"local WINDOWS = {_lua_table(windows)}\nlocal RATES = {_lua_table(rates)}\n"
        )
        self._update = self._client.register_script(header + _UPDATE_LUA)
        self._label = self._client.register_script(header + _LABEL_LUA)
        self._ttl_ms = int(plan.retention_us // 1000)
        self._ready = False
        try:
            self._ensure_ready()
        except StoreUnavailable:
            if fallback == "error":
                raise

    def _down(self, exc: Exception, doing: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"Redis at {self.url} failed while {doing}: {type(exc).__name__}: {exc}",
            hint="start Redis (or check the URL), or use RedisFeatureStore(..., "
            "fallback='degraded') to answer with features marked degraded",
        )

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        digest = self.features.digest()
        meta = f"{self._base}:meta"
        try:
            self._client.hsetnx(meta, "feature_set", digest)
            found = str(self._client.hget(meta, "feature_set"))
        except self._redis.RedisError as exc:
            raise self._down(exc, "checking the feature set") from exc
        if found != digest:
            raise LooplineError(
                f"Redis prefix {self.prefix!r} holds another feature set ({found}, not {digest})",
                hint="use another prefix for these features, or delete its keys to rebuild",
            )
        self._ready = True

    def _keys(self, tx_id: str, entities: list[str]) -> list[str]:
        base = self._base
        keys = [f"{base}:tx:{tx_id}"]
        keys += [f"{base}:ev:{k}:{value}" for k, value in enumerate(entities)]
        keys += [f"{base}:lab:{k - 1}:{entities[k - 1]}" for k in self._label_ent]
        return keys

    def _args(
        self, mode: str, tx_id: str, ts: int, entities: list[str], values: list[tuple]
    ) -> list[Any]:
        members = ["\t".join([tx_id, *(repr(v) for v in vals)]) for vals in values]
        head = [mode, self._plan.retention_us, self._ttl_ms] if mode else []
        return [*head, tx_id, ts, *members, *entities]

    def update_and_read(self, tx: Mapping[str, Any]) -> dict[str, float]:
        tx_id, times, entities, values = self._plan.parse(tx)
        ts = times[self.features.time]
        try:
            self._ensure_ready()
            answer = self._update(
                keys=self._keys(tx_id, entities),
                args=self._args("read", tx_id, ts, entities, values),
            )
        except (self._redis.RedisError, StoreUnavailable) as exc:
            if self.fallback == "degraded":
                return self._plan.degraded(times)
            if isinstance(exc, StoreUnavailable):
                raise
            raise self._down(exc, "updating features") from exc
        return self._plan.assemble(times, [float(x) for x in answer.split(",")])

    def warm(self, transactions: Iterable[Mapping[str, Any]], *, batch: int = 500) -> int:
        """Add past transactions without computing their features (``batch`` per script
        call; idempotent like :meth:`update_and_read`). Returns how many were given."""
        count = 0
        keys: list[str] = []
        args: list[Any] = ["add", self._plan.retention_us, self._ttl_ms]
        try:
            self._ensure_ready()
            for tx in transactions:
                tx_id, times, entities, values = self._plan.parse(tx)
                keys += self._keys(tx_id, entities)
                args += self._args("", tx_id, times[self.features.time], entities, values)
                count += 1
                if count % batch == 0:
                    self._update(keys=keys, args=args)
                    keys, args = [], args[:3]
            if keys:
                self._update(keys=keys, args=args)
        except self._redis.RedisError as exc:
            raise self._down(exc, "warming") from exc
        return count

    def add_label(self, tx_id: Any, label: float, known_at: Any) -> None:
        self.add_labels([(tx_id, label, known_at)])

    def add_labels(self, labels: Iterable[tuple[Any, float, Any]], *, batch: int = 2000) -> int:
        """Several labels ``(tx_id, label, known_at)``, pipelined; how many.

        Two round trips per batch: the transactions' entities (which label sets to
        update), then one script per label that checks them again and applies it
        atomically (a transaction that changed in between is simply tried again).
        """
        rows = [(str(i), repr(_label_value(v)), to_microseconds(k)) for i, v, k in labels]
        fields = ["t"] + [f"e{k}" for k in self._label_ent]
        try:
            self._ensure_ready()
            for start in range(0, len(rows), batch):
                todo = rows[start : start + batch]
                for _ in range(5):
                    pipe = self._client.pipeline(transaction=False)
                    for tx_id, _, _ in todo:
                        pipe.hmget(f"{self._base}:tx:{tx_id}", fields)
                    found = pipe.execute()
                    pipe = self._client.pipeline(transaction=False)
                    for (tx_id, value, known), got in zip(todo, found, strict=True):
                        keys = [f"{self._base}:tx:{tx_id}"]
                        ents: list[str] = []
                        if got[0] is not None:
                            ents = [str(v) for v in got[1:]]
                            keys += [
                                f"{self._base}:lab:{k - 1}:{v}"
                                for k, v in zip(self._label_ent, ents, strict=True)
                            ]
                        args: list[Any] = [tx_id, value, known, self._ttl_ms, *ents]
                        self._label(keys=keys, args=args, client=pipe)
                    done = pipe.execute()
                    todo = [row for row, d in zip(todo, done, strict=True) if d != "ok"]
                    if not todo:
                        break
                if todo:
                    raise LooplineError(
                        f"the label of {todo[0][0]} could not be stored (its transaction kept "
                        "changing)",
                        hint="send the label again",
                    )
        except self._redis.RedisError as exc:
            raise self._down(exc, "adding labels") from exc
        return len(rows)

    def forget(self, entity_value: Any, *, entity: str | None = None, dry_run: bool = False) -> int:
        k, entity = _entity_index(self._plan, entity)
        value = str(entity_value)
        ev_key = f"{self._base}:ev:{k}:{value}"
        if dry_run:
            try:
                return int(self._client.zcard(ev_key))
            except self._redis.RedisError as exc:
                raise self._down(exc, f"counting {entity}={value}") from exc
        lab_key = f"{self._base}:lab:{k}:{value}"
        subject = entity == self.features.subject
        erased: list[int] = []

        def erase(pipe: Any) -> None:
            members = pipe.zrange(ev_key, 0, -1)
            pipe.multi()
            if subject:
                for member in members:
                    pipe.hdel(f"{self._base}:tx:{member.split(chr(9), 1)[0]}", "f")
            pipe.delete(ev_key, lab_key)
            erased[:] = [len(members)]

        try:
            self._client.transaction(erase, ev_key)
        except self._redis.RedisError as exc:
            raise self._down(exc, f"erasing {entity}={value}") from exc
        return erased[0] if erased else 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisFeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_feature_store(
    url: str | Path | None = None, features: FeatureSet | None = None, **options: Any
) -> OnlineFeatureStore:
    """The online store a URL names: ``redis://...`` (or ``rediss://``) is Redis (``prefix=``
    and ``fallback=`` in ``options``), a path or ``sqlite:///path`` the embedded store, and
    None the embedded store under the project's ``.loopline/``."""
    if url is not None and str(url).startswith(("redis://", "rediss://", "unix://")):
        return RedisFeatureStore(str(url), features=features, **options)
    path: str | Path | None = url
    if isinstance(url, str) and url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    return EmbeddedFeatureStore(path, features, **options)
