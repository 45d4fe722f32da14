"""health-gated deploys: a version's failed start, and deploys that never became current

Revision ID: 0013_gated_deploys
Revises: 0012_endpoint_expiry
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_gated_deploys"
down_revision = "0012_endpoint_expiry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("start_error", sa.Text(), nullable=True))
    with op.batch_alter_table("endpoint_history") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoint_history") as batch:
        batch.drop_column("error")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("start_error")
