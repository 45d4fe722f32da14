"""scaling settings per endpoint; route-error retries with backoff

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("scaler", sa.String(length=16), nullable=False, server_default="request-count"))
        batch.add_column(sa.Column("target", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_jobs_per_worker", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_worker_memory_mb", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("queue_cap", sa.Integer(), nullable=False, server_default="10000"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("run_after", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cold_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cold_ms")
        batch.drop_column("run_after")
        batch.drop_column("retries")
    with op.batch_alter_table("endpoints") as batch:
        for name in ("queue_cap", "max_worker_memory_mb", "max_jobs_per_worker", "target", "scaler"):
            batch.drop_column(name)
