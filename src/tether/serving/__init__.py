"""Serving: instances, the gateway hot path, routing, the I/O contract, metric windows and API keys."""

from tether.serving.contract import InputValidator, Violation
from tether.serving.gateway import Gateway
from tether.serving.routing import Route, RoutingTable, bucket
from tether.serving.runtime import CompositeRuntime, Instance, LocalRuntime, Runtime, UrlRuntime
from tether.serving.sketch import LatencySketch
from tether.serving.window import MetricStore, Tally

__all__ = [
    "CompositeRuntime",
    "Gateway",
    "InputValidator",
    "Instance",
    "LatencySketch",
    "LocalRuntime",
    "MetricStore",
    "Route",
    "RoutingTable",
    "Runtime",
    "Tally",
    "UrlRuntime",
    "Violation",
    "bucket",
]
