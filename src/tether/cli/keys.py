"""``tether keys``: API keys and their roles."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tether.cli.common import registry
from tether.cli.output import console

keys_app = typer.Typer(help="API keys for the gateway (roles: client, viewer, deployer, admin).", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for.")],
    role: Annotated[str, typer.Option(help="client, viewer, deployer or admin.")] = "client",
    tenant: Annotated[
        str | None, typer.Option(help="What its LLM budgets, caches and ledger rows are kept under (default: NAME).")
    ] = None,
    expires_in: Annotated[str | None, typer.Option(help="It stops working after this long: 90d, 12h, 30m.")] = None,
    all_tenants: Annotated[
        bool,
        typer.Option(
            "--all-tenants",
            help="A viewer or deployer key that reads every tenant's ledger, budgets, graded interactions and "
            "audit records (admin keys always do; others read their own tenant's).",
        ),
    ] = False,
) -> None:
    """Create an API key; it is shown once.

    Example: tether keys create checkout-service --role client --tenant shop --expires-in 90d

    Example: tether keys create ops-dashboard --role viewer --all-tenants
    """
    from tether.serving.auth import create_key, parse_duration

    with registry() as reg:
        now = reg.clock.now()
        expires = now + parse_duration(expires_in) if expires_in else None
        key, secret = create_key(
            reg.store.db, name, role, now, tenant=tenant, expires_at=expires, all_tenants=all_tenants
        )
    until = f", expires {key.expires_at:%Y-%m-%d %H:%M}Z" if key.expires_at else ""
    reads = "every tenant" if key.all_tenants else f"tenant {key.tenant}"
    console.print(f"key {key.id} ({key.role}) for {key.name}, tenant {key.tenant}, reads {reads}{until}: {secret}")
    console.print("[dim]store it now: only its hash is kept[/dim]")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key id from 'tether keys list'.")],
    grace: Annotated[str, typer.Option(help="How long the old key keeps working: 1h, 7d, 0s.")] = "1h",
    expires_in: Annotated[str | None, typer.Option(help="When the new key stops working: 90d, 12h.")] = None,
) -> None:
    """Replace a key: a new one for the same holder, tenant, role and reach; the old one expires after the grace.

    Example: tether keys rotate 3f2a9c41d0e5 --grace 24h --expires-in 90d
    """
    from tether.serving.auth import parse_duration, rotate_key

    with registry() as reg:
        now = reg.clock.now()
        expires = now + parse_duration(expires_in) if expires_in else None
        key, secret = rotate_key(reg.store.db, key_id, now, grace=parse_duration(grace), expires_at=expires)
    console.print(f"key {key.id} ({key.role}) for {key.name}, tenant {key.tenant}, replaces {key_id}: {secret}")
    console.print(f"[dim]{key_id} keeps working for {grace}; store the new secret now: only its hash is kept[/dim]")


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never the secrets).

    Example: tether keys list
    """
    from tether.serving.auth import list_keys

    with registry() as reg:
        rows = list_keys(reg.store.db)
    t = Table(box=box.SIMPLE_HEAD)
    for col in ("id", "name", "tenant", "role", "reads", "state", "replaces"):
        # Ids are copied into other commands: never cut short with an ellipsis, however narrow the terminal.
        t.add_column(col, no_wrap=col in ("id", "replaces", "role", "state"), overflow="fold", min_width=6)
    for r in rows:
        if r["revoked_at"]:
            state = f"revoked {r['revoked_at']:%Y-%m-%d}"
        elif r["expires_at"]:
            state = f"until {r['expires_at']:%Y-%m-%d %H:%M}"
        else:
            state = "active"
        t.add_row(
            str(r["id"]),
            str(r["name"]),
            str(r["tenant"]),
            str(r["role"]),
            "all tenants" if r["all_tenants"] else "own tenant",
            state,
            str(r["rotated_from"] or ""),
        )
    console.print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id from 'tether keys list'.")]) -> None:
    """Revoke an API key (the server stops accepting it within seconds).

    Example: tether keys revoke 3f2a9c41d0e5
    """
    from tether.serving.auth import revoke_key

    with registry() as reg:
        revoke_key(reg.store.db, key_id, reg.clock.now())
    console.print(f"revoked {key_id}")
