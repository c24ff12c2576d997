"""What changed since a reader last looked: one counter per topic, moved by the database itself.

Migration 0013 puts triggers on ``routing``, ``monitor_configs`` and ``placements`` that move the topic's counter
in ``changes`` with every written row and stamp the row with the new value (``seq``), and triggers on
``endpoints``, ``api_keys`` and ``llm_budgets`` that only move their counter. However a row is written (tether's
code, or SQL by hand), its readers see the counter move. A gateway's refresh reads the counters (one query) and,
for a topic that moved, only the rows stamped since its last look; a delete (which leaves no row to stamp) moves
the counter with no row to show for it, and the reader then reads the table whole.

On PostgreSQL the trigger's ``UPDATE changes`` holds the counter row's lock until the writing transaction ends, so
writes of one topic commit in counter order: a reader that saw counter N has seen every row stamped N or less.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, select

from tether.store.tables import changes

TOPICS = ("routing", "monitor_configs", "placements", "endpoints", "api_keys", "llm_budgets")


def counters(conn: Connection) -> dict[str, int]:
    """Every topic's counter."""
    return {r[0]: int(r[1]) for r in conn.execute(select(changes.c.topic, changes.c.seq))}


def stamped_since(conn: Connection, table: Table, seq: int) -> list[dict[str, object]]:
    """The rows of a stamped table written after counter value ``seq``, oldest first."""
    q = select(table).where(table.c.seq > seq).order_by(table.c.seq)
    return [dict(r) for r in conn.execute(q).mappings()]
