"""Two runs started together in a new project: the stores are created once, under a lock.

Both processes used to create MLflow's SQLite store (and Loopline's schema) at the same
time; the second failed in `register` with MLflow's raw SQL error ("table ... already
exists").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_two_runs_started_together_in_a_new_project_both_succeed(tmp_path: Path) -> None:
    init = subprocess.run(
        [sys.executable, "-m", "loopline", "init", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    project = tmp_path / "p"
    command = [sys.executable, "-m", "loopline", "run", "sentiment", "--json",
               "--param", "audit_rows=0"]  # fmt: skip
    children = [
        subprocess.Popen(
            command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        assert "Traceback" not in err
        assert json.loads(out)["status"] == "completed"
