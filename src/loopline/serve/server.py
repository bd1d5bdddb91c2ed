"""Run the prediction app under uvicorn: in the foreground, with worker processes, or in a
background thread.

All of them bind the listening socket themselves before uvicorn starts, so a busy port fails
at once with a clear :class:`LooplineError`, and ``port=0`` yields the real port immediately.

``loopline serve`` goes through :func:`serve_config` with a :class:`ServeConfig`: model
references (never paths), options, and the *names* of the environment variables holding the
admin token and API keys. With ``workers > 1`` the config travels to the worker processes as
JSON in ``LOOPLINE_SERVE_CONFIG``; each worker builds its own app (and loads its own model)
with :func:`app_from_env`, and Prometheus metrics are shared through a fresh
``PROMETHEUS_MULTIPROC_DIR`` that the parent removes at exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

import httpx
import orjson
import uvicorn

from loopline.errors import LooplineError
from loopline.serve.app import AppOptions, create_app

if TYPE_CHECKING:
    from types import TracebackType

    from fastapi import FastAPI

    from loopline.registry.models import LoadedModel, ModelVersionInfo

__all__ = [
    "AppOptions",
    "RunningServer",
    "ServeConfig",
    "app_from_env",
    "build_app",
    "serve",
    "serve_config",
    "start_in_thread",
]

log = logging.getLogger(__name__)

# Seconds uvicorn waits for in-flight requests on shutdown before cutting them off.
_GRACEFUL_SHUTDOWN_S = 10
CONFIG_ENV = "LOOPLINE_SERVE_CONFIG"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_ADMIN_TOKEN_ENV = "LOOPLINE_ADMIN_TOKEN"
DEFAULT_API_KEYS_ENV = "LOOPLINE_API_KEYS"


@dataclass(frozen=True)
class ServeConfig:
    """What ``loopline serve`` serves and how; JSON-able, and free of secrets.

    ``model``/``shadow`` are registry references (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``),
    ``canary`` is ``NAME@ALIAS:PERCENT``. ``options`` are :class:`AppOptions` other than the
    secrets, which are read in each process from the variables ``admin_token_env`` (a
    bearer token) and ``api_keys_env`` (comma-separated keys).
    """

    model: str
    project_root: str | None = None
    canary: str | None = None
    shadow: str | None = None
    log_predictions: bool = True
    admin_token_env: str = DEFAULT_ADMIN_TOKEN_ENV
    api_keys_env: str = DEFAULT_API_KEYS_ENV
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize (for the worker processes' environment)."""
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """The inverse of :meth:`to_json`."""
        return cls(**orjson.loads(text))

    def admin_token(self) -> str | None:
        """The admin token from the environment (None when unset or empty)."""
        return os.environ.get(self.admin_token_env, "").strip() or None

    def api_keys(self) -> list[str]:
        """The API keys from the environment (empty: /predict is open)."""
        raw = os.environ.get(self.api_keys_env, "")
        return [key.strip() for key in raw.split(",") if key.strip()]


def build_app(config: ServeConfig) -> FastAPI:
    """Open the project's registry, metadata store and prediction log; load and wire the models.

    Raises :class:`LooplineError` for a bad canary spec or an unknown model, alias or version.
    """
    from loopline.config import load_settings
    from loopline.core.metadata import MetadataStore
    from loopline.registry.project import open_registry
    from loopline.serve.routing import RegistryModel, parse_canary

    settings = load_settings(config.project_root)
    assert settings.metadata_url is not None
    canary_ref, canary_percent = parse_canary(config.canary) if config.canary else (None, None)
    metadata = MetadataStore(settings.metadata_url)
    registry = open_registry(settings, metadata)
    prediction_log = None
    if config.log_predictions:
        from loopline.core.predlog import open_prediction_logger

        prediction_log = open_prediction_logger(settings, start=False)
    return create_app(
        RegistryModel(registry, config.model),
        canary=RegistryModel(registry, canary_ref) if canary_ref else None,
        canary_percent=canary_percent,
        shadow=RegistryModel(registry, config.shadow) if config.shadow else None,
        prediction_log=prediction_log,
        feedback_store=metadata,
        admin_token=config.admin_token(),
        api_keys=config.api_keys(),
        **config.options,
    )


def app_from_env() -> FastAPI:
    """App factory for worker processes: the :class:`ServeConfig` in ``LOOPLINE_SERVE_CONFIG``."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise LooplineError(f"{CONFIG_ENV} is not set", hint="start workers with `loopline serve`")
    return build_app(ServeConfig.from_json(text))


def check_config(config: ServeConfig) -> list[ModelVersionInfo]:
    """Fail fast, before any worker starts: the canary spec parses and every reference
    resolves. Returns the resolved versions (champion, then canary and shadow if set)."""
    from loopline.config import load_settings
    from loopline.core.metadata import MetadataStore
    from loopline.registry.project import open_registry
    from loopline.serve.routing import parse_canary

    refs = [config.model]
    if config.canary:
        refs.append(parse_canary(config.canary)[0])
    if config.shadow:
        refs.append(config.shadow)
    settings = load_settings(config.project_root)
    assert settings.metadata_url is not None
    registry = open_registry(settings, MetadataStore(settings.metadata_url))
    return [registry.resolve(ref) for ref in refs]


def serve_config(
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve ``config`` in the foreground until SIGINT/SIGTERM, with ``workers`` processes.

    The port is bound first (a busy port fails before any model loads), then the references
    are resolved (an unknown model or alias fails before any worker starts); ``announce``
    then gets a one-line description of what is served. On a signal the server stops
    accepting, finishes in-flight requests (up to 10 s), lets every model finish its queue,
    flushes the prediction log, and returns.
    """
    if workers < 1:
        raise LooplineError(f"--workers must be at least 1, got {workers}")
    sock = _bind(host, port)
    try:
        infos = check_config(config)
        if announce is not None:
            announce(_describe(config, infos, _url(host, sock), workers))
        if workers == 1:
            app = build_app(config)
            _Server(_config(app)).run(sockets=[sock])
        else:
            _run_workers(config, sock, workers)
    finally:
        sock.close()


