"""``tether llm graders|anchors|scores|drift|anomalies``: the LLM evaluation loop from the terminal.

Every command is a thin call into ``tether.graders`` and ``tether.monitor.llm_watch``, the functions the server's
routes (``/v1/models/{name}/llm/...``) and its loop use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tether.cli.common import _num, registry
from tether.cli.llm import llm_app
from tether.cli.output import console
from tether.core.errors import InvalidInputError

graders_app = typer.Typer(help="Grader versions: deterministic checks, the MiniLM grader, trained heads, LLM judges.")
anchors_app = typer.Typer(help="Anchor sets: frozen interactions every grader version re-scores (judge drift).")
llm_app.add_typer(graders_app, name="graders")
llm_app.add_typer(anchors_app, name="anchors")


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise InvalidInputError(f"{what} not found: {path}")
    return path.read_bytes()


@graders_app.command("register")
def graders_register(
    spec: Annotated[Path, typer.Argument(help="The grader spec (YAML: name, kind, config; see docs/llm-evals.md).")],
) -> None:
    """Register a grader version (the same spec and code give the same version).

    Example: tether llm graders register judge.yaml
    """
    from tether.graders.registry import Graders
    from tether.graders.spec import GraderSpec

    parsed = GraderSpec.parse(spec)
    with registry() as reg:
        gv, new = Graders(reg.store).register(parsed, actor=reg.settings.actor)
    console.print(f"{'registered' if new else 'already registered:'} {gv.ref} ({gv.kind}) {gv.id}")


@graders_app.command("fit")
def graders_fit(
    spec: Annotated[Path, typer.Argument(help="A head grader spec (kind: head).")],
    data: Annotated[Path, typer.Argument(help="Labelled interactions, JSON lines with 'label' 0 or 1.")],
) -> None:
    """Fit a head on MiniLM embeddings of labelled interactions and register it with its data.

    Example: tether llm graders fit head.yaml judged.jsonl
    """
    from tether.graders.registry import Graders
    from tether.graders.spec import GraderSpec

    parsed = GraderSpec.parse(spec)
    labelled = _read(data, "labelled data")
    with registry() as reg:
        gv, new = Graders(reg.store).fit_head(parsed, labelled, actor=reg.settings.actor)
    r = gv.report
    console.print(
        f"{'registered' if new else 'already registered:'} {gv.ref} {gv.id}: {r.get('rows')} rows "
        f"({r.get('good')} good, {r.get('bad')} bad), cross-validated accuracy {r.get('cv_accuracy')}"
    )


@graders_app.command("list")
def graders_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every grader version, each checked against its id.

    Example: tether llm graders list
    """
    from tether.graders.registry import Graders

    with registry() as reg:
        rows = Graders(reg.store).list()
    if as_json:
        console.print_json(json.dumps([g.to_json() for g in rows]))
        return
    t = Table(box=box.SIMPLE)
    for col in ("grader", "kind", "id", "code", "weights", "created"):
        t.add_column(col)
    for g in rows:
        t.add_row(
            g.ref,
            g.kind,
            g.id[:12],
            g.code_digest[:12],
            (g.weights_digest or "-")[:12],
            g.created_at.isoformat(timespec="seconds"),
        )
    console.print(t if rows else "no graders yet (tether serve registers tether-checks and tether-minilm on start)")


@graders_app.command("show")
def graders_show(ref: Annotated[str, typer.Argument(help="NAME, NAME/NUMBER or an id prefix.")]) -> None:
    """A grader version's spec, digests and training report.

    Example: tether llm graders show tether-minilm
    """
    from tether.graders.registry import Graders

    with registry() as reg:
        gv = Graders(reg.store).get(ref)
    console.print_json(json.dumps(gv.to_json()))


@anchors_app.command("add")
def anchors_add(
    name: Annotated[str, typer.Argument(help="The anchor set's name (named in the model's llm.anchors).")],
    data: Annotated[Path, typer.Argument(help="Interactions, JSON lines: prompt (or messages), answer, context.")],
) -> None:
    """Register (a new version of) an anchor set.

    Example: tether llm anchors add support anchors.jsonl
    """
    from tether.graders import anchors

    raw = _read(data, "anchor set")
    with registry() as reg:
        a = anchors.add(reg.store, name, raw, actor=reg.settings.actor, now=reg.clock.now())
    console.print(f"anchor set {a.name}: {a.rows} rows, {a.digest}")


