"""Monitoring reports: drift, performance, fairness and alerts of one model over time.

:func:`build_report` reads the prediction log and the feedback labels of a model, compares
each window with the model version's reference profile, and returns a JSON-able
:class:`MonitorReport`. :func:`write_html` renders it as ONE self-contained HTML file
(inline CSS and SVG, no script, no network), and :func:`print_summary` prints it in the
terminal. The loading helpers (:func:`load_monitor_data`, :func:`drift_over_windows`) live in
:mod:`loopline.monitor.logdata` and are re-exported here.

One diagnosis, one wording: the report's explanation (what happened and what to do) is the
:class:`~loopline.monitor.diagnose.Diagnosis` of the same data and windows, shown as
``loopline monitor diagnose`` shows it; the report adds measurements, never a second
interpretation.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopline.monitor.diagnose import DiagnoseThresholds, diagnose_data, diagnose_thresholds
from loopline.monitor.logdata import (
    INPUT_PREFIX,
    PROBA_PREFIX,
    MonitorData,
    WindowDrift,
    drift_over_windows,
    drift_score,
    fallback_note,
    fallback_profile,
    load_monitor_data,
    parse_since,
    window_inputs,
    without_labels,
)
from loopline.monitor.performance import (
    BUILTIN_METRICS,
    TS,
    WindowSpec,
    check_metric,
    parse_window,
    served,
    windowed_performance,
)

if TYPE_CHECKING:
    from rich.console import Console

    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.monitor.profile import Profile

__all__ = [
    "INPUT_PREFIX",
    "PROBA_PREFIX",
    "MonitorData",
    "MonitorReport",
    "WindowDrift",
    "build_report",
    "build_report_from_data",
    "drift_over_windows",
    "drift_score",
    "fallback_profile",
    "feature_distributions",
    "load_monitor_data",
    "parse_since",
    "print_summary",
    "read_alerts",
    "render_html",
    "short_labels",
    "svg_bar_chart",
    "svg_heatmap",
    "svg_line_chart",
    "window_inputs",
    "without_labels",
    "write_html",
]
_MAX_CATEGORIES = 12  # bars per categorical distribution plot; the rest is "(other)"
_HIST_BINS = 20


# --- the report ---------------------------------------------------------------------------


@dataclass
class MonitorReport:
    """What happened to one model in production, as plain JSON-able data.

    Sections: ``drift`` (whole period against the reference), ``drift_over_time`` (one entry
    per window), ``distributions`` (reference vs current, for the plots), ``performance``
    (per window and version, with the label coverage), ``concept_drift`` (the diagnosis'
    concept-drift signal), ``fairness`` (``None`` without a group column), ``alerts``,
    ``messages`` (what could not be measured, and why), ``diagnosis`` (what
    ``loopline monitor diagnose`` concludes from the same data and windows: the report's only
    explanation) and ``score_meaning`` (what the per-feature drift ``score`` measures).
    """

    model_name: str
    generated_at: str
    window: dict[str, Any]
    period: dict[str, str | None]
    reference: dict[str, Any]
    versions: list[str]
    n_predictions: int
    n_labeled: int
    unmatched_feedback: int
    drift: dict[str, Any] | None
    drift_over_time: list[dict[str, Any]]
    distributions: list[dict[str, Any]]
    performance: dict[str, Any]
    concept_drift: dict[str, Any]
    fairness: dict[str, Any] | None
    alerts: list[dict[str, Any]]
    messages: list[str]
    diagnosis: dict[str, Any] = field(default_factory=dict)
    score_meaning: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``--json`` and :func:`write_html`)."""
        return dict(self.__dict__)


def build_report(
    model_name: str,
    settings: Settings,
    window: str | int = "1D",
    since: str | datetime | None = None,
    group_column: str | None = None,
    *,
    until: str | datetime | None = None,
    version: str | None = None,
    positive_label: str | None = None,
    metrics: Sequence[str] | None = None,
    card_column: str | None = None,
    bands: Sequence[float] | None = None,
) -> MonitorReport:
    """Build the monitoring report of ``model_name`` from its log, feedback and profile.

    Args:
        window: window length (``"1h"``, ``"1D"``) or rows per window (``"1000"``).
        since, until: the period (dates, UTC times or a look-back such as ``"7d"``).
        group_column: an input column for the fairness section (none without it).
        version: the model version whose reference profile to compare with (default: the
            one that served the most recent prediction).
        positive_label: the positive class for precision/recall and fairness.
        metrics: the performance metrics to show (e.g. ``average_precision``, ``roc_auc``,
            ``cp_at_100``); the diagnosis follows the first. Default: accuracy, macro-F1,
            precision, recall and every score-based metric the log supports.
        card_column: the logged card id for card precision@k (default: the first logged of
            ``card``, ``card_id``, ``CARD_ID``, ``CUSTOMER_ID``, ``customer_id``).
        bands: group a numeric ``group_column`` into bands with these edges (fairness).

    The explanation is :func:`~loopline.monitor.diagnose.diagnose`'s, with the thresholds of
    ``monitoring.diagnose`` in ``loopline.yaml``.

    Raises:
        LooplineError: nothing logged in the period, or a bad window/period/column.
        ConfigError: invalid ``monitoring.diagnose`` settings.
    """
    from loopline.core.metadata import MetadataStore

    spec = parse_window(window)
    thresholds = diagnose_thresholds(settings)
    assert settings.metadata_url is not None
    store = MetadataStore(settings.metadata_url)
    try:
        data = load_monitor_data(
            model_name, settings, since=since, until=until, version=version, store=store
        )
        alerts = read_alerts(store, model_name, data.since, data.until)
    finally:
        store.close()
    return build_report_from_data(
        data,
        spec,
        group_column=group_column,
        positive_label=positive_label,
        alerts=alerts,
        thresholds=thresholds,
        metrics=metrics,
        card_column=card_column,
        bands=bands,
    )


