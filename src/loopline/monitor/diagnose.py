"""Diagnose: "the model's accuracy dropped in production - why?"

:func:`diagnose` walks the usual suspects in the order that avoids wrong conclusions:

1. **Instrumentation** first: a column missing from the log, values gone missing or
   unparseable, predictions or probabilities that make no sense, holes in the log, feedback
   that uses other class names. A broken pipe makes every later statistic meaningless, so
   problems here mean "fix the pipeline" before anything else.
2. **Data drift**: which input features moved away from the reference profile, how much,
   and since which window.
3. **Concept drift**: performance (from the delayed feedback labels) falls while the
   inputs stay put, the feature-to-label relation moved, or some slices lost accuracy.
4. **Model versions**: a newly promoted version performing worse than the one before it.

It then recommends ``fix_pipeline``, ``rollback``, ``retrain`` or ``none``, with the
evidence. :class:`Diagnosis` is JSON-able (``to_dict``) and prints itself with rich. Its
``summary`` accounts for every instrumentation finding: a problem is the cause, and a
warning or information is named with the reason it does not count (``Finding.impact``).
``loopline monitor report`` shows this same diagnosis rather than wording its own.

The thresholds of every check are :class:`DiagnoseThresholds`, read from
``monitoring: {diagnose: {...}}`` in ``loopline.yaml`` (see :func:`diagnose_thresholds`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopline.errors import ConfigError
from loopline.monitor.logdata import (
    INPUT_PREFIX,
    PROBA_PREFIX,
    MonitorData,
    WindowDrift,
    drift_over_windows,
    fallback_note,
    fallback_profile,
    load_monitor_data,
)
from loopline.monitor.performance import (
    CARD_COLUMNS,
    LABEL,
    PREDICTION,
    TS,
    VERSION,
    ConceptDriftSignal,
    PerformanceReport,
    Window,
    WindowSpec,
    check_metric,
    detect_concept_drift,
    get_live_metric,
    iter_windows,
    label_relation_changes,
    metric_weight,
    parse_window,
    sample_name,
    served,
    windowed_performance,
)

if TYPE_CHECKING:
    from rich.console import Console

    from loopline.config import Settings
    from loopline.monitor.profile import Profile

__all__ = [
    "DiagnoseThresholds",
    "Diagnosis",
    "Finding",
    "concept_drift_findings",
    "data_drift_findings",
    "diagnose",
    "diagnose_data",
    "diagnose_thresholds",
    "instrumentation_findings",
    "slice_changes",
    "version_findings",
]

Stage = Literal["instrumentation", "data_drift", "concept_drift", "model_version"]
Severity = Literal["info", "warning", "problem"]


class DiagnoseThresholds(BaseModel):
    """The thresholds of :func:`diagnose`, from ``monitoring.diagnose`` in ``loopline.yaml``.

    Shares and rates are fractions (0.2 = 20 %); metric drops are in the metric's own
    units (accuracy 0.05 = 5 points). Unknown keys are rejected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    missing_jump: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Instrumentation: an input whose missing rate in a window exceeds the "
        "reference's by at least this much (fraction of rows) went missing: a broken feed, "
        "not a drifting population.",
    )
    invalid_share: float = Field(
        default=0.01,
        gt=0,
        le=1,
        description="Instrumentation: a numeric input whose present values in a window are "
        "not numbers at least this often (fraction of values) changed type.",
    )
    probability_tolerance: float = Field(
        default=0.01,
        ge=0,
        description="Instrumentation: logged class probabilities whose sum is further than "
        "this from 1 are invalid (absolute probability).",
    )
    gap_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Instrumentation: a window with fewer predictions than this fraction of "
        "the median window is a gap in the log.",
    )
    gap_min_traffic: int = Field(
        default=20,
        ge=0,
        description="Instrumentation: below this median number of predictions per window "
        "traffic is sparse and gaps are not reported (predictions per window).",
    )
    foreign_label_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Instrumentation: feedback labels that are none of the model's classes "
        "are a problem above this share of the labels (fraction), a warning below it.",
    )
    min_labels: int = Field(
        default=30,
        ge=1,
        description="Labelled predictions needed before a window, a slice or a model version "
        "is judged (count).",
    )
    metric_drop: float = Field(
        default=0.05,
        ge=0,
        description="Concept drift: the smallest fall of the metric below its baseline that "
        "counts, in metric units; a window must also fall by two standard errors.",
    )
    max_input_drift: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Concept drift: above this share of drifted input features (fraction) a "
        "window's fall is blamed on data drift, not on concept drift.",
    )
    relation_change: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Concept drift: a feature-to-label relation moved when the label "
        "distribution given the feature changed by this mean total-variation distance (0-1).",
    )
    rare_relation_change: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Concept drift, for a binary label with a rare positive class (under 10 "
        "% of the labels, as fraud): the feature-to-label relation moved when the positives' "
        "spread over the feature's bins, base rate factored out, moved by this total-variation "
        "distance (0-1) and the change is significant (a permutation test with days as "
        "blocks, Benjamini-Hochberg q <= 0.05 over the features).",
    )
    slice_drop: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Concept drift: a slice whose accuracy fell by at least this much "
        "(fraction, 0.1 = 10 points) between the baseline and the recent period is reported.",
    )
    version_drop: float = Field(
        default=0.05,
        ge=0,
        description="Model versions: a new version is worse than the previous one when its "
        "metric is lower by more than this (metric units) and by more than two standard "
        "errors.",
    )


