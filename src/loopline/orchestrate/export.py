"""Export a pipeline to an orchestrator: an Airflow DAG file or a Kubeflow Pipelines package.

The orchestrator only schedules. Each of its tasks runs one step,
``loopline -C PROJECT run PIPELINE --step NAME --run-id ID`` (see
:meth:`loopline.core.runner.Runner.run_step`), and every task of one orchestrator run passes
the same run id, so Loopline still reads the step's inputs from the artifact store, skips
unchanged steps, and records the run, its steps and their lineage as ``loopline run`` does.
Tasks on different machines therefore need the project's stores to be shared (a PostgreSQL
``metadata_url``, an ``s3://`` ``artifact_root``, an MLflow server).

The graph is the pipeline's DAG built with its default parameters (the pipeline function's
defaults overridden by ``params:`` in ``loopline.yaml``); these become the orchestrator's
run parameters. A pipeline whose steps depend on a parameter's value (``if gold: ...``)
exports the steps of the defaults.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.config import Settings
from loopline.core.dag import Dag
from loopline.core.files import write_atomic
from loopline.errors import LooplineError, PipelineError
from loopline.project import resolve_pipeline

__all__ = ["ExportPlan", "airflow_dag", "export_plan", "write_airflow", "write_kfp"]

# The orchestrators' parameter types for Loopline's scalar parameters.
_AIRFLOW_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
# Airflow's template for the run id every task of one DAG run shares (Airflow's run ids
# are unique per DAG only, so the DAG id is part of it).
AIRFLOW_RUN_ID = "{{ run_id }}@{{ dag.dag_id }}"


@dataclass(frozen=True)
class ExportPlan:
    """What an exporter writes: the steps in DAG order with their upstream steps, the run
    parameters with their defaults, and the command each task runs (``command`` is the
    ``loopline`` executable and its ``-C PROJECT``)."""

    pipeline: str
    params: dict[str, Any]
    steps: dict[str, tuple[str, ...]]
    command: tuple[str, ...]

    def step_command(self, step: str) -> list[str]:
        """The command line of one task, before the run id and the parameters."""
        return [*self.command, "run", self.pipeline, "--step", step]


def export_plan(
    settings: Settings,
    pipeline: str | None,
    *,
    project_dir: str | None = None,
    loopline: str = "loopline",
) -> ExportPlan:
    """Build the pipeline's DAG with its default parameters and describe its tasks.

    ``project_dir`` is where the project is on the orchestrator's workers (default: where
    it is here); ``loopline`` the command that runs Loopline there.
    """
    name, pipe = resolve_pipeline(settings, pipeline)
    dag = pipe.build(**settings.params.get(name, {}))
    params = {key: _scalar(name, key, value) for key, value in dag.params.items()}
    root = project_dir or str(settings.project_root)
    return ExportPlan(name, params, _edges(dag), (loopline, "-C", root))


def _edges(dag: Dag) -> dict[str, tuple[str, ...]]:
    order = [node.name for node in dag.nodes]
    return {
        node.name: tuple(sorted((u.name for u in node.upstream), key=order.index))
        for node in dag.nodes
    }


def _scalar(pipeline: str, name: str, value: Any) -> Any:
    """Orchestrators pass run parameters as strings, numbers, booleans (or nothing)."""
    if value is None or type(value) in _AIRFLOW_TYPES:
        return value
    if isinstance(value, Path):
        return str(value)
    raise PipelineError(
        f"parameter '{name}' of pipeline '{pipeline}' is a {type(value).__name__}, which an "
        "orchestrator cannot pass on a command line",
        hint="give the pipeline a str, int, float or bool parameter instead "
        "(e.g. a path to a file holding the value)",
    )


# -- Airflow ----------------------------------------------------------------------------------
_AIRFLOW_TEMPLATE = '''\
"""Airflow DAG of the Loopline pipeline {pipeline!r}: one task per step.

