"""The routing table in the database: the one place the controller writes and every gateway reads.

A retired model keeps its row (``retired``), so a gateway that reads only the rows changed since its last look
(`read_since`, by the ``seq`` a database trigger stamps on every write: `tether.store.changes`) learns that it is
gone; every other read treats a retired row as no row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from tether.core.errors import NotFoundError
from tether.serving.routing import RoutingTable
from tether.store.tables import endpoints, routing


def read(conn: Connection, model: str) -> tuple[RoutingTable, int] | None:
    """The model's table and its revision (None when the model is not deployed)."""
    row = (
        conn.execute(select(routing).where(routing.c.model_name == model, routing.c.retired.is_(False)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    return _table(row), int(row["revision"])


def read_all(conn: Connection) -> dict[str, tuple[RoutingTable, int]]:
    """Every deployed model's table and revision."""
    q = select(routing).where(routing.c.retired.is_(False))
    return {r["model_name"]: (_table(r), int(r["revision"])) for r in conn.execute(q).mappings()}


def read_since(conn: Connection, seq: int) -> tuple[dict[str, tuple[RoutingTable, int]], set[str], int]:
    """The tables written after counter value ``seq``: (deployed ones with their revision, retired models, the
    highest ``seq`` read, or ``seq`` when nothing was)."""
    deployed: dict[str, tuple[RoutingTable, int]] = {}
    retired: set[str] = set()
    top = seq
    for r in conn.execute(select(routing).where(routing.c.seq > seq).order_by(routing.c.seq)).mappings():
        top = max(top, int(r["seq"]))
        if r["retired"]:
            retired.add(r["model_name"])
            deployed.pop(r["model_name"], None)
        else:
            deployed[r["model_name"]] = (_table(r), int(r["revision"]))
            retired.discard(r["model_name"])
    return deployed, retired, top


def write(conn: Connection, table: RoutingTable, at: datetime) -> None:
    values = {
        "champion_id": table.champion,
        "canary_id": table.canary,
        "canary_bp": table.canary_bp if table.canary else 0,
        "shadow_id": table.shadow,
        "shadow_bp": table.shadow_bp if table.shadow else 0,
        "salt": table.salt,
        "mirror_bp": table.mirror_bp if table.canary else 0,
        "updated_at": at,
    }
    current = conn.execute(select(routing.c.revision).where(routing.c.model_name == table.model)).first()
    if current is None:
        conn.execute(insert(routing).values(model_name=table.model, revision=1, **values))
    else:
        conn.execute(
            update(routing)
            .where(routing.c.model_name == table.model)
            .values(revision=current[0] + 1, retired=False, **values)
        )


def retire(conn: Connection, model: str, at: datetime) -> RoutingTable:
    """Stop serving ``model``: its row stays as a tombstone (see the module's docstring); returns what it served."""
    current = read(conn, model)
    if current is None:
        raise NotFoundError(f"{model} is not deployed", hint="see 'tether models --stage serving'")
    table, revision = current
    conn.execute(
        update(routing)
        .where(routing.c.model_name == model)
        .values(
            retired=True,
            revision=revision + 1,
            canary_id=None,
            canary_bp=0,
            shadow_id=None,
            shadow_bp=0,
            mirror_bp=0,
            updated_at=at,
        )
    )
    return table


def _table(row: object) -> RoutingTable:
    r = dict(row)  # type: ignore[call-overload]
    return RoutingTable(
        model=r["model_name"],
        champion=r["champion_id"],
        canary=r["canary_id"],
        canary_bp=r["canary_bp"],
        shadow=r["shadow_id"],
        shadow_bp=r["shadow_bp"],
        salt=r["salt"] or "",
        mirror_bp=r["mirror_bp"] or 0,
    )


def read_endpoints(conn: Connection) -> dict[str, tuple[str, str, str]]:
    """Version id -> (url, protocol, model name) for versions served by external endpoints."""
    rows = conn.execute(select(endpoints)).mappings()
    return {r["version_id"]: (r["url"], r["protocol"], r["model_name"]) for r in rows}


def write_endpoint(conn: Connection, version_id: str, url: str, protocol: str, model_name: str, at: datetime) -> None:
    conn.execute(delete(endpoints).where(endpoints.c.version_id == version_id))
    conn.execute(
        insert(endpoints).values(
            version_id=version_id, url=url, protocol=protocol, model_name=model_name, updated_at=at
        )
    )


def remove_endpoint(conn: Connection, version_id: str) -> bool:
    return bool(conn.execute(delete(endpoints).where(endpoints.c.version_id == version_id)).rowcount)


def set_shadow(conn: Connection, model: str, shadow_id: str | None, bp: int, at: datetime) -> RoutingTable:
    """Copy ``bp`` basis points of ``model``'s traffic to ``shadow_id`` (None: no shadow), the rest unchanged."""
    current = read(conn, model)
    if current is None:
        raise NotFoundError(f"{model} is not deployed", hint=f"tether deploy {model} VERSION")
    table, _ = current
    new = RoutingTable(
        model,
        table.champion,
        table.canary,
        table.canary_bp,
        shadow_id,
        bp if shadow_id else 0,
        table.salt,
        table.mirror_bp,
    )
    write(conn, new, at)
    return new
