"""Labeling functions (LFs) and the label matrix.

A labeling function is a plain Python function that looks at one item (a text, or a row of a
table) and returns a label from a declared label set, or :data:`ABSTAIN` when it has no
opinion::

    from loopline.label.lf import ABSTAIN, apply_lfs, keyword_lf, labeling_function

    @labeling_function(label_set=("ham", "spam"))
    def check_out(text: str) -> str | int:
        return "spam" if "check out" in text.lower() else ABSTAIN

    lfs = [check_out, keyword_lf("subscribe", ["subscribe"], "spam")]
    result = apply_lfs(df, lfs, label_set=("ham", "spam"))
    result.L            # (n rows x m LFs) int8 matrix: class index 0..k-1, or -1 = abstain
    print(result.format_problems())

Labels in the matrix are class *indices* into the label set (``"ham"`` -> 0, ``"spam"`` -> 1).
An LF may return the label itself or its index; ``None``, NaN and ``-1`` mean abstain.

A broken LF never stops a run: one that raises, returns values outside the label set or
abstains on every row is recorded in :attr:`LabelMatrixResult.problems` and its bad rows
count as abstains. Only when *every* LF is broken does :func:`apply_lfs` raise.

Built-in LFs (:func:`keyword_lf`, :func:`regex_lf`, :func:`length_lf`, :func:`url_lf`,
:func:`threshold_lf`, :func:`emoticon_lf`) carry a vectorised pandas path and run over a
whole column at once; others run row by row, optionally in several processes.
"""

from __future__ import annotations

import inspect
import math
import operator
import pickle
import re
import sys
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopline.errors import LooplineError
from loopline.label import weak

__all__ = [
    "ABSTAIN",
    "LabelMatrixResult",
    "LabelingFunction",
    "apply_lfs",
    "emoticon",
    "emoticon_lf",
    "format_problems",
    "has_url",
    "keyword_lf",
    "labeling_function",
    "length_lf",
    "regex_lf",
    "threshold_lf",
    "url_lf",
    "vader",
    "vader_lf",
]

#: The matrix value (and an accepted LF return value) for "no opinion".
ABSTAIN = -1

InputKind = Literal["text", "row"]
#: A vectorised LF body: (frame, text column) -> one raw label (or None) per row.
BatchFn = Callable[[pd.DataFrame, str], "pd.Series | np.ndarray | Sequence[Any]"]
#: Progress callback: (units done, units in total), a unit being one LF applied to one row.
ProgressFn = Callable[[int, int], None]

_ROW_CHUNK = 2048  # rows per progress tick / per process task


