"""Inputs that DVC tracks: which output holds a path, its DVC hash, the git revision, reads at a
revision.

Users of DVC keep their data out of git: ``dvc add images`` writes ``images.dvc`` (the
folder's ``md5``, with a ``.dir`` suffix for folders) and git versions that small file;
pipelines declare outputs in ``dvc.yaml`` and DVC records their hashes in ``dvc.lock``.
Loopline reads both as DVC does:

- :func:`dvc_version` says which output tracks a path, its DVC hash and the git revision
  (HEAD for the workspace, and whether the ``.dvc`` file or ``dvc.lock`` has uncommitted
  changes), or the same at a given git revision (those files as git holds them there);
- :func:`open_dvc` opens a tracked file at a revision (``dvc.api.open``);
- :func:`checkout_dvc` materialises a tracked file or folder at a revision into a folder
  (``DVCFileSystem.get``), fetching from the DVC remote what the local cache lacks.

Finding the output and its hash needs only git and PyYAML; ``dvc`` (the ``vision`` extra) is
imported inside the functions that read the data, so importing Loopline stays cheap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from loopline.config import Settings, load_settings
from loopline.errors import DataError

if TYPE_CHECKING:
    from loopline.core.metadata import MetadataStore

__all__ = [
    "DvcVersion",
    "FolderVersion",
    "checkout_dvc",
    "dvc_version",
    "find_dvc_repo",
    "folder_version",
    "folder_versions_among",
    "is_dvc_tracked",
    "open_dvc",
]

_INSTALL_HINT = "install DVC with `pip install loopline[vision]` (or `pip install dvc`)"


@dataclass(frozen=True)
class DvcVersion:
    """The DVC output that tracks a path, and where in git it was read.

    ``output`` is that output's path and ``tracked_by`` the ``.dvc`` file or ``dvc.lock`` that
    records it (both relative to ``repo``, ``/``-separated); ``md5`` is DVC's hash of the
    output (``.dir`` suffix: a folder). ``git_rev`` is the commit read: HEAD for the workspace
    (None outside git or before the first commit), the resolved ``rev`` otherwise. ``dirty``:
    ``tracked_by`` differs from that commit's (the workspace's data is not committed yet).
    """

    path: str
    repo: str
    output: str
    md5: str
    tracked_by: str
    git_rev: str | None
    dirty: bool
    rev: str | None = None
    size: int | None = None
    nfiles: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return asdict(self)


@dataclass(frozen=True)
class FolderVersion:
    """A folder as a pipeline read it: where its files are, and what identifies their content.

    ``path`` is the folder to read: ``source`` itself, or a copy checked out at git revision
    ``rev``. ``dvc`` is DVC's record when DVC tracks it (hash, git revision, dirty);
    ``snapshot`` the id of Loopline's snapshot of the files read from the workspace (None
    for a checkout, which DVC's hash identifies); ``files`` how many files it holds.
    """

    path: str
    source: str
    rev: str | None
    dvc: DvcVersion | None
    snapshot: str | None
    files: int

    def __len__(self) -> int:
        # The runner records len() of a dataset version as its rows: here, files.
        return self.files

    def content_key(self) -> str:
        """What changes when the content read changes (not the commit it was read at)."""
        dvc = (self.dvc.md5, str(self.dvc.dirty)) if self.dvc else ("", "")
        return "|".join([self.source, self.rev or "", *dvc, self.snapshot or ""])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (``dvc`` as a dict)."""
        return asdict(self)

    def describe(self) -> str:
        """One line: DVC's hash, the git revision and the snapshot, e.g. for ``lineage``."""
        parts = []
        if self.dvc is not None:
            rev = (self.dvc.git_rev or "no commit")[:12]
            parts.append(f"DVC md5 {self.dvc.md5} ({self.dvc.tracked_by})")
            parts.append(f"git {rev}" + (" (dirty)" if self.dvc.dirty else ""))
        if self.rev is not None:
            parts.append(f"rev {self.rev}")
        if self.snapshot is not None:
            parts.append(f"snapshot {self.snapshot[:12]}")
        return " · ".join([*parts, f"{self.files} files", self.source])


