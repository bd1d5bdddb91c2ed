"""Personal data in a project's stores: find it (``pii audit``), erase a subject (``pii forget``).

The stores, as :mod:`loopline.config` locates them:

``metadata``
    the metadata database (SQLite or PostgreSQL): every text column of every table,
    JSON values walked field by field (the review queue's payloads, run parameters, the
    stream's decisions).
``artifacts``
    the artifact store: Parquet tables column by column, JSON, CSV and text files, and
    the strings inside binary files (pickles, model files).
``mlflow``
    MLflow's tracking database (when it is a SQLite file) and its artifact folder.
``predictions``
    the prediction log: Parquet segments, or the ``predictions`` table in PostgreSQL.
``files``
    every other file under the project's ``.loopline/`` folder (log files, state files).
``streams``
    Redis streams (the dead-letter streams ``<stream>:dead`` included) when a Redis URL is
    configured (``pii.redis_url``, or the stream settings' ``url``/``redis_url``), keys
    matching ``pii.stream_prefix``.

Audit looks for personal data with the recognisers of :class:`~loopline.data.pii.TextScanner`
(the same as for free text at the door) and, when a policy is configured, for columns and
JSON fields that the policy says are personal but whose values are not masked (an
``identifier`` column that holds something other than pseudonyms, a ``drop`` column that is
there at all). Pseudonyms, hashes and UUIDs are not personal data to it; it counts the
pseudonyms of each key id (how many ``pn1_`` are left after a key rotation).

Forget erases the records of one data subject: the rows that carry one of the subject's
pseudonyms (under every configured key) or the raw identifier itself. See
:func:`forget_subject` for what that means in each store, content-addressed artifacts
included.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import orjson

from loopline.data.pii import (
    PSEUDONYM,
    TAGS,
    PiiKeyRing,
    PiiMasker,
    PiiPolicy,
    TextScanner,
    load_key_ring,
    load_policy,
    pii_settings,
    redact_example,
)
from loopline.errors import ConfigError, LooplineError

if TYPE_CHECKING:
    import pyarrow as pa
    import sqlalchemy as sa

    from loopline.config import Settings

__all__ = [
    "AuditReport",
    "Finding",
    "ForgetReport",
    "SubjectStore",
    "audit_project",
    "find_values",
    "forget_subject",
    "raw_pii_left",
    "raw_values",
]

STORES = ("metadata", "artifacts", "mlflow", "predictions", "files", "streams")
# Not personal data, and noise to the recognisers: pseudonyms, UUIDs, long hex (hashes, ids).
_NOT_PERSONAL = re.compile(
    PSEUDONYM.pattern
    + r"|\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    + r"|\b[0-9a-fA-F]{16,}\b"
)
_BINARY_STRINGS = re.compile(rb"[\x20-\x7e\t]{6,}")
_TEXT_SUFFIXES = {
    ".txt", ".log", ".md", ".yaml", ".yml", ".cfg", ".ini", ".toml", ".py", ".html", ".xml",
    ".out", ".err",
}  # fmt: skip
_MAX_FILE_BYTES = 512 * 1024 * 1024
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SKIP_TABLES = {"alembic_version"}


# -- results -------------------------------------------------------------------------------


@dataclass
class Finding:
    """Personal data found in one place: what kind, how often, one example (masked)."""

    store: str
    location: str
    kind: str
    count: int
    example: str


@dataclass
class AuditReport:
    """What :func:`audit_project` found, what it scanned and what it could not."""

    findings: list[Finding] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)  # store -> values or items read
    skipped: list[dict[str, str]] = field(default_factory=list)  # not configured / remote
    errors: list[dict[str, str]] = field(default_factory=list)  # configured, unreadable
    pseudonyms: dict[str, int] = field(default_factory=dict)  # key id -> distinct pseudonyms
    policy: str | None = None
    engine: str = "regex"

    @property
    def clean(self) -> bool:
        return not self.findings and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "findings": [asdict(f) for f in self.findings],
            "scanned": self.scanned,
            "skipped": self.skipped,
            "errors": self.errors,
            "pseudonyms_by_key": self.pseudonyms,
            "policy": self.policy,
            "engine": self.engine,
        }


@dataclass
class ForgetReport:
    """What :func:`forget_subject` removed, rewrote, and found left behind."""

    subject: str  # the subject as the report may show it (masked)
    pseudonyms: list[str]
    dry_run: bool
    removed: list[dict[str, Any]] = field(default_factory=list)  # store, location, rows
    rewritten_artifacts: list[dict[str, Any]] = field(default_factory=list)
    models_to_retrain: list[dict[str, str]] = field(default_factory=list)
    remaining: list[dict[str, Any]] = field(default_factory=list)  # store, location, count
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def total_removed(self) -> int:
        return sum(int(r["rows"]) for r in self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "pseudonyms": self.pseudonyms,
            "dry_run": self.dry_run,
            "total_removed": self.total_removed,
            "removed": self.removed,
            "rewritten_artifacts": self.rewritten_artifacts,
            "models_to_retrain": self.models_to_retrain,
            "remaining": self.remaining,
            "skipped": self.skipped,
        }


class SubjectStore(Protocol):
    """Another store that holds per-subject state (e.g. the online feature store)."""

    name: str

    def forget(self, pseudonyms: Sequence[str], dry_run: bool) -> int:
        """Erase (or, with ``dry_run``, count) what belongs to these pseudonyms."""
        ...


# -- where the stores are ------------------------------------------------------------------


@dataclass(frozen=True)
class _Places:
    home: Path
    metadata_url: str
    artifact_root: str
    mlflow_db: Path | None  # the tracking store when it is a SQLite file
    mlflow_uri: str
    mlflow_artifacts: Path | None
    predictions: str
    redis_url: str | None
    stream_prefix: str


def _local_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" in url:
        return None
    return Path(url).expanduser()


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def _stream_setting(settings: Settings, *names: str) -> str | None:
    section = getattr(settings, "stream", None) or getattr(settings, "streams", None)
    if section is None:
        return None
    for name in names:
        value = section.get(name) if isinstance(section, Mapping) else getattr(section, name, None)
        if value:
            return str(value)
    return None


def _places(settings: Settings) -> _Places:
    config = pii_settings(settings)
    assert settings.metadata_url and settings.artifact_root
    assert settings.mlflow_tracking_uri and settings.prediction_log_url
    mlflow_db = _sqlite_path(settings.mlflow_tracking_uri)
    artifacts_url = settings.mlflow_artifact_location
    return _Places(
        home=settings.home_dir,
        metadata_url=settings.metadata_url,
        artifact_root=settings.artifact_root,
        mlflow_db=mlflow_db,
        mlflow_uri=settings.mlflow_tracking_uri,
        mlflow_artifacts=_local_path(artifacts_url),
        predictions=settings.prediction_log_url,
        redis_url=config.redis_url or _stream_setting(settings, "redis_url", "url"),
        stream_prefix=config.stream_prefix
        or _stream_setting(settings, "stream_prefix", "prefix")
        or "",
    )


# -- walking files -------------------------------------------------------------------------


def _files(root: Path, exclude: Sequence[Path] = ()) -> Iterator[Path]:
    """Every file under ``root`` (hidden ones and temp folders too), minus ``exclude``."""
    if not root.is_dir():
        return
    skip = {p.resolve().with_name(p.name + side) for p in exclude for side in _SIDE_FILES}
    for folder, dirs, names in os.walk(root):
        here = Path(folder).resolve()
        dirs[:] = sorted(d for d in dirs if (here / d) not in skip)
        for name in sorted(names):
            path = here / name
            if path not in skip and path.is_file():
                yield path


# A SQLite database's companions, skipped with it.
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _read_bytes(path: Path) -> bytes | None:
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _decompressed(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of a file, and of what a gzip or zip file holds."""
    if name.endswith(".gz"):
        with contextlib.suppress(OSError, EOFError, gzip.BadGzipFile):
            yield name[:-3], gzip.decompress(data)
            return
    if data[:4] == b"PK\x03\x04":
        with contextlib.suppress(zipfile.BadZipFile, OSError):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    if not member.endswith("/"):
                        yield f"{name}!{member}", archive.read(member)
            return
    yield name, data


