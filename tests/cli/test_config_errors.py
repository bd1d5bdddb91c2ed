"""A broken loopline.yaml or pyproject.toml: one line that says where, and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def loopline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def error_and_hint(done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr  # PyYAML's message spans five lines
    error, hint = lines
    assert error.startswith("error: ") and hint.startswith("hint: ")
    return error, hint


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("pipelines:\n  sentiment: pipeline.py:sentiment\n params: {}\n", "line 3, column 2"),
        ("params: [1, 2\nexecutor: threads\n", "line 2, column 9"),
        ("executor: threads\n\tmax_workers: 2\n", "line 2, column 1"),
    ],
    ids=["indentation", "unclosed-list", "tab"],
)
def test_bad_yaml_is_one_line_with_its_position_and_a_hint(
    project: Path, text: str, where: str
) -> None:
    (project / "loopline.yaml").write_text(text)

    error, hint = error_and_hint(loopline("runs", "list", cwd=project))

    assert f"loopline.yaml is not valid YAML at {where}: " in error
    assert "<unicode string>" not in error
    assert "loopline.yaml" in hint and where in hint


def test_bad_toml_in_pyproject_is_one_line_with_a_hint(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.loopline\nexecutor = 'threads'\n")

    error, hint = error_and_hint(loopline("runs", "list", cwd=project))

    assert "pyproject.toml is not valid TOML: " in error and "line 1" in error
    assert "[tool.loopline]" in hint


def test_a_config_file_that_is_not_utf8_says_so(project: Path) -> None:
    (project / "loopline.yaml").write_bytes(b"executor: caf\xe9\n")

    error, hint = error_and_hint(loopline("runs", "list", cwd=project))

    assert "loopline.yaml is not UTF-8 text" in error
    assert "UTF-8" in hint
