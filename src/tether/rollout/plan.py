"""A rollout plan: the traffic steps, how long each bakes, and the guardrails that decide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tether.core.durations import MAX_SECONDS
from tether.core.errors import InvalidInputError, validation_problems
from tether.serving.routing import RoutingTable


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateGuard(_Strict):
    #: The canary's rate may exceed the champion's by at most this (absolute).
    margin: float = Field(ge=0)


class LatencyGuard(_Strict):
    #: "Slow" means slower than the champion's p99 times (1 + tolerance) in the same window.
    tolerance: float = Field(default=0.25, ge=0)
    #: The canary's share of slow requests may exceed the champion's by at most this.
    margin: float = Field(default=0.02, ge=0)
    #: Copy the champion's requests to the canary (answers discarded) so both instances run at the same rate:
    #: an instance at a 1% share idles between requests and is slower for it, whatever the version.
    mirror: bool = True
    #: An absolute ceiling beside the relative test: the canary's p99 service time must be shown under it.
    ceiling_ms: float | None = Field(default=None, gt=0)


class SuccessFloor(_Strict):
    #: Both arms' success rates (1 - the version's error rate) must be shown at least this before a step
    #: advances: a relative test between two arms that both fail says nothing ("1.0 vs 1.0, safe").
    min: float = Field(default=0.9, gt=0, le=1)


class BusinessGuard(_Strict):
    margin: float = Field(ge=0)
    #: Labelled share of predictions needed on both arms before the metric counts.
    min_coverage: float = Field(default=0.2, gt=0, le=1)


class Guardrails(_Strict):
    error_rate: RateGuard | None = RateGuard(margin=0.01)
    success_rate: SuccessFloor | None = SuccessFloor()
    schema_violation_rate: RateGuard | None = RateGuard(margin=0.01)
    latency_p99: LatencyGuard | None = LatencyGuard()
    false_positive_rate: BusinessGuard | None = None

    def active(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    def tests(self) -> int:
        """How many sequential tests can roll a step back (the latency ceiling adds one to the guardrails)."""
        return len(self.active()) + int(self.latency_p99 is not None and self.latency_p99.ceiling_ms is not None)


class Plan(_Strict):
    #: Canary traffic per step, in percent; the last must be 100.
    steps: list[float] = Field(default_factory=lambda: [1.0, 5.0, 25.0, 100.0], min_length=1)
    bake_seconds: float = Field(default=300, ge=0, le=MAX_SECONDS)
    #: Canary requests needed in a step before it may advance.
    min_samples: int = Field(default=500, ge=1)
    #: A step still undecided after this long pauses for a human.
    max_step_seconds: float = Field(default=3600, gt=0, le=MAX_SECONDS)
    #: After 100%: how long the old champion stays warm (on shadow traffic) and a breach reverts.
    watch_seconds: float = Field(default=600, ge=0, le=MAX_SECONDS)
    #: Family-wise false-alarm rate of the guardrails over the whole rollout (split evenly between them).
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    #: Shadow share (percent) kept on a rolled-back canary for diagnosis.
    diagnosis_shadow: float = Field(default=10.0, ge=0, le=100)
    #: How long that diagnostic shadow lasts; then it ends and the candidate's instance stops.
    diagnosis_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)
    #: Or fewer: the shadow ends once it has served this many copies (None: only the duration counts).
    diagnosis_copies: int | None = Field(default=None, ge=1)
    #: This many failed canary requests in a row roll back at once (Argo Rollouts' failureLimit): a broken
    #: canary is out within seconds; a healthy one at a 1% error rate does this with probability 1e-20.
    failure_limit: int | None = Field(default=10, ge=1)
    guardrails: Guardrails = Field(default_factory=Guardrails)

    @model_validator(mode="after")
    def _steps(self) -> Plan:
        if any(not 0 < s <= 100 for s in self.steps) or self.steps != sorted(set(self.steps)):
            raise ValueError("steps must be increasing percentages in (0, 100]")
        if self.steps[-1] != 100:
            raise ValueError("the last step must be 100")
        if not self.guardrails.active():
            raise ValueError("a rollout needs at least one guardrail")
        return self

    def bp(self, step_index: int) -> int:
        return round(self.steps[step_index] * 100)


#: A whole model's traffic, in basis points (routing shares are integers of 1/10,000).
FULL = 10_000


def load_plan(source: str | Path | dict[str, Any] | None) -> Plan:
    if source is None:
        return Plan()
    if isinstance(source, dict):
        data: Any = source
    else:
        try:
            data = yaml.safe_load(Path(source).read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"rollout plan not found: {source}") from None
    try:
        return Plan.model_validate(data or {})
    except ValidationError as e:
        problems = validation_problems(e, top="plan")
        raise InvalidInputError(f"invalid rollout plan: {problems}", hint="see docs/rollout.md") from None


def canary_table(model: str, champion: str, candidate: str, plan: Plan, step: int, rollout_id: int) -> RoutingTable:
    """The routing of a canary step: the rollout's own salt (a new cohort for every rollout, the same through its
    steps so cohorts nest) and, with the latency mirror on, the share of champion requests copied to the canary
    that makes both instances serve the same rate: m = (1 - 2c) / (1 - c) for a canary share c under 50%."""
    bp = plan.bp(step)
    c = bp / FULL
    g = plan.guardrails.latency_p99
    mirror = round(FULL * (1 - 2 * c) / (1 - c)) if g is not None and g.mirror and c < 0.5 else 0
    return RoutingTable(
        model, champion=champion, canary=candidate, canary_bp=bp, salt=f"{model}/rollout-{rollout_id}", mirror_bp=mirror
    )
