"""Gate reports: stored as JSON and HTML blobs, indexed in ``gate_reports`` (immutable), found by id prefix."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from tether.core.errors import ConflictError, NotFoundError
from tether.core.hashing import canonical_json, sha256_bytes
from tether.core.types import short
from tether.gate.results import Verdict
from tether.registry import Registry
from tether.store.tables import gate_reports


class GateReport:
    """A stored gate report: its id is the SHA-256 of its canonical JSON."""

    def __init__(self, report_id: str, body: dict[str, Any], html_blob: str) -> None:
        self.id = report_id
        self.body = body
        self.html_blob = html_blob

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.body["verdict"])

    @property
    def reasons(self) -> list[str]:
        return list(self.body["reasons"])

    @property
    def tests(self) -> list[dict[str, Any]]:
        return list(self.body["tests"])

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.body}


def save_report(registry: Registry, body: dict[str, Any]) -> GateReport:
    from tether.gate.html import render_html

    data = canonical_json(body)
    report_id = sha256_bytes(data)
    registry.store.blobs.put_bytes(data)
    html_blob = registry.store.blobs.put_bytes(render_html(report_id, body).encode())
    with registry.store.db.begin() as conn:
        exists = conn.execute(select(gate_reports.c.id).where(gate_reports.c.id == report_id)).first()
        if exists is None:
            conn.execute(
                insert(gate_reports).values(
                    id=report_id,
                    model_name=body["model"],
                    candidate_id=body["candidate"]["id"],
                    champion_id=body["champion"]["id"] if body["champion"] else None,
                    spec_digest=body["spec_digest"],
                    gold_digests=[g["digest"] for g in body["gold"]],
                    verdict=body["verdict"],
                    report_blob=report_id,
                    html_blob=html_blob,
                    created_at=datetime.fromisoformat(body["created_at"]),
                    created_by=body["created_by"],
                    policy_digest=(body.get("policy") or {}).get("digest")
                    if (body.get("policy") or {}).get("in_force")
                    else None,
                )
            )
    return GateReport(report_id, body, html_blob)


def get_report(registry: Registry, ref: str) -> GateReport:
    """A report by id or 6+ character id prefix, re-read from its blob (digest verified)."""
    ref = ref.strip().lower()
    with registry.store.db.connect() as conn:
        rows = conn.execute(
            select(gate_reports.c.id, gate_reports.c.html_blob).where(gate_reports.c.id.like(ref + "%")).limit(2)
        ).all()
    if not rows or len(ref) < 6:
        raise NotFoundError(f"no gate report {ref!r}", hint="list reports with 'tether gate list MODEL'")
    if len(rows) > 1:
        raise ConflictError(f"gate report prefix {ref!r} is ambiguous", hint="give more characters")
    report_id, html_blob = rows[0]
    body = json.loads(registry.store.blobs.get_bytes(report_id, what=f"gate report {short(report_id)}"))
    return GateReport(report_id, body, html_blob)


def list_reports(registry: Registry, model: str) -> list[dict[str, Any]]:
    with registry.store.db.connect() as conn:
        rows = conn.execute(
            select(gate_reports).where(gate_reports.c.model_name == model).order_by(gate_reports.c.created_at)
        ).mappings()
        return [dict(r) for r in rows]


def report_html(registry: Registry, report: GateReport) -> str:
    return registry.store.blobs.get_bytes(report.html_blob, what="gate report HTML").decode()
