"""Serving: instances, the gateway hot path, routing, the I/O contract, metric windows and API keys.

The names below load on first use (PEP 562): a model worker imports ``tether.serving.worker`` or
``tether.serving.pool_worker`` without the gateway, the drift watch and SciPy behind it (a worker that imported
them all took 260 MiB and 4.6 s before its model loaded).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.serving.contract import InputValidator, Violation
    from tether.serving.gateway import Gateway
    from tether.serving.pool import PoolRuntime
    from tether.serving.routing import Route, RoutingTable, bucket
    from tether.serving.runtime import CompositeRuntime, Instance, LocalRuntime, Runtime, UrlRuntime
    from tether.serving.sketch import LatencySketch
    from tether.serving.window import MetricStore, Tally

_WHERE = {
    "InputValidator": "contract",
    "Violation": "contract",
    "Gateway": "gateway",
    "PoolRuntime": "pool",
    "Route": "routing",
    "RoutingTable": "routing",
    "bucket": "routing",
    "CompositeRuntime": "runtime",
    "Instance": "runtime",
    "LocalRuntime": "runtime",
    "Runtime": "runtime",
    "UrlRuntime": "runtime",
    "LatencySketch": "sketch",
    "MetricStore": "window",
    "Tally": "window",
}

__all__ = [
    "CompositeRuntime",
    "Gateway",
    "InputValidator",
    "Instance",
    "LatencySketch",
    "LocalRuntime",
    "MetricStore",
    "PoolRuntime",
    "Route",
    "RoutingTable",
    "Runtime",
    "Tally",
    "UrlRuntime",
    "Violation",
    "bucket",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tether.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tether.serving.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
