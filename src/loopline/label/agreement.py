"""Inter-annotator agreement: Krippendorff's alpha, Cohen's and Fleiss' kappa, percent agreement.

Everything works from one representation, the *value-count matrix*: one row per item (unit),
one column per distinct value, each cell the number of annotators who gave that value to that
item. Missing ratings simply do not count, which is how Krippendorff's alpha handles them.

Also reads the VADER rater file (``tweets_anonDataRatings.txt``: 20 to 99 raw ratings on the
-4..+4 scale per tweet) into long format, to measure agreement on real human ratings.
"""

from __future__ import annotations

import ast
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopline.errors import DataError

__all__ = [
    "Level",
    "agreement_report",
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "krippendorff_alpha_from_counts",
    "load_vader_ratings",
    "percent_agreement",
    "rating_sign",
    "value_counts_matrix",
]

Level = Literal["nominal", "ordinal", "interval", "ratio"]
_LEVELS = ("nominal", "ordinal", "interval", "ratio")


# -- the value-count matrix -------------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def value_counts_matrix(
    units: Sequence[Hashable] | pd.Series, values: Sequence[Any] | pd.Series
) -> tuple[np.ndarray, list[Any]]:
    """Count, per unit, how often each value was given (long format in, counts out).

    Returns ``(counts, value_order)``: ``counts[u, v]`` is how many ratings unit ``u`` got
    with value ``value_order[v]``; units appear in order of first appearance, values sorted.
    Missing values (None/NaN) are dropped.
    """
    frame = pd.DataFrame({"unit": list(units), "value": list(values)})
    frame = frame.loc[~frame["value"].map(_is_missing).astype(bool)]
    if frame.empty:
        return np.zeros((0, 0)), []
    unit_codes, _ = pd.factorize(frame["unit"])
    value_codes, value_order = pd.factorize(frame["value"], sort=True)
    counts = np.zeros((int(unit_codes.max()) + 1, len(value_order)))
    np.add.at(counts, (unit_codes, value_codes), 1.0)
    return counts, list(value_order)


def _reliability_to_counts(data: Any) -> tuple[np.ndarray, list[Any]]:
    """A raters x units matrix (missing = None/NaN) to a value-count matrix."""
    matrix = np.asarray(data, dtype=object)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D raters x units matrix, found {matrix.ndim} dimension(s)")
    raters, units = matrix.shape
    unit_index = np.tile(np.arange(units), raters)
    return value_counts_matrix(list(unit_index), list(matrix.ravel()))


# -- Krippendorff's alpha ---------------------------------------------------------------------
def _coincidences(counts: np.ndarray) -> np.ndarray:
    """Krippendorff's coincidence matrix o_ck over the units with two or more ratings."""
    per_unit = counts.sum(axis=1)
    pairable = counts[per_unit >= 2]
    weights = 1.0 / (pairable.sum(axis=1) - 1.0)
    # o_ck = sum_u (n_uc * n_uk - [c == k] * n_uc) / (m_u - 1), vectorised over units.
    coincidences = pairable.T @ (pairable * weights[:, None])
    coincidences -= np.diag((pairable * weights[:, None]).sum(axis=0))
    return np.asarray(coincidences)


