"""which Ray nodes hold a built copy of each environment

Revision ID: 0019_node_envs
Revises: 0018_rollouts
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_node_envs"
down_revision = "0018_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_envs",
        sa.Column("env_hash", sa.String(length=24), primary_key=True),
        sa.Column("node_id", sa.String(length=64), primary_key=True),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_envs")
