"""``loopline serve``: the model server's command line."""

from typing import TYPE_CHECKING, Annotated

import typer

from loopline.cli.support import lazy_console, project_root

if TYPE_CHECKING:
    from loopline.serve.server import ServeConfig

err = lazy_console(stderr=True, highlight=False, soft_wrap=True)


def serve_command(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(metavar="MODEL[@ALIAS]", help="e.g. sentiment@champion (the default).")
    ],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each loads the model).")
    ] = 1,
    canary: Annotated[
        str | None,
        typer.Option(
            metavar="NAME@ALIAS:PCT",
            help="Send PCT% of requests to this model (sticky by the X-Request-Key header).",
        ),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(
            metavar="NAME@ALIAS",
            help="Score a copy of every request with this model, off the response path "
            "(logged with route 'shadow').",
        ),
    ] = None,
    poll_interval: Annotated[
        float,
        typer.Option(min=0, help="Seconds between registry checks for alias moves (0: never)."),
    ] = 10.0,
    max_batch_size: Annotated[
        int, typer.Option(min=1, help="Most rows scored in one model call.")
    ] = 64,
    max_wait_us: Annotated[
        int,
        typer.Option(min=0, help="Longest wait (microseconds) for requests to share a call."),
    ] = 1_000,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Requests waiting per model before 503 + Retry-After.")
    ] = 1_024,
    timeout_ms: Annotated[
        int, typer.Option(min=1, help="Requests not answered in time get 504.")
    ] = 10_000,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Larger requests get 413.")] = (
        1_000_000
    ),
    admin_token_env: Annotated[
        str,
        typer.Option(
            metavar="VAR",
            help="Variable holding the bearer token of /admin (unset: no admin routes).",
        ),
    ] = "LOOPLINE_ADMIN_TOKEN",
    api_keys_env: Annotated[
        str,
        typer.Option(
            metavar="VAR",
            help="Variable holding comma-separated API keys for /predict (unset: open).",
        ),
    ] = "LOOPLINE_API_KEYS",
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not write the prediction log.")
    ] = False,
) -> None:
    """Serve a registered model over HTTP, following its alias (hot swap on promote/rollback).

    Routes: POST /predict, POST /feedback, GET /health /ready /model /metrics.

    With an admin token: POST /admin/reload and POST /admin/rollback.
    """
    from loopline.serve.routing import parse_canary, parse_model_ref
    from loopline.serve.server import ServeConfig, serve_config

    if canary:
        parse_canary(canary)  # a bad spec fails before anything is loaded
    root = project_root(ctx)
    config = ServeConfig(
        model=parse_model_ref(model),
        project_root=str(root) if root else None,
        canary=canary,
        shadow=parse_model_ref(shadow) if shadow else None,
        log_predictions=not no_log,
        admin_token_env=admin_token_env,
        api_keys_env=api_keys_env,
        options={
            "poll_interval_s": poll_interval,
            "max_batch_size": max_batch_size,
            "max_wait_us": max_wait_us,
            "max_queue": max_queue,
            "timeout_ms": timeout_ms,
            "max_body_bytes": max_body_bytes,
        },
    )
    _say_protection(config)
    serve_config(config, host=host, port=port, workers=workers, announce=_say)


def _say(message: str) -> None:
    from rich.markup import escape  # rich loads only when something is printed

    err().print(escape(message))


def _say_protection(config: "ServeConfig") -> None:
    """Say at start which routes are protected, naming the variables, never their values."""
    if config.admin_token():
        _say(f"admin routes on: /admin/reload and /admin/rollback need ${config.admin_token_env}")
    else:
        _say(f"admin routes off: set {config.admin_token_env} to enable /admin/reload and rollback")
    if config.api_keys():
        _say(f"/predict and /feedback need an X-API-Key from ${config.api_keys_env}")
