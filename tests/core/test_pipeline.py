"""The runner: caching by code/params/inputs, parallelism, failures, resumption."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loopline import pipeline, step
from loopline.config import load_settings
from loopline.core.dag import ArtifactInfo
from loopline.errors import PipelineError, StepFailed

CALLS: list[str] = []


@step(dataset="numbers")
def make(n: int = 5) -> list[int]:
    CALLS.append("make")
    return list(range(n))


@step(outputs=("low", "high"))
def halves(xs: list[int]) -> tuple[list[int], list[int]]:
    CALLS.append("halves")
    return xs[: len(xs) // 2], xs[len(xs) // 2 :]


@step
def total(low: list[int], high: list[int], scale: int = 1) -> int:
    CALLS.append("total")
    return (sum(low) + sum(high)) * scale


@pipeline
def numbers(n: int = 5, scale: int = 1) -> None:
    low, high = halves(make(n))
    total(low, high, scale=scale)


@pytest.fixture
def settings(project: Path) -> Any:
    CALLS.clear()
    return load_settings(project)


def statuses(result: Any) -> dict[str, str]:
    return {name: s.status for name, s in result.steps.items()}


def test_runs_and_loads_outputs(settings: Any) -> None:
    result = numbers.run(settings, n=6)
    assert result.status == "completed"
    assert result.load("total") == 15
    assert result.load("halves", "high") == [3, 4, 5]


def test_second_run_is_all_cache_hits_and_runs_nothing(settings: Any) -> None:
    first = numbers.run(settings, n=6)
    CALLS.clear()
    second = numbers.run(settings, n=6)
    assert statuses(second) == {"make": "cached", "halves": "cached", "total": "cached"}
    assert CALLS == []
    assert second.output_hash("total") == first.output_hash("total")
    assert second.load("total") == 15  # loaded back from the artifact store


def test_param_change_invalidates_only_that_step_and_downstream(settings: Any) -> None:
    numbers.run(settings, n=6)
    CALLS.clear()
    result = numbers.run(settings, n=6, scale=2)
    assert statuses(result) == {"make": "cached", "halves": "cached", "total": "completed"}
    assert result.load("total") == 30
    CALLS.clear()
    result = numbers.run(settings, n=8, scale=2)
    assert CALLS == ["make", "halves", "total"]


def test_same_output_from_rerun_step_keeps_downstream_cached(settings: Any) -> None:
    @step
    def source(text: str) -> str:
        return text.strip()

    @step
    def shout(text: str) -> str:
        CALLS.append("shout")
        return text.upper()

    @pipeline
    def p(text: str) -> None:
        shout(source(text))

    p.run(settings, text="hi")
    CALLS.clear()
    result = p.run(settings, text="  hi  ")  # new parameter, same output content
    assert statuses(result) == {"source": "completed", "shout": "cached"}
    assert CALLS == []


def test_code_change_invalidates_step(settings: Any) -> None:
    def build(offset: int) -> Any:
        namespace: dict[str, Any] = {"step": step, "pipeline": pipeline}
        exec(
            "@step\n"
            "def add(x: int = 1) -> int:\n"
            f"    return x + {offset}\n"
            "@pipeline\n"
            "def p() -> None:\n"
            "    add()\n",
            namespace,
        )
        return namespace["p"]

    assert build(1).run(settings).load("add") == 2
    assert statuses(build(1).run(settings)) == {"add": "cached"}
    changed = build(5).run(settings)
    assert statuses(changed) == {"add": "completed"}
    assert changed.load("add") == 6


def test_file_parameter_is_hashed_by_content(settings: Any, tmp_path: Path) -> None:
    @step
    def read(path: str | Path) -> str:
        return Path(path).read_text()

    @pipeline
    def p(path: str) -> None:
        read(path)

    data = tmp_path / "data.txt"
    data.write_text("one")
    assert p.run(settings, path=str(data)).load("read") == "one"
    assert statuses(p.run(settings, path=str(data))) == {"read": "cached"}
    data.write_text("two")
    result = p.run(settings, path=str(data))
    assert statuses(result) == {"read": "completed"}
    assert result.load("read") == "two"


def test_independent_steps_run_in_parallel(settings: Any) -> None:
    barrier = threading.Barrier(2, timeout=10)

    @step
    def wait_a() -> str:
        barrier.wait()  # only returns if the other step runs at the same time
        return "a"

    @step
    def wait_b() -> str:
        barrier.wait()
        return "b"

    @step
    def join(a: str, b: str) -> str:
        return a + b

    @pipeline
    def p() -> None:
        join(wait_a(), wait_b())

    assert p.run(settings).load("join") == "ab"


def test_failed_step_stops_downstream_and_records_error(settings: Any) -> None:
    @step
    def ok() -> int:
        return 1

    @step
    def boom(x: int) -> int:
        raise ValueError("bad value")

    @step
    def after(x: int) -> int:
        CALLS.append("after")
        return x

    @pipeline
    def p() -> None:
        after(boom(ok()))

    with pytest.raises(StepFailed) as info:
        p.run(settings)
    assert info.value.step == "boom"
    assert "bad value" in str(info.value)
    assert CALLS == []
    from loopline.core.metadata import MetadataStore

    run = MetadataStore(settings.metadata_url).get_run(info.value.run_id)
    assert run["status"] == "failed"
    by_step = {s["step"]: s for s in run["steps"]}
    assert by_step["ok"]["status"] == "completed"
    assert by_step["boom"]["status"] == "failed"
    assert "ValueError: bad value" in by_step["boom"]["error"]
    assert "after" not in by_step


def test_dataset_versions_and_artifact_info(settings: Any) -> None:
    seen: list[ArtifactInfo] = []

    @step
    def describe(data: ArtifactInfo) -> str:
        seen.append(data)
        return data.label

    @pipeline
    def p(n: int) -> None:
        describe(make(n))

    assert p.run(settings, n=3).load("describe") == "numbers:v1"
    assert p.run(settings, n=4).load("describe") == "numbers:v2"
    assert p.run(settings, n=3).load("describe") == "numbers:v1"  # cached
    assert seen[0].hash != seen[1].hash


def test_processes_executor(settings: Any) -> None:
    result = numbers.run(settings, executor="processes", n=10, scale=3)
    assert result.load("total") == 135


@step(executor="processes")
def child_pid() -> int:
    return os.getpid()


@step
def outlived(pid: int) -> bool:
    """Whether the child that ran ``child_pid`` is still there a minute later."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


