"""Promises that hold: gate policies per model (insert-only), aliases derived from their insert-only history
(the mutable ``aliases`` table goes), gate reports bound to the policy they ran under, every insert-only
table refusing UPDATE, DELETE and TRUNCATE (``rollout_events`` accepted TRUNCATE on PostgreSQL before), and
routing with a salt per rollout and a mirror share.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.immutability import make_insert_only
from tether.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

D = sa.String(64)
#: Frozen here (not imported) so that later changes to the table list do not rewrite this migration.
INSERT_ONLY = (
    "code_refs",
    "data_snapshots",
    "weights_artifacts",
    "model_versions",
    "alias_events",
    "gate_reports",
    "rollout_events",
    "baseline_profiles",
    "llm_ledger",
    "anomalies",
    "anomaly_resolutions",
    "gate_policies",
)


def upgrade() -> None:
    op.create_table(
        "gate_policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("digest", D, nullable=False),
        sa.Column("spec_blob", D, nullable=False),
        sa.Column("gold_digests", sa.JSON, nullable=False),
        sa.Column("previous_digest", D),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    # Plain ADD COLUMN (not batch mode): SQLite keeps gate_reports' triggers.
    op.add_column("gate_reports", sa.Column("policy_digest", D))
    op.drop_table("aliases")
    # Routing: a salt per rollout (a new cohort for each) and the share of champion traffic mirrored to a canary.
    op.add_column("routing", sa.Column("salt", sa.String(200), nullable=False, server_default=""))
    op.add_column("routing", sa.Column("mirror_bp", sa.Integer, nullable=False, server_default="0"))
    make_insert_only(op.get_bind(), INSERT_ONLY)


def downgrade() -> None:  # pragma: no cover - tether never downgrades a store
    raise NotImplementedError("tether stores are migrated forwards only")
