"""Running the gate: load the gold snapshots and both versions (verified), predict, test, decide, store.

    report = run_gate(registry, load_spec("gate.yaml"), "fraud/2")
    report.verdict   # Verdict.PASS, FAIL or INCONCLUSIVE

The report is bound to the candidate version, the champion version (or none), the spec digest and the gold
data digests, and is stored (JSON and HTML) in the blob store with a row in ``gate_reports``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from tether.core.errors import InvalidInputError, NotFoundError
from tether.core.types import short
from tether.gate.edge_cases import run_edge_cases
from tether.gate.evaluate import Outputs, evaluate
from tether.gate.reports import GateReport, save_report
from tether.gate.results import TestResult, decide
from tether.gate.spec import GateSpec, load_spec
from tether.registry import LoadedModel, ModelVersion, Registry
from tether.registry import aliases as alias_ops
from tether.registry.data import read_table
from tether.registry.policy import policy_digest
from tether.store.tables import data_snapshots

PREDICT_BATCH = 200_000


def _is_digest_ref(ref: str) -> bool:
    return 12 <= len(ref) <= 64 and all(c in "0123456789abcdef" for c in ref)


def resolve_gold(registry: Registry, spec: GateSpec) -> list[str]:
    """Full digests of the gold sets: digest prefixes are looked up, paths are snapshotted (immutable from then on)."""
    out: list[str] = []
    for ref in spec.gold:
        ref = str(ref).strip()
        if not _is_digest_ref(ref.lower()):
            path = Path(ref) if Path(ref).is_absolute() else spec.base / ref
            if not path.exists():
                raise InvalidInputError(
                    f"gold set {ref!r} is neither a data snapshot digest nor an existing path (looked in {spec.base})",
                    hint="give a path to Parquet/CSV gold data, or the digest printed by 'tether data add'",
                )
            out.append(registry.add_data(path).digest)
            continue
        with registry.store.db.connect() as conn:
            rows = conn.execute(
                select(data_snapshots.c.digest).where(data_snapshots.c.digest.like(ref.lower() + "%")).limit(2)
            ).all()
        if not rows:
            raise NotFoundError(
                f"gold set {ref} is not a registered data snapshot",
                hint="register it with 'tether data add PATH' and put the printed digest in the spec",
            )
        if len(rows) > 1:
            raise InvalidInputError(f"gold reference {ref} is ambiguous", hint="give more characters")
        out.append(str(rows[0][0]))
    return out


def load_gold(registry: Registry, digests: list[str]) -> pd.DataFrame:
    frames = []
    registry.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    for digest in digests:
        tmp = Path(tempfile.mkdtemp(prefix="gold-", dir=registry.settings.tmp_dir))
        try:
            manifest = registry.manifest(digest, "gold data")  # type: ignore[arg-type]
            for e in manifest.entries:
                registry.store.blobs.get_file(e.digest, tmp / e.path, what=f"gold data {short(digest)}: {e.path}")
            with registry.store.db.connect() as conn:
                fmt = conn.execute(
                    select(data_snapshots.c.format).where(data_snapshots.c.digest == digest)
                ).scalar_one()
            target = tmp / manifest.entries[0].path if len(manifest.entries) == 1 else tmp
            frames.append(read_table(target, fmt).to_pandas())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    columns = [list(f.columns) for f in frames]
    if any(set(c) != set(columns[0]) for c in columns):
        raise InvalidInputError("the gold sets have different columns", hint="use snapshots with the same schema")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _labels(spec: GateSpec, gold: pd.DataFrame) -> np.ndarray:
    if spec.label not in gold.columns:
        raise InvalidInputError(
            f"the gold set has no label column {spec.label!r}", hint=f"columns: {list(gold.columns)}"
        )
    col = gold[spec.label]
    if col.isna().any():
        raise InvalidInputError(f"label column {spec.label!r} has {int(col.isna().sum())} missing values")
    if spec.task == "binary":
        values = set(pd.unique(col).tolist())
        if not values <= {0, 1}:  # True == 1 and False == 0 in Python sets
            shown = sorted(map(str, values))[:5]
            raise InvalidInputError(
                f"label column {spec.label!r} must hold 0/1 for a binary task, found {shown}",
                hint="encode the positive class as 1",
            )
        return col.astype(np.int64).to_numpy()
    if spec.task == "regression":
        if not pd.api.types.is_numeric_dtype(col):
            raise InvalidInputError(f"label column {spec.label!r} must be numeric for a regression task")
        return col.astype(float).to_numpy()
    return col.to_numpy()


def _predict(model: LoadedModel, mv: ModelVersion, gold: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in model.input_columns if c not in gold.columns]
    if missing:
        raise InvalidInputError(
            f"the gold set lacks column(s) {missing} that {mv.ref} needs", hint="use a gold set with every model input"
        )
    parts = [model.predict(gold.iloc[i : i + PREDICT_BATCH]) for i in range(0, len(gold), PREDICT_BATCH)]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _outputs(spec: GateSpec, out: pd.DataFrame, mv: ModelVersion) -> Outputs:
    def column(name: str, key: str) -> np.ndarray:
        if name not in out.columns:
            raise InvalidInputError(
                f"{mv.ref} outputs {list(out.columns)}, not {name!r}", hint=f"set '{key}:' in the gate spec"
            )
        return out[name].to_numpy()

    if spec.task == "binary":
        score = column(spec.score, "score").astype(float)
        if spec.threshold is not None:
            decision = (score >= spec.threshold).astype(np.int64)
        else:
            decision = column(spec.prediction, "prediction").astype(np.int64)
        return Outputs(decision, score)
    if spec.task == "regression":
        return Outputs(column(spec.prediction, "prediction").astype(float))
    return Outputs(column(spec.prediction, "prediction"))


def pinned(spec: GateSpec, gold_digests: list[str]) -> dict[str, Any]:
    """The spec as it runs, gold sets pinned to their snapshot digests: what a gate policy stores and names."""
    return {**spec.model_dump(mode="json"), "gold": list(gold_digests)}


def policy_spec(registry: Registry, model: str) -> GateSpec:
    """The spec of ``model``'s gate policy in force (its gold sets are snapshot digests)."""
    check = registry.gate_policy(model)
    if check is None:
        raise NotFoundError(
            f"{model} has no gate policy",
            hint=f"set one with 'tether gate policy set {model} --spec gate.yaml --reason ...', or pass --spec",
        )
    return load_spec(registry.gate_policy_spec(check))


