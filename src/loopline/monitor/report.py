"""Monitoring reports: drift, performance, fairness and alerts of one model over time.

:func:`build_report` reads the prediction log and the feedback labels of a model, compares
each window with the model version's reference profile, and returns a JSON-able
:class:`MonitorReport`. :func:`write_html` renders it as ONE self-contained HTML file
(inline CSS and SVG, no script, no network), and :func:`print_summary` prints it in the
terminal. The loading helpers here (:func:`load_monitor_data`, :func:`drift_over_windows`)
are shared with :mod:`loopline.monitor.diagnose`.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopline.errors import DataError, LooplineError
from loopline.monitor.performance import (
    PREDICTION,
    TS,
    VERSION,
    WindowSpec,
    attach_labels,
    detect_concept_drift,
    iter_windows,
    parse_duration,
    parse_window,
    served,
    windowed_performance,
)

if TYPE_CHECKING:
    from rich.console import Console

    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.monitor.drift import DriftConfig, DriftReport, FeatureDrift
    from loopline.monitor.profile import Profile

__all__ = [
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
    "svg_bar_chart",
    "svg_heatmap",
    "svg_line_chart",
    "window_inputs",
    "without_labels",
    "write_html",
]

INPUT_PREFIX = "input."
PROBA_PREFIX = "proba."
_MAX_CATEGORIES = 12  # bars per categorical distribution plot; the rest is "(other)"
_HIST_BINS = 20


# --- loading ------------------------------------------------------------------------------


@dataclass
class MonitorData:
    """Everything monitoring reads for one model: the log with labels and the reference.

    ``frame`` is the prediction log (all routes) with ``label_true``; ``profile`` is the
    reference profile of ``reference_version`` (``None`` when no version has one stored,
    then ``reference_note`` says what stands in for it).
    """

    model_name: str
    frame: pd.DataFrame
    unmatched_feedback: int
    profile: Profile | None
    reference_version: str | None
    reference_note: str
    since: datetime | None = None
    until: datetime | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def versions(self) -> list[str]:
        """Model versions seen in the log, in order of first appearance."""
        if VERSION not in self.frame.columns:
            return []
        return [str(v) for v in pd.unique(self.frame[VERSION].dropna())]


def parse_since(text: str | datetime | None, *, now: datetime | None = None) -> datetime | None:
    """``"2026-05-01"``, ``"2026-05-01T12:00"`` (UTC unless it says otherwise) or a look-back
    duration such as ``"7d"``/``"24h"`` (meaning that long before now).

    Raises:
        LooplineError: neither a date/time nor a duration.
    """
    if text is None or isinstance(text, datetime):
        return _utc(text) if isinstance(text, datetime) else None
    value = text.strip()
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = None
    if stamp is not None and stamp is not pd.NaT and any(c in value for c in "-/:"):
        return _utc(stamp.to_pydatetime())
    back = parse_duration(value)
    if back is None or back <= pd.Timedelta(0):
        raise LooplineError(
            f"cannot read the time {text!r}",
            hint="write a date such as 2026-05-01, a UTC time such as 2026-05-01T12:00, "
            "or a look-back such as 7d or 24h",
        )
    return (now or datetime.now(UTC)) - back.to_pytimedelta()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def load_monitor_data(
    model_name: str,
    settings: Settings,
    *,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    version: str | None = None,
    store: MetadataStore | None = None,
) -> MonitorData:
    """Read the model's logged predictions, join the feedback, and find its reference profile.

    The reference is the profile stored with ``version``, or else with the version that
    served the most recent prediction (then older versions in the log are tried).

    Raises:
        LooplineError: nothing was logged for the model in the period.
    """
    from loopline.core.feedback import read_feedback
    from loopline.core.metadata import MetadataStore
    from loopline.core.predlog import read_predictions

    start, end = parse_since(since), parse_since(until)
    assert settings.prediction_log_url is not None and settings.metadata_url is not None
    log = read_predictions(settings.prediction_log_url, model_name, start, end)
    if log.empty:
        period = _period_text(start, end)
        raise LooplineError(
            f"no predictions of model {model_name!r} are logged{period}",
            hint=f"serve it with `loopline serve {model_name}` (the log is at "
            f"{settings.prediction_log_url}), or widen --since/--until",
        )
    own = store is None
    store = store or MetadataStore(settings.metadata_url)
    try:
        feedback = read_feedback(store, model_name, since=start)
        frame, unmatched = attach_labels(log, feedback)
        found = _find_profile(model_name, settings, store, frame, version)
    finally:
        if own:
            store.close()
    profile, ref_version, note, messages = found
    return MonitorData(
        model_name, frame, unmatched, profile, ref_version, note, start, end, messages
    )


def _period_text(start: datetime | None, end: datetime | None) -> str:
    parts = []
    if start is not None:
        parts.append(f" since {start.isoformat()}")
    if end is not None:
        parts.append(f" until {end.isoformat()}")
    return "".join(parts)


def _find_profile(
    model_name: str,
    settings: Settings,
    store: MetadataStore,
    frame: pd.DataFrame,
    version: str | None,
) -> tuple[Profile | None, str | None, str, list[str]]:
    """The first version (asked-for, else newest served first) whose profile loads."""
    from loopline.core.artifacts import ArtifactStore
    from loopline.monitor.profile import Profile

    candidates = [version] if version else _recent_versions(frame)
    messages: list[str] = []
    artifacts: ArtifactStore | None = None
    for candidate in candidates:
        row = store.model_version(model_name, candidate)
        digest = (row or {}).get("profile_hash")
        if not digest:
            messages.append(f"version {candidate} of {model_name!r} has no reference profile")
            continue
        try:
            artifacts = artifacts or ArtifactStore(str(settings.artifact_root))
            stored = artifacts.load(digest)
            profile = stored if isinstance(stored, Profile) else Profile.from_dict(stored)
        except (OSError, ValueError, KeyError, LooplineError) as exc:
            messages.append(f"the reference profile of version {candidate} is unreadable: {exc}")
            continue
        return profile, candidate, f"reference profile of version {candidate}", messages
    return None, None, "no reference profile", messages


def _recent_versions(frame: pd.DataFrame) -> list[str]:
    if VERSION not in frame.columns:
        return []
    rows = served(frame).sort_values(TS, kind="stable")
    return [str(v) for v in pd.unique(rows[VERSION].dropna()[::-1])]


def fallback_profile(frame: pd.DataFrame, window: WindowSpec) -> tuple[Profile, str]:
    """A stand-in reference built from the first non-empty window of the log.

    Used when no model version has a stored profile: drift then means "changed since the
    log began", which is weaker than "changed since training", and the report says so.
    """
    from loopline.monitor.profile import build_profile

    first = next((w for w in iter_windows(served(frame), window) if not w.frame.empty), None)
    if first is None:
        raise LooplineError(
            "the log holds no served predictions (only shadow ones) and no reference profile",
            hint="store a reference profile with the model version, or widen --since",
        )
    inputs = window_inputs(first.frame, None)
    return build_profile(inputs), f"the first window of the log (from {first.key})"


def window_inputs(frame: pd.DataFrame, profile: Profile | None) -> pd.DataFrame:
    """The logged inputs under their training names (``input.age`` -> ``age``), plus the
    prediction and probability columns under the names the profile gives them."""
    columns = {c: c.removeprefix(INPUT_PREFIX) for c in frame.columns if c.startswith(INPUT_PREFIX)}
    out = frame[list(columns)].rename(columns=columns)
    if profile is None:
        return out
    if profile.prediction and PREDICTION in frame.columns:
        out[profile.prediction] = frame[PREDICTION].to_numpy()
    for name in profile.probabilities:
        logged = name if name in frame.columns else PROBA_PREFIX + name
        if logged in frame.columns:
            out[name] = frame[logged].to_numpy()
    return out


# --- drift over time ----------------------------------------------------------------------


def without_labels(profile: Profile) -> Profile:
    """The profile minus its true-label column: the log has no labels, only the late
    feedback for some rows, so comparing it would flag "missing labels" in every window."""
    columns = {k: c for k, c in profile.columns.items() if c.role != "label"}
    return dataclasses.replace(profile, columns=columns)


@dataclass
class WindowDrift:
    """The drift report of one window (``report`` is ``None`` for an empty window)."""

    start: pd.Timestamp
    end: pd.Timestamp
    n_rows: int
    report: DriftReport | None
    message: str | None = None

    @property
    def key(self) -> str:
        """The window's start as ISO-8601 (as in the performance series)."""
        return self.start.isoformat()

    @property
    def share_drifted(self) -> float | None:
        """Share of features flagged (``None`` without a report)."""
        return None if self.report is None else self.report.share_drifted

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able summary (per-feature scores, flags and issues)."""
        out: dict[str, Any] = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "n_rows": self.n_rows,
            "message": self.message,
        }
        if self.report is None:
            return out
        out.update(
            share_drifted=_round(self.report.share_drifted),
            dataset_drift=self.report.dataset_drift,
            prediction_drift=self.report.prediction_drift,
            drifted_features=self.report.drifted_features,
            features={f.column: _feature_summary(f) for f in self.report.features},
            issues=[i.to_dict() for i in self.report.issues],
            extra_columns=list(self.report.extra_columns),
        )
        return out


def _feature_summary(result: Any) -> dict[str, Any]:
    return {
        "role": result.role,
        "kind": result.kind,
        "status": result.status,
        "drifted": result.drifted,
        "score": _round(drift_score(result)),
        "psi": _round(result.psi),
        "js_distance": _round(result.js_distance),
        "wasserstein": _round(result.wasserstein),
        "q_value": _round(result.q_value, 6),
        "missing_rate": _round(result.missing_rate),
        "reasons": list(result.reasons),
    }


def drift_score(result: FeatureDrift | Mapping[str, Any]) -> float | None:
    """One number per column for plots: the largest effect size relative to its threshold
    (1.0 = at the threshold), so numeric, categorical and text columns share one scale.

    Takes a :class:`~loopline.monitor.drift.FeatureDrift` or its ``to_dict()``.
    """
    values = result if isinstance(result, Mapping) else dataclasses.asdict(result)
    cfg = _default_drift_config()
    text = values["kind"] == "text"
    limits = {
        "psi": None if text else cfg.psi_threshold,
        "js_distance": cfg.text_js_threshold if text else cfg.js_threshold,
        "wasserstein": cfg.wasserstein_threshold,
    }
    ratios = [
        values[name] / limit
        for name, limit in limits.items()
        if limit and values.get(name) is not None
    ]
    if values.get("missing_rate") is not None:
        change = abs(values["missing_rate"] - values["missing_rate_reference"])
        ratios.append(change / cfg.missing_rate_threshold)
    finite = [r for r in ratios if math.isfinite(r)]
    return max(finite) if finite else None


def _default_drift_config() -> DriftConfig:
    from loopline.monitor.drift import DriftConfig

    return DriftConfig()


def drift_over_windows(
    profile: Profile,
    frame: pd.DataFrame,
    window: str | int | WindowSpec,
    config: DriftConfig | None = None,
) -> list[WindowDrift]:
    """:func:`~loopline.monitor.drift.drift_report` for every window of the served log.

    Empty windows (a gap in the log) get no report and say so, instead of failing the whole
    series.
    """
    from loopline.monitor.drift import DriftConfig, drift_report

    config = config or DriftConfig()
    profile = without_labels(profile)
    results = []
    for win in iter_windows(served(frame), window):
        if win.frame.empty:
            results.append(WindowDrift(win.start, win.end, 0, None, "no predictions logged"))
            continue
        try:
            report = drift_report(profile, window_inputs(win.frame, profile), config=config)
        except DataError as exc:
            results.append(WindowDrift(win.start, win.end, len(win.frame), None, str(exc)))
            continue
        results.append(WindowDrift(win.start, win.end, len(win.frame), report))
    return results


# --- the report ---------------------------------------------------------------------------


@dataclass
class MonitorReport:
    """What happened to one model in production, as plain JSON-able data.

    Sections: ``drift`` (whole period against the reference), ``drift_over_time`` (one entry
    per window), ``distributions`` (reference vs current, for the plots), ``performance``
    (per window and version, with the label coverage), ``concept_drift``, ``fairness``
    (``None`` without a group column), ``alerts`` and ``messages`` (what could not be
    measured, and why).
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
) -> MonitorReport:
    """Build the monitoring report of ``model_name`` from its log, feedback and profile.

    Args:
        window: window length (``"1h"``, ``"1D"``) or rows per window (``"1000"``).
        since, until: the period (dates, UTC times or a look-back such as ``"7d"``).
        group_column: an input column for the fairness section (none without it).
        version: the model version whose reference profile to compare with (default: the
            one that served the most recent prediction).
        positive_label: the positive class for precision/recall and fairness.

    Raises:
        LooplineError: nothing logged in the period, or a bad window/period/column.
    """
    from loopline.core.metadata import MetadataStore

    spec = parse_window(window)
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
        data, spec, group_column=group_column, positive_label=positive_label, alerts=alerts
    )


