"""Lean inference: score batches of rows without building a DataFrame when the model allows it.

A registered text model is a scikit-learn ``Pipeline`` whose first step is a
``ColumnTransformer`` of text vectorizers on the ``text`` column (see
:mod:`loopline.train.text`). Scoring it through ``predict_proba(DataFrame)`` spends most of
the time of a small batch in pandas and in the ColumnTransformer's input checks, not in the
model (~4.4 ms for one row against well under 1 ms for the same work on a list of strings).
:class:`TextPipelinePredictor` calls each fitted vectorizer's ``transform`` on the list of
strings, stacks the results exactly as the ColumnTransformer would, and runs the remaining
steps. It is used only when a self-check on probe texts gives the same probabilities as the
DataFrame path; any other model gets :class:`FramePredictor`, one DataFrame per batch.

Besides vectorizers, the ColumnTransformer may hold *dense text scorers*: transformers of one
text column with a ``score_texts(texts) -> ndarray`` method that ``transform`` also uses
(:class:`~loopline.train.text.LexiconScores`, the sentiment model's lexicon scores). Both
lean paths call that method on the batch's strings, so they compute the same numbers.

Rows travel as *columns*: ``columns[i]`` holds the values of input column ``i`` for every
row of the batch, which is what both paths consume without reshaping.

ONNX (skl2onnx + onnxruntime) was measured and is not used: see the notes at the end.

:class:`LinearTextPredictor` has compiled kernels (``loopline.serve._lean``, a C extension
built at install time where a C compiler is found) and a numpy path with the same results
where it is not.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, cycle, islice, pairwise, repeat
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

if TYPE_CHECKING:
    from loopline.registry.models import LoadedModel

KERNELS: ModuleType | None
try:
    from loopline.serve import _lean as KERNELS
except ImportError:  # installed without a C compiler: the numpy path, same results
    KERNELS = None

__all__ = [
    "QUICK_TEXT_CHARS",
    "FramePredictor",
    "LinearTextPredictor",
    "Predictor",
    "TextPipelinePredictor",
    "build_predictor",
]

log = logging.getLogger(__name__)

Columns = Sequence[Sequence[Any]]

# Most text in one batch that LinearTextPredictor.is_quick accepts (about a hundred tweets).
QUICK_TEXT_CHARS = 8_192

# Texts that exercise the vectorizers' preprocessing (case, URLs, mentions, emoji, empty),
# used to check that the lean path gives the DataFrame path's probabilities.
PROBE_TEXTS = (
    "I love this, what a wonderful day!",
    "awful... I HATE it @someone http://example.com/x",
    "",
    "ünïcödé 😀 sooooo good",
    "ok",
    "not bad at all :) but I don't like it &amp; never will!!",
)


# Python types a request value may have, by the MLflow type of its input column.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "double": (float, int),
    "float": (float, int),
    "long": (int,),
    "integer": (int,),
    "boolean": (bool,),
}
_PROBE_VALUES: dict[type, tuple[Any, ...]] = {
    float: (0.0, 1.0, -1.0, 0.5, 1e6),
    int: (0, 1, 2, -1, 1000),
    bool: (False, True, False, True, False),
}


def column_types(loaded: LoadedModel) -> list[tuple[type, ...]]:
    """The accepted Python types of each input column (text where the model does not say)."""
    types = getattr(loaded, "input_types", None) or {}
    return [_JSON_TYPES.get(types.get(column, "string"), (str,)) for column in loaded.input_columns]


def probe_columns(loaded: LoadedModel) -> list[list[Any]]:
    """A few valid values per input column (as many as :data:`PROBE_TEXTS` in every column),
    for warm-up and self-checks."""
    rows = len(PROBE_TEXTS)
    return [
        list(islice(cycle(_PROBE_VALUES.get(kinds[0], PROBE_TEXTS)), rows))
        for kinds in column_types(loaded)
    ]


class Predictor(Protocol):
    """Scores a batch given as one sequence of values per input column."""

    kind: str

    def predict_proba(self, columns: Columns) -> np.ndarray:
        """Class probabilities, one row per input row, columns in the model's class order."""
        ...

    def is_quick(self, columns: Columns) -> bool:
        """Whether scoring these columns surely takes at most a few milliseconds (the server
        then scores the batch on its event loop rather than handing it to a thread)."""
        ...


class FramePredictor:
    """The generic path: one DataFrame per batch, then the model's own ``predict_proba``."""

    kind = "dataframe"

    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self._columns = list(loaded.input_columns)

    def is_quick(self, columns: Columns) -> bool:
        """Never assumed: the model's cost is unknown."""
        return False

    def predict_proba(self, columns: Columns) -> np.ndarray:
        """Build the frame column by column (no per-row dicts) and score it."""
        import pandas as pd

        frame = pd.DataFrame(dict(zip(self._columns, (list(c) for c in columns), strict=True)))
        return np.asarray(self._loaded.predict_proba(frame))


@dataclass(frozen=True)
class _Vectorizer:
    transformer: Any
    column: int  # index into the input columns
    weight: float | None


