"""step_runs: where a step ran (Ray node id, worker host and pid), its attempts and why
earlier attempts were lost

Revision ID: 0007_step_placement
Revises: 0006_decision_policy
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_step_placement"
down_revision = "0006_decision_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("worker", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("retries", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        for column in ("retries", "attempts", "worker", "node_id"):
            batch_op.drop_column(column)
