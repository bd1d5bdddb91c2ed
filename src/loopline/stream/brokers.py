"""NATS JetStream, RabbitMQ and Kafka through faststream, behind the same :class:`Source`.

faststream pushes messages to a handler; the consumer pulls batches. The bridge here is a
subscriber whose handler puts each delivery on a bounded queue that :meth:`fetch` drains,
with manual acknowledgement (``AckPolicy.MANUAL``) so that nothing is settled before the
consumer says so:

- **NATS JetStream**: a durable pull consumer on ``subject`` of the JetStream stream
  ``stream`` (created with ``subject`` and the dead-letter subject ``<subject>.dead``). Each
  message is acknowledged on its own; one that is not is redelivered after ``ack_wait``
  seconds, and ``attempt`` is JetStream's delivery count.
- **RabbitMQ**: a durable queue read with ``prefetch`` unacknowledged deliveries at most;
  dead letters go to the durable queue ``<queue>.dead``. RabbitMQ redelivers what a dead
  connection left unacknowledged at once; it does not count deliveries, so ``attempt`` is
  2 for a redelivered message.
- **Kafka**: a consumer group reading ``topic`` in batches. Kafka acknowledges by
  committing offsets, which covers everything fetched so far, so the handler waits until
  the consumer has settled every message of its batch and commits only then; dead letters
  go to ``<topic>.dead``. Kafka does not count deliveries (``attempt`` is always 1), and a
  batch whose commit a crash prevented comes again, which the decision log recognises.

Dead letters and acknowledgements are two operations on these brokers, so a crash between
them writes a dead letter a second time (never loses one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from loopline.stream.message import PRODUCED_AT, DeadLetter, Message, decode_body
from loopline.stream.source import Sink, Source, SourceUnavailable, StreamError

__all__ = [
    "FaststreamRedisSource",
    "KafkaSink",
    "KafkaSource",
    "NatsSink",
    "NatsSource",
    "RabbitSink",
    "RabbitSource",
]


def _faststream(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"faststream.{module}")
    except ModuleNotFoundError as exc:
        raise StreamError(
            f"this broker needs faststream with its {module} client ({exc.name} is missing)",
            hint="pip install 'loopline[stream]'",
        ) from None


def _unavailable(what: str, where: str, exc: BaseException) -> SourceUnavailable:
    return SourceUnavailable(
        f"cannot reach {what} at {where}: {type(exc).__name__}: {exc}",
        hint=f"start {what} or fix the URL; nothing was acknowledged, so nothing is lost",
    )


def _headers(raw: Any) -> dict[str, str]:
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, dict) else raw
    out = {}
    for k, v in items:
        out[str(k)] = v.decode(errors="replace") if isinstance(v, bytes) else str(v)
    return out


@dataclass(eq=False)
class _Delivery:
    """One handler call: the messages it handed over and how many are still unsettled."""

    pending: int
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.done.set()


class _BridgeSource(Source):
    """Handler → queue → :meth:`fetch`. Subclasses build the broker and its subscriber."""

    broker: Any
    wait_for_settle = False  # Kafka: the handler returns (and commits) once all are settled
    what = "the broker"

    def __init__(self, queue_size: int) -> None:
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=max(queue_size, 1))
        self._started = False
        self._closing = asyncio.Event()

    async def _deliver(self, messages: list[Message], settle_handle: Any) -> None:
        delivery = _Delivery(pending=len(messages))
        for message in messages:
            message.handle = (settle_handle, delivery)
            await self._queue.put(message)
        if self.wait_for_settle and messages:
            settled = asyncio.ensure_future(delivery.done.wait())
            closing = asyncio.ensure_future(self._closing.wait())
            await asyncio.wait({settled, closing}, return_when=asyncio.FIRST_COMPLETED)
            settled.cancel()
            closing.cancel()
            if not delivery.done.is_set():  # never commit what was not settled
                raise StreamError("the consumer stopped before this batch was settled")

    async def open(self) -> None:
        try:
            await self.broker.start()
        except StreamError:
            raise
        except Exception as exc:
            await self._stop_quietly()
            raise _unavailable(self.what, self.name, exc) from None
        self._started = True

    async def _stop_quietly(self) -> None:
        with contextlib.suppress(Exception):  # the connection is already gone
            await self.broker.stop()

    async def close(self) -> None:
        self._closing.set()
        if self._started:
            self._started = False
            await self._stop_quietly()

    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout=max(timeout, 0.001))
        except TimeoutError:
            return []
        batch = [first]
        while len(batch) < max_messages:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _ack_one(self, handle: Any) -> None:
        await handle.ack()

    async def ack(self, messages: Sequence[Message]) -> None:
        for message in messages:
            handle, delivery = message.handle
            if not self.wait_for_settle:
                await self._ack_one(handle)
            delivery.settle()

    async def _publish_dead(self, body: bytes, reason: str) -> None:
        raise NotImplementedError

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        now = time.time()
        for letter in letters:
            await self._publish_dead(orjson.dumps(letter.record(self.name, now)), letter.reason)
        await self.ack([letter.message for letter in letters])


# -- NATS JetStream ---------------------------------------------------------------------------
class NatsSource(_BridgeSource):
    """A durable JetStream pull consumer ``durable`` on ``subject`` of stream ``stream``."""

    what = "NATS"

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        subject: str,
        stream: str | None = None,
        durable: str = "loopline",
        batch_size: int = 256,
        ack_wait: float = 30.0,
        poll_timeout: float = 0.05,
    ) -> None:
        super().__init__(queue_size=batch_size * 2)
        nats = _faststream("nats")
        from nats.js.api import ConsumerConfig, DeliverPolicy

        self.url = url
        self.subject = subject
        self.stream = stream or _stream_name(subject)
        self.dead_subject = f"{subject}.dead"
        self.name = f"{url}#{subject}"
        self.broker = nats.NatsBroker(url, logger=None, connect_timeout=5, max_reconnect_attempts=1)
        js = nats.JStream(self.stream, subjects=[subject, self.dead_subject])

        @self.broker.subscriber(
            subject,
            stream=js,
            durable=durable,
            pull_sub=nats.PullSub(batch_size=batch_size, timeout=poll_timeout),
            config=ConsumerConfig(ack_wait=ack_wait, deliver_policy=DeliverPolicy.ALL),
            ack_policy=_ack_manual(),
        )
        async def _handle(message: Any = _context_message()) -> None:
            await self._deliver([self._message(message)], message)

        self._handler = _handle

    @staticmethod
    def _message(fs_message: Any) -> Message:
        raw = fs_message.raw_message
        meta = getattr(raw, "metadata", None)
        sequence = getattr(getattr(meta, "sequence", None), "stream", None)
        attempt = int(getattr(meta, "num_delivered", 1) or 1)
        payload, error = decode_body(raw.data)
        headers = _headers(raw.headers)
        return Message(
            id=str(sequence if sequence is not None else fs_message.message_id),
            payload=payload,
            key=headers.get("key"),
            headers=headers,
            attempt=attempt,
            error=error,
            raw=raw.data,
        )

    async def _publish_dead(self, body: bytes, reason: str) -> None:
        await self.broker.publish(
            body, self.dead_subject, headers={"reason": reason[:500]}, stream=self.stream
        )


def _stream_name(subject: str) -> str:
    """A JetStream stream name for a subject (no dots, wildcards or spaces allowed)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in subject).upper()


