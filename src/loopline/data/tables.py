"""Read tabular data (CSV, Parquet, a folder of either, or a SQL database) into a DataFrame.

:func:`read_table_source` is the one entry point: it takes a file, a folder of files
(partitioned, including hive-style ``key=value`` sub-folders whose keys become columns) or a
database URL, and returns the table as it is, with the column types the reader inferred.
Unlike :func:`loopline.data.ingest.read_table` it knows nothing of ``text``/``label``: it is
the reader behind generic tabular pipelines (transactions, events, features).

Every problem with the input raises :class:`~loopline.errors.DataError` saying what was
expected, what was found and what to do; CSV files go through the strict reader of
:mod:`loopline.data.ingest`, so a malformed row is reported with its line number and a
byte that does not decode with its position.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from loopline.data.ingest import (
    _file_input,
    _is_parquet,
    _read_csv_table,
    _require_file,
    _require_not_empty,
    _require_rows,
)
from loopline.errors import DataError

__all__ = ["parse_datetimes", "read_table_source", "require_columns"]

TableFormat = Literal["auto", "csv", "parquet", "sql"]
_TABLE_FORMATS: tuple[str, ...] = ("auto", "csv", "parquet", "sql")

# Database URL schemes read through SQLAlchemy (a driver may follow: "postgresql+psycopg").
_DB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
_DB_URL = re.compile(rf"^(?:{'|'.join(_DB_SCHEMES)})(?:\+[A-Za-z0-9_]+)?://", re.IGNORECASE)
_ANY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CSV_SUFFIXES = (".csv", ".tsv", ".tab")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_READ_ONLY_STATEMENTS = ("select", "with", "values", "table")
_MAX_LISTED = 10
_INDEX_COLUMN = re.compile(r"__index_level_\d+__")


def read_table_source(
    source: str | Path,
    *,
    format: TableFormat = "auto",
    query: str | None = None,
    table: str | None = None,
    columns: Sequence[str] | None = None,
    parse_dates: Sequence[str] | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """Read a table from a file, a folder of files or a database.

    ``source`` is one of:

    - a CSV file (``.csv``, ``.tsv``/``.tab`` are tab-separated, gzip works: ``.csv.gz``);
    - a Parquet file;
    - a folder of CSV or Parquet files (all of one format), read recursively in file-name
      order with :mod:`pyarrow.dataset`; hive-style ``key=value`` sub-folders become
      columns (``year=2018/month=4/part.csv`` adds ``year`` and ``month``). Each file's
      column types are inferred on their own and then unified (int + float -> float);
      hidden files and names starting with ``_`` are skipped, other non-data files ignored;
    - a database URL (``sqlite:///file.db``, ``postgresql://user:pw@host/db``,
      ``postgresql+psycopg://...``, ``mysql+pymysql://...``): exactly one of ``query``
      (a read-only ``SELECT``/``WITH`` statement) or ``table`` (a table name, optionally
      ``schema.table``) is read with :func:`pandas.read_sql`. A driverless PostgreSQL URL
      uses psycopg 3.

    ``format`` forces the reader (``"csv"``, ``"parquet"``, ``"sql"``); ``"auto"`` detects
    it from the URL scheme, the file extension or the Parquet magic bytes. ``columns``
    keeps only those columns, in that order; ``parse_dates`` converts those columns to
    datetimes (see :func:`parse_datetimes`). ``encoding`` applies to CSV (default UTF-8).

    Raises :class:`~loopline.errors.DataError` for a missing or empty file, a folder
    without data files or with both CSV and Parquet files, a malformed CSV row, bytes that
    do not decode, an unknown column, a value that is not a date, or a database error
    (the message shows the URL with its password hidden).
    """
    if format not in _TABLE_FORMATS:
        raise DataError(
            f"unknown table format {format!r}: expected one of {', '.join(_TABLE_FORMATS)}",
            hint="leave format='auto' to detect it from the source",
        )
    text = str(source)
    if format == "sql" or (format == "auto" and _DB_URL.match(text)):
        df = _read_sql(text, query=query, table=table)
    else:
        if query is not None or table is not None:
            raise DataError(
                f"query= and table= apply to databases, but {text} is not a database URL",
                hint="pass a URL such as sqlite:///path/to.db or postgresql://user@host/db, "
                "or drop query=/table= to read the file",
            )
        if _ANY_URL.match(text):
            raise DataError(
                f"unsupported URL {text}: expected a file, a folder or a database URL "
                f"({', '.join(s + '://' for s in _DB_SCHEMES[:4])}...)",
                hint="download the file first (loopline.data.ingest.fetch_url) and pass its path",
            )
        df = _read_path(Path(source).expanduser(), format, encoding or "utf-8")
    if columns is not None:
        names = list(columns)
        require_columns(df, names, what="columns=", source=text)
        df = df[names]
    for column in parse_dates or ():
        require_columns(df, [column], what="parse_dates=", source=text)
        df[column] = parse_datetimes(df[column], column)
    return df


# ---------------------------------------------------------------------------------------------
# shared column helpers


def require_columns(
    df: pd.DataFrame, names: Sequence[str], *, what: str = "column", source: str | None = None
) -> None:
    """Raise DataError when any of ``names`` is not a column of ``df``.

    The message lists the missing names and the available columns, with a close match
    (by :mod:`difflib`) when one exists. ``what`` says where the names came from.
    """
    available = [str(c) for c in df.columns]
    missing = [n for n in names if n not in df.columns]
    if not missing:
        return
    where = f" in {source}" if source else ""
    suggestions = []
    for name in missing:
        close = difflib.get_close_matches(str(name), available, n=1, cutoff=0.6)
        if not close:  # case differences count as close too
            lowered = {a.lower(): a for a in available}
            close = [lowered[str(name).lower()]] if str(name).lower() in lowered else []
        if close:
            suggestions.append(f"{name!r} -> did you mean {close[0]!r}?")
    shown = ", ".join(available[:50]) + (", ..." if len(available) > 50 else "")
    raise DataError(
        f"unknown column {', '.join(repr(n) for n in missing)} ({what}){where}; "
        f"available columns: {shown or '(none)'}",
        hint="; ".join(suggestions) or "use one of the available column names",
    )


def parse_datetimes(values: pd.Series, column: str) -> pd.Series:
    """``values`` as datetimes (returned as they are when already datetime-like).

    Strings are parsed by pandas (a consistent format is inferred from the values; mixed
    formats are parsed one by one; mixed time-zone offsets are converted to UTC). Empty
    strings and missing values become ``NaT``. Numbers are refused rather than read as
    nanoseconds since 1970; a value that does not parse raises DataError naming the column,
    the first bad value and its row.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        raise DataError(
            f"column {column!r} holds {values.dtype} numbers, not dates or times",
            hint=f"convert it yourself, e.g. pd.to_datetime(df[{column!r}], unit='s') for epoch "
            "seconds, or name a column that holds dates",
        )
    as_text = values.astype("str").str.strip()
    missing = values.isna().to_numpy() | as_text.eq("").to_numpy()
    parsed: pd.Series | None = None
    for options in ({}, {"format": "mixed"}, {"format": "mixed", "utc": True}):
        try:
            with warnings.catch_warnings():  # "could not infer format": handled below
                warnings.simplefilter("ignore", UserWarning)
                candidate = pd.to_datetime(values, errors="coerce", **options)
        except (ValueError, TypeError, OverflowError):
            continue
        parsed = candidate
        if not (candidate.isna().to_numpy() & ~missing).any():
            break
    bad = ~missing if parsed is None else (parsed.isna().to_numpy() & ~missing)
    if parsed is None or bad.any():
        position = int(bad.argmax())
        raise DataError(
            f"column {column!r} holds values that are not dates or times: "
            f"{values.iloc[position]!r} (row {position}; {int(bad.sum()):,} such rows in all)",
            hint="fix or drop those rows, or leave the column out of parse_dates",
        )
    return parsed


# ---------------------------------------------------------------------------------------------
# files and folders


def _read_path(path: Path, format: str, encoding: str) -> pd.DataFrame:
    if not path.exists():
        raise DataError(
            f"data file or folder not found: {path}",
            hint=f"check the path (relative paths start from {Path.cwd()})",
        )
    if path.is_dir():
        return _read_folder(path, format, encoding)
    p = _require_file(path)
    _require_not_empty(p)
    fmt = format if format != "auto" else ("parquet" if _is_parquet(p) else "csv")
    table = _read_parquet_table(p) if fmt == "parquet" else _read_csv_file(p, encoding)
    df = _fresh_index(table.to_pandas(date_as_object=False))  # dates as datetime64
    _require_rows(df, str(p))
    return df


def _fresh_index(df: pd.DataFrame) -> pd.DataFrame:
    """A 0..n-1 index; a named index that pandas wrote into a Parquet file becomes columns."""
    if isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1:
        return df
    named = any(name is not None for name in df.index.names)
    return df.reset_index(drop=not named)


def _plain_table(table: pa.Table) -> pa.Table:
    """``table`` without pandas metadata or stored index columns (files written by pandas
    disagree on them, so a folder's files are combined as plain Arrow tables)."""
    stored_index = [n for n in table.column_names if _INDEX_COLUMN.fullmatch(n)]
    return table.drop_columns(stored_index).replace_schema_metadata(None)


def _read_csv_file(p: Path, encoding: str) -> pa.Table:
    _require_not_empty(p)
    suffixes = [s.lower() for s in p.suffixes]
    delimiter = "\t" if {".tsv", ".tab"} & set(suffixes) else ","
    return _read_csv_table(
        _file_input(p), encoding=encoding, delimiter=delimiter, null_strings=True
    )


def _read_parquet_table(p: Path) -> pa.Table:
    try:
        return pq.read_table(p)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read Parquet file {p}: {exc}",
            hint="the file is truncated or not Parquet; write it again (df.to_parquet)",
        ) from None


