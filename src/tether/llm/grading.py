"""The grading loop: the sampled interactions of `tether serve`, scored by each model's graders, off the
request path.

It takes batches from the sampler's bounded queue, runs the embedded grader and heads in a worker thread (one
batch through MiniLM at a time), asks the judge for the share marked for it, and writes every score as an
insert-only row (``tether.graders.scores``), grader errors included as errors. It keeps each model's daily
budget (judge tokens, grader seconds): spending is paced over the UTC day, and when a model is ahead of its
pace the sampler's probabilities drop (the inclusion each score records drops with them, so rates stay
unbiased); a judge over its token budget is skipped and the skip counted.

The built-in graders ``tether-checks`` and ``tether-minilm`` are registered on first use, and registered again
(a new version) when this tether release's grader code differs: the anchor check then re-scores the anchor set
with the new version (``tether.monitor.llm_watch``), so a change of judge is seen as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC
from typing import Any

import aiohttp

from tether.core.clock import Clock
from tether.core.errors import TetherError
from tether.graders.interaction import Score
from tether.graders.registry import BUILT_IN, Graders, GraderVersion, built_in
from tether.graders.scores import Graded, prompt_row, write, write_prompts
from tether.llm.sampler import Sample, Sampler
from tether.monitor.llm_config import DEFAULT_CHECKS, LLMEvalConfig
from tether.store.store import Store

log = logging.getLogger("tether.llm.grading")

BATCH = 32
MAX_PENDING_PROMPTS = 10_000
#: Spending may run this share of the day's budget ahead of an even pace (bursts at the start of a day).
BURST = 0.05


class GradingLoop:
    def __init__(
        self,
        store: Store,
        sampler: Sampler,
        config_for: Callable[[str], LLMEvalConfig],
        clock: Clock,
        *,
        embedder: Callable[[], Any],
        flush_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.graders = Graders(store)
        self.sampler = sampler
        self.config_for = config_for
        self.clock = clock
        self.embedder = embedder
        self.flush_seconds = flush_seconds
        self._loaded: dict[str, tuple[GraderVersion, Any]] = {}
        self.spent: dict[tuple[str, str], defaultdict[str, float]] = {}
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self._prompts_pending: list[dict[str, Any]] = []  # sampled prompts a failed write left for the next step

    def start(self) -> None:
        gv = built_in(self.graders, DEFAULT_CHECKS)
        self.sampler.checks = self.graders.load(gv)
        self.sampler.wake = self._wake.set

    def grader(self, ref: str) -> tuple[GraderVersion, Any]:
        found = self._loaded.get(ref)
        if found is None:
            gv = built_in(self.graders, ref) if ref in BUILT_IN else self.graders.get(ref)
            found = self._loaded[ref] = (gv, self.graders.load(gv, embedder=self.embedder()))
        return found

    # -- the loop -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        self.session = aiohttp.ClientSession()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            try:
                await self.step()
            except Exception as e:  # the loop must outlive any one batch
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("grading step failed")

    async def step(self) -> int:
        """Grade one batch and write what is pending; returns the interactions graded."""
        batch = self.sampler.take(BATCH)
        rows = self.sampler.take_rows()
        by_model: dict[str, list[Sample]] = {}
        for s in batch:
            by_model.setdefault(s.interaction.model, []).append(s)
        for model, samples in by_model.items():
            rows.extend(await self._grade(model, samples))
        prompts = self._prompts_pending + [
            prompt_row(s.interaction, s.at, s.inclusion) for s in batch if s.interaction.prompt
        ]
        self._prompts_pending = []
        try:
            if rows:
                self.counts["rows"] += await asyncio.to_thread(write, self.store.db, rows)
            if prompts:
                self.counts["prompts"] += await asyncio.to_thread(write_prompts, self.store.db, prompts)
        except Exception:
            # The store is unreachable: keep the rows for the next step (writes are idempotent per row), up to
            # the sampler's bound; beyond it they are shed and counted, never silently dropped.
            self._keep(rows, prompts)
            raise
        self.counts["graded"] += len(batch)  # counted once its scores and prompt are on the store
        for model in by_model:
            self.sampler.budget_left[model] = self._pace(model)
        return len(batch)

    def _keep(self, rows: list[dict[str, Any]], prompts: list[dict[str, Any]]) -> None:
        from tether.llm.sampler import MAX_PENDING_ROWS

        room = MAX_PENDING_ROWS - len(self.sampler.pending)
        self.sampler.pending[:0] = rows[: max(0, room)]
        self.sampler.rows_shed += max(0, len(rows) - max(0, room))
        self._prompts_pending = (self._prompts_pending + prompts)[-MAX_PENDING_PROMPTS:]

    async def close(self) -> None:
        rows = self.sampler.take_rows()
        if rows:
            await asyncio.to_thread(write, self.store.db, rows)
        if self.session is not None:
            await self.session.close()

    async def _grade(self, model: str, samples: list[Sample]) -> list[dict[str, Any]]:
        cfg = self.config_for(model)
        day = self._day()
        spent = self.spent.setdefault((model, day), defaultdict(float))
        scored: dict[str, list[Score]] = {s.interaction.trace_id: [] for s in samples}
        items = [s.interaction for s in samples]
        for ref in cfg.graders:
            try:
                gv, grader = await asyncio.to_thread(self.grader, ref)
            except Exception as e:
                self._error(f"grader {ref!r} cannot be loaded: {e}")
                continue
            if gv.kind == "judge":
                continue  # the judge is cfg.judge, for its share only
            started = time.perf_counter()
            try:
                results = await asyncio.to_thread(grader.grade, items)
            except Exception as e:  # a grader that fails is an error on every interaction, never a score
                results = [[Score(gv.id, m, None, error=f"{type(e).__name__}: {e}") for m in grader.metrics()]] * len(
                    items
                )
                self._error(f"grader {gv.ref} failed: {e}")
            spent["grader_seconds"] += time.perf_counter() - started
            for it, rs in zip(items, results, strict=True):
                scored[it.trace_id].extend(rs)
        judged: dict[str, list[Score]] = {s.interaction.trace_id: [] for s in samples}
        if cfg.judge is not None:
            await self._judge(cfg, spent, [s for s in samples if s.judge], judged)
        out: list[dict[str, Any]] = []
        for s in samples:
            t = s.interaction.trace_id
            out.extend(Graded(s.interaction, scored[t], s.at, "live", s.stratum, s.inclusion).rows())
            # The judge's rows carry the judge's own inclusion: sampled, then marked for the judge.
            share = s.inclusion * cfg.budget.judge_share
            out.extend(Graded(s.interaction, judged[t], s.at, "live", s.stratum, share).rows())
        return out

    async def _judge(
        self, cfg: LLMEvalConfig, spent: defaultdict[str, float], samples: list[Sample], scored: dict[str, list[Score]]
    ) -> None:
        assert cfg.judge is not None
        try:
            gv, judge = await asyncio.to_thread(self.grader, cfg.judge)
            if gv.kind != "judge":
                raise TetherError(f"{gv.ref} is a {gv.kind} grader, not a judge")
        except Exception as e:
            self._error(f"judge {cfg.judge!r} cannot be loaded: {e}")
            return
        assert self.session is not None
        for s in samples:
            if spent["judge_tokens"] >= cfg.budget.judge_tokens_per_day:
                self.counts["judge_skipped_budget"] += 1
                continue
            before = judge.usage.tokens
            score = await judge.grade_one(self.session, s.interaction)
            spent["judge_tokens"] += judge.usage.tokens - before
            if score.error:
                self.counts["judge_errors"] += 1
            scored[s.interaction.trace_id].append(score)

    def _pace(self, model: str) -> float:
        cfg = self.config_for(model)
        limit = cfg.budget.grader_seconds_per_day
        if limit <= 0:
            return 0.0
        now = self.clock.now().astimezone(UTC)
        elapsed = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 86_400
        spent = self.spent.get((model, self._day()), defaultdict(float))["grader_seconds"]
        allowed = limit * min(1.0, elapsed + BURST)
        return 1.0 if spent < allowed else (0.1 if spent < limit else 0.0)

    def _day(self) -> str:
        return self.clock.now().astimezone(UTC).date().isoformat()

    def _error(self, message: str) -> None:
        self.counts["errors"] += 1
        self.last_error = message
        log.warning("%s", message)

    def stats(self) -> dict[str, Any]:
        return {
            **self.sampler.stats(),
            "graded": self.counts["graded"],
            "rows_written": self.counts["rows"],
            "judge_errors": self.counts["judge_errors"],
            "judge_skipped_budget": self.counts["judge_skipped_budget"],
            "errors": self.counts["errors"],
            "last_error": self.last_error,
            "spent": {f"{m}/{d}": dict(c) for (m, d), c in self.spent.items()},
        }