class TextPipelinePredictor:
    """``Pipeline[ColumnTransformer(text vectorizers), ..., classifier]`` without pandas.

    Build it with :meth:`from_model`, which returns None when the model has another shape.
    Attributes: ``vectorizers`` (fitted, with their input column and weight),
    ``sparse_output`` (how the ColumnTransformer stacks), ``transforms`` (the steps between)
    and ``final`` (the classifier).
    """

    kind = "text-pipeline"

    def __init__(
        self, vectorizers: list[_Vectorizer], sparse_output: bool, steps: list[Any]
    ) -> None:
        self.vectorizers = vectorizers
        self.sparse_output = sparse_output
        self.transforms = steps[:-1]
        self.final = steps[-1]

    @classmethod
    def from_model(cls, model: Any, input_columns: Sequence[str]) -> TextPipelinePredictor | None:
        """Recognise the supported shape, or return None (the caller falls back)."""
        from sklearn.compose import ColumnTransformer
        from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
        from sklearn.pipeline import Pipeline

        if not isinstance(model, Pipeline) or len(model.steps) < 2:
            return None
        features = model.steps[0][1]
        if not isinstance(features, ColumnTransformer) or not hasattr(features, "transformers_"):
            return None
        # set_output(transform="pandas") changes what the ColumnTransformer returns.
        if getattr(features, "_sklearn_output_config", {}).get("transform", "default") not in (
            "default",
            None,
        ):
            return None
        weights = features.transformer_weights or {}
        vectorizers = []
        for name, transformer, column in features.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            # Only a single named column gives the vectorizer a 1-D sequence of strings.
            if not isinstance(column, str) or column not in input_columns:
                return None
            if not isinstance(transformer, CountVectorizer | HashingVectorizer) and not (
                _is_dense_scorer(transformer)
            ):
                return None
            vectorizers.append(
                _Vectorizer(transformer, input_columns.index(column), weights.get(name))
            )
        steps = [step for _, step in model.steps[1:] if step not in (None, "passthrough")]
        if not vectorizers or not steps or not hasattr(steps[-1], "predict_proba"):
            return None
        if not all(hasattr(step, "transform") for step in steps[:-1]):
            return None
        return cls(vectorizers, bool(features.sparse_output_), steps)

    def is_quick(self, columns: Columns) -> bool:
        """Never assumed: the steps after the vectorizers may cost anything."""
        return False

    def predict_proba(self, columns: Columns) -> np.ndarray:
        """Vectorize each column's strings, stack like the ColumnTransformer, then classify."""
        blocks = []
        for vectorizer in self.vectorizers:
            block = vectorizer.transformer.transform(columns[vectorizer.column])
            if vectorizer.weight is not None:
                block = block * vectorizer.weight
            blocks.append(block)
        features = self._stack(blocks)
        for step in self.transforms:
            features = step.transform(features)
        return np.asarray(self.final.predict_proba(features))

    def _stack(self, blocks: list[Any]) -> Any:
        from scipy import sparse

        if self.sparse_output:
            if len(blocks) == 1 and sparse.isspmatrix_csr(blocks[0]):
                return blocks[0]  # hstack of one CSR matrix would only copy it
            # As ColumnTransformer: dense blocks (scorers) are stacked as they are.
            return sparse.hstack(blocks).tocsr()
        return np.hstack([b.toarray() if sparse.issparse(b) else b for b in blocks])


