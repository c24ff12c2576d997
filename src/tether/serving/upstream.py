"""Calls from the gateway to the instances: one pooled aiohttp client, the wire formats, service and cold-load
times read from the answer, and a pooled worker's death handled as the infrastructure's failure.

A request that cannot reach a pooled worker is sent once more, to where its version lives now (the pool marks a
dead worker down at once and the version's next-ranked worker loads it): a prediction is safe to repeat. If that
fails too, or there is nowhere else, the answer is a 503 of kind ``worker_down``, which counts against no
version (see `tether.serving.gateway.NOT_THE_VERSIONS`). An instance of its own that cannot be reached is its
version's failure (``backend_down``).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import aiohttp
import orjson

from tether.serving.protocols import _request_for, _response_from
from tether.serving.protocols import service_seconds as _seconds
from tether.serving.runtime import Runtime
from tether.serving.sketch import LatencySketch
from tether.serving.worker import SERVICE_HEADER

#: A pooled worker's answer to a request that waited for its version to load (`tether.serving.pool_worker`).
LOAD_HEADER = "X-Tether-Load-Seconds"

log = logging.getLogger("tether.gateway")


class Upstream:
    def __init__(self, runtime: Runtime, timeout: float) -> None:
        self.runtime = runtime
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        #: Cold loads seen by this gateway (a pooled version loaded for a request): count per model and seconds,
        #: apart from service time.
        self.cold_loads: Counter[str] = Counter()
        self.cold_load_seconds = LatencySketch()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One pooled connector for all instances; keep-alive connections are reused across requests.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=None),
                timeout=self.timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(
        self, version_id: str, payload: bytes, model: str
    ) -> tuple[int, Any, str | None, float | None, float]:
        """(status, the instance's ``{"outputs": [...]}`` as JSON bytes or an error message, error kind or None,
        the instance's service time in seconds if it reported one, the seconds it waited for a cold load)."""
        inst = self.runtime.instance(version_id)
        if inst is None:
            return (
                503,
                f"no running instance for version {version_id[:12]}… (starting or crashed)",
                "unavailable",
                None,
                0.0,
            )
        for attempt in (0, 1):
            try:
                url, data = _request_for(inst, model, payload)
                async with self.session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
                    raw = await resp.read()
                    service = _seconds(resp.headers.get(SERVICE_HEADER))
                    loaded = _seconds(resp.headers.get(LOAD_HEADER)) or 0.0
                    if loaded:
                        self.cold_loads[model] += 1
                        self.cold_load_seconds.add(loaded)
                    if resp.status != 200:
                        # The instance's own text (an exception message, a stack) stays in the log and on the audit
                        # trail; the client learns only that the version failed, and the trace id to ask about.
                        detail = raw[:2000].decode(errors="replace")
                        log.warning("instance %s… answered %d: %s", version_id[:12], resp.status, detail[:300])
                        return 502, detail, "backend_status", service, loaded
                    if not raw.startswith(b'{"outputs":'):
                        raw = orjson.dumps(_response_from(inst, orjson.loads(raw)))
                    return 200, raw, None, service, loaded
            except TimeoutError:
                return (
                    504,
                    f"instance {version_id[:12]}… did not answer within {self.timeout.total} s",
                    "timeout",
                    None,
                    0.0,
                )
            except aiohttp.ClientError as e:
                if not inst.pooled:
                    return (
                        502,
                        f"instance {version_id[:12]}… is unreachable: {type(e).__name__}",
                        "backend_down",
                        None,
                        0.0,
                    )
                # A pooled worker that cannot be reached went down with every version it held: the version moves
                # to another worker (a prediction is safe to send again), and the failure is the infrastructure's.
                failed = getattr(self.runtime, "failed", None)
                retry = await failed(inst) if attempt == 0 and failed is not None else None
                if retry is None or retry.url == inst.url:
                    return (
                        503,
                        f"the pooled worker serving {version_id[:12]}… went down; it is being restarted",
                        "worker_down",
                        None,
                        0.0,
                    )
                inst = retry
        raise AssertionError("unreachable")
