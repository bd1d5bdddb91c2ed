"""decisions: the decision service's audit trail (both models, action, reason, fallback,
thresholds, event time, code version) and the heavy model's batch re-score

Revision ID: 0006_decision_policy
Revises: 0005_decisions
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_decision_policy"
down_revision = "0005_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("fallback", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("fast_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("heavy_model", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("heavy_version", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("heavy_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("thresholds", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("tx_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("code_version", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("batch_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("batch_version", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("batch_scored_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_decisions_tx_time"), ["tx_time"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_decisions_batch_scored_at"), ["batch_scored_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_batch_scored_at"))
        batch_op.drop_index(batch_op.f("ix_decisions_tx_time"))
        for column in (
            "batch_scored_at",
            "batch_version",
            "batch_score",
            "code_version",
            "tx_time",
            "thresholds",
            "heavy_score",
            "heavy_version",
            "heavy_model",
            "fast_score",
            "fallback",
            "reason",
            "action",
        ):
            batch_op.drop_column(column)
