"""Gate reports, and alias moves that record the report (or the force) behind them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

D = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "gate_reports",
        sa.Column("id", D, primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("candidate_id", D, sa.ForeignKey("model_versions.id"), nullable=False, index=True),
        sa.Column("champion_id", D, sa.ForeignKey("model_versions.id")),
        sa.Column("spec_digest", D, nullable=False),
        sa.Column("gold_digests", sa.JSON, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("report_blob", D, nullable=False),
        sa.Column("html_blob", D, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    # Plain ALTER TABLE ADD COLUMN (not batch mode): SQLite keeps the immutability triggers of alias_events.
    op.add_column("alias_events", sa.Column("gate_report_id", D))
    op.add_column("alias_events", sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()))
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER gate_reports_no_{verb.lower()} BEFORE {verb} ON gate_reports "
                "BEGIN SELECT RAISE(ABORT, 'tether: gate_reports rows are immutable'); END"
            )
    else:
        op.execute(
            "CREATE TRIGGER gate_reports_immutable BEFORE UPDATE OR DELETE ON gate_reports "
            "FOR EACH ROW EXECUTE FUNCTION tether_immutable()"
        )
        op.execute(
            "CREATE TRIGGER gate_reports_no_truncate BEFORE TRUNCATE ON gate_reports "
            "FOR EACH STATEMENT EXECUTE FUNCTION tether_immutable()"
        )


def downgrade() -> None:
    op.drop_table("gate_reports")
    op.drop_column("alias_events", "forced")
    op.drop_column("alias_events", "gate_report_id")
