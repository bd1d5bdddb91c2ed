"""Reference profiles: what the training data looked like, in a few kilobytes.

``build_profile`` runs once at training time and summarises every column so that monitoring
never has to re-read the training data:

- **numeric**: a quantile sketch (up to ``bins + 1`` inverted-CDF quantile edges, each an
  observed value, with the exact count of values ``<=`` each edge), min/max/mean/std and
  quartiles. The drift side places a window on the same edges with one ``np.searchsorted``,
  which gives the reference and window CDFs at the edges exactly (KS), coarse bins (PSI,
  Jensen-Shannon) and a piecewise CDF integral (Wasserstein).
- **categorical**: the ``top_k`` most frequent values with their counts, plus one "other"
  count; ``complete`` says whether every value is listed (then a value the window has and the
  profile lacks is known to be new, not just rare).
- **text**: the ``top_tokens`` most frequent tokens (``tokenize`` is shared with the drift
  side), the total token count, the vocabulary size, and a sketch of the length in characters.
- the missing rate of every column (NaN, None and +-inf count as missing), the prediction
  distribution (label frequencies and probability sketches), and performance by slice when
  true labels and predictions are given.

A :class:`Profile` is plain data: ``to_dict``/``from_dict`` round-trip through JSON, with a
format version so later releases can read old profiles.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopline.errors import DataError

PROFILE_FORMAT = "loopline.profile"
PROFILE_VERSION = 1

Kind = Literal["numeric", "categorical", "text"]
Role = Literal["feature", "prediction", "probability", "label"]

DEFAULT_BINS = 100
DEFAULT_TOP_K = 50
DEFAULT_TOP_TOKENS = 2000
DEFAULT_TEXT_SAMPLE = 200_000
_SNIFF_ROWS = 10_000  # rows looked at to guess a column's kind
_MAX_SLICE_VALUES = 20
_MAX_EXACT_VALUES = 128  # numeric columns with fewer distinct values keep every value
_TAIL_LEVELS = (1e-5, 1e-4, 3e-4, 1e-3, 2e-3, 5e-3)
_GROUPS = 20  # interleaved groups of texts for the token dispersion estimate

# One tokenizer for both sides. URLs and @mentions become placeholders: they are nearly all
# unique, and would otherwise flood the vocabulary and make every window look "new".
_URL_RE = r"(?:https?://|www\.)\S+"
_MENTION_RE = r"(?<!\w)@\w+"
_TOKEN_RE = r"\w+(?:'\w+)*"
_TOKEN_PATTERN = re.compile(_TOKEN_RE)
_URL_PATTERN = re.compile(_URL_RE, re.IGNORECASE)
_MENTION_PATTERN = re.compile(_MENTION_RE)


def tokenize(text: str) -> list[str]:
    """Split one text into lower-case word tokens; URLs become ``_url_``, mentions ``_user_``."""
    text = _MENTION_PATTERN.sub(" _user_ ", _URL_PATTERN.sub(" _url_ ", text.lower()))
    return _TOKEN_PATTERN.findall(text)


def token_counts(texts: pd.Series) -> pd.Series:
    """Token frequencies over a column of texts, most frequent first (vectorised ``tokenize``)."""
    tokens, _ = explode_tokens(texts)
    return pd.Series(tokens).value_counts()


def explode_tokens(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """All tokens of ``texts`` (vectorised :func:`tokenize`) and the position of each one's text."""
    lowered = texts.astype(str).str.lower()
    lowered = lowered.str.replace(_URL_RE, " _url_ ", regex=True, flags=re.IGNORECASE)
    lowered = lowered.str.replace(_MENTION_RE, " _user_ ", regex=True)
    per_doc = lowered.str.findall(_TOKEN_RE).reset_index(drop=True).explode().dropna()
    return per_doc.to_numpy(dtype=object), per_doc.index.to_numpy(dtype=np.int64)