def build_report_from_data(
    data: MonitorData,
    window: str | int | WindowSpec,
    *,
    group_column: str | None = None,
    positive_label: str | None = None,
    alerts: list[dict[str, Any]] | None = None,
) -> MonitorReport:
    """:func:`build_report` on data already loaded (tests and notebooks use this)."""
    from loopline.monitor.drift import drift_report

    spec = parse_window(window)
    frame = data.frame
    messages = list(data.messages)
    profile, reference_note = data.profile, data.reference_note
    if profile is None:
        profile, reference_note = fallback_profile(frame, spec)
        messages.append(
            f"no reference profile is stored for {data.model_name!r}: drift is measured "
            f"against {reference_note}"
        )
    windows = drift_over_windows(profile, frame, spec)
    current = served(frame)
    overall = drift_report(without_labels(profile), window_inputs(current, profile))
    performance = windowed_performance(
        frame, spec, positive_label=positive_label, unmatched_feedback=data.unmatched_feedback
    )
    messages.extend(performance.messages)
    concept = detect_concept_drift(
        performance,
        input_drift={w.key: w.share_drifted for w in windows if w.share_drifted is not None},
        reference=_reference_metrics(profile),
    )
    fairness = None
    if group_column:
        fairness = _fairness_section(
            current, group_column, spec, positive_label or performance.positive_label
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
        performance=performance.to_dict(),
        concept_drift=concept.to_dict(),
        fairness=fairness,
        alerts=alerts or [],
        messages=messages,
    )


