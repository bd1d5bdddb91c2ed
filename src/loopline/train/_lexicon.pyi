"""Compiled scoring of LexiconScores (see _lexicon.c and loopline.train.text)."""

from collections.abc import Callable
from typing import Any

from typing_extensions import Buffer

def score_texts(
    texts: list[Any],
    cache: dict[str, Any],
    analyse: Callable[[str], Any],
    expand: Callable[[str], str],
    out: Buffer,
) -> int: ...
