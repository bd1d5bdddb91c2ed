"""Read raw text datasets into one shape: a DataFrame with ``text`` and ``label`` columns.

Every reader returns a frame whose ``text`` column holds strings and whose ``label`` column
holds strings, or a missing value for unlabelled rows; any other columns the source has
come after them. :func:`load_source` picks the right reader for a path or URL.

Every problem with the input (missing file, empty file, wrong columns, bytes that do not
decode, a malformed CSV row, an unreadable Parquet file, a failed download) raises
:class:`~loopline.errors.DataError` saying what was expected, what was found and what to do.

CSV files are parsed with pyarrow's multi-threaded reader (several times faster than the
``csv`` module on the 1.6M-row Sentiment140 file); the slow ``csv`` module only runs on the
error path, to point at the exact line of a malformed row.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from loopline.core.files import write_atomic
from loopline.data.folders import require_folder
from loopline.errors import DataError

__all__ = [
    "SENTIMENT140_URL",
    "fetch_url",
    "load_source",
    "read_sentiment140",
    "read_table",
    "read_text_folder",
    "read_text_lines",
    "read_vader_ground_truth",
]

#: The canonical Sentiment140 archive (training.1600000.processed.noemoticon.csv + test set).
SENTIMENT140_URL = "https://cs.stanford.edu/people/alecmgo/trainingandtestdata.zip"

SENTIMENT140_COLUMNS = ("polarity", "id", "date", "query", "user", "text")
_POLARITY_LABELS = {"0": "negative", "2": "neutral", "4": "positive"}
#: File-name prefixes that give the label of a text-per-line file in a folder.
LINE_FILE_LABELS = ("positive", "negative", "neutral")
_VADER_COLUMNS = ("id", "score", "text")
_MANIFEST = "manifest.json"
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"

Format = Literal["auto", "sentiment140", "lines", "vader", "table", "text_folder"]
_FORMATS: tuple[str, ...] = ("auto", "sentiment140", "lines", "vader", "table", "text_folder")
#: File names read as documents from the label folders of a text folder.
_DOCUMENT_SUFFIXES = (".txt", ".txt.gz")

# Column names people use for the text and the label, to suggest a mapping when ours is absent.
_TEXT_NAMES = ("text", "content", "tweet", "sentence", "review", "body", "message", "comment")
_LABEL_NAMES = ("label", "class", "sentiment", "target", "polarity", "y", "category")
# Hints name the command-line flag and, for Python callers, the argument behind it.
_PYTHON_ENCODING = "(Python: the encoding argument)"


@dataclass(frozen=True)
class _Input:
    """A byte source: a local file, or a member of a zip archive."""

    name: str  # what messages call it
    open: Callable[[], BinaryIO]  # decompresses .gz transparently
    path: Path | None = None  # set when pyarrow may open the file itself (faster)


# ---------------------------------------------------------------------------------------------
# small checks shared by the readers


def _require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise DataError when it is missing or not a file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"data file not found: {p}",
            hint=f"check the path (relative paths start from {Path.cwd()})",
        )
    if p.is_dir():
        raise DataError(
            f"expected a data file, found a directory: {p}",
            hint="pass a file inside it, or read the folder as text files with --format lines "
            "or --format text_folder (Python: the format argument)",
        )
    return p


def _require_not_empty(p: Path) -> None:
    if p.stat().st_size == 0:
        raise DataError(
            f"data file is empty: {p} (0 bytes)",
            hint="check that the download or export finished, then try again",
        )


def _require_rows(df: pd.DataFrame, name: str) -> None:
    if len(df) == 0:
        raise DataError(
            f"no data rows in {name}: expected at least one row, found none",
            hint="the file holds only a header or blank lines; check the export",
        )


def _codec(encoding: str) -> str:
    """Normalise an encoding name, or raise DataError for an unknown one."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DataError(
            f"unknown text encoding {encoding!r}",
            hint="name a known encoding such as utf-8, latin-1 or cp1252: "
            f"--encoding latin-1 {_PYTHON_ENCODING}",
        ) from None


