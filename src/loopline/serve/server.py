"""Run the prediction app under uvicorn: in the foreground, or in a background thread.

Both bind the listening socket themselves before uvicorn starts, so a busy port fails at
once with a clear :class:`LooplineError`, and ``port=0`` yields the real port immediately.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypedDict, Unpack

import httpx
import uvicorn

from loopline.errors import LooplineError
from loopline.serve.app import create_app

if TYPE_CHECKING:
    from types import TracebackType

    from fastapi import FastAPI

    from loopline.registry.models import LoadedModel

__all__ = ["AppOptions", "RunningServer", "serve", "start_in_thread"]

log = logging.getLogger(__name__)

# Seconds uvicorn waits for in-flight requests on shutdown before cutting them off.
_GRACEFUL_SHUTDOWN_S = 10


class AppOptions(TypedDict, total=False):
    """Keyword options forwarded to :func:`loopline.serve.app.create_app`."""

    max_body_bytes: int
    max_items: int


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
    loaded: LoadedModel,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready_timeout: float = 30.0,
    **app_options: Unpack[AppOptions],
) -> RunningServer:
    """Start a server in a background thread and return once ``/ready`` answers 200.

    ``port=0`` picks a free port; the returned object's ``url`` has the real one. Call
    ``stop()`` (or use it as a context manager) to shut it down.
    """
    app = create_app(loaded, **app_options)
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