class Row(dict[str, Any]):
    """One table row handed to a row LF: ``row["col"]`` and ``row.col`` both work.

    A dict is ~50x cheaper to build than the ``pd.Series`` that ``iterrows`` gives.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(eq=False)
class LabelingFunction:
    """A named labeling function.

    ``func`` takes a text (``input="text"``) or a :class:`Row` (``input="row"``) and returns a
    label, a class index or abstain. ``batch``, when set, labels a whole frame at once and is
    used instead of ``func`` (which stays the per-row fallback if ``batch`` raises).
    ``label_set``, when set, is the labels this LF may return; it must be part of the label
    set given to :func:`apply_lfs`.
    """

    name: str
    func: Callable[[Any], Any]
    input: InputKind = "text"
    label_set: tuple[Hashable, ...] | None = None
    batch: BatchFn | None = None

    def __call__(self, item: Any) -> Any:
        return self.func(item)

    def __repr__(self) -> str:
        return f"LabelingFunction({self.name!r}, input={self.input!r})"

    def __reduce__(self) -> Any:
        # A decorated module-level function: its module attribute is this object, so pickle
        # by reference (pickling ``func`` itself would fail: its name now points here).
        module = getattr(self.func, "__module__", None)
        qualname = getattr(self.func, "__qualname__", "")
        if module and _lookup(module, qualname) is self:
            return (_lookup, (module, qualname))
        return (
            LabelingFunction,
            (self.name, self.func, self.input, self.label_set, self.batch),
        )


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    if obj is None:
        __import__(module)
        obj = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def labeling_function(
    name: str | None = None,
    label_set: Sequence[Hashable] | None = None,
    input: InputKind | Literal["auto"] = "auto",
) -> Callable[[Callable[[Any], Any]], LabelingFunction]:
    """Turn a plain function ``item -> label | ABSTAIN`` into a :class:`LabelingFunction`.

    ``input="auto"`` hands the function the text when its parameter is called ``text`` or is
    annotated ``str``, and a :class:`Row` otherwise; say ``"text"`` or ``"row"`` to choose.
    The name defaults to the function's name.
    """
    if input not in ("auto", "text", "row"):
        raise LooplineError(
            f"labeling_function(input=...) must be 'auto', 'text' or 'row', found {input!r}"
        )

    def wrap(func: Callable[[Any], Any]) -> LabelingFunction:
        kind: InputKind = _guess_input(func) if input == "auto" else input
        return LabelingFunction(
            name=name or str(getattr(func, "__name__", "lf")),
            func=func,
            input=kind,
            label_set=tuple(label_set) if label_set is not None else None,
        )

    return wrap


def _guess_input(func: Callable[[Any], Any]) -> InputKind:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return "text"
    if not params:
        return "text"
    first = params[0]
    annotation = first.annotation
    if first.name == "text" or annotation is str or annotation == "str":
        return "text"
    return "row"


# --------------------------------------------------------------------------- built-in LFs
# Built-ins are small callable classes rather than closures so that they pickle into worker
# processes; each one also supplies a vectorised ``batch`` over a pandas column.


def _texts(df: pd.DataFrame, column: str) -> pd.Series:
    return df[column].fillna("").astype(str)


@dataclass(frozen=True)
class _PatternLF:
    """Votes ``label`` when ``pattern`` is found in the text."""

    pattern: str
    label: Hashable
    flags: int = 0
    nfkc: bool = False  # match on the NFKC form, where full-width "ｈｔｔｐ" is "http"

    def __call__(self, text: str) -> Hashable | None:
        if self.nfkc:
            text = unicodedata.normalize("NFKC", text)
        return self.label if _compiled(self.pattern, self.flags).search(text) else None

    def batch(self, df: pd.DataFrame, column: str) -> np.ndarray:
        texts = _texts(df, column)
        if self.nfkc:
            texts = texts.str.normalize("NFKC")
        found = texts.str.contains(_compiled(self.pattern, self.flags), regex=True)
        return _where(found.to_numpy(dtype=bool), self.label)


_PATTERNS: dict[tuple[str, int], re.Pattern[str]] = {}


def _compiled(pattern: str, flags: int) -> re.Pattern[str]:
    key = (pattern, flags)
    if key not in _PATTERNS:
        _PATTERNS[key] = re.compile(pattern, flags)
    return _PATTERNS[key]


def _where(mask: np.ndarray, label: Hashable) -> np.ndarray:
    out = np.full(mask.shape[0], None, dtype=object)
    out[mask] = label
    return out


def keyword_lf(
    name: str,
    keywords: str | Iterable[str],
    label: Hashable,
    *,
    ignore_case: bool = True,
    whole_words: bool = True,
) -> LabelingFunction:
    """Vote ``label`` when the text contains any of ``keywords`` (whole words by default)."""
    words = [keywords] if isinstance(keywords, str) else list(keywords)
    if not words:
        raise LooplineError(f"keyword_lf({name!r}) got no keywords", hint="pass keywords=[...]")
    alternatives = "|".join(re.escape(w) for w in words)
    pattern = rf"(?<!\w)(?:{alternatives})(?!\w)" if whole_words else f"(?:{alternatives})"
    return _pattern_lf(name, pattern, label, re.IGNORECASE if ignore_case else 0)


def regex_lf(
    name: str, pattern: str, label: Hashable, *, ignore_case: bool = True
) -> LabelingFunction:
    """Vote ``label`` when the regular expression ``pattern`` matches anywhere in the text."""
    flags = re.IGNORECASE if ignore_case else 0
    try:
        re.compile(pattern, flags)
    except re.error as exc:
        raise LooplineError(
            f"regex_lf({name!r}): {pattern!r} is not a valid regular expression: {exc}",
            hint="check the pattern's brackets and escapes (use a raw string r'...')",
        ) from exc
    return _pattern_lf(name, pattern, label, flags)


def _pattern_lf(
    name: str, pattern: str, label: Hashable, flags: int, nfkc: bool = False
) -> LabelingFunction:
    body = _PatternLF(pattern, label, flags, nfkc)
    return LabelingFunction(name=name, func=body, input="text", batch=body.batch)


#: Links: a scheme, "www.", or a bare domain with a common top-level domain.
URL_PATTERN = (
    r"https?://|www\.|\b[\w-]+\.(?:com|net|org|ly|be|io|co|info|biz|tk|me|us|uk|de|ru|tv)\b"
)


def url_lf(label: Hashable, *, name: str = "url") -> LabelingFunction:
    """Vote ``label`` when the text holds a link (``http://``, ``www.``, ``site.com``).

    Full-width look-alikes (``ｈｔｔｐ://``), a spammer's trick, count as well.
    """
    return _pattern_lf(name, URL_PATTERN, label, re.IGNORECASE, nfkc=True)


def has_url(text: str) -> bool:
    """True when ``text`` holds a link as :func:`url_lf` sees it (for use inside your own LFs)."""
    return (
        _compiled(URL_PATTERN, re.IGNORECASE).search(unicodedata.normalize("NFKC", text))
        is not None
    )


@dataclass(frozen=True)
class _LengthLF:
    """Votes ``label`` when every given length bound holds."""

    label: Hashable
    max_chars: int | None = None
    min_chars: int | None = None
    max_words: int | None = None
    min_words: int | None = None

    def __call__(self, text: str) -> Hashable | None:
        chars, words = len(text.strip()), len(text.split())
        return self.label if self._ok(chars, words) else None

    def _ok(self, chars: Any, words: Any) -> Any:
        ok: Any = True
        for value, bound, op in (
            (chars, self.max_chars, operator.le),
            (chars, self.min_chars, operator.ge),
            (words, self.max_words, operator.le),
            (words, self.min_words, operator.ge),
        ):
            if bound is not None:
                ok = ok & op(value, bound)
        return ok

    def batch(self, df: pd.DataFrame, column: str) -> np.ndarray:
        texts = _texts(df, column)
        chars = texts.str.strip().str.len().to_numpy()
        words = texts.str.split().str.len().fillna(0).to_numpy()
        mask = np.broadcast_to(np.asarray(self._ok(chars, words), dtype=bool), chars.shape)
        return _where(mask, self.label)


def length_lf(
    label: Hashable,
    *,
    max_chars: int | None = None,
    min_chars: int | None = None,
    max_words: int | None = None,
    min_words: int | None = None,
    name: str | None = None,
) -> LabelingFunction:
    """Vote ``label`` on texts within the given length bounds (characters and/or words).

    ``length_lf("ham", max_words=4)`` labels very short comments; all bounds given must hold.
    """
    bounds = {"max_chars": max_chars, "min_chars": min_chars}
    bounds |= {"max_words": max_words, "min_words": min_words}
    given = {k: v for k, v in bounds.items() if v is not None}
    if not given:
        raise LooplineError(
            "length_lf needs at least one bound",
            hint="pass max_chars=, min_chars=, max_words= or min_words=",
        )
    default = "length_" + "_".join(f"{k}{v}" for k, v in given.items())
    body = _LengthLF(label, max_chars, min_chars, max_words, min_words)
    return LabelingFunction(name=name or default, func=body, input="text", batch=body.batch)


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class _ThresholdLF:
    """Votes ``label`` when ``row[column] <op> value``; a missing value abstains."""

    column: str
    op: str
    value: Any
    label: Hashable

    def __call__(self, row: Row) -> Hashable | None:
        cell = row[self.column]
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            return None
        return self.label if _OPS[self.op](cell, self.value) else None

    def batch(self, df: pd.DataFrame, column: str) -> np.ndarray:
        if self.column not in df.columns:
            raise KeyError(
                f"column {self.column!r} not found (columns: {', '.join(map(str, df.columns))})"
            )
        values = df[self.column]
        mask = _OPS[self.op](values, self.value) & values.notna()
        return _where(mask.to_numpy(dtype=bool, na_value=False), self.label)


def threshold_lf(name: str, column: str, op: str, value: Any, label: Hashable) -> LabelingFunction:
    """Tabular LF: vote ``label`` when ``row[column] <op> value`` (``op``: > >= < <= == !=)."""
    if op not in _OPS:
        raise LooplineError(
            f"threshold_lf({name!r}): unknown operator {op!r}",
            hint=f"use one of {' '.join(_OPS)}",
        )
    body = _ThresholdLF(column, op, value, label)
    return LabelingFunction(name=name, func=body, input="row", batch=body.batch)


@dataclass(frozen=True)
class _WeakLF:
    """Adapts a text LF from :mod:`loopline.label.weak` (label strings, None = abstain)."""

    func: Callable[[str], str | None]
    positive: Hashable
    negative: Hashable

    def __call__(self, text: str) -> Hashable | None:
        label = self.func(text)
        if label is None:
            return None
        return self.positive if label == "positive" else self.negative


@dataclass(frozen=True)
class _Vader:
    threshold: float

    def __call__(self, text: str) -> str | None:
        return weak.vader_lf(text, self.threshold)


@dataclass(frozen=True)
class _EmoticonBatch:
    positive: Hashable
    negative: Hashable

    def __call__(self, df: pd.DataFrame, column: str) -> np.ndarray:
        texts = _texts(df, column)
        pos = texts.str.contains(weak._POSITIVE, regex=True).to_numpy(dtype=bool)
        neg = texts.str.contains(weak._NEGATIVE, regex=True).to_numpy(dtype=bool)
        out = _where(pos & ~neg, self.positive)
        out[neg & ~pos] = self.negative
        return out


def emoticon_lf(
    name: str = "emoticon", *, positive: Hashable = "positive", negative: Hashable = "negative"
) -> LabelingFunction:
    """Smiles vote ``positive``, frowns ``negative`` (see :func:`loopline.label.weak.emoticon_lf`).

    Rename the two labels to fit another label set, e.g. ``positive=1, negative=0``.
    """
    body = _WeakLF(weak.emoticon_lf, positive, negative)
    batch = _EmoticonBatch(positive, negative)
    return LabelingFunction(name=name, func=body, input="text", batch=batch)


def vader_lf(
    name: str = "vader",
    *,
    threshold: float = 0.05,
    positive: Hashable = "positive",
    negative: Hashable = "negative",
) -> LabelingFunction:
    """VADER's compound score: ``positive`` at or above ``threshold``, ``negative`` at or below
    ``-threshold``, abstain in between (runs per distinct text; VADER has no vector form)."""
    body = _WeakLF(_Vader(threshold), positive, negative)
    return LabelingFunction(name=name, func=body, input="text")


#: The emoticon and VADER LFs over ``("negative", "positive")``-style labels.
emoticon = emoticon_lf()
vader = vader_lf()


# --------------------------------------------------------------------------- the matrix


@dataclass
class LabelMatrixResult:
    """The outcome of :func:`apply_lfs`.

    ``L`` is an ``(n_rows, n_lfs)`` integer matrix of class indices into ``label_set``, with
    :data:`ABSTAIN` (-1) where an LF had no opinion (or failed on that row). ``problems`` lists
    each broken LF as ``{"lf", "kind", "rows", "message", ...}`` with ``kind`` one of
    ``"error"``, ``"out_of_set"`` or ``"abstains_everywhere"``.
    """

    L: np.ndarray
    lf_names: list[str]
    label_set: tuple[Hashable, ...]
    index: pd.Index
    problems: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no LF had a problem."""
        return not self.problems

    def format_problems(self) -> str:
        """The problems as a short human-readable report (empty string when there are none)."""
        return format_problems(self.problems, n_rows=self.L.shape[0], label_set=self.label_set)

    def to_frame(self, names: bool = False) -> pd.DataFrame:
        """The matrix as a DataFrame (one column per LF) on the input's index.

        With ``names=True`` cells hold the label names, with None for abstain.
        """
        frame = pd.DataFrame(self.L, index=self.index, columns=self.lf_names)
        if names:
            lookup = dict(enumerate(self.label_set))
            frame = frame.apply(lambda col: col.map(lookup).astype(object))
        return frame

    def sources(self, labels: np.ndarray | Sequence[int]) -> list[str]:
        """For each row, the LFs (joined with ``+``) that voted for that row's final label.

        Use it to record which LFs produced each training label; a row whose label no LF
        voted for (or that is abstain) gets ``""``.
        """
        y = np.asarray(labels)
        agree = (y[:, None] == self.L) & (y[:, None] != ABSTAIN)
        return [
            "+".join(n for n, hit in zip(self.lf_names, row, strict=True) if hit) for row in agree
        ]


def format_problems(
    problems: Sequence[dict[str, Any]],
    n_rows: int | None = None,
    label_set: Sequence[Hashable] | None = None,
) -> str:
    """Render LF problems as lines a person can act on; ``""`` when there are none."""
    if not problems:
        return ""
    of = f" of {n_rows}" if n_rows is not None else ""
    lines = [f"{len(problems)} labeling function problem(s); affected rows count as abstain:"]
    for p in problems:
        if p["kind"] == "error":
            text = f"raised on {p['rows']}{of} rows, first: {p['message']}"
        elif p["kind"] == "out_of_set":
            expected = ", ".join(map(repr, label_set)) if label_set is not None else "the label set"
            text = (
                f"returned values outside the label set on {p['rows']}{of} rows: {p['message']}"
                f" (expected one of {expected}, a class index, or ABSTAIN/None)"
            )
        else:
            text = f"abstained on every row{of}: {p['message']}"
        lines.append(f"  - {p['lf']}: {text}")
    return "\n".join(lines)


@dataclass
class _Tally:
    """What went wrong for one LF over some rows (mergeable across chunks)."""

    errors: int = 0
    first_error: str | None = None
    first_error_row: int | None = None
    bad_values: dict[str, int] = field(default_factory=dict)

    def merge(self, other: _Tally) -> None:
        self.errors += other.errors
        if self.first_error is None and other.first_error is not None:
            self.first_error, self.first_error_row = other.first_error, other.first_error_row
        for value, count in other.bad_values.items():
            self.bad_values[value] = self.bad_values.get(value, 0) + count


class _Encoder:
    """Maps raw LF outputs to class indices; values it cannot map are tallied, not raised."""

    def __init__(self, label_set: tuple[Hashable, ...]) -> None:
        self.k = len(label_set)
        self.index: dict[Hashable, int] = {}
        for i, label in enumerate(label_set):
            self.index.setdefault(label, i)
        # Integer indices are accepted as such only when no label is itself an integer,
        # otherwise ``1`` would be ambiguous between "the label 1" and "the second label".
        self.ints_are_indices = not any(_is_int(label) for label in label_set)

    def encode(self, value: Any, allowed: set[int] | None, tally: _Tally) -> int:
        if _is_abstain(value):
            return ABSTAIN
        code = self._code(value)
        if code is None or (allowed is not None and code not in allowed):
            key = repr(value)
            tally.bad_values[key] = tally.bad_values.get(key, 0) + 1
            return ABSTAIN
        return code

    def _code(self, value: Any) -> int | None:
        try:
            code = self.index.get(value)
        except TypeError:  # unhashable (a list, a dict): certainly not a label
            return None
        if code is not None:
            return code
        if self.ints_are_indices and _is_int(value) and 0 <= int(value) < self.k:
            return int(value)
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_abstain(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    if _is_int(value) and int(value) == ABSTAIN:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def apply_lfs(
    df: pd.DataFrame,
    lfs: Sequence[LabelingFunction | Callable[[Any], Any]],
    label_set: Sequence[Hashable] | None = None,
    text_column: str = "text",
    n_jobs: int = 1,
    progress: ProgressFn | None = None,
) -> LabelMatrixResult:
    """Apply labeling functions to every row of ``df`` and build the label matrix.

    ``lfs`` are :class:`LabelingFunction` objects or plain callables (treated like
    ``@labeling_function()``). ``label_set`` is the ordered set of labels, e.g.
    ``("ham", "spam")``; it defaults to the label set the LFs declare. Text LFs read
    ``text_column``. Vectorised LFs run over whole columns; the others run row by row,
    spread over ``n_jobs`` processes when ``n_jobs > 1`` (the LFs must then pickle, i.e. be
    defined at module level). ``progress(done, total)`` is called as LF-rows complete.

    Raises :class:`~loopline.errors.LooplineError` for bad arguments, a missing text column,
    or when every LF is broken; otherwise problems are reported in the result.
    """
    resolved = _resolve_lfs(lfs)
    labels = _resolve_label_set(label_set, resolved)
    _check_lf_label_sets(resolved, labels)
    if any(lf.input == "text" for lf in resolved) and text_column not in df.columns:
        raise LooplineError(
            f"cannot apply text labeling functions: expected a {text_column!r} column, "
            f"found {', '.join(map(str, df.columns)) or 'no columns'}",
            hint="name the column that holds the text with the text_column argument",
        )
    if n_jobs < 1:
        raise LooplineError(f"n_jobs must be at least 1, found {n_jobs}")

    encoder = _Encoder(labels)
    n, m = len(df), len(resolved)
    L = np.full((n, m), ABSTAIN, dtype=np.int8 if len(labels) < 127 else np.int16)
    tallies = [_Tally() for _ in resolved]
    ticker = _Ticker(progress, n * m)
    notes: list[str] = []

    per_row: list[int] = []
    for j, lf in enumerate(resolved):
        if lf.batch is not None and _apply_batch(df, lf, text_column, encoder, L, j, tallies[j]):
            ticker.add(n)
        else:
            per_row.append(j)
    if per_row:
        _apply_rows(df, resolved, per_row, text_column, encoder, L, tallies, n_jobs, ticker, notes)

    names = [lf.name for lf in resolved]
    problems = _problems(names, L, tallies)
    result = LabelMatrixResult(L, names, labels, df.index.copy(), problems, notes)
    if n > 0 and m > 0 and not (L != ABSTAIN).any():
        raise LooplineError(
            f"every labeling function is broken; nothing was labeled.\n{result.format_problems()}",
            hint="fix the LFs listed above; run one on a few rows by hand to see what it returns",
        )
    return result


def _resolve_lfs(lfs: Sequence[LabelingFunction | Callable[[Any], Any]]) -> list[LabelingFunction]:
    if isinstance(lfs, LabelingFunction) or callable(lfs):
        lfs = [lfs]  # a single LF is a common slip; treat it as a list of one
    if not lfs:
        raise LooplineError("no labeling functions given", hint="pass lfs=[...]")
    resolved = []
    for lf in lfs:
        if isinstance(lf, LabelingFunction):
            resolved.append(lf)
        elif callable(lf):
            resolved.append(labeling_function()(lf))
        else:
            raise LooplineError(
                f"expected labeling functions, found {type(lf).__name__}: {lf!r}",
                hint="decorate functions with @labeling_function() or use keyword_lf(...)",
            )
    names = [lf.name for lf in resolved]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LooplineError(
            f"labeling function names must be unique, found {', '.join(duplicates)} twice",
            hint="pass name=... to tell them apart",
        )
    return resolved


def _resolve_label_set(
    label_set: Sequence[Hashable] | None, lfs: list[LabelingFunction]
) -> tuple[Hashable, ...]:
    if label_set is None:
        declared = {lf.label_set for lf in lfs if lf.label_set is not None}
        if len(declared) != 1:
            raise LooplineError(
                "apply_lfs needs a label_set: "
                + (
                    "none of the LFs declares one"
                    if not declared
                    else "the LFs declare different ones"
                ),
                hint="pass label_set=('ham', 'spam') (the order gives the class indices)",
            )
        label_set = declared.pop()
    labels = tuple(label_set)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise LooplineError(
            f"label_set must hold at least two distinct labels, found {labels!r}",
            hint="e.g. label_set=('ham', 'spam')",
        )
    if any(_is_abstain(label) for label in labels):
        raise LooplineError(
            f"label_set {labels!r} holds an abstain value (None, NaN or -1)",
            hint="-1 and None mean ABSTAIN; give the classes other names",
        )
    return labels


def _check_lf_label_sets(lfs: list[LabelingFunction], labels: tuple[Hashable, ...]) -> None:
    for lf in lfs:
        if lf.label_set is not None and not set(lf.label_set) <= set(labels):
            extra = sorted(map(repr, set(lf.label_set) - set(labels)))
            raise LooplineError(
                f"labeling function {lf.name!r} declares labels {', '.join(extra)} "
                f"that are not in the label set {labels!r}",
                hint="declare the same label set on the LF and in apply_lfs",
            )


def _allowed(lf: LabelingFunction, encoder: _Encoder) -> set[int] | None:
    if lf.label_set is None:
        return None
    return {encoder.index[label] for label in lf.label_set}


def _apply_batch(
    df: pd.DataFrame,
    lf: LabelingFunction,
    text_column: str,
    encoder: _Encoder,
    L: np.ndarray,
    j: int,
    tally: _Tally,
) -> bool:
    """Run an LF's vectorised path into column ``j``; False (and nothing written) if it raised."""
    assert lf.batch is not None
    try:
        raw = lf.batch(df, text_column)
    except Exception:
        return False  # the row-by-row path will locate and report the failing rows
    try:
        values = np.asarray(raw, dtype=object)
        if values.shape != (len(df),):
            return False
        # Encode each distinct output once: a vectorised LF returns a handful of values.
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except Exception:
        return False  # e.g. unhashable outputs: the row path reports them
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    allowed = _allowed(lf, encoder)
    mapped = np.array(
        [
            _encode_many(encoder, u, allowed, tally, int(c))
            for u, c in zip(uniques, counts, strict=True)
        ]
        + [ABSTAIN],  # index -1: factorize's sentinel for None/NaN
        dtype=np.int64,
    )
    L[:, j] = mapped[codes]
    return True


def _encode_many(
    encoder: _Encoder, value: Any, allowed: set[int] | None, tally: _Tally, count: int
) -> int:
    scratch = _Tally()
    code = encoder.encode(value, allowed, scratch)
    for key in scratch.bad_values:
        tally.bad_values[key] = tally.bad_values.get(key, 0) + count
    return code


class _Ticker:
    def __init__(self, callback: ProgressFn | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def add(self, units: int) -> None:
        self.done += units
        if self.callback is not None:
            self.callback(self.done, self.total)


def _apply_rows(
    df: pd.DataFrame,
    lfs: list[LabelingFunction],
    columns: list[int],
    text_column: str,
    encoder: _Encoder,
    L: np.ndarray,
    tallies: list[_Tally],
    n_jobs: int,
    ticker: _Ticker,
    notes: list[str],
) -> None:
    """Run the non-vectorised LFs row by row, in chunks, serially or in processes."""
    todo = [lfs[j] for j in columns]
    allowed = [_allowed(lf, encoder) for lf in todo]
    chunks = [(start, min(start + _ROW_CHUNK, len(df))) for start in range(0, len(df), _ROW_CHUNK)]
    if n_jobs > 1 and len(chunks) > 1:
        try:
            pickle.dumps((todo, encoder))
        except Exception as exc:
            notes.append(
                f"n_jobs={n_jobs} ignored, ran in one process: the LFs do not pickle ({exc}); "
                "define them at module level to run them in parallel"
            )
            n_jobs = 1
    tasks = (
        (_inputs(df.iloc[a:b], todo, text_column), todo, encoder, allowed, a) for a, b in chunks
    )
    if n_jobs > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            outputs: Iterator[tuple[np.ndarray, list[_Tally]]] = pool.map(
                _label_chunk, *zip(*tasks, strict=True)
            )
            _collect(outputs, chunks, columns, L, tallies, ticker)
    else:
        _collect((_label_chunk(*t) for t in tasks), chunks, columns, L, tallies, ticker)


def _collect(
    outputs: Iterable[tuple[np.ndarray, list[_Tally]]],
    chunks: list[tuple[int, int]],
    columns: list[int],
    L: np.ndarray,
    tallies: list[_Tally],
    ticker: _Ticker,
) -> None:
    for (a, b), (block, chunk_tallies) in zip(chunks, outputs, strict=True):
        L[a:b, columns] = block
        for j, tally in zip(columns, chunk_tallies, strict=True):
            tallies[j].merge(tally)
        ticker.add((b - a) * len(columns))


def _inputs(
    chunk: pd.DataFrame, lfs: list[LabelingFunction], text_column: str
) -> tuple[list[str] | None, list[Row] | None]:
    """The texts and/or rows of one chunk, built once for all LFs that need them."""
    texts = None
    if any(lf.input == "text" for lf in lfs):
        texts = chunk[text_column].fillna("").astype(str).tolist()
    rows = None
    if any(lf.input == "row" for lf in lfs):
        rows = [Row(r) for r in chunk.to_dict("records")]
    return texts, rows


def _label_chunk(
    inputs: tuple[list[str] | None, list[Row] | None],
    lfs: list[LabelingFunction],
    encoder: _Encoder,
    allowed: list[set[int] | None],
    offset: int,
) -> tuple[np.ndarray, list[_Tally]]:
    """Label one chunk of rows with each LF; runs in a worker process when n_jobs > 1."""
    texts, rows = inputs
    n = len(texts if texts is not None else rows or [])
    block = np.full((n, len(lfs)), ABSTAIN, dtype=np.int16)
    tallies = [_Tally() for _ in lfs]
    for j, lf in enumerate(lfs):
        items: list[Any] = (texts if lf.input == "text" else rows) or []
        # Text LFs are pure functions of the text: label each distinct text once, and
        # replay the outcome (a code, a failure, or an out-of-set value) for repeats.
        cache: dict[Any, tuple[int, str | None]] | None = {} if lf.input == "text" else None
        for i, item in enumerate(items):
            if cache is not None and item in cache:
                code, bad = cache[item]
                _replay(tallies[j], code, bad)
            else:
                code, bad = _call_one(lf, item, encoder, allowed[j], tallies[j], offset + i)
                if cache is not None:
                    cache[item] = (code, bad)
            block[i, j] = ABSTAIN if code == _FAILED else code
    return block, tallies


_FAILED = -2  # internal marker: the LF raised on this item


def _replay(tally: _Tally, code: int, bad: str | None) -> None:
    if code == _FAILED:
        tally.errors += 1
    elif bad is not None:
        tally.bad_values[bad] += 1


def _call_one(
    lf: LabelingFunction,
    item: Any,
    encoder: _Encoder,
    allowed: set[int] | None,
    tally: _Tally,
    row: int,
) -> tuple[int, str | None]:
    """(class index, ABSTAIN or _FAILED; the repr of an out-of-set value or None)."""
    try:
        value = lf.func(item)
    except Exception as exc:
        tally.errors += 1
        if tally.first_error is None:
            tally.first_error = f"{type(exc).__name__}: {exc} (row {row})"
            tally.first_error_row = row
        return _FAILED, None
    scratch = _Tally()
    code = encoder.encode(value, allowed, scratch)
    bad = next(iter(scratch.bad_values), None)
    if bad is not None:
        tally.bad_values[bad] = tally.bad_values.get(bad, 0) + 1
    return code, bad


def _problems(names: list[str], L: np.ndarray, tallies: list[_Tally]) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    for j, (name, tally) in enumerate(zip(names, tallies, strict=True)):
        if tally.errors:
            problems.append(
                {
                    "lf": name,
                    "kind": "error",
                    "rows": tally.errors,
                    "message": tally.first_error or "",
                    "first_row": tally.first_error_row,
                }
            )
        if tally.bad_values:
            ranked = sorted(tally.bad_values.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = ", ".join(f"{v} ({c} rows)" for v, c in ranked[:5])
            more = f" and {len(ranked) - 5} more" if len(ranked) > 5 else ""
            problems.append(
                {
                    "lf": name,
                    "kind": "out_of_set",
                    "rows": sum(tally.bad_values.values()),
                    "message": shown + more,
                    "values": [v for v, _ in ranked],
                }
            )
        if (
            L.shape[0]
            and not (L[:, j] != ABSTAIN).any()
            and not tally.errors
            and not tally.bad_values
        ):
            problems.append(
                {
                    "lf": name,
                    "kind": "abstains_everywhere",
                    "rows": int(L.shape[0]),
                    "message": "it covers no row; check its condition and the input column",
                }
            )
    return problems