def bucket_counts(
    tokens: np.ndarray, doc_pos: np.ndarray, vocabulary: list[str], groups: int = _GROUPS
) -> tuple[np.ndarray, float]:
    """Token counts over ``vocabulary`` + one out-of-vocabulary bucket, and the dispersion.

    Tokens of one text are not independent draws (a tweet about a match repeats its words),
    so token counts vary more between samples of texts than a multinomial says. The
    dispersion factor measures that from the data: the texts are dealt into ``groups``
    interleaved groups and the Pearson chi-squared of the groups x buckets table is divided
    by its degrees of freedom (about 1 for independent tokens). Drift tests divide their
    variance assumptions by it, like a quasi-likelihood model would.
    """
    k = len(vocabulary)
    codes = pd.Index(vocabulary).get_indexer(tokens)
    codes[codes < 0] = k
    counts = np.bincount(codes, minlength=k + 1).astype(np.float64)
    n_docs = int(doc_pos.max()) + 1 if doc_pos.size else 0
    groups = min(groups, n_docs // 2)
    if groups < 2:
        return counts, 1.0
    group = doc_pos % groups
    table = np.bincount(group * (k + 1) + codes, minlength=groups * (k + 1)).reshape(groups, k + 1)
    table = table[:, table.sum(axis=0) > 0].astype(np.float64)
    table = table[table.sum(axis=1) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return counts, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    return counts, max(1.0, chi2 / dof)


# --------------------------------------------------------------------------- sketches


@dataclass
class NumericSketch:
    """Quantile sketch of the non-missing values of a numeric column.

    ``cum_counts[i]`` is the exact number of reference values ``<= edges[i]``; ``discrete``
    says that every reference value equals one of the edges (few distinct values), so the
    CDF is a step function that is constant between edges.
    """

    edges: list[float]
    cum_counts: list[int]
    min: float
    max: float
    mean: float
    std: float
    p25: float
    p50: float
    p75: float
    discrete: bool

    @property
    def n(self) -> int:
        """Number of values the sketch summarises."""
        return self.cum_counts[-1]

    @property
    def scale(self) -> float:
        """A robust spread for unit-free distances: IQR/1.349 (= std for a normal), else std."""
        iqr = self.p75 - self.p25
        if iqr > 0:
            return iqr / 1.349
        return self.std if self.std > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericSketch:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def numeric_sketch(values: np.ndarray, bins: int = DEFAULT_BINS) -> NumericSketch | None:
    """Sketch the finite values of ``values``; ``None`` when there are none."""
    x = values[np.isfinite(values)]
    if x.size == 0:
        return None
    # One sort gives the quantiles, the exact CDF at every edge and the distinct values.
    x = np.sort(x)
    n = x.size
    distinct = np.flatnonzero(np.diff(x)) + 1  # start of each run of equal values
    if distinct.size < _MAX_EXACT_VALUES:
        # Few distinct values (flags, counts, hours): keep them all, the CDF is then exact.
        edges = x[np.append(distinct, n) - 1]
    else:
        # Inverted-CDF quantiles: every edge is an observed value, so atoms sit on edges.
        edges = np.unique(x[_inverted_cdf_positions(sketch_levels(bins), n)])
    cum = np.searchsorted(x, edges, side="right")
    at_edges = cum - np.searchsorted(x, edges, side="left")
    q25, q50, q75 = x[_inverted_cdf_positions(np.array([0.25, 0.5, 0.75]), n)]
    return NumericSketch(
        edges=[float(e) for e in edges],
        cum_counts=[int(c) for c in cum],
        min=float(x[0]),
        max=float(x[-1]),
        mean=float(x.mean()),
        std=float(x.std()),
        p25=float(q25),
        p50=float(q50),
        p75=float(q75),
        discrete=int(at_edges.sum()) == n,
    )


def sketch_levels(bins: int) -> np.ndarray:
    """Quantile levels of a sketch: ``bins`` equal-mass bins plus finer levels in both tails.

    The extra tail levels (down to 1e-5) matter for the Wasserstein distance: with only
    1 % bins the outermost bin of a heavy-tailed column spans most of its range, and
    integrating across it overstated the distance several-fold in tests (Student t).
    """
    tails = np.array(_TAIL_LEVELS)
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, bins + 1), tails, 1 - tails]))


