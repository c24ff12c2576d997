"""``tether gate``: run the gate, read its reports, and set the gate policy each model is judged by."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.table import Table

from tether.cli.common import _num, registry
from tether.cli.output import console
from tether.core import short
from tether.core.errors import InvalidInputError, NotFoundError

gate_app = typer.Typer(help="The evaluation gate: prove a candidate no worse than the champion.", no_args_is_help=True)
policy_app = typer.Typer(help="The gate policy of each model: the spec and gold data a PASS must come from.")
gate_app.add_typer(policy_app, name="policy")


@gate_app.command("run")
def gate_run(
    name: Annotated[str, typer.Argument(help="Model name (must match the spec's 'model').")],
    candidate: Annotated[str, typer.Option(help="The version to evaluate, e.g. fraud/2.")],
    spec: Annotated[
        Path | None,
        typer.Option(help="An ad-hoc gate spec (YAML; see docs/gate.md). Default: the model's gate policy."),
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Also write the HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Evaluate a candidate against the current champion on the gold data; store the report.

    Without --spec it runs the model's gate policy: only such a report can move the champion or start a
    rollout. A --spec that is not the policy gives an ad-hoc report, kept and shown, that moves nothing.

    Exit status: 0 PASS, 1 FAIL, 3 INCONCLUSIVE (2 is bad input), so a pipeline halts unless it passed.

    Example: tether gate run fraud --candidate fraud/2
    """
    from tether.gate import load_spec, policy_spec, report_html, run_gate

    with registry() as reg:
        gate_spec = load_spec(spec) if spec is not None else policy_spec(reg, name)
        if gate_spec.model != name:
            raise InvalidInputError(f"the spec {spec} is for model {gate_spec.model!r}, not {name!r}")
        report = run_gate(reg, gate_spec, candidate)
        if html is not None:
            html.write_text(report_html(reg, report))
    _print_report(report, as_json)
    raise typer.Exit({"PASS": 0, "FAIL": 1}.get(report.verdict.value, 3))


@policy_app.command("set")
def policy_set(
    name: Annotated[str, typer.Argument(help="Model name (must match the spec's 'model').")],
    spec: Annotated[Path, typer.Option(help="The gate spec (YAML); its gold paths are snapshotted.")],
    reason: Annotated[str, typer.Option(help="Why this policy (recorded and audited).")],
) -> None:
    """Make a spec, with its gold sets pinned, the model's gate policy: the only one whose PASS moves champion.

    The CLI acts as the store's owner (role admin); over HTTP only admin keys may change a policy.

    Example: tether gate policy set fraud --spec examples/fraud/gate.yaml --reason "team spec v1"
    """
    from tether.gate import load_spec, set_policy

    gate_spec = load_spec(spec)
    if gate_spec.model != name:
        raise InvalidInputError(f"the spec {spec} is for model {gate_spec.model!r}, not {name!r}")
    with registry() as reg:
        pol = set_policy(reg, gate_spec, reason=reason, role="admin")
    was = f" (replaces {short(pol.previous_digest)}…)" if pol.previous_digest else ""
    console.print(f"{name}: gate policy {pol.digest}{was}")
    console.print("gold " + ", ".join(short(g) for g in pol.gold_digests))


@policy_app.command("show")
def policy_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the policy and its spec as JSON.")] = False,
) -> None:
    """The gate policy in force for a model, with its spec (verified against its digest).

    Example: tether gate policy show fraud
    """
    with registry() as reg:
        pol = reg.gate_policy(name)
        if pol is None:
            raise NotFoundError(f"{name} has no gate policy", hint=f"tether gate policy set {name} --spec gate.yaml")
        body = {**pol.to_json(), "spec": reg.gate_policy_spec(pol)}
    if as_json:
        console.print_json(json.dumps(body))
        return
    console.print(f"{name}: gate policy {pol.digest}")
    console.print(f"set {pol.at:%Y-%m-%d %H:%M} by {pol.actor} ({pol.role}): {pol.reason}")
    console.print(yaml.safe_dump(body["spec"], sort_keys=False).rstrip(), highlight=False)


