"""Checkpointing a SQLite write-ahead log off the writer's path.

SQLite's automatic checkpoint copies the log into the database on the commit that finds it
over 1,000 pages, with two fsyncs: that commit, and everything waiting behind it, is late.
A store that writes on a latency path (the decision log, the embedded feature store) turns
it off (``PRAGMA wal_autocheckpoint=0``) and runs a :class:`WalCheckpointer` instead.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from contextlib import AbstractContextManager
from pathlib import Path

__all__ = ["WalCheckpointer"]

_CATCH_UP_ROUNDS = 8


class WalCheckpointer:
    """Checkpoints the log of the SQLite file ``path`` from a daemon thread with its own
    connection, every ``interval`` seconds, so that the log starts over instead of growing.

    A log is only started over by a writer that begins when a checkpoint has copied all of
    it. A single ``PASSIVE`` checkpoint per interval never gets there under continuous
    writes (at 1,000 commits a second one always lands during the copy), so each round
    runs ``PASSIVE`` checkpoints back to back until one finds nothing committed since the
    one before: each copies only what came during the previous one, so they shrink to a
    moment with no commit in it. On the feature store's benchmark this took the largest
    log from 64 MB (where the old bound then held every update for a ``TRUNCATE`` of
    40-200 ms, every ~2 s) to ~9 MB, with no stall.

    ``lock``, the writer's own lock (writers wait on it instead of backing off in SQLite's
    busy handler, sleeps of 1-100 ms, past the end): the rounds can still miss (a writer
    that began during the last one appends after it), so when the log has not started
    over since the previous interval, one more ``PASSIVE`` under the lock copies what the
    rounds left and the next writer starts it over. ``limit`` (bytes) is the last resort,
    for a log that grows all the same (a reader holding an old snapshot keeps it from
    starting over): a ``TRUNCATE`` under ``lock`` once the log passes it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        interval: float = 0.2,
        limit: int | None = None,
        lock: AbstractContextManager[object] | None = None,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self._wal = Path(f"{path}-wal")
        self._limit = limit
        self._lock = lock
        self._interval = interval
        self._stop = threading.Event()
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        #: rounds that needed the writer's lock to finish, and truncations under it
        self.locked_rounds = 0
        self.truncations = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        before = 0  # the log's length (frames) after the previous round
        while not self._stop.wait(self._interval):
            try:
                log = self._catch_up()
                if log >= before and log > 0 and self._lock is not None:
                    # not started over since the last round (a writer began during the
                    # checkpoints): copy the rest under the lock, a millisecond or two
                    with self._lock:
                        log, _ = self._checkpoint("PASSIVE")
                    self.locked_rounds += 1
                before = log
                if self._limit is not None and self._lock is not None and self._too_big():
                    with self._lock:
                        self._checkpoint("TRUNCATE")
                    self.truncations += 1
            except sqlite3.Error:
                continue  # busy or locked: the next round catches up

    def _checkpoint(self, mode: str) -> tuple[int, int]:
        _, log, copied = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return log, copied

    def _catch_up(self) -> int:
        """Checkpoint until a round finds nothing committed since the one before; the
        log's length in frames."""
        seen = -1
        for _ in range(_CATCH_UP_ROUNDS):
            log, copied = self._checkpoint("PASSIVE")
            if log == seen and copied >= log:
                break
            seen = log
        return seen

    def _too_big(self) -> bool:
        try:
            return self._wal.stat().st_size > (self._limit or 0)
        except OSError:
            return False

    def stop(self) -> None:
        """End the thread, checkpoint once more and close the connection (idempotent)."""
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        with contextlib.suppress(sqlite3.ProgrammingError):
            self._db.close()
