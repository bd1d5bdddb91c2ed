"""One step at a time (`loopline run PIPELINE --step NAME --run-id ID`), as orchestrator
tasks run a pipeline: same artifacts, cache and records as a full run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopline import pipeline, step
from loopline.config import load_settings
from loopline.core.metadata import MetadataStore, run_id_for
from loopline.core.runner import Runner
from loopline.errors import LooplineError, PipelineError, StepFailed

FAIL = {"on": False}


@step(dataset="numbers")
def make(n: int = 5) -> list[int]:
    return list(range(n))


@step(outputs=("low", "high"))
def halves(xs: list[int]) -> tuple[list[int], list[int]]:
    return xs[: len(xs) // 2], xs[len(xs) // 2 :]


@step
def total(low: list[int], high: list[int], scale: int = 1) -> int:
    if FAIL["on"]:
        raise ValueError("boom")
    return (sum(low) + sum(high)) * scale


@pipeline
def numbers(n: int = 5, scale: int = 1) -> None:
    low, high = halves(make(n))
    total(low, high, scale=scale)


STEPS = ["make", "halves", "total"]


@pytest.fixture
def settings(project: Path) -> Any:
    FAIL["on"] = False
    return load_settings(project)


def run_steps(settings: Any, run_id: str, **params: Any) -> dict[str, Any]:
    return {
        name: numbers.run_step(name, run_id=run_id, settings=settings, **params) for name in STEPS
    }


def test_step_by_step_gives_the_full_runs_artifacts_and_one_completed_run(settings: Any) -> None:
    full = numbers.run(settings, n=6)
    store = MetadataStore(settings.metadata_url)
    given = "manual__2026-11-30T13:31:22.234713+00:00@loopline_numbers"
    results = {}
    for name in STEPS:
        results[name] = numbers.run_step(name, run_id=given, settings=settings, n=6, scale=1)
        run = store.get_run(run_id_for(given))
        # The run stays open until its last step is in; no pid, so it never shows as killed.
        assert run["status"] == ("completed" if name == "total" else "running")
    assert {r.run_id for r in results.values()} == {run_id_for(given)}
    assert [r.status for r in results.values()] == ["running", "running", "completed"]
    for name in STEPS:
        assert list(results[name].steps) == [name]  # the upstream steps ran elsewhere
        assert results[name].steps[name].outputs == full.steps[name].outputs
        assert results[name].steps[name].status == "cached"  # same keys as the full run
    run = store.get_run(run_id_for(given))
    assert run["pipeline"] == "numbers" and run["executor"] == "orchestrated"
    assert sorted(s["step"] for s in run["steps"]) == sorted(STEPS)
    # Lineage edges are recorded as in a full run: total read both halves.
    total_row = next(s for s in run["steps"] if s["step"] == "total")
    assert total_row["inputs"] == {
        "low": full.steps["halves"].outputs["low"],
        "high": full.steps["halves"].outputs["high"],
    }
    assert results["make"].steps["make"].dataset_version == full.steps["make"].dataset_version
    store.close()


def test_steps_compute_when_nothing_is_cached_and_a_full_run_then_hits(settings: Any) -> None:
    results = run_steps(settings, "first", n=7)
    assert all(r.steps[name].status == "completed" for name, r in results.items())
    assert results["total"].load("total") == 21
    full = numbers.run(settings, n=7)
    assert full.cache_hits == len(STEPS)
    assert full.steps["total"].outputs == results["total"].steps["total"].outputs
    # --no-cache runs the step again, recording a completed step run.
    again = numbers.run_step("total", run_id="first", settings=settings, cache=False, n=7)
    assert again.steps["total"].status == "completed"


def test_a_step_whose_inputs_are_missing_records_nothing(settings: Any) -> None:
    with pytest.raises(PipelineError, match=r"needs the outputs of 'halves'.*run r1"):
        numbers.run_step("total", run_id="r1", settings=settings)
    store = MetadataStore(settings.metadata_url)
    assert store.list_runs() == []
    with pytest.raises(PipelineError, match="has no step 'nope'"):
        numbers.run_step("nope", run_id="r1", settings=settings)
    store.close()


def test_one_run_id_cannot_mix_parameters(settings: Any) -> None:
    numbers.run_step("make", run_id="r2", settings=settings, n=3)
    with pytest.raises(LooplineError, match="belongs to pipeline 'numbers' with parameters"):
        numbers.run_step("halves", run_id="r2", settings=settings, n=4)


def test_a_failing_step_fails_the_run_and_a_retry_completes_it(settings: Any) -> None:
    run_steps_until = STEPS[:2]
    for name in run_steps_until:
        numbers.run_step(name, run_id="r3", settings=settings)
    FAIL["on"] = True
    with pytest.raises(StepFailed, match="step 'total' failed: ValueError: boom"):
        numbers.run_step("total", run_id="r3", settings=settings)
    store = MetadataStore(settings.metadata_url)
    run = store.get_run("r3")
    assert run["status"] == "failed" and "boom" in run["error"]
    FAIL["on"] = False  # the orchestrator retries the task
    numbers.run_step("total", run_id="r3", settings=settings)
    run = store.get_run("r3")
    assert run["status"] == "completed" and run["error"] is None
    assert sorted(s["status"] for s in run["steps"] if s["step"] == "total") == [
        "completed",
        "failed",
    ]
    store.close()


@pytest.mark.postgres
def test_parallel_first_steps_share_one_run_on_postgresql(project: Path, postgres_url: str) -> None:
    """Two root steps of one run arriving at once (as parallel tasks do) on PostgreSQL:
    one creates the run, the other joins it."""
    from concurrent.futures import ThreadPoolExecutor

    settings = load_settings(project, metadata_url=postgres_url)

    @pipeline
    def pair(n: int = 3) -> None:
        make(n)
        make(n + 1)

    with ThreadPoolExecutor(2) as pool:
        done = list(
            pool.map(lambda s: pair.run_step(s, run_id="p1", settings=settings), ["make", "make_2"])
        )
    assert [r.status for r in done].count("completed") >= 1
    store = MetadataStore(postgres_url)
    run = store.get_run("p1")
    assert run["status"] == "completed"
    assert sorted(s["step"] for s in run["steps"]) == ["make", "make_2"]
    store.close()


def test_run_step_without_a_run_id_starts_a_new_run(settings: Any) -> None:
    runner = Runner(settings)
    try:
        result = runner.run_step(numbers.build(), "make")
    finally:
        runner.close()
    assert len(result.run_id) == 16 and result.status == "running"


def test_orchestrator_run_ids_become_stable_safe_ids() -> None:
    airflow = "manual__2026-11-30T13:31:22.234713+00:00@loopline_tabular"
    assert run_id_for(airflow) == run_id_for(airflow)
    assert len(run_id_for(airflow)) <= 32
    assert run_id_for(airflow).startswith("manual__2026-11-30T-")
    assert run_id_for(airflow) != run_id_for(airflow.replace("tabular", "sentiment"))
    kfp_job = "0b6c2a0e-4a8e-4b7e-9c1e-3f9c9a3d6c11"  # 36 characters: too long as it is
    assert run_id_for(kfp_job).startswith("0b6c2a0e-4a8e-4b7e-") and len(run_id_for(kfp_job)) <= 32
    assert run_id_for("my-run.1") == "my-run.1"
    with pytest.raises(LooplineError, match="empty"):
        run_id_for("  ")


PIPELINE_FILE = """
from loopline import pipeline, step


@step
def make(n: int = 3) -> list[int]:
    return list(range(n))


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@pipeline
def numbers(n: int = 3) -> None:
    total(make(n))
"""


def loopline(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", "-C", str(project), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_command_line_runs_one_step(project: Path) -> None:
    (project / "pipeline.py").write_text(PIPELINE_FILE)
    (project / "loopline.yaml").write_text("pipelines:\n  numbers: pipeline.py:numbers\n")
    first = loopline(project, "run", "numbers", "--step", "make", "--run-id", "job 1", "--json")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["run_id"] == run_id_for("job 1") and made["status"] == "running"
    assert list(made["steps"]) == ["make"]
    done = loopline(
        project, "run", "numbers", "--step", "total", "--run-id", "job 1", "-p", "n=3", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    for args, message in [
        (["--run-id", "x"], "--run-id needs --step"),
        (["--step", "total", "--run-id", "job 2"], "needs the outputs of 'make'"),
        (["--step", "make", "--executor", "processes"], "--executor does not apply to --step"),
    ]:
        bad = loopline(project, "run", "numbers", *args)
        assert bad.returncode == 2, bad.stderr
        assert message in bad.stderr and "Traceback" not in bad.stderr
