"""``tether llm register|ledger`` and ``tether llm budget``: LLM versions, budgets and the token ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tether.cli.common import _num, _print_triad, registry, settings
from tether.cli.output import console
from tether.core.errors import InvalidInputError

llm_app = typer.Typer(
    help="LLM versions, budgets and the token ledger (the gateway: POST /v1/chat/completions).", no_args_is_help=True
)
budget_app = typer.Typer(help="Budgets per tenant or API key, reserved before dispatch.", no_args_is_help=True)
llm_app.add_typer(budget_app, name="budget")


@llm_app.command("register")
def llm_register(
    name: Annotated[str, typer.Argument(help="Model name, e.g. helpdesk.")],
    spec: Annotated[Path, typer.Option(help="The LLM spec (YAML): backend, prompt, decoding, cache, context, prices.")],
    data: Annotated[Path, typer.Option(help="The prompt set: Parquet/CSV with a 'prompt' column (gold or tuning).")],
    weights: Annotated[
        Path | None,
        typer.Option(help="A Hugging Face model folder (backend kind local); omit for a remote backend."),
    ] = None,
    code: Annotated[Path, typer.Option(help="A folder inside the git work tree of the prompts and tools.")] = Path("."),
    allow_dirty: Annotated[bool, typer.Option(help="Accept uncommitted changes; the diff is stored.")] = False,
    sign: Annotated[bool, typer.Option(help="Sign the weights manifest with the store's Ed25519 key.")] = False,
) -> None:
    """Register an LLM version: backend, prompt template version and decoding, locked like any triad.

    For a remote OpenAI-compatible backend the spec file is the weights leg (its endpoint and model name are
    the identity). Registration answers the first prompts of the data as a smoke test.

    Example: tether llm register helpdesk --spec llm.yaml --weights model/ --data prompts.parquet
    """
    from tether.llm.flavor import PROMPT_SCHEMA
    from tether.llm.spec import LLMSpec

    parsed = LLMSpec.parse(spec)
    if weights is None and parsed.backend.kind == "local":
        raise InvalidInputError("a local backend needs --weights (a Hugging Face model folder)")
    with registry() as reg:
        before = {v.id for v in reg.versions() if v.name == name}
        mv = reg.register(
            name,
            code=code,
            data=data,
            weights=weights or spec,
            flavor="llm",
            flavor_options={"spec": parsed.to_json()},
            input_schema=PROMPT_SCHEMA,
            allow_dirty=allow_dirty,
            sign=sign,
        )
    verb = "already registered as" if mv.id in before else "registered"
    console.print(f"{verb} [bold]{mv.ref}[/bold]  id {mv.id}")
    _print_triad(mv)
    b = parsed.backend
    where = "embedded engine" if b.kind == "local" else f"{b.model} at {', '.join(b.endpoints)}"
    console.print(f"backend {where}; prompt version {parsed.prompt.version}; temperature {parsed.decoding.temperature}")


@budget_app.command("set")
def budget_set(
    scope: Annotated[str, typer.Argument(help="tenant:NAME (an API key's name) or key:KEY_ID.")],
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute.")] = None,
    tokens_per_day: Annotated[int | None, typer.Option(help="Input + output tokens per UTC day.")] = None,
    cost_per_month: Annotated[
        float | None, typer.Option(help="Cost per calendar month (UTC), price table's currency.")
    ] = None,
) -> None:
    """Set (or, with no limit given, remove) the budgets of a tenant or key; `tether serve` re-reads them.

    Example: tether llm budget set tenant:team-a --rpm 600 --tokens-per-day 2000000 --cost-per-month 500
    """
    from tether.llm.ledger import Limits, write_limits

    limits = Limits(rpm, tokens_per_day, cost_per_month)
    with registry() as reg:
        write_limits(reg.store.db, scope, limits, reg.clock.now(), settings().actor)
    shown = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in limits.to_json().items() if v is not None)
    console.print(f"{scope}: {shown or 'no budget'}")


@budget_app.command("show")
def budget_show(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every budget with what the ledger says is used today and this month.

    Example: tether llm budget show
    """
    from tether.llm.ledger import Budgets, read_limits, seed_from_ledger

    with registry() as reg:
        limits = read_limits(reg.store.db)
        used = Budgets()
        used.set_limits(limits)
        now = reg.clock.now()
        seed_from_ledger(reg.store.db, used, now)
    rows = {scope: used.usage(scope, now) for scope in sorted(limits)}
    if as_json:
        console.print_json(json.dumps(rows))
        return
    t = Table(box=box.SIMPLE)
    for col in ("scope", "rpm", "tokens/day", "used today", "cost/month", "used this month"):
        t.add_column(col)
    for scope, u in rows.items():
        lim = u["limits"]
        t.add_row(
            scope,
            _num(lim["requests_per_minute"] or "-"),
            _num(lim["tokens_per_day"] or "-"),
            f"{u['tokens_today']:,}",
            _num(lim["cost_per_month"] or "-"),
            f"{u['cost_this_month']:.4f}",
        )
    console.print(t if rows else "no budgets set (tether llm budget set tenant:NAME --tokens-per-day N)")


@llm_app.command("ledger")
def llm_ledger(
    hours: Annotated[float, typer.Option(help="How far back.")] = 24.0,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Tokens, cost and savings per tenant, model and cache layer, from the insert-only ledger.

    Example: tether llm ledger --hours 24
    """
    from datetime import timedelta

    from tether.llm.ledger import summary

    with registry() as reg:
        rows = summary(reg.store.db, since=reg.clock.now() - timedelta(hours=hours), tenant=tenant)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    t = Table(box=box.SIMPLE)
    for col in (
        "tenant",
        "model",
        "cache",
        "requests",
        "input",
        "cached",
        "output",
        "cost",
        "saved tokens",
        "saved cost",
        "trimmed",
    ):
        t.add_column(col, justify="left" if col in ("tenant", "model", "cache") else "right")
    for r in rows:
        t.add_row(
            r["tenant"],
            r["model_name"],
            r["cache"],
            f"{r['requests']:,}",
            f"{r['input_tokens']:,}",
            f"{r['cached_tokens']:,}",
            f"{r['output_tokens']:,}",
            f"{r['cost']:.4f}",
            f"{r['saved_tokens']:,}",
            f"{r['saved_cost']:.4f}",
            f"{r['trimmed_tokens']:,}",
        )
    console.print(t if rows else f"no LLM traffic in the last {hours:g} hours")