def _inverted_cdf_positions(levels: np.ndarray, n: int) -> np.ndarray:
    return np.clip(np.ceil(levels * n).astype(np.int64) - 1, 0, n - 1)


def category_keys(index: pd.Index) -> np.ndarray:
    """Stable string keys for category values: ``1``, ``1.0`` and ``"1"`` all become ``"1"``.

    A column read as integers at training time often arrives as floats (a NaN in the
    window) or as strings (JSON logs); keying by string keeps those the same category.
    """
    values = index.to_numpy()
    if index.dtype.kind == "f":
        floats = values.astype(np.float64)
        integral = np.isfinite(floats) & (np.mod(floats, 1) == 0) & (np.abs(floats) < 2**53)
        keys = floats.astype(str).astype(object)
        keys[integral] = floats[integral].astype(np.int64).astype(str)
        return keys
    return np.asarray(index.astype(str), dtype=object)


def keyed_counts(values: pd.Series) -> pd.Series:
    """Counts of the non-missing values of ``values`` keyed by :func:`category_keys`."""
    counts = values.value_counts(dropna=True)
    counts = counts[counts > 0]  # a categorical dtype also lists its unused categories
    keyed = pd.Series(counts.to_numpy(dtype=np.int64), index=category_keys(counts.index))
    if not keyed.index.is_unique:  # e.g. 1 and "1" in one object column
        keyed = keyed.groupby(level=0, sort=False).sum()
    return keyed.sort_values(ascending=False, kind="stable")


@dataclass
class CategoricalSketch:
    """Frequencies of the most common values; everything else is lumped into ``other``."""

    counts: dict[str, int]
    other: int
    n_unique: int

    @property
    def n(self) -> int:
        """Number of non-missing values summarised."""
        return sum(self.counts.values()) + self.other

    @property
    def complete(self) -> bool:
        """True when every reference value is listed, so unlisted window values are new."""
        return self.other == 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {"counts": dict(self.counts), "other": self.other, "n_unique": self.n_unique}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalSketch:
        """Inverse of :meth:`to_dict`."""
        return cls(
            counts={str(k): int(v) for k, v in data["counts"].items()},
            other=int(data["other"]),
            n_unique=int(data["n_unique"]),
        )


def categorical_sketch(values: pd.Series, top_k: int = DEFAULT_TOP_K) -> CategoricalSketch | None:
    """Sketch the non-missing values of a categorical column; ``None`` when there are none."""
    counts = keyed_counts(values)
    if counts.empty:
        return None
    top = counts.iloc[:top_k]
    return CategoricalSketch(
        counts={str(k): int(v) for k, v in top.items()},
        other=int(counts.iloc[top_k:].sum()),
        n_unique=len(counts),
    )


@dataclass
class TextSketch:
    """Token frequencies (top tokens plus an "other" count) and the length distribution.

    ``other_tokens`` is the number of reference tokens outside ``tokens``, so the reference
    out-of-vocabulary rate against this (truncated) vocabulary is ``other_tokens/n_tokens``;
    the window's rate is computed against the same list, which keeps the two comparable.
    ``dispersion`` is the over-dispersion of token counts between texts (see
    :func:`bucket_counts`).
    """

    tokens: dict[str, int]
    other_tokens: int
    vocabulary_size: int
    n_docs: int
    dispersion: float
    length: NumericSketch

    @property
    def n_tokens(self) -> int:
        """Total number of tokens seen."""
        return sum(self.tokens.values()) + self.other_tokens

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "tokens": dict(self.tokens),
            "other_tokens": self.other_tokens,
            "vocabulary_size": self.vocabulary_size,
            "n_docs": self.n_docs,
            "dispersion": self.dispersion,
            "length": self.length.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextSketch:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tokens={str(k): int(v) for k, v in data["tokens"].items()},
            other_tokens=int(data["other_tokens"]),
            vocabulary_size=int(data["vocabulary_size"]),
            n_docs=int(data["n_docs"]),
            dispersion=float(data["dispersion"]),
            length=NumericSketch.from_dict(data["length"]),
        )


