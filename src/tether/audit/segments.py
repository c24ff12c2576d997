"""What each sealed segment holds, summarised once, so a search reads only the segments that can match.

A server seals every 2 s: a month is hundreds of thousands of small segments, and a query that opens every
footer costs more than the rows it returns. Each summary (rows per model, kind and tenant, the time and trace id ranges,
the version ids when few) is computed from the segment's bytes the first time it is needed and kept per file
stat (inode, size, mtime, ctime: any write moves the kernel's ctime), and it only ever narrows which verified
segments are read; the rows themselves always come from the verified files.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from tether.audit.search import Filters

#: Past this many distinct versions in one segment, the summary keeps none (any version may match).
MAX_VERSIONS = 64


@dataclass(frozen=True)
class Summary:
    path: Path
    rows: int
    first_seq: int
    last_seq: int
    #: (model, kind, tenant) -> rows ("" for no tenant: the platform's records, and every record of a segment
    #: sealed before tenants were kept, which has no tenant column: `has_tenant`)
    counts: dict[tuple[str, str, str], int]
    first_at: Any
    last_at: Any
    min_trace: str
    max_trace: str
    versions: frozenset[str] | None
    has_tenant: bool = True

    def _counted(self, f: Filters) -> int:
        return sum(n for key, n in self.counts.items() if _holds(key, f))

    def may_match(self, f: Filters) -> bool:
        if not any(_holds(key, f) for key in self.counts):
            return False
        if f.trace is not None and not (self.min_trace <= f.trace <= self.max_trace):
            return False
        if f.version is not None and self.versions is not None:
            prefix = f.version.lower()
            if not any(v.startswith(prefix) for v in self.versions):
                return False
        if f.since is not None and self.last_at is not None and self.last_at < f.since:
            return False
        return not (f.until is not None and self.first_at is not None and self.first_at > f.until)

    def exact(self, f: Filters) -> int | None:
        """How many rows match, when the summary alone can say (filters on model and kind only)."""
        if f.trace is not None or f.since is not None or f.until is not None:
            return None
        if f.version is not None and (
            self.versions is None or not all(v.startswith(f.version.lower()) for v in self.versions)
        ):
            return None  # only when every row's version matches is the count known without reading
        return self._counted(f)


def _holds(key: tuple[str, str, str], f: Filters) -> bool:
    """Whether rows of this (model, kind, tenant) pass the filters on those three columns and the reader's scope."""
    from tether.audit.record import TENANT_KINDS

    m, k, t = key
    return (
        f.model in (None, m)
        and f.kind in (None, k)
        and f.tenant in (None, t)
        and (f.scope is None or t == f.scope or k not in TENANT_KINDS)
    )


class Summaries:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, ...], Summary]] = {}
        self._lock = threading.Lock()

    def of(self, paths: list[Path]) -> list[Summary]:
        out = []
        for p in paths:
            st = p.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            with self._lock:
                cached = self._cache.get(p.name)
            if cached is None or cached[0] != key:
                cached = (key, _summarise(p))
                with self._lock:
                    self._cache[p.name] = cached
            out.append(cached[1])
        return out


def _summarise(path: Path) -> Summary:
    has_tenant = "tenant" in pq.read_schema(path).names
    columns = ["seq", "kind", "model", "at", "trace_id", "version_id"] + (["tenant"] if has_tenant else [])
    t = pq.read_table(path, columns=columns)
    tenants = t.column("tenant").to_pylist() if has_tenant else [""] * t.num_rows
    counts = Counter(
        zip(t.column("model").to_pylist(), t.column("kind").to_pylist(), [x or "" for x in tenants], strict=True)
    )
    versions = pc.unique(t.column("version_id")).to_pylist()
    seq = t.column("seq")
    at = t.column("at")
    trace = t.column("trace_id")
    return Summary(
        path=path,
        rows=t.num_rows,
        first_seq=int(pc.min(seq).as_py()) if t.num_rows else -1,
        last_seq=int(pc.max(seq).as_py()) if t.num_rows else -1,
        counts=dict(counts),
        first_at=pc.min(at).as_py(),
        last_at=pc.max(at).as_py(),
        min_trace=str(pc.min(trace).as_py() or ""),
        max_trace=str(pc.max(trace).as_py() or ""),
        versions=frozenset(versions) if len(versions) <= MAX_VERSIONS else None,
        has_tenant=has_tenant,
    )
