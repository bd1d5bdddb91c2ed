"""The one interface every transaction source implements: :class:`Source`.

A source yields batches of :class:`~loopline.stream.message.Message` and settles each
message exactly one way: :meth:`Source.ack` once its decision is committed (or it was
decided before), or :meth:`Source.dead_letter` when it was refused. Until then a message
stays pending at the broker, so a consumer killed at any point loses nothing: the next one
gets the message again (at-least-once), and the decision log makes a second delivery
harmless (see :mod:`loopline.stream.consumer`).

Sources are asynchronous (the brokers' clients are); a file source simply never waits::

    async with open_source("redis://127.0.0.1:6379/0?stream=tx") as source:
        async for batch in source.batches(max_messages=256, timeout=0.05):
            ...
            await source.ack(batch)
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from loopline.errors import LooplineError
from loopline.stream.message import DeadLetter, Message

__all__ = ["Sink", "Source", "SourceUnavailable", "StreamError"]


class StreamError(LooplineError):
    """A stream cannot be used as asked: a bad URL, a missing option, a broker error."""


class SourceUnavailable(StreamError):
    """The broker (or a store the consumer needs) cannot be reached; nothing was acked."""


class Source(abc.ABC):
    """Batches of messages in, acknowledgements and dead letters out.

    Subclasses implement :meth:`fetch`, :meth:`ack` and :meth:`dead_letter` (and
    :meth:`open`/:meth:`close` when they hold connections). ``name`` identifies the source
    in the decision log and in dead letters (a URL without its password).
    """

    name: str = "source"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect; create consumer groups, queues or streams that are missing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect. Messages fetched but not settled stay pending at the broker."""

    @abc.abstractmethod
    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` messages; waits at most ``timeout`` seconds for the first.

        Returns as soon as at least one message is there (never waits to fill a batch),
        and an empty list when none came in time.
        """

    @abc.abstractmethod
    async def ack(self, messages: Sequence[Message]) -> None:
        """Settle these messages for good: they are never delivered again."""

    @abc.abstractmethod
    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Write each refused message (its masked payload and reason) to the dead-letter
        destination, then settle it like :meth:`ack` (atomically where the broker can)."""

    @property
    def exhausted(self) -> bool:
        """True when the source can never deliver more (the end of a file); streams never end."""
        return False

    async def batches(self, max_messages: int, timeout: float) -> AsyncIterator[list[Message]]:
        """Non-empty batches until the source is exhausted (forever for a stream)."""
        while not self.exhausted:
            batch = await self.fetch(max_messages, timeout)
            if batch:
                yield batch

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Sink(abc.ABC):
    """Where a producer sends transactions (``loopline stream replay``, tests, benchmarks).

    :meth:`send` stamps each message's ``produced_at`` header at the moment it is handed
    to the broker, so latency is measured from there to the committed decision.
    """

    name: str = "sink"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect (and create the stream, subject or queue when the broker needs it)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and disconnect."""

    @abc.abstractmethod
    async def send(self, bodies: Sequence[bytes], keys: Sequence[str | None] | None = None) -> None:
        """Send JSON bodies (see :func:`~loopline.stream.message.encode_body`) in order."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
