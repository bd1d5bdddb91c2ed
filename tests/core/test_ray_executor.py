"""The Ray executor on a local Ray instance: same artifacts and cache as threads, where each
step ran, a worker killed mid-step retried, failures as with threads.

One local Ray instance serves the whole module (Ray takes seconds to start on 2 cores); it
is started by the executor itself, as `loopline run --executor ray` starts it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopline import pipeline, step
from loopline.config import load_settings
from loopline.core.metadata import MetadataStore
from loopline.core.ray_executor import RayExecutor, StepLost
from loopline.errors import DataError, PipelineError, StepFailed
from loopline.steps import evaluate, read_table, split, train

REPO = Path(__file__).resolve().parents[2]


# -- steps and pipelines (module level: Ray workers import them by module or file) --------
@pipeline
def spam(source: str) -> None:
    """Real comments, library steps: read, split, train a TF-IDF model, evaluate it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    model = Pipeline(
        [
            ("text", ColumnTransformer([("tfidf", TfidfVectorizer(), "CONTENT")])),
            ("clf", LogisticRegression(max_iter=300)),
        ]
    )
    data = read_table(source, dataset="comments", columns=["CONTENT", "CLASS"])
    train_set, test_set = split(data, by="stratified", label="CLASS", seed=0)
    evaluate(train(train_set, model=model, target="CLASS"), test_set, target="CLASS")


@step
def numbers(n: int) -> list[int]:
    return list(range(n))


@step(retries=2)
def preempted_square(xs: list[int], marker: str) -> list[int]:
    """SIGKILLs its own worker on the first attempt, as a reclaimed spot instance would."""
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return [x * x for x in xs]


@step(retries=0)
def always_killed(xs: list[int]) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return len(xs)


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@step
def explode(xs: list[int]) -> int:
    raise ValueError(f"boom at {len(xs)}")


@step
def bad_data(xs: list[int]) -> int:
    raise DataError("column 'x' is missing", hint="add the column x")


@step(resources={"num_cpus": 2})
def assigned() -> dict[str, float]:
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


@pipeline
def preemption(n: int, marker: str) -> None:
    total(preempted_square(numbers(n), marker))


@pipeline
def lost(n: int) -> None:
    total(always_killed(numbers(n)))


@pipeline
def failing(n: int) -> None:
    total(explode(numbers(n)))


@pipeline
def bad_input(n: int) -> None:
    bad_data(numbers(n))


