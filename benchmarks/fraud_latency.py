"""Fraud latency path: message in -> PII masked -> features read and updated -> scored ->
decision committed, through Redis Streams, measured end to end.

Data: the Fraud Detection Handbook's simulated transactions
(``../shared/data/fraud/fraud_handbook_simulated/transactions_2018-04.csv.gz``), in file
order. What runs:

- **Set-up (not timed).** The first ``--warm`` transactions are masked (the real
  :class:`loopline.data.pii.PiiMasker`: ``CUSTOMER_ID`` becomes a keyed pseudonym) and fed
  through the real embedded online feature store (:class:`loopline.features.
  EmbeddedFeatureStore`, SQLite, durable), so the windows have history; a logistic
  regression (scikit-learn, standardised inputs) is fitted on those transactions' 14
  handbook features and amount. The model stands in for part 2's model.
- **One consumer process** (this script with ``--role consumer``, started apart from the
  producer): :class:`loopline.stream.consumer.Consumer` reading the stream as one member of
  a consumer group (``--redis-client direct``: redis-py, the default; ``faststream``:
  faststream's stream subscriber), validating, masking, updating and reading the features
  in the same store, scoring, writing each batch's decisions in one SQLite transaction
  (the project's metadata database) and acknowledging.
- **Phase 1, steady rate.** The producer (this process) sends the next ``--rate`` x
  ``--seconds`` transactions at ``--rate`` per second (an absolute schedule), each stamped
  ``produced_at`` when it is handed to Redis (``XADD``).
- **Phase 2, as fast as one consumer goes.** The producer adds the next ``--backlog``
  transactions at once; the consumer drains them.

Latency of a transaction = its decision row's ``decided_at`` (stamped when the batch's
insert runs; the commit follows at once) - its ``produced_at``. Phase 1 gives p50/p99
(targets: p99 < 10 ms at 1,000 tx/s); phase 2 gives the sustained maximum, decisions per
second from the first to the last commit of the drain (target: >= 3,000 tx/s). Every
decision of both phases is checked to be there exactly once.

    .venv/bin/python benchmarks/fraud_latency.py [--rate 1000] [--seconds 20]
        [--backlog 30000] [--warm 40000] [--batch-size 256] [--redis-client direct|faststream]

Needs Redis on 127.0.0.1:6379 (``--redis URL``); the stream and its consumer group are new
for each run and deleted afterwards. The last line is JSON: ``p50_ms_1000``,
``p99_ms_1000``, ``max_tps``, the phase figures, what ran (masker, features, model, Redis
client) and ``machine`` (cores, load averages, versions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _machine import machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "fraud" / "fraud_handbook_simulated"
BENCH_KEY = "1:fraud-latency-benchmark-key-0123456789"
POLICY = {
    "name": "handbook",
    "columns": {
        "CUSTOMER_ID": {"kind": "identifier", "pii": "customer_id"},
        "TERMINAL_ID": "keep",
    },
    "scan": [],
    "unknown": "keep",
}
LABELS = ("TX_FRAUD", "TX_FRAUD_SCENARIO")  # the simulator's labels never go on the stream


def _masker() -> Any:
    from loopline.data.pii import PiiMasker

    return PiiMasker(POLICY, BENCH_KEY)


# -- the consumer process ---------------------------------------------------------------------
def run_consumer(args: argparse.Namespace) -> None:
    from loopline.features import EmbeddedFeatureStore
    from loopline.stream import open_source
    from loopline.stream.consumer import Consumer
    from loopline.stream.decisions import DecisionLog

    work = Path(args.dir)
    model = pickle.loads((work / "model.pkl").read_bytes())
    url = f"{args.redis}?stream={args.stream}&consumer=bench&client={args.redis_client}"
    source = open_source(url, batch_size=args.batch_size, poll_timeout=0.05)
    log = DecisionLog(
        f"sqlite:///{work / 'metadata.db'}", source=source.name, model_name="lr", model_version="1"
    )
    consumer = Consumer(
        source,
        model=model,
        decisions=log,
        features=EmbeddedFeatureStore(work / "features"),
        masker=_masker(),
        batch_size=args.batch_size,
    )

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        (work / "ready").write_text("ready")
        await consumer.run(stop=stop, freeze_gc=True)  # as `loopline stream consume` does

    asyncio.run(main())
    summary = consumer.stats.summary()
    print(json.dumps(summary), flush=True)


# -- the producer and the measurement ------------------------------------------------------------
def prepare(work: Path, warm: int) -> tuple[list[dict[str, Any]], float]:
    """Warm the feature store, fit the model; returns the transactions left to stream."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from loopline.features import EmbeddedFeatureStore
    from loopline.stream.schema import Transaction, check

    started = time.perf_counter()
    frame = pd.read_csv(DATA / "transactions_2018-04.csv.gz")
    records = frame.to_dict("records")
    masker = _masker()
    store = EmbeddedFeatureStore(work / "features")
    rows, labels = [], []
    for record in records[:warm]:
        parsed, problem = check(Transaction, record)
        assert parsed is not None, problem
        masked = masker.mask_record({k: v for k, v in parsed.items() if k not in LABELS})
        rows.append({"TX_AMOUNT": masked["TX_AMOUNT"], **store.update_and_read(masked)})
        labels.append(int(record["TX_FRAUD"]))
    store.close()
    train = pd.DataFrame(rows)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(train, labels)
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    stream = [{k: v for k, v in r.items() if k not in LABELS} for r in records[warm:]]
    return stream, time.perf_counter() - started


