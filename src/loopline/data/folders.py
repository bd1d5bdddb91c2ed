"""The check every folder input starts with (image, text and detection sets, snapshots)."""

from __future__ import annotations

from pathlib import Path

from loopline.errors import DataError

__all__ = ["require_folder"]


def require_folder(path: str | Path, *, name: str, expected: str, holds: str) -> Path:
    """``path`` (``~`` expanded) when it is a folder; otherwise a :class:`DataError` saying
    that the ``name`` was not found, or that ``expected`` was wanted and a file was given
    (hint: pass the folder that holds ``holds``)."""
    base = Path(path).expanduser()
    if not base.exists():
        raise DataError(
            f"{name} not found: {base}",
            hint=f"check the path (relative paths start from {Path.cwd()})",
        )
    if not base.is_dir():
        raise DataError(
            f"expected {expected}, found a file: {base}",
            hint=f"pass the folder that holds {holds}",
        )
    return base
