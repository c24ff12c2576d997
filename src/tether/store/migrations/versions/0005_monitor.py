"""Drift watch: baseline profiles per version, live profile slices, monitor settings, anomalies.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

D = sa.String(64)
INSERT_ONLY = ("baseline_profiles", "anomalies", "anomaly_resolutions")


def upgrade() -> None:
    op.create_table(
        "baseline_profiles",
        sa.Column("version_id", D, sa.ForeignKey("model_versions.id"), primary_key=True),
        sa.Column("source", sa.String(20), primary_key=True),
        sa.Column("data_digest", D, nullable=False),
        sa.Column("profile_digest", D, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "live_profiles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version_id", D, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("segment", sa.String(300), nullable=False),
        sa.Column("slice_start", UTCDateTime, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("issues", sa.JSON, nullable=False),
        sa.Column("replica", sa.String(64), nullable=False),
    )
    op.create_index("live_profiles_window", "live_profiles", ["model_name", "slice_start"])
    op.create_table(
        "monitor_configs",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "anomalies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("version_id", D, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("feature", sa.String(300), nullable=False),
        sa.Column("segment", sa.String(300), nullable=False),
        sa.Column("test", sa.String(40), nullable=False),
        sa.Column("statistic", sa.Float, nullable=False),
        sa.Column("p_value", sa.Float),
        sa.Column("effect", sa.Float, nullable=False),
        sa.Column("min_shift", sa.Float, nullable=False),
        sa.Column("baseline_value", sa.Float),
        sa.Column("live_value", sa.Float),
        sa.Column("live_rows", sa.BigInteger, nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("detected_at", UTCDateTime, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )
    op.create_table(
        "anomaly_resolutions",
        sa.Column("anomaly_id", sa.Integer, sa.ForeignKey("anomalies.id"), primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    for table in INSERT_ONLY:
        if dialect == "sqlite":
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'tether: {table} rows are immutable'); END"
                )
        else:
            op.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION tether_immutable()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION tether_immutable()"
            )


def downgrade() -> None:
    for t in ("anomaly_resolutions", "anomalies", "monitor_configs", "live_profiles", "baseline_profiles"):
        op.drop_table(t)
