"""Replay a table of transactions into a stream at a steady rate (test traffic).

``loopline stream replay FILE STREAM_URL --rate N`` calls :func:`replay`: the rows of a
CSV/Parquet file or folder, in file order, each sent as one JSON message stamped with
``produced_at`` when it is handed to the broker. The schedule is absolute (row ``i`` is due
``i / rate`` seconds after the start), so a slow moment is caught up instead of lowering the
rate; ``rate=0`` sends as fast as the broker takes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.stream.message import encode_body
from loopline.stream.source import Sink, StreamError

__all__ = ["ReplayResult", "encode_rows", "replay", "send_at_rate"]


@dataclass
class ReplayResult:
    """How many messages went out, over how long."""

    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "seconds": round(self.seconds, 3), "rate": round(self.rate, 1)}


def encode_rows(
    path: str | Path,
    *,
    limit: int | None = None,
    skip: int = 0,
    key_column: str | None = "TRANSACTION_ID",
) -> tuple[list[bytes], list[str | None]]:
    """The rows of a table source as JSON bodies, with their keys."""
    from loopline.data.tables import read_table_source

    frame = read_table_source(path)
    frame = frame.iloc[skip : None if limit is None else skip + limit]
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    bodies = [encode_body(r) for r in records]
    if key_column and key_column in frame.columns:
        keys: list[str | None] = [
            None if r[key_column] is None else str(r[key_column]) for r in records
        ]
    else:
        keys = [None] * len(bodies)
    return bodies, keys


async def send_at_rate(
    sink: Sink,
    bodies: Sequence[bytes],
    keys: Sequence[str | None] | None = None,
    *,
    rate: float,
    chunk: int = 500,
) -> ReplayResult:
    """Send ``bodies`` through an open ``sink`` at ``rate`` per second (0: at once)."""
    if rate < 0:
        raise StreamError(f"the rate must be 0 (as fast as possible) or more, found {rate}")
    start = time.perf_counter()
    sent = 0
    total = len(bodies)
    while sent < total:
        if rate > 0:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            if due <= sent:
                await asyncio.sleep(max(0.0, (sent / rate) - (time.perf_counter() - start)))
                continue
            upto = min(due, sent + chunk)
        else:
            upto = min(total, sent + chunk)
        await sink.send(bodies[sent:upto], None if keys is None else keys[sent:upto])
        sent = upto
    return ReplayResult(sent=sent, seconds=time.perf_counter() - start)


def replay(
    path: str | Path,
    url: str,
    *,
    rate: float = 1000.0,
    limit: int | None = None,
    skip: int = 0,
) -> ReplayResult:
    """Send the rows of ``path`` to the stream ``url`` at ``rate`` messages per second."""
    from loopline.stream.connect import open_sink

    bodies, keys = encode_rows(path, limit=limit, skip=skip)
    if not bodies:
        raise StreamError(f"{path} holds no rows to replay")

    async def _run() -> ReplayResult:
        async with open_sink(url) as sink:
            return await send_at_rate(sink, bodies, keys, rate=rate)

    return asyncio.run(_run())
