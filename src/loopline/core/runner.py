"""Executes a DAG: cache look-ups, parallel steps, atomic artifacts, one transaction per step.

A step's cache key is the hash of its code (the function, the helpers it references, every
project module it reaches, the versions of the libraries involved: see
:mod:`loopline.core.fingerprint`), its parameters (estimators and functions by their code
and settings, local files named by path parameters by content), the outside state the step
declares (``cache_extra``) and the hashes of its input artifacts. A hit reuses the recorded
outputs without loading them; anything downstream of a change re-runs, because its input
hashes change. A run that dies (even by SIGKILL) leaves completed steps recorded and
artifacts either whole or absent, so the next run resumes from there.

Lineage is recorded here, never by a step: a step that returns a
:class:`~loopline.core.lineage.ModelVersion` gets that version linked to its model
artifact, reference profile, recipe and upstream dataset versions in the step's own
transaction.
"""

from __future__ import annotations

import builtins
import concurrent.futures as cf
import importlib
import importlib.util
import multiprocessing
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from loopline.config import ExecutorName, Settings
from loopline.core.artifacts import ArtifactStore, StoredArtifact
from loopline.core.codeversion import code_version
from loopline.core.dag import ArtifactInfo, Dag, Node, Output
from loopline.core.fingerprint import code_fingerprint, value_fingerprint
from loopline.core.hashing import canonical_json, hash_tree, sha256_bytes
from loopline.core.lineage import ModelVersion
from loopline.core.metadata import MetadataStore, new_id, now, run_id_for
from loopline.core.ray_executor import Placement, RayExecutor
from loopline.errors import LooplineError, PipelineError, StepFailed

StepStatus = Literal["pending", "running", "completed", "cached", "failed", "skipped"]


@dataclass(frozen=True)
class RunEvent:
    """Progress of a run, for displays: a step started or finished."""

    run_id: str
    step: str
    status: StepStatus
    duration_s: float | None = None


@dataclass
class StepResult:
    """How one step of a run ended."""

    name: str
    status: StepStatus = "pending"
    duration_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    cached_from: str | None = None
    dataset_version: int | None = None
    error: str | None = None


class RunContext:
    """The project's stores, for the few steps whose job is a side effect (e.g. register).

    A step receives it by annotating a parameter ``RunContext``; ``cache_extra`` hooks get
    it too. It never enters a cache key. ``inputs`` maps the step's input parameters to
    their artifact hashes. It pickles without its open stores, so a step in a child
    process reopens them from the settings.
    """

    def __init__(
        self,
        settings: Settings,
        run_id: str,
        metadata: MetadataStore | None = None,
        artifacts: ArtifactStore | None = None,
        inputs: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self.inputs = dict(inputs or {})
        self._metadata = metadata
        self._artifacts = artifacts

    def input_hash(self, name: str) -> str:
        """The artifact hash of the step's input parameter ``name``."""
        try:
            return self.inputs[name]
        except KeyError:
            raise PipelineError(
                f"this step has no input {name!r} (inputs: {', '.join(self.inputs) or 'none'})",
                hint="pass the output of another step to that parameter",
            ) from None

    def upstream_datasets(self, name: str) -> list[dict[str, Any]]:
        """Every dataset version the input ``name`` was computed from (name, version, ...)."""
        return self.metadata.upstream_datasets(self.input_hash(name))

    def recipe_of(self, name: str) -> str | None:
        """The cache key of the step run that produced input ``name``: the same inputs,
        code and parameters give the same recipe even when the output bytes differ."""
        return self.metadata.producer_key(self.input_hash(name))

    @property
    def metadata(self) -> MetadataStore:
        if self._metadata is None:
            assert self.settings.metadata_url
            self._metadata = MetadataStore(self.settings.metadata_url)
        return self._metadata

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            assert self.settings.artifact_root
            self._artifacts = ArtifactStore(self.settings.artifact_root)
        return self._artifacts

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "run_id": self.run_id, "inputs": self.inputs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["settings"], state["run_id"], inputs=state.get("inputs")
        )


