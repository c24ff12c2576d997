"""The Ray Serve deployment that serves one tether version: imported only where Ray runs (extra 'ray').

Each replica opens the registry with the gateway's settings (passed in, never read from the Ray worker's own
environment), loads the version through `Registry.load`, which verifies the code, data and weights digests
as the local worker does, and answers the local worker's protocol under its route prefix: ``GET .../health``
and ``POST .../predict`` with ``{"records": [...]}`` -> ``{"outputs": [...]}`` and the service time in the
``X-Tether-Service-Seconds`` header. A replica whose version does not verify fails to start, and Serve
reports the deployment unhealthy: the gateway reports that as a crash.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
import pandas as pd
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tether.core import Settings, TetherError
from tether.registry import Registry
from tether.serving.worker import SERVICE_HEADER


@serve.deployment
class VersionReplica:
    def __init__(self, version_id: str, settings_env: dict[str, str]) -> None:
        os.environ.update(settings_env)
        settings = Settings()
        registry = Registry.open(settings)
        try:
            self.model = registry.load(version_id)  # digests verified here, before the replica serves
        finally:
            registry.close()
        self.version_id = version_id

    async def __call__(self, request: Request) -> Any:
        if request.method == "GET" and request.url.path.endswith("/health"):
            return JSONResponse({"status": "ok", "version": self.version_id, "pid": os.getpid()})
        if request.method != "POST" or not request.url.path.endswith("/predict"):
            return JSONResponse({"error": "not found: GET .../health or POST .../predict"}, status_code=404)
        raw = await request.body()
        started = time.perf_counter()
        try:
            records = orjson.loads(raw)["records"]
            out = self.model.predict(pd.DataFrame.from_records(records))
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            return JSONResponse({"error": f"bad request: {e}"}, status_code=400)
        except TetherError as e:
            return JSONResponse({"error": str(e)}, status_code=e.http_status)
        except Exception as e:  # a model failure is the instance's 500, reported to the gateway
            return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)
        body = b'{"outputs":' + out.to_json(orient="records").encode() + b"}"
        service = f"{time.perf_counter() - started:.6f}"
        return Response(body, media_type="application/json", headers={SERVICE_HEADER: service})