def build_report_from_data(
    data: MonitorData,
    window: str | int | WindowSpec,
    *,
    group_column: str | None = None,
    positive_label: str | None = None,
    alerts: list[dict[str, Any]] | None = None,
    thresholds: DiagnoseThresholds | None = None,
    metrics: Sequence[str] | None = None,
    card_column: str | None = None,
    bands: Sequence[float] | None = None,
) -> MonitorReport:
    """:func:`build_report` on data already loaded (tests and notebooks use this)."""
    from loopline.monitor.drift import SCORE_MEANING, drift_report

    spec = parse_window(window)
    for name in metrics or []:
        check_metric(name)
    frame = data.frame
    messages: list[str] = []
    profile, reference_note = data.profile, data.reference_note
    if profile is None:
        profile, reference_note = fallback_profile(frame, spec)
        messages.append(fallback_note(reference_note))
    windows = drift_over_windows(profile, frame, spec)
    diagnosis = diagnose_data(
        data,
        spec,
        metric=metrics[0] if metrics else "accuracy",
        thresholds=thresholds,
        windows=windows,
        card_column=card_column,
    )
    messages = list(dict.fromkeys([*messages, *diagnosis.notes]))
    current = served(frame)
    overall = drift_report(without_labels(profile), window_inputs(current, profile))
    performance = windowed_performance(
        frame,
        spec,
        positive_label=positive_label,
        unmatched_feedback=data.unmatched_feedback,
        metrics=metrics,
        card_column=card_column,
    )
    shown = list(metrics) if metrics else [*BUILTIN_METRICS, *performance.metrics]
    fairness = None
    if group_column:
        fairness = _fairness_section(
            current, group_column, spec, positive_label or performance.positive_label, bands
        )
    ts = pd.to_datetime(frame[TS], utc=True)
    return MonitorReport(
        model_name=data.model_name,
        generated_at=datetime.now(UTC).isoformat(),
        window=spec.to_dict(),
        period={"start": ts.min().isoformat(), "end": ts.max().isoformat()},
        reference={
            "source": reference_note,
            "version": data.reference_version,
            "n_rows": profile.n_rows,
            "created_at": profile.created_at,
        },
        versions=data.versions,
        n_predictions=len(current),
        n_labeled=int(current["label_true"].notna().sum()),
        unmatched_feedback=data.unmatched_feedback,
        drift=overall.to_dict(),
        drift_over_time=[w.to_dict() for w in windows],
        distributions=feature_distributions(profile, current),
        performance={**performance.to_dict(), "shown": shown, "chosen": bool(metrics)},
        concept_drift=diagnosis.concept,
        fairness=fairness,
        alerts=alerts or [],
        messages=messages,
        diagnosis=diagnosis.to_dict(),
        score_meaning=SCORE_MEANING,
    )


def _fairness_section(
    frame: pd.DataFrame,
    group_column: str,
    spec: WindowSpec,
    positive: str | None,
    bands: Sequence[float] | None = None,
) -> dict[str, Any]:
    from loopline.monitor.fairness import fairness_of_frame, fairness_over_time

    overall = fairness_of_frame(frame, group_column, positive_label=positive, bands=bands)
    over_time = fairness_over_time(
        frame, group_column, spec, positive_label=overall.positive_label, bands=bands
    )
    return {
        "group_column": overall.group_column,
        "overall": overall.to_dict(),
        "over_time": [r.to_dict() for r in over_time],
    }


