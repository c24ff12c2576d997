"""The routing table in the database: the one place the controller writes and every gateway reads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from tether.serving.routing import RoutingTable
from tether.store.tables import routing


def read(conn: Connection, model: str) -> tuple[RoutingTable, int] | None:
    """The model's table and its revision (None when the model is not deployed)."""
    row = conn.execute(select(routing).where(routing.c.model_name == model)).mappings().first()
    if row is None:
        return None
    return _table(row), int(row["revision"])


def read_all(conn: Connection) -> dict[str, tuple[RoutingTable, int]]:
    return {r["model_name"]: (_table(r), int(r["revision"])) for r in conn.execute(select(routing)).mappings()}


def write(conn: Connection, table: RoutingTable, at: datetime) -> None:
    values = {
        "champion_id": table.champion,
        "canary_id": table.canary,
        "canary_bp": table.canary_bp if table.canary else 0,
        "shadow_id": table.shadow,
        "shadow_bp": table.shadow_bp if table.shadow else 0,
        "updated_at": at,
    }
    current = conn.execute(select(routing.c.revision).where(routing.c.model_name == table.model)).first()
    if current is None:
        conn.execute(insert(routing).values(model_name=table.model, revision=1, **values))
    else:
        conn.execute(
            update(routing).where(routing.c.model_name == table.model).values(revision=current[0] + 1, **values)
        )


def _table(row: object) -> RoutingTable:
    r = dict(row)  # type: ignore[call-overload]
    return RoutingTable(
        model=r["model_name"],
        champion=r["champion_id"],
        canary=r["canary_id"],
        canary_bp=r["canary_bp"],
        shadow=r["shadow_id"],
        shadow_bp=r["shadow_bp"],
    )
