"""why a job waits, read on every replica: the autoscaler's reason for holding a start back

Revision ID: 0014_usage
Revises: 0013_gated_deploys
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_usage"
down_revision = "0013_gated_deploys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("waiting_for", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("waiting_for")
