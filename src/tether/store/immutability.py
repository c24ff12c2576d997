"""Insert-only tables, enforced inside the database itself, so that even hand-written SQL fails.

SQLite: BEFORE UPDATE and BEFORE DELETE triggers that abort (SQLite has no TRUNCATE; its ``DELETE FROM t``
fires the delete trigger). PostgreSQL: a row trigger for UPDATE and DELETE and a statement trigger for
TRUNCATE, all calling ``tether_immutable()``. The functions here are idempotent, so a migration can re-assert
them over every insert-only table whatever earlier migrations did.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION tether_immutable() RETURNS trigger AS $$ BEGIN "
    "RAISE EXCEPTION 'tether: % rows are immutable', TG_TABLE_NAME "
    "USING ERRCODE = 'integrity_constraint_violation'; "
    "END $$ LANGUAGE plpgsql"
)


def make_insert_only(conn: Connection, tables: tuple[str, ...] | list[str]) -> None:
    """Refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) on ``tables``; safe to call again."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        for t in tables:
            for verb in ("UPDATE", "DELETE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER IF NOT EXISTS {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                        f"BEGIN SELECT RAISE(ABORT, 'tether: {t} rows are immutable'); END"
                    )
                )
    elif dialect == "postgresql":
        conn.execute(text(_PG_FUNCTION))
        for t in tables:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {t}_immutable ON {t}"))
            conn.execute(
                text(
                    f"CREATE TRIGGER {t}_immutable BEFORE UPDATE OR DELETE ON {t} "
                    "FOR EACH ROW EXECUTE FUNCTION tether_immutable()"
                )
            )
            conn.execute(text(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}"))
            conn.execute(
                text(
                    f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION tether_immutable()"
                )
            )
    else:  # pragma: no cover
        raise RuntimeError(f"tether supports SQLite and PostgreSQL, not {dialect}")