class LinearTextPredictor:
    """TF-IDF/count vectorizers + ``LogisticRegression``, vectorized per batch in numpy.

    ``vectorizer.transform`` counts each document's n-grams in a Python dict and sorts every
    row's indices; for tweet-sized texts that, not the model, is most of the time of a small
    batch. This path gets each batch's vocabulary indices from the fitted vectorizer's own
    tokenization (``char_wb`` n-grams cached per word, a batch's new words computed together
    in numpy; word n-grams looked up by token ids in numpy; decoding and preprocessing done
    once per text for vectorizers that share them, and a negation-marking preprocessor
    applied to the text its sibling already normalised), then counts and weights the whole
    batch at once: one sort of ``row * n_features + column``
    keys over the vectorizers that weight alike gives the same sorted CSR entries as
    sklearn, and count, sublinear tf, idf and row norm (per vectorizer) follow in sklearn's
    order and dtypes. The decision function ``X @ coef.T + intercept`` is then accumulated
    entry by entry in the stacked matrix's column order and in the dtype scipy computes it
    in (``np.add.at`` in float32, ``np.bincount`` in float64), without building a sparse
    matrix, so the probabilities are bit-for-bit those of the pipeline.
    :func:`build_predictor` still checks that before using it.

    With ``compiled`` (and the C extension built, :data:`KERNELS`), the same steps run in
    compiled kernels with the same arithmetic: n-grams looked up in hash tables, and each
    group counted, weighted and added to the scores row by row in one call. That halves
    the model's time on tweets (batches of 16 unseen tweets: ~30 vs ~60 us a tweet). It
    covers a float32 or float64 model whose vectorizers have the coefficients' dtype;
    any other falls back to the numpy path.

    :meth:`cache_stats` counts the look-ups and misses of the per-word and per-token caches.
    """

    kind = "linear-text"

    def __init__(
        self, vectorizers: list[_Vectorizer], classifier: Any, compiled: bool = True
    ) -> None:
        self.vectorizers = vectorizers
        kernels = KERNELS if compiled else None
        self._blocks: list[_TfidfBlock | _DenseBlock] = []
        offset = 0
        for vectorizer in vectorizers:
            block: _TfidfBlock | _DenseBlock
            if _is_dense_scorer(vectorizer.transformer):
                block = _DenseBlock(vectorizer, offset)
            else:
                block = _TfidfBlock(vectorizer, offset, kernels)
            self._blocks.append(block)
            offset += block.width
        self._n_features = offset
        # Consecutive vectorizers that weight alike are counted and weighted together.
        self._groups: list[_TfidfGroup | _DenseBlock] = []
        for block in self._blocks:
            last = self._groups[-1] if self._groups else None
            if isinstance(block, _DenseBlock):
                self._groups.append(block)
            elif isinstance(last, _TfidfGroup) and last.accepts(block):
                last.add(block)
            else:
                self._groups.append(_TfidfGroup(block, offset))
        # The stacked matrix has the blocks' common dtype; X @ coef.T is computed in the
        # common dtype of that and the coefficients (float32 for the sentiment model).
        self._x_dtype = np.result_type(*(block.dtype for block in self._blocks))
        self._dtype = np.result_type(self._x_dtype, classifier.coef_.dtype)
        coef = np.asarray(classifier.coef_, dtype=self._dtype)
        self._coef = coef[0] if coef.shape[0] == 1 else np.ascontiguousarray(coef.T)
        self._intercept = np.asarray(classifier.intercept_)
        self._binary = len(classifier.classes_) <= 2
        self._kernels = None
        same_dtype = all(
            group.dtype == self._dtype for group in self._groups if isinstance(group, _TfidfGroup)
        )
        if kernels is not None and self._x_dtype == self._dtype and same_dtype:
            self._kernels = kernels if self._dtype in (np.float32, np.float64) else None
        # A block whose prepared text derives from another block's (negation marking on top
        # of the same normalisation) reuses it only when a sibling prepares that text anyway.
        keys = {block.prepare_key for block in self._blocks}
        for block in self._blocks:
            if isinstance(block, _TfidfBlock) and block.derived_from not in keys:
                block.derived_from = None

    @classmethod
    def from_model(
        cls, model: Any, input_columns: Sequence[str], compiled: bool = True
    ) -> LinearTextPredictor | None:
        """Recognise ``Pipeline[ColumnTransformer(TF-IDF/count vectorizers, dense text
        scorers), LogisticRegression]``.

        Returns None for any other shape. ``compiled=False`` keeps to the numpy path.
        """
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        lean = TextPipelinePredictor.from_model(model, input_columns)
        if lean is None or lean.transforms or not lean.sparse_output:
            return None
        if type(lean.final) is not LogisticRegression:
            return None
        for vectorizer in lean.vectorizers:
            transformer = vectorizer.transformer
            if vectorizer.weight is None and _is_dense_scorer(transformer):
                continue
            if vectorizer.weight is not None or type(transformer) not in (
                TfidfVectorizer,
                CountVectorizer,
            ):
                return None
            if isinstance(transformer, TfidfVectorizer) and transformer.norm not in (
                "l1",
                "l2",
                None,
            ):
                return None
        return cls(lean.vectorizers, lean.final, compiled)

    def is_quick(self, columns: Columns) -> bool:
        """Up to :data:`QUICK_TEXT_CHARS` characters of text: ~2.5 ms on the 2-core machine
        for word + char TF-IDF, ~4 ms with the sentiment default's negation marking and
        lexicon scores (~110 tweets, measured under load)."""
        return sum(sum(map(len, column)) for column in columns) <= QUICK_TEXT_CHARS

    def cache_stats(self) -> dict[str, tuple[int, int]]:
        """``{cache: (lookups, misses)}`` of the per-word and per-token caches since the
        model was loaded: ``char_wb`` (words, over the ``char_wb`` vectorizers) and
        ``lexicon`` (tokens of a dense scorer with a per-token cache)."""
        stats: dict[str, tuple[int, int]] = {}
        for block in self._blocks:
            for name, (lookups, misses) in block.cache_stats().items():
                seen = stats.get(name, (0, 0))
                stats[name] = (seen[0] + lookups, seen[1] + misses)
        return stats

    def predict_proba(self, columns: Columns) -> np.ndarray:
        """Vectorize, accumulate ``X @ coef.T + intercept``, apply the link function."""
        from scipy.special import expit
        from sklearn.utils.extmath import softmax

        if self._kernels is not None:
            scores = self._compiled_scores(columns, self._kernels)
        else:
            scores = self._scores(columns)
        scores += self._intercept
        if not self._binary:
            return np.asarray(softmax(scores, copy=False))
        proba = expit(scores, out=scores)
        out = np.empty((len(proba), 2), dtype=proba.dtype)
        out[:, 1] = proba
        np.subtract(1, proba, out=out[:, 0])
        return out

    def _compiled_scores(self, columns: Columns, kernels: ModuleType) -> np.ndarray:
        """``X @ coef.T`` by the compiled kernels, group after group."""
        n = len(columns[0])
        coef = self._coef
        k = 1 if coef.ndim == 1 else coef.shape[1]
        scores = np.zeros((n,) if k == 1 else (n, k), dtype=self._dtype)
        prepared: dict[tuple[Any, ...], list[str]] = {}
        for group in self._groups:
            if isinstance(group, _DenseBlock):
                dense = group.scores(_prepared(group, columns, prepared))
                dense = np.ascontiguousarray(dense, dtype=self._dtype)
                kernels.accumulate_dense(scores, k, dense, group.width, coef, group.offset)
            else:
                texts = [_prepared(block, columns, prepared) for block in group.blocks]
                group.accumulate(scores, k, texts, coef, kernels)
        return scores

    def _scores(self, columns: Columns) -> np.ndarray:
        """``X @ coef.T`` in numpy: the groups' entries, then one accumulation."""
        n = len(columns[0])
        prepared: dict[tuple[Any, ...], list[str]] = {}
        coef = self._coef
        rows_parts = []
        terms_parts = []
        for group in self._groups:
            if isinstance(group, _DenseBlock):
                rows, cols, values = group.entries(_prepared(group, columns, prepared))
            else:
                texts = [_prepared(block, columns, prepared) for block in group.blocks]
                rows, cols, values = group.entries(texts, n)
            if rows.size:
                values = values.astype(self._x_dtype, copy=False).astype(self._dtype, copy=False)
                rows_parts.append(rows)
                terms_parts.append(
                    values * coef[cols] if coef.ndim == 1 else values[:, None] * coef[cols]
                )
        shape = (n,) if coef.ndim == 1 else (n, coef.shape[1])
        if not rows_parts:
            scores = np.zeros(shape, dtype=self._dtype)
        else:
            rows = rows_parts[0] if len(rows_parts) == 1 else np.concatenate(rows_parts)
            terms = terms_parts[0] if len(terms_parts) == 1 else np.concatenate(terms_parts)
            # Groups in column order, each group's entries by row then column: every row's
            # terms come in the column order scipy's csr_matvec adds them in, one by one.
            if coef.ndim == 1 and self._dtype == np.float64:
                scores = np.bincount(rows, weights=terms, minlength=n)
            else:
                scores = np.zeros(shape, dtype=self._dtype)
                np.add.at(scores, rows, terms)
        return scores


def _prepared(
    block: _TfidfBlock | _DenseBlock, columns: Columns, prepared: dict[tuple[Any, ...], list[str]]
) -> list[str]:
    """The block's prepared texts: shared with siblings that prepare alike, and built on a
    sibling's when the block's preprocessing only adds a last step to it."""
    texts = prepared.get(block.prepare_key)
    if texts is not None:
        return texts
    if isinstance(block, _TfidfBlock) and block.derived_from is not None:
        base = prepared.get(block.derived_from)
        if base is None:
            prepare_base = block.prepare_base
            base = prepared[block.derived_from] = [prepare_base(t) for t in columns[block.column]]
        post = block.post
        texts = [post(t) for t in base]
    else:
        prepare = block.prepare
        texts = [prepare(t) for t in columns[block.column]]
    prepared[block.prepare_key] = texts
    return texts


_NO_ENTRIES = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))


