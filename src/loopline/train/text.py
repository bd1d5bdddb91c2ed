"""TF-IDF + logistic-regression text classifier (the sentiment reference model).

The model is a scikit-learn :class:`~sklearn.pipeline.Pipeline` whose first step is a
``ColumnTransformer`` selecting the ``text`` column. That shape matters: MLflow's pyfunc
flavour hands models a one-column DataFrame, and a bare ``TfidfVectorizer`` would iterate
over the column *names* instead of the rows and silently return one prediction for the
whole frame. Train and predict on a DataFrame with a ``text`` column.

scikit-learn is imported inside the functions so that ``import loopline.train.text`` stays
cheap (CLI start-up, cache hits).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from loopline.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

TEXT_COLUMN = "text"
LABEL_COLUMN = "label"

_URL_RE = re.compile(r"(?:https?://|www\.)\S+")
_MENTION_RE = re.compile(r"@\w+")
# Three or more of the same character ("soooo") carry emphasis but explode the vocabulary;
# keeping two keeps "good" and "cool" intact and maps all long runs onto one spelling.
_REPEAT_RE = re.compile(r"(.)\1{2,}")
# U+FFFD and its mis-decoded UTF-8 form "ï¿½" mark characters lost in an earlier encoding
# step. In Sentiment140 they occur only in the negative half (a collection artefact), so
# left in they become a spurious "negative" feature.
_LOST_CHAR_RE = re.compile("\ufffd|\u00ef\u00bf\u00bd")


def normalize_tweet(text: str) -> str:
    """Lower-case a tweet and replace URLs/@mentions by placeholder tokens.

    Used as the vectorizers' ``preprocessor``. It lives at module level (not a lambda) so
    fitted models pickle and load in another process. URLs and user names are almost never
    repeated between training and production data, so one token each generalises better.
    """
    text = html.unescape(text)
    # Each substitution runs only when its pattern can match: the model's serving time is
    # mostly preprocessing, and most tweets have no lost characters, URLs or mentions.
    if "\ufffd" in text or "\u00ef" in text:
        text = _LOST_CHAR_RE.sub("", text)
    text = text.lower()
    if "http" in text or "www." in text:
        text = _URL_RE.sub(" httpurl ", text)
    if "@" in text:
        text = _MENTION_RE.sub(" @user ", text)
    return _REPEAT_RE.sub(r"\1\1", text)


@dataclass(frozen=True)
class TextClassifierParams:
    """Hyper-parameters of :func:`build_text_classifier`.

    Defaults were chosen by training on the Sentiment140 100k sample and scoring VADER's
    4,092 human-rated (non-neutral) tweets, a different source, so that topics leaking from
    the sample's collection months do not flatter the score. Measured on 2 cores: accuracy
    0.83, fit ~20 s (TF-IDF ~14 s, saga ~6 s). C between 0.5 and 2 scores the same within
    0.002; C=4 loses ~0.005 and fits slower. saga fits 2x faster than liblinear here at the
    same accuracy, and handles multiclass labels as one multinomial model.
    """

    word_ngram_range: tuple[int, int] = (1, 2)
    char_ngram_range: tuple[int, int] = (2, 5)
    max_features_word: int | None = 200_000
    max_features_char: int | None = 300_000
    min_df: int | float = 2
    sublinear_tf: bool = True
    C: float = 1.0
    max_iter: int = 1000
    class_weight: dict[str, float] | Literal["balanced"] | None = None
    solver: Literal["liblinear", "saga", "lbfgs"] = "saga"
    normalize: bool = True
    seed: int = 0

    def build(self) -> Pipeline:
        """The unfitted classifier these parameters describe (see :func:`build_text_classifier`).

        Passing the parameters rather than the built pipeline to the ``train`` step keeps a
        fully cached run from importing scikit-learn at all.
        """
        return build_text_classifier(self)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a flat, JSON-able dict (for run tracking)."""
        return {
            "word_ngram_range": list(self.word_ngram_range),
            "char_ngram_range": list(self.char_ngram_range),
            "max_features_word": self.max_features_word,
            "max_features_char": self.max_features_char,
            "min_df": self.min_df,
            "sublinear_tf": self.sublinear_tf,
            "C": self.C,
            "max_iter": self.max_iter,
            "class_weight": self.class_weight,
            "solver": self.solver,
            "normalize": self.normalize,
            "seed": self.seed,
        }


