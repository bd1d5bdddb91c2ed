"""A run's DAG drawn server-side as inline SVG (no script, no network).

Edges come from the lineage the runner records: a step depends on the step of the same
run that wrote one of its input artifacts. Steps are placed in columns by their longest
path from a source, in the order they started within a column.
"""

from __future__ import annotations

from html import escape
from typing import Any

from markupsafe import Markup

__all__ = ["dag_edges", "dag_svg"]

_W, _H = 176, 58  # node box
_GX, _GY = 56, 16  # gaps between columns and rows
_PAD = 8


def dag_edges(steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(producer step run id, consumer step run id)`` for every artifact passed on."""
    producer: dict[str, str] = {}
    for step in steps:
        for digest in step["outputs"].values():
            producer.setdefault(digest, step["id"])
    edges = set()
    for step in steps:
        for digest in step["inputs"].values():
            source = producer.get(digest)
            if source is not None and source != step["id"]:
                edges.add((source, step["id"]))
    return sorted(edges)


def _columns(steps: list[dict[str, Any]], edges: list[tuple[str, str]]) -> dict[str, int]:
    parents: dict[str, list[str]] = {s["id"]: [] for s in steps}
    for source, target in edges:
        parents[target].append(source)
    column: dict[str, int] = {}

    def depth(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node not in column:
            # A cycle cannot come from content hashes; `seen` only guards the recursion.
            ups = [p for p in parents[node] if p not in seen]
            column[node] = 1 + max((depth(p, seen | {node}) for p in ups), default=-1)
        return column[node]

    for step in steps:
        depth(step["id"])
    return column


def dag_svg(steps: list[dict[str, Any]], anchor: str = "step-") -> Markup:
    """The DAG of a run's steps (as :meth:`MetadataStore.get_run` returns them).

    Each box shows the step, its status, its time and whether it came from the cache, and
    links to ``#<anchor><step run id>`` (the step's row in the page's table).
    """
    if not steps:
        return Markup("")
    edges = dag_edges(steps)
    column = _columns(steps, edges)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for step in steps:  # started order within a column
        col = column[step["id"]]
        place[step["id"]] = (col, rows.get(col, 0))
        rows[col] = rows.get(col, 0) + 1
    width = _PAD * 2 + (max(column.values()) + 1) * (_W + _GX) - _GX
    height = _PAD * 2 + max(rows.values()) * (_H + _GY) - _GY

    def origin(node: str) -> tuple[int, int]:
        col, row = place[node]
        return _PAD + col * (_W + _GX), _PAD + row * (_H + _GY)

    parts = [
        f'<svg class="dag" role="img" aria-labelledby="dag-title" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="dag-title">The run\'s {len(steps)} steps and the artifacts passed '
        "between them</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
        'class="arrowhead"/></marker></defs>',
    ]
    for source, target in edges:
        (x1, y1), (x2, y2) = origin(source), origin(target)
        x1, y1, y2 = x1 + _W, y1 + _H // 2, y2 + _H // 2
        mid = (x1 + x2) // 2
        parts.append(
            f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" '
            'marker-end="url(#arrow)"/>'
        )
    for step in steps:
        x, y = origin(step["id"])
        status = str(step["status"])
        seconds = step.get("duration_s")
        timing = f"{seconds:.2f} s" if seconds is not None else "-"
        detail = f"{status} · {timing}" + (" · cache hit" if step.get("cached_from") else "")
        name = str(step["step"])
        shown = name if len(name) <= 22 else name[:21] + "…"
        parts.append(
            f'<a href="#{anchor}{escape(step["id"])}" class="node status-{escape(status)}">'
            f"<title>{escape(name)}: {escape(detail)}</title>"
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 23}" class="node-name">{escape(shown)}</text>'
            f'<text x="{x + 10}" y="{y + 43}" class="node-detail">{escape(detail)}</text></a>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