@policy_app.command("history")
def policy_history(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Every gate policy a model has had, oldest first.

    Example: tether gate policy history fraud
    """
    with registry() as reg:
        rows = reg.gate_policy_history(name)
    t = Table("time", "policy", "actor", "role", "reason", box=box.SIMPLE_HEAD)
    for p in rows:
        t.add_row(f"{p.at:%Y-%m-%d %H:%M}", short(p.digest), p.actor, p.role, p.reason)
    console.print(t if rows else f"{name} has no gate policy")


@gate_app.command("show")
def gate_show(
    report_id: Annotated[str, typer.Argument(help="Report id or a 6+ character prefix.")],
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Show a stored gate report (its digest is verified on read).

    Example: tether gate show 3f2a9c --html report.html
    """
    from tether.gate import get_report, report_html

    with registry() as reg:
        report = get_report(reg, report_id)
        if html is not None:
            html.write_text(report_html(reg, report))
    _print_report(report, as_json)


@gate_app.command("list")
def gate_list(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """List a model's gate reports.

    Example: tether gate list fraud
    """
    from tether.gate import list_reports

    with registry() as reg:
        rows = list_reports(reg, name)
        refs = {v.id: v.ref for v in reg.versions(name)} if rows else {}
    t = Table("report", "time", "candidate", "champion", "verdict", box=box.SIMPLE_HEAD)
    for r in rows:
        t.add_row(
            short(r["id"]),
            f"{r['created_at']:%Y-%m-%d %H:%M}",
            refs.get(r["candidate_id"], "?"),
            refs.get(r["champion_id"] or "", "-"),
            r["verdict"],
        )
    console.print(t if rows else f"no gate reports for {name!r}")


VERDICT_STYLE = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow"}
STATUS_STYLE = {
    "pass": "green",
    "fail": "red",
    "inconclusive": "yellow",
    "no harm shown": "green",
    "no evidence": "dim",
}


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(report.to_json()))
        return
    b = report.body
    champ = b["champion"]["ref"] if b["champion"] else "none (absolute bounds only)"
    pol = b.get("policy") or {}
    verdict = b["verdict"]
    console.print(f"[{VERDICT_STYLE[verdict]}]{verdict}[/]  {b['candidate']['ref']} against champion {champ}")
    console.print(
        f"report {report.id}  spec {short(b['spec_digest'])}  gold "
        + ", ".join(short(g["digest"]) for g in b["gold"])
        + f" ({b['gold_rows']:,} rows)"
    )
    if pol:
        console.print(
            f"policy {short(pol['digest'])}: "
            + ("in force (this verdict can move the champion)" if pol.get("in_force") else "[yellow]ad hoc[/]")
        )
    t = Table(box=box.SIMPLE_HEAD)
    t.add_column("status", no_wrap=True)
    t.add_column("check", overflow="fold", min_width=20)
    t.add_column("candidate", no_wrap=True)
    t.add_column("vs champion", no_wrap=True)
    t.add_column("interval", no_wrap=True)
    t.add_column("allowed", overflow="fold")
    for x in b["tests"]:
        iv = x.get("interval")
        champion = "" if x.get("champion") is None else _num(x["champion"])
        if x.get("difference") is not None:
            champion += f" ({x['difference']:+.4f})"
        t.add_row(
            f"[{STATUS_STYLE.get(x['status'], '')}]{x['status']}[/]",
            f"{x['scope']}: {x['name']}" if x["scope"] != "overall" else x["name"],
            "" if x.get("candidate") is None else _num(x["candidate"]),
            champion,
            ""
            if not iv
            else f"[{iv[0]:+.4f}, {iv[1]:+.4f}]"
            if x.get("difference") is not None
            else f"[{iv[0]:.4f}, {iv[1]:.4f}]",
            x.get("allowed", ""),
        )
    console.print(t)
    for r in b["reasons"]:
        console.print(f"- {r}")
    for n in b.get("notes", []):
        console.print(f"[dim]note: {n}[/dim]")
