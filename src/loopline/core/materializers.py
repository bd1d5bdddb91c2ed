"""Materializers turn step outputs into files and back.

Each writes into an empty folder it is given; the artifact store hashes that folder and
moves it into place atomically. Register your own with :func:`register_materializer`, or
ship it in a package under the ``loopline.materializers`` entry-point group: that is how
the model formats (``loopline.train``: scikit-learn, LightGBM and PyTorch models in the
MLflow model format) plug in without the core knowing about MLflow. Checks use type names
rather than imports so that choosing a materializer never imports pandas, numpy or
scikit-learn just to say no.
"""

from __future__ import annotations

import pickle
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import orjson


class Materializer(Protocol):
    """Saves one kind of object to a folder and loads it back."""

    name: str

    def can_save(self, obj: Any) -> bool:
        """Whether this materializer handles ``obj``."""
        ...

    def save(self, obj: Any, folder: Path) -> None:
        """Write ``obj`` into the (empty, existing) ``folder``."""
        ...

    def load(self, folder: Path) -> Any:
        """Read the object back from ``folder``."""
        ...


def _type_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class DataFrameMaterializer:
    """pandas DataFrame <-> Parquet."""

    name = "pandas.parquet"

    def can_save(self, obj: Any) -> bool:
        return _type_path(obj).startswith("pandas.") and type(obj).__name__ == "DataFrame"

    def save(self, obj: Any, folder: Path) -> None:
        obj.to_parquet(folder / "data.parquet", compression="zstd")

    def load(self, folder: Path) -> Any:
        import pandas as pd
        import pyarrow.parquet as pq

        path = folder / "data.parquet"
        frame = pd.read_parquet(path)
        _restore_time_units(frame, pq.read_schema(path).pandas_metadata or {})
        return frame


def _restore_time_units(frame: Any, pandas_metadata: dict[str, Any]) -> None:
    """Give datetime columns (and the index) back the unit they were saved with.

    Parquet has no seconds unit: a ``datetime64[s]`` column is stored in milliseconds and
    read back as ``datetime64[ms]``, so a step fed from the store would see another frame
    (and hash other bytes) than one fed the object in memory. pandas records each column's
    numpy type in the file; casting back to it is exact (the values were whole seconds).
    """
    import numpy as np

    index_fields = [f for f in pandas_metadata.get("index_columns", []) if isinstance(f, str)]
    for entry in pandas_metadata.get("columns", []):
        saved = entry.get("numpy_type") or ""
        if not saved.startswith("datetime64["):
            continue
        unit = np.datetime_data(np.dtype(saved))[0]
        name, field = entry.get("name"), entry.get("field_name")
        if field in index_fields:
            index = frame.index
            if len(index_fields) == 1 and getattr(index, "unit", unit) != unit:
                frame.index = index.as_unit(unit)
            continue
        if name in frame.columns:
            column = frame[name]
            if getattr(column.dt, "unit", unit) != unit:
                frame[name] = column.dt.as_unit(unit)


class NumpyMaterializer:
    """numpy ndarray <-> .npy (no pickled objects)."""

    name = "numpy.npy"

    def can_save(self, obj: Any) -> bool:
        return _type_path(obj) == "numpy.ndarray" and obj.dtype != object

    def save(self, obj: Any, folder: Path) -> None:
        import numpy as np

        np.save(folder / "data.npy", obj, allow_pickle=False)

    def load(self, folder: Path) -> Any:
        import numpy as np

        return np.load(folder / "data.npy", allow_pickle=False)


class JsonMaterializer:
    """Plain JSON-able values (dicts, lists, strings, numbers, booleans, None)."""

    name = "json"

    def can_save(self, obj: Any) -> bool:
        if not isinstance(obj, dict | list | str | int | float | bool | type(None)):
            return False
        try:
            orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            return False
        return True

    def save(self, obj: Any, folder: Path) -> None:
        data = orjson.dumps(
            obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
        )
        (folder / "data.json").write_bytes(data)

    def load(self, folder: Path) -> Any:
        return orjson.loads((folder / "data.json").read_bytes())


class ModelVersionMaterializer:
    """The :class:`~loopline.core.lineage.ModelVersion` a register step returns, as JSON."""

    name = "loopline.model_version"

    def can_save(self, obj: Any) -> bool:
        return _type_path(obj) == "loopline.core.lineage.ModelVersion"

    def save(self, obj: Any, folder: Path) -> None:
        (folder / "data.json").write_bytes(
            orjson.dumps(obj.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        )

    def load(self, folder: Path) -> Any:
        from loopline.core.lineage import ModelVersion

        return ModelVersion.from_dict(orjson.loads((folder / "data.json").read_bytes()))


class PickleMaterializer:
    """Anything else, pickled. The last resort: prefer a typed materializer."""

    name = "pickle"

    def can_save(self, obj: Any) -> bool:
        return True

    def save(self, obj: Any, folder: Path) -> None:
        with (folder / "data.pkl").open("wb") as handle:
            pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, folder: Path) -> Any:
        with (folder / "data.pkl").open("rb") as handle:
            return pickle.load(handle)


ENTRY_POINT_GROUP = "loopline.materializers"

# Tried in order; plugins go after the built-in typed ones and before the pickle fallback.
_BUILTIN: list[Materializer] = [
    DataFrameMaterializer(),
    NumpyMaterializer(),
    ModelVersionMaterializer(),
    JsonMaterializer(),
]
_FALLBACK = PickleMaterializer()
_registered: list[Materializer] = []
_plugins: list[Materializer] | None = None
_plugins_lock = threading.Lock()


def register_materializer(materializer: Materializer) -> None:
    """Add a materializer; it is tried before the built-in ones."""
    _registered.insert(0, materializer)


def _entry_point_materializers() -> list[Materializer]:
    """Materializers of installed packages (loaded once, on first need)."""
    global _plugins
    if _plugins is None:
        with _plugins_lock:
            if _plugins is None:
                found: list[Materializer] = []
                for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
                    found.append(point.load()())
                _plugins = found
    return _plugins


def materializer_for(obj: Any) -> Materializer:
    """The first materializer that can save ``obj`` (pickle when none else can)."""
    for materializer in (*_registered, *_BUILTIN):
        if materializer.can_save(obj):
            return materializer
    for materializer in _entry_point_materializers():
        if materializer.can_save(obj):
            return materializer
    return _FALLBACK


def materializer_named(name: str) -> Materializer:
    """Look a materializer up by the name stored with an artifact."""
    candidates = (*_registered, *_BUILTIN, _FALLBACK)
    for materializer in candidates:
        if materializer.name == name:
            return materializer
    for materializer in _entry_point_materializers():
        if name == materializer.name or name in getattr(materializer, "aliases", ()):
            return materializer
    raise KeyError(
        f"no materializer named {name!r} is installed; install the package that provides it "
        f"(entry-point group {ENTRY_POINT_GROUP!r}) or register it before loading this artifact"
    )
