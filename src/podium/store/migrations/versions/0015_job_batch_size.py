"""jobs record the size of the batch they ran in

Revision ID: 0015_job_batch_size
Revises: 0014_volumes
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_job_batch_size"
down_revision = "0014_volumes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("batch_size")
