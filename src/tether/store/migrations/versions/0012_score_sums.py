"""An index for the LLM watch's epoch sums: a version's scores over a time range, summed where they are
(``tether.monitor.score_sums``), instead of found through the model's whole history.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("grader_scores_model_version_at", "grader_scores", ["model_name", "version_id", "at"])


def downgrade() -> None:
    op.drop_index("grader_scores_model_version_at", "grader_scores")