def _is_gzip(p: Path) -> bool:
    with p.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _file_input(p: Path) -> _Input:
    gz = _is_gzip(p)

    def opener() -> BinaryIO:
        return cast(BinaryIO, gzip.open(p, "rb")) if gz else p.open("rb")

    # pyarrow picks the decompression from the extension, so hand it gzip only as *.gz.
    native = not gz or p.suffix.lower() == ".gz"
    return _Input(str(p), opener, p if native else None)


def _read_bytes(inp: _Input) -> bytes:
    try:
        with inp.open() as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot read {inp.name}: {exc}",
            hint="the file looks truncated or is not valid gzip; download or export it again",
        ) from None


def _head(p: Path, size: int = 65536) -> bytes:
    """The first bytes of a file (decompressed when gzipped), for format sniffing."""
    inp = _file_input(p)
    try:
        with inp.open() as f:
            return f.read(size)
    except (OSError, EOFError, zlib.error):
        return b""


# ---------------------------------------------------------------------------------------------
# decoding errors


def _encoding_hint(bad: bytes, codec: str) -> str:
    """Guess what the undecodable bytes are, so the hint names an encoding to try."""
    byte = bad[:1]
    if codec.startswith("utf-8") and byte and 0xA0 <= byte[0] <= 0xFF:
        char = byte.decode("latin-1")
        return (
            f'byte 0x{byte[0]:02X} is "{char}" in Latin-1: if the file is Latin-1, read it '
            f"with --encoding latin-1 {_PYTHON_ENCODING}"
        )
    if codec.startswith("utf-8") and byte and 0x80 <= byte[0] <= 0x9F:
        return (
            "the bytes look like Windows-1252: read the file with --encoding cp1252 (or "
            f"--encoding latin-1) {_PYTHON_ENCODING}"
        )
    return (
        "re-save the file as UTF-8, or name the encoding it was written in, e.g. "
        f"--encoding latin-1 {_PYTHON_ENCODING}"
    )


def _decode_error(name: str, data: bytes, err: UnicodeDecodeError, codec: str) -> DataError:
    """Turn a UnicodeDecodeError on ``data`` into a DataError naming line and byte offset."""
    start = err.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1)
    bad = data[start : max(err.end, start + 1)]
    return DataError(
        f"cannot decode {name} as {codec}: line {line}, byte {column + 1} of the line "
        f"(byte offset {start} in the file) holds 0x{bad.hex().upper()} ({err.reason})",
        hint=_encoding_hint(bad, codec),
    )


def _locate_decode_error(inp: _Input, codec: str) -> DataError | None:
    """Decode the whole input to find the first bad byte (only runs on the error path)."""
    data = _read_bytes(inp)
    try:
        data.decode(codec)
    except UnicodeDecodeError as err:
        return _decode_error(inp.name, data, err, codec)
    return None


# ---------------------------------------------------------------------------------------------
# CSV core


def _read_csv(
    inp: _Input,
    *,
    encoding: str,
    column_names: Sequence[str] | None = None,
    string_columns: Iterable[str] = (),
    delimiter: str = ",",
    quoting: bool = True,
) -> pd.DataFrame:
    """Parse a delimited file strictly: every row must have as many fields as the first.

    ``column_names`` means the file has no header. ``string_columns`` are kept as text
    (never inferred as numbers, never null: an empty field is an empty string).
    """
    table = _read_csv_table(
        inp,
        encoding=encoding,
        column_names=column_names,
        string_columns=string_columns,
        delimiter=delimiter,
        quoting=quoting,
    )
    return table.to_pandas()


