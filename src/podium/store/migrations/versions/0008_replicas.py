"""Several replicas on one database: replicas, workers, rate buckets, bundles, console sessions

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.Column("leader", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("runs_workers", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.String(length=32), nullable=True),
        sa.Column("replica_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ready_at", sa.Float(), nullable=True),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.Column("jobs_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("placement", sa.Text(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
    )
    op.create_index("ix_workers_endpoint_id", "workers", ["endpoint_id"])
    op.create_table(
        "rate_buckets",
        sa.Column("key_id", sa.String(length=32), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=True),
        sa.Column("flash", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("blobs")
    op.drop_table("rate_buckets")
    op.drop_index("ix_workers_endpoint_id", table_name="workers")
    op.drop_table("workers")
    op.drop_table("replicas")
