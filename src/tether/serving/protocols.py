"""The wire formats the gateway speaks to instances: tether's own (records in, outputs out) and KServe V2."""

from __future__ import annotations

from typing import Any

import orjson

from tether.serving.runtime import Instance


def _request_for(inst: Instance, model: str, payload: bytes) -> tuple[str, bytes]:
    if inst.protocol == "kserve-v2":
        records = orjson.loads(payload)["records"]
        names = list(records[0])
        inputs = [
            {
                "name": n,
                "shape": [len(records)],
                "datatype": _v2_type(records[0][n]),
                "data": [r.get(n) for r in records],
            }
            for n in names
        ]
        return f"{inst.url}/v2/models/{inst.model_name or model}/infer", orjson.dumps({"inputs": inputs})
    return f"{inst.url}/predict", payload


def _response_from(inst: Instance, body: dict[str, Any]) -> dict[str, Any]:
    if inst.protocol == "kserve-v2":
        outputs = body["outputs"]
        n = len(outputs[0]["data"])
        return {"outputs": [{o["name"]: o["data"][i] for o in outputs} for i in range(n)]}
    return body


def _v2_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FP64"
    return "BYTES"


def service_seconds(header: str | None) -> float | None:
    """The instance's service time header, if present and a sane number (an external URL may send anything)."""
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value if 0 <= value < 86_400 else None