_DEFAULT_THRESHOLDS = DiagnoseThresholds()


def diagnose_thresholds(settings: Settings) -> DiagnoseThresholds:
    """The :class:`DiagnoseThresholds` in ``settings.monitoring["diagnose"]`` (defaults if absent).

    Raises:
        ConfigError: the section is not a mapping, has an unknown key, or a bad value; the
            message names the key and the hint lists the allowed ones.
    """
    section = (settings.monitoring or {}).get("diagnose")
    allowed = ", ".join(DiagnoseThresholds.model_fields)
    hint = f"monitoring.diagnose takes {allowed} (see DiagnoseThresholds for each meaning)"
    if section is None:
        return _DEFAULT_THRESHOLDS
    if not isinstance(section, dict):
        raise ConfigError(
            f"monitoring.diagnose must be a mapping of thresholds, found {section!r}", hint=hint
        )
    try:
        return DiagnoseThresholds.model_validate(section)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(p) for p in error["loc"])
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown key {key!r}")
            else:
                problems.append(f"{key}: {error['msg']} (found {error['input']!r})")
        raise ConfigError(
            f"invalid monitoring.diagnose settings: {'; '.join(problems)}", hint=hint
        ) from None


@dataclass
class Finding:
    """One observation of one stage, with its evidence.

    ``severity``: ``problem`` explains (part of) a drop and calls for action, ``warning`` is
    worth knowing, ``info`` is context. ``since`` is the first window it was seen in.
    ``impact``: for an instrumentation warning or information, why it does not make the
    statistics untrustworthy (the conclusion quotes it).
    """

    stage: Stage
    severity: Severity
    title: str
    evidence: list[str] = field(default_factory=list)
    column: str | None = None
    since: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    impact: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dict(self.__dict__)


