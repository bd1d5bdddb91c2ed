"""human labeling queue: queues, tasks, assignments, annotations

Revision ID: 0002_label_queue
Revises: 0001_initial
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_label_queue"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_queues",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("annotations_per_item", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "label_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["queue"], ["label_queues.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("queue", "item_id", name="uq_label_tasks_queue_item"),
    )
    with op.batch_alter_table("label_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_label_tasks_next", ["queue", "status", "priority"], unique=False)

    op.create_table(
        "label_assignments",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["label_tasks.id"]),
        sa.PrimaryKeyConstraint("task_id", "annotator"),
    )
    op.create_table(
        "label_annotations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("lead_time_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["label_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "annotator", name="uq_label_annotations_task_annotator"),
    )
    with op.batch_alter_table("label_annotations", schema=None) as batch_op:
        batch_op.create_index("ix_label_annotations_annotator", ["annotator"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("label_annotations", schema=None) as batch_op:
        batch_op.drop_index("ix_label_annotations_annotator")
    op.drop_table("label_annotations")
    op.drop_table("label_assignments")
    with op.batch_alter_table("label_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_label_tasks_next")
    op.drop_table("label_tasks")
    op.drop_table("label_queues")
