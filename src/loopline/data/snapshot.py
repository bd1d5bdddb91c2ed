"""Snapshots of a folder: a manifest of every file's sha256, for folders that DVC does not track.

:func:`take_snapshot` lists every file under a folder with its size and sha256 and stores
the manifest as JSON under the project's home (``.loopline/snapshots/<id>.json``). The id is
content-addressed: the sha256 of the sorted (path, size, sha256) entries, so the same files
give the same id wherever and whenever they are snapshotted.

Re-hashing is incremental: each manifest also keeps every file's ``mtime_ns`` and inode, and
a file whose size, mtime and inode are unchanged since the folder's previous snapshot is not
read again; its hash is taken from that manifest. :func:`diff` compares two snapshots.

Folders named ``.git``, ``.dvc`` and ``.loopline`` (version-control and Loopline state) are
not part of a snapshot; symbolic links to folders are not followed.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISDIR
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from loopline.config_files import project_home
from loopline.core.files import write_atomic
from loopline.core.hashing import sha256_bytes
from loopline.data.folders import require_folder
from loopline.errors import DataError

if TYPE_CHECKING:
    from loopline.config import Settings

__all__ = [
    "FileEntry",
    "Snapshot",
    "SnapshotDiff",
    "diff",
    "load_snapshot",
    "resolve_snapshot",
    "take_snapshot",
]

_FORMAT = 1
_SKIPPED_DIRS = frozenset({".git", ".dvc", ".loopline"})
# A file written within this window before a snapshot started may be written again without
# its mtime changing (timestamps are as coarse as 2 s on FAT, a kernel tick elsewhere), so
# its stat does not prove its content is unchanged: the next snapshot reads it again.
_RACY_WINDOW_NS = 2_000_000_000
_MIN_PREFIX = 4
_CHUNK = 1 << 20
_BATCH_BYTES = 8 << 20
_BATCH_FILES = 256


class FileEntry(NamedTuple):
    """One file of a snapshot: its path relative to the folder (``/``-separated), its
    size in bytes, its sha256, and the ``mtime_ns`` and inode seen when it was hashed.

    A named tuple, not a frozen dataclass: a manifest of 10,000 files is read back on every
    snapshot, and a tuple is made in half the time.
    """

    path: str
    size: int
    sha256: str
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class Snapshot:
    """A manifest of a folder's files (sorted by path).

    ``rehashed`` and ``reused`` count the files that were read and hashed, and those whose
    hash came from the previous snapshot of the same folder (both 0 for a loaded one).
    """

    id: str
    root: str
    created_at: str
    started_ns: int
    files: tuple[FileEntry, ...]
    rehashed: int = 0
    reused: int = 0

    @property
    def total_bytes(self) -> int:
        """The sum of the files' sizes."""
        return sum(f.size for f in self.files)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: id, root, created_at, files, total_bytes, rehashed, reused."""
        return {
            "id": self.id,
            "root": self.root,
            "created_at": self.created_at,
            "files": len(self.files),
            "total_bytes": self.total_bytes,
            "rehashed": self.rehashed,
            "reused": self.reused,
        }


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed from snapshot ``a`` to snapshot ``b``: paths added in ``b``, removed
    from ``a``, and present in both with different content (each sorted)."""

    a: str
    b: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def unchanged(self) -> bool:
        """True when both snapshots hold the same files with the same content."""
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "a": self.a,
            "b": self.b,
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }


