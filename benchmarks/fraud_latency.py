"""Fraud latency path: message in -> PII masked -> features read and updated -> decided by the
decision service (the real fast model) -> decision committed, through Redis Streams,
measured end to end; and what durability costs.

Data: the Fraud Detection Handbook's simulated transactions
(``../shared/data/fraud/fraud_handbook_simulated/``). What runs:

- **Set-up (not timed).** A fresh project (``loopline.yaml`` with a ``fraud`` section and
  a PII policy: ``CUSTOMER_ID`` pseudonymised). The fast model is trained by a Loopline
  pipeline of library steps on **April**: ``read_pii_table`` (masked at the door) ->
  ``compute_features`` (the handbook's 14, offline, DuckDB) -> time ``split`` (last
  quarter for the test, a 7-day gap) -> ``train`` (scikit-learn ``StandardScaler`` +
  ``LogisticRegression`` on the 14 features and the amount) -> ``evaluate`` -> ``gate`` ->
  ``register`` as **fraud-fast** (champion). The embedded online feature store is warmed
  with every April transaction (masked) and April's frauds as labels known 7 days after
  each one.
- **The decision service** in its own process (this script with ``--role consumer``):
  ``loopline.stream.service.open_consumer`` on the project, exactly what
  ``loopline stream consume`` runs: validate, mask, update and read the features, the
  decision policy (fraud-fast@champion loaded from the registry; thresholds review 0.5,
  block 0.9; no heavy model), the decision rows (both models, masked features,
  thresholds, action, reason) with the review tasks in one transaction per batch, then
  the acknowledgement and the prediction-log records.
- **Phase 1, steady rate.** May's transactions in file order, ``--rate`` per second for
  ``--seconds`` (an absolute schedule), each stamped ``produced_at`` at ``XADD``.
- **Phase 2, as fast as one consumer goes.** The next ``--backlog`` at once.

Latency of a transaction = its decision row's ``decided_at`` (stamped when the batch's
insert runs; the commit follows at once) - its ``produced_at``. Phase 1 gives p50/p99
(target: p99 < 10 ms at 1,000 tx/s); phase 2 the sustained maximum (decisions per second
from the first to the last commit of the drain). Every decision of both phases is checked
to be there exactly once.

``--durability`` picks how decisions are made durable (``fraud.group_commit``):
``batch-normal`` (the default: one transaction per batch, SQLite ``synchronous=NORMAL``:
survives a killed process), ``batch-full`` (+ an fsync per commit: survives a power cut),
``each-normal`` / ``each-full`` (one transaction per decision), or ``all`` (each in turn,
on copies of the same prepared project).

    .venv/bin/python benchmarks/fraud_latency.py [--rate 1000] [--seconds 20]
        [--backlog 30000] [--batch-size 256] [--redis-client direct|faststream]
        [--durability batch-normal|batch-full|each-normal|each-full|all]

Needs Redis on 127.0.0.1:6379 (``--redis URL``); the streams and consumer groups are new
for each run and deleted afterwards. The last line is JSON: ``p50_ms_1000``,
``p99_ms_1000``, ``max_tps`` (of the first mode), one entry per durability mode under
``modes``, what ran, and ``machine`` (cores, load averages, versions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _machine import load_average, machine_info, start_load

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
MODES = {
    "batch-normal": {"commit": "batch", "synchronous": "NORMAL"},
    "batch-full": {"commit": "batch", "synchronous": "FULL"},
    "each-normal": {"commit": "each", "synchronous": "NORMAL"},
    "each-full": {"commit": "each", "synchronous": "FULL"},
}


def _config(mode: str, batch_size: int) -> dict[str, Any]:
    return {
        "pii": {"policy": POLICY},
        "fraud": {
            "fast_model": "fraud-fast@champion",
            "heavy_model": None,
            "features": "embedded",
            "thresholds": {"review": 0.5, "block": 0.9},
            "review_queue": "fraud-review",
            "group_commit": {**MODES[mode], "batch_size": batch_size},
        },
    }


# -- the consumer process ---------------------------------------------------------------------
def run_consumer(args: argparse.Namespace) -> None:
    from loopline.config import load_settings
    from loopline.stream.service import open_consumer

    project = Path(args.dir)
    settings = load_settings(project)
    url = f"{args.redis}?stream={args.stream}&consumer=bench&client={args.redis_client}"
    consumer = open_consumer(settings, url)
    assert consumer.policy.fast is not None, consumer.policy.fast_error

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        (project / "ready").write_text("ready")
        await consumer.run(stop=stop, freeze_gc=True)  # as `loopline stream consume` does

    try:
        asyncio.run(main())
    finally:
        consumer.close()
    summary = consumer.stats.summary()
    summary["fast_model"] = f"{consumer.policy.fast_name} v{consumer.policy.fast.version}"
    print(json.dumps(summary), flush=True)


# -- set-up ---------------------------------------------------------------------------------
FEATURES = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *(f"CUSTOMER_{k}_{d}D" for d in (1, 7, 30) for k in ("TX", "MEAN_AMOUNT")),
    *(f"TERMINAL_{k}_{d}D" for d in (1, 7, 30) for k in ("TX", "RISK")),
]


def train_fast_model(project: Path) -> dict[str, Any]:
    """fraud-fast: a Loopline pipeline of library steps on April (see the module)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from loopline import pipeline
    from loopline.config import load_settings
    from loopline.steps import (
        compute_features,
        evaluate,
        gate,
        profile,
        read_pii_table,
        register,
        split,
        train,
    )

    @pipeline(name="fraud-fast")
    def fraud_fast(source: str, model_name: str = "fraud-fast") -> None:
        tx = compute_features(
            read_pii_table(source, dataset="transactions", parse_dates=["TX_DATETIME"])
        )
        train_df, test_df = split(tx, by="time", time="TX_DATETIME", test_size=0.25, gap="7D")
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model = train(train_df, model=lr, features=FEATURES, target="TX_FRAUD")
        metrics = evaluate(model, test_df, k=100)
        decision = gate(model, test_df, metrics, model_name=model_name,
                        metric="average_precision")  # fmt: skip
        register(model, decision, example=test_df, reference=profile(model, test_df))

    result = fraud_fast.run(
        load_settings(project), source=str(DATA / "transactions_2018-04.csv.gz")
    )
    decision = result.load("gate")
    return {
        "run_id": result.run_id,
        "gate": {k: decision.get(k) for k in ("passed", "metric", "candidate")},
    }


