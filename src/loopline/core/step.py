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

if TYPE_CHECKING:
    from loopline.core.runner import RunContext

# (context, parameters, input artifact hashes) -> extra text for the cache key
CacheExtra = Callable[["RunContext", dict[str, Any], dict[str, str]], str]
# A fixed dataset name, or one chosen from the call's parameters (None: not a dataset).
DatasetName = str | Callable[[dict[str, Any]], str | None] | None


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
    ) -> None:
        self.fn = fn
        self.executor = executor
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
            slow the steps running beside them.
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
        )

    return wrap(fn) if fn is not None else wrap
