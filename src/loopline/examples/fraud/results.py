"""The fraud demo's results: the stream's totals, June scored with the handbook's protocol,
and the headline numbers of each model's monitoring report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.examples.fraud.data import World
    from loopline.examples.fraud.simulate import Simulation

__all__ = ["BANDS", "METRICS", "june_quality", "report", "stream_summary"]

METRICS = ["average_precision", "roc_auc", "cp_at_100"]
BANDS = [20.0, 50.0, 100.0, 220.0]


def stream_summary(sim: Simulation) -> dict[str, Any]:
    days = sim.days
    actions: dict[str, int] = {}
    fallbacks: dict[str, int] = {}
    for day in days:
        for k, n in day["actions"].items():
            actions[k] = actions.get(k, 0) + n
        for k, n in day["fallbacks"].items():
            fallbacks[k] = fallbacks.get(k, 0) + n
    total = sum(d["transactions"] for d in days)
    return {
        "days": len(days),
        "transactions": total,
        "decided": sum(d["decided"] for d in days),
        "duplicates": sum(d["duplicates"] for d in days),
        "dead_lettered": sum(d["dead_lettered"] for d in days),
        "actions": actions,
        "fallbacks": fallbacks,
        "rescored": sum(d["rescored"] for d in days),
        "newly_suspicious": sum(d["newly_suspicious"] for d in days),
        "heavy_logged": sum(d["heavy_logged"] for d in days),
        "reviewed": sum(d["reviewed"] for d in days),
        "reviewed_fraud": sum(d["reviewed_fraud"] for d in days),
        "review_backlog": days[-1]["review_backlog"] if days else 0,
        "delayed_labels": sum(d["delayed_labels"] for d in days),
        "seconds": {
            phase: round(sum(d["seconds"].get(phase, 0.0) for d in days), 1)
            for phase in ("decide", "rescore", "analyst", "labels", "watch")
        },
        "analyst_budget": sim.plan.budget,
        "label_delay_days": sim.plan.delay,
        "per_day": days,
    }


def june_quality(store: MetadataStore, world: World) -> dict[str, Any]:
    """The handbook's three metrics over the streamed June once every label is known: the
    fast model's score and the decision's (the larger of it and the customer's latest heavy
    score); ``ceiling`` is what a perfect score reaches (CP@100 is bounded by the few
    frauds a day of one region's customers)."""
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from loopline.core import schema
    from loopline.fraud.metrics import assess

    d = schema.decisions
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(d.c.tx_id, d.c.fast_score, d.c.score)).all()
    scores = pd.DataFrame(rows, columns=["tx_id", "fast", "decision"])
    scores["TRANSACTION_ID"] = pd.to_numeric(scores["tx_id"])
    frame = world.june.merge(scores, on="TRANSACTION_ID", validate="one_to_one")
    out: dict[str, Any] = {"transactions": len(frame), "frauds": int(frame["TX_FRAUD"].sum())}
    for column in ("fast", "decision"):
        values = pd.to_numeric(frame[column], errors="coerce").fillna(0.0).to_numpy()
        out[column] = _rounded(assess(frame, np.asarray(values, dtype=float)))
    out["ceiling"] = _rounded(assess(frame, frame["TX_FRAUD"].to_numpy(dtype=float)))
    return out


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items()}


def report(settings: Settings, model: str, demo_dir: Path, *, fairness: bool) -> dict[str, Any]:
    """The weekly monitoring report (drift, delayed-label AP/AUC/CP@100 per week and per
    version; fairness by amount band), written as HTML; its headline numbers."""
    from loopline.monitor.report import build_report, write_html

    built = build_report(
        model,
        settings,
        window="7D",
        group_column="TX_AMOUNT" if fairness else None,
        metrics=METRICS,
        bands=BANDS if fairness else None,
    )
    path = write_html(built, demo_dir / f"monitor-{model}.html")
    data = built.to_dict()
    perf = data.get("performance") or {}
    drift = {w.get("start"): w for w in data.get("drift_over_time") or []}
    weeks = [
        {**_perf_row(w), "drift_share": drift.get(w.get("start"), {}).get("share_drifted")}
        for w in perf.get("windows") or []
        if w.get("model_version") is None
    ]
    overall = data.get("drift") or {}
    groups = ((data.get("fairness") or {}).get("overall") or {}).get("groups") or []
    groups = sorted(groups, key=lambda g: _band_start(str(g.get("group"))))
    return {
        "html": str(path),
        "predictions": data["n_predictions"],
        "labelled": data["n_labeled"],
        "weeks": weeks,
        "by_version": {str(v): _perf_row(row) for v, row in (perf.get("by_version") or {}).items()},
        "drift": {
            "share_drifted": overall.get("share_drifted"),
            "drifted_features": overall.get("drifted_features"),
        },
        "fairness": [
            {k: g.get(k) for k in ("group", "count", "n_labeled", "selection_rate", "tpr", "fpr")}
            for g in groups
        ]
        or None,
        "equalized_odds_difference": ((data.get("fairness") or {}).get("overall") or {}).get(
            "equalized_odds_difference"
        ),
        "diagnosis": (data.get("diagnosis") or {}).get("summary"),
    }


def _band_start(band: str) -> float:
    """``"< 20"`` -> 0, ``"[20, 50)"`` -> 20, ``">= 220"`` -> 220."""
    import re

    found = re.search(r"[\d.]+", band)
    return 0.0 if band.startswith("<") or found is None else float(found.group())


def _perf_row(window: dict[str, Any]) -> dict[str, Any]:
    keys = ("n_predictions", "n_labeled", "label_coverage", "n_label_positive", *METRICS)
    return {"start": str(window.get("start"))[:10], **{k: window.get(k) for k in keys}}
