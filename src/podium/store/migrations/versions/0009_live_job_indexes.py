"""Jobs' queue and lease indexes hold live jobs only (partial indexes)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _live(name: str, columns: list[str], status: str) -> None:
    """An index over the jobs in `status` only (partial, on SQLite and PostgreSQL alike)."""
    where = sa.text(f"status = '{status}'")
    op.create_index(name, "jobs", columns, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    op.drop_index("ix_jobs_queue", table_name="jobs")
    op.drop_index("ix_jobs_lease", table_name="jobs")
    _live("ix_jobs_queued", ["endpoint_id", "created_at"], "IN_QUEUE")
    _live("ix_jobs_running", ["lease_until"], "IN_PROGRESS")


def downgrade() -> None:
    op.drop_index("ix_jobs_running", table_name="jobs")
    op.drop_index("ix_jobs_queued", table_name="jobs")
    op.create_index("ix_jobs_lease", "jobs", ["status", "lease_until"])
    op.create_index("ix_jobs_queue", "jobs", ["endpoint_id", "status", "created_at"])
