"""``loopline ui``: the web dashboard's command line."""

import os
from typing import Annotated

import typer

from loopline.cli.support import lazy_console, load_project_settings, project_root

err = lazy_console(stderr=True, highlight=False, soft_wrap=True)


def ui_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    admin_token_env: Annotated[
        str,
        typer.Option(
            metavar="VAR",
            help="Variable holding the admin token that promote and rollback need "
            "(unset: the dashboard only reads).",
        ),
    ] = "LOOPLINE_ADMIN_TOKEN",
) -> None:
    """Serve the web dashboard: runs, lineage, models, monitoring, data and review.

    Offline (every asset ships in the package). Promote and roll back from the models page
    with the admin token, recorded in the alias history like `loopline models promote`.
    """
    from loopline.ui.app import serve_ui

    settings = load_project_settings(project_root(ctx), existing=True)
    token = os.environ.get(admin_token_env, "").strip() or None
    if token:
        moves = f"alias moves on: promote and rollback need the token in ${admin_token_env}"
    else:
        moves = f"alias moves off: set {admin_token_env} to promote and roll back from the page"

    def announce(where: str) -> None:
        _say(where)
        _say(moves)

    serve_ui(settings, host=host, port=port, admin_token=token, announce=announce)


def _say(message: str) -> None:
    from rich.markup import escape  # rich loads only when something is printed

    err().print(escape(message))
