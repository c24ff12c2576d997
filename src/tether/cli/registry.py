"""``tether init|register|versions|show|reproduce``, ``tether alias`` and ``tether data``: the triad registry."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tether.cli.common import _kv, _load_mapping, _num, _print_triad, registry, settings
from tether.cli.output import console, err_console
from tether.core import SigningKey, short
from tether.core.errors import InvalidInputError
from tether.registry import Registry
from tether.registry.reproduce import describe

alias_app = typer.Typer(help="Move and inspect aliases (champion, challenger, custom names).", no_args_is_help=True)
data_app = typer.Typer(help="Data snapshots (gold sets) outside a model registration.", no_args_is_help=True)


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


def versions(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    metric: Annotated[str | None, typer.Option(help="Only versions with this training metric (e.g. auc).")] = None,
    metric_min: Annotated[float | None, typer.Option("--min", help="The metric at least this.")] = None,
    metric_max: Annotated[float | None, typer.Option("--max", help="The metric at most this.")] = None,
    after: Annotated[
        str | None, typer.Option(help="Across models: start after this NAME/NUMBER (the previous page's next).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Across models: versions per page.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered versions with their aliases; each row is checked against its id first.

    A version whose row was changed is left out, and it and any deleted version are named on stderr (exit 1).
    With --metric and no NAME, versions of every model are searched by that metric, a page at a time.

    Example: tether versions fraud
    Example: tether versions --metric auc --min 0.9
    """
    from tether.registry import catalog

    nxt = None
    with registry() as reg:
        if name is None and (metric is not None or after is not None):
            vs, nxt = catalog.search_versions(
                reg, metric=metric, metric_min=metric_min, metric_max=metric_max, after=after, limit=limit
            )
            problems: list[str] = []
        elif metric is not None:
            vs = catalog.find_versions(reg, name or "", metric=metric, metric_min=metric_min, metric_max=metric_max)
            problems = []
        else:
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
    empty = "no version matches" if metric or after else "no versions registered yet; see 'tether register --help'"
    console.print(t if vs else empty)
    if nxt:
        console.print(f"next page: --after {nxt}")


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


#: Top-level commands of this group, registered on the root app by tether.cli.app.
COMMANDS = [init, register, versions, show, reproduce]
