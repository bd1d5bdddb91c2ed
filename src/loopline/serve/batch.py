"""Batch inference: score a CSV or Parquet file of any size with a loaded model, in chunks.

:func:`predict_file` streams the input ``chunk_rows`` rows at a time (pyarrow's streaming CSV
reader, ``ParquetFile.iter_batches`` or a Parquet dataset folder), scores each chunk and
appends it to the output, so memory stays bounded by the chunk size whatever the file size
(for Parquet input, by the larger of the chunk and the file's row groups, which pyarrow
decodes whole). The output is written to a hidden temp file beside the target and renamed
at the end: an error leaves no half-written output behind.

Nothing is scored or dropped silently: a row whose text input is empty or only whitespace
keeps its place in the output with empty predictions (a model answers even "" with a
confident label), a CSV row with the wrong number of fields is an error naming its line
(or left out and counted with ``skip_malformed``), a quote that is never closed is an error
naming its line, and the summary counts the rows read, scored, empty and malformed.

``loopline predict NAME@ALIAS INPUT OUTPUT`` (:mod:`loopline.cli.predict`) calls it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from loopline.errors import DataError, LooplineError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from loopline.registry.models import LoadedModel

__all__ = ["Progress", "input_format_of", "output_format_of", "predict_file"]

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
_SUPPORTED = ".csv, .csv.gz, .parquet or .pq"
_INPUT_HINT = "convert the file to CSV or Parquet; if it is one, rename it (e.g. data.csv)"
#: How many lines of left-out (malformed) rows the summary lists.
MALFORMED_LINES_SHOWN = 10


def predict_file(
    loaded: LoadedModel,
    input_path: str | Path,
    output_path: str | Path,
    *,
    chunk_rows: int = 50_000,
    progress: Progress | None = None,
    columns: Mapping[str, str] | None = None,
    create_dirs: bool = False,
    skip_malformed: bool = False,
) -> dict[str, Any]:
    """Score every row of ``input_path`` and write ``output_path``, ``chunk_rows`` at a time.

    The output holds the input columns, ``prediction``, one ``proba.<class>`` per class,
    ``model_name`` and ``model_version``; its format follows the output suffix (``.csv``,
    ``.csv.gz``, ``.parquet``, ``.pq``; any other suffix is refused). Input columns with
    those names are replaced. ``columns`` maps a model input to the file column that holds
    it when the names differ (``{"text": "CONTENT"}``; the CLI's ``--column text=CONTENT``).

    Rows are never dropped silently:

    * a row whose text input is missing, empty or only whitespace is not scored: it stays in
      the output, in its place, with empty ``prediction`` and ``proba.*`` (counted as
      ``rows_empty``); numeric inputs are left to the model;
    * a CSV row with more or fewer fields than the header is an error naming its line,
      unless ``skip_malformed``: then it is left out and counted (``rows_malformed``, the
      first lines in ``malformed_lines``);
    * a quoted CSV value that is never closed is always an error naming its line (the rest
      of the file would be read as part of it).

    A missing output folder is an error unless ``create_dirs``. Returns a summary: rows
    (written), rows_read, rows_scored, rows_empty, rows_malformed, malformed_lines, chunks,
    seconds, rows_per_s, paths, formats, columns, model name and version, classes and
    replaced columns. Raises :class:`~loopline.errors.DataError` for a missing or unreadable
    input, an unknown suffix, missing model input columns, malformed rows, or rows the model
    cannot score; nothing is written then (the output is a temp file until complete, and
    folders made for it are removed).
    """
    if chunk_rows < 1:
        raise LooplineError(
            f"chunk_rows must be at least 1; found {chunk_rows}", hint="the default is 50000"
        )
    started = time.perf_counter()
    source = Path(input_path)
    target = Path(output_path)
    input_format = input_format_of(source)
    output_format = output_format_of(target, create_dirs=create_dirs)
    mapping = _check_mapping(loaded, columns or {})
    created = _create_folders(target.parent) if create_dirs else []
    try:
        result = _predict_with_retries(
            loaded,
            source,
            target,
            (input_format, output_format),
            chunk_rows,
            progress,
            _ReadOptions(mapping, skip_malformed),
        )
    except BaseException:
        _remove_folders(created)
        raise
    seconds = time.perf_counter() - started
    rows = result.written
    return {
        "rows": rows,
        "rows_read": result.written + result.malformed,
        "rows_scored": result.scored,
        "rows_empty": result.empty,
        "rows_malformed": result.malformed,
        "malformed_lines": result.malformed_lines,
        "chunks": result.chunks,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        "input": str(source),
        "output": str(target),
        "input_format": input_format,
        "output_format": output_format,
        "columns": result.plan.mapping,
        "model_name": loaded.info.name,
        "model_version": loaded.info.version,
        "classes": result.plan.classes,
        "replaced_columns": result.plan.replaced,
    }


@dataclass(frozen=True)
class _ReadOptions:
    mapping: dict[str, str]  # model input -> file column, where they differ
    skip_malformed: bool


@dataclass
class _Result:
    plan: _OutputPlan
    written: int = 0
    scored: int = 0
    empty: int = 0
    malformed: int = 0
    malformed_lines: list[int] = field(default_factory=list)
    chunks: int = 0


def _predict_with_retries(
    loaded: LoadedModel,
    source: Path,
    target: Path,
    formats: tuple[Format, Format],
    chunk_rows: int,
    progress: Progress | None,
    options: _ReadOptions,
) -> _Result:
    block_bytes = _CSV_BLOCK_BYTES
    checked_quotes = False
    while True:
        try:
            return _predict(
                loaded, source, target, formats, chunk_rows, block_bytes, progress, options
            )
        except _RowTooLong as exc:  # the output is still a temp file: start over
            if not checked_quotes:  # an unclosed quote makes a row run to the end of the file
                _raise_if_unclosed_quote(source)
                checked_quotes = True
            block_bytes = _larger_block(block_bytes, source, exc)


def _predict(
    loaded: LoadedModel,
    source: Path,
    target: Path,
    formats: tuple[Format, Format],
    chunk_rows: int,
    block_bytes: int,
    progress: Progress | None,
    options: _ReadOptions,
) -> _Result:
    input_format, output_format = formats
    reader = _open_reader(
        source, input_format, chunk_rows, loaded, output_format, block_bytes, options
    )
    try:
        plan = _OutputPlan.build(loaded, reader.schema, source, options.mapping)
        result = _write_atomically(
            target, output_format, plan, reader, loaded, chunk_rows, progress
        )
    finally:
        reader.close()
    return result


def _larger_block(block_bytes: int, source: Path, exc: Exception) -> int:
    if block_bytes >= _MAX_CSV_BLOCK_BYTES:
        raise DataError(
            f"cannot read {source}: a row is longer than {block_bytes:,} bytes ({exc})",
            hint="check the file's quoting: an unclosed quote swallows the rest of the file",
        ) from None
    return block_bytes * 16


def _check_mapping(loaded: LoadedModel, columns: Mapping[str, str]) -> dict[str, str]:
    """``columns`` as a dict, once every key is one of the model's inputs."""
    inputs = list(loaded.input_columns)
    for model_input, column in columns.items():
        if model_input not in inputs:
            raise DataError(
                f"{model_input!r} is not an input of model {loaded.info.ref}; its inputs are "
                f"{inputs}",
                hint=f"map an input to a column of the file: --column {inputs[0]}=COLUMN"
                if inputs
                else "this model reads every column of the file as it is",
            )
        if not column:
            raise DataError(
                f"no file column given for the model input {model_input!r}",
                hint=f"name the file's column: --column {model_input}=COLUMN",
            )
    return {model_input: column for model_input, column in columns.items() if model_input != column}


def _create_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and any missing parents; the ones created, deepest first."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(f"cannot create the output folder: {folder} is a file")
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove folders made for an output that was not written (those still empty)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


# --- formats and readers --------------------------------------------------------------------


def input_format_of(path: Path) -> Format:
    """The format of an input file or Parquet folder; DataError when missing or unknown."""
    if path.is_dir():
        return "parquet"
    if not path.is_file():
        raise DataError(
            f"input file {path} does not exist",
            hint="check the path; a relative path starts from the current folder",
        )
    found = _format_of(path)
    if found is None:
        raise DataError(
            f"cannot tell the format of {path} from its name: it must end in {_SUPPORTED} "
            "(or be a folder of Parquet files)",
            hint=_INPUT_HINT,
        )
    return found


def output_format_of(path: Path, *, create_dirs: bool = False) -> Format:
    """The output format, from the suffix alone; DataError for any other suffix, a folder,
    or (unless ``create_dirs``) a folder that does not exist."""
    if path.is_dir():
        raise DataError(
            f"the output {path} is a folder; name a file ending in {_SUPPORTED}",
            hint=f"e.g. {path / 'predictions.parquet'}",
        )
    found = _format_of(path)
    if found is None:
        stem = path.name.split(".", 1)[0] or "predictions"
        raise DataError(
            f"cannot tell the output format from the name {path.name!r}: it must end in "
            f"{_SUPPORTED}",
            hint=f"name the output {stem}.csv or {stem}.parquet",
        )
    folder = path.parent
    if not create_dirs and not folder.is_dir():
        raise DataError(
            f"the output folder {folder} does not exist",
            hint="create it first, or add --create-dirs (create_dirs=True in Python)",
        )
    return found


def _format_of(path: Path) -> Format | None:
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    return None


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


class _Reader(Protocol):
    schema: pa.Schema
    malformed: int  # rows left out (CSV rows with the wrong number of fields)

    def batches(self) -> Iterator[pa.RecordBatch]: ...

    def total_rows(self, rows_done: int) -> int | None: ...

    def finish(self) -> list[int]:
        """Called once every batch was read: raise if the input was broken after all; the
        first lines of the rows left out."""
        ...

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
    options: _ReadOptions,
) -> _Reader:
    import pyarrow as pa

    try:
        if fmt == "csv":
            # Columns the model does not read only pass through: read them as text when the
            # output is CSV too (lossless, and no type guess can fail half-way through).
            inputs = [options.mapping.get(c, c) for c in loaded.input_columns]
            types = getattr(loaded, "input_types", None) or {}
            texts = [
                options.mapping.get(c, c) for c in loaded.input_columns if types.get(c) == "string"
            ]
            return _CsvReader(
                path,
                block_bytes,
                inputs=inputs,
                text_inputs=texts,
                passthrough_as_text=output_format == "csv",
                skip_malformed=options.skip_malformed,
            )
        return _ParquetReader(path, chunk_rows)
    except (OSError, pa.ArrowException) as exc:
        if _straddles(exc):
            raise _RowTooLong(str(exc)) from None
        raise DataError(
            f"cannot read {path}: {exc}",
            hint="check that it is a CSV or Parquet file, as its name says",
        ) from None


