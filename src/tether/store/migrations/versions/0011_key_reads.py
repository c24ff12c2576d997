"""What a key may read: its own tenant's ledger, budgets, graded interactions and audit records, or every
tenant's (``all_tenants``: admin keys always, viewer and deployer keys when created with ``--all-tenants``).
Audit records name the tenant they belong to from now on (see `tether.audit.record`).

Keys that exist before this revision keep what they could read: every viewer, deployer and admin key is marked
all-tenants, so an upgrade narrows nobody's dashboard by surprise. New keys read their own tenant unless made
otherwise; narrow an old key by creating a tenant-bound one and revoking the old.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as t:
        t.add_column(sa.Column("all_tenants", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute("UPDATE api_keys SET all_tenants = TRUE WHERE role IN ('viewer', 'deployer', 'admin')")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as t:
        t.drop_column("all_tenants")
