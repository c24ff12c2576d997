"""Sampler: the last stage of a request, which hands the interaction to the graders without ever waiting.

On **every** interaction, on the request path: the deterministic checks (``tether.graders.checks``: schema,
tool calls, refusal, guard-rails, length, completeness), microseconds each. Their schema and tool-call results
also go into the version's metric window as schema violations, so the rollout controller's
``schema_violation_rate`` guard judges a canary on 100% of its traffic.

Then, off the request path: the interaction is sampled for the model's graders with a probability that depends
on its stratum (version, arm, tenant, route, cache outcome; canaries and semantic-cache hits oversampled,
exact-cache hits undersampled) and on what is left of the day's grading budget. A sampled interaction joins a
bounded queue; when the queue is full it is shed and counted, never waited for. Every score carries the
inclusion probability it was sampled with, so rates over all traffic are unbiased (``tether.monitor.rates``).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tether.graders.checks import Checks
from tether.graders.interaction import Interaction, Score
from tether.graders.scores import Graded
from tether.llm.call import Call, Outcome
from tether.monitor.llm_config import LLMEvalConfig

#: Score rows of the checks waiting to be written (they are on every interaction): beyond this, shed.
MAX_PENDING_ROWS = 200_000
SCHEMA_METRICS = frozenset({"schema_valid", "tool_calls_valid"})


@dataclass
class Sample:
    interaction: Interaction
    inclusion: float
    stratum: str
    at: datetime
    judge: bool  # also for the judge (a random share of the sampled ones)


def interaction_of(call: Call, outcome: Outcome) -> Interaction:
    meta = call.req.metadata or {}
    return Interaction(
        trace_id=call.trace,
        messages=tuple(call.sent or call.messages),
        answer=outcome.text,
        finish_reason=outcome.finish_reason,
        tool_calls=tuple(outcome.tool_calls) if outcome.tool_calls else None,
        tools=tuple(call.tools) if call.tools else None,
        response_format=call.response_format,
        context=meta.get("context"),
        reference=meta.get("reference"),
        model=call.req.model,
        version_id=call.info.version_id,
        tenant=call.tenant,
        cache=outcome.cache,
        arm=call.arm,
        status=outcome.status,
    )


class Sampler:
    def __init__(self, config_for: Callable[[str], LLMEvalConfig], *, seed: int | None = None) -> None:
        self.config_for = config_for
        self.checks: Checks | None = None  # set once the checks grader version is registered
        self.queue: deque[Sample] = deque()
        self.pending: list[dict[str, Any]] = []  # check score rows for the writer
        self.rows_shed = 0
        self.seen: Counter[str] = Counter()
        self.sampled: Counter[str] = Counter()
        self.shed: Counter[str] = Counter()
        #: Per model, the share of the day's budget still unspent, set by the grading loop (1.0: all of it).
        self.budget_left: dict[str, float] = {}
        self.wake: Callable[[], None] = lambda: None
        self._rng = random.Random(seed)

    # -- on the request path ------------------------------------------------------------------------------
    def check(self, call: Call, outcome: Outcome) -> tuple[Interaction, list[Score]]:
        """The deterministic checks of one interaction (before it is measured: schema results count there)."""
        it = interaction_of(call, outcome)
        if self.checks is None or outcome.status == "error" or not self.config_for(it.model).enabled:
            return it, []
        g = call.info.spec.guardrails
        guardrails = None if not g.rules and g.min_chars is None and g.max_chars is None else g.model_dump(mode="json")
        return it, self.checks.one(it, guardrails)

    @staticmethod
    def schema_violation(scores: list[Score]) -> bool:
        return any(s.metric in SCHEMA_METRICS and s.value == 0.0 for s in scores)

    def offer(self, it: Interaction, checks: list[Score], at: datetime) -> None:
        """After the interaction is on the audit trail: its check rows, and maybe a sample for the graders."""
        cfg = self.config_for(it.model)
        if not cfg.enabled or it.status == "error":
            return
        stratum, p = self.inclusion(it, cfg)
        self.seen[stratum] += 1
        if checks:
            if len(self.pending) + len(checks) > MAX_PENDING_ROWS:
                self.rows_shed += len(checks)
            else:
                self.pending.extend(Graded(it, checks, at, "live", stratum, 1.0).rows())
        if self._rng.random() >= p:
            return
        if len(self.queue) >= cfg.queue_size:
            self.shed[stratum] += 1
            return
        judge = cfg.judge is not None and self._rng.random() < cfg.budget.judge_share
        self.queue.append(Sample(it, p, stratum, at, judge))
        self.sampled[stratum] += 1
        self.wake()

    def inclusion(self, it: Interaction, cfg: LLMEvalConfig) -> tuple[str, float]:
        s = cfg.sampling
        parts = {
            "version": it.version_id[:12],
            "arm": it.arm.split(":", 1)[0],
            "tenant": it.tenant,
            "route": it.model,
            "cache": it.cache,
        }
        stratum = "|".join(f"{k}={parts[k]}" for k in s.strata)
        p = s.rate
        if parts["arm"] == "canary":
            p *= s.canary_factor
        if it.cache == "semantic":
            p *= s.semantic_hit_factor
        elif it.cache == "exact":
            p *= s.exact_hit_factor
        p *= max(0.0, min(1.0, self.budget_left.get(it.model, 1.0)))
        return stratum, min(1.0, p)

    # -- for the grading loop -----------------------------------------------------------------------------
    def take(self, n: int) -> list[Sample]:
        out: list[Sample] = []
        while self.queue and len(out) < n:
            out.append(self.queue.popleft())
        return out

    def take_rows(self) -> list[dict[str, Any]]:
        rows, self.pending = self.pending, []
        return rows

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self.queue),
            "seen": dict(self.seen),
            "sampled": dict(self.sampled),
            "shed": dict(self.shed),
            "check_rows_pending": len(self.pending),
            "check_rows_shed": self.rows_shed,
            "budget_left": dict(self.budget_left),
        }