def _file_kind(p: Path) -> str | None:
    """The data format a file name says: csv (also .csv.gz, .tsv), parquet, or None."""
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
        return "csv" if suffixes[-1:] and suffixes[-1] in _CSV_SUFFIXES else None
    last = suffixes[-1] if suffixes else ""
    if last in _CSV_SUFFIXES:
        return "csv"
    if last in _PARQUET_SUFFIXES:
        return "parquet"
    return None


def _skipped(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def _read_folder(root: Path, format: str, encoding: str) -> pd.DataFrame:
    """Read every CSV or Parquet file under ``root`` (recursively, in path order)."""
    found = sorted(p for p in root.rglob("*") if p.is_file() and not _skipped(p.relative_to(root)))
    kinds = {p: _file_kind(p) for p in found}
    if format in ("csv", "parquet"):
        files = [p for p in found if kinds[p] == format]
    else:
        files = [p for p in found if kinds[p] is not None]
        present = sorted({kinds[p] for p in files}, key=str)
        if len(present) > 1:
            examples = {k: next(p for p in files if kinds[p] == k) for k in present}
            raise DataError(
                f"folder {root} mixes file formats: "
                + ", ".join(
                    f"{sum(kinds[p] == k for p in files)} {k} files (e.g. "
                    f"{examples[k].relative_to(root)})"
                    for k in present
                ),
                hint="keep one format per folder, or pass format='csv' or format='parquet' "
                "to read only those files",
            )
    if not files:
        others = ", ".join(str(p.relative_to(root)) for p in found[:_MAX_LISTED])
        wanted = (
            "CSV" if format == "csv" else "Parquet" if format == "parquet" else "CSV or Parquet"
        )
        raise DataError(
            f"no {wanted} files in folder {root}: expected *.csv, *.csv.gz, *.tsv, *.parquet "
            f"files (in sub-folders too); found {others or 'nothing'}",
            hint="check the path, or point at the data file itself",
        )
    fmt = format if format in ("csv", "parquet") else kinds[files[0]]
    partitions = _partition_keys(root, files, str(fmt))
    tables = []
    for p in files:
        t = _read_parquet_table(p) if fmt == "parquet" else _read_csv_file(p, encoding)
        tables.append(_with_partition_columns(_plain_table(t), p, partitions, root))
    table = _concat(tables, files, root)
    df = table.to_pandas(date_as_object=False)  # date columns as datetime64, not objects
    _require_rows(df, f"folder {root} ({len(files)} files)")
    return df


def _partition_keys(
    root: Path, files: list[Path], fmt: str
) -> tuple[pa.Schema, dict[str, dict[str, Any]]]:
    """The hive partitioning of ``files`` (discovered by pyarrow.dataset): schema, keys per file."""
    try:
        dataset = pads.dataset(
            [str(p) for p in files],
            format=fmt,
            partitioning="hive",
            partition_base_dir=str(root),
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the folder {root} as a {fmt} dataset: {exc}",
            hint="check the sub-folder names (key=value) and that every file is readable",
        ) from None
    keys = {
        fragment.path: pads.get_partition_keys(fragment.partition_expression)
        for fragment in dataset.get_fragments()
    }
    # Key names in the order the folders nest them (year=.../month=...), then their types as
    # pyarrow inferred them. (dataset.partitioning.schema is not used: without any key=value
    # folder, pyarrow 26 reports the file columns there.)
    names: dict[str, None] = {}
    for p in files:
        for part in p.relative_to(root).parts[:-1]:
            name = part.split("=", 1)[0]
            if "=" in part and any(name in k for k in keys.values()):
                names.setdefault(name)
    schema = pa.schema([dataset.schema.field(name) for name in names])
    return schema, keys


def _with_partition_columns(
    table: pa.Table,
    p: Path,
    partitions: tuple[pa.Schema, dict[str, dict[str, Any]]],
    root: Path,
) -> pa.Table:
    schema, keys = partitions
    values = keys.get(str(p), {})
    for field in schema:
        if field.name in table.column_names:
            raise DataError(
                f"partition key {field.name!r} (from the folder name) is also a column of "
                f"{p.relative_to(root)}",
                hint="rename the sub-folders or the column so that each name is used once",
            )
        value = values.get(field.name)
        table = table.append_column(field, pa.array([value] * table.num_rows, type=field.type))
    return table


def _concat(tables: list[pa.Table], files: list[Path], root: Path) -> pa.Table:
    """One table from several, unifying column types (int + float -> float)."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    first_type: dict[str, tuple[pa.DataType, Path]] = {}
    for t, p in zip(tables, files, strict=True):
        for field in t.schema:
            seen = first_type.setdefault(field.name, (field.type, p))
            if not _compatible(seen[0], field.type):
                raise DataError(
                    f"column {field.name!r} has type {seen[0]} in {seen[1].relative_to(root)} "
                    f"but {field.type} in {p.relative_to(root)}",
                    hint="make the files agree (for example quote the values or fix the "
                    "odd ones), or read them one by one",
                ) from None
    raise DataError(
        f"cannot combine the files of {root} into one table: their columns do not match",
        hint="make every file have the same columns and types",
    )


def _compatible(a: pa.DataType, b: pa.DataType) -> bool:
    if a == b or pa.types.is_null(a) or pa.types.is_null(b):
        return True
    numeric = (pa.types.is_integer, pa.types.is_floating)
    return any(f(a) for f in numeric) and any(f(b) for f in numeric)


# ---------------------------------------------------------------------------------------------
# SQL


def _read_sql(url: str, *, query: str | None, table: str | None) -> pd.DataFrame:
    import sqlalchemy as sa

    from loopline.core.dburl import sqlalchemy_url

    try:
        parsed = sa.engine.make_url(sqlalchemy_url(url))
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise DataError(
            f"not a valid database URL: {_redact(url)} ({exc})",
            hint="write it as dialect[+driver]://user:password@host:port/database, "
            "e.g. sqlite:///data.db or postgresql://user@localhost/db",
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    if (query is None) == (table is None):
        raise DataError(
            f"reading from {shown} needs exactly one of query= or table=, found "
            + ("both" if query is not None else "neither"),
            hint="pass table='transactions' to read a whole table, or query='SELECT ...'",
        )
    if query is not None:
        _require_select(query)
    if parsed.get_backend_name() == "sqlite":
        _require_sqlite_file(parsed.database, shown)
    try:
        engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DataError(
            f"cannot use database {shown}: {_one_line(exc)}",
            hint="install the driver the URL names (pip install 'loopline[postgres]' for "
            "PostgreSQL; for MySQL e.g. pip install pymysql and use mysql+pymysql://), "
            "or fix the URL's dialect",
        ) from None
    password = parsed.password
    try:
        with engine.connect() as conn:
            if table is not None:
                table_name, schema = _resolve_table(sa, conn, table, shown)
                reflected = sa.Table(table_name, sa.MetaData(), autoload_with=conn, schema=schema)
                sql: Any = sa.select(reflected)  # typed columns: DATETIME comes back as dates
            else:
                sql = sa.text(query or "")
            return pd.read_sql(sql, conn)
    except DataError:
        raise
    except (sa.exc.SQLAlchemyError, OSError, ImportError) as exc:
        message = _one_line(exc)
        if password:
            message = message.replace(str(password), "***")
        raise DataError(
            f"cannot read from database {shown}: {message}",
            hint=_sql_hint(exc, sa),
        ) from None
    finally:
        engine.dispose()


def _resolve_table(sa: Any, conn: Any, table: str, shown: str) -> tuple[str, str | None]:
    """(name, schema) of an existing table or view; DataError listing the tables if not."""
    inspector = sa.inspect(conn)
    candidates: list[tuple[str, str | None]] = [(table, None)]
    if "." in table:
        prefix, rest = table.split(".", 1)
        candidates.append((rest, prefix))
    for name, schema in candidates:
        if inspector.has_table(name, schema=schema) or name in inspector.get_view_names(
            schema=schema
        ):
            return name, schema
    available = sorted(inspector.get_table_names()) + sorted(inspector.get_view_names())
    close = difflib.get_close_matches(table, available, n=1)
    listed = ", ".join(available[:30]) + (", ..." if len(available) > 30 else "")
    raise DataError(
        f"no table {table!r} in {shown}; tables there: {listed or '(none)'}",
        hint=f"did you mean {close[0]!r}?" if close else "check the table name (and schema)",
    )


def _require_select(query: str) -> None:
    stripped = re.sub(r"^(\s|--[^\n]*\n|/\*.*?\*/)*", "", query, flags=re.DOTALL)
    first = stripped.split(None, 1)[0].lower() if stripped.strip() else ""
    if first.rstrip("(") not in _READ_ONLY_STATEMENTS:
        raise DataError(
            f"expected a read-only SELECT query, found {query.strip()[:60]!r}",
            hint="pass a SELECT (or WITH ... SELECT) statement, or table='name' to read a "
            "whole table",
        )


def _require_sqlite_file(database: str | None, shown: str) -> None:
    """SQLite would silently create a missing file: refuse instead."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    if not path.is_file():
        raise DataError(
            f"SQLite database file not found: {path} (from {shown})",
            hint="check the path: sqlite:///relative/path.db has three slashes, "
            "sqlite:////absolute/path.db four",
        )


def _one_line(exc: BaseException) -> str:
    """The first line of the driver's own message (pandas and SQLAlchemy wrap it)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    orig = getattr(cause, "orig", None)
    text = str(orig if orig is not None else cause).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    return re.sub(r"\s+", " ", first)


def _sql_hint(exc: BaseException, sa: Any) -> str:
    text = _one_line(exc).lower()
    if "connect" in text or "password authentication" in text:
        return (
            "check that the database server is running and reachable, and the URL's host, "
            "port, user, password and database name"
        )
    if "syntax" in text:
        return "check the SQL syntax of the query"
    if any(s in text for s in ("no such", "does not exist", "unknown column", "doesn't exist")):
        return "check the table and column names in the query"
    if isinstance(exc, sa.exc.OperationalError):
        return (
            "check that the database server is running and reachable, and the URL's host, "
            "port, user, password and database name"
        )
    return "check the URL and the query"


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
