"""Content fingerprints of step code and step parameters, for the step cache key.

:func:`code_fingerprint` covers what a function's result can depend on besides its inputs:

* its own source (and compiled code) and, transitively, the source of the functions and
  classes *of the same module* it refers to by global name, plus the ``repr`` of the simple
  module-level constants it uses (other functions of that file stay out of it);
* every project module it reaches (module-level imports it uses, imports executed inside
  function bodies, and everything those modules import in turn), by the bytes of the file
  on disk;
* the versions of the third-party distributions it reaches, and always Python's
  ``major.minor``, Loopline's version and numpy, pandas, scikit-learn, scipy and pyarrow
  (Loopline's own steps use them, so any step's output may depend on them).

:func:`value_fingerprint` turns a step parameter into canonical bytes: plain JSON values keep
exactly :func:`~loopline.core.hashing.canonical_json`'s bytes; callables, unfitted
scikit-learn-style estimators, dataclasses, small numpy values and pandas timestamps are
described by content; anything else raises :class:`TypeError`.

Both are stable across processes and machines for identical files and versions: parts are
sorted, and no ``id()``, address or absolute path outside the project enters a fingerprint.
File analyses are memoised per ``(path, mtime_ns, size)`` and function results per function
object (re-validated against the files' contents, the globals they read and the versions),
so a warm call costs a few microseconds.
"""

from __future__ import annotations

import ast
import dataclasses
import dis
import enum
import functools
import hashlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import textwrap
import threading
import time
import types
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path, PurePath
from typing import Any

from loopline.core.hashing import canonical_json, sha256_bytes

__all__ = [
    "ALWAYS_DISTRIBUTIONS",
    "clear_caches",
    "code_fingerprint",
    "distribution_version",
    "value_fingerprint",
]

#: Distributions in every code fingerprint: Loopline's own steps compute with them.
# Loopline's own steps compute with these (DuckDB: the offline features), so any step's
# output may depend on their versions.
ALWAYS_DISTRIBUTIONS: tuple[str, ...] = (
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "pyarrow",
    "duckdb",
)

#: A constant whose repr is longer than this enters a fingerprint as a hash of the repr.
MAX_CONSTANT_REPR = 10_000
#: The largest numpy array (in bytes) a parameter may hold.
MAX_ARRAY_BYTES = 1 << 20
#: The most elements of an object-dtype numpy array a parameter may hold.
MAX_OBJECT_ITEMS = 10_000

_FORMAT = b"loopline-code-fingerprint/1"
_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
_STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)
_INSTALL_DIRS = frozenset({"site-packages", "dist-packages"})
# A file modified this recently may be modified again within the same mtime tick: it is
# re-read (and re-hashed) rather than trusted by its stat.
_RACY_NS = 2_000_000_000
_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson serialises

_GLOBAL_OPS = frozenset(
    {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_FROM_DICT_OR_GLOBALS"}
)
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_CONST_OPS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})
_C_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)

_MISSING: Any = object()
_lock = threading.RLock()
_local = threading.local()

ImportRecord = tuple[str | None, int, tuple[str, ...]]  # (module, level, names)


# --------------------------------------------------------------------------- public API


def code_fingerprint(fn: Callable[..., Any], project_root: Path) -> str:
    """Hex sha256 of everything ``fn``'s behaviour depends on (see the module docstring).

    ``fn`` may be a function, a class, a bound method, a ``functools.partial`` (its function),
    a wrapper with ``__wrapped__`` (such as a ``@step``), a builtin or a callable instance
    (its class).
    """
    root = _resolved_root(str(project_root))
    target = _code_target(fn)
    if target is None:  # a builtin or C-level callable: its name and library version
        analysis = _Analysis(root)
        analysis.parts.add(f"builtin:{_callable_path(fn)}")
        top = _callable_module(fn).partition(".")[0]
        if top and top not in _STDLIB:
            analysis.dists.update(_dist_tokens(top))
        return analysis.finish().hex
    return _code_entry(target, root).hex


def value_fingerprint(value: Any, project_root: Path) -> bytes:
    """Canonical bytes of a step parameter, for the cache key.

    JSON-able values give exactly ``canonical_json(value)``; callables, unfitted estimators
    (``get_params()``), dataclasses, numpy scalars/dtypes/small arrays and pandas
    timestamps are described by content. Raises :class:`TypeError` for anything else.
    """
    if _is_jsonable(value):
        try:
            return canonical_json(value)
        except TypeError:  # e.g. a set of mixed types: sorted below by canonical bytes
            pass
    describer = _Describer(_resolved_root(str(project_root)), sink=None)
    return canonical_json(describer.describe(value, ""))


