"""The embedded store's housekeeping on the update path: expiry of what no window reaches
any more, and a write-ahead log that starts over instead of growing."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopline.core.sqlite_wal import WalCheckpointer
from loopline.features import EmbeddedFeatureStore, compute_offline
from loopline.features.definitions import handbook_features

T0 = datetime(2018, 1, 1)
COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT")


def hourly(days: int) -> list[dict[str, object]]:
    """One transaction an hour, four customers and three terminals taking turns."""
    rows = []
    for i in range(days * 24):
        values = (f"t{i}", T0 + timedelta(hours=i), f"c{i % 4}", f"m{i % 3}", 1.0 + i % 7)
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        tables = ("tx", "ev0", "ev1", "labels")
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def test_expired_rows_go_a_few_at_a_time_and_answers_stay_exact(tmp_path: Path) -> None:
    features = handbook_features()  # the longest reach: 30-day windows + a 7-day delay
    retention = timedelta(days=features.horizon_days + 1)  # grace_days=1
    rows = hourly(60)
    path = tmp_path / "online.sqlite"
    with EmbeddedFeatureStore(path, features) as store:
        store.add_labels([(r["TRANSACTION_ID"], 1.0, r["TX_DATETIME"]) for r in rows[::5]])
        answers = [store.update_and_read(r) for r in rows]
        kept = counts(path)

    last = rows[-1]["TX_DATETIME"]
    assert isinstance(last, datetime)
    live = sum(1 for r in rows if r["TX_DATETIME"] > last - retention)  # type: ignore[operator]
    # everything older than the retention is gone (what is left at most lags by a minute
    # of event time), and nothing younger was touched
    assert live <= kept["tx"] <= live + 1
    assert kept["ev0"] == kept["ev1"] == kept["tx"]
    assert kept["labels"] <= live // 5 + 1
    frauds = [1 if i % 5 == 0 else 0 for i in range(len(rows))]  # the labelled ones
    offline = compute_offline(pd.DataFrame(rows).assign(TX_FRAUD=frauds), features)
    for i, answer in enumerate(answers):
        for name in features.names:
            assert answer[name] == pytest.approx(offline.iloc[i][name], abs=1e-9), (i, name)


def wal_after_writes(path: Path, checkpointer: bool) -> tuple[int, int]:
    """(log size in bytes, truncations) after 2,500 commits, one every moment."""
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    lock = threading.Lock()
    keeper = (
        WalCheckpointer(path, name="test-wal", interval=0.02, lock=lock) if checkpointer else None
    )
    try:
        for k in range(2_500):
            with lock:
                writer.execute("INSERT INTO t VALUES (?, randomblob(3000))", (k,))
            time.sleep(0.0002)  # the next transaction's arrival
    finally:
        if keeper is not None:
            keeper.stop()
        size = Path(f"{path}-wal").stat().st_size
        writer.close()
    return size, keeper.truncations if keeper is not None else 0


def test_the_log_starts_over_under_continuous_writes(tmp_path: Path) -> None:
    """A commit every moment, as at 1,000 updates a second: the checkpointer's rounds
    (and, when they do not get there, one under the writer's lock) let the log start
    over, where without them it holds every commit."""
    unchecked, _ = wal_after_writes(tmp_path / "a.sqlite", checkpointer=False)
    size, truncations = wal_after_writes(tmp_path / "b.sqlite", checkpointer=True)
    assert truncations == 0
    assert size < unchecked / 3, (size, unchecked)
