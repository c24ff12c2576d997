"""Verifying an audit log from its files alone: every leaf, root, checkpoint (signature, number, chain,
segment digest) and any checkpoint held elsewhere. It never stops at the first problem and says how far
everything checked out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tether.audit import checkpoint as ckpt
from tether.audit.log import SCHEMA, _checkpoint_message, _legacy_digest, _record_of, canonical
from tether.audit.merkle import MerkleTree, leaf_hash
from tether.core import TetherError
from tether.core.signing import verify_signature


@dataclass
class VerifyReport:
    records: int = 0
    segments: int = 0
    checkpoints: int = 0
    held: int = 0
    problems: list[str] = field(default_factory=list)
    verified_through: int = -1  # the last sequence number up to which everything checked out

    @property
    def ok(self) -> bool:
        return not self.problems


#: Columns a segment sealed by an older tether lacks (its leaves hash without them).
OPTIONAL = {"tenant"}


def verify_log(root: Path, public_key_hex: str, *, held: list[str] | None = None) -> VerifyReport:
    """Recompute every leaf and root from the segments; check every checkpoint, its number, its link to the one
    before and the digest of its segment; check the held checkpoints against the log. Never stops at the first
    problem."""
    report = VerifyReport()
    tree = MerkleTree()
    expected = 0
    intact = True
    for seg in sorted((root / "segments").glob("*.parquet")):
        report.segments += 1
        try:
            table = pq.read_table(seg)
            rows = table.to_pylist()
        except (OSError, pa.ArrowException) as e:
            report.problems.append(f"segment {seg.name} is unreadable: {e}")
            intact = False
            continue
        if missing := sorted(set(SCHEMA.names) - set(table.column_names) - OPTIONAL):
            # A byte changed in the footer can rename a column and still parse: the segment was edited.
            report.problems.append(f"segment {seg.name} was changed: it lacks the audit columns {missing}")
            intact = False
            continue
        for row in rows:
            seq = row["seq"]
            if seq != expected:
                what = "missing" if seq > expected else "out of order or inserted"
                report.problems.append(f"{seg.name}: record {seq} where {expected} was expected ({what})")
                intact = False
            try:
                leaf = leaf_hash(canonical(seq, _record_of(row)))
            except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as e:
                report.problems.append(f"{seg.name}: record {seq} is malformed ({type(e).__name__}: {e})")
                intact = False
                expected = seq + 1 if isinstance(seq, int) else expected
                continue
            if leaf != row["leaf"]:
                report.problems.append(f"{seg.name}: record {seq} was changed (its bytes no longer hash to its leaf)")
                intact = False
            tree.append_hash(leaf)
            report.records += 1
            expected = seq + 1
            if intact:
                report.verified_through = seq
    sizes = set()
    segment_names = {p.name for p in (root / "segments").glob("*.parquet")}
    covered: set[str] = set()
    last_index: int | None = None
    last_digest: str | None = None
    chained = False
    for p in sorted((root / "checkpoints").glob("*.json")):
        report.checkpoints += 1
        try:
            cp = orjson.loads(p.read_bytes())
            size, cp_root = int(cp["tree_size"]), str(cp["root"])
        except (orjson.JSONDecodeError, KeyError, ValueError) as e:
            report.problems.append(f"checkpoint {p.name} is unreadable: {e}")
            continue
        sizes.add(size)
        if cp.get("public_key") != public_key_hex:
            report.problems.append(f"checkpoint {p.name} is signed by another key ({str(cp.get('public_key'))[:16]}…)")
        if "note" in cp:
            chained = True
            try:
                note = ckpt.parse(str(cp["note"]), public_key_hex, what=f"checkpoint {p.name}")
            except TetherError:
                report.problems.append(f"checkpoint {p.name}: the signature does not match its contents")
                note = None
            if note is not None:
                if note.size != size or note.root.hex() != cp_root:
                    report.problems.append(
                        f"checkpoint {p.name}: the signature does not match its fields (they differ from its note)"
                    )
                if last_index is not None and note.index != last_index + 1:
                    now = note.index if note.index is not None else -1
                    gap = f"{last_index + 1}" + (f"-{now - 1}" if now - 1 > last_index + 1 else "")
                    report.problems.append(
                        f"checkpoint {p.name} is number {note.index} but the one before it is {last_index}: "
                        f"checkpoint(s) {gap} are missing"
                    )
                elif last_digest is not None and note.previous != last_digest:
                    report.problems.append(f"checkpoint {p.name} does not chain to the checkpoint before it")
                if note.segment is not None:
                    covered.add(note.segment)
                    seg_path = root / "segments" / note.segment
                    if not seg_path.exists():
                        report.problems.append(f"segment {note.segment} of checkpoint {p.name} is missing")
                    elif ckpt.file_digest(seg_path) != note.segment_digest:
                        report.problems.append(
                            f"segment {note.segment} was changed after it was sealed (its file no longer matches "
                            f"checkpoint {p.name})"
                        )
                last_index, last_digest = note.index, ckpt.note_digest(str(cp["note"]))
        else:
            try:
                verify_signature(public_key_hex, _checkpoint_message(size, cp_root, cp["time"]), cp["signature"],
                                 what=f"checkpoint {p.name}")  # fmt: skip
            except (TetherError, KeyError):
                report.problems.append(f"checkpoint {p.name}: the signature does not match its contents")
            last_index = (last_index if last_index is not None else -1) + 1
            last_digest = _legacy_digest(cp)
        if size > tree.size:
            report.problems.append(f"checkpoint {p.name} covers {size} records but the segments hold {tree.size}")
        elif tree.root(size).hex() != cp_root:
            report.problems.append(f"checkpoint {p.name}: the records no longer hash to its root (size {size})")
    if chained:
        for name in sorted(segment_names - covered):
            report.problems.append(
                f"segment {name} is named by no signed checkpoint (added, or its checkpoint removed)"
            )
    if tree.size and tree.size not in sizes:
        report.problems.append(f"no checkpoint covers the last {tree.size} records (a checkpoint was removed?)")
    for i, text in enumerate(held or []):
        try:
            h = ckpt.parse(text, public_key_hex, what=f"held checkpoint {i + 1}")
        except TetherError as e:
            report.problems.append(f"held checkpoint {i + 1}: {e}")
            continue
        report.held += 1
        if h.size > tree.size:
            report.problems.append(
                f"rollback: a held checkpoint covers {h.size} records but the log now holds {tree.size} "
                "(records, segments or checkpoints were removed)"
            )
        elif tree.root(h.size) != h.root:
            report.problems.append(
                f"history rewritten: the log's first {h.size} records no longer hash to the root of a held "
                "checkpoint (the log was changed and re-signed)"
            )
    return report