def _read_csv_table(
    inp: _Input,
    *,
    encoding: str,
    column_names: Sequence[str] | None = None,
    string_columns: Iterable[str] = (),
    delimiter: str = ",",
    quoting: bool = True,
    null_strings: bool = False,
) -> pa.Table:
    """:func:`_read_csv` as an Arrow table.

    ``null_strings`` makes empty (and ``NA``/``null``-like) fields of text columns missing
    values, as in a general table; by default they stay empty strings, as texts should.
    """
    codec = _codec(encoding)
    invalid: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        invalid.append(row)
        return "skip"  # keep going, report the first one with its line number below

    read_options = pacsv.ReadOptions(
        # pyarrow decodes UTF-8 natively (and skips a BOM); other codecs go through Python.
        encoding="utf8" if codec in ("utf-8", "utf-8-sig") else codec,
        column_names=list(column_names) if column_names else None,
    )
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter,
        quote_char='"' if quoting else False,
        newlines_in_values=quoting,
        invalid_row_handler=on_invalid_row,
    )
    convert_options = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in string_columns},
        strings_can_be_null=null_strings,
        quoted_strings_can_be_null=null_strings,
    )
    try:
        table = _pyarrow_read(inp, read_options, parse_options, convert_options)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _csv_failure(inp, codec, str(exc)) from None
    if invalid:
        raise _malformed_row(inp, codec, invalid, delimiter, quoting, bool(column_names))
    if any(pa.types.is_binary(t) for t in table.schema.types) and codec.startswith("utf-8"):
        # pyarrow infers "binary" for a non-string column whose bytes are not UTF-8.
        raise _locate_decode_error(inp, codec) or DataError(f"cannot decode {inp.name}")
    return table