@pipeline
def two_cpus() -> None:
    assigned()


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance started by the executor, its session files in a temp folder."""
    import ray

    temp = Path(tempfile.mkdtemp(prefix="lr-"))  # short: Ray's socket paths have a limit
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(temp)
    try:
        RayExecutor()
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp, ignore_errors=True)


def step_rows(settings: Any, run_id: str) -> dict[str, dict[str, Any]]:
    store = MetadataStore(settings.metadata_url)
    try:
        return {s["step"]: s for s in store.get_run(run_id)["steps"]}
    finally:
        store.close()


# -- tests -------------------------------------------------------------------------------
def test_same_artifacts_as_threads_and_a_second_run_is_all_cache_hits(
    ray_instance: Any, tmp_path: Path, shared_data: Path
) -> None:
    source = str(shared_data / "spam_youtube" / "Youtube01-Psy.csv")
    (tmp_path / "threads").mkdir()
    (tmp_path / "ray").mkdir()
    threads = load_settings(tmp_path / "threads")
    on_ray = load_settings(tmp_path / "ray")

    by_threads = spam.run(threads, executor="threads", source=source)
    by_ray = spam.run(on_ray, executor="ray", source=source)

    assert by_ray.status == "completed"
    hashes = {name: s.outputs for name, s in by_ray.steps.items()}
    expected = {name: s.outputs for name, s in by_threads.steps.items()}
    # A trained model's pickle still differs: pickle writes a string once and refers back
    # to it where the same object appears again, and whether two equal strings of the
    # fitted pipeline are one object depends on the process's history (here: the estimator
    # handed to the Ray worker was unpickled there). So the model is compared by its recipe
    # (the cache key of the step that trained it) and by what it predicts (evaluate's
    # metrics, whose own key depends on the model's bytes).
    hashes.pop("train")
    expected.pop("train")
    assert hashes == expected
    assert by_ray.load("evaluate") == by_threads.load("evaluate")
    rows = step_rows(on_ray, by_ray.run_id)
    thread_rows = step_rows(threads, by_threads.run_id)
    for name in ("read_table", "split", "train"):
        assert rows[name]["cache_key"] == thread_rows[name]["cache_key"]

    # Every step ran in a Ray worker, not here, and says where.
    node = ray_instance.get_runtime_context().get_node_id()
    for name in ("read_table", "split", "train", "evaluate"):
        assert rows[name]["node_id"] == node
        assert rows[name]["worker"].startswith(os.uname().nodename)
        assert rows[name]["worker"] != f"{os.uname().nodename} pid {os.getpid()}"
        assert rows[name]["attempts"] == 1
        assert rows[name]["retries"] == []
    # Lineage as with threads: the dataset version recorded for the data read.
    assert by_ray.steps["read_table"].dataset_version == 1
    assert rows["split"]["inputs"] == {"data": hashes["read_table"]["output"]}

    again = spam.run(on_ray, executor="ray", source=source)
    assert again.cache_hits == len(again.steps) == 4
    assert {name: s.outputs for name, s in again.steps.items()} == {
        name: s.outputs for name, s in by_ray.steps.items()
    }
    assert all(row["worker"] is None for row in step_rows(on_ray, again.run_id).values())


def test_a_worker_killed_mid_step_is_retried_and_the_run_completes(
    ray_instance: Any, project: Path, tmp_path: Path
) -> None:
    settings = load_settings(project)
    marker = tmp_path / "first-attempt"

    result = preemption.run(settings, executor="ray", n=5, marker=str(marker))

    assert result.status == "completed"
    assert result.load("total") == 30
    killed_pid = int(marker.read_text())
    row = step_rows(settings, result.run_id)["preempted_square"]
    assert row["status"] == "completed"
    assert row["attempts"] == 2
    assert len(row["retries"]) == 1
    assert row["retries"][0].startswith("attempt 1: WorkerCrashedError")
    assert not row["worker"].endswith(f"pid {killed_pid}")  # a fresh worker ran it
    assert step_rows(settings, result.run_id)["total"]["attempts"] == 1

    # `loopline runs show` says where each step ran and why one was retried.
    shown = subprocess.run(
        [sys.executable, "-m", "loopline", "-C", str(project), "runs", "show", result.run_id],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "ran on" in shown.stdout
    assert row["worker"] in shown.stdout
    assert "retried preempted_square: attempt 1: WorkerCrashedError" in shown.stdout


def test_a_step_lost_on_every_attempt_fails_the_run_with_its_attempts(
    ray_instance: Any, project: Path
) -> None:
    settings = load_settings(project)

    with pytest.raises(StepFailed) as failed:
        lost.run(settings, executor="ray", n=3)

    assert isinstance(failed.value.cause, StepLost)
    assert "step 'always_killed' lost its worker or node on every attempt (1; last: " in str(
        failed.value
    )
    rows = step_rows(settings, failed.value.run_id)
    assert rows["always_killed"]["status"] == "failed"
    assert rows["always_killed"]["attempts"] == 1
    assert rows["always_killed"]["retries"][0].startswith("attempt 1: WorkerCrashedError")
    assert "total" not in rows  # nothing downstream ran


def test_a_step_that_raises_fails_as_with_threads_and_is_not_retried(
    ray_instance: Any, tmp_path: Path
) -> None:
    (tmp_path / "threads").mkdir()
    (tmp_path / "ray").mkdir()
    with pytest.raises(StepFailed) as by_threads:
        failing.run(load_settings(tmp_path / "threads"), executor="threads", n=4)
    settings = load_settings(tmp_path / "ray")
    with pytest.raises(StepFailed) as by_ray:
        failing.run(settings, executor="ray", n=4)

    assert by_ray.value.message == by_threads.value.message
    assert "step 'explode' failed: ValueError: boom at 4" in str(by_ray.value)
    assert isinstance(by_ray.value.cause, ValueError)
    rows = step_rows(settings, by_ray.value.run_id)
    assert rows["explode"]["status"] == "failed"
    assert rows["explode"]["attempts"] == 1
    assert rows["explode"]["retries"] == []
    assert "ValueError: boom at 4" in rows["explode"]["error"]
    assert "total" not in rows

    # A user error raised in a worker keeps its message and hint.
    with pytest.raises(StepFailed) as user_error:
        bad_input.run(settings, executor="ray", n=2)
    assert isinstance(user_error.value.cause, DataError)
    assert user_error.value.hint == "add the column x"


def test_step_resources_reach_ray(ray_instance: Any, project: Path) -> None:
    result = two_cpus.run(load_settings(project), executor="ray")
    assert result.load("assigned") == {"CPU": 2.0}


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"gpus": 1}, "unknown resource 'gpus'"),
        ({"num_cpus": -1}, "resource 'num_cpus' must be a number >= 0, found -1"),
        ({"num_gpus": "one"}, "resource 'num_gpus' must be a number >= 0"),
        ({"resources": ["worker"]}, "'resources' must map custom resource names"),
        ({"resources": {"worker": True}}, "resource 'worker' must be a number >= 0"),
    ],
)
def test_bad_resources_are_a_clear_error(resources: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineError, match=message) as raised:
        step(resources=resources)(total.fn)
    assert "num_cpus, num_gpus, memory, resources" in (raised.value.hint or "")


def test_a_thread_run_does_not_import_ray(project: Path) -> None:
    code = (
        "import sys\n"
        "from loopline.config import load_settings\n"
        "from loopline.core.runner import Runner\n"
        "from loopline.core.dag import build_dag\n"
        "from loopline import step\n"
        "@step\n"
        "def one() -> int:\n"
        "    return 1\n"
        f"runner = Runner(load_settings({str(project)!r}))\n"
        "runner.run(build_dag('p', {}, one))\n"
        "print('ray' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"


def test_bad_retries_are_a_clear_error() -> None:
    with pytest.raises(PipelineError, match="retries must be a whole number >= 0"):
        step(retries=-1)(total.fn)


def test_cli_runs_on_the_cluster_named_in_loopline_yaml(ray_instance: Any, project: Path) -> None:
    """`executor: ray` and `ray_address` in loopline.yaml: the CLI joins that cluster."""
    address = ray_instance.get_runtime_context().gcs_address
    (project / "flow.py").write_text(
        "from loopline import pipeline, step\n\n\n"
        "@step\ndef make(n: int) -> list[int]:\n    return list(range(n))\n\n\n"
        "@step\ndef add(xs: list[int]) -> int:\n    return sum(xs)\n\n\n"
        "@pipeline\ndef flow(n: int = 4) -> None:\n    add(make(n))\n"
    )
    (project / "loopline.yaml").write_text(
        f"executor: ray\nray_address: '{address}'\npipelines:\n  flow: flow.py:flow\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "loopline", "--project", str(project), "run", "flow", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed"
    settings = load_settings(project)
    rows = step_rows(settings, summary["run_id"])
    node = ray_instance.get_runtime_context().get_node_id()
    assert {row["node_id"] for row in rows.values()} == {node}
    store = MetadataStore(settings.metadata_url)
    try:
        assert store.get_run(summary["run_id"])["executor"] == "ray"
    finally:
        store.close()


def test_unreachable_cluster_is_a_clear_error_and_records_no_run(project: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (project / "flow.py").write_text(
        "from loopline import pipeline, step\n\n\n"
        "@step\ndef make(n: int) -> int:\n    return n\n\n\n"
        "@pipeline\ndef flow(n: int = 4) -> None:\n    make(n)\n"
    )
    (project / "loopline.yaml").write_text("pipelines:\n  flow: flow.py:flow\n")
    loopline = [sys.executable, "-m", "loopline", "--project", str(project), "run", "flow"]
    done = subprocess.run(
        [*loopline, "--executor", "ray"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LOOPLINE_RAY_ADDRESS": f"127.0.0.1:{port}"},
        check=False,
    )
    assert done.returncode == 2
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in done.stderr
    assert "ray start --head" in done.stderr
    assert "Traceback" not in done.stderr
    store = MetadataStore(load_settings(project).metadata_url)
    try:
        assert store.list_runs() == []
    finally:
        store.close()

    bad = subprocess.run(
        [*loopline, "--executor", "dask"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad.returncode == 2
    assert "unknown executor 'dask'" in bad.stderr
    assert "threads, processes or ray" in bad.stderr