@dataclass
class RunResult:
    """The outcome of a run; :meth:`load` fetches any step's output."""

    run_id: str
    pipeline: str
    status: str
    steps: dict[str, StepResult]
    duration_s: float
    store: ArtifactStore
    objects: dict[str, Any] = field(default_factory=dict, repr=False)

    def output_hash(self, step: str, output: str | None = None) -> str:
        """The artifact hash of a step's output (the first one if not named)."""
        try:
            outputs = self.steps[step].outputs
        except KeyError:
            raise PipelineError(f"the run has no step {step!r}") from None
        if not outputs:
            raise PipelineError(f"step {step!r} produced no outputs in run {self.run_id}")
        return outputs[output] if output else next(iter(outputs.values()))

    def load(self, step: str, output: str | None = None) -> Any:
        """The object a step produced, from memory or from the artifact store."""
        digest = self.output_hash(step, output)
        if digest not in self.objects:
            self.objects[digest] = self.store.load(digest)
        return self.objects[digest]

    @property
    def cache_hits(self) -> int:
        return sum(1 for s in self.steps.values() if s.status == "cached")

    def model_versions(self) -> list[tuple[str, ModelVersion]]:
        """(step, version) for each model version the run's steps registered or reused.

        Outputs held in memory are checked by type; of the others, only those of steps whose
        name starts with ``register`` are loaded (a cached step's outputs are not in memory).
        """
        found: list[tuple[str, ModelVersion]] = []
        for name, step in self.steps.items():
            if step.status not in ("completed", "cached"):
                continue
            for digest in step.outputs.values():
                obj = self.objects.get(digest)
                if obj is None and name.startswith("register"):
                    obj = self.objects[digest] = self.store.load(digest)
                if isinstance(obj, ModelVersion):
                    found.append((name, obj))
        return found


