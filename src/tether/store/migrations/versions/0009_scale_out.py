"""Scale-out: leases for the one leader (with a fencing epoch), the replicas' published metric slices, the
replicas' heartbeat rows, and a revision on each rollout so that no decision on one state is written twice.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

D = sa.String(64)
#: The tables whose changes gateways must learn of at once (the channel is ``tether_changes``).
NOTIFYING = ("routing", "endpoints", "api_keys")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        # Seconds since the epoch on the database server's clock (never a replica's: their clocks may differ).
        sa.Column("expires", sa.Float, nullable=False),
    )
    op.create_table(
        "metric_slices",
        sa.Column("replica", sa.String(200), primary_key=True),
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("version_id", D, primary_key=True),
        sa.Column("arm", sa.String(40), primary_key=True),
        sa.Column("slice", sa.BigInteger, primary_key=True),
        sa.Column("tally", sa.JSON, nullable=False),
        sa.Column("streak", sa.Integer, nullable=False),
        sa.Column("published", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "replicas",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("seen", sa.Float, nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
    )
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        # Every change to what gateways serve (routing tables, external endpoints, API keys), however it is made
        # (tether or SQL by hand), notifies the listening replicas when its transaction commits.
        op.execute(
            "CREATE OR REPLACE FUNCTION tether_notify_change() RETURNS trigger AS $$ BEGIN "
            "PERFORM pg_notify('tether_changes', TG_TABLE_NAME); RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        for t in NOTIFYING:
            op.execute(
                f"CREATE TRIGGER {t}_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION tether_notify_change()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in NOTIFYING:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_notify ON {t}")
        op.execute("DROP FUNCTION IF EXISTS tether_notify_change()")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("revision")
    op.drop_table("replicas")
    op.drop_table("metric_slices")
    op.drop_table("leases")
