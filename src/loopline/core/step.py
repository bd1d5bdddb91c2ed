"""``@step``: a plain typed function that the runner executes, caches and records.

Outside a pipeline a step is just its function, so steps stay easy to test. Inside a
pipeline function a call records a node of the DAG (see :mod:`loopline.core.dag`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from loopline.core.dag import ArtifactInfo, active_builder
from loopline.errors import PipelineError

if TYPE_CHECKING:
    from loopline.core.runner import RunContext

# (context, parameters, input artifact hashes) -> extra text for the cache key
CacheExtra = Callable[["RunContext", dict[str, Any], dict[str, str]], str]
# A fixed dataset name, or one chosen from the call's parameters (None: not a dataset).
DatasetName = str | Callable[[dict[str, Any]], str | None] | None
# What a step asks of the node that runs it on Ray: Ray's own option names.
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")


class Step:
    """A function that the runner executes, caches and records."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        outputs: tuple[str, ...] | None = None,
        cache: bool = True,
        dataset: DatasetName = None,
        version: str = "",
        cache_extra: CacheExtra | None = None,
        executor: Literal["threads", "processes"] | None = None,
        resources: dict[str, Any] | None = None,
        retries: int | None = None,
    ) -> None:
        self.fn = fn
        self.executor = executor
        self.resources = _checked_resources(fn.__name__, resources or {})
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise PipelineError(
                f"step '{fn.__name__}': retries must be a whole number >= 0, found {retries!r}",
                hint="e.g. @step(retries=2); 0 turns retries off",
            )
        self.retries = retries
        self.name = fn.__name__
        self.outputs = outputs or ("output",)
        self.cache = cache
        self.dataset = dataset
        self.version = version
        self.cache_extra = cache_extra
        self.signature = inspect.signature(fn)
        context = self.context_params()
        # What a pipeline passes: everything but the RunContext the runner injects.
        self.call_signature = self.signature.replace(
            parameters=[p for p in self.signature.parameters.values() if p.name not in context]
        )
        functools.update_wrapper(self, fn)

    def dataset_for(self, params: dict[str, Any]) -> str | None:
        """The dataset name a call with these parameters records its output under."""
        if callable(self.dataset):
            return self.dataset(params)
        return self.dataset

    def info_params(self) -> set[str]:
        """Parameters annotated ``ArtifactInfo``: they receive metadata, not objects."""
        return {
            name
            for name, p in self.signature.parameters.items()
            if p.annotation is ArtifactInfo or str(p.annotation).endswith("ArtifactInfo")
        }

    def context_params(self) -> set[str]:
        """Parameters annotated ``RunContext``: the runner injects them; never cached."""
        return {
            name
            for name, p in self.signature.parameters.items()
            if "RunContext" in str(p.annotation)
        }

    def path_params(self) -> set[str]:
        """Parameters whose annotation mentions Path: local files are hashed by content."""
        return {
            name
            for name, p in self.signature.parameters.items()
            if p.annotation is Path or "Path" in str(p.annotation)
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = active_builder()
        if builder is None:
            return self.fn(*args, **kwargs)
        return builder.add(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<step {self.name}>"


@overload
def step(fn: Callable[..., Any], /) -> Step: ...


@overload
def step(
    *,
    outputs: tuple[str, ...] | None = None,
    cache: bool = True,
    dataset: DatasetName = None,
    version: str = "",
    cache_extra: CacheExtra | None = None,
    executor: Literal["threads", "processes"] | None = None,
    resources: dict[str, Any] | None = None,
    retries: int | None = None,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    outputs: tuple[str, ...] | None = None,
    cache: bool = True,
    dataset: DatasetName = None,
    version: str = "",
    cache_extra: CacheExtra | None = None,
    executor: Literal["threads", "processes"] | None = None,
    resources: dict[str, Any] | None = None,
    retries: int | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make a function a pipeline step.

    Args:
        outputs: names of the outputs when the function returns a tuple of several.
        cache: reuse the previous result when code, parameters and inputs are unchanged.
        dataset: record the (single or first) output as a new version of this named
            dataset; a function of the call's parameters lets a library step take the name
            from its caller (e.g. ``read_table(..., dataset="transactions")``).
        version: bump to invalidate the cache by hand.
        cache_extra: adds outside state to the cache key (e.g. the current champion).
            Library steps that read outside state declare it here, so pipelines never do.
        executor: run this step in a child process ("processes") even when the run uses
            threads: for steps that hold the GIL (pure-Python text processing) and would
            slow the steps running beside them. With one worker (``max_workers=1``)
            nothing runs beside them, and they run in a thread.
        resources: what the step needs of the node that runs it on the Ray executor, in
            Ray's terms: ``num_cpus`` (default 1), ``num_gpus``, ``memory`` (bytes) and
            ``resources`` (custom resources a node was started with, e.g.
            ``{"resources": {"gpu_node": 1}}`` to pin the step to such nodes). Other
            executors ignore it; it is not part of the cache key.
        retries: on the Ray executor, how often a step whose worker process or node dies
            mid-step (a reclaimed spot instance) is started again elsewhere (default 3).
            A step that raises is never retried: it fails the run, as with threads.
    """

    def wrap(func: Callable[..., Any]) -> Step:
        return Step(
            func,
            outputs=outputs,
            cache=cache,
            dataset=dataset,
            version=version,
            cache_extra=cache_extra,
            executor=executor,
            resources=resources,
            retries=retries,
        )

    return wrap(fn) if fn is not None else wrap


def _checked_resources(step_name: str, resources: dict[str, Any]) -> dict[str, Any]:
    """``resources`` as given, once every key is known and every amount a number >= 0."""
    where = f"step '{step_name}'"
    hint = (
        'e.g. @step(resources={"num_cpus": 2, "num_gpus": 1, "memory": 2_000_000_000, '
        '"resources": {"worker": 1}}); keys: ' + ", ".join(RESOURCE_KEYS)
    )
    if not isinstance(resources, dict):
        raise PipelineError(f"{where}: resources must be a mapping", hint=hint)
    unknown = sorted(set(resources) - set(RESOURCE_KEYS))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise PipelineError(f"{where}: unknown resource {names}", hint=hint)
    amounts = {k: v for k, v in resources.items() if k != "resources"}
    custom = resources.get("resources", {})
    if not isinstance(custom, dict) or not all(isinstance(k, str) for k in custom):
        raise PipelineError(
            f"{where}: 'resources' must map custom resource names to amounts", hint=hint
        )
    amounts.update(custom)
    for name, amount in amounts.items():
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise PipelineError(
                f"{where}: resource {name!r} must be a number >= 0, found {amount!r}", hint=hint
            )
    return dict(resources)
