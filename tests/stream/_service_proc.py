"""A decision-service process for the kill-under-load test (run as a script, killed with
SIGKILL at an arbitrary moment).

It is what ``loopline stream consume`` assembles, without the registry: the decision
policy of a ``fraud`` section (a pickled fast model, thresholds, review queue, fallbacks),
the real PII masker, the real embedded online feature store, the decision log with the
review queue in the metadata database, and the prediction log.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from _support import PII_KEY, POLICY, REDIS_URL

from loopline.core.metadata import MetadataStore
from loopline.core.predlog import PredictionLogger
from loopline.data.pii import PiiMasker
from loopline.features import EmbeddedFeatureStore
from loopline.stream import open_source
from loopline.stream.consumer import Consumer
from loopline.stream.decisions import DecisionLog
from loopline.stream.policy import DecisionPolicy, FastModel, fraud_settings
from loopline.stream.reviews import open_review_queue


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--claim-idle-ms", type=int, default=30_000)
    parser.add_argument("--metadata", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ready")
    parser.add_argument("--idle", type=float, default=1.0)
    args = parser.parse_args()

    config = fraud_settings({"heavy_model": None, "thresholds": {"review": 0.5, "block": 0.9}})
    store = MetadataStore(args.metadata)
    open_review_queue(store, "fraud-review")
    url = (
        f"{REDIS_URL}?stream={args.stream}&consumer={args.consumer}"
        f"&claim_idle_ms={args.claim_idle_ms}"
    )
    source = open_source(url, batch_size=args.batch_size)
    model = pickle.loads(Path(args.model).read_bytes())
    predictions = PredictionLogger(args.predictions)
    predictions.start()
    consumer = Consumer(
        source,
        policy=DecisionPolicy(config, fast=FastModel.of(model, "fraud-fast", "1")),
        decisions=DecisionLog(store, source=source.name, review_queue="fraud-review"),
        features=EmbeddedFeatureStore(args.features),
        masker=PiiMasker(POLICY, PII_KEY),
        batch_size=args.batch_size,
        prediction_log=predictions,
    )
    consumer.warm_up()
    if args.ready:
        Path(args.ready).write_text("ready")
    try:
        stats = asyncio.run(consumer.run(idle_timeout=args.idle))
    finally:
        consumer.close()
    summary = stats.summary()
    summary.pop("latency_ms", None)
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