class NatsSink(Sink):
    """Publishes to ``subject`` through JetStream (the stream is created when missing)."""

    def __init__(self, url: str, *, subject: str, stream: str | None = None) -> None:
        nats = _faststream("nats")
        self.url = url
        self.subject = subject
        self.stream = stream or _stream_name(subject)
        self.name = f"{url}#{subject}"
        self.broker = nats.NatsBroker(url, logger=None, connect_timeout=5, max_reconnect_attempts=1)

    async def open(self) -> None:
        try:
            await self.broker.connect()
            js = self.broker.connection.jetstream()
            await _ensure_stream(js, self.stream, [self.subject, f"{self.subject}.dead"])
        except Exception as exc:
            await self.broker.stop()
            raise _unavailable("NATS", self.name, exc) from None

    async def close(self) -> None:
        await self.broker.stop()

    async def send(self, bodies: Sequence[bytes], keys: Sequence[str | None] | None = None) -> None:
        js = self.broker.connection.jetstream()
        acks = []
        for i, body in enumerate(bodies):
            headers = {PRODUCED_AT: repr(time.time())}
            if keys is not None and keys[i] is not None:
                headers["key"] = str(keys[i])
            acks.append(await js.publish_async(self.subject, body, headers=headers))
        await asyncio.gather(*acks)


async def _ensure_stream(js: Any, name: str, subjects: list[str]) -> None:
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(name=name, subjects=subjects)
        return
    missing = [s for s in subjects if s not in (info.config.subjects or [])]
    if missing:
        info.config.subjects = [*(info.config.subjects or []), *missing]
        await js.update_stream(config=info.config)


