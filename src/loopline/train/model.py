"""One model type for the whole loop, whatever trained it.

A :class:`Model` is a fitted estimator plus what every later stage needs to use it without
being told again: the feature columns it reads, the target it predicts, the task and the
class labels. The estimator can be anything MLflow can log: a scikit-learn estimator or
pipeline, a LightGBM model, or a PyTorch ``nn.Module``. Evaluation, the gate, the reference
profile, registration, serving and monitoring all go through :meth:`Model.predict_proba`
and :meth:`Model.predict`, so they work the same for every kind.

:func:`fit_model` makes one from data: it fits (a clone of) an estimator, or calls a
training function. Class labels are strings throughout the loop (as served and logged).

Heavy libraries (scikit-learn, torch) are imported inside the functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from loopline.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# "detection": an object detector (loopline.train.detector); it reads encoded images and
# predicts boxes, and only predict() applies to it.
Task = Literal["classification", "regression", "detection"]
Flavor = Literal["sklearn", "lightgbm", "pytorch"]

# A training function: (features, target[, sample_weight=...]) -> a fitted estimator or an
# nn.Module. For classification the target arrives as integer codes 0..k-1 of the sorted
# class labels, and the model's outputs are read in that order.
TrainingFunction = Callable[..., Any]


@dataclass(eq=False)
class Model:
    """A fitted estimator with its ``features``, ``target``, ``task`` and ``classes``.

    ``classes`` (classification only) are the labels in the order of the columns of
    :meth:`predict_proba`. ``codes`` is True when the estimator was trained on integer
    codes of ``classes`` (training functions) rather than on the labels themselves.
    """

    estimator: Any
    features: list[str]
    target: str | None = None
    task: Task = "classification"
    classes: list[str] | None = None
    codes: bool = False

    @property
    def flavor(self) -> Flavor:
        """How MLflow stores the estimator: ``sklearn``, ``lightgbm`` or ``pytorch``."""
        return estimator_flavor(self.estimator)

    @property
    def classes_(self) -> list[str]:
        """scikit-learn's name for :attr:`classes`."""
        return list(self.classes or [])

    @property
    def feature_names_in_(self) -> list[str]:
        """scikit-learn's name for :attr:`features`."""
        return list(self.features)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities for the rows of ``frame`` (columns in :attr:`classes` order).

        Only the feature columns are passed on; extra columns are ignored.
        """
        import numpy as np

        if self.task != "classification":
            raise DataError(
                f"this is a {self.task} model: it has no class probabilities",
                hint="call predict() for its values",
            )
        X = self._inputs(frame)
        if self.flavor == "pytorch":
            return _torch_proba(self.estimator, X)
        return np.asarray(self.estimator.predict_proba(X), dtype=float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class labels (classification), values (regression) or, for a detector, each
        image's list of boxes (``{"label", "score", "box": [x, y, w, h]}``) for the rows of
        ``frame``."""
        import numpy as np

        if self.task == "detection":  # the estimator is a detector network with detect()
            images = list(self._inputs(frame)[self.features[0]])
            found = np.empty(len(frame), dtype=object)
            found[:] = self.estimator.detect(images, self.classes_)
            return found
        if self.task == "classification":
            proba = self.predict_proba(frame)
            return np.asarray(self.classes_, dtype=object)[proba.argmax(axis=1)]
        X = self._inputs(frame)
        if self.flavor == "pytorch":
            return _torch_outputs(self.estimator, X).reshape(len(X))
        return np.asarray(self.estimator.predict(X), dtype=float).reshape(len(X))

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise DataError(
                f"the model reads columns {self.features}; missing {missing}, "
                f"found {list(frame.columns)[:20]}",
                hint="pass a frame with the model's feature columns",
            )
        return frame[self.features]

    def describe(self) -> dict[str, Any]:
        """What the loop needs besides the estimator itself, as JSON-able data."""
        return {
            "features": list(self.features),
            "target": self.target,
            "task": self.task,
            "classes": None if self.classes is None else list(self.classes),
            "codes": self.codes,
            "flavor": self.flavor,
        }

    @classmethod
    def from_description(cls, estimator: Any, data: dict[str, Any]) -> Model:
        """The inverse of :meth:`describe`, around a loaded estimator."""
        return cls(
            estimator=estimator,
            features=list(data["features"]),
            target=data.get("target"),
            task=data.get("task", "classification"),
            classes=data.get("classes"),
            codes=bool(data.get("codes", False)),
        )

    def __repr__(self) -> str:
        kind = type(self.estimator).__name__
        return f"Model({kind}, {self.task}, features={self.features}, target={self.target!r})"


def estimator_flavor(estimator: Any) -> Flavor:
    """``pytorch`` for an ``nn.Module``, ``lightgbm`` for LightGBM models, else ``sklearn``."""
    modules = [f"{c.__module__}.{c.__qualname__}" for c in type(estimator).__mro__]
    if "torch.nn.modules.module.Module" in modules:
        return "pytorch"
    if type(estimator).__module__.split(".")[0] == "lightgbm":
        return "lightgbm"
    return "sklearn"


def as_model(obj: Any) -> Model:
    """``obj`` if it is a :class:`Model`; a fitted scikit-learn-style estimator wrapped.

    The wrapper reads features from ``feature_names_in_`` and classes from ``classes_``, so
    models fitted outside Loopline on a DataFrame can be evaluated, registered and served.
    """
    if isinstance(obj, Model):
        return obj
    features = getattr(obj, "feature_names_in_", None)
    if features is None:
        raise DataError(
            f"cannot tell which columns a {type(obj).__name__} reads",
            hint="fit it on a pandas DataFrame, or train it with loopline's train step "
            "(features=[...])",
        )
    classes = getattr(obj, "classes_", None)
    if classes is None or not hasattr(obj, "predict_proba"):
        return Model(estimator=obj, features=[str(f) for f in features], task="regression")
    return Model(
        estimator=obj,
        features=[str(f) for f in features],
        task="classification",
        classes=[str(c) for c in classes],
    )


