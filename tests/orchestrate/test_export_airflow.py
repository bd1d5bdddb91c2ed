"""`loopline export airflow`: the DAG file imports in real Apache Airflow, and `airflow dags
test` runs it end to end against a Loopline project, one `loopline run --step` per task.

Airflow lives in its own virtual environment (``.bench/airflow-venv``, built once by
``airflow_venv.py``; `make airflow-venv` builds it in CI before the tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopline.config import load_settings
from loopline.core.artifacts import ArtifactStore
from loopline.core.metadata import MetadataStore
from loopline.errors import LooplineError
from loopline.orchestrate.export import airflow_dag, export_plan, write_airflow
from loopline.project import resolve_pipeline
from loopline.templates import write_template

sys.path.insert(0, str(Path(__file__).parent))
from airflow_venv import ensure_airflow_venv

LOOPLINE = str(Path(sys.executable).with_name("loopline"))
DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(sys.argv[1])
dags = {
    dag_id: {
        "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "params": {k: dag.params[k] for k in dag.params},
        "types": {k: dag.params.get_param(k).schema.get("type") for k in dag.params},
    }
    for dag_id, dag in bag.dags.items()
}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Airflow's bin folder and environment: standalone, SQLite metadata in a temp home."""
    bin_dir = ensure_airflow_venv()
    home = tmp_path_factory.mktemp("airflow")
    (home / "dags").mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    yield {"bin": bin_dir, "env": env, "dags": home / "dags"}


def run(command: list[str], env: dict[str, str], timeout: int = 300) -> str:
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{command[:3]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done.stdout


def test_the_dag_imports_with_the_pipelines_tasks_edges_and_params(
    airflow: dict[str, Any], tmp_path: Path
) -> None:
    expected = {}
    for template in ("tabular", "sentiment"):
        project = tmp_path / template
        write_template(project, template)
        settings = load_settings(project)
        write_airflow(
            export_plan(settings, template, loopline=LOOPLINE),
            airflow["dags"] / f"{template}.py",
        )
        name, pipe = resolve_pipeline(settings, template)
        expected[f"loopline_{template}"] = pipe.build(**settings.params.get(name, {}))
    found = json.loads(
        run([str(airflow["bin"] / "python"), "-c", DAGBAG, str(airflow["dags"])], airflow["env"])
        .strip()
        .splitlines()[-1]
    )
    assert found["errors"] == {}
    assert set(found["dags"]) == set(expected)
    for dag_id, dag in expected.items():
        got = found["dags"][dag_id]
        assert got["tasks"] == {n.name: sorted(u.name for u in n.upstream) for n in dag.nodes}
        assert got["params"] == dag.params
    assert found["dags"]["loopline_tabular"]["types"] == {
        "source": "string",
        "model_name": "string",
        "seed": "integer",
    }
    assert found["dags"]["loopline_sentiment"]["types"]["gold"] == ["null", "string"]


def test_parameters_reach_the_command_unsplit_and_unset_ones_are_left_out(
    tmp_path: Path,
) -> None:
    """The generated ARGS, expanded by bash as Airflow's BashOperator does."""
    write_template(tmp_path / "p", "sentiment")
    source = airflow_dag(export_plan(load_settings(tmp_path / "p"), "sentiment"))
    args: dict[str, Any] = {}
    exec(_constants(source), args)
    env = {
        **os.environ,
        "LOOPLINE_RUN_ID": "manual__2026 x",
        "LOOPLINE_PARAM_gold": "",  # what the template gives for None
        "LOOPLINE_PARAM_source": "data/my tweets.csv",
    }
    words = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {args['ARGS']}"], env=env, capture_output=True, text=True
    ).stdout.splitlines()
    assert words[:4] == ["--run-id", "manual__2026 x", "--param", "source=data/my tweets.csv"]
    assert not any(w.startswith("gold=") for w in words)
    env["LOOPLINE_PARAM_gold"] = "gold set.csv"
    words = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {args['ARGS']}"], env=env, capture_output=True, text=True
    ).stdout.splitlines()
    assert "gold=gold set.csv" in words


