"""Streaming SHA-256 of bytes, files and directories, and the manifest that names a directory's content.

A *manifest* lists every regular file under a root as ``(path, size, digest)`` with POSIX paths relative to
the root. Its *root digest* is SHA-256 over the canonical text of the manifest sorted by path (UTF-8 bytes)::

    tether-manifest-v1\\n
    <digest> <size> <path>\\n      (one line per file)

A single file is a manifest of one entry named by its base name, so a file and a folder holding just that
file have the same root digest. Files are read in fixed-size chunks into one reused buffer (memory stays
flat whatever the size) and several files are hashed in parallel threads (hashlib releases the GIL).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tether.core.errors import InvalidInputError
from tether.core.types import Digest

#: 1 MiB reads: measured with bench/hashing.py, larger chunks gain nothing and smaller ones lose ~10%.
CHUNK_SIZE = 1 << 20
MANIFEST_HEADER = b"tether-manifest-v1\n"

#: Called with the number of bytes just hashed; used for progress bars.
Progress = Callable[[int], None]


def sha256_bytes(data: bytes) -> Digest:
    """SHA-256 of ``data`` as lower-case hex."""
    return Digest(hashlib.sha256(data).hexdigest())


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no insignificant white space, UTF-8. The input of every id digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def digest_json(value: Any) -> Digest:
    """SHA-256 over the canonical JSON of ``value``."""
    return sha256_bytes(canonical_json(value))


def hash_stream(stream: BinaryIO, progress: Progress | None = None) -> tuple[Digest, int]:
    """SHA-256 and length of everything left in ``stream``, read in chunks into one buffer."""
    hasher = hashlib.sha256()
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    total = 0
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buf)
            if not n:
                break
            hasher.update(view[:n])
        else:
            chunk = stream.read(CHUNK_SIZE)
            if not chunk:
                break
            n = len(chunk)
            hasher.update(chunk)
        total += n
        if progress is not None:
            progress(n)
    return Digest(hasher.hexdigest()), total


def hash_file(path: str | os.PathLike[str], progress: Progress | None = None) -> Digest:
    """SHA-256 of a file's content."""
    try:
        with open(path, "rb", buffering=0) as f:
            return hash_stream(f, progress)[0]
    except FileNotFoundError:
        raise InvalidInputError(f"file not found: {os.fspath(path)}", hint="check the path") from None
    except IsADirectoryError:
        raise InvalidInputError(f"expected a file, found a folder: {os.fspath(path)}") from None


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One regular file: POSIX path relative to the manifest root, size in bytes, SHA-256."""

    path: str
    size: int
    digest: Digest


@dataclass(frozen=True)
class Manifest:
    """The content of a file or folder: its entries sorted by path, and the root digest over them."""

    entries: tuple[ManifestEntry, ...]

    def __post_init__(self) -> None:
        paths = [e.path for e in self.entries]
        if paths != sorted(paths, key=_path_key):
            object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda e: _path_key(e.path))))
        if len(set(paths)) != len(paths):
            raise InvalidInputError("a manifest lists the same path twice")

    @property
    def root_digest(self) -> Digest:
        return sha256_bytes(self.canonical_bytes())

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def canonical_bytes(self) -> bytes:
        lines = [MANIFEST_HEADER]
        for e in self.entries:
            if "\n" in e.path:
                raise InvalidInputError(f"a file name contains a line break: {e.path!r}; rename it")
            lines.append(f"{e.digest} {e.size} {e.path}\n".encode())
        return b"".join(lines)

    @classmethod
    def from_canonical_bytes(cls, data: bytes) -> Manifest:
        """Parse `canonical_bytes` back (the stored form: its SHA-256 is the root digest)."""
        if not data.startswith(MANIFEST_HEADER):
            raise InvalidInputError("not a tether manifest (missing the tether-manifest-v1 header)")
        entries = []
        for line in data[len(MANIFEST_HEADER) :].decode().splitlines():
            digest, size, path = line.split(" ", 2)
            entries.append(ManifestEntry(path, int(size), Digest(digest)))
        return cls(tuple(entries))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "tether-manifest-v1",
            "root_digest": self.root_digest,
            "entries": [{"path": e.path, "size": e.size, "digest": e.digest} for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != "tether-manifest-v1":
            raise InvalidInputError(f"unknown manifest format {data.get('format')!r}")
        m = cls(tuple(ManifestEntry(e["path"], int(e["size"]), Digest(e["digest"])) for e in data["entries"]))
        if "root_digest" in data and data["root_digest"] != m.root_digest:
            raise InvalidInputError("manifest root digest does not match its entries; the manifest was edited")
        return m

    def diff(self, other: Manifest) -> list[str]:
        """Human-readable differences from ``self`` (expected) to ``other`` (found)."""
        mine = {e.path: e for e in self.entries}
        theirs = {e.path: e for e in other.entries}
        out = [f"missing: {p}" for p in sorted(mine.keys() - theirs.keys(), key=_path_key)]
        out += [f"unexpected: {p}" for p in sorted(theirs.keys() - mine.keys(), key=_path_key)]
        for p in sorted(mine.keys() & theirs.keys(), key=_path_key):
            if mine[p].digest != theirs[p].digest:
                out.append(f"changed: {p} (expected {mine[p].digest[:12]}, found {theirs[p].digest[:12]})")
        return out


def _path_key(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def iter_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Regular files under ``root`` as (relative POSIX path, absolute path). Symlinks are refused."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for d in dirnames:
            if (base / d).is_symlink():
                raise InvalidInputError(
                    f"symbolic link to a folder in {root}: {base / d}",
                    hint="replace links with real files so the content can be hashed and stored",
                )
        for name in sorted(filenames):
            p = base / name
            if p.is_symlink():
                raise InvalidInputError(
                    f"symbolic link in {root}: {p}",
                    hint="replace links with real files so the content can be hashed and stored",
                )
            if p.is_file():
                yield p.relative_to(root).as_posix(), p


def file_sizes(path: Path) -> list[tuple[str, Path, int]]:
    """(relative path, absolute path, size) of every file a manifest of ``path`` will cover."""
    if not path.exists():
        raise InvalidInputError(f"path not found: {path}", hint="check the path")
    if path.is_file():
        return [(path.name, path, path.stat().st_size)]
    return [(rel, p, p.stat().st_size) for rel, p in iter_files(path)]


def hash_tree(
    path: str | os.PathLike[str],
    *,
    workers: int = 4,
    progress: Progress | None = None,
) -> Manifest:
    """The manifest of a file or a folder, hashing files in parallel.

    ``workers`` threads read and hash separate files; each holds one chunk buffer, so memory is bounded by
    ``workers * CHUNK_SIZE`` whatever the sizes.
    """
    root = Path(path)
    files = file_sizes(root)
    return manifest_of(((rel, p) for rel, p, _ in files), workers=workers, progress=progress)


def manifest_of(files: Iterable[tuple[str, Path]], *, workers: int = 4, progress: Progress | None = None) -> Manifest:
    """The manifest of explicitly named files (relative path, absolute path)."""
    items = list(files)

    def one(item: tuple[str, Path]) -> ManifestEntry:
        rel, p = item
        with open(p, "rb", buffering=0) as f:
            digest, size = hash_stream(f, progress)
        return ManifestEntry(rel, size, digest)

    if workers <= 1 or len(items) <= 1:
        entries = [one(i) for i in items]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tether-hash") as pool:
            entries = list(pool.map(one, items))
    return Manifest(tuple(entries))