Written by `loopline export airflow`. Each task runs its step with
`loopline run --step`; Loopline reads the step's inputs from its artifact store, skips
unchanged steps and records lineage, under one Loopline run per DAG run.
"""

from __future__ import annotations

import shlex

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

COMMAND = {command!r}
# Run parameters reach the command through the environment: no shell quoting of values.
ENV = {env}
ARGS = {args!r}
UPSTREAM = {edges}

with DAG(
    dag_id={dag_id!r},
    description={description!r},
    schedule=None,
    params={params},
    tags=["loopline"],
) as dag:
    tasks = {{
        step: BashOperator(
            task_id=step,
            bash_command=f"exec {{COMMAND}} --step {{shlex.quote(step)}} {{ARGS}}",
            env=ENV,
            append_env=True,
        )
        for step in UPSTREAM
    }}
    for step, upstream in UPSTREAM.items():
        for name in upstream:
            tasks[name] >> tasks[step]
'''


def _env_name(param: str) -> str:
    return "LOOPLINE_PARAM_" + re.sub(r"\W", "_", param)


def airflow_dag(plan: ExportPlan, *, dag_id: str | None = None) -> str:
    """The Python source of an Airflow (3.x) DAG file for ``plan``: one BashOperator per step,
    the pipeline's parameters as the DAG's params."""
    dag_id = dag_id or f"loopline_{plan.pipeline}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,250}", dag_id):
        raise LooplineError(
            f"{dag_id!r} is not a valid Airflow DAG id",
            hint="use letters, digits, '_', '.' and '-' only",
        )
    env = {"LOOPLINE_RUN_ID": AIRFLOW_RUN_ID}
    params: dict[str, str] = {}
    args: list[str] = []
    for name, value in plan.params.items():
        var = _env_name(name)
        if value is None:  # unset unless given: no --param at all
            env[var] = f"{{{{ '' if params.{name} is none else params.{name} }}}}"
            params[name] = "Param(None, type=['null', 'string'])"
            args.append(f'${{{var}:+--param "{name}=${var}"}}')
        else:
            env[var] = f"{{{{ params.{name} }}}}"
            params[name] = f"Param({value!r}, type={_AIRFLOW_TYPES[type(value)]!r})"
            args.append(f'--param "{name}=${var}"')
    source = _AIRFLOW_TEMPLATE.format(
        pipeline=plan.pipeline,
        dag_id=dag_id,
        description=f"Loopline pipeline {plan.pipeline}",
        command=shlex.join([*plan.command, "run", plan.pipeline]),
        env=_literal({k: repr(v) for k, v in env.items()}),
        args=" ".join(['--run-id "$LOOPLINE_RUN_ID"', *args]),
        edges=_literal({step: repr(list(up)) for step, up in plan.steps.items()}),
        params=_literal(params, indent=8),
    )
    compile(source, f"{dag_id}.py", "exec")  # a bug here must not reach the scheduler
    return source


def _literal(value: dict[str, str], indent: int = 4) -> str:
    """A dict of Python expressions as Python source, one entry a line."""
    if not value:
        return "{}"
    lines = "".join(f"\n{' ' * indent}{k!r}: {v}," for k, v in value.items())
    return "{" + lines + "\n" + " " * (indent - 4) + "}"


def write_airflow(plan: ExportPlan, output: Path, *, dag_id: str | None = None) -> Path:
    """Write the Airflow DAG file of ``plan`` at ``output`` (atomically)."""
    _check_output(output, ".py")
    write_atomic(output, airflow_dag(plan, dag_id=dag_id))
    return output


# -- Kubeflow Pipelines ----------------------------------------------------------------------
def write_kfp(plan: ExportPlan, output: Path, *, image: str) -> Path:
    """Compile ``plan`` with the Kubeflow Pipelines SDK into a v2 pipeline package (YAML).

    One container component per step, running the step's command in ``image`` (which must
    hold Loopline, the project at the plan's project folder, and settings that point at
    shared stores); edges by ``.after()``, since data moves through Loopline's artifact store,
    not KFP artifacts; KFP's own caching is off (Loopline's cache decides). The run id is
    the KFP job's id.
    """
    try:
        from kfp import compiler, dsl
    except ModuleNotFoundError:
        raise LooplineError(
            "exporting to Kubeflow Pipelines needs the kfp package",
            hint="pip install 'loopline[kfp]'",
        ) from None
    _check_output(output, ".yaml", ".yml")
    if not image.strip():
        raise LooplineError("the container image is empty", hint="pass --image NAME:TAG")
    names = list(plan.params)
    signature = [_kfp_parameter(name, value) for name, value in plan.params.items()]
    components = {
        step: dsl.container_component(_kfp_component_fn(plan, step, image, names, signature, dsl))
        for step in plan.steps
    }

    def pipeline_fn(*channels: Any) -> None:
        values = dict(zip(names, channels, strict=True))
        tasks: dict[str, Any] = {}
        for step, upstream in plan.steps.items():
            task = components[step](run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **values)
            task.set_display_name(step)
            task.set_caching_options(False)
            if upstream:
                task.after(*(tasks[name] for name in upstream))
            tasks[step] = task

    pipeline_fn.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    pipeline_fn.__doc__ = f"Loopline pipeline {plan.pipeline}: one task per step."
    compiled = dsl.pipeline(name=_kfp_name(plan.pipeline))(pipeline_fn)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".yaml", dir=output.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(compiled, temp)
        os.replace(temp, output)
    finally:
        Path(temp).unlink(missing_ok=True)
    return output


def _kfp_parameter(name: str, value: Any) -> inspect.Parameter:
    # kfp recognises typing.Optional, not the `str | None` union type.
    annotation: Any = typing.Optional[str] if value is None else type(value)  # noqa: UP045
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value, annotation=annotation
    )


def _kfp_component_fn(
    plan: ExportPlan,
    step: str,
    image: str,
    names: list[str],
    signature: list[inspect.Parameter],
    dsl: Any,
) -> Any:
    """A function the ``@container_component`` decorator can take, built for one step: its
    signature is the run id plus the run parameters, and it returns the step's command."""

    def component(run_id: Any, *values: Any) -> Any:
        command = plan.step_command(step)
        args = [*command[1:], "--run-id", run_id]
        for name, value in zip(names, values, strict=True):
            pair = dsl.ConcatPlaceholder([f"{name}=", value])
            if plan.params[name] is None:  # unset unless given
                args.append(dsl.IfPresentPlaceholder(input_name=name, then=["--param", pair]))
            else:
                args += ["--param", pair]
        return dsl.ContainerSpec(image=image, command=command[:1], args=args)

    run_id = inspect.Parameter("run_id", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
    component.__signature__ = inspect.Signature([run_id, *signature])  # type: ignore[attr-defined]
    component.__name__ = re.sub(r"\W", "_", step)
    component.__doc__ = f"Step {step} of the Loopline pipeline {plan.pipeline}."
    return component


def _kfp_name(pipeline: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"loopline-{pipeline}".lower()).strip("-")


def _check_output(output: Path, *suffixes: str) -> None:
    if output.suffix.lower() not in suffixes:
        raise LooplineError(
            f"{output} should end in {' or '.join(suffixes)}",
            hint=f"e.g. -o {output.with_suffix(suffixes[0]).name}",
        )
    if output.is_dir():
        raise LooplineError(f"{output} is a folder", hint="name a file to write")
