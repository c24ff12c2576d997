"""Gate policies: per model, the one spec and gold data whose verdicts may move ``champion``.

A policy is the gate spec as it will run, with every gold set pinned to its snapshot digest, stored as a
canonical JSON blob and named by its SHA-256 (the same kind of id as a version: same content, same digest).
``gate_policies`` is insert-only; the newest row of a model is in force. Only the roles in `POLICY_ROLES` may
set one, and each change is kept with actor, role, reason and the digest it replaced (the audit bridge copies
it onto the trail).

The promotion rule (`promotion_report`): ``champion`` moves from C to X only on a PASS report for the pair
(X, C) that ran under the policy in force, and never while a report under that policy FAILed the same pair.
The registry stores and checks; running a spec is ``tether.gate``'s job (the registry never imports it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from tether.core.errors import ConflictError, IntegrityError, InvalidInputError, PermissionDeniedError
from tether.core.hashing import canonical_json, digest_json
from tether.core.types import short
from tether.store.blobs import BlobStore
from tether.store.tables import gate_policies, gate_reports

#: Roles that may set a model's gate policy.
POLICY_ROLES = frozenset({"admin"})


@dataclass(frozen=True)
class GatePolicy:
    id: int
    model_name: str
    digest: str
    spec_blob: str
    gold_digests: list[str]
    previous_digest: str | None
    actor: str
    role: str
    reason: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model_name,
            "digest": self.digest,
            "gold": self.gold_digests,
            "previous": self.previous_digest,
            "actor": self.actor,
            "role": self.role,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


def policy_digest(spec: dict[str, Any]) -> str:
    """The id of a policy: the digest of the spec as it runs (gold sets as full snapshot digests)."""
    return digest_json(spec)


def current(conn: Connection, model_name: str) -> GatePolicy | None:
    row = (
        conn.execute(
            select(gate_policies)
            .where(gate_policies.c.model_name == model_name)
            .order_by(gate_policies.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return _policy(row) if row else None


def history(conn: Connection, model_name: str) -> list[GatePolicy]:
    rows = conn.execute(
        select(gate_policies).where(gate_policies.c.model_name == model_name).order_by(gate_policies.c.id)
    ).mappings()
    return [_policy(r) for r in rows]


def load_spec(blobs: BlobStore, policy: GatePolicy) -> dict[str, Any]:
    """The policy's spec, read from its blob and checked against the policy's digest."""
    spec: dict[str, Any] = json.loads(blobs.get_bytes(policy.spec_blob, what=f"gate policy of {policy.model_name}"))
    if policy_digest(spec) != policy.digest or sorted(spec.get("gold", [])) != sorted(policy.gold_digests):
        raise IntegrityError(
            f"the gate policy of {policy.model_name} no longer matches its digest",
            expected=policy.digest,
            actual=policy_digest(spec),
            hint="its database row was changed; restore the database from a backup",
        )
    return spec


def set_policy(
    conn: Connection,
    blobs: BlobStore,
    *,
    model_name: str,
    spec: dict[str, Any],
    actor: str,
    role: str,
    reason: str,
    at: datetime,
) -> GatePolicy:
    """Make ``spec`` (gold already pinned to digests) the model's policy; refused for roles not in POLICY_ROLES."""
    if role not in POLICY_ROLES:
        raise PermissionDeniedError(
            f"role {role!r} may not change the gate policy of {model_name}",
            hint=f"ask someone with role {' or '.join(sorted(POLICY_ROLES))}",
        )
    if not reason or not reason.strip():
        raise InvalidInputError("a gate policy change needs a reason", hint="pass --reason 'why this policy'")
    if spec.get("model") != model_name:
        raise InvalidInputError(f"the spec is for model {spec.get('model')!r}, not {model_name!r}")
    gold = spec.get("gold")
    if not isinstance(gold, list) or not gold or not all(isinstance(g, str) and len(g) == 64 for g in gold):
        raise InvalidInputError("a policy's gold sets must be pinned to full snapshot digests")
    digest = policy_digest(spec)
    before = current(conn, model_name)
    if before is not None and before.digest == digest:
        raise ConflictError(f"{model_name} already runs under policy {short(digest)}…")
    blob = blobs.put_bytes(canonical_json(spec))
    values: dict[str, Any] = {
        "model_name": model_name,
        "digest": digest,
        "spec_blob": blob,
        "gold_digests": sorted(gold),
        "previous_digest": before.digest if before else None,
        "actor": actor,
        "role": role,
        "reason": reason.strip(),
        "at": at,
    }
    pid = conn.execute(insert(gate_policies).values(**values)).inserted_primary_key[0]  # type: ignore[index]
    return GatePolicy(id=int(pid), **values)


