"""The graph a pipeline call builds: nodes (step calls), their inputs and output handles.

Calling a step while a pipeline is being built does not run it: :func:`building` hands the
call to the active :class:`DagBuilder`, which records a :class:`Node` and returns
:class:`Output` handles that later steps take as inputs. Everything else passed to a step
is a *parameter* and goes into the step's cache key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopline.errors import PipelineError

if TYPE_CHECKING:
    from loopline.core.step import Step

_building = threading.local()


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
    """One call of a step inside a pipeline.

    ``dataset`` is the dataset name this call's output is recorded under (the step's own,
    or the one a parameter chose), or None.
    """

    name: str
    step: Step
    inputs: dict[str, Output]
    params: dict[str, Any]
    outputs: list[Output] = field(default_factory=list)
    dataset: str | None = None

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


class DagBuilder:
    """Collects the nodes of one pipeline call; see :func:`building`."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._names: dict[str, int] = {}

    def add(self, step_obj: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Record a call of ``step_obj`` and return its output handle(s)."""
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
                params[arg] = value
        node = Node(name, step_obj, inputs, params, dataset=step_obj.dataset_for(params))
        node.outputs = [Output(node, out) for out in step_obj.outputs]
        self.nodes.append(node)
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)


def active_builder() -> DagBuilder | None:
    """The builder of the pipeline being built in this thread, if any."""
    return getattr(_building, "dag", None)


def build_dag(pipeline: str, params: dict[str, Any], call: Any) -> Dag:
    """Run ``call()`` with steps recording nodes instead of running; return the DAG."""
    if active_builder() is not None:
        raise PipelineError("pipelines cannot be built inside another pipeline")
    builder = DagBuilder()
    _building.dag = builder
    try:
        call()
    finally:
        _building.dag = None
    if not builder.nodes:
        raise PipelineError(f"pipeline '{pipeline}' calls no steps")
    return Dag(pipeline, params, builder.nodes)
