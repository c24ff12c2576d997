"""The change counters move with every write to the tables behind them, however it is made, and stamp the rows."""

from datetime import UTC, datetime

from sqlalchemy import insert, text

from tether.store import Database
from tether.store import changes as changes_mod
from tether.store.tables import code_refs, data_snapshots, model_versions, routing, weights_artifacts

NOW = datetime(2026, 12, 8, tzinfo=UTC)


def _version(conn, vid: str) -> None:
    d = "0" * 64
    if conn.execute(text("SELECT 1 FROM code_refs")).first() is None:
        conn.execute(
            insert(code_refs).values(
                digest=d,
                commit_sha="c",
                repo_url=None,
                subdir="",
                dirty=False,
                diff_blob=None,
                archive_blob=d,
                tree_digest=d,
                environment={},
                environment_digest=d,
                created_at=NOW,
            )
        )
        conn.execute(
            insert(data_snapshots).values(
                digest=d, format="parquet", schema=[], row_count=0, size_bytes=0, file_count=0, created_at=NOW
            )
        )
        conn.execute(insert(weights_artifacts).values(digest=d, size_bytes=0, file_count=0, created_at=NOW))
    conn.execute(
        insert(model_versions).values(
            id=vid,
            name="m",
            number=int(vid[-1], 16) + 1,
            code_digest=d,
            data_digest=d,
            weights_digest=d,
            flavor="sklearn",
            flavor_config={},
            input_schema={},
            output_schema={},
            params={},
            metrics={},
            created_at=NOW,
            created_by="t",
        )
    )


def test_every_write_moves_the_counter_and_stamps_its_row(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    a, b = "a" * 63 + "1", "a" * 63 + "2"
    with db.begin() as conn:
        _version(conn, a)
        _version(conn, b)
        before = changes_mod.counters(conn)
        conn.execute(insert(routing).values(model_name="m1", champion_id=a, updated_at=NOW))
        conn.execute(insert(routing).values(model_name="m2", champion_id=a, updated_at=NOW))
    with db.connect() as conn:
        after = changes_mod.counters(conn)
        rows = changes_mod.stamped_since(conn, routing, before["routing"])
    assert after["routing"] >= before["routing"] + 2  # SQLite moves it twice for an insert (insert, then stamp)
    assert [r["model_name"] for r in rows] == ["m1", "m2"] and rows[1]["seq"] == after["routing"]
    # SQL by hand, even one that writes an old seq itself, is stamped anew and seen.
    with db.begin() as conn:
        conn.execute(text("UPDATE routing SET champion_id = :b, seq = 1 WHERE model_name = 'm1'"), {"b": b})
    with db.connect() as conn:
        rows = changes_mod.stamped_since(conn, routing, after["routing"])
        assert [(r["model_name"], r["champion_id"]) for r in rows] == [("m1", b)]
        top = changes_mod.counters(conn)["routing"]
    # A delete leaves no row to stamp, but moves the counter: a reader knows to read the table whole.
    with db.begin() as conn:
        conn.execute(text("DELETE FROM routing WHERE model_name = 'm2'"))
    with db.connect() as conn:
        assert changes_mod.counters(conn)["routing"] > top
        assert changes_mod.stamped_since(conn, routing, top) == []
    # Small tables only count.
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO endpoints (version_id, url, protocol, model_name, updated_at) "
                "VALUES (:v, 'u', 'tether', 'm', :t)"
            ),
            {"v": a, "t": NOW},
        )
    with db.connect() as conn:
        assert changes_mod.counters(conn)["endpoints"] > after["endpoints"]
    db.dispose()
