"""canary rollouts: an endpoint's second version and its share of calls, and each step in history

Revision ID: 0018_rollouts
Revises: 0017_usage
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_rollouts"
down_revision = "0017_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("canary_version", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("rollout", sa.Text(), nullable=True))
    with op.batch_alter_table("endpoint_history") as batch:
        batch.add_column(sa.Column("action", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoint_history") as batch:
        batch.drop_column("action")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("rollout")
        batch.drop_column("canary_version")
