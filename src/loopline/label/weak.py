"""Weak labels for text: simple labeling functions and a majority vote.

This is the small labeling seam the sentiment pipeline needs now; a full labeling stage
(label model, LF analysis, review queue) comes later and can replace :func:`apply_labels`.

A labeling function (LF) takes a text and returns a label or :data:`ABSTAIN` (None).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Literal

import pandas as pd

from loopline.errors import DataError

__all__ = [
    "ABSTAIN",
    "LABELING_FUNCTIONS",
    "apply_labels",
    "emoticon_lf",
    "label_source_counts",
    "vader_lf",
]

#: What a labeling function returns when it has no opinion.
ABSTAIN = None

LabelingFunction = Callable[[str], str | None]
Strategy = Literal["existing", "weak", "existing_then_weak"]
_STRATEGIES = ("existing", "weak", "existing_then_weak")

# Sentiment140's distant supervision used ":)", ": )", ":-)", ":D", "=)" and ":(", ": (", ":-(";
# these patterns add the common variants. Letter-ending emoticons (":D", ":P", "xD") must not
# run into a word (":Dave"); ":/" must not be the start of "://". Left out on purpose, for
# their false positives in plain text: "8)" ("page 8)"), "):" ("(see above):"), "D:" ("AND:").
_POSITIVE = re.compile(r"[:=;]-?\s?[)\]}]|[:=;]-?[DP](?![A-Za-z])|\(\s?-?[:=]|\bx-?D\b|<3|\^_*\^")
_NEGATIVE = re.compile(r"[:=;]'?-?\s?[(\[{]|[:=]'?-?\s?[|/\\](?!/)|</3")


def emoticon_lf(text: str) -> str | None:
    """``positive`` for smiles (``:) :-) :D =) ;)``), ``negative`` for frowns (``:( :'(``).

    Abstains when the text has neither, or both.
    """
    positive = _POSITIVE.search(text) is not None
    negative = _NEGATIVE.search(text) is not None
    if positive == negative:
        return ABSTAIN
    return "positive" if positive else "negative"


@lru_cache(maxsize=1)
def _vader() -> Any:
    # Built once and lazily: it reads VADER's lexicon files (~50 ms).
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_lf(text: str, threshold: float = 0.05) -> str | None:
    """VADER's compound score: ``positive`` at or above ``threshold``, ``negative`` at or below
    ``-threshold``, abstain in between (0.05 is VADER's own recommended cut-off)."""
    compound = float(_vader().polarity_scores(text)["compound"])
    if compound >= threshold:
        return "positive"
    if compound <= -threshold:
        return "negative"
    return ABSTAIN


#: Labeling functions by the name :func:`apply_labels` accepts.
LABELING_FUNCTIONS: dict[str, LabelingFunction] = {"emoticon": emoticon_lf, "vader": vader_lf}


def apply_labels(
    df: pd.DataFrame,
    strategy: Strategy = "existing",
    lfs: Sequence[str | LabelingFunction] = ("emoticon", "vader"),
) -> pd.DataFrame:
    """Label a ``text`` frame and record where each label came from in ``label_source``.

    - ``existing``: keep the rows that already have a label (``label_source`` = ``given``).
    - ``weak``: ignore existing labels; each row gets the majority vote of the labeling
      functions that did not abstain (a tie abstains), and ``label_source`` names the
      functions that voted for the winner, e.g. ``emoticon+vader``.
    - ``existing_then_weak``: given labels where present, weak labels for the rest.

    ``lfs`` are names from :data:`LABELING_FUNCTIONS` or callables ``text -> label | None``.
    Rows left without a label are dropped (index reset). Count the sources with
    :func:`label_source_counts`.
    """
    if strategy not in _STRATEGIES:
        raise DataError(
            f"unknown labeling strategy {strategy!r}: expected one of {', '.join(_STRATEGIES)}",
            hint="use 'existing' for labelled data, 'weak' for unlabelled data",
        )
    if "text" not in df.columns:
        raise DataError(
            f"cannot label: expected a 'text' column, found {', '.join(map(str, df.columns))}",
            hint="load the data with text_column=... so the text column is called 'text'",
        )
    out = df.copy()
    given = _given_labels(out, strategy)
    label = given.astype("object")
    source = pd.Series(None, index=out.index, dtype="object")
    source[given.notna()] = "given"
    if strategy != "existing":
        todo = given.isna()
        weak_label, weak_source = _weak_labels(out.loc[todo, "text"], _resolve(lfs))
        label[todo] = weak_label
        source[todo] = weak_source
    out["label"] = pd.array(label, dtype="str")
    out["label_source"] = pd.array(source, dtype="str")
    return out[out["label"].notna()].reset_index(drop=True)


def label_source_counts(df: pd.DataFrame) -> dict[str, int]:
    """How many rows got their label from each source (``given``, ``vader``, ...)."""
    if "label_source" not in df.columns:
        raise DataError(
            "expected a 'label_source' column, found none",
            hint="run apply_labels() on the frame first",
        )
    counts = df["label_source"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def _given_labels(df: pd.DataFrame, strategy: str) -> pd.Series:
    """The existing labels (missing or blank = unlabelled), or none for ``weak``."""
    if strategy == "weak" or "label" not in df.columns:
        if strategy == "existing":
            raise DataError(
                "strategy 'existing' needs a 'label' column, found none",
                hint="use strategy='weak' (or 'existing_then_weak') to label unlabelled data",
            )
        return pd.Series(None, index=df.index, dtype="object")
    labels = df["label"].astype("str").str.strip()
    return labels.where(df["label"].notna() & labels.ne(""))


def _resolve(lfs: Sequence[str | LabelingFunction]) -> list[tuple[str, LabelingFunction]]:
    if isinstance(lfs, str):
        lfs = [lfs]  # a single name is a common slip; treat it as a list of one
    if not lfs:
        raise DataError(
            "no labeling functions given",
            hint=f"pass lfs=[...] with names from {', '.join(LABELING_FUNCTIONS)}",
        )
    resolved = []
    for lf in lfs:
        if callable(lf):
            resolved.append((getattr(lf, "__name__", "lf").removesuffix("_lf"), lf))
        elif lf in LABELING_FUNCTIONS:
            resolved.append((lf, LABELING_FUNCTIONS[lf]))
        else:
            raise DataError(
                f"unknown labeling function {lf!r}: expected one of "
                f"{', '.join(LABELING_FUNCTIONS)} or a callable",
                hint="pass a function text -> label | None to use your own",
            )
    return resolved


def _weak_labels(
    texts: pd.Series, lfs: list[tuple[str, LabelingFunction]]
) -> tuple[list[str | None], list[str | None]]:
    """Majority vote of the LFs per text: (labels, sources); ties and all-abstain give None."""
    unique = pd.unique(texts.fillna("").astype("str"))
    # Vote once per distinct text (VADER costs ~0.1 ms a call, retweets repeat).
    votes = {text: _vote(text, lfs) for text in unique}
    results = [votes[text] for text in texts.fillna("").astype("str")]
    return [r[0] for r in results], [r[1] for r in results]


def _vote(text: str, lfs: list[tuple[str, LabelingFunction]]) -> tuple[str | None, str | None]:
    ballots = [(name, label) for name, fn in lfs if (label := fn(text)) is not ABSTAIN]
    if not ballots:
        return ABSTAIN, None
    ranked = Counter(label for _, label in ballots).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return ABSTAIN, None  # a tie is no evidence either way
    winner = ranked[0][0]
    return winner, "+".join(name for name, label in ballots if label == winner)
