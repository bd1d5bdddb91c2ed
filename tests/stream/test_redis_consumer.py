"""The consumer on Redis Streams: decided once, dead letters masked with their reason,
redeliveries and dead consumers' pending entries, and stores that go away."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from _support import REDIS_URL, RedisFeatures, customer_counts, free_port, transactions

from loopline.stream import SourceUnavailable, StreamError, open_sink, open_source
from loopline.stream.consumer import Consumer
from loopline.stream.decisions import DecisionLog
from loopline.stream.message import encode_body


def url(stream: str, **options: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"stream": stream, **options}.items())
    return f"{REDIS_URL}?{query}"


def send(target: str, bodies: list[bytes]) -> None:
    async def _send() -> None:
        async with open_sink(target) as sink:
            await sink.send(bodies)

    asyncio.run(_send())


def consume(source_url: str, metadata_url: str, model: Any, **kwargs: Any) -> Consumer:
    idle = kwargs.pop("idle", 0.5)
    source = open_source(source_url, batch_size=kwargs.pop("batch_size", 64))
    log = DecisionLog(metadata_url, source=source.name, model_name="lr", model_version="1")
    consumer = Consumer(source, model=model, decisions=log, **kwargs)
    asyncio.run(consumer.run(idle_timeout=idle))
    return consumer


def test_each_transaction_is_decided_once_and_bad_messages_are_dead_lettered_masked(
    stream_name: str, metadata_url: str, amount_model: Any, masker: Any, redis_client: Any
) -> None:
    good = transactions(40)
    bad_schema = {**transactions(1, start=900)[0], "TX_AMOUNT": -5.0}
    bodies = [encode_body(r) for r in good[:20]]
    bodies += [b'{"TRANSACTION_ID": 1, "TX_AMOUNT": ', encode_body(bad_schema)]
    bodies += [encode_body(r) for r in good[20:]] + [encode_body(good[3])]  # a repeat
    send(url(stream_name), bodies)

    consumer = consume(url(stream_name), metadata_url, amount_model, masker=masker)

    stats = consumer.stats
    assert (stats.decided, stats.dead_lettered, stats.duplicates) == (40, 2, 1)
    rows = consumer.decisions.rows()
    assert sorted(int(r["tx_id"]) for r in rows) == list(range(40))
    big = {int(r["tx_id"]) for r in rows if r["flagged"]}
    assert big == {r["TRANSACTION_ID"] for r in good if r["TX_AMOUNT"] > 200}
    assert all(r["produced_at"] is not None and r["decided_at"] >= r["produced_at"] for r in rows)
    # Nothing is left pending: every message was settled one way or the other.
    assert redis_client.xpending(stream_name, "loopline")["pending"] == 0

    dead = redis_client.xrange(f"{stream_name}:dead")
    reasons = [entry[b"reason"].decode() for _, entry in dead]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1].startswith("schema violation: TX_AMOUNT: Input should be greater than")
    records = [orjson.loads(entry[b"record"]) for _, entry in dead]
    assert records[0]["payload"] is None and records[0]["payload_bytes"] > 0
    masked = records[1]["payload"]
    assert masked["TX_AMOUNT"] == -5.0 and masked["email"] == "[EMAIL]"
    assert str(masked["CUSTOMER_ID"]).startswith("pn1_")
    everything = b"".join(v for _, entry in dead for v in entry.values())
    assert b"@example.com" not in everything  # no personal data left the door


def test_a_redelivered_transaction_is_acknowledged_without_a_second_decision(
    stream_name: str,
    metadata_url: str,
    feature_model: Any,
    masker: Any,
    tmp_path: Path,
    redis_client: Any,
) -> None:
    from loopline.features import EmbeddedFeatureStore

    features = EmbeddedFeatureStore(tmp_path / "features")
    send(url(stream_name), [encode_body(r) for r in transactions(30)])
    first = consume(url(stream_name), metadata_url, feature_model, features=features, masker=masker)
    assert first.stats.decided == 30
    before = first.decisions.rows()

    send(url(stream_name), [encode_body(r) for r in transactions(30)])  # the producer retried
    again = consume(url(stream_name), metadata_url, feature_model, features=features, masker=masker)

    assert (again.stats.decided, again.stats.duplicates) == (0, 30)
    assert again.decisions.rows() == before
    # The features counted each transaction once: 6 per customer (30 over 5 customers).
    assert customer_counts(features, masker, range(100, 105)) == dict.fromkeys(range(100, 105), 6)
    assert redis_client.xpending(stream_name, "loopline")["pending"] == 0


def test_entries_left_pending_by_a_dead_consumer_are_claimed_and_decided_once(
    stream_name: str, metadata_url: str, amount_model: Any
) -> None:
    send(url(stream_name), [encode_body(r) for r in transactions(12)])

    async def die_holding_a_batch() -> None:
        source = open_source(url(stream_name, consumer="doomed"))
        async with source:
            taken = await source.fetch(8, 0.5)
            assert len(taken) == 8  # fetched, never acknowledged: the consumer "dies"

    asyncio.run(die_holding_a_batch())

    heir = consume(url(stream_name, consumer="heir", claim_idle_ms=1), metadata_url, amount_model)
    rows = heir.decisions.rows()
    assert sorted(int(r["tx_id"]) for r in rows) == list(range(12))
    attempts = {int(r["tx_id"]): r["attempt"] for r in rows}
    assert sorted(t for t, a in attempts.items() if a >= 2) == list(range(8))


def test_a_restarted_consumer_takes_back_its_own_pending_entries_first(
    stream_name: str, metadata_url: str, amount_model: Any
) -> None:
    send(url(stream_name), [encode_body(r) for r in transactions(6)])

    async def fetch_and_die() -> None:
        async with open_source(url(stream_name, consumer="c1")) as source:
            assert len(await source.fetch(4, 0.5)) == 4

    asyncio.run(fetch_and_die())
    # Same name, and a claim interval far away: only XREADGROUP 0 can find them.
    again = consume(
        url(stream_name, consumer="c1", claim_idle_ms=600_000), metadata_url, amount_model
    )
    assert again.stats.decided == 6
    assert sorted(r["attempt"] for r in again.decisions.rows()) == [1, 1, 2, 2, 2, 2]


def test_a_poison_message_is_dead_lettered_after_max_attempts(
    stream_name: str, metadata_url: str, amount_model: Any, redis_client: Any
) -> None:
    send(url(stream_name), [encode_body(r) for r in transactions(3)])

    async def deliver_three_times() -> None:
        async with open_source(url(stream_name, consumer="c1")) as source:
            await source.fetch(3, 0.5)
        for _ in range(2):
            async with open_source(url(stream_name, consumer="c1")) as source:
                await source.fetch(3, 0.5)  # XREADGROUP 0: delivered again

    asyncio.run(deliver_three_times())
    consumer = consume(url(stream_name, consumer="c1"), metadata_url, amount_model, max_attempts=3)
    assert (consumer.stats.decided, consumer.stats.dead_lettered) == (0, 3)
    reason = redis_client.xrange(f"{stream_name}:dead")[0][1][b"reason"].decode()
    assert reason == "delivered 4 times without a decision (max_attempts=3)"


def test_redis_down_for_the_features_stops_with_a_clear_error_and_settles_nothing(
    stream_name: str, metadata_url: str, feature_model: Any, redis_client: Any
) -> None:
    send(url(stream_name), [encode_body(r) for r in transactions(5)])
    dead_redis = RedisFeatures(f"redis://127.0.0.1:{free_port()}/0", prefix=stream_name)

    with pytest.raises(SourceUnavailable) as caught:
        consume(url(stream_name), metadata_url, feature_model, features=dead_redis)

    assert "the feature store failed for transaction 0: ConnectionError" in caught.value.message
    assert "nothing of this batch was decided or acknowledged" in (caught.value.hint or "")
    log = DecisionLog(metadata_url, source="x")
    assert log.count() == 0  # no decision with a feature the store did not give
    assert redis_client.xpending(stream_name, "loopline")["pending"] == 5  # all still there

    # The store is back: the same messages are decided, once.
    live = RedisFeatures(REDIS_URL, prefix=stream_name)
    after = consume(url(stream_name), metadata_url, feature_model, features=live)
    assert after.stats.decided == 5


def test_a_degraded_answer_of_the_redis_feature_store_is_never_scored(
    stream_name: str, metadata_url: str, feature_model: Any, redis_client: Any
) -> None:
    from loopline.features import RedisFeatureStore

    send(url(stream_name), [encode_body(r) for r in transactions(3)])
    degraded = RedisFeatureStore(f"redis://127.0.0.1:{free_port()}/0", fallback="degraded")
    with pytest.raises(SourceUnavailable, match="answered without its state"):
        consume(url(stream_name), metadata_url, feature_model, features=degraded)
    assert DecisionLog(metadata_url, source="x").count() == 0
    assert redis_client.xpending(stream_name, "loopline")["pending"] == 3


def test_redis_down_for_the_stream_is_a_clear_error() -> None:
    source = open_source(f"redis://127.0.0.1:{free_port()}/0?stream=tx")

    async def _open() -> None:
        async with source:
            pass

    with pytest.raises(SourceUnavailable) as caught:
        asyncio.run(_open())
    assert caught.value.message.startswith("cannot reach Redis at redis://127.0.0.1:")
    assert "nothing was acknowledged" in (caught.value.hint or "")


def test_a_feature_the_model_needs_but_nobody_provides_is_an_error_not_a_nan(
    stream_name: str, metadata_url: str, feature_model: Any
) -> None:
    send(url(stream_name), [encode_body(r) for r in transactions(2)])
    with pytest.raises(StreamError, match="the model reads 'CUSTOMER_TX_1D'"):
        consume(url(stream_name), metadata_url, feature_model)  # no feature store


def test_the_faststream_reader_decides_the_same(
    stream_name: str, metadata_url: str, amount_model: Any, redis_client: Any
) -> None:
    send(url(stream_name), [encode_body(r) for r in transactions(25)] + [b"not json"])
    consumer = consume(url(stream_name, client="faststream"), metadata_url, amount_model)
    assert (consumer.stats.decided, consumer.stats.dead_lettered) == (25, 1)
    assert redis_client.xpending(stream_name, "loopline")["pending"] == 0
    assert redis_client.xlen(f"{stream_name}:dead") == 1