def text_sketch(
    values: pd.Series,
    top_tokens: int = DEFAULT_TOP_TOKENS,
    sample: int | None = DEFAULT_TEXT_SAMPLE,
    bins: int = DEFAULT_BINS,
) -> TextSketch | None:
    """Sketch a text column (at most ``sample`` documents, drawn reproducibly)."""
    docs = sample_texts(values, sample)
    if docs.empty:
        return None
    tokens, doc_pos = explode_tokens(docs)
    ranked = pd.Series(tokens).value_counts()
    vocabulary = [str(t) for t in ranked.index[:top_tokens]]
    counts, dispersion = bucket_counts(tokens, doc_pos, vocabulary)
    length = numeric_sketch(docs.str.len().to_numpy(dtype=np.float64), bins)
    assert length is not None  # docs is non-empty, lengths are finite
    return TextSketch(
        tokens={t: int(c) for t, c in zip(vocabulary, counts[:-1], strict=True)},
        other_tokens=int(counts[-1]),
        vocabulary_size=len(ranked),
        n_docs=len(docs),
        dispersion=dispersion,
        length=length,
    )


def sample_texts(values: pd.Series, sample: int | None) -> pd.Series:
    """The non-missing texts as ``str``, at most ``sample`` of them (seeded, so reproducible)."""
    docs = values.dropna()
    if sample is not None and len(docs) > sample:
        docs = docs.sample(n=sample, random_state=0)
    return docs.astype(str)


Sketch = NumericSketch | CategoricalSketch | TextSketch
_SKETCHES: dict[str, type[NumericSketch] | type[CategoricalSketch] | type[TextSketch]] = {
    "numeric": NumericSketch,
    "categorical": CategoricalSketch,
    "text": TextSketch,
}


@dataclass
class ColumnProfile:
    """One column of the reference: its kind, its role, its missing count and its sketch.

    ``sketch`` is ``None`` when the reference column held only missing values.
    """

    name: str
    kind: Kind
    role: Role
    n_rows: int
    n_missing: int
    sketch: Sketch | None

    @property
    def missing_rate(self) -> float:
        """Share of reference rows where the column was missing."""
        return self.n_missing / self.n_rows if self.n_rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "n_rows": self.n_rows,
            "n_missing": self.n_missing,
            "sketch": None if self.sketch is None else self.sketch.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        """Inverse of :meth:`to_dict`."""
        kind = data["kind"]
        sketch_cls = _SKETCHES[kind]
        sketch = None if data["sketch"] is None else sketch_cls.from_dict(data["sketch"])
        return cls(
            name=str(data["name"]),
            kind=kind,
            role=data["role"],
            n_rows=int(data["n_rows"]),
            n_missing=int(data["n_missing"]),
            sketch=sketch,
        )


# --------------------------------------------------------------------------- profile


