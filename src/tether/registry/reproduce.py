"""Rebuild a model version from the store alone, verify every digest, and optionally retrain.

``reproduce(VERSION, DIR)`` writes::

    DIR/code/               the commit archive with the stored diff applied (checked against the tree manifest)
    DIR/data/               the training-data snapshot (checked against the data digest)
    DIR/weights/            the weights (checked against the weights digest, and the signature if any)
    DIR/tether-version.json the full version record, environment lock included
    DIR/requirements.lock   the environment lock as a pip requirements file

With ``retrain``, the recorded training command runs in ``DIR/code/<subdir>`` with its placeholders filled:
``{data}`` (the data path), ``{weights}`` (where to write new weights, same file name or folder as the
registered ones, under ``DIR/retrained``) and ``{metrics}`` (a JSON file for metrics). The report then says
whether the new weights digest matches the registered one and, if not, how the metrics differ.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.core.errors import InvalidInputError
from tether.core.hashing import hash_tree
from tether.core.types import short
from tether.registry import code as code_mod
from tether.registry.environment import environment_diff, environment_lock, requirements_text
from tether.registry.version import ModelVersion

if TYPE_CHECKING:
    from tether.registry.files import VersionFiles


@dataclass
class Check:
    artifact: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass
class Retrain:
    command: list[str]
    returncode: int
    weights_digest: str | None
    weights_match: bool
    metrics: dict[str, Any]
    metric_diffs: dict[str, tuple[Any, Any]]
    output_tail: str


@dataclass
class ReproduceReport:
    version: ModelVersion
    dest: Path
    checks: list[Check] = field(default_factory=list)
    environment_differences: list[str] = field(default_factory=list)
    retrain: Retrain | None = None

    @property
    def verified(self) -> bool:
        return all(c.ok for c in self.checks)


def reproduce(registry: VersionFiles, mv: ModelVersion, dest: Path, *, retrain: bool = False) -> ReproduceReport:
    dest = dest.absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInputError(f"{dest} is not an empty folder", hint="choose a new or empty folder")
    if retrain and not mv.train_command:
        raise InvalidInputError(
            f"version {mv.ref} has no recorded training command",
            hint="register with --train-command to make retraining possible",
        )
    # Everything is built in a sibling folder and renamed into place only once it verified, so a failure
    # (a tampered blob, a full disk) never leaves a half-filled destination behind.
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        report = _build(registry, mv, work, retrain=retrain)
        if dest.exists():
            dest.rmdir()
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report.dest = dest
    return report


def _build(registry: VersionFiles, mv: ModelVersion, dest: Path, *, retrain: bool) -> ReproduceReport:
    report = ReproduceReport(mv, dest)
    workers = registry.settings.hash_workers

    code_dir = registry.materialize_code(mv, dest / "code")
    found = code_mod.verify_tree(dest / "code", registry.manifest(mv.code.tree_digest, "code tree"), workers=workers)
    report.checks.append(Check("code tree", mv.code.tree_digest, mv.code.tree_digest if not found else "(differs)"))
    data_path = registry.materialize_data(mv, dest / "data")
    report.checks.append(Check("data", mv.data.digest, hash_tree(dest / "data", workers=workers).root_digest))
    weights_path = registry.materialize_weights(mv, dest / "weights")
    report.checks.append(Check("weights", mv.weights.digest, hash_tree(dest / "weights", workers=workers).root_digest))

    record = mv.to_json()
    record["code"]["environment"] = mv.code.environment
    (dest / "tether-version.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (dest / "requirements.lock").write_text(requirements_text(mv.code.environment))
    report.environment_differences = environment_diff(mv.code.environment, environment_lock())

    if retrain:
        report.retrain = _retrain(mv, dest, code_dir, data_path, weights_path, workers)
    return report


def _retrain(
    mv: ModelVersion, dest: Path, code_dir: Path, data_path: Path, weights_path: Path, workers: int
) -> Retrain:
    out_dir = dest / "retrained"
    out_dir.mkdir()
    new_weights = out_dir / weights_path.name if mv.weights.single_file else out_dir / "weights"
    metrics_file = out_dir / "metrics.json"
    assert mv.train_command is not None
    values = {
        "data": str(data_path),
        "weights": str(new_weights),
        "metrics": str(metrics_file),
        "python": sys.executable,
    }
    try:
        argv = [part.format(**values) for part in shlex.split(mv.train_command)]
    except (KeyError, ValueError, IndexError) as e:
        raise InvalidInputError(
            f"the training command {mv.train_command!r} has an unknown placeholder: {e}",
            hint="placeholders are {data}, {weights}, {metrics} and {python}",
        ) from None
    proc = subprocess.run(argv, cwd=code_dir, capture_output=True, text=True, check=False)
    tail = (proc.stdout + proc.stderr)[-2000:]
    digest = hash_tree(new_weights, workers=workers).root_digest if new_weights.exists() else None
    metrics: dict[str, Any] = {}
    if metrics_file.exists():
        try:
            metrics = json.loads(metrics_file.read_text())
        except json.JSONDecodeError:
            metrics = {}
    diffs = {
        k: (mv.metrics.get(k), metrics.get(k))
        for k in sorted(set(mv.metrics) | set(metrics))
        if not _same(mv.metrics.get(k), metrics.get(k))
    }
    return Retrain(argv, proc.returncode, digest, digest == mv.weights.digest, metrics, diffs, tail)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return bool(a == b)


def describe(report: ReproduceReport) -> list[str]:
    """Plain-text lines for a report (used by the CLI and the demo)."""
    lines = [f"{c.artifact}: {'verified' if c.ok else 'MISMATCH'} {short(c.expected)}" for c in report.checks]
    r = report.retrain
    if r is not None:
        if r.returncode != 0:
            lines.append(f"retrain: command failed with exit status {r.returncode}")
        elif r.weights_match:
            lines.append(f"retrain: new weights digest {short(r.weights_digest or '')} matches the registered one")
        else:
            lines.append(
                f"retrain: new weights digest {short(r.weights_digest or 'none')} differs from "
                f"{short(report.version.weights.digest)}"
            )
            for k, (old, new) in r.metric_diffs.items():
                lines.append(f"  metric {k}: registered {old}, retrained {new}")
    return lines
