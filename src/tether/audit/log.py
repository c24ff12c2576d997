"""The audit log: records acknowledged through a write-ahead log, sealed into Parquet segments under a Merkle tree.

Layout under ``$TETHER_HOME/audit``::

    wal/<first seq>.wal            the open write-ahead log (group commit; see `tether.audit.wal`)
    segments/<first>-<last>.parquet  sealed records, zstd Parquet, one row per record with its leaf hash
    checkpoints/<tree size>.json   tree size, root hash, time, signed with the store's Ed25519 key

`append` returns a record's sequence number once it is on disk. `seal` moves everything in the write-ahead log
into a new segment, appends each record's leaf hash (RFC 9162: SHA-256(0x00 || 8-byte sequence number ||
the record's canonical JSON), so position is bound too) to the tree and signs a checkpoint of the new root; only then
is the old write-ahead file removed. Opening the log rebuilds the tree from the segments and seals whatever a
crash left in write-ahead files, so an acknowledged record is never lost and never sealed twice.

`verify` recomputes every leaf from the Parquet rows and the tree from the leaves, and checks every
checkpoint's root and signature: a changed byte, a deleted, reordered or inserted record, a checkpoint that was
altered or removed, or a wrong key is reported by name, with how far verification got.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tether.audit import checkpoint as ckpt
from tether.audit.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from tether.audit.payload import apply_policy, digest_of, load_secret
from tether.audit.record import FIELDS, KINDS, SCHEMA, AuditRecord, canonical, segment_table
from tether.audit.segments import Summaries
from tether.audit.wal import Durable, WriteAheadLog, scan
from tether.core import IntegrityError, InvalidInputError, NotFoundError, Settings, SigningKey, TetherError

log = logging.getLogger(__name__)

#: The columns whose values repeat within a segment (a few kinds, models, versions and their triads).
#: How long a reader waits for the checkpoint of a segment another process is sealing (a seal signs within
#: milliseconds of renaming its segment; a segment still without one after this is reported as tampering).
SEAL_GRACE_SECONDS = 5.0
DICTIONARY_COLUMNS = ["kind", "model", "version_id", "code_digest", "data_digest", "weights_digest"]

#: Re-exported: where records are built, their digests and payload policy are needed too.
__all__ = [
    "FIELDS",
    "KINDS",
    "SCHEMA",
    "AuditLog",
    "AuditRecord",
    "apply_policy",
    "canonical",
    "digest_of",
    "load_secret",
]


class AuditLog:
    def __init__(self, settings: Settings, *, root: Path | None = None) -> None:
        self.root = root or settings.home / "audit"
        key_path = settings.resolved_signing_key
        if settings.signing_key is None and not key_path.exists():
            # The store's default key, as 'tether init' would create it: checkpoints are never left unsigned.
            SigningKey.generate().save(key_path)
        self.key = SigningKey.load(key_path)
        self.secret = load_secret(settings)
        self.witness = settings.audit_witness
        for sub in ("wal", "segments", "checkpoints"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # One writer per log: the first process to open it (tether serve) writes and seals; others (the CLI
        # while a server runs) read the sealed segments only, and never touch the writer's files.
        self._lock_file = open(self.root / "writer.lock", "a")  # noqa: SIM115 (closed in close())
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.writer = True
        except BlockingIOError:
            self.writer = False
        self._digest_cache: dict[str, tuple[tuple[int, ...], str]] = {}
        #: What each segment holds (rows per model and kind, time and trace ranges): searches read only those
        #: that can match.
        self.summaries = Summaries()
        self._checkpoint_cache: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {}
        self.tree = MerkleTree()
        #: Segments that could not be read: reading and verifying go on (verify names them); writing refuses.
        self.damaged: list[str] = []
        for seg in self.segments():
            try:
                leaves = pq.read_table(seg, columns=["leaf"]).column("leaf").to_pylist()
            except (OSError, pa.ArrowException):
                self.damaged.append(seg.name)
                continue
            for leaf in leaves:
                self.tree.append_hash(leaf)
        if self.damaged and self.writer:
            self._lock_file.close()
            self.writer = False  # never extend a log whose history cannot be read
            log.error("audit segments %s are unreadable: the log is read-only until restored", self.damaged)
        self._lock = threading.Lock()  # one seal at a time; the WAL swap is short
        self._wal: WriteAheadLog | None = None
        self.recovered = 0
        if self.writer:
            # What a crash (or a stop without a seal) left in write-ahead files is sealed before anything new.
            self.recovered = self._seal_files(sorted((self.root / "wal").glob("*.wal")))
            self._wal = self._open_wal(self.tree.size)

    # -- writing ---------------------------------------------------------------------------------------------
    def _wal_path(self, first: int) -> Path:
        return self.root / "wal" / f"{first:012d}.wal"

    def append(self, record: AuditRecord) -> int:
        """Durably log one record; returns its sequence number (acknowledged = on disk)."""
        return self.append_many([record])[0]

    def append_many(self, records: list[AuditRecord]) -> list[int]:
        payloads = [r.canonical_json() for r in records]
        while True:
            wal = self._writable()
            try:
                return wal.append_many(payloads, records)
            except RuntimeError:
                if not self._swapping(wal):
                    raise
                time.sleep(0.0005)  # a seal is swapping write-ahead files: retry on the new one

    def submit(self, records: list[AuditRecord], done: Durable) -> bool:
        """Queue records without waiting; ``done`` is called from the log's writer thread with their sequence
        numbers once they are on disk, or with the error that kept them off it (see `WriteAheadLog.submit`).
        False, calling nothing, while a seal is swapping write-ahead files (a moment every few seconds): use
        `append_many`, which waits for the new file, instead."""
        payloads = [r.canonical_json() for r in records]
        wal = self._writable()
        try:
            wal.submit(payloads, records, done)
        except RuntimeError:
            if not self._swapping(wal):
                raise
            return False
        return True

    def _writable(self) -> WriteAheadLog:
        wal = self._wal
        if wal is None:
            raise RuntimeError(
                "the audit log is closed" if self.writer else "the audit log is open for writing elsewhere"
            )
        return wal

    @staticmethod
    def _swapping(wal: WriteAheadLog) -> bool:
        """Whether ``wal`` refused because a seal closed it (not because the disk failed)."""
        return not wal.path.exists() or wal._closed

    def seal(self) -> int:
        """Move every acknowledged record into a new segment and sign a checkpoint; returns how many."""
        with self._lock:
            old = self._wal
            if old is None:
                if not self.writer:
                    return 0  # another process (tether serve) writes this log and seals it every few seconds
                raise RuntimeError("the audit log is closed")
            if old.next_sequence == self.tree.size:
                return 0  # nothing appended since the last seal (and the next file would have the same name)
            old.close()  # appends from now on retry until the new file is in place; none is lost or reordered
            self._wal = self._open_wal(old.next_sequence)
            kept = old.kept()  # what was appended, still in memory: no need to read the file back
            if kept is None:
                return self._seal_files([old.path])
            first, payloads, records = kept
            return self._seal_files([old.path], (list(range(first, first + len(payloads))), payloads), records)

    def _open_wal(self, first: int) -> WriteAheadLog:
        return WriteAheadLog(self._wal_path(first), first_sequence=first, keep=True)

    def _seal_files(
        self,
        paths: list[Path],
        rows: tuple[list[int], list[bytes]] | None = None,
        records: list[AuditRecord] | None = None,
    ) -> int:
        """Seal the records of write-ahead files into a segment, then remove the files: ``rows`` and ``records``
        when the log kept them in memory, else read from the files (after a crash)."""
        # Sealing makes ~10 short-lived objects per record; the cyclic collector would run on every few
        # thousand of them and find nothing (measured: it doubles the time to decode a segment's records).
        enabled = gc.isenabled()
        gc.disable()
        try:
            if rows is None:
                found: list[tuple[int, bytes]] = []
                for p in sorted(paths):
                    found.extend(scan(p)[0])
                found = sorted((s, b) for s, b in found if s >= self.tree.size)  # sealed before a crash: not again
                rows, records = ([s for s, _ in found], [b for _, b in found]), None
            if rows[0]:
                first = rows[0][0]
                if first != self.tree.size:
                    raise TetherError(
                        f"the write-ahead log starts at record {first} but the sealed log ends at {self.tree.size - 1}",
                        hint="records are missing between the segments and the write-ahead log; "
                        "run tether audit verify",
                    )
                self._write_segment(segment_table(*rows, records))
            for p in paths:
                p.unlink(missing_ok=True)
            return len(rows[0])
        finally:
            if enabled:
                gc.enable()

    def _write_segment(self, table: pa.Table) -> None:
        seqs = table.column("seq")
        dest = self.root / "segments" / f"{seqs[0].as_py():012d}-{seqs[-1].as_py():012d}.parquet"
        tmp = dest.with_suffix(".tmp")
        # Dictionary encoding only where values repeat: tried on trace ids, digests and payloads it cost 40% of
        # the write and made the file larger.
        pq.write_table(table, tmp, compression="zstd", use_dictionary=DICTIONARY_COLUMNS)
        _fsync_rename(tmp, dest)
        self.tree.extend_hashes(table.column("leaf").to_pylist())
        self._checkpoint(dest.name)

    def _checkpoint(self, segment: str) -> None:
        """Sign a checkpoint for the segment just written: numbered, chained to the one before, covering the
        segment file's bytes; then hand it to the witness (see `tether.audit.checkpoint`)."""
        size, root = self.tree.size, self.tree.root()
        at = datetime.now(UTC).isoformat(timespec="seconds")
        last = self._last_checkpoint()
        index = 0 if last is None else int(last.get("index", last.get("_position", -1))) + 1
        previous = None if last is None else str(last.get("note_digest") or _legacy_digest(last))
        cp = ckpt.Checkpoint(
            ckpt.origin(self.key.public_key_hex),
            size,
            root,
            index,
            previous,
            segment,
            ckpt.file_digest(self.root / "segments" / segment),
            at,
        )
        note = ckpt.sign(cp, self.key)
        doc = {
            "tree_size": size,
            "root": root.hex(),
            "time": at,
            "index": index,
            "previous": previous,
            "segment": segment,
            "segment_digest": cp.segment_digest,
            "public_key": self.key.public_key_hex,
            "note": note,
            "note_digest": ckpt.note_digest(note),
        }
        dest = self.root / "checkpoints" / f"{size:012d}.json"
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        _fsync_rename(tmp, dest)
        if self.witness:
            try:
                ckpt.publish(self.witness, note, cp)
            except Exception as e:  # the records are sealed and checkpointed locally: never lose them for this
                log.warning("audit checkpoint %d was not published to the witness %s: %s", size, self.witness, e)

    def _last_checkpoint(self) -> dict[str, Any] | None:
        cps = self.checkpoints()
        if not cps:
            return None
        last = cps[-1]
        last["_position"] = len(cps) - 1
        return last

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()
            self._wal = None
        if not self._lock_file.closed:
            self._lock_file.close()  # releases the writer lock

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------------------
    def segments(self) -> list[Path]:
        return sorted((self.root / "segments").glob("*.parquet"))

    def checkpoints(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted((self.root / "checkpoints").glob("*.json")):
            key = _stat_key(p)
            cached = self._checkpoint_cache.get(p.name)
            if cached is None or cached[0] != key:
                doc = orjson.loads(p.read_bytes())
                doc["file"] = p.name
                cached = self._checkpoint_cache[p.name] = (key, doc)
            out.append(dict(cached[1]))
        return out

    def _segment_digest(self, seg: Path) -> str:
        """A segment's SHA-256, re-hashed whenever its inode, size, mtime or ctime moved (any write moves the
        kernel's ctime, which no user-space call can set back), so a page load does not re-read every segment."""
        key = _stat_key(seg)
        cached = self._digest_cache.get(seg.name)
        if cached is None or cached[0] != key:
            cached = self._digest_cache[seg.name] = (key, ckpt.file_digest(seg))
        return cached[1]

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run SQL over the sealed records (the view ``records``) with DuckDB."""
        import duckdb

        con = duckdb.connect()
        try:
            files = [str(p) for p in self.verified_segments()]
            if files:
                # By name: segments sealed before tenants were kept lack that column (NULL there).
                con.execute(f"CREATE VIEW records AS SELECT * FROM read_parquet({files!r}, union_by_name=true)")
            else:  # nothing sealed yet: an empty table with the same columns
                con.register("records", SCHEMA.empty_table())
            try:
                rel = con.execute(sql)
            except duckdb.Error as e:
                raise InvalidInputError(
                    f"the audit query failed: {e}", hint="query the view 'records'; see docs/audit.md"
                ) from None
            names = [d[0] for d in rel.description or []]
            return names, rel.fetchall()
        finally:
            con.close()

    def verified_segments(self) -> list[Path]:
        """The segment files, each checked byte for byte against the digest its signed checkpoint holds, so no
        edited footer statistic or row can decide what a query or trace returns."""
        # A seal renames its segment into place, then signs the checkpoint that names it. Read in this process,
        # under the seal's lock: a seal is seen whole or not at all. Read beside the writing process (the CLI
        # beside tether serve), a newest segment whose checkpoint is not there yet is waited for, briefly: the
        # writer is between the two steps. Without this, a page read during a seal was a 500 ("named by no
        # signed checkpoint"; tests/audit/test_log.py::test_a_read_during_a_seal_sees_it_whole_or_not_at_all).
        deadline = time.monotonic() + SEAL_GRACE_SECONDS
        while True:
            with self._lock:
                covered = {c["segment"]: c.get("segment_digest") for c in self.checkpoints() if c.get("segment")}
                segments = self.segments()
            unsigned = [s for s in segments if s.name not in covered]
            if not unsigned or unsigned != segments[-1:] or time.monotonic() > deadline:
                break  # all signed, or an unsigned one that is not the newest (no seal explains it), or waited enough
            time.sleep(0.02)
        out = []
        for seg in segments:
            if seg.name not in covered:
                raise IntegrityError(
                    f"audit segment {seg.name} is named by no signed checkpoint",
                    expected="a checkpoint for every segment",
                    actual="none",
                    hint="a segment was added or its checkpoint removed; run 'tether audit verify'",
                )
            want = covered[seg.name]  # None: a checkpoint from before segment digests (its leaves still verify)
            if want is not None and (got := self._segment_digest(seg)) != want:
                raise IntegrityError(
                    f"audit segment {seg.name} was changed after it was sealed (its bytes no longer match its "
                    "signed checkpoint)",
                    expected=want,
                    actual=got,
                    hint="run 'tether audit verify' and restore the segment from a backup",
                )
            out.append(seg)
        return out

    def trace(self, trace_id: str) -> dict[str, Any]:
        """A record by trace id with its inclusion proof against the latest checkpoint, proven from the record's
        own content (its leaf recomputed, never read from a stored column)."""
        verified = self.verified_segments()
        candidates = [x.path for x in self.summaries.of(verified) if x.min_trace <= trace_id <= x.max_trace]
        for seg in reversed(candidates):
            table = pq.read_table(seg, filters=[("trace_id", "=", trace_id)])
            if table.num_rows:
                row = table.to_pylist()[0]
                break
        else:
            raise NotFoundError(
                f"no sealed audit record with trace id {trace_id}",
                hint="records are sealed every few seconds; 'tether audit seal' seals now",
            )
        cps = self.checkpoints()
        if not cps:
            raise NotFoundError("the audit log has no checkpoint yet", hint="'tether audit seal' makes one")
        cp = cps[-1]
        seq, size = int(row["seq"]), int(cp["tree_size"])
        leaf = leaf_hash(canonical(seq, _record_of(row)))
        if size > self.tree.size or seq >= size:
            raise IntegrityError(
                f"the latest checkpoint covers {size} records but the segments hold {self.tree.size}",
                expected=str(size),
                actual=str(self.tree.size),
                hint="records or segments were removed; run 'tether audit verify'",
            )
        proof = self.tree.inclusion_proof(seq, size)
        ok = leaf == row["leaf"] and verify_inclusion(seq, size, leaf, proof, bytes.fromhex(cp["root"]))
        return {
            "record": {k: v for k, v in row.items() if k != "leaf"},
            "leaf": leaf.hex(),
            "stored_leaf_matches": leaf == row["leaf"],
            "checkpoint": {k: cp[k] for k in ("tree_size", "root", "time", "file")},
            "proof": [p.hex() for p in proof],
            "proof_verifies": ok,
        }

    def consistency(self, first: int, second: int | None = None) -> dict[str, Any]:
        """A consistency proof between two signed checkpoints (by tree size), verified against their roots."""
        cps = {int(c["tree_size"]): c for c in self.checkpoints()}
        if not cps:
            raise NotFoundError("the audit log has no checkpoint yet", hint="'tether audit seal' makes one")
        second = max(cps) if second is None else second
        missing = [s for s in (first, second) if s not in cps]
        if missing:
            raise NotFoundError(
                f"no checkpoint at tree size {missing[0]}", hint=f"checkpoints exist at sizes {sorted(cps)[-10:]}"
            )
        if first > second:
            raise InvalidInputError(f"the first size ({first}) is after the second ({second})")
        a, b = cps[first], cps[second]
        proof = self.tree.consistency_proof(first, second) if first else []
        ok = verify_consistency(first, second, proof, bytes.fromhex(a["root"]), bytes.fromhex(b["root"]))
        return {"first": a, "second": b, "proof": [p.hex() for p in proof], "verifies": ok}

    def verify(self, held: list[str] | None = None) -> Any:
        """Check the whole log; ``held`` are checkpoint notes kept elsewhere (an auditor's, a witness's): each
        must be consistent with the log as it is now. Notes in a witness folder are checked too."""
        notes = list(held or [])
        if self.witness and not self.witness.startswith(("http://", "https://")):
            notes += [p.read_text() for p in sorted(Path(self.witness).glob("*.checkpoint"))]
        from tether.audit.verify import verify_log

        return verify_log(self.root, self.key.public_key_hex, held=notes)


def _record_of(row: dict[str, Any]) -> dict[str, Any]:
    """The record as its leaf hashes it, from a Parquet row's own columns."""
    rec = {f: row[f] for f in FIELDS if f != "tenant"}
    if row.get("tenant"):  # hashed only when set (and absent from segments sealed before tenants were kept)
        rec["tenant"] = row["tenant"]
    rec["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
    rec["payload"] = orjson.loads(row["payload"])
    return rec


def _legacy_digest(cp: dict[str, Any]) -> str:
    """What a checkpoint written before notes existed is chained by: the digest of its signed message."""
    return hashlib.sha256(
        _checkpoint_message(int(cp["tree_size"]), str(cp["root"]), str(cp["time"])) + str(cp["signature"]).encode()
    ).hexdigest()


def _checkpoint_message(size: int, root: str, at: str) -> bytes:
    return f"tether-audit-checkpoint\n{size}\n{root}\n{at}\n".encode()


def _stat_key(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fsync_rename(tmp: Path, dest: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
