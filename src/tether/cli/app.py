"""Typer commands. Each is one call into a domain package plus rendering; errors become one line and exit 2."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.table import Table

from tether.cli.common import State, _num, _pct, _short, registry, settings
from tether.cli.output import console, err_console
from tether.core import SigningKey, TetherError, short
from tether.core.errors import InvalidInputError
from tether.registry import ModelVersion, Registry
from tether.registry.reproduce import describe

app = typer.Typer(
    name="tether",
    help="Lifecycle governance for ML and LLM systems: lock every model to its code, data and weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
alias_app = typer.Typer(help="Move and inspect aliases (champion, challenger, custom names).", no_args_is_help=True)
app.add_typer(alias_app, name="alias")
gate_app = typer.Typer(help="The evaluation gate: prove a candidate no worse than the champion.", no_args_is_help=True)
app.add_typer(gate_app, name="gate")
data_app = typer.Typer(help="Data snapshots (gold sets) outside a model registration.", no_args_is_help=True)
app.add_typer(data_app, name="data")
rollout_app = typer.Typer(
    help="Progressive rollouts: canary steps on evidence, automatic rollback.", no_args_is_help=True
)
app.add_typer(rollout_app, name="rollout")
endpoint_app = typer.Typer(
    help="Versions served by external endpoints (KServe, Triton, vLLM, ...).", no_args_is_help=True
)
app.add_typer(endpoint_app, name="endpoint")
monitor_app = typer.Typer(
    help="Drift watch: baseline profiles, live feature drift, anomalies and what they trigger.", no_args_is_help=True
)
app.add_typer(monitor_app, name="monitor")
audit_app = typer.Typer(
    help="The audit trail: verify, query, trace and replay logged predictions.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
keys_app = typer.Typer(help="API keys for the gateway (roles: client, viewer, deployer, admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
llm_app = typer.Typer(
    help="LLM versions, budgets and the token ledger (the gateway: POST /v1/chat/completions).", no_args_is_help=True
)
app.add_typer(llm_app, name="llm")
budget_app = typer.Typer(help="Budgets per tenant or API key, reserved before dispatch.", no_args_is_help=True)
llm_app.add_typer(budget_app, name="budget")


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Store root (default: $TETHER_HOME or ./.tether).", show_default=False),
    ] = None,
) -> None:
    State.home = home


# ----------------------------------------------------------------------------------------------------------
@app.command()
def init(
    new_key: Annotated[bool, typer.Option("--new-key", help="Replace an existing signing key.")] = False,
) -> None:
    """Create the store (database, blob folder) and an Ed25519 signing key.

    Example: tether init
    """
    s = settings()
    with Registry.open(s) as reg:
        db = reg.store.db.url if s.database_url else str(s.home / "tether.db")
        revision = reg.store.db.current_revision()
    key_path = s.resolved_signing_key
    if key_path.exists() and not new_key:
        key = SigningKey.load(key_path)
        key_note = "kept"
    else:
        key = SigningKey.generate()
        key.save(key_path)
        key_note = "created"
    console.print(f"store     {s.home.absolute()}")
    console.print(f"database  {db} (schema {revision})")
    console.print(f"blobs     {s.resolved_blob_url}")
    console.print(f"key       {key_path} ({key_note}; public {key.public_key_hex[:16]}…)")


def _kv(values: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise InvalidInputError(f"{what} {item!r} is not KEY=VALUE", hint=f"write e.g. --{what} max_iter=150")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _load_mapping(path: Path | None, what: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as e:
        raise InvalidInputError(f"{what} file {path} is not valid JSON or YAML: {e}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} file {path} must hold a mapping, not {type(value).__name__}")
    return value


@app.command()
def register(
    name: Annotated[str, typer.Argument(help="Model name, e.g. fraud.")],
    code: Annotated[Path, typer.Option(help="A folder inside the git work tree of the training code.")],
    data: Annotated[Path, typer.Option(help="Training data: a Parquet/CSV file or a folder of them.")],
    weights: Annotated[Path, typer.Option(help="The trained weights: a file or a folder.")],
    flavor: Annotated[str, typer.Option(help="How to load the weights: sklearn, onnx or python.")],
    target: Annotated[list[str], typer.Option(help="Label column(s), left out of the input schema.")] = [],  # noqa: B006
    exclude: Annotated[
        list[str], typer.Option(help="Data column(s) that are not model inputs (ids, protected attributes).")
    ] = [],  # noqa: B006
    param: Annotated[list[str], typer.Option(help="Training parameter KEY=VALUE (repeatable).")] = [],  # noqa: B006
    params: Annotated[Path | None, typer.Option(help="Training parameters from a JSON/YAML file.")] = None,
    metrics: Annotated[Path | None, typer.Option(help="Training metrics from a JSON/YAML file.")] = None,
    train_command: Annotated[
        str | None,
        typer.Option(help="Command that retrains, with {data}, {weights}, {metrics}, {python} placeholders."),
    ] = None,
    input_schema: Annotated[Path | None, typer.Option(help="Declared input schema (JSON/YAML).")] = None,
    output_schema: Annotated[Path | None, typer.Option(help="Declared output schema (JSON/YAML).")] = None,
    flavor_option: Annotated[
        list[str], typer.Option(help="Flavor option KEY=VALUE, e.g. entry_point=pkg.mod:load.")
    ] = [],  # noqa: B006
    allow_dirty: Annotated[bool, typer.Option(help="Accept uncommitted changes; the diff is stored.")] = False,
    sign: Annotated[bool, typer.Option(help="Sign the weights manifest with the store's Ed25519 key.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the version record as JSON.")] = False,
) -> None:
    """Lock code, data and weights into a model version (the same triad gives the same version).

    Example: tether register fraud --code . --data data/transactions.parquet --weights model/model.pkl
    --flavor sklearn --target is_fraud --exclude gender --metrics metrics.json
    """
    all_params = {**(_load_mapping(params, "params") or {}), **_kv(param, "param")}
    options = _kv(flavor_option, "flavor-option")
    if isinstance(options.get("trust"), str):
        options["trust"] = [t for t in options["trust"].split(",") if t]
    with registry() as reg:
        before = {v.id for v in reg.versions()} if not as_json else set()
        mv = reg.register(
            name,
            code=code,
            data=data,
            weights=weights,
            flavor=flavor,
            target=target,
            exclude=exclude,
            params=all_params,
            metrics=_load_mapping(metrics, "metrics"),
            train_command=train_command,
            input_schema=_load_mapping(input_schema, "input schema"),
            output_schema=_load_mapping(output_schema, "output schema"),
            flavor_options=options,
            allow_dirty=allow_dirty,
            sign=sign,
        )
        from tether.monitor import baseline as baseline_mod

        # The drift watch's reference, computed now from the stored snapshot (once: it is then immutable).
        base = baseline_mod.ensure(reg, mv.id)
    if as_json:
        console.print_json(json.dumps(mv.to_json()))
        return
    verb = "already registered as" if mv.id in before else "registered"
    console.print(f"{verb} [bold]{mv.ref}[/bold]  id {mv.id}")
    _print_triad(mv)
    console.print(f"baseline profile {short(base.profile_digest)} of {len(base.profile.features)} inputs (drift watch)")


def _print_triad(mv: ModelVersion) -> None:
    t = Table(show_header=True, box=None, pad_edge=False)
    t.add_column("leg")
    t.add_column("digest")
    t.add_column("what")
    dirty = f" + diff {short(mv.code.diff_blob)}" if mv.code.diff_blob else ""
    t.add_row(
        "code",
        short(mv.code.digest),
        f"commit {mv.code.commit_sha[:12]}{dirty} /{mv.code.subdir}, "
        f"python {mv.code.environment.get('python')}, {len(mv.code.environment.get('packages', []))} packages",
    )
    t.add_row(
        "data",
        short(mv.data.digest),
        f"{mv.data.format}, {mv.data.row_count:,} rows, {len(mv.data.schema)} columns, {_size(mv.data.size_bytes)}",
    )
    signed = ", signed" if mv.weights.signature else ""
    t.add_row(
        "weights",
        short(mv.weights.digest),
        f"{mv.weights.file_count} file(s), {_size(mv.weights.size_bytes)}{signed}",
    )
    console.print(t)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@app.command()
def versions(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered versions with their aliases; each row is checked against its id first.

    A version whose row was changed is left out, and it and any deleted version are named on stderr (exit 1).

    Example: tether versions fraud
    """
    with registry() as reg:
        vs, problems = reg.check_versions(name)
    for p in problems:
        err_console.print(f"[red]integrity:[/red] {p}", highlight=False, soft_wrap=True)
    if as_json:
        console.print_json(json.dumps([v.to_json() for v in vs]))
    if problems:
        raise typer.Exit(1)
    if as_json:
        return
    t = Table(box=box.SIMPLE_HEAD)
    # The reference and id never wrap: they are what users copy. Details are in 'tether show'.
    t.add_column("version", no_wrap=True)
    t.add_column("id", no_wrap=True)
    t.add_column("aliases", overflow="fold")
    t.add_column("commit", no_wrap=True)
    t.add_column("metrics", overflow="fold")
    t.add_column("registered", overflow="fold")
    for v in vs:
        shown = " ".join(f"{k}={_num(v.metrics[k])}" for k in list(v.metrics)[:2])
        t.add_row(
            v.ref,
            short(v.id),
            ", ".join(v.aliases),
            v.code.commit_sha[:8] + ("*" if v.code.dirty else ""),
            shown,
            f"{v.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(t if vs else "no versions registered yet; see 'tether register --help'")


@app.command()
def show(
    version: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME@latest, NAME/NUMBER or an id prefix.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full record as JSON.")] = False,
) -> None:
    """Print a version's triad, schemas, parameters and metrics.

    Example: tether show fraud@champion
    """
    with registry() as reg:
        mv = reg.get(version)
    if as_json:
        console.print_json(json.dumps(mv.to_json()))
        return
    console.print(f"[bold]{mv.ref}[/bold]  id {mv.id}")
    console.print(f"aliases   {', '.join(mv.aliases) or '-'}")
    console.print(f"flavor    {mv.flavor} {json.dumps(mv.flavor_config, sort_keys=True)}")
    console.print(f"created   {mv.created_at.isoformat()} by {mv.created_by}")
    _print_triad(mv)
    console.print("inputs    " + ", ".join(f"{f['name']}:{f['type']}" for f in mv.input_schema["fields"]))
    console.print("outputs   " + ", ".join(f"{f['name']}:{f['type']}" for f in mv.output_schema["fields"]))
    console.print(f"params    {json.dumps(mv.params, sort_keys=True)}")
    console.print(f"metrics   {json.dumps(mv.metrics, sort_keys=True)}")
    if mv.train_command:
        console.print(f"retrain   {mv.train_command}")


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: Annotated[str, typer.Argument(help="The version to point at.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")],
    force: Annotated[
        bool, typer.Option(help="Move 'champion' without a PASS gate report (recorded with the reason).")
    ] = False,
) -> None:
    """Point NAME@ALIAS at a version; the move is kept with actor, time and reason.

    Moving 'champion' needs a PASS report from 'tether gate run' for that version against the current
    champion, or --force.

    Example: tether alias set fraud champion fraud/2 --reason "passed the gate"
    """
    with registry() as reg:
        ev = reg.set_alias(name, alias, version, reason=reason, force=force)
        mv = reg.get(ev.version_id or "")
    was = f" (was {short(ev.previous_version_id)})" if ev.previous_version_id else ""
    why = f", gate report {short(ev.gate_report_id)}" if ev.gate_report_id else " (FORCED)" if ev.forced else ""
    console.print(f"{name}@{alias} -> {mv.ref} {short(mv.id)}{was}{why}")


