"""endpoints may expire: the leader stops them at `expires_at` (Covalent time limits)

Revision ID: 0012_endpoint_expiry
Revises: 0011
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0012_endpoint_expiry"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("expires_at", sa.Float(), nullable=True))
    # Covalent deployments kept their time limit in their version's config, counted from the
    # endpoint's creation: they expire when they did before.
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT e.id, e.created_at, v.config FROM endpoints e JOIN versions v ON v.id = e.version_id "
            "WHERE v.runtime = 'covalent'"
        )
    ).all()
    for endpoint_id, created_at, config in rows:
        try:
            limit = float(json.loads(config)["covalent"].get("time_limit", 1800.0))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        conn.execute(
            sa.text("UPDATE endpoints SET expires_at = :at WHERE id = :id"),
            {"at": created_at + limit, "id": endpoint_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("expires_at")
