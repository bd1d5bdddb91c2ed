"""A consumer process for the kill tests (run as a script, killed with SIGKILL).

It decides the transactions of a Redis stream with the real PII masker, the real embedded
online feature store (SQLite, durable) and a pickled logistic regression. ``--hang-phase``
makes it stop dead, after writing ``--marker``, at one point of one batch so that the test
can kill it there: ``features`` (inside the feature updates of a batch, before its decisions are
committed) or ``ack`` (decisions committed, acknowledgement not sent yet).
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from _support import PII_KEY, POLICY, REDIS_URL, Hooked

from loopline.data.pii import PiiMasker
from loopline.features import EmbeddedFeatureStore
from loopline.stream import open_source
from loopline.stream.consumer import Consumer
from loopline.stream.decisions import DecisionLog


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--claim-idle-ms", type=int, default=30_000)
    parser.add_argument("--metadata", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--marker")
    parser.add_argument("--hang-phase", choices=["features", "ack"])
    parser.add_argument("--hang-after", type=int, default=0)
    parser.add_argument("--idle", type=float, default=1.0)
    args = parser.parse_args()

    hang = args.hang_phase
    features = Hooked(
        EmbeddedFeatureStore(args.features),
        delay_s=args.delay_s,
        marker=args.marker if hang == "features" else None,
        marker_after=args.hang_after,
        hang_s=600 if hang == "features" else 0,
    )
    url = (
        f"{REDIS_URL}?stream={args.stream}&consumer={args.consumer}"
        f"&claim_idle_ms={args.claim_idle_ms}"
    )
    source = open_source(url, batch_size=args.batch_size)
    if hang == "ack":
        original = source.ack
        calls = {"n": 0}

        async def ack_then_hang(messages: Any) -> None:
            calls["n"] += 1
            if calls["n"] == args.hang_after:
                Path(args.marker).write_text("committed, not acknowledged")
                time.sleep(600)
            await original(messages)

        source.ack = ack_then_hang  # type: ignore[method-assign]
    with open(args.model, "rb") as fh:
        model = pickle.load(fh)
    log = DecisionLog(args.metadata, source=source.name, model_name="lr", model_version="1")
    consumer = Consumer(
        source,
        model=model,
        decisions=log,
        features=features,
        masker=PiiMasker(POLICY, PII_KEY),
        batch_size=args.batch_size,
    )
    stats = asyncio.run(consumer.run(idle_timeout=args.idle))
    summary = stats.summary()
    summary.pop("latency_ms", None)
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