@alias_app.command("remove")
def alias_remove(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")],
) -> None:
    """Remove an alias (the removal is kept in the history).

    Example: tether alias remove fraud challenger --reason "experiment over"
    """
    with registry() as reg:
        reg.remove_alias(name, alias, reason=reason)
    console.print(f"{name}@{alias} removed")


@alias_app.command("history")
def alias_history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str | None, typer.Argument(help="Only this alias.")] = None,
    at: Annotated[
        datetime | None, typer.Option(help="Instead: which version ALIAS named at this time (ISO 8601, UTC).")
    ] = None,
) -> None:
    """Every move of a model's aliases, or which version an alias named at a given time.

    Example: tether alias history fraud champion --at 2026-11-26T12:00:00
    """
    with registry() as reg:
        if at is not None:
            if alias is None:
                raise InvalidInputError("--at needs an ALIAS", hint="e.g. tether alias history fraud champion --at ...")
            at = at if at.tzinfo else at.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
            vid = reg.alias_at(name, alias, at)
            if vid is None:
                console.print(f"{name}@{alias} pointed at no version at {at.isoformat()}")
            else:
                mv = reg.get(vid)
                console.print(f"{name}@{alias} at {at.isoformat()}: {mv.ref} {short(mv.id)}")
            return
        events = reg.alias_history(name, alias)
        refs = {v.id: v.ref for v in reg.versions(name)} if events else {}
    t = Table("time", "alias", "to", "from", "actor", "reason", "evidence")
    for e in events:
        t.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.alias,
            refs.get(e.version_id or "", "(removed)"),
            refs.get(e.previous_version_id or "", "-"),
            e.actor,
            e.reason,
            f"gate {short(e.gate_report_id)}" if e.gate_report_id else "FORCED" if e.forced else "",
        )
    console.print(t if events else f"no alias moves recorded for {name!r}")


