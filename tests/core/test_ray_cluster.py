"""A Ray cluster of two nodes started with `ray start` (a head and a worker, separate
processes, as on two machines): steps land on both, and killing the worker node in the
middle of a step still completes the run, the retry recorded on the step run.

The cluster is configured as README's "Scaling out on Ray" says: `ray start --head` and
`ray start --address`, and `executor: ray` + `ray_address` in loopline.yaml.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loopline.config import load_settings
from loopline.core.metadata import MetadataStore

RAY = str(Path(sys.executable).with_name("ray"))
# Small object stores: steps exchange data through the artifact store.
NODE_ARGS = ["--num-cpus", "1", "--object-store-memory", "80000000", "--disable-usage-stats"]

PIPELINE = '''
"""Steps pinned to the head and to the worker by their custom resources, and a long step
that may run anywhere (the worker, while the head's only CPU is held)."""

import os
import time
from pathlib import Path

import ray

from loopline import pipeline, step


def where() -> str:
    return f"{ray.get_runtime_context().get_node_id()} {os.getpid()}"


@step(resources={"resources": {"head": 1}})
def on_head(n: int) -> list[int]:
    return list(range(n))


@step(resources={"resources": {"worker": 1}})
def on_worker(xs: list[int]) -> list[int]:
    time.sleep(1)  # the head's CPU is taken by hold_head meanwhile
    return [x * 2 for x in xs]


@step(resources={"resources": {"head": 1}})
def hold_head(xs: list[int], release: str) -> int:
    """Keeps the head's CPU busy until the test has killed the worker node, so that the
    long step starts on the worker and its retry can only run once this ends."""
    deadline = time.monotonic() + 120
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(xs)


@step(retries=2)
def long_step(xs: list[int], attempts: str) -> int:
    log = Path(attempts)
    first = not log.exists()
    with log.open("a") as out:
        out.write(where() + "\\n")
    if first:
        time.sleep(120)  # the worker node is killed during this
    return sum(xs)


@pipeline
def spread(n: int, release: str, attempts: str) -> None:
    xs = on_head(n)
    hold_head(xs, release)
    long_step(on_worker(xs), attempts)
'''


@dataclass
class Cluster:
    address: str
    head: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Ray 2.60 turns token authentication on; each node and the driver read the token from the
# user's Ray folder, which another Ray instance of the same test process may rewrite between
# the head's start and the worker's. This two-node stand-in runs on one machine: no tokens.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def start_node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`ray start ... --block` in a session of its own: its process group is the node
    (raylet, workers), so it can be killed or stopped alone."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [RAY, "start", *args, *NODE_ARGS, "--block"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=ENV,
        )


def stop_node(node: subprocess.Popen[bytes]) -> None:
    """End one node's processes (`ray stop` would end every Ray node on the machine,
    those of other test processes included)."""
    if node.poll() is None:
        node.terminate()  # `ray start --block` stops the node's processes
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    # Workers a node left behind are still in its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)


def wait_for(check: object, what: str, timeout: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            found = "\n".join(f"{p.name}:\n{p.read_text()[-2000:]}" for p in logs.glob("*.log"))
            pytest.fail(f"{what} within {timeout:.0f} s\n{found}")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head with a custom resource "head" and a worker node with "worker", one CPU each."""
    temp = Path(tempfile.mkdtemp(prefix="lrc-"))  # short: Ray's socket paths have a limit
    port = free_port()
    # Each node keeps its session files in a folder of its own, as on two machines.
    head_args = ["--head", "--port", str(port), "--include-dashboard=false"]
    head = start_node(
        [*head_args, "--resources", '{"head": 1}', "--temp-dir", str(temp / "head")],
        temp / "head.log",
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: port_open(port) or head.poll() is not None, "head up", 90, temp)
        assert head.poll() is None, (temp / "head.log").read_text()
        worker_args = ["--address", f"127.0.0.1:{port}", "--temp-dir", str(temp / "worker")]
        worker = start_node([*worker_args, "--resources", '{"worker": 1}'], temp / "worker.log")
        yield Cluster(f"127.0.0.1:{port}", head, worker)
    finally:
        for node in (worker, head):
            if node is not None:
                stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)


def test_steps_land_on_both_nodes_and_a_killed_worker_node_is_survived(
    cluster: Cluster, project: Path, tmp_path: Path
) -> None:
    (project / "spread.py").write_text(PIPELINE)
    (project / "loopline.yaml").write_text(
        f"executor: ray\nray_address: '{cluster.address}'\npipelines:\n  spread: spread.py:spread\n"
    )
    release, attempts = tmp_path / "release", tmp_path / "attempts"
    args = ["--param", "n=5", "--param", f"release={release}", "--param", f"attempts={attempts}"]
    with (tmp_path / "run.err").open("wb") as err:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loopline",
                "-C",
                str(project),
                "run",
                "spread",
                "--json",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env=ENV,
        )
    try:
        # The long step starts on the worker node (the head's CPU is held)...
        wait_for(lambda: attempts.exists() or run.poll() is not None, "long step", 150, tmp_path)
        assert run.poll() is None, (tmp_path / "run.err").read_text()
        first_node, first_pid = attempts.read_text().split()
        # ... and the worker node dies under it, as a reclaimed spot instance would.
        os.killpg(cluster.worker.pid, signal.SIGKILL)
        cluster.worker.wait(timeout=30)
        release.touch()
        out, _ = run.communicate(timeout=150)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, (tmp_path / "run.err").read_text()
    summary = json.loads(out)
    assert summary["status"] == "completed"

    settings = load_settings(project)
    store = MetadataStore(settings.metadata_url)
    try:
        steps = {s["step"]: s for s in store.get_run(summary["run_id"])["steps"]}
    finally:
        store.close()
    head_node = steps["on_head"]["node_id"]
    worker_node = steps["on_worker"]["node_id"]
    assert head_node and worker_node and head_node != worker_node
    assert steps["hold_head"]["node_id"] == head_node
    assert first_node == worker_node  # the long step's first attempt ran on the worker

    long_run = steps["long_step"]
    assert long_run["status"] == "completed"
    assert long_run["node_id"] == head_node  # retried elsewhere: on the surviving head
    assert not long_run["worker"].endswith(f"pid {first_pid}")
    # Normally one lost attempt; a resubmission that reached the dead node before the
    # cluster knew it was dead would be a second one, recorded the same way.
    assert long_run["attempts"] >= 2
    assert len(long_run["retries"]) == long_run["attempts"] - 1
    for number, lost in enumerate(long_run["retries"], start=1):
        assert lost.startswith(
            (f"attempt {number}: NodeDiedError", f"attempt {number}: WorkerCrashedError")
        ), lost
    last_node, last_pid = attempts.read_text().splitlines()[-1].split()
    assert (last_node, f"pid {last_pid}") == (head_node, long_run["worker"].split(" ", 1)[1])
