"""``@pipeline``: a function that calls steps; calling :meth:`Pipeline.run` executes its DAG.

A pipeline sits on top of the runner: building the DAG is :mod:`loopline.core.dag`'s job,
executing it :mod:`loopline.core.runner`'s (imported when a run starts, so that importing
``loopline`` stays cheap); neither imports this module.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loopline.core.dag import Dag, build_dag
from loopline.core.step import step
from loopline.errors import PipelineError

if TYPE_CHECKING:
    from loopline.config import ExecutorName, Settings
    from loopline.core.runner import RunEvent, RunResult

__all__ = ["Pipeline", "pipeline", "step"]


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
        return build_dag(self.name, values, lambda: self.fn(**values))

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
        executor: ExecutorName | None = None,
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

    def run_step(
        self,
        step: str,
        /,
        *,
        run_id: str | None = None,
        settings: Settings | None = None,
        cache: bool = True,
        on_event: Callable[[RunEvent], None] | None = None,
        **params: Any,
    ) -> RunResult:
        """Execute only ``step`` as part of run ``run_id``, its inputs being the outputs
        its upstream steps recorded in that run (see :meth:`Runner.run_step`)."""
        from loopline.config import load_settings
        from loopline.core.runner import Runner

        runner = Runner(settings or load_settings(), on_event=on_event)
        try:
            return runner.run_step(self.build(**params), step, run_id, use_cache=cache)
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
