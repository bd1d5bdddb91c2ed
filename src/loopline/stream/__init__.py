"""Transactions from streams and files through one interface, decided exactly once.

- :class:`~loopline.stream.source.Source` — batches of :class:`~loopline.stream.message.Message`
  in, acknowledgements and dead letters out; :func:`~loopline.stream.connect.open_source`
  builds one from a URL (files, Redis Streams, NATS JetStream, RabbitMQ, Kafka).
- :class:`~loopline.stream.consumer.Consumer` — validate, mask PII, features, score, write
  the decisions in one transaction per batch, then acknowledge.
- :class:`~loopline.stream.decisions.DecisionLog` — the ``decisions`` table, one row per
  transaction id.
- :func:`~loopline.stream.replay.replay` — test traffic at a steady rate.
"""

from __future__ import annotations

from loopline.stream.connect import open_sink, open_source
from loopline.stream.message import DeadLetter, Message
from loopline.stream.source import Sink, Source, SourceUnavailable, StreamError

__all__ = [
    "DeadLetter",
    "Message",
    "Sink",
    "Source",
    "SourceUnavailable",
    "StreamError",
    "open_sink",
    "open_source",
]
