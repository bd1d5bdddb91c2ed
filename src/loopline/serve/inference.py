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
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import cycle, islice, repeat
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from loopline.registry.models import LoadedModel

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
    batch. This path gets each document's vocabulary indices from the fitted vectorizer's own
    tokenization (``char_wb`` n-grams cached per word; decoding and preprocessing done once
    per text for vectorizers that share them), then counts and weights the whole batch at
    once: one ``np.unique`` over ``row * n_features + column`` keys gives the same sorted
    CSR entries as sklearn, and count, sublinear tf, idf, row norm and ``X @ coef.T +
    intercept`` follow in sklearn's order and dtypes, so the probabilities are bit-for-bit
    those of the pipeline. :func:`build_predictor` still checks that before using it.
    """

    kind = "linear-text"

    def __init__(self, vectorizers: list[_Vectorizer], classifier: Any) -> None:
        self.vectorizers = vectorizers
        self._blocks: list[_TfidfBlock | _DenseBlock] = []
        offset = 0
        for vectorizer in vectorizers:
            block: _TfidfBlock | _DenseBlock
            if _is_dense_scorer(vectorizer.transformer):
                block = _DenseBlock(vectorizer, offset)
            else:
                block = _TfidfBlock(vectorizer, offset)
            self._blocks.append(block)
            offset += block.width
        self._n_features = offset
        self._coef_t = classifier.coef_.T
        self._intercept = classifier.intercept_
        self._binary = len(classifier.classes_) <= 2

    @classmethod
    def from_model(cls, model: Any, input_columns: Sequence[str]) -> LinearTextPredictor | None:
        """Recognise ``Pipeline[ColumnTransformer(TF-IDF/count vectorizers, dense text
        scorers), LogisticRegression]``.

        Returns None for any other shape.
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
        return cls(lean.vectorizers, lean.final)

    def is_quick(self, columns: Columns) -> bool:
        """Up to :data:`QUICK_TEXT_CHARS` characters of text: ~2.5 ms on the 2-core machine
        for word + char TF-IDF, ~4 ms with the sentiment default's negation marking and
        lexicon scores (~110 tweets, measured under load)."""
        return sum(len(text) for column in columns for text in column) <= QUICK_TEXT_CHARS

    def predict_proba(self, columns: Columns) -> np.ndarray:
        """Vectorize, stack, and apply the linear model (see the class docstring)."""
        from scipy import sparse
        from scipy.special import expit
        from sklearn.utils.extmath import softmax

        rows = len(columns[0])
        prepared: dict[tuple[Any, ...], list[str]] = {}
        entries = []
        for block in self._blocks:
            texts = prepared.get(block.prepare_key)
            if texts is None:
                prepare = block.prepare
                texts = prepared[block.prepare_key] = [prepare(t) for t in columns[block.column]]
            entries.append(block.entries(texts, self._n_features))
        keys, values = entries[0]
        if len(entries) > 1:
            keys = np.concatenate([k for k, _ in entries])
            values = np.concatenate([v for _, v in entries])
            # Each block's keys are sorted and the blocks' column ranges follow each other,
            # so a stable sort by key only interleaves the rows.
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], values[order]
        row_of, column = np.divmod(keys, self._n_features)
        indptr = np.zeros(rows + 1, dtype=np.int32)
        np.cumsum(np.bincount(row_of, minlength=rows), out=indptr[1:])
        features = sparse.csr_array(
            (values, column.astype(np.int32), indptr), shape=(rows, self._n_features)
        )
        scores = features @ self._coef_t + self._intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        if not self._binary:
            return np.asarray(softmax(scores, copy=False))
        proba = expit(scores, out=scores)
        if proba.ndim == 1:
            return np.stack([1 - proba, proba], axis=1)
        # One-vs-rest with more columns than classes cannot happen for a binary model.
        raise AssertionError("unexpected score shape for a binary model")