def _describe(config: ServeConfig, infos: list[ModelVersionInfo], url: str, workers: int) -> str:
    served = f"{config.model} (version {infos[0].version})"
    extra = []
    if config.canary:
        extra.append(f"canary {config.canary} (version {infos[1].version})")
    if config.shadow:
        extra.append(f"shadow {config.shadow} (version {infos[-1].version})")
    processes = f", {workers} workers" if workers > 1 else ""
    routes = f" + {', '.join(extra)}" if extra else ""
    return f"serving {served}{routes} on {url}{processes}"


def _run_workers(config: ServeConfig, sock: socket.socket, workers: int) -> None:
    from uvicorn.supervisors import Multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="loopline-metrics-")
    saved = {key: os.environ.get(key) for key in (CONFIG_ENV, MULTIPROC_ENV)}
    # Spawned workers inherit the environment: prometheus_client reads the folder when it
    # is first imported there, and app_from_env reads the config.
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[CONFIG_ENV] = config.to_json()
    try:
        uv_config = uvicorn.Config(
            "loopline.serve.server:app_from_env",
            factory=True,
            workers=workers,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        )
        Multiprocess(uv_config, sockets=[sock]).run()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGINT/SIGTERM ends :func:`serve` by returning.

    uvicorn re-raises the caught signal after its graceful shutdown, which kills the process
    on SIGTERM (and raises KeyboardInterrupt on SIGINT) before the caller can clean up, e.g.
    flush a prediction log. A second SIGINT still forces an immediate exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals can only be handled in the main thread; a server in a thread has none.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class RunningServer:
    """A uvicorn server running in a daemon thread; ``stop()`` shuts it down and frees the port.

    Usable as a context manager: ``with start_in_thread(model) as server: ...``.
    """

    def __init__(
        self, url: str, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket
    ) -> None:
        self.url = url
        self.port: int = sock.getsockname()[1]
        self._server = server
        self._thread = thread
        self._sock = sock

    @property
    def running(self) -> bool:
        """Whether the server thread is still alive."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish in-flight requests, close connections and release the port (idempotent)."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            # Graceful shutdown is stuck on a slow request: cut it off rather than hang the caller.
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r}, running={self.running})"


def serve(
    loaded: LoadedModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    **app_options: Unpack[AppOptions],
) -> None:
    """Serve ``loaded`` over HTTP in the foreground until SIGINT or SIGTERM.

    On either signal the server stops accepting connections, lets in-flight requests finish
    (up to 10 s) and then returns normally. Raises :class:`LooplineError` if the port is taken.
    """
    app = create_app(loaded, **app_options)
    sock = _bind(host, port)
    server = _Server(_config(app))
    log.info("serving %s/%s at %s", loaded.info.name, loaded.info.version, _url(host, sock))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def start_in_thread(
    target: LoadedModel | FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready_timeout: float = 30.0,
    **app_options: Unpack[AppOptions],
) -> RunningServer:
    """Start a server in a background thread and return once ``/ready`` answers 200.

    ``target`` is a loaded model (served with ``app_options``) or an app made by
    :func:`~loopline.serve.app.create_app`. ``port=0`` picks a free port; the returned
    object's ``url`` has the real one. Call ``stop()`` (or use it as a context manager) to
    shut it down.
    """
    from starlette.applications import Starlette

    app = target if isinstance(target, Starlette) else create_app(target, **app_options)
    sock = _bind(host, port)
    server = _Server(_config(app))
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"loopline-serve-{sock.getsockname()[1]}",
        daemon=True,  # never keep the interpreter alive because a test forgot stop()
    )
    running = RunningServer(_url(host, sock), server, thread, sock)
    thread.start()
    try:
        _wait_ready(running, ready_timeout)
    except BaseException:
        running.stop()
        raise
    return running


def _config(app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        # Requests are already counted by the app's Prometheus metrics; formatting an access
        # log line per request would only cost time.
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )


def _bind(host: str, port: int) -> socket.socket:
    """Open the listening socket (uvicorn calls ``listen`` on it when it starts serving)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise LooplineError(
            f"cannot serve on host {host!r}: {exc.strerror}",
            hint="use an IP address such as 127.0.0.1 or 0.0.0.0",
        ) from exc
    sock = socket.socket(family, kind, proto)
    # Same as uvicorn: allow rebinding a port whose old connections are still in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise LooplineError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="pick another port with --port, or stop the program that uses it",
        ) from exc
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    """The URL a local client should use (a wildcard bind address is not connectable)."""
    port = sock.getsockname()[1]
    connect_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in connect_host:
        connect_host = f"[{connect_host}]"
    return f"http://{connect_host}:{port}"


def _wait_ready(running: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not running.running:
                raise LooplineError(
                    f"the model server at {running.url} stopped during start-up",
                    hint="see the log above for the cause",
                )
            try:
                if client.get(f"{running.url}/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not accepting connections yet
            time.sleep(0.01)
    raise LooplineError(
        f"the model server at {running.url} was not ready after {timeout:g} s",
        hint="is the machine overloaded? pass a larger ready_timeout",
    )
