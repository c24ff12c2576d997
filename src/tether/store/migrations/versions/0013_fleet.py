"""The fleet: change counters so a thousand-model refresh reads only what changed, retired models, deployment
events on the trail, versions flagged to run alone, models with an owner and tags, and an end to a rolled-back
candidate's diagnostic shadow.

- ``changes``: one counter per topic. Triggers in the database move it with every write to the tables behind it
  (however the write is made: tether or SQL by hand), and stamp each changed ``routing``, ``monitor_configs`` and
  ``placements`` row with the counter's new value in ``seq``, so a reader asks "what changed since N?" in one
  indexed query. On PostgreSQL the counter row is locked until the writing transaction commits, so writers commit
  in counter order and a reader never skips a row that commits late.
- ``routing.retired``: a retired model keeps its row as a tombstone (a reader that only reads what changed learns
  that it is gone).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.immutability import make_insert_only
from tether.store.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

D = sa.String(64)
#: Tables whose rows carry ``seq`` (topic = table name).
STAMPED = ("routing", "monitor_configs", "placements")
#: Tables whose writes only move their topic's counter (they are small: a reader reads them whole).
COUNTED = ("endpoints", "api_keys", "llm_budgets")


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("topic", sa.String(40), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(
        sa.table("changes", sa.column("topic", sa.String), sa.column("seq", sa.BigInteger)),
        [{"topic": t, "seq": 0} for t in (*STAMPED, *COUNTED)],
    )
    # Plain ADD COLUMN (not batch mode): SQLite keeps the tables' triggers.
    op.add_column("routing", sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("routing", sa.Column("retired", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("routing_seq", "routing", ["seq"])
    op.add_column("monitor_configs", sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("monitor_configs_seq", "monitor_configs", ["seq"])
    op.create_table(
        "placements",
        sa.Column("version_id", D, sa.ForeignKey("model_versions.id"), primary_key=True),
        sa.Column("alone", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("placements_seq", "placements", ["seq"])
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("version_id", D),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    make_insert_only(op.get_bind(), ("deployment_events",))
    op.create_table(
        "model_info",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200)),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("max_champion_age_days", sa.Float),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_index("model_info_owner", "model_info", ["owner"])
    op.create_table(
        "model_tags",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("tag", sa.String(100), primary_key=True),
    )
    op.create_index("model_tags_tag", "model_tags", ["tag"])
    op.add_column("rollouts", sa.Column("shadow_until", UTCDateTime))
    op.create_index("live_profiles_slice", "live_profiles", ["slice_start"])
    op.create_index("rollouts_state", "rollouts", ["state"])
    _triggers(op.get_bind().dialect.name)


def _triggers(dialect: str) -> None:
    if dialect == "sqlite":
        # SQLite cannot change NEW in a trigger: an AFTER trigger stamps the row it fired for. With SQLite's
        # default recursive_triggers=OFF the stamping UPDATE does not fire the trigger again.
        for t in STAMPED:
            key = "model_name" if t != "placements" else "version_id"
            for verb in ("INSERT", "UPDATE"):
                op.execute(
                    f"CREATE TRIGGER {t}_seq_{verb.lower()} AFTER {verb} ON {t} BEGIN "
                    f"UPDATE changes SET seq = seq + 1 WHERE topic = '{t}'; "
                    f"UPDATE {t} SET seq = (SELECT seq FROM changes WHERE topic = '{t}') WHERE {key} = NEW.{key}; "
                    "END"
                )
        for t in (*STAMPED, *COUNTED):
            verbs = ("DELETE",) if t in STAMPED else ("INSERT", "UPDATE", "DELETE")
            for verb in verbs:
                op.execute(
                    f"CREATE TRIGGER {t}_count_{verb.lower()} AFTER {verb} ON {t} BEGIN "
                    f"UPDATE changes SET seq = seq + 1 WHERE topic = '{t}'; END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION tether_stamp() RETURNS trigger AS $$ BEGIN "
            "UPDATE changes SET seq = seq + 1 WHERE topic = TG_ARGV[0] RETURNING seq INTO NEW.seq; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE OR REPLACE FUNCTION tether_count() RETURNS trigger AS $$ BEGIN "
            "UPDATE changes SET seq = seq + 1 WHERE topic = TG_ARGV[0]; RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        for t in STAMPED:
            op.execute(
                f"CREATE TRIGGER {t}_seq BEFORE INSERT OR UPDATE ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION tether_stamp('{t}')"
            )
        for t in (*STAMPED, *COUNTED):
            events = "DELETE OR TRUNCATE" if t in STAMPED else "INSERT OR UPDATE OR DELETE OR TRUNCATE"
            op.execute(
                f"CREATE TRIGGER {t}_count AFTER {events} ON {t} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION tether_count('{t}')"
            )
        # Gateways listening on tether_changes learn of monitor settings and placements at once too.
        for t in ("monitor_configs", "placements", "llm_budgets"):
            op.execute(
                f"CREATE TRIGGER {t}_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION tether_notify_change()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for t in STAMPED:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_seq ON {t}")
        for t in (*STAMPED, *COUNTED):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_count ON {t}")
        for t in ("monitor_configs", "placements", "llm_budgets"):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_notify ON {t}")
        op.execute("DROP FUNCTION IF EXISTS tether_stamp()")
        op.execute("DROP FUNCTION IF EXISTS tether_count()")
    else:
        for t in STAMPED:
            for verb in ("insert", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {t}_seq_{verb}")
        for t in (*STAMPED, *COUNTED):
            for verb in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {t}_count_{verb}")
    op.drop_index("rollouts_state", "rollouts")
    op.drop_index("live_profiles_slice", "live_profiles")
    op.drop_column("rollouts", "shadow_until")
    op.drop_table("model_tags")
    op.drop_table("model_info")
    op.drop_table("deployment_events")
    op.drop_table("placements")
    op.drop_index("monitor_configs_seq", "monitor_configs")
    op.drop_column("monitor_configs", "seq")
    op.drop_index("routing_seq", "routing")
    op.drop_column("routing", "retired")
    op.drop_column("routing", "seq")
    op.drop_table("changes")