def decided(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


def wait_for(db: Path, count: int, timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while decided(db) < count:
        if proc.poll() is not None:
            raise SystemExit(f"the consumer died: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {decided(db)} of {count} decided after {timeout} s")
        time.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["producer", "consumer"], default="producer")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=30_000)
    parser.add_argument("--warm", type=int, default=40_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-client", choices=["direct", "faststream"], default="direct")
    parser.add_argument("--stream")
    parser.add_argument("--dir")
    args = parser.parse_args()
    if args.role == "consumer":
        run_consumer(args)
        return

    import redis

    from loopline.stream import open_sink
    from loopline.stream.message import encode_body
    from loopline.stream.replay import send_at_rate

    work = Path(tempfile.mkdtemp(prefix="fraud-latency-"))
    stream = f"bench-fraud-{uuid.uuid4().hex[:8]}"
    steady = int(args.rate * args.seconds)
    transactions, setup_s = prepare(work, args.warm)
    if len(transactions) < steady + args.backlog:
        raise SystemExit(f"the data holds {len(transactions)} transactions after the warm-up")
    print(
        f"set-up: {args.warm} transactions warmed the feature store, model fitted ({setup_s:.1f} s)"
    )
    bodies = [encode_body(t) for t in transactions[: steady + args.backlog]]
    db = work / "metadata.db"

    client = redis.Redis.from_url(args.redis)
    cmd = [
        sys.executable, __file__, "--role", "consumer", "--dir", str(work), "--stream", stream,
        "--redis", args.redis, "--redis-client", args.redis_client,
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (work / "ready").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the consumer did not start: {proc.communicate()}")
            time.sleep(0.1)
        time.sleep(1.0)  # the group is created and the first XREADGROUP is waiting

        async def produce(part: list[bytes], rate: float) -> Any:
            async with open_sink(f"{args.redis}?stream={stream}") as sink:
                return await send_at_rate(sink, part, rate=rate, chunk=500)

        print(f"phase 1: {steady} transactions at {args.rate:.0f}/s ...", flush=True)
        sent1 = asyncio.run(produce(bodies[:steady], args.rate))
        wait_for(db, steady, 120, proc)
        print(f"phase 2: {args.backlog} transactions at once ...", flush=True)
        sent2 = asyncio.run(produce(bodies[steady:], 0))
        wait_for(db, steady + args.backlog, 600, proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        consumer = json.loads(out.strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
        client.delete(stream, f"{stream}:dead")
        client.close()

    import sqlite3
    from datetime import datetime

    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT tx_id, produced_at, decided_at FROM decisions").fetchall()
    rows = []
    for tx_id, produced, committed in stored:
        produced_at = datetime.fromisoformat(produced).timestamp()
        decided_at = datetime.fromisoformat(committed).timestamp()
        rows.append((int(tx_id), (decided_at - produced_at) * 1000, decided_at))
    shutil.rmtree(work, ignore_errors=True)
    ids = sorted(r[0] for r in rows)
    first_id = int(transactions[0]["TRANSACTION_ID"])
    assert ids == list(range(first_id, first_id + steady + args.backlog)), "lost or extra rows"
    boundary = first_id + steady
    phase1 = [r[1] for r in rows if r[0] < boundary]
    commits2 = [r[2] for r in rows if r[0] >= boundary]
    span2 = max(commits2) - min(commits2)
    max_tps = args.backlog / span2 if span2 > 0 else float("inf")
    p50, p99 = percentile(phase1, 50), percentile(phase1, 99)

    print(
        f"phase 1: sent {sent1.sent} at {sent1.rate:.0f}/s; produced -> committed "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(phase1):.1f} ms (target p99 < 10 ms)"
    )
    print(
        f"phase 2: {args.backlog} sent in {sent2.seconds:.2f} s; one consumer decided them in "
        f"{span2:.2f} s: {max_tps:.0f} tx/s sustained (target >= 3,000)"
    )
    print(
        f"consumer: {consumer['batches']} batches, {consumer['decided']} decided, "
        f"{consumer['duplicates']} duplicates, {consumer['dead_lettered']} dead letters; "
        f"every transaction decided exactly once"
    )
    print(json.dumps({
        "p50_ms_1000": round(p50, 3),
        "p99_ms_1000": round(p99, 3),
        "max_tps": round(max_tps, 1),
        "rate": args.rate,
        "seconds": args.seconds,
        "sent_rate_1000": round(sent1.rate, 1),
        "max_ms_1000": round(max(phase1), 3),
        "backlog": args.backlog,
        "drain_s": round(span2, 3),
        "batch_size": args.batch_size,
        "batches": consumer["batches"],
        "redis_client": args.redis_client,
        "masker": "loopline.data.pii.PiiMasker (CUSTOMER_ID pseudonymised)",
        "features": "loopline.features.EmbeddedFeatureStore (handbook set, SQLite)",
        "model": "scikit-learn StandardScaler + LogisticRegression (stand-in for part 2)",
        "decision_log": "SQLite metadata database, one transaction per batch",
        "machine": machine_info(
            load_start, ["loopline", "redis", "hiredis", "faststream", "scikit-learn", "pandas"]
        ),
    }))  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
