"""Hints of the data readers and checks, as a command-line user meets them.

Each case runs the real ``loopline`` command in a child process and checks that the hint
names something the user can type there (a flag) and holds no Python syntax: no keyword
arguments (``encoding=...``), no calls (``configure(...)``), no attribute paths
(``QualityRules.min_rows``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_KEYWORD = re.compile(r"\b[A-Za-z_]\w*=")
_CALL = re.compile(r"\b[A-Za-z_][\w.]*\(")
_ATTRIBUTE = re.compile(r"\b[A-Z]\w+\.[a-z_]\w*")


def run_loopline(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOOPLINE_PROJECT_ROOT=str(project), COLUMNS="1000", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_hint(result: subprocess.CompletedProcess[str]) -> str:
    """The ``hint:`` line of a failed command (exit code 2), checked for Python syntax."""
    assert result.returncode == 2, result.stdout + result.stderr
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert len(hints) == 1, result.stderr
    hint = hints[0].removeprefix("hint: ")
    assert not _KEYWORD.search(hint), f"keyword-argument syntax in the hint: {hint}"
    assert not _CALL.search(hint), f"a Python call in the hint: {hint}"
    assert not _ATTRIBUTE.search(hint), f"a Python attribute in the hint: {hint}"
    return hint


def _latin1(path: Path) -> list[str]:
    (path / "latin.csv").write_bytes(b"text,label\nok,positive\ncaf\xe9 au lait,positive\n")
    return ["data", "validate", "latin.csv"]


def _cp1252(path: Path) -> list[str]:
    (path / "quotes.csv").write_bytes(b"text,label\n\x93quoted\x94,positive\n")
    return ["data", "validate", "quotes.csv"]


def _columns(path: Path) -> list[str]:
    (path / "yt.csv").write_text("COMMENT_ID,CONTENT,CLASS\n1,hi,0\n", encoding="utf-8")
    return ["data", "validate", "yt.csv"]


def _label_values(path: Path) -> list[str]:
    rows = "".join(f"comment {i},{'spam' if i % 2 else 'ham'}\n" for i in range(40))
    (path / "spam.csv").write_text("text,label\n" + rows, encoding="utf-8")
    return ["data", "validate", "spam.csv"]


def _mojibake(path: Path) -> list[str]:
    rows = "".join(f"cafÃ© number {i},{'positive' if i % 2 else 'negative'}\n" for i in range(40))
    (path / "mojibake.csv").write_text("text,label\n" + rows, encoding="utf-8")
    return ["data", "validate", "mojibake.csv"]


def _unknown_format(path: Path) -> list[str]:
    (path / "t.xml").write_text("<tweets/>", encoding="utf-8")
    return ["data", "validate", "t.xml"]


def _wrong_format_name(path: Path) -> list[str]:
    (path / "t.csv").write_text("text,label\na,positive\n", encoding="utf-8")
    return ["data", "validate", "t.csv", "--format", "xml"]


def _folder_as_table(path: Path) -> list[str]:
    (path / "tweets").mkdir()
    return ["data", "validate", "tweets", "--format", "table"]


def _not_sentiment140(path: Path) -> list[str]:
    (path / "s140.csv").write_text('"9","1","d","q","u","hello"\n', encoding="utf-8")
    return ["data", "validate", "s140.csv", "--format", "sentiment140"]


def _unknown_encoding(path: Path) -> list[str]:
    (path / "t.csv").write_text("text,label\na,positive\n", encoding="utf-8")
    return ["data", "validate", "t.csv", "--encoding", "utf-42"]


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (_latin1, ["--encoding latin-1"]),
        (_cp1252, ["--encoding cp1252"]),
        (_columns, ["--text-column CONTENT", "--label-column CLASS"]),
        (_label_values, ["--labels"]),
        (_mojibake, ["--encoding"]),
        (_unknown_format, ["--format table"]),
        (_wrong_format_name, ["--format"]),
        (_folder_as_table, ["--format lines"]),
        (_not_sentiment140, ["--format table", "--text-column"]),
        (_unknown_encoding, ["--encoding"]),
    ],
    ids=lambda v: getattr(v, "__name__", "").strip("_") or None,
)
def test_data_validate_hints_name_flags_not_python(
    project: Path, make: Callable[[Path], list[str]], names: list[str]
) -> None:
    hint = cli_hint(run_loopline(project, *make(project)))
    for name in names:
        assert name in hint, hint


def test_too_few_rows_hint_has_no_python(project: Path) -> None:
    (project / "tiny.csv").write_text("text,label\na,positive\nb,negative\n", encoding="utf-8")
    hint = cli_hint(run_loopline(project, "data", "validate", "tiny.csv"))
    assert "QualityRules" not in hint and "collect more data" in hint