def set_policy(registry: Registry, spec: GateSpec, *, reason: str, role: str, actor: str | None = None) -> Any:
    """Pin the spec's gold sets (snapshotting paths) and make it the gate policy of ``spec.model``."""
    return registry.set_gate_policy(
        spec.model, pinned(spec, resolve_gold(registry, spec)), reason=reason, role=role, actor=actor
    )


def run_gate(registry: Registry, spec: GateSpec, candidate: str, *, actor: str | None = None) -> GateReport:
    """Evaluate ``candidate`` against the current champion of ``spec.model``; store and return the report.

    The report is bound to the model's gate policy when ``spec`` (gold pinned) is that policy; otherwise it is
    an ad-hoc report, kept and shown, which can never move ``champion``.
    """
    cand = registry.get(candidate)
    if cand.name != spec.model:
        raise InvalidInputError(f"the spec is for model {spec.model!r}, but {cand.ref} belongs to {cand.name!r}")
    with registry.store.db.connect() as conn:
        champion_id = alias_ops.current(conn, spec.model, "champion")
    if champion_id == cand.id:
        raise InvalidInputError(f"{cand.ref} is already the champion of {spec.model}")
    champ = registry.get(champion_id) if champion_id else None
    gold_digests = resolve_gold(registry, spec)
    policy = registry.gate_policy(spec.model)
    digest = policy_digest(pinned(spec, gold_digests))
    in_force = policy is not None and policy.digest == digest
    gold = load_gold(registry, gold_digests)
    if spec.task == "llm":
        results, notes, curves = _llm(registry, spec, gold, cand, champ)
    else:
        results, notes, curves = _tabular(registry, spec, gold, cand, champ)
    trained_on: dict[str, str] = {cand.data.digest: cand.ref, **({champ.data.digest: champ.ref} if champ else {})}
    for d in gold_digests:
        if d in trained_on:
            notes.append(
                f"warning: gold set {short(d)}… is the training snapshot of {trained_on[d]}; a model scored on "
                "its own training data looks better than it is: use held-out data"
            )
    if not in_force:
        notes.append(
            "ad hoc: this spec is not the gate policy of "
            f"{spec.model} ({'none is set' if policy is None else 'policy ' + short(policy.digest) + '…'}); "
            "its verdict is kept but cannot move the champion or start a rollout"
        )
    if champ is None and not any(r.kind == "bound" or (r.kind == "fairness" and r.champion is None) for r in results):
        results.append(
            TestResult(
                "data",
                "absolute bounds",
                reason="there is no champion yet and the spec sets no floor, ceiling or fairness limit; "
                "add some so a first version can be judged on its own",
            )
        )
    verdict, reasons = decide(results, spec.alpha)
    body: dict[str, Any] = {
        "format": "tether-gate-report-v1",
        "model": spec.model,
        "candidate": {"id": cand.id, "ref": cand.ref},
        "champion": {"id": champ.id, "ref": champ.ref} if champ else None,
        "spec": spec.model_dump(mode="json"),
        "spec_digest": spec.digest,
        "policy": {"digest": digest, "in_force": in_force},
        "gold": [{"digest": d} for d in gold_digests],
        "gold_rows": len(gold),
        "verdict": verdict.value,
        "reasons": reasons,
        "tests": [r.to_json() for r in results],
        "notes": notes,
        "curves": curves,
        "created_at": registry.clock.now().isoformat(),
        "created_by": actor or registry.settings.actor,
    }
    return save_report(registry, body)


