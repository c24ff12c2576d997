"""Dashboard sessions: sign in with an API key, get a signed cookie; forms carry a CSRF token.

The cookie (HttpOnly, SameSite=Strict, Secure when served over https) holds the key's id, the time of sign-in
and a random session token, signed with a secret kept under the store root (created 0600 on first use). It
never holds the key itself. Every request re-reads the key by id, so a revoked key ends its sessions within the
key ring's refresh. Each form carries the HMAC of the session token as its CSRF token; a POST without the
right one is refused, whatever the cookie says.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from tether.api.access import Caller, check

if TYPE_CHECKING:
    from tether.api.server import Server

COOKIE = "tether_session"
MAX_AGE = 12 * 3600


class SignIn(Exception):
    """The page needs a signed-in caller (answered with a redirect to the sign-in page)."""


class Sessions:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.secret = _secret(server.settings.home / "ui-secret")
        self.signer = URLSafeTimedSerializer(self.secret, salt="tether-session")

    @property
    def open(self) -> bool:
        """Authentication off: everyone acts as the settings' actor, no sign-in."""
        return self.server.keys is None

    def sign_in(self, response: Response, key: str, *, secure: bool) -> Caller:
        """Check ``key`` (any role that may read) and set the session cookie; raises `Refused` otherwise."""
        caller = check(self.server, f"Bearer {key.strip()}", "read")
        token = self.signer.dumps({"k": caller.key_id, "t": secrets.token_urlsafe(16)})
        response.set_cookie(COOKIE, token, max_age=MAX_AGE, httponly=True, samesite="strict", secure=secure, path="/")
        return caller

    def caller(self, request: Request) -> Caller:
        """The signed-in caller, or `SignIn`."""
        if self.open:
            return Caller(self.server.settings.actor, "admin", "open")
        data = self._data(request)
        keys = self.server.keys
        key = keys.active(str(data.get("k"))) if keys is not None and data else None
        if key is None:
            raise SignIn()
        return Caller(key.name, key.role, "session", key.id, key.scope)

    def csrf(self, request: Request) -> str:
        """The token forms must send back (bound to this session)."""
        data = self._data(request)
        basis = str(data.get("t")) if data else "open"
        return hmac.new(self.secret, basis.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, request: Request, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf(request), str(sent))

    def _data(self, request: Request) -> dict[str, object] | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self.signer.loads(raw, max_age=MAX_AGE)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None


def _secret(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value
