"""Helpers shared by the ``loopline`` command and its sub-command groups.

Two concerns live here so that every command gets them the same way:

* **Which project a command works on** (:func:`settings_from`): ``-C/--project`` must name
  an existing folder, and a command that only reads (:data:`READ_ONLY_COMMANDS`) refuses
  to run outside a project and never creates ``.loopline/``, the metadata database or the
  MLflow store.
* **How ``--help`` shows option values** (:class:`LooplineGroup`): typer 0.28 renders
  parameters' Python types in angle brackets in the rich help (``--host <str>``,
  ``--port <int>``, an argument's ``<path>``) and writes required arguments in braces
  (``{MODEL}``). The root group fixes that once for every command: options show their
  ``metavar`` or a click-style word (``TEXT``, ``INTEGER``, ``PATH``, ``a|b``), flags no
  value, and arguments their name in capitals.
"""

import copy
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from loopline.errors import LooplineError

if TYPE_CHECKING:
    from rich.console import Console

    from loopline.config import Settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]

# Sub-commands (words after `loopline`) that only read a project's state and get their
# settings from settings_from(): outside a project they stop with "no Loopline project in
# DIR", and in a project where nothing was recorded yet they stop before their library
# code would create the metadata store. (`runs ...`, `models ...` and `lineage` in
# loopline.cli open the stores themselves with create=False.)
READ_ONLY_COMMANDS = frozenset(
    {
        "predict",
        "monitor report",
        "monitor diagnose",
        "label queue stats",
        "label queue next",
        "label export",
    }
)

# -- which project ------------------------------------------------------------------------


def project_root(ctx: typer.Context) -> Path | None:
    """The root command's ``-C/--project`` folder, if one was given."""
    value = ctx.find_root().params.get("project")
    return Path(value) if value else None


def command_words(ctx: typer.Context) -> str:
    """The sub-command being run, as typed after ``loopline`` (e.g. ``"runs list"``)."""
    words: list[str] = []
    current: Any = ctx
    while current is not None and current.parent is not None:
        words.append(str(current.info_name))
        current = current.parent
    return " ".join(reversed(words))


def check_project_folder(folder: Path | None) -> None:
    """Stop (exit 2) when ``-C/--project`` names something that is not a folder."""
    if folder is None:
        return
    if not folder.expanduser().is_dir():
        what = "is not a folder" if folder.expanduser().exists() else "does not exist"
        raise LooplineError(
            f"project folder {folder} {what}",
            hint="pass an existing project folder to -C/--project, "
            f"or create a project with `loopline init {folder}`",
        )


def is_project(root: Path, settings: "Settings | None" = None) -> bool:
    """True when ``root`` holds a Loopline project.

    That is ``loopline.yaml``, a ``[tool.loopline]`` table in ``pyproject.toml``, or the
    state folder (``.loopline/``, or the configured ``home``).
    """
    if (root / "loopline.yaml").is_file() or (root / ".loopline").is_dir():
        return True
    if settings is not None and settings.home is not None and settings.home.is_dir():
        return True
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        import tomllib  # here, not at the top: `--help` and most commands never need it

        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return False  # load_settings has already reported a broken file
        return isinstance(data.get("tool", {}).get("loopline"), dict)
    return False


def load_project_settings(folder: Path | None, *, existing: bool = False) -> "Settings":
    """The settings of the project in ``folder`` (default: the current folder).

    With ``existing=True`` (read-only commands) the folder must be a project
    (:func:`is_project`); :class:`~loopline.errors.LooplineError` otherwise.
    """
    from loopline.config import load_settings

    settings = load_settings(existing_project_folder(folder))
    if existing and not is_project(settings.project_root, settings):
        raise LooplineError(
            f"no Loopline project in {settings.project_root} (no loopline.yaml, "
            "[tool.loopline] in pyproject.toml or .loopline/ folder)",
            hint="create one with `loopline init DIR`, or point at one with -C PROJECT",
        )
    return settings


def existing_project_folder(folder: Path | None) -> Path:
    """The project folder (``folder``, ``$LOOPLINE_PROJECT_ROOT`` or the current one), which
    must exist; found without building the settings (see :mod:`loopline.config_files`)."""
    from loopline.config_files import project_root_of

    check_project_folder(folder)
    root = project_root_of(folder)
    if not root.is_dir():  # LOOPLINE_PROJECT_ROOT names a missing folder
        raise LooplineError(
            f"project folder {root} does not exist",
            hint="set LOOPLINE_PROJECT_ROOT to an existing folder, or pass -C PROJECT",
        )
    return root


