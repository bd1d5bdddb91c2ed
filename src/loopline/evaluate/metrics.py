"""Model metrics with slices, as a JSON-able dict.

:func:`evaluate_model` scores any model on a DataFrame: a classifier (``predict_proba`` plus
its class labels in ``classes`` or ``classes_``) or a regressor (``predict``). It reports a
named set of metrics, ranking metrics at ``k``, metrics per slice of chosen columns, and any
metric the user passes as a function or registers with :func:`register_metric`.

:func:`evaluate_classifier` is the text-classifier shortcut the sentiment pipeline uses; it
runs the same code with a fixed metric list.

The result goes to MLflow, the promotion gate and reports, so it contains only plain
``int``/``float``/``str``/``list``/``dict``/``None`` values (``None`` where a metric is
undefined, never NaN). :func:`greater_is_better` tells the direction of a metric, also for
a dotted path into the result (``"slices.short.accuracy"``, ``"precision_at_k.100"``).

scikit-learn (and numpy/pandas) are imported inside the functions: importing this module
must stay cheap.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from loopline.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MetricFn: TypeAlias = Callable[
    ["np.ndarray", "np.ndarray", "np.ndarray | None", "list[str] | None"], float
]
"""A user metric: ``(y_true, y_pred, proba_or_None, classes_or_None) -> number``.