def _pyarrow_read(
    inp: _Input,
    read_options: pacsv.ReadOptions,
    parse_options: pacsv.ParseOptions,
    convert_options: pacsv.ConvertOptions,
) -> pa.Table:
    if inp.path is not None:
        return pacsv.read_csv(
            str(inp.path),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    with inp.open() as stream:
        return pacsv.read_csv(
            stream,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )


def _csv_failure(inp: _Input, codec: str, message: str) -> DataError:
    """Explain a pyarrow CSV error: empty input, undecodable bytes, or a parse error."""
    if "Empty CSV file" in message:
        return DataError(
            f"data file is empty: {inp.name} (no rows)",
            hint="check that the download or export finished, then try again",
        )
    if "UTF8" in message or "decode" in message:
        located = _locate_decode_error(inp, codec)
        if located is not None:
            return located
    return DataError(
        f"cannot parse {inp.name} as CSV: {message}",
        hint="check that it is a delimited text file with one record per line",
    )


def _malformed_row(
    inp: _Input,
    codec: str,
    invalid: list[Any],
    delimiter: str,
    quoting: bool,
    headerless: bool,
) -> DataError:
    """Report the first row with the wrong field count, with its line number."""
    first = invalid[0]
    expected, found = first.expected_columns, first.actual_columns
    line = _find_bad_line(inp, codec, expected, delimiter, quoting, headerless)
    where = f"line {line}" if line is not None else f"the row {first.text[:60]!r}"
    more = f" ({len(invalid)} malformed rows in total)" if len(invalid) > 1 else ""
    return DataError(
        f"malformed CSV row in {inp.name}: {where} has {_plural(found, 'field')}, "
        f"expected {expected}{more}",
        hint=(
            "fix or remove that line; a value that contains the delimiter or a line break "
            'must be quoted ("...")'
        ),
    )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _find_bad_line(
    inp: _Input, codec: str, expected: int, delimiter: str, quoting: bool, headerless: bool
) -> int | None:
    """Physical line number of the first record whose field count is not ``expected``."""
    with inp.open() as raw:
        text = io.TextIOWrapper(raw, encoding=codec, errors="replace", newline="")
        reader = csv.reader(
            text, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
        )
        try:
            for i, row in enumerate(reader):
                if not row or (i == 0 and not headerless):
                    continue  # pyarrow skips blank lines; the header defines ``expected``
                if len(row) != expected:
                    return reader.line_num
        except csv.Error:
            return reader.line_num
    return None


# ---------------------------------------------------------------------------------------------
# labels and columns


def _normalise_labels(values: pd.Series, label_map: Mapping[Any, Any] | None = None) -> pd.Series:
    """Labels as strings; empty or missing values become missing (unlabelled rows)."""
    if pd.api.types.is_float_dtype(values) and _integral(values):
        values = values.astype("Int64")  # 1.0 -> "1": NaN had turned an int column into floats
    missing = values.isna()
    labels = values.astype("str").str.strip()
    labels = labels.where(~missing & labels.ne(""))
    if label_map:
        as_text = {str(k): (None if v is None else str(v)) for k, v in label_map.items()}
        mapped = labels.map(as_text)
        labels = labels.where(~labels.isin(list(as_text)), mapped)
    return labels.astype("str")


def _integral(values: pd.Series) -> bool:
    finite = values.dropna().to_numpy()
    return bool(np.all(np.mod(finite, 1) == 0))


def _suggest(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _map_columns(
    df: pd.DataFrame, name: str, text_column: str, label_column: str | None
) -> pd.DataFrame:
    """Rename the source's text/label columns to ``text``/``label`` (checked first)."""
    columns = [str(c) for c in df.columns]
    wanted = [c for c in (text_column, label_column) if c is not None]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(
            f"{name} is missing column {' and '.join(repr(c) for c in missing)}: expected a text "
            f"column {text_column!r}"
            + (f" and a label column {label_column!r}" if label_column else "")
            + f"; found columns: {', '.join(columns) or '(none)'}",
            hint=_mapping_hint(columns, text_column, label_column),
        )
    renames: dict[str, str] = {text_column: "text"}
    if label_column is not None:
        renames[label_column] = "label"
    # A source column already called text/label that is not the mapped one keeps its data.
    clashes: dict[str, str] = {
        c: f"{c}_original" for c in ("text", "label") if c in columns and c not in renames
    }
    df = df.rename(columns=clashes | renames)
    if label_column is None:
        df["label"] = pd.Series(pd.NA, index=df.index, dtype="str")
    rest = [c for c in df.columns if c not in ("text", "label")]
    return df[["text", "label", *rest]]


def _mapping_hint(columns: Sequence[str], text_column: str, label_column: str | None) -> str:
    """Name the flags (and the Python arguments) that map the source's columns."""
    flags = [f"--text-column {_suggest(columns, _TEXT_NAMES) or 'COLUMN'}"]
    arguments = ["text_column"]
    label_guess = None
    if label_column is not None:
        label_guess = _suggest(columns, _LABEL_NAMES)
        if label_guess is not None:
            flags.append(f"--label-column {label_guess}")
            arguments.append("label_column")
    hint = (
        f"name the source's columns: {' '.join(flags)} "
        f"(Python: the {' and '.join(arguments)} argument{'s' if len(arguments) > 1 else ''})"
    )
    if label_column is not None and label_guess is None:
        hint += (
            "; for data without labels, name no label column "
            "(--label-column none; Python: label_column None)"
        )
    return hint


# ---------------------------------------------------------------------------------------------
# public readers


def read_sentiment140(path: str | Path, encoding: str = "latin-1") -> pd.DataFrame:
    """Read the Sentiment140 CSV (or the Stanford zip that contains it).

    The file has no header and six columns: polarity, id, date, query, user, text. Polarity
    0/2/4 becomes the label ``negative``/``neutral``/``positive``. A ``.zip`` is read from
    its ``training*.csv`` member (or its only CSV). The original file is Latin-1 encoded.

    Returns columns ``text, label, polarity, id, date, query, user`` (ids as strings).
    """
    p = _require_file(path)
    _require_not_empty(p)
    inp = _zip_member(p) if zipfile.is_zipfile(p) else _file_input(p)
    df = _read_csv(
        inp,
        encoding=encoding,
        column_names=SENTIMENT140_COLUMNS,
        string_columns=SENTIMENT140_COLUMNS,
    )
    _require_rows(df, inp.name)
    polarity = df["polarity"].str.strip()
    labels = polarity.map(_POLARITY_LABELS)
    unknown = labels.isna()
    if unknown.any():
        first = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(
            f"unexpected polarity in {inp.name}: expected 0, 2 or 4 in the first column, found "
            f"{polarity.iloc[first]!r} on line {first + 1} ({_plural(int(unknown.sum()), 'row')} "
            "in all)",
            hint=(
                "is this the Sentiment140 CSV (polarity,id,date,query,user,text)? read other "
                "CSVs as tables: --format table with --text-column and --label-column "
                "(Python: the format, text_column and label_column arguments)"
            ),
        )
    df["label"] = labels.astype("str")
    df["polarity"] = polarity.astype("int8")
    return df[["text", "label", "polarity", "id", "date", "query", "user"]]


def _zip_member(p: Path) -> _Input:
    """The training CSV inside a Sentiment140 zip (or its only CSV)."""
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv") and "__MACOSX" not in n]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot open zip archive {p}: {exc}", hint="download it again") from None
    training = [n for n in names if Path(n).name.lower().startswith("training")]
    chosen = training if len(training) == 1 else names
    if len(chosen) != 1:
        raise DataError(
            f"cannot tell which CSV in {p} to read: expected one training*.csv member, "
            f"found {', '.join(names) or 'no CSV files'}",
            hint="extract the CSV you want and pass its path",
        )
    member = chosen[0]

    def opener() -> BinaryIO:
        zf = zipfile.ZipFile(p)
        stream = zf.open(member)
        zf.close()  # the member stream keeps its own handle on the archive
        return cast(BinaryIO, stream)

    return _Input(f"{p}:{member}", opener)


def read_text_lines(
    files: Mapping[str | Path, str | None], encoding: str = "utf-8"
) -> pd.DataFrame:
    """Read text-per-line files (plain or gzip), each with the label given for that file.

    Only the line break is removed (``\\n`` or ``\\r\\n``); blank lines stay as empty texts
    so that validation can count and report them. A leading UTF-8 byte order mark is dropped.
    A label of None marks the file's rows as unlabelled.
    """
    if not files:
        raise DataError(
            "no text-line files given: expected at least one file",
            hint="pass a mapping {path: label}",
        )
    codec = _codec(encoding)
    texts: list[str] = []
    labels: list[str | None] = []
    for path, label in files.items():
        lines = _read_lines(_require_file(path), codec)
        texts.extend(lines)
        labels.extend([label] * len(lines))
    return pd.DataFrame(
        {"text": pd.array(texts, dtype="str"), "label": pd.array(labels, dtype="str")}
    )


def _read_lines(p: Path, codec: str) -> list[str]:
    _require_not_empty(p)
    inp = _file_input(p)
    data = _read_bytes(inp)
    if not data:
        raise DataError(
            f"data file is empty: {p} (no lines after decompression)",
            hint="check that the export finished, then try again",
        )
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        raise _decode_error(str(p), data, err, codec) from None
    # Split on "\n" only: str.splitlines() would also split on \x0b, \x1c, U+2028 ... inside
    # a tweet. One replace() removes every CR that ends a line, at C speed.
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").removesuffix("\n")
    return text.removesuffix("\r").split("\n")  # a last line may end in a bare CR


def read_text_folder(root: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a folder of documents sorted into one sub-folder per label.

    The layout is the one scikit-learn's ``load_files`` reads: ``root/<label>/*.txt`` (also
    ``*.txt.gz``), one document per file, the sub-folder's name being the label. Files
    directly in ``root``, hidden files and folders, and other extensions are ignored.
    Each file's whole content is one text (a leading byte order mark is dropped, everything
    else is kept); an empty file gives an empty text, which validation reports.

    Returns columns ``text``, ``label``, ``path`` (absolute), sorted by label and file name.
    """
    base = require_folder(
        root,
        name="text folder",
        expected="a folder of label sub-folders",
        holds="one sub-folder per label (root/<label>/*.txt)",
    )
    codec = _codec(encoding)
    documents = _document_files(base)
    if not documents:
        found = sorted(p.name for p in base.iterdir() if not p.name.startswith("."))
        raise DataError(
            f"no documents in {base}: expected one sub-folder per label holding .txt files "
            f"(root/<label>/*.txt); found: {', '.join(found[:10]) or 'nothing'}",
            hint="move the files into a sub-folder named after their label; for files with "
            "one text per line use --format lines (Python: the format argument)",
        )
    texts: list[str] = []
    labels: list[str] = []
    paths: list[str] = []
    for label, p in documents:
        inp = _file_input(p)
        data = _read_bytes(inp)
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as err:
            raise _decode_error(str(p), data, err, codec) from None
        texts.append(text.removeprefix("\ufeff"))
        labels.append(label)
        paths.append(str(p.resolve()))
    return pd.DataFrame(
        {
            "text": pd.array(texts, dtype="str"),
            "label": pd.array(labels, dtype="str"),
            "path": pd.array(paths, dtype="str"),
        }
    )


def _document_files(root: Path) -> list[tuple[str, Path]]:
    """(label, file) for every document in the label sub-folders of ``root``, sorted."""
    found: list[tuple[str, Path]] = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith(".") and _is_document(p):
                found.append((folder.name, p))
    return found


def _is_document(p: Path) -> bool:
    return p.name.lower().endswith(_DOCUMENT_SUFFIXES)


def _is_text_folder(path: Path) -> bool:
    """A folder whose sub-folders hold .txt files, and no positive*/negative* line files."""
    top_level_line_files = any(
        p.is_file() and _label_from_name(p.name) is not None for p in path.iterdir()
    )
    if top_level_line_files:
        return False
    return any(
        folder.is_dir()
        and not folder.name.startswith(".")
        and any(p.is_file() and _is_document(p) for p in folder.iterdir())
        for folder in path.iterdir()
    )


def read_vader_ground_truth(
    path: str | Path,
    neutral_threshold: float = 0.05,
    keep_neutral: bool = False,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read VADER's ``tweets_GroundTruth.txt`` (tab-separated: id, mean rating, text).

    The label is ``positive`` when the mean rating is above ``neutral_threshold``,
    ``negative`` when below ``-neutral_threshold``; neutral rows are dropped unless
    ``keep_neutral``. Quotes are literal characters in this file, so quoting is off.

    Returns columns ``text, label, score, id``.
    """
    p = _require_file(path)
    _require_not_empty(p)
    inp = _file_input(p)
    df = _read_csv(
        inp,
        encoding=encoding,
        column_names=_VADER_COLUMNS,
        string_columns=_VADER_COLUMNS,
        delimiter="\t",
        quoting=False,
    )
    _require_rows(df, inp.name)
    score = pd.to_numeric(df["score"], errors="coerce")
    bad = score.isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"expected a number (the mean rating) in column 2 of {inp.name}, found "
            f"{df['score'].iloc[first]!r} on line {first + 1}",
            hint="is this tweets_GroundTruth.txt (id<TAB>mean rating<TAB>text)?",
        )
    threshold = abs(neutral_threshold)
    labels = np.select([score > threshold, score < -threshold], ["positive", "negative"], "neutral")
    out = pd.DataFrame(
        {
            "text": df["text"],
            "label": pd.array(labels, dtype="str"),
            "score": score.astype("float64"),
            "id": df["id"].str.strip(),
        }
    )
    if not keep_neutral:
        out = out[out["label"] != "neutral"].reset_index(drop=True)
    return out