def warm_store(project: Path, april: Any) -> None:
    """The embedded store with every April transaction and April's frauds as labels known
    7 days after each one (what a live system would know on May 1st)."""
    import pandas as pd

    from loopline.data.pii import PiiMasker
    from loopline.features import EmbeddedFeatureStore

    masker = PiiMasker(POLICY, BENCH_KEY)
    masked = masker.mask_frame(april.drop(columns=list(LABELS)))
    store = EmbeddedFeatureStore(project / ".loopline" / "features")
    store.warm(masked.to_dict("records"))
    frauds = april[april["TX_FRAUD"] == 1]
    known = pd.to_datetime(frauds["TX_DATETIME"]) + pd.Timedelta(days=7)
    store.add_labels(zip(frauds["TRANSACTION_ID"], [1.0] * len(frauds), known, strict=True))
    store.close()


def prepare(work: Path, batch_size: int) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """The project with fraud-fast registered and the store warmed; May's transactions."""
    import pandas as pd
    import yaml

    started = time.perf_counter()
    project = work / "prepared"
    project.mkdir()
    (project / "loopline.yaml").write_text(yaml.safe_dump(_config("batch-normal", batch_size)))
    trained = train_fast_model(project)
    april = pd.read_csv(DATA / "transactions_2018-04.csv.gz")
    warm_store(project, april)
    may = pd.read_csv(DATA / "transactions_2018-05.csv.gz")
    stream = [{k: v for k, v in r.items() if k not in LABELS} for r in may.to_dict("records")]
    trained["setup_s"] = round(time.perf_counter() - started, 1)
    return project, stream, trained