def folder_version(
    path: str | Path,
    rev: str | None = None,
    settings: Settings | None = None,
    *,
    checkout: bool = True,
) -> FolderVersion:
    """The version of a folder: DVC's hash and git revision where DVC tracks it, and a
    Loopline snapshot of the files when they are read from the workspace.

    With ``rev`` the folder must be DVC-tracked; it is checked out (with ``checkout``) once
    per DVC hash under the project's home (``.loopline/dvc/<md5>/``) and read from there.
    Without it the folder is read where it is and snapshotted (only files changed since its
    last snapshot are read). Raises :class:`~loopline.errors.DataError` as
    :func:`dvc_version` and :func:`~loopline.data.snapshot.take_snapshot` do.
    """
    from loopline.data.snapshot import take_snapshot

    settings = settings or load_settings()
    source = _absolute(path)
    if rev is not None:
        at_rev = dvc_version(source, rev)
        folder = settings.home_dir / "dvc" / at_rev.md5.removesuffix(".dir") / source.name
        if checkout and not folder.exists():
            checkout_dvc(source, rev, folder)
        files = at_rev.nfiles if at_rev.nfiles is not None else 1
        return FolderVersion(str(folder), str(source), rev, at_rev, None, files)
    dvc = dvc_version(source) if is_dvc_tracked(source) else None
    snap = take_snapshot(source, settings)
    return FolderVersion(str(source), str(source), None, dvc, snap.id, len(snap.files))


def folder_versions_among(
    digests: list[str], settings: Settings, metadata: MetadataStore
) -> dict[str, FolderVersion]:
    """The artifacts among ``digests`` that are folder versions (as ``version_images``
    records them), loaded: for ``loopline lineage``. The others are not read (their type is
    in the metadata store), so no model is downloaded from a remote artifact store."""
    import sqlalchemy as sa

    from loopline.core import schema
    from loopline.core.artifacts import ArtifactStore

    table = schema.artifacts
    wanted = f"{FolderVersion.__module__}.{FolderVersion.__qualname__}"
    with metadata.engine.connect() as conn:
        hashes = conn.execute(
            sa.select(table.c.hash).where(
                table.c.hash.in_(sorted(set(digests))), table.c.type_name == wanted
            )
        ).scalars()
        found = list(hashes)
    if not found:
        return {}
    assert settings.artifact_root
    store = ArtifactStore(settings.artifact_root)
    return {digest: store.load(digest) for digest in found}


def find_dvc_repo(path: str | Path) -> Path | None:
    """The root of the DVC repository holding ``path`` (a folder with ``.dvc/``), or None."""
    start = _absolute(path)
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def is_dvc_tracked(path: str | Path) -> bool:
    """True when a ``.dvc`` file or a ``dvc.lock`` stage output of the workspace holds ``path``
    (the path itself, or a folder above it)."""
    target = _absolute(path)
    repo = find_dvc_repo(target)
    return repo is not None and _tracking_output(repo, target, _workspace_reader) is not None


def dvc_version(path: str | Path, rev: str | None = None) -> DvcVersion:
    """The DVC output tracking ``path``, its hash and git revision, in the workspace or at ``rev``.

    Without ``rev`` the workspace's ``.dvc`` files and ``dvc.lock`` are read; with ``rev`` (a
    commit, branch or tag) the same files as git holds them at that commit. Neither needs
    DVC itself. Raises :class:`~loopline.errors.DataError` when ``path`` is not in a DVC
    repository, no output tracks it, or ``rev`` is unknown to git.
    """
    target = _absolute(path)
    repo = _require_repo(target)
    if rev is None:
        commit = _git_head(repo)
        reader: _Reader = _workspace_reader
    else:
        commit = _resolve_rev(repo, rev)
        reader = _git_reader(repo, commit)
    found = _tracking_output(repo, target, reader)
    if found is None:
        raise _not_tracked(target, repo, rev)
    output, entry, tracked_by = found
    return DvcVersion(
        path=str(target),
        repo=str(repo),
        output=output,
        md5=_md5_of(entry, tracked_by),
        tracked_by=tracked_by,
        git_rev=commit,
        dirty=rev is None and _git_dirty(repo, tracked_by),
        rev=rev,
        size=entry.get("size"),
        nfiles=entry.get("nfiles"),
    )


