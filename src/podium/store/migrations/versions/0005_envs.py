"""environments per version: a version's requirement set, environment and build state; a deploy
waiting for its environment

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("requirements", sa.Text(), nullable=True))
        batch.add_column(sa.Column("env_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("build_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("build_error", sa.Text(), nullable=True))
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("pending", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("pending")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("build_error")
        batch.drop_column("build_state")
        batch.drop_column("env_hash")
        batch.drop_column("requirements")
