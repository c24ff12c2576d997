"""Webhook notifications of anomalies: POSTed as JSON, retried with exponential backoff, never blocking."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson

log = logging.getLogger("tether.monitor")


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    *,
    attempts: int = 5,
    first_delay: float = 0.5,
    timeout: float = 5.0,
) -> bool:
    """True once the receiver answers 2xx; False (logged) after ``attempts`` tries. 4xx other than 429 stop early."""
    delay = first_delay
    body = orjson.dumps(payload)
    for attempt in range(1, attempts + 1):
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                if 200 <= resp.status < 300:
                    return True
                if 400 <= resp.status < 500 and resp.status != 429:
                    log.error("webhook %s refused the notification: HTTP %s", url, resp.status)
                    return False
                why = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            why = type(e).__name__
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    log.error("webhook %s unreachable after %d attempts (%s)", url, attempts, why)
    return False
