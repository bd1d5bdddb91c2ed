"""Transactions from files through the same interface as streams: :class:`FileSource`.

A CSV or Parquet file, or a folder of them (hive-style ``key=value`` partitions become
columns), read with :func:`loopline.data.tables.read_table_source` and handed out in
batches. A file has no broker to remember what was settled: acknowledging is a no-op, and
reading the same file again is harmless because the consumer skips transactions whose
decision is already in the decision log. Dead letters are appended to a JSON Lines file
(``dead_letter_path``), or kept in :attr:`FileSource.dead` when none is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loopline.stream.message import DeadLetter, Message, encode_body
from loopline.stream.source import Source

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FileSource"]


class FileSource(Source):
    """Rows of a table source as messages, ``rows_per_chunk`` rows converted at a time.

    ``key_column`` (default ``TRANSACTION_ID`` when present) becomes each message's key.
    Each message's ``raw`` is its row as JSON, so a refused row is fingerprinted like a
    broker message.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        format: str = "auto",
        dead_letter_path: str | Path | None = None,
        key_column: str | None = "TRANSACTION_ID",
        rows_per_chunk: int = 10_000,
    ) -> None:
        self.path = Path(path).expanduser()
        self.format = format
        self.name = f"file:{self.path}"
        self.dead_letter_path = Path(dead_letter_path) if dead_letter_path else None
        self.key_column = key_column
        self.rows_per_chunk = rows_per_chunk
        self.dead: list[dict[str, Any]] = []
        self._frame: pd.DataFrame | None = None
        self._row = 0
        self._pending: list[Message] = []

    async def open(self) -> None:
        from loopline.data.tables import read_table_source

        self._frame = read_table_source(self.path, format=self.format)  # type: ignore[arg-type]
        self._row = 0
        if self.key_column not in self._frame.columns:
            self.key_column = None

    @property
    def rows(self) -> int:
        """Rows in the table (0 before :meth:`open`)."""
        return 0 if self._frame is None else len(self._frame)

    @property
    def exhausted(self) -> bool:
        return self._frame is not None and self._row >= len(self._frame) and not self._pending

    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:
        if self._frame is None:
            await self.open()
        assert self._frame is not None
        while len(self._pending) < max_messages and self._row < len(self._frame):
            self._pending.extend(self._convert(self._row, self.rows_per_chunk))
            self._row = min(self._row + self.rows_per_chunk, len(self._frame))
        batch, self._pending = self._pending[:max_messages], self._pending[max_messages:]
        return batch

    def _convert(self, start: int, count: int) -> list[Message]:
        assert self._frame is not None
        chunk = self._frame.iloc[start : start + count]
        records = chunk.astype(object).where(chunk.notna(), None).to_dict("records")
        messages = []
        for offset, record in enumerate(records):
            raw = encode_body(record)
            payload = orjson.loads(raw)  # plain JSON types, exactly what a broker would carry
            key = payload.get(self.key_column) if self.key_column else None
            messages.append(
                Message(
                    id=f"{self.path.name}:{start + offset}",
                    payload=payload,
                    key=None if key is None else str(key),
                    raw=raw,
                )
            )
        return messages

    async def ack(self, messages: Sequence[Message]) -> None:
        return None

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        now = time.time()
        records = [letter.record(self.name, now) for letter in letters]
        if self.dead_letter_path is None:
            self.dead.extend(records)
            return
        self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter_path.open("ab") as fh:
            for record in records:
                fh.write(orjson.dumps(record) + b"\n")
