"""``loopline demo sentiment``: the whole sentiment system, end to end, offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.config import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from loopline.core.runner import RunEvent

DRIFTED_STREAM_ROWS = 400
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
    """Write the generated (synthetic, clearly not real) training and held-out sets.

    The held-out set comes from the same generator with another seed: a second test set,
    not a gold set (a gold set is labelled by people and drawn from elsewhere).
    """
    from loopline.examples.sentiment.synthetic import generate_tweets

    folder = settings.home_dir / "demo"
    train_path = folder / "generated_tweets.csv"
    held_out_path = folder / "generated_held_out.csv"
    _write_if_changed(train_path, generate_tweets(n=4000, seed=0).to_csv(index=False))
    _write_if_changed(held_out_path, generate_tweets(n=600, seed=1).to_csv(index=False))
    return train_path, held_out_path


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
    from loopline.data.validate import validate_text_dataset
    from loopline.templates.sentiment import LABELS, sentiment

    generated = data is None
    held_out = gold
    if data is None:
        data, generated_held_out = generated_data(settings)
        held_out = gold or generated_held_out
    result = sentiment.run(
        settings, on_event=on_event, source=str(data), gold=str(held_out) if held_out else None
    )
    _, report = validate_text_dataset(result.load("read_text"), labels=LABELS)
    registered = result.load("register")
    decision = result.load("gate")
    second = "gold" if gold else "held_out"
    summary: dict[str, Any] = {
        "run_id": result.run_id,
        "cache_hits": f"{result.cache_hits}/{len(result.steps)}",
        "duration_s": round(result.duration_s, 2),
        "data": {
            "source": str(data),
            "generated": generated,
            "dataset_version": registered.dataset_version,
            "rows": report["rows"],
        },
        "validation": {
            "passed": report["passed"],
            "warnings": report.get("warnings", []),
            "label_counts": report.get("label_counts", {}),
        },
        "labeling": _labeling(result.load("label", "report")),
        "audit": result.load("audit"),
        "model": registered.to_dict(),
        "metrics": {
            "test": _headline(result.load("evaluate")),
            second: _headline(result.load("evaluate_2")) if held_out else None,
        },
        "gate": {"passed": decision["passed"], "reasons": decision["reasons"]},
        "artifacts": settings.artifact_root,
        "mlflow": settings.mlflow_tracking_uri,
        "metadata": settings.metadata_url,
    }
    summary.update(
        _serve_monitor_retrain(
            settings,
            registered.name,
            texts or DEMO_TEXTS,
            retrain=lambda: sentiment.run(
                settings,
                on_event=on_event,
                source=str(data),
                gold=str(held_out) if held_out else None,
            ),
        )
    )
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


def _serve_monitor_retrain(
    settings: Settings, model_name: str, texts: list[str], retrain: Callable[[], Any]
) -> dict[str, Any]:
    """Serve the champion (following its alias), send test predictions, then a drifted
    stream with late-arriving labels; diagnose, retrain through the gate, and show the
    server following the new champion."""
    from loopline.serve import predict_remote, start_in_thread
    from loopline.serve.server import ServeConfig, build_app

    config = ServeConfig(
        model=f"{model_name}@champion",
        project_root=str(settings.project_root),
        options={"poll_interval_s": 0.5},
    )
    server = start_in_thread(build_app(config))
    try:
        answers = predict_remote(server.url, texts)
        serving = {
            "url": server.url,
            "model_version": answers[0]["model_version"],
            "predictions": answers,
            "latency_ms": _latency(answers),
        }
        monitoring = _drifted_stream_and_diagnosis(settings, model_name, server.url)
        result = retrain()
        registered = result.load("register")
        champion = str(registered.champion)
        _wait_for_version(server.url, champion)
        after = predict_remote(server.url, texts)
    finally:
        server.stop()
    monitoring["retrain"] = {
        "run_id": result.run_id,
        "version": registered.version,
        "promoted": registered.promoted,
        "gate": result.load("gate")["reasons"],
        "champion": champion,
        "server_followed_to": after[0]["model_version"],
        "predictions": after,
    }
    return {"serving": serving, "monitoring": monitoring}


def _latency(answers: list[dict[str, Any]]) -> dict[str, float]:
    latencies = sorted(a["latency_ms"] for a in answers)
    return {"min": latencies[0], "max": latencies[-1]}


def _drifted_stream_and_diagnosis(settings: Settings, model_name: str, url: str) -> dict[str, Any]:
    """Tweets from a later period (new slang, sarcasm), labelled later through /feedback."""
    import httpx

    from loopline.core.predlog import read_predictions
    from loopline.examples.sentiment.synthetic import generate_tweets
    from loopline.monitor.diagnose import diagnose
    from loopline.monitor.report import build_report, write_html

    stream = generate_tweets(DRIFTED_STREAM_ROWS, seed=7, period="late")
    with httpx.Client(base_url=url, timeout=10) as client:
        ids = [client.post("/predict", json={"text": t}).json()["request_id"] for t in stream.text]
        for request_id, label in zip(ids, stream["label"], strict=True):
            client.post("/feedback", json={"request_id": request_id, "label": label})
    log_url = str(settings.prediction_log_url)
    _wait(lambda: len(read_predictions(log_url, model_name)) >= len(ids), "the prediction log")
    window = str(DRIFTED_STREAM_ROWS // 2)
    diagnosis = diagnose(model_name, settings, window=window)
    report_path = write_html(
        build_report(model_name, settings, window=window),
        settings.home_dir / "demo" / "monitor-report.html",
    )
    return {
        "drifted_requests": len(ids),
        "diagnosis": {
            "summary": diagnosis.summary,
            "cause": diagnosis.cause,
            "recommendation": diagnosis.recommendation,
            "drifted_features": diagnosis.drifted_features,
            "evidence": diagnosis.evidence[:5],
        },
        "report": str(report_path),
    }


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    import time

    from loopline.errors import LooplineError

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise LooplineError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.1)


def _wait_for_version(url: str, version: str) -> None:
    import httpx

    _wait(
        lambda: str(httpx.get(f"{url}/model", timeout=5).json()["version"]) == version,
        f"the server to serve version {version}",
    )


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
        f"{audit['queued']} new in the review queue "
        f"(`loopline label serve --queue {audit.get('queue', summary['model']['name'])}`)",
    )
    m = summary["model"]
    table.add_row(
        "model",
        f"{m['name']} version {m['version']} · champion is v{m['champion']}"
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
    mon = summary["monitoring"]
    diag = mon["diagnosis"]
    table.add_row(
        "drifted stream",
        f"{mon['drifted_requests']} tweets from a later period, true labels sent to /feedback",
    )
    table.add_row("diagnosis", f"{diag['summary']} → recommend {diag['recommendation']}")
    for line in diag["evidence"]:
        table.add_row("  evidence", line)
    table.add_row("monitor report", mon["report"])
    re = mon["retrain"]
    table.add_row(
        "retrain",
        f"version {re['version']} · "
        + ("promoted" if re["promoted"] else "not promoted")
        + f" · gate: {'; '.join(re['gate'])}",
    )
    table.add_row(
        "server follows",
        f"champion v{re['champion']} now served (answers from v{re['server_followed_to']})",
    )
    table.add_row("run", f"{summary['run_id']} · {summary['cache_hits']} steps from cache")
    table.add_row("artifacts", str(summary["artifacts"]))
    table.add_row("MLflow", str(summary["mlflow"]))
    console.print(table)
    if labeling["lf_summary"]:
        from loopline.label.analysis import summary_table

        console.print(summary_table(labeling["lf_summary"], title="Labeling functions (dev rows)"))