def read_alerts(
    store: MetadataStore,
    model_name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The model's alert events in the period, newest first (at most ``limit``)."""
    import sqlalchemy as sa

    from loopline.core import schema

    table = schema.alert_events
    query = sa.select(table).where(table.c.model_name == model_name)
    if since is not None:
        query = query.where(table.c.created_at >= since)
    if until is not None:
        query = query.where(table.c.created_at < until)
    query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        for key in ("created_at", "window_start", "window_end"):
            if isinstance(row.get(key), datetime):
                row[key] = _as_utc(row[key]).isoformat()
    return rows


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- distributions for the plots ----------------------------------------------------------


def feature_distributions(profile: Profile, current: pd.DataFrame) -> list[dict[str, Any]]:
    """Reference vs current shares per bin or category for every profiled feature.

    Numeric columns get equal-width bins over the joint range, the reference share of each
    bin read off the profile's quantile sketch (its CDF interpolated between edges); columns
    with few distinct values and categorical columns get one bar per value; text columns
    show their length in characters.
    """
    from loopline.monitor.profile import CategoricalSketch, NumericSketch, TextSketch

    inputs = window_inputs(current, None)
    out = []
    for col in profile.columns.values():
        if col.role != "feature" or col.sketch is None:
            continue
        values = inputs[col.name] if col.name in inputs.columns else pd.Series(dtype=float)
        entry: dict[str, Any] | None = None
        if isinstance(col.sketch, NumericSketch):
            entry = _numeric_distribution(col.sketch, _finite(values))
        elif isinstance(col.sketch, CategoricalSketch):
            entry = _categorical_distribution(col.sketch, values)
        elif isinstance(col.sketch, TextSketch):
            lengths = values.dropna().astype(str).str.len().to_numpy(dtype=np.float64)
            entry = _numeric_distribution(col.sketch.length, lengths)
            entry["unit"] = "length in characters"
        if entry is not None:
            entry.update(feature=col.name, kind=col.kind, n_current=int(values.notna().sum()))
            out.append(entry)
    return out


def _finite(values: pd.Series) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return x[np.isfinite(x)]


def _numeric_distribution(sketch: Any, x: np.ndarray) -> dict[str, Any]:
    edges = np.asarray(sketch.edges, dtype=np.float64)
    cdf = np.asarray(sketch.cum_counts, dtype=np.float64) / max(sketch.n, 1)
    if sketch.discrete and edges.size <= _MAX_CATEGORIES:
        ref = np.diff(np.concatenate(([0.0], cdf)))
        cur = np.array([np.mean(x == e) if x.size else 0.0 for e in edges])
        return {
            "type": "bars",
            "labels": [_num(e) for e in edges],
            "reference": ref.tolist(),
            "current": cur.tolist(),
        }
    low, high = float(edges[0]), float(edges[-1])
    if x.size:  # widen to the current data, ignoring its extreme 0.5 % on each side
        low = min(low, float(np.quantile(x, 0.005)))
        high = max(high, float(np.quantile(x, 0.995)))
    if high <= low:
        high = low + 1.0
    bins = np.linspace(low, high, _HIST_BINS + 1)
    ref_cdf = np.interp(bins, edges, cdf, left=0.0, right=1.0)
    ref = np.diff(ref_cdf)
    ref[0] += ref_cdf[0]  # the mass at the minimum edge belongs to the first bin
    cur = np.histogram(np.clip(x, low, high), bins=bins)[0] / max(x.size, 1)
    return {
        "type": "histogram",
        "edges": bins.tolist(),
        "reference": ref.tolist(),
        "current": cur.tolist(),
    }


def _categorical_distribution(sketch: Any, values: pd.Series) -> dict[str, Any]:
    from loopline.monitor.profile import keyed_counts

    shown = list(sketch.counts)[: _MAX_CATEGORIES - 1]
    ref_total = max(sketch.n, 1)
    ref = [sketch.counts[k] / ref_total for k in shown]
    counts = keyed_counts(values.dropna()) if values.notna().any() else pd.Series(dtype=int)
    cur_total = max(int(counts.sum()), 1)
    cur = [int(counts.get(k, 0)) / cur_total for k in shown]
    ref.append(max(0.0, 1.0 - sum(ref)))
    cur.append(max(0.0, 1.0 - sum(cur)))
    return {"type": "bars", "labels": [*shown, "(other)"], "reference": ref, "current": cur}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


# --- terminal -----------------------------------------------------------------------------


def print_summary(report: MonitorReport, console: Console | None = None) -> None:
    """A short terminal summary: the headline, drift per feature, performance, the diagnosis
    (in ``loopline monitor diagnose``'s words), fairness and alerts."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    perf = report.performance
    overall = perf.get("overall") or {}
    console.print(
        f"[bold]{escape(report.model_name)}[/] versions {', '.join(report.versions) or '-'}; "
        f"{report.period['start']} .. {report.period['end']}; "
        f"{report.n_predictions:,} predictions, {report.n_labeled:,} labelled "
        f"({_pct(overall.get('label_coverage'))}); reference: "
        f"{escape(str(report.reference['source']))}"
    )
    console.print(_drift_table(report))
    console.print(_performance_table(report))
    diagnosis = report.diagnosis
    if diagnosis:
        action = str(diagnosis["recommendation"]).replace("_", " ").upper()
        console.print(
            f"[bold]Diagnosis[/] (as `loopline monitor diagnose`): recommendation {action}"
        )
        console.print(escape(diagnosis["summary"]), highlight=False)
        for line in diagnosis["evidence"]:
            console.print(f"  - {escape(line)}", highlight=False)
    if report.fairness:
        fair = report.fairness["overall"]
        console.print(
            f"fairness by {report.fairness['group_column']}: demographic-parity difference "
            f"{_fmt(fair['demographic_parity_difference'])}, equalized-odds difference "
            f"{_fmt(fair['equalized_odds_difference'])}"
        )
    if report.alerts:
        console.print(f"{len(report.alerts)} alert(s), newest: {report.alerts[0]['rule']}")
    for message in report.messages:
        console.print(f"[yellow]note:[/] {escape(message)}")


_METRIC_TITLES = {"macro_f1": "macro-F1", "average_precision": "AP", "roc_auc": "ROC AUC"}


def _metric_title(name: str) -> str:
    if name.startswith("cp_at_"):
        return f"CP@{name.removeprefix('cp_at_')}"
    return _METRIC_TITLES.get(name, name)


def _performance_table(report: MonitorReport) -> Any:
    """Per window (all versions together): predictions, labelled ones and their share
    (the delayed labels so far), labelled positives, and the metrics shown; one row per
    version too when several served."""
    from rich.table import Table

    perf = report.performance
    shown = perf.get("shown") or list(BUILTIN_METRICS)
    several = len(report.versions) > 1
    table = Table(title=f"Performance per {report.window['window']} window")
    columns = ["window start", *(["version"] if several else []), "n", "labelled", "coverage"]
    columns += ["positives", *(_metric_title(m) for m in shown)]
    for name in columns:
        table.add_column(name, justify="left" if name in ("window start", "version") else "right")
    rows = [w for w in perf["windows"] if w["model_version"] is None or several]
    starts = dict(
        zip(
            [w["start"] for w in rows],
            short_labels([w["start"] for w in rows], with_date=True),
            strict=False,
        )
    )
    for w in rows:
        if several and w["model_version"] is None and not w["n_predictions"]:
            continue
        table.add_row(
            starts[w["start"]],
            *([w["model_version"] or "all"] if several else []),
            f"{w['n_predictions']:,}",
            f"{w['n_labeled']:,}",
            _pct(w["label_coverage"]),
            f"{w['n_label_positive']:,}",
            *(_fmt(w.get(m)) for m in shown),
        )
    return table


def _drift_table(report: MonitorReport) -> Any:
    from rich.table import Table

    table = Table(
        title="Drift against the reference (whole period; windows flagged)",
        caption=report.score_meaning or None,
    )
    for name in ("feature", "kind", "drifted", "score", "largest effect", "windows flagged",
                 "first flagged"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("feature", "kind") else "right")
    judged = [w for w in report.drift_over_time if w.get("judged")]
    labels = dict(
        zip(
            [w["start"] for w in judged],
            short_labels([w["start"] for w in judged], with_date=True),
            strict=True,
        )
    )
    for feature in (report.drift or {}).get("features", []):
        if feature["role"] != "feature":
            continue
        name = feature["column"]
        flagged = [w["start"] for w in judged if w.get("features", {}).get(name, {}).get("drifted")]
        table.add_row(
            name,
            feature["kind"],
            "[bold red]yes[/]" if feature["drifted"] else "no",
            _fmt(feature.get("score")),
            _effect_text(feature.get("score_effect")),
            f"{len(flagged)}/{len(judged)}",
            labels[flagged[0]] if flagged else "-",
        )
    return table


def _effect_text(score: Mapping[str, Any] | None) -> str:
    """``"token JS distance 0.13 (threshold 0.05)"`` from a drift score dict."""
    if not score:
        return "-"
    text = str(score.get("text", ""))
    return text.split(": ", 1)[1] if ": " in text else text


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


# --- HTML ---------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2933;
background:#f5f7fa}
header{background:#1f2933;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px}
main{padding:12px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:12px 18px;margin:14px 0}
h2{font-size:17px;margin:4px 0 10px}
.badge{display:inline-block;border-radius:10px;padding:2px 10px;margin-right:6px;font-size:13px}
.ok{background:#e3f9e5;color:#1f5f2b}.bad{background:#ffe3e3;color:#8a1c1c}
.warn{background:#fff3c4;color:#7c5e10}
.grid{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0;border:1px solid #eef2f6;border-radius:4px;padding:6px}
figcaption{font-size:12px;color:#52606d;max-width:360px}
table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #e4e7eb;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
svg text{font-size:11px;fill:#3e4c59}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""

_COLORS = ["#2f80ed", "#eb5757", "#27ae60", "#f2994a", "#9b51e0", "#56ccf2", "#6d6875"]


def write_html(report: MonitorReport | dict[str, Any], path: str | Path) -> Path:
    """Write the report as one self-contained HTML file (inline CSS and SVG only).

    The file is written to a temporary name and renamed, so a reader never sees half of it.
    """
    data = report.to_dict() if isinstance(report, MonitorReport) else report
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(render_html(data), encoding="utf-8")
    temp.replace(target)
    return target


def render_html(data: dict[str, Any]) -> str:
    """The HTML text of a report dict (see :class:`MonitorReport`)."""
    title = f"Monitoring report: {data['model_name']}"
    sections = [
        _summary_section(data),
        _drift_time_section(data),
        _distribution_section(data),
        _performance_section(data),
        _fairness_html(data),
        _alerts_section(data),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><div>{_e(_header_line(data))}</div></header>"
        f"<main>{''.join(sections)}</main></body></html>"
    )


def _header_line(data: dict[str, Any]) -> str:
    period = data["period"]
    return (
        f"{period['start']} to {period['end']} | windows of {data['window']['window']} | "
        f"versions {', '.join(data['versions']) or '-'} | reference: {data['reference']['source']}"
        f" | generated {data['generated_at'][:19]} UTC"
    )


_STAGE_TITLES = (
    ("instrumentation", "1. Instrumentation"),
    ("data_drift", "2. Data drift"),
    ("concept_drift", "3. Concept drift"),
    ("model_version", "4. Model versions"),
)
_SEVERITY_MARK = {"problem": "✗", "warning": "!", "info": "·"}


def _summary_section(data: dict[str, Any]) -> str:
    diagnosis = data.get("diagnosis") or {}
    findings = diagnosis.get("findings") or {}
    overall = data["performance"].get("overall") or {}
    facts = [
        ("predictions", f"{data['n_predictions']:,}"),
        ("with feedback", f"{data['n_labeled']:,} ({_pct(overall.get('label_coverage'))})"),
        ("feedback for unknown request ids", str(data["unmatched_feedback"])),
        ("accuracy (whole period)", _fmt(overall.get("accuracy"))),
        ("macro-F1 (whole period)", _fmt(overall.get("macro_f1"))),
    ]
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in facts)
    notes = "".join(f"<li>{_e(m)}</li>" for m in diagnosis.get("notes") or [])
    return (
        f"<section id='summary'><h2>Summary</h2><p>{''.join(_badges(data))}</p>"
        f"<table>{rows}</table>{_diagnosis_html(diagnosis, findings)}"
        + (f"<p>Notes:</p><ul>{notes}</ul>" if notes else "")
        + "</section>"
    )


def _badges(data: dict[str, Any]) -> list[str]:
    """Badges that repeat the diagnosis' verdicts (never a verdict of their own)."""
    diagnosis = data.get("diagnosis") or {}
    findings = diagnosis.get("findings") or {}
    drifted = diagnosis.get("drifted_features") or []
    drift_warnings = [
        f["column"]
        for f in findings.get("data_drift", [])
        if f["severity"] == "warning" and f.get("column")
    ]
    concept = [f for f in findings.get("concept_drift", []) if f["severity"] == "problem"]
    recommendation = str(diagnosis.get("recommendation", "none"))
    badges = [
        _badge(
            f"recommendation: {recommendation.replace('_', ' ')}",
            "ok" if recommendation == "none" else "bad",
        ),
        _badge(
            f"data drift: {', '.join(drifted)}"
            if drifted
            else (
                f"earlier drift: {', '.join(drift_warnings)}" if drift_warnings else "no data drift"
            ),
            "bad" if drifted else ("warn" if drift_warnings else "ok"),
        ),
        _badge(
            f"concept drift since {short_labels([concept[0]['since']], with_date=True)[0]}"
            if concept and concept[0].get("since")
            else ("concept drift" if concept else "no concept drift"),
            "bad" if concept else "ok",
        ),
        _badge(f"{len(data['alerts'])} alert(s)", "bad" if data["alerts"] else "ok"),
    ]
    return badges


def _diagnosis_html(diagnosis: dict[str, Any], findings: dict[str, Any]) -> str:
    """The diagnosis as ``loopline monitor diagnose`` prints it: conclusion, then stages."""
    if not diagnosis:
        return ""
    stages = []
    for stage, title in _STAGE_TITLES:
        items = findings.get(stage) or []
        if not items:
            stages.append(f"<li>{_e(title)}: nothing found</li>")
            continue
        lines = "".join(
            f"<li>{_e(_SEVERITY_MARK.get(f['severity'], ''))} <b>{_e(f['title'])}</b>"
            f"{_e(' (since ' + str(f['since'])[:19] + ')' if f.get('since') else '')}"
            f"<ul>{''.join(f'<li>{_e(line)}</li>' for line in f['evidence'])}</ul></li>"
            for f in items
        )
        stages.append(f"<li>{_e(title)}<ul>{lines}</ul></li>")
    return (
        "<h3>Diagnosis (as <code>loopline monitor diagnose</code>)</h3>"
        f"<p class='verdict'>{_e(diagnosis['summary'])}</p><ul>{''.join(stages)}</ul>"
    )


def _badge(text: str, kind: str) -> str:
    return f"<span class='badge {kind}'>{_e(text)}</span>"


def _drift_time_section(data: dict[str, Any]) -> str:
    windows = data["drift_over_time"]
    features = [
        f["column"] for f in (data.get("drift") or {}).get("features", []) if f["role"] == "feature"
    ]
    if not windows or not features:
        return "<section id='drift-over-time'><h2>Drift over time</h2><p>No windows.</p></section>"
    labels = short_labels([w["start"] for w in windows])
    cells = [[(w.get("features") or {}).get(f) for w in windows] for f in features]
    scores = [[None if c is None else c.get("score") for c in row] for row in cells]
    flags = [[bool(c and c.get("drifted")) for c in row] for row in cells]
    judged = [
        [
            bool(c and w.get("judged") and c.get("status") in ("ok", "all_missing"))
            for c, w in zip(row, windows, strict=True)
        ]
        for row in cells
    ]
    effects = [[_effect_text((c or {}).get("score_effect")) for c in row] for row in cells]
    heat = svg_heatmap(features, labels, scores, flags, judged=judged, notes=effects)
    # The share is of the same decisions as the cells: a red cell is a flagged feature of a
    # judged window, which makes that window's share > 0; unjudged windows have no share.
    share = svg_line_chart(
        labels,
        {"share of features flagged": [w.get("share_drifted") for w in windows]},
        y_max=1.0,
    )
    return (
        "<section id='drift-over-time'><h2>Drift over time</h2>"
        f"<p>Each cell is a feature in a window; its number is the drift score: "
        f"{_e(data.get('score_meaning') or '')}. Red: flagged as drifted (darker = larger "
        "score); blue: judged and not flagged (shaded by the same score); grey: not judged "
        "(no data, or fewer rows than the drift test needs). Hover a cell for the effect "
        "and its threshold.</p>"
        f"<div class='grid'><figure>{heat}</figure><figure>{share}"
        "<figcaption>Share of features flagged per judged window (no point: not judged)"
        "</figcaption></figure></div></section>"
    )


def _distribution_section(data: dict[str, Any]) -> str:
    by_feature = {f["column"]: f for f in (data.get("drift") or {}).get("features", [])}
    figures = []
    for dist in data["distributions"]:
        result = by_feature.get(dist["feature"], {})
        labels = dist.get("labels") or [_num(e) for e in dist["edges"][:-1]]
        chart = svg_bar_chart(labels, {"reference": dist["reference"], "current": dist["current"]})
        verdict = (
            "DRIFTED: " + "; ".join(result.get("reasons", []))
            if result.get("drifted")
            else "no drift"
        )
        unit = f" ({dist['unit']})" if dist.get("unit") else ""
        figures.append(
            f"<figure>{chart}<figcaption><b>{_e(dist['feature'])}</b>{_e(unit)}, "
            f"{_e(dist['kind'])}; {_e(verdict)}</figcaption></figure>"
        )
    legend = _legend(["reference", "current"])
    return (
        "<section id='distributions'><h2>Feature distributions: reference vs current</h2>"
        f"{legend}<div class='grid'>{''.join(figures) or '<p>No profiled features.</p>'}</div>"
        "</section>"
    )


def _performance_section(data: dict[str, Any]) -> str:
    perf = data["performance"]
    windows = [w for w in perf["windows"] if w["model_version"] is None]
    labels = short_labels([w["start"] for w in windows])
    shown = perf.get("shown") or ["accuracy", "macro_f1"]
    if not perf.get("chosen"):  # the default chart: accuracy, macro-F1 and the score metrics
        shown = [m for m in shown if m not in ("precision", "recall")]
    series = {_metric_title(m): [w.get(m) for w in windows] for m in shown}
    for version in data["versions"] if len(data["versions"]) > 1 else []:
        by_start = {
            w["start"]: w.get(shown[0]) for w in perf["windows"] if w["model_version"] == version
        }
        series[f"{_metric_title(shown[0])} v{version}"] = [
            by_start.get(w["start"]) for w in windows
        ]
    baseline = data["concept_drift"].get("baseline")
    metrics = svg_line_chart(labels, series, y_max=1.0, reference=baseline)
    coverage = svg_bar_chart(
        labels,
        {"label coverage": [w["label_coverage"] for w in windows]},
        y_max=1.0,
        max_label=None,
    )
    # Its notes (missing labels, stray feedback, empty windows) are findings of the
    # diagnosis in the summary: not repeated here.
    return (
        "<section id='performance'><h2>Performance over time (delayed labels)</h2>"
        f"{_legend(list(series))}<div class='grid'><figure>{metrics}<figcaption>"
        "Metrics per window on the predictions whose feedback arrived; dashed: the baseline "
        f"({_e(data['concept_drift'].get('baseline_source'))})</figcaption></figure>"
        f"<figure>{coverage}<figcaption>Share of predictions with feedback</figcaption>"
        f"</figure></div></section>"
    )


def _fairness_html(data: dict[str, Any]) -> str:
    fair = data.get("fairness")
    if not fair:
        return (
            "<section id='fairness'><h2>Fairness</h2><p>No group column chosen "
            "(use <code>--group COLUMN</code>).</p></section>"
        )
    overall = fair["overall"]
    groups = overall["groups"]
    chart = svg_bar_chart(
        [g["group"] for g in groups],
        {key: [g[key] for g in groups] for key in ("selection_rate", "tpr", "fpr")},
        y_max=1.0,
    )
    over_time = fair["over_time"]
    trend = svg_line_chart(
        short_labels([r["start"] for r in over_time]),
        {
            "demographic parity difference": [
                r["demographic_parity_difference"] for r in over_time
            ],
            "equalized odds difference": [r["equalized_odds_difference"] for r in over_time],
        },
        y_max=1.0,
    )
    return (
        f"<section id='fairness'><h2>Fairness by {_e(fair['group_column'])} "
        f"(positive class {_e(overall['positive_label'])})</h2>"
        f"<p>Demographic-parity difference {_fmt(overall['demographic_parity_difference'])}, "
        f"equalized-odds difference {_fmt(overall['equalized_odds_difference'])} "
        "(whole period; fairlearn).</p>"
        f"<div class='grid'><figure>{_legend(['selection rate', 'TPR', 'FPR'])}{chart}"
        "<figcaption>Per group: selection rate (all predictions), TPR and FPR (labelled "
        f"ones)</figcaption></figure><figure>{_legend(['demographic parity', 'equalized odds'])}"
        f"{trend}<figcaption>Differences per window</figcaption></figure></div></section>"
    )


def _alerts_section(data: dict[str, Any]) -> str:
    alerts = data["alerts"]
    if not alerts:
        return "<section id='alerts'><h2>Alerts</h2><p>No alerts in this period.</p></section>"
    head = (
        "<tr><th>when</th><th>rule</th><th>metric</th><th>value</th><th>threshold</th>"
        "<th>action</th><th>status</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{_e(str(a.get('created_at', ''))[:19])}</td><td>{_e(a.get('rule'))}</td>"
        f"<td>{_e(a.get('metric'))}</td><td>{_fmt(a.get('value'))}</td>"
        f"<td>{_fmt(a.get('threshold'))}</td><td>{_e(a.get('action'))}</td>"
        f"<td>{_e(a.get('status'))}</td></tr>"
        for a in alerts
    )
    return f"<section id='alerts'><h2>Alerts</h2><table>{head}{rows}</table></section>"


def _legend(names: Sequence[str]) -> str:
    items = "".join(
        f"<span style='background:{_COLORS[i % len(_COLORS)]}'></span>{_e(n)}"
        for i, n in enumerate(names)
    )
    return f"<div class='legend'>{items}</div>"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# --- SVG charts ---------------------------------------------------------------------------


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' role='img' "
        f"aria-label='{_e(label)}' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>"
    )


