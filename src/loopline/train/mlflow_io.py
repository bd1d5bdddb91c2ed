"""Models in the MLflow model format, by flavour: scikit-learn, LightGBM, PyTorch.

:func:`save_model` writes a :class:`~loopline.train.model.Model` as a standard MLflow model
folder of the estimator's own flavour (so ``mlflow models serve``, ``mlflow.pyfunc`` and
the MLflow UI work on it) plus ``loopline.json``, the features, target, task and classes the
loop needs; :func:`load_model` reads either back. The same format is used for pipeline
artifacts (:class:`ModelMaterializer`, plugged into the core through the
``loopline.materializers`` entry point) and for registered versions, so registering a
trained model copies its folder instead of serialising it again.

``mlflow`` (2-3 s to import) is imported inside the functions.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from loopline.train.model import Model, as_model, estimator_flavor

MODEL_FOLDER = "model"
DESCRIPTION_FILE = "loopline.json"
_LIBRARIES = {
    "sklearn": ("scikit-learn",),
    "lightgbm": ("lightgbm", "scikit-learn"),
    "pytorch": ("torch",),
}


def quiet_mlflow() -> None:
    """Turn off telemetry, git probing and INFO chatter before the first ``import mlflow``.

    MLflow logs every schema migration of its SQLite store at INFO; Loopline's own
    output says what happened instead.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # With a tracking server MLflow prints "View run ... at: URL" to stdout on every finished
    # run, which would corrupt `--json` output.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow configures its loggers on import from this variable (INFO by default).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def save_model(
    model: Model | Any, path: Path, *, signature: Any = None, input_example: Any = None
) -> None:
    """Write ``model`` at ``path`` (which must not exist) in its MLflow flavour.

    ``model`` is a :class:`Model` or a bare fitted estimator (loaded back as it was saved).

    Trust decision: models are pickled with cloudpickle (PyTorch modules through MLflow's
    pickle module, also cloudpickle), not skops. skops refuses arbitrary code on load, but
    for the TF-IDF sentiment model it writes ~101 MB and loads in ~6 s, against ~4 MB /
    0.5 s here, and serving hot-swaps models. Pickle executes code from the file on load,
    so a registry or artifact store must only be writable by people you trust to run code
    on the serving host (true for the local .loopline/; restrict write access on shared
    stores).
    """
    quiet_mlflow()
    estimator = model.estimator if isinstance(model, Model) else model
    description = model.describe() if isinstance(model, Model) else {"bare": True}
    flavor = estimator_flavor(estimator)
    _pickle_project_code_by_value()
    _forget_object_addresses(estimator)
    common: dict[str, Any] = {
        "signature": signature,
        "input_example": input_example,
        # Explicit requirements: inferring them re-imports the model in a subprocess
        # (10-14 s per save).
        "pip_requirements": pip_requirements(flavor),
    }
    with _quiet_pickle_warning():
        if flavor == "pytorch":
            import mlflow.pytorch

            # Pickled module (cloudpickle), not "pt2": an exported graph needs an example
            # input at save time and fixes the batch shape.
            mlflow.pytorch.save_model(estimator, str(path), serialization_format="pickle", **common)
        elif flavor == "lightgbm":
            import mlflow.lightgbm

            mlflow.lightgbm.save_model(
                estimator, str(path), serialization_format="cloudpickle", **common
            )
        else:
            import mlflow.sklearn

            mlflow.sklearn.save_model(
                estimator, str(path), serialization_format="cloudpickle", **common
            )
    (path / DESCRIPTION_FILE).write_bytes(
        orjson.dumps(description, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    _content_addressed_mlmodel(path)


def _forget_object_addresses(estimator: Any) -> None:
    """Drop what a fitted estimator remembers of object addresses, so its pickle is the same
    in every process: scikit-learn's text vectorizers cache ``id(stop_words)`` (an address,
    different in each process) to skip a consistency check, which simply runs again
    without it. Walks pipelines, column transformers and other nested estimators."""
    seen: set[int] = set()
    pending = [estimator]
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, list | tuple):
            pending.extend(_walkable(obj))
            continue
        if isinstance(obj, dict):
            pending.extend(_walkable(obj.values()))
            continue
        state = getattr(obj, "__dict__", None)
        if state is None or not hasattr(obj, "get_params"):
            continue  # only estimators (and the containers holding them) are walked
        state.pop("_stop_words_id", None)
        pickled = obj.__getstate__()  # what pickle stores: not a transformer's caches
        pending.extend(_walkable(pickled.values() if isinstance(pickled, dict) else state.values()))


def _walkable(values: Iterable[Any]) -> list[Any]:
    """The ``values`` the walk above must visit: containers and estimators. A fitted
    vocabulary is a dict of hundreds of thousands of ints: checking the set of its values'
    types rather than each value, and skipping what pickle skips (the lexicon's token
    cache), takes the walk over the sentiment model from 0.12 s to 0.007 s."""
    values = list(values)
    kinds = [k for k in set(map(type, values)) if _may_hold_estimators(k)]
    return [v for v in values if type(v) in kinds] if kinds else []


def _may_hold_estimators(kind: type) -> bool:
    return issubclass(kind, list | tuple | dict) or hasattr(kind, "get_params")


# MLflow writes a random model_uuid and the save time into every MLmodel file, so saving the
# same model twice gave two artifact hashes: a re-run, a reproduction or a step run by an
# orchestrator could never match. The time goes (MLflow fills in the load time when it is
# absent; the registry keeps its own creation time) and the uuid comes from the content.
_VOLATILE_MLMODEL_LINE = re.compile(r"^(model_uuid|utc_time_created): .*\n", re.MULTILINE)


def _content_addressed_mlmodel(path: Path) -> None:
    """Make ``path``'s MLmodel depend on the model only: a uuid derived from the folder's
    content, no save time."""
    from loopline.core.hashing import hash_tree

    mlmodel = path / "MLmodel"
    text = _VOLATILE_MLMODEL_LINE.sub("", mlmodel.read_text(encoding="utf-8"))
    mlmodel.write_text(text, encoding="utf-8")
    digest = hash_tree(path)
    mlmodel.write_text(f"{text}model_uuid: {digest[:32]}\n", encoding="utf-8")


def load_model(path: str | Path) -> Any:
    """Read an MLflow model folder back as it was saved: a :class:`Model`, or a bare
    estimator (also for folders without ``loopline.json``, saved by other tools)."""
    quiet_mlflow()
    from mlflow.models import Model as MlflowModel

    folder = Path(path)
    flavors = MlflowModel.load(str(folder / "MLmodel")).flavors
    if "pytorch" in flavors:
        import mlflow.pytorch

        estimator = mlflow.pytorch.load_model(str(folder), map_location="cpu")
    elif "lightgbm" in flavors:
        import mlflow.lightgbm

        estimator = mlflow.lightgbm.load_model(str(folder))
    else:
        import mlflow.sklearn

        estimator = mlflow.sklearn.load_model(str(folder))
    description_file = folder / DESCRIPTION_FILE
    description = orjson.loads(description_file.read_bytes()) if description_file.is_file() else {}
    if "features" in description:
        return Model.from_description(estimator, description)
    return estimator


def load_as_model(path: str | Path) -> Model:
    """:func:`load_model`, with a bare estimator wrapped (features from its
    ``feature_names_in_`` or else from the saved signature)."""
    loaded = load_model(path)
    if isinstance(loaded, Model):
        return loaded
    if getattr(loaded, "feature_names_in_", None) is None:
        columns = signature_columns(Path(path))
        if columns:
            loaded.feature_names_in_ = columns
    return as_model(loaded)


def signature_columns(folder: Path) -> list[str]:
    """The input column names of a saved model's signature (empty without one)."""
    from mlflow.models import Model as MlflowModel

    signature = MlflowModel.load(str(folder / "MLmodel")).signature
    return list(signature.inputs.input_names()) if signature else []


def signature_types(folder: Path) -> dict[str, str]:
    """Input column -> MLflow type name (``string``, ``double``, ``long``, ``boolean``...)."""
    from mlflow.models import Model as MlflowModel

    signature = MlflowModel.load(str(folder / "MLmodel")).signature
    if signature is None:
        return {}
    spec = signature.inputs
    return {
        str(name): str(getattr(kind, "name", kind))
        for name, kind in zip(spec.input_names(), spec.input_types(), strict=True)
    }


def describe_saved_model(path: Path, *, signature: Any, input_example: Any) -> None:
    """Add a signature and an input example to an MLflow model folder saved without them."""
    quiet_mlflow()
    from mlflow.models import Model as MlflowModel
    from mlflow.models.utils import _save_example

    saved = MlflowModel.load(str(path))
    saved.signature = signature
    # The same helper every MLflow flavour uses to write input_example.json.
    _save_example(saved, input_example, str(path))
    saved.save(str(path / "MLmodel"))


def pip_requirements(flavor: str = "sklearn") -> list[str]:
    """Pinned requirements of a Loopline model of this flavour, read from this environment."""
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    # loopline is listed because trained models reference its code (preprocessors, Model).
    packages = ("loopline", *_LIBRARIES.get(flavor, ()), "numpy", "scipy", "pandas", "cloudpickle")
    for package in dict.fromkeys(packages):
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def _pickle_project_code_by_value() -> None:
    """Functions and classes of a project's own files travel inside the pickle.

    A pipeline file is loaded by path (module ``loopline_project.<name>``), which no other
    process can import; a model that references a function or ``nn.Module`` class defined
    there (or in a helper module beside it) must carry that code, or ``loopline serve``
    could not load it.
    """
    import cloudpickle

    roots = {
        Path(str(module.__file__)).parent
        for name, module in list(sys.modules.items())
        if name.startswith("loopline_project.") and getattr(module, "__file__", None)
    }
    if not roots:
        return
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or "site-packages" in file or name.startswith("loopline."):
            continue
        if name.startswith("loopline_project.") or any(
            Path(file).resolve().is_relative_to(root.resolve()) for root in roots
        ):
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:  # not importable by its name: already pickled by value
                continue


@contextmanager
def _quiet_pickle_warning() -> Iterator[None]:
    """Silence MLflow's pickle warning: the trade-off is decided and documented above."""
    loggers = [logging.getLogger(name) for name in ("mlflow.sklearn", "mlflow.pytorch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class ModelMaterializer:
    """Trained models <-> the MLflow model format, in an artifact's ``model/`` folder.

    Saves :class:`Model` objects and fitted scikit-learn-style estimators, and loads each
    back as it was; reads artifacts written under the older name ``mlflow.sklearn`` too.
    """

    name = "mlflow.model"
    aliases = ("mlflow.sklearn",)

    def can_save(self, obj: Any) -> bool:
        if isinstance(obj, Model):
            return True
        # Fitted scikit-learn-style estimators (also LightGBM's), by class names only.
        mro = [c.__module__ for c in type(obj).__mro__]
        return any(m.startswith("sklearn.") for m in mro) and hasattr(obj, "fit")

    def save(self, obj: Any, folder: Path) -> None:
        save_model(obj, folder / MODEL_FOLDER)

    def load(self, folder: Path) -> Any:
        return load_model(folder / MODEL_FOLDER)
