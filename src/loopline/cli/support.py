"""Helpers shared by the ``loopline`` command and its sub-command groups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

if TYPE_CHECKING:
    from loopline.config import Settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]


def project_root(ctx: typer.Context) -> Path | None:
    """The root command's ``-C/--project`` folder, if one was given."""
    value = ctx.find_root().params.get("project")
    return Path(value) if value else None


def settings_from(ctx: typer.Context) -> Settings:
    """The project's settings, honouring ``-C/--project``."""
    from loopline.config import load_settings

    return load_settings(project_root(ctx))


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON to stdout (for ``--json``)."""
    data = orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    sys.stdout.write(data.decode() + "\n")
