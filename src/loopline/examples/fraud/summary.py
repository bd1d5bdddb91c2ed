"""The fraud demo's closing tables (``loopline demo fraud`` without ``--json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["print_tables"]

METRIC_NAMES = {"average_precision": "AP", "roc_auc": "AUC", "cp_at_100": "CP@100"}


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items())) or "none"


def _handbook(metrics: dict[str, float]) -> str:
    return f"AUC {_f(metrics['auc'])} · AP {_f(metrics['ap'])} · CP@100 {_f(metrics['cp100'])}"


def print_tables(summary: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Loopline fraud demo", show_header=False)
    table.add_column("stage", style="bold")
    table.add_column("what happened")
    d = summary["data"]
    table.add_row(
        "data",
        f"{d['region']}: April-May {d['history']['transactions']:,} transactions "
        f"({d['history']['frauds']} frauds), June {d['june']['transactions']:,} "
        f"({d['june']['frauds']} frauds); {d['source']}",
    )
    for name, m in summary["models"].items():
        test = m["test"]
        table.add_row(
            name,
            f"version {m['version']} trained on April-May ({m['dataset_version']}, "
            f"run {m['run_id']}) · test AUC {_f(test['roc_auc'])} AP "
            f"{_f(test['average_precision'])} · gate "
            + ("passed: champion" if m["gate"]["passed"] else "FAILED"),
        )
    s = summary["stream"]
    table.add_row(
        "decision service",
        f"{s['decided']:,} of {s['transactions']:,} June transactions decided once each over "
        f"{s['days']} days ({_counts(s['actions'])}); duplicates {s['duplicates']}, dead "
        f"letters {s['dead_lettered']}; fallbacks: {_counts(s['fallbacks'])}",
    )
    table.add_row(
        "heavy re-score",
        f"{s['rescored']:,} batch scores (new champions re-score the last 7 days); "
        f"{s['newly_suspicious']} newly suspicious sent to review; {s['heavy_logged']:,} "
        "logged as fraud-heavy's predictions",
    )
    table.add_row(
        "analyst",
        f"top {s['analyst_budget']} a day by expected loss: {s['reviewed']} reviewed, "
        f"{s['reviewed_fraud']} of them fraud; {s['review_backlog']} left in the queue",
    )
    table.add_row(
        "delayed labels",
        f"{s['delayed_labels']:,} true labels, each {s['label_delay_days']} days after its "
        "transaction (feedback + late labels for the online store)",
    )
    for event in summary["events"]:
        table.add_row(f"{event['day']}", _event_text(event))
    moves = summary["alias_history"]["fraud-heavy"]
    table.add_row(
        "fraud-heavy champion",
        " -> ".join(f"v{m['version']} ({m['actor']})" for m in moves)
        + f"; now v{summary['champions']['fraud-heavy']}",
    )
    q = summary["june_quality"]
    table.add_row(
        "June, all labels in",
        f"fast {_handbook(q['fast'])}\ndecision (max of fast and heavy) "
        f"{_handbook(q['decision'])}\n(CP@100 of a perfect score: {_f(q['ceiling']['cp100'])}: "
        "a tenth of the customers has few frauds a day)",
    )
    for name, mon in summary["monitoring"].items():
        drift = mon["drift"]
        table.add_row(
            f"monitor {name}",
            f"{mon['predictions']:,} predictions, {mon['labelled']:,} labelled; inputs drifted "
            f"over June: {', '.join(drift['drifted_features'] or []) or 'none'}\n"
            f"{mon['diagnosis']}\n{mon['html']}",
        )
    table.add_row("took", f"{summary['duration_s']} s")
    table.add_row("MLflow", str(summary["mlflow"]))
    table.add_row("metadata", str(summary["metadata"]))
    console.print(table)
    console.print(_weeks_table(summary))
    console.print(_versions_table(summary))
    fairness = summary["monitoring"]["fraud-fast"].get("fairness")
    if fairness:
        console.print(_fairness_table(summary))
    console.print(
        "next: loopline models history fraud-heavy · loopline monitor report fraud-heavy "
        "--window 7D --metric average_precision · loopline lineage fraud-heavy",
        style="dim",
    )


def _event_text(event: dict[str, Any]) -> str:
    kind = event["event"]
    if kind == "retrain":
        sources = ", ".join(f"{k} {n:,}" for k, n in event["label_sources"].items())
        gate = "; ".join(event["gate"]["reasons"])
        return (
            f"retrain fraud-heavy on {event['rows']:,} labelled rows ({sources}) -> "
            f"version {event['version']}, gate {'passed' if event['gate']['passed'] else 'FAILED'}"
            f": {gate}"
        )
    if kind == "bad_release":
        return f"bad release: fraud-heavy v{event['version']} promoted by hand ({event['reason']})"
    if kind == "auto_rollback":
        return (
            f"watcher rolled back v{event['rolled_back_from']} -> v{event['champion']}: "
            + (event["reason"])
        )
    return f"{kind}: {event}"


def _weeks_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="Per week (from Thursday), on the labels that arrived")
    for column in ("model", "week", "n", "labelled", "frauds", *METRIC_NAMES.values(), "drift"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, mon in summary["monitoring"].items():
        for week in mon["weeks"]:
            table.add_row(
                model.removeprefix("fraud-"),
                week["start"][5:],
                f"{week['n_predictions']:,}",
                f"{week['n_labeled']:,}",
                str(week["n_label_positive"] or 0),
                *(_f(week.get(m)) for m in METRIC_NAMES),
                "-" if week["drift_share"] is None else f"{week['drift_share']:.0%}",
            )
    return table


def _versions_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="fraud-heavy by version, on the traffic each scored first")
    for column in ("version", "predictions", "labelled", "frauds", *METRIC_NAMES.values()):
        table.add_column(column, justify="right")
    for version, row in sorted(summary["monitoring"]["fraud-heavy"]["by_version"].items()):
        table.add_row(
            version,
            f"{row['n_predictions']:,}",
            f"{row['n_labeled']:,}",
            str(row["n_label_positive"] or 0),
            *(_f(row.get(m)) for m in METRIC_NAMES),
        )
    return table


def _fairness_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    mon = summary["monitoring"]["fraud-fast"]
    table = Table(
        title="fraud-fast by amount band, June (equalized odds difference "
        f"{_f(mon['equalized_odds_difference'])})"
    )
    for column in ("TX_AMOUNT", "transactions", "labelled", "flagged", "TPR", "FPR"):
        table.add_column(column, justify="right")
    for g in mon["fairness"]:
        table.add_row(
            str(g["group"]),
            f"{g['count']:,}",
            f"{g['n_labeled']:,}",
            _f(g["selection_rate"], 4),
            _f(g["tpr"]),
            _f(g["fpr"], 4),
        )
    return table
