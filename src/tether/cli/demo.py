"""`tether demo`: the tour a newcomer takes, on the embedded default (SQLite and local files).

It plays the story built so far with the real components: a git project with the fraud example, seeded data,
a real training run, registration of the triad, aliases with history, loading with verification,
reproduction into an empty folder with retraining, and tamper detection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from rich.rule import Rule
from sqlalchemy import text

import tether
from tether.cli.output import console
from tether.core import IntegrityError, Settings, SigningKey, short
from tether.registry import Registry
from tether.registry.reproduce import describe

GIT_ENV = {
    "GIT_AUTHOR_NAME": "tether demo",
    "GIT_AUTHOR_EMAIL": "demo@tether.invalid",
    "GIT_COMMITTER_NAME": "tether demo",
    "GIT_COMMITTER_EMAIL": "demo@tether.invalid",
}
EXAMPLE_FILES = ("generate.py", "train.py", ".gitignore", "README.md")


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
    console.print(f"[dim]$ {' '.join(argv)}[/dim]")
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}")
    for line in proc.stdout.strip().splitlines():
        console.print(f"  {line}")


def run_demo(*, home: Path | None = None, rows: int = 50_000) -> None:
    root = Path(home).absolute() if home else Path(tempfile.mkdtemp(prefix="tether-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    store_home = root / ".tether"
    project = root / "fraud-project"
    py = sys.executable
    console.print(f"[bold]tether demo[/bold] {tether.__version__}: everything lives under {root}")

    _step("1. A training project under git")
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
        [
            py,
            "train.py",
            "--data",
            "data/transactions.parquet",
            "--weights",
            "model/model.pkl",
            "--metrics",
            "metrics.json",
        ],
        project,
    )

    _step("2. Register the triad: code commit + data snapshot + weights")
    settings = Settings(home=store_home, database_url="", blob_url="")
    SigningKey.generate().save(settings.resolved_signing_key)
    train_cmd = "{python} train.py --data {data} --weights {weights} --metrics {metrics}"
    import json

    with Registry.open(settings) as reg:
        common = {
            "code": project,
            "flavor": "sklearn",
            "target": "is_fraud",
            "exclude": ["gender"],
            "train_command": train_cmd,
            "sign": True,
        }
        v1 = reg.register(
            "fraud",
            data=project / "data/transactions.parquet",
            weights=project / "model/model.pkl",
            params={"max_iter": 150, "learning_rate": 0.08, "seed": 7},
            metrics=json.loads((project / "metrics.json").read_text()),
            **common,
        )
        console.print(f"registered {v1.ref}  id {short(v1.id)}")
        console.print(
            f"  code    {short(v1.code.digest)}  commit {v1.code.commit_sha[:10]}, "
            f"{len(v1.code.environment['packages'])} packages locked"
        )
        console.print(f"  data    {short(v1.data.digest)}  {v1.data.row_count:,} rows x {len(v1.data.schema)} columns")
        console.print(f"  weights {short(v1.weights.digest)}  {v1.weights.size_bytes:,} bytes, Ed25519-signed")
        console.print("  inputs  " + ", ".join(f"{f['name']}:{f['type']}" for f in v1.input_schema["fields"]))
        console.print("  outputs " + ", ".join(f"{f['name']}:{f['type']}" for f in v1.output_schema["fields"]))
        again = reg.register(
            "fraud",
            data=project / "data/transactions.parquet",
            weights=project / "model/model.pkl",
            params={"max_iter": 150, "learning_rate": 0.08, "seed": 7},
            metrics=json.loads((project / "metrics.json").read_text()),
            **common,
        )
        console.print(
            f"registering the same triad again returns the same version: {again.ref} "
            f"{'(same id)' if again.id == v1.id else '(DIFFERENT id: bug)'}"
        )

        _step("3. A second candidate, and aliases with history")
        _run(
            [
                py,
                "train.py",
                "--data",
                "data/transactions.parquet",
                "--weights",
                "model/model.pkl",
                "--metrics",
                "metrics.json",
                "--max-iter",
                "60",
                "--learning-rate",
                "0.15",
            ],
            project,
        )
        v2 = reg.register(
            "fraud",
            data=project / "data/transactions.parquet",
            weights=project / "model/model.pkl",
            params={"max_iter": 60, "learning_rate": 0.15, "seed": 7},
            metrics=json.loads((project / "metrics.json").read_text()),
            **{**common, "train_command": train_cmd + " --max-iter 60 --learning-rate 0.15"},
        )
        console.print(f"registered {v2.ref}  id {short(v2.id)} (same code and data, new weights)")
        reg.set_alias("fraud", "champion", v1.ref, reason="first fraud model", force=True)
        moved_at = reg.clock.now()
        reg.set_alias("fraud", "challenger", v2.ref, reason="faster candidate to evaluate")
        for e in reg.alias_history("fraud"):
            console.print(f"  {e.at:%H:%M:%S}  {e.alias:<10} -> {short(e.version_id or '')}  by {e.actor}: {e.reason}")
        console.print(f"  champion at {moved_at:%H:%M:%S}: {short(reg.alias_at('fraud', 'champion', moved_at) or '')}")

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
        blob = Path(reg.store.blobs.path(v1.weights.digest))
        manifest = reg.manifest(v1.weights.digest, "weights")
        weights_blob = Path(reg.store.blobs.path(manifest.entries[0].digest))
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
        del blob
        try:
            with reg.store.db.begin() as conn:
                conn.execute(text("UPDATE model_versions SET metrics = '{}' WHERE id = :i"), {"i": v1.id})
            console.print("[red]a registered version was changed: bug[/red]")
        except Exception as e:  # the database trigger refuses it
            console.print(
                f"  direct SQL UPDATE of a version row -> [green]refused by the database:[/green] "
                f"{str(getattr(e, 'orig', e)).splitlines()[0]}"
            )

    _step("Next")
    console.print("  (run these with the virtual environment active: source .venv/bin/activate)")
    h = f"--home {store_home}"
    console.print(f"  tether {h} versions fraud")
    console.print(f"  tether {h} show fraud@champion")
    console.print(f"  tether {h} alias history fraud")
    console.print(f"  tether {h} reproduce fraud/2 {root / 'fraud-2'} --retrain")