Classification: ``y_true``/``y_pred`` are arrays of label strings, ``proba`` the model's
``(n, n_classes)`` probabilities (``None`` when it has no ``predict_proba``) and ``classes``
the label strings in the order of ``proba``'s columns. Regression: float arrays, ``None``,
``None``. A non-finite result is reported as ``None``.
"""

Task: TypeAlias = Literal["classification", "regression"]

SHORT_TEXT_MAX = 40  # characters; "short" is < 40
LONG_TEXT_MIN = 100  # characters; "long" is > 100, "medium" is 40..100

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<!\w)@\w+")
_HASHTAG_RE = re.compile(r"(?<!\w)#\w+")

# name -> predicate on the raw text; evaluated in this order so reports read naturally.
SLICES: dict[str, Callable[[str], bool]] = {
    "short": lambda t: len(t) < SHORT_TEXT_MAX,
    "medium": lambda t: SHORT_TEXT_MAX <= len(t) <= LONG_TEXT_MIN,
    "long": lambda t: len(t) > LONG_TEXT_MIN,
    "has_url": lambda t: bool(_URL_RE.search(t)),
    "has_mention": lambda t: bool(_MENTION_RE.search(t)),
    "has_hashtag": lambda t: bool(_HASHTAG_RE.search(t)),
}

# The named metric sets; ``metrics="classification"`` / ``"regression"`` select them.
CLASSIFICATION_METRICS: tuple[str, ...] = (
    "n",
    "accuracy",
    "macro_f1",
    "roc_auc",
    "average_precision",
    "log_loss",
    "brier",
    "confusion_matrix",
    "per_class",
)
REGRESSION_METRICS: tuple[str, ...] = ("n", "rmse", "mae", "r2", "median_ae", "mape")
# Only reported for two-class models; the classification set leaves them out otherwise.
BINARY_ONLY_METRICS = frozenset({"average_precision", "brier"})
# Result keys of the ranking metrics, each a dict {str(k): value}.
AT_K_METRICS: tuple[str, ...] = ("precision_at_k", "recall_at_k", "top_k_accuracy")
TOP_CATEGORIES = 20  # a categorical slice column reports its 20 most frequent values
QUARTILE_BINS = 4  # a numeric slice column with more distinct values is cut at its quartiles
MISSING_SLICE = "<missing>"  # slice of the rows whose slice column is empty

# The metrics passed to evaluate_model by evaluate_classifier (its output predates the rest).
_TEXT_CLASSIFIER_METRICS = ("n", "accuracy", "macro_f1", "roc_auc", "confusion_matrix", "per_class")

_DIRECTION: dict[str, bool] = {
    "accuracy": True,
    "macro_f1": True,
    "roc_auc": True,
    "average_precision": True,
    "r2": True,
    "precision_at_k": True,
    "recall_at_k": True,
    "top_k_accuracy": True,
    # the fields of per_class, e.g. "per_class.spam.recall"
    "precision": True,
    "recall": True,
    "f1": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
    "median_ae": False,
    "mape": False,
}
_FLAT_AT_K_RE = re.compile(r"^(precision_at|recall_at|top_k_accuracy_at)_\d+$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class _Registered:
    fn: MetricFn
    task: Task
    greater_is_better: bool


_REGISTERED: dict[str, _Registered] = {}


def register_metric(
    name: str,
    fn: MetricFn,
    *,
    task: Task,
    greater_is_better: bool = True,
) -> None:
    """Make ``name`` usable in ``evaluate_model(metrics=[...])`` for models of ``task``.

    ``fn`` is called as ``fn(y_true, y_pred, proba_or_None, classes_or_None)`` (see
    :data:`MetricFn`) and its number is reported under ``name``. Registering a name again
    replaces the earlier function. Built-in names, set names and the ``*_at_k`` keys are
    reserved.
    """
    if task not in ("classification", "regression"):
        raise DataError(
            f"register_metric({name!r}) got task={task!r}; expected 'classification' or "
            "'regression'",
            hint="pass task='classification' or task='regression'",
        )
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DataError(
            f"metric name {name!r} is not usable: expected letters, digits and underscores "
            "(no dots, so that a gate can address it by a dotted path)",
            hint="register it under a name like 'cost_weighted_recall'",
        )
    if name in _reserved_names():
        raise DataError(
            f"metric name {name!r} is built into Loopline and cannot be registered",
            hint="register your metric under another name",
        )
    if not callable(fn):
        raise DataError(
            f"register_metric({name!r}) needs a function, got a {type(fn).__name__}",
            hint="pass fn(y_true, y_pred, proba, classes) -> float",
        )
    _REGISTERED[name] = _Registered(fn, task, bool(greater_is_better))


def greater_is_better(metric: str) -> bool | None:
    """Return ``True`` if larger values of ``metric`` are better, ``False`` if smaller are.

    ``metric`` is a metric name or a dotted path into :func:`evaluate_model`'s result;
    the direction comes from its last part that is not a number, so
    ``"slices.short.accuracy"`` is read as ``accuracy`` and ``"precision_at_k.100"`` as
    ``precision_at_k``. Registered metrics answer as registered. Returns ``None`` for
    anything else (``n``, ``support``, unknown names).
    """
    parts = [part for part in metric.split(".") if part]
    name = next((part for part in reversed(parts) if not part.isdigit()), None)
    if name is None:
        return None
    if name in _REGISTERED:
        return _REGISTERED[name].greater_is_better
    if name in _DIRECTION:
        return _DIRECTION[name]
    if _FLAT_AT_K_RE.match(name):
        return True
    return None


def evaluate_model(
    model: Any,
    df: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str] | None = None,
    task: Literal["auto", "classification", "regression"] = "auto",
    metrics: str | Sequence[str | MetricFn] | None = None,
    k: int | Sequence[int] | None = None,
    slices: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score ``model`` on ``df`` against the column ``target``; return a JSON-able dict.

    The model is duck-typed: ``predict(frame)`` returns one value per row; a classifier
    also has ``predict_proba(frame)`` (``(n, n_classes)``) and its class labels in
    ``model.classes`` or ``model.classes_``. A classifier's predicted label is the class
    with the highest probability, so every metric describes the same scores; a model
    without ``predict_proba`` evaluated with ``task="classification"`` is scored on
    ``predict`` and its probability metrics are ``None``. Labels are compared as strings.

    ``features``: the columns handed to the model, in this order. Default:
    ``model.features``, ``model.input_columns`` (a registry ``LoadedModel``) or
    ``model.feature_names_in_``, else every column except ``target``.

    ``task="auto"``: classification when the model has class labels (``classes`` or
    ``classes_``; normally with ``predict_proba``), else regression.

    ``metrics``: a set name, a metric name, or a list mixing set names, metric names,
    names registered with :func:`register_metric` and functions (reported under their
    ``__name__``). The default is the task's set:

    - ``"classification"``: ``n``, ``accuracy``, ``macro_f1``, ``roc_auc`` (binary: of the
      second class in the model's class order; multiclass: macro one-vs-rest over the
      classes present; ``None`` with one class present), ``average_precision`` (binary
      only), ``log_loss`` (``None`` if a label is not one of the model's classes),
      ``brier`` (binary only), ``confusion_matrix`` (``labels``, ``matrix``: rows true,
      columns predicted) and ``per_class`` (precision/recall/f1/support per label);
    - ``"regression"``: ``n``, ``rmse``, ``mae``, ``r2``, ``median_ae`` and ``mape``
      (``None`` when a true value is 0).

    ``k``: ranking metrics at one or several ``k``, each reported as a dict keyed by
    ``str(k)`` (so a gate reads ``"precision_at_k.100"``):

    - binary classification: ``precision_at_k`` and ``recall_at_k`` over the ``k`` rows
      with the highest score of the second class (ties keep the original row order);
      ``None`` when ``k`` exceeds the number of rows (and recall when there are no
      positives);
    - multiclass: ``top_k_accuracy`` (scikit-learn's ``top_k_accuracy_score``; labels the
      model does not know count as misses).

    ``slices``: for each named column, ``slices[column][value]`` holds ``n`` plus
    ``accuracy``/``macro_f1`` (classification) or ``rmse``/``mae`` (regression) for the
    rows with that value: the 20 most frequent values of a categorical column, the quartile
    bins of a numeric one (labelled by their interval, e.g. ``"[1.5, 20]"``, ``"(20, 47]"``),
    and ``"<missing>"`` for empty cells; empty slices are left out. A numeric column with
    at most 4 distinct values (a 0/1 flag) is sliced by value like a categorical one. Bin
    labels contain dots, so a gate's dotted path cannot reach them; :func:`greater_is_better`
    still reads such a path by its last part. When the model has one feature and it holds
    text, the text slices of :data:`SLICES` (``short``, ``medium``, ``long``, ``has_url``,
    ``has_mention``, ``has_hashtag``) are reported directly under ``slices`` as well.

    Raises :class:`~loopline.errors.DataError` for missing columns, an empty frame, rows
    without a target, unknown metric names and models that cannot be scored.
    """
    _check_target(df, target)
    columns = _resolve_features(model, df, target, features)
    resolved_task = _resolve_task(model, task)
    entries = _resolve_metrics(metrics, resolved_task)
    ks = _resolve_k(k, resolved_task)
    slice_columns = _resolve_slices(df, slices)
    inputs = df[columns]
    if resolved_task == "classification":
        outcome = _classify(model, inputs, df[target], require_proba=False)
    else:
        outcome = _regress(model, inputs, df[target], target)
    if ks and outcome.proba is None:
        raise DataError(
            f"k={list(ks)} asks for ranking metrics, but the {type(model).__name__} has no "
            "predict_proba() to rank rows by",
            hint="evaluate a probabilistic classifier or leave k out",
        )
    texts = None
    if len(columns) == 1 and _is_text(df[columns[0]]):
        texts = df[columns[0]].astype(str).tolist()
    return _report(outcome, entries, ks, {c: df[c] for c in slice_columns}, texts)