def _y_axis(top: int, bottom: int, left: int, right: int, y_max: float) -> str:
    parts = []
    for i in range(5):
        value = y_max * i / 4
        y = bottom - (bottom - top) * i / 4
        parts.append(
            f"<line x1='{left}' x2='{right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e7eb'/>"
            f"<text x='{left - 4}' y='{y + 4:.1f}' text-anchor='end'>{value:.2g}</text>"
        )
    return "".join(parts)


_LEVELS = (  # label resolutions, coarse to fine: (unit, time format)
    (pd.Timedelta(days=1), ""),
    (pd.Timedelta(minutes=1), "%H:%M"),
    (pd.Timedelta(seconds=1), "%H:%M:%S"),
    (pd.Timedelta(milliseconds=1), "%H:%M:%S.%f/ms"),
    (pd.Timedelta(microseconds=1), "%H:%M:%S.%f"),
)


def short_labels(starts: Sequence[str | pd.Timestamp], *, with_date: bool = False) -> list[str]:
    """Window starts as axis labels, at the resolution the range needs.

    The resolution (days, minutes, seconds, milliseconds, microseconds) is the coarsest that
    is at least as fine as the smallest step between the starts and gives distinct starts
    distinct labels: ``06-01`` for days, ``13:05`` for windows minutes apart on one day,
    ``03:21:05`` for seconds, ``03:21:05.350`` below that. The date is shown when the starts
    span several days (or ``with_date``), the year when they span several years.
    """
    stamps = [pd.Timestamp(s) for s in starts]
    if not stamps:
        return []
    distinct = sorted(set(stamps))
    steps = [b - a for a, b in itertools.pairwise(distinct)]
    step = min(steps) if steps else None
    level = 0
    for level, (unit, _) in enumerate(_LEVELS):
        exact = all(t == t.floor(unit) for t in distinct)
        if (step is None and exact) or (step is not None and unit <= step and (level or exact)):
            break
    years = len({t.year for t in distinct}) > 1
    dated = with_date or len({t.date() for t in distinct}) > 1
    for index in range(level, len(_LEVELS)):
        labels = [_stamp_label(t, index, dated=dated, years=years) for t in stamps]
        if len(set(labels)) == len(distinct):
            return labels
    return [t.isoformat() for t in stamps]


