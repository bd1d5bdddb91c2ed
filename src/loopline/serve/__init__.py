"""Serve registered models over HTTP (FastAPI + uvicorn), and call them from Python.

``import loopline`` does not import this package. Names load on first use, so
``from loopline.serve import predict_remote`` needs only httpx, not FastAPI or pandas.

Serving a registry alias that the server follows (hot swap on promote/rollback)::

    from loopline.serve import RegistryModel, create_app, start_in_thread

    app = create_app(RegistryModel(registry, "sentiment@champion"), admin_token="...")
    with start_in_thread(app) as server:
        ...

or, as ``loopline serve`` does, :func:`serve_config` with a :class:`ServeConfig`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.serve.app import AppOptions, create_app
    from loopline.serve.client import predict_remote
    from loopline.serve.routing import FixedModel, RegistryModel
    from loopline.serve.server import (
        RunningServer,
        ServeConfig,
        build_app,
        serve,
        serve_config,
        start_in_thread,
    )

__all__ = [
    "AppOptions",
    "FixedModel",
    "RegistryModel",
    "RunningServer",
    "ServeConfig",
    "build_app",
    "create_app",
    "predict_remote",
    "serve",
    "serve_config",
    "start_in_thread",
]

_MODULE_OF = {
    "AppOptions": "loopline.serve.app",
    "create_app": "loopline.serve.app",
    "predict_remote": "loopline.serve.client",
    "FixedModel": "loopline.serve.routing",
    "RegistryModel": "loopline.serve.routing",
    "RunningServer": "loopline.serve.server",
    "ServeConfig": "loopline.serve.server",
    "build_app": "loopline.serve.server",
    "serve": "loopline.serve.server",
    "serve_config": "loopline.serve.server",
    "start_in_thread": "loopline.serve.server",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'loopline.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
