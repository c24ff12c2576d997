"""``GET /metrics``: the gateway's metric windows and rejections in Prometheus' text exposition format.

Counters since the process started (the windows from the epoch), latency and service-time summaries at p50,
p90 and p99, per model, version (first 12 characters) and arm. Written by hand: these few lines do not need a
client library in the data plane's dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from tether.serving.window import MetricStore


def exposition(metrics: MetricStore, rejected: Mapping[tuple[str, str], int], epoch: datetime) -> list[str]:
    lines = [
        "# TYPE tether_requests_total counter",
        "# TYPE tether_errors_total counter",
        "# TYPE tether_schema_violations_total counter",
        "# TYPE tether_latency_seconds summary",
        "# TYPE tether_service_seconds summary",
        "# TYPE tether_rejected_total counter",
    ]
    for model, version, arm in sorted(metrics.keys()):
        t = metrics.tally(model, version, arm, epoch)
        labels = f'model="{model}",version="{version[:12]}",arm="{arm}"'
        lines.append(f"tether_requests_total{{{labels}}} {t.requests}")
        lines.append(f"tether_schema_violations_total{{{labels}}} {t.schema_violations}")
        for kind, n in sorted(t.errors.items()):
            lines.append(f'tether_errors_total{{{labels},kind="{kind}"}} {n}')
        if t.latency.count:
            for q in (0.5, 0.9, 0.99):
                lines.append(f'tether_latency_seconds{{{labels},quantile="{q}"}} {t.latency.quantile(q):.6f}')
        if t.service.count:
            for q in (0.5, 0.9, 0.99):
                lines.append(f'tether_service_seconds{{{labels},quantile="{q}"}} {t.service.quantile(q):.6f}')
    for (model, reason), n in sorted(rejected.items()):
        lines.append(f'tether_rejected_total{{model="{model}",reason="{reason}"}} {n}')
    return lines
