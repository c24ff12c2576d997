"""API keys live and die: an expiry, and a tenant of their own (a key's name says who holds it; its tenant is
what its budgets, caches and ledger rows are partitioned by). Existing keys keep their name as their tenant.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as t:
        t.add_column(sa.Column("tenant", sa.String(200)))
        t.add_column(sa.Column("expires_at", UTCDateTime))
        t.add_column(sa.Column("rotated_from", sa.String(16)))
    op.execute("UPDATE api_keys SET tenant = name")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as t:
        t.drop_column("rotated_from")
        t.drop_column("expires_at")
        t.drop_column("tenant")