def evaluate_classifier(
    model: Any,
    df: pd.DataFrame,
    text_column: str = "text",
    label_column: str = "label",
) -> dict[str, Any]:
    """Score a text classifier on ``df`` and return a JSON-able metrics dict.

    Keys:

    - ``n``, ``accuracy``;
    - ``macro_f1``: over the labels present in the data or the predictions;
    - ``roc_auc``: binary, from the probability of the second class in ``classes_``;
      multiclass, the one-vs-rest macro average; ``None`` when the labels hold one class;
    - ``confusion_matrix``: ``labels`` (the model's classes plus any other label seen) and
      ``matrix`` (rows: true label, columns: predicted label);
    - ``per_class``: precision, recall, f1 and support per label;
    - ``slices``: ``n``/``accuracy``/``macro_f1`` per slice (``short`` < 40 characters,
      ``medium`` 40-100, ``long`` > 100, ``has_url``, ``has_mention``, ``has_hashtag``),
      only for slices with at least one row.

    The model receives a DataFrame whose single column is named after the model's input
    column (``input_columns[0]`` for a registry ``LoadedModel``, else ``text``), so a
    dataset whose text lives in another column can be scored without renaming it first.
    It is :func:`evaluate_model` with those metrics; use that for other metrics or models.
    """
    _check_frame(df, text_column, label_column)
    texts = df[text_column].astype(str).tolist()
    input_columns = getattr(model, "input_columns", None) or ["text"]
    frame = df[[text_column]].astype(str).rename(columns={text_column: input_columns[0]})
    outcome = _classify(model, frame, df[label_column], require_proba=True)
    entries = _resolve_metrics(list(_TEXT_CLASSIFIER_METRICS), "classification")
    return _report(outcome, entries, (), {}, texts)


# --- checking the inputs ---------------------------------------------------------------------


