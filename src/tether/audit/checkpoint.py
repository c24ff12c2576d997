"""Signed checkpoints of the audit log, chained, numbered and published outside the store.

Each checkpoint is a C2SP signed note (https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note), so
the transparency-dev tools read it::

    tether.audit/<key id>          origin: this store's log (its Ed25519 key names it)
    1234                           tree size
    <base64 root hash>
    index 7                        extension lines (ignored by tools that do not know them):
    previous <hex>                   SHA-256 of the previous checkpoint's note (none for index 0)
    segment <name> <hex>             the Parquet segment sealed with it, and the SHA-256 of the whole file
    time <ISO 8601>

    — tether.audit/<key id> base64(4-byte key id || Ed25519 signature of the text above the blank line)

Numbering and the hash chain make a removed checkpoint a named gap; the segment digest covers every byte of
a segment (Parquet footer statistics included), so no unverified metadata decides what a query returns. A
witness (a folder on another volume, or an HTTP endpoint) receives every note as it is signed: whoever holds
an earlier note detects a rollback (the log is shorter) or a re-signed history (the roots differ) with
``tether audit verify --checkpoint NOTE``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tether.core import InvalidInputError, SigningKey
from tether.core.signing import verify_signature

EM_DASH = "\u2014"
ED25519 = b"\x01"


def origin(public_key_hex: str) -> str:
    return f"tether.audit/{public_key_hex[:16]}"


def key_id(name: str, public_key_hex: str) -> bytes:
    """The signed-note key id: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + bytes.fromhex(public_key_hex)).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    index: int | None = None
    previous: str | None = None
    segment: str | None = None
    segment_digest: str | None = None
    time: str | None = None

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        if self.index is not None:
            lines.append(f"index {self.index}")
        if self.previous is not None:
            lines.append(f"previous {self.previous}")
        if self.segment is not None:
            lines.append(f"segment {self.segment} {self.segment_digest}")
        if self.time is not None:
            lines.append(f"time {self.time}")
        return "\n".join(lines) + "\n"


def sign(cp: Checkpoint, key: SigningKey) -> str:
    """The signed note: the body, a blank line, and one signature line."""
    body = cp.body()
    sig = bytes.fromhex(key.sign(body.encode()))
    kid = key_id(cp.origin, key.public_key_hex)
    return f"{body}\n{EM_DASH} {cp.origin} {base64.b64encode(kid + sig).decode()}\n"


def note_digest(note: str) -> str:
    return hashlib.sha256(note.encode()).hexdigest()


def parse(note: str, public_key_hex: str, *, what: str = "checkpoint") -> Checkpoint:
    """A checkpoint from its signed note, after checking the signature by ``public_key_hex``."""
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise InvalidInputError(f"{what} is not a signed note (no blank line before the signatures)")
    body += "\n"
    lines = body.splitlines()
    if len(lines) < 3:
        raise InvalidInputError(f"{what} has no origin, size and root lines")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise InvalidInputError(f"{what}: the size or root line is malformed") from None
    if size < 0 or len(root) != 32:
        raise InvalidInputError(f"{what}: a tree size must be >= 0 and a root 32 bytes")
    name = lines[0]
    want = key_id(name, public_key_hex)
    for line in sigs.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or parts[1] != name:
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        if raw[:4] == want:
            verify_signature(public_key_hex, body.encode(), raw[4:].hex(), what=what)
            break
    else:
        raise InvalidInputError(
            f"{what} carries no signature by this store's key {public_key_hex[:16]}…",
            hint="it was signed by another log, or its signature lines were removed",
        )
    ext = {}
    for line in lines[3:]:
        k, _, v = line.partition(" ")
        ext[k] = v
    seg_name, _, seg_digest = ext.get("segment", "").partition(" ")
    return Checkpoint(
        name,
        size,
        root,
        int(ext["index"]) if "index" in ext else None,
        ext.get("previous"),
        seg_name or None,
        seg_digest or None,
        ext.get("time"),
    )


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def publish(witness: str, note: str, cp: Checkpoint, *, timeout: float = 5.0) -> None:
    """Hand a signed note to the witness: a file in a folder (fsynced), or a POST to an http(s) URL."""
    if not witness:
        return
    if witness.startswith(("http://", "https://")):
        req = urllib.request.Request(  # noqa: S310 (http(s) only, checked above: the operator's own URL)
            witness, data=note.encode(), method="POST", headers={"Content-Type": "text/plain; charset=utf-8"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read()
        return
    folder = Path(witness)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{cp.size:012d}.checkpoint"
    tmp = dest.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(note)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
