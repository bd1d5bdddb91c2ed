"""Serve a loaded model over HTTP (FastAPI + uvicorn), and call it from Python.

``import loopline`` does not import this package. Names load on first use, so
``from loopline.serve import predict_remote`` needs only httpx, not FastAPI or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.serve.app import create_app
    from loopline.serve.client import predict_remote
    from loopline.serve.server import AppOptions, RunningServer, serve, start_in_thread

__all__ = [
    "AppOptions",
    "RunningServer",
    "create_app",
    "predict_remote",
    "serve",
    "start_in_thread",
]

_MODULE_OF = {
    "create_app": "loopline.serve.app",
    "predict_remote": "loopline.serve.client",
    "AppOptions": "loopline.serve.server",
    "RunningServer": "loopline.serve.server",
    "serve": "loopline.serve.server",
    "start_in_thread": "loopline.serve.server",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'loopline.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
