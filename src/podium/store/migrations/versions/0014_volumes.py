"""volumes of a project; warm_buffer of an endpoint

Revision ID: 0014_volumes
Revises: 0013_gated_deploys
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_volumes"
down_revision = "0013_gated_deploys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("project_id", sa.String(length=32), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("max_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_volumes_project_name"),
    )
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("warm_buffer", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("warm_buffer")
    op.drop_table("volumes")