def _reference_metrics(profile: Profile | None) -> dict[str, Any] | None:
    """The profile's overall training/evaluation metrics (accuracy, precision, recall)."""
    if profile is None or not profile.performance:
        return None
    overall = profile.performance.get("overall")
    return overall if isinstance(overall, dict) else None


def _fairness_section(
    frame: pd.DataFrame, group_column: str, spec: WindowSpec, positive: str | None
) -> dict[str, Any]:
    from loopline.monitor.fairness import fairness_of_frame, fairness_over_time

    overall = fairness_of_frame(frame, group_column, positive_label=positive)
    over_time = fairness_over_time(frame, group_column, spec, positive_label=overall.positive_label)
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
                row[key] = _utc(row[key]).isoformat()
    return rows


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
    """A short terminal summary: the headline, drift per feature, performance, fairness."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    perf = report.performance
    overall = perf.get("overall") or {}
    console.print(
        f"[bold]{report.model_name}[/] versions {', '.join(report.versions) or '-'}; "
        f"{report.period['start']} .. {report.period['end']}; "
        f"{report.n_predictions:,} predictions, {report.n_labeled:,} labelled "
        f"({_pct(overall.get('label_coverage'))}); reference: {report.reference['source']}"
    )
    console.print(_drift_table(report))
    table = Table(title=f"Performance per {report.window['window']} window")
    for name in ("window start", "n", "labelled", "accuracy", "macro-F1", "precision", "recall"):
        table.add_column(name, justify="left" if name == "window start" else "right")
    for w in perf["windows"]:
        if w["model_version"] is None:
            table.add_row(
                w["start"][:16],
                str(w["n_predictions"]),
                str(w["n_labeled"]),
                _fmt(w["accuracy"]),
                _fmt(w["macro_f1"]),
                _fmt(w["precision"]),
                _fmt(w["recall"]),
            )
    console.print(table)
    concept = report.concept_drift
    verdict = "[bold red]concept drift[/]" if concept["detected"] else "no concept drift"
    console.print(f"{verdict}: " + "; ".join(concept["evidence"]))
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
        console.print(f"[yellow]note:[/] {message}")


def _drift_table(report: MonitorReport) -> Any:
    from rich.table import Table

    table = Table(title="Drift against the reference (whole period; windows flagged)")
    for name in ("feature", "kind", "drifted", "score", "windows flagged", "first flagged"):
        table.add_column(name, justify="left" if name in ("feature", "kind") else "right")
    for feature in (report.drift or {}).get("features", []):
        if feature["role"] != "feature":
            continue
        name = feature["column"]
        flagged = [
            w["start"]
            for w in report.drift_over_time
            if w.get("features", {}).get(name, {}).get("drifted")
        ]
        judged = sum(1 for w in report.drift_over_time if "features" in w)
        table.add_row(
            name,
            feature["kind"],
            "[bold red]yes[/]" if feature["drifted"] else "no",
            _fmt(drift_score(feature)),
            f"{len(flagged)}/{judged}",
            flagged[0][:16] if flagged else "-",
        )
    return table


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


def _summary_section(data: dict[str, Any]) -> str:
    drift = data.get("drift") or {}
    drifted = drift.get("drifted_features") or []
    concept = data["concept_drift"]
    overall = data["performance"].get("overall") or {}
    badges = [
        _badge(
            f"data drift: {', '.join(drifted)}" if drifted else "no data drift",
            "bad" if drift.get("dataset_drift") else ("warn" if drifted else "ok"),
        ),
        _badge(
            "concept drift since " + str(concept["since"])[:16]
            if concept["detected"]
            else "no concept drift",
            "bad" if concept["detected"] else "ok",
        ),
        _badge(f"{len(data['alerts'])} alert(s)", "bad" if data["alerts"] else "ok"),
    ]
    facts = [
        ("predictions", f"{data['n_predictions']:,}"),
        ("with feedback", f"{data['n_labeled']:,} ({_pct(overall.get('label_coverage'))})"),
        ("feedback for unknown request ids", str(data["unmatched_feedback"])),
        ("accuracy (whole period)", _fmt(overall.get("accuracy"))),
        ("macro-F1 (whole period)", _fmt(overall.get("macro_f1"))),
    ]
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in facts)
    notes = "".join(f"<li>{_e(m)}</li>" for m in data["messages"])
    evidence = "".join(f"<li>{_e(m)}</li>" for m in concept["evidence"])
    return (
        f"<section id='summary'><h2>Summary</h2><p>{''.join(badges)}</p><table>{rows}</table>"
        f"<p>Concept drift check:</p><ul>{evidence}</ul>"
        + (f"<p>Notes:</p><ul>{notes}</ul>" if notes else "")
        + "</section>"
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
    scores = [
        [(w.get("features") or {}).get(f, {}).get("score") for w in windows] for f in features
    ]
    flags = [
        [bool((w.get("features") or {}).get(f, {}).get("drifted")) for w in windows]
        for f in features
    ]
    heat = svg_heatmap(features, labels, scores, flags)
    share = svg_line_chart(
        labels,
        {"share of features drifted": [w.get("share_drifted") for w in windows]},
        y_max=1.0,
    )
    return (
        "<section id='drift-over-time'><h2>Drift over time</h2>"
        "<p>Each cell: the largest drift effect of a feature in a window relative to its "
        "threshold (1 = at the threshold); a red border marks a feature flagged as drifted "
        "(significant after correction and large enough). Grey: no data.</p>"
        f"<div class='grid'><figure>{heat}</figure><figure>{share}"
        "<figcaption>Share of features flagged per window</figcaption></figure></div></section>"
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
    series = {
        "accuracy": [w["accuracy"] for w in windows],
        "macro-F1": [w["macro_f1"] for w in windows],
    }
    for version in data["versions"] if len(data["versions"]) > 1 else []:
        by_start = {
            w["start"]: w["accuracy"] for w in perf["windows"] if w["model_version"] == version
        }
        series[f"accuracy v{version}"] = [by_start.get(w["start"]) for w in windows]
    baseline = data["concept_drift"].get("baseline")
    metrics = svg_line_chart(labels, series, y_max=1.0, reference=baseline)
    coverage = svg_bar_chart(
        labels, {"label coverage": [w["label_coverage"] for w in windows]}, y_max=1.0
    )
    notes = "".join(f"<li>{_e(m)}</li>" for m in perf["messages"])
    return (
        "<section id='performance'><h2>Performance over time (delayed labels)</h2>"
        f"{_legend(list(series))}<div class='grid'><figure>{metrics}<figcaption>"
        "Metrics per window on the predictions whose feedback arrived; dashed: the baseline "
        f"({_e(data['concept_drift']['baseline_source'])})</figcaption></figure>"
        f"<figure>{coverage}<figcaption>Share of predictions with feedback</figcaption>"
        f"</figure></div>{'<ul>' + notes + '</ul>' if notes else ''}</section>"
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


def short_labels(starts: Sequence[str]) -> list[str]:
    """Window starts as short axis labels: ``05-01`` for whole days, else ``05-01 13:00``."""
    stamps = [pd.Timestamp(s) for s in starts]
    if all(t == t.normalize() for t in stamps):
        return [t.strftime("%m-%d") for t in stamps]
    return [t.strftime("%m-%d %H:%M") for t in stamps]


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
) -> str:
    """Grouped bars as inline SVG, one group per label and one bar per series."""
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
    parts.append(_x_labels([str(label)[:10] for label in labels], xs, height - 8))
    parts.append("</svg>")
    return "".join(parts)


def svg_heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    flags: Sequence[Sequence[bool]],
    *,
    cell: int = 22,
) -> str:
    """Rows x columns of cells shaded by value (0 white .. 3+ full red), flagged ones outlined."""
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
            value = values[r][c]
            x = label_width + c * cell
            fill = "#e4e7eb" if value is None else _heat_color(value)
            stroke = "#c81e1e" if flags[r][c] else "#ffffff"
            shown = "no data" if value is None else f"{value:.2f}x threshold"
            parts.append(
                f"<rect x='{x}' y='{y}' width='{cell - 2}' height='{cell - 2}' fill='{fill}' "
                f"stroke='{stroke}' stroke-width='2'><title>{_e(name)} @ {_e(column)}: "
                f"{shown}{' (drifted)' if flags[r][c] else ''}</title></rect>"
            )
    xs = [label_width + c * cell + cell / 2 for c in range(len(columns))]
    parts.append(_x_labels(list(columns), xs, 10 + cell * len(rows) + 10, rotate=True))
    parts.append("</svg>")
    return "".join(parts)


def _heat_color(value: float) -> str:
    level = min(max(value, 0.0) / 3.0, 1.0)
    green_blue = int(255 - 200 * level)
    return f"rgb(255,{green_blue},{green_blue})"
