"""What travels through a stream: :class:`Message`, :class:`DeadLetter` and the wire format.

Every source (files, Redis Streams, NATS JetStream, RabbitMQ, Kafka) hands the consumer the
same :class:`Message`; producers (:mod:`loopline.stream.replay`) write the same format:

- the **body** is one JSON object, the transaction (``{"TRANSACTION_ID": 7, "TX_AMOUNT":
  57.16, ...}``);
- the **headers** carry ``produced_at`` (seconds since the epoch, stamped by the producer
  when it sends) and anything else the producer adds. A Redis Streams entry holds the body
  in its ``payload`` field and each header as a field of its own; an entry without a
  ``payload`` field is read as a flat record (its fields are the transaction's).

A body that is not JSON, or JSON that is not an object, still becomes a :class:`Message`:
its ``payload`` is empty and ``error`` says what was wrong, so the consumer dead-letters it
with that reason instead of stopping.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "PAYLOAD_FIELD",
    "PRODUCED_AT",
    "DeadLetter",
    "Message",
    "decode_body",
    "encode_body",
]

# Header stamped by producers: when the message was handed to the broker (epoch seconds).
PRODUCED_AT = "produced_at"
# The field of a Redis Streams entry that holds the JSON body.
PAYLOAD_FIELD = "payload"


@dataclass(slots=True)
class Message:
    """One message from a :class:`~loopline.stream.source.Source`.

    ``id`` is the broker's id for this delivery (a Redis entry id, a JetStream stream
    sequence, a Kafka ``partition:offset``, a file's ``path:row``), ``key`` the message key
    when the broker has one, ``payload`` the decoded JSON object, ``headers`` its string
    headers, ``attempt`` how many times it has been delivered (1 the first time; brokers
    that cannot count say 2 for "at least once before"). ``error`` is set when the body
    could not be decoded (``payload`` is then empty). ``raw`` is the body as received;
    ``handle`` is the source's own object for acknowledging this delivery.
    """

    id: str
    payload: dict[str, Any]
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    error: str | None = None
    raw: bytes | None = field(default=None, repr=False)
    handle: Any = field(default=None, repr=False, compare=False)

    @property
    def produced_at(self) -> float | None:
        """The producer's stamp (epoch seconds), or None when it sent none or a bad one."""
        value = self.headers.get(PRODUCED_AT)
        if value is None:
            return None
        try:
            stamp = float(value)
        except ValueError:
            return None
        return stamp if math.isfinite(stamp) else None

    def fingerprint(self) -> str:
        """sha256 of the raw body: names a message whose content may not be shown."""
        return hashlib.sha256(self.raw or b"").hexdigest()


@dataclass(slots=True)
class DeadLetter:
    """A message the consumer refused: why, and its payload **after masking** (or None).

    ``payload`` is None when there was nothing safe to keep (a body that is not JSON
    cannot be masked field by field, so only its sha256 and size are kept). The message
    key is left out too: brokers' keys are often a customer or card id.
    """

    message: Message
    reason: str
    payload: dict[str, Any] | None

    def record(self, source: str, failed_at: float) -> dict[str, Any]:
        """The JSON object written to the dead-letter destination."""
        raw = self.message.raw or b""
        return {
            "source": source,
            "message_id": self.message.id,
            "reason": self.reason,
            "payload": self.payload,
            "payload_sha256": self.message.fingerprint(),
            "payload_bytes": len(raw),
            "attempt": self.message.attempt,
            "produced_at": self.message.produced_at,
            "failed_at": failed_at,
        }


def encode_body(record: dict[str, Any]) -> bytes:
    """A transaction as the JSON body producers send (dates as ISO 8601, NaN as null)."""
    return orjson.dumps(record, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _json_default(value: Any) -> Any:
    iso = getattr(value, "isoformat", None)
    if iso is not None:  # pandas.Timestamp, datetime.date
        return iso()
    item = getattr(value, "item", None)
    if item is not None:  # numpy scalars that orjson does not take
        return item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def decode_body(raw: bytes | str | None) -> tuple[dict[str, Any], str | None]:
    """``(payload, None)`` for a JSON object, ``({}, reason)`` for anything else."""
    if raw is None:
        return {}, "empty message: no body"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return {}, f"malformed JSON: {exc}"
    if not isinstance(value, dict):
        return {}, f"the body is JSON but not an object (found {type(value).__name__})"
    return value, None
