"""Materializers turn step outputs into files and back.

Each writes into an empty folder it is given; the artifact store hashes that folder and
moves it into place atomically. Register your own with :func:`register_materializer`.
Checks use type names rather than imports so that choosing a materializer never imports
pandas, numpy or scikit-learn just to say no.
"""

from __future__ import annotations

import pickle
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

        return pd.read_parquet(folder / "data.parquet")


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


class SklearnModelMaterializer:
    """scikit-learn estimators <-> the MLflow model format (``MLmodel`` + pickled model).

    Pickle (cloudpickle) is chosen over skops for load speed: see ``save_sklearn_model``.
    """

    name = "mlflow.sklearn"

    def can_save(self, obj: Any) -> bool:
        return _type_path(obj).startswith("sklearn.") and hasattr(obj, "fit")

    def save(self, obj: Any, folder: Path) -> None:
        from loopline.registry.mlflow_env import save_sklearn_model

        save_sklearn_model(obj, folder / "model")

    def load(self, folder: Path) -> Any:
        from loopline.registry.mlflow_env import quiet_mlflow

        quiet_mlflow()
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(folder / "model"))


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


_MATERIALIZERS: list[Materializer] = [
    DataFrameMaterializer(),
    NumpyMaterializer(),
    SklearnModelMaterializer(),
    JsonMaterializer(),
    PickleMaterializer(),
]


def register_materializer(materializer: Materializer) -> None:
    """Add a materializer; it is tried before the built-in ones."""
    _MATERIALIZERS.insert(0, materializer)


def materializer_for(obj: Any) -> Materializer:
    """The first registered materializer that can save ``obj``."""
    return next(m for m in _MATERIALIZERS if m.can_save(obj))


def materializer_named(name: str) -> Materializer:
    """Look a materializer up by the name stored with an artifact."""
    for materializer in _MATERIALIZERS:
        if materializer.name == name:
            return materializer
    raise KeyError(
        f"no materializer named {name!r} is registered; register it before loading this artifact"
    )
