"""Batch inference: score a CSV or Parquet file of any size with a loaded model, in chunks.

:func:`predict_file` streams the input ``chunk_rows`` rows at a time (pyarrow's streaming CSV
reader, ``ParquetFile.iter_batches`` or a Parquet dataset folder), scores each chunk and
appends it to the output, so memory stays bounded by the chunk size whatever the file size
(for Parquet input, by the larger of the chunk and the file's row groups, which pyarrow
decodes whole). The output is written to a hidden temp file beside the target and renamed
at the end: an error leaves no half-written output behind.

``loopline predict NAME@ALIAS INPUT OUTPUT`` (:mod:`loopline.cli.predict`) calls it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from loopline.errors import DataError, LooplineError

if TYPE_CHECKING:
    import pyarrow as pa

    from loopline.registry.models import LoadedModel

__all__ = ["Progress", "predict_file"]

Format = Literal["csv", "parquet"]
#: ``progress(rows_done, total_rows)``; ``total_rows`` is None or an estimate for CSV input.
Progress = Callable[[int, int | None], None]

PREDICTION = "prediction"
PROBA_PREFIX = "proba."
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
# CSV bytes pyarrow parses at a time. Its streaming reader holds a few dozen blocks read
# ahead, so this sets the reader's share of memory (~40 MB). A row longer than a block makes
# the reader fail: predict_file then starts over with blocks 16x larger, up to the maximum.
_CSV_BLOCK_BYTES = 1 << 20
_MAX_CSV_BLOCK_BYTES = 256 << 20
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_FORMAT_HINT = "use a .csv, .csv.gz, .parquet or .pq file (or a folder of Parquet files)"


def predict_file(
    loaded: LoadedModel,
    input_path: str | Path,
    output_path: str | Path,
    *,
    chunk_rows: int = 50_000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score every row of ``input_path`` and write ``output_path``, ``chunk_rows`` at a time.

    The output holds the input columns, ``prediction``, one ``proba.<class>`` per class,
    ``model_name`` and ``model_version``; its format follows the output suffix (``.csv``,
    ``.csv.gz``, ``.parquet``, ``.pq``), else the input's. Input columns with those names are
    replaced. Returns a summary: rows, chunks, seconds, rows_per_s, paths, formats, model
    name and version, classes and replaced columns. Raises
    :class:`~loopline.errors.DataError` for a missing or unreadable input, missing model input
    columns, or rows the model cannot score; the output is then left untouched.
    """
    if chunk_rows < 1:
        raise LooplineError(
            f"chunk_rows must be at least 1; found {chunk_rows}", hint="the default is 50000"
        )
    started = time.perf_counter()
    source = Path(input_path)
    target = Path(output_path)
    input_format = input_format_of(source)
    output_format = _format_of(target) or input_format
    block_bytes = _CSV_BLOCK_BYTES
    while True:
        try:
            plan, rows, chunks = _predict(
                loaded,
                source,
                target,
                (input_format, output_format),
                chunk_rows,
                block_bytes,
                progress,
            )
            break
        except _RowTooLong as exc:  # the output is still a temp file: start over
            block_bytes = _larger_block(block_bytes, source, exc)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "chunks": chunks,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        "input": str(source),
        "output": str(target),
        "input_format": input_format,
        "output_format": output_format,
        "model_name": loaded.info.name,
        "model_version": loaded.info.version,
        "classes": plan.classes,
        "replaced_columns": plan.replaced,
    }


def _predict(
    loaded: LoadedModel,
    source: Path,
    target: Path,
    formats: tuple[Format, Format],
    chunk_rows: int,
    block_bytes: int,
    progress: Progress | None,
) -> tuple[_OutputPlan, int, int]:
    input_format, output_format = formats
    reader = _open_reader(source, input_format, chunk_rows, loaded, output_format, block_bytes)
    try:
        plan = _OutputPlan.build(loaded, reader.schema, source)
        rows, chunks = _write_atomically(
            target, output_format, plan, reader, loaded, chunk_rows, progress
        )
    finally:
        reader.close()
    return plan, rows, chunks


def _larger_block(block_bytes: int, source: Path, exc: Exception) -> int:
    if block_bytes >= _MAX_CSV_BLOCK_BYTES:
        raise DataError(
            f"cannot read {source}: a row is longer than {block_bytes:,} bytes ({exc})",
            hint="check the file's quoting: an unclosed quote swallows the rest of the file",
        ) from None
    return block_bytes * 16


# --- formats and readers --------------------------------------------------------------------


