"""The layering of DESIGN.md, checked by import-linter (``[tool.importlinter]`` in pyproject.toml).

The real tree keeps every contract; a copy with one upward import (core -> serve) breaks them,
which shows that the contracts see what they are meant to see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"


def lint_imports(src: Path, config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` of the venv running the tests, analysing the ``loopline`` under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", str(config)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def contract_names() -> dict[str, str]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {contract["id"]: contract["name"] for contract in config["contracts"]}


def test_the_tree_keeps_every_contract() -> None:
    done = lint_imports(REPO / "src", PYPROJECT, REPO)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    names = contract_names()
    assert {"layers", "core-bottom", "no-cli-helpers", "acyclic"} <= set(names)
    for name in names.values():
        assert f"{name} KEPT" in output, output
    assert f"Contracts: {len(names)} kept, 0 broken." in output, output


def test_an_upward_import_breaks_the_contracts(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "src" / "loopline", src / "loopline", ignore=shutil.ignore_patterns("__pycache__")
    )
    with (src / "loopline" / "core" / "__init__.py").open("a") as core:
        core.write("\nfrom loopline.serve import app as _upward  # noqa\n")
    config = tmp_path / "pyproject.toml"  # lint-imports reads only [tool.importlinter]
    shutil.copyfile(PYPROJECT, config)

    done = lint_imports(src, config, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    names = contract_names()
    assert f"{names['layers']} BROKEN" in output, output
    assert f"{names['core-bottom']} BROKEN" in output, output
    assert "loopline.core is not allowed to import loopline.serve" in output, output
    assert "loopline.core -> loopline.serve.app" in output, output