def fit_model(
    data: pd.DataFrame,
    model: Any,
    *,
    features: Sequence[str] | None = None,
    target: str,
    task: Literal["auto", "classification", "regression"] = "auto",
    sample_weight: str | None = None,
) -> Model:
    """Train ``model`` on ``data[features]`` -> ``data[target]`` and return a :class:`Model`.

    ``model`` is an unfitted estimator with ``fit`` (cloned first, so the caller's object
    stays untouched), a description with a ``build()`` method returning one (cheap to
    create, e.g. :class:`~loopline.train.text.TextClassifierParams`), or a training function
    ``fn(X, y)`` returning a fitted estimator or a PyTorch module; a function that accepts
    ``sample_weight`` gets the weights. With a function and a classification target, ``y``
    holds integer codes of the sorted labels.
    ``features`` defaults to every column except the target and the weight column;
    ``task="auto"`` asks the estimator (``is_classifier``) or, for functions, looks at the
    target (non-integral numbers: regression).
    """
    import numpy as np

    if not hasattr(model, "fit") and callable(getattr(model, "build", None)):
        model = model.build()
    features = _check_columns(data, features, target, sample_weight)
    y = data[target]
    if y.isna().any():
        raise DataError(
            f"{int(y.isna().sum())} of {len(data)} training rows have no {target!r}",
            hint="drop or label them before training",
        )
    X = data[features]
    weights = data[sample_weight].to_numpy() if sample_weight else None
    chosen = _task(model, y) if task == "auto" else task
    classes = sorted({str(v) for v in y}) if chosen == "classification" else None
    if classes is not None and len(classes) < 2:
        raise DataError(
            f"training data needs at least 2 distinct values of {target!r}; found {classes}",
            hint="check that every class made it into the training data",
        )
    if callable(model) and not hasattr(model, "fit"):
        y_in = (
            np.searchsorted(np.asarray(classes), y.astype(str).to_numpy())
            if classes is not None
            else y.astype(float).to_numpy()
        )
        kwargs = {"sample_weight": weights} if _accepts(model, "sample_weight") else {}
        if weights is not None and not kwargs:
            raise DataError(
                "sample_weight was given but the training function has no sample_weight parameter",
                hint="add `sample_weight=None` to its signature, or drop the weights",
            )
        fitted = model(X, y_in, **kwargs)
        return Model(fitted, features, target, chosen, classes, codes=classes is not None)
    from sklearn.base import clone

    estimator = clone(model)
    y_fit = y.astype(str).to_numpy() if classes is not None else y.astype(float).to_numpy()
    fit_kwargs = _weight_kwargs(estimator, weights)
    estimator.fit(X, y_fit, **fit_kwargs)
    fitted_classes = [str(c) for c in getattr(estimator, "classes_", classes or [])]
    return Model(estimator, features, target, chosen, fitted_classes if classes else None)


def _check_columns(
    data: pd.DataFrame, features: Sequence[str] | None, target: str, weight: str | None
) -> list[str]:
    import difflib

    if len(data) == 0:
        raise DataError("training data is empty", hint="check the dataset path and filters")
    chosen = (
        list(features) if features is not None else [c for c in data if c not in (target, weight)]
    )
    for name in [*chosen, target, *([weight] if weight else [])]:
        if name not in data.columns:
            close = difflib.get_close_matches(str(name), [str(c) for c in data.columns], n=1)
            raise DataError(
                f"column {name!r} is not in the training data (it has: "
                f"{', '.join(map(str, list(data.columns)[:20]))})",
                hint=f"did you mean {close[0]!r}?" if close else "check features= and target=",
            )
    if target in chosen:
        raise DataError(
            f"the target {target!r} is also listed as a feature",
            hint="remove it from features=",
        )
    if not chosen:
        raise DataError("no feature columns to train on", hint="pass features=[...]")
    return [str(c) for c in chosen]


def _task(model: Any, y: pd.Series) -> Task:
    if hasattr(model, "fit"):
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(model):
            return "classification"
        if is_regressor(model):
            return "regression"
    import pandas as pd

    if pd.api.types.is_float_dtype(y.dtype):
        values = y.dropna().to_numpy()
        if values.size and not ((values % 1) == 0).all():
            return "regression"
    return "classification"


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _weight_kwargs(estimator: Any, weights: np.ndarray | None) -> dict[str, Any]:
    """``sample_weight`` for an estimator, routed to a pipeline's last step by name."""
    if weights is None:
        return {}
    steps = getattr(estimator, "steps", None)
    if steps:
        return {f"{steps[-1][0]}__sample_weight": weights}
    return {"sample_weight": weights}


def _torch_outputs(module: Any, X: pd.DataFrame) -> np.ndarray:
    import numpy as np
    import torch

    values = torch.from_numpy(np.ascontiguousarray(X.to_numpy(dtype=np.float32)))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(values)
    finally:
        module.train(was_training)
    return np.asarray(out.detach().cpu().numpy(), dtype=np.float64)


def _torch_proba(module: Any, X: pd.DataFrame) -> np.ndarray:
    """Softmax of k outputs, or a sigmoid for one output (the second of two classes)."""
    import numpy as np
    from scipy.special import expit, softmax

    out = _torch_outputs(module, X)
    if out.ndim == 1 or out.shape[1] == 1:
        positive = expit(out.reshape(len(X)))
        return np.column_stack([1.0 - positive, positive])
    return np.asarray(softmax(out, axis=1))
