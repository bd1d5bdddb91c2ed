"""``loopline demo sentiment``: the whole sentiment system, end to end, offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.config import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from loopline.core.runner import RunEvent

DEMO_TEXTS = [
    "I love this, best day ever :)",
    "this is the worst service, so disappointed",
    "can't wait for the weekend with my friends!!",
    "my phone broke again. great. just great :(",
    "thanks @anna for the lovely birthday gift",
]


def _write_if_changed(path: Path, text: str) -> None:
    """Rewrite generated files only when their content differs (keeps caches warm)."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def generated_data(settings: Settings) -> tuple[Path, Path]:
    """Write the generated (synthetic, clearly not real) train and gold sets; return paths."""
    from loopline.examples.sentiment.synthetic import generate_tweets

    folder = settings.home_dir / "demo"
    train_path = folder / "generated_tweets.csv"
    gold_path = folder / "generated_gold.csv"
    _write_if_changed(train_path, generate_tweets(n=4000, seed=0).to_csv(index=False))
    _write_if_changed(gold_path, generate_tweets(n=600, seed=1).to_csv(index=False))
    return train_path, gold_path


def run_demo(
    settings: Settings,
    *,
    data: Path | None = None,
    gold: Path | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    """Run the pipeline, serve the champion on a real port, send test predictions.

    Returns a JSON-able summary of every stage.
    """
    from loopline.examples.sentiment.pipeline import sentiment

    generated = data is None
    if data is None:
        data, generated_gold = generated_data(settings)
        gold = gold or generated_gold
    result = sentiment.run(
        settings, on_event=on_event, source=str(data), gold=str(gold) if gold else None
    )
    report = result.load("ingest", "report")
    registered = result.load("register")
    decision = result.load("gate")
    summary: dict[str, Any] = {
        "run_id": result.run_id,
        "cache_hits": f"{result.cache_hits}/{len(result.steps)}",
        "duration_s": round(result.duration_s, 2),
        "data": {
            "source": str(data),
            "generated": generated,
            "dataset_version": registered["dataset_version"],
            "rows": report["rows"],
        },
        "validation": {
            "passed": report["passed"],
            "warnings": report.get("warnings", []),
            "label_counts": report.get("label_counts", {}),
        },
        "labeling": _labeling(result.load("label", "report")),
        "audit": result.load("audit"),
        "model": registered,
        "metrics": {
            "test": _headline(result.load("evaluate")),
            "gold": _headline(result.load("evaluate_2")) if gold else None,
        },
        "gate": {"passed": decision["passed"], "reasons": decision["reasons"]},
        "artifacts": settings.artifact_root,
        "mlflow": settings.mlflow_tracking_uri,
        "metadata": settings.metadata_url,
    }
    summary["serving"] = _serve_and_predict(settings, registered["model_name"], texts or DEMO_TEXTS)
    return summary


def _labeling(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "sources": report["label_sources"],
        "lf_summary": report["lf_summary"],
        "lf_problems": report["lf_problems"],
    }


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "accuracy", "macro_f1", "roc_auc")
    return {k: metrics.get(k) for k in keys}


def _serve_and_predict(settings: Settings, model_name: str, texts: list[str]) -> dict[str, Any]:
    from loopline.registry.project import open_registry
    from loopline.serve import predict_remote, start_in_thread

    registry = open_registry(settings)
    champion = registry.resolve(f"{model_name}@champion")
    loaded = registry.load(f"{model_name}/{champion.version}")
    server = start_in_thread(loaded)
    try:
        answers = predict_remote(server.url, texts)
    finally:
        server.stop()
    latencies = sorted(a["latency_ms"] for a in answers)
    return {
        "url": server.url,
        "model_version": champion.version,
        "predictions": answers,
        "latency_ms": {"min": latencies[0], "max": latencies[-1]},
    }


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The demo's closing table of what happened and where everything is."""
    from rich.table import Table

    table = Table(title="Loopline sentiment demo", show_header=False)
    table.add_column("stage", style="bold")
    table.add_column("what happened")
    d = summary["data"]
    origin = "generated (synthetic) tweets" if d["generated"] else d["source"]
    table.add_row("data", f"{d['dataset_version']} · {d['rows']} rows · {origin}")
    v = summary["validation"]
    table.add_row(
        "validation",
        ("passed" if v["passed"] else "FAILED")
        + f" · labels {v['label_counts']}"
        + (f" · {len(v['warnings'])} warning(s)" if v["warnings"] else ""),
    )
    labeling = summary["labeling"]
    table.add_row("labels", ", ".join(f"{k}: {n}" for k, n in labeling["sources"].items()))
    audit = summary["audit"]
    table.add_row(
        "noise audit",
        f"{audit['flagged']} of {audit['audited_rows']} rows look mislabelled; "
        f"{audit['queued']} new in the review queue (`loopline label serve`)",
    )
    m = summary["model"]
    table.add_row(
        "model",
        f"{m['model_name']} version {m['version']} · champion is v{m['champion']}"
        + (" · promoted now" if m["promoted"] else ""),
    )
    for split_name, metrics in summary["metrics"].items():
        if metrics:
            table.add_row(
                f"metrics ({split_name})",
                " · ".join(
                    f"{k} {val:.3f}" if isinstance(val, float) else f"{k} {val}"
                    for k, val in metrics.items()
                    if val is not None
                ),
            )
    g = summary["gate"]
    table.add_row("gate", ("PASSED: " if g["passed"] else "FAILED: ") + "; ".join(g["reasons"]))
    s = summary["serving"]
    table.add_row("served on", f"{s['url']} (version {s['model_version']})")
    for p in s["predictions"]:
        table.add_row(
            "  prediction",
            f"{p['label']:<8} p={max(p['probabilities'].values()):.2f} "
            f"{p['latency_ms']:6.1f} ms  {p['text']}",
        )
    table.add_row("run", f"{summary['run_id']} · {summary['cache_hits']} steps from cache")
    table.add_row("artifacts", str(summary["artifacts"]))
    table.add_row("MLflow", str(summary["mlflow"]))
    console.print(table)
    if labeling["lf_summary"]:
        from loopline.label.analysis import summary_table

        console.print(summary_table(labeling["lf_summary"], title="Labeling functions (dev rows)"))
