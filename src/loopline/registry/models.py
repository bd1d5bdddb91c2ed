"""A thin wrapper over MLflow's Model Registry: versions, aliases, promote, rollback.

Loopline keeps MLflow as the system of record for model versions (``mlflow models serve``,
the MLflow UI and other tools keep working on the same store) and adds what the loop needs
on top: version tags for lineage (dataset version, run id), the ``champion``/``previous``
alias convention with promote/rollback, an audit trail of alias moves (delegated to an
:class:`AliasHistory`, implemented by Loopline's metadata store) and errors that say what
exists when a name, alias or version does not.

Every MLflow call goes through one explicit :class:`~mlflow.tracking.MlflowClient` bound to
this registry's URI. The fluent API (``mlflow.start_run``, ``mlflow.sklearn.log_model``)
reads a process-wide tracking URI, which would race when pipeline steps register models from
several threads, so :meth:`ModelRegistry.register` saves the model with
``mlflow.sklearn.save_model`` and logs the folder as run artifacts instead: same files,
same MLmodel, no global state.

``mlflow`` (2-3 s to import) is imported inside the methods, never at module import.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from loopline.errors import DataError, LooplineError, ModelNotFound
from loopline.train.mlflow_io import (
    describe_saved_model,
    load_as_model,
    quiet_mlflow,
    save_model,
    signature_types,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"
PREVIOUS = "previous"
DEFAULT_EXPERIMENT = "loopline"
MODEL_ARTIFACT_PATH = "model"

TAG_DATASET_VERSION = "loopline.dataset_version"
# The MLflow run that logged the version. Not "loopline.run_id": pipelines use that tag for
# Loopline's own run id, and a caller's tags are never overwritten.
TAG_MLFLOW_RUN_ID = "loopline.mlflow_run_id"

# MLflow's limits (mlflow.utils.validation), repeated so this module imports without mlflow.
_MAX_KEY_LENGTH = 250
_MAX_PARAM_LENGTH = 6000
_MAX_TAG_LENGTH = 8000
_BATCH_PARAMS_TAGS = 100
_BATCH_METRICS = 1000
_INVALID_KEY_CHARS = re.compile(r"[^\w.\- /]")
_NOTHING_REGISTERED_HINT = "train and register a model first: `loopline run`"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version, as Loopline reports it."""

    name: str
    version: str
    run_id: str | None
    aliases: list[str]
    tags: dict[str, str]
    dataset_version: str | None
    created_at: datetime | None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The unambiguous reference ``name/version``."""
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (``created_at`` as an ISO-8601 string)."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "dataset_version": self.dataset_version,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True)
class LoadedModel:
    """A model version loaded into memory, ready to score DataFrames.

    ``model`` is a :class:`~loopline.train.model.Model` for versions loaded from the
    registry; ``input_types`` maps each input column to its MLflow type name (``string``,
    ``double``, ``long``, ``boolean``...) when the version has a signature.
    """

    info: ModelVersionInfo
    model: Any
    input_columns: list[str]
    classes: list[str]
    input_types: dict[str, str] = field(default_factory=dict)
    task: str = "classification"

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities (columns in the order of :attr:`classes`) for ``frame``.

        Only the model's input columns are passed on, so extra columns (ids, labels) are
        harmless; a missing input column raises :class:`~loopline.errors.DataError`.
        """
        if self.input_columns:
            missing = [c for c in self.input_columns if c not in frame.columns]
            if missing:
                raise DataError(
                    f"model {self.info.ref} needs input columns {self.input_columns}; "
                    f"missing {missing}, found {list(frame.columns)}",
                    hint=f"rename your columns to {self.input_columns}",
                )
            frame = frame[self.input_columns]
        return self.model.predict_proba(frame)


