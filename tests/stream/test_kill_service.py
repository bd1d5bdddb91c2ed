"""The decision service SIGKILLed while transactions keep coming: every transaction the
broker saw acknowledged has its decision in the decision log (a decision is durable
before it is answered), every review decision has its review task (one transaction), and
after a restart each transaction is decided exactly once."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from _support import REDIS_URL, transactions

from loopline.stream import open_sink
from loopline.stream.message import encode_body
from loopline.stream.replay import send_at_rate

HELPER = Path(__file__).with_name("_service_proc.py")
TOTAL = 2_400
RATE = 800.0


def service(tmp_path: Path, stream: str, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, str(HELPER),
        "--stream", stream,
        "--consumer", name,
        "--metadata", f"sqlite:///{tmp_path / 'metadata.db'}",
        "--features", str(tmp_path / "features"),
        "--predictions", str(tmp_path / "predictions"),
        "--model", str(tmp_path / "model.pkl"),
        *extra,
    ]  # fmt: skip


def query(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "metadata.db", timeout=30) as conn:
        return conn.execute(sql).fetchall()


def entry_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, seq = text.split("-")
    return int(ms), int(seq)


def test_sigkill_under_load_every_acknowledged_decision_is_in_the_log(
    tmp_path: Path, stream_name: str, soft_model: Any, redis_client: Any
) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(soft_model))
    ready = tmp_path / "ready"
    victim = subprocess.Popen(
        service(tmp_path, stream_name, "w1", "--ready", str(ready), "--idle", "600"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        if victim.poll() is not None or time.monotonic() > deadline:
            victim.kill()
            pytest.fail(f"the service did not start: {victim.communicate()}")
        time.sleep(0.05)

    bodies = [encode_body(r) for r in transactions(TOTAL, customers=50)]

    async def produce() -> None:
        async with open_sink(f"{REDIS_URL}?stream={stream_name}") as sink:
            await send_at_rate(sink, bodies, rate=RATE, chunk=20)

    producer = threading.Thread(target=lambda: asyncio.run(produce()))
    producer.start()
    # Kill it mid-stream, wherever it is: reading, deciding, committing or acknowledging.
    while query(tmp_path, "SELECT count(*) FROM decisions")[0][0] < TOTAL // 3:
        assert victim.poll() is None, victim.communicate()
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    producer.join(timeout=60)
    assert victim.returncode == -signal.SIGKILL

    decided = {str(tx) for (tx,) in query(tmp_path, "SELECT tx_id FROM decisions")}
    group = redis_client.xinfo_groups(stream_name)[0]
    delivered = entry_key(group["last-delivered-id"])
    pending = {
        entry_key(p["message_id"])
        for p in redis_client.xpending_range(stream_name, "loopline", "-", "+", TOTAL)
    }
    acknowledged = [
        str(orjson.loads(fields[b"payload"])["TRANSACTION_ID"])
        for entry, fields in redis_client.xrange(stream_name)
        if entry_key(entry) <= delivered and entry_key(entry) not in pending
    ]
    assert len(acknowledged) >= TOTAL // 3 - 64  # the killed service had answered these
    assert set(acknowledged) <= decided  # every answered transaction's decision is durable
    reviews = query(tmp_path, "SELECT tx_id FROM decisions WHERE action = 'review'")
    tasks = query(tmp_path, "SELECT item_id FROM label_tasks")
    assert {t for (t,) in reviews} == {t for (t,) in tasks}  # decided and queued together

    # Another instance takes the dead one's pending entries over and decides the rest.
    done = subprocess.run(
        service(tmp_path, stream_name, "w2", "--claim-idle-ms", "1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = dict(query(tmp_path, "SELECT tx_id, count(*) FROM decisions GROUP BY tx_id"))
    assert sorted(counts, key=int) == [str(i) for i in range(TOTAL)]  # nothing lost
    assert set(counts.values()) == {1}  # nothing decided twice
    assert redis_client.xpending(stream_name, "loopline")["pending"] == 0
    reviews = query(tmp_path, "SELECT tx_id FROM decisions WHERE action = 'review'")
    tasks = query(tmp_path, "SELECT item_id FROM label_tasks")
    assert {t for (t,) in reviews} == {t for (t,) in tasks} and reviews
