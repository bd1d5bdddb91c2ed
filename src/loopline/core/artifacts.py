"""Content-addressed artifact store.

An artifact is a folder ``<root>/<hash[:2]>/<hash>/`` holding the materializer's files
and a ``meta.json`` written last. Writes go to ``<root>/.tmp/<pid>-<uuid>/`` and are
renamed into place, so a reader never sees a half-written artifact, whatever happens to
the writer (``kill -9`` included). Roots other than a local folder go through fsspec:
each file is uploaded to its final key (one atomic PUT per object on S3 and its kin) and
``meta.json`` last, so an artifact without it does not exist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loopline.core.hashing import hash_tree
from loopline.core.materializers import materializer_for, materializer_named

META = "meta.json"


@dataclass(frozen=True)
class StoredArtifact:
    """What the store knows about one artifact."""

    hash: str
    materializer: str
    type_name: str
    size_bytes: int
    uri: str


class ArtifactStore:
    """Saves objects by content hash and loads them back."""

    def __init__(self, root: str, cache_dir: Path | None = None) -> None:
        self.root = root
        self._local = "://" not in root or root.startswith("file://")
        self._local_root = Path(root.removeprefix("file://")) if self._local else None
        self._cache_dir = cache_dir
        self._fs: Any = None
        if self._local_root is not None:
            self._local_root.mkdir(parents=True, exist_ok=True)
            self._sweep_dead_temps()

    # -- paths -----------------------------------------------------------------
    def uri(self, digest: str) -> str:
        """Where the artifact with this hash lives."""
        return f"{self.root.rstrip('/')}/{digest[:2]}/{digest}"

    def _local_path(self, digest: str) -> Path:
        assert self._local_root is not None
        return self._local_root / digest[:2] / digest

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            self._fs, _ = fsspec.core.url_to_fs(self.root)
        return self._fs

    # -- write -----------------------------------------------------------------
    def save(self, obj: Any) -> StoredArtifact:
        """Materialize ``obj``, hash the files, and move them into place atomically."""
        materializer = materializer_for(obj)
        tmp = self._new_temp_dir()
        try:
            materializer.save(obj, tmp)
            digest = hash_tree(tmp)
            size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
            type_name = f"{type(obj).__module__}.{type(obj).__qualname__}"
            meta = {
                "hash": digest,
                "materializer": materializer.name,
                "type": type_name,
                "size_bytes": size,
            }
            (tmp / META).write_bytes(orjson.dumps(meta))
            self._publish(tmp, digest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return StoredArtifact(digest, materializer.name, type_name, size, self.uri(digest))

    def _new_temp_dir(self) -> Path:
        if self._local_root is not None:
            base = self._local_root / ".tmp"
            base.mkdir(exist_ok=True)
            path = base / f"{os.getpid()}-{uuid.uuid4().hex}"
            path.mkdir()
            return path
        return Path(tempfile.mkdtemp(prefix="loopline-artifact-"))

    def _publish(self, tmp: Path, digest: str) -> None:
        if self._local_root is not None:
            final = self._local_path(digest)
            if (final / META).exists():
                return  # same content already stored
            final.parent.mkdir(exist_ok=True)
            if final.exists():  # left over by an older crash without meta: replace it
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / META).exists():  # a concurrent writer did not win either
                    raise
            return
        target = self.uri(digest)
        if self.fs.exists(f"{target}/{META}"):
            return
        # Straight to the final keys, meta.json last: an object store has no folder rename
        # (s3fs's mv is a copy per object, and into an existing "folder" it nests), while
        # each object's upload is atomic. Two writers of one hash write the same bytes, and
        # a reader sees the artifact only once meta.json is there.
        files = [p for p in sorted(tmp.rglob("*")) if p.is_file() and p.name != META]
        for path in files:
            self.fs.put_file(str(path), f"{target}/{path.relative_to(tmp).as_posix()}")
        self.fs.put_file(str(tmp / META), f"{target}/{META}")

    def _sweep_dead_temps(self) -> None:
        """Remove temp folders whose writer process is gone (killed mid-write)."""
        assert self._local_root is not None
        base = self._local_root / ".tmp"
        if not base.is_dir():
            return
        for entry in base.iterdir():
            pid_text = entry.name.split("-", 1)[0]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)

    # -- read ------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        """True when the artifact is completely stored."""
        if self._local_root is not None:
            return (self._local_path(digest) / META).is_file()
        return bool(self.fs.exists(f"{self.uri(digest)}/{META}"))

    def meta(self, digest: str) -> dict[str, Any]:
        """The artifact's ``meta.json``."""
        folder = self.local_folder(digest)
        return dict(orjson.loads((folder / META).read_bytes()))

    def local_folder(self, digest: str) -> Path:
        """A local folder with the artifact's files (downloaded once for remote roots)."""
        if self._local_root is not None:
            return self._local_path(digest)
        cache = (self._cache_dir or Path(tempfile.gettempdir()) / "loopline-cache") / digest
        if not (cache / META).exists():
            partial = cache.with_name(f"{digest}.{uuid.uuid4().hex}.part")
            self.fs.get(self.uri(digest), str(partial), recursive=True)
            with contextlib.suppress(OSError):
                os.rename(partial, cache)
            shutil.rmtree(partial, ignore_errors=True)
        return cache

    def load(self, digest: str) -> Any:
        """Load the object stored under ``digest``."""
        folder = self.local_folder(digest)
        meta = orjson.loads((folder / META).read_bytes())
        return materializer_named(meta["materializer"]).load(folder)

    def list_hashes(self) -> list[str]:
        """Every complete artifact in the store (used by tests and `gc`)."""
        if self._local_root is None:
            return [p.rsplit("/", 2)[-2] for p in self.fs.glob(f"{self.root}/*/*/{META}")]
        return sorted(p.parent.name for p in self._local_root.glob(f"*/*/{META}"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