class AliasHistory(Protocol):
    """Audit trail of alias moves; implemented by Loopline's metadata store."""

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
        """Record that ``alias`` of ``model_name`` moved to ``version`` (None: removed)."""
        ...

    def alias_history(self, model_name: str) -> list[dict[str, Any]]:
        """Return the recorded alias events of ``model_name``."""
        ...

    # Optional: ``alias_lock(model_name)``, a context manager that holds the model's aliases
    # against other threads and processes (see ModelRegistry._aliases_held).


class ModelRegistry:
    """Register, look up, load, promote and roll back models in an MLflow registry.

    ``tracking_uri`` is used for both tracking and the registry, e.g.
    ``sqlite:////project/.loopline/mlflow.db``. ``artifact_location`` is where new
    experiments store artifacts; by default a ``mlartifacts`` folder next to a SQLite file
    (MLflow's own default would be ``./mlruns`` relative to whatever the working directory
    happens to be).

    ``create=False`` (commands that only read) never creates a SQLite store: MLflow would
    create the file on first contact. Without the file the registry reads as empty:
    :meth:`list_models` returns nothing, and looking a model up raises
    :class:`~loopline.errors.ModelNotFound`.
    """

    def __init__(
        self,
        tracking_uri: str,
        artifact_location: str | None = None,
        history: AliasHistory | None = None,
        *,
        create: bool = True,
    ) -> None:
        # Environment only (telemetry off, quieter logs): must precede any `import mlflow`.
        quiet_mlflow()
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location or _default_artifact_location(tracking_uri)
        self.history = history
        self.create = create
        self._client: MlflowClient | None = None
        self._client_lock = threading.Lock()

    # -- MLflow plumbing ------------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        """The MLflow client for this registry, created (and mlflow imported) on first use."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        if self._store_missing():
            raise ModelNotFound(
                f"no model is registered in this project yet ({self.tracking_uri} does not exist)",
                hint=_NOTHING_REGISTERED_HINT,
            )
        db_path = _sqlite_path(self.tracking_uri)
        if db_path is None:  # a server (or another store) creates and upgrades itself
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        if self.create:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        # MLflow creates (or upgrades) its SQLite schema when a store is first made; two
        # processes doing that at once fail ("table ... already exists"). Make the client
        # and touch both the tracking and the registry store here, one process at a time.
        try:
            with FileLock(f"{db_path}.lock", timeout=120):
                client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LooplineError(
                f"cannot open the MLflow store at {self.tracking_uri}: {first}",
                hint="check mlflow_tracking_uri in loopline.yaml (or LOOPLINE_MLFLOW_TRACKING_URI)"
                " and that no other program holds that file",
            ) from exc
        return client

    def _store_missing(self) -> bool:
        """True for ``create=False`` when the SQLite store does not exist (yet)."""
        if self.create:
            return False
        db_path = _sqlite_path(self.tracking_uri)
        return db_path is not None and not db_path.is_file()

    # -- register ---------------------------------------------------------------------

    def register(
        self,
        model: Any,
        *,
        name: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        dataset_version: str | None,
        input_example: pd.DataFrame,
        tags: dict[str, str] | None = None,
        experiment: str | None = None,
        saved_model: Path | None = None,
    ) -> ModelVersionInfo:
        """Log ``model`` in a new MLflow run and register it as a new version of ``name``.

        ``saved_model`` is an MLflow model folder already holding ``model`` (e.g. the
        pipeline's artifact): it is logged as it is, with the signature and input example
        added, instead of pickling the model a second time.

        The run gets ``params`` and ``metrics`` (nested dicts flattened with dots; values
        that are not numbers, e.g. confusion matrices, are skipped) and the tag
        ``loopline.dataset_version``. The version gets ``tags`` plus the dataset version and
        run id as tags. Returns the new version (no alias is moved: see :meth:`promote`).
        """
        _check_model_name(name)
        _check_input_example(input_example)
        client = self.client
        experiment_id = self._experiment_id(experiment or DEFAULT_EXPERIMENT)
        run_tags = dict(tags or {})
        if dataset_version is not None:
            run_tags[TAG_DATASET_VERSION] = dataset_version
        flat_metrics = flatten_metrics(metrics)
        run = client.create_run(experiment_id, tags=_clip_tags(run_tags))
        run_id = run.info.run_id
        try:
            self._log_run_data(run_id, params, flat_metrics)
            self._log_model_artifacts(run_id, model, input_example, saved_model)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        version = self._create_version(
            name,
            f"{run.info.artifact_uri}/{MODEL_ARTIFACT_PATH}",
            run_id,
            {TAG_MLFLOW_RUN_ID: run_id, **run_tags},
        )
        return _info(version, aliases=[], metrics=flat_metrics)

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        try:
            return str(self.client.create_experiment(name, self.artifact_location))
        except MlflowException as exc:  # another process created it between the two calls
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            again = self.client.get_experiment_by_name(name)
            assert again is not None
            return str(again.experiment_id)

    def _log_run_data(self, run_id: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric, Param

        now = _now_ms()
        param_list = [Param(k, v) for k, v in flatten_params(params).items()]
        metric_list = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for chunk in _chunks(param_list, _BATCH_PARAMS_TAGS):
            self.client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metric_list, _BATCH_METRICS):
            self.client.log_batch(run_id, metrics=chunk)

    def _log_model_artifacts(
        self, run_id: str, model: Any, input_example: pd.DataFrame, saved_model: Path | None
    ) -> None:
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, model.predict(input_example))
        with tempfile.TemporaryDirectory(prefix="loopline-model-") as tmp:
            path = Path(tmp) / MODEL_ARTIFACT_PATH
            if saved_model is not None:
                shutil.copytree(saved_model, path)
                describe_saved_model(path, signature=signature, input_example=input_example)
            else:
                save_model(model, path, signature=signature, input_example=input_example)
            self.client.log_artifacts(run_id, str(path), MODEL_ARTIFACT_PATH)

    def _create_version(
        self, name: str, source: str, run_id: str, tags: dict[str, str]
    ) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return self.client.create_model_version(name, source, run_id, tags=_clip_tags(tags))

    # -- look-up ----------------------------------------------------------------------

    def resolve(self, ref: str) -> ModelVersionInfo:
        """Resolve ``name@alias``, ``name/version`` or ``name`` (= ``name@champion``)."""
        name, alias, version = parse_ref(ref)
        if self._store_missing():
            self._registered_aliases(name)  # raises ModelNotFound: nothing is registered
        if alias is not None:
            found = self._version_by_alias(name, alias)
        else:
            assert version is not None
            found = self._version_by_number(name, version)
        return _info(found, aliases=_aliases_of(found), metrics=self._run_metrics(found.run_id))

    def load(self, ref: str) -> LoadedModel:
        """Resolve ``ref`` and load that version's model (any flavour) into memory."""
        import mlflow.artifacts

        info = self.resolve(ref)
        uri = self.client.get_model_version_download_uri(info.name, info.version)
        # A local file:// artifact comes back as its own path (no copy); remote stores
        # are downloaded once and both the model and its MLmodel are read from there.
        # The registry's own URI, not the process-wide one: a tracking server's proxied
        # ``mlflow-artifacts:/`` URIs are resolved through the server that issued them.
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=self.tracking_uri)
        )
        model = load_as_model(local)
        return LoadedModel(
            info=info,
            model=model,
            input_columns=list(model.features),
            classes=list(model.classes or []),
            input_types=signature_types(local),
            task=model.task,
        )

    def find_version(self, name: str, tag: str, value: str) -> ModelVersionInfo | None:
        """Return the newest version of ``name`` whose tag ``tag`` equals ``value``, or None.

        Typical use: skip registering a model whose content hash is already registered.
        An unknown model name gives None (nothing registered yet), not an error.
        """
        if self._store_missing():
            return None
        quoted_name, quoted_value = _sql_quote(name), _sql_quote(value)
        if quoted_name and quoted_value and "`" not in tag:
            candidates = self._search_versions(
                f"name={quoted_name} and tags.`{tag}` = {quoted_value}"
            )
        else:  # quotes MLflow's filter syntax cannot express: filter here instead
            candidates = self._versions_of(name)
        matches = [v for v in candidates if v.tags.get(tag) == value]
        if not matches:
            return None
        newest = max(matches, key=lambda v: int(v.version))
        aliases = self._aliases_by_version(name).get(str(newest.version), [])
        return _info(newest, aliases=aliases, metrics=self._run_metrics(newest.run_id))

    def list_models(self) -> list[ModelVersionInfo]:
        """All versions of all registered models, newest first."""
        if self._store_missing():
            return []
        aliases: dict[tuple[str, str], list[str]] = {}
        for registered in self._paged(self.client.search_registered_models, max_results=1000):
            for alias, version in (registered.aliases or {}).items():
                aliases.setdefault((registered.name, str(version)), []).append(alias)
        versions = self._search_versions(None)
        metrics_by_run: dict[str, dict[str, float]] = {}
        infos = []
        for v in versions:
            if v.run_id and v.run_id not in metrics_by_run:
                metrics_by_run[v.run_id] = self._run_metrics(v.run_id)
            key = (v.name, str(v.version))
            infos.append(
                _info(v, sorted(aliases.get(key, [])), metrics_by_run.get(v.run_id or "", {}))
            )
        infos.sort(
            key=lambda i: (i.created_at or datetime.min.replace(tzinfo=UTC), int(i.version)),
            reverse=True,
        )
        return infos

    def _version_by_alias(self, name: str, alias: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            existing = self._registered_aliases(name)  # raises ModelNotFound for the name
            known = ", ".join(sorted(existing)) or "none yet"
            raise ModelNotFound(
                f"model {name!r} has no alias {alias!r} (aliases: {known})",
                hint=(
                    f"use an existing alias or a version ({name}/<version>), or promote one: "
                    f"`loopline models promote {name} VERSION`"
                ),
            ) from exc

    def _version_by_number(self, name: str, version: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            self._registered_aliases(name)  # raises ModelNotFound for the name
            numbers = sorted(int(v.version) for v in self._versions_of(name))
            raise ModelNotFound(
                f"model {name!r} has no version {version!r} (versions: "
                f"{', '.join(map(str, numbers)) or 'none'})",
                hint="see `loopline models list`",
            ) from exc

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of model ``name``.

        Raises :class:`~loopline.errors.ModelNotFound` (naming the registered models) when
        no model ``name`` is registered.
        """
        return self._registered_aliases(name)

    def _registered_aliases(self, name: str) -> dict[str, str]:
        """Return alias -> version of ``name``; ModelNotFound (listing names) if unknown."""
        from mlflow.exceptions import MlflowException

        if self._store_missing():
            raise ModelNotFound(
                f"no registered model named {name!r}: nothing is registered in this project yet",
                hint=_NOTHING_REGISTERED_HINT,
            )
        try:
            registered = self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            names = sorted(
                r.name for r in self._paged(self.client.search_registered_models, max_results=1000)
            )
            raise ModelNotFound(
                f"no registered model named {name!r}",
                hint=f"registered models: {', '.join(names)}"
                if names
                else _NOTHING_REGISTERED_HINT,
            ) from exc
        return {alias: str(v) for alias, v in (registered.aliases or {}).items()}

    def _aliases_by_version(self, name: str) -> dict[str, list[str]]:
        by_version: dict[str, list[str]] = {}
        for alias, version in self._registered_aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        return {v: sorted(a) for v, a in by_version.items()}

    def _versions_of(self, name: str) -> list[ModelVersion]:
        quoted = _sql_quote(name)
        if quoted is not None:
            return self._search_versions(f"name={quoted}")
        return [v for v in self._search_versions(None) if v.name == name]

    def _search_versions(self, filter_string: str | None) -> list[ModelVersion]:
        return list(
            self._paged(
                self.client.search_model_versions, filter_string=filter_string, max_results=10_000
            )
        )

    @staticmethod
    def _paged(search: Any, **kwargs: Any) -> Iterator[Any]:
        token = None
        while True:
            page = search(page_token=token, **kwargs)
            yield from page
            token = page.token
            if not token:
                return

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return {}
        try:
            return dict(self.client.get_run(run_id).data.metrics)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return {}  # run deleted: the version itself is still valid

    # -- aliases ----------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        reason: str,
        actor: str,
        run_id: str | None = None,
    ) -> None:
        """Point ``name@alias`` at ``version`` and record the move in the alias history."""
        with self._aliases_held(name):
            current = self._registered_aliases(name).get(alias)
            self._move_alias(name, alias, str(version), current, reason, actor, run_id)

    def promote(
        self,
        name: str,
        version: str,
        *,
        reason: str,
        actor: str,
        run_id: str | None = None,
    ) -> None:
        """Make ``version`` the champion; the old champion (if different) becomes ``previous``.

        Promoting the current champion again changes nothing and records nothing.
        """
        with self._aliases_held(name):
            self._promote(name, str(version), self._registered_aliases(name), reason, actor, run_id)

    def promote_if(
        self,
        name: str,
        version: str,
        champion: str | None,
        *,
        reason: str,
        actor: str,
        run_id: str | None = None,
    ) -> bool:
        """:meth:`promote` only while the champion is still ``champion`` (None: there is
        none); False, changing nothing, when another promotion came first.

        For a gate's decision: it beat ``champion``, not whichever version another user
        has promoted since.
        """
        with self._aliases_held(name):
            aliases = self._registered_aliases(name)
            if aliases.get(CHAMPION) != champion:
                return False
            self._promote(name, str(version), aliases, reason, actor, run_id)
        return True

    def _promote(
        self,
        name: str,
        version: str,
        aliases: dict[str, str],
        reason: str,
        actor: str,
        run_id: str | None,
    ) -> None:
        old = aliases.get(CHAMPION)
        if old == version:
            return
        self._version_by_number(name, version)  # fail before touching any alias
        if old is not None:
            # "previous" moves first: if we stop halfway the champion is still intact.
            self._move_alias(name, PREVIOUS, old, aliases.get(PREVIOUS), reason, actor, run_id)
        self._move_alias(name, CHAMPION, version, old, reason, actor, run_id)

    def rollback(self, name: str, *, reason: str, actor: str) -> ModelVersionInfo:
        """Swap ``champion`` and ``previous``; return the new champion.

        Raises :class:`~loopline.errors.LooplineError` when there is no ``previous``.
        """
        with self._aliases_held(name):
            aliases = self._registered_aliases(name)
            target = aliases.get(PREVIOUS)
            old = aliases.get(CHAMPION)
            if target is None:
                raise LooplineError(
                    f"cannot roll back {name!r}: it has no {PREVIOUS!r} version "
                    f"(champion: {old or 'none'})",
                    hint=f"choose a version explicitly: `loopline models promote {name} VERSION`",
                )
            # The champion moves first so that serving switches as early as possible.
            self._move_alias(name, CHAMPION, target, old, reason, actor, None)
            if old is not None and old != target:
                self._move_alias(name, PREVIOUS, old, target, reason, actor, None)
        return self.resolve(f"{name}@{CHAMPION}")

    @contextmanager
    def _aliases_held(self, name: str) -> Iterator[None]:
        """Read and move ``name``'s aliases as one step against other users of the same
        stores: a history that can lock (Loopline's metadata store: ``alias_lock``) holds
        the model for the block. Without it two promotions at once would both record the
        same old champion as the one they replaced."""
        lock = getattr(self.history, "alias_lock", None)
        if lock is None:
            yield
            return
        with lock(name):
            yield

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Recorded alias moves of ``name`` (empty when no history store is attached)."""
        return self.history.alias_history(name) if self.history is not None else []

    def _move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        previous_version: str | None,
        reason: str,
        actor: str,
        run_id: str | None,
    ) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_registered_model_alias(name, alias, version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                self._version_by_number(name, version)  # raises a ModelNotFound that lists them
            if exc.error_code == "INVALID_PARAMETER_VALUE":
                raise LooplineError(
                    f"cannot set alias {alias!r} on {name}/{version}: {exc.message}",
                    hint="aliases 'latest' and 'v<number>' are reserved by MLflow",
                ) from exc
            raise
        if self.history is not None:
            self.history.record_alias_event(
                model_name=name,
                alias=alias,
                version=version,
                previous_version=previous_version,
                reason=reason,
                actor=actor,
                run_id=run_id,
            )


# -- helpers ------------------------------------------------------------------------------


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """Split a model reference into ``(name, alias, version)``; exactly one of the last two is set.

    ``name@alias`` -> alias; ``name/3`` -> version ``"3"``; ``name`` -> alias ``champion``.
    """
    ref = ref.strip()
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, str(int(version))
    elif ref:
        return ref, CHAMPION, None
    raise LooplineError(
        f"cannot read the model reference {ref!r}",
        hint="write NAME (the champion), NAME@ALIAS or NAME/VERSION, e.g. sentiment@champion",
    )


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested metric dicts to ``{"a.b": 1.0}``; skip non-numbers and NaN/inf.

    Keys are made valid MLflow metric keys (other characters become ``_``).
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{full}."))
        elif _is_number(value):
            flat[_metric_key(full)] = float(value)
    return flat


def _is_number(value: Any) -> bool:
    # bool is an int subclass but "passed: True" is not a metric; NaN/inf break comparisons.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested parameter dicts to ``{"a.b": "value"}`` (strings, MLflow-sized)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{full}."))
        else:
            flat[_metric_key(full)] = str(value)[:_MAX_PARAM_LENGTH]
    return flat


def _metric_key(key: str) -> str:
    return _INVALID_KEY_CHARS.sub("_", key)[:_MAX_KEY_LENGTH]


def _clip_tags(tags: dict[str, str]) -> dict[str, str]:
    return {_metric_key(str(k)): str(v)[:_MAX_TAG_LENGTH] for k, v in tags.items()}


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sql_quote(value: str) -> str | None:
    """Quote ``value`` for an MLflow filter string; None if it holds both quote kinds."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def _aliases_of(version: ModelVersion) -> list[str]:
    return sorted(getattr(version, "aliases", None) or [])


def _info(version: ModelVersion, aliases: list[str], metrics: dict[str, float]) -> ModelVersionInfo:
    tags = {str(k): str(v) for k, v in (version.tags or {}).items()}
    created = version.creation_timestamp
    return ModelVersionInfo(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id or None,
        aliases=list(aliases),
        tags=tags,
        dataset_version=tags.get(TAG_DATASET_VERSION),
        created_at=datetime.fromtimestamp(created / 1000, tz=UTC) if created else None,
        metrics=dict(metrics),
    )


def _check_model_name(name: str) -> None:
    # MLflow rejects '/' and ':'; '@' would make "name@alias" references ambiguous.
    # Checked before the run is created, so a bad name leaves no half-registered run behind.
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/:@"):
        raise LooplineError(
            f"invalid model name {name!r}: it must be non-empty and contain no '/', ':' or '@'",
            hint="use letters, digits, '-', '_' and '.', e.g. 'sentiment'",
        )


def _check_input_example(input_example: Any) -> None:
    import pandas as pd

    if not isinstance(input_example, pd.DataFrame) or input_example.empty:
        found = type(input_example).__name__
        raise DataError(
            f"input_example must be a non-empty pandas DataFrame; got {found}",
            hint="pass a few training rows with only the input columns, e.g. df[['text']].head(5)",
        )


def _default_artifact_location(tracking_uri: str) -> str | None:
    db_path = _sqlite_path(tracking_uri)
    if db_path is None:
        return None  # a server or other store decides its own artifact root
    return (db_path.parent / "mlartifacts").as_uri()


def _sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    return Path(tracking_uri[len(prefix) :]).resolve()


def _now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)
