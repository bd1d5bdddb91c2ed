"""Where a decision came from: ``loopline lineage --request-id ID``.

:func:`trace_request` finds the decision with transaction id ``ID`` in the decision log
(or, failing that, the prediction with request id ``ID`` in the prediction log) and
returns what it was: when, the action or prediction, the reason, the thresholds, the masked
features, the fallback used, and for every model version involved (the fast model, the
heavy model whose score weighed in, the heavy model's batch re-score) its lineage from the
metadata store: the run that trained it, that run's code version, and the dataset
versions it was trained on.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from loopline.core import schema
from loopline.errors import LooplineError

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore

__all__ = ["model_lineage", "trace_request"]

_UNUSABLE = (None, "", "unavailable")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _json(value: Any) -> Any:
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def model_lineage(store: MetadataStore, name: str, version: str) -> dict[str, Any]:
    """A model version's lineage in short: run, pipeline, code version, dataset versions
    (``error`` says why when Loopline did not register it)."""
    try:
        found = store.lineage(name, version)
    except LooplineError as exc:
        return {"name": name, "version": version, "error": exc.message}
    model = found["model"]
    run = found["run"] or {}
    commit = run.get("code_commit")
    code = "untracked" if not commit else commit[:12]
    if commit and run.get("code_dirty_hash"):
        code += f"+dirty.{run['code_dirty_hash'][:8]}"
    return {
        "name": name,
        "version": version,
        "run_id": model.get("run_id"),
        "pipeline": run.get("pipeline"),
        "trained_at": _iso(run.get("started_at")),
        "code_version": code,
        "dataset_version": model.get("dataset_version"),
        "datasets": list(model.get("datasets") or []),
        "mlflow_run_id": model.get("mlflow_run_id"),
    }


def trace_request(settings: Settings, store: MetadataStore, request_id: str) -> dict[str, Any]:
    """The decision (or prediction) ``request_id`` and the lineage of its model versions."""
    d = schema.decisions
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(d).where(d.c.tx_id == str(request_id))).first()
    if row is not None:
        return _decision(store, dict(row._mapping))
    found = _prediction(settings, request_id)
    if found is None:
        raise LooplineError(
            f"no decision and no logged prediction with id {request_id!r}",
            hint="pass a transaction id of the decision log (loopline stream consume) or the "
            "request_id a /predict answer carried",
        )
    found["models"] = [
        {"role": "model", **model_lineage(store, found["model_name"], found["model_version"])}
    ]
    return found


def _decision(store: MetadataStore, row: dict[str, Any]) -> dict[str, Any]:
    models: list[dict[str, Any]] = []
    if row.get("model_name") and row.get("model_version") not in _UNUSABLE:
        models.append(
            {"role": "fast", **model_lineage(store, row["model_name"], row["model_version"])}
        )
    elif row.get("model_name"):
        models.append(
            {"role": "fast", "name": row["model_name"], "version": row.get("model_version")}
        )
    heavy = row.get("heavy_model")
    if heavy:
        if row.get("heavy_version") in _UNUSABLE:
            models.append({"role": "heavy", "name": heavy, "version": row.get("heavy_version")})
        else:
            models.append({"role": "heavy", **model_lineage(store, heavy, row["heavy_version"])})
        batch = row.get("batch_version")
        if batch not in _UNUSABLE and batch != row.get("heavy_version"):
            models.append({"role": "heavy (re-score)", **model_lineage(store, heavy, batch)})
    return {
        "kind": "decision",
        "request_id": row["tx_id"],
        "decided_at": _iso(row.get("decided_at")),
        "produced_at": _iso(row.get("produced_at")),
        "tx_time": _iso(row.get("tx_time")),
        "action": row.get("action") or ("review" if row.get("flagged") else "allow"),
        "score": row.get("score"),
        "fast_score": row.get("fast_score"),
        "heavy_score": row.get("heavy_score"),
        "batch_score": row.get("batch_score"),
        "batch_scored_at": _iso(row.get("batch_scored_at")),
        "reason": row.get("reason"),
        "fallback": (row.get("fallback") or "").split(",") if row.get("fallback") else [],
        "thresholds": _json(row.get("thresholds")) or {"review": row.get("threshold")},
        "features": _json(row.get("features")) or {},
        "source": row.get("source"),
        "message_id": row.get("message_id"),
        "service_code_version": row.get("code_version"),
        "models": models,
    }


def _prediction(settings: Settings, request_id: str) -> dict[str, Any] | None:
    from loopline.core.predlog import INPUT_PREFIX, PROBA_PREFIX, read_predictions

    url = settings.prediction_log_url
    if not url:
        return None
    try:
        frame = read_predictions(url)
    except LooplineError:
        return None
    if frame.empty:
        return None
    hits = frame[frame["request_id"].astype(str) == str(request_id)]
    if hits.empty:
        return None
    hit = hits.iloc[-1]
    inputs = {
        c.removeprefix(INPUT_PREFIX): _plain(hit[c])
        for c in hits.columns
        if c.startswith(INPUT_PREFIX) and _present(hit[c])
    }
    probabilities = {
        c.removeprefix(PROBA_PREFIX): float(hit[c])
        for c in hits.columns
        if c.startswith(PROBA_PREFIX) and _present(hit[c])
    }
    return {
        "kind": "prediction",
        "request_id": str(hit["request_id"]),
        "ts": _iso(hit["ts"].to_pydatetime()),
        "model_name": str(hit["model_name"]),
        "model_version": str(hit["model_version"]),
        "route": str(hit["route"]),
        "prediction": str(hit["prediction"]),
        "probabilities": probabilities,
        "features": inputs,
    }


def _present(value: Any) -> bool:
    try:
        return not (value is None or value != value)
    except (TypeError, ValueError):
        return True


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
