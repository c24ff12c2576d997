"""An audit record, its canonical bytes (what its Merkle leaf hashes) and its row in a sealed segment."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import orjson
import pyarrow as pa

from tether.audit.merkle import LEAF
from tether.core import InvalidInputError

KINDS = (
    "prediction",
    "llm",
    "version",
    "policy",
    "alias",
    "gate",
    "rollout",
    "deployment",
    "anomaly",
    "cache",
    "score",
)
FIELDS = (
    "kind",
    "trace_id",
    "at",
    "model",
    "version_id",
    "code_digest",
    "data_digest",
    "weights_digest",
    "input_digest",
    "output_digest",
    "tenant",
    "payload",
)
#: Tenants' records: a tenant-bound reader sees only its own tenant's (`tether.api.access`). The other kinds are
#: the platform's (versions, policies, aliases, gates, rollouts, anomalies, cache events) and carry no tenant.
TENANT_KINDS = ("prediction", "llm", "score")
SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("kind", pa.string()),
        ("trace_id", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("version_id", pa.string()),
        ("code_digest", pa.string()),
        ("data_digest", pa.string()),
        ("weights_digest", pa.string()),
        ("input_digest", pa.string()),
        ("output_digest", pa.string()),
        ("tenant", pa.string()),  # "" for platform records; absent from segments sealed before tenants were kept
        ("payload", pa.string()),  # canonical JSON, as the payload policy left it
        ("leaf", pa.binary(32)),
    ]
)


@dataclass(frozen=True)
class AuditRecord:
    kind: str
    trace_id: str
    at: datetime
    model: str = ""
    version_id: str = ""
    code_digest: str = ""
    data_digest: str = ""
    weights_digest: str = ""
    input_digest: str = ""
    output_digest: str = ""
    payload: dict[str, Any] | None = None
    #: Whose record this is (the calling key's tenant), or "" for the platform's own. In the canonical JSON only
    #: when set, so records from before tenants were kept hash as they always did.
    tenant: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInputError(f"unknown audit record kind {self.kind!r}", hint=f"one of {', '.join(KINDS)}")
        if self.at.tzinfo is None:
            raise InvalidInputError("audit record times must be timezone-aware")

    def to_json(self) -> dict[str, Any]:
        return self._as_dict(self._utc().isoformat(timespec="microseconds"))

    def canonical_json(self) -> bytes:
        """`to_json` as canonical JSON (sorted keys, no whitespace): what the write-ahead log holds and the leaf
        hashes. orjson writes a UTC time that has microseconds exactly as ``isoformat`` does, in C (``isoformat``
        was most of the cost of an append); one on a whole second it writes without them, so that one goes
        through ``isoformat`` (``tests/audit/test_log.py::test_canonical_json_is_to_json_sorted``)."""
        at = self._utc()
        return orjson.dumps(
            self._as_dict(at if at.microsecond else at.isoformat(timespec="microseconds")),
            option=orjson.OPT_SORT_KEYS,
        )

    def _utc(self) -> datetime:
        return self.at if self.at.tzinfo is UTC else self.at.astimezone(UTC)

    def _as_dict(self, at: Any) -> dict[str, Any]:
        # Field by field, never through ``self.__dict__``: reading that makes CPython give the record a dict of
        # its own for the rest of its life (a tracked object per record: the collector ran every 700 appends).
        d = {
            "kind": self.kind,
            "trace_id": self.trace_id,
            "at": at,
            "model": self.model,
            "version_id": self.version_id,
            "code_digest": self.code_digest,
            "data_digest": self.data_digest,
            "weights_digest": self.weights_digest,
            "input_digest": self.input_digest,
            "output_digest": self.output_digest,
            "payload": self.payload,
        }
        if self.tenant:
            d["tenant"] = self.tenant
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditRecord:
        return cls(**{**d, "at": datetime.fromisoformat(d["at"])})


def canonical(seq: int, record: dict[str, Any] | bytes) -> bytes:
    """The bytes a leaf hashes: the sequence number (8 bytes, big-endian), then the record's canonical JSON
    (sorted keys at every level, no whitespace), which is exactly what the write-ahead log holds."""
    body = record if isinstance(record, bytes) else orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return seq.to_bytes(8, "big") + body


def segment_table(seqs: list[int], payloads: list[bytes], records: list[AuditRecord] | None = None) -> pa.Table:
    """A sealed segment's table for write-ahead rows (sequence numbers, each record's canonical JSON), leaves
    included.

    The leaves hash the write-ahead bytes as they are. The other columns come from the records those bytes were
    made from when the log still holds them (every seal of a running log: decoding 100,000 records back from
    JSON in Python cost more than the rest of the seal); after a crash, from the bytes, decoded. Both give the
    same table (``tests/audit/test_log.py::test_a_seal_from_memory_equals_a_seal_from_the_write_ahead_log``).
    """
    cols: dict[str, Any] = {"seq": seqs}
    if records is None:
        decoded = [orjson.loads(raw) for raw in payloads]
        for f in FIELDS:
            if f == "at":
                cols[f] = pa.array([r["at"] for r in decoded]).cast(pa.timestamp("us", tz="UTC"))
            elif f == "payload":
                cols[f] = [orjson.dumps(r["payload"], option=orjson.OPT_SORT_KEYS).decode() for r in decoded]
            elif f == "tenant":
                cols[f] = [r.get("tenant", "") for r in decoded]
            else:
                cols[f] = [r[f] for r in decoded]
    else:
        if len(records) != len(payloads):
            raise ValueError(f"{len(records)} records for {len(payloads)} write-ahead rows")
        # One C-level attrgetter per record and a transpose: a comprehension per field took twice as long.
        strings = [f for f in FIELDS if f not in ("at", "payload")]
        for f, values in zip(strings, zip(*map(attrgetter(*strings), records), strict=True), strict=True):
            cols[f] = values
        cols["at"] = pa.array([r.at for r in records], type=pa.timestamp("us", tz="UTC"))
        cols["payload"] = [orjson.dumps(r.payload, option=orjson.OPT_SORT_KEYS).decode() for r in records]
    # leaf_hash(canonical(seq, raw)), inlined: one concatenation per record instead of three calls.
    sha, prefix = hashlib.sha256, LEAF
    cols["leaf"] = [
        sha(prefix + seq.to_bytes(8, "big") + raw).digest() for seq, raw in zip(seqs, payloads, strict=True)
    ]
    return pa.table(cols, schema=SCHEMA)
