"""Serving and rollout: routing tables, rollouts with their decision log, API keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

D = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "routing",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("champion_id", D, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("canary_id", D, sa.ForeignKey("model_versions.id")),
        sa.Column("canary_bp", sa.Integer, nullable=False, server_default="0"),
        sa.Column("shadow_id", D, sa.ForeignKey("model_versions.id")),
        sa.Column("shadow_bp", sa.Integer, nullable=False, server_default="0"),
        sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("candidate_id", D, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("champion_id", D, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("step_started_at", UTCDateTime, nullable=False),
        sa.Column("gate_report_id", D),
        sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False, index=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("from_bp", sa.Integer, nullable=False),
        sa.Column("to_bp", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", D, nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER rollout_events_no_{verb.lower()} BEFORE {verb} ON rollout_events "
                "BEGIN SELECT RAISE(ABORT, 'tether: rollout_events rows are immutable'); END"
            )
    else:
        op.execute(
            "CREATE TRIGGER rollout_events_immutable BEFORE UPDATE OR DELETE ON rollout_events "
            "FOR EACH ROW EXECUTE FUNCTION tether_immutable()"
        )


def downgrade() -> None:
    for t in ("api_keys", "rollout_events", "rollouts", "routing"):
        op.drop_table(t)
