"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.core import files
from loopline.core.files import write_atomic


def test_text_and_bytes_are_written_and_parents_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"

    write_atomic(target, '{"é": 1}')
    assert target.read_bytes() == '{"é": 1}'.encode()
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "manifest.json"
    target.write_text("old")

    def full_disk(source: str, destination: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new")

    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