def distribution_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (e.g. "scikit-learn"), or None.

    Every version that enters a fingerprint is looked up here (memoised per process), so
    tests can monkeypatch this one function.
    """
    return _installed_version(dist)


def clear_caches() -> None:
    """Forget every memoised analysis, version and distribution mapping (for tests)."""
    global _import_map_cache
    with _lock:
        _installed_version.cache_clear()
        _distributions_of.cache_clear()
        _project_relpath.cache_clear()
        _is_installed.cache_clear()
        _resolved_absolute.cache_clear()
        _FILES.clear()
        _MEMO.clear()
        _CODE_INFO.clear()
        _import_map_cache = None


# --------------------------------------------------------------------------- versions


@functools.cache
def _installed_version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except Exception:  # not installed, or broken metadata
        return None


_import_map_cache: Mapping[str, list[str]] | None = None


def _import_map() -> Mapping[str, list[str]]:
    """``packages_distributions()``: computed once per process (it reads every RECORD)."""
    global _import_map_cache
    with _lock:
        if _import_map_cache is None:
            import importlib.metadata

            try:
                _import_map_cache = importlib.metadata.packages_distributions()
            except Exception:
                _import_map_cache = {}
        return _import_map_cache


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


# Import names whose distribution is named otherwise (checked against its RECORD before use).
_KNOWN_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "cv2": "opencv-python",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "attr": "attrs",
    "jwt": "pyjwt",
    "umap": "umap-learn",
    "faiss": "faiss-cpu",
}


@functools.cache
def _distributions_of(top: str) -> tuple[str, ...]:
    """The distributions that provide top-level import name ``top`` (normalised names).

    Tries the import name itself and a few well-known aliases first: the general mapping,
    ``packages_distributions()``, reads every installed RECORD (~0.1 s).
    """
    import importlib.metadata

    for candidate, same_name in ((top, True), (_KNOWN_DISTRIBUTIONS.get(top), False)):
        if candidate is None:
            continue
        try:
            dist = importlib.metadata.distribution(candidate)
        except Exception:
            continue
        name = dist.metadata["Name"]
        if name and _provides(dist, top, trust_missing=same_name):
            return (_normalise(name),)
    return tuple(sorted({_normalise(n) for n in _import_map().get(top, [])}))


def _provides(dist: Any, top: str, trust_missing: bool) -> bool:
    """Whether a distribution installs import name ``top`` (top_level.txt, else RECORD)."""
    listed = dist.read_text("top_level.txt")
    if listed is not None:
        return top in listed.split()
    if trust_missing:  # modern wheels often lack top_level.txt; the names agree
        return True
    files = dist.files
    if files is None:
        return False
    return any(f.parts and f.parts[0].partition(".")[0] == top for f in files)


def _dist_tokens(top: str) -> tuple[str, ...]:
    dists = _distributions_of(top)
    return tuple(f"dist:{d}" for d in dists) if dists else (f"module:{top}",)


def _render(token: str) -> str:
    kind, _, name = token.partition(":")
    version = distribution_version(name)
    if kind == "dist":
        return f"lib:{name}=={version or 'unknown'}"
    if version is None:  # no distribution: the module's own __version__, if loaded
        found = getattr(sys.modules.get(name), "__version__", None)
        version = found if isinstance(found, str) else None
    return f"lib:{name}=={version}" if version else f"lib:{name}"


def _loopline_version() -> str:
    module = sys.modules.get("loopline")
    return str(getattr(module, "__version__", "unknown"))


def _render_all(tokens: Iterable[str]) -> tuple[str, ...]:
    rendered = {_render(t) for t in tokens}
    rendered.add(f"python=={_PYTHON}")
    rendered.add(f"loopline=={_loopline_version()}")
    return tuple(sorted(rendered))


# --------------------------------------------------------------------------- files


@dataclasses.dataclass(frozen=True)
class _FileInfo:
    digest: str
    imports: tuple[ImportRecord, ...]  # every import statement, at any depth
    bindings: Mapping[str, tuple[ImportRecord, ...]]  # module-level name -> its imports
    defs: Mapping[str, tuple[tuple[int, int, int], ...]]  # qualname -> (first, def, end)
    lines: tuple[str, ...]


@dataclasses.dataclass
class _FileEntry:
    key: tuple[int, int, int]
    racy: bool
    info: _FileInfo


_FILES: dict[str, _FileEntry] = {}


def _file_info(path: str) -> _FileInfo | None:
    """Digest and analysis of a file, memoised per (mtime_ns, size, inode)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    entry = _FILES.get(path)
    if entry is not None and entry.key == key and not entry.racy:
        return entry.info
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256(data).hexdigest()
    if entry is not None and entry.info.digest == digest:
        info = entry.info
    else:
        info = _parse_file(path, data, digest)
    racy = abs(time.time_ns() - stat.st_mtime_ns) < _RACY_NS
    _FILES[path] = _FileEntry(key, racy, info)
    return info


def _parse_file(path: str, data: bytes, digest: str) -> _FileInfo:
    if not path.endswith((".py", ".pyw")):
        return _FileInfo(digest, (), {}, {}, ())
    try:
        text = importlib.util.decode_source(data)
        tree = ast.parse(text)
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return _FileInfo(digest, (), {}, {}, ())
    collector = _Collector()
    collector.body(tree.body, "", top=True)
    return _FileInfo(
        digest,
        tuple(collector.imports),
        {name: tuple(recs) for name, recs in collector.bindings.items()},
        {name: tuple(spans) for name, spans in collector.defs.items()},
        tuple(text.splitlines(keepends=True)),
    )


