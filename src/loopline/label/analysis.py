"""Labeling-function analysis: coverage, overlaps, conflicts, polarity and dev-set accuracy.

::

    summary = lf_summary(result.L, result.lf_names, Y_dev=None, label_set=result.label_set)
    rich.print(summary_table(summary))
    to_json(summary); to_html(summary)

All figures are fractions of the rows of ``L``: *coverage* is where the LF votes, *overlaps*
where it votes and at least one other LF votes too, *conflicts* where another LF votes a
different label. With gold labels ``Y_dev`` (aligned with ``L``; -1 = unknown) each LF also
gets its correct / incorrect vote counts and its empirical accuracy on those rows.
"""

from __future__ import annotations

import html
import json
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from loopline.errors import LooplineError

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["lf_summary", "summary_table", "to_html", "to_json"]

ABSTAIN = -1
_COLUMNS = (
    "lf",
    "polarity",
    "coverage",
    "overlaps",
    "conflicts",
    "correct",
    "incorrect",
    "emp_acc",
)


def lf_summary(
    L: np.ndarray,
    lf_names: Sequence[str] | None = None,
    Y_dev: np.ndarray | Sequence[int] | None = None,
    label_set: Sequence[Hashable] | None = None,
) -> list[dict[str, Any]]:
    """One dict per LF: ``lf, polarity, coverage, overlaps, conflicts`` and, with ``Y_dev``,
    ``correct, incorrect, emp_acc`` (None where the LF never votes on a gold row).

    ``polarity`` lists the labels the LF actually voted (names when ``label_set`` is given,
    class indices otherwise). ``Y_dev`` holds class indices, -1 for rows without gold label.
    """
    L = _check_matrix(L)
    names = list(lf_names) if lf_names is not None else [f"lf_{j}" for j in range(L.shape[1])]
    if len(names) != L.shape[1]:
        raise LooplineError(
            f"lf_names has {len(names)} names but L has {L.shape[1]} columns",
            hint="pass the names in the order the LFs were applied (result.lf_names)",
        )
    n = max(L.shape[0], 1)
    voted = L != ABSTAIN
    votes_per_row = voted.sum(axis=1)
    per_class = _class_counts(L)
    gold = _check_gold(Y_dev, L.shape[0]) if Y_dev is not None else None

    rows = []
    for j, name in enumerate(names):
        col = L[:, j]
        mine = voted[:, j]
        # Votes for the LF's own label among all votes on the row: fewer means a disagreement.
        same = np.take_along_axis(per_class, np.where(mine, col, 0)[:, None].astype(np.intp), 1)[
            :, 0
        ]
        row: dict[str, Any] = {
            "lf": name,
            "polarity": _polarity(col[mine], label_set),
            "coverage": float(mine.sum() / n),
            "overlaps": float((mine & (votes_per_row > 1)).sum() / n),
            "conflicts": float((mine & (votes_per_row > same)).sum() / n),
        }
        if gold is not None:
            known = mine & (gold != ABSTAIN)
            correct = int((col[known] == gold[known]).sum())
            incorrect = int(known.sum()) - correct
            row |= {
                "correct": correct,
                "incorrect": incorrect,
                "emp_acc": correct / (correct + incorrect) if correct + incorrect else None,
            }
        rows.append(row)
    return rows


def _check_matrix(L: np.ndarray) -> np.ndarray:
    L = np.asarray(L)
    if L.ndim != 2 or not np.issubdtype(L.dtype, np.integer):
        raise LooplineError(
            f"expected a 2-d integer label matrix, found shape {L.shape} of {L.dtype}",
            hint="pass apply_lfs(...).L",
        )
    return L


def _check_gold(Y: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    gold = np.asarray(Y)
    if gold.shape != (n,):
        raise LooplineError(
            f"Y_dev must hold one label per row of L ({n}), found shape {gold.shape}",
            hint="apply the LFs to the dev rows and pass their gold labels (-1 = unknown)",
        )
    return gold.astype(np.int64)


def _class_counts(L: np.ndarray) -> np.ndarray:
    """(n, k) count of votes per class on each row."""
    k = int(L.max()) + 1 if L.size and L.max() >= 0 else 1
    counts = np.zeros((L.shape[0], k), dtype=np.int32)
    for c in range(k):
        counts[:, c] = np.count_nonzero(np.equal(L, c), axis=1)
    return counts


def _polarity(votes: np.ndarray, label_set: Sequence[Hashable] | None) -> list[Any]:
    classes = [int(c) for c in np.unique(votes)]
    if label_set is None:
        return classes
    return [label_set[c] if c < len(label_set) else c for c in classes]


def summary_table(summary: Sequence[dict[str, Any]], title: str = "Labeling functions") -> Table:
    """The summary as a :class:`rich.table.Table` for the terminal."""
    from rich.table import Table

    columns = [c for c in _COLUMNS if any(c in row for row in summary)]
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("lf", "polarity") else "right")
    for row in summary:
        table.add_row(*(_cell(column, row.get(column)) for column in columns))
    return table


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "polarity":
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.1%}" if column != "emp_acc" else f"{value:.3f}"
    return str(value)


def to_json(summary: Sequence[dict[str, Any]], indent: int | None = 2) -> str:
    """The summary as a JSON array (label names that are not JSON types become strings)."""
    return json.dumps(list(summary), indent=indent, default=str)


def to_html(summary: Sequence[dict[str, Any]], title: str = "Labeling functions") -> str:
    """A small self-contained HTML page holding the summary table (inline CSS, no scripts)."""
    columns = [c for c in _COLUMNS if any(c in row for row in summary)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c, row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in summary
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5rem}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3rem .6rem}"
        "td{text-align:right}td:first-child,td:nth-child(2){text-align:left}"
        "th{background:#f3f3f3}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<table>\n<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table>\n</body></html>\n"
    )