# -- RabbitMQ ---------------------------------------------------------------------------------
class RabbitSource(_BridgeSource):
    """The durable queue ``queue``, at most ``prefetch`` deliveries unacknowledged."""

    what = "RabbitMQ"

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        queue: str,
        prefetch: int = 512,
    ) -> None:
        super().__init__(queue_size=prefetch)
        rabbit = _faststream("rabbit")
        self.url = url
        self.queue = queue
        self.dead_queue = f"{queue}.dead"
        self.name = f"{_hide_password(url)}#{queue}"
        self.broker = rabbit.RabbitBroker(
            url,
            logger=None,
            default_channel=rabbit.Channel(prefetch_count=prefetch),
            timeout=5,
            fail_fast=True,
        )
        self._rabbit = rabbit

        @self.broker.subscriber(rabbit.RabbitQueue(queue, durable=True), ack_policy=_ack_manual())
        async def _handle(message: Any = _context_message()) -> None:
            await self._deliver([self._message(message)], message)

        self._handler = _handle

    async def open(self) -> None:
        await super().open()
        try:
            await self.broker.declare_queue(self._rabbit.RabbitQueue(self.dead_queue, durable=True))
        except Exception as exc:
            await self.close()
            raise _unavailable(self.what, self.name, exc) from None

    @staticmethod
    def _message(fs_message: Any) -> Message:
        raw = fs_message.raw_message
        payload, error = decode_body(raw.body)
        headers = _headers(raw.headers)
        return Message(
            id=str(raw.message_id or raw.delivery_tag),
            payload=payload,
            key=headers.get("key"),
            headers=headers,
            attempt=2 if raw.redelivered else 1,
            error=error,
            raw=raw.body,
        )

    async def _publish_dead(self, body: bytes, reason: str) -> None:
        await self.broker.publish(
            body, queue=self.dead_queue, headers={"reason": reason[:500]}, persist=True
        )


def _hide_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts._replace(query=""))


class RabbitSink(Sink):
    """Publishes persistent messages to the durable queue ``queue``."""

    def __init__(self, url: str, *, queue: str) -> None:
        rabbit = _faststream("rabbit")
        self.url = url
        self.queue = queue
        self.name = f"{_hide_password(url)}#{queue}"
        self._rabbit = rabbit
        self.broker = rabbit.RabbitBroker(url, logger=None, timeout=5, fail_fast=True)

    async def open(self) -> None:
        try:
            await self.broker.connect()
            await self.broker.declare_queue(self._rabbit.RabbitQueue(self.queue, durable=True))
        except Exception as exc:
            await self.broker.stop()
            raise _unavailable("RabbitMQ", self.name, exc) from None

    async def close(self) -> None:
        await self.broker.stop()

    async def send(self, bodies: Sequence[bytes], keys: Sequence[str | None] | None = None) -> None:
        for i, body in enumerate(bodies):
            headers = {PRODUCED_AT: repr(time.time())}
            if keys is not None and keys[i] is not None:
                headers["key"] = str(keys[i])
            await self.broker.publish(body, queue=self.queue, headers=headers, persist=True)


# -- Kafka ------------------------------------------------------------------------------------
class KafkaSource(_BridgeSource):
    """Consumer group ``group`` on ``topic``; offsets committed after each settled batch.

    ``broker`` may be given (a ``faststream.kafka.KafkaBroker``), e.g. to run the source
    inside faststream's ``TestKafkaBroker`` when no Kafka broker is at hand.
    """

    what = "Kafka"
    wait_for_settle = True

    def __init__(
        self,
        bootstrap: str = "127.0.0.1:9092",
        *,
        topic: str,
        group: str = "loopline",
        batch_size: int = 256,
        poll_timeout: float = 0.05,
        broker: Any = None,
    ) -> None:
        super().__init__(queue_size=batch_size)
        kafka = _faststream("kafka")
        self.bootstrap = bootstrap
        self.topic = topic
        self.dead_topic = f"{topic}.dead"
        self.name = f"kafka://{bootstrap}#{topic}"
        self.broker = broker or kafka.KafkaBroker(bootstrap, logger=None)

        @self.broker.subscriber(
            topic,
            group_id=group,
            batch=True,
            max_records=batch_size,
            batch_timeout_ms=max(1, round(poll_timeout * 1000)),
            auto_offset_reset="earliest",
            ack_policy=_ack_manual(),
        )
        async def _handle(message: Any = _context_message()) -> None:
            records = message.raw_message
            if not isinstance(records, tuple | list):
                records = (records,)
            await self._deliver([self._message(r) for r in records], message)
            await message.ack()  # commits the offsets of the whole, now settled, batch

        self._handler = _handle

    @staticmethod
    def _message(record: Any) -> Message:
        value = record.value
        payload, error = decode_body(value)
        headers = _headers(getattr(record, "headers", None))
        key = record.key.decode(errors="replace") if isinstance(record.key, bytes) else record.key
        return Message(
            id=f"{record.topic}:{record.partition}:{record.offset}",
            payload=payload,
            key=None if key is None else str(key),
            headers=headers,
            error=error,
            raw=value,
        )

    async def _publish_dead(self, body: bytes, reason: str) -> None:
        await self.broker.publish(body, self.dead_topic, headers={"reason": reason[:500]})