def _tabular(
    registry: Registry, spec: GateSpec, gold: pd.DataFrame, cand: Any, champ: Any
) -> tuple[list[TestResult], list[str], dict[str, Any]]:
    labels = _labels(spec, gold)
    cand_model = registry.load(cand.id)
    try:
        cand_out = _predict(cand_model, cand, gold)
        edge = run_edge_cases(spec.edge_cases, cand_model.predict, gold, seed=spec.bootstrap.seed)
    finally:
        cand_model.close()
    champ_out = None
    if champ is not None:
        champ_model = registry.load(champ.id)
        try:
            champ_out = _predict(champ_model, champ, gold)
        finally:
            champ_model.close()

    cand_o = _outputs(spec, cand_out, cand)
    champ_o = _outputs(spec, champ_out, champ) if champ is not None and champ_out is not None else None
    results, notes = evaluate(spec, gold, labels, cand_o, champ_o)
    results += edge
    curves = _curves(labels, cand_o, champ_o) if spec.task == "binary" else {}
    return results, notes, curves


def _llm(
    registry: Registry, spec: GateSpec, gold: pd.DataFrame, cand: Any, champ: Any
) -> tuple[list[TestResult], list[str], dict[str, Any]]:
    """Both versions answer every golden prompt; the graders score the answers (``tether.gate.llm_gate``)."""
    from tether.gate.llm_gate import answers, evaluate_llm, grade

    if "prompt" not in gold.columns:
        raise InvalidInputError(
            "an LLM gate's gold sets need a 'prompt' column", hint=f"the columns are {list(gold.columns)}"
        )
    assert spec.llm is not None
    scored: list[list[dict[str, Any]] | None] = []
    items: list[Any] = []
    for mv in (cand, champ):
        if mv is None:
            scored.append(None)
            continue
        loaded = registry.load(mv.id)
        try:
            got = answers(loaded, gold)
            g = loaded.native.spec.guardrails  # type: ignore[attr-defined]
            scored.append(grade(registry, spec.llm.graders, got, g.model_dump(mode="json")))
            items.append(got)
        finally:
            loaded.close()
    assert scored[0] is not None
    results, notes = evaluate_llm(spec, gold, scored[0], scored[1], items[0])
    return results, notes, {}


def _curves(labels: np.ndarray, cand: Outputs, champ: Outputs | None, points: int = 200) -> dict[str, Any]:
    out = {"candidate": _roc(labels, cand.score, points)}
    if champ is not None:
        out["champion"] = _roc(labels, champ.score, points)
    return {"roc": out}


def _roc(labels: np.ndarray, scores: np.ndarray | None, points: int) -> list[list[float]]:
    if scores is None or labels.min() == labels.max():
        return []
    order = np.argsort(-scores, kind="stable")
    y = labels[order]
    tpr = np.concatenate([[0.0], np.cumsum(y) / y.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(1 - y) / (1 - y).sum()])
    idx = np.unique(np.linspace(0, len(tpr) - 1, points).astype(int))
    return [[round(float(fpr[i]), 5), round(float(tpr[i]), 5)] for i in idx]