def _stamp_label(stamp: pd.Timestamp, level: int, *, dated: bool, years: bool) -> str:
    date = stamp.strftime("%Y-%m-%d" if years else "%m-%d")
    pattern = _LEVELS[level][1]
    if not pattern:
        return date
    time = stamp.strftime(pattern.removesuffix("/ms"))
    if pattern.endswith("/ms"):
        time = time[:-3]
    return f"{date} {time}" if dated else time


def _x_labels(labels: Sequence[str], xs: Sequence[float], y: int, *, rotate: bool = False) -> str:
    if not labels:
        return ""
    spacing = (xs[-1] - xs[0]) / max(len(xs) - 1, 1) if len(xs) > 1 else 100.0
    needed = 12.0 if rotate else 6.5 * max(len(str(label)) for label in labels) + 8
    step = max(1, math.ceil(needed / max(spacing, 1.0)))  # skip labels that would overlap
    parts = []
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        if i % step:
            continue
        if rotate:
            parts.append(
                f"<text x='{x:.1f}' y='{y}' text-anchor='end' "
                f"transform='rotate(-45 {x:.1f} {y})'>{_e(label)}</text>"
            )
        else:
            parts.append(f"<text x='{x:.1f}' y='{y}' text-anchor='middle'>{_e(label)}</text>")
    return "".join(parts)