@dataclass
class Profile:
    """The reference profile of a model's training data (JSON-able, a few KB per column).

    ``columns`` holds features and the prediction/probability/label columns (see each
    column's ``role``). ``performance`` is ``None`` unless labels and predictions were given:
    ``{"overall": metrics, "slices": {column: {value: metrics}}}`` where metrics holds ``n``,
    ``accuracy`` and, for binary labels, ``positive_label``, ``label_rate``,
    ``prediction_rate``, ``precision`` and ``recall``. ``skipped`` maps columns that were
    left out to the reason.
    """

    n_rows: int
    columns: dict[str, ColumnProfile]
    prediction: str | None = None
    probabilities: list[str] = field(default_factory=list)
    labels: str | None = None
    slices: list[str] = field(default_factory=list)
    performance: dict[str, Any] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def features(self) -> list[str]:
        """Names of the feature columns (not prediction, probability or label)."""
        return [c.name for c in self.columns.values() if c.role == "feature"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with a format name and version."""
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "created_at": self.created_at,
            "n_rows": self.n_rows,
            "prediction": self.prediction,
            "probabilities": list(self.probabilities),
            "labels": self.labels,
            "slices": list(self.slices),
            "columns": [c.to_dict() for c in self.columns.values()],
            "performance": self.performance,
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Read a dict written by :meth:`to_dict` (any version this release understands)."""
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise DataError(
                "this is not a Loopline reference profile",
                hint="pass the dict written by Profile.to_dict() (its 'format' is "
                f"{PROFILE_FORMAT!r})",
            )
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise DataError(
                f"reference profile format version {version!r} is not supported "
                f"(this Loopline reads version {PROFILE_VERSION})",
                hint="rebuild the profile with build_profile(), or upgrade Loopline",
            )
        columns = [ColumnProfile.from_dict(c) for c in data["columns"]]
        return cls(
            n_rows=int(data["n_rows"]),
            columns={c.name: c for c in columns},
            prediction=data.get("prediction"),
            probabilities=list(data.get("probabilities") or []),
            labels=data.get("labels"),
            slices=list(data.get("slices") or []),
            performance=data.get("performance"),
            skipped=dict(data.get("skipped") or {}),
            created_at=str(data.get("created_at", "")),
        )


def build_profile(
    df: pd.DataFrame,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    text: Sequence[str] | None = None,
    prediction: str | None = None,
    probabilities: str | Sequence[str] | None = None,
    labels: str | None = None,
    slices: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    top_tokens: int = DEFAULT_TOP_TOKENS,
    text_sample: int | None = DEFAULT_TEXT_SAMPLE,
) -> Profile:
    """Summarise ``df`` (the training data) into a reference :class:`Profile`.

    Feature columns: when ``numeric``, ``categorical`` and ``text`` are all ``None`` every
    column other than the prediction/probability/label columns is profiled, its kind
    guessed (numbers -> numeric; bool, category and short strings -> categorical; strings of
    several words -> text); datetimes and identifier-like columns are skipped and listed in
    ``Profile.skipped``. When any of the three is given, exactly the listed columns are
    profiled, with the stated kinds.

    ``prediction`` is the predicted-label column, ``probabilities`` one column or a list of
    class-probability (score) columns, ``labels`` the true-label column; with both
    ``labels`` and ``prediction``, performance is computed overall and per value of each
    ``slices`` column (numeric slice columns are cut into quartiles). ``bins`` is the number
    of quantile bins in numeric sketches, ``top_k`` the number of categories kept,
    ``top_tokens`` the vocabulary kept per text column, ``text_sample`` the most documents
    tokenised per text column (``None``: all).

    Raises :class:`~loopline.errors.DataError` for an empty frame or unknown column names.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"build_profile needs a pandas DataFrame, got {type(df).__name__}",
            hint="load the training data with pandas first",
        )
    if len(df) == 0:
        raise DataError(
            "cannot build a reference profile from an empty DataFrame",
            hint="profile the training data the model was fitted on",
        )
    if bins < 2 or top_k < 1 or top_tokens < 1:
        raise DataError(
            f"bins, top_k and top_tokens must be positive (got {bins}, {top_k}, {top_tokens})",
            hint="bins >= 2; the defaults are 100, 50 and 2000",
        )
    probs = [probabilities] if isinstance(probabilities, str) else list(probabilities or [])
    roles: dict[str, Role] = {p: "probability" for p in probs}
    if prediction is not None:
        roles[prediction] = "prediction"
    if labels is not None:
        roles[labels] = "label"
    slice_cols = list(slices or [])
    _check_columns(df, [*roles, *(numeric or []), *(categorical or []), *(text or [])])
    _check_columns(df, slice_cols)

    kinds, skipped = _feature_kinds(df, roles, numeric, categorical, text)
    for name, role in roles.items():
        kinds[name] = "numeric" if role == "probability" else _label_kind(df[name])

    columns: dict[str, ColumnProfile] = {}
    for name, kind in kinds.items():
        columns[name] = _column_profile(
            df[name], name, kind, roles.get(name, "feature"), bins, top_k, top_tokens, text_sample
        )
    performance = None
    if labels is not None and prediction is not None:
        performance = _performance(df, prediction, labels, slice_cols)
    return Profile(
        n_rows=len(df),
        columns=columns,
        prediction=prediction,
        probabilities=probs,
        labels=labels,
        slices=slice_cols,
        performance=performance,
        skipped=skipped,
    )


def _check_columns(df: pd.DataFrame, names: Iterable[str]) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        shown = ", ".join(map(str, list(df.columns)[:20]))
        raise DataError(
            f"column(s) not in the data: {', '.join(map(str, missing))}",
            hint=f"the data has: {shown}",
        )


def _feature_kinds(
    df: pd.DataFrame,
    roles: dict[str, Role],
    numeric: Sequence[str] | None,
    categorical: Sequence[str] | None,
    text: Sequence[str] | None,
) -> tuple[dict[str, Kind], dict[str, str]]:
    """Kinds of the feature columns: as stated, or guessed; plus the skipped columns."""
    if numeric is not None or categorical is not None or text is not None:
        stated: dict[str, Kind] = {}
        for names, kind in ((numeric, "numeric"), (categorical, "categorical"), (text, "text")):
            for name in names or []:
                if name in roles:
                    continue  # a role column is profiled once, in its role
                stated[name] = kind  # type: ignore[assignment]
        return stated, {}
    kinds: dict[str, Kind] = {}
    skipped: dict[str, str] = {}
    for name in df.columns:
        if name in roles:
            continue
        guess = guess_kind(df[name])
        if guess in ("numeric", "categorical", "text"):
            kinds[str(name)] = guess  # type: ignore[assignment]
        else:
            skipped[str(name)] = guess
    return kinds, skipped


def guess_kind(values: pd.Series) -> str:
    """``"numeric"``, ``"categorical"``, ``"text"``, or the reason the column is skipped."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "skipped: a timestamp always drifts; derive features (hour, weekday) instead"
    head = values.dropna().iloc[:_SNIFF_ROWS]
    if pd.api.types.is_numeric_dtype(dtype):
        if pd.api.types.is_integer_dtype(dtype) and len(head) >= 100 and head.is_unique:
            return "skipped: every value is distinct, looks like an identifier"
        return "numeric"
    if head.empty:
        return "categorical"
    strings = head.astype(str)
    words = strings.str.count(r"\s+") + 1
    distinct = strings.nunique() / len(strings)
    if words.mean() >= 3 and distinct > 0.5:
        return "text"
    if distinct > 0.9 and len(strings) >= 100:
        return "skipped: nearly every value is distinct, looks like an identifier"
    return "categorical"


def _label_kind(values: pd.Series) -> Kind:
    """Predicted/true labels are categories unless they are non-integral floats (regression)."""
    if pd.api.types.is_float_dtype(values.dtype):
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        x = x[np.isfinite(x)]
        if x.size and not np.all(np.mod(x, 1) == 0):
            return "numeric"
    return "categorical"


def _column_profile(
    values: pd.Series,
    name: str,
    kind: Kind,
    role: Role,
    bins: int,
    top_k: int,
    top_tokens: int,
    text_sample: int | None,
) -> ColumnProfile:
    sketch: Sketch | None
    if kind == "numeric":
        x = numeric_values(values)
        n_missing = int(len(x) - np.isfinite(x).sum())
        sketch = numeric_sketch(x, bins)
    elif kind == "categorical":
        n_missing = int(values.isna().sum())
        sketch = categorical_sketch(values, top_k)
    elif kind == "text":
        n_missing = int(values.isna().sum())
        sketch = text_sketch(values, top_tokens, text_sample, bins)
    else:  # pragma: no cover - kinds are checked by the caller
        raise DataError(f"unknown column kind {kind!r} for {name!r}")
    return ColumnProfile(name, kind, role, len(values), n_missing, sketch)


def numeric_values(values: pd.Series) -> np.ndarray:
    """The column as float64 with NaN for missing; unparseable strings become NaN too."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    if not pd.api.types.is_numeric_dtype(values.dtype):
        values = pd.to_numeric(values, errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


# --------------------------------------------------------------------------- performance


def _performance(
    df: pd.DataFrame, prediction: str, labels: str, slices: Sequence[str]
) -> dict[str, Any]:
    """Accuracy (and binary precision/recall) overall and per slice value, vectorised."""
    known = (df[labels].notna() & df[prediction].notna()).to_numpy()
    y = df[labels].to_numpy()[known]
    p = df[prediction].to_numpy()[known]
    classes = _sorted_classes(set(pd.unique(y)) | set(pd.unique(p)))
    positive = classes[-1] if len(classes) == 2 else None
    correct = y == p
    y_pos = y == positive if positive is not None else None
    p_pos = p == positive if positive is not None else None
    result: dict[str, Any] = {
        "overall": _metrics(np.ones(len(y), dtype=bool), correct, y_pos, p_pos, positive),
        "slices": {},
    }
    for name in slices:
        keys = _slice_keys(df[name])[known]
        codes, uniques = pd.factorize(keys, use_na_sentinel=True)
        sizes = np.bincount(codes[codes >= 0], minlength=len(uniques))
        per_value: dict[str, Any] = {}
        for code in np.argsort(-sizes, kind="stable")[:_MAX_SLICE_VALUES]:
            per_value[str(uniques[code])] = _metrics(codes == code, correct, y_pos, p_pos, positive)
        result["slices"][name] = per_value
    return result


def _sorted_classes(classes: set[Any]) -> list[Any]:
    """Natural order when the labels compare (0 < 1), else by their text."""
    try:
        return sorted(classes)
    except TypeError:
        return sorted(classes, key=str)


def _slice_keys(values: pd.Series) -> np.ndarray:
    """Slice values as strings; numeric columns with many values are cut into quartiles."""
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > _MAX_SLICE_VALUES:
        binned = pd.qcut(values, 4, duplicates="drop")
        return np.asarray(binned.astype(str).where(values.notna(), None), dtype=object)
    keys = np.asarray(values.astype(str), dtype=object)
    keys[values.isna().to_numpy()] = None
    return keys


def _metrics(
    mask: np.ndarray,
    correct: np.ndarray,
    y_pos: np.ndarray | None,
    p_pos: np.ndarray | None,
    positive: Any,
) -> dict[str, Any]:
    n = int(mask.sum())
    out: dict[str, Any] = {"n": n, "accuracy": _ratio(int(correct[mask].sum()), n)}
    if y_pos is not None and p_pos is not None:
        yp, pp = y_pos[mask], p_pos[mask]
        tp = int((yp & pp).sum())
        out.update(
            positive_label=_plain(positive),
            label_rate=_ratio(int(yp.sum()), n),
            prediction_rate=_ratio(int(pp.sum()), n),
            precision=_ratio(tp, int(pp.sum())),
            recall=_ratio(tp, int(yp.sum())),
        )
    return out


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _plain(value: Any) -> Any:
    """A numpy scalar as the matching Python value (JSON can't take numpy types)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
