"""What the audit trail keeps of inputs and outputs: their digests (keyed with the store's audit secret) and
the payload policy (full, hashed, redact)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any

import orjson

from tether.core import InvalidInputError, Settings


def digest_of(value: Any, secret: bytes | None = None) -> str:
    """The digest of a JSON value's canonical bytes (sorted keys): an input's, an output's, a redacted field's.

    With the store's audit secret it is HMAC-SHA256, so a low-entropy value (an e-mail address, a card number)
    cannot be found by hashing guesses; whoever checks a digest against a value needs the secret
    (`load_secret`). Without one, plain SHA-256 (decisions on the trail, which hold nothing personal)."""
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if secret is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def load_secret(settings: Settings) -> bytes:
    """The store's audit secret (32 random bytes beside the signing key), created on first use."""
    path = settings.resolved_signing_key.parent / "audit.secret"
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # first writer wins; a racing process reads the winner's secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        secret = path.read_bytes()
    if len(secret) != 32:
        raise InvalidInputError(f"the audit secret {path} is {len(secret)} bytes, expected 32", hint="restore it")
    return secret


def apply_policy(
    payload: dict[str, Any], policy: str, redact: tuple[str, ...] = (), secret: bytes | None = None
) -> dict[str, Any] | None:
    """``full`` keeps the payload, ``hashed`` keeps none of it (the digests stay), ``redact`` replaces the named
    fields of each record by their (keyed) digest."""
    if policy == "full":
        return payload
    if policy == "hashed":
        return None
    if policy == "redact":

        def scrub(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: (f"redacted:{digest_of(x, secret)[:16]}" if k in redact else scrub(x)) for k, x in v.items()}
            if isinstance(v, list):
                return [scrub(x) for x in v]
            return v

        out: dict[str, Any] = scrub(payload)
        return out
    raise InvalidInputError(f"unknown payload policy {policy!r}", hint="use full, hashed or redact")