def svg_line_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_max: float | None = None,
    reference: float | None = None,
    width: int = 560,
    height: int = 240,
) -> str:
    """A line chart as inline SVG; ``None`` values break the line (no data there)."""
    left, right, top, bottom = 44, width - 12, 12, height - 28
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    top_value = y_max or max([*values, reference or 0.0, 1e-9]) * 1.1
    n = max(len(labels), 1)
    xs = [left + (right - left) * (i + 0.5) / n for i in range(len(labels))]

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * min(max(value / top_value, 0.0), 1.0)

    parts = [
        _svg_open(width, height, ", ".join(series)),
        _y_axis(top, bottom, left, right, top_value),
    ]
    if reference is not None:
        parts.append(
            f"<line x1='{left}' x2='{right}' y1='{y_of(reference):.1f}' "
            f"y2='{y_of(reference):.1f}' stroke='#52606d' stroke-dasharray='5,4'/>"
        )
    for index, (name, points) in enumerate(series.items()):
        color = _COLORS[index % len(_COLORS)]
        parts.extend(_polyline(xs, points, y_of, color, name))
    parts.append(_x_labels(labels, xs, height - 8))
    parts.append("</svg>")
    return "".join(parts)


def _polyline(
    xs: Sequence[float], points: Sequence[float | None], y_of: Any, color: str, name: str
) -> list[str]:
    parts: list[str] = []
    run: list[tuple[float, float]] = []
    for x, value in zip(xs, [*points, *[None] * (len(xs) - len(points))], strict=False):
        if value is None or not math.isfinite(value):
            parts.append(_run(run, color))
            run = []
            continue
        run.append((x, y_of(value)))
        parts.append(
            f"<circle cx='{x:.1f}' cy='{y_of(value):.1f}' r='3' fill='{color}'>"
            f"<title>{_e(name)}: {value:.3f}</title></circle>"
        )
    parts.append(_run(run, color))
    return parts