def _check_frame(df: pd.DataFrame, text_column: str, label_column: str) -> None:
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"evaluation data needs columns {text_column!r} and {label_column!r}; "
            f"missing {missing}, found {list(df.columns)}",
            hint="pass text_column=/label_column= naming your columns",
        )
    if len(df) == 0:
        raise DataError("evaluation data is empty", hint="check the dataset path and filters")
    n_missing = int(df[label_column].isna().sum())
    if n_missing:
        raise DataError(
            f"{n_missing} of {len(df)} evaluation rows have no label in {label_column!r}",
            hint="drop unlabeled rows before evaluating",
        )


def _check_target(df: pd.DataFrame, target: str) -> None:
    if target not in df.columns:
        raise DataError(
            f"evaluation data needs the target column {target!r}; found {list(df.columns)}",
            hint="pass target= naming the column that holds the true values",
        )
    if len(df) == 0:
        raise DataError("evaluation data is empty", hint="check the dataset path and filters")
    n_missing = int(df[target].isna().sum())
    if n_missing:
        raise DataError(
            f"{n_missing} of {len(df)} evaluation rows have no value in target {target!r}",
            hint="drop the rows without a target before evaluating",
        )


def _resolve_features(
    model: Any, df: pd.DataFrame, target: str, features: Sequence[str] | None
) -> list[str]:
    if isinstance(features, str):
        features = [features]
    if features is None:
        for attribute in ("features", "input_columns", "feature_names_in_"):
            found = getattr(model, attribute, None)
            if isinstance(found, str):
                found = [found]
            if found is not None and not callable(found) and len(found):
                features = [str(c) for c in found]
                break
    columns = [c for c in df.columns if c != target] if features is None else list(features)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"the model needs feature columns {columns}; missing {missing}, "
            f"found {list(df.columns)}",
            hint="add the missing columns or pass features= naming the model's inputs",
        )
    if target in columns:
        raise DataError(
            f"the target column {target!r} is also one of the features {columns}",
            hint="pass features= without the target column",
        )
    if not columns:
        raise DataError(
            f"no feature columns to hand to the model: the frame has only {list(df.columns)}",
            hint="add the model's input columns to the evaluation data",
        )
    return columns


def _model_classes(model: Any) -> Any:
    classes = getattr(model, "classes", None)
    if classes is None or callable(classes):
        classes = getattr(model, "classes_", None)
    return None if callable(classes) else classes


def _resolve_task(model: Any, task: str) -> Task:
    if task == "classification":
        return "classification"
    if task == "regression":
        return "regression"
    if task != "auto":
        raise DataError(
            f"task={task!r} is not one of 'auto', 'classification', 'regression'",
            hint="pass task='auto' to decide from the model",
        )
    # A model with class labels is a classifier even without predict_proba (LinearSVC):
    # scoring its labels as numbers would be meaningless.
    if _model_classes(model) is not None:
        return "classification"
    return "regression"


def _reserved_names() -> set[str]:
    return {
        *CLASSIFICATION_METRICS,
        *REGRESSION_METRICS,
        *AT_K_METRICS,
        "classification",
        "regression",
        "slices",
    }


def _known_names() -> list[str]:
    return [
        "classification",
        "regression",
        *dict.fromkeys((*CLASSIFICATION_METRICS, *REGRESSION_METRICS)),
        *sorted(_REGISTERED),
    ]


@dataclass(frozen=True)
class _Entry:
    """One requested metric: its result key and how to compute it."""

    key: str
    compute: Callable[[_Outcome], Any]
    binary_only: bool = False  # from a set: left out for models with more than two classes


