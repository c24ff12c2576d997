"""``tether models``, ``tether model``, ``tether compare``: finding a model among thousands, what a team says
about it, two versions side by side (`tether.registry.catalog`, `tether.registry.info`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tether.cli.common import _num, registry
from tether.cli.output import console
from tether.registry import catalog
from tether.registry import info as info_ops


def models(
    search: Annotated[str | None, typer.Argument(help="Part of the name (any case).")] = None,
    tag: Annotated[str | None, typer.Option(help="Only models with this tag.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only models this team owns.")] = None,
    stage: Annotated[str | None, typer.Option(help="serving, rollout, registered or retired.")] = None,
    health: Annotated[
        str | None, typer.Option(help="healthy, anomaly or stale (unready and over_budget: the API).")
    ] = None,
    after: Annotated[str | None, typer.Option(help="Start after this name (the previous page's 'next').")] = None,
    limit: Annotated[int, typer.Option(help="Models per page.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List and search models: champion, aliases, stage, latest rollout, owner and tags, a page at a time.

    Example: tether models fraud --owner risk-team --stage serving
    """
    with registry() as reg:
        found = catalog.search(reg, catalog.ModelQuery(search, tag, owner, stage, health, after, limit))
    if as_json:
        console.print_json(
            json.dumps({"items": [m.to_json() for m in found.items], "total": found.total, "next": found.next})
        )
        return
    t = Table(box=box.SIMPLE_HEAD)
    for col in ("model", "champion", "stage", "rollout", "versions", "owner", "tags"):
        t.add_column(col, overflow="fold")
    for m in found.items:
        rollout = f"#{m.rollout['id']} {m.rollout['state']}" if m.rollout else "-"
        name = m.name + ("  [red]" + "; ".join(m.problems) + "[/red]" if m.problems else "")
        t.add_row(name, m.champion or "-", m.stage, rollout, str(m.versions), m.owner or "-", ", ".join(m.tags))
    console.print(t if found.items else "no model matches")
    shown = f"{len(found.items)} of {found.total}"
    console.print(f"{shown}; next page: --after {found.next}" if found.next else shown)


def model(
    name: Annotated[str, typer.Argument(help="Model name.")],
    owner: Annotated[str | None, typer.Option(help="The owning team.")] = None,
    description: Annotated[str | None, typer.Option(help="What the model is for.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Add a tag (repeat for several).")] = None,
    untag: Annotated[list[str] | None, typer.Option(help="Remove a tag.")] = None,
    max_champion_age: Annotated[
        float | None, typer.Option(help="Days a served champion may stay before the fleet view flags it.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show or change what a team says about a model: owner, description, tags, champion age policy.

    Example: tether model fraud --owner risk-team --tag pii --tag tier-1 --max-champion-age 90
    """
    changes: dict[str, Any] = {}
    if owner is not None:
        changes["owner"] = owner
    if description is not None:
        changes["description"] = description
    if max_champion_age is not None:
        changes["max_champion_age_days"] = max_champion_age
    with registry() as reg:
        if changes or tag or untag:
            with reg.store.db.begin() as conn:
                info = info_ops.write(
                    conn,
                    name,
                    at=reg.clock.now(),
                    actor=reg.settings.actor,
                    add_tags=tag or [],
                    remove_tags=untag or [],
                    **changes,
                )
        else:
            reg.versions(name)  # an unknown model is an error, not empty info
            with reg.store.db.connect() as conn:
                info = info_ops.read(conn, [name])[name]
    if as_json:
        console.print_json(json.dumps(info.to_json()))
        return
    console.print(f"[bold]{info.name}[/bold]  owner {info.owner or '-'}  tags {', '.join(info.tags) or '-'}")
    if info.description:
        console.print(info.description)
    if info.max_champion_age_days is not None:
        console.print(f"champion flagged when older than {info.max_champion_age_days:g} days")


def compare(
    a: Annotated[str, typer.Argument(help="A version (NAME/N, NAME@ALIAS or an id prefix).")],
    b: Annotated[str, typer.Argument(help="Another version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Two versions side by side: code, data, weights, metrics (with the difference), params, inputs, and the
    installed packages that differ.

    Example: tether compare fraud@champion fraud/4
    """
    with registry() as reg:
        out = catalog.compare(reg, a, b)
    if as_json:
        console.print_json(json.dumps(out, default=str))
        return
    left, right = out["left"]["ref"], out["right"]["ref"]
    t = Table(box=box.SIMPLE_HEAD)
    t.add_column("")
    t.add_column(left, overflow="fold")
    t.add_column(right, overflow="fold")
    for what in ("code", "data", "weights"):
        row = out["triad"][what]
        t.add_row(what, row["left"][:12], row["right"][:12] + ("  (same)" if row["same"] else ""))
    for section in ("metrics", "params", "inputs"):
        for r in out[section]:
            delta = f"  ({r['delta']:+.4g})" if "delta" in r else ""
            left_v, right_v = (_cell(section, r[side]) for side in ("left", "right"))
            t.add_row(f"{section[:-1]} {r['name']}", left_v, right_v + delta)
    console.print(t)
    for line in out["environment"][:20]:
        console.print(f"environment: {line}")


def _cell(section: str, value: Any) -> str:
    if section == "inputs":
        return str((value or {}).get("type", "absent"))
    return "-" if value is None else _num(value)


COMMANDS = [models, model, compare]