def input_format_of(path: Path) -> Format:
    """The format of an input file or Parquet folder; DataError when missing or unknown."""
    if path.is_dir():
        return "parquet"
    if not path.is_file():
        raise DataError(f"input file {path} does not exist", hint=_FORMAT_HINT)
    found = _format_of(path)
    if found is None:
        raise DataError(f"cannot tell the format of {path} from its name", hint=_FORMAT_HINT)
    return found


def _format_of(path: Path) -> Format | None:
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


class _Reader(Protocol):
    schema: pa.Schema

    def batches(self) -> Iterator[pa.RecordBatch]: ...

    def total_rows(self, rows_done: int) -> int | None: ...

    def close(self) -> None: ...


class _RowTooLong(Exception):
    """A CSV row spans more than one block: read again with larger blocks."""


def _open_reader(
    path: Path,
    fmt: Format,
    chunk_rows: int,
    loaded: LoadedModel,
    output_format: Format,
    block_bytes: int,
) -> _Reader:
    import pyarrow as pa

    try:
        if fmt == "csv":
            # Columns the model does not read only pass through: read them as text when the
            # output is CSV too (lossless, and no type guess can fail half-way through).
            as_text = output_format == "csv"
            return _CsvReader(path, block_bytes, passthrough_as_text=as_text, loaded=loaded)
        return _ParquetReader(path, chunk_rows)
    except (OSError, pa.ArrowException) as exc:
        if _straddles(exc):
            raise _RowTooLong(str(exc)) from None
        raise DataError(f"cannot read {path}: {exc}", hint=_FORMAT_HINT) from None


def _straddles(exc: Exception) -> bool:
    return "straddl" in str(exc)  # pyarrow: "straddling object straddles two block boundaries"


class _CsvReader:
    """pyarrow's streaming CSV reader; the byte offset gives the progress estimate."""

    def __init__(
        self, path: Path, block_bytes: int, *, passthrough_as_text: bool, loaded: LoadedModel
    ) -> None:
        import pyarrow as pa

        self.path = path
        self._block_bytes = block_bytes
        self._size = path.stat().st_size
        inputs = set(loaded.input_columns)
        self._raw, self._reader = self._open({})
        if passthrough_as_text and inputs:
            text_types = {n: pa.string() for n in self._reader.schema.names if n not in inputs}
            self.close()
            self._raw, self._reader = self._open(text_types)
        self.schema = self._reader.schema

    def _open(self, column_types: dict[str, pa.DataType]) -> tuple[Any, Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        raw = pa.OSFile(str(self.path))
        stream = pa.CompressedInputStream(raw, "gzip") if _is_gzip(self.path) else raw
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=self._block_bytes),
            # Quoted newlines are common in free text (tweets, reviews).
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(column_types=column_types),
        )
        return raw, reader

    def batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        while True:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowException as exc:
                if _straddles(exc):
                    raise _RowTooLong(str(exc)) from None
                raise DataError(
                    f"cannot read {self.path} past byte {self._raw.tell():,}: {exc}",
                    hint="a column's values changed type after the first rows; fix those "
                    "rows, or convert the file to Parquet with explicit types",
                ) from None
            yield batch

    def total_rows(self, rows_done: int) -> int | None:
        """Rows done scaled by the share of the file read so far (reads run a little ahead)."""
        position = self._raw.tell()
        if position <= 0 or rows_done <= 0:
            return None
        return max(rows_done, round(rows_done * self._size / position))

    def close(self) -> None:
        self._raw.close()