class _TfidfBlock:
    """One fitted vectorizer's columns of the stacked feature matrix.

    ``prepare`` decodes and preprocesses a text; vectorizers with the same ``prepare_key``
    (input column, decoding and preprocessing settings) share its result. ``indices`` gives
    the vocabulary indices of a prepared text's features, with repeats, as packed C ints
    (-1 for a feature not in the vocabulary): joining bytes and reading them with
    ``np.frombuffer`` costs far less than converting a Python int per feature.
    """

    def __init__(self, vectorizer: _Vectorizer, offset: int) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.column = vectorizer.column
        self.offset = offset
        transformer = vectorizer.transformer
        self.vectorizer = transformer
        self.width = len(transformer.vocabulary_)
        self.tfidf = isinstance(transformer, TfidfVectorizer)
        self.prepare_key: tuple[Any, ...]
        self.prepare: Callable[[str], str]
        self.indices: Callable[[str], bytes]
        analyzer = transformer.analyzer
        if analyzer == "word" or (
            analyzer == "char_wb" and callable(getattr(transformer, "_char_wb_ngrams", None))
        ):
            decode = transformer.decode
            preprocess = transformer.build_preprocessor()
            self.prepare = lambda doc: preprocess(decode(doc))
            # What the decoder and the default preprocessor read; callables are compared by
            # identity (a custom preprocessor is one function object once both vectorizers
            # are unpickled).
            self.prepare_key = (
                self.column,
                transformer.input,
                transformer.encoding,
                transformer.decode_error,
                transformer.lowercase,
                _identity(transformer.strip_accents),
                _identity(transformer.preprocessor),
            )
            words = _WordNgrams if analyzer == "word" else _WordCachedCharNgrams
            self.indices = words(transformer)
        else:  # "char" or a callable analyzer: its own analyzer does everything
            analyze = transformer.build_analyzer()
            get = transformer.vocabulary_.get
            self.prepare = str
            self.prepare_key = (self.column, "as is")
            self.indices = lambda text: array("i", map(get, analyze(text), repeat(-1))).tobytes()

    def entries(self, texts: list[str], n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """The block's non-zero entries for ``texts``: sorted ``row * n_features + column``
        keys (``column`` counted in the stacked matrix) and their values, computed as
        ``vectorizer.transform`` does (same steps, order and dtype)."""
        vectorizer = self.vectorizer
        found = [self.indices(text) for text in texts]
        lengths = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
        flat = np.frombuffer(b"".join(found), dtype=np.intc)
        starts = np.arange(len(found), dtype=np.int64) * n_features + self.offset
        keys = np.repeat(starts, lengths // flat.itemsize) + flat
        keys, counts = np.unique(keys[flat >= 0], return_counts=True)
        values = counts.astype(vectorizer.dtype)
        if vectorizer.binary:
            values.fill(1)
        if not self.tfidf or not keys.size:
            return keys, values
        row_of, column = np.divmod(keys, n_features)
        if vectorizer.sublinear_tf:
            np.log(values, values)
            values += 1.0
        if vectorizer.use_idf:
            values *= vectorizer.idf_[column - self.offset]
        if vectorizer.norm is not None:
            # sklearn's inplace_csr_row_normalize_l1/l2: sums in double, in index order.
            terms = np.abs(values) if vectorizer.norm == "l1" else values * values
            norms = np.bincount(row_of, weights=terms, minlength=len(texts))
            if vectorizer.norm == "l2":
                np.sqrt(norms, out=norms)
            norms[norms == 0.0] = 1.0  # rows without features stay as they are
            values = (values / norms[row_of]).astype(vectorizer.dtype, copy=False)
        return keys, values


class _DenseBlock:
    """A dense text scorer's columns of the stacked feature matrix (see the module docstring).

    Its ``score_texts`` gives the same array (same values and dtype) ``transform`` gives the
    ColumnTransformer, whose sparse stacking keeps the non-zero entries row by row; this
    returns those entries as keys and values, like :meth:`_TfidfBlock.entries`.
    """

    def __init__(self, vectorizer: _Vectorizer, offset: int) -> None:
        self.column = vectorizer.column
        self.offset = offset
        self.scorer = vectorizer.transformer
        self.width = len(self.scorer.get_feature_names_out())
        self.prepare_key: tuple[Any, ...] = (self.column, "as is")
        self.prepare: Callable[[str], str] = str

    def entries(self, texts: list[str], n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted ``row * n_features + column`` keys of the non-zero scores, and the scores."""
        dense = np.asarray(self.scorer.score_texts(texts))
        if dense.shape != (len(texts), self.width):
            raise ValueError(f"scorer gave shape {dense.shape} for {len(texts)} texts")
        rows, columns = np.nonzero(dense)  # row-major: already in key order
        keys = rows.astype(np.int64) * n_features + (columns + self.offset)
        return keys, dense[rows, columns]


def _is_dense_scorer(transformer: Any) -> bool:
    """A fitted transformer of one text column whose ``transform`` is ``score_texts``."""
    return callable(getattr(transformer, "score_texts", None)) and callable(
        getattr(transformer, "get_feature_names_out", None)
    )


def _identity(setting: Any) -> Any:
    """A hashable stand-in for a vectorizer setting: callables by identity."""
    return id(setting) if callable(setting) else setting


class _WordNgrams:
    """Vocabulary indices of a ``word`` vectorizer's n-grams of a preprocessed text."""

    def __init__(self, vectorizer: Any) -> None:
        self._tokenize = vectorizer.build_tokenizer()
        self._stop_words = vectorizer.get_stop_words()
        self._min_n, self._max_n = vectorizer.ngram_range
        self._get = vectorizer.vocabulary_.get

    def __call__(self, text: str) -> bytes:
        tokens = self._tokenize(text)
        if self._stop_words is not None:
            tokens = [t for t in tokens if t not in self._stop_words]
        found = array("i")
        # The same n-grams as sklearn's _word_ngrams, in the same order; -1 for those not
        # in the vocabulary (dropped in numpy, cheaper than testing each one here).
        for n in range(self._min_n, min(self._max_n, len(tokens)) + 1):
            # The shifted slices differ in length; zip stops at the last complete n-gram.
            shifted = (tokens[i:] for i in range(n))
            grams = tokens if n == 1 else map(" ".join, zip(*shifted, strict=False))
            found.extend(map(self._get, grams, repeat(-1)))
        return found.tobytes()


class _WordCachedCharNgrams:
    """Vocabulary indices of a ``char_wb`` vectorizer's n-grams, cached per word.

    ``char_wb`` n-grams never cross a word boundary, so a document's features are the
    concatenation of its words' features: computing each distinct word once (words repeat
    heavily across texts) gives exactly the same counts as the analyzer, far cheaper. The
    cache holds at most ``max_words`` words, so memory stays bounded.
    """

    def __init__(self, vectorizer: Any, max_words: int = 200_000) -> None:
        self._word_ngrams = vectorizer._char_wb_ngrams
        self._get = vectorizer.vocabulary_.get
        self._cache: dict[str, bytes] = {}
        self._max_words = max_words

    def __call__(self, text: str) -> bytes:
        cache = self._cache
        found = []
        # sklearn first collapses runs of white space, which split() makes moot.
        for word in text.split():
            indices = cache.get(word)
            if indices is None:
                indices = array("i", map(self._get, self._word_ngrams(word), repeat(-1))).tobytes()
                if len(cache) < self._max_words:
                    cache[word] = indices
            found.append(indices)
        return b"".join(found)


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
