"""A consumer killed with SIGKILL in the middle of a batch, then restarted: every
transaction is decided exactly once, and the online features counted each one once."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from _support import REDIS_URL, customer_counts, transactions

from loopline.stream import open_sink
from loopline.stream.message import encode_body

HELPER = Path(__file__).with_name("_consumer_proc.py")
TOTAL = 160


def consumer(tmp_path: Path, stream: str, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(HELPER),
        "--stream", stream,
        "--consumer", name,
        "--metadata", f"sqlite:///{tmp_path / 'metadata.db'}",
        "--features", str(tmp_path / "features"),
        "--model", str(tmp_path / "model.pkl"),
        *extra,
    ]  # fmt: skip


def decision_counts(tmp_path: Path) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'metadata.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT tx_id, count(*) FROM decisions GROUP BY tx_id"))
        counts = {str(tx): int(n) for tx, n in rows}
    engine.dispose()
    return counts


@pytest.mark.parametrize(
    ("phase", "restart_as", "claim_idle_ms"),
    [
        # Killed while updating features inside a batch; restarted under the same name,
        # it reads its own pending entries again (XREADGROUP 0).
        ("features", "worker-1", "30000"),
        # Killed after committing a batch's decisions, before acknowledging them; another
        # consumer takes the dead one's pending entries over (XAUTOCLAIM).
        ("ack", "worker-2", "1"),
    ],
)
def test_sigkill_mid_batch_then_restart_decides_every_transaction_exactly_once(
    phase: str,
    restart_as: str,
    claim_idle_ms: str,
    tmp_path: Path,
    stream_name: str,
    feature_model: Any,
    masker: Any,
    redis_client: Any,
) -> None:
    from loopline.features import EmbeddedFeatureStore

    (tmp_path / "model.pkl").write_bytes(pickle.dumps(feature_model))

    async def produce() -> None:
        async with open_sink(f"{REDIS_URL}?stream={stream_name}") as sink:
            await sink.send([encode_body(r) for r in transactions(TOTAL)])

    asyncio.run(produce())

    marker = tmp_path / "marker"
    hang_after = "70" if phase == "features" else "3"  # the 70th transaction; the 3rd batch
    victim = subprocess.Popen(
        consumer(
            tmp_path, stream_name, "worker-1",
            "--marker", str(marker), "--hang-phase", phase, "--hang-after", hang_after,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():
        if victim.poll() is not None or time.monotonic() > deadline:
            victim.kill()
            out, err = victim.communicate()
            pytest.fail(f"the consumer never reached the kill point: {out!r} {err!r}")
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    before = decision_counts(tmp_path)
    pending = redis_client.xpending(stream_name, "loopline")["pending"]
    assert 0 < len(before) < TOTAL  # killed mid-stream
    assert pending == 16  # exactly the batch in flight is still pending
    if phase == "features":
        assert len(before) == 64  # 4 batches of 16 committed; the 5th was in its features
    else:
        assert len(before) == 48  # the 3rd batch committed, not acknowledged

    done = subprocess.run(
        consumer(tmp_path, stream_name, restart_as, "--claim-idle-ms", claim_idle_ms),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])

    after = decision_counts(tmp_path)
    assert sorted(after, key=int) == [str(i) for i in range(TOTAL)]  # nothing lost
    assert set(after.values()) == {1}  # nothing decided twice
    assert summary["decided"] == TOTAL - len(before)
    assert summary["duplicates"] == (16 if phase == "ack" else 0)
    assert redis_client.xpending(stream_name, "loopline")["pending"] == 0
    # The online features counted each transaction once, the half-done batch included.
    store = EmbeddedFeatureStore(tmp_path / "features")
    assert customer_counts(store, masker, range(100, 105)) == dict.fromkeys(
        range(100, 105), TOTAL // 5
    )
