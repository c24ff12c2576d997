"""Intake: the stage that turns an HTTP request into a ``Call`` the later stages can serve, or refuses it.

Parse (OpenAI's wire format, ``tether.llm.protocol``), route on the model's routing table (so canaries, shadows
and rollbacks apply to LLM versions as to any other), apply the version's prompt template (system prompt pinned
first, tools, response schema) and decoding defaults, trim the context to the version's budget, and reserve
the tenant's and the key's budgets. Every refusal is a 4xx in OpenAI's error shape, counted by reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tether.llm import protocol
from tether.llm.call import Call, VersionInfo, error_response
from tether.llm.flavor import messages_for
from tether.llm.ledger import BudgetExceeded, Budgets
from tether.llm.shared_budgets import BudgetUnavailable
from tether.llm.trim import TrimError, trim
from tether.serving.auth import ApiKey
from tether.serving.gateway import Gateway
from tether.serving.routing import Route


@dataclass
class Admitted:
    call: Call
    route: Route
    reservation: Any


class Intake:
    def __init__(
        self,
        gw: Gateway,
        budgets: Budgets,
        load: Callable[[str], Awaitable[VersionInfo]],
        embedder: Callable[[], Any],
        llm_models: Callable[[], set[str]],
    ) -> None:
        self.gw = gw
        self.budgets = budgets
        self.load = load
        self.embedder = embedder
        self.llm_models = llm_models

    async def admit(
        self, request: web.Request, trace: str, started: float, auth: ApiKey | None
    ) -> Admitted | web.Response:
        try:
            req = protocol.parse_chat(orjson.loads(await request.read()))
        except orjson.JSONDecodeError as e:
            return error_response(400, f"malformed JSON: {e}", trace=trace)
        except protocol.RequestError as e:
            self.gw.rejected[("llm", "bad_request")] += 1
            return error_response(e.status, e.message, param=e.param, trace=trace)
        route = self.route(req.model, req.user or trace)
        if route is None:
            self.gw.rejected[(req.model, "unknown_model")] += 1
            return error_response(
                404,
                f"unknown model {req.model!r}; deployed LLMs: {sorted(self.llm_models())}",
                param="model",
                code="model_not_found",
                trace=trace,
            )
        info = await self.load(route.version_id)
        spec = info.spec
        # Template and decoding: the version pins the system prompt, tools and schema; the request may add tools.
        d = spec.decoding
        tools = [*spec.prompt.tools, *(req.tools or [])] or None
        call = Call(
            request=request,
            req=req,
            info=info,
            arm=route.arm,
            trace=trace,
            now=self.gw.clock.now(),
            started=started,
            tenant=auth.tenant if auth is not None else request.headers.get("X-Tether-Tenant", "default"),
            key_id=auth.id if auth is not None else None,
            messages=messages_for(spec, req.messages),
            tools=tools,
            response_format=req.response_format or spec.prompt.response_format,
            decoding={
                "temperature": d.temperature if req.temperature is None else req.temperature,
                "top_p": d.top_p if req.top_p is None else req.top_p,
                "max_tokens": req.max_tokens or d.max_tokens,
                "seed": d.seed if req.seed is None else req.seed,
                "stop": req.stop or d.stop,
            },
        )
        refused = self.fit(call)
        if refused is not None:
            return refused
        reservation = self.reserve(call)
        if isinstance(reservation, web.Response):
            return reservation
        return Admitted(call, route, reservation)

    def route(self, model: str, key: str) -> Route | None:
        table = self.gw.tables.get(model)
        if table is None or model not in self.llm_models():
            return None
        route = table.route(key)
        if route.arm == "canary" and self.gw.runtime.instance(route.version_id) is None and table.champion:
            # The canary's instance is still starting (an LLM worker takes seconds to load): its share goes to the
            # champion meanwhile instead of failing; the rollout simply waits longer for its samples.
            self.gw.rejected[(model, "canary_not_ready")] += 1
            route = Route(table.champion, "champion", route.shadow_version_id)
        return route

    def fit(self, call: Call) -> web.Response | None:
        """Trim the conversation to the version's context budget (``call.sent``); a 400 if it cannot fit."""
        info, spec = call.info, call.info.spec
        pinned_extra = [call.tools, call.response_format]
        extra_tokens = info.count_text(orjson.dumps(pinned_extra).decode()) if any(pinned_extra) else 0
        embed = self.embedder().encode if spec.cache.semantic else None
        try:
            call.sent, call.report = trim(
                call.messages,
                budget=spec.context.max_input_tokens,
                keep_last=spec.context.keep_last_turns,
                block_tokens=spec.context.block_tokens,
                count=info.count,
                extra_tokens=extra_tokens,
                embed=embed,
            )
        except TrimError as e:
            self.gw.rejected[(call.req.model, "context_length")] += 1
            return error_response(
                400,
                f"{e}; shorten the conversation",
                param="messages",
                code="context_length_exceeded",
                trace=call.trace,
            )
        if spec.prompt.system is not None:  # report indices into the request's own messages
            call.report.dropped = [i - 1 for i in call.report.dropped]
        return None

    def reserve(self, call: Call) -> Any:
        """Reserve the tenant's and key's budgets for the worst case; a 429 with Retry-After when one is spent.

        The reservation must cover the real use: exact for the embedded engine (its own template and tokenizer),
        an over-estimate for a remote backend (see VersionInfo.count); the difference comes back at settlement."""
        info, spec = call.info, call.info.spec
        max_tokens: int = call.decoding["max_tokens"]
        exact = info.count_prompt(call.sent, call.tools)
        est_prompt = exact if exact is not None else call.report.tokens_after
        scopes = [f"tenant:{call.tenant}"] + ([f"key:{call.key_id}"] if call.key_id else [])
        try:
            return self.budgets.reserve(
                scopes, est_prompt + max_tokens, spec.prices.cost(est_prompt, 0, max_tokens), call.now
            )
        except BudgetUnavailable as e:
            self.gw.rejected[(call.req.model, "budget_store_unreachable")] += 1
            return error_response(503, str(e), code="budget_store_unreachable", trace=call.trace)
        except BudgetExceeded as e:
            self.gw.rejected[(call.req.model, "budget")] += 1
            return error_response(
                429,
                str(e),
                code="budget_exceeded",
                trace=call.trace,
                headers={"Retry-After": str(e.retry_after(call.now))},
                extra={
                    "budget": {
                        "scope": e.scope,
                        "name": e.budget,
                        "limit": e.limit,
                        "resets_at": e.resets.isoformat(timespec="seconds"),
                    }
                },
            )
