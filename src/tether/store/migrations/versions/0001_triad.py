"""The triad registry: code refs, data snapshots, weights, model versions, aliases and their history.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

D = sa.String(64)
IMMUTABLE = ("code_refs", "data_snapshots", "weights_artifacts", "model_versions", "alias_events")


def upgrade() -> None:
    op.create_table(
        "code_refs",
        sa.Column("digest", D, primary_key=True),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("repo_url", sa.Text),
        sa.Column("subdir", sa.Text, nullable=False),
        sa.Column("dirty", sa.Boolean, nullable=False),
        sa.Column("diff_blob", D),
        sa.Column("archive_blob", D, nullable=False),
        sa.Column("tree_digest", D, nullable=False),
        sa.Column("environment", sa.JSON, nullable=False),
        sa.Column("environment_digest", D, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "data_snapshots",
        sa.Column("digest", D, primary_key=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("row_count", sa.BigInteger, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "weights_artifacts",
        sa.Column("digest", D, primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("signature", sa.String(128)),
        sa.Column("public_key", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", D, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("code_digest", D, sa.ForeignKey("code_refs.digest"), nullable=False),
        sa.Column("data_digest", D, sa.ForeignKey("data_snapshots.digest"), nullable=False),
        sa.Column("weights_digest", D, sa.ForeignKey("weights_artifacts.digest"), nullable=False),
        sa.Column("flavor", sa.String(32), nullable=False),
        sa.Column("flavor_config", sa.JSON, nullable=False),
        sa.Column("input_schema", sa.JSON, nullable=False),
        sa.Column("output_schema", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("train_command", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("name", "number", name="uq_model_versions_name_number"),
    )
    op.create_table(
        "aliases",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("version_id", D, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version_id", D, sa.ForeignKey("model_versions.id")),
        sa.Column("previous_version_id", D),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False, index=True),
    )
    _immutability_triggers(IMMUTABLE)


def _immutability_triggers(tables: tuple[str, ...]) -> None:
    """Refuse UPDATE and DELETE on immutable tables inside the database itself, so even direct SQL fails."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for t in tables:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, 'tether: {t} rows are immutable'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION tether_immutable() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'tether: % rows are immutable', TG_TABLE_NAME "
            "USING ERRCODE = 'integrity_constraint_violation'; "
            "END $$ LANGUAGE plpgsql"
        )
        for t in tables:
            op.execute(
                f"CREATE TRIGGER {t}_immutable BEFORE UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION tether_immutable()"
            )
            op.execute(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION tether_immutable()"
            )
    else:  # pragma: no cover
        raise RuntimeError(f"tether supports SQLite and PostgreSQL, not {dialect}")


def downgrade() -> None:
    for t in (
        "alias_events",
        "aliases",
        "model_versions",
        "weights_artifacts",
        "data_snapshots",
        "code_refs",
    ):
        op.drop_table(t)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tether_immutable()")