def _resolve_metrics(metrics: str | Sequence[str | MetricFn] | None, task: Task) -> list[_Entry]:
    if metrics is None:
        items: Sequence[str | MetricFn] = [task]
    elif isinstance(metrics, str) or callable(metrics):
        items = [metrics]
    else:
        items = list(metrics)
    builtins = _CLASSIFICATION if task == "classification" else _REGRESSION
    entries: dict[str, _Entry] = {}
    functions: dict[str, Any] = {}

    def add(entry: _Entry, fn: Any = None) -> None:
        if entry.key in entries:
            if functions.get(entry.key) is not fn:
                raise DataError(
                    f"two different metrics are both named {entry.key!r}",
                    hint="give your metric functions distinct names",
                )
            return
        entries[entry.key] = entry
        functions[entry.key] = fn

    for item in items:
        if callable(item):
            add(_callable_entry(item), item)
        elif item in ("classification", "regression"):
            if item != task:
                raise DataError(
                    f"the metric set {item!r} does not fit a model evaluated as {task}",
                    hint=f"pass metrics={task!r} or task={item!r}",
                )
            for name in CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS:
                add(_Entry(name, builtins[name], binary_only=name in BINARY_ONLY_METRICS))
        elif item in builtins:
            add(_Entry(item, builtins[item]))
        elif item in _REGISTERED:
            registered = _REGISTERED[item]
            if registered.task != task:
                raise DataError(
                    f"metric {item!r} was registered for {registered.task}, but the model is "
                    f"evaluated as {task}",
                    hint=f"drop {item!r} from metrics or pass task={registered.task!r}",
                )
            add(_Entry(item, _user_metric(registered.fn)), registered.fn)
        elif item in CLASSIFICATION_METRICS or item in REGRESSION_METRICS:
            raise DataError(
                f"metric {item!r} does not fit a model evaluated as {task}",
                hint=f"choose from the {task} metrics {sorted(builtins)}",
            )
        else:
            raise DataError(
                f"unknown metric {item!r}; known metrics: {', '.join(_known_names())}",
                hint="pass one of these names, a function, or register_metric() your own",
            )
    return list(entries.values())


def _callable_entry(fn: Any) -> _Entry:
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DataError(
            f"a metric function is reported under its __name__, but {fn!r} has "
            f"{'none' if name is None else repr(name)}",
            hint="pass a function defined with def, or register_metric() it under a name",
        )
    if name in _reserved_names():
        raise DataError(
            f"metric function {name!r} has the name of a built-in metric",
            hint="rename the function",
        )
    return _Entry(name, _user_metric(fn))


def _user_metric(fn: MetricFn) -> Callable[[_Outcome], Any]:
    def compute(outcome: _Outcome) -> float | None:
        classes = None if outcome.classes is None else [str(c) for c in outcome.classes]
        value = fn(outcome.y_true, outcome.y_pred, outcome.proba, classes)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"metric {getattr(fn, '__name__', fn)!r} returned {value!r}, not a number",
                hint="make the metric function return a float",
            ) from None
        return _finite(number)

    return compute


def _resolve_k(k: int | Sequence[int] | None, task: Task) -> tuple[int, ...]:
    if k is None:
        return ()
    values = [k] if isinstance(k, int) else list(k)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise DataError(
            f"k must be a positive integer or a list of them; got {k!r}",
            hint="pass e.g. k=100 or k=[10, 100]",
        )
    if values and task != "classification":
        raise DataError(
            "k asks for ranking metrics (precision_at_k, top_k_accuracy), which need a "
            "classifier; the model is evaluated as regression",
            hint="leave k out for regression models",
        )
    return tuple(sorted(set(values)))


def _resolve_slices(df: pd.DataFrame, slices: Sequence[str] | None) -> list[str]:
    if slices is None:
        return []
    columns = [slices] if isinstance(slices, str) else list(dict.fromkeys(slices))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"slice columns {missing} are not in the evaluation data; found {list(df.columns)}",
            hint="pass slices= naming columns of the frame",
        )
    return columns


def _is_text(column: pd.Series) -> bool:
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return False
    return bool(pd.api.types.is_string_dtype(column))


# --- predictions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """The true values and a model's predictions on them, ready for the metrics."""

    task: Task
    y_true: np.ndarray  # label strings (object) or floats
    y_pred: np.ndarray
    proba: np.ndarray | None = None  # (n, n_classes), columns in the order of ``classes``
    classes: np.ndarray | None = None  # the model's labels as strings, in its order

    @property
    def binary(self) -> bool:
        return self.classes is not None and len(self.classes) == 2