def _run(run: list[tuple[float, float]], color: str) -> str:
    if len(run) < 2:
        return ""
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
    return f"<polyline points='{points}' fill='none' stroke='{color}' stroke-width='2'/>"


def svg_bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_max: float | None = None,
    width: int = 360,
    height: int = 200,
    max_label: int | None = 10,
) -> str:
    """Grouped bars as inline SVG, one group per label and one bar per series.

    ``max_label``: axis labels are cut to this many characters (``None``: never; time axes
    use that, cut times would repeat).
    """
    left, right, top, bottom = 40, width - 8, 10, height - 28
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    top_value = y_max or max([*values, 1e-9]) * 1.1
    n = max(len(labels), 1)
    group = (right - left) / n
    bar = max(group * 0.8 / max(len(series), 1), 1.0)
    parts = [
        _svg_open(width, height, ", ".join(series)),
        _y_axis(top, bottom, left, right, top_value),
    ]
    for s_index, (name, points) in enumerate(series.items()):
        color = _COLORS[s_index % len(_COLORS)]
        for i, value in enumerate(points):
            if value is None or not math.isfinite(value):
                continue
            h = max((bottom - top) * min(value / top_value, 1.0), 0.5)
            x = left + group * i + group * 0.1 + bar * s_index
            parts.append(
                f"<rect x='{x:.1f}' y='{bottom - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                f"fill='{color}'><title>{_e(labels[i])} {_e(name)}: {value:.3f}</title></rect>"
            )
    xs = [left + group * (i + 0.5) for i in range(len(labels))]
    shown = [str(label) if max_label is None else str(label)[:max_label] for label in labels]
    parts.append(_x_labels(shown, xs, height - 8))
    parts.append("</svg>")
    return "".join(parts)