class _TfidfGroup:
    """Consecutive vectorizers that count and weight alike (dtype, binary, tf-idf, sublinear
    tf, norm): their n-grams are counted with one sort and weighted together, each block's
    rows normalised on their own as the ColumnTransformer's blocks are."""

    def __init__(self, block: _TfidfBlock, n_features: int) -> None:
        self.blocks = [block]
        self.n_features = n_features
        self.settings = block.settings
        self.dtype = block.dtype
        vectorizer = block.vectorizer
        self.binary = bool(vectorizer.binary)
        self.tfidf = block.tfidf
        self.sublinear = self.tfidf and bool(vectorizer.sublinear_tf)
        self.norm = vectorizer.norm if self.tfidf else None
        self._idf: np.ndarray | None = None
        self._starts = np.array([block.offset], dtype=np.intp)
        self._log_table = np.zeros(0, dtype=self.dtype)
        self._weights: tuple[np.ndarray, ...] | None = None

    def accepts(self, block: _TfidfBlock) -> bool:
        """Whether ``block`` weights like this group's blocks (and follows the last one)."""
        last = self.blocks[-1]
        return block.settings == self.settings and block.offset == last.offset + last.width

    def add(self, block: _TfidfBlock) -> None:
        self.blocks.append(block)
        self._starts = np.array([b.offset for b in self.blocks], dtype=np.intp)
        self._idf = None
        self._weights = None

    def accumulate(
        self,
        scores: np.ndarray,
        k: int,
        texts: list[list[str]],
        coef: np.ndarray,
        kernels: ModuleType,
    ) -> None:
        """Add the group's ``X @ coef.T`` to ``scores`` with the compiled kernel: the same
        entries, weights and order as :meth:`entries` and the numpy accumulation."""
        found = [
            block.indices(prepared) for block, prepared in zip(self.blocks, texts, strict=True)
        ]
        if self._weights is None or self._weights[0] is not coef:
            self._weights = (coef, *self._kernel_weights(coef, k))
        log_table = None
        if self.sublinear:
            log_table = self._logs(sum(rows.size for rows, _ in found))
        _, bounds, weights = self._weights
        norm = {None: 0, "l1": 1, "l2": 2}[self.norm]
        kernels.accumulate_group(scores, k, found, bounds, weights, log_table, self.binary, norm)

    def _kernel_weights(self, coef: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The blocks' starts and end, and each column's idf (1 without) and coefficients
        side by side (``accumulate_group``'s ``weights``)."""
        last = self.blocks[-1]
        bounds = np.append(self._starts, last.offset + last.width).astype(np.int64)
        weights = np.ones((bounds[-1] - bounds[0], 1 + k), dtype=coef.dtype)
        idf = self._idf_by_column()
        if self.tfidf and idf is not None:
            weights[:, 0] = idf
        weights[:, 1:] = coef[bounds[0] : bounds[-1]].reshape(-1, k)
        return bounds, weights

    def _logs(self, most: int) -> np.ndarray:
        """``log(c) + 1`` for counts c from 1 to at least ``most``, computed by numpy as
        :meth:`entries` computes it (the same values wherever a count sits in the array)."""
        if self._log_table.size < most:
            size = max(most, 2 * self._log_table.size, 1024)
            table = np.log(np.arange(1, size + 1, dtype=self.dtype))
            table += 1.0
            self._log_table = table
        return self._log_table

    def _idf_by_column(self) -> np.ndarray | None:
        """The idf of every column of the group (1 for a block without idf), or None."""
        if self._idf is None and any(block.idf is not None for block in self.blocks):
            ones = np.ones
            self._idf = np.concatenate(
                [
                    block.idf if block.idf is not None else ones(block.width, self.dtype)
                    for block in self.blocks
                ]
            ).astype(self.dtype, copy=False)
        return self._idf

    def entries(self, texts: list[list[str]], n: int) -> tuple[np.ndarray, ...]:
        """Rows, columns (in the stacked matrix) and values of the group's non-zero entries,
        by row then column, computed as each vectorizer's ``transform`` does (same steps,
        order and dtype)."""
        blocks = self.blocks
        width = self.n_features
        found = []
        for block, prepared in zip(blocks, texts, strict=True):
            rows, columns = block.indices(prepared)
            rows *= width
            rows += columns
            found.append(rows)
        keys = found[0] if len(found) == 1 else np.concatenate(found)
        if not keys.size:
            return (*_NO_ENTRIES, np.zeros(0, dtype=self.dtype))
        # Stable (timsort) rather than the default quicksort: the keys come in runs, row by row
        # (29 vs 75 us for the ~3,800 keys of 16 tweets).
        keys.sort(kind="stable")
        # The distinct keys and how often each occurs (np.unique's result, in fewer calls).
        new = np.empty(keys.size, dtype=bool)
        new[0] = True
        np.not_equal(keys[1:], keys[:-1], out=new[1:])
        first = new.nonzero()[0]
        counts = np.empty(first.size, dtype=self.dtype)
        np.subtract(first[1:], first[:-1], out=counts[:-1], casting="unsafe")
        counts[-1] = keys.size - first[-1]
        rows, columns = np.divmod(keys[first], width)
        values = counts
        if self.binary:
            values.fill(1)
        if not self.tfidf:
            return rows, columns, values
        if self.sublinear:
            np.log(values, values)
            values += 1.0
        idf = self._idf_by_column()
        if idf is not None:
            values *= idf[columns - blocks[0].offset]
        if self.norm is None:
            return rows, columns, values
        # sklearn's inplace_csr_row_normalize_l1/l2, per block: sums in double, in index order.
        terms = np.abs(values) if self.norm == "l1" else values * values
        groups = rows
        if len(blocks) > 1:
            groups = rows * len(blocks) + (self._starts.searchsorted(columns, "right") - 1)
        norms = np.bincount(groups, weights=terms, minlength=n * len(blocks))
        if self.norm == "l2":
            np.sqrt(norms, out=norms)
        norms[norms == 0.0] = 1.0  # rows without features stay as they are
        values = (values / norms[groups]).astype(self.dtype, copy=False)
        return rows, columns, values


class _TfidfBlock:
    """One fitted vectorizer's columns of the stacked feature matrix.

    ``prepare`` decodes and preprocesses a text; vectorizers with the same ``prepare_key``
    (input column, decoding and preprocessing settings) share its result, and a vectorizer
    whose preprocessor is a known composition (see :func:`_derived`: the sentiment model's
    ``normalize_tweet_negated`` is ``mark_negation`` after ``normalize_tweet``) applies only
    its last step (``post``) to a sibling's result (``derived_from``). ``indices`` gives the
    features of a batch of prepared texts that are in the vocabulary, with repeats: their
    rows and their column indices in the stacked matrix, grouped by row.
    """

    def __init__(
        self, vectorizer: _Vectorizer, offset: int, kernels: ModuleType | None = None
    ) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.column = vectorizer.column
        self.offset = offset
        transformer = vectorizer.transformer
        self.vectorizer = transformer
        self.width = len(transformer.vocabulary_)
        self.dtype = np.dtype(transformer.dtype)
        self.tfidf = isinstance(transformer, TfidfVectorizer)
        self.idf: np.ndarray | None = (
            transformer.idf_ if self.tfidf and transformer.use_idf else None
        )
        self.settings = (
            self.dtype,
            bool(transformer.binary),
            self.tfidf,
            self.tfidf and bool(transformer.sublinear_tf),
            transformer.norm if self.tfidf else None,
        )
        self.prepare_key: tuple[Any, ...]
        self.prepare: Callable[[str], str]
        self.indices: Callable[[list[str]], tuple[np.ndarray, np.ndarray]]
        self.derived_from: tuple[Any, ...] | None = None
        self.prepare_base: Callable[[str], str] = str
        self.post: Callable[[str], str] = str
        # Vocabulary indices shifted to the block's columns in the stacked matrix.
        vocabulary = transformer.vocabulary_
        if offset:
            vocabulary = {term: index + offset for term, index in vocabulary.items()}
        analyzer = transformer.analyzer
        if analyzer == "word" or (
            analyzer == "char_wb" and callable(getattr(transformer, "_char_wb_ngrams", None))
        ):
            decode = transformer.decode
            preprocess = transformer.build_preprocessor()
            self.prepare = lambda doc: preprocess(decode(doc))
            self.prepare_key = _prepare_key(self.column, transformer)
            derived = _derived(self.column, transformer)
            if derived is not None:
                self.derived_from, base_prepare, self.post = derived
                self.prepare_base = lambda doc: base_prepare(decode(doc))
            if analyzer == "word":
                self.indices = _WordNgrams(transformer, vocabulary, kernels)
            else:
                self.indices = _WordCachedCharNgrams(transformer, vocabulary, kernels=kernels)
        else:  # "char" or a callable analyzer: its own analyzer does everything
            analyze = transformer.build_analyzer()
            get = vocabulary.get
            self.prepare = str
            self.prepare_key = (self.column, "as is")
            self.indices = lambda texts: _packed_entries(
                [array("i", map(get, analyze(text), repeat(-1))).tobytes() for text in texts]
            )

    def cache_stats(self) -> dict[str, tuple[int, int]]:
        """The per-word cache's ``(lookups, misses)``, if this vectorizer has one."""
        indices = self.indices
        if isinstance(indices, _WordCachedCharNgrams):
            return {"char_wb": (indices.lookups, indices.misses)}
        return {}


def _prepare_key(column: int, vectorizer: Any) -> tuple[Any, ...]:
    """What the decoder and the preprocessor read; callables are compared by identity (a
    custom preprocessor is one function object once both vectorizers are unpickled). With
    a custom preprocessor, sklearn ignores ``lowercase`` and ``strip_accents``."""
    decoding = (column, vectorizer.input, vectorizer.encoding, vectorizer.decode_error)
    if vectorizer.preprocessor is not None:
        return (*decoding, _identity(vectorizer.preprocessor))
    return (*decoding, vectorizer.lowercase, _identity(vectorizer.strip_accents), None)


def _derived(
    column: int, vectorizer: Any
) -> tuple[tuple[Any, ...], Callable[[str], str], Callable[[str], str]] | None:
    """(prepare key of the base, base preprocessor, last step) when the vectorizer's
    preprocessor is a known composition of the text model's (:mod:`loopline.train.text`):
    ``normalize_tweet_negated`` is ``mark_negation`` after ``normalize_tweet``, and
    ``lowercase_negated`` is ``mark_negation`` after ``str.lower``, which is what the default
    preprocessor does with ``lowercase=True`` and no accent stripping. None otherwise."""
    from loopline.train import text

    preprocessor = vectorizer.preprocessor
    decoding = (column, vectorizer.input, vectorizer.encoding, vectorizer.decode_error)
    if preprocessor is text.normalize_tweet_negated:
        base = text.normalize_tweet
        return (*decoding, _identity(base)), base, text.mark_negation
    if preprocessor is text.lowercase_negated:
        return (*decoding, True, None, None), str.lower, text.mark_negation
    return None


class _DenseBlock:
    """A dense text scorer's columns of the stacked feature matrix (see the module docstring).

    Its ``score_texts`` gives the same array (same values and dtype) ``transform`` gives the
    ColumnTransformer, whose sparse stacking keeps the non-zero entries row by row; this
    returns those entries like :meth:`_TfidfBlock.entries`. A scorer that counts the
    look-ups and misses of a cache of its own (``LexiconScores``' per-token cache) reports
    them through a ``cache_stats() -> (lookups, misses)`` method.
    """

    def __init__(self, vectorizer: _Vectorizer, offset: int) -> None:
        self.column = vectorizer.column
        self.offset = offset
        self.scorer = vectorizer.transformer
        self.width = len(self.scorer.get_feature_names_out())
        # The dtype its scores (and so the ColumnTransformer's block) have.
        self.dtype = np.asarray(self.scorer.score_texts(list(PROBE_TEXTS[:1]))).dtype
        self.prepare_key: tuple[Any, ...] = (self.column, "as is")
        self.prepare: Callable[[str], str] = str

    def cache_stats(self) -> dict[str, tuple[int, int]]:
        """The scorer's cache ``(lookups, misses)`` as ``lexicon``, if it counts them."""
        stats = getattr(self.scorer, "cache_stats", None)
        return {} if stats is None else {"lexicon": stats()}

    def scores(self, texts: list[str]) -> np.ndarray:
        """The scorer's ``(len(texts), width)`` array."""
        dense = np.asarray(self.scorer.score_texts(texts))
        if dense.shape != (len(texts), self.width):
            raise ValueError(f"scorer gave shape {dense.shape} for {len(texts)} texts")
        return dense

    def entries(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, columns (in the stacked matrix) and values of the non-zero scores."""
        dense = self.scores(texts)
        rows, columns = dense.nonzero()  # row-major: already in column order per row
        values = dense[rows, columns]
        if self.offset:
            columns += self.offset
        return rows, columns, values


def _is_dense_scorer(transformer: Any) -> bool:
    """A fitted transformer of one text column whose ``transform`` is ``score_texts``."""
    return callable(getattr(transformer, "score_texts", None)) and callable(
        getattr(transformer, "get_feature_names_out", None)
    )


def _identity(setting: Any) -> Any:
    """A hashable stand-in for a vectorizer setting: callables by identity."""
    return id(setting) if callable(setting) else setting


def _packed_entries(found: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the texts' column indices packed as C ints, one ``bytes`` a text
    (-1: not in the vocabulary, dropped): joining bytes and reading them with
    ``np.frombuffer`` costs far less than converting a Python int per feature."""
    columns = np.frombuffer(b"".join(found), dtype=np.intc)
    lengths = np.fromiter(map(len, found), dtype=np.intp, count=len(found))
    lengths //= columns.itemsize
    rows = np.arange(len(found), dtype=np.intp).repeat(lengths)
    keep = columns >= 0
    return rows[keep], columns[keep].astype(np.intp)


def _sorted_lookup(keys: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` sorted, with their ``columns``, each ending in a sentinel (the largest int64,
    column -1) so that ``searchsorted`` of any smaller key lands on a valid position."""
    order = keys.argsort(kind="stable")
    end = np.iinfo(np.int64).max
    return (
        np.append(keys[order].astype(np.int64), end),
        np.append(columns[order].astype(np.intp), -1),
    )


def _find(keys: np.ndarray, table: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The column of each key in a :func:`_sorted_lookup` table, -1 where it is absent."""
    known, columns = table
    at = known.searchsorted(keys)
    found = columns[at]
    found[known[at] != keys] = -1
    return found


# Token patterns whose tokens never hold a space (word characters and apostrophes only):
# sklearn's default and the sentiment model's. For them an n-gram "a b" is the token
# sequence ("a", "b"), so word n-grams are looked up by token ids, without joining strings.
_SPACELESS_TOKEN_PATTERNS = frozenset({r"(?u)\b\w\w+\b", r"(?u)\b\w[\w']*\b"})

# Keys of n-grams stay below this (int64, with room for the lookup's sentinel).
_KEY_LIMIT = 2**62


class _WordNgrams:
    """Rows and column indices (``vocabulary``) of a ``word`` vectorizer's n-grams in a batch
    of preprocessed texts: the same n-grams as sklearn's ``_word_ngrams``.

    When tokens cannot contain the joining space, the whole batch is looked up in numpy:
    each token gets an integer id (one per token of the vocabulary's terms, one more for any
    other token), an n-gram of ids ``t1..tn`` is the integer ``t1 * base**(n-1) + ... + tn``,
    and every n-gram of the batch is found in a sorted array of the vocabulary's with one
    ``searchsorted`` per n. Against a dict look-up per n-gram by token tuple: 10.1 vs 16.3 us
    a tweet (batches of 16, tokenizing and the sort keys included, best of 9 runs taken in
    turns on a busy machine). With the compiled ``kernels``, the keys are looked up in hash
    tables in one call per batch instead. Otherwise (a custom tokenizer, another
    token pattern, or too many tokens for an int64 key) each n-gram is joined and looked up
    as sklearn does.
    """

    def __init__(
        self, vectorizer: Any, vocabulary: dict[str, int], kernels: ModuleType | None = None
    ) -> None:
        self._tokenize = vectorizer.build_tokenizer()
        self._stop_words = vectorizer.get_stop_words()
        self._min_n, self._max_n = vectorizer.ngram_range
        self._get = vocabulary.get
        self._kernels = kernels
        self._ids: dict[str, int] | None = None
        if vectorizer.tokenizer is None and vectorizer.token_pattern in _SPACELESS_TOKEN_PATTERNS:
            self._index(vocabulary)

    def _index(self, vocabulary: dict[str, int]) -> None:
        """Token ids, the unigrams' columns by id and the sorted n-gram keys (n >= 2)."""
        terms = [term.split(" ") for term in vocabulary]
        ids: dict[str, int] = {}
        for tokens in terms:
            for token in tokens:
                ids.setdefault(token, len(ids))
        base = len(ids) + 1  # the last id: a token in no term
        if base**self._max_n >= _KEY_LIMIT:
            return
        self._unigrams = np.full(base, -1, dtype=np.int64)
        keys: dict[int, list[int]] = {}
        columns: dict[int, list[int]] = {}
        for tokens, column in zip(terms, vocabulary.values(), strict=True):
            if len(tokens) == 1:
                self._unigrams[ids[tokens[0]]] = column
                continue
            key = 0
            for token in tokens:
                key = key * base + ids[token]
            keys.setdefault(len(tokens), []).append(key)
            columns.setdefault(len(tokens), []).append(column)
        sizes = range(max(self._min_n, 2), self._max_n + 1)
        arrays = {
            n: (np.array(keys.get(n, []), dtype=np.int64), np.array(columns.get(n, []), np.int64))
            for n in sizes
        }
        kernels = self._kernels
        if kernels is not None:
            # Indexed by n (none for n < 2 or below min_n), as word_entries takes them.
            self._tables = tuple(
                kernels.KeyTable(*arrays[n]) if n in arrays else None
                for n in range(self._max_n + 1)
            )
        else:
            self._ngrams = {n: _sorted_lookup(*arrays[n]) for n in sizes}
        self._base = base
        self._ids = ids
        self._sizes = np.arange(self._min_n, self._max_n + 1)  # n of each column
        self._unknowns = np.full(self._max_n - 1, base - 1, dtype=np.intp)

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        tokenize = self._tokenize
        tokens = [tokenize(text) for text in texts]
        if self._stop_words is not None:
            stop_words = self._stop_words
            tokens = [[t for t in found if t not in stop_words] for found in tokens]
        ids = self._ids
        if ids is None:
            return _packed_entries([self._joined(found) for found in tokens])
        base, min_n, max_n, sizes = self._base, self._min_n, self._max_n, self._sizes
        if self._kernels is not None:
            found = self._kernels.word_entries(
                list(map(ids.get, chain.from_iterable(tokens), repeat(base - 1))),
                list(map(len, tokens)),
                base,
                min_n,
                max_n,
                self._unigrams,
                self._tables,
            )
            return np.frombuffer(found[0], np.int64), np.frombuffer(found[1], np.int64)
        counts = np.fromiter(map(len, tokens), dtype=np.intp, count=len(tokens))
        flat = list(chain.from_iterable(tokens))
        total = len(flat)
        # From a list: a third less time than np.fromiter over the map.
        token_ids = np.array(list(map(ids.get, flat, repeat(base - 1))), dtype=np.intp)
        rows = np.arange(len(texts), dtype=np.intp).repeat(counts)
        # Tokens from each one to the end of its text: an n-gram starts where there are n.
        left = counts.cumsum()[rows]
        left -= np.arange(total)
        following = np.concatenate((token_ids, self._unknowns))
        columns = np.empty((total, sizes.size), dtype=np.intp)
        key = token_ids
        for n in range(1, max_n + 1):
            if n > 1:
                key = key * base + following[n - 1 : n - 1 + total]
            if n == 1 and min_n == 1:
                columns[:, 0] = self._unigrams[token_ids]
            elif n >= min_n:
                columns[:, n - min_n] = _find(key, self._ngrams[n])
        keep = left[:, None] >= sizes
        keep &= columns >= 0
        return rows.repeat(sizes.size)[keep.ravel()], columns[keep]

    def _joined(self, tokens: list[str]) -> bytes:
        """One text's n-gram columns, each n-gram joined and looked up (-1: absent)."""
        get = self._get
        found: list[int] = []
        for n in range(self._min_n, min(self._max_n, len(tokens)) + 1):
            if n == 1:
                found += map(get, tokens, repeat(-1))
                continue
            # zip stops at the last complete n-gram.
            shifted = zip(*(islice(tokens, i, None) for i in range(n)), strict=False)
            found += map(get, map(" ".join, shifted), repeat(-1))
        return array("i", found).tobytes()


class _WordCachedCharNgrams:
    """Rows and column indices (``vocabulary``) of a ``char_wb`` vectorizer's n-grams in a
    batch of preprocessed texts, cached per word.

    ``char_wb`` n-grams never cross a word boundary, so a document's features are the
    concatenation of its words' features: computing each distinct word once (words repeat
    heavily across texts) gives exactly the same counts as the analyzer, far cheaper. The
    cache holds at most ``max_words`` words (their in-vocabulary columns, packed C ints),
    so memory stays bounded. ``lookups`` and ``misses`` count the words looked up and those
    computed.

    A batch's new words are computed together in numpy when the vocabulary's characters are
    few enough (see :meth:`_index`): each character gets a small code (one more for any
    character in no term), an n-gram is its codes' bits side by side, and all n-grams of
    the new words are found with one ``searchsorted`` in the vocabulary's sorted keys.
    Against slicing and looking up each n-gram: 97 vs 221 us for the ~18 new words of a
    batch of 16 tweets (best of 15 runs over 100 batches). The compiled ``kernels`` look
    the same keys up in a hash table, one call per batch. Otherwise each new word goes
    through the vectorizer's own ``_char_wb_ngrams``.
    """

    def __init__(
        self,
        vectorizer: Any,
        vocabulary: dict[str, int],
        max_words: int = 200_000,
        kernels: ModuleType | None = None,
    ) -> None:
        self._min_n, self._max_n = vectorizer.ngram_range
        self._get = vocabulary.get
        self._ngrams = vectorizer._char_wb_ngrams
        self._cache: dict[str, bytes] = {}
        self._max_words = max_words
        self._kernels = kernels
        self._codes: np.ndarray | None = None
        self._index(vocabulary)
        self.lookups = 0
        self.misses = 0

    def _index(self, vocabulary: dict[str, int]) -> None:
        """Character codes and the terms' keys, unless ``max_n`` codes do not fit in an
        int64 key.

        The i-th of the vocabulary's characters (by code point) has code i + 1; any other
        character, the separator between words included, has the next one, so an n-gram
        holding it is in no term. Terms longer than ``max_n`` are never produced and left
        out."""
        min_n, max_n = self._min_n, self._max_n
        terms = [term for term in vocabulary if 0 < len(term) <= max_n]
        points = _code_points("".join(terms))
        alphabet = np.unique(points)
        bits = (alphabet.size + 1).bit_length()
        if 2 ** (bits * max_n) >= _KEY_LIMIT:
            return
        # By code point up to the largest in a term; the last entry for any larger one.
        codes = np.full(int(points.max(initial=0)) + 2, alphabet.size + 1, dtype=np.int64)
        codes[alphabet] = np.arange(1, alphabet.size + 1)
        term_codes = codes[points]
        lengths = np.fromiter(map(len, terms), dtype=np.intp, count=len(terms))
        starts = lengths.cumsum() - lengths
        keys = np.zeros(len(terms), dtype=np.int64)
        for i in range(max_n):
            longer = lengths > i
            keys[longer] = keys[longer] << bits | term_codes[starts[longer] + i]
        columns = np.fromiter(map(vocabulary.__getitem__, terms), np.int64, count=len(terms))
        self._bits = bits
        if self._kernels is not None:
            self._table = self._kernels.KeyTable(keys, columns)
        else:
            self._terms = _sorted_lookup(keys, columns)
        self._codes = codes
        self._separator = chr(np.setdiff1d(np.arange(alphabet.size + 1), alphabet)[0])
        # The key of the n-gram that starts a window of max_n codes, for each n from min_n:
        # the window's codes times these (``windows @ weights``).
        shifts = bits * (np.arange(min_n, max_n + 1)[None, :] - 1 - np.arange(max_n)[:, None])
        self._weights = np.where(shifts >= 0, np.left_shift(1, shifts.clip(0)), 0)

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        # sklearn first collapses runs of white space, which split() makes moot.
        split = [text.split() for text in texts]
        words = list(chain.from_iterable(split))
        self.lookups += len(words)
        cached = list(map(self._cache.get, words))
        found = self._fill(words, cached) if None in cached else cast("list[bytes]", cached)
        if self._kernels is not None:
            rows, columns = self._kernels.packed_entries(found, list(map(len, split)))
            return np.frombuffer(rows, np.int64), np.frombuffer(columns, np.int64)
        columns = np.frombuffer(b"".join(found), dtype=np.intc)
        sizes = np.fromiter(map(len, found), dtype=np.intp, count=len(found))
        sizes //= columns.itemsize
        per_text = np.fromiter(map(len, split), dtype=np.intp, count=len(split))
        rows = np.arange(len(texts), dtype=np.intp).repeat(per_text).repeat(sizes)
        return rows, columns.astype(np.intp)

    def _fill(self, words: list[str], found: list[bytes | None]) -> list[bytes]:
        """``found`` with the words that were not in the cache computed (and cached while
        there is room)."""
        at = [i for i, hit in enumerate(found) if hit is None]
        missing = list(dict.fromkeys([words[i] for i in at]))
        self.misses += len(missing)
        computed = {}
        if self._codes is not None:
            # A padded word shorter than min_n is one n-gram, whole: sklearn's own code.
            shortest = self._min_n - 2
            batched = [word for word in missing if len(word) >= shortest]
            computed = dict(zip(batched, self._compute(batched), strict=True))
        get = self._get
        for word in missing:
            if word not in computed:
                ngrams = self._ngrams(word)
                computed[word] = array(
                    "i", [c for c in map(get, ngrams) if c is not None]
                ).tobytes()
        room = self._max_words - len(self._cache)
        if room > 0:
            self._cache.update(islice(computed.items(), room))
        for i in at:
            found[i] = computed[words[i]]
        return cast("list[bytes]", found)

    def _compute(self, words: list[str]) -> list[bytes]:
        """The in-vocabulary columns of each word's n-grams, as sklearn's ``_char_wb_ngrams``
        takes them from the word padded with a space on each side: every n-gram for n from
        ``min_n`` to ``max_n`` that fits in it (the padded words are at least ``min_n``
        long)."""
        codes, separator, max_n = self._codes, self._separator, self._max_n
        assert codes is not None
        if self._kernels is not None:
            return self._kernels.char_wb_columns(
                words, codes, self._bits, self._min_n, max_n, self._table
            )
        # The padded words, each followed by the separator (and max_n - 1 more at the end,
        # so that each position of the words starts a window of max_n codes).
        points = _code_points(f" {f' {separator} '.join(words)} {separator * max_n}")
        mapped = codes[np.minimum(points, codes.size - 1)]
        # The max_n codes from each position: sliding_window_view's view, without its
        # checks (0.3 vs 9.5 us).
        step = mapped.itemsize
        windows = np.ndarray(
            (mapped.size - max_n + 1, max_n), mapped.dtype, mapped, 0, (step, step)
        )
        # One row per position, one key per n: an n-gram that crosses the separator (into
        # the next word or past the end) has its code and is in no term.
        columns = _find(windows @ self._weights, self._terms)
        hit = columns >= 0
        packed = columns[hit].astype(np.intc).tobytes()
        # Each word's hits end with its separator's row.
        sizes = np.fromiter(map(len, words), dtype=np.intp, count=len(words))
        sizes += 3
        ends = hit.sum(axis=1).cumsum()[sizes.cumsum() - 1]
        bounds = [0, *(ends * np.dtype(np.intc).itemsize).tolist()]
        return [packed[start:end] for start, end in pairwise(bounds)]


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` (lone surrogates included, as JSON can carry them)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def build_predictor(loaded: LoadedModel) -> Predictor:
    """The fastest predictor that gives the model's own probabilities.

    Tries :class:`LinearTextPredictor`, then :class:`TextPipelinePredictor`; each is used
    only if it reproduces the DataFrame path on :data:`PROBE_TEXTS` (an unusual vectorizer
    or custom step that behaves differently is caught here and logged). Anything else gets
    :class:`FramePredictor`.
    """
    frame = FramePredictor(loaded)
    columns = list(loaded.input_columns)
    if not columns or any(kinds != (str,) for kinds in column_types(loaded)):
        return frame  # the lean paths are for text models
    probe = [list(PROBE_TEXTS) for _ in columns]
    try:
        expected = frame.predict_proba(probe)
    except Exception:  # the model cannot score strings: nothing to compare against
        return frame
    model = getattr(loaded, "model", None)
    estimator = getattr(model, "estimator", model)  # a Model wraps the fitted pipeline
    for candidate in (LinearTextPredictor, TextPipelinePredictor):
        lean = candidate.from_model(estimator, columns)
        if lean is not None and _same_output(lean, probe, expected, loaded):
            return lean
    return frame


def _same_output(
    lean: Predictor, probe: Columns, expected: np.ndarray, loaded: LoadedModel
) -> bool:
    try:
        got = lean.predict_proba(probe)
    except Exception:
        log.warning(
            "%s inference failed its self-check on %s", lean.kind, loaded.info.ref, exc_info=True
        )
        return False
    if got.shape == expected.shape and np.allclose(got, expected, rtol=0, atol=1e-12):
        return True
    log.warning("%s inference differs from the model on %s; not used", lean.kind, loaded.info.ref)
    return False


# Why no ONNX (skl2onnx 1.20 + onnxruntime 1.32, one thread, measured on the 2-core machine):
# - the reference sentiment model does not convert at all: its vectorizers use a Python
#   preprocessor (normalize_tweet), which skl2onnx rejects ("Custom preprocessor cannot be
#   converted into ONNX");
# - a plain word TF-IDF + LogisticRegression converts (with the C.UTF-8 locale option) but is
#   not faithful: probabilities differ from scikit-learn by up to 0.096 on 500 tweets
#   (ONNX tokenizes differently);
# - and it is slower where serving spends its time: 89 vs 261 us/row at batch size 1, but
#   203 vs 12 us/row at 16 and 254 vs 32 us/row at 64 against LinearTextPredictor (measured
#   before it counted n-grams batch-wide in numpy, which made it faster still).
