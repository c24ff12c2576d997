"""Delayed labels: ``POST /v1/feedback`` ties 0/1 outcomes to a prediction's trace id, for the metric windows
(precision, recall and their rollout tests). The prediction's raw answer waits in the gateway's trace memory
and is decoded only here: most predictions never get a label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from tether.serving.gateway import Gateway


async def labels(gw: Gateway, request: web.Request) -> web.Response:
    """``POST /v1/feedback``: delayed labels for a prediction's records, by its trace id."""
    if (denied := gw._deny(request, "predict")) is not None:
        return denied
    usage = 'send {"trace_id": "<X-Tether-Trace of the prediction>", "labels": [0 or 1, ...]}'
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        return error(400, f"malformed JSON: {e}; {usage}")
    if not isinstance(body, dict) or "trace_id" not in body or "labels" not in body:
        return error(400, f"missing trace_id or labels; {usage}")
    trace, given = body["trace_id"], body["labels"]
    if not isinstance(trace, str) or not 0 < len(trace) <= 64:
        return error(400, f"trace_id must be a string of 1 to 64 characters, got {type(trace).__name__}; {usage}")
    if not isinstance(given, list) or not all(
        isinstance(x, bool) or (isinstance(x, int) and x in (0, 1)) for x in given
    ):
        return error(400, f"labels must be a list of 0/1 (or true/false); {usage}")
    known = gw.traces.get(trace)
    if known is None:
        return error(404, f"unknown or expired trace id {trace!r} ({gw.traces.describe()})")
    model, version, arm, at, raw = known
    decisions = [o.get("prediction") if isinstance(o, dict) else None for o in orjson.loads(raw)["outputs"]]
    if len(given) != len(decisions):
        return error(422, f"trace {trace} has {len(decisions)} predictions; send as many labels")
    gw.metrics.record_labels(model, version, arm, at, [int(bool(d)) for d in decisions], [int(bool(x)) for x in given])
    return web.json_response({"trace_id": trace, "labelled": len(given)})


def error(status: int, message: str) -> web.Response:
    """The gateway's error shape (``{"error": message}``)."""
    return web.Response(status=status, body=orjson.dumps({"error": message}), content_type="application/json")
