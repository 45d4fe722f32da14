"""schedules: routes that run by themselves, fired by the leader

Revision ID: 0016_schedules
Revises: 0015_job_batch_size
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_schedules"
down_revision = "0015_job_batch_size"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("endpoint_id", sa.String(32), nullable=False),
        sa.Column("route", sa.String(255), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("every", sa.Float(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("overlap", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("webhook", sa.Text(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("next_fire_at", sa.Float(), nullable=False),
        sa.Column("last_fire_at", sa.Float(), nullable=True),
        sa.Column("last_job_id", sa.String(64), nullable=True),
        sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_skipped_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("endpoint_id", "route", name="uq_schedules_endpoint_route"),
    )
    op.create_index("ix_schedules_next_fire_at", "schedules", ["next_fire_at"])


def downgrade() -> None:
    op.drop_index("ix_schedules_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
