"""bundles belong to the projects that uploaded them (or have a version of them)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_blobs",
        sa.Column("project_id", sa.String(length=32), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "sha256"),
    )
    # Every project keeps the bundles its versions were made of.
    op.execute(
        "INSERT INTO project_blobs (project_id, sha256, created_at) "
        "SELECT project_id, sha256, MIN(created_at) FROM versions GROUP BY project_id, sha256"
    )


def downgrade() -> None:
    op.drop_table("project_blobs")
