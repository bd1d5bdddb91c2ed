"""The command line: start-up stays light, user errors are one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("mlflow", "sklearn", "scipy")


def loopline(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def imported_modules(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.split(".")[0] for line in done.stdout.splitlines()}


def test_import_and_help_do_not_load_heavy_libraries() -> None:
    assert not imported_modules("import loopline") & set(HEAVY)
    code = (
        "import sys; sys.argv=['loopline','--help']\n"
        "from loopline.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert not imported_modules(code) & set(HEAVY)


def test_help_lists_the_commands() -> None:
    done = loopline("--help")
    assert done.returncode == 0
    for command in ("init", "demo", "run", "runs", "models", "serve", "predict-remote", "data"):
        assert command in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "show", "nosuchrun"], "no Loopline project in"),
        (["run", "nosuchpipeline"], "no pipeline named 'nosuchpipeline'"),
        (["run", "sentiment", "--param", "oops"], "--param expects KEY=VALUE"),
        (["run", "sentiment", "--param", "colour=red"], "no parameter 'colour'"),
        (["data", "validate", "missing.csv"], "not found"),
        (["serve", "nosuchmodel"], "nosuchmodel"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_traceback(
    project: Path, args: list[str], message: str
) -> None:
    done = loopline(*args, cwd=project)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert "error:" in done.stderr


def test_debug_shows_the_traceback(project: Path) -> None:
    done = loopline("--debug", "runs", "show", "nosuchrun", cwd=project)
    assert done.returncode != 0
    assert "Traceback" in done.stderr


def test_bad_config_file_is_a_clear_error(project: Path) -> None:
    (project / "loopline.yaml").write_text("executor: rockets\n")
    done = loopline("runs", "list", cwd=project)
    assert done.returncode == 2
    assert "executor" in done.stderr and "loopline.yaml" in done.stderr


def test_init_writes_a_project_that_runs(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    done = loopline("init", str(target), "--template", "sentiment")
    assert done.returncode == 0, done.stderr
    assert (target / "loopline.yaml").is_file() and (target / "pipeline.py").is_file()
    again = loopline("init", str(target))
    assert again.returncode == 2 and "not overwriting" in again.stderr
    run = loopline("-C", str(target), "run", "sentiment", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["status"] == "completed"
    assert summary["steps"]["register"]["status"] == "completed"
    listed = loopline("-C", str(target), "runs", "list", "--json")
    assert json.loads(listed.stdout)[0]["id"] == summary["run_id"]
    shown = loopline("-C", str(target), "runs", "show", summary["run_id"][:8])
    assert shown.returncode == 0 and "train" in shown.stdout
