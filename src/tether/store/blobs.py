"""A content-addressed blob store on fsspec.

A blob lives at ``<root>/sha256/<first two hex>/<rest of hex>``. Writes are atomic: on a local folder the
content goes to a temporary file in the store, is fsynced, then renamed into place; on object storage the
digest is computed first and the object is written with a single PUT (atomic on S3 and its compatibles), so
no reader ever sees a partial blob. Every read verifies the digest and refuses a mismatch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from tether.core.errors import IntegrityError, InvalidInputError, MissingExtraError, NotFoundError
from tether.core.hashing import CHUNK_SIZE, Progress, hash_stream
from tether.core.types import Digest

_HEX = frozenset("0123456789abcdef")


def _check_digest(digest: str) -> Digest:
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise InvalidInputError(f"not a SHA-256 digest: {digest!r}", hint="digests are 64 lower-case hex characters")
    return Digest(digest)


class BlobStore:
    """Immutable blobs named by the SHA-256 of their content."""

    def __init__(self, url: str, *, options: dict[str, Any] | None = None) -> None:
        self.url = url
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        except ImportError as e:
            scheme = url.split("://", 1)[0]
            if scheme in ("s3", "s3a"):
                raise MissingExtraError("an s3:// blob store", "s3fs", "s3") from e
            raise InvalidInputError(f"no fsspec implementation for {url!r}: {e}") from e
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.local:
            Path(self.root, "tmp").mkdir(parents=True, exist_ok=True)

    # -- naming -----------------------------------------------------------------------------------------
    def path(self, digest: str) -> str:
        d = _check_digest(digest)
        return f"{self.root}/sha256/{d[:2]}/{d[2:]}"

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self.path(digest)))

    # -- writing ----------------------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> Digest:
        digest = Digest(hashlib.sha256(data).hexdigest())
        if self.exists(digest):
            return digest
        if self.local:
            self._local_commit(digest, lambda f: f.write(data))
        else:
            self.fs.pipe_file(self.path(digest), data)
        return digest

    def put_file(self, path: str | os.PathLike[str], progress: Progress | None = None) -> tuple[Digest, int]:
        """Store a file's content; returns (digest, size). Idempotent: existing content is not rewritten."""
        src = Path(path)
        if not src.is_file():
            raise InvalidInputError(f"file not found: {src}", hint="check the path")
        if self.local:
            return self._put_local_copy(src, progress)
        with open(src, "rb") as f:
            digest, size = hash_stream(f, progress)
        if not self.exists(digest):
            # One PUT of a finished file: S3 makes the object visible only when the upload completes.
            self.fs.put_file(str(src), self.path(digest))
        return digest, size

    def _put_local_copy(self, src: Path, progress: Progress | None) -> tuple[Digest, int]:
        hasher = hashlib.sha256()
        size = 0
        tmp = Path(self.root, "tmp", f"{uuid.uuid4().hex}.part")
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
                    if progress:
                        progress(len(chunk))
                fout.flush()
                os.fsync(fout.fileno())
            digest = Digest(hasher.hexdigest())
            final = Path(self.path(digest))
            if final.exists():
                return digest, size
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return digest, size
        finally:
            tmp.unlink(missing_ok=True)

    def _local_commit(self, digest: Digest, write: Any) -> None:
        final = Path(self.path(digest))
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=Path(self.root, "tmp"), suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- reading ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _open(self, digest: str) -> Iterator[BinaryIO]:
        try:
            f = self.fs.open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFoundError(
                f"blob {digest[:12]}… is missing from the store {self.url}",
                hint="the store was changed outside tether; restore the blob from a backup or re-register",
                digest=digest,
            ) from None
        try:
            yield f
        finally:
            f.close()

    def get_bytes(self, digest: str, *, what: str = "blob") -> bytes:
        with self._open(digest) as f:
            data = f.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise _mismatch(what, digest, actual)
        return data

    def get_file(
        self,
        digest: str,
        dest: str | os.PathLike[str],
        *,
        what: str = "blob",
        progress: Progress | None = None,
    ) -> None:
        """Copy a blob to ``dest``, verifying its digest; on a mismatch nothing is left at ``dest``."""
        out = Path(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.part")
        hasher = hashlib.sha256()
        try:
            with self._open(digest) as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    fout.write(chunk)
                    if progress:
                        progress(len(chunk))
            actual = hasher.hexdigest()
            if actual != digest:
                raise _mismatch(what, digest, actual)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)

    def verify(self, digest: str) -> None:
        """Re-hash a stored blob; raise `IntegrityError` when it changed."""
        with self._open(digest) as f:
            actual, _ = hash_stream(f)
        if actual != digest:
            raise _mismatch("blob", digest, actual)

    def leftover_temp_files(self) -> list[str]:
        """Temporary files of interrupted writes (a healthy store has none once writers are done)."""
        if not self.local:
            return []
        return sorted(p.name for p in Path(self.root, "tmp").glob("*.part"))


def _mismatch(what: str, expected: str, actual: str) -> IntegrityError:
    return IntegrityError(
        f"{what} digest mismatch: expected {expected[:12]}…, found {actual[:12]}…",
        expected=expected,
        actual=actual,
        hint="the stored content was changed after it was written; restore it from a backup or re-register",
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