class KafkaSink(Sink):
    """Publishes to ``topic`` (key and ``produced_at`` header set)."""

    def __init__(self, bootstrap: str, *, topic: str, broker: Any = None) -> None:
        kafka = _faststream("kafka")
        self.bootstrap = bootstrap
        self.topic = topic
        self.name = f"kafka://{bootstrap}#{topic}"
        self.broker = broker or kafka.KafkaBroker(bootstrap, logger=None)

    async def open(self) -> None:
        try:
            await self.broker.connect()
        except Exception as exc:
            await self.broker.stop()
            raise _unavailable("Kafka", self.name, exc) from None

    async def close(self) -> None:
        await self.broker.stop()

    async def send(self, bodies: Sequence[bytes], keys: Sequence[str | None] | None = None) -> None:
        for i, body in enumerate(bodies):
            key = None if keys is None or keys[i] is None else str(keys[i]).encode()
            await self.broker.publish(
                body, self.topic, key=key, headers={PRODUCED_AT: repr(time.time())}
            )


def _context_message() -> Any:
    """The handler's parameter default that faststream fills with the message itself."""
    from faststream import Context

    return Context("message")


def _ack_manual() -> Any:
    from faststream import AckPolicy

    return AckPolicy.MANUAL


# -- Redis Streams through faststream (measured against the direct reader) --------------------
class FaststreamRedisSource(_BridgeSource):
    """Redis Streams through faststream's batch stream subscriber (``StreamSub(batch=True)``).

    Kept to measure against :class:`~loopline.stream.redis_streams.RedisStreamSource`, the
    default (``client=faststream`` in a ``redis://`` URL picks this one). It does not take
    back a restarted consumer's own pending entries: faststream always reads ``>``.
    """

    what = "Redis"
    wait_for_settle = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str,
        group: str = "loopline",
        consumer: str = "loopline",
        batch_size: int = 256,
        poll_timeout: float = 0.05,
    ) -> None:
        super().__init__(queue_size=batch_size)
        redis = _faststream("redis")
        self.url = url
        self.stream = stream
        self.dead_stream = f"{stream}:dead"
        self.name = f"{_hide_password(url)}#{stream}"
        self.broker = redis.RedisBroker(url, logger=None)
        sub = redis.StreamSub(
            stream,
            group=group,
            consumer=consumer,
            batch=True,
            max_records=batch_size,
            polling_interval=max(1, round(poll_timeout * 1000)),
        )
        self.group = group

        @self.broker.subscriber(stream=sub, ack_policy=_ack_manual())
        async def _handle(message: Any = _context_message()) -> None:
            raw = message.raw_message
            ids = raw["message_ids"]
            entries = raw["data"]
            messages = [self._message(i, e) for i, e in zip(ids, entries, strict=True)]
            await self._deliver(messages, message)
            await message.ack()  # one XACK for the whole, now settled, batch

        self._handler = _handle

    async def open(self) -> None:
        # faststream creates a missing group at "$" (entries already there are skipped):
        # create it at "0" first, as the direct reader does.
        import redis.asyncio as aioredis
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import ResponseError

        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=5)
        try:
            await client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except (OSError, RedisConnectionError) as exc:
            raise _unavailable(self.what, self.name, exc) from None
        finally:
            await client.aclose()
        await super().open()

    @staticmethod
    def _message(entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
        text = {k.decode(errors="replace"): v for k, v in fields.items()}
        raw = text.pop("payload", None)
        headers = {k: v.decode(errors="replace") for k, v in text.items()}
        payload, error = decode_body(raw)
        return Message(
            id=entry_id.decode(),
            payload=payload,
            key=headers.get("key"),
            headers=headers,
            error=error,
            raw=raw,
        )

    async def _publish_dead(self, body: bytes, reason: str) -> None:
        await self.broker.publish(body, stream=self.dead_stream, headers={"reason": reason[:500]})
