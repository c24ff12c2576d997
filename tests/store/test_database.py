import pytest
from sqlalchemy import inspect, text

from tether.core import InvalidInputError, MissingExtraError
from tether.store import Database, normalise_url
from tether.store.database import DatabaseUnavailableError
from tether.store.tables import IMMUTABLE_TABLES, metadata


def test_migrations_run_on_first_use(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    assert db.current_revision() == Database.head_revision()
    assert set(inspect(db.engine).get_table_names()) >= set(metadata.tables)
    db.dispose()


def test_tables_module_matches_the_migrations(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    insp = inspect(db.engine)
    for name, table in metadata.tables.items():
        migrated = {c["name"] for c in insp.get_columns(name)}
        assert migrated == {c.name for c in table.columns}, name
    db.dispose()


def test_immutable_tables_refuse_update_and_delete_in_sql(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    now = "2026-01-01 00:00:00"
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alias_events (model_name, alias, version_id, previous_version_id, actor, reason, at) "
                "VALUES ('m', 'champion', NULL, NULL, 'me', 'why', :t)"
            ),
            {"t": now},
        )
    for stmt in ("UPDATE alias_events SET reason = 'rewritten'", "DELETE FROM alias_events"):
        with pytest.raises(Exception, match="rows are immutable"), db.begin() as conn:
            conn.execute(text(stmt))
    with db.connect() as conn:
        assert conn.execute(text("SELECT reason FROM alias_events")).scalar_one() == "why"
    assert "alias_events" in IMMUTABLE_TABLES
    db.dispose()


def test_urls_are_checked_and_normalised():
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    with pytest.raises(InvalidInputError, match="unsupported database"):
        normalise_url("mysql://u@h/db")
    with pytest.raises(InvalidInputError, match="not a database URL"):
        normalise_url("::nonsense::")


def test_unreachable_postgres_is_a_clear_error():
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        Database("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_missing_driver_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "psycopg":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MissingExtraError, match=r"tether\[postgres\]"):
        normalise_url("postgresql://u@h/db")


#: Tables that change by design (pointers and state machines whose history lives in an insert-only table).
# Working state, not records: the evidence a decision used is copied into its immutable rollout event.
MUTABLE = {
    "routing",
    "rollouts",
    "api_keys",
    "endpoints",
    "live_profiles",
    "monitor_configs",
    "llm_budgets",
    "leases",
    "metric_slices",
    "replicas",
    "changes",  # counters moved by triggers (migration 0013)
    "placements",  # each change is also a deployment event (insert-only)
    "model_info",  # owner, description, age policy: what a team edits
    "model_tags",
}


def test_every_table_is_either_insert_only_or_named_mutable():
    assert set(metadata.tables) == set(IMMUTABLE_TABLES) | MUTABLE
    assert not set(IMMUTABLE_TABLES) & MUTABLE


def test_every_insert_only_table_refuses_update_delete_and_truncate(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    with db.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")).all()
            for t in IMMUTABLE_TABLES:
                assert {f"{t}_no_update", f"{t}_no_delete"} <= {n for tbl, n in rows if tbl == t}, t
    if db.engine.dialect.name == "postgresql":
        for t in IMMUTABLE_TABLES:
            with pytest.raises(Exception, match="rows are immutable"), db.begin() as conn:
                conn.execute(text(f"TRUNCATE {t} CASCADE"))
    db.dispose()


def test_the_head_revision_is_alembics_own():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tether.store.database import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert Database.head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