def settings_from(ctx: typer.Context) -> "Settings":
    """The project's settings, honouring ``-C/--project``.

    For a command in :data:`READ_ONLY_COMMANDS` the folder must be a project whose
    metadata store exists: nothing is created for a command that only reads.
    """
    words = command_words(ctx)
    existing = words in READ_ONLY_COMMANDS
    settings = load_project_settings(project_root(ctx), existing=existing)
    if existing:
        from loopline.core.metadata import MetadataStore, StoreMissing

        assert settings.metadata_url is not None
        try:
            MetadataStore(settings.metadata_url, create=False).close()
        except StoreMissing as exc:
            raise LooplineError(
                f"nothing is recorded in the project {settings.project_root} yet: no metadata "
                f"store at {exc.where} ({exc.why})",
                hint=_FIRST_STEPS.get(words.split()[0], "run a pipeline first: `loopline run`"),
            ) from None
    return settings


_FIRST_STEPS = {
    "label": "add items to label first: `loopline label queue add FILE --labels A,B`",
    "monitor": "train a model (`loopline run`) and serve it (`loopline serve NAME`) first",
    "predict": "train and register a model first: `loopline run`",
}


def lazy_console(**options: Any) -> "Callable[[], Console]":
    """A function that returns one :class:`rich.console.Console` made with ``options``.

    The console is made on the first call. Every command module keeps its consoles at
    module level, and importing rich.console there (about 18 ms, rich.table 4 ms more) was
    paid at start-up by every command, ``--json`` ones and those that print nothing
    included. Made when first printed to, a console still writes to the ``sys.stdout`` or
    ``sys.stderr`` of the moment it prints.
    """

    @functools.cache
    def console() -> "Console":
        from rich.console import Console

        return Console(**options)

    return console


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON to stdout (for ``--json``)."""
    data = orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    sys.stdout.write(data.decode() + "\n")


# -- how --help shows values --------------------------------------------------------------

# typer's type labels (without the angle brackets) -> the words click has always shown.
_TYPE_WORDS = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "FLOAT",
    "bool": "BOOLEAN",
    "int range": "INTEGER",
    "float range": "FLOAT",
    "Path": "PATH",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIRECTORY",
    "datetime": "DATETIME",
}


def _type_word(shown: str) -> str:
    """``<int>`` -> ``INTEGER``, ``<list[str]>`` -> ``TEXT``, ``<a|b>`` -> ``a|b``."""
    inner = shown.strip().removeprefix("<").removesuffix(">")
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[len("list[") : -1]
    return _TYPE_WORDS.get(inner, inner)


class _HelpOption(TyperOption):
    """An option whose help shows a readable value word (flags show none)."""

    def make_metavar(self, ctx: Any) -> str:
        if self.metavar is not None or self.is_flag or self.count:
            return super().make_metavar(ctx)  # a flag's word is not shown
        return _type_word(super().make_metavar(ctx)) + ("..." if self.multiple else "")


class _HelpArgument(TyperArgument):
    """An argument shown by its name in capitals (and a type only when it is not text)."""

    def make_metavar(self, ctx: Any, *, usage: bool = False) -> str:
        name = self.metavar if self.metavar is not None else str(self.name).upper()
        if usage and not self.required and not name.startswith("["):
            name = f"[{name}]"  # typer writes required arguments as {NAME}: a set of choices?
        return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")


def _argument_type_word(param: Any) -> None:
    """The help's type column of an argument: a click-style word, none for text or a
    metavar (the name column shows that). The rich help asks the argument's type for it,
    so the argument gets its own copy of the type, which converts values as before."""
    kind = param.type
    if kind.get_metavar(param=param, ctx=None) is not None:  # choices show themselves
        return
    word = "" if param.metavar is not None else _type_word(kind.name)
    shown = copy.copy(kind)
    shown.get_metavar = lambda param, ctx: "" if word == "TEXT" else word
    param.type = shown


def _tidy_param(param: Any) -> None:
    if type(param) is TyperOption:
        param.__class__ = _HelpOption
    elif type(param) is TyperArgument:
        param.__class__ = _HelpArgument
        _argument_type_word(param)


def _tidy_command(command: Any, ctx: Any) -> None:
    """Give ``command`` (and every sub-command of a group) the readable help display."""
    if getattr(command, "_loopline_tidy", False):
        return
    command._loopline_tidy = True
    # get_params includes the --help option, which the command creates once and keeps.
    for param in command.get_params(ctx):
        _tidy_param(param)
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                _tidy_command(sub, ctx)


class LooplineGroup(TyperGroup):
    """The root ``loopline`` group: readable ``--help`` for itself and every sub-command."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            _tidy_param(param)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _tidy_command(command, ctx)
        return command