def _classify(
    model: Any, frame: pd.DataFrame, target: pd.Series, *, require_proba: bool
) -> _Outcome:
    """Predict labels (the most probable class) and probabilities of a classifier."""
    import numpy as np

    y_true = target.astype(str).to_numpy()
    if not hasattr(model, "predict_proba"):
        if require_proba or not hasattr(model, "predict"):
            raise DataError(
                f"cannot evaluate a {type(model).__name__}: it has no predict_proba()",
                hint="use a probabilistic classifier (e.g. LogisticRegression)",
            )
        y_pred = _as_column(model.predict(frame), len(frame), type(model).__name__)
        raw = _model_classes(model)
        classes = None if raw is None else np.asarray([str(c) for c in raw], dtype=object)
        return _Outcome("classification", y_true, y_pred.astype(str).astype(object), None, classes)
    proba = np.asarray(model.predict_proba(frame), dtype=float)
    raw_classes = getattr(model, "classes", None)
    if raw_classes is None:
        raw_classes = getattr(model, "classes_", None)
    if raw_classes is None:
        raise DataError(
            f"cannot evaluate a {type(model).__name__}: it has predict_proba() but neither "
            "classes nor classes_ to name the probability columns",
            hint="set model.classes to the class labels in the order of predict_proba()",
        )
    classes = np.asarray([str(c) for c in raw_classes], dtype=object)
    if proba.ndim != 2 or proba.shape != (len(frame), len(classes)):
        raise DataError(
            f"predict_proba() of the {type(model).__name__} returned shape {proba.shape}; "
            f"expected ({len(frame)}, {len(classes)}): one row per input row and one column "
            f"per class {classes.tolist()}",
            hint="check that the model's classes match its predict_proba() columns",
        )
    if not np.isfinite(proba).all():
        raise DataError(
            f"predict_proba() of the {type(model).__name__} returned "
            f"{int((~np.isfinite(proba)).any(axis=1).sum())} rows with NaN or infinite values",
            hint="check the model's inputs for missing values it cannot handle",
        )
    y_pred = classes[proba.argmax(axis=1)]
    return _Outcome("classification", y_true, y_pred, proba, classes)


