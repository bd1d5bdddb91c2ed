"""What happens when a rule fires, and the automatic rollback after a bad promotion.

Every alert and every action is recorded in the metadata store (``alert_events``); alias
moves also go to the alias history with their reason, so a person can see why.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from loopline.orchestrate.rules import Alert, AutoRollback, MonitoringConfig, live_metric

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore

log = logging.getLogger("loopline.monitor")
ACTOR = "loopline monitor"


def run_actions(
    settings: Settings, store: MetadataStore, alert: Alert, config: MonitoringConfig
) -> list[dict[str, Any]]:
    """Carry out the alert's actions in order; a failing action is recorded, not raised."""
    outcomes = []
    for action in alert.actions:
        try:
            details = _ACTIONS[action](settings, store, alert, config)
            status = "done"
        except Exception as exc:  # an action must never take the monitor down
            details, status = {"error": f"{type(exc).__name__}: {exc}"}, "failed"
            log.error("action %s for %s failed: %s", action, alert.rule, exc)
        store.record_alert(
            model_name=alert.model,
            model_version=alert.model_version,
            rule=alert.rule,
            metric=alert.metric,
            value=alert.value,
            threshold=alert.threshold,
            window_start=alert.window_start,
            window_end=alert.window_end,
            action=action,
            status=status,
            details={"message": alert.message, **details},
        )
        outcomes.append({"action": action, "status": status, **details})
    return outcomes


def _log(settings: Settings, store: MetadataStore, alert: Alert, _c: MonitoringConfig) -> dict:
    log.warning("alert %s", alert.message)
    return {}


def _webhook(
    settings: Settings, store: MetadataStore, alert: Alert, config: MonitoringConfig
) -> dict:
    import httpx

    if not config.webhook_url:
        raise ValueError("the rule asks for a webhook but monitoring.webhook_url is not set")
    payload = {
        "rule": alert.rule,
        "model": alert.model,
        "version": alert.model_version,
        "metric": alert.metric,
        "value": alert.value,
        "threshold": alert.threshold,
        "message": alert.message,
    }
    response = httpx.post(config.webhook_url, json=payload, timeout=5.0)
    response.raise_for_status()
    return {"webhook_status": response.status_code}


def _retrain(
    settings: Settings, store: MetadataStore, alert: Alert, config: MonitoringConfig
) -> dict:
    return retrain(settings, config, reason=alert.message)


def _rollback(settings: Settings, store: MetadataStore, alert: Alert, _c: MonitoringConfig) -> dict:
    from loopline.registry.project import open_registry

    info = open_registry(settings, store).rollback(
        alert.model, reason=f"alert {alert.message}", actor=ACTOR
    )
    return {"champion": info.version}


_ACTIONS = {"log": _log, "webhook": _webhook, "retrain": _retrain, "rollback": _rollback}


def retrain(settings: Settings, config: MonitoringConfig, *, reason: str) -> dict[str, Any]:
    """Run the configured training pipeline; its gate decides about promotion."""
    from loopline.core.lineage import ModelVersion
    from loopline.project import resolve_pipeline

    if config.retrain is None:
        raise ValueError("no monitoring.retrain section says which pipeline to run")
    name, pipe = resolve_pipeline(settings, config.retrain.pipeline)
    params = {**settings.params.get(name, {}), **config.retrain.params}
    log.warning("retraining %s: %s", name, reason)
    result = pipe.run(settings, **params)
    outcome: dict[str, Any] = {"run_id": result.run_id, "pipeline": name}
    for step in result.steps:
        registered = result.load(step) if step.startswith("register") else None
        if isinstance(registered, ModelVersion):
            outcome |= {
                "model": registered.name,
                "version": registered.version,
                "promoted": registered.promoted,
                "champion": registered.champion,
            }
    return outcome


def check_auto_rollback(
    settings: Settings, store: MetadataStore, rule: AutoRollback
) -> dict[str, Any] | None:
    """Roll back when the champion's live metric trails the previous champion's by more
    than ``rule.margin`` (each measured on at least ``min_labels`` labelled predictions).

    Each version is measured on the traffic it served: its latest ``10 * min_labels``
    labelled predictions. Any performance metric works, e.g. ``average_precision`` for a
    fraud model whose labels (reviews, chargebacks) arrive weeks later; a metric that is
    undefined on a version's traffic (no positive label yet) decides nothing.

    Returns what was done, or ``None`` when nothing needed doing (or data is too thin).
    """
    from loopline.registry.project import open_registry

    champion = store.current_alias(rule.model, "champion")
    previous = store.current_alias(rule.model, "previous")
    if champion is None or previous is None or champion == previous:
        return None
    window = str(rule.min_labels * 10)
    now, before = (
        live_metric(
            settings,
            store,
            rule.model,
            rule.metric,
            window,
            version=version,
            min_rows=rule.min_labels,
            card_column=rule.card,
        )
        for version in (champion, previous)
    )
    if now is None or before is None or now[0] >= before[0] - rule.margin:
        return None
    reason = (
        f"automatic rollback: live {rule.metric} of v{champion} is {now[0]:.3f}, below "
        f"v{previous}'s {before[0]:.3f} by more than {rule.margin:g} "
        f"(v{champion}: {_sample_text(now[1])}; v{previous}: {_sample_text(before[1])})"
    )
    info = open_registry(settings, store).rollback(rule.model, reason=reason, actor=ACTOR)
    store.record_alert(
        model_name=rule.model,
        model_version=champion,
        rule="auto_rollback",
        metric=rule.metric,
        value=now[0],
        threshold=before[0] - rule.margin,
        window_start=_ts(now[1]["ts"].min()),
        window_end=_ts(now[1]["ts"].max()),
        action="rollback",
        status="done",
        details={"message": reason, "champion": info.version, "previous_value": before[0]},
    )
    log.warning(reason)
    return {
        "rolled_back_from": champion,
        "champion": info.version,
        "reason": reason,
        "metric": rule.metric,
        "value": now[0],
        "previous_value": before[0],
    }


def _sample_text(frame: Any) -> str:
    """``"2000 labelled predictions"``, with the positives when the label is binary
    (``", 49 of them '1'"``)."""
    from loopline.monitor.performance import pick_positive_label

    labels = frame["label_true"].dropna().astype(str)
    text = f"{len(labels)} labelled predictions"
    positive = pick_positive_label(
        [*labels.unique(), *frame["prediction"].dropna().astype(str).unique()]
    )
    if positive is not None:
        text += f", {int((labels == positive).sum())} of them {positive!r}"
    return text


def _ts(value: Any) -> Any:
    return None if value is None or value != value else value.to_pydatetime()