@app.command()
def reproduce(
    version: Annotated[str, typer.Argument(help="The version to rebuild.")],
    dest: Annotated[Path, typer.Argument(help="An empty or new folder.")],
    retrain: Annotated[bool, typer.Option(help="Also run the recorded training command and compare.")] = False,
) -> None:
    """Materialise code, data and weights into DEST and verify every digest; optionally retrain.

    Example: tether reproduce fraud/1 /tmp/fraud-1 --retrain
    """
    with registry() as reg:
        report = reg.reproduce(version, dest, retrain=retrain)
    for line in describe(report):
        console.print(line)
    if report.environment_differences:
        console.print(
            f"environment: {len(report.environment_differences)} difference(s) from the recorded lock "
            f"(see {dest / 'requirements.lock'}): " + "; ".join(report.environment_differences[:3])
        )
    console.print(f"materialised into {report.dest}")
    if not report.verified or (report.retrain is not None and report.retrain.returncode != 0):
        raise typer.Exit(1)


@data_app.command("add")
def data_add(path: Annotated[Path, typer.Argument(help="A Parquet/CSV file or a folder of them.")]) -> None:
    """Snapshot a dataset (e.g. a gold set) whole; prints its digest for gate specs.

    Example: tether data add data/gold.parquet
    """
    with registry() as reg:
        snap = reg.add_data(path)
    console.print(f"{snap.digest}  {snap.format}, {snap.row_count:,} rows, {len(snap.schema)} columns")


