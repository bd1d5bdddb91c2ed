"""Alert rules from the project config, evaluated on the live prediction log.

A rule compares one live metric of a model with a threshold over the most recent window
of served predictions, e.g. "accuracy < 0.8 over the last 500 labelled predictions" or
"share of drifted features > 0.3". Config, under ``monitoring:`` in ``loopline.yaml``::

    monitoring:
      webhook_url: https://hooks.example/loopline     # optional
      retrain: {pipeline: sentiment, params: {source: data/tweets.csv}}
      rules:
        - {name: accuracy-drop, model: sentiment, metric: accuracy, op: "<",
           threshold: 0.8, window: "500", min_rows: 100, actions: [log, webhook, retrain]}
        - {name: drift, model: sentiment, metric: drift_share, op: ">", threshold: 0.3,
           window: "1h", actions: [log, retrain]}
      auto_rollback:
        - {model: sentiment, metric: accuracy, margin: 0.05, min_labels: 100}

A rule's ``metric`` is a performance metric of the delayed labels (``accuracy``,
``macro_f1``, ``precision``, ``recall``, or a score-based one: ``average_precision``,
``roc_auc``, ``cp_at_<k>`` card precision@k, or one registered with
:func:`loopline.monitor.performance.register_live_metric`), ``label_coverage``, or a drift
measure (``drift_share``, ``prediction_drift``). A fraud model is followed by average
precision, which does not care how rare fraud is::

      rules:
        - {name: ap-drop, model: fraud-heavy, metric: average_precision, op: "<",
           threshold: 0.5, window: "20000", min_rows: 5000, actions: [log, retrain]}
      auto_rollback:
        - {model: fraud-heavy, metric: average_precision, margin: 0.1, min_labels: 2000}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loopline.errors import ConfigError, LooplineError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore

Action = Literal["log", "webhook", "retrain", "rollback"]
#: Metrics of the delayed labels that rules can follow besides the score-based ones.
PERFORMANCE_METRICS = ("accuracy", "macro_f1", "precision", "recall")
OTHER_METRICS = ("drift_share", "prediction_drift", "label_coverage")


def is_performance_metric(name: str) -> bool:
    """Whether ``name`` is measured on labelled predictions (built-in or score-based)."""
    from loopline.monitor.performance import get_live_metric

    return name in PERFORMANCE_METRICS or get_live_metric(name) is not None


def _performance_metric(name: str) -> str:
    from loopline.monitor.performance import performance_metric_names

    if not is_performance_metric(name):
        known = ", ".join(performance_metric_names())
        raise ValueError(f"unknown performance metric {name!r}: use one of {known} (or cp_at_K)")
    return name


class Rule(BaseModel):
    """One alert rule: ``metric op threshold`` over the latest ``window`` of a model."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: str
    metric: str
    op: Literal["<", ">"] = "<"
    threshold: float
    window: str = Field(default="500", description="rows ('500') or a duration ('1h')")
    min_rows: int = Field(default=50, ge=1)
    actions: list[Action] = Field(default_factory=lambda: list[Action](["log"]))
    cooldown_s: float = Field(default=0.0, ge=0)
    card: str | None = Field(default=None, description="logged card id for cp_at_<k>")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value in OTHER_METRICS:
            return value
        try:
            return _performance_metric(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, {', '.join(OTHER_METRICS)}") from None


class AutoRollback(BaseModel):
    """Roll back when the new champion's live metric trails the previous champion's."""

    model_config = ConfigDict(extra="forbid")

    model: str
    metric: str = "accuracy"
    margin: float = Field(default=0.05, ge=0)
    min_labels: int = Field(default=100, ge=1)
    card: str | None = Field(default=None, description="logged card id for cp_at_<k>")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _performance_metric(value)


class Retrain(BaseModel):
    """Which pipeline a ``retrain`` action (and ``loopline watch``) runs, with what params."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = "sentiment"
    params: dict[str, Any] = Field(default_factory=dict)


class MonitoringConfig(BaseModel):
    """The ``monitoring:`` section of the project settings."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    auto_rollback: list[AutoRollback] = Field(default_factory=list)
    retrain: Retrain | None = None
    webhook_url: str | None = None
    poll_interval_s: float = Field(default=30.0, gt=0)
    # Thresholds of `loopline monitor diagnose`; loopline.monitor.diagnose validates them.
    diagnose: dict[str, Any] | None = None


def load_monitoring(settings: Settings) -> MonitoringConfig:
    """Validate ``settings.monitoring``; a :class:`ConfigError` names the bad field."""
    try:
        return MonitoringConfig.model_validate(settings.monitoring or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"invalid monitoring settings: {problems}",
            hint="see the monitoring: example in the loopline.orchestrate.rules docstring",
        ) from None


@dataclass(frozen=True)
class Alert:
    """A rule that fired: the measured value, the window it covers and what it saw."""

    rule: str
    model: str
    model_version: str | None
    metric: str
    value: float
    threshold: float
    window_start: datetime | None
    window_end: datetime | None
    actions: tuple[str, ...]
    rows: int

    @property
    def message(self) -> str:
        return (
            f"{self.rule}: {self.metric} of {self.model} v{self.model_version} is "
            f"{self.value:.3f} (threshold {self.threshold:g}) over {self.rows} predictions"
        )


def live_metric(
    settings: Settings,
    store: MetadataStore,
    model: str,
    metric: str,
    window: str = "500",
    *,
    version: str | None = None,
    min_rows: int = 1,
    card_column: str | None = None,
) -> tuple[float, pd.DataFrame] | None:
    """A metric over the latest ``window`` of served predictions (and their feedback).

    ``version`` restricts to predictions that version made. For a performance metric the
    window counts labelled predictions only. Returns ``None`` when there is not enough
    data (fewer than ``min_rows`` rows, or labelled rows for performance), or when the
    metric is undefined there (average precision without a positive label, say).
    """
    from loopline.monitor.performance import served
    from loopline.monitor.report import load_monitor_data

    try:
        data = load_monitor_data(model, settings, store=store)
    except LooplineError:
        return None  # nothing logged yet
    frame = served(data.frame)
    if version is not None:
        frame = frame[frame["model_version"].astype(str) == str(version)]
    performance = is_performance_metric(metric)
    recent = _latest(frame, window, labelled=performance)
    if len(recent) < min_rows:
        return None
    if metric in ("accuracy", "macro_f1"):
        return _performance(recent, metric), recent
    if performance:
        from loopline.monitor.performance import metric_of_frame

        value, _sample = metric_of_frame(recent, metric, card_column=card_column)
        return None if value is None else (value, recent)
    if metric == "label_coverage":
        return float(recent["label_true"].notna().mean()), recent
    if data.profile is None:
        return None
    return _drift(data.profile, recent, metric), recent


def _latest(frame: pd.DataFrame, window: str, *, labelled: bool) -> pd.DataFrame:
    import pandas as pd

    if labelled:
        frame = frame[frame["label_true"].notna()]
    frame = frame.sort_values("ts", kind="stable")
    if window.strip().isdigit():
        return frame.tail(int(window))
    span = pd.Timedelta(window)
    return frame[frame["ts"] >= frame["ts"].max() - span] if len(frame) else frame


def _performance(frame: pd.DataFrame, metric: str) -> float:
    from sklearn.metrics import accuracy_score, f1_score

    truth = frame["label_true"].astype(str)
    predicted = frame["prediction"].astype(str)
    if metric == "accuracy":
        return float(accuracy_score(truth, predicted))
    return float(f1_score(truth, predicted, average="macro"))


def _drift(profile: Any, frame: pd.DataFrame, metric: str) -> float:
    from loopline.monitor.drift import drift_report
    from loopline.monitor.report import window_inputs, without_labels

    reference = without_labels(profile)
    report = drift_report(reference, window_inputs(frame, reference))
    if metric == "prediction_drift":
        return 1.0 if report.prediction_drift else 0.0
    return float(report.share_drifted)


def evaluate_rules(
    settings: Settings,
    store: MetadataStore,
    config: MonitoringConfig,
    *,
    now: datetime | None = None,
) -> list[Alert]:
    """Every rule that fires now (respecting each rule's cool-down)."""
    now = now or datetime.now(UTC)
    alerts = []
    for rule in config.rules:
        if rule.cooldown_s and _fired_within(store, rule, now):
            continue
        measured = live_metric(
            settings,
            store,
            rule.model,
            rule.metric,
            rule.window,
            min_rows=rule.min_rows,
            card_column=rule.card,
        )
        if measured is None:
            continue
        value, frame = measured
        breached = value < rule.threshold if rule.op == "<" else value > rule.threshold
        if breached:
            versions = frame["model_version"].dropna().astype(str)
            alerts.append(
                Alert(
                    rule=rule.name,
                    model=rule.model,
                    model_version=versions.iloc[-1] if len(versions) else None,
                    metric=rule.metric,
                    value=value,
                    threshold=rule.threshold,
                    window_start=_ts(frame["ts"].min()),
                    window_end=_ts(frame["ts"].max()),
                    actions=tuple(rule.actions),
                    rows=len(frame),
                )
            )
    return alerts


def _fired_within(store: MetadataStore, rule: Rule, now: datetime) -> bool:
    last = store.last_alert(rule.model, rule.name)
    if last is None:
        return False
    created = last if last.tzinfo else last.replace(tzinfo=UTC)
    return (now - created).total_seconds() < rule.cooldown_s


def _ts(value: Any) -> datetime | None:
    return None if value is None or value != value else value.to_pydatetime()