def take_snapshot(
    folder: str | Path,
    project: Settings | Path | None = None,
    *,
    store: bool = True,
    workers: int | None = None,
) -> Snapshot:
    """Hash every file under ``folder`` and (with ``store``) keep the manifest in the project.

    Files unchanged since the folder's previous stored snapshot (same size, mtime_ns and
    inode) are not read again. ``project``: the project's settings, or its folder (default:
    the current project); manifests are kept in its state folder. ``workers`` threads hash
    the files (default: up to 8). Raises :class:`~loopline.errors.DataError` when the folder
    is missing or a file cannot be read.
    """
    root = require_folder(folder, name="folder", expected="a folder to snapshot", holds="the file")
    store_dir = _store_dir(project)
    started_ns = time.time_ns()
    previous = _previous_entries(store_dir, root)
    found: list[tuple[str, str, os.stat_result]] = list(_walk(root))
    entries: dict[str, FileEntry] = {}
    to_hash: list[tuple[str, str, os.stat_result]] = []
    for rel, path, stat in found:
        old = previous.get(rel)
        if old is not None and (old.size, old.mtime_ns, old.inode) == (
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ino,
        ):
            entries[rel] = old
        else:
            to_hash.append((rel, path, stat))
    for (rel, _, stat), digest in zip(to_hash, _hash_all(to_hash, workers), strict=True):
        entries[rel] = FileEntry(rel, stat.st_size, digest, stat.st_mtime_ns, stat.st_ino)
    files = tuple(entries[rel] for rel in sorted(entries))
    snap = Snapshot(
        id=_snapshot_id(files),
        root=str(root),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        started_ns=started_ns,
        files=files,
        rehashed=len(to_hash),
        reused=len(found) - len(to_hash),
    )
    if store:
        _store(store_dir, snap)
    return snap


def load_snapshot(snapshot_id: str, project: Settings | Path | None = None) -> Snapshot:
    """A stored snapshot by its id or a unique prefix of it (at least 4 characters).

    ``project`` as for :func:`take_snapshot`. Raises :class:`~loopline.errors.DataError`
    when no stored snapshot matches, or when the prefix matches several (their ids are
    listed).
    """
    store_dir = _store_dir(project)
    ref = snapshot_id.strip().lower()
    known = sorted(p.stem for p in store_dir.glob("*.json")) if store_dir.is_dir() else []
    matches = [k for k in known if k.startswith(ref)] if len(ref) >= _MIN_PREFIX else []
    if len(matches) == 1:
        return _read_manifest(store_dir / f"{matches[0]}.json")
    if len(matches) > 1:
        raise DataError(
            f"snapshot id {snapshot_id!r} is ambiguous: it starts "
            f"{', '.join(m[:16] for m in matches[:10])}",
            hint="give more characters of the id",
        )
    listed = ", ".join(k[:12] for k in known[-5:]) if known else "none yet"
    raise DataError(
        f"no snapshot {snapshot_id!r} in {store_dir} (expected a snapshot id, a prefix of at "
        f"least {_MIN_PREFIX} characters, or a folder; snapshots stored: {listed})",
        hint="take one with `loopline data snapshot DIR`, or check the project (-C PROJECT)",
    )