def read_table(
    path: str | Path,
    text_column: str = "text",
    label_column: str | None = "label",
    label_map: Mapping[Any, Any] | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a CSV (with a header; ``.tsv`` is tab-separated, ``.gz`` works) or Parquet file.

    ``text_column``/``label_column`` name the source columns, which come out renamed to
    ``text``/``label``; ``label_column=None`` means unlabelled data. ``label_map`` translates
    label values (keys are compared as strings, so ``{0: "negative"}`` matches ``"0"``);
    values it does not mention are kept. Other columns are kept after the two.
    """
    p = _require_file(path)
    _require_not_empty(p)
    if _is_parquet(p):
        df = _read_parquet(p)
    else:
        inp = _file_input(p)
        suffixes = [s.lower() for s in p.suffixes]
        delimiter = "\t" if {".tsv", ".tab"} & set(suffixes) else ","
        string_columns = [c for c in (text_column, label_column) if c]
        df = _read_csv(inp, encoding=encoding, string_columns=string_columns, delimiter=delimiter)
    _require_rows(df, str(p))
    df = _map_columns(df, str(p), text_column, label_column)
    df["label"] = _normalise_labels(df["label"], label_map)
    return df


def _is_parquet(p: Path) -> bool:
    if p.suffix.lower() in (".parquet", ".pq"):
        return True
    with p.open("rb") as f:
        return f.read(4) == _PARQUET_MAGIC


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(p)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read Parquet file {p}: {exc}",
            hint="the file is truncated or not Parquet; write it again",
        ) from None


# ---------------------------------------------------------------------------------------------
# download


def fetch_url(
    url: str, cache_dir: str | Path, sha256: str | None = None, *, timeout: float = 60.0
) -> Path:
    """Download ``url`` into ``cache_dir`` once, and verify its SHA-256 on every use.

    With ``sha256`` the file must match it. Without, the digest seen on the first download
    is recorded in ``cache_dir/manifest.json`` and later uses must match it (trust on first
    use). A cached file that matches is reused without touching the network; one that does
    not is downloaded again. The download goes to a temporary file that is renamed into
    place only when complete and verified, so a partial file is never visible.
    """
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / _cache_name(url)
    manifest = _read_manifest(cache)
    expected = (sha256 or manifest.get(url, {}).get("sha256") or "").lower() or None
    if target.exists():
        if expected is None or _sha256_file(target) == expected:
            return target
        target.unlink()  # corrupted or changed locally: fetch a fresh copy
    digest, size = _download(url, target, expected, timeout)
    if sha256 is None and url not in manifest:
        manifest[url] = {
            "file": target.name,
            "sha256": digest,
            "size": size,
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_json(cache / _MANIFEST, manifest)
    return target


def _cache_name(url: str) -> str:
    base = Path(urlparse(url).path).name or "download"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)
    # Prefix a hash of the URL: two sources may share a file name.
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{base}"


def _download(url: str, target: Path, expected: str | None, timeout: float) -> tuple[str, int]:
    """Stream ``url`` to a temp file beside ``target``, verify, and move it into place."""
    import httpx  # only needed when something is actually downloaded

    hasher = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
                if response.status_code >= 400:
                    raise DataError(
                        f"download failed: GET {url} returned HTTP {response.status_code}",
                        hint="check the URL, or download the file yourself and pass its path",
                    )
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = hasher.hexdigest()
        if expected is not None and digest != expected:
            raise DataError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {digest}; "
                "the download was removed",
                hint=(
                    "the file changed upstream or was corrupted in transit; if the new file is "
                    f"right, pass its sha256 or remove its entry from {target.parent / _MANIFEST}"
                ),
            )
        os.replace(tmp, target)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DataError(
            f"could not download {url}: {exc}",
            hint="check the network connection, or download the file yourself and pass its path",
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return digest, size


def _sha256_file(p: Path) -> str:
    hasher = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _read_manifest(cache: Path) -> dict[str, dict[str, Any]]:
    path = cache / _MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the download manifest {path}: {exc}",
            hint="delete it; the next download records the checksums again",
        ) from None
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------------------------
# dispatcher


def load_source(
    source: str | Path,
    *,
    format: Format = "auto",
    encoding: str | None = None,
    text_column: str = "text",
    label_column: str | None = "label",
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Load a text dataset from a path or http(s) URL, detecting its format.

    Detection (``format="auto"``): a URL is downloaded with :func:`fetch_url` (into
    ``cache_dir``, default ``.loopline/downloads``) and then detected; a directory holds
    text-per-line files named ``positive*``/``negative*``/``neutral*``, or else, when its
    sub-folders hold ``.txt`` files, one document per file sorted into label sub-folders
    (:func:`read_text_folder`: columns ``text, label, path``); ``.parquet`` is a
    table; ``.zip`` is Sentiment140; a ``.csv`` whose first row has 6 fields starting with
    0, 2 or 4 is Sentiment140, any other CSV a table with a header; a tab-separated file
    with 3 fields whose second is a number is VADER ground truth; a ``.txt`` file is one
    text per line. ``format`` forces a reader: sentiment140, lines, vader, table or
    text_folder.
    ``encoding`` defaults to each reader's own (Latin-1 for Sentiment140, else UTF-8).
    ``text_column``/``label_column`` apply to tables.
    """
    if format not in _FORMATS:
        raise DataError(
            f"unknown data format {format!r}: expected one of {', '.join(_FORMATS)}",
            hint="name one of those, or leave out --format to detect it "
            "(Python: the format argument, auto by default)",
        )
    text = str(source)
    if text.startswith(("http://", "https://")):
        cache = Path(cache_dir) if cache_dir is not None else Path(".loopline") / "downloads"
        source = fetch_url(text, cache)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data file not found: {path}",
            hint=f"check the path (relative paths start from {Path.cwd()})",
        )
    fmt = format if format != "auto" else _detect_format(path)
    if fmt == "sentiment140":
        return read_sentiment140(path, encoding=encoding or "latin-1")
    if fmt == "vader":
        return read_vader_ground_truth(path, encoding=encoding or "utf-8")
    if fmt == "lines":
        return read_text_lines(_line_files(path), encoding=encoding or "utf-8")
    if fmt == "text_folder":
        return read_text_folder(path, encoding=encoding or "utf-8")
    return read_table(path, text_column, label_column, encoding=encoding or "utf-8")


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "text_folder" if _is_text_folder(path) else "lines"
    suffixes = [s.lower() for s in path.suffixes]
    suffix = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "table"
    if suffix == ".zip":
        return "sentiment140"
    first = _first_line(path)
    if suffix == ".csv":
        fields = next(csv.reader([first]), [])
        is_s140 = len(fields) == len(SENTIMENT140_COLUMNS) and fields[0].strip() in _POLARITY_LABELS
        return "sentiment140" if is_s140 else "table"
    if _looks_like_vader(first):
        return "vader"
    if suffix in (".tsv", ".tab"):
        return "table"
    if suffix in (".txt", ".text", ""):
        return "lines"
    raise DataError(
        f"cannot tell the format of {path}: expected .csv, .tsv, .parquet, .zip, .txt "
        f"or a folder, found {''.join(path.suffixes) or 'no extension'}",
        hint="name the format: --format table, lines, sentiment140 or vader "
        "(Python: the format argument)",
    )


def _first_line(path: Path) -> str:
    # Latin-1 never fails to decode, which is all sniffing needs.
    return _head(path).split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")


def _looks_like_vader(line: str) -> bool:
    fields = line.split("\t")
    if len(fields) != 3:
        return False
    try:
        float(fields[1])
    except ValueError:
        return False
    return True


def _line_files(path: Path) -> dict[str | Path, str | None]:
    """{file: label} for a folder of positive*/negative*/neutral* files, or one file."""
    if path.is_file():
        return {path: _label_from_name(path.name)}
    found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    files: dict[str | Path, str | None] = {
        p: label for p in found if (label := _label_from_name(p.name)) is not None
    }
    if not files:
        raise DataError(
            f"no text-line files in {path}: expected files named positive*, negative* or "
            f"neutral* (one text per line, plain or .gz); found: "
            f"{', '.join(p.name for p in found[:10]) or 'nothing'}",
            hint="rename the files so the name starts with their label, or pass a file path",
        )
    return files


def _label_from_name(name: str) -> str | None:
    lowered = name.lower()
    return next((label for label in LINE_FILE_LABELS if lowered.startswith(label)), None)