def _constants(source: str) -> str:
    """The module-level assignments of the generated file (no Airflow needed for them)."""
    lines = source.split("\nwith DAG(")[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("COMMAND = "))
    return "\n".join(lines[start:])


def test_bad_requests_are_clear_errors(tmp_path: Path) -> None:
    write_template(tmp_path / "p", "tabular")
    plan = export_plan(load_settings(tmp_path / "p"), "tabular")
    with pytest.raises(LooplineError, match="not a valid Airflow DAG id"):
        airflow_dag(plan, dag_id="my dag")
    with pytest.raises(LooplineError, match=r"should end in \.py"):
        write_airflow(plan, tmp_path / "dag.txt")
    assert not (tmp_path / "dag.txt").exists()


def _outputs(project: Path, run_id: str) -> dict[str, dict[str, str]]:
    store = MetadataStore(load_settings(project).metadata_url or "", create=False)
    try:
        return store.step_outputs(run_id)
    finally:
        store.close()


@pytest.mark.slow
def test_airflow_dags_test_runs_the_pipeline_like_loopline_run(
    airflow: dict[str, Any], tmp_path: Path
) -> None:

    orchestrated, plain = tmp_path / "orchestrated", tmp_path / "plain"
    for project in (orchestrated, plain):
        write_template(project, "tabular")
    # The plain run goes on beside Airflow's (the two share nothing but the machine).
    plain_run = subprocess.Popen(
        [LOOPLINE, "-C", str(plain), "run", "tabular", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        write_airflow(
            export_plan(load_settings(orchestrated), "tabular", loopline=LOOPLINE),
            airflow["dags"] / "tabular.py",
        )
        run([str(airflow["bin"] / "airflow"), "db", "migrate"], airflow["env"])
        log = run(
            [str(airflow["bin"] / "airflow"), "dags", "test", "loopline_tabular"],
            airflow["env"],
            timeout=600,
        )
        assert "state=success" in log
        reference = json.loads(plain_run.communicate(timeout=300)[0])
        assert plain_run.returncode == 0
    finally:
        plain_run.kill()  # ended already, unless Airflow's part failed

    store = MetadataStore(load_settings(orchestrated).metadata_url or "", create=False)
    runs = store.list_runs()
    assert len(runs) == 1  # one Loopline run for the DAG run, closed by its last task
    run_row = store.get_run(runs[0]["id"])
    assert run_row["status"] == "completed" and run_row["executor"] == "orchestrated"
    assert run_row["id"].startswith("manual__")
    steps = {s["step"]: s for s in run_row["steps"]}
    assert set(steps) == set(reference["steps"])
    assert {s["status"] for s in steps.values()} == {"completed"}
    # The registered model's lineage points at this run and the data it was trained on.
    version = store.model_version("fraud", "1")
    assert version is not None and version["run_id"] == run_row["id"]
    assert version["dataset_version"] == "transactions:v1"
    store.close()

    outputs = _outputs(orchestrated, run_row["id"])
    expected = {name: s["outputs"] for name, s in reference["steps"].items()}
    # Every step's outputs, the model's included, have the plain run's hashes: each task
    # read its inputs back from the store and computed the same bytes. Two outputs hold
    # the time they were made: register's (its run and time) and the reference profile
    # (its created_at), the same otherwise.
    differing = {name for name in expected if outputs[name] != expected[name]}
    assert differing <= {"register", "profile"}
    assert outputs["train"] == expected["train"]
    mine = ArtifactStore(str(orchestrated / ".loopline" / "artifacts"))
    theirs = ArtifactStore(str(plain / ".loopline" / "artifacts"))
    profiles = [
        store.load(found["profile"]["output"])
        for store, found in ((mine, outputs), (theirs, expected))
    ]
    for profile in profiles:
        profile.pop("created_at")
    assert profiles[0] == profiles[1]

    # Step runs and full runs share cache keys: a plain run now reuses every step.
    again = json.loads(
        run([LOOPLINE, "-C", str(orchestrated), "run", "tabular", "--json"], {**os.environ})
    )
    assert again["cache_hits"] == len(expected)
    assert {n: s["outputs"] for n, s in again["steps"].items()} == outputs
