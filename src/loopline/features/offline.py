"""Offline features: point-in-time correct, out of core, with DuckDB window functions.

Each :class:`~loopline.features.definitions.Window` is a ``RANGE`` frame over the entity's
events ordered by time (microseconds since the epoch):
``RANGE BETWEEN days*DAY - 1 PRECEDING AND CURRENT ROW`` is ``(t - days, t]``, the edges
of pandas' ``rolling("<days>d")`` that the Fraud Detection Handbook uses. A ``RANGE``
frame also takes the rows at exactly the current time that come *after* the current row;
they are subtracted again (the few rows that share an entity and a time are found first,
and a frame over them in input order counts the ones after), so ties count in input
order, as in pandas over a stably sorted frame and as in the online store fed in that
order. Each
:class:`~loopline.features.definitions.DelayedLabelRate` is the frame
``RANGE BETWEEN (delay+days)*DAY - 1 PRECEDING AND delay*DAY PRECEDING``, i.e.
``(t - delay - days, t - delay]``: it never sees the current row, and every label in it
belongs to an event at least ``delay`` days old (the offline assumption: each label is
known exactly ``delay`` days after its event).

The input is scanned by DuckDB (CSV, gzipped CSV, Parquet, a folder or glob of them, or a
DataFrame) file by file into one table of the needed columns, and DuckDB works within
``memory_limit``, its tables and sorts spilling to a folder under ``temp_dir``: the history
never has to fit in memory. The work is one query per entity (its windows and rates share
one sort and carry only its columns) plus one for the id and calendar flags; they run side
by side, and their rows are put back in input order by row number. With ``out`` the parts
are sorted by row (out of core) and zipped into a Parquet file instead of going to pandas.
"""

from __future__ import annotations

