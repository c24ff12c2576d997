"""`tether demo`: the tour a newcomer takes, on the embedded default (SQLite and local files).

It plays the story built so far with the real components: a git project with the fraud example, seeded data,
real training runs, registration of the triad, the evaluation gate (a first champion on absolute floors, a
candidate that passes, one that fails in a single country's slice), aliases backed by gate reports, loading
with verification, reproduction into an empty folder with retraining, and tamper detection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from rich.rule import Rule
from sqlalchemy import text

import tether
from tether.cli.demo_drift import drift_chapter
from tether.cli.demo_llm import GIT_ENV, llm_chapter
from tether.cli.output import console
from tether.core import IntegrityError, Settings, SigningKey, short
from tether.gate import load_spec, run_gate, set_policy
from tether.registry import ModelVersion, Registry
from tether.registry.reproduce import describe

EXAMPLE_FILES = ("generate.py", "train.py", "gate.yaml", "latency_wrapper.py", ".gitignore", "README.md")
#: Compressed time for the demo: seconds instead of minutes, tens of requests instead of thousands.
DEMO_PLAN = {
    # Larger first steps than production's 1/5/25 and a generous undecided limit: on a loaded two-core machine
    # the demo's gateway serves ~25 requests/s, and a step needs min_samples canary requests to advance.
    "steps": [10, 50, 100],
    "bake_seconds": 2,
    "min_samples": 50,
    "max_step_seconds": 150,
    "watch_seconds": 3,
    "guardrails": {
        "error_rate": {"margin": 0.1},
        "schema_violation_rate": {"margin": 0.1},
        "latency_p99": {"tolerance": 0.5, "margin": 0.2},
    },
}
TRAIN = "{python} train.py --data {data} --weights {weights} --metrics {metrics}"


def example_dir() -> Path:
    """The fraud example: inside the installed wheel, or at the repository root in a source checkout."""
    packaged = Path(tether.__file__).parent / "_examples" / "fraud"
    if packaged.is_dir():
        return packaged
    return Path(tether.__file__).resolve().parents[2] / "examples" / "fraud"


def _step(title: str) -> None:
    console.print()
    console.print(Rule(f"[bold]{title}", align="left"))


def _run(argv: list[str], cwd: Path) -> None:
    shown = " ".join("python" if a == sys.executable else a for a in argv)
    console.print(f"[dim]$ {shown}[/dim]")
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV}, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shown} failed:\n{proc.stdout}{proc.stderr}")
    for line in proc.stdout.strip().splitlines():
        console.print(f"  {line}")


def _train(project: Path, out: str, *extra: str) -> None:
    _run(
        [
            sys.executable,
            "train.py",
            "--data",
            "data/transactions.parquet",
            "--weights",
            f"model/{out}.pkl",
            "--metrics",
            f"model/{out}.json",
            *extra,
        ],
        project,
    )


def _register(reg: Registry, project: Path, out: str, params: dict[str, Any], *extra: str) -> ModelVersion:
    return reg.register(
        "fraud",
        code=project,
        data=project / "data/transactions.parquet",
        weights=project / f"model/{out}.pkl",
        flavor="sklearn",
        target="is_fraud",
        exclude=["gender"],
        params=params,
        metrics=json.loads((project / f"model/{out}.json").read_text()),
        train_command=" ".join([TRAIN, *extra]),
        sign=True,
    )


def _gate(reg: Registry, project: Path, v: ModelVersion) -> str:
    """Run the gate and print the verdict; returns the verdict."""
    report = run_gate(reg, load_spec(project / "gate.yaml"), v.ref)
    color = {"PASS": "green", "FAIL": "red"}.get(report.verdict.value, "yellow")
    champion = report.body["champion"]["ref"] if report.body["champion"] else "no champion (floors only)"
    checks = report.tests
    passed = sum(t["status"] == "pass" for t in checks)
    console.print(
        f"  gate {v.ref} vs {champion}: [bold {color}]{report.verdict.value}[/] "
        f"({passed}/{len(checks)} checks hold; report {short(report.id)})"
    )
    if report.verdict.value != "PASS":
        for reason in report.reasons:
            console.print(f"    - {reason}")
    return report.verdict.value


def run_demo(*, home: Path | None = None, rows: int = 50_000) -> Path:
    """Run the tour; returns the store's home (under ``home``, or a fresh temporary folder)."""
    root = Path(home).absolute() if home else Path(tempfile.mkdtemp(prefix="tether-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    store_home = root / ".tether"
    project = root / "fraud-project"
    py = sys.executable
    console.print(f"[bold]tether demo[/bold] {tether.__version__}: everything lives under {root}")

    _step("1. A training project under git, training data and a held-out gold set")
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    for name in EXAMPLE_FILES:
        src = example_dir() / name
        if src.exists():
            shutil.copy(src, project / name)
    _run(["git", "init", "-q", "-b", "main"], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-q", "-m", "fraud model"], project)
    _run([py, "generate.py", "--rows", str(rows), "--seed", "7", "--out", "data/transactions.parquet"], project)
    _run(
        [py, "generate.py", "--rows", str(max(rows * 4 // 5, 5000)), "--seed", "99", "--out", "data/gold.parquet"],
        project,
    )
    _train(project, "v1")

    _step("2. Register the triad: code commit + data snapshot + weights")
    settings = Settings(home=store_home, database_url="", blob_url="")
    SigningKey.generate().save(settings.resolved_signing_key)
    with Registry.open(settings) as reg:
        p1 = {"max_iter": 150, "learning_rate": 0.08, "seed": 7}
        v1 = _register(reg, project, "v1", p1)
        console.print(f"registered {v1.ref}  id {short(v1.id)}")
        console.print(
            f"  code    {short(v1.code.digest)}  commit {v1.code.commit_sha[:10]}, "
            f"{len(v1.code.environment['packages'])} packages locked"
        )
        console.print(f"  data    {short(v1.data.digest)}  {v1.data.row_count:,} rows x {len(v1.data.schema)} columns")
        console.print(f"  weights {short(v1.weights.digest)}  {v1.weights.size_bytes:,} bytes, Ed25519-signed")
        console.print("  inputs  " + ", ".join(f"{f['name']}:{f['type']}" for f in v1.input_schema["fields"]))
        console.print("  outputs " + ", ".join(f"{f['name']}:{f['type']}" for f in v1.output_schema["fields"]))
        again = _register(reg, project, "v1", p1)
        console.print(
            f"registering the same triad again returns the same version: {again.ref} "
            f"{'(same id)' if again.id == v1.id else '(DIFFERENT id: bug)'}"
        )

        _step("3. The evaluation gate (gate.yaml): floors for a first champion, then paired tests")
        policy = set_policy(reg, load_spec(project / "gate.yaml"), reason="the fraud team's gate", role="admin")
        console.print(
            f"  gate policy of fraud: {short(policy.digest)} (gate.yaml with its gold set pinned); only a PASS "
            "under it moves the champion"
        )
        if _gate(reg, project, v1) == "PASS":
            reg.set_alias("fraud", "champion", v1.ref, reason="first fraud model, passed the gate on floors")
            console.print(f"  fraud@champion -> {v1.ref} (backed by its PASS report)")
        else:
            reg.set_alias("fraud", "champion", v1.ref, reason="demo: too little data to pass", force=True)
            console.print(f"  fraud@champion -> {v1.ref} (FORCED: with --rows this small the gate cannot decide)")
        _train(project, "v2", "--max-iter", "200", "--learning-rate", "0.06")
        v2 = _register(
            reg,
            project,
            "v2",
            {"max_iter": 200, "learning_rate": 0.06, "seed": 7},
            "--max-iter",
            "200",
            "--learning-rate",
            "0.06",
        )
        _train(project, "v3", "--label-noise", "BR:0.04")
        v3 = _register(reg, project, "v3", {**p1, "label_noise": "BR:0.04"}, "--label-noise", "BR:0.04")
        console.print(f"  candidates: {v2.ref} (more trees) and {v3.ref} (a labelling bug in Brazil's training rows)")
        v2_verdict = _gate(reg, project, v2)
        _gate(reg, project, v3)
        try:
            reg.set_alias("fraud", "champion", v3.ref, reason="try the failed one")
        except tether.TetherError as e:
            console.print(f"  promoting {v3.ref} -> [green]refused:[/green] {e.message}")
        if v2_verdict == "PASS":
            reg.set_alias("fraud", "champion", v2.ref, reason="passed the gate against fraud/1")
        else:
            console.print(f"  {v2.ref} did not pass either: {v1.ref} stays champion")
        for e in reg.alias_history("fraud", "champion"):
            evidence = f"gate report {short(e.gate_report_id)}" if e.gate_report_id else "FORCED"
            console.print(f"  {e.at:%H:%M:%S}  champion -> {short(e.version_id or '')}  {evidence}: {e.reason}")

        _step("4. Load the champion (digests and signature verified first), predict")
        model = reg.load("fraud@champion")
        sample = pd.read_parquet(project / "data/transactions.parquet").head(5)
        out = model.predict(sample)
        shown = sample[["amount", "merchant_category", "country", "hour"]].assign(
            fraud_probability=out["probability"].round(4)
        )
        console.print(shown.to_string(index=False))
        model.close()

        _step("5. Reproduce the champion into an empty folder, then retrain there")
        dest = root / "reproduced"
        if dest.exists():
            shutil.rmtree(dest)
        console.print(f"[dim]$ tether reproduce fraud@champion {dest} --retrain[/dim]")
        report = reg.reproduce("fraud@champion", dest, retrain=True)
        for line in describe(report):
            console.print(f"  {line}")

        _step("6. Tampering is caught")
        champion = reg.get("fraud@champion")
        entry = reg.manifest(champion.weights.digest, "weights").entries[0]
        weights_blob = Path(reg.store.blobs.path(entry.digest))
        original = weights_blob.read_bytes()
        weights_blob.chmod(0o644)
        weights_blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        try:
            reg.load("fraud@champion")
            console.print("[red]tampered weights were loaded: bug[/red]")
        except IntegrityError as e:
            console.print(f"  flipped one bit of the weights blob -> [green]refused:[/green] {e.message}")
        finally:
            weights_blob.write_bytes(original)
            weights_blob.chmod(0o444)
        try:
            with reg.store.db.begin() as conn:
                conn.execute(text("UPDATE model_versions SET metrics = '{}' WHERE id = :i"), {"i": v1.id})
            console.print("[red]a registered version was changed: bug[/red]")
        except Exception as e:  # the database trigger refuses it
            console.print(
                f"  direct SQL UPDATE of a version row -> [green]refused by the database:[/green] "
                f"{str(getattr(e, 'orig', e)).splitlines()[0]}"
            )

        _step("7. Serve it: a gateway, one process per version, and progressive rollouts")
        _serve_and_roll_out(reg, project, settings)

        _step("8. Drift watch: a marketing campaign brings younger customers")
        drift_chapter(reg, project, settings, root)

        _step("9. The LLM gateway: OpenAI-compatible, cached, trimmed, budgeted, on the trail")
        llm_chapter(reg, settings, root)

        _step("10. The LLM evaluation loop: graders on live traffic, the LLM gate, rollback, prompt drift")
        if (root / "assistant" / ".git").exists():
            from tether.cli.demo_evals import run as run_evals

            run_evals(reg, settings, root, root / "assistant")
        else:
            console.print("  skipped: the llm extra is not installed")

        _step("11. The audit trail: every prediction on disk before its answer, under a signed Merkle tree")
        _audit(reg, settings)

    _step("Next")
    console.print("  (run these with the virtual environment active: source .venv/bin/activate)")
    h = f"--home {store_home}"
    console.print(f"  tether {h} serve --no-auth   # the dashboard: http://127.0.0.1:8080/ (or tether demo --serve)")
    console.print("  then, in another terminal:")
    console.print(f"  tether {h} rollout status fraud --watch 2")
    console.print(f"  tether {h} monitor status fraud")
    console.print(f"  tether {h} audit verify")
    console.print(f"  tether {h} llm ledger; tether {h} llm budget show")
    console.print(f"  tether {h} llm drift support --html llm.html; tether {h} llm scores support --limit 20")
    console.print(f'  tether {h} audit query "SELECT version_id, count(*) FROM records GROUP BY 1"')
    console.print(f"  tether {h} monitor anomalies fraud --all")
    console.print(f"  tether {h} versions fraud")
    console.print(f"  tether {h} gate list fraud")
    console.print(f"  tether {h} gate show <report> --html report.html")
    console.print(f"  tether {h} alias history fraud")
    console.print(f"  tether {h} reproduce fraud/1 {root / 'fraud-1'} --retrain")
    return store_home


def _serve_and_roll_out(reg: Registry, project: Path, settings: Settings) -> None:
    import asyncio
    import logging

    from tether.api.server import Server
    from tether.rollout.controller import Controller
    from tether.rollout.plan import Plan
    from tether.serving.window import MetricStore

    logging.getLogger("tether.serve").setLevel(logging.ERROR)  # the demo prints the rollout events itself
    plan = Plan.model_validate(DEMO_PLAN)
    champion = reg.get("fraud@champion")
    Controller(reg, MetricStore()).deploy("fraud", champion.ref, reason="serve the champion")
    console.print(f"  deployed {champion.ref}: 100% of fraud's traffic")
    # A candidate with the champion's exact weights, 400 ms slower per request: offline it is identical.
    slow_dir = project / "model" / "slow"
    slow_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(project / "model" / f"v{champion.number}.pkl", slow_dir / "model.pkl")
    (slow_dir / "delay.json").write_text(json.dumps({"seconds": 0.4}))
    slow = reg.register(
        "fraud",
        code=project,
        data=project / "data/transactions.parquet",
        weights=slow_dir,
        flavor="python",
        target="is_fraud",
        exclude=["gender"],
        flavor_options={"entry_point": "latency_wrapper:load"},
        params={"delay_seconds": 0.06},
    )
    _train(project, "v5", "--max-iter", "220", "--learning-rate", "0.06")
    good = _register(
        reg,
        project,
        "v5",
        {"max_iter": 220, "learning_rate": 0.06, "seed": 7},
        "--max-iter",
        "220",
        "--learning-rate",
        "0.06",
    )
    # Thousands of distinct customers: rollout traffic still in the drift watch's window when step 8 starts must
    # look like the population, not like 300 rows drawn again and again (whose own country and hour mix the
    # watch rightly flagged as a shift, once in a while, before the campaign began).
    records = pd.read_parquet(project / "data/gold.parquet").drop(columns=["is_fraud", "gender"]).head(3000)
    rows = records.to_dict("records")

    async def roll(candidate: ModelVersion) -> str:
        server = Server(settings, port=0, auth=False, tick_seconds=0.5)
        await server.start()
        try:
            await server.wait_ready()
            server.controller.start("fraud", candidate.ref, plan, force=False)
            await server.wait_ready()
            state = await _traffic(server, rows)
            if state in ("running", "paused"):
                # Never leave a rollout open behind the tour: the next one would be refused.
                server.controller.abort("fraud", reason=f"the demo's traffic ended with the rollout {state}")
                state = "aborted"
            return state
        finally:
            await server.stop()

    for candidate, label in (
        (good, "a retrained candidate"),
        (slow, "the champion's weights, 400 ms slower per request"),
    ):
        verdict = _gate(reg, project, candidate)
        if verdict != "PASS":
            console.print(f"  {candidate.ref} did not pass the gate: no rollout")
            continue
        console.print(f"  rollout of {candidate.ref} ({label}), plan {plan.steps}% with compressed bake times")
        state = asyncio.run(roll(candidate))
        ctrl = Controller(reg, MetricStore())
        ro = ctrl.latest("fraud")
        for e in ctrl.events(ro.id):
            console.print(f"    {e.kind:<9} {e.from_bp / 100:>5g}% -> {e.to_bp / 100:<5g}% {e.reason[:110]}")
        color = "green" if state == "completed" else "red"
        console.print(f"  -> [bold {color}]{state}[/]; champion is now {reg.get('fraud@champion').ref}")


async def _traffic(server: Any, rows: list[dict[str, Any]], seconds: float = 400.0) -> str:
    """A bounded load generator: 8 connections, one record per request, until the rollout ends."""
    import asyncio
    import time

    import aiohttp
    import numpy as np

    rng = np.random.default_rng(0)
    deadline = time.monotonic() + seconds
    state = ["running"]

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline and state[0] in ("running", "watching"):
            body = {"records": [rows[int(rng.integers(len(rows)))]], "entity_key": f"c{rng.integers(10**6)}"}
            async with session.post(f"{server.url}/v1/models/fraud/predict", json=body) as r:
                await r.read()

    async def watch() -> None:
        while time.monotonic() < deadline and state[0] in ("running", "watching"):
            await asyncio.sleep(0.25)
            state[0] = server.controller.latest("fraud").state

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(watch(), *[worker(session) for _ in range(8)])
    return state[0]


def _audit(reg: Registry, settings: Settings) -> None:
    from tether.audit.bridge import Bridge
    from tether.audit.log import AuditLog
    from tether.audit.replay import replay

    with AuditLog(settings) as log:
        Bridge(reg, log).sync()  # alias moves, gate verdicts, rollout decisions, anomalies
        log.seal()
        report = log.verify()
        from tether.audit.search import record_verify

        record_verify(log, report, at=reg.clock.now(), actor=settings.actor)  # the dashboard shows it
        _, rows = log.query(
            "SELECT version_id, count(*) AS n FROM records WHERE kind = 'prediction' GROUP BY 1 ORDER BY n DESC"
        )
        _, kinds = log.query("SELECT kind, count(*) FROM records WHERE kind <> 'prediction' GROUP BY 1 ORDER BY 1")
        _, last = log.query("SELECT trace_id FROM records WHERE kind = 'prediction' ORDER BY seq DESC LIMIT 1")
        checkpoints = log.checkpoints()
        console.print(
            f"  {report.records:,} records in {report.segments} Parquet segments, {len(checkpoints)} signed "
            f"checkpoints; root {checkpoints[-1]['root'][:16]}… at size {checkpoints[-1]['tree_size']:,}"
            if checkpoints
            else "  the audit log is empty"
        )
        for vid, n in rows:
            console.print(f"    {reg.get(vid).ref}: {n:,} predictions")
        console.print("    decisions: " + ", ".join(f"{n} {kind}" for kind, n in kinds))
        verdict = "[green]verifies[/green]" if report.ok else f"[red]FAILS[/red]: {report.problems[:3]}"
        console.print(f"  $ tether audit verify -> {verdict} (every leaf recomputed, every checkpoint checked)")
        if last:
            trace = last[0][0]
            found = log.trace(trace)
            r = replay(reg, log, trace)
            console.print(
                f"  $ tether audit trace {trace} -> record {found['record']['seq']}, inclusion proof of "
                f"{len(found['proof'])} hashes verifies: {found['proof_verifies']}"
            )
            console.print(
                f"  $ tether audit replay {trace} -> {r['version']} reloaded (verified), output digest "
                f"{r['replayed_output_digest'][:16]}… {'matches' if r['matches'] else '[red]DIFFERS[/red]'}"
            )
