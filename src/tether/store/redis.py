"""The Redis connection shared state uses when scaled out (``TETHER_REDIS_URL``; extra ``redis``).

Redis from Debian (and many managed offerings) has no modules: tether keeps only plain structures there
(strings, sorted sets, Lua scripts), never a module command.
"""

from __future__ import annotations

from typing import Any

from tether.core.errors import MissingExtraError


def connect(url: str, *, timeout: float = 0.5) -> Any:
    """A client with short timeouts: a Redis that does not answer costs a request half a second, not a hang."""
    try:
        import redis
    except ImportError:  # pragma: no cover - the extra is part of dev
        raise MissingExtraError("shared state in Redis (TETHER_REDIS_URL)", "redis", "redis") from None
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
