"""Graders: versioned grader components, the scores they give, the sampled prompts the prompt-drift test reads,
and anchor sets (all insert-only).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.immutability import make_insert_only
from tether.store.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

D = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "grader_versions",
        sa.Column("id", D, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("code_digest", D, nullable=False),
        sa.Column("weights_digest", D),
        sa.Column("data_digest", D),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("name", "number", name="uq_grader_versions_name_number"),
    )
    op.create_table(
        "grader_scores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(64), nullable=False, index=True),
        sa.Column("grader_id", D, sa.ForeignKey("grader_versions.id"), nullable=False, index=True),
        sa.Column("metric", sa.String(120), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("origin", sa.String(80), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False, index=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("version_id", D, nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("arm", sa.String(20), nullable=False),
        sa.Column("cache", sa.String(20), nullable=False),
        sa.Column("stratum", sa.String(300), nullable=False),
        sa.Column("inclusion", sa.Float, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.UniqueConstraint("trace_id", "grader_id", "metric", "origin", name="uq_grader_scores_once"),
    )
    op.create_table(
        "prompt_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(64), nullable=False, unique=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("version_id", D, nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False, index=True),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("inclusion", sa.Float, nullable=False),
    )
    op.create_table(
        "anchor_sets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, index=True),
        sa.Column("digest", D, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    make_insert_only(op.get_bind(), ("grader_versions", "grader_scores", "prompt_samples", "anchor_sets"))


def downgrade() -> None:  # pragma: no cover - tether never downgrades a store
    raise NotImplementedError("tether stores are migrated forwards only")
