"""``--help`` of every command: flags show no value, options a readable one.

typer 0.2x writes each parameter's Python type in angle brackets in the rich help
(``--json <bool>``, ``--host <str>``, ``--param <list[str]>``); the root group of the
``loopline`` command replaces that for every command and sub-command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer

from loopline.cli import app

# typer's type labels; "proba.<class>" in a help text is prose and is not matched.
PYTHON_TYPES = re.compile(r"<(bool|str|int|float|Path|path|file|directory|list\[[^>]*\])[^>]*>")


def command_paths() -> list[list[str]]:
    """Every command and group, as the words typed after ``loopline``."""
    root: Any = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(group: Any, prefix: list[str]) -> None:
        for name, command in group.commands.items():
            paths.append([*prefix, name])
            if hasattr(command, "commands"):
                walk(command, [*prefix, name])

    walk(root, [])
    return paths


def help_of(*words: str) -> str:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    done = subprocess.run(
        [sys.executable, "-m", "loopline", *words, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def option_row(help_text: str, option: str) -> str:
    rows = [line for line in help_text.splitlines() if re.search(rf"{option}(\s|,|$)", line)]
    assert rows, f"{option} not in:\n{help_text}"
    return rows[0]


def test_every_command_is_checked() -> None:
    paths = [" ".join(p) for p in command_paths()]
    for expected in ("", "run", "runs list", "models promote", "label queue add", "serve"):
        assert expected in paths


@pytest.mark.parametrize("words", command_paths(), ids=lambda p: " ".join(p) or "loopline")
def test_help_shows_no_python_types(words: list[str]) -> None:
    shown = help_of(*words)

    assert not PYTHON_TYPES.search(shown), PYTHON_TYPES.findall(shown)
    # Flags take no value: the help text follows the flag directly.
    assert re.search(r"--help\s+Show this message and exit\.", option_row(shown, "--help"))
    if "--json" in shown:
        assert re.search(r"--json\s+Print machine-readable JSON only\.", shown)


def test_run_help_names_what_each_option_takes() -> None:
    shown = help_of("run")

    assert re.search(r"Usage: .*\brun \[OPTIONS\] \[PIPELINE\]\s", shown)  # not [[PIPELINE]]
    assert "KEY=VALUE" in option_row(shown, "--param")
    assert "threads|processes" in option_row(shown, "--executor")
    assert re.search(r"--no-cache\s+Run every step again\.", shown)


def test_value_options_show_a_word_and_arguments_their_name() -> None:
    serve = help_of("serve")
    assert "INTEGER" in option_row(serve, "--port")
    assert re.search(r"Usage: .*\bserve \[OPTIONS\] MODEL\[@ALIAS\]\s", serve)  # not {MODEL..}

    validate = help_of("data", "validate")
    assert re.search(r"Usage: .*\bdata validate \[OPTIONS\] SOURCE\s", validate)
    assert "COLUMN" in option_row(validate, "--text-column")
