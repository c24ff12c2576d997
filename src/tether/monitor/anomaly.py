"""A drift anomaly as recorded: what moved, by how much, how sure, and when it was closed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class Anomaly:
    id: int
    model: str
    version_id: str
    feature: str
    segment: str
    test: str
    statistic: float
    p_value: float | None
    effect: float
    min_shift: float
    baseline_value: float | None
    live_value: float | None
    live_rows: int
    priority: str
    detected_at: datetime
    evidence: dict[str, Any]
    resolved_at: datetime | None = None

    def describe(self) -> str:
        where = f" [{self.segment}]" if self.segment else ""
        values = ""
        if self.baseline_value is not None and self.live_value is not None:
            values = f", baseline {self.baseline_value:.4g} -> live {self.live_value:.4g}"
        p = f", Holm-adjusted p={self.evidence.get('adjusted_p', self.p_value):.2g}" if self.p_value is not None else ""
        return (
            f"{self.priority} priority: {self.feature}{where} {self.test} effect {self.effect:.3g} "
            f"(minimum shift {self.min_shift:g}){values}{p}, {self.live_rows} live rows"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version_id,
            "feature": self.feature,
            "segment": self.segment,
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "effect": self.effect,
            "min_shift": self.min_shift,
            "baseline_value": self.baseline_value,
            "live_value": self.live_value,
            "live_rows": self.live_rows,
            "priority": self.priority,
            "detected_at": self.detected_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "description": self.describe(),
        }
