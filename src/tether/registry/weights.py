"""The weights leg of the triad: a file or folder, its manifest and root digest, an optional Ed25519 signature.

The signature, when present, is over the canonical manifest bytes, so it covers every file's path, size and
digest at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.core.hashing import Manifest
from tether.core.signing import verify_signature
from tether.core.types import Digest


@dataclass(frozen=True)
class WeightsArtifact:
    digest: Digest
    size_bytes: int
    file_count: int
    signature: str | None = None
    public_key: str | None = None

    @property
    def single_file(self) -> bool:
        return self.file_count == 1

    def verify_signature(self, manifest: Manifest) -> None:
        if self.signature and self.public_key:
            verify_signature(
                self.public_key,
                manifest.canonical_bytes(),
                self.signature,
                what=f"weights {self.digest[:12]}…",
            )