@contextmanager
def open_dvc(
    path: str | Path, rev: str | None = None, *, mode: str = "rb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a DVC-tracked file as it is in the workspace or at git revision ``rev``.

    Use it as ``with open_dvc("data/images/a.jpg", rev="v1") as f: ...``; DVC reads from
    its cache and fetches from the remote what is missing (``dvc.api.open``). Raises
    :class:`~loopline.errors.DataError` as :func:`dvc_version` does, and when the file does
    not exist at ``rev`` or DVC finds its data neither in the cache nor on the remote.
    """
    version = dvc_version(path, rev)
    api = _dvc_module("dvc.api")
    errors = _dvc_module("dvc.exceptions")
    rel = _relative(Path(version.path), Path(version.repo))
    commit = version.git_rev if rev else None  # None: DVC reads the workspace
    with ExitStack() as stack:
        try:
            handle = stack.enter_context(
                api.open(rel, repo=version.repo, rev=commit, mode=mode, encoding=encoding)
            )
        except (errors.PathMissingError, FileNotFoundError):
            where = f"at git revision {rev!r}" if rev else "in the workspace"
            raise DataError(
                f"{rel} does not exist {where} of {version.repo} (its output {version.output} "
                f"is {version.md5} there)",
                hint=f"list what it holds with `dvc ls . {version.output} --rev {rev or 'HEAD'}`",
            ) from None
        except errors.DvcException as exc:
            raise _unfetchable(version, exc) from None
        yield handle


def checkout_dvc(path: str | Path, rev: str, dest: str | Path | None = None) -> Path:
    """Materialise a DVC-tracked file or folder as it was at git revision ``rev``.

    The copy goes to ``dest`` (which must not exist yet; its parent is created) or, without
    it, into a new temporary folder (the caller removes it); the returned path is the copy.
    It is written beside ``dest`` first and renamed, so a half-written copy is never seen.
    Raises :class:`~loopline.errors.DataError` as :func:`dvc_version` does, and when DVC can
    find the data neither in its cache nor on the remote.
    """
    version = dvc_version(path, rev)
    target = Path(version.path)
    if dest is None:
        final = Path(tempfile.mkdtemp(prefix="loopline-dvc-")) / target.name
    else:
        final = Path(dest).expanduser().absolute()
        if final.exists():
            raise DataError(
                f"cannot check out {target.name} at {rev} into {final}: it exists already",
                hint="pass a path that does not exist yet, or none (a temporary folder)",
            )
        final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
    fs = _dvc_fs(Path(version.repo), str(version.git_rev))
    errors = _dvc_module("dvc.exceptions")
    try:
        fs.get(_relative(target, Path(version.repo)), str(partial), recursive=True)
        os.replace(partial, final)
    except (OSError, errors.DvcException) as exc:
        raise _unfetchable(version, exc) from None
    finally:
        if partial.exists():
            shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
    return final


# ---------------------------------------------------------------------------------------------
# .dvc files and dvc.lock, read as YAML from the workspace or from a git commit

# Reads a DVC file's YAML: an empty dict when the file does not exist.
_Reader = Callable[[Path], dict[str, Any]]


def _workspace_reader(path: Path) -> dict[str, Any]:
    return _load_yaml(path) if path.is_file() else {}


def _git_reader(repo: Path, commit: str) -> _Reader:
    def read(path: Path) -> dict[str, Any]:
        rel = _relative(path, repo)
        # "./": relative to the DVC repository, which may be a folder of the git repository.
        found = _git(repo, "show", f"{commit}:./{rel}")
        return _parse_yaml(found.stdout, f"{rel} at {commit[:12]}") if found.returncode == 0 else {}

    return read


def _tracking_output(
    repo: Path, target: Path, read: _Reader
) -> tuple[str, dict[str, Any], str] | None:
    """(output, its entry, the file recording it) for the innermost output holding ``target``:
    a ``<name>.dvc`` beside ``target`` or a folder above it, else a ``dvc.lock`` output."""
    for folder in (target, *target.parents):
        if folder == repo or repo not in folder.parents:
            break
        dvcfile = folder.with_name(f"{folder.name}.dvc")
        for entry in _outs(read(dvcfile).get("outs")):
            if _absolute(dvcfile.parent / str(entry.get("path", ""))) == folder:
                return _relative(folder, repo), entry, _relative(dvcfile, repo)
    best: tuple[Path, dict[str, Any], Path] | None = None
    for folder in target.parents:
        lock = folder / "dvc.lock"
        for output, entry in _lock_outputs(lock, read):
            holds = output == target or output in target.parents
            if holds and (best is None or len(output.parts) > len(best[0].parts)):
                best = (output, entry, lock)
        if folder == repo:
            break
    if best is None:
        return None
    return _relative(best[0], repo), best[1], _relative(best[2], repo)


def _lock_outputs(lock: Path, read: _Reader) -> list[tuple[Path, dict[str, Any]]]:
    """Every stage output recorded in ``lock``, as (absolute path, entry)."""
    stages = read(lock).get("stages")
    if not isinstance(stages, dict):
        return []
    wdirs: dict[str, str] = {}
    defined = read(lock.with_name("dvc.yaml")).get("stages")
    for name, stage in defined.items() if isinstance(defined, dict) else ():
        if isinstance(stage, dict) and stage.get("wdir"):
            wdirs[str(name)] = str(stage["wdir"])
    found: list[tuple[Path, dict[str, Any]]] = []
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            continue
        # A foreach/matrix stage is locked as "name@key"; its wdir is the template's.
        wdir = lock.parent / wdirs.get(str(name).split("@", 1)[0], ".")
        found.extend(
            (_absolute(wdir / str(e.get("path", ""))), e) for e in _outs(stage.get("outs"))
        )
    return found


def _outs(value: Any) -> list[dict[str, Any]]:
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read the DVC file {path}: {exc}", hint="check its permissions"
        ) from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(
            f"cannot parse the DVC file {where}: {exc}",
            hint="fix it, or write it again with `dvc add` / `dvc repro`",
        ) from None
    return data if isinstance(data, dict) else {}


def _md5_of(entry: dict[str, Any], tracked_by: str) -> str:
    md5 = entry.get("md5")
    if not md5:
        raise DataError(
            f"the output {entry.get('path')!r} in {tracked_by} has no md5 (expected DVC's "
            "md5 hash; cloud-versioned outputs keep an etag instead)",
            hint="record it with `dvc add` or `dvc commit`",
        )
    return str(md5)


# ---------------------------------------------------------------------------------------------
# git


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise DataError(
            f"git is needed to read the revision of the DVC repository {repo}, and it is not "
            "installed",
            hint="install git (DVC versions its .dvc files with it)",
        ) from None


def _git_head(repo: Path) -> str | None:
    """HEAD's commit; None outside git (``dvc init --no-scm``) or before the first commit."""
    found = _git(repo, "rev-parse", "--verify", "--quiet", "HEAD")
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def _git_dirty(repo: Path, tracked_by: str) -> bool:
    found = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", tracked_by)
    return found.returncode == 0 and bool(found.stdout.strip())


def _resolve_rev(repo: Path, rev: str) -> str:
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0 or not found.stdout.strip():
        raise DataError(
            f"unknown git revision {rev!r} in {repo} (expected a commit, branch or tag of "
            "its git history)",
            hint="see `git log --oneline` and `git tag` there",
        )
    return found.stdout.strip()


# ---------------------------------------------------------------------------------------------
# DVC's API, at a revision


def _dvc_module(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise DataError(
            "reading DVC-tracked data at a git revision needs the dvc package, which is not "
            "installed",
            hint=_INSTALL_HINT,
        ) from None


def _dvc_fs(repo: Path, commit: str) -> Any:
    return _dvc_module("dvc.api").DVCFileSystem(str(repo), rev=commit)


# ---------------------------------------------------------------------------------------------
# paths and errors


def _absolute(path: str | Path) -> Path:
    """An absolute, normalised path; links are kept (DVC tracks the link's path)."""
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


def _relative(path: Path, repo: Path) -> str:
    return path.relative_to(repo).as_posix()


def _require_repo(target: Path) -> Path:
    repo = find_dvc_repo(target)
    if repo is None:
        raise DataError(
            f"{target} is not in a DVC repository (expected a .dvc/ folder in it or above it)",
            hint="run `git init && dvc init` there and `dvc add` the folder, or read the "
            "folder without DVC (Loopline snapshots it)",
        )
    return repo


def _unfetchable(version: DvcVersion, exc: BaseException) -> DataError:
    at = f"at {version.rev}" if version.rev else "in the workspace"
    return DataError(
        f"DVC could not read {version.output} {at} ({version.md5}): {exc}",
        hint="push the data to the DVC remote (`dvc push` where it was added) or check "
        "the remote in .dvc/config",
    )


def _not_tracked(target: Path, repo: Path, rev: str | None) -> DataError:
    rel = _relative(target, repo) if repo in target.parents else str(target)
    where = f"at git revision {rev!r}" if rev else "in the workspace"
    return DataError(
        f"{rel} is not tracked by DVC {where} of {repo} (expected {rel}.dvc beside it, or a "
        "dvc.lock stage output holding it)",
        hint=f"track it with `dvc add {rel}` and commit {rel}.dvc, or read it without DVC",
    )