@dataclass
class Diagnosis:
    """The answer: what happened to performance, the findings per stage, and what to do.

    ``notes`` are what could not be looked at (never a repeat of a finding); ``concept`` is
    the concept-drift signal (:class:`~loopline.monitor.performance.ConceptDriftSignal`).
    """

    model_name: str
    window: dict[str, Any]
    period: dict[str, str | None]
    reference: str
    versions: list[str]
    n_predictions: int
    n_labeled: int
    unmatched_feedback: int
    performance: dict[str, Any]
    findings: list[Finding]
    cause: str
    recommendation: str
    summary: str
    evidence: list[str]
    notes: list[str] = field(default_factory=list)
    concept: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: Stage) -> list[Finding]:
        """The findings of one stage."""
        return [f for f in self.findings if f.stage == name]

    @property
    def drifted_features(self) -> list[str]:
        """Features with a data-drift problem (persistent drift)."""
        return [
            f.column
            for f in self.stage("data_drift")
            if f.severity == "problem" and f.column is not None
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; findings grouped by stage in the order they are checked."""
        out = {k: v for k, v in self.__dict__.items() if k != "findings"}
        out["findings"] = {
            stage: [f.to_dict() for f in self.stage(stage)]
            for stage in ("instrumentation", "data_drift", "concept_drift", "model_version")
        }
        out["drifted_features"] = self.drifted_features
        return out

    def print(self, console: Console | None = None) -> None:
        """Rich terminal output: headline, one block per stage, the recommendation."""
        _print_diagnosis(self, console)


# --- entry points -------------------------------------------------------------------------


def diagnose(
    model_name: str,
    settings: Settings,
    *,
    window: str | int = "1D",
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    version: str | None = None,
    metric: str = "accuracy",
    thresholds: DiagnoseThresholds | None = None,
    card_column: str | None = None,
) -> Diagnosis:
    """Explain a performance change of ``model_name`` from its log, feedback and profile.

    Args:
        window: window length (``"1h"``, ``"1D"``) or rows per window (``"1000"``).
        since, until: the period (dates, UTC times, or a look-back such as ``"14d"``).
        version: the version whose reference profile to use (default: the newest served).
        metric: the performance metric to follow (``accuracy``, ``macro_f1``, ``precision``,
            ``recall``, or a score-based one: ``average_precision``, ``roc_auc``,
            ``cp_at_100``; see :func:`loopline.monitor.performance.get_live_metric`).
        thresholds: the thresholds of the checks; default: ``monitoring.diagnose`` of the
            project settings (see :func:`diagnose_thresholds`), else the defaults.
        card_column: the logged card id for card precision@k (default: the first logged
            of :data:`~loopline.monitor.performance.CARD_COLUMNS`).

    Raises:
        ConfigError: invalid ``monitoring.diagnose`` settings.
        LooplineError: nothing logged in the period, or a bad window/period.
    """
    spec = parse_window(window)
    if thresholds is None:
        thresholds = diagnose_thresholds(settings)
    check_metric(metric)
    data = load_monitor_data(model_name, settings, since=since, until=until, version=version)
    return diagnose_data(data, spec, metric=metric, thresholds=thresholds, card_column=card_column)


def diagnose_data(
    data: MonitorData,
    window: str | int | WindowSpec = "1D",
    *,
    metric: str = "accuracy",
    thresholds: DiagnoseThresholds | None = None,
    windows: Sequence[WindowDrift] | None = None,
    card_column: str | None = None,
) -> Diagnosis:
    """:func:`diagnose` on already loaded data (tests, notebooks and the report use this).

    ``thresholds`` default to :class:`DiagnoseThresholds`' defaults (no settings here);
    ``windows`` is the drift per window when the caller has it already (the report), else
    it is computed.
    """
    spec = parse_window(window)
    limits = thresholds or _DEFAULT_THRESHOLDS
    frame = data.frame
    profile, reference = data.profile, data.reference_note
    findings: list[Finding] = []
    if profile is None:
        profile, reference = fallback_profile(frame, spec)
        findings.append(
            _broken(
                "no reference profile stored for this model",
                f"{fallback_note(reference)}; store a profile with each model version to "
                "compare with its training data",
                severity="warning",
                impact="drift means 'changed since the log began', not 'since training'",
            )
        )
    if windows is None:
        windows = drift_over_windows(profile, frame, spec)
    # The stray feedback and the gaps are instrumentation findings below: the performance
    # report's notes about them would only repeat those.
    check_metric(metric)
    perf = windowed_performance(frame, spec, metrics=[metric], card_column=card_column)
    findings += instrumentation_findings(
        frame, profile, windows, spec, data.unmatched_feedback, thresholds=limits
    )
    broken = {f.column for f in findings if f.severity == "problem" and f.column}
    findings += data_drift_findings(windows, skip=broken)
    signal = detect_concept_drift(
        perf,
        input_drift={w.key: w.share_drifted for w in windows if w.share_drifted is not None},
        reference=_reference_metrics(profile),
        metric=metric,
        min_drop=limits.metric_drop,
        min_labels=limits.min_labels,
        max_input_drift=limits.max_input_drift,
    )
    drifted = any(f.severity == "problem" for f in findings if f.stage == "data_drift")
    findings += concept_drift_findings(
        frame, profile, perf, signal, inputs_drifted=drifted, thresholds=limits
    )
    findings += version_findings(perf, data.versions, metric, thresholds=limits)
    return _conclude(data, spec, reference, perf, signal, findings, limits)


def _reference_metrics(profile: Profile) -> dict[str, Any] | None:
    overall = (profile.performance or {}).get("overall")
    return overall if isinstance(overall, dict) else None


# --- 1. instrumentation -------------------------------------------------------------------


def instrumentation_findings(
    frame: pd.DataFrame,
    profile: Profile,
    windows: Sequence[WindowDrift],
    spec: WindowSpec,
    unmatched_feedback: int = 0,
    *,
    thresholds: DiagnoseThresholds | None = None,
) -> list[Finding]:
    """Schema changes, missing/invalid values, prediction sanity, log gaps, feedback."""
    limits = thresholds or _DEFAULT_THRESHOLDS
    live = served(frame)
    parts = [w for w in iter_windows(live, spec) if not w.frame.empty]
    findings = _schema_findings(live, profile, parts)
    findings += _value_findings(live, profile, parts, limits)
    findings += _prediction_findings(live, limits)
    findings += _gap_findings(windows, spec, limits)
    findings += _feedback_findings(live, unmatched_feedback, limits)
    return findings


def _broken(title: str, *evidence: str, severity: Severity = "problem", **extra: Any) -> Finding:
    """An instrumentation finding (a problem unless said otherwise)."""
    return Finding("instrumentation", severity, title, list(evidence), **extra)


def _logged_inputs(frame: pd.DataFrame) -> dict[str, str]:
    """Training name -> logged column (``amount`` -> ``input.amount``)."""
    return {c.removeprefix(INPUT_PREFIX): c for c in frame.columns if c.startswith(INPUT_PREFIX)}


def _schema_findings(
    frame: pd.DataFrame, profile: Profile, parts: Sequence[Window]
) -> list[Finding]:
    """Inputs of the reference that are never logged, and logged inputs it never had."""
    logged = _logged_inputs(frame)
    findings = [
        _broken(
            f"input {name!r} is not in the prediction log",
            f"the reference profile has {name!r} but no logged prediction carries it: "
            "the logger or the client stopped sending it",
            column=name,
        )
        for name in profile.features
        if name not in logged
    ]
    known = set(profile.features) | set(profile.skipped)
    for name, column in logged.items():
        if name in known:
            continue
        first = next((w.key for w in parts if w.frame[column].notna().any()), None)
        if name in CARD_COLUMNS:  # logged for card precision@k, not as a model input
            findings.append(
                _broken(
                    f"card id {name!r} in the log",
                    f"{name!r} is logged since {first} beside the model's inputs; card "
                    "precision@k ranks cards by it",
                    severity="info",
                    column=name,
                    since=first,
                    impact="an id column, not a model input: it is neither compared nor judged",
                )
            )
            continue
        findings.append(
            _broken(
                f"new input {name!r} in the log",
                f"{name!r} is logged since {first} but the model's reference never had it: "
                "the request schema changed",
                severity="warning",
                column=name,
                since=first,
                impact="an input the reference does not have is neither compared nor judged",
            )
        )
    return findings


def _value_findings(
    frame: pd.DataFrame, profile: Profile, parts: Sequence[Window], limits: DiagnoseThresholds
) -> list[Finding]:
    """Per window: missing-rate jumps, and values of numeric inputs that are not numbers."""
    logged = _logged_inputs(frame)
    findings = []
    for name in profile.features:
        if name not in logged:
            continue
        column = profile.columns[name]
        missing = {w.key: float(w.frame[logged[name]].isna().mean()) for w in parts}
        jumps = {k: v for k, v in missing.items() if v - column.missing_rate >= limits.missing_jump}
        if jumps:
            first = next(iter(jumps))
            findings.append(
                _broken(
                    f"input {name!r} went missing",
                    f"{name!r} is missing in up to {max(jumps.values()):.0%} of the rows of a "
                    f"window since {first} (reference: {column.missing_rate:.1%}); "
                    f"{len(jumps)} of {len(missing)} windows affected",
                    column=name,
                    since=first,
                    data={"missing_rate_by_window": missing},
                )
            )
        invalid = _invalid_numbers(parts, logged[name]) if column.kind == "numeric" else {}
        bad = {k: v for k, v in invalid.items() if v >= limits.invalid_share}
        if bad:
            first = next(iter(bad))
            findings.append(
                _broken(
                    f"input {name!r} changed type",
                    f"up to {max(bad.values()):.0%} of the values of numeric input {name!r} "
                    f"are not numbers since {first}: the logged type changed",
                    column=name,
                    since=first,
                    data={"invalid_share_by_window": bad},
                )
            )
    return findings


def _invalid_numbers(parts: Sequence[Window], column: str) -> dict[str, float]:
    """Per window, the share of present values that are not finite numbers."""
    shares = {}
    for win in parts:
        present = win.frame[column].dropna()
        if len(present):
            numbers = pd.to_numeric(present, errors="coerce").astype("float64")
            shares[win.key] = float((~np.isfinite(numbers)).mean())
    return shares


def _prediction_findings(frame: pd.DataFrame, limits: DiagnoseThresholds) -> list[Finding]:
    """Rows without a prediction or model version, and impossible class probabilities."""
    findings = []
    if PREDICTION in frame.columns and frame[PREDICTION].isna().any():
        count = int(frame[PREDICTION].isna().sum())
        findings.append(
            _broken(
                "predictions missing from the log",
                f"{count:,} logged rows carry no prediction",
                column=PREDICTION,
            )
        )
    probas = [c for c in frame.columns if c.startswith(PROBA_PREFIX)]
    if probas:
        values = frame[probas].apply(pd.to_numeric, errors="coerce")
        out_of_range = ((values < 0) | (values > 1)).any(axis=1)
        complete = values.notna().all(axis=1)
        bad_sum = (values[complete].sum(axis=1) - 1).abs() > limits.probability_tolerance
        broken = int(out_of_range.sum() + bad_sum.sum())
        if broken:
            findings.append(
                _broken(
                    "invalid class probabilities in the log",
                    f"{broken:,} rows have probabilities outside [0, 1] or not summing to 1",
                )
            )
    if VERSION in frame.columns and frame[VERSION].isna().any():
        findings.append(
            _broken(
                "predictions without a model version",
                f"{int(frame[VERSION].isna().sum()):,} rows do not say which version made them",
                severity="warning",
                impact="they count for all versions together, in no single version's figures",
            )
        )
    return findings


def _gap_findings(
    windows: Sequence[WindowDrift], spec: WindowSpec, limits: DiagnoseThresholds
) -> list[Finding]:
    """Empty windows, or windows with a small fraction of the usual traffic."""
    if spec.rows is not None or len(windows) < 3:
        return []
    counts = np.array([w.n_rows for w in windows])
    typical = float(np.median(counts[counts > 0])) if (counts > 0).any() else 0.0
    if typical < limits.gap_min_traffic:  # sparse traffic: empty windows are normal
        empty_windows = [w for w in windows if w.n_rows == 0]
        if not empty_windows:
            return []
        return [
            _broken(
                "empty windows in sparse traffic",
                f"{len(empty_windows)} window(s) hold no predictions, first at "
                f"{empty_windows[0].key}; with a median of {typical:.0f} predictions per "
                f"window (under gap_min_traffic={limits.gap_min_traffic}) that is expected",
                severity="info",
                since=empty_windows[0].key,
                data={"windows": [w.key for w in empty_windows]},
                impact="an empty window has nothing to judge; the others are judged as usual",
            )
        ]
    # The last window is usually still filling up: not a gap.
    low = [w for w in windows[:-1] if w.n_rows < limits.gap_share * typical]
    if not low:
        return []
    empty = sum(1 for w in low if w.n_rows == 0)
    return [
        _broken(
            "gaps in the prediction log",
            f"{empty} window(s) with no predictions and {len(low) - empty} with under "
            f"{limits.gap_share:.0%} of the usual {typical:.0f} per window, first at "
            f"{low[0].key}: the logger or the "
            "traffic stopped",
            severity="warning",
            since=low[0].key,
            data={"windows": [w.key for w in low]},
            impact="the windows around the gap are judged as usual; check that the logger "
            "or the traffic did not stop",
        )
    ]


def _feedback_findings(
    frame: pd.DataFrame, unmatched: int, limits: DiagnoseThresholds
) -> list[Finding]:
    """Feedback for request ids not in the log, and labels that are no model class."""
    findings = []
    labels = frame[LABEL].dropna().astype(str) if LABEL in frame.columns else pd.Series()
    if unmatched:
        findings.append(
            _broken(
                "feedback for unknown request ids",
                f"{unmatched:,} feedback label(s) name request ids that are not in the log "
                f"(ignored; {len(labels):,} labels matched)",
                severity="warning" if unmatched > len(labels) else "info",
                impact="those labels are ignored: they join no prediction, so no metric uses "
                "them"
                + (
                    "; check that clients send back the request id the server returned"
                    if unmatched > len(labels)
                    else ""
                ),
            )
        )
    if labels.empty:
        return findings
    classes = set(frame[PREDICTION].dropna().astype(str))
    classes |= {c.removeprefix(PROBA_PREFIX) for c in frame.columns if c.startswith(PROBA_PREFIX)}
    foreign = labels[~labels.isin(classes)]
    if len(foreign):
        share = len(foreign) / len(labels)
        examples = ", ".join(map(repr, foreign.value_counts().index[:3]))
        findings.append(
            _broken(
                "feedback labels that are not model classes",
                f"{share:.0%} of the feedback labels ({examples}) are none of the model's "
                f"classes {sorted(classes)}: the labelling source uses other names",
                severity="problem" if share > limits.foreign_label_share else "warning",
                column=LABEL,
                impact=f"they count as wrong predictions: the metrics are at most {share:.0%} "
                f"too low (under foreign_label_share={limits.foreign_label_share:.0%})",
            )
        )
    return findings


# --- 2. data drift ------------------------------------------------------------------------


def data_drift_findings(
    windows: Sequence[WindowDrift], skip: set[str] | None = None
) -> list[Finding]:
    """Per feature: whether it drifted, since which window, and by how much.

    A feature still flagged in the latest judged window is a ``problem`` (its ``since`` is
    the start of that unbroken run of flagged windows); one flagged only earlier is a
    ``warning``. Columns in ``skip`` (explained by instrumentation) are left out.
    """
    skip = skip or set()
    judged = [w for w in windows if w.report is not None]
    if not judged or judged[-1].report is None:
        return []
    findings = []
    for column in (f.column for f in judged[-1].report.features if f.column not in skip):
        results = [(w, _result(w, column)) for w in judged]
        results = [(w, r) for w, r in results if r is not None and r.status == "ok"]
        flagged = [(w, r) for w, r in results if r.drifted]
        if flagged:
            findings.append(_drift_finding(column, results, flagged))
    return sorted(findings, key=lambda f: (f.severity != "problem", -f.data["score"]))


def _result(window: WindowDrift, column: str) -> Any:
    assert window.report is not None
    for result in window.report.features:
        if result.column == column:
            return result
    return None


def _drift_finding(column: str, results: list[Any], flagged: list[Any]) -> Finding:
    from loopline.monitor.drift import SCORE_MEANING, drift_score

    last_window, last = results[-1]
    persistent = last.drifted
    run_start = last_window.key
    if persistent:
        for win, result in reversed(results):
            if not result.drifted:
                break
            run_start = win.key
    latest_window, latest = flagged[-1]
    measured = drift_score(latest, latest_window.report.config)
    score = 0.0 if measured is None else measured.value
    role = latest.role
    title = f"{'prediction' if role != 'feature' else 'input'} {column!r} drifted"
    evidence = [
        f"flagged in {len(flagged)} of {len(results)} windows, first at {flagged[0][0].key}"
        + (f", continuously since {run_start}" if persistent else ", not in the latest one"),
        f"latest ({latest_window.key}): " + "; ".join(latest.reasons),
    ]
    if measured is not None:
        evidence.append(f"drift score {measured.text()}")
    means = latest.details
    if "mean" in means and "mean_reference" in means:
        evidence.append(f"mean {means['mean_reference']:.4g} -> {means['mean']:.4g}")
    if means.get("new_categories"):
        evidence.append(f"new categories: {', '.join(list(means['new_categories'])[:5])}")
    severity: Severity = "problem" if persistent and role == "feature" else "warning"
    if role != "feature":
        severity = "info"  # prediction drift follows from input or concept drift
    return Finding(
        "data_drift",
        severity,
        title,
        evidence,
        column=column,
        since=run_start if persistent else flagged[0][0].key,
        data={
            "score": round(score, 3),
            "score_effect": None if measured is None else measured.to_dict(),
            "score_meaning": SCORE_MEANING,
            "first_flagged": flagged[0][0].key,
            "windows_flagged": len(flagged),
            "windows_judged": len(results),
            "role": role,
            "persistent": persistent,
        },
    )


# --- 3. concept drift ---------------------------------------------------------------------


def concept_drift_findings(
    frame: pd.DataFrame,
    profile: Profile,
    perf: PerformanceReport,
    signal: ConceptDriftSignal,
    *,
    inputs_drifted: bool = False,
    thresholds: DiagnoseThresholds | None = None,
) -> list[Finding]:
    """The concept-drift signal plus how the feature-to-label relation and slices moved.

    ``inputs_drifted``: some input drifted persistently. Then a moved relation between one
    feature and the label may follow from the drift of another feature (the mix inside
    each bin changes), so it is reported as context, not as a warning.
    """
    limits = thresholds or _DEFAULT_THRESHOLDS
    live = served(frame)
    labeled = live[live[LABEL].notna() & live[PREDICTION].notna()]
    if len(labeled) < limits.min_labels:
        return [
            Finding(
                "concept_drift",
                "info",
                "not enough feedback to judge performance",
                [
                    f"{len(labeled)} predictions have a label; post labels to /feedback to "
                    "measure performance and concept drift"
                ],
            )
        ]
    recent = _recent_mask(labeled, signal, perf)
    relation = _relation_evidence(
        labeled, profile, ~recent, recent, limits, positive_label=perf.positive_label
    )
    slices = slice_changes(labeled, profile, ~recent, recent, thresholds=limits)
    evidence = [*signal.evidence, *(r["text"] for r in relation[:5])]
    evidence += [s["text"] for s in slices[:5]]
    severity: Severity = "info"
    title = "no concept drift found"
    if signal.detected and signal.from_first_window:
        severity = "problem"
        title = "performance is below the reference from the first window, inputs stable"
    elif signal.detected:
        severity, title = "problem", "performance fell while the inputs stayed stable"
    elif relation and inputs_drifted:
        title = "the feature-to-label relation moved, along with the inputs"
    elif relation:
        severity, title = "warning", "the feature-to-label relation moved"
    return [
        Finding(
            "concept_drift",
            severity,
            title,
            evidence,
            since=signal.since,
            data={"signal": signal.to_dict(), "relation_changes": relation, "slices": slices},
        )
    ]


def _relation_evidence(
    labeled: pd.DataFrame,
    profile: Profile,
    baseline: pd.Series,
    recent: pd.Series,
    limits: DiagnoseThresholds,
    *,
    positive_label: str | None = None,
) -> list[dict[str, Any]]:
    features = [INPUT_PREFIX + name for name in profile.features]
    changes = label_relation_changes(
        labeled, features, baseline, recent, positive_label=positive_label
    )
    out = []
    for item in changes:
        name = item["feature"].removeprefix(INPUT_PREFIX)
        if item.get("measure") == "positive_spread":
            q = item.get("q_value")
            if item["change"] < limits.rare_relation_change or q is None or q > _RELATION_Q:
                continue
            out.append({**item, "feature": name, "text": _rare_relation_text(name, item)})
            continue
        if item["change"] < limits.relation_change:
            continue
        text = (
            f"the label given {name!r} changed: mean total-variation distance "
            f"{item['change']:.2f} between the periods"
        )
        out.append({**item, "feature": name, "text": text})
    return out


# A rare class's relation change counts only when significant at this Benjamini-Hochberg
# q-value (over the features compared; p-values of a permutation test with days as blocks).
_RELATION_Q = 0.05


def _rare_relation_text(name: str, item: dict[str, Any]) -> str:
    def rates(key: str) -> str:
        return "/".join(f"{100 * b[key]:.2f}" for b in item["bins"])

    before, after = item["positives"]
    return (
        f"the label given {name!r} changed: {item['change']:.0%} of the "
        f"{item['positive_label']!r} labels fall in other bins of {name!r} than the baseline's "
        f"per-bin rates predict (base rate factored out; q={item['q_value']:.1g}, "
        f"{before} and {after} positives); rate per bin "
        f"{', '.join(b['bin'] for b in item['bins'])}: {rates('rate_before')}% -> "
        f"{rates('rate_after')}%"
    )


def _recent_mask(
    labeled: pd.DataFrame, signal: ConceptDriftSignal, perf: PerformanceReport
) -> pd.Series:
    """Rows of the suspect period: since the first degraded window, else the last quarter."""
    ts = pd.to_datetime(labeled[TS], utc=True)
    start = signal.since or (
        signal.degraded_windows[0]["start"] if signal.degraded_windows else None
    )
    if start is None:
        series = [w for w in perf.series(None) if w.n_labeled]
        cut = series[-max(1, len(series) // 4)].start if len(series) >= 2 else ts.max()
        return ts >= cut
    return ts >= pd.Timestamp(start)


def slice_changes(
    labeled: pd.DataFrame,
    profile: Profile,
    baseline: pd.Series,
    recent: pd.Series,
    *,
    thresholds: DiagnoseThresholds | None = None,
) -> list[dict[str, Any]]:
    """Slices (values of the profile's slice columns, or of categorical inputs) whose
    accuracy fell by at least ``slice_drop`` (default 10 points) between the baseline and
    the recent period, with at least ``min_labels`` labels in both."""
    limits = thresholds or _DEFAULT_THRESHOLDS
    columns = profile.slices or [
        c.name for c in profile.columns.values() if c.role == "feature" and c.kind == "categorical"
    ]
    correct = labeled[LABEL].astype(str) == labeled[PREDICTION].astype(str)
    out = []
    for name in columns:
        column = INPUT_PREFIX + name
        if column not in labeled.columns:
            continue
        keys = labeled[column].astype("string").fillna("(missing)")
        before = correct[baseline].groupby(keys[baseline]).agg(["mean", "size"])
        after = correct[recent].groupby(keys[recent]).agg(["mean", "size"])
        for value in after.index.intersection(before.index):
            n_before, n_after = int(before.loc[value, "size"]), int(after.loc[value, "size"])
            drop = float(before.loc[value, "mean"] - after.loc[value, "mean"])
            if min(n_before, n_after) >= limits.min_labels and drop >= limits.slice_drop:
                out.append(
                    {
                        "column": name,
                        "value": str(value),
                        "drop": round(drop, 3),
                        "text": f"accuracy on {name}={value} fell {before.loc[value, 'mean']:.2f} "
                        f"-> {after.loc[value, 'mean']:.2f} ({n_after} labels)",
                    }
                )
    return sorted(out, key=lambda s: -s["drop"])


# --- 4. model versions --------------------------------------------------------------------


def version_findings(
    perf: PerformanceReport,
    versions: list[str],
    metric: str,
    *,
    thresholds: DiagnoseThresholds | None = None,
) -> list[Finding]:
    """A newer version clearly worse than the one before it, on the labelled predictions.

    When both versions served labelled traffic in the same windows (a canary or a shadow),
    only those windows are compared, which rules out a change of the data as the cause;
    otherwise each version's whole period is used, and the evidence says so. "Clearly":
    lower by more than ``version_drop`` and by more than two standard errors.
    """
    limits = thresholds or _DEFAULT_THRESHOLDS
    if len(versions) < 2:
        return []
    newest, previous = versions[-1], versions[-2]
    shared = _labelled_starts(perf, newest) & _labelled_starts(perf, previous)
    (new_value, n_new), (old_value, n_old) = (
        _pooled(perf, v, metric, shared) for v in (newest, previous)
    )
    basis = "on the same windows (both versions served them)"
    if min(n_new, n_old) < limits.min_labels:
        (new_value, n_new), (old_value, n_old) = (
            _pooled(perf, v, metric, None) for v in (newest, previous)
        )
        basis = "each over its own period (a change of the data at the switch looks the same)"
    if new_value is None or old_value is None or min(n_new, n_old) < limits.min_labels:
        return []
    noise = 2 * math.sqrt(max(old_value * (1 - old_value), 1e-4) * (1 / n_new + 1 / n_old))
    unit = sample_name(metric) if get_live_metric(metric) is not None else "labels"
    text = (
        f"{metric} {new_value:.3f} on {n_new} {unit} for v{newest} against {old_value:.3f} on "
        f"{n_old} {unit} for v{previous}, {basis}"
    )
    if old_value - new_value <= max(limits.version_drop, noise):
        return [
            Finding("model_version", "info", f"version {newest} performs like {previous}", [text])
        ]
    return [
        Finding(
            "model_version",
            "problem",
            f"version {newest} is worse than version {previous}",
            [text],
            since=min(_labelled_starts(perf, newest)),
            data={
                "newest": newest,
                "previous": previous,
                "newest_value": new_value,
                "previous_value": old_value,
                "same_windows": basis.startswith("on the same"),
            },
        )
    ]


def _labelled_starts(perf: PerformanceReport, version: str) -> set[str]:
    return {w.start.isoformat() for w in perf.series(version) if w.n_labeled}


def _pooled(
    perf: PerformanceReport, version: str, metric: str, starts: set[str] | None
) -> tuple[float | None, int]:
    """The metric over the chosen windows of a version, weighted by their label counts
    (by their own sample for a score-based metric: labelled positives for average
    precision)."""
    rows = [
        w
        for w in perf.series(version)
        if w.metric(metric) is not None and (starts is None or w.start.isoformat() in starts)
    ]
    n = sum(metric_weight(w, metric) for w in rows)
    if not n:
        return None, 0
    return sum((w.metric(metric) or 0.0) * metric_weight(w, metric) for w in rows) / n, n


# --- conclusion ---------------------------------------------------------------------------


def _conclude(
    data: MonitorData,
    spec: WindowSpec,
    reference: str,
    perf: PerformanceReport,
    signal: ConceptDriftSignal,
    findings: list[Finding],
    limits: DiagnoseThresholds,
) -> Diagnosis:
    performance = _performance_summary(perf, signal, limits.min_labels)
    cause, recommendation, summary, evidence = _decide(findings, performance)
    frame = served(data.frame)
    ts = pd.to_datetime(frame[TS], utc=True)
    return Diagnosis(
        model_name=data.model_name,
        window=spec.to_dict(),
        period={"start": ts.min().isoformat(), "end": ts.max().isoformat()},
        reference=reference,
        versions=data.versions,
        n_predictions=len(frame),
        n_labeled=int(frame[LABEL].notna().sum()),
        unmatched_feedback=data.unmatched_feedback,
        performance=performance,
        findings=findings,
        cause=cause,
        recommendation=recommendation,
        summary=summary,
        evidence=evidence,
        # What the findings do not say already (the performance report's notes about
        # feedback, empty windows and missing labels are findings above), each once.
        notes=list(dict.fromkeys(data.messages)),
        concept=signal.to_dict(),
    )


def _performance_summary(
    perf: PerformanceReport, signal: ConceptDriftSignal, min_labels: int
) -> dict[str, Any]:
    degraded = signal.degraded_windows
    recent = None
    if degraded:
        labels = sum(d["n_labeled"] for d in degraded)
        recent = sum(d["value"] * d["n_labeled"] for d in degraded) / labels
    return {
        "metric": signal.metric,
        # Measured: some window has enough labels to compare with the baseline.
        "measured": any(w.sample_size(signal.metric) >= min_labels for w in perf.series(None)),
        "baseline": signal.baseline,
        "baseline_source": signal.baseline_source,
        "recent": None if recent is None else round(recent, 4),
        "dropped": bool(degraded),
        "since": degraded[0]["start"] if degraded else None,
        "from_first_window": signal.from_first_window,
        "overall": None if perf.overall is None else perf.overall.to_dict(),
    }


def _decide(
    findings: list[Finding], performance: dict[str, Any]
) -> tuple[str, str, str, list[str]]:
    """Cause, recommendation, summary and evidence; the summary also names every
    instrumentation warning or information and why it does not count as a problem."""
    cause, recommendation, summary, evidence = _cause(findings, performance)
    minor = [f for f in findings if f.stage == "instrumentation" and f.severity != "problem"]
    if minor:
        listed = "; ".join(f"{f.title} ({f.impact or f.severity})" for f in minor)
        summary += f" Not counted as instrumentation problems: {listed}."
    return cause, recommendation, summary, evidence


def _cause(findings: list[Finding], performance: dict[str, Any]) -> tuple[str, str, str, list[str]]:
    """Cause, recommendation, one-line summary and the evidence, in the checking order."""
    problems = {
        s: [f for f in findings if f.stage == s and f.severity == "problem"]
        for s in ("instrumentation", "data_drift", "concept_drift", "model_version")
    }
    headline = _headline(performance)
    if problems["instrumentation"]:
        items = problems["instrumentation"]
        return (
            "instrumentation",
            "fix_pipeline",
            f"{headline}: the logging/feature pipeline is broken "
            f"({'; '.join(f.title for f in items)}). Fix it first: statistics of the "
            "affected inputs are not trustworthy until then.",
            _evidence(items),
        )
    if problems["model_version"]:
        item = problems["model_version"][0]
        return (
            "model_version",
            "rollback",
            f"{headline}: {item.title}. Roll back to version {item.data['previous']}.",
            _evidence([item]),
        )
    drifted = problems["data_drift"]
    unmeasured = not performance["measured"] or performance["baseline"] is None
    if drifted and (performance["dropped"] or unmeasured):
        names = ", ".join(repr(f.column) for f in drifted)
        since = min(f.since or "" for f in drifted)
        return (
            "data_drift",
            "retrain",
            f"{headline}: the inputs {names} drifted away from the training data "
            f"(since {since}). Retrain on recent data"
            + (" after collecting labels for it." if performance["baseline"] is None else "."),
            _evidence(drifted + problems["concept_drift"]),
        )
    if problems["concept_drift"]:
        item = problems["concept_drift"][0]
        if item.data.get("signal", {}).get("from_first_window"):
            return (
                "concept_drift",
                "retrain",
                f"{headline}, while the inputs look like the training data: a difference "
                "between training and serving (feature computation skew, or an optimistic "
                "evaluation) rather than a change over time. Check that serving computes "
                "the inputs as training did; if it does, retrain on recently labelled data.",
                _evidence([item]),
            )
        return (
            "concept_drift",
            "retrain",
            f"{headline}: concept drift - the relation between the inputs and the label "
            f"changed since {item.since} while the inputs stayed stable. Retrain on "
            "recently labelled data.",
            _evidence([item]),
        )
    if drifted:
        names = ", ".join(repr(f.column) for f in drifted)
        return (
            "data_drift",
            "none",
            f"The inputs {names} drifted but {performance['metric']} held: no action "
            "needed yet; keep watching.",
            _evidence(drifted),
        )
    return (
        "none",
        "none",
        f"{headline}; no instrumentation problem, drift or concept drift found.",
        [],
    )


def _headline(performance: dict[str, Any]) -> str:
    metric, base = performance["metric"], performance["baseline"]
    if base is None or not performance["measured"]:
        return f"{metric} cannot be measured (too few feedback labels)"
    if performance.get("from_first_window") and performance["recent"] is not None:
        return (
            f"{metric} is {performance['recent']:.3f}, below {base:.3f} "
            f"({performance['baseline_source']}) from the first window on"
        )
    if performance["dropped"] and performance["recent"] is not None:
        return (
            f"{metric} fell from {base:.3f} ({performance['baseline_source']}) to "
            f"{performance['recent']:.3f} since {str(performance['since'])[:16]}"
        )
    return f"{metric} held near {base:.3f} ({performance['baseline_source']})"


def _evidence(findings: list[Finding]) -> list[str]:
    return [f"{f.title}: {line}" for f in findings for line in f.evidence]


# --- terminal -----------------------------------------------------------------------------

_MARK = {"problem": "[bold red]✗[/]", "warning": "[yellow]![/]", "info": "[dim]·[/]"}
_STAGES = (
    ("instrumentation", "1. Instrumentation"),
    ("data_drift", "2. Data drift"),
    ("concept_drift", "3. Concept drift"),
    ("model_version", "4. Model versions"),
)
_ACTIONS = {
    "fix_pipeline": "FIX THE PIPELINE",
    "rollback": "ROLL BACK",
    "retrain": "RETRAIN",
    "none": "NO ACTION",
}


def _print_diagnosis(diagnosis: Diagnosis, console: Console | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel

    console = console or Console()
    console.print(
        f"[bold]{escape(diagnosis.model_name)}[/] versions "
        f"{', '.join(diagnosis.versions) or '-'}; {diagnosis.period['start']} .. "
        f"{diagnosis.period['end']}; {diagnosis.n_predictions:,} predictions, "
        f"{diagnosis.n_labeled:,} labelled; reference: {escape(diagnosis.reference)}"
    )
    for stage, title in _STAGES:
        items = diagnosis.stage(stage)  # type: ignore[arg-type]
        console.print(f"\n[bold]{title}[/]" + ("" if items else ": nothing found"))
        for item in items:
            since = f" (since {item.since[:16]})" if item.since else ""
            console.print(f"  {_MARK[item.severity]} {escape(item.title)}{escape(since)}")
            for line in item.evidence:
                console.print(f"      {escape(line)}", highlight=False)
    for note in diagnosis.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    style = "green" if diagnosis.recommendation == "none" else "red"
    action = _ACTIONS.get(diagnosis.recommendation, diagnosis.recommendation)
    console.print()
    console.print(
        Panel(
            escape(diagnosis.summary),
            title=f"Recommendation: {action}",
            border_style=style,
        )
    )
