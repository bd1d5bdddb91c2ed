"""A project's settings files and state folder, read without pydantic.

:mod:`loopline.config` builds the full, validated settings from these files; the commands
that need only the project's state folder (``loopline data snapshot`` and ``diff``) ask
:func:`project_home` instead: building the settings imports pydantic and pydantic-settings,
about 0.07 s of such a command's start-up on this project's 2-core machine (with typer 0.28,
the command starts in 0.14 s instead of 0.26 s).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = ["CONFIG_FILE", "home_folder", "project_home", "project_root_of", "read_project_files"]

CONFIG_FILE = "loopline.yaml"
_DEFAULT_HOME = Path(".loopline")


def project_root_of(project_root: str | Path | None = None) -> Path:
    """The project folder, resolved: ``project_root``, else ``$LOOPLINE_PROJECT_ROOT``,
    else the current folder."""
    value = project_root or os.environ.get("LOOPLINE_PROJECT_ROOT") or Path.cwd()
    return Path(value).expanduser().resolve()


def home_folder(root: Path, home: str | Path | None) -> Path:
    """The state folder: ``home`` (relative to ``root`` unless absolute), else ``.loopline``."""
    folder = Path(home) if home is not None else _DEFAULT_HOME
    return folder if folder.is_absolute() else root / folder


def project_home(project_root: str | Path | None = None) -> Path:
    """The project's state folder, as :class:`loopline.config.Settings` finds it.

    ``LOOPLINE_HOME`` (any case, as the settings read their variables) over ``home`` in
    ``loopline.yaml`` or ``[tool.loopline]``; relative to the project folder
    (:func:`project_root_of`). The other settings are neither read nor checked. Raises
    :class:`~loopline.errors.ConfigError` for a settings file that cannot be parsed or a
    ``home`` that is not a path.
    """
    root = project_root_of(project_root)
    env = {name.upper(): value for name, value in os.environ.items()}
    home = env.get("LOOPLINE_HOME")
    if home is None:
        home = read_project_files(root, only="home").get("home")
    if home is not None and not isinstance(home, str):
        raise ConfigError(
            f"invalid Loopline settings: home: expected a folder path, found {home!r}",
            hint=f"check {root / CONFIG_FILE}, [tool.loopline] in pyproject.toml "
            "and the LOOPLINE_* variables",
        )
    return home_folder(root, home)


def read_project_files(root: Path, *, only: str | None = None) -> dict[str, Any]:
    """The settings in ``loopline.yaml`` and ``[tool.loopline]`` of ``pyproject.toml``.

    A file that cannot be parsed is a :class:`ConfigError` of one line: the file, the
    problem and where (line and column), with a hint. With ``only`` (a setting's name), a
    file whose text does not mention that name is not parsed: it cannot set it, and
    skipping it saves PyYAML's import (about 30 ms of a command's start-up here).
    """
    values: dict[str, Any] = {}
    pyproject = root / "pyproject.toml"
    text = _read_text(pyproject, only)
    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message is one line and ends with "(at line L, column C)".
            raise ConfigError(
                f"{pyproject} is not valid TOML: {_one_line(str(exc))}",
                hint="fix the file at that line (Loopline reads its [tool.loopline] table)",
            ) from None
        values.update(data.get("tool", {}).get("loopline", {}))
    config = root / CONFIG_FILE
    text = _read_text(config, only)
    if text is not None:
        import yaml  # only with a loopline.yaml: see above

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise _yaml_error(config, exc) from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"{config} must hold a mapping of settings, found {type(data).__name__}",
                hint="see `loopline init` for a starter file",
            )
        values.update(data)
    return values


def _read_text(path: Path, only: str | None) -> str | None:
    """The file's text; None when it is missing or (with ``only``) does not mention it."""
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    return None if only is not None and only not in text else text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> ConfigError:
    return ConfigError(
        f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})",
        hint=f"save {path.name} as UTF-8",
    )


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    """PyYAML's several-line message as one line: the problem and where it is."""
    problem = str(getattr(exc, "problem", None) or exc)
    if problem.startswith("expected <block end>"):  # PyYAML's words for a bad indent
        problem = f"the indentation does not match the lines above ({problem})"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(
        f"{path} is not valid YAML{where}: {_one_line(problem)}",
        hint=f"fix {path.name}{where}: settings are `key: value` "
        "lines, nested ones indented with spaces (no tabs); quote values holding ': ' or '#'",
    )
