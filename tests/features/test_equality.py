"""Online features equal offline ones: the handbook's transactions replayed through each
online store give exactly the offline values; late labels, redelivery, a killed consumer,
erasure and a Redis that is down behave as documented."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopline.errors import LooplineError
from loopline.features import (
    DEGRADED,
    EmbeddedFeatureStore,
    RedisFeatureStore,
    StoreUnavailable,
    compute_offline,
    handbook_features,
    is_degraded,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
FS = handbook_features()
DELAY = timedelta(days=7)
COLUMNS = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Transactions as a stream carries them (the label column rides along, ignored)."""
    return frame[COLUMNS].to_dict("records")


def replay(store: Any, frame: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """Warm ``store`` with the rows before ``start`` (and the labels known by then), then
    replay the rest in time order through ``update_and_read``, each label fed when it
    becomes known: at its transaction's time + the delay, before a transaction at that
    same moment."""
    history, live = frame[frame["TX_DATETIME"] < start], frame[frame["TX_DATETIME"] >= start]
    store.warm(records(history))
    known_at = frame["TX_DATETIME"] + DELAY
    early = frame[known_at < start]
    store.add_labels(
        zip(early["TRANSACTION_ID"], early["TX_FRAUD"], known_at[early.index], strict=True)
    )
    late = frame[known_at >= start]
    events = [
        (t, 0, i, y)
        for t, i, y in zip(
            known_at[late.index], late["TRANSACTION_ID"], late["TX_FRAUD"], strict=True
        )
    ]
    events += [(t, 1, n, None) for n, t in enumerate(live["TX_DATETIME"])]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    stream = records(live)
    answers: list[dict[str, float] | None] = [None] * len(stream)
    last = live["TX_DATETIME"].iloc[-1]
    for when, kind, key, label in events:
        if when > last:
            break
        if kind == 0:
            store.add_label(key, label, when)
        else:
            answers[key] = store.update_and_read(stream[key])
    assert all(a is not None for a in answers)
    return pd.DataFrame(answers, index=live.index)


def max_difference(online: pd.DataFrame, offline: pd.DataFrame) -> float:
    worst = 0.0
    for name in FS.names:
        diff = np.abs(online[name].to_numpy(float) - offline[name].to_numpy(float))
        worst = max(worst, float(diff.max()))
    return worst


def test_replaying_a_day_online_gives_exactly_the_offline_features(
    store: Any, april: pd.DataFrame, april_offline: pd.DataFrame
) -> None:
    online = replay(store, april, pd.Timestamp("2018-04-10"))

    assert len(online) >= 10_000  # 2018-04-10 00:00 .. 04-11 08:00: 11,908 transactions
    assert list(online.columns) == list(FS.names)
    offline = april_offline.loc[online.index]
    assert (offline["TRANSACTION_ID"].to_numpy() == april.loc[online.index, "TRANSACTION_ID"]).all()
    assert max_difference(online, offline) <= 1e-9
    # the slice has frauds in the terminals' delayed windows and a same-second tie
    assert (online["TERMINAL_RISK_7D"] > 0).sum() > 30
    tie = april[april.duplicated(["CUSTOMER_ID", "TX_DATETIME"], keep=False)]
    assert set(tie.index) & set(online.index)


# -- small hand-made streams ----------------------------------------------------------------

T0 = datetime(2018, 1, 1, 12, 0)


def tx(
    tx_id: str, when: datetime, customer: str = "c1", amount: float = 10.0, fraud: int = 0
) -> dict[str, Any]:
    """One transaction at terminal m1."""
    values = (tx_id, when, customer, "m1", amount, fraud)
    return dict(zip(COLUMNS, values, strict=True))


def offline_of(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    return compute_offline(pd.DataFrame(list(rows)), FS).set_index("TRANSACTION_ID")


def test_edges_and_ties_online_equal_offline(store: Any) -> None:
    one_day, us = timedelta(days=1), timedelta(microseconds=1)
    rows = [
        tx("a", T0, amount=1.0, fraud=1),
        tx("b", T0 + one_day - us, amount=2.0),  # a is inside b's 1-day window
        tx("c", T0 + one_day, amount=4.0),  # a is exactly 1 day old: outside (open edge)
        tx("d", T0 + one_day, amount=8.0),  # same time as c, after it: sees c
        tx("e", T0 + 7 * one_day, customer="c2"),  # a exactly 7 days back: inside (closed)
        tx("f", T0 + 8 * one_day, customer="c2"),  # a exactly 8 days back: outside (open)
    ]
    expected = offline_of(rows)
    store.add_label("a", 1, T0 + 7 * one_day)
    got = {r["TRANSACTION_ID"]: store.update_and_read(r) for r in rows}

    assert expected.loc["b", "CUSTOMER_TX_1D"] == 2 and expected.loc["c", "CUSTOMER_TX_1D"] == 2
    assert expected.loc["d", "CUSTOMER_TX_1D"] == 3
    assert expected.loc["d", "CUSTOMER_MEAN_AMOUNT_1D"] == pytest.approx(14 / 3)
    assert expected.loc["e", "TERMINAL_TX_1D"] == 1 and expected.loc["e", "TERMINAL_RISK_1D"] == 1
    assert expected.loc["f", "TERMINAL_TX_1D"] == 3  # b, c, d; not a
    for tx_id, answer in got.items():
        for name in FS.names:
            assert answer[name] == pytest.approx(expected.loc[tx_id, name], abs=1e-12), (
                tx_id,
                name,
            )


def test_a_label_later_than_the_delay_counts_only_from_its_arrival(store: Any) -> None:
    """Offline assumes each label is known exactly `delay` (7) days after its transaction;
    online a label counts from its `known_at` on, never for a transaction before that."""
    rows = [
        tx("fraud", T0, fraud=1),  # its label will only come on day 10
        tx("b", T0 + timedelta(days=7, hours=12)),  # fraud in (t-8d, t-7d]: known offline
        tx("c", T0 + timedelta(days=9, hours=23)),  # after the label was sent, before known_at
        tx("d", T0 + timedelta(days=10, hours=1)),  # after known_at: counts now
    ]
    offline = offline_of(rows)
    arrival = T0 + timedelta(days=10)

    store.update_and_read(rows[0])
    b = store.update_and_read(rows[1])
    store.add_label("fraud", 1, arrival)  # sent now, known from day 10 on
    c = store.update_and_read(rows[2])
    d = store.update_and_read(rows[3])

    assert offline.loc["b", "TERMINAL_RISK_1D"] == 1.0  # offline: known after 7 days
    assert b["TERMINAL_TX_1D"] == 1 and b["TERMINAL_RISK_1D"] == 0.0  # online: not yet
    assert offline.loc["c", "TERMINAL_RISK_7D"] == 1.0
    assert c["TERMINAL_TX_7D"] == 1 and c["TERMINAL_RISK_7D"] == 0.0  # before known_at
    assert d["TERMINAL_TX_7D"] == offline.loc["d", "TERMINAL_TX_7D"] == 1
    assert d["TERMINAL_RISK_7D"] == offline.loc["d", "TERMINAL_RISK_7D"] == 1.0
    assert store.update_and_read(rows[1]) == b  # a redelivered b keeps its first answer


def test_a_label_before_its_transaction_waits_for_it(store: Any) -> None:
    store.add_label("early", 1, T0 + timedelta(days=1))
    store.update_and_read(tx("early", T0, fraud=1))
    later = store.update_and_read(tx("x", T0 + timedelta(days=7, hours=1)))
    assert later["TERMINAL_TX_1D"] == 1 and later["TERMINAL_RISK_1D"] == 1.0
    store.add_label("early", 0, T0 + timedelta(days=2))  # corrected: the latest label wins
    again = store.update_and_read(tx("y", T0 + timedelta(days=7, hours=2)))
    assert again["TERMINAL_TX_1D"] == 1 and again["TERMINAL_RISK_1D"] == 0.0


def test_a_redelivered_transaction_changes_nothing(store: Any, april: pd.DataFrame) -> None:
    stream = records(april.iloc[:1_500])
    first = [store.update_and_read(r) for r in stream[:1_000]]
    again = [store.update_and_read(r) for r in stream[500:1_000]]  # redelivered
    store.warm(stream[:1_000])  # and warmed again
    rest = [store.update_and_read(r) for r in stream[1_000:]]

    assert again == first[500:]
    offline = compute_offline(april.iloc[:1_500], FS)
    online = pd.DataFrame(first + rest)
    assert max_difference(online, offline) <= 1e-9


# -- failures -------------------------------------------------------------------------------


def test_redis_down_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable, match=r"Redis at redis://127\.0\.0\.1:1/0 failed"):
        RedisFeatureStore("redis://127.0.0.1:1/0", "x", FS, timeout_s=0.2)


def test_redis_down_with_the_degraded_fallback_marks_the_answer() -> None:
    store = RedisFeatureStore("redis://127.0.0.1:1/0", "x", FS, fallback="degraded", timeout_s=0.2)
    answer = store.update_and_read(tx("a", datetime(2018, 4, 1, 3, 0)))  # a Sunday night

    assert is_degraded(answer) and answer[DEGRADED] == 1.0
    assert answer["TX_DURING_WEEKEND"] == 1.0 and answer["TX_DURING_NIGHT"] == 1.0
    assert all(math.isnan(answer[n]) for n in FS.names if n.startswith(("CUSTOMER", "TERMINAL")))
    with pytest.raises(StoreUnavailable):  # a label is never dropped silently
        store.add_label("a", 1, datetime(2018, 4, 8))
    with pytest.raises(StoreUnavailable):  # nor an erasure
        store.forget("c1")


class Proxy:
    """A TCP relay to the local Redis that can be cut and restored (Redis "down")."""

    def __init__(self, port: int = 6379) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = True
        self.links: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def cut(self) -> None:
        self.up = False
        for link in self.links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
        self.links = []

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_redis_going_down_mid_stream_loses_and_double_counts_nothing(redis_prefix: str) -> None:
    proxy = Proxy()
    url = f"redis://127.0.0.1:{proxy.port}/0"
    store = RedisFeatureStore(url, redis_prefix, FS, timeout_s=0.5)
    rows = [tx(f"t{i}", T0 + timedelta(hours=i), amount=float(i)) for i in range(6)]
    try:
        for row in rows[:3]:
            store.update_and_read(row)
        proxy.cut()  # Redis goes away
        with pytest.raises(StoreUnavailable, match=r"Redis at .* failed while updating"):
            store.update_and_read(rows[3])
        proxy.up = True  # back: the consumer delivers the transaction again
        answers = [store.update_and_read(row) for row in rows[3:]]
    finally:
        store.close()
        proxy.close()

    assert [a["CUSTOMER_TX_1D"] for a in answers] == [4, 5, 6]
    assert answers[-1]["CUSTOMER_MEAN_AMOUNT_1D"] == pytest.approx(2.5)


def test_another_feature_set_under_the_same_store_is_refused(
    tmp_path: Path, redis_prefix: str
) -> None:
    other = handbook_features(windows=(1, 2))
    EmbeddedFeatureStore(tmp_path / "s.sqlite", FS).close()
    with pytest.raises(LooplineError, match="holds another feature set"):
        EmbeddedFeatureStore(tmp_path / "s.sqlite", other)
    RedisFeatureStore(REDIS_URL, redis_prefix, FS).close()
    with pytest.raises(LooplineError, match="holds another feature set"):
        RedisFeatureStore(REDIS_URL, redis_prefix, other)


CONSUMER = textwrap.dedent(
    """
    import json, sys
    from loopline.features import EmbeddedFeatureStore
    store = EmbeddedFeatureStore(sys.argv[1])
    for line in open(sys.argv[2]):
        row = json.loads(line)
        store.update_and_read(row)
        print(row["TRANSACTION_ID"], flush=True)
    """
)


def test_the_embedded_store_survives_sigkill_without_double_counting(
    tmp_path: Path, april: pd.DataFrame
) -> None:
    frame = april.iloc[:3_000].assign(TX_DATETIME=lambda f: f["TX_DATETIME"].astype(str))
    stream = records(frame)
    feed = tmp_path / "stream.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in stream))
    path = tmp_path / "killed.sqlite"
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(path), str(feed)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert consumer.stdout is not None
    for done, _ in enumerate(consumer.stdout, start=1):
        if done == 1_200:
            consumer.send_signal(signal.SIGKILL)  # mid-stream, no clean-up
            break
    consumer.wait(timeout=60)
    assert consumer.returncode == -signal.SIGKILL

    # the restarted consumer gets everything again from the start (at-least-once)
    with EmbeddedFeatureStore(path) as store:
        answers = [store.update_and_read(r) for r in stream]
        counted = store._db.execute("SELECT count(*) FROM ev0").fetchone()[0]
    assert counted == len(stream)
    offline = compute_offline(april.iloc[:3_000], FS)
    assert max_difference(pd.DataFrame(answers), offline) <= 1e-9


def test_forget_erases_the_subject(store: Any, tmp_path: Path, redis_conn: Any) -> None:
    who = "cust-erase-me-4711"
    for i in range(3):
        store.update_and_read(tx(f"e{i}", T0 + timedelta(hours=i), customer=who, amount=99.5))
    store.update_and_read(tx("other", T0, customer="someone-else"))

    assert store.forget(who, dry_run=True) == 3
    assert store.forget(who) == 3
    assert store.forget(who, dry_run=True) == 0
    after = store.update_and_read(tx("e9", T0 + timedelta(hours=5), customer=who))
    assert after["CUSTOMER_TX_1D"] == 1 and after["CUSTOMER_MEAN_AMOUNT_1D"] == 10.0
    assert after["TERMINAL_TX_1D"] == 0  # the terminal's own state is not the subject's
    assert store.forget(who) == 1
    if isinstance(store, EmbeddedFeatureStore):
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("online.sqlite*"))
        assert who.encode() not in raw  # overwritten (secure_delete), WAL checkpointed
    else:
        client = redis_conn
        assert not list(client.scan_iter(match=f"*{who}*"))
        assert client.hget("{" + store.prefix + "}:tx:e1", "f") is None