@pipeline
def child_then_thread() -> None:
    outlived(child_pid())


@pipeline
def child_only() -> None:
    child_pid()


def test_the_child_processes_exit_once_no_step_left_needs_them(settings: Any) -> None:
    # The run does not wait at its end for a child interpreter to shut down (~0.5 s with
    # scikit-learn loaded): the children go while the thread steps after them run.
    result = child_then_thread.run(settings.model_copy(update={"max_workers": 2}))
    assert result.load("child_pid") != os.getpid()
    assert result.load("outlived") is False


def test_with_one_worker_a_process_step_runs_in_a_thread(settings: Any) -> None:
    # The process only keeps a GIL-bound step off the steps beside it: one worker runs none.
    one = settings.model_copy(update={"max_workers": 1})
    assert child_only.run(one).load("child_pid") == os.getpid()
    result = child_only.run(one, executor="processes", cache=False)
    assert result.load("child_pid") != os.getpid()  # asked of the whole run: still processes


def test_pipeline_params_are_checked_and_converted(settings: Any) -> None:
    assert numbers.run(settings, n="4").load("total") == 6  # CLI strings are converted
    with pytest.raises(PipelineError, match="no parameter 'size'"):
        numbers.build(size=3)
    with pytest.raises(PipelineError, match="parameter 'n'"):
        numbers.build(n="many")


def test_wrong_number_of_outputs_is_a_clear_error(settings: Any) -> None:
    @step(outputs=("a", "b"))
    def pair() -> tuple[int, int]:
        return 1  # type: ignore[return-value]

    @pipeline
    def p() -> None:
        pair()

    with pytest.raises(StepFailed, match="declares outputs"):
        p.run(settings)


def test_steps_are_plain_functions_outside_pipelines() -> None:
    assert total([1], [2], scale=2) == 6


def test_using_an_output_as_a_value_is_a_clear_error() -> None:
    @pipeline
    def p() -> None:
        if make(3):
            pass

    with pytest.raises(PipelineError, match="has no value while the pipeline is being built"):
        p.build()


def test_cached_rerun_loads_no_artifact(settings: Any) -> None:
    numbers.run(settings, n=6)
    CALLS.clear()
    result = numbers.run(settings, n=6)
    assert CALLS == []
    assert result.objects == {}  # nothing was read back from the store
