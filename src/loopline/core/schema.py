"""Tables of the metadata store (SQLAlchemy Core). Change them only with a migration."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pipeline", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("code_commit", sa.String(64)),
    sa.Column("code_dirty_hash", sa.String(64)),
    sa.Column("executor", sa.String(20), nullable=False),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("duration_s", sa.Float),
    sa.Column("error", sa.Text),
)

step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("step", sa.String(200), nullable=False),
    sa.Column("cache_key", sa.String(64), nullable=False, index=True),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("cached_from", sa.String(32)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("duration_s", sa.Float),
    sa.Column("error", sa.Text),
    # (migration 0007) Where a step ran when not in the run's own process (the Ray
    # executor): the Ray node id and "host pid N" of the worker; how many attempts it took
    # and, as a JSON list, why each earlier attempt was lost (a worker or node died).
    sa.Column("node_id", sa.String(64)),
    sa.Column("worker", sa.String(300)),
    sa.Column("attempts", sa.Integer),
    sa.Column("retries", sa.Text),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("materializer", sa.String(100), nullable=False),
    sa.Column("type_name", sa.String(300), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Lineage edges: which artifacts a step run read and wrote.
step_artifacts = sa.Table(
    "step_artifacts",
    metadata,
    sa.Column("step_run_id", sa.String(32), sa.ForeignKey("step_runs.id"), primary_key=True),
    sa.Column("direction", sa.String(6), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("artifact_hash", sa.String(64), sa.ForeignKey("artifacts.hash"), nullable=False),
    sa.Index("ix_step_artifacts_hash", "artifact_hash"),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("artifact_hash", sa.String(64), sa.ForeignKey("artifacts.hash"), nullable=False),
    sa.Column("rows", sa.BigInteger),
    sa.Column("source", sa.Text),
    sa.Column("run_id", sa.String(32)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("name", "version", name="uq_dataset_name_version"),
    sa.UniqueConstraint("name", "artifact_hash", name="uq_dataset_name_hash"),
)

alias_events = sa.Table(
    "alias_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False, index=True),
    sa.Column("alias", sa.String(100), nullable=False),
    sa.Column("version", sa.String(20)),
    sa.Column("previous_version", sa.String(20)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Loopline's side of each registered model version: the lineage MLflow does not keep.
model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model_name", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(20), primary_key=True),
    sa.Column("model_hash", sa.String(64), nullable=False, index=True),
    sa.Column("dataset_hash", sa.String(64)),
    sa.Column("dataset_version", sa.String(220)),
    sa.Column("mlflow_run_id", sa.String(64)),
    sa.Column("run_id", sa.String(32)),
    # The reference profile (an artifact) that monitoring compares live traffic with.
    sa.Column("profile_hash", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # (migration 0004) JSON list of every dataset version upstream of the model, and the
    # cache key of the step that produced the model: same recipe, same model.
    sa.Column("datasets", sa.Text),
    sa.Column("recipe", sa.String(64), index=True),
)

# -- human labeling (migration 0002_label_queue) ---------------------------------------------
# A named queue with its ordered label set; the order is the keyboard order on the labeling page.
label_queues = sa.Table(
    "label_queues",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("labels", sa.Text, nullable=False),  # JSON list of label strings
    sa.Column("annotations_per_item", sa.Integer, nullable=False),
    sa.Column("level", sa.String(20), nullable=False),  # nominal | ordinal | interval
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# One item to label. ``status`` turns ``done`` once it has ``annotations_per_item`` labels.
label_tasks = sa.Table(
    "label_tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(200), sa.ForeignKey("label_queues.name"), nullable=False),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("text", sa.Text),
    sa.Column("payload", sa.Text),  # JSON object: the item's other fields
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("priority", sa.Float, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("queue", "item_id", name="uq_label_tasks_queue_item"),
    sa.Index("ix_label_tasks_next", "queue", "status", "priority"),
)

# Who may label a task; a task without rows here is open to every annotator.
label_assignments = sa.Table(
    "label_assignments",
    metadata,
    sa.Column("task_id", sa.Integer, sa.ForeignKey("label_tasks.id"), primary_key=True),
    sa.Column("annotator", sa.String(200), primary_key=True),
)

# One label by one annotator on one task (a second submission replaces the first).
label_annotations = sa.Table(
    "label_annotations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("label_tasks.id"), nullable=False),
    sa.Column("annotator", sa.String(200), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("lead_time_s", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("task_id", "annotator", name="uq_label_annotations_task_annotator"),
    sa.Index("ix_label_annotations_annotator", "annotator"),
)

# Ground truth that arrives after a prediction (POST /feedback, the review queue).
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("model_name", sa.String(200)),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# Alerts raised by monitoring rules and the action taken for each.
alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False, index=True),
    sa.Column("model_version", sa.String(20)),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("metric", sa.String(200), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("window_start", sa.DateTime(timezone=True)),
    sa.Column("window_end", sa.DateTime(timezone=True)),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("details", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# -- streaming decisions (migration 0005_decisions) --------------------------------------------
# One row per transaction decided by `loopline stream consume`, written in one transaction
# per batch before the batch is acknowledged. The primary key makes a transaction decided at
# most once, whatever the broker redelivers.
decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("tx_id", sa.String(200), primary_key=True),
    sa.Column("model_name", sa.String(200)),
    sa.Column("model_version", sa.String(20)),
    sa.Column("score", sa.Float),
    sa.Column("flagged", sa.Boolean, nullable=False),
    sa.Column("threshold", sa.Float),
    sa.Column("source", sa.String(500), nullable=False),  # the stream, password hidden
    sa.Column("message_id", sa.String(200)),
    sa.Column("attempt", sa.Integer),
    sa.Column("features", sa.Text),  # JSON: the model's inputs, after PII masking
    sa.Column("produced_at", sa.DateTime(timezone=True)),  # the producer's stamp
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False, index=True),
    # (migration 0006_decision_policy) the decision service's audit trail: model_name,
    # model_version and score above are the fast model's name, version (or "unavailable")
    # and the combined score; threshold is the review threshold.
    sa.Column("action", sa.String(10)),  # allow | review | block
    sa.Column("reason", sa.Text),  # which threshold or rule fired, and the fallback used
    sa.Column("fallback", sa.String(100)),  # degraded_features,fast_unavailable,heavy_unavailable
    sa.Column("fast_score", sa.Float),
    sa.Column("heavy_model", sa.String(200)),
    sa.Column("heavy_version", sa.String(20)),  # or "unavailable"
    sa.Column("heavy_score", sa.Float),  # the heavy model's latest score that applied online
    sa.Column("thresholds", sa.Text),  # JSON: {"review": ..., "block": ...}
    sa.Column("tx_time", sa.DateTime(timezone=True), index=True),  # the transaction's own time
    sa.Column("code_version", sa.String(100)),  # of the decision service
    # The heavy model's batch re-score of this transaction (`loopline stream rescore`).
    sa.Column("batch_score", sa.Float),
    sa.Column("batch_version", sa.String(20)),
    sa.Column("batch_scored_at", sa.DateTime(timezone=True), index=True),
)
