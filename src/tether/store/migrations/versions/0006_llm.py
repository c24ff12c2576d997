"""LLM gateway: the token ledger (insert-only) and budgets per tenant or API key.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

D = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "llm_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(64), nullable=False, unique=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version_id", D, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("cache", sa.String(20), nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("saved_tokens", sa.Integer, nullable=False),
        sa.Column("saved_cost", sa.Float, nullable=False),
        sa.Column("trimmed_tokens", sa.Integer, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
    )
    op.create_index("llm_ledger_tenant_at", "llm_ledger", ["tenant", "at"])
    op.create_index("llm_ledger_key_at", "llm_ledger", ["key_id", "at"])
    op.create_table(
        "llm_budgets",
        sa.Column("scope", sa.String(260), primary_key=True),
        sa.Column("requests_per_minute", sa.Integer),
        sa.Column("tokens_per_day", sa.BigInteger),
        sa.Column("cost_per_month", sa.Float),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER llm_ledger_no_{verb.lower()} BEFORE {verb} ON llm_ledger "
                "BEGIN SELECT RAISE(ABORT, 'tether: llm_ledger rows are immutable'); END"
            )
    else:
        op.execute(
            "CREATE TRIGGER llm_ledger_immutable BEFORE UPDATE OR DELETE ON llm_ledger "
            "FOR EACH ROW EXECUTE FUNCTION tether_immutable()"
        )
        op.execute(
            "CREATE TRIGGER llm_ledger_no_truncate BEFORE TRUNCATE ON llm_ledger "
            "FOR EACH STATEMENT EXECUTE FUNCTION tether_immutable()"
        )


def downgrade() -> None:
    op.drop_table("llm_budgets")
    op.drop_table("llm_ledger")
