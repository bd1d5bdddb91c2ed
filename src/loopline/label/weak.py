"""Sentiment labeling rules for text: emoticons (Sentiment140's distant supervision) and
the VADER lexicon.

Each takes a text and returns ``"positive"``, ``"negative"`` or :data:`ABSTAIN` (None).
:mod:`loopline.label.lf` wraps them as vectorised labeling functions for the label model.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["ABSTAIN", "emoticon_lf", "vader_lf"]

#: What a labeling function returns when it has no opinion.
ABSTAIN = None


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
