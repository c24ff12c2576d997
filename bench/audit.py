"""The audit trail's parts so far: the RFC 9162 Merkle tree and the group-commit write-ahead log.

    python bench/audit.py [--leaves 1000000] [--records 200000]

Prints, from one run:
  - Merkle appends per second over 1M leaves beside bare SHA-256 of the same leaves (the floor), and the time
    to produce and to verify an inclusion proof and a consistency proof at that size;
  - write-ahead-log records per second with every record acknowledged on disk: one appender (an fsync each),
    16 threads sharing fsyncs (group commit), and batches of 1,000, beside a plain file write + fsync of the
    same batches (the floor).
  - the whole path: records appended in batches of 1,000 (each batch acknowledged on disk), sealed every
    20,000 into a zstd Parquet segment with Merkle leaves and a signed checkpoint, beside pyarrow writing the
    same rows to zstd Parquet (the floor).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path

from tether.audit.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from tether.audit.wal import WriteAheadLog


def _per_call(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    payloads = [os.urandom(200) for _ in range(min(args.leaves, 100_000))]

    t = time.perf_counter()
    for i in range(args.leaves):
        hashlib.sha256(b"\x00" + payloads[i % len(payloads)]).digest()
    bare = args.leaves / (time.perf_counter() - t)
    tree = MerkleTree()
    t = time.perf_counter()
    for i in range(args.leaves):
        tree.append(payloads[i % len(payloads)])
    merkle = args.leaves / (time.perf_counter() - t)
    n = tree.size
    root = tree.root()
    idx = n // 3
    proof = tree.inclusion_proof(idx)
    leaf = tree.leaf(idx)
    old = n - 12345
    cproof = tree.consistency_proof(old)
    old_root = tree.root(old)
    print(f"Merkle tree, {n:,} leaves of 200 bytes")
    print(f"  append            {merkle:12,.0f} leaves/s   bare SHA-256 {bare:12,.0f}/s   ratio {merkle / bare:.2f}")
    print(f"  root              {_per_call(tree.root, 200):8.1f} us")
    print(
        f"  inclusion proof   {_per_call(lambda: tree.inclusion_proof(idx), 200):8.1f} us to make, "
        f"{_per_call(lambda: verify_inclusion(idx, n, leaf, proof, root), 2000):6.1f} us to verify "
        f"({len(proof)} hashes)"
    )
    print(
        f"  consistency proof {_per_call(lambda: tree.consistency_proof(old), 200):8.1f} us to make, "
        f"{_per_call(lambda: verify_consistency(old, n, cproof, old_root, root), 2000):6.1f} us to verify"
    )
    assert leaf_hash(payloads[idx % len(payloads)]) == leaf

    records = [os.urandom(200) for _ in range(args.records)]
    with tempfile.TemporaryDirectory(prefix="tether-bench-audit-") as tmp:
        with WriteAheadLog(Path(tmp) / "one.wal") as wal:
            k = min(2000, args.records)
            t = time.perf_counter()
            for r in records[:k]:
                wal.append(r)
            one = k / (time.perf_counter() - t)
        with WriteAheadLog(Path(tmp) / "many.wal") as wal:
            per = args.records // 16

            def appender(j: int) -> None:
                for r in records[j * per : (j + 1) * per]:
                    wal.append(r)

            threads = [threading.Thread(target=appender, args=(j,)) for j in range(16)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            sixteen = per * 16 / (time.perf_counter() - t)
            fsyncs = wal.fsyncs
        with WriteAheadLog(Path(tmp) / "batch.wal") as wal:
            t = time.perf_counter()
            for i in range(0, args.records, 1000):
                wal.append_many(records[i : i + 1000])
            batched = args.records / (time.perf_counter() - t)
        with open(Path(tmp) / "plain.bin", "ab", buffering=0) as f:
            t = time.perf_counter()
            for i in range(0, args.records, 1000):
                f.write(b"".join(records[i : i + 1000]))
                os.fsync(f.fileno())
            plain = args.records / (time.perf_counter() - t)
    print(f"\nwrite-ahead log, {args.records:,} records of 200 bytes, each acknowledged on disk")
    print(f"  1 appender, an fsync per record   {one:12,.0f} records/s")
    print(f"  16 threads, group commit          {sixteen:12,.0f} records/s ({per * 16 / max(fsyncs, 1):.0f} per fsync)")
    print(f"  batches of 1,000                  {batched:12,.0f} records/s")
    print(f"  plain write + fsync per 1,000     {plain:12,.0f} records/s   ratio {batched / plain:.2f}")

    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tether.audit.log import AuditLog, AuditRecord
    from tether.core import Settings

    now = datetime.now(UTC)
    recs = [
        AuditRecord(kind="prediction", trace_id=f"{i:032x}", at=now, model="fraud", version_id="v" * 64,
                    input_digest="a" * 64, output_digest="b" * 64, payload={"input": [{"amount": i}], "output": [0.1]})
        for i in range(args.records)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tether-bench-audit-") as tmp:
        with AuditLog(Settings(home=Path(tmp), database_url="", blob_url="")) as log:
            t = time.perf_counter()
            for i in range(0, args.records, 1000):
                log.append_many(recs[i : i + 1000])
                if (i + 1000) % 20_000 == 0:
                    log.seal()
            log.seal()
            whole = args.records / (time.perf_counter() - t)
            t = time.perf_counter()
            report = log.verify()
            verify_rate = report.records / (time.perf_counter() - t)
        rows = [r.to_json() for r in recs]
        t = time.perf_counter()
        for i in range(0, args.records, 20_000):
            pq.write_table(pa.Table.from_pylist(rows[i : i + 20_000]), Path(tmp) / f"p{i}.parquet", compression="zstd")
        plain_pq = args.records / (time.perf_counter() - t)
    print("\nthe whole path (write-ahead log, Parquet segments, Merkle tree, signed checkpoints)")
    print(f"  tether audit log                  {whole:12,.0f} records/s")
    print(f"  plain pyarrow Parquet writer      {plain_pq:12,.0f} records/s   ratio {whole / plain_pq:.2f}")
    print(f"  verify (recompute every leaf)     {verify_rate:12,.0f} records/s   ok={report.ok}")


if __name__ == "__main__":
    main()
