"""Resources each worker of an endpoint asks for: CPUs, GPUs and memory

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("cpus", sa.Float(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("memory_mb", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("memory_mb")
        batch.drop_column("gpus")
        batch.drop_column("cpus")
