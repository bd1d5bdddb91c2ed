"""`loopline export kfp`: a Kubeflow Pipelines v2 package compiled with the real kfp SDK.

No Kubernetes here, so the package cannot run: the compiled YAML is parsed and its tasks,
dependencies, parameters and commands are checked against the pipeline's own DAG.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopline.config import load_settings
from loopline.errors import LooplineError, PipelineError
from loopline.orchestrate.export import export_plan, write_kfp
from loopline.project import resolve_pipeline
from loopline.templates import write_template

pytest.importorskip("kfp")  # the kfp extra (in dev): without it the exporter says how to add it

IMAGE = "registry.example/loopline-tabular:1"


def compiled(project: Path, template: str, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    """Write a template project, export its pipeline; return the package and the DAG."""
    write_template(project, template)
    settings = load_settings(project)
    plan = export_plan(settings, template, project_dir="/app")
    out = write_kfp(plan, tmp_path / "pipeline.yaml", image=IMAGE)
    name, pipe = resolve_pipeline(settings, template)
    return yaml.safe_load(out.read_text()), pipe.build(**settings.params.get(name, {}))


def test_tasks_edges_parameters_and_commands_match_the_pipeline(
    project: Path, tmp_path: Path
) -> None:
    package, dag = compiled(project, "tabular", tmp_path)
    tasks = package["root"]["dag"]["tasks"]
    step_of = {key: task["taskInfo"]["name"] for key, task in tasks.items()}
    # One task per step, named after it.
    assert sorted(step_of.values()) == sorted(node.name for node in dag.nodes)
    # Dependencies are exactly the DAG's edges.
    for key, task in tasks.items():
        node = dag.node(step_of[key])
        assert {step_of[t] for t in task.get("dependentTasks", [])} == {
            u.name for u in node.upstream
        }
        assert not task["cachingOptions"].get("enableCache")  # Loopline's cache decides
        inputs = task["inputs"]["parameters"]
        assert inputs["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
        for param in dag.params:
            assert inputs[param] == {"componentInputParameter": param}
    # The pipeline's parameters, with their defaults and types.
    params = package["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(dag.params) == {"source", "model_name", "seed"}
    assert params["source"] == {
        "defaultValue": "data/transactions",
        "isOptional": True,
        "parameterType": "STRING",
    }
    assert params["seed"]["parameterType"] == "NUMBER_INTEGER"
    assert params["seed"]["defaultValue"] == 0
    # Each task runs its own step in the image, with the shared run id and the parameters.
    executors = package["deploymentSpec"]["executors"]
    components = package["components"]
    for key, task in tasks.items():
        component = components[task["componentRef"]["name"]]
        container = executors[component["executorLabel"]]["container"]
        assert container["image"] == IMAGE
        assert container["command"] == ["loopline"]
        args = container["args"]
        assert args[:6] == ["-C", "/app", "run", "tabular", "--step", step_of[key]]
        assert args[6:8] == ["--run-id", "{{$.inputs.parameters['run_id']}}"]
        given = [yaml.safe_load(a)["Concat"] for a in args[9::2]]
        assert given == [[f"{p}=", f"{{{{$.inputs.parameters['{p}']}}}}"] for p in dag.params]


def test_a_parameter_without_default_value_is_passed_only_when_set(
    project: Path, tmp_path: Path
) -> None:
    package, dag = compiled(project, "sentiment", tmp_path)
    params = package["root"]["inputDefinitions"]["parameters"]
    assert dag.params["gold"] is None
    assert params["gold"]["isOptional"] and "defaultValue" not in params["gold"]
    container = next(iter(package["deploymentSpec"]["executors"].values()))["container"]
    optional = [yaml.safe_load(a) for a in container["args"] if "IfPresent" in a]
    assert optional == [
        {
            "IfPresent": {
                "InputName": "gold",
                "Then": ["--param", {"Concat": ["gold=", "{{$.inputs.parameters['gold']}}"]}],
            }
        }
    ]


def test_bad_requests_are_clear_errors_and_write_nothing(project: Path, tmp_path: Path) -> None:
    write_template(project, "tabular")
    plan = export_plan(load_settings(project), "tabular")
    with pytest.raises(LooplineError, match=r"should end in \.yaml or \.yml"):
        write_kfp(plan, tmp_path / "pipeline.json", image=IMAGE)
    with pytest.raises(LooplineError, match="image is empty"):
        write_kfp(plan, tmp_path / "pipeline.yaml", image=" ")
    assert list(tmp_path.iterdir()) == [project]
    (project / "loopline.yaml").write_text(
        "pipelines:\n  tabular: pipeline.py:tabular\nparams:\n  tabular:\n"
        "    source: [data/a, data/b]\n"
    )
    with pytest.raises(PipelineError, match="parameter 'source' of pipeline 'tabular'"):
        export_plan(load_settings(project), "tabular")


def test_the_command_writes_the_package(project: Path, tmp_path: Path) -> None:
    write_template(project, "tabular")
    out = tmp_path / "tabular.yaml"
    command = [sys.executable, "-m", "loopline", "-C", str(project), "export", "kfp", "tabular"]
    done = subprocess.run(
        [*command, "--image", IMAGE, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "shared stores" in done.stderr  # the project's stores are local files
    assert yaml.safe_load(out.read_text())["pipelineInfo"]["name"] == "loopline-tabular"
    missing = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert missing.returncode == 2 and "--image" in missing.stderr
