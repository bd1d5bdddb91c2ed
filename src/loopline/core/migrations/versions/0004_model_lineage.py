"""model versions: every upstream dataset version and the recipe (cache key) of the model

Revision ID: 0004_model_lineage
Revises: 0003_feedback_alerts
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_model_lineage"
down_revision = "0003_feedback_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("datasets", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("recipe", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_model_versions_recipe"), ["recipe"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_versions_recipe"))
        batch_op.drop_column("recipe")
        batch_op.drop_column("datasets")