def promotion_report(
    conn: Connection, blobs: BlobStore, model_name: str, candidate_id: str, champion_id: str | None
) -> str:
    """The PASS report that lets ``candidate_id`` replace ``champion_id``, or a ConflictError saying why none does.

    The report's row is checked against its blob (named by the report id), so a row inserted by hand with a
    PASS it never earned is refused."""
    policy = current(conn, model_name)
    if policy is None:
        raise ConflictError(
            f"{model_name} has no gate policy, so no report can move its champion",
            hint=f"set one: tether gate policy set {model_name} --spec gate.yaml --reason '...' "
            "(or pass --force with a reason, recorded)",
        )
    champion = (
        gate_reports.c.champion_id.is_(None) if champion_id is None else gate_reports.c.champion_id == champion_id
    )
    rows = conn.execute(
        select(gate_reports.c.id, gate_reports.c.verdict, gate_reports.c.report_blob)
        .where(
            gate_reports.c.candidate_id == candidate_id,
            champion,
            gate_reports.c.policy_digest == policy.digest,
        )
        .order_by(gate_reports.c.created_at.desc())
    ).all()
    against = f"the champion {short(champion_id)}…" if champion_id else "no champion (floors only)"
    failed = [r for r in rows if r[1] == "FAIL"]
    if failed:
        raise ConflictError(
            f"report {short(failed[0][0])}… FAILed {short(candidate_id)}… against {against} under the gate policy "
            f"{short(policy.digest)}…; a PASS elsewhere does not outweigh it",
            hint="fix the candidate and register a new version",
        )
    passed = [r for r in rows if r[1] == "PASS"]
    if not passed:
        raise ConflictError(
            f"{short(candidate_id)}… has no PASS gate report against {against} under the gate policy "
            f"{short(policy.digest)}… of {model_name}",
            hint=f"run 'tether gate run {model_name} --candidate VERSION' (it uses the policy), "
            "or pass --force with a reason (recorded)",
        )
    report_id, blob = str(passed[0][0]), str(passed[0][2])
    body = json.loads(blobs.get_bytes(blob, what=f"gate report {short(report_id)}"))
    claimed = (body.get("verdict"), body["candidate"]["id"], (body.get("champion") or {}).get("id"))
    if (
        blob != report_id
        or claimed != ("PASS", candidate_id, champion_id)
        or (body.get("policy") or {}).get("digest") != policy.digest
    ):
        raise IntegrityError(
            f"gate report {short(report_id)}… says {claimed[0]} for other versions or another policy than its row",
            expected="PASS " + candidate_id,
            actual=f"{claimed[0]} {claimed[1]}",
            hint="its database row was written behind tether's back; restore the database from a backup",
        )
    return report_id


def _policy(r: Any) -> GatePolicy:
    return GatePolicy(
        id=int(r["id"]),
        model_name=r["model_name"],
        digest=r["digest"],
        spec_blob=r["spec_blob"],
        gold_digests=list(r["gold_digests"]),
        previous_digest=r["previous_digest"],
        actor=r["actor"],
        role=r["role"],
        reason=r["reason"],
        at=r["at"],
    )