def resolve_snapshot(ref: str | Path, project: Settings | Path | None = None) -> Snapshot:
    """A folder (snapshotted now, without storing it) or a stored snapshot's id or prefix."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return take_snapshot(path, project, store=False)
    return load_snapshot(str(ref), project)


def diff(a: Snapshot, b: Snapshot) -> SnapshotDiff:
    """The files added, removed and changed (by content) from ``a`` to ``b``."""
    old = {f.path: f.sha256 for f in a.files}
    new = {f.path: f.sha256 for f in b.files}
    return SnapshotDiff(
        a=a.id,
        b=b.id,
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
        changed=tuple(sorted(p for p in old.keys() & new.keys() if old[p] != new[p])),
    )


# ---------------------------------------------------------------------------------------------
# helpers


def _walk(root: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, path, stat) of every file under ``root``, following file links.

    Paths stay strings and a folder's entries are told apart by scandir's file type and the
    one stat each file needs anyway: per file, pathlib and a second stat cost more than the
    stat itself on a tree of many small images.
    """
    pending = [(str(root), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as scan:
                items = list(scan)
        except OSError as exc:
            raise _unreadable(Path(folder), exc) from None
        for item in items:
            if item.is_dir(follow_symlinks=False):
                if item.name not in _SKIPPED_DIRS:
                    pending.append((item.path, f"{prefix}{item.name}/"))
                continue
            try:
                stat = item.stat(follow_symlinks=True)
            except OSError as exc:
                raise _unreadable(Path(item.path), exc) from None
            if not S_ISDIR(stat.st_mode):  # a link to a folder is not followed
                yield prefix + item.name, item.path, stat


def hash_file(path: Path) -> str:
    """sha256 of a file's bytes (the digest :func:`loopline.core.hashing.hash_file` gives).

    Read with ``os.read`` on a plain descriptor: for a tree of small images, a buffered file
    object per file costs more than reading and hashing the file (2-4x here).
    """
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _hash_all(items: list[tuple[str, str, os.stat_result]], workers: int | None) -> list[str]:
    def one(item: tuple[str, str, os.stat_result]) -> str:
        path = Path(item[1])
        try:
            return hash_file(path)
        except OSError as exc:
            raise _unreadable(path, exc) from None

    def batch(start: int, stop: int) -> list[str]:
        return [one(item) for item in items[start:stop]]

    # hashlib releases the GIL on large buffers and file reads wait on the disk: threads help.
    # Each task is a run of files holding about _BATCH_BYTES (at least one file): handing a
    # thread one small image at a time costs more than hashing it.
    bounds, start, size = [], 0, 0
    for index, (_, _, stat) in enumerate(items):
        size += stat.st_size
        if size >= _BATCH_BYTES or index - start + 1 >= _BATCH_FILES:
            bounds.append((start, index + 1))
            start, size = index + 1, 0
    if start < len(items):
        bounds.append((start, len(items)))
    if len(bounds) <= 1:
        return batch(0, len(items))
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        return [digest for done in pool.map(lambda b: batch(*b), bounds) for digest in done]


def _snapshot_id(files: tuple[FileEntry, ...]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(
            sha256_bytes(f.path.encode(), str(f.size).encode(), f.sha256.encode()).encode()
        )
    return digest.hexdigest()


def _store_dir(project: Settings | Path | None) -> Path:
    # A folder (or nothing) is found without the full settings: pydantic is most of the
    # snapshot command's start-up (see loopline.config_files).
    home = (
        project_home(project) if project is None or isinstance(project, Path) else project.home_dir
    )
    return home / "snapshots"


def _head_path(store_dir: Path, root: Path) -> Path:
    """Where the id of ``root``'s latest snapshot is kept (one small file per folder)."""
    return store_dir / "heads" / f"{hashlib.sha256(str(root).encode()).hexdigest()[:32]}"


def _previous_entries(store_dir: Path, root: Path) -> dict[str, FileEntry]:
    """The reusable entries of ``root``'s latest snapshot (none when there is none)."""
    head = _head_path(store_dir, root)
    try:
        snapshot_id = head.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return {}
    manifest = store_dir / f"{snapshot_id}.json"
    if not manifest.is_file():
        return {}  # its manifest was deleted: hash everything again
    previous = _read_manifest(manifest)
    cutoff = previous.started_ns - _RACY_WINDOW_NS
    return {f.path: f for f in previous.files if f.mtime_ns < cutoff}


def _store(store_dir: Path, snap: Snapshot) -> None:
    manifest = {
        "format": _FORMAT,
        "id": snap.id,
        "root": snap.root,
        "created_at": snap.created_at,
        "started_ns": snap.started_ns,
        "files": [[f.path, f.size, f.sha256, f.mtime_ns, f.inode] for f in snap.files],
    }
    (store_dir / "heads").mkdir(parents=True, exist_ok=True)
    write_atomic(store_dir / f"{snap.id}.json", orjson.dumps(manifest))
    write_atomic(_head_path(store_dir, Path(snap.root)), snap.id.encode())


def _read_manifest(path: Path) -> Snapshot:
    try:
        data = orjson.loads(path.read_bytes())
        files = tuple(FileEntry(*row) for row in data["files"])
        return Snapshot(
            id=data["id"],
            root=data["root"],
            created_at=data["created_at"],
            started_ns=data["started_ns"],
            files=files,
        )
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f"cannot read the snapshot manifest {path}: {exc}",
            hint="delete the file; take the snapshot again with `loopline data snapshot DIR`",
        ) from None


def _unreadable(path: Path, exc: OSError) -> DataError:
    return DataError(
        f"cannot read {path}: {exc.strerror or exc}",
        hint="fix its permissions or remove it, then take the snapshot again",
    )