import glob
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from loopline.errors import DataError
from loopline.features.definitions import (
    DAY_US,
    CalendarFlags,
    DelayedLabelRate,
    FeatureSet,
    Window,
    handbook_features,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["compute_offline", "offline_parts"]

_CSV = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
_PARQUET = (".parquet", ".pq")


def _q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@overload
def compute_offline(
    source: Any,
    features: FeatureSet | None = None,
    *,
    out: None = None,
    memory_limit: str = "2GB",
    temp_dir: str | Path | None = None,
    threads: int | None = None,
) -> pd.DataFrame: ...


@overload
def compute_offline(
    source: Any,
    features: FeatureSet | None = None,
    *,
    out: str | Path,
    memory_limit: str = "2GB",
    temp_dir: str | Path | None = None,
    threads: int | None = None,
) -> Path: ...


def compute_offline(
    source: Any,
    features: FeatureSet | None = None,
    *,
    out: str | Path | None = None,
    memory_limit: str = "2GB",
    temp_dir: str | Path | None = None,
    threads: int | None = None,
) -> pd.DataFrame | Path:
    """Every feature of ``features`` (the handbook's by default) for every row of ``source``.

    ``source``: a CSV (``.csv``, ``.csv.gz``) or Parquet file, a folder of them, a glob
    pattern, a list of files, or a DataFrame. Returns the id column and the features in
    :attr:`FeatureSet.names` order, one row per input row in the input's order (files in
    sorted name order, rows in file order); with ``out``, writes that table to a Parquet
    file instead and returns its path. ``memory_limit`` caps DuckDB's memory: its working
    database and what it spills live in a fresh folder under ``temp_dir`` (the system's
    temporary folder by default), removed afterwards. Reading gzipped CSV needs ~100MB.

    Counts are integers, means and rates floats, flags 0/1. Missing ids, times, entities
    or values are an error; a missing label counts as 0 (not positive).
    """
    import duckdb

    features = features or handbook_features()
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix="loopline-features-", dir=temp_dir))
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": str(spill),
        "preserve_insertion_order": True,
    }
    if threads:
        config["threads"] = threads
    # a database file in the spill folder: its tables can leave memory, not only sorts
    con = duckdb.connect(str(spill / "features.duckdb"), config=config)
    try:
        con.execute("SET TimeZone = 'UTC'")
        _load(con, _scans(con, source, features), features)
        _check(con, features)
        if out is not None:
            target = Path(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_parts(con, features, target)
            return target
        return _run_parts(con, features, threads)
    except duckdb.OutOfMemoryException as exc:
        raise DataError(
            f"computing offline features ran out of memory ({memory_limit}): {exc}",
            hint="raise memory_limit (reading gzipped CSV takes ~100MB) or lower threads",
        ) from exc
    except duckdb.Error as exc:
        raise DataError(f"computing offline features failed: {exc}") from exc
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _files(source: str | Path | Sequence[str | Path]) -> list[str]:
    if isinstance(source, str | Path):
        text = str(source)
        path = Path(text)
        if path.is_dir():
            found = [
                p
                for p in path.rglob("*")
                if p.is_file() and p.name.lower().endswith(_CSV + _PARQUET)
            ]
            files = sorted(str(p) for p in found)
        elif any(ch in text for ch in "*?["):
            files = sorted(glob.glob(text, recursive=True))
        else:
            files = [text]
    else:
        files = [str(p) for p in source]
    if not files:
        raise DataError(f"no CSV or Parquet files found at {source}")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(f"input file not found: {missing[0]}")
    return files


def _scans(con: Any, source: Any, features: FeatureSet) -> list[str]:
    """FROM-able expressions over the source, in order: a registered DataFrame, or one
    scan per file (read one after the other, so memory holds one file's buffers at most)."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        missing = [c for c in features.columns if c not in source.columns]
        if missing:
            raise DataError(
                f"the data has no column(s) {missing}",
                hint=f"the feature set reads {list(features.columns)}",
            )
        con.register("__loopline_input", source)
        return ["__loopline_input"]
    files = _files(source)
    lowered = [f.lower() for f in files]
    if all(f.endswith(_PARQUET) for f in lowered):
        return [f"read_parquet({_lit(f)})" for f in files]
    if all(f.endswith(_CSV) for f in lowered):
        return [f"read_csv({_lit(f)}, header = true)" for f in files]
    raise DataError(
        f"cannot mix or read these files as one table: {files[:3]}",
        hint="give CSV (.csv, .csv.gz) or Parquet files, all of one kind",
    )


def _load(con: Any, scans: list[str], features: FeatureSet) -> None:
    """The needed columns into one table, in input order, with the time in microseconds."""
    import duckdb

    times = {features.time} | {
        f.time for f in features.features if isinstance(f, CalendarFlags) and f.time
    }
    cols = []
    for col in features.columns:
        if col in times:
            cols.append(f"CAST({_q(col)} AS TIMESTAMP) AS {_q(col)}")
        else:
            cols.append(_q(col))
    cols.append(f"epoch_us(CAST({_q(features.time)} AS TIMESTAMP)) AS __ts")
    for n, scan in enumerate(scans):
        try:
            have = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        except duckdb.OutOfMemoryException:
            raise
        except duckdb.Error as exc:
            raise DataError(f"cannot read the input {scan}: {exc}") from exc
        missing = [c for c in features.columns if c not in have]
        if missing:
            raise DataError(
                f"the data has no column(s) {missing}" + (f" in {scan}" if n else ""),
                hint=f"the feature set reads {list(features.columns)}",
            )
        # preserve_insertion_order keeps the scan's order in the table: rowid = input row
        into = "CREATE TABLE src AS" if n == 0 else "INSERT INTO src"
        con.execute(f"{into} SELECT {', '.join(cols)} FROM {scan}")


def _check(con: Any, features: FeatureSet) -> None:
    label = features.label
    required = [c for c in features.columns if c != label]
    counts = ", ".join(f"count(*) FILTER (WHERE {_q(c)} IS NULL)" for c in required)
    row = con.execute(f"SELECT {counts} FROM src").fetchone()
    bad = {c: n for c, n in zip(required, row or (), strict=True) if n}
    if bad:
        raise DataError(
            "missing values where every row needs one: "
            + ", ".join(f"{c} ({n} rows)" for c, n in bad.items()),
            hint="drop or fill those rows first (only the label may be missing)",
        )
    dupes = con.execute(f"SELECT count(*) - count(DISTINCT {_q(features.id)}) FROM src").fetchone()
    if dupes and dupes[0]:
        raise DataError(
            f"{dupes[0]} rows repeat an id in {features.id}",
            hint="each transaction must appear once (drop duplicates first)",
        )


def offline_parts(features: FeatureSet) -> list[str]:
    """The queries over table ``src`` (the needed columns, ``__ts`` in microseconds, rowid =
    input row), each giving ``__row`` and some features (in any row order): one with the
    id and the calendar flags, then one per entity with every window and rate over it
    (one sort each, carrying only that entity's columns). They are independent."""
    parts = [_calendar_part(features)]
    for entity in features.entities:
        parts.append(_entity_part(features, entity))
    return parts


def _calendar_part(features: FeatureSet) -> str:
    cols = ["rowid AS __row", _q(features.id)]
    for feature in features.features:
        if isinstance(feature, CalendarFlags):
            ts = _q(feature.time or features.time)
            cols.append(
                f"CAST(isodow({ts}) - 1 >= {feature.weekend_from} AS BIGINT) "
                f"AS {_q(feature.weekend)}"
            )
            cols.append(
                f"CAST(hour({ts}) <= {feature.night_until} AS BIGINT) AS {_q(feature.night)}"
            )
    return f"SELECT {', '.join(cols)} FROM src"


def _entity_part(features: FeatureSet, entity: str) -> str:
    e = _q(entity)
    mine = [
        f
        for f in features.features
        if isinstance(f, Window | DelayedLabelRate) and f.entity == entity
    ]
    values = list(features.values(entity))
    labels = list(dict.fromkeys(f.label for f in mine if isinstance(f, DelayedLabelRate)))
    needs_ties = any(isinstance(f, Window) for f in mine)
    windows: dict[str, str] = {}
    inner = ["__row"]
    outer = ["__row"]
    for i, feature in enumerate(mine):
        if isinstance(feature, Window):
            for days in feature.days:
                frame = f"w{i}_{days}"
                windows[frame] = (
                    f"PARTITION BY {e} ORDER BY __ts "
                    f"RANGE BETWEEN {days * DAY_US - 1} PRECEDING AND CURRENT ROW"
                )
                inner.append(f"count(*) OVER {frame} - __tie_n AS __w{i}_{days}_n")
                if feature.value:
                    j = values.index(feature.value)
                    inner.append(
                        f"sum({_q(feature.value)}) OVER {frame} - __tie_s{j} AS __w{i}_{days}_s"
                    )
            for name, agg, days in feature.outputs:
                n, total = f"__w{i}_{days}_n", f"CAST(__w{i}_{days}_s AS DOUBLE)"
                expr = {"count": n, "sum": total, "mean": f"{total} / {n}"}[agg]
                outer.append(f"{expr} AS {_q(name)}")
        else:
            label = f"coalesce(CAST({_q(feature.label)} AS DOUBLE), 0)"
            for days in feature.days:
                frame = f"d{i}_{days}"
                windows[frame] = (
                    f"PARTITION BY {e} ORDER BY __ts RANGE BETWEEN "
                    f"{(feature.delay + days) * DAY_US - 1} PRECEDING AND "
                    f"{feature.delay * DAY_US} PRECEDING"
                )
                inner.append(f"count(*) OVER {frame} AS __d{i}_{days}_n")
                inner.append(f"coalesce(sum({label}) OVER {frame}, 0) AS __d{i}_{days}_s")
            for name, agg, days in feature.outputs:
                n, s = f"__d{i}_{days}_n", f"__d{i}_{days}_s"
                expr = n if agg == "count" else f"CASE WHEN {n} = 0 THEN 0.0 ELSE {s} / {n} END"
                outer.append(f"{expr} AS {_q(name)}")
    # only the columns this entity needs go through its sort
    cols = ["rowid AS __row", "__ts", e, *(_q(v) for v in values), *(_q(y) for y in labels)]
    base = f"SELECT {', '.join(cols)} FROM src"
    if needs_ties:
        # A RANGE frame ending at CURRENT ROW also holds the rows at the same time that come
        # after the current one (in input order); these (rare) ties are found and subtracted.
        sums = "".join(
            f", coalesce(sum({_q(v)}) OVER after, 0) AS __tie_s{j}" for j, v in enumerate(values)
        )
        ties = (
            f"SELECT __row, count(*) OVER after AS __tie_n{sums} FROM base "
            f"WHERE ({e}, __ts) IN (SELECT {e}, __ts FROM base GROUP BY ALL HAVING count(*) > 1) "
            f"WINDOW after AS (PARTITION BY {e}, __ts ORDER BY __row "
            "ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)"
        )
        fills = "".join(f", coalesce(ties.__tie_s{j}, 0) AS __tie_s{j}" for j in range(len(values)))
        source = (
            f"(WITH base AS ({base}), ties AS ({ties}) SELECT base.*, "
            f"coalesce(ties.__tie_n, 0) AS __tie_n{fills} FROM base LEFT JOIN ties USING (__row))"
        )
    else:
        source = f"({base})"
    window_clause = ", ".join(f"{name} AS ({spec})" for name, spec in windows.items())
    inner_sql = f"SELECT {', '.join(inner)} FROM {source} WINDOW {window_clause}"
    return f"SELECT {', '.join(outer)} FROM ({inner_sql})"


def _run_parts(con: Any, features: FeatureSet, threads: int | None) -> pd.DataFrame:
    """The parts, side by side when DuckDB may use more than one thread, put together in
    input order by ``__row`` (a scatter: cheaper than sorting in the queries)."""
    import numpy as np
    import pandas as pd

    parts = offline_parts(features)
    side_by_side = threads is None or threads > 1

    def run(sql: str) -> dict[str, Any]:
        cursor = con.cursor()
        try:
            return dict(cursor.execute(sql).fetchnumpy())
        finally:
            cursor.close()

    if side_by_side and len(parts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(parts)) as pool:
            results = list(pool.map(run, parts))
    else:
        results = [run(sql) for sql in parts]
    columns: dict[str, Any] = {}
    for result in results:
        rows = np.asarray(result.pop("__row"))
        for name, values in result.items():
            array = np.asarray(values)
            placed = np.empty_like(array)
            placed[rows] = array
            columns[name] = placed
    return pd.DataFrame({name: columns[name] for name in (features.id, *features.names)})


def _write_parts(con: Any, features: FeatureSet, target: Path) -> None:
    """The parts as tables sorted by input row (DuckDB sorts out of core), zipped row by row
    (a positional join: no hash table) into one Parquet file."""
    parts = offline_parts(features)
    for n, sql in enumerate(parts):
        con.execute(f"CREATE TABLE part{n} AS SELECT * FROM ({sql}) ORDER BY __row")
    tables = " POSITIONAL JOIN ".join(f"part{n}" for n in range(len(parts)))
    names = ", ".join(_q(c) for c in (features.id, *features.names))
    con.execute(f"COPY (SELECT {names} FROM {tables}) TO {_lit(str(target))} (FORMAT parquet)")