# -- values out of files -------------------------------------------------------------------

# (sub-location, column or JSON field name or None, values)
_Values = Iterator[tuple[str, str | None, list[Any]]]


def _parquet_values(name: str, data: bytes) -> _Values:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data))
    for column in table.column_names:
        array = table.column(column)
        kind = array.type
        if pa.types.is_dictionary(kind):
            array = array.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_nested(kind):
            values = [orjson.dumps(v, default=str).decode() for v in array.to_pylist()]
        else:
            values = array.unique().to_pylist()
        yield f"{name}: column {column}", column, values


def _json_fields(value: Any, path: str = "") -> Iterator[tuple[str, str | None, list[Any]]]:
    """JSON walked into (path, field name, values); split-orient tables by column."""
    if isinstance(value, dict):
        columns, data = value.get("columns"), value.get("data")
        if isinstance(columns, list) and isinstance(data, list):
            for i, column in enumerate(columns):
                cells = [row[i] for row in data if isinstance(row, list) and len(row) > i]
                yield f"{path}{column}", str(column), cells
            rest = {k: v for k, v in value.items() if k not in ("columns", "data")}
            yield from _json_fields(rest, path)
            return
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _json_fields(item, f"{path}{key}.")
            else:
                yield f"{path}{key}", str(key), [item]
    elif isinstance(value, list):
        scalars = [v for v in value if not isinstance(v, dict | list)]
        if scalars:
            yield path.rstrip(".") or "[]", None, scalars
        for item in value:
            if isinstance(item, dict | list):
                yield from _json_fields(item, path)
    elif value is not None:
        yield path.rstrip(".") or "value", None, [value]


