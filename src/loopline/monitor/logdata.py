"""What monitoring reads: a model's prediction log with its feedback, its reference profile,
and the log cut into windows, each compared with the reference.

Both :mod:`loopline.monitor.report` and :mod:`loopline.monitor.diagnose` start here, so the
report and the diagnosis see the same data and the same per-window drift decisions (the
report then explains them with the diagnosis' words: it imports ``diagnose``, never the
other way round).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pandas as pd

from loopline.errors import DataError, LooplineError
from loopline.monitor.performance import (
    TS,
    VERSION,
    WindowSpec,
    attach_labels,
    iter_windows,
    served,
)

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.monitor.drift import DriftConfig, DriftReport, FeatureDrift
    from loopline.monitor.profile import Profile

__all__ = [
    "INPUT_PREFIX",
    "PROBA_PREFIX",
    "MonitorData",
    "WindowDrift",
    "drift_over_windows",
    "drift_score",
    "fallback_note",
    "fallback_profile",
    "load_monitor_data",
    "parse_since",
    "window_inputs",
    "without_labels",
]

INPUT_PREFIX = "input."
PROBA_PREFIX = "proba."


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
    from loopline.monitor.performance import parse_duration

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
        LooplineError: nothing was logged for the model in the period; the message says
            whether the model is registered at all and the hint lists the models that are.
    """
    from loopline.core.feedback import read_feedback
    from loopline.core.metadata import MetadataStore
    from loopline.core.predlog import read_predictions

    start, end = parse_since(since), parse_since(until)
    assert settings.prediction_log_url is not None and settings.metadata_url is not None
    log = read_predictions(settings.prediction_log_url, model_name, start, end)
    if log.empty:
        raise _nothing_logged(model_name, settings, store, start, end)
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


def _nothing_logged(
    model_name: str,
    settings: Settings,
    store: MetadataStore | None,
    start: datetime | None,
    end: datetime | None,
) -> LooplineError:
    """The error for a model without logged predictions in the period, saying which names
    exist; serving is suggested only for a model that is registered."""
    url = str(settings.prediction_log_url)
    registered, logged = _registered_models(settings, store), _logged_models(url)
    period = _period_text(start, end)
    if model_name in logged:
        return LooplineError(
            f"no predictions of model {model_name!r} are logged{period}",
            hint=f"the log at {url} holds none in this period: widen --since/--until",
        )
    if model_name in registered:
        return LooplineError(
            f"model {model_name!r} is registered but no predictions of it are logged{period}",
            hint=f"serve it with `loopline serve {model_name}` and send it requests (the log "
            f"is at {url}), then run this again",
        )
    others = [
        f"models with logged predictions: {', '.join(logged)}" if logged else "",
        f"registered models: {', '.join(registered)}" if registered else "",
    ]
    listed = "; ".join(o for o in others if o)
    return LooplineError(
        f"no model {model_name!r} is registered, and no predictions of model {model_name!r} "
        "are logged",
        hint=f"check the name ({listed})"
        if listed
        else "this project has no registered model and no logged predictions yet: run a "
        "pipeline that registers one (`loopline run PIPELINE`), serve it (`loopline serve "
        "NAME`), then monitor it",
    )


def _registered_models(settings: Settings, store: MetadataStore | None) -> list[str]:
    """Model names with a version in the metadata store ([] when there is none: opening it
    here never creates it)."""
    import sqlalchemy as sa

    from loopline.core import schema
    from loopline.core.metadata import MetadataStore, StoreMissing

    own = store is None
    try:
        store = store or MetadataStore(str(settings.metadata_url), create=False)
    except StoreMissing:
        return []
    table = schema.model_versions
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.model_name).distinct()).scalars().all()
    except sa.exc.SQLAlchemyError:
        return []
    finally:
        if own:
            store.close()
    return sorted(str(r) for r in rows)


def _logged_models(url: str) -> list[str]:
    """Model names with anything in the prediction log at ``url`` ([] when unreadable).

    Cheap on purpose (this only runs to word an error): the folder log keeps one folder per
    model, the SQL log is asked for its distinct names.
    """
    if url.startswith(("postgresql:", "postgresql+", "postgres:")):
        return _logged_models_sql(url)
    folder = Path(urlparse(url).path) if url.startswith("file://") else Path(url).expanduser()
    if "://" in url and not url.startswith("file://"):
        return []
    try:
        names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted(unquote(name) for name in names)


def _logged_models_sql(url: str) -> list[str]:
    import sqlalchemy as sa

    from loopline.core.dburl import sqlalchemy_url
    from loopline.core.predlog import predictions_table

    try:
        engine = sa.create_engine(sqlalchemy_url(url))
    except (sa.exc.ArgumentError, ModuleNotFoundError):
        return []
    try:
        with engine.connect() as conn:
            query = sa.select(predictions_table.c.model_name).distinct()
            return sorted(str(r) for r in conn.execute(query).scalars().all())
    except sa.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()


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


def fallback_note(reference: str) -> str:
    """What a report or diagnosis says when no stored profile exists (one wording for both)."""
    return f"no reference profile is stored for this model: drift is measured against {reference}"


def window_inputs(frame: pd.DataFrame, profile: Profile | None) -> pd.DataFrame:
    """The logged inputs under their training names (``input.age`` -> ``age``), plus the
    prediction and probability columns under the names the profile gives them."""
    from loopline.monitor.performance import PREDICTION

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
    def judged(self) -> bool:
        """Whether drift was decided in this window (rows enough, some feature present)."""
        return self.report is not None and self.report.judged

    @property
    def share_drifted(self) -> float | None:
        """Share of features flagged; ``None`` when nothing was judged (no report, or fewer
        rows than ``min_rows``), which is not the same as "nothing drifted"."""
        return self.report.share_drifted if self.judged and self.report is not None else None

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
            judged=self.judged,
            share_drifted=_round(self.share_drifted),
            dataset_drift=self.report.dataset_drift,
            prediction_drift=self.report.prediction_drift,
            drifted_features=self.report.drifted_features,
            features={f.column: _feature_summary(f) for f in self.report.features},
            issues=[i.to_dict() for i in self.report.issues],
            extra_columns=list(self.report.extra_columns),
        )
        return out


def _feature_summary(result: FeatureDrift) -> dict[str, Any]:
    from loopline.monitor.drift import drift_score as score_of

    score = score_of(result)
    return {
        "role": result.role,
        "kind": result.kind,
        "status": result.status,
        "drifted": result.drifted,
        "score": None if score is None else _round(score.value),
        "score_effect": None if score is None else score.to_dict(),
        "psi": _round(result.psi),
        "js_distance": _round(result.js_distance),
        "wasserstein": _round(result.wasserstein),
        "q_value": _round(result.q_value, 6),
        "missing_rate": _round(result.missing_rate),
        "reasons": list(result.reasons),
    }


def drift_score(result: FeatureDrift | Mapping[str, Any]) -> float | None:
    """The column's drift score as a number: its largest effect size divided by that
    effect's threshold (1.0 = at the threshold; see :func:`loopline.monitor.drift.drift_score`
    for the effect behind it). Takes a ``FeatureDrift`` or its ``to_dict()``."""
    from loopline.monitor.drift import drift_score as score_of

    score = score_of(result)
    return None if score is None else score.value


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


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)
