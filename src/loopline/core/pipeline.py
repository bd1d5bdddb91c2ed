"""``@step`` and ``@pipeline``: plain typed functions become a cached, versioned DAG.

Calling a step inside a pipeline function does not run it: it records a node and returns
:class:`Output` handles, which later steps take as inputs. Everything else passed to a
step is a *parameter* and goes into the step's cache key. Outside a pipeline a step is
just its function, so steps stay easy to test.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from loopline.core.hashing import canonical_json, code_hash
from loopline.errors import PipelineError

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.runner import RunContext, RunEvent, RunResult

_building = threading.local()

# (context, parameters, input artifact hashes) -> extra text for the cache key
CacheExtra = Callable[["RunContext", dict[str, Any], dict[str, str]], str]


@dataclass(frozen=True)
class ArtifactInfo:
    """Passed instead of the object to a step parameter annotated ``ArtifactInfo``.

    Lets a step record *which* data it saw (hash, dataset version) without loading it.
    """

    hash: str
    uri: str
    dataset: str | None = None
    version: int | None = None

    @property
    def label(self) -> str:
        """``name:vN`` for dataset versions, else the short hash."""
        if self.dataset and self.version:
            return f"{self.dataset}:v{self.version}"
        return self.hash[:12]


class Step:
    """A function that the runner executes, caches and records."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        outputs: tuple[str, ...] | None = None,
        cache: bool = True,
        dataset: str | None = None,
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

    @functools.cached_property
    def code_hash(self) -> str:
        """Hash of the source (and same-package helpers) plus the explicit version tag."""
        from loopline import __version__

        return code_hash(self.fn, extra=(self.version, __version__))

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
        builder: _DagBuilder | None = getattr(_building, "dag", None)
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
    dataset: str | None = None,
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
    dataset: str | None = None,
    version: str = "",
    cache_extra: CacheExtra | None = None,
    executor: Literal["threads", "processes"] | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make a function a pipeline step.

    Args:
        outputs: names of the outputs when the function returns a tuple of several.
        cache: reuse the previous result when code, parameters and inputs are unchanged.
        dataset: record the (single) output as a new version of this named dataset.
        version: bump to invalidate the cache by hand (e.g. after changing a dependency).
        cache_extra: adds outside state to the cache key (e.g. the current champion).
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


@dataclass(frozen=True, eq=False)
class Output:
    """A handle to one output of a node, resolved to an artifact when the run executes."""

    node: Node
    name: str

    def __bool__(self) -> bool:
        raise PipelineError(
            f"the output '{self.name}' of step '{self.node.name}' has no value while the "
            "pipeline is being built",
            hint="decide inside a step, or use a step parameter instead of Python control flow",
        )

    def __iter__(self) -> Iterator[Any]:
        raise PipelineError(
            f"step '{self.node.name}' has one output and cannot be unpacked",
            hint="declare several with @step(outputs=('a', 'b')) and return a tuple",
        )


@dataclass(eq=False)
class Node:
    """One call of a step inside a pipeline."""

    name: str
    step: Step
    inputs: dict[str, Output]
    params: dict[str, Any]
    outputs: list[Output] = field(default_factory=list)

    @property
    def upstream(self) -> set[Node]:
        return {out.node for out in self.inputs.values()}


@dataclass
class Dag:
    """The nodes of one pipeline call, in the order the pipeline created them."""

    pipeline: str
    params: dict[str, Any]
    nodes: list[Node]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise PipelineError(
            f"pipeline '{self.pipeline}' has no step {name!r}",
            hint="steps: " + ", ".join(n.name for n in self.nodes),
        )


class _DagBuilder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._names: dict[str, int] = {}

    def add(self, step_obj: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            bound = step_obj.call_signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineError(f"bad call of step '{step_obj.name}': {exc}") from None
        bound.apply_defaults()
        count = self._names.get(step_obj.name, 0) + 1
        self._names[step_obj.name] = count
        name = step_obj.name if count == 1 else f"{step_obj.name}_{count}"
        inputs: dict[str, Output] = {}
        params: dict[str, Any] = {}
        for arg, value in bound.arguments.items():
            if isinstance(value, Output):
                inputs[arg] = value
            elif isinstance(value, tuple) and value and all(isinstance(v, Output) for v in value):
                raise PipelineError(
                    f"step '{name}' got several outputs for '{arg}'",
                    hint="unpack them: a, b = other_step(...)",
                )
            else:
                _check_param(name, arg, value)
                params[arg] = value
        node = Node(name, step_obj, inputs, params)
        node.outputs = [Output(node, out) for out in step_obj.outputs]
        self.nodes.append(node)
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)


def _check_param(step_name: str, arg: str, value: Any) -> None:
    try:
        canonical_json(value)
    except TypeError:
        raise PipelineError(
            f"parameter '{arg}' of step '{step_name}' is a {type(value).__name__}, "
            "which cannot be part of a cache key",
            hint="pass JSON-able values or paths as parameters; pass data as step outputs",
        ) from None


class Pipeline:
    """A function that calls steps; calling :meth:`run` executes the DAG it builds."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def build(self, **params: Any) -> Dag:
        """Call the pipeline function with lazy steps and return its DAG."""
        values = self.coerce_params(params)
        if getattr(_building, "dag", None) is not None:
            raise PipelineError("pipelines cannot be built inside another pipeline")
        builder = _DagBuilder()
        _building.dag = builder
        try:
            self.fn(**values)
        finally:
            _building.dag = None
        if not builder.nodes:
            raise PipelineError(f"pipeline '{self.name}' calls no steps")
        return Dag(self.name, values, builder.nodes)

    def coerce_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check names and convert values (e.g. CLI strings) to the annotated types."""
        from pydantic import TypeAdapter, ValidationError

        known = self.signature.parameters
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise PipelineError(
                f"pipeline '{self.name}' has no parameter {', '.join(map(repr, unknown))}",
                hint="parameters: " + ", ".join(known) if known else "it takes no parameters",
            )
        hints = _resolved_hints(self.fn)
        values: dict[str, Any] = {}
        for name, param in known.items():
            if name not in params:
                if param.default is inspect.Parameter.empty:
                    raise PipelineError(
                        f"pipeline '{self.name}' needs the parameter '{name}'",
                        hint=f"pass --param {name}=VALUE",
                    )
                values[name] = param.default
                continue
            annotation = hints.get(name, Any)
            try:
                values[name] = TypeAdapter(annotation).validate_python(params[name])
            except ValidationError as exc:
                raise PipelineError(
                    f"parameter '{name}' of pipeline '{self.name}': "
                    f"{exc.errors()[0]['msg']} (got {params[name]!r})"
                ) from None
        return values

    def run(
        self,
        settings: Settings | None = None,
        *,
        cache: bool = True,
        executor: Literal["threads", "processes"] | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        **params: Any,
    ) -> RunResult:
        """Build and execute the pipeline; returns the run's result."""
        from loopline.config import load_settings
        from loopline.core.runner import Runner

        runner = Runner(settings or load_settings(), executor=executor, on_event=on_event)
        try:
            return runner.run(self.build(**params), use_cache=cache)
        finally:
            runner.close()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"


def pipeline(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make a function that calls steps a pipeline (``@pipeline`` or ``@pipeline(name=...)``)."""

    def wrap(func: Callable[..., Any]) -> Pipeline:
        return Pipeline(func, name=name)

    return wrap(fn) if fn is not None else wrap


def _resolved_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # annotations that name TYPE_CHECKING-only imports: no conversion
        return {}
