"""``loopline serve``: the model server's command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from loopline.cli_support import settings_from

err = Console(stderr=True, highlight=False, soft_wrap=True)


def serve_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL[@ALIAS]", help="e.g. sentiment@champion")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_body_bytes: Annotated[int, typer.Option(help="Larger requests get 413.")] = 1_000_000,
) -> None:
    """Serve a registered model over HTTP (POST /predict, /health, /ready, /model, /metrics)."""
    from loopline.registry.project import open_registry
    from loopline.serve import serve as run_server

    ref = model if ("@" in model or "/" in model) else f"{model}@champion"
    loaded = open_registry(settings_from(ctx)).load(ref)
    err.print(f"serving {loaded.info.name} version {loaded.info.version} on http://{host}:{port}")
    run_server(loaded, host=host, port=port, max_body_bytes=max_body_bytes)
