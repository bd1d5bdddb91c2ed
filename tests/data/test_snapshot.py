"""Folder snapshots: content hashes, incremental re-hashing, storage in the project, diff."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from loopline.config import Settings, load_settings
from loopline.data import snapshot as snapshot_module
from loopline.data.snapshot import diff, load_snapshot, resolve_snapshot, take_snapshot
from loopline.errors import DataError

OLD_NS = 1_600_000_000 * 10**9  # September 2020: far outside the racy window


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small folder whose files were last written long ago."""
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    for name, text in {"a.txt": "alpha", "b.txt": "bravo", "sub/c.txt": "charlie"}.items():
        (root / name).write_text(text)
        os.utime(root / name, ns=(OLD_NS, OLD_NS))
    return root


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the snapshot reads to hash it, in a list."""
    seen: list[Path] = []
    real: Callable[[Path], str] = snapshot_module.hash_file

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(snapshot_module, "hash_file", counting)
    return seen


def test_snapshot_of_coco8_is_stored_and_reused(shared_data: Path, settings: Settings) -> None:
    coco8 = shared_data / "images" / "coco8"
    files = sorted(p for p in coco8.rglob("*") if p.is_file())
    first = take_snapshot(coco8, settings)
    assert len(first.files) == len(files) == 19
    assert [f.path for f in first.files] == sorted(p.relative_to(coco8).as_posix() for p in files)
    assert first.total_bytes == sum(p.stat().st_size for p in files)
    entry = next(f for f in first.files if f.path == "classes.txt")
    assert entry.sha256 == hashlib.sha256((coco8 / "classes.txt").read_bytes()).hexdigest()
    assert (first.rehashed, first.reused) == (19, 0)
    manifest = settings.home_dir / "snapshots" / f"{first.id}.json"
    assert manifest.is_file()

    second = take_snapshot(coco8, settings)
    assert second.id == first.id
    assert (second.rehashed, second.reused) == (0, 19)
    assert load_snapshot(first.id[:8], settings).files == first.files
    assert diff(first, second).unchanged


def test_only_new_and_changed_files_are_read_again(
    tree: Path, settings: Settings, hashed: list[Path]
) -> None:
    first = take_snapshot(tree, settings)
    assert first.rehashed == 3 and len(hashed) == 3
    hashed.clear()

    (tree / "a.txt").write_text("alpha, edited")
    (tree / "sub" / "d.txt").write_text("delta")
    (tree / "b.txt").unlink()
    second = take_snapshot(tree, settings)

    assert sorted(p.relative_to(tree).as_posix() for p in hashed) == ["a.txt", "sub/d.txt"]
    assert (second.rehashed, second.reused) == (2, 1)
    change = diff(first, second)
    assert (change.added, change.removed, change.changed) == (
        ("sub/d.txt",),
        ("b.txt",),
        ("a.txt",),
    )
    assert change.to_dict()["a"] == first.id and change.to_dict()["b"] == second.id
    assert second.id != first.id


def test_a_file_with_the_same_size_mtime_and_inode_is_not_read(
    tree: Path, settings: Settings, hashed: list[Path]
) -> None:
    first = take_snapshot(tree, settings)
    path = tree / "a.txt"
    stat = path.stat()
    # New bytes of the same length, written in place (same inode), with the old mtime back.
    with path.open("r+b") as handle:
        handle.write(b"ALPHA")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_ino == stat.st_ino
    hashed.clear()

    second = take_snapshot(tree, settings)
    assert hashed == []  # nothing was read: the stat said unchanged
    assert second.id == first.id  # so the old hash was kept

    os.utime(path, ns=(OLD_NS, OLD_NS + 1))  # any change of the stat: read again
    third = take_snapshot(tree, settings)
    assert [p.name for p in hashed] == ["a.txt"] and third.id != first.id
    assert diff(first, third).changed == ("a.txt",)


def test_files_written_just_before_a_snapshot_are_read_again(
    tree: Path, settings: Settings, hashed: list[Path]
) -> None:
    (tree / "fresh.txt").write_text("just written")  # its mtime is now: may change unseen
    take_snapshot(tree, settings)
    hashed.clear()
    again = take_snapshot(tree, settings)
    assert [p.name for p in hashed] == ["fresh.txt"]
    assert (again.rehashed, again.reused) == (1, 3)


def test_state_folders_are_left_out_and_empty_folders_work(
    tmp_path: Path, settings: Settings
) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text("")
    (root / "data.csv").write_text("x\n1\n")
    assert [f.path for f in take_snapshot(root, settings).files] == ["data.csv"]
    (root / "empty").mkdir()
    assert take_snapshot(root / "empty", settings, store=False).files == ()


def test_folders_and_ids_resolve_and_bad_references_are_clear(
    tree: Path, settings: Settings
) -> None:
    stored = take_snapshot(tree, settings)
    (tree / "b.txt").write_text("bravo!")
    now = resolve_snapshot(str(tree), settings)  # a folder: hashed now, not stored
    assert diff(resolve_snapshot(stored.id[:6], settings), now).changed == ("b.txt",)
    assert not (settings.home_dir / "snapshots" / f"{now.id}.json").exists()

    with pytest.raises(DataError, match="no snapshot 'ffff0000'") as caught:
        load_snapshot("ffff0000", settings)
    assert stored.id[:12] in str(caught.value) and "loopline data snapshot" in str(caught.value)
    with pytest.raises(DataError, match="at least 4 characters"):
        load_snapshot(stored.id[:3], settings)
    store = settings.home_dir / "snapshots"
    twin = store / f"{stored.id[:6]}{'0' * 58}.json"
    twin.write_bytes((store / f"{stored.id}.json").read_bytes())
    with pytest.raises(DataError, match="is ambiguous"):
        load_snapshot(stored.id[:6], settings)
    twin.write_text("{broken")
    with pytest.raises(DataError, match="cannot read the snapshot manifest"):
        load_snapshot(twin.stem, settings)
    with pytest.raises(DataError, match="folder not found"):
        take_snapshot(tree / "missing", settings)
    with pytest.raises(DataError, match="found a file"):
        take_snapshot(tree / "a.txt", settings)
