"""``tether deploy``, ``tether rollout`` and ``tether endpoint``: routing, progressive rollouts, external endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tether.cli.common import registry
from tether.cli.output import console
from tether.core import short
from tether.core.errors import InvalidInputError

rollout_app = typer.Typer(
    help="Progressive rollouts: canary steps on evidence, automatic rollback.", no_args_is_help=True
)
endpoint_app = typer.Typer(
    help="Versions served by external endpoints (KServe, Triton, vLLM, ...).", no_args_is_help=True
)


def controller() -> Any:
    from tether.rollout.controller import Controller
    from tether.serving.window import MetricStore

    # The CLI has no traffic of its own: it changes state in the database, and 'tether serve' acts on it.
    return Controller(registry(), MetricStore())


def deploy(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="The version to serve as champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "first deployment",
    force: Annotated[bool, typer.Option(help="Without a PASS gate report (recorded).")] = False,
) -> None:
    """Make VERSION the champion and route all of NAME's traffic to it.

    Example: tether deploy fraud fraud/1
    """
    with controller() as c:
        vid = c.deploy(name, version, reason=reason, force=force)
    console.print(f"{name}: 100% -> {short(vid)} (tether serve picks it up)")


@rollout_app.command("start")
def rollout_start(
    name: Annotated[str, typer.Argument(help="Model name.")],
    candidate: Annotated[str, typer.Option(help="The version to roll out.")],
    plan: Annotated[Path | None, typer.Option(help="Rollout plan (YAML); see docs/rollout.md.")] = None,
    force: Annotated[bool, typer.Option(help="Without a PASS gate report (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --force).")] = None,
) -> None:
    """Start a progressive rollout: canary steps (default 1, 5, 25, 100%) on evidence, rollback on harm.

    Example: tether rollout start fraud --candidate fraud/2
    """
    from tether.rollout.plan import load_plan

    with controller() as c:
        ro = c.start(name, candidate, load_plan(plan), force=force, reason=reason)
    console.print(
        f"rollout {ro.id}: {short(ro.candidate_id)} at {ro.weight_bp / 100:g}% "
        f"(steps {', '.join(f'{s:g}' for s in ro.plan.steps)}%)"
    )


@rollout_app.command("status")
def rollout_status(
    name: Annotated[str, typer.Argument(help="Model name.")],
    url: Annotated[
        str, typer.Option(help="The running 'tether serve', for live guardrails.")
    ] = "http://127.0.0.1:8080",
    key: Annotated[str | None, typer.Option(envvar="TETHER_API_KEY", help="A viewer key for --url.")] = None,
    watch: Annotated[float, typer.Option(help="Refresh every this many seconds (0: once).")] = 0.0,
) -> None:
    """Weights, guardrail intervals and decisions of a model's latest rollout (live from the server).

    Example: tether rollout status fraud --watch 2
    """
    import time

    from rich.live import Live

    def fetch() -> dict[str, Any]:
        import urllib.request

        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"--url must be an http(s) URL, got {url!r}")
        req = urllib.request.Request(  # noqa: S310 (scheme checked above)
            f"{url}/v1/rollouts/{name}", headers={"Authorization": f"Bearer {key}"} if key else {}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (scheme checked above)
                return json.loads(resp.read())
        except OSError:
            from tether.rollout.progress import status_of

            with controller() as c:
                data = status_of(c, name, None, live=False)
            data["offline"] = f"no server answered at {url}: showing the stored state without live metrics"
            return data

    if watch <= 0:
        console.print(_rollout_view(fetch()))
        return
    with Live(_rollout_view(fetch()), console=console, refresh_per_second=4) as live:
        while True:
            time.sleep(watch)
            live.update(_rollout_view(fetch()))


def _rollout_view(data: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = []
    if data.get("offline"):
        parts.append(Text(data["offline"], style="dim"))
    ro = data.get("rollout")
    if ro is None:
        parts.append(Text(f"{data['model']}: no rollout yet"))
        return Group(*parts)
    parts.append(
        Text(
            f"rollout {ro['id']} of {data['model']}: {ro['state'].upper()}  candidate "
            f"{ro['candidate'][:12]} at {ro['weight_percent']:g}% (steps {ro['steps']})"
        )
    )
    if data.get("guardrails"):
        t = Table(
            "guardrail", "candidate", "champion", "n", "difference interval", "allowed", "decision", box=box.SIMPLE_HEAD
        )
        for g, c in data["guardrails"].items():
            t.add_row(
                g,
                f"{c['canary_rate']:.4f}",
                f"{c['champion_rate']:.4f}",
                f"{c['canary_n']}/{c['champion_n']}",
                "no data yet" if c["lower"] is None else f"[{c['lower']:+.4f}, {c['upper']:+.4f}]",
                f"<= {c['margin']:+.4f}",
                c["decision"],
            )
        parts.append(t)
    if (p := data.get("progress")) is not None:
        head = f"next step: {p['next_weight_percent']:g}%" if p.get("next_weight_percent") is not None else "next: done"
        parts.append(Text(f"{head}; waiting for " + ("; ".join(p["waiting_for"]) or "nothing (the next tick moves)")))
    elif data.get("offline") is None and ro["state"] in ("running", "watching", "paused"):
        parts.append(Text("no live evidence (the server has no traffic for this rollout yet)", style="dim"))
    ev = Table("time", "event", "weight", "actor", "reason", box=box.SIMPLE_HEAD)
    for e in data.get("events", []):
        ev.add_row(e["at"][11:19], e["kind"], f"{e['from']:g}% -> {e['to']:g}%", e["actor"], e["reason"])
    parts.append(ev)
    return Group(*parts)


def _manual(action: str, name: str, reason: str) -> None:
    with controller() as c:
        event = getattr(c, action)(name, reason=reason)
    console.print(f"rollout {event.rollout_id}: {event.kind} ({event.from_bp / 100:g}% -> {event.to_bp / 100:g}%)")


@rollout_app.command("promote")
def rollout_promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
) -> None:
    """Advance to the next step now, whatever the evidence says (recorded with your reason).

    Example: tether rollout promote fraud --reason "reviewed the dashboards"
    """
    _manual("promote", name, reason)


@rollout_app.command("pause")
def rollout_pause(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
) -> None:
    """Hold the rollout at its current weight.

    Example: tether rollout pause fraud --reason "investigating"
    """
    _manual("pause", name, reason)


@rollout_app.command("resume")
def rollout_resume(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
) -> None:
    """Resume a paused rollout (the step's evidence window restarts).

    Example: tether rollout resume fraud --reason "false alarm"
    """
    _manual("resume", name, reason)


@rollout_app.command("abort")
def rollout_abort(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
) -> None:
    """Send all traffic back to the champion (the candidate stays on shadow traffic for diagnosis).

    Example: tether rollout abort fraud --reason "bad feedback"
    """
    _manual("abort", name, reason)


@rollout_app.command("shadow")
def rollout_shadow(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str | None, typer.Argument(help="Diagnostic version (omit to stop shadowing).")] = None,
    percent: Annotated[float, typer.Option(help="Share of traffic copied.")] = 100.0,
) -> None:
    """Copy a share of live traffic to a diagnostic version; responses never change.

    Example: tether rollout shadow fraud fraud/3 --percent 10
    """
    with controller() as c:
        t = c.shadow(name, version, percent if version else 0)
    console.print(f"{name}: shadow {'off' if not t.shadow else f'{t.shadow_bp / 100:g}% -> {short(t.shadow)}'}")


@endpoint_app.command("set")
def endpoint_set(
    version: Annotated[str, typer.Argument(help="The version served there.")],
    url: Annotated[str, typer.Argument(help="Base URL, e.g. http://kserve.internal/.")],
    protocol: Annotated[str, typer.Option(help="tether or kserve-v2.")] = "tether",
    model_name: Annotated[str | None, typer.Option(help="The model's name at the endpoint (kserve-v2).")] = None,
) -> None:
    """Serve VERSION from an external endpoint instead of a local process.

    Example: tether endpoint set fraud/2 http://127.0.0.1:9000 --protocol kserve-v2 --model-name fraud
    """
    from tether.serving import table as routing_table
    from tether.serving.runtime import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"unknown protocol {protocol!r}", hint=f"use one of {', '.join(PROTOCOLS)}")
    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"the endpoint must be an http(s) URL, got {url!r}")
    with registry() as reg:
        mv = reg.get(version)
        with reg.store.db.begin() as conn:
            routing_table.write_endpoint(conn, mv.id, url, protocol, model_name or mv.name, reg.clock.now())
    console.print(f"{mv.ref} -> {url} ({protocol})")


@endpoint_app.command("remove")
def endpoint_remove(version: Annotated[str, typer.Argument(help="The version.")]) -> None:
    """Serve VERSION from a local process again.

    Example: tether endpoint remove fraud/2
    """
    from tether.serving import table as routing_table

    with registry() as reg:
        mv = reg.get(version)
        with reg.store.db.begin() as conn:
            removed = routing_table.remove_endpoint(conn, mv.id)
    console.print(f"{mv.ref}: {'local process' if removed else 'had no endpoint'}")


#: Top-level commands of this group, registered on the root app by tether.cli.app.
def retire(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the audit trail).")],
) -> None:
    """Stop serving a model: no gateway routes to it any more, and its instances stop. Its versions and history
    stay in the registry; deploy it again to serve it.

    Example: tether retire fraud-legacy --reason "replaced by fraud-v2"
    """
    with controller() as c:
        table = c.deployments.retire(name, reason=reason)
    console.print(f"{name}: retired (it served {short(table.champion)}; tether serve stops its instances)")


def isolate(
    version: Annotated[str, typer.Argument(help="The version (NAME/N, NAME@ALIAS or an id prefix).")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the audit trail).")],
    pooled: Annotated[bool, typer.Option("--pooled", help="Pool it even as a canary or a shadow.")] = False,
    default: Annotated[bool, typer.Option("--default", help="Back to the default placement.")] = False,
) -> None:
    """Run a version in an instance of its own whatever its role (a model that needs its own memory, or one whose
    native code you do not trust beside others). By default canaries and shadows run alone and champions share
    the pooled workers; --pooled pools it always, --default goes back to that.

    Example: tether isolate fraud/3 --reason "loads a 2 GiB embedding table"
    """
    if pooled and default:
        raise InvalidInputError("--pooled and --default exclude each other")
    alone = None if default else not pooled
    with controller() as c:
        vid = c.deployments.isolate(version, alone, reason=reason)
    where = {None: "the default placement", True: "an instance of its own", False: "the pool"}[alone]
    console.print(f"{short(vid)}: {where} (tether serve moves it once its new home answers)")


def deployments(
    name: Annotated[str, typer.Argument(help="Model name.")],
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """A model's deployment events: deploys, retirements, placements, ended diagnostic shadows.

    Example: tether deployments fraud
    """
    with controller() as c:
        events = c.deployments.events(name, limit=limit)
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("at", "kind", "version", "actor", "reason"):
        table.add_column(col)
    for e in events:
        table.add_row(e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, short(e.version_id or ""), e.actor, e.reason)
    console.print(table)


COMMANDS = [deploy, retire, isolate, deployments]
