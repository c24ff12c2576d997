"""Record: the stage that settles the budget, writes the ledger row, the per-version metric window and the
audit record of an interaction (awaited before the answer leaves, or before ``[DONE]`` when streaming).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tether.audit.log import AuditRecord
from tether.llm.call import LEDGER_FIELDS, NOT_THE_VERSIONS, Call, Outcome, VersionInfo, jsonable
from tether.llm.ledger import Budgets, LedgerWriter
from tether.serving.gateway import Gateway


class Recorder:
    def __init__(self, gw: Gateway, budgets: Budgets, ledger: LedgerWriter) -> None:
        self.gw = gw
        self.budgets = budgets
        self.ledger = ledger

    def settle(
        self, reservation: Any, info: VersionInfo, outcome: Outcome, sent: list[dict[str, Any]] | None = None
    ) -> None:
        if sent is not None and not outcome.prompt_tokens and outcome.status == "ok":
            outcome.prompt_tokens = info.count(sent)  # the backend sent no usage: count with the tokenizer
        if sent is not None and not outcome.completion_tokens and outcome.text:
            outcome.completion_tokens = info.count_text(outcome.text)
        cost = info.spec.prices.cost(outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens)
        self.budgets.settle(reservation, outcome.prompt_tokens + outcome.completion_tokens, cost)

    def book(self, call: Call, outcome: Outcome, saved: tuple[int, float] = (0, 0.0)) -> dict[str, Any]:
        prices = call.info.spec.prices
        billed = outcome.cache == "none"
        row = {
            "trace_id": call.trace,
            "at": call.now,
            "tenant": call.tenant,
            "key_id": call.key_id,
            "model_name": call.req.model,
            "version_id": call.info.version_id,
            "status": outcome.status,
            "cache": outcome.cache,
            "input_tokens": outcome.prompt_tokens if billed else 0,
            "cached_tokens": outcome.cached_tokens if billed else 0,
            "output_tokens": outcome.completion_tokens if billed else 0,
            "cost": prices.cost(outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens)
            if billed
            else 0.0,
            "currency": prices.currency,
            "saved_tokens": saved[0],
            "saved_cost": saved[1],
            "trimmed_tokens": call.report.tokens_before - call.report.tokens_after,
            "latency_s": time.perf_counter() - call.started,
        }
        self.ledger.add(row)
        return row

    def measure(self, call: Call, outcome: Outcome, *, schema_violation: bool = False) -> None:
        """The per-version window the rollout controller and `tether rollout status` read. A request the model
        refused as invalid is the client's error: counted as a rejection, never in the version's window."""
        if outcome.error in NOT_THE_VERSIONS:
            self.gw.rejected[(call.req.model, outcome.error or "")] += 1
            return
        self.gw.metrics.record_request(
            call.req.model,
            call.info.version_id,
            self.gw._arm(call.info.version_id, call.arm),
            call.now,
            latency=time.perf_counter() - call.started,
            service=outcome.service,
            records=1,
            error=outcome.error,
            schema_violation=schema_violation,
        )

    def meta(self, call: Call, outcome: Outcome, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "trace_id": call.trace,
            "version": call.info.version_id,
            "cache": outcome.cache,
            "similarity": None if outcome.similarity is None else round(outcome.similarity, 4),
            "context": call.report.to_json(),
            "ledger": {k: row[k] for k in LEDGER_FIELDS},
        }

    async def audit(self, call: Call, outcome: Outcome, row: dict[str, Any]) -> None:
        sink = self.gw.audit
        if sink is None:
            return
        info = call.info
        # What arrived (after the version's template) and what the model saw (after trimming): replay reruns the
        # latter (tether audit replay).
        request = {
            "messages": call.messages,
            "sent": call.sent,
            "tools": call.tools,
            "response_format": call.response_format,
            "decoding": call.decoding,
        }
        if call.req.metadata:  # the context and reference the graders read: on the trail, so scores can be rebuilt
            request["metadata"] = call.req.metadata
        output = {"text": outcome.text, "tool_calls": outcome.tool_calls, "finish_reason": outcome.finish_reason}
        payload = {
            "input": request,
            "output": output,
            "status": outcome.status,
            "cache": outcome.cache,
            "ledger": jsonable(row),
        }
        rec = AuditRecord(
            kind="llm",
            trace_id=call.trace,
            at=call.now,
            model=call.req.model,
            version_id=info.version_id,
            code_digest=info.triad[0],
            data_digest=info.triad[1],
            weights_digest=info.triad[2],
            input_digest=sink.digest(request),
            output_digest=sink.digest(output),
            payload=sink.payload(payload),
            tenant=call.tenant,
        )
        await sink.record(rec)

    async def invalidation(self, model_versions: list[tuple[str, int]], reason: str) -> None:
        sink = self.gw.audit
        if sink is None:
            return
        now = self.gw.clock.now()
        for vid, n in model_versions:
            rec = AuditRecord(
                kind="cache",
                trace_id=f"cache:{vid[:16]}:{uuid.uuid4().hex[:8]}",
                at=now,
                version_id=vid,
                payload={"event": "invalidated", "entries": n, "reason": reason},
            )
            await sink.record(rec)