def _distance(level: str, values: list[Any], marginals: np.ndarray) -> np.ndarray:
    """Squared difference function delta^2(c, k) of Krippendorff (2011) for each level."""
    size = len(values)
    if level == "nominal":
        return 1.0 - np.eye(size)
    if level == "ordinal":
        # Ranks are the sorted value order; the distance counts the pairable values between.
        cumulative = np.concatenate([[0.0], np.cumsum(marginals)])
        c, k = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        low, high = np.minimum(c, k), np.maximum(c, k)
        between = cumulative[high + 1] - cumulative[low]
        return np.asarray((between - (marginals[c] + marginals[k]) / 2.0) ** 2)
    numeric = _as_numbers(values)
    diff = numeric[:, None] - numeric[None, :]
    if level == "interval":
        return np.asarray(diff**2)
    total = numeric[:, None] + numeric[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(total == 0, 0.0, (diff / total) ** 2)
    return np.asarray(ratio)


def _as_numbers(values: list[Any]) -> np.ndarray:
    try:
        return np.array([float(v) for v in values])
    except (TypeError, ValueError):
        raise ValueError(
            f"interval and ratio alpha need numeric values, found {values[:5]!r}"
        ) from None


def krippendorff_alpha_from_counts(
    counts: np.ndarray, values: Sequence[Any], level: Level = "nominal"
) -> float:
    """Krippendorff's alpha from a value-count matrix (see :func:`value_counts_matrix`).

    Units with fewer than two ratings carry no information on agreement and are ignored.
    Returns NaN when alpha is undefined: fewer than two pairable ratings, or a single value
    used throughout (no expected disagreement).
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {', '.join(_LEVELS)}, found {level!r}")
    counts = np.asarray(counts, dtype=float)
    if counts.size == 0:
        return float("nan")
    coincidences = _coincidences(counts)
    marginals = coincidences.sum(axis=1)
    total = marginals.sum()
    if total < 2:
        return float("nan")
    delta = _distance(level, list(values), marginals)
    observed = float((coincidences * delta).sum())
    expected = float((np.outer(marginals, marginals) * delta).sum()) / (total - 1.0)
    if expected == 0:
        return float("nan")
    return 1.0 - observed / expected


def krippendorff_alpha(data: Any, level: Level = "nominal") -> float:
    """Krippendorff's alpha of a raters x units reliability matrix (None/NaN = missing).

    ``level`` picks the metric: ``nominal`` (categories), ``ordinal`` (ranked values),
    ``interval`` (differences matter, e.g. a -4..+4 scale) or ``ratio``.
    """
    counts, values = _reliability_to_counts(data)
    return krippendorff_alpha_from_counts(counts, values, level)


# -- kappas and percent agreement -------------------------------------------------------------
def cohen_kappa(
    rater_a: Sequence[Any],
    rater_b: Sequence[Any],
    weights: Literal["linear", "quadratic"] | None = None,
) -> float:
    """Cohen's kappa of two annotators over the items both rated (pairs with a gap are dropped).

    ``weights`` gives the weighted kappa for ordered labels (as in scikit-learn, the labels'
    sorted order is their scale; numbers sort before strings). NaN when undefined (no pairs,
    or chance agreement is 1, i.e. both annotators used one and the same label throughout).
    The statistic is scikit-learn's ``cohen_kappa_score``.
    """
    if len(rater_a) != len(rater_b):
        raise ValueError(
            f"both annotators need one rating per item: found {len(rater_a)} and {len(rater_b)}"
        )
    pairs = [
        (a, b)
        for a, b in zip(rater_a, rater_b, strict=True)
        if not (_is_missing(a) or _is_missing(b))
    ]
    categories = sorted({v for pair in pairs for v in pair}, key=_sort_key)
    if len(categories) < 2:
        # No pairs, or a single label: chance agreement is 1 and kappa is 0/0. (With two or
        # more labels some expected pair disagrees, so the denominator below is positive.)
        return float("nan")
    from sklearn.metrics import cohen_kappa_score

    # Integer codes in the sorted order: the weights follow it, and mixed label types
    # (numbers and strings) never reach scikit-learn's own label sorting.
    index = {value: i for i, value in enumerate(categories)}
    codes_a = [index[a] for a, _ in pairs]
    codes_b = [index[b] for _, b in pairs]
    return float(
        cohen_kappa_score(codes_a, codes_b, labels=list(range(len(categories))), weights=weights)
    )


def _sort_key(value: Any) -> tuple[int, Any]:
    # Numbers before strings, so mixed label sets still sort without a TypeError.
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of a items x categories count matrix.

    Fleiss defined it for a fixed number of raters per item; items with different numbers
    of raters (two or more) are handled with the usual generalisation: each item's observed
    agreement is its share of agreeing rater pairs, and the category shares pool all ratings.
    That reduces to Fleiss' formula when every item has the same number of raters.
    """
    counts = np.asarray(counts, dtype=float)
    counts = counts[counts.sum(axis=1) >= 2] if counts.size else counts
    if counts.size == 0:
        return float("nan")
    observed = _pairwise_agreement(counts).mean()
    shares = counts.sum(axis=0) / counts.sum()
    chance = float((shares**2).sum())
    if chance == 1.0:
        return float("nan")
    return float((observed - chance) / (1.0 - chance))


def _pairwise_agreement(counts: np.ndarray) -> np.ndarray:
    """Per item: the share of rater pairs that gave the same value."""
    per_item = counts.sum(axis=1)
    return np.asarray((counts * (counts - 1)).sum(axis=1) / (per_item * (per_item - 1)))


def percent_agreement(counts: np.ndarray) -> float:
    """Mean share of agreeing annotator pairs per item (items with two or more ratings)."""
    counts = np.asarray(counts, dtype=float)
    if counts.size == 0:
        return float("nan")
    counts = counts[counts.sum(axis=1) >= 2]
    return float(_pairwise_agreement(counts).mean()) if len(counts) else float("nan")


# -- one report for a long-format frame -------------------------------------------------------
def agreement_report(
    frame: pd.DataFrame,
    unit: str = "item_id",
    annotator: str = "annotator",
    value: str = "label",
    levels: Sequence[Level] = ("nominal",),
) -> dict[str, Any]:
    """Agreement statistics of a long-format frame (one row per rating).

    Returns counts (items, ratings, annotators, items with 2+ ratings), percent agreement,
    Fleiss' kappa, Krippendorff's alpha for each of ``levels`` (``alpha_nominal``, ...), and
    Cohen's kappa when exactly two annotators rated. Undefined statistics are None.
    """
    for column in (unit, annotator, value):
        if column not in frame.columns:
            raise DataError(
                f"expected a {column!r} column for agreement statistics, "
                f"found {list(frame.columns)}"
            )
    frame = frame.loc[~frame[value].map(_is_missing).astype(bool)]
    counts, values = value_counts_matrix(frame[unit], frame[value])
    per_item = counts.sum(axis=1) if counts.size else np.zeros(0)
    report: dict[str, Any] = {
        "items": len(per_item),
        "ratings": len(frame),
        "annotators": int(frame[annotator].nunique()),
        "items_multi_rated": int((per_item >= 2).sum()),
        "percent_agreement": _finite(percent_agreement(counts)),
        "fleiss_kappa": _finite(fleiss_kappa(counts)),
    }
    for level in levels:
        report[f"alpha_{level}"] = _finite(krippendorff_alpha_from_counts(counts, values, level))
    report["cohen_kappa"] = _two_rater_kappa(frame, unit, annotator, value)
    return report


def _two_rater_kappa(frame: pd.DataFrame, unit: str, annotator: str, value: str) -> float | None:
    raters = frame[annotator].unique()
    if len(raters) != 2:
        return None
    wide = frame.pivot_table(index=unit, columns=annotator, values=value, aggfunc="first")
    both = wide.dropna()
    return _finite(cohen_kappa(list(both[raters[0]]), list(both[raters[1]])))


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


# -- the VADER rater data ---------------------------------------------------------------------
def rating_sign(rating: float) -> str:
    """``negative`` / ``neutral`` / ``positive`` for a rating below, at or above zero."""
    if rating < 0:
        return "negative"
    return "positive" if rating > 0 else "neutral"


def load_vader_ratings(path: str | Path) -> pd.DataFrame:
    """Read VADER's ``tweets_anonDataRatings.txt`` into long format.

    The file is tab-separated: tweet id, mean, standard deviation, and a Python-style list
    of the raw ratings (-4..+4). Returns columns ``item_id`` (str), ``annotator`` (the
    rating's position in the list; the file is anonymised, so positions are not the same
    person across tweets) and ``rating`` (int). Malformed lines raise :class:`DataError`
    with the line number.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(
            f"VADER ratings file not found: {file}",
            hint="expected tweets_anonDataRatings.txt from the VADER ICWSM-14 data",
        )
    item_ids: list[str] = []
    positions: list[int] = []
    ratings: list[int] = []
    with file.open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            item_id, raw = _parse_vader_line(line, number, file)
            item_ids.extend([item_id] * len(raw))
            positions.extend(range(len(raw)))
            ratings.extend(raw)
    if not ratings:
        raise DataError(f"{file} holds no ratings", hint="is it the right file?")
    return pd.DataFrame(
        {
            "item_id": pd.array(item_ids, dtype="str"),
            "annotator": np.array(positions, dtype=np.int64),
            "rating": np.array(ratings, dtype=np.int64),
        }
    )


def _parse_vader_line(line: str, number: int, file: Path) -> tuple[str, list[int]]:
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 4:
        raise DataError(
            f"{file}:{number}: expected 4 tab-separated fields "
            f"(id, mean, std, [ratings]), found {len(fields)}"
        )
    try:
        raw = ast.literal_eval(fields[3])
    except (ValueError, SyntaxError):
        raise DataError(
            f"{file}:{number}: the ratings field is not a list literal: {fields[3][:60]!r}"
        ) from None
    if not isinstance(raw, list) or not all(
        isinstance(r, int) and not isinstance(r, bool) and -4 <= r <= 4 for r in raw
    ):
        raise DataError(
            f"{file}:{number}: expected a list of integer ratings -4..4, found {fields[3][:60]!r}"
        )
    return fields[0].strip(), raw