class _ParquetReader:
    """One Parquet file (``iter_batches``) or a folder of them (a dataset, no read-ahead)."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        self.path = path
        self._file: Any = None
        if path.is_dir():
            self._dataset = ds.dataset(str(path), format="parquet")
            self.schema = self._dataset.schema
            self._total = self._dataset.count_rows()
        else:
            self._file = pq.ParquetFile(str(path))
            self.schema = self._file.schema_arrow
            self._total = self._file.metadata.num_rows
        self._chunk_rows = chunk_rows

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._file is not None:
            yield from self._file.iter_batches(batch_size=self._chunk_rows)
        else:
            yield from self._dataset.to_batches(
                batch_size=self._chunk_rows, batch_readahead=1, fragment_readahead=1
            )

    def total_rows(self, rows_done: int) -> int | None:
        return int(self._total)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _rechunk(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.Table]:
    """Regroup batches of any size into tables of exactly ``chunk_rows`` (the last: fewer)."""
    import pyarrow as pa

    held: list[pa.RecordBatch] = []
    held_rows = 0
    for batch in batches:
        held.append(batch)
        held_rows += batch.num_rows
        while held_rows >= chunk_rows:
            table = pa.Table.from_batches(held)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            held, held_rows = rest.to_batches(), rest.num_rows
    if held_rows:
        yield pa.Table.from_batches(held)


# --- scoring and writing --------------------------------------------------------------------


@dataclass(frozen=True)
class _OutputPlan:
    """Which input columns pass through, and the output schema."""

    keep: list[str]
    replaced: list[str]
    classes: list[str]
    schema: pa.Schema

    @classmethod
    def build(cls, loaded: LoadedModel, schema: pa.Schema, source: Path) -> _OutputPlan:
        import pyarrow as pa

        missing = [c for c in loaded.input_columns if c not in schema.names]
        if missing:
            raise DataError(
                f"{source} lacks the input columns {missing} that model {loaded.info.ref} "
                f"needs; found {schema.names}",
                hint=f"rename or add columns so the file has {loaded.input_columns}",
            )
        classes = [str(c) for c in loaded.classes]
        added = [PREDICTION, *(PROBA_PREFIX + c for c in classes), MODEL_NAME, MODEL_VERSION]
        replaced = [n for n in schema.names if n in added]
        keep = [n for n in schema.names if n not in added]
        fields = [schema.field(n) for n in keep]
        fields.append(pa.field(PREDICTION, pa.string()))
        fields.extend(pa.field(PROBA_PREFIX + c, pa.float64()) for c in classes)
        fields += [pa.field(MODEL_NAME, pa.string()), pa.field(MODEL_VERSION, pa.string())]
        return cls(keep=keep, replaced=replaced, classes=classes, schema=pa.schema(fields))


def _write_atomically(
    target: Path,
    fmt: Format,
    plan: _OutputPlan,
    reader: _Reader,
    loaded: LoadedModel,
    chunk_rows: int,
    progress: Progress | None,
) -> tuple[int, int]:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    rows = chunks = 0
    try:
        with _writer(temp, fmt, plan.schema, gzip=_is_gzip(target)) as write:
            if progress is not None:
                progress(0, reader.total_rows(0))
            for chunk in _rechunk(reader.batches(), chunk_rows):
                write(_score(loaded, chunk, plan, rows))
                rows += chunk.num_rows
                chunks += 1
                if progress is not None:
                    progress(rows, reader.total_rows(rows))
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(rows, rows)
    return rows, chunks


@contextmanager
def _writer(
    path: Path, fmt: Format, schema: pa.Schema, *, gzip: bool
) -> Iterator[Callable[[pa.Table], None]]:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        # One row group per chunk: readers of the output stream it chunk by chunk too.
        with pq.ParquetWriter(str(path), schema, compression="zstd") as parquet:
            yield parquet.write_table
        return
    sink = pa.CompressedOutputStream(str(path), "gzip") if gzip else pa.OSFile(str(path), "wb")
    with sink, pcsv.CSVWriter(sink, schema) as csv_writer:
        yield csv_writer.write_table


def _score(loaded: LoadedModel, chunk: pa.Table, plan: _OutputPlan, first_row: int) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    columns = loaded.input_columns or chunk.column_names
    frame = chunk.select(columns).to_pandas()
    try:
        proba = np.asarray(loaded.predict_proba(frame), dtype=np.float64)
    except LooplineError:
        raise
    except Exception as exc:
        last = first_row + chunk.num_rows
        raise DataError(
            f"model {loaded.info.ref} failed on rows {first_row:,}-{last:,}: "
            f"{type(exc).__name__}: {exc}",
            hint="check those rows for missing or malformed values",
        ) from exc
    classes = plan.classes
    if proba.ndim != 2 or proba.shape != (chunk.num_rows, len(classes)):
        raise DataError(
            f"model {loaded.info.ref} returned probabilities of shape {proba.shape}; "
            f"expected ({chunk.num_rows}, {len(classes)}) for classes {classes}",
            hint="the model's classes do not match its output; re-register it",
        )
    n = chunk.num_rows
    labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    arrays = [chunk.column(name) for name in plan.keep]
    arrays.append(pa.array(labels, pa.string()))
    arrays.extend(pa.array(np.ascontiguousarray(proba[:, i])) for i in range(len(classes)))
    arrays.append(pa.array([loaded.info.name] * n, pa.string()))
    arrays.append(pa.array([loaded.info.version] * n, pa.string()))
    return pa.Table.from_arrays(arrays, schema=plan.schema)