@llm_app.command("scores")
def llm_scores(
    name: Annotated[str, typer.Argument(help="Model name.")],
    trace: Annotated[str | None, typer.Option(help="Only this interaction.")] = None,
    version: Annotated[str | None, typer.Option(help="Only this version (a ref).")] = None,
    metric: Annotated[str | None, typer.Option(help="Only this metric.")] = None,
    origin: Annotated[str, typer.Option(help="live, or anchor:* for anchor runs.")] = "live",
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Grader scores (insert-only rows), newest last: value or error, inclusion probability, grader version.

    Example: tether llm scores helpdesk --metric schema_valid --limit 20
    """
    from tether.graders.scores import read

    with registry() as reg:
        vid = reg.get(version).id if version else None
        rows = read(reg.store.db, name, trace_id=trace, version_id=vid, metric=metric, origin=origin)
    rows = rows[-limit:]
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    t = Table(box=box.SIMPLE)
    for col in ("at", "trace", "version", "grader", "metric", "value", "inclusion", "error"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["at"].isoformat(timespec="seconds"),
            r["trace_id"][:16],
            r["version_id"][:12],
            r["grader_id"][:12],
            r["metric"],
            _num(r["value"]) if r["value"] is not None else "-",
            _num(r["inclusion"]),
            (r["error"] or "")[:60],
        )
    console.print(t if rows else "no scores")


@llm_app.command("drift")
def llm_drift(
    name: Annotated[str, typer.Argument(help="Model name.")],
    check: Annotated[
        bool, typer.Option("--check", help="Record new alarms as anomalies (as tether serve does).")
    ] = False,
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Alignment decay, canary against champion, prompt drift and rates with intervals, for the current epoch.

    Example: tether llm drift helpdesk --html llm.html
    """
    from tether.monitor.llm_watch import LLMWatch

    with registry() as reg:
        watch = LLMWatch(reg, clock=reg.clock)
        if check:
            for a in watch.check(name):
                console.print(f"[red]anomaly {a.id}[/red]: {a.describe()}")
        status = watch.evaluate(name)
        if html is not None:
            from tether.monitor.llm_report import html as report

            html.write_text(report(watch, name))
            console.print(f"wrote {html}")
    body = status.to_json()
    if as_json:
        console.print_json(json.dumps(body))
        return
    _print_status(body)


def _print_status(body: dict[str, Any]) -> None:
    for note in body["notes"]:
        console.print(f"[dim]{note}[/dim]")
    t = Table(title="decay against each version's own baseline", box=box.SIMPLE)
    for col in ("version", "metric", "baseline", "live", "n", "interval", "decision"):
        t.add_column(col)
    for vid, tests in body["decay"].items():
        for d in tests:
            interval = "-" if d["lower"] is None else f"[{d['lower']:+.3f}, {d['upper']:+.3f}]"
            t.add_row(
                vid[:12],
                d["metric"],
                _num(d["baseline"]) if d["baseline"] is not None else "-",
                _num(d["live"]) if d["live"] is not None else "-",
                f"{d['baseline_n']}/{d['live_n']}",
                interval,
                d["decision"],
            )
    console.print(t)
    pd = body["prompt_drift"]
    console.print(
        f"prompt drift: [bold]{pd.get('decision')}[/bold]"
        + (f" (MMD² {pd['statistic']:.4f}, p {pd['p_value']:.2g})" if "statistic" in pd else "")
    )
    for topic in pd.get("topics", []):
        console.print(f"  new topic ({topic['prompts']} prompts): {topic['name']}")


@llm_app.command("anomalies")
def llm_anomalies(
    name: Annotated[str, typer.Argument(help="Model name.")],
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Decay, prompt-drift and judge-drift anomalies (resolve them with 'tether monitor resolve ID').

    Example: tether llm anomalies helpdesk --open
    """
    from tether.monitor.watch import Watch

    with registry() as reg:
        found = [
            a
            for a in Watch(reg).anomalies(name, open_only=open_only)
            if a.feature.startswith(("llm:", "judge:", "prompts"))
        ]
    if as_json:
        console.print_json(json.dumps([a.to_json() for a in found], default=str))
        return
    for a in found:
        state = "resolved" if a.resolved_at else "open"
        console.print(f"{a.id} [{state}] {a.detected_at.isoformat(timespec='seconds')} {a.describe()}")
    if not found:
        console.print("no LLM anomalies")
