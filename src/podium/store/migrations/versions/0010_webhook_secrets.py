"""One webhook signing secret per project; deliveries name the project that signs them

Revision ID: 0010
Revises: 0009

The secrets themselves are made by the server (sealed with its secret key, which a migration
does not hold), on start for `default` and on first use for older projects.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_secrets",
        sa.Column("project_id", sa.String(length=32), sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("previous", sa.Text(), nullable=True),
        sa.Column("previous_until", sa.Float(), nullable=True),
    )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("project_id", sa.String(length=32), nullable=True))
    # Deliveries already sealed take their job's project; one whose job is gone cannot be
    # signed by its project, and no other project may sign it: it fails.
    op.execute(
        "UPDATE webhook_deliveries SET project_id = "
        "(SELECT jobs.project_id FROM jobs WHERE jobs.id = webhook_deliveries.job_id)"
    )
    op.execute("UPDATE webhook_deliveries SET state = 'failed' WHERE state = 'pending' AND project_id IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("project_id")
    op.drop_table("webhook_secrets")
