"""Sources and sinks by URL: one string names where transactions come from or go to.

=====================================================  ===========================================
URL                                                    what
=====================================================  ===========================================
``data/tx.csv``, ``data/tx.parquet``, ``data/tx/``     a file or a (partitioned) folder
``redis://HOST:6379/0?stream=tx``                      Redis Streams (``group=``, ``consumer=``,
                                                       ``claim_idle_ms=``, ``start=0|$``,
                                                       ``client=direct|faststream``)
``nats://HOST:4222?subject=tx``                        NATS JetStream (``stream=``,
                                                       ``durable=``, ``ack_wait=`` seconds)
``amqp://guest:guest@HOST:5672/?queue=tx``             RabbitMQ (``prefetch=``)
``kafka://HOST:9092?topic=tx``                         Kafka (``group=``)
=====================================================  ===========================================

``group`` (Redis, Kafka) and ``durable`` (NATS) default to ``loopline``; keyword arguments
of :func:`open_source` override the URL's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from loopline.stream.source import Sink, Source, StreamError

__all__ = ["open_sink", "open_source", "parse_url"]

_SCHEMES = ("redis", "rediss", "nats", "amqp", "amqps", "kafka")
_EXAMPLES = (
    "a file or folder, redis://127.0.0.1:6379/0?stream=tx, nats://127.0.0.1:4222?subject=tx, "
    "amqp://guest:guest@127.0.0.1:5672/?queue=tx or kafka://127.0.0.1:9092?topic=tx"
)


def parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """``(scheme, url without the query, options)``; scheme ``file`` for paths."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a path (C:\\ on Windows)
        path = parts.path if parts.scheme == "file" else url
        return "file", path, {}
    if parts.scheme not in _SCHEMES:
        raise StreamError(f"unknown stream URL scheme {parts.scheme!r} in {url}", hint=_EXAMPLES)
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return parts.scheme, urlunsplit(parts._replace(query="")), options


def _need(options: dict[str, str], key: str, url: str) -> str:
    value = options.pop(key, None)
    if not value:
        raise StreamError(f"{url} names no {key}", hint=f"add ?{key}=NAME to the URL")
    return value


def _int(options: dict[str, str], key: str, default: int) -> int:
    value = options.pop(key, None)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise StreamError(f"{key}= must be a whole number, found {value!r}") from None


def _float(options: dict[str, str], key: str, default: float) -> float:
    value = options.pop(key, None)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise StreamError(f"{key}= must be a number, found {value!r}") from None


def _no_more(options: dict[str, str], url: str, allowed: str) -> None:
    if options:
        raise StreamError(
            f"unknown option(s) {', '.join(sorted(options))} in {url}",
            hint=f"this kind of URL takes {allowed}",
        )


def open_source(
    url: str,
    *,
    batch_size: int = 256,
    poll_timeout: float = 0.05,
    dead_letter_path: str | Path | None = None,
    **overrides: Any,
) -> Source:
    """The :class:`Source` a URL names (not opened yet: use ``async with``).

    ``dead_letter_path`` is where a file source appends its dead letters (JSON Lines);
    ``overrides`` replace URL options (``group=``, ``consumer=``, ...).
    """
    scheme, base, options = parse_url(url)
    options.update({k: str(v) for k, v in overrides.items() if v is not None})
    if scheme == "file":
        from loopline.stream.files import FileSource

        _no_more(options, url, "no options")
        return FileSource(base, dead_letter_path=dead_letter_path)
    if scheme in ("redis", "rediss"):
        stream = _need(options, "stream", url)
        group = options.pop("group", "loopline")
        consumer = options.pop("consumer", None)
        client = options.pop("client", "direct")
        if client == "faststream":
            from loopline.stream.brokers import FaststreamRedisSource

            _no_more(options, url, "stream=, group=, consumer=, client=")
            return FaststreamRedisSource(
                base,
                stream=stream,
                group=group,
                consumer=consumer or "loopline",
                batch_size=batch_size,
                poll_timeout=poll_timeout,
            )
        if client != "direct":
            raise StreamError(f"client= is direct or faststream, found {client!r}")
        from loopline.stream.redis_streams import RedisStreamSource

        claim = _int(options, "claim_idle_ms", 30_000)
        start = options.pop("start", "0")
        _no_more(options, url, "stream=, group=, consumer=, claim_idle_ms=, start=, client=")
        return RedisStreamSource(
            base,
            stream=stream,
            group=group,
            consumer=consumer,
            claim_idle_ms=claim,
            start_id=start,
        )
    if scheme == "nats":
        from loopline.stream.brokers import NatsSource

        subject = _need(options, "subject", url)
        stream_name = options.pop("stream", None)
        durable = options.pop("durable", "loopline")
        ack_wait = _float(options, "ack_wait", 30.0)
        _no_more(options, url, "subject=, stream=, durable=, ack_wait=")
        return NatsSource(
            base,
            subject=subject,
            stream=stream_name,
            durable=durable,
            batch_size=batch_size,
            ack_wait=ack_wait,
            poll_timeout=poll_timeout,
        )
    if scheme in ("amqp", "amqps"):
        from loopline.stream.brokers import RabbitSource

        queue = _need(options, "queue", url)
        prefetch = _int(options, "prefetch", max(2 * batch_size, 64))
        _no_more(options, url, "queue=, prefetch=")
        return RabbitSource(base, queue=queue, prefetch=prefetch)
    from loopline.stream.brokers import KafkaSource

    topic = _need(options, "topic", url)
    group = options.pop("group", "loopline")
    _no_more(options, url, "topic=, group=")
    return KafkaSource(
        _bootstrap(base),
        topic=topic,
        group=group,
        batch_size=batch_size,
        poll_timeout=poll_timeout,
    )


def open_sink(url: str) -> Sink:
    """The :class:`Sink` a stream URL names (files are read, never written)."""
    scheme, base, options = parse_url(url)
    if scheme == "file":
        raise StreamError(
            f"{url} is a file: replay sends to a stream", hint=f"pass a stream URL: {_EXAMPLES}"
        )
    if scheme in ("redis", "rediss"):
        from loopline.stream.redis_streams import RedisStreamSink

        stream = _need(options, "stream", url)
        maxlen = options.pop("maxlen", None)
        options.pop("group", None)
        options.pop("consumer", None)
        options.pop("client", None)
        _no_more(options, url, "stream=, maxlen=")
        return RedisStreamSink(base, stream=stream, maxlen=int(maxlen) if maxlen else None)
    if scheme == "nats":
        from loopline.stream.brokers import NatsSink

        subject = _need(options, "subject", url)
        stream_name = options.pop("stream", None)
        options.pop("durable", None)
        options.pop("ack_wait", None)
        _no_more(options, url, "subject=, stream=")
        return NatsSink(base, subject=subject, stream=stream_name)
    if scheme in ("amqp", "amqps"):
        from loopline.stream.brokers import RabbitSink

        queue = _need(options, "queue", url)
        options.pop("prefetch", None)
        _no_more(options, url, "queue=")
        return RabbitSink(base, queue=queue)
    from loopline.stream.brokers import KafkaSink

    topic = _need(options, "topic", url)
    options.pop("group", None)
    _no_more(options, url, "topic=")
    return KafkaSink(_bootstrap(base), topic=topic)


def _bootstrap(base: str) -> str:
    netloc = urlsplit(base).netloc
    if not netloc:
        raise StreamError(f"{base} names no broker", hint="kafka://HOST:9092?topic=tx")
    return netloc
