"""usage per project, endpoint and version, by the hour; why a job waits, read on every replica

Revision ID: 0017_usage
Revises: 0016_schedules
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_usage"
down_revision = "0016_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("waiting_for", sa.Text(), nullable=True))
    op.create_table(
        "usage_hours",
        sa.Column("project_id", sa.String(32), primary_key=True),
        sa.Column("endpoint_id", sa.String(32), primary_key=True),
        sa.Column("version_id", sa.String(32), primary_key=True),
        sa.Column("hour", sa.Float(), primary_key=True),
        sa.Column("jobs", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("execution_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("cpu_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("gpu_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("memory_mb_seconds", sa.Float(), nullable=False, server_default="0"),
    )
    op.create_index("ix_usage_hours_project_hour", "usage_hours", ["project_id", "hour"])
    op.create_table(
        "usage_marks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_marks")
    op.drop_index("ix_usage_hours_project_hour", table_name="usage_hours")
    op.drop_table("usage_hours")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("waiting_for")