class Runner:
    """Runs DAGs against one project's stores."""

    def __init__(
        self,
        settings: Settings,
        *,
        metadata: MetadataStore | None = None,
        artifacts: ArtifactStore | None = None,
        executor: ExecutorName | None = None,
        max_workers: int | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self._own_metadata = metadata is None
        assert settings.metadata_url and settings.artifact_root
        self.metadata = metadata or MetadataStore(settings.metadata_url)
        self.artifacts = artifacts or ArtifactStore(
            settings.artifact_root, cache_dir=settings.home_dir / "cache"
        )
        self.executor = executor or settings.executor
        self.max_workers = max_workers or settings.max_workers
        self.on_event = on_event
        self._ray: RayExecutor | None = None  # connected on the first run with executor ray
        self._file_hashes: dict[str, str] = {}
        self._static_keys: dict[str, tuple[str, str]] = {}  # node -> (code, code+params)
        self._shown_params: dict[str, dict[str, Any]] = {}  # node -> params as recorded

    def close(self) -> None:
        """Release the metadata store if this runner opened it."""
        if self._own_metadata:
            self.metadata.close()

    # -- public ----------------------------------------------------------------
    def run(self, dag: Dag, *, use_cache: bool = True) -> RunResult:
        """Execute ``dag``; raises :class:`StepFailed` (after recording) if a step fails."""
        started = time.perf_counter()
        # Every parameter is checked (and fingerprinted) before anything runs or is recorded.
        self._static_keys = {node.name: self._static_key(node) for node in dag.nodes}
        if self.executor == "ray" and self._ray is None:  # a cluster that is down: no run
            self._ray = RayExecutor(self.settings.ray_address)
        version = code_version(self.settings.project_root)
        run_id = self.metadata.start_run(
            dag.pipeline, dag.params, version.commit, version.dirty_hash, self.executor
        )
        result = RunResult(
            run_id,
            dag.pipeline,
            "running",
            {n.name: StepResult(n.name) for n in dag.nodes},
            0.0,
            self.artifacts,
        )
        try:
            failure = self._execute(dag, result, use_cache)
        except BaseException as interrupt:  # Ctrl-C or a bug in the runner itself
            self.metadata.finish_run(run_id, "interrupted", error=repr(interrupt))
            raise
        result.duration_s = time.perf_counter() - started
        if failure is not None:
            node_name, exc = failure
            result.status = "failed"
            self.metadata.finish_run(run_id, "failed", error=f"{node_name}: {exc}")
            raise StepFailed(node_name, exc, run_id) from exc
        result.status = "completed"
        self.metadata.finish_run(run_id, "completed")
        return result

    def run_step(
        self, dag: Dag, step: str, run_id: str | None = None, *, use_cache: bool = True
    ) -> RunResult:
        """Execute one step of ``dag`` as part of run ``run_id`` (a new run if None).

        For orchestrators that run each step as a task of their own (see
        :mod:`loopline.orchestrate.export`): the step's inputs are the outputs its upstream
        steps recorded in the same run, read from the artifact store; its cache key, cache
        hit and lineage are those of a full run. The first step to arrive creates the run;
        the one that completes the last step of the DAG closes it. ``run_id`` may be any
        string (see :func:`~loopline.core.metadata.run_id_for`).
        """
        node = dag.node(step)
        started = time.perf_counter()
        self._static_keys = {node.name: self._static_key(node)}
        run_id = run_id_for(run_id) if run_id is not None else new_id()
        recorded = self.metadata.step_outputs(run_id)
        missing = sorted(u.name for u in node.upstream if u.name not in recorded)
        if missing:
            raise PipelineError(
                f"step '{step}' needs the outputs of {', '.join(map(repr, missing))}, which "
                f"have not completed in run {run_id}",
                hint="run those steps first with the same --run-id",
            )
        version = code_version(self.settings.project_root)
        self.metadata.join_run(
            run_id, dag.pipeline, dag.params, version.commit, version.dirty_hash, "orchestrated"
        )
        steps = {
            u.name: StepResult(u.name, "completed", outputs=recorded[u.name]) for u in node.upstream
        }
        steps[step] = StepResult(step)
        result = RunResult(run_id, dag.pipeline, "running", steps, 0.0, self.artifacts)
        try:
            self._run_node(node, result, use_cache, None)
        except Exception as exc:
            self.metadata.finish_run(run_id, "failed", error=f"{step}: {exc}")
            raise StepFailed(step, exc, run_id) from exc
        except BaseException as interrupt:
            self.metadata.finish_run(run_id, "interrupted", error=repr(interrupt))
            raise
        finally:
            result.duration_s = time.perf_counter() - started
            result.steps = {step: result.steps[step]}  # the upstream steps ran elsewhere
        if {n.name for n in dag.nodes} <= set(self.metadata.step_outputs(run_id)):
            self.metadata.finish_run(run_id, "completed")
            result.status = "completed"
        return result

    # -- scheduling -------------------------------------------------------------
    def _execute(
        self, dag: Dag, result: RunResult, use_cache: bool
    ) -> tuple[str, BaseException] | None:
        pending = list(dag.nodes)
        done: set[str] = set()
        failure: tuple[str, BaseException] | None = None
        # On Ray every step is a task in a process of its own: no pool here.
        process_pool = None
        if self._ray is None and any(self._in_process(n) for n in dag.nodes):
            # spawn, not fork: this process holds threads and locks a fork would copy.
            process_pool = cf.ProcessPoolExecutor(
                self.max_workers, mp_context=multiprocessing.get_context("spawn")
            )
        with (
            _serial_imports(),
            cf.ThreadPoolExecutor(self._parallelism(), thread_name_prefix="loopline") as pool,
        ):
            running: dict[cf.Future[None], Node] = {}
            while pending or running:
                if failure is None:
                    for node in [n for n in pending if {u.name for u in n.upstream} <= done]:
                        pending.remove(node)
                        future = pool.submit(self._run_node, node, result, use_cache, process_pool)
                        running[future] = node
                if not running:
                    break  # a failure stopped scheduling; the rest are skipped
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    node = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        done.add(node.name)
                    elif failure is None:
                        failure = (node.name, exc)
                if process_pool is not None and not any(
                    self._in_process(n) for n in [*pending, *running.values()]
                ):
                    # Let the idle children exit while the other steps run: an
                    # interpreter holding scikit-learn takes ~0.5 s to shut down, which
                    # the run would otherwise wait for at its end.
                    process_pool.shutdown(wait=False)
                    process_pool = None
        if process_pool is not None:
            process_pool.shutdown()
        for node in pending:
            result.steps[node.name].status = "skipped"
        return failure

    def _in_process(self, node: Node) -> bool:
        """Whether ``node`` runs in a child process: the runner's executor unless the step
        names its own. A step asks for a process so that its GIL-bound work does not slow
        the steps beside it; with one worker nothing runs beside it, and the child would
        only cost its start, its imports and a round trip of its data through the store
        (the sentiment audit's child spent 1.5 s of CPU before its first line of work),
        so it runs in a thread."""
        if self.executor == "processes":
            return node.step.executor != "threads"
        return node.step.executor == "processes" and self.max_workers > 1

    def _parallelism(self) -> int:
        """How many steps run at once: on Ray, as many as the cluster has CPUs for (each
        thread here only waits for its task), and at least ``max_workers``."""
        if self._ray is not None:
            return max(self.max_workers, self._ray.parallelism)
        return self.max_workers

    # -- one node ---------------------------------------------------------------
    def _run_node(
        self,
        node: Node,
        result: RunResult,
        use_cache: bool,
        process_pool: cf.ProcessPoolExecutor | None,
    ) -> None:
        step_result = result.steps[node.name]
        started_at = now()
        clock = time.perf_counter()
        self._emit(result.run_id, node.name, "running")
        inputs = {arg: self._input_hash(out, result) for arg, out in node.inputs.items()}
        key = self._cache_key(node, inputs)
        if use_cache and node.step.cache and self._try_cache(node, key, inputs, result, started_at):
            step_result.duration_s = time.perf_counter() - clock
            self._emit(result.run_id, node.name, "cached", step_result.duration_s)
            return
        step_result.status = "running"
        placement: Placement | None = None
        try:
            if self._ray is not None:
                placement = Placement()
                stored = self._ray.run(
                    _run_in_process,
                    (
                        _StepRef.of(node.step.fn),
                        self._process_inputs(node, inputs, result),
                        node.params,
                        self.artifacts.root,
                        node.step.outputs,
                    ),
                    name=node.name,
                    resources=node.step.resources,
                    retries=node.step.retries,
                    placement=placement,
                )
            elif process_pool is not None and self._in_process(node):
                stored = process_pool.submit(
                    _run_in_process,
                    _StepRef.of(node.step.fn),
                    self._process_inputs(node, inputs, result),
                    node.params,
                    self.artifacts.root,
                    node.step.outputs,
                ).result()
            else:
                stored = self._run_in_thread(node, inputs, result)
        except BaseException as exc:
            step_result.status = "failed"
            step_result.error = str(exc) if isinstance(exc, LooplineError) else repr(exc)
            step_result.duration_s = time.perf_counter() - clock
            self.metadata.record_step(
                run_id=result.run_id,
                step=node.name,
                cache_key=key,
                code_hash=self._static_keys[node.name][0],
                params=self._shown_params[node.name],
                status="failed",
                started_at=started_at,
                inputs=inputs,
                outputs={},
                error="".join(traceback.format_exception(exc)),
                **(placement.columns() if placement is not None else {}),
            )
            self._emit(result.run_id, node.name, "failed", step_result.duration_s)
            raise
        dataset = self._dataset_record(node, stored, result)
        versions = self._model_versions(node, inputs, stored, result)
        step_result.dataset_version = self.metadata.record_step(
            run_id=result.run_id,
            step=node.name,
            cache_key=key,
            code_hash=self._static_keys[node.name][0],
            params=self._shown_params[node.name],
            status="completed",
            started_at=started_at,
            inputs=inputs,
            outputs=dict(stored),
            dataset=dataset,
            model_versions=versions,
            **(placement.columns() if placement is not None else {}),
        )
        step_result.outputs = {name: art.hash for name, art in stored.items()}
        step_result.status = "completed"
        step_result.duration_s = time.perf_counter() - clock
        self._emit(result.run_id, node.name, "completed", step_result.duration_s)

    def _run_in_thread(
        self, node: Node, inputs: dict[str, str], result: RunResult
    ) -> dict[str, StoredArtifact]:
        kwargs = dict(node.params)
        info_params = node.step.info_params()
        for arg, digest in inputs.items():
            kwargs[arg] = (
                self._artifact_info(digest) if arg in info_params else result_load(result, digest)
            )
        for arg in node.step.context_params():
            kwargs[arg] = self._context(result.run_id, inputs)
        value = node.step.fn(**kwargs)
        values = _split_outputs(node.name, node.step.outputs, value)
        stored = {}
        for name, obj in values.items():
            art = self.artifacts.save(obj)
            result.objects[art.hash] = obj
            stored[name] = art
        return stored

    def _process_inputs(
        self, node: Node, inputs: dict[str, str], result: RunResult
    ) -> dict[str, Any]:
        info_params = node.step.info_params()
        values: dict[str, Any] = {
            arg: self._artifact_info(digest) if arg in info_params else ("hash", digest)
            for arg, digest in inputs.items()
        }
        for arg in node.step.context_params():
            values[arg] = self._context(result.run_id, inputs)
        return values

    def _try_cache(
        self,
        node: Node,
        key: str,
        inputs: dict[str, str],
        result: RunResult,
        started_at: datetime,
    ) -> bool:
        hit = self.metadata.find_cached(key)
        if hit is None:
            return False
        source_id, outputs = hit
        if set(outputs) != set(node.step.outputs) or not all(
            self.artifacts.exists(d) for d in outputs.values()
        ):
            return False  # artifacts were removed: run again
        step_result = result.steps[node.name]
        step_result.outputs = outputs
        step_result.cached_from = source_id
        step_result.status = "cached"
        if node.dataset:
            digest = outputs[node.step.outputs[0]]
            step_result.dataset_version = self.metadata.dataset_version(node.dataset, digest)
        self.metadata.record_step(
            run_id=result.run_id,
            step=node.name,
            cache_key=key,
            code_hash=self._static_keys[node.name][0],
            params=self._shown_params[node.name],
            status="cached",
            started_at=started_at,
            inputs=inputs,
            outputs=dict(outputs),
            cached_from=source_id,
        )
        return True

    # -- keys and records -------------------------------------------------------
    def _input_hash(self, out: Output, result: RunResult) -> str:
        return result.steps[out.node.name].outputs[out.name]

    def _static_key(self, node: Node) -> tuple[str, str]:
        """(code fingerprint, key of code + parameters + outputs): what a run cannot change."""
        root = self.settings.project_root
        extra = node.step.cache_extra
        code = sha256_bytes(
            code_fingerprint(node.step.fn, root).encode(),
            code_fingerprint(extra, root).encode() if extra is not None else b"",
            node.step.version.encode(),
        )
        params = dict(node.params)
        for name in node.step.path_params():
            value = params.get(name)
            if isinstance(value, str | Path) and "://" not in str(value):
                params[name] = {"path": str(value), "content": self._fingerprint(Path(value))}
        parts = [code.encode(), canonical_json(list(node.step.outputs))]
        shown: dict[str, Any] = {}
        for name in sorted(params):
            try:
                value = value_fingerprint(params[name], root)
            except TypeError as exc:
                raise PipelineError(
                    f"parameter '{name}' of step '{node.name}' cannot be part of a cache key: "
                    f"{exc}",
                    hint="pass JSON-able values, paths, estimators or functions as parameters; "
                    "pass data as the output of another step",
                ) from None
            parts.append(name.encode() + b"=" + value)
            # Recorded as given when JSON-able, else as its description (class, settings, code).
            given = node.params.get(name)
            shown[name] = given if _is_json(given) else orjson.loads(value)
        self._shown_params[node.name] = shown
        return code, sha256_bytes(*parts)

    def _cache_key(self, node: Node, inputs: dict[str, str]) -> str:
        extra = ""
        if node.step.cache_extra is not None:
            extra = node.step.cache_extra(self._context("", inputs), node.params, inputs)
        return sha256_bytes(
            self._static_keys[node.name][1].encode(),
            canonical_json(sorted(inputs.items())),
            extra.encode(),
        )

    def _fingerprint(self, path: Path) -> str:
        key = str(path.resolve()) if path.exists() else str(path)
        if key not in self._file_hashes:
            self._file_hashes[key] = hash_tree(path) if path.exists() else "missing"
        return self._file_hashes[key]

    def _dataset_record(
        self, node: Node, stored: dict[str, StoredArtifact], result: RunResult
    ) -> tuple[str, str, int | None, str] | None:
        if not node.dataset:
            return None
        art = stored[node.step.outputs[0]]
        obj = result.objects.get(art.hash)
        rows = len(obj) if obj is not None and hasattr(obj, "__len__") else None
        source = value_fingerprint(node.params, self.settings.project_root).decode(errors="replace")
        return node.dataset, art.hash, rows, source

    def _model_versions(
        self,
        node: Node,
        inputs: dict[str, str],
        stored: dict[str, StoredArtifact],
        result: RunResult,
    ) -> list[dict[str, Any]]:
        """Lineage rows for the model versions a step returned (see ModelVersion)."""
        rows = []
        for art in stored.values():
            obj = result.objects.get(art.hash)
            if obj is None and art.materializer == "loopline.model_version":
                obj = self.artifacts.load(art.hash)  # written by a child process
            if not isinstance(obj, ModelVersion):
                continue
            model_hash = inputs.get(obj.model_input)
            if model_hash is None:
                raise PipelineError(
                    f"step '{node.name}' returned a model version but has no input "
                    f"{obj.model_input!r} holding the model",
                    hint="pass the trained model to that parameter",
                )
            datasets = self.metadata.upstream_datasets(model_hash)
            primary = max(datasets, key=lambda d: (d["rows"] or 0, d["name"]), default=None)
            rows.append(
                {
                    "model_name": obj.name,
                    "version": obj.version,
                    "model_hash": model_hash,
                    "profile_hash": inputs.get(obj.reference_input or ""),
                    "mlflow_run_id": obj.mlflow_run_id,
                    "dataset_hash": primary["hash"] if primary else None,
                    "dataset_version": primary["label"] if primary else None,
                    "datasets": [d["label"] for d in datasets],
                    "recipe": self.metadata.producer_key(model_hash),
                }
            )
        return rows

    def _context(self, run_id: str, inputs: dict[str, str] | None = None) -> RunContext:
        return RunContext(self.settings, run_id, self.metadata, self.artifacts, inputs)

    def _artifact_info(self, digest: str) -> ArtifactInfo:
        found = self.metadata.dataset_of(digest)
        dataset, version = found if found else (None, None)
        return ArtifactInfo(digest, self.artifacts.uri(digest), dataset, version)

    def _emit(
        self, run_id: str, step: str, status: StepStatus, duration: float | None = None
    ) -> None:
        if self.on_event is not None:
            self.on_event(RunEvent(run_id, step, status, duration))


_import_lock = threading.RLock()
_import_users = 0
_plain_import = builtins.__import__


def _locked_import(*args: Any, **kwargs: Any) -> Any:
    with _import_lock:
        return _plain_import(*args, **kwargs)


@contextmanager
def _serial_imports() -> Iterator[None]:
    """Serialise ``import`` statements while steps run in threads.

    Two threads importing a package with internal circular imports for the first time
    (scikit-learn does this) can each see the other's half-initialised module and fail;
    steps import their heavy libraries lazily, so parallel steps would hit exactly that.
    """
    global _import_users
    with _import_lock:
        _import_users += 1
        builtins.__import__ = _locked_import
    try:
        yield
    finally:
        with _import_lock:
            _import_users -= 1
            if _import_users == 0:
                builtins.__import__ = _plain_import


def _is_json(value: Any) -> bool:
    try:
        canonical_json(value)
    except TypeError:
        return False
    return True


def result_load(result: RunResult, digest: str) -> Any:
    """An input object: from this run's memory if produced here, else from the store."""
    if digest not in result.objects:
        result.objects[digest] = result.store.load(digest)
    return result.objects[digest]


def _split_outputs(step: str, names: tuple[str, ...], value: Any) -> dict[str, Any]:
    if len(names) == 1:
        return {names[0]: value}
    if not isinstance(value, tuple) or len(value) != len(names):
        found = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
        raise PipelineError(
            f"step '{step}' declares outputs {names} but returned {found}",
            hint=f"return a tuple of {len(names)} values",
        )
    return dict(zip(names, value, strict=True))


@dataclass(frozen=True)
class _StepRef:
    """How a child process finds a step function: by module name, or by file."""

    module: str
    qualname: str
    file: str | None

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _StepRef:
        module = sys.modules.get(fn.__module__)
        return cls(fn.__module__, fn.__qualname__, getattr(module, "__file__", None))

    def resolve(self) -> Callable[..., Any]:
        if self.module in sys.modules:
            target: Any = sys.modules[self.module]
        else:
            try:
                target = importlib.import_module(self.module)
            except ModuleNotFoundError:
                # A project's pipeline file loaded by path (see loopline.project).
                if self.file is None:
                    raise
                spec = importlib.util.spec_from_file_location(self.module, self.file)
                assert spec and spec.loader
                target = importlib.util.module_from_spec(spec)
                sys.modules[self.module] = target
                spec.loader.exec_module(target)
        for part in self.qualname.split("."):
            target = getattr(target, part)
        return getattr(target, "fn", target)


def _run_in_process(
    ref: _StepRef,
    inputs: dict[str, Any],
    params: dict[str, Any],
    artifact_root: str,
    outputs: tuple[str, ...],
) -> dict[str, StoredArtifact]:
    """Child-process body: load inputs from the store, run, store outputs."""
    fn = ref.resolve()
    store = ArtifactStore(artifact_root)
    kwargs = dict(params)
    for arg, value in inputs.items():
        kwargs[arg] = store.load(value[1]) if isinstance(value, tuple) else value
    values = _split_outputs(ref.qualname, outputs, fn(**kwargs))
    return {name: store.save(obj) for name, obj in values.items()}