def svg_heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    flags: Sequence[Sequence[bool]],
    *,
    judged: Sequence[Sequence[bool]] | None = None,
    notes: Sequence[Sequence[str]] | None = None,
    cell: int = 22,
) -> str:
    """Rows x columns of cells, coloured by the decision and shaded by value (0 .. 3+).

    Flagged cells are red, judged cells that are not flagged blue, cells without a decision
    (``judged`` false, or no value) grey, so a red cell always means "flagged". ``notes``
    are added to each cell's tooltip (the effect behind the value).
    """
    label_width = min(160, 8 + 7 * max((len(r) for r in rows), default=4))
    width = label_width + cell * len(columns) + 10
    height = 14 + cell * len(rows) + 70
    parts = [_svg_open(width, height, "drift per feature and window")]
    for r, name in enumerate(rows):
        y = 10 + r * cell
        parts.append(
            f"<text x='{label_width - 6}' y='{y + cell * 0.65:.1f}' "
            f"text-anchor='end'>{_e(name[:22])}</text>"
        )
        for c, column in enumerate(columns):
            value, flagged = values[r][c], flags[r][c]
            decided = value is not None and (judged is None or judged[r][c])
            x = label_width + c * cell
            fill = _heat_color(value, flagged) if decided and value is not None else "#e4e7eb"
            shown = "no data" if value is None else f"score {value:.2f}"
            if value is not None and notes and notes[r][c] not in ("", "-"):
                shown += f" = {notes[r][c]}"
            verdict = "flagged" if flagged else ("not flagged" if decided else "not judged")
            if value is None:
                verdict = "not judged"
            parts.append(
                f"<rect x='{x}' y='{y}' width='{cell - 2}' height='{cell - 2}' fill='{fill}' "
                f"stroke='{'#8a1c1c' if flagged else '#ffffff'}' stroke-width='2'>"
                f"<title>{_e(name)} @ {_e(column)}: {_e(shown)}; {verdict}</title></rect>"
            )
    xs = [label_width + c * cell + cell / 2 for c in range(len(columns))]
    parts.append(_x_labels(list(columns), xs, 10 + cell * len(rows) + 10, rotate=True))
    parts.append("</svg>")
    return "".join(parts)


def _heat_color(value: float, flagged: bool) -> str:
    level = min(max(value, 0.0) / 3.0, 1.0)
    if flagged:  # red, visibly so even at the threshold
        other = int(170 - 130 * level)
        return f"rgb(255,{other},{other})"
    return f"rgb({int(255 - 90 * level)},{int(255 - 60 * level)},255)"  # blue, never red
