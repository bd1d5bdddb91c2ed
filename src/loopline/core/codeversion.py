"""The code version of a run: git commit plus a hash of uncommitted changes."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodeVersion:
    """``commit`` is None outside a git work tree; ``dirty_hash`` is None when clean."""

    commit: str | None
    dirty_hash: str | None

    def __str__(self) -> str:
        if self.commit is None:
            return "untracked"
        return self.commit[:12] + (f"+dirty.{self.dirty_hash[:8]}" if self.dirty_hash else "")


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version(root: Path) -> CodeVersion:
    """Read the commit and hash ``git diff HEAD`` plus untracked file names."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return CodeVersion(None, None)
    diff = (_git(root, "diff", "HEAD", "--no-color") or b"") + (
        _git(root, "ls-files", "--others", "--exclude-standard") or b""
    )
    dirty = hashlib.sha256(diff).hexdigest() if diff.strip() else None
    return CodeVersion(commit.decode().strip(), dirty)