def build_text_classifier(params: TextClassifierParams | None = None) -> Pipeline:
    """Build an unfitted ``ColumnTransformer(word + char TF-IDF) -> LogisticRegression``."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    p = params or TextClassifierParams()
    # With our own preprocessor, sklearn skips its built-in lower-casing, so normalize_tweet
    # lower-cases itself; without it we keep sklearn's default lower-casing.
    preprocessor = normalize_tweet if p.normalize else None
    common: dict[str, Any] = {
        "min_df": p.min_df,
        "sublinear_tf": p.sublinear_tf,
        "preprocessor": preprocessor,
        # float32 halves the memory of the TF-IDF matrices; saga works on it without a copy.
        "dtype": np.float32,
    }
    word = TfidfVectorizer(
        analyzer="word",
        ngram_range=p.word_ngram_range,
        max_features=p.max_features_word,
        # Unlike sklearn's default (2+ word characters) this keeps one-letter words ("i",
        # "u") and apostrophes, so "can't"/"don't" stay one token instead of "can"+"t".
        token_pattern=r"(?u)\b\w[\w']*\b",
        **common,
    )
    char = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=p.char_ngram_range,
        max_features=p.max_features_char,
        **common,
    )
    features = ColumnTransformer(
        [("word", word, TEXT_COLUMN), ("char", char, TEXT_COLUMN)],
        sparse_threshold=1.0,  # always keep the stacked matrix sparse
    )
    classifier = LogisticRegression(
        C=p.C,
        solver=p.solver,
        max_iter=p.max_iter,
        class_weight=p.class_weight,
        random_state=p.seed,
    )
    return Pipeline([("features", features), ("classifier", classifier)])


def train_text_classifier(
    train_df: pd.DataFrame,
    params: TextClassifierParams | None = None,
    sample_weight: np.ndarray | pd.Series | None = None,
) -> Pipeline:
    """Fit a text classifier on ``train_df`` (columns ``text`` and string ``label``).

    Raises :class:`~loopline.errors.DataError` when columns are missing, the frame is empty
    or only one label is present.
    """
    _check_training_frame(train_df)
    model = build_text_classifier(params)
    frame = train_df[[TEXT_COLUMN]].astype({TEXT_COLUMN: str})
    labels = train_df[LABEL_COLUMN].astype(str).to_numpy()
    fit_kwargs: dict[str, Any] = {}
    if sample_weight is not None:
        if len(sample_weight) != len(train_df):
            raise DataError(
                f"sample_weight has {len(sample_weight)} entries but the training frame has "
                f"{len(train_df)} rows",
                hint="pass one weight per training row (or none)",
            )
        fit_kwargs["classifier__sample_weight"] = sample_weight
    model.fit(frame, labels, **fit_kwargs)
    return model


def _check_training_frame(train_df: pd.DataFrame) -> None:
    missing = [c for c in (TEXT_COLUMN, LABEL_COLUMN) if c not in train_df.columns]
    if missing:
        raise DataError(
            f"training data needs columns 'text' and 'label'; missing {missing}, "
            f"found {list(train_df.columns)}",
            hint="rename your text and label columns to 'text' and 'label'",
        )
    if len(train_df) == 0:
        raise DataError("training data is empty", hint="check the dataset path and filters")
    n_labels = train_df[LABEL_COLUMN].nunique(dropna=True)
    if n_labels < 2:
        raise DataError(
            f"training data needs at least 2 distinct labels; found {n_labels}",
            hint="check that the label column was filled for every class",
        )
    if train_df[LABEL_COLUMN].isna().any():
        raise DataError(
            f"{int(train_df[LABEL_COLUMN].isna().sum())} training rows have no label",
            hint="drop unlabeled rows (or label them) before training",
        )