def _regress(model: Any, frame: pd.DataFrame, target: pd.Series, name: str) -> _Outcome:
    import numpy as np
    import pandas as pd

    if not hasattr(model, "predict"):
        raise DataError(
            f"cannot evaluate a {type(model).__name__}: it has no predict()",
            hint="pass a fitted model with predict(frame)",
        )
    try:
        y_true = pd.to_numeric(target, errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise DataError(
            f"regression needs a numeric target, but {name!r} holds {target.dtype} values "
            f"such as {target.iloc[0]!r}",
            hint="pass task='classification' for a label column, or a numeric target",
        ) from None
    raw = _as_column(model.predict(frame), len(frame), type(model).__name__)
    try:
        y_pred = raw.astype(float)
    except (TypeError, ValueError):
        raise DataError(
            f"regression needs numeric predictions, but the {type(model).__name__} predicted "
            f"values such as {raw[0]!r}",
            hint="pass task='classification' to evaluate a classifier",
        ) from None
    if not np.isfinite(y_pred).all():
        raise DataError(
            f"the {type(model).__name__} predicted {int((~np.isfinite(y_pred)).sum())} "
            "NaN or infinite values",
            hint="check the model's inputs for missing values it cannot handle",
        )
    return _Outcome("regression", y_true, y_pred)


def _as_column(values: Any, n: int, model_name: str) -> np.ndarray:
    import numpy as np

    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.shape != (n,):
        raise DataError(
            f"predict() of the {model_name} returned shape {array.shape}; expected ({n},), "
            "one value per row",
            hint="the model must return a 1-D array of predictions",
        )
    return array


# --- the report ------------------------------------------------------------------------------


def _report(
    outcome: _Outcome,
    entries: list[_Entry],
    ks: tuple[int, ...],
    slice_columns: dict[str, pd.Series],
    texts: list[str] | None,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for entry in entries:
        if entry.binary_only and not outcome.binary:
            continue
        result[entry.key] = entry.compute(outcome)
    if ks:
        result.update(_at_k(outcome, ks))
    if texts is not None or slice_columns:
        slices: dict[str, Any] = {}
        if texts is not None:
            slices.update(_text_slices(texts, outcome))
        for column, values in slice_columns.items():
            if column in slices:
                raise DataError(
                    f"slice column {column!r} has the name of a text slice",
                    hint=f"rename the column; the text slices are {list(SLICES)}",
                )
            slices[column] = _column_slices(values, outcome)
        result["slices"] = slices
    return result


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _labels(y_true: np.ndarray, y_pred: np.ndarray, classes: Any = ()) -> list[str]:
    """Sorted labels seen in the data, plus ``classes`` (e.g. all the model's classes)."""
    return sorted(set(y_true.tolist()) | set(y_pred.tolist()) | {str(c) for c in classes})


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    labels = _labels(y_true, y_pred)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {"accuracy": _accuracy(y_true, y_pred), "macro_f1": _macro_f1(y_true, y_pred)}


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float | None:
    """Binary: AUC of the positive (second) class; multiclass: macro one-vs-rest AUC.

    Computed per class by hand rather than with ``multi_class="ovr"`` so that a test set
    missing some of the model's classes still gets a score over the classes it has.
    """
    from sklearn.metrics import roc_auc_score

    if len(set(y_true.tolist())) < 2:
        return None  # AUC is undefined without both positives and negatives
    columns: Sequence[int] = [1] if len(classes) == 2 else range(len(classes))
    aucs = []
    for i in columns:
        is_class = y_true == classes[i]
        if is_class.any() and not is_class.all():
            aucs.append(float(roc_auc_score(is_class, proba[:, i])))
    return sum(aucs) / len(aucs) if aucs else None


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Any) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    # All model classes are included so matrices of different evaluations line up.
    labels = _labels(y_true, y_pred, classes)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {"labels": labels, "matrix": matrix.astype(int).tolist()}


def _per_class(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Any
) -> dict[str, dict[str, float | int]]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = _labels(y_true, y_pred, classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def _sorted_columns(outcome: _Outcome) -> tuple[np.ndarray, np.ndarray]:
    """(classes, proba) with the classes in sorted order, as scikit-learn's label metrics expect."""
    import numpy as np

    assert outcome.classes is not None and outcome.proba is not None
    order = np.argsort(outcome.classes.astype(str), kind="stable")
    return outcome.classes[order], outcome.proba[:, order]


def _positives(outcome: _Outcome) -> np.ndarray:
    assert outcome.classes is not None
    return outcome.y_true == outcome.classes[1]


def _m_roc_auc(o: _Outcome) -> float | None:
    if o.proba is None or o.classes is None:
        return None
    return _roc_auc(o.y_true, o.proba, o.classes)


def _m_average_precision(o: _Outcome) -> float | None:
    from sklearn.metrics import average_precision_score

    if o.proba is None or not o.binary:
        return None
    positives = _positives(o)
    if not positives.any():
        return None  # undefined without a positive row
    return _finite(average_precision_score(positives, o.proba[:, 1]))


def _m_log_loss(o: _Outcome) -> float | None:
    from sklearn.metrics import log_loss

    if o.proba is None or o.classes is None:
        return None
    classes, proba = _sorted_columns(o)
    if not set(o.y_true.tolist()) <= set(classes.tolist()):
        return None  # a label the model cannot predict: the loss is unbounded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows not summing to exactly 1
        return _finite(log_loss(o.y_true, proba, labels=classes.tolist()))


def _m_brier(o: _Outcome) -> float | None:
    from sklearn.metrics import brier_score_loss

    if o.proba is None or not o.binary:
        return None
    return _finite(brier_score_loss(_positives(o), o.proba[:, 1], pos_label=True))


def _m_rmse(o: _Outcome) -> float | None:
    from sklearn.metrics import root_mean_squared_error

    return _finite(root_mean_squared_error(o.y_true, o.y_pred))


def _m_mae(o: _Outcome) -> float | None:
    from sklearn.metrics import mean_absolute_error

    return _finite(mean_absolute_error(o.y_true, o.y_pred))


def _m_r2(o: _Outcome) -> float | None:
    from sklearn.metrics import r2_score

    if len(o.y_true) < 2:
        return None  # undefined for a single row
    return _finite(r2_score(o.y_true, o.y_pred))


def _m_median_ae(o: _Outcome) -> float | None:
    from sklearn.metrics import median_absolute_error

    return _finite(median_absolute_error(o.y_true, o.y_pred))


def _m_mape(o: _Outcome) -> float | None:
    from sklearn.metrics import mean_absolute_percentage_error

    if (o.y_true == 0).any():
        return None  # a percentage of 0 is undefined
    return _finite(mean_absolute_percentage_error(o.y_true, o.y_pred))


_CLASSIFICATION: dict[str, Callable[[_Outcome], Any]] = {
    "n": lambda o: len(o.y_true),
    "accuracy": lambda o: _accuracy(o.y_true, o.y_pred),
    "macro_f1": lambda o: _macro_f1(o.y_true, o.y_pred),
    "roc_auc": _m_roc_auc,
    "average_precision": _m_average_precision,
    "log_loss": _m_log_loss,
    "brier": _m_brier,
    "confusion_matrix": lambda o: _confusion(o.y_true, o.y_pred, _or_empty(o.classes)),
    "per_class": lambda o: _per_class(o.y_true, o.y_pred, _or_empty(o.classes)),
}
_REGRESSION: dict[str, Callable[[_Outcome], Any]] = {
    "n": lambda o: len(o.y_true),
    "rmse": _m_rmse,
    "mae": _m_mae,
    "r2": _m_r2,
    "median_ae": _m_median_ae,
    "mape": _m_mape,
}


def _or_empty(classes: np.ndarray | None) -> Any:
    return () if classes is None else classes


def _at_k(o: _Outcome, ks: tuple[int, ...]) -> dict[str, dict[str, float | None]]:
    """``precision_at_k``/``recall_at_k`` (binary) or ``top_k_accuracy`` (multiclass)."""
    import numpy as np

    assert o.proba is not None and o.classes is not None
    if o.binary:
        positives = _positives(o)
        # Stable sort on the negated score: equal scores keep their original row order.
        order = np.argsort(-o.proba[:, 1], kind="stable")
        n_positive = int(positives.sum())
        precision: dict[str, float | None] = {}
        recall: dict[str, float | None] = {}
        for k in ks:
            if k > len(order):
                precision[str(k)] = recall[str(k)] = None
                continue
            hits = int(positives[order[:k]].sum())
            precision[str(k)] = hits / k
            recall[str(k)] = hits / n_positive if n_positive else None
        return {"precision_at_k": precision, "recall_at_k": recall}
    return {"top_k_accuracy": {str(k): _top_k_accuracy(o, k) for k in ks}}


def _top_k_accuracy(o: _Outcome, k: int) -> float | None:
    import numpy as np
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import top_k_accuracy_score

    classes, proba = _sorted_columns(o)
    known = np.isin(o.y_true, classes)
    if not known.any():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # k >= n_classes: always 1
        score = top_k_accuracy_score(o.y_true[known], proba[known], k=k, labels=classes)
    # Rows whose label the model does not know are misses.
    return _finite(score * known.sum() / len(known)) if not known.all() else _finite(score)


# --- slices ----------------------------------------------------------------------------------


def _slice_scores(o: _Outcome, mask: np.ndarray) -> dict[str, float | int | None]:
    n = int(mask.sum())
    if o.task == "classification":
        return {"n": n, **_scores(o.y_true[mask], o.y_pred[mask])}
    part = _Outcome("regression", o.y_true[mask], o.y_pred[mask])
    return {"n": n, "rmse": _m_rmse(part), "mae": _m_mae(part)}


def _text_slices(texts: list[str], o: _Outcome) -> dict[str, dict[str, float | int | None]]:
    import numpy as np

    result: dict[str, dict[str, float | int | None]] = {}
    for name, predicate in SLICES.items():
        mask = np.fromiter((predicate(t) for t in texts), dtype=bool, count=len(texts))
        if mask.any():
            result[name] = _slice_scores(o, mask)
    return result


def _column_slices(values: pd.Series, o: _Outcome) -> dict[str, dict[str, float | int | None]]:
    """Slices of one column: its top values, or quartile bins of a numeric column.

    Labels of a numeric bin read like pandas' intervals: ``"[lo, hi]"`` for the first bin
    (it holds its lower edge), ``"(lo, hi]"`` for the others; duplicate quartiles (heavily
    tied values) merge bins, so a column may get fewer than four.
    """
    import numpy as np
    import pandas as pd

    missing = values.isna().to_numpy()
    masks: dict[str, np.ndarray] = {}
    is_numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if is_numeric and values.nunique(dropna=True) > QUARTILE_BINS:
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        edges = np.unique(np.nanquantile(numbers, [0.0, 0.25, 0.5, 0.75, 1.0]))
        # Bin i holds (edges[i], edges[i + 1]]; the first bin also holds its lower edge.
        bins = np.searchsorted(edges[1:-1], numbers, side="left")
        for i in range(len(edges) - 1):
            opening = "[" if i == 0 else "("
            masks[f"{opening}{_fmt(edges[i])}, {_fmt(edges[i + 1])}]"] = (bins == i) & ~missing
    else:  # categorical, or numeric with at most 4 values: one slice per value
        as_text = values.astype(str).to_numpy()
        counts = pd.Series(as_text[~missing]).value_counts()
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_CATEGORIES]
        for key, _ in top:
            masks[str(key)] = (as_text == key) & ~missing
    if missing.any():
        masks[MISSING_SLICE] = missing
    return {name: _slice_scores(o, mask) for name, mask in masks.items() if mask.any()}


def _fmt(number: float) -> str:
    return f"{float(number):.6g}"
