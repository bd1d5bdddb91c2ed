"""Content and code hashing: the keys of the step cache."""

from __future__ import annotations

import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

_CHUNK = 1 << 20


def sha256_bytes(*parts: bytes) -> str:
    """Hash byte strings, each length-prefixed so that ("ab", "c") != ("a", "bc")."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def hash_file(path: Path, digest: Any | None = None) -> str:
    """sha256 of a file's bytes, read in chunks (constant memory)."""
    own = digest is None
    digest = digest or hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() if own else ""


def hash_tree(root: Path) -> str:
    """sha256 over every file under ``root`` (relative names and bytes, sorted)."""
    if root.is_file():
        return hash_file(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix().encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        hash_file(path, digest)
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """Stable JSON for parameters; paths become their text, sets are sorted."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "__dataclass_fields__"):
        return {"__type__": type(value).__qualname__, **vars(value)}
    raise TypeError(f"parameter of type {type(value).__name__} is not JSON-serialisable")


def code_hash(fn: Callable[..., Any], extra: Iterable[str] = ()) -> str:
    """Hash of a step's source and of the same-package functions/classes it references.

    Referenced helpers are followed one level deep, so editing a helper that a step calls
    invalidates that step (and only the steps that reference it).
    """
    parts = [_source_of(fn)]
    package = (fn.__module__ or "").split(".")[0]
    for name in sorted(_referenced_names(fn.__code__)):
        target = fn.__globals__.get(name)
        if isinstance(target, types.FunctionType | type) and _same_package(target, package):
            parts.append(f"{name}:{_source_of(target)}")
    parts.extend(extra)
    return sha256_bytes(*(p.encode() for p in parts))


def _same_package(obj: Any, package: str) -> bool:
    return bool(package) and (getattr(obj, "__module__", "") or "").split(".")[0] == package


def _referenced_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _referenced_names(const)
    return names


def _source_of(obj: Any) -> str:
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        # Defined interactively: fall back to the bytecode, which still changes with the code.
        code = getattr(obj, "__code__", None)
        return repr((code.co_code, code.co_consts)) if code else repr(obj)