def _text_json(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _file_values(name: str, data: bytes) -> _Values:
    """What a file holds, as values to scan (structured where the format allows)."""
    lower = name.lower()
    if lower.endswith((".parquet", ".pq")) or data[:4] == b"PAR1":
        try:
            yield from _parquet_values(name, data)
            return
        except Exception:  # a damaged file: scan its bytes instead
            pass
    if lower.endswith((".json", ".jsonl", ".ndjson")) or name.endswith("MLmodel"):
        text = data.decode("utf-8", "replace")
        parsed = _text_json(text)
        if parsed is not None:
            for where, column, values in _json_fields(parsed):
                yield f"{name}: {where}", column, values
            return
        if lower.endswith((".jsonl", ".ndjson")):
            for i, line in enumerate(text.splitlines()):
                line_json = _text_json(line)
                for where, column, values in _json_fields(line_json or line):
                    yield f"{name}: line {i + 1} {where}", column, values
            return
    if lower.endswith((".csv", ".tsv")):
        yield from _csv_values(name, data)
        return
    if lower.endswith(_SQLITE_SUFFIXES) or data[:16] == b"SQLite format 3\x00":
        return  # databases are read through SQL (_sql_values), not byte by byte
    if Path(lower).suffix in _TEXT_SUFFIXES or _is_text(data):
        text = data.decode("utf-8", "replace")
        yield name, None, list(dict.fromkeys(text.splitlines()))
        return
    strings = [s.decode("ascii") for s in _BINARY_STRINGS.findall(data)]
    yield f"{name} (strings of a binary file)", None, list(dict.fromkeys(strings))


def _is_text(data: bytes) -> bool:
    head = data[:4096]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a character cut at the end of the sample
    return True


def _csv_values(name: str, data: bytes) -> _Values:
    import csv

    text = data.decode("utf-8", "replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return
    columns: list[set[str]] = [set() for _ in header]
    for row in reader:
        for i, cell in enumerate(row[: len(header)]):
            columns[i].add(cell)
    for column, cells in zip(header, columns, strict=True):
        yield f"{name}: column {column}", column, list(cells)


# -- SQL stores ----------------------------------------------------------------------------


def _engine(url: str) -> sa.Engine:
    import sqlalchemy as sa

    from loopline.core.dburl import sqlalchemy_url

    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": 30})
    return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True)


def _exists(url: str) -> bool:
    path = _sqlite_path(url)
    return path is None or path.is_file() if url.startswith("sqlite") else True


def _text_columns(table: sa.Table) -> list[sa.Column[Any]]:
    import sqlalchemy as sa

    return [c for c in table.columns if isinstance(c.type, sa.String | sa.Text | sa.JSON)]


def _sql_values(
    url: str, only: Iterable[str] | None = None, skip: Iterable[str] = ()
) -> Iterator[tuple[str, str | None, list[Any]]]:
    """(``table.column``, field, values) of every text column; JSON values by field."""
    import sqlalchemy as sa

    engine = _engine(url)
    try:
        meta = sa.MetaData()
        wanted = set(only) if only is not None else None
        meta.reflect(engine, only=None if wanted is None else lambda name, _: name in wanted)
        skipped = set(skip) | _SKIP_TABLES
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                if table.name in skipped:
                    continue
                columns = _text_columns(table)
                for column in columns:
                    query = sa.select(column).where(column.is_not(None)).distinct()
                    values = [row[0] for row in conn.execute(query)]
                    plain: list[Any] = []
                    for value in values:
                        parsed = _text_json(value) if isinstance(value, str) else None
                        if parsed is None:
                            plain.append(value)
                            continue
                        for where, name, found in _json_fields(parsed):
                            yield f"{table.name}.{column.name} (JSON {where})", name, found
                    yield f"{table.name}.{column.name}", column.name, plain
    finally:
        engine.dispose()


# -- the audit -----------------------------------------------------------------------------


class _Auditor:
    def __init__(self, policy: PiiPolicy | None, scanner: TextScanner) -> None:
        self.policy = policy
        self.scanner = scanner
        self.report = AuditReport(policy=policy.name if policy else None, engine=scanner.engine)
        self._found: dict[tuple[str, str, str], Finding] = {}
        self._spans: dict[str, list[tuple[str, str]]] = {}
        self._pseudonyms: dict[str, set[str]] = {}

    def values(self, store: str, location: str, column: str | None, values: Iterable[Any]) -> None:
        rule = self._rule(column)
        count = 0
        for value in values:
            count += 1
            if value is None:
                continue
            if rule is not None:
                self._check_rule(store, location, column, rule, value)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                self.text(store, location, value)
        self.report.scanned[store] = self.report.scanned.get(store, 0) + count

    def _rule(self, column: str | None) -> Any:
        if self.policy is None or column is None:
            return None
        name = column.removeprefix("input.")
        rule = self.policy.columns.get(name)
        return rule if rule is not None and rule.kind in ("identifier", "mask", "drop") else None

    def _check_rule(self, store: str, location: str, column: Any, rule: Any, value: Any) -> None:
        if isinstance(value, float) and value != value:  # NaN
            return
        text = str(value)
        if not text.strip():
            return
        if rule.kind == "identifier" and PSEUDONYM.fullmatch(text):
            return
        if rule.kind == "mask" and ("*" in text or text in (rule.tag(column), *TAGS.values())):
            return
        what = {"identifier": "not pseudonymised", "mask": "not masked", "drop": "not dropped"}
        name = str(column).removeprefix("input.")
        kind = f"{rule.pii or 'personal'} column {name} {what[rule.kind]}"
        self.add(store, location, kind, text)

    def text(self, store: str, location: str, value: str) -> None:
        if "pn" in value:
            for match in PSEUDONYM.finditer(value):
                key = f"pn{match.group(1)}"
                seen = self._pseudonyms.setdefault(key, set())
                if len(seen) < 10_000_000:
                    seen.add(match.group(2))
                self.report.pseudonyms[key] = len(seen)
        found = self._spans.get(value)
        if found is None:
            cleaned = _NOT_PERSONAL.sub(" ", value)
            found = [(s.entity, cleaned[s.start : s.end]) for s in self.scanner.find(cleaned)]
            if len(self._spans) < 200_000:
                self._spans[value] = found
        for entity, text in found:
            self.add(store, location, entity, text)

    def add(self, store: str, location: str, kind: str, value: str) -> None:
        key = (store, location, kind)
        finding = self._found.get(key)
        if finding is None:
            finding = Finding(store, location, kind, 0, redact_example(value))
            self._found[key] = finding
            self.report.findings.append(finding)
        finding.count += 1

    def skip(self, store: str, why: str) -> None:
        self.report.skipped.append({"store": store, "why": why})

    def error(self, store: str, where: str, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, LooplineError) else f"{type(exc).__name__}"
        self.report.errors.append({"store": store, "where": where, "error": message})


def _scan_files(
    auditor: _Auditor, store: str, root: Path, base: Path, exclude: Sequence[Path] = ()
) -> None:
    for path in _files(root, exclude):
        data = _read_bytes(path)
        if data is None:
            auditor.skip(store, f"{path} is unreadable or larger than 512 MiB")
            continue
        name = _relative(path, base)
        for inner, content in _decompressed(name, data):
            for location, column, values in _file_values(inner, content):
                auditor.values(store, location, column, values)
        if path.name.endswith(_SQLITE_SUFFIXES):
            _scan_sql(auditor, store, f"sqlite:///{path}", prefix=f"{name}: ")


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _scan_sql(
    auditor: _Auditor,
    store: str,
    url: str,
    *,
    prefix: str = "",
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> None:
    try:
        for location, column, values in _sql_values(url, only, skip):
            auditor.values(store, prefix + location, column, values)
    except Exception as exc:
        auditor.error(store, prefix or _safe(url), exc)


def _safe(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def audit_project(
    settings: Settings,
    *,
    policy: str | Mapping[str, Any] | PiiPolicy | None = None,
    scanner: TextScanner | None = None,
    stores: Sequence[str] = STORES,
) -> AuditReport:
    """Scan every store of the project for personal data; nothing is created or changed.

    ``policy`` (default: the configured one, if any) adds the check of its personal columns;
    ``stores`` limits the scan to some of :data:`STORES`.
    """
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        raise LooplineError(f"unknown stores {unknown}", hint=f"stores: {', '.join(STORES)}")
    config = pii_settings(settings)
    chosen = _audit_policy(settings, policy)
    auditor = _Auditor(chosen, scanner or TextScanner(config.engine, config.score_threshold))
    places = _places(settings)
    home = places.home
    if "metadata" in stores:
        skip = ["predictions"] if places.predictions == places.metadata_url else []
        if _exists(places.metadata_url):
            _scan_sql(auditor, "metadata", places.metadata_url, skip=skip)
        else:
            auditor.skip("metadata", "no metadata database yet")
    if "artifacts" in stores:
        root = _local_path(places.artifact_root)
        if root is None:
            _scan_remote_artifacts(auditor, places.artifact_root)
        elif root.is_dir():
            _scan_files(auditor, "artifacts", root, root)
        else:
            auditor.skip("artifacts", "no artifact store yet")
    if "mlflow" in stores:
        _audit_mlflow(auditor, places)
    if "predictions" in stores:
        _audit_predictions(auditor, places)
    if "files" in stores:
        _scan_files(auditor, "files", home, home, _own_places(places))
    if "streams" in stores:
        _audit_streams(auditor, places)
    return auditor.report


def _audit_policy(
    settings: Settings, policy: str | Mapping[str, Any] | PiiPolicy | None
) -> PiiPolicy | None:
    if policy is not None:
        return load_policy(policy, settings)
    if pii_settings(settings).policy is None:
        return None
    return load_policy(None, settings)


def _own_places(places: _Places) -> list[Path]:
    """The stores that live under ``.loopline/`` and are scanned on their own."""
    own = [
        _sqlite_path(places.metadata_url),
        _local_path(places.artifact_root),
        places.mlflow_db,
        places.mlflow_artifacts,
        _local_path(places.predictions) if not _is_sql(places.predictions) else None,
    ]
    return [p for p in own if p is not None]


def _is_sql(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:", "sqlite"))


def _scan_remote_artifacts(auditor: _Auditor, root: str) -> None:
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(root)
        for name in fs.find(path):
            data = fs.cat_file(name)
            for inner, content in _decompressed(name, data):
                for location, column, values in _file_values(inner, content):
                    auditor.values("artifacts", location, column, values)
    except Exception as exc:
        auditor.error("artifacts", root, exc)


def _audit_mlflow(auditor: _Auditor, places: _Places) -> None:
    if places.mlflow_db is not None:
        if places.mlflow_db.is_file():
            _scan_sql(auditor, "mlflow", f"sqlite:///{places.mlflow_db}", prefix="mlflow.db: ")
        else:
            auditor.skip("mlflow", "no MLflow database yet")
    else:
        folder = _local_path(places.mlflow_uri)
        if folder is not None and folder.is_dir():
            _scan_files(auditor, "mlflow", folder, folder)
        else:
            auditor.skip(
                "mlflow",
                f"the tracking store {_safe(places.mlflow_uri)} is a server: audit it there "
                "(its database and artifact store)",
            )
    if places.mlflow_artifacts is not None and places.mlflow_artifacts.is_dir():
        base = places.mlflow_artifacts.parent
        _scan_files(auditor, "mlflow", places.mlflow_artifacts, base)


def _audit_predictions(auditor: _Auditor, places: _Places) -> None:
    if _is_sql(places.predictions):
        _scan_sql(auditor, "predictions", places.predictions, only=["predictions"])
        return
    folder = _local_path(places.predictions)
    if folder is None or not folder.is_dir():
        auditor.skip("predictions", "nothing logged yet")
        return
    _scan_files(auditor, "predictions", folder, folder)


# -- Redis streams -------------------------------------------------------------------------


def _redis(url: str) -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError("the Redis client is not installed", hint="pip install redis") from None
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def _stream_entries(client: Any, key: bytes) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    last = b"-"
    while True:
        batch = client.xrange(key, min=last, max=b"+", count=1000)
        if last != b"-" and batch:
            batch = batch[1:]  # min is inclusive: the last one of the previous batch
        if not batch:
            return
        yield from batch
        last = batch[-1][0]


def _stream_keys(client: Any, prefix: str) -> Iterator[bytes]:
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        if client.type(key) in (b"stream", "stream"):
            yield key


def _audit_streams(auditor: _Auditor, places: _Places) -> None:
    if not places.redis_url:
        auditor.skip("streams", "no Redis URL configured (pii.redis_url)")
        return
    try:
        client = _redis(places.redis_url)
        for key in _stream_keys(client, places.stream_prefix):
            name = key.decode("utf-8", "replace")
            for _entry_id, fields in _stream_entries(client, key):
                for field_name, raw in fields.items():
                    where = f"{name}: field {field_name.decode('utf-8', 'replace')}"
                    text = raw.decode("utf-8", "replace")
                    parsed = _text_json(text)
                    if parsed is None:
                        auditor.values("streams", where, None, [text])
                        continue
                    for sub, column, values in _json_fields(parsed):
                        auditor.values("streams", f"{where} {sub}", column, values)
    except Exception as exc:
        auditor.error("streams", _safe(places.redis_url), exc)


# -- searching for known values (tests, and forget's "what is left") -----------------------


def _texts(settings: Settings) -> Iterator[tuple[str, str, str]]:
    """``(store, location, text)`` of every byte Loopline stored, decoded every way it can
    be: raw bytes as UTF-8, Parquet and SQLite content, gzip and zip members, Redis."""
    places = _places(settings)
    roots: list[tuple[str, Path, Sequence[Path]]] = []
    artifacts = _local_path(places.artifact_root)
    if artifacts is not None:
        roots.append(("artifacts", artifacts, ()))
    if places.mlflow_artifacts is not None:
        roots.append(("mlflow", places.mlflow_artifacts, ()))
    if places.mlflow_db is not None:
        roots.append(("mlflow", places.mlflow_db, ()))
    predictions = None if _is_sql(places.predictions) else _local_path(places.predictions)
    if predictions is not None:
        roots.append(("predictions", predictions, ()))
    metadata_db = _sqlite_path(places.metadata_url)
    if metadata_db is not None:
        roots.append(("metadata", metadata_db, ()))
    roots.append(("files", places.home, _own_places(places)))
    for store, root, exclude in roots:
        paths: Iterable[Path]
        if root.is_file():
            paths = [p for p in root.parent.glob(root.name + "*") if p.is_file()]
        else:
            paths = _files(root, exclude)
        for path in paths:
            data = _read_bytes(path)
            if data is None:
                continue
            for inner, content in _decompressed(str(path), data):
                yield store, inner, content.decode("utf-8", "replace")
                for location, _column, values in _file_values(inner, content):
                    if location != inner:  # a structured view (Parquet, JSON fields)
                        yield store, location, "\n".join(map(str, values))
            if data[:16] == b"SQLite format 3\x00":
                for location, _column, values in _sql_values(f"sqlite:///{path}"):
                    yield store, f"{path}: {location}", "\n".join(map(str, values))
    for store, url in (("metadata", places.metadata_url), ("predictions", places.predictions)):
        if url.startswith(("postgresql", "postgres:")):
            only = ["predictions"] if store == "predictions" else None
            for location, _column, values in _sql_values(url, only=only):
                yield store, location, "\n".join(map(str, values))
    if places.redis_url:
        client = _redis(places.redis_url)
        for key in _stream_keys(client, places.stream_prefix):
            for entry_id, fields in _stream_entries(client, key):
                text = "\n".join(v.decode("utf-8", "replace") for v in fields.values())
                yield "streams", f"{key.decode()} {entry_id.decode()}", text


@dataclass(frozen=True)
class ValueHit:
    """A searched value found in a store."""

    store: str
    location: str
    value: str


class _ValueIndex:
    """Finds any of many values in a text, case-insensitively and as whole words, in one
    pass over the text's words (a value is looked up by its first word)."""

    def __init__(self, values: Iterable[Any]) -> None:
        self.index: dict[str, list[tuple[str, int]]] = {}
        for value in {str(v).strip().lower() for v in values if v is not None}:
            first = re.search(r"\w+", value)
            if first is not None:
                self.index.setdefault(first.group(), []).append((value, first.start()))

    def search(self, text: str) -> set[str]:
        found: set[str] = set()
        lowered = text.lower()
        for match in re.finditer(r"\w+", lowered):
            for value, offset in self.index.get(match.group(), ()):
                start = match.start() - offset
                end = start + len(value)
                if start < 0 or not lowered.startswith(value, start):
                    continue
                if _word_char(lowered, start - 1) and _word_char(value, 0):
                    continue
                if _word_char(lowered, end) and _word_char(value, len(value) - 1):
                    continue
                found.add(value)
        return found


def find_values(settings: Settings, values: Iterable[Any]) -> list[ValueHit]:
    """Where any of ``values`` occurs (case-insensitive, as a whole word) in any store.

    The check behind "no raw personal value of the input reached any store": pass the raw
    values of the input's personal columns (:func:`raw_values`). Every file is searched as
    raw bytes and, where it is Parquet, SQLite, gzip or zip, as its decoded content too.
    """
    index = _ValueIndex(values)
    hits: list[ValueHit] = []
    seen: set[tuple[str, str, str]] = set()
    for store, location, text in _texts(settings):
        for value in sorted(index.search(text)):
            if (store, location, value) not in seen:
                seen.add((store, location, value))
                hits.append(ValueHit(store, location, value))
    return hits


def _word_char(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


def raw_values(frame: Any, policy: PiiPolicy, kinds: Sequence[str] | None = None) -> set[str]:
    """The raw values of ``frame``'s personal columns (of ``kinds``: default every kind but
    keep and generalise), as text: what must never reach a store.

    A value that the frame's kept columns hold as well, as a whole word, is left out: it is
    stored by design (customers named Dennis or Mark, the town of Dennis in
    ``billing_city``, a "Trade mark attorney" in ``customer_job``).
    """
    wanted = kinds or ("identifier", "mask", "drop")
    personal = [c for c, r in policy.columns.items() if r.kind in wanted and c in frame.columns]
    found: set[str] = set()
    for column in personal:
        found |= {str(v) for v in frame[column].dropna().unique()}
    masked = [c for c, r in policy.columns.items() if r.kind != "keep"]
    kept = [c for c in frame.columns if c not in masked]
    text = "\n".join(str(v) for c in kept for v in frame[c].dropna().unique())
    by_design = _ValueIndex(found).search(text)
    return {v for v in found if v.strip().lower() not in by_design}


def raw_pii_left(settings: Settings, raw: Any, policy: PiiPolicy) -> list[ValueHit]:
    """Every raw personal value of the input ``raw`` (a DataFrame, as it arrived) that can
    be found in any store of the project: empty when masking at the door held.

    The check of the fraud path's PII test, for the batch half and the stream half alike.
    """
    return find_values(settings, raw_values(raw, policy))


# -- forget --------------------------------------------------------------------------------


def forget_subject(
    settings: Settings,
    subject: str,
    *,
    keys: PiiKeyRing | None = None,
    dry_run: bool = False,
    extra: Sequence[SubjectStore] = (),
) -> ForgetReport:
    """Erase one data subject's records from every mutable store; say what was removed.

    ``subject`` is a raw identifier as it arrived (an e-mail address, a customer id) or a
    pseudonym. Its pseudonyms under every configured key (a rotation leaves older ones in
    the stores) and the raw value itself are looked for; a record *carries* the subject when
    a text value contains one of the pseudonyms or equals the raw value.

    Per store:

    * **prediction log** — segments rewritten without the subject's rows (atomically, like
      the logger writes them; a segment left empty is deleted); PostgreSQL: rows deleted.
    * **metadata** — feedback on those predictions, review-queue tasks carrying the subject
      (with their annotations and assignments) and stream decisions carrying it are deleted;
      SQLite with ``secure_delete`` and a WAL checkpoint, so the bytes do not linger.
    * **artifacts** — content-addressed and otherwise immutable. Erasure wins: a Parquet or
      JSON table artifact is rewritten without the subject's rows *under the same id*, and
      its ``meta.json`` records when and how many rows were erased (the dataset version's
      row count is updated). Lineage keeps pointing at the same ids, so runs and model
      versions stay explainable, at the price that an erased artifact's content no longer
      hashes to its id and an old run is not bit-for-bit reproducible any more. Re-keying
      the id would instead break every lineage edge and cache entry that names it. Models
      trained on data that held the subject are listed in ``models_to_retrain``: their
      weights cannot be edited, retraining removes the subject's influence.
    * **MLflow** — input examples (JSON tables in the run artifacts) rewritten the same way;
      anything else is reported in ``remaining``.
    * **streams** — Redis stream entries (dead letters too) carrying the subject: ``XDEL``.
    * **extra** stores (the online feature store): their ``forget``.

    Finally every store is searched again and what still holds the subject is listed in
    ``remaining`` (model files, logs, run parameters), for a person to decide.
    ``dry_run`` changes nothing and reports what would be removed.
    """
    subject = subject.strip()
    if not subject:
        raise LooplineError("forget needs a subject", hint="pass the identifier as it arrived")
    if PSEUDONYM.fullmatch(subject):
        pseudonyms, raw = [subject], None
    else:
        ring = keys or load_key_ring(settings)
        masker = PiiMasker(PiiPolicy(), ring, TextScanner("regex"))
        pseudonyms, raw = masker.pseudonyms(subject), subject.lower()
    match = _Matcher(pseudonyms, raw)
    report = ForgetReport(redact_example(subject, 2), pseudonyms, dry_run)
    places = _places(settings)
    request_ids = _forget_predictions(places, match, report)
    _forget_metadata(places, match, request_ids, report)
    rewritten = _forget_artifacts(places, match, report)
    _forget_mlflow_files(places, match, report)
    _forget_streams(places, match, report)
    for store in extra:
        try:
            rows = store.forget(pseudonyms, dry_run)
        except Exception as exc:
            report.skipped.append({"store": store.name, "why": f"failed: {type(exc).__name__}"})
            continue
        report.removed.append({"store": store.name, "location": store.name, "rows": int(rows)})
    if rewritten:
        report.models_to_retrain = _models_trained_on(places, rewritten)
    tokens = [*pseudonyms, *([raw] if raw else [])]
    counts: dict[tuple[str, str], int] = {}
    for hit in find_values(settings, tokens):
        counts[(hit.store, hit.location)] = counts.get((hit.store, hit.location), 0) + 1
    report.remaining = [{"store": s, "location": loc, "count": n} for (s, loc), n in counts.items()]
    return report


class _Matcher:
    """Does a value carry the subject? A pseudonym inside it, or the raw value as it is."""

    def __init__(self, pseudonyms: Sequence[str], raw: str | None) -> None:
        self.pseudonyms = list(pseudonyms)
        self.raw = raw

    def text(self, value: Any) -> bool:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            return False
        if any(p in value for p in self.pseudonyms):
            return True
        return self.raw is not None and value.strip().lower() == self.raw

    def record(self, value: Any) -> bool:
        """A JSON-able record (dict, list) carrying the subject anywhere."""
        if isinstance(value, dict):
            return any(self.record(v) for v in value.values())
        if isinstance(value, list):
            return any(self.record(v) for v in value)
        return self.text(value)

    def arrow_rows(self, table: pa.Table) -> Any:
        """A boolean array: the rows of ``table`` that carry the subject."""
        import pyarrow as pa
        import pyarrow.compute as pc

        hit = pa.array([False] * table.num_rows)
        for column in table.columns:
            kind = column.type
            if pa.types.is_dictionary(kind):
                column, kind = column.cast(kind.value_type), kind.value_type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                continue
            for token in self.pseudonyms:
                hit = pc.or_(hit, pc.fill_null(pc.match_substring(column, token), False))
            if self.raw is not None:
                lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
                hit = pc.or_(hit, pc.fill_null(pc.equal(lowered, self.raw), False))
        return hit


def _rewrite_parquet(path: Path, match: _Matcher, dry_run: bool) -> tuple[int, int]:
    """Drop the subject's rows from a Parquet file: (rows removed, rows left)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    hit = match.arrow_rows(table)
    removed = int(pc.sum(hit).as_py() or 0)
    if removed and not dry_run:
        kept = table.filter(pc.invert(hit))
        metadata = pq.read_metadata(path)
        compression = (
            metadata.row_group(0).column(0).compression if metadata.num_row_groups else None
        )
        _atomic_write(
            path,
            lambda handle: pq.write_table(
                kept, handle, compression=(compression or "zstd").lower()
            ),
        )
    return removed, table.num_rows - removed


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    temp = path.with_name(f".{path.name}.forget.tmp")
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _forget_predictions(places: _Places, match: _Matcher, report: ForgetReport) -> list[str]:
    request_ids: list[str] = []
    if places.predictions.startswith(("postgresql", "postgres:")):
        return _forget_predictions_sql(places.predictions, match, report)
    folder = _local_path(places.predictions)
    if folder is None or not folder.is_dir():
        return request_ids
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    removed_total = 0
    for path in sorted(folder.glob("*/seg-*.parquet")):
        table = pq.read_table(path)
        hit = match.arrow_rows(table)
        removed = int(pc.sum(hit).as_py() or 0)
        if not removed:
            continue
        if "request_id" in table.column_names:
            request_ids += [str(r) for r in table.filter(hit).column("request_id").to_pylist()]
        removed_total += removed
        if report.dry_run:
            continue
        if removed == table.num_rows:
            path.unlink()
        else:
            _rewrite_parquet(path, match, dry_run=False)
    if removed_total:
        report.removed.append(
            {"store": "predictions", "location": str(folder), "rows": removed_total}
        )
    return request_ids


def _forget_predictions_sql(url: str, match: _Matcher, report: ForgetReport) -> list[str]:
    import sqlalchemy as sa

    engine = _engine(url)
    try:
        meta = sa.MetaData()
        try:
            meta.reflect(engine, only=["predictions"])
        except sa.exc.InvalidRequestError:
            return []
        table = meta.tables["predictions"]
        condition = _sql_condition(table, match)
        with engine.begin() as conn:
            ids = [str(r[0]) for r in conn.execute(sa.select(table.c.request_id).where(condition))]
            if ids and not report.dry_run:
                conn.execute(table.delete().where(condition))
    finally:
        engine.dispose()
    if ids:
        report.removed.append({"store": "predictions", "location": "predictions", "rows": len(ids)})
    return ids


def _sql_condition(table: sa.Table, match: _Matcher, columns: Sequence[str] | None = None) -> Any:
    import sqlalchemy as sa

    chosen = [c for c in _text_columns(table) if columns is None or c.name in columns]
    terms: list[Any] = []
    for column in chosen:
        terms += [column.contains(p, autoescape=True) for p in match.pseudonyms]
        if match.raw is not None:
            terms.append(sa.func.lower(sa.func.trim(column)) == match.raw)
            # The raw value as a JSON string inside a JSON document (a queue payload).
            terms.append(sa.func.lower(column).contains(json.dumps(match.raw), autoescape=True))
    return sa.or_(*terms) if terms else sa.false()


def _forget_metadata(
    places: _Places, match: _Matcher, request_ids: Sequence[str], report: ForgetReport
) -> None:
    import sqlalchemy as sa

    if not _exists(places.metadata_url):
        return
    engine = _engine(places.metadata_url)
    sqlite = places.metadata_url.startswith("sqlite")
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        tables = meta.tables
        with engine.begin() as conn:
            if sqlite:
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            if "feedback" in tables and request_ids:
                feedback = tables["feedback"]
                rows = 0
                for chunk in _chunks(list(dict.fromkeys(request_ids)), 500):
                    where = feedback.c.request_id.in_(chunk)
                    rows += _delete(conn, feedback, where, report.dry_run)
                _note(report, "metadata", "feedback", rows)
            if "label_tasks" in tables:
                _forget_queue(conn, tables, match, report)
            if "decisions" in tables:
                decisions = tables["decisions"]
                where = _sql_condition(decisions, match)
                _note(
                    report, "metadata", "decisions", _delete(conn, decisions, where, report.dry_run)
                )
        if sqlite and not report.dry_run:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()


def _forget_queue(
    conn: Any, tables: Mapping[str, Any], match: _Matcher, report: ForgetReport
) -> None:
    import sqlalchemy as sa

    tasks = tables["label_tasks"]
    where = _sql_condition(tasks, match, ["item_id", "text", "payload"])
    ids = [row[0] for row in conn.execute(sa.select(tasks.c.id).where(where))]
    if not ids:
        return
    for child in ("label_annotations", "label_assignments"):
        if child in tables:
            removed = 0
            for chunk in _chunks(ids, 500):
                removed += _delete(
                    conn, tables[child], tables[child].c.task_id.in_(chunk), report.dry_run
                )
            _note(report, "metadata", child, removed)
    removed = 0
    for chunk in _chunks(ids, 500):
        removed += _delete(conn, tasks, tasks.c.id.in_(chunk), report.dry_run)
    _note(report, "metadata", "label_tasks (review queue)", removed)


def _delete(conn: Any, table: Any, where: Any, dry_run: bool) -> int:
    import sqlalchemy as sa

    if dry_run:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar()
        )
    return int(conn.execute(table.delete().where(where)).rowcount or 0)


def _note(report: ForgetReport, store: str, location: str, rows: int) -> None:
    if rows:
        report.removed.append({"store": store, "location": location, "rows": rows})


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _rewrite_json(path: Path, match: _Matcher, dry_run: bool) -> int | None:
    """Drop the subject's rows from a JSON table file (split orient or a list of records).

    Returns the rows removed, or None when the subject is in a JSON file of another shape.
    """
    try:
        value = orjson.loads(path.read_bytes())
    except (orjson.JSONDecodeError, OSError):
        return 0
    if not match.record(value):
        return 0
    kept: Any
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        rows = value["data"]
        kept = {**value, "data": [r for r in rows if not match.record(r)]}
        removed = len(rows) - len(kept["data"])
        if "index" in value and isinstance(value["index"], list):
            keep = [not match.record(r) for r in rows]
            kept["index"] = [i for i, k in zip(value["index"], keep, strict=False) if k]
    elif isinstance(value, list):
        kept = [r for r in value if not match.record(r)]
        removed = len(value) - len(kept)
    else:
        return None
    if match.record(kept):
        return None
    if removed and not dry_run:
        _atomic_write(path, lambda handle: handle.write(orjson.dumps(kept)))
    return removed


def _forget_artifacts(places: _Places, match: _Matcher, report: ForgetReport) -> list[str]:
    """Rewrite table artifacts that carry the subject, under the same id; return their ids."""
    root = _local_path(places.artifact_root)
    if root is None:
        report.skipped.append(
            {"store": "artifacts", "why": f"{places.artifact_root} is remote: not rewritten"}
        )
        return []
    rewritten: list[str] = []
    rows_left: dict[str, int] = {}
    for meta_path in sorted(root.glob("*/*/meta.json")):
        folder = meta_path.parent
        removed_here = 0
        left = None
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != meta_path):
            if path.suffix == ".parquet":
                removed, left = _rewrite_parquet(path, match, report.dry_run)
                removed_here += removed
            elif path.suffix == ".json":
                removed_json = _rewrite_json(path, match, report.dry_run)
                if removed_json is None:
                    continue  # reported by the final search
                removed_here += removed_json
        if not removed_here:
            continue
        rewritten.append(folder.name)
        if left is not None:
            rows_left[folder.name] = left
        report.rewritten_artifacts.append({"artifact": folder.name, "rows_removed": removed_here})
        report.removed.append(
            {"store": "artifacts", "location": f"artifact {folder.name}", "rows": removed_here}
        )
        if not report.dry_run:
            _record_erasure(meta_path, removed_here)
    if rewritten and not report.dry_run:
        _update_artifact_rows(places, rewritten, rows_left, root)
    return rewritten


def _record_erasure(meta_path: Path, rows: int) -> None:
    meta = orjson.loads(meta_path.read_bytes())
    erasures = list(meta.get("erasures", []))
    erasures.append(
        {"at": datetime.now(UTC).isoformat(), "rows_removed": rows, "by": "loopline pii forget"}
    )
    meta["erasures"] = erasures
    _atomic_write(meta_path, lambda handle: handle.write(orjson.dumps(meta)))


def _update_artifact_rows(
    places: _Places, digests: Sequence[str], rows_left: Mapping[str, int], root: Path
) -> None:
    """Keep the metadata's sizes and dataset row counts true to the rewritten artifacts."""
    import sqlalchemy as sa

    from loopline.core import schema

    if not _exists(places.metadata_url):
        return
    engine = _engine(places.metadata_url)
    try:
        with engine.begin() as conn:
            for digest in digests:
                folder = root / digest[:2] / digest
                size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                conn.execute(
                    sa.update(schema.artifacts)
                    .where(schema.artifacts.c.hash == digest)
                    .values(size_bytes=size)
                )
                if digest in rows_left:
                    conn.execute(
                        sa.update(schema.dataset_versions)
                        .where(schema.dataset_versions.c.artifact_hash == digest)
                        .values(rows=rows_left[digest])
                    )
    except sa.exc.SQLAlchemyError:
        pass  # an older schema: the artifacts' meta.json still records the erasure
    finally:
        engine.dispose()


def _models_trained_on(places: _Places, digests: Sequence[str]) -> list[dict[str, str]]:
    import sqlalchemy as sa

    from loopline.core import schema

    if not _exists(places.metadata_url):
        return []
    engine = _engine(places.metadata_url)
    found: list[dict[str, str]] = []
    try:
        with engine.connect() as conn:
            table = schema.model_versions
            rows = conn.execute(
                sa.select(
                    table.c.model_name, table.c.version, table.c.dataset_hash, table.c.datasets
                )
            ).all()
    except sa.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()
    wanted = set(digests)
    for name, version, dataset_hash, datasets in rows:
        if dataset_hash in wanted or any(d in (datasets or "") for d in wanted):
            found.append({"model": name, "version": str(version)})
    return found


def _forget_mlflow_files(places: _Places, match: _Matcher, report: ForgetReport) -> None:
    folder = places.mlflow_artifacts
    if folder is None or not folder.is_dir():
        return
    for path in _files(folder):
        if path.suffix == ".json":
            removed = _rewrite_json(path, match, report.dry_run)
        elif path.suffix == ".parquet":
            removed = _rewrite_parquet(path, match, report.dry_run)[0]
        else:
            continue
        if removed:
            report.removed.append(
                {"store": "mlflow", "location": _relative(path, folder.parent), "rows": removed}
            )


def _forget_streams(places: _Places, match: _Matcher, report: ForgetReport) -> None:
    if not places.redis_url:
        return
    try:
        client = _redis(places.redis_url)
        for key in _stream_keys(client, places.stream_prefix):
            doomed = [
                entry_id
                for entry_id, fields in _stream_entries(client, key)
                if any(match.text(v) or _json_carries(match, v) for v in fields.values())
            ]
            if doomed and not report.dry_run:
                for chunk in _chunks(doomed, 500):
                    client.xdel(key, *chunk)
            _note(report, "streams", key.decode("utf-8", "replace"), len(doomed))
    except Exception as exc:
        report.skipped.append({"store": "streams", "why": f"failed: {type(exc).__name__}"})


def _json_carries(match: _Matcher, raw: bytes) -> bool:
    parsed = _text_json(raw.decode("utf-8", "replace"))
    return parsed is not None and match.record(parsed)
