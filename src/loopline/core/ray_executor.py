"""The Ray executor: each step a Ray task, on a local Ray instance or on a cluster.

A step's task runs the same body as the process pool (``_run_in_process`` of
:mod:`loopline.core.runner`, handed in by the runner: load the inputs from the artifact
store, call the function, save the outputs to the store), so a step may run on any node
that reaches the artifact store. The driver keeps everything else (scheduling, cache
look-ups, recording, lineage), so a Ray run gets the cache keys and artifact hashes of a
thread run. Ray is imported only when a run uses this executor.

Preemption: when the worker process or the node running a step dies (a reclaimed spot
instance, an out-of-memory kill), the step is submitted again, up to its ``retries``
(default :data:`DEFAULT_RETRIES`), and Ray places it on any node with the resources it
asks for. The runner resubmits, rather than Ray's own ``max_retries``, because only then
does it learn how many attempts a step took and why each was lost (Ray reports that
through its State API alone, which needs the dashboard); both are recorded on the step
run. A step that raises is not retried: it fails the run, as with threads.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from loopline.errors import ConfigError, LooplineError

# Ray's own default for a task's max_retries.
DEFAULT_RETRIES = 3
# Steps exchange data through the artifact store, so the object store of a local instance
# carries only their small return values: no need for Ray's default of 30% of memory.
_LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2
# How long to wait for a cluster's head to answer before saying so (ray.init would retry
# for minutes).
_CONNECT_TIMEOUT_S = 10.0


class StepLost(LooplineError):
    """A step's worker or node died on every attempt."""


@dataclass
class Placement:
    """Where a step ran and what became of its earlier attempts (kept on the step run)."""

    node_id: str | None = None
    worker: str | None = None  # "host pid N"
    attempts: int = 0
    lost: list[str] = field(default_factory=list)  # why each lost attempt was lost

    def columns(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`MetadataStore.record_step` for this placement."""
        return {
            "node_id": self.node_id,
            "worker": self.worker,
            "attempts": self.attempts or None,
            "retries": self.lost or None,
        }


def _on_worker(body: Callable[..., Any], *args: Any) -> tuple[Any, str, str]:
    """The Ray task: the step's body, and the node and process that ran it."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    return body(*args), node, f"{socket.gethostname()} pid {os.getpid()}"


class RayExecutor:
    """Runs step bodies as Ray tasks; connects to Ray (or starts it) when created.

    ``address`` None starts a local Ray instance in this process, sized to this machine's
    cores; otherwise it joins the cluster there. Where Ray is already initialised in this
    process (by the caller, or by an earlier run), that instance is used as it is. A local
    instance stays up until the process exits, so later runs in the same process skip
    Ray's start-up (seconds).
    """

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ModuleNotFoundError:
            raise ConfigError(
                "the ray executor needs Ray, which is not installed",
                hint="pip install 'loopline[ray]', or run with --executor threads",
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            # Loopline does not send Ray's usage statistics on its users' behalf.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if address is None:
                ray.init(
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    object_store_memory=_LOCAL_OBJECT_STORE_BYTES,
                    logging_level=logging.WARNING,
                )
            else:
                _check_reachable(address)
                try:
                    ray.init(address=address, logging_level=logging.WARNING)
                except ConnectionError as exc:  # "auto" with no cluster on this machine
                    raise ConfigError(
                        f"cannot join the Ray cluster at ray_address {address!r}: {exc}",
                        hint="start one with `ray start --head`, or set ray_address to its "
                        "head's HOST:PORT",
                    ) from None
        self._task = ray.remote(_on_worker)
        self._lost = (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.OutOfMemoryError,
        )

    @property
    def parallelism(self) -> int:
        """How many steps the cluster can run at once: its CPUs."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def run(
        self,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        name: str,
        resources: dict[str, Any],
        retries: int | None,
        placement: Placement,
    ) -> Any:
        """``body(*args)`` as a Ray task named ``name`` with ``resources`` (a step's, in
        Ray's option names); resubmitted up to ``retries`` times when lost.

        ``placement`` is filled in as attempts go, so that a failed step is recorded with
        its attempts too. A step that raised re-raises the step's own exception.
        """
        ray = self._ray
        retries = DEFAULT_RETRIES if retries is None else retries
        # max_retries=0: a lost attempt comes back here, to be counted and resubmitted.
        task = self._task.options(**resources, max_retries=0, name=name)
        while True:
            placement.attempts += 1
            try:
                value, placement.node_id, placement.worker = ray.get(task.remote(body, *args))
                return value
            except self._lost as exc:
                why = f"attempt {placement.attempts}: {type(exc).__name__}: {_first_line(exc)}"
                placement.lost.append(why)
                if placement.attempts > retries:
                    raise StepLost(
                        f"step '{name}' lost its worker or node on every attempt "
                        f"({placement.attempts}; last: {why})",
                        hint="raise the step's retries (@step(retries=N)), or check the "
                        "cluster's nodes (`ray status`)",
                    ) from exc
            except ray.exceptions.RayTaskError as exc:
                # The step's own exception, as the thread executor would raise it; Ray's
                # text (with the remote traceback) stays attached as its cause.
                cause = exc.cause
                if isinstance(cause, BaseException):
                    raise cause from exc
                raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _check_reachable(address: str) -> None:
    """Fail fast with a clear error when a cluster's head does not answer."""
    if address in ("auto", "local"):
        return  # Ray finds (or fails to find) the local cluster itself, quickly
    split = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = split.hostname, split.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConfigError(
            f"ray_address {address!r} is not HOST:PORT",
            hint="use the head's address as `ray start --head` printed it, e.g. "
            "10.0.0.5:6379, or 'auto' for the cluster started on this machine",
        )
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
            hint="start its head with `ray start --head --port PORT`, or check ray_address "
            "in loopline.yaml (LOOPLINE_RAY_ADDRESS)",
        ) from None
