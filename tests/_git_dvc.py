"""git and DVC (this interpreter's) run in a test folder, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV = {
    "GIT_AUTHOR_NAME": "Loopline tests",
    "GIT_AUTHOR_EMAIL": "tests@loopline.invalid",
    "GIT_COMMITTER_NAME": "Loopline tests",
    "GIT_COMMITTER_EMAIL": "tests@loopline.invalid",
    "DVC_NO_ANALYTICS": "1",
    "COLUMNS": "250",  # rich wraps tables and trees (`loopline lineage`) at the terminal's width
}


def sh(cwd: Path, *args: str) -> str:
    """Run git or dvc in ``cwd``; its stdout. Fails the test when the command fails."""
    command = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout.strip()