# -- the measurement --------------------------------------------------------------------------
def decided(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


def wait_for(db: Path, count: int, timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while decided(db) < count:
        if proc.poll() is not None:
            raise SystemExit(f"the consumer died (exit {proc.returncode}): {proc.communicate()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {decided(db)} of {count} decided after {timeout} s")
        time.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def measure(
    args: argparse.Namespace, mode: str, prepared: Path, work: Path, bodies: list[bytes]
) -> dict[str, Any]:
    """One durability mode on a copy of the prepared project."""
    import sqlite3
    from datetime import datetime

    import redis
    import yaml

    from loopline.stream import open_sink
    from loopline.stream.replay import send_at_rate

    project = work / mode
    shutil.copytree(prepared, project)
    (project / "loopline.yaml").write_text(yaml.safe_dump(_config(mode, args.batch_size)))
    stream = f"bench-fraud-{uuid.uuid4().hex[:8]}"
    steady = int(args.rate * args.seconds)
    db = project / ".loopline" / "metadata.db"
    client = redis.Redis.from_url(args.redis)
    load_start = load_average()
    cmd = [
        sys.executable, __file__, "--role", "consumer", "--dir", str(project), "--stream", stream,
        "--redis", args.redis, "--redis-client", args.redis_client,
    ]  # fmt: skip
    env = dict(os.environ, LOOPLINE_PII_KEY=BENCH_KEY, MLFLOW_DISABLE_TELEMETRY="true")
    errors = open(work / f"{mode}.stderr", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
    before = decided(db)
    try:
        deadline = time.monotonic() + 180
        while not (project / "ready").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the consumer did not start: {proc.communicate()}")
            time.sleep(0.1)
        time.sleep(1.0)  # the group is created and the first XREADGROUP is waiting

        async def produce(part: list[bytes], rate: float) -> Any:
            async with open_sink(f"{args.redis}?stream={stream}") as sink:
                return await send_at_rate(sink, part, rate=rate, chunk=500)

        print(f"[{mode}] phase 1: {steady} transactions at {args.rate:.0f}/s ...", flush=True)
        sent1 = asyncio.run(produce(bodies[:steady], args.rate))
        wait_for(db, before + steady, max(120.0, steady / 20), proc)
        print(f"[{mode}] phase 2: {args.backlog} transactions at once ...", flush=True)
        sent2 = asyncio.run(produce(bodies[steady:], 0))
        wait_for(db, before + steady + args.backlog, max(600.0, args.backlog / 20), proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        consumer = json.loads(out.strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
        client.delete(stream, f"{stream}:dead")
        client.close()
        errors.close()
    load_end = load_average()

    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT tx_id, produced_at, decided_at FROM decisions WHERE produced_at IS NOT NULL"
        ).fetchall()
        actions = dict(conn.execute("SELECT action, count(*) FROM decisions GROUP BY action"))
        tasks = conn.execute("SELECT count(*) FROM label_tasks").fetchone()[0]
    rows = []
    for tx_id, produced, committed in stored:
        produced_at = datetime.fromisoformat(produced).timestamp()
        decided_at = datetime.fromisoformat(committed).timestamp()
        rows.append((int(tx_id), (decided_at - produced_at) * 1000, decided_at))
    ids = sorted(r[0] for r in rows)
    first_id = json.loads(bodies[0])["TRANSACTION_ID"]
    assert ids == list(range(first_id, first_id + steady + args.backlog)), "lost or extra rows"
    boundary = first_id + steady
    phase1 = [r[1] for r in rows if r[0] < boundary]
    commits2 = [r[2] for r in rows if r[0] >= boundary]
    span2 = max(commits2) - min(commits2)
    max_tps = args.backlog / span2 if span2 > 0 else float("inf")
    p50, p99 = percentile(phase1, 50), percentile(phase1, 99)
    print(
        f"[{mode}] phase 1: sent {sent1.sent} at {sent1.rate:.0f}/s; produced -> committed "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(phase1):.1f} ms (target p99 < 10 ms)"
    )
    print(
        f"[{mode}] phase 2: {args.backlog} sent in {sent2.seconds:.2f} s; one consumer "
        f"decided them in {span2:.2f} s: {max_tps:.0f} tx/s sustained"
    )
    print(
        f"[{mode}] consumer: {consumer['batches']} batches, {consumer['decided']} decided "
        f"({consumer['actions']}), {consumer['reviews']} sent to review ({tasks} tasks), "
        f"{consumer['duplicates']} duplicates, {consumer['dead_lettered']} dead letters, "
        f"fallbacks {consumer['fallbacks'] or 'none'}; every transaction decided exactly once"
    )
    shutil.rmtree(project, ignore_errors=True)
    return {
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(phase1), 3),
        "max_tps": round(max_tps, 1),
        "sent_rate": round(sent1.rate, 1),
        "drain_s": round(span2, 3),
        "batches": consumer["batches"],
        "actions": actions,
        "review_tasks": tasks,
        "fallbacks": consumer["fallbacks"],
        "fast_model": consumer["fast_model"],
        "load": [load_start, load_end],
    }


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["producer", "consumer"], default="producer")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=30_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-client", choices=["direct", "faststream"], default="direct")
    parser.add_argument("--durability", choices=[*MODES, "all"], default="batch-normal")
    parser.add_argument("--stream")
    parser.add_argument("--dir")
    args = parser.parse_args()
    if args.role == "consumer":
        run_consumer(args)
        return

    os.environ["LOOPLINE_PII_KEY"] = BENCH_KEY
    work = Path(tempfile.mkdtemp(prefix="fraud-latency-"))
    try:
        prepared, transactions, trained = prepare(work, args.batch_size)
        print(f"set-up: fraud-fast trained on April and registered, store warmed "
              f"({trained['setup_s']} s)")  # fmt: skip
        steady = int(args.rate * args.seconds)
        from loopline.stream.message import encode_body

        bodies = [encode_body(t) for t in transactions[: steady + args.backlog]]
        if len(bodies) < steady + args.backlog:
            raise SystemExit(f"May holds {len(transactions)} transactions")
        modes = list(MODES) if args.durability == "all" else [args.durability]
        results = {mode: measure(args, mode, prepared, work, bodies) for mode in modes}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    first = results[modes[0]]
    if len(modes) > 1:
        print("durability      p50 ms   p99 ms   max tx/s   load (start -> end)")
        for mode, r in results.items():
            print(f"{mode:<14} {r['p50_ms']:>7.2f} {r['p99_ms']:>8.2f} {r['max_tps']:>10.0f}   "
                  f"{r['load'][0][0]} -> {r['load'][1][0]}")  # fmt: skip
    print(json.dumps({
        "p50_ms_1000": first["p50_ms"],
        "p99_ms_1000": first["p99_ms"],
        "max_tps": first["max_tps"],
        "rate": args.rate,
        "seconds": args.seconds,
        "backlog": args.backlog,
        "batch_size": args.batch_size,
        "modes": results,
        "redis_client": args.redis_client,
        "masker": "loopline.data.pii.PiiMasker (CUSTOMER_ID pseudonymised)",
        "features": "loopline.features.EmbeddedFeatureStore (handbook set, SQLite), warmed "
        "with April",
        "model": "fraud-fast@champion: StandardScaler + LogisticRegression on the 14 handbook "
        "features and the amount, trained on April by a Loopline pipeline",
        "service": "loopline.stream.service.open_consumer (decision policy, review queue, "
        "prediction log)",
        "decision_log": "SQLite metadata database",
        "machine": machine_info(
            load_start, ["loopline", "redis", "hiredis", "faststream", "scikit-learn", "pandas"]
        ),
    }))  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
