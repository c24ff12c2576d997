"""What the drift watch found at each check, kept in memory for the dashboard: per version and feature (whole
population), each test's effect against its minimum shift (the alarm line) and its family-adjusted p-value.

Bounded (the newest ``keep`` checks per model); a restarted server starts a new history, the anomalies it
recorded stay in the database.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import datetime
from typing import Any

KEEP = 360


class CheckHistory:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._by_model: dict[str, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def record(self, model: str, at: datetime, versions: list[Any]) -> None:
        points = []
        for vs in versions:
            for fs in vs.features:
                if fs.segment:
                    continue
                for t in fs.tests:
                    effect = t.finding.effect
                    points.append(
                        {
                            "version": vs.version_id,
                            "feature": fs.feature,
                            "test": t.finding.test,
                            "effect": effect if isinstance(effect, float | int) and math.isfinite(effect) else None,
                            "min_shift": t.min_shift,
                            "adjusted_p": t.adjusted_p,
                            "alarm": t.alarm,
                        }
                    )
        with self._lock:
            self._by_model.setdefault(model, deque(maxlen=self.keep)).append({"t": at.timestamp(), "points": points})

    def series(self, model: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``"version feature"`` -> test -> [{t, effect, min_shift, adjusted_p, alarm}], oldest first."""
        with self._lock:
            checks = list(self._by_model.get(model, ()))
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for check in checks:
            for p in check["points"]:
                kept = {k: p[k] for k in ("effect", "min_shift", "adjusted_p", "alarm")}
                key = f"{p['version'][:12]} {p['feature']}"
                out.setdefault(key, {}).setdefault(p["test"], []).append({"t": check["t"], **kept})
        return out