def controller() -> Any:
    from tether.rollout.controller import Controller
    from tether.serving.window import MetricStore

    # The CLI has no traffic of its own: it changes state in the database, and 'tether serve' acts on it.
    return Controller(registry(), MetricStore())


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept requests without API keys (development).")] = False,
    tick: Annotated[float, typer.Option(help="Seconds between rollout controller evaluations.")] = 5.0,
) -> None:
    """Run the gateway, one instance process per routed version, the rollout controller and the drift watch.

    Example: tether serve --port 8080
    """
    import asyncio

    from tether.api.server import Server

    server = Server(settings(), host=host, port=port, auth=not no_auth, tick_seconds=tick)

    async def run() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # systemd and Kubernetes stop with SIGTERM
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        console.print(f"tether serving on {server.url} (auth {'off' if no_auth else 'on'}); Ctrl-C stops")
        try:
            await stop.wait()
        finally:
            await server.stop()  # stops the instances, writes the last profile slices

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
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
            from tether.api.server import status_of

            with controller() as c:
                data = status_of(c, name, None)
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


# ----------------------------------------------------------------------------------------------------------
def _watch() -> Any:
    from tether.monitor.watch import Watch

    return Watch(registry())


@monitor_app.command("status")
def monitor_status(
    name: Annotated[str, typer.Argument(help="Model name.")],
    window: Annotated[
        float | None, typer.Option(help="Look back this many seconds instead of the configured window.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Per version and feature: baseline against the live window, tests, sparklines and open anomalies.

    Reads the live profiles 'tether serve' stores, so it needs no running server.

    Example: tether monitor status fraud
    """
    from tether.monitor.report import sparkline, status_json

    w = _watch()
    with w.registry:
        data = status_json(w, name, window)
    if as_json:
        console.print_json(json.dumps(data))
        return
    cfg = data["config"]
    console.print(
        f"[bold]{name}[/bold]: window {cfg['window_seconds']:g} s, check every {cfg['check_seconds']:g} s, "
        f"baseline {cfg['baseline']}, budget {cfg['false_alarms_per_feature_per_30_days']:g} false alarm(s) "
        "per feature per 30 days"
    )
    if not data["versions"]:
        console.print("  no live traffic in the window (is 'tether serve' running and receiving requests?)")
    for v in data["versions"]:
        console.print(
            f"\n{v['ref']} ({v['version'][:12]}): {v['live_rows']:,} live rows, {v['hypotheses']} tests at family "
            f"level {v['family_alpha']:.2g} {v['note']}"
        )
        if v["issues"]:
            console.print("  input issues: " + ", ".join(f"{k} x{n}" for k, n in sorted(v["issues"].items())))
        t = Table(box=box.SIMPLE_HEAD)
        t.add_column("feature", no_wrap=True, max_width=28)
        for name in ("rows", "baseline", "live", "trend", "largest effect / minimum"):
            t.add_column(name)
        t.add_column("", no_wrap=True, min_width=5)  # ALARM or ok: never squeezed away on a narrow terminal
        for f in v["features"]:
            b, lv = f["baseline"], f["live"]
            if f["kind"] == "numeric":
                base_s = f"{_short(b.get('mean'))}±{_short(b.get('sd'))}"
                live_s = f"{_short(lv.get('mean'))}±{_short(lv.get('sd'))}"
            else:
                base_s = f"{b.get('top')} {_pct(b.get('top_share'))}"
                live_s = f"{b.get('top')} {_pct(lv.get('top_share'))}"
            if lv.get("missing"):
                live_s += f" miss {_pct(lv['missing'])}"
            if f["new_categories"]:
                live_s += f" new {','.join(f['new_categories'][:3])}"
            worst = max(f["tests"], key=lambda t: t["effect"] / t["min_shift"], default=None)
            worst_s = (
                f"{worst['test']} {_short(worst['effect'])}/{worst['min_shift']:g} p={worst['adjusted_p']:.1g}"
                if worst
                else "too few rows"
            )
            flag = "[bold red]ALARM[/]" if f["alarm"] else "[green]ok[/]"
            spark = sparkline([math.nan if x is None else x for x in f["spark"][-12:]])
            from rich.markup import escape

            feature = escape(f"{f['feature']} [{f['segment']}]" if f["segment"] else f["feature"])
            t.add_row(feature, f"{f['live_rows']:,}", base_s, live_s, spark, worst_s, flag)
        console.print(t)
    if data["open_anomalies"]:
        console.print("[bold red]open anomalies[/]")
        for a in data["open_anomalies"]:
            console.print(f"  #{a['id']} {a['detected_at'][:19]} {a['description']}")


@monitor_app.command("report")
def monitor_report(
    name: Annotated[str, typer.Argument(help="Model name.")],
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path("drift-report.html"),
    window: Annotated[
        float | None, typer.Option(help="Look back this many seconds instead of the configured window.")
    ] = None,
) -> None:
    """A self-contained HTML report: baseline against live distributions per feature, tests, anomalies.

    Example: tether monitor report fraud --out drift.html
    """
    from tether.monitor.report import html_report

    w = _watch()
    with w.registry:
        html = html_report(w, name, window)
    out.write_text(html)
    console.print(f"wrote {out} ({len(html):,} bytes)")


@monitor_app.command("anomalies")
def monitor_anomalies(
    name: Annotated[str, typer.Argument(help="Model name.")],
    all_: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """The model's drift anomalies, newest first (open ones only unless --all).

    Example: tether monitor anomalies fraud --all
    """
    w = _watch()
    with w.registry:
        found = w.anomalies(name, open_only=not all_)
    if as_json:
        console.print_json(json.dumps([a.to_json() for a in found]))
        return
    if not found:
        console.print(f"no {'' if all_ else 'open '}anomalies for {name}")
    for a in found:
        state = f"resolved {a.resolved_at:%Y-%m-%d %H:%M:%S}" if a.resolved_at else "open"
        console.print(f"#{a.id} {a.detected_at:%Y-%m-%d %H:%M:%S} {short(a.version_id)} ({state}) {a.describe()}")


@monitor_app.command("resolve")
def monitor_resolve(
    anomaly: Annotated[int, typer.Argument(help="Anomaly number (see 'tether monitor anomalies').")],
    reason: Annotated[str, typer.Option(help="Why it is resolved (recorded).")],
) -> None:
    """Close an anomaly; the same drift alarms again (as a new anomaly) if it is still there.

    Example: tether monitor resolve 3 --reason "campaign traffic, model retrained"
    """
    w = _watch()
    with w.registry:
        a = w.resolve(anomaly, reason=reason)
    console.print(f"#{a.id} resolved: {a.describe()}")


@monitor_app.command("set")
def monitor_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    config: Annotated[Path, typer.Option(help="Monitor settings (YAML/JSON); see docs/monitor.md.")],
) -> None:
    """Set what the drift watch of a model checks and does (applies to a running server within seconds).

    Example: tether monitor set fraud --config monitor.yaml
    """
    from pydantic import ValidationError

    from tether.monitor.config import MonitorConfig

    raw = _load_mapping(config, "monitor config")
    try:
        cfg = MonitorConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'config'}: {x['msg']}" for x in e.errors())
        raise InvalidInputError(f"monitor config {config}: {problems}", hint="see docs/monitor.md") from None
    w = _watch()
    with w.registry:
        w.set_config(name, cfg)
    console.print_json(json.dumps(cfg.model_dump(mode="json")))


@monitor_app.command("config")
def monitor_config(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Show the model's monitor settings (the defaults unless 'tether monitor set' stored some).

    Example: tether monitor config fraud
    """
    w = _watch()
    with w.registry:
        cfg = w.config(name)
    console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@monitor_app.command("baseline")
def monitor_baseline(
    version: Annotated[str, typer.Argument(help="A version: NAME/N, NAME@alias or an id prefix.")],
    gold: Annotated[
        str | None, typer.Option(help="Compute the gold baseline from this file/folder or snapshot digest.")
    ] = None,
) -> None:
    """Show (computing if needed) a version's baseline profile: training data, or the gold set with --gold.

    Example: tether monitor baseline fraud/2 --gold data/gold.parquet
    """
    from tether.monitor import baseline as baseline_mod
    from tether.monitor.profile import NumericProfile

    with registry() as reg:
        b = baseline_mod.ensure(reg, version, "gold" if gold else "training", data=gold)
        mv = reg.get(version)
    console.print(f"{mv.ref} {b.source} baseline from data {short(b.data_digest)} ({b.rows:,} rows)")
    console.print(f"  profile blob {b.profile_digest}")
    console.print(f"  segments: {', '.join(b.segments) or 'none'}")
    t = Table("feature", "kind", "rows", "missing", "mean / top", "p5 / p50 / p95", box=box.SIMPLE_HEAD)
    for name, p in b.profile.features.items():
        if isinstance(p, NumericProfile):
            qs = " / ".join(_num(p.quantile(q)) for q in (0.05, 0.5, 0.95))
            t.add_row(
                name, "numeric", f"{p.count:,}", _num(p.missing_ratio), f"{_num(p.mean)} ±{_num(p.variance**0.5)}", qs
            )
        else:
            top = ", ".join(f"{c} {n / p.count:.2f}" for c, n in p.counts.most_common(3)) if p.count else "-"
            t.add_row(name, "categorical", f"{p.count:,}", _num(p.missing_ratio), top, f"{len(p.counts)} categories")
    console.print(t)


# ----------------------------------------------------------------------------------------------------------
def _audit_log() -> Any:
    """The audit log, with the decisions recorded since the last seal (alias, gate, rollout, anomaly) copied in."""
    from tether.audit.bridge import Bridge
    from tether.audit.log import AuditLog

    log = AuditLog(settings())
    if log.writer:
        with registry() as reg:
            Bridge(reg, log).sync()
    return log


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint note you kept (a .checkpoint file, or a folder of them): the log must be "
            "consistent with it. Repeatable.",
        ),
    ] = None,
) -> None:
    """Recompute every record's leaf and the Merkle tree from the Parquet segments; check every checkpoint's
    signature, number, link to the one before and segment digest, and every checkpoint held elsewhere.

    Deleting the newest records together with their checkpoints is only visible against a checkpoint kept
    outside the store: pass yours with --checkpoint, or set TETHER_AUDIT_WITNESS so every note is published
    as it is signed (a witness folder is checked automatically). Exit 1 when anything fails; every problem is
    listed with how far verification got.

    Example: tether audit verify --checkpoint ~/kept/000000002466.checkpoint
    """
    notes: list[str] = []
    for path in checkpoint or []:
        files = sorted(path.glob("*.checkpoint")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise InvalidInputError(f"no checkpoint note at {path}", hint="give a .checkpoint file or a folder")
        notes += [f.read_text() for f in files]
    with _audit_log() as log:
        log.seal()  # what the write-ahead log holds is checked too
        r = log.verify(held=notes)
    console.print(
        f"{r.records:,} records in {r.segments} segments, {r.checkpoints} signed checkpoints"
        + (f", {r.held} held checkpoint(s)" if r.held else "")
        + f"; verified through record {r.verified_through}"
    )
    if r.ok:
        console.print("[green]the audit log verifies[/green]: every record hashes to its leaf, every root matches")
        return
    for p in r.problems:
        console.print(f"  [red]FAIL[/red] {p}")
    raise typer.Exit(1)


@audit_app.command("query")
def audit_query(
    sql: Annotated[str, typer.Argument(help="SQL over the view 'records' (DuckDB).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Query the sealed audit records with SQL (DuckDB over the Parquet segments).

    Example: tether audit query "SELECT kind, count(*) FROM records GROUP BY kind"
    """
    with _audit_log() as log:
        log.seal()
        names, rows = log.query(sql)
    if as_json:
        console.print_json(json.dumps([dict(zip(names, r, strict=True)) for r in rows], default=str))
        return
    t = Table(*names, box=box.SIMPLE_HEAD)
    for r in rows:
        t.add_row(*(v.hex()[:16] + "…" if isinstance(v, bytes) else str(v) for v in r))
    console.print(t)


@audit_app.command("trace")
def audit_trace(trace_id: Annotated[str, typer.Argument(help="A trace id (X-Tether-Trace of a response).")]) -> None:
    """A record with its inclusion proof against the latest signed checkpoint, and its version's triad.

    Example: tether audit trace 0192f0c4e7a37c1e9d0b6c1f2a3b4c5d
    """
    with _audit_log() as log:
        log.seal()
        found = log.trace(trace_id)
    rec = found["record"]
    console.print_json(json.dumps({k: v for k, v in rec.items() if k != "payload"}, default=str))
    cp = found["checkpoint"]
    console.print(f"leaf {found['leaf']} at index {rec['seq']} of {cp['tree_size']} (checkpoint {cp['file']})")
    console.print(f"inclusion proof: {len(found['proof'])} hashes, verifies: {found['proof_verifies']}")
    if not found["proof_verifies"]:
        why = "its content was changed" if not found["stored_leaf_matches"] else "it is not under the signed root"
        err_console.print(f"[red]integrity:[/red] this record does not verify: {why}; run 'tether audit verify'")
        raise typer.Exit(1)
    if rec["version_id"] and rec["kind"] in ("prediction", "llm", "version"):
        with registry() as reg:
            mv = reg.get(rec["version_id"])
        console.print(f"version {mv.ref}: code {short(mv.code.digest)} (commit {mv.code.commit_sha[:12]}), "
                      f"data {short(mv.data.digest)}, weights {short(mv.weights.digest)}")  # fmt: skip


@audit_app.command("consistency")
def audit_consistency(
    first: Annotated[int, typer.Argument(help="Tree size of the earlier checkpoint.")],
    second: Annotated[int | None, typer.Argument(help="Tree size of the later one (default: the latest).")] = None,
) -> None:
    """Prove that a later checkpoint extends an earlier one (nothing before it was changed): RFC 9162 proof.

    Exit 1 when the proof does not verify against the two signed roots.

    Example: tether audit consistency 1200
    """
    with _audit_log() as log:
        log.seal()
        r = log.consistency(first, second)
    a, b = r["first"], r["second"]
    console.print(f"checkpoint {a['tree_size']} (root {a['root'][:16]}…, {a['time']}) -> "
                  f"{b['tree_size']} (root {b['root'][:16]}…, {b['time']})")  # fmt: skip
    for h in r["proof"]:
        console.print(f"  {h}")
    console.print(f"consistency proof of {len(r['proof'])} hashes verifies: {r['verifies']}")
    if not r["verifies"]:
        raise typer.Exit(1)


@audit_app.command("replay")
def audit_replay(trace_id: Annotated[str, typer.Argument(help="The trace id of a logged prediction.")]) -> None:
    """Load the exact version that answered (verified), rerun the logged input, compare the output digest.

    Exit 1 when the outputs differ.

    Example: tether audit replay 0192f0c4e7a37c1e9d0b6c1f2a3b4c5d
    """
    from tether.audit.replay import replay

    with registry() as reg, _audit_log() as log:
        log.seal()
        r = replay(reg, log, trace_id)
    console.print(
        f"{trace_id}: {r['version']} rerun on the logged input; output digest {r['replayed_output_digest'][:16]}… "
        f"{'matches' if r['matches'] else 'DIFFERS FROM'} the logged {r['logged_output_digest'][:16]}…"
    )
    if not r["matches"] or not r["triad_matches"]:
        raise typer.Exit(1)


@audit_app.command("seal")
def audit_seal() -> None:
    """Seal what the write-ahead log holds into a segment with a signed checkpoint now (the server does it every 2 s).

    Example: tether audit seal
    """
    with _audit_log() as log:
        n = log.seal()
        size = log.tree.size
    console.print(f"sealed {n} record(s); the log holds {size:,}")


# ----------------------------------------------------------------------------------------------------------
# LLM versions, budgets, ledger
# ----------------------------------------------------------------------------------------------------------
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


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option(help="Keep the demo store here (default: a fresh temp folder).")] = None,
    rows: Annotated[int, typer.Option(help="Transactions to generate.")] = 50_000,
) -> None:
    """The tour: generate fraud data, train, register, alias, reproduce, retrain, catch tampering.

    Example: tether demo
    """
    from tether.cli.demo import run_demo

    run_demo(home=home, rows=rows)


from tether.cli import gate as _gate  # noqa: E402,F401  (registers the gate commands on gate_app)
from tether.cli import llm_evals as _llm_evals  # noqa: E402,F401  (registers the LLM evaluation commands)


def main() -> None:
    """Console entry point: a TetherError becomes one line on stderr and exit status 2.

    Usage errors are click's own (also exit status 2); anything else is a bug and keeps its traceback.
    """
    try:
        app()
    except TetherError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