class _Collector:
    """Imports, module-level import bindings and the line spans of every def and class."""

    def __init__(self) -> None:
        self.imports: list[ImportRecord] = []
        self.bindings: dict[str, list[ImportRecord]] = {}
        self.defs: dict[str, list[tuple[int, int, int]]] = {}

    def body(self, nodes: Iterable[ast.AST], prefix: str, top: bool) -> None:
        for node in nodes:
            self.node(node, prefix, top)

    def node(self, node: ast.AST, prefix: str, top: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                record: ImportRecord = (alias.name, 0, ())
                self.imports.append(record)
                if top:
                    bound = alias.asname or alias.name.partition(".")[0]
                    self.bindings.setdefault(bound, []).append(record)
        elif isinstance(node, ast.ImportFrom):
            self.imports.append((node.module, node.level, tuple(a.name for a in node.names)))
            if top:
                for alias in node.names:
                    bound = alias.asname or alias.name
                    self.bindings.setdefault(bound, []).append(
                        (node.module, node.level, (alias.name,))
                    )
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualname = prefix + node.name
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            span = (first, node.lineno, node.end_lineno or node.lineno)
            self.defs.setdefault(qualname, []).append(span)
            inner = qualname + ("." if isinstance(node, ast.ClassDef) else ".<locals>.")
            self.body(node.body, inner, top=False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            self.body(node.orelse, prefix, top)  # imports for type checkers never run
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                    self.node(child, prefix, top)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


# --------------------------------------------------------------------------- modules


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of module ``name`` without executing any module (not even its parents)."""
    parent = name.rpartition(".")[0]
    if not parent:
        try:
            spec = importlib.machinery.PathFinder.find_spec(name)
        except Exception:
            spec = None
        if spec is None:  # other meta-path finders (editable installs); imports nothing
            try:
                spec = importlib.util.find_spec(name)
            except Exception:
                spec = None
        return spec
    loaded = sys.modules.get(parent)
    if loaded is not None:
        if getattr(loaded, "__path__", None) is None:
            return None
        try:  # the parent is imported already, so this imports nothing
            return importlib.util.find_spec(name)
        except Exception:
            return None
    parent_spec = _find_spec(parent)
    if parent_spec is None or parent_spec.submodule_search_locations is None:
        return None
    try:
        return importlib.machinery.PathFinder.find_spec(
            name, list(parent_spec.submodule_search_locations)
        )
    except Exception:
        return None


def _locate(name: str) -> tuple[str, str | None, tuple[str, ...]]:
    """("file", path, ()), ("namespace", None, dirs), ("builtin", None, ()) or ("missing", ...)."""
    module = sys.modules.get(name)
    if module is not None:
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file:
            return ("file", file, ())
        locations = getattr(module, "__path__", None)
        if locations is not None:
            return ("namespace", None, tuple(str(p) for p in locations))
        return ("builtin", None, ())
    spec = _find_spec(name)
    if spec is None:
        return ("missing", None, ())
    if spec.origin and spec.has_location:
        return ("file", spec.origin, ())
    if spec.submodule_search_locations is not None:
        return ("namespace", None, tuple(str(p) for p in spec.submodule_search_locations))
    return ("builtin", None, ())


def _resolved_root(root: str) -> Path:
    """The project root, resolved (memoised for absolute paths: cwd cannot change them)."""
    return _resolved_absolute(root) if os.path.isabs(root) else Path(root).resolve()


@functools.lru_cache(maxsize=64)
def _resolved_absolute(root: str) -> Path:
    return Path(root).resolve()


@functools.lru_cache(maxsize=1)
def _prefixes() -> tuple[Path, ...]:
    found = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    return tuple(sorted({Path(p).resolve() for p in found if p}))


def _loopline_dir() -> Path | None:
    file = getattr(sys.modules.get("loopline"), "__file__", None)
    return Path(file).resolve().parent if file else None


def _under(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


@functools.lru_cache(maxsize=8192)
def _project_relpath(path: str, root: str) -> str | None:
    """``path`` relative to the project root, or None when it is not a project file.

    Not project files: anything outside the root, in site-packages/dist-packages, in a
    virtual environment (a ``pyvenv.cfg`` above it, or Python's prefixes) or in Loopline.
    """
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    root_path = Path(root)
    try:
        relative = resolved.relative_to(root_path)
    except ValueError:
        return None
    if _INSTALL_DIRS & set(relative.parts):
        return None
    for prefix in _prefixes():
        if prefix != root_path and root_path in prefix.parents and _under(resolved, prefix):
            return None
    directory = resolved if resolved.is_dir() else resolved.parent
    while directory != root_path and root_path in directory.parents:
        if (directory / "pyvenv.cfg").exists():
            return None
        directory = directory.parent
    loopline_dir = _loopline_dir()
    if loopline_dir is not None and _under(resolved, loopline_dir):
        return None
    return relative.as_posix()


@functools.lru_cache(maxsize=8192)
def _is_installed(path: str) -> bool:
    """Whether a file belongs to an installed distribution or to Python itself."""
    resolved = Path(path).resolve()
    if _INSTALL_DIRS & set(resolved.parts):
        return True
    return any(_under(resolved, prefix) for prefix in _prefixes())


# --------------------------------------------------------------------------- code objects


@dataclasses.dataclass(frozen=True)
class _CodeInfo:
    names: frozenset[str]  # global names read (of this code and its nested code)
    chains: frozenset[tuple[str, ...]]  # global.attr.attr chains (submodule access)
    imports: frozenset[tuple[str, int, tuple[str, ...]]]  # IMPORT_NAME (name, level, fromlist)


_CODE_INFO: weakref.WeakKeyDictionary[types.CodeType, _CodeInfo] = weakref.WeakKeyDictionary()


def _code_info(code: types.CodeType) -> _CodeInfo:
    info = _CODE_INFO.get(code)
    if info is None:
        names: set[str] = set()
        chains: set[tuple[str, ...]] = set()
        imports: set[tuple[str, int, tuple[str, ...]]] = set()
        _scan_code(code, names, chains, imports)
        info = _CodeInfo(frozenset(names), frozenset(chains), frozenset(imports))
        _CODE_INFO[code] = info
    return info


def _scan_code(
    code: types.CodeType,
    names: set[str],
    chains: set[tuple[str, ...]],
    imports: set[tuple[str, int, tuple[str, ...]]],
) -> None:
    consts: list[Any] = []
    chain: list[str] | None = None
    for ins in dis.get_instructions(code):
        op = ins.opname
        if op in _GLOBAL_OPS:
            names.add(str(ins.argval))
            chain = [str(ins.argval)]
            continue
        if op in _ATTR_OPS and chain is not None and len(chain) < 5:
            chain.append(str(ins.argval))
            chains.add(tuple(chain))
            continue
        chain = None
        if op in _CONST_OPS:
            consts.append(ins.argval)
        elif op == "IMPORT_NAME":
            level = consts[-2] if len(consts) >= 2 and isinstance(consts[-2], int) else 0
            fromlist = consts[-1] if consts and isinstance(consts[-1], tuple) else ()
            imports.add((str(ins.argval), level, tuple(str(n) for n in fromlist)))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _scan_code(const, names, chains, imports)


def _code_repr(code: types.CodeType) -> str:
    """The compiled code, without file names, line numbers or addresses."""
    consts = [
        "code:" + _code_repr(c) if isinstance(c, types.CodeType) else _const_repr(c) or repr(c)
        for c in code.co_consts
    ]
    return repr(
        (
            code.co_code,
            consts,
            code.co_names,
            code.co_varnames,
            code.co_freevars,
            code.co_cellvars,
            code.co_argcount,
            code.co_posonlyargcount,
            code.co_kwonlyargcount,
            code.co_flags,
        )
    )


def _simple_repr(value: Any, depth: int) -> str | None:
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes):
        return repr(value)
    if depth > 50:
        return None
    if kind in (tuple, list):
        items = [_simple_repr(v, depth + 1) for v in value]
        if any(i is None for i in items):
            return None
        inner = ", ".join(i for i in items if i is not None)
        return f"({inner},)" if kind is tuple else f"[{inner}]"
    if kind is dict:
        pairs = []
        for key, item in value.items():
            k, v = _simple_repr(key, depth + 1), _simple_repr(item, depth + 1)
            if k is None or v is None:
                return None
            pairs.append(f"{k}: {v}")
        return "{" + ", ".join(pairs) + "}"
    if kind in (set, frozenset):
        members = [_simple_repr(v, depth + 1) for v in value]
        if any(m is None for m in members):
            return None
        return f"{kind.__name__}({{{', '.join(sorted(m for m in members if m is not None))}}})"
    return None


def _const_repr(value: Any) -> str | None:
    """A stable repr of a simple constant (sets sorted; huge ones hashed), else None."""
    text = _simple_repr(value, 0)
    if text is not None and len(text) > MAX_CONSTANT_REPR:
        return "sha256:" + _sha(text)
    return text


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- analysis


@dataclasses.dataclass
class _Entry:
    hex: str
    files: dict[str, str]  # path -> digest read
    snapshot: list[tuple[str, Any, Any, Any]]  # (kind, holder, key, value) read
    unresolved: frozenset[str]  # modules that could not be found
    dists: frozenset[str]  # version tokens
    versions: tuple[str, ...]  # their rendering when computed

    def valid(self) -> bool:
        for path, digest in self.files.items():
            info = _file_info(path)
            if (info.digest if info is not None else "missing") != digest:
                return False
        for kind, holder, key, value in self.snapshot:
            if kind == "item":
                current = holder.get(key, _MISSING)
            elif kind == "cell":
                try:
                    current = holder.cell_contents
                except ValueError:
                    current = _MISSING
            else:
                current = getattr(holder, key, _MISSING)
            if current is not value:
                return False
        if any(_locate(name)[0] != "missing" for name in self.unresolved):
            return False
        return _render_all(self.dists) == self.versions


_MEMO: dict[int, tuple[weakref.ref[Any], dict[str, _Entry]]] = {}


def _memo_get(obj: Any, root: Path) -> _Entry | None:
    found = _MEMO.get(id(obj))
    if found is None or found[0]() is not obj:
        return None
    return found[1].get(str(root))


def _memo_put(obj: Any, root: Path, entry: _Entry) -> None:
    key = id(obj)
    with _lock:
        found = _MEMO.get(key)
        if found is None or found[0]() is not obj:

            def forget(ref: weakref.ref[Any], key: int = key, memo: dict[int, Any] = _MEMO) -> None:
                # ``memo`` is bound now: at interpreter exit the module's globals are gone.
                current = memo.get(key)
                if current is not None and current[0] is ref:
                    memo.pop(key, None)

            try:
                found = (weakref.ref(obj, forget), {})
            except TypeError:
                return
            _MEMO[key] = found
        found[1][str(root)] = entry


def _active() -> set[int]:
    active: set[int] | None = getattr(_local, "active", None)
    if active is None:
        active = _local.active = set()
    return active


def _code_entry(obj: Any, root: Path) -> _Entry:
    """The fingerprint of a function or class, memoised for top-level calls."""
    active = _active()
    if id(obj) in active:  # a value that refers back to a function being fingerprinted
        marker = "recursive:" + _callable_path(obj)
        return _Entry(_sha(marker), {}, [], frozenset(), frozenset(), ())
    top = not active
    if top:
        cached = _memo_get(obj, root)
        if cached is not None and cached.valid():
            return cached
    active.add(id(obj))
    try:
        analysis = _Analysis(root)
        analysis.run(obj)
        entry = analysis.finish()
    finally:
        active.discard(id(obj))
    if top:
        _memo_put(obj, root, entry)
    return entry


def _code_target(fn: Any) -> Any:
    """The function or class whose code a callable runs; None for C-level callables."""
    for _ in range(20):
        if isinstance(fn, types.FunctionType | type):
            return fn
        if isinstance(fn, types.MethodType | staticmethod | classmethod):
            fn = fn.__func__
            continue
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        if isinstance(fn, _C_CALLABLES) or _is_ufunc(fn):
            return None
        wrapped = _instance_wrapped(fn)
        if wrapped is not None:
            fn = wrapped
            continue
        if callable(fn):
            return type(fn)
        break
    raise TypeError(f"cannot fingerprint the code of a {_type_path(type(fn))}: not callable")


def _instance_wrapped(value: Any) -> Any:
    """``__wrapped__`` from an object's own __dict__ (a ``@step``), never via __getattr__."""
    try:
        inner = vars(value).get("__wrapped__")
    except TypeError:
        return None
    return inner if callable(inner) else None


def _is_ufunc(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ufunc)


def _member_functions(attr: Any) -> list[types.FunctionType]:
    if isinstance(attr, types.FunctionType):
        return [attr]
    if isinstance(attr, staticmethod | classmethod):
        return [attr.__func__] if isinstance(attr.__func__, types.FunctionType) else []
    if isinstance(attr, property):
        return [f for f in (attr.fget, attr.fset, attr.fdel) if isinstance(f, types.FunctionType)]
    if isinstance(attr, functools.cached_property):
        return [attr.func] if isinstance(attr.func, types.FunctionType) else []
    return []


class _Analysis:
    """One computation of a code fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_key = str(root)
        self.parts: set[str] = set()
        self.dists: set[str] = {f"dist:{d}" for d in ALWAYS_DISTRIBUTIONS}
        self.files: dict[str, str] = {}
        self.snapshot: list[tuple[str, Any, Any, Any]] = []
        self.unresolved: set[str] = set()
        self.modules: set[str] = set()
        self.kinds: dict[str, tuple[str, str | None]] = {}
        self.items: list[Any] = []
        self.seen: set[int] = set()
        self.infos: dict[str, _FileInfo | None] = {}
        self.home = ""

    # -- driving --------------------------------------------------------------
    def run(self, obj: Any) -> None:
        """Fingerprint ``obj`` and, transitively, what it refers to in its own module."""
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str):
            module = (getattr(obj, "__globals__", None) or {}).get("__name__", "")
        self.home = module
        self.add_item(obj)
        while self.items:
            self.process(self.items.pop())

    def info_for(self, file: Any) -> _FileInfo | None:
        """A source file's analysis; what was read is re-checked before a memo is reused."""
        if not isinstance(file, str) or not file or file.startswith("<"):
            return None
        if file not in self.infos:
            info = self.infos[file] = _file_info(file)
            self.files[file] = info.digest if info is not None else "missing"
        return self.infos[file]

    def finish(self) -> _Entry:
        versions = _render_all(self.dists)
        parts = sorted(self.parts | set(versions))
        digest = sha256_bytes(_FORMAT, *(p.encode("utf-8", "surrogatepass") for p in parts))
        return _Entry(
            digest,
            dict(self.files),
            list(self.snapshot),
            frozenset(self.unresolved),
            frozenset(self.dists),
            versions,
        )

    def merge(self, entry: _Entry) -> None:
        """Fold in what a nested fingerprint read, so that validation re-checks it."""
        self.files.update(entry.files)
        self.snapshot.extend(entry.snapshot)
        self.unresolved |= entry.unresolved
        self.dists |= entry.dists

    # -- same-module functions and classes ------------------------------------
    def add_item(self, obj: Any) -> None:
        if id(obj) not in self.seen:
            self.seen.add(id(obj))
            self.items.append(obj)

    def process(self, obj: Any) -> None:
        qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", "?"))
        if isinstance(obj, type):
            codes = self.class_refs(obj, qualname)
            compiled = "\n".join(f"{name}:{text}" for name, text in sorted(codes))
        else:
            self.function_refs(obj, qualname)
            compiled = _code_repr(obj.__code__)
        source = self.source_of(obj, qualname)
        self.parts.add(f"def:{qualname}:{_sha(source + chr(0) + compiled)}")

    def source_of(self, obj: Any, qualname: str) -> str:
        if isinstance(obj, types.FunctionType):
            file: Any = obj.__code__.co_filename
        else:
            file = getattr(sys.modules.get(obj.__module__), "__file__", None)
        info = self.info_for(file)
        spans = info.defs.get(qualname) if info is not None else None
        if info is not None and spans:
            span = spans[-1]
            code = getattr(obj, "__code__", None)
            if code is not None and len(spans) > 1:
                line = code.co_firstlineno
                span = next((s for s in spans if line in (s[0], s[1])), span)
            return textwrap.dedent("".join(info.lines[span[0] - 1 : span[2]]))
        try:  # lambdas, and functions whose module file is not the home file
            return textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):
            return ""  # defined interactively: the compiled code stands in for it

    def function_refs(self, fn: types.FunctionType, qualname: str) -> None:
        code = fn.__code__
        self.globals_refs(fn.__globals__, _code_info(code))
        if fn.__defaults__:
            self.snapshot.append(("attr", fn, "__defaults__", fn.__defaults__))
            for index, value in enumerate(fn.__defaults__):
                self.ref(value, f"{qualname}:default{index}")
        if fn.__kwdefaults__:
            self.snapshot.append(("attr", fn, "__kwdefaults__", fn.__kwdefaults__))
            for name, value in sorted(fn.__kwdefaults__.items()):
                self.ref(value, f"{qualname}:default:{name}")
        for var, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:
                value = _MISSING
            self.snapshot.append(("cell", cell, None, value))
            self.ref(value, f"{qualname}:closure:{var}")

    def class_refs(self, cls: type, qualname: str) -> list[tuple[str, str]]:
        """Follow a class's methods, attributes and bases; returns its methods' code."""
        codes: list[tuple[str, str]] = []
        # dataclass-made methods (compiled from "<string>") follow from the class source
        generated = self.info_for(getattr(sys.modules.get(cls.__module__), "__file__", None))
        for name, attr in list(vars(cls).items()):
            functions = _member_functions(attr)
            if functions:
                for fn in functions:
                    if getattr(fn, "__module__", None) != cls.__module__:
                        self.ref(fn, f"{qualname}.{name}")
                    elif generated is None or not fn.__code__.co_filename.startswith("<"):
                        self.function_refs(fn, f"{qualname}.{name}")
                        codes.append((f"{name}:{fn.__name__}", _code_repr(fn.__code__)))
            elif isinstance(attr, type) and attr.__qualname__.startswith(cls.__qualname__ + "."):
                codes.extend(self.class_refs(attr, attr.__qualname__))
            elif not (name.startswith("__") and name.endswith("__")):
                self.ref(attr, f"{qualname}.{name}")
        for base in cls.__bases__:
            if base is not object:
                self.ref(base, f"{qualname}:base")
        if type(cls) is not type:
            self.ref(type(cls), f"{qualname}:metaclass")
        return codes

    def globals_refs(self, globals_: Mapping[str, Any], info: _CodeInfo) -> None:
        module_info = self.info_for(globals_.get("__file__"))
        bindings = module_info.bindings if module_info is not None else {}
        package = _package_of(globals_)
        for name in sorted(info.names):
            if name.startswith("__") and name.endswith("__"):
                continue  # __name__, __file__: where the module is, not what it does
            value = globals_.get(name, _MISSING)
            self.snapshot.append(("item", globals_, name, value))
            for record in bindings.get(name, ()):
                self.reach_import(record, package)
            self.ref(value, name)
        for chain in sorted(info.chains):
            self.reach_chain(globals_, chain)
        for name, level, fromlist in sorted(info.imports):
            self.reach_import((name, level, fromlist), package)

    def ref(self, value: Any, label: str) -> None:
        """A value the code reads: a module, a function or class, a constant, or a value."""
        if value is _MISSING:
            return
        if isinstance(value, types.ModuleType):
            self.reach(value.__name__)
            return
        wrapped = _instance_wrapped(value)
        if wrapped is not None and not isinstance(value, types.FunctionType | type):
            self.reach(type(value).__module__)  # the wrapper (e.g. a @step): its library
            self.ref(wrapped, label)
            return
        if isinstance(value, types.FunctionType | type):
            module = getattr(value, "__module__", None)
            if module == self.home:
                self.add_item(value)
            elif isinstance(module, str):
                self.reach(module)
            return
        if isinstance(value, types.MethodType):
            self.ref(value.__func__, label)
            self.ref(value.__self__, label + ".__self__")
            return
        constant = _const_repr(value)
        if constant is not None:
            self.parts.add(f"const:{label}={constant}")
            return
        self.reach(type(value).__module__)
        self.parts.add(f"value:{label}={self.describe(value, label)}")

    def describe(self, value: Any, label: str) -> str:
        """A value's content hash, or its type's name when it cannot be described."""
        try:
            description = _Describer(self.root, sink=self).describe(value, label)
            return _sha(canonical_json(description).decode())
        except Exception:  # TypeError for unsupported values, or a failing get_params()
            return "opaque:" + _type_path(type(value))

    # -- modules ----------------------------------------------------------------
    def classify(self, name: str) -> tuple[str, str | None]:
        """("ignore" | "loopline" | "project" | "namespace" | "third" | "missing", file)."""
        found = self.kinds.get(name)
        if found is not None:
            return found
        top = name.partition(".")[0]
        stdlib = top in _STDLIB
        result: tuple[str, str | None]
        if not top:
            result = ("ignore", None)
        elif top == "loopline":
            result = ("loopline", None)
        else:
            # Located even for standard-library names: a project file may shadow one.
            kind, path, locations = _locate(name)
            if kind == "file" and path is not None:
                if _project_relpath(path, self.root_key) is not None:
                    result = ("project", path)
                else:
                    result = ("ignore" if stdlib else "third", path)
            elif kind == "namespace":
                inside = any(_project_relpath(p, self.root_key) for p in locations)
                result = ("namespace" if inside else "ignore" if stdlib else "third", None)
            elif kind == "builtin" or stdlib:
                result = ("ignore", None)
            else:
                result = ("missing", None)
        self.kinds[name] = result
        return result

    def reach(self, name: str) -> None:
        """A module the code executes, with its parent packages."""
        pieces = name.split(".")
        for end in range(1, len(pieces) + 1):
            self.reach_one(".".join(pieces[:end]))

    def reach_one(self, name: str) -> None:
        if not name or name in self.modules:
            return
        self.modules.add(name)
        kind, path = self.classify(name)
        top = name.partition(".")[0]
        if kind == "project" and path is not None:
            relative = _project_relpath(path, self.root_key)
            info = _file_info(path)
            self.files[path] = info.digest if info is not None else "missing"
            if info is None:
                self.parts.add(f"file:{relative}:unreadable")
                return
            self.parts.add(f"file:{relative}:{info.digest}")
            is_package = os.path.basename(path).startswith("__init__.")
            package = name if is_package else name.rpartition(".")[0]
            for record in info.imports:
                self.reach_import(record, package)
        elif kind == "third":
            self.dists.update(_dist_tokens(top))
        elif kind == "missing":
            self.unresolved.add(name)
            if name == top or self.classify(top)[0] in ("third", "missing"):
                self.dists.update(_dist_tokens(top))

    def reach_import(self, record: ImportRecord, package: str | None) -> None:
        module, level, names = record
        if level:
            try:
                base = importlib.util.resolve_name("." * level + (module or ""), package)
            except (ImportError, ValueError):
                return
        else:
            base = module or ""
        if not base:
            return
        self.reach(base)
        if self.classify(base)[0] not in ("project", "namespace"):
            return  # a library's submodules add nothing: its version covers them
        for member in names:
            candidate = f"{base}.{member}"
            if member != "*" and (candidate in sys.modules or self.is_submodule(base, candidate)):
                self.reach(candidate)

    def reach_chain(self, globals_: Mapping[str, Any], chain: tuple[str, ...]) -> None:
        """``pkg.sub.f()`` on a module global reaches ``pkg.sub`` when it is a submodule."""
        value = globals_.get(chain[0])
        if not isinstance(value, types.ModuleType):
            return
        base = value.__name__
        for attr in chain[1:]:
            candidate = f"{base}.{attr}"
            if candidate not in sys.modules and not self.is_submodule(base, candidate):
                return
            self.reach(candidate)
            base = candidate

    def is_submodule(self, package: str, candidate: str) -> bool:
        """Whether ``candidate`` is a module of project package ``package`` (not imported)."""
        if self.classify(package)[0] not in ("project", "namespace"):
            return False
        return _locate(candidate)[0] in ("file", "namespace")


def _package_of(globals_: Mapping[str, Any]) -> str | None:
    package = globals_.get("__package__")
    if isinstance(package, str):
        return package
    spec = globals_.get("__spec__")
    parent = getattr(spec, "parent", None)
    return parent if isinstance(parent, str) else None


# --------------------------------------------------------------------------- values


def _is_jsonable(value: Any, depth: int = 0) -> bool:
    """Whether ``canonical_json`` takes ``value`` as is (the parameters of today)."""
    kind = type(value)
    if value is None or kind in (bool, str, float):
        return True
    if kind is int:
        return _INT_RANGE[0] <= value <= _INT_RANGE[1]
    if depth > 100:
        return False
    if isinstance(value, Path) or kind in (datetime, date, dt_time, uuid.UUID):
        return True
    if kind in (list, tuple, set, frozenset):
        return all(_is_jsonable(v, depth + 1) for v in value)
    if kind is dict:
        return all(type(k) is str and _is_jsonable(v, depth + 1) for k, v in value.items())
    return False


def _type_path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _callable_module(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    if isinstance(module, str):
        return module
    owner = getattr(obj, "__objclass__", None) or getattr(obj, "__self__", None)
    if isinstance(owner, types.ModuleType):
        return owner.__name__
    if owner is not None:
        return (owner if isinstance(owner, type) else type(owner)).__module__
    return type(obj).__module__


def _callable_path(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{_callable_module(obj)}.{name or type(obj).__qualname__}"


def _dtype_name(dtype: Any) -> str:
    return repr(dtype.descr) if dtype.fields else str(dtype.str)


def _looks_fitted(estimator: Any) -> bool:
    """scikit-learn's convention: fitted state lives in attributes ending with "_"."""
    try:
        attributes = vars(estimator)
    except TypeError:
        return False
    return any(k.endswith("_") and not k.startswith("__") for k in attributes)


def _unsupported(value: Any, where: str, reason: str = "") -> TypeError:
    at = f" (at {where})" if where else ""
    because = f": {reason}" if reason else ""
    return TypeError(
        f"a {_type_path(type(value))}{at} cannot be part of a cache key{because}; pass data "
        "(data frames, tensors, fitted models, open files) as a step output, or a JSON-able "
        "description of it (a path, a name, or the parameters to build it inside the step)"
    )


class _Describer:
    """A parameter value as a JSON-able description, by content."""

    def __init__(self, root: Path, sink: _Analysis | None) -> None:
        self.root = root
        self.sink = sink
        self.active: set[int] = set()

    def describe(self, value: Any, where: str) -> Any:
        kind = type(value)
        if value is None or kind in (bool, str, float):
            return value
        if kind is int:
            return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else {"int": str(value)}
        if isinstance(value, enum.Enum):
            return {"enum": _type_path(kind), "name": value.name, "value": _const_repr(value.value)}
        if isinstance(value, PurePath):
            return str(value)
        if kind in (datetime, date, dt_time, uuid.UUID):
            return value
        if kind is timedelta:
            return {"timedelta": [value.days, value.seconds, value.microseconds]}
        if isinstance(value, list | tuple | dict | set | frozenset):
            return self.container(value, where)
        if isinstance(value, bytes | bytearray):
            return {"bytes": hashlib.sha256(value).hexdigest()}
        if isinstance(value, re.Pattern):
            pattern = value.pattern
            return {
                "regex": pattern if isinstance(pattern, str) else pattern.hex(),
                "flags": value.flags,
            }
        special = self.library_value(value, where)
        if special is not None:
            return special
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.guarded(value, where, self.dataclass)
        if not isinstance(value, type) and callable(getattr(value, "get_params", None)):
            return self.guarded(value, where, self.estimator)
        return self.callable(value, where)

    def guarded(self, value: Any, where: str, describe: Callable[[Any, str], Any]) -> Any:
        if id(value) in self.active:
            raise _unsupported(value, where, "it contains itself")
        self.active.add(id(value))
        try:
            return describe(value, where)
        finally:
            self.active.discard(id(value))

    def container(self, value: Any, where: str) -> Any:
        return self.guarded(value, where, self._container)

    def _container(self, value: Any, where: str) -> Any:
        if isinstance(value, list | tuple):
            return [self.describe(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(type(k) is str for k in value):
                return {k: self.describe(v, f"{where}[{k!r}]") for k, v in value.items()}
            pairs = [
                [self.describe(k, f"{where} key {k!r}"), self.describe(v, f"{where}[{k!r}]")]
                for k, v in value.items()
            ]
            return {"dict": sorted(pairs, key=canonical_json)}
        members = [self.describe(v, f"{where} member") for v in value]
        return sorted(members, key=canonical_json)

    def library_value(self, value: Any, where: str) -> Any:
        """numpy and pandas values (only looked for when those libraries are loaded)."""
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            if isinstance(value, numpy.ndarray):
                return self.array(value, where)
            if isinstance(value, numpy.generic):
                if value.dtype.hasobject:
                    return self.describe(value.item(), where)
                return {"numpy": _dtype_name(value.dtype), "value": value.tobytes().hex()}
            if isinstance(value, numpy.dtype):
                return {"dtype": _dtype_name(value)}
            if isinstance(value, type) and issubclass(value, numpy.generic):
                return {"type": f"numpy.{value.__name__}"}
        pandas = sys.modules.get("pandas")
        if pandas is not None:
            if value is pandas.NaT:
                return {"timestamp": "NaT"}
            if isinstance(value, pandas.Timestamp):
                tz = None if value.tz is None else str(value.tz)
                return {"timestamp": value.isoformat(), "tz": tz}
            if isinstance(value, pandas.Timedelta):
                return {"timedelta": value.isoformat()}
        return None

    def array(self, value: Any, where: str) -> Any:
        import numpy

        if value.dtype.hasobject:
            if value.size > MAX_OBJECT_ITEMS:
                raise _unsupported(value, where, f"more than {MAX_OBJECT_ITEMS} objects")
            items = [self.describe(v, f"{where}[{i}]") for i, v in enumerate(value.ravel())]
            return {"ndarray": "object", "shape": list(value.shape), "items": items}
        if value.nbytes > MAX_ARRAY_BYTES:
            raise _unsupported(
                value, where, f"{value.nbytes} bytes is over the {MAX_ARRAY_BYTES}-byte limit"
            )
        data = numpy.ascontiguousarray(value).tobytes()
        return {
            "ndarray": _dtype_name(value.dtype),
            "shape": list(value.shape),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def dataclass(self, value: Any, where: str) -> Any:
        kind = type(value)
        fields = {
            f.name: self.describe(getattr(value, f.name, None), f"{where}.{f.name}")
            for f in dataclasses.fields(value)
        }
        return {"dataclass": _type_path(kind), **self.identity(kind), "fields": fields}

    def estimator(self, value: Any, where: str) -> Any:
        kind = type(value)
        if _looks_fitted(value):
            raise _unsupported(
                value, where, "it is fitted, and get_params() does not cover what it learned"
            )
        params = value.get_params(deep=False)
        described = {k: self.describe(v, f"{where}.{k}") for k, v in params.items()}
        return {"estimator": _type_path(kind), **self.identity(kind), "params": described}

    def callable(self, value: Any, where: str) -> Any:
        if isinstance(value, functools.partial):
            return self.guarded(value, where, self._partial)
        if isinstance(value, types.MethodType):
            return {
                "method": self.describe(value.__func__, where),
                "self": self.describe(value.__self__, f"{where}.__self__"),
            }
        if isinstance(value, types.FunctionType | type):
            return {"callable": _callable_path(value), **self.identity(value)}
        if isinstance(value, _C_CALLABLES) or _is_ufunc(value):
            described: dict[str, Any] = {"callable": _callable_path(value)}
            described.update(self.library(_callable_module(value)))
            owner = getattr(value, "__self__", None)
            if owner is not None and not isinstance(owner, types.ModuleType | type):
                described["self"] = self.describe(owner, f"{where}.__self__")
            return described
        wrapped = _instance_wrapped(value)
        if isinstance(wrapped, types.FunctionType):
            return {
                "callable": _callable_path(wrapped),
                "wrapper": _type_path(type(value)),
                **self.identity(wrapped),
            }
        raise _unsupported(value, where)

    def _partial(self, value: functools.partial[Any], where: str) -> Any:
        return {
            "partial": self.describe(value.func, where),
            "args": [self.describe(a, f"{where}.args[{i}]") for i, a in enumerate(value.args)],
            "keywords": {
                k: self.describe(v, f"{where}.keywords[{k!r}]") for k, v in value.keywords.items()
            },
        }

    def identity(self, obj: Any) -> dict[str, str]:
        """What pins a function's or class's behaviour: its code, or its library's version."""
        module = _callable_module(obj)
        mod = sys.modules.get(module)
        file = getattr(mod, "__file__", None)
        if isinstance(obj, types.FunctionType):
            file = obj.__code__.co_filename
        real_file = isinstance(file, str) and not file.startswith("<")
        in_project = real_file and _project_relpath(file, str(self.root)) is not None
        if not in_project:
            if module.partition(".")[0] in _STDLIB:
                return {"library": f"python=={_PYTHON}"}
            if real_file and _is_installed(file):
                return self.library(module)
            if file is None and isinstance(obj, type) and mod is not None:
                return self.library(module)  # a class of an extension module without a file
        entry = _code_entry(obj, self.root)
        if self.sink is not None:
            self.sink.merge(entry)
        return {"code": entry.hex}

    def library(self, module: str) -> dict[str, str]:
        top = module.partition(".")[0]
        if not top or top in _STDLIB:
            return {"library": f"python=={_PYTHON}"}
        if top == "loopline":
            return {"library": f"loopline=={_loopline_version()}"}
        tokens = _dist_tokens(top)
        if self.sink is not None:
            self.sink.dists.update(tokens)
        return {"library": ",".join(sorted(_render(t).removeprefix("lib:") for t in tokens))}
