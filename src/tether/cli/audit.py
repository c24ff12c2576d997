"""``tether audit``: verify, query, trace and replay the tamper-evident trail."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tether.cli.common import registry, settings
from tether.cli.output import console, err_console
from tether.core import short
from tether.core.errors import InvalidInputError

audit_app = typer.Typer(
    help="The audit trail: verify, query, trace and replay logged predictions.", no_args_is_help=True
)


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
    shipped: Annotated[
        bool,
        typer.Option(
            "--shipped",
            help="Verify the logs as shipped to the blob store (TETHER_BLOB_URL), as an auditor without the "
            "replicas' disks sees them.",
        ),
    ] = False,
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
    from tether.audit.logset import MAIN, AuditSet

    with _audit_log() as log, AuditSet(settings(), main=log, shipped_only=shipped) as trail:
        trail.seal()  # what the write-ahead logs hold is checked too
        report = trail.verify(held=notes)
        r = report.logs.get(MAIN)
        if r is not None and log.writer and not shipped:
            from tether.audit.search import record_verify

            record_verify(log, r, at=datetime.now(UTC), actor=settings().actor)
    for name, lr in report.logs.items():
        console.print(
            (f"{name}: " if len(report.logs) > 1 else "")
            + f"{lr.records:,} records in {lr.segments} segments, {lr.checkpoints} signed checkpoints"
            + (f", {lr.held} held checkpoint(s)" if lr.held else "")
            + f"; verified through record {lr.verified_through}"
        )
    if report.ok:
        what = f"all {len(report.logs)} audit logs verify" if len(report.logs) > 1 else "the audit log verifies"
        console.print(f"[green]{what}[/green]: every record hashes to its leaf, every root matches")
        return
    for name, lr in report.logs.items():
        for p in lr.problems:
            console.print("  [red]FAIL[/red] " + (f"{name}: " if len(report.logs) > 1 else "") + p)
    for p in report.problems:
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
    from tether.audit.logset import AuditSet

    with _audit_log() as log, AuditSet(settings(), main=log) as trail:
        trail.seal()
        names, rows = trail.query(sql) if len(trail.logs) > 1 else log.query(sql)
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
    from tether.audit.logset import AuditSet

    with _audit_log() as log, AuditSet(settings(), main=log) as trail:
        trail.seal()
        found = trail.trace(trace_id)
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
    from tether.audit.logset import AuditSet
    from tether.audit.replay import replay

    with registry() as reg, _audit_log() as log, AuditSet(settings(), main=log) as trail:
        trail.seal()
        r = replay(reg, trail, trace_id)
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