def _straddles(exc: Exception) -> bool:
    return "straddl" in str(exc)  # pyarrow: "straddling object straddles two block boundaries"


class _QuoteCounter:
    """A file object over a pyarrow stream that counts the quote characters read through it.

    A CSV whose quotes are all closed has an even number of them (``"..."``, and ``""``
    inside a quoted value); pyarrow reads a quote that is never closed as a value running
    to the end of the file, without a word. An odd count sends the file to
    :func:`_scan_csv`, which finds the line (a quote inside an unquoted value, as in
    ``a 5" screen``, is a character and makes the count odd too).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.quotes = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.quotes += data.count(b'"')
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class _CsvReader:
    """pyarrow's streaming CSV reader; the byte offset gives the progress estimate.

    Model inputs the signature says are text are read as text (a first block of empty
    values would otherwise be typed as nulls). Rows with the wrong number of fields go to
    :meth:`_invalid_row`: an error naming the line, or left out and counted.
    """

    def __init__(
        self,
        path: Path,
        block_bytes: int,
        *,
        inputs: list[str],
        text_inputs: list[str],
        passthrough_as_text: bool,
        skip_malformed: bool,
    ) -> None:
        import pyarrow as pa

        self.path = path
        self._block_bytes = block_bytes
        self._size = path.stat().st_size
        self._skip = skip_malformed
        self._open({})
        names = self._reader.schema.names
        types = {n: pa.string() for n in text_inputs if n in names}
        if passthrough_as_text and inputs:
            types.update({n: pa.string() for n in names if n not in inputs})
        if any(self._reader.schema.field(n).type != t for n, t in types.items()):
            self.close()
            self._open(types)
        self.schema = self._reader.schema

    def _open(self, column_types: dict[str, pa.DataType]) -> None:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        self.malformed = 0
        self._malformed_rows: list[int] = []  # pyarrow's row numbers (the header is 1)
        self._first_invalid: Any = None
        self._raw = pa.OSFile(str(self.path))
        stream = pa.CompressedInputStream(self._raw, "gzip") if _is_gzip(self.path) else self._raw
        self._counter = _QuoteCounter(stream)
        try:
            self._reader = pcsv.open_csv(
                self._counter,
                # One thread: pyarrow then tells the row number of a malformed row.
                read_options=pcsv.ReadOptions(block_size=self._block_bytes, use_threads=False),
                # Quoted newlines are common in free text (tweets, reviews).
                parse_options=pcsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=self._invalid_row
                ),
                convert_options=pcsv.ConvertOptions(column_types=column_types),
            )
        except pa.ArrowException as exc:
            self.close()
            raise self._failure(exc, "") from None

    def _invalid_row(self, row: Any) -> str:
        # Always "skip" here: without skip_malformed, batches() raises before yielding the
        # batch that lost the row (so that the header is checked first, for missing columns).
        if self._first_invalid is None:
            self._first_invalid = row
        self.malformed += 1
        if len(self._malformed_rows) < MALFORMED_LINES_SHOWN and row.number is not None:
            self._malformed_rows.append(row.number)
        return "skip"

    def _failure(self, exc: Exception, where: str) -> Exception:
        """The exception to raise for a pyarrow error while reading."""
        if _straddles(exc):
            return _RowTooLong(str(exc))
        return DataError(
            f"cannot read {self.path}{where}: {exc}",
            hint="a column's values changed type after the first rows; fix those rows, or "
            "convert the file to Parquet with explicit types"
            if where
            else "check that it is a CSV file whose first line names the columns",
        )

    def batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        while True:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowException as exc:
                raise self._failure(exc, f" past byte {self._raw.tell():,}") from None
            if self._first_invalid is not None and not self._skip:
                raise _malformed_row_error(self.path, self._first_invalid)
            yield batch

    def total_rows(self, rows_done: int) -> int | None:
        """Rows done scaled by the share of the file read so far (reads run a little ahead)."""
        position = self._raw.tell()
        if position <= 0 or rows_done <= 0:
            return None
        return max(rows_done, round(rows_done * self._size / position))

    def finish(self) -> list[int]:
        if self._counter.quotes % 2:
            _raise_if_unclosed_quote(self.path)
        if not self._malformed_rows:
            return []
        lines, _ = _scan_csv(self.path, self._malformed_rows)
        return [lines[n] for n in self._malformed_rows if n in lines]

    def close(self) -> None:
        self._raw.close()


def _malformed_row_error(path: Path, row: Any) -> DataError:
    where = "a row"
    if row.number is not None:
        lines, unclosed = _scan_csv(path, [row.number])
        if unclosed is not None and unclosed <= lines.get(row.number, unclosed):
            return _unclosed_quote_error(path, unclosed)
        where = f"line {lines.get(row.number, row.number)}"
    text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
    return DataError(
        f"{path}, {where}: a row with {row.actual_columns} fields, expected "
        f"{row.expected_columns} like the header: {text!r}",
        hint="fix or remove that row (quote a value that holds a comma), or add "
        "--skip-malformed to leave such rows out and count them (skip_malformed=True in Python)",
    )


def _raise_if_unclosed_quote(path: Path) -> None:
    _, unclosed = _scan_csv(path, [])
    if unclosed is not None:
        raise _unclosed_quote_error(path, unclosed)


def _unclosed_quote_error(path: Path, line: int) -> DataError:
    return DataError(
        f"{path}, line {line}: a quoted value is never closed, so the rest of the file would "
        "be read as part of it",
        hint='close the quote; a quote inside a quoted value is written twice ("")',
    )


def _scan_csv(path: Path, rows: list[int]) -> tuple[dict[int, int], int | None]:
    """Read the CSV again with Python's csv module, for error messages only: the line on
    which each of ``rows`` starts (pyarrow's row numbers: the header is 1, blank lines do
    not count), and the line of the row whose quoted value is never closed, if any.

    Stops at the last of ``rows``; reads the whole file when ``rows`` is empty.
    """
    import csv
    import gzip

    wanted = set(rows)
    found: dict[int, int] = {}
    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)  # a value may be as long as pyarrow's largest block
    try:
        opener: Any = gzip.open if _is_gzip(path) else open
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            number = 0
            while not wanted or len(found) < len(wanted):
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    if "unexpected end of data" in str(exc):
                        return found, start
                    row = [""]  # e.g. text after a closing quote: pyarrow reads it as a row
                if not row:
                    continue  # a blank line
                number += 1
                if number in wanted:
                    found[number] = start
    finally:
        csv.field_size_limit(limit)
    return found, None


class _ParquetReader:
    """One Parquet file (``iter_batches``) or a folder of them (a dataset, no read-ahead)."""

    malformed = 0

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

    def finish(self) -> list[int]:
        return []

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
    """Which input columns pass through and feed the model, and the output schema."""

    keep: list[str]
    replaced: list[str]
    classes: list[str]
    schema: pa.Schema
    inputs: list[str]  # the model's input columns
    sources: list[str]  # the file column feeding each of them
    texts: list[str]  # the file columns read as text inputs: empty ones are not scored
    mapping: dict[str, str]

    @classmethod
    def build(
        cls, loaded: LoadedModel, schema: pa.Schema, source: Path, mapping: dict[str, str]
    ) -> _OutputPlan:
        import pyarrow as pa

        inputs = list(loaded.input_columns)
        sources = [mapping.get(c, c) for c in inputs]
        for model_input, column in mapping.items():
            if column not in schema.names:
                raise DataError(
                    f"{source} has no column {column!r} (given for the model input "
                    f"{model_input!r}); found {schema.names}",
                    hint=f"name one of the file's columns: --column {model_input}=COLUMN",
                )
        missing = [c for c, s in zip(inputs, sources, strict=True) if s not in schema.names]
        if missing:
            example = " ".join(f"--column {c}=COLUMN" for c in missing)
            raise DataError(
                f"{source} lacks the input columns {missing} that model {loaded.info.ref} "
                f"needs; found {schema.names}",
                hint=f"say which column of the file holds each: {example} "
                f"(in Python: columns={{{', '.join(f'{c!r}: ...' for c in missing)}}})",
            )
        types = getattr(loaded, "input_types", None) or {}
        texts = [
            s
            for c, s in zip(inputs, sources, strict=True)
            if types.get(c) == "string" or (c not in types and _is_text(schema.field(s).type))
        ]
        classes = [str(c) for c in loaded.classes]
        added = [PREDICTION, *(PROBA_PREFIX + c for c in classes), MODEL_NAME, MODEL_VERSION]
        replaced = [n for n in schema.names if n in added]
        keep = [n for n in schema.names if n not in added]
        fields = [schema.field(n) for n in keep]
        fields.append(pa.field(PREDICTION, pa.string()))
        fields.extend(pa.field(PROBA_PREFIX + c, pa.float64()) for c in classes)
        fields += [pa.field(MODEL_NAME, pa.string()), pa.field(MODEL_VERSION, pa.string())]
        return cls(
            keep=keep,
            replaced=replaced,
            classes=classes,
            schema=pa.schema(fields),
            inputs=inputs,
            sources=sources,
            texts=list(dict.fromkeys(texts)),
            mapping=dict(mapping),
        )


def _is_string(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_text(kind: pa.DataType) -> bool:
    """Whether a column of this type holds text (or nothing at all, so far)."""
    import pyarrow as pa

    return _is_string(kind) or bool(pa.types.is_null(kind))


def _write_atomically(
    target: Path,
    fmt: Format,
    plan: _OutputPlan,
    reader: _Reader,
    loaded: LoadedModel,
    chunk_rows: int,
    progress: Progress | None,
) -> _Result:
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    result = _Result(plan)
    try:
        with _writer(temp, fmt, plan.schema, gzip=_is_gzip(target)) as write:
            if progress is not None:
                progress(0, reader.total_rows(0))
            for chunk in _rechunk(reader.batches(), chunk_rows):
                table, empty = _score(loaded, chunk, plan, result.written)
                write(table)
                result.written += chunk.num_rows
                result.empty += empty
                result.scored += chunk.num_rows - empty
                result.chunks += 1
                if progress is not None:
                    progress(result.written, reader.total_rows(result.written))
        result.malformed_lines = reader.finish()
        result.malformed = reader.malformed
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(result.written, result.written)
    return result


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


def _empty_rows(chunk: pa.Table, columns: list[str]) -> np.ndarray | None:
    """Which rows have a text input that is missing, empty or only whitespace (None: none)."""
    import numpy as np
    import pyarrow.compute as pc

    mask: Any = None
    for name in columns:
        column = chunk.column(name)
        if _is_string(column.type):
            blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)
            empty = pc.fill_null(blank, True)
        else:  # a column of nulls only
            empty = pc.is_null(column)
        mask = empty if mask is None else pc.or_(mask, empty)
    if mask is None or not pc.any(mask).as_py():
        return None
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _score(
    loaded: LoadedModel, chunk: pa.Table, plan: _OutputPlan, first_row: int | None
) -> tuple[pa.Table, int]:
    """The chunk with its predictions, and how many of its rows were empty (not scored).

    ``first_row`` is the chunk's place in the input, for error messages (None: unknown, as
    for a batch of Ray Data, see :mod:`loopline.serve.batch_ray`)."""
    import numpy as np
    import pyarrow as pa

    n = chunk.num_rows
    classes = plan.classes
    frame_table = chunk.select(plan.sources).rename_columns(plan.inputs) if plan.inputs else chunk
    empty = _empty_rows(chunk, plan.texts)
    if empty is not None:
        frame_table = frame_table.filter(pa.array(~empty))
    scored = frame_table.num_rows
    proba = (
        _predict_chunk(loaded, frame_table, classes, first_row, n)
        if scored
        else np.empty((0, len(classes)))
    )
    labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    if empty is not None:
        full_labels = np.full(n, None, dtype=object)
        full_labels[~empty] = labels
        full_proba = np.full((n, len(classes)), np.nan)
        full_proba[~empty] = proba
        labels, proba = full_labels, full_proba
    arrays = [chunk.column(name) for name in plan.keep]
    arrays.append(pa.array(labels, pa.string()))
    arrays.extend(
        pa.array(np.ascontiguousarray(proba[:, i]), mask=empty) for i in range(len(classes))
    )
    arrays.append(pa.array([loaded.info.name] * n, pa.string()))
    arrays.append(pa.array([loaded.info.version] * n, pa.string()))
    empty_rows = 0 if empty is None else int(empty.sum())
    return pa.Table.from_arrays(arrays, schema=plan.schema), empty_rows


def _predict_chunk(
    loaded: LoadedModel, table: pa.Table, classes: list[str], first_row: int | None, n: int
) -> np.ndarray:
    import numpy as np

    try:
        proba = np.asarray(loaded.predict_proba(table.to_pandas()), dtype=np.float64)
    except LooplineError:
        raise
    except Exception as exc:
        where = (
            f"a batch of {n:,} rows"
            if first_row is None
            else f"rows {first_row:,}-{first_row + n:,}"
        )
        raise DataError(
            f"model {loaded.info.ref} failed on {where}: {type(exc).__name__}: {exc}",
            hint="check those rows for missing or malformed values",
        ) from exc
    if proba.ndim != 2 or proba.shape != (table.num_rows, len(classes)):
        raise DataError(
            f"model {loaded.info.ref} returned probabilities of shape {proba.shape}; "
            f"expected ({table.num_rows}, {len(classes)}) for classes {classes}",
            hint="the model's classes do not match its output; re-register it",
        )
    return proba
