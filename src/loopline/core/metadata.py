"""Metadata store: runs, step runs, artifacts, lineage edges, dataset versions, alias history.

SQLAlchemy Core over SQLite (default, a file in ``.loopline/``) or PostgreSQL. The schema
is versioned with Alembic and upgraded automatically when a store is opened. Each step's
outcome is written in one transaction, so a crash leaves either the whole record or none.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from loopline.core import schema
from loopline.core.artifacts import StoredArtifact
from loopline.errors import ConfigError, LooplineError

# Key of the PostgreSQL advisory lock held while the schema is created or upgraded.
_SCHEMA_LOCK = 0x100971E  # "loopline"
# Key of the PostgreSQL advisory lock that serialises step records (see _lock_records).
_RECORD_LOCK = 0x100971F
# The newest migration; the store upgrades any older database to it on open.
SCHEMA_HEAD = "0007_step_placement"
_MIGRATIONS = Path(__file__).with_name("migrations")


def now() -> datetime:
    """Timezone-aware UTC timestamp (stored as such in every table)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A short random id for runs and step runs."""
    return uuid.uuid4().hex[:16]


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def run_id_for(given: str) -> str:
    """A run id for an id chosen outside Loopline (an orchestrator's run id, a user's name).

    An id of up to 32 letters, digits, ``_``, ``.`` and ``-`` is kept as it is; any other
    (Airflow's ``manual__2026-11-30T13:20:48+00:00``) becomes its first characters, made
    safe, plus a hash of the whole: the same given id always names the same run, and
    two ids that differ only after the prefix stay apart.
    """
    if not given.strip():
        raise LooplineError("the run id is empty", hint="pass --run-id with a non-empty value")
    if _RUN_ID.fullmatch(given):
        return given
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", given)[:19].strip("-._")
    digest = hashlib.sha256(given.encode()).hexdigest()[:12]
    return f"{prefix}-{digest}" if prefix else digest


def _new_run(
    run_id: str,
    pipeline: str,
    params: dict[str, Any],
    commit: str | None,
    dirty: str | None,
    executor: str,
) -> dict[str, Any]:
    """The columns of a run starting now (``start_run`` and ``join_run``)."""
    return {
        "id": run_id,
        "pipeline": pipeline,
        "status": "running",
        "params": _dumps(params),
        "code_commit": commit,
        "code_dirty_hash": dirty,
        "executor": executor,
        "started_at": now(),
    }


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()


class StoreMissing(LooplineError):
    """``MetadataStore(url, create=False)`` found no metadata store at ``url``.

    ``where`` is the URL (password hidden) and ``why`` what was found there instead.
    """

    def __init__(self, where: str, why: str) -> None:
        super().__init__(
            f"no Loopline project here: no metadata store at {where} ({why})",
            hint="run a pipeline first (`loopline run`), or create a project with "
            "`loopline init DIR`",
        )
        self.where = where
        self.why = why


class MetadataStore:
    """All of Loopline's bookkeeping behind one small API.

    ``create=False`` opens only a store that exists (for commands that only read): a
    missing SQLite file, or a database without Loopline's schema, raises
    :class:`StoreMissing` and nothing is created. An existing older schema is still
    upgraded.
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.create = create
        self._is_sqlite = url.startswith("sqlite")
        # SQLite allows one writer: serialise our own writers instead of retrying on locks.
        self._write_lock = threading.Lock()
        self._alias_lock = threading.Lock()  # see alias_lock
        if not create:
            self._check_sqlite_file()
        self.engine = self._connect(url)
        try:
            self._migrate()
        except StoreMissing:
            self.engine.dispose()
            raise

    # -- set-up ----------------------------------------------------------------
    def _connect(self, url: str) -> sa.Engine:
        if self._is_sqlite:
            path = url.split("///", 1)[-1]
            if self.create and path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

            return engine
        from loopline.core.dburl import sqlalchemy_url

        try:
            return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"the driver for {url.split(':', 1)[0]} is not installed ({exc.name})",
                hint="pip install 'loopline[postgres]'",
            ) from None

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_HEAD; cheap when it is already there."""
        try:
            with self.engine.connect() as conn:
                current = self._current_revision(conn)
        except sa.exc.OperationalError as exc:
            raise ConfigError(
                f"cannot open the metadata store at {self._safe_url()}: {exc.orig}",
                hint="check metadata_url in loopline.yaml or LOOPLINE_METADATA_URL",
            ) from None
        if current == SCHEMA_HEAD:
            return
        if current is None and not self.create:
            raise self._missing("it holds no Loopline schema")
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        # Two processes opening a new project at once (two `loopline run`s) must not both
        # create the tables: the schema is created or upgraded under a lock that spans
        # processes, and looked at again once the lock is held.
        with self._write_lock, self._schema_lock(), self.engine.begin() as conn:
            if not self._is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            if self._current_revision(conn) == SCHEMA_HEAD:
                return
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """An inter-process lock for schema changes: a lock file beside a SQLite store
        (PostgreSQL stores take an advisory lock inside the migration's transaction)."""
        path = self.url.split("///", 1)[-1] if self._is_sqlite and "///" in self.url else ""
        if not path or path == ":memory:":
            yield
            return
        from filelock import FileLock

        with FileLock(f"{path}.lock", timeout=120):
            yield

    def _check_sqlite_file(self) -> None:
        """For ``create=False``: a SQLite store must already be a file (SQLite would
        create an empty one on connect)."""
        if not self._is_sqlite:
            return
        path = self.url.split("///", 1)[-1] if "///" in self.url else ""
        if not path or path == ":memory:":
            raise self._missing("an in-memory database holds nothing yet")
        if not Path(path).is_file():
            raise self._missing("the file does not exist")

    def _missing(self, why: str) -> StoreMissing:
        return StoreMissing(self._safe_url(), why)

    @staticmethod
    def _current_revision(conn: sa.Connection) -> str | None:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _lock_records(self, conn: sa.Connection) -> None:
        """Serialise, across processes, the transactions that look a row up before adding
        it (artifacts by hash, dataset versions numbered max + 1, model versions).

        Without it two users' runs on one PostgreSQL store both read "not there yet" and
        one fails on a unique constraint: the same artifact recorded twice, or two new
        dataset versions given the same number. The lock is the transaction's and ends
        with it. A SQLite store has one writer at a time already.
        """
        if not self._is_sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _RECORD_LOCK})

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # -- runs ------------------------------------------------------------------
    def start_run(
        self,
        pipeline: str,
        params: dict[str, Any],
        commit: str | None,
        dirty: str | None,
        executor: str,
    ) -> str:
        """Record a new run as ``running`` and return its id."""
        run_id = new_id()
        with self._tx() as conn:
            conn.execute(
                schema.runs.insert().values(
                    **_new_run(run_id, pipeline, params, commit, dirty, executor),
                    pid=os.getpid(),
                    host=socket.gethostname(),
                )
            )
        return run_id

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Close a run with its final status."""
        with self._tx() as conn:
            started = conn.execute(
                sa.select(schema.runs.c.started_at).where(schema.runs.c.id == run_id)
            ).scalar_one()
            ended = now()
            conn.execute(
                schema.runs.update()
                .where(schema.runs.c.id == run_id)
                .values(
                    status=status,
                    ended_at=ended,
                    error=error,
                    duration_s=(ended - _aware(started)).total_seconds(),
                )
            )

    def join_run(
        self,
        run_id: str,
        pipeline: str,
        params: dict[str, Any],
        commit: str | None,
        dirty: str | None,
        executor: str,
    ) -> None:
        """Mark run ``run_id`` as ``running``, creating it if no step of it has come yet.

        For runs whose steps arrive one by one from an orchestrator, each in its own
        process: the run has no process of its own (no pid, so it never shows as killed
        between steps). A run id already used by another pipeline or other parameters is
        an error.
        """
        try:
            with self._tx() as conn:
                conn.execute(
                    schema.runs.insert().values(
                        **_new_run(run_id, pipeline, params, commit, dirty, executor),
                    )
                )
            return
        except sa.exc.IntegrityError:
            pass  # the run exists: another of its steps came first
        runs = schema.runs
        with self._tx() as conn:
            found = conn.execute(
                sa.select(runs.c.pipeline, runs.c.params).where(runs.c.id == run_id)
            ).one()
            if found.pipeline != pipeline or found.params != _dumps(params):
                raise LooplineError(
                    f"run {run_id!r} belongs to pipeline '{found.pipeline}' with parameters "
                    f"{found.params}, not to '{pipeline}' with {_dumps(params)}",
                    hint="give every step of one run the same pipeline and parameters, "
                    "or use a new run id",
                )
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(status="running", ended_at=None, error=None)
            )

    def step_outputs(self, run_id: str) -> dict[str, dict[str, str]]:
        """The outputs of each step that completed (or was a cache hit) in a run, by step;
        a step recorded more than once in the run counts with its latest record."""
        sr, sa_ = schema.step_runs, schema.step_artifacts
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sr.c.id, sr.c.step)
                .where(sr.c.run_id == run_id, sr.c.status.in_(("completed", "cached")))
                .order_by(sr.c.started_at)
            ).all()
            latest = {row.step: row.id for row in rows}
            edges = conn.execute(
                sa.select(sa_.c.step_run_id, sa_.c.name, sa_.c.artifact_hash).where(
                    sa_.c.step_run_id.in_(list(latest.values())), sa_.c.direction == "output"
                )
            ).all()
        by_id = {step_run_id: step for step, step_run_id in latest.items()}
        found: dict[str, dict[str, str]] = {step: {} for step in latest}
        for edge in edges:
            found[by_id[edge.step_run_id]][edge.name] = edge.artifact_hash
        return found

    def list_runs(self, limit: int = 20, pipeline: str | None = None) -> list[dict[str, Any]]:
        """Newest runs first, with step counts; runs whose process died show as ``killed``."""
        query = sa.select(schema.runs).order_by(schema.runs.c.started_at.desc()).limit(limit)
        if pipeline:
            query = query.where(schema.runs.c.pipeline == pipeline)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            counts = self._step_counts(conn, [r["id"] for r in rows])
        for row in rows:
            row["status"] = _effective_status(row)
            row["steps"] = counts.get(row["id"], {})
        return rows

    def _step_counts(self, conn: sa.Connection, run_ids: list[str]) -> dict[str, dict[str, int]]:
        if not run_ids:
            return {}
        sr = schema.step_runs
        query = (
            sa.select(sr.c.run_id, sr.c.status, sa.func.count())
            .where(sr.c.run_id.in_(run_ids))
            .group_by(sr.c.run_id, sr.c.status)
        )
        counts: dict[str, dict[str, int]] = {}
        for run_id, status, count in conn.execute(query):
            counts.setdefault(run_id, {})[status] = count
        return counts

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run with its step runs and their inputs/outputs; accepts an id prefix."""
        if not run_id.strip():
            raise LooplineError(
                "no run id given",
                hint="pass a run id or its first characters (`loopline runs list`)",
            )
        with self.engine.connect() as conn:
            matches = conn.execute(
                sa.select(schema.runs)
                .where(schema.runs.c.id.startswith(run_id, autoescape=True))
                .limit(2)
            ).all()
            if not matches:
                raise LooplineError(
                    f"no run with id {run_id!r}", hint="see `loopline runs list` for run ids"
                )
            if len(matches) > 1:
                raise LooplineError(
                    f"several runs have ids starting with {run_id!r}",
                    hint="give more characters of the id (`loopline runs list` shows them)",
                )
            run = dict(matches[0]._mapping)
            run["status"] = _effective_status(run)
            steps = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(schema.step_runs)
                    .where(schema.step_runs.c.run_id == run["id"])
                    .order_by(schema.step_runs.c.started_at)
                )
            ]
            edges = conn.execute(
                sa.select(schema.step_artifacts).where(
                    schema.step_artifacts.c.step_run_id.in_([s["id"] for s in steps])
                )
            ).all()
        for step_row in steps:
            step_row["inputs"] = {}
            step_row["retries"] = orjson.loads(step_row["retries"]) if step_row["retries"] else []
            step_row["outputs"] = {}
        by_id = {s["id"]: s for s in steps}
        for edge in edges:
            kind = "inputs" if edge.direction == "input" else "outputs"
            by_id[edge.step_run_id][kind][edge.name] = edge.artifact_hash
        run["steps"] = steps
        return run

    # -- steps -----------------------------------------------------------------
    def find_cached(self, cache_key: str) -> tuple[str, dict[str, str]] | None:
        """The newest completed step run with this key and its outputs, if any."""
        sr = schema.step_runs
        with self.engine.connect() as conn:
            hit = conn.execute(
                sa.select(sr.c.id)
                .where(sr.c.cache_key == cache_key, sr.c.status == "completed")
                .order_by(sr.c.started_at.desc())
                .limit(1)
            ).scalar()
            if hit is None:
                return None
            outputs = conn.execute(
                sa.select(
                    schema.step_artifacts.c.name, schema.step_artifacts.c.artifact_hash
                ).where(
                    schema.step_artifacts.c.step_run_id == hit,
                    schema.step_artifacts.c.direction == "output",
                )
            ).all()
        return hit, {name: digest for name, digest in outputs}

    def record_step(
        self,
        *,
        run_id: str,
        step: str,
        cache_key: str,
        code_hash: str,
        params: dict[str, Any],
        status: str,
        started_at: datetime,
        inputs: dict[str, str],
        outputs: dict[str, StoredArtifact | str],
        cached_from: str | None = None,
        error: str | None = None,
        dataset: tuple[str, str, int | None, str] | None = None,
        model_versions: list[dict[str, Any]] | None = None,
        node_id: str | None = None,
        worker: str | None = None,
        attempts: int | None = None,
        retries: list[str] | None = None,
    ) -> int | None:
        """Write a finished step run, its artifacts and edges in ONE transaction.

        ``outputs`` maps names to newly stored artifacts or to hashes already recorded.
        ``dataset`` = (name, artifact hash, rows, source) also records a dataset version;
        the return value is that version number. ``model_versions`` are the lineage rows of
        model versions the step registered (see :meth:`_insert_model_version`).
        ``node_id``, ``worker``, ``attempts`` and ``retries`` say where a step ran outside
        the run's process and why earlier attempts were lost (see core.ray_executor).
        """
        ended = now()
        step_run_id = new_id()
        version = None
        with self._tx() as conn:
            self._lock_records(conn)
            conn.execute(
                schema.step_runs.insert().values(
                    id=step_run_id,
                    run_id=run_id,
                    step=step,
                    cache_key=cache_key,
                    code_hash=code_hash,
                    params=_dumps(params),
                    status=status,
                    cached_from=cached_from,
                    started_at=started_at,
                    ended_at=ended,
                    duration_s=(ended - started_at).total_seconds(),
                    error=error,
                    node_id=node_id,
                    worker=worker,
                    attempts=attempts,
                    retries=None if retries is None else _dumps(retries),
                )
            )
            edges: list[dict[str, Any]] = []
            for name, digest in inputs.items():
                edges.append(dict(direction="input", name=name, artifact_hash=digest))
            for name, out in outputs.items():
                if isinstance(out, StoredArtifact):
                    self._insert_artifact(conn, out)
                    digest = out.hash
                else:
                    digest = out
                edges.append(dict(direction="output", name=name, artifact_hash=digest))
            if edges:
                conn.execute(
                    schema.step_artifacts.insert(),
                    [dict(step_run_id=step_run_id, **edge) for edge in edges],
                )
            if dataset is not None:
                version = self._insert_dataset_version(conn, run_id, *dataset)
            for row in model_versions or []:
                self._insert_model_version(conn, run_id=run_id, **row)
        return version

    def _insert_artifact(self, conn: sa.Connection, art: StoredArtifact) -> None:
        exists = conn.execute(
            sa.select(schema.artifacts.c.hash).where(schema.artifacts.c.hash == art.hash)
        ).scalar()
        if exists is None:
            conn.execute(
                schema.artifacts.insert().values(
                    hash=art.hash,
                    materializer=art.materializer,
                    type_name=art.type_name,
                    size_bytes=art.size_bytes,
                    uri=art.uri,
                    created_at=now(),
                )
            )

    # -- datasets ----------------------------------------------------------------
    def _insert_dataset_version(
        self,
        conn: sa.Connection,
        run_id: str,
        name: str,
        digest: str,
        rows: int | None,
        source: str,
    ) -> int:
        dv = schema.dataset_versions
        existing = conn.execute(
            sa.select(dv.c.version).where(dv.c.name == name, dv.c.artifact_hash == digest)
        ).scalar()
        if existing is not None:
            return int(existing)
        latest = conn.execute(sa.select(sa.func.max(dv.c.version)).where(dv.c.name == name))
        version = int(latest.scalar() or 0) + 1
        conn.execute(
            dv.insert().values(
                name=name,
                version=version,
                artifact_hash=digest,
                rows=rows,
                source=source,
                run_id=run_id,
                created_at=now(),
            )
        )
        return version

    def dataset_version(self, name: str, digest: str) -> int | None:
        """The version number of the dataset ``name`` with this content, if recorded."""
        dv = schema.dataset_versions
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(dv.c.version).where(dv.c.name == name, dv.c.artifact_hash == digest)
            ).scalar()
        return None if found is None else int(found)

    def dataset_of(self, digest: str) -> tuple[str, int] | None:
        """The (name, version) recorded for an artifact, if it is a dataset version."""
        dv = schema.dataset_versions
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(dv.c.name, dv.c.version)
                .where(dv.c.artifact_hash == digest)
                .order_by(dv.c.id)
                .limit(1)
            ).first()
        return None if row is None else (str(row.name), int(row.version))

    def list_datasets(self, name: str | None = None) -> list[dict[str, Any]]:
        """Dataset versions, newest first."""
        dv = schema.dataset_versions
        query = sa.select(dv).order_by(dv.c.created_at.desc(), dv.c.version.desc())
        if name:
            query = query.where(dv.c.name == name)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- aliases (implements loopline.registry.AliasHistory) ----------------------
    def record_alias_event(
        self,
        *,
        model_name: str,
        alias: str,
        version: str | None,
        previous_version: str | None,
        reason: str,
        actor: str,
        run_id: str | None,
    ) -> None:
        """Append one alias move to the audit history."""
        with self._tx() as conn:
            conn.execute(
                schema.alias_events.insert().values(
                    model_name=model_name,
                    alias=alias,
                    version=version,
                    previous_version=previous_version,
                    reason=reason,
                    actor=actor,
                    run_id=run_id,
                    created_at=now(),
                )
            )

    @contextmanager
    def alias_lock(self, model_name: str) -> Iterator[None]:
        """Hold ``model_name``'s aliases for one read-and-move (promote, rollback), against
        other threads and processes using this store.

        A promotion reads where ``champion`` and ``previous`` are, moves both and records
        the moves. Two users promoting at once would otherwise both read the same champion:
        both record it as the one they replaced, and the history no longer chains. On
        PostgreSQL the lock is an advisory lock of a transaction held for the block (one per
        model name); on SQLite a lock file beside the database.
        """
        from loopline.core.hashing import sha256_bytes

        with self._alias_lock:
            if self._is_sqlite:
                path = self.url.split("///", 1)[-1] if "///" in self.url else ""
                if not path or path == ":memory:":
                    yield
                    return
                from filelock import FileLock

                with FileLock(f"{path}.aliases.lock", timeout=300):
                    yield
                return
            # A signed 64-bit key from the name (15 hex digits: always in range).
            key = int(sha256_bytes(b"loopline.aliases", model_name.encode())[:15], 16)
            with self.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                yield

    def alias_history(self, model_name: str) -> list[dict[str, Any]]:
        """Every alias move of a model, oldest first."""
        ae = schema.alias_events
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ae).where(ae.c.model_name == model_name).order_by(ae.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def current_alias(self, model_name: str, alias: str) -> str | None:
        """The version an alias points at according to the history (no MLflow call)."""
        ae = schema.alias_events
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(ae.c.version)
                .where(ae.c.model_name == model_name, ae.c.alias == alias)
                .order_by(ae.c.id.desc())
                .limit(1)
            ).scalar()

    # -- model versions ----------------------------------------------------------
    def _insert_model_version(
        self,
        conn: sa.Connection,
        *,
        model_name: str,
        version: str,
        model_hash: str,
        run_id: str | None,
        dataset_hash: str | None = None,
        dataset_version: str | None = None,
        mlflow_run_id: str | None = None,
        profile_hash: str | None = None,
        datasets: list[str] | None = None,
        recipe: str | None = None,
    ) -> None:
        """Link a registered model version to the artifact, data, reference profile and
        recipe it came from (the first record of a version wins)."""
        mv = schema.model_versions
        known = conn.execute(
            sa.select(mv.c.version).where(mv.c.model_name == model_name, mv.c.version == version)
        ).scalar()
        if known is not None:
            return
        conn.execute(
            mv.insert().values(
                model_name=model_name,
                version=version,
                model_hash=model_hash,
                dataset_hash=dataset_hash,
                dataset_version=dataset_version,
                mlflow_run_id=mlflow_run_id,
                run_id=run_id,
                profile_hash=profile_hash,
                datasets=None if datasets is None else _dumps(datasets),
                recipe=recipe,
                created_at=now(),
            )
        )

    def record_model_version(self, **row: Any) -> None:
        """Record a model version's lineage outside a pipeline run (tests, imports)."""
        with self._tx() as conn:
            self._lock_records(conn)
            self._insert_model_version(conn, **row)

    def version_by_recipe(self, model_name: str, recipe: str) -> str | None:
        """The first version of ``model_name`` trained from this recipe (see producer_key)."""
        mv = schema.model_versions
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(mv.c.version).where(mv.c.model_name == model_name, mv.c.recipe == recipe)
            ).scalars()
            versions = [str(v) for v in rows]
        return min(versions, key=int) if versions else None

    def model_version(self, model_name: str, version: str) -> dict[str, Any] | None:
        """Lineage of one model version (None if Loopline did not register it)."""
        mv = schema.model_versions
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(mv).where(mv.c.model_name == model_name, mv.c.version == version)
            ).first()
        if row is None:
            return None
        found = dict(row._mapping)
        found["datasets"] = orjson.loads(found["datasets"]) if found["datasets"] else []
        return found

    def producer_key(self, digest: str) -> str | None:
        """The cache key of the first completed step run that produced artifact ``digest``."""
        sr, sa_ = schema.step_runs, schema.step_artifacts
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sr.c.cache_key)
                .join(sa_, sa_.c.step_run_id == sr.c.id)
                .where(
                    sa_.c.artifact_hash == digest,
                    sa_.c.direction == "output",
                    sr.c.status == "completed",
                )
                .order_by(sr.c.started_at)
                .limit(1)
            ).scalar()

    def upstream_datasets(self, digest: str) -> list[dict[str, Any]]:
        """Every dataset version among ``digest`` and the artifacts it was computed from.

        Each entry: ``name``, ``version``, ``label`` (``name:vN``), ``hash`` and ``rows``;
        sorted by name and version.
        """
        hashes = {digest}
        for step in self._producers(digest):
            hashes.update(step["inputs"].values())
        dv = schema.dataset_versions
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(dv.c.name, dv.c.version, dv.c.artifact_hash, dv.c.rows).where(
                    dv.c.artifact_hash.in_(sorted(hashes))
                )
            ).all()
        found = [
            {
                "name": str(r.name),
                "version": int(r.version),
                "label": f"{r.name}:v{r.version}",
                "hash": str(r.artifact_hash),
                "rows": r.rows,
            }
            for r in rows
        ]
        return sorted(found, key=lambda d: (d["name"], d["version"]))

    # -- alerts --------------------------------------------------------------------
    def record_alert(
        self,
        *,
        model_name: str,
        model_version: str | None,
        rule: str,
        metric: str,
        value: float | None,
        threshold: float | None,
        window_start: datetime | None,
        window_end: datetime | None,
        action: str,
        status: str,
        details: dict[str, Any],
    ) -> int:
        """Append one alert (and what was done about it) to the audit trail."""
        with self._tx() as conn:
            result = conn.execute(
                schema.alert_events.insert().values(
                    model_name=model_name,
                    model_version=model_version,
                    rule=rule,
                    metric=metric,
                    value=value,
                    threshold=threshold,
                    window_start=window_start,
                    window_end=window_end,
                    action=action,
                    status=status,
                    details=_dumps(details),
                    created_at=now(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def alerts(self, model_name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recent alerts, newest first."""
        ae = schema.alert_events
        query = sa.select(ae).order_by(ae.c.id.desc()).limit(limit)
        if model_name:
            query = query.where(ae.c.model_name == model_name)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["details"] = orjson.loads(row["details"]) if row["details"] else {}
        return rows

    def last_alert(self, model_name: str, rule: str) -> datetime | None:
        """When ``rule`` last fired for the model (None if never)."""
        ae = schema.alert_events
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(ae.c.created_at)).where(
                    ae.c.model_name == model_name, ae.c.rule == rule
                )
            ).scalar()

    # -- dashboard queries (loopline ui): filtered and paged in SQL ----------------------
    def page_runs(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of runs, newest first, with step counts, and how many runs match in all.

        ``status`` filters on the recorded status (a killed run was recorded as
        ``running``); ``since <= started_at < until`` (UTC). The index on ``started_at``
        keeps a page fast however many runs there are.
        """
        runs = schema.runs
        where: list[Any] = []
        if pipeline:
            where.append(runs.c.pipeline == pipeline)
        if status:
            where.append(runs.c.status == status)
        if since is not None:
            where.append(runs.c.started_at >= since)
        if until is not None:
            where.append(runs.c.started_at < until)
        query = (
            sa.select(runs)
            .where(*where)
            .order_by(runs.c.started_at.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(runs).where(*where)
            ).scalar_one()
            rows = [dict(r._mapping) for r in conn.execute(query)]
            counts = self._step_counts(conn, [r["id"] for r in rows])
        for row in rows:
            row["status"] = _effective_status(row)
            row["steps"] = counts.get(row["id"], {})
        return rows, int(total)

    def run_pipelines(self) -> list[str]:
        """The names of the pipelines that have runs, sorted."""
        runs = schema.runs
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(runs.c.pipeline).distinct().order_by(runs.c.pipeline))
            return [str(name) for name in found.scalars()]

    def artifacts_info(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """The recorded rows (materializer, type, size, uri) of these artifacts, by hash."""
        if not hashes:
            return {}
        art = schema.artifacts
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(art).where(art.c.hash.in_(sorted(set(hashes)))))
            return {r.hash: dict(r._mapping) for r in rows}

    def outputs_of_steps(self, run_ids: list[str], step_prefix: str) -> list[dict[str, Any]]:
        """The outputs of the steps named ``step_prefix...`` that completed (or were cache
        hits) in these runs, in one query: ``run_id``, ``step``, ``name``, ``hash`` and
        ``materializer`` each."""
        if not run_ids:
            return []
        sr, edges, art = schema.step_runs, schema.step_artifacts, schema.artifacts
        query = (
            sa.select(
                sr.c.run_id,
                sr.c.step,
                edges.c.name,
                edges.c.artifact_hash.label("hash"),
                art.c.materializer,
            )
            .join(edges, edges.c.step_run_id == sr.c.id)
            .join(art, art.c.hash == edges.c.artifact_hash)
            .where(
                sr.c.run_id.in_(sorted(set(run_ids))),
                sr.c.step.startswith(step_prefix, autoescape=True),
                sr.c.status.in_(("completed", "cached")),
                edges.c.direction == "output",
            )
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def model_names(self) -> list[str]:
        """The names of the models Loopline registered, sorted."""
        mv = schema.model_versions
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(mv.c.model_name).distinct().order_by(mv.c.model_name)
            ).scalars()
            return [str(name) for name in found]

    def page_model_versions(
        self,
        model_name: str | None = None,
        *,
        run_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Lineage rows of registered versions (of one model, or registered by one run),
        newest first, and how many match in all."""
        mv = schema.model_versions
        where: list[Any] = []
        if model_name is not None:
            where.append(mv.c.model_name == model_name)
        if run_id is not None:
            where.append(mv.c.run_id == run_id)
        query = (
            sa.select(mv).where(*where).order_by(mv.c.created_at.desc()).limit(limit).offset(offset)
        )
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(mv).where(*where)
            ).scalar_one()
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["datasets"] = orjson.loads(row["datasets"]) if row["datasets"] else []
        return rows, int(total)

    def lineage(self, model_name: str, version: str) -> dict[str, Any]:
        """Where a model version came from: its run, code version, steps and data.

        Follows the lineage edges backwards from the model artifact to the artifacts and
        dataset versions it was computed from.
        """
        found = self.model_version(model_name, version)
        if found is None:
            raise LooplineError(
                f"no lineage for {model_name} version {version}: it was not registered by a "
                "Loopline run",
                hint="see `loopline models list`",
            )
        run = self.get_run(found["run_id"]) if found["run_id"] else None
        producers = self._producers(found["model_hash"])
        datasets = {
            row["artifact_hash"]: f"{row['name']}:v{row['version']}" for row in self.list_datasets()
        }
        for step in producers:
            step["datasets"] = {
                name: datasets[h] for name, h in step["inputs"].items() if h in datasets
            }
        return {"model": found, "run": run, "steps": producers}

    def _producers(self, digest: str) -> list[dict[str, Any]]:
        """The step runs that produced ``digest`` and, transitively, their inputs."""
        sa_ = schema.step_artifacts
        sr = schema.step_runs
        seen: set[str] = set()
        frontier = [digest]
        chain: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            while frontier:
                current = frontier.pop()
                if current in seen:
                    continue
                seen.add(current)
                row = conn.execute(
                    sa.select(sr.c.id, sr.c.step, sr.c.run_id, sr.c.code_hash, sr.c.params)
                    .join(sa_, sa_.c.step_run_id == sr.c.id)
                    .where(
                        sa_.c.artifact_hash == current,
                        sa_.c.direction == "output",
                        sr.c.status == "completed",
                    )
                    .order_by(sr.c.started_at)
                    .limit(1)
                ).first()
                if row is None:
                    continue
                inputs = {
                    name: h
                    for name, h in conn.execute(
                        sa.select(sa_.c.name, sa_.c.artifact_hash).where(
                            sa_.c.step_run_id == row.id, sa_.c.direction == "input"
                        )
                    )
                }
                chain.append(
                    {
                        "step": row.step,
                        "run_id": row.run_id,
                        "code_hash": row.code_hash,
                        "params": orjson.loads(row.params),
                        "output": current,
                        "inputs": inputs,
                    }
                )
                frontier.extend(inputs.values())
        return chain


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _effective_status(run: dict[str, Any]) -> str:
    """A 'running' run whose process is gone on this host was killed."""
    if run["status"] != "running" or run.get("host") != socket.gethostname() or not run.get("pid"):
        return str(run["status"])
    try:
        os.kill(int(run["pid"]), 0)
    except ProcessLookupError:
        return "killed"
    except PermissionError:
        pass
    return "running"
