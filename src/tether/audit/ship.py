"""Sealed audit logs on the shared blob store, where auditors (and `tether audit`) read every replica's log.

Layout under the blob store's root (``TETHER_BLOB_URL``, an S3-compatible bucket at scale)::

    audit/<log>/segments/<first>-<last>.parquet     as sealed, byte for byte
    audit/<log>/checkpoints/<tree size>.json        as signed

where ``<log>`` is ``main`` (the decisions, copied by the leader) or a replica's name. `Shipper.ship` copies
what a log sealed since its last run, segments before the checkpoints that name them, so a checkpoint on the
store never names a segment that is not there yet; sealed files never change, so a file already shipped is
never sent again. `fetch` copies every shipped log into a local folder, where it opens as an ordinary log
and verifies the same way: a changed byte, a removed segment or checkpoint is reported by name.

The write-ahead log stays on the replica's disk: a record is acknowledged once it is durable there (as for
one process), and reaches the blob store with the next seal (every two seconds while serving).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from tether.store.blobs import BlobStore

log = logging.getLogger("tether.audit.ship")

PARTS = ("segments", "checkpoints")


def _sealed(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix in (".parquet", ".json")


class Shipper:
    def __init__(self, blobs: BlobStore, root: Path, name: str) -> None:
        self.blobs, self.root, self.name = blobs, root, name
        self.base = f"{blobs.root}/audit/{name}"
        self._shipped: set[str] | None = None
        self.shipped = 0

    def _remote(self) -> set[str]:
        if self._shipped is None:
            found: set[str] = set()
            for part in PARTS:
                with contextlib.suppress(FileNotFoundError):
                    listed = self.blobs.fs.ls(f"{self.base}/{part}", detail=False)
                    found.update(f"{part}/{Path(p).name}" for p in listed)
            self._shipped = found
        return self._shipped

    def ship(self) -> int:
        """Copy the segments and checkpoints sealed since the last call; returns how many files."""
        done = self._remote()
        n = 0
        for part in PARTS:  # segments first: a shipped checkpoint never names a missing segment
            folder = self.root / part
            for f in sorted(folder.iterdir()) if folder.is_dir() else []:
                rel = f"{part}/{f.name}"
                if rel in done or not _sealed(f):
                    continue
                self.blobs.fs.put_file(str(f), f"{self.base}/{rel}")
                done.add(rel)
                n += 1
        self.shipped += n
        return n


def shipped_logs(blobs: BlobStore) -> list[str]:
    """The names of the logs on the blob store."""
    try:
        return sorted(Path(p).name for p in blobs.fs.ls(f"{blobs.root}/audit", detail=False))
    except FileNotFoundError:
        return []


def fetch(blobs: BlobStore, name: str, dest: Path) -> Path:
    """Copy log ``name`` from the blob store into ``dest``, exactly as it is there."""
    base = f"{blobs.root}/audit/{name}"
    for part in PARTS:
        (dest / part).mkdir(parents=True, exist_ok=True)
        try:
            remote = blobs.fs.ls(f"{base}/{part}", detail=True)
        except FileNotFoundError:
            remote = []
        names = set()
        for info in remote:  # every file fetched again: a copy kept from last time could hide an edit
            fname = Path(info["name"]).name
            names.add(fname)
            blobs.fs.get_file(info["name"], str(dest / part / fname))
        for stale in (dest / part).iterdir():  # removed from the store: removed here too, so verify sees it
            if stale.name not in names:
                stale.unlink()
    return dest
