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
) -> None:
    """Create an API key; it is shown once.

    Example: tether keys create checkout-service --role client
    """
    from tether.serving.auth import create_key

    with registry() as reg:
        key, secret = create_key(reg.store.db, name, role, reg.clock.now())
    console.print(f"key {key.id} ({key.role}) for {key.name}: {secret}")
    console.print("[dim]store it now: only its hash is kept[/dim]")


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never the secrets).

    Example: tether keys list
    """
    from tether.serving.auth import list_keys

    with registry() as reg:
        rows = list_keys(reg.store.db)
    t = Table("id", "name", "role", "created", "revoked", box=box.SIMPLE_HEAD)
    for r in rows:
        t.add_row(
            str(r["id"]),
            str(r["name"]),
            str(r["role"]),
            f"{r['created_at']:%Y-%m-%d}",
            f"{r['revoked_at']:%Y-%m-%d}" if r["revoked_at"] else "",
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
