"""Ed25519 keys and signatures (RFC 8032), used for weights manifests and, later, audit checkpoints.

Keys are stored as raw 32-byte seeds in PEM-free files: ``<path>`` (private, mode 0600) and
``<path>.pub`` (public, hex). Signatures and public keys travel as hex strings.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tether.core.errors import IntegrityError, InvalidInputError, NotFoundError


class SigningKey:
    """An Ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            seed = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"no signing key at {path}", hint="run 'tether init' to create one, or set TETHER_SIGNING_KEY"
            ) from None
        if len(seed) != 32:
            raise InvalidInputError(
                f"signing key {path} is {len(seed)} bytes, expected a 32-byte Ed25519 seed",
                hint="restore the key file or create a new one with 'tether init --new-key'",
            )
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
        os.replace(tmp, path)
        path.with_name(path.name + ".pub").write_text(self.public_key_hex + "\n")

    @property
    def public_key_hex(self) -> str:
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return raw.hex()

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).hex()


def verify_signature(public_key_hex: str, message: bytes, signature_hex: str, *, what: str) -> None:
    """Raise `IntegrityError` unless ``signature_hex`` is a valid Ed25519 signature of ``message``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        raise IntegrityError(
            f"signature check failed for {what}",
            expected=f"a valid Ed25519 signature by {public_key_hex[:16]}…",
            actual=signature_hex[:16] + "…",
            hint="the signed content or the signature was changed; do not trust this artifact",
        ) from None
