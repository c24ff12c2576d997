"""The OpenAI-compatible LLM routes of `tether serve`.

    GET  /v1/models              the deployed LLMs (every routing table whose champion is an llm version)
    POST /v1/chat/completions    plain and SSE streaming
    GET  /v1/llm/stats           caches, calibration, prefix routing, budgets (role read)

One request: authenticate (API key -> tenant), validate, route on the model's routing table (so canaries,
shadows and rollbacks apply to LLM versions as to any other), apply the version's prompt template (system
prompt pinned first, tools, response schema) and decoding defaults, trim the context to the version's budget,
reserve the budget, look up the exact cache, then the semantic cache, else dispatch to a backend replica chosen
by prefix affinity; then settle the budget, write the ledger row, the audit record (awaited before the answer,
or before ``[DONE]`` when streaming) and the per-version metric window the rollout controller reads.

Errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``. A backend that breaks a stream
half-way gets the stream closed with an error event (never a silent truncation), and the partial answer is
recorded in the ledger and the audit trail with status ``partial``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from tether.audit.log import AuditRecord
from tether.llm import protocol
from tether.llm.cache import ANSWER_AGREEMENT, Cached, Calibrator, ExactCache, SemanticCache, canonical_key, short_hash
from tether.llm.flavor import messages_for
from tether.llm.ledger import BudgetExceeded, Budgets, LedgerWriter, read_limits, seed_from_ledger
from tether.llm.spec import LLMSpec
from tether.llm.trim import TrimError, TrimReport, trim
from tether.serving.auth import ApiKey
from tether.serving.gateway import Gateway
from tether.serving.protocols import service_seconds as _seconds
from tether.serving.routing import Route
from tether.serving.worker import SERVICE_HEADER

log = logging.getLogger("tether.llm")

TOKENIZER_FILES = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "chat_template", "config")


class Upstream(Exception):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


#: Upstream statuses that mean "this request is invalid for this model" (a prompt plus max_tokens beyond the
#: context, a bad parameter): the client's error, answered as such and never counted against the version.
CLIENT_STATUSES = frozenset({400, 413, 422})
#: Error kinds that are not the version's failures (see docs/operations.md, "what counts against a version").
NOT_THE_VERSIONS = frozenset({"client_error"})


def upstream_error(url: str, status: int, raw: bytes) -> Upstream:
    """The error for a backend's non-200 answer: a 4xx for a request the model refused as invalid (its own
    message passed on), a 502 for the backend's failure (its detail kept in the log, not sent to the client)."""
    if status in CLIENT_STATUSES:
        try:
            message = str(orjson.loads(raw)["error"]["message"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = raw[:300].decode(errors="replace")
        return Upstream(400 if status != 413 else 413, f"the model refused the request: {message}", "client_error")
    log.warning("backend %s answered %d: %s", url, status, raw[:300].decode(errors="replace"))
    return Upstream(502, f"the backend answered {status}; the detail is in the gateway's log", "backend_status")


@dataclass
class VersionInfo:
    version_id: str
    name: str
    spec: LLMSpec
    triad: tuple[str, str, str]
    tokenizer: Any = None  # a Hugging Face tokenizer (local backends), else None: estimated from UTF-8 bytes
    calibrator: Calibrator = field(init=False)
    system_hash: str = ""

    def __post_init__(self) -> None:
        c = self.spec.cache
        self.calibrator = Calibrator(c.semantic_threshold, c.false_hit_budget, floor=c.semantic_min_threshold)
        self.system_hash = short_hash(self.spec.prompt.system)

    def count(self, messages: list[dict[str, Any]]) -> int:
        if self.tokenizer is not None:
            if self.tokenizer.chat_template:
                text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
            else:
                text = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in messages)
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        # No tokenizer: about 4 UTF-8 bytes per token in English BPE vocabularies; 3 over-counts on purpose so
        # that budgets and trimming err on the safe side. Reservations are settled with the backend's counts.
        size = sum(len((m.get("content") or "").encode()) + 8 for m in messages)
        return -(-size // 3)

    def count_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int | None:
        """The exact prompt tokens the embedded engine will see (its chat template, generation prompt included);
        None without a tokenizer."""
        if self.tokenizer is None:
            return None
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(
                messages, tools=tools or None, tokenize=False, add_generation_prompt=True
            )
        else:
            text = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in messages) + "assistant: "
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_text(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return -(-len(text.encode()) // 3)


class ReplicaPicker:
    """Prefix affinity over a version's replicas: rendezvous hashing of the static prefix, so every request with
    the same system prompt and tools lands where that prefix is already cached; a replica busier than the least
    busy one by more than ``slack`` requests in flight is passed over (the load-imbalance fallback)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.affine = self.fallback = 0

    def pick(self, urls: list[str], prefix_hash: str, slack: int) -> str:
        if len(urls) == 1:
            return urls[0]
        ranked = sorted(urls, key=lambda u: hashlib.sha256(f"{prefix_hash}|{u}".encode()).digest(), reverse=True)
        least = min(self.in_flight.get(u, 0) for u in urls)
        first = ranked[0]
        if self.in_flight.get(first, 0) <= least + slack:
            self.affine += 1
            return first
        self.fallback += 1
        return min(ranked, key=lambda u: self.in_flight.get(u, 0))


@dataclass
class Outcome:
    text: str = ""
    finish_reason: str = "stop"
    tool_calls: list[dict[str, Any]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    status: str = "ok"  # ok | partial | error
    cache: str = "none"  # none | exact | semantic
    similarity: float | None = None
    service: float | None = None
    error: str | None = None


LEDGER_FIELDS = (
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost",
    "currency",
    "saved_tokens",
    "saved_cost",
    "trimmed_tokens",
)


@dataclass
class Call:
    """One chat request on its way through the gateway: who asked, what was sent, where it was routed."""

    request: web.Request
    req: protocol.ChatRequest
    info: VersionInfo
    arm: str
    trace: str
    now: datetime
    started: float
    tenant: str
    key_id: str | None
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    response_format: dict[str, Any] | None
    decoding: dict[str, Any]
    report: TrimReport = field(default_factory=lambda: TrimReport(0, 0, 0, 0, 0))
    sent: list[dict[str, Any]] = field(default_factory=list)  # the messages after trimming: what the model saw

    @property
    def cid(self) -> str:
        return f"chatcmpl-{self.trace}"

    @property
    def created(self) -> int:
        return int(self.now.timestamp())


@dataclass
class CacheLookup:
    cacheable: bool = False
    exact_key: str = ""
    hit: Cached | None = None
    partition: tuple[str, ...] = ()
    query: str = ""
    vector: Any = None
    near: tuple[Cached, float] | None = None  # a below-threshold neighbour, for a calibration sample


class LLMGateway:
    def __init__(self, gateway: Gateway, *, ledger_flush_seconds: float = 0.5) -> None:
        self.gw = gateway
        self.registry = gateway.registry
        self.db = gateway.registry.store.db
        self.versions: dict[str, VersionInfo] = {}
        self.exact = ExactCache()
        self.semantic: SemanticCache | None = None
        self._embedder: Any = None
        self.budgets = Budgets()
        self.ledger = LedgerWriter(self.db)
        self.picker = ReplicaPicker()
        self.flush_seconds = ledger_flush_seconds
        self.background: set[asyncio.Task[Any]] = set()
        self.calibration_samples = 0
        self.llm_models: set[str] = set()
        self._served_versions: set[str] = set()
        self._specs: dict[str, tuple[LLMSpec | None, str]] = {}
        self._loading = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix="tether-llm-gw-"))
        app = gateway.app
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat, expect_handler=gateway.expect)
        app.router.add_get("/v1/llm/stats", self.stats)

    # -- state ----------------------------------------------------------------------------------------------
    def refresh(self) -> list[tuple[str, int]]:
        """After the routing tables were re-read: note the LLM models, reload budgets, and invalidate the cache
        entries of versions no table serves any more. Returns (version, entries dropped) for each."""
        models = set()
        served: set[str] = set()
        for name, table in self.gw.tables.items():
            vids = [v for v in (table.champion, table.canary, table.shadow) if v]
            if vids and self._is_llm(vids[0]):
                models.add(name)
                served.update(vids)
        self.llm_models = models
        self.gw.chat_only = models
        self.budgets.set_limits(read_limits(self.db))
        dropped = []
        for vid in self._served_versions - served:
            n = self.exact.invalidate(vid) + (self.semantic.invalidate(vid) if self.semantic is not None else 0)
            dropped.append((vid, n))
        self._served_versions = served
        return dropped

    def remote_endpoints(self) -> dict[str, tuple[str, str, str]]:
        """Served LLM versions whose backend is remote: the runtime starts no process for them."""
        out = {}
        for vid in self._served_versions:
            spec, name = self._spec_of(vid)
            b = spec.backend if spec is not None else None
            if b is not None and b.kind == "openai":
                out[vid] = (b.endpoints[0], "openai", b.model or name)
        return out

    def _is_llm(self, version_id: str) -> bool:
        return self._spec_of(version_id)[0] is not None

    def _spec_of(self, version_id: str) -> tuple[LLMSpec | None, str]:
        """A version's LLM spec (None for other flavors), read once: the refresh loop asks every half second, on
        the event loop, so this must not load tokenizers (`version` does that, off the loop)."""
        found = self._specs.get(version_id)
        if found is None:
            mv = self.registry.get(version_id)
            spec = LLMSpec.parse(mv.flavor_config["spec"]) if mv.flavor == "llm" else None
            found = self._specs[version_id] = (spec, mv.name)
        return found

    def start(self) -> None:
        seed_from_ledger(self.db, self.budgets, self.gw.clock.now())
        self.refresh()

    def version(self, version_id: str) -> VersionInfo:
        """A served version's spec and tokenizer, loaded once however many first requests arrive together."""
        info = self.versions.get(version_id)
        if info is not None:
            return info
        with self._loading:
            info = self.versions.get(version_id)
            if info is not None:
                return info
            mv = self.registry.get(version_id)
            spec = LLMSpec.parse(mv.flavor_config["spec"])
            tokenizer = None
            if spec.backend.kind == "local":
                from transformers import AutoTokenizer

                dest = self._scratch / mv.weights.digest
                if not dest.exists():  # verified files into a fresh folder, renamed whole: never half there
                    part = self._scratch / f"{mv.weights.digest}.part"
                    shutil.rmtree(part, ignore_errors=True)
                    self.registry.materialize_weights(mv, part, only=lambda p: Path(p).name.startswith(TOKENIZER_FILES))
                    part.rename(dest)
                tokenizer = AutoTokenizer.from_pretrained(dest)
            info = VersionInfo(
                version_id, mv.name, spec, (mv.code.digest, mv.data.digest, mv.weights.digest), tokenizer
            )
            self.versions[version_id] = info
            return info

    def embedder(self) -> Any:
        if self._embedder is None:
            from tether.llm.embed import shared

            self._embedder = shared()
            self.semantic = SemanticCache()
        return self._embedder

    def backend_urls(self, info: VersionInfo) -> list[str]:
        if info.spec.backend.kind == "openai":
            return [u.rstrip("/") for u in info.spec.backend.endpoints]
        inst = self.gw.runtime.instance(info.version_id)
        if inst is None:
            raise Upstream(
                503, f"no running instance for version {info.version_id[:12]}… (starting or crashed)", "unavailable"
            )
        return [inst.url + "/v1"]

    async def run(self) -> None:
        """Flush the ledger in batches."""
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await asyncio.to_thread(self.ledger.flush)
            except Exception:
                log.exception("ledger flush failed (kept for the next one)")

    async def close(self) -> None:
        for t in list(self.background):
            t.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await asyncio.to_thread(self.ledger.flush)
        shutil.rmtree(self._scratch, ignore_errors=True)  # the tokenizer files fetched for local versions

    # -- routes ---------------------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None and not isinstance(denied, ApiKey):
            return denied
        data = []
        for name in sorted(self.llm_models):
            t = self.gw.tables[name]
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "owned_by": "tether",
                    "created": 0,
                    "version": t.champion,
                    "canary": t.canary,
                }
            )
        return web.json_response({"object": "list", "data": data})

    async def stats(self, request: web.Request) -> web.Response:
        if (denied := self.gw._deny(request, "read")) is not None:
            return denied
        now = self.gw.clock.now()
        body = {
            "exact_cache": {"entries": len(self.exact), "hits": self.exact.hits, "misses": self.exact.misses},
            "semantic_cache": None
            if self.semantic is None
            else {
                "entries": len(self.semantic),
                "hits": self.semantic.hits,
                "misses": self.semantic.misses,
                "refused_by_meaning_guard": self.semantic.guarded,
            },
            "calibration": {v.name + "/" + vid[:12]: v.calibrator.state() for vid, v in self.versions.items()},
            "calibration_samples": self.calibration_samples,
            "prefix_routing": {"affine": self.picker.affine, "fallback": self.picker.fallback},
            "budgets": {s: self.budgets.usage(s, now) for s in sorted(self.budgets.limits)},
            "ledger_rows_written": self.ledger.written,
        }
        return web.json_response(body)

    def _auth(self, request: web.Request) -> web.Response | ApiKey | None:
        result = self.gw.authenticate(request, "predict", model="llm")
        if isinstance(result, tuple):  # OpenAI's error shape for the serving gateway's own check
            return _err(result[0], result[1], code="invalid_api_key" if result[0] == 401 else None)
        return result

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._chat(request)
        except (web.HTTPException, RequestPayloadError):
            raise  # malformed input (too large, a false Content-Encoding): the gateway's middleware answers 4xx
        except Exception as e:  # a bug: still an OpenAI-shaped answer, and the traceback in the log
            trace = self.gw.ids.new()
            log.exception("chat completion failed (trace %s): %s", trace, type(e).__name__)
            self.gw.rejected[("llm", "internal_error")] += 1
            return _err(
                500, f"internal error in the tether gateway (trace {trace})", code="internal_error", trace=trace
            )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        trace = self.gw.ids.new()
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        try:
            req = protocol.parse_chat(orjson.loads(await request.read()))
        except orjson.JSONDecodeError as e:
            return _err(400, f"malformed JSON: {e}", trace=trace)
        except protocol.RequestError as e:
            self.gw.rejected[("llm", "bad_request")] += 1
            return _err(e.status, e.message, param=e.param, trace=trace)
        table = self.gw.tables.get(req.model)
        if table is None or req.model not in self.llm_models:
            self.gw.rejected[(req.model, "unknown_model")] += 1
            return _err(
                404,
                f"unknown model {req.model!r}; deployed LLMs: {sorted(self.llm_models)}",
                param="model",
                code="model_not_found",
                trace=trace,
            )
        route = table.route(req.user or trace)
        if route.arm == "canary" and self.gw.runtime.instance(route.version_id) is None and table.champion:
            # The canary's instance is still starting (an LLM worker takes seconds to load): its share goes to the
            # champion meanwhile instead of failing; the rollout simply waits longer for its samples.
            self.gw.rejected[(req.model, "canary_not_ready")] += 1
            route = Route(table.champion, "champion", route.shadow_version_id)
        info = self.versions.get(route.version_id)
        if info is None:  # first request for this version: load its spec and tokenizer off the event loop
            info = await asyncio.to_thread(self.version, route.version_id)
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
            tenant=auth.name if auth is not None else request.headers.get("X-Tether-Tenant", "default"),
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
        max_tokens: int = call.decoding["max_tokens"]
        pinned_extra = [call.tools, call.response_format]
        extra_tokens = info.count_text(orjson.dumps(pinned_extra).decode()) if any(pinned_extra) else 0
        embed = self.embedder().encode if spec.cache.semantic else None
        try:
            sent, call.report = trim(
                call.messages,
                budget=spec.context.max_input_tokens,
                keep_last=spec.context.keep_last_turns,
                block_tokens=spec.context.block_tokens,
                count=info.count,
                extra_tokens=extra_tokens,
                embed=embed,
            )
        except TrimError as e:
            self.gw.rejected[(req.model, "context_length")] += 1
            return _err(
                400, f"{e}; shorten the conversation", param="messages", code="context_length_exceeded", trace=trace
            )
        call.sent = sent
        if spec.prompt.system is not None:  # report indices into the request's own messages
            call.report.dropped = [i - 1 for i in call.report.dropped]
        # The reservation must cover the real use: exact for the embedded engine (its own template and tokenizer),
        # an over-estimate for a remote backend (see VersionInfo.count); the difference comes back at settlement.
        exact = info.count_prompt(sent, call.tools)
        est_prompt = exact if exact is not None else call.report.tokens_after
        scopes = [f"tenant:{call.tenant}"] + ([f"key:{call.key_id}"] if call.key_id else [])
        try:
            reservation = self.budgets.reserve(
                scopes, est_prompt + max_tokens, spec.prices.cost(est_prompt, 0, max_tokens), call.now
            )
        except BudgetExceeded as e:
            self.gw.rejected[(req.model, "budget")] += 1
            return _err(
                429,
                str(e),
                code="budget_exceeded",
                trace=trace,
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

        outcome = Outcome()
        look = await self._look_up(call, outcome)
        if look.hit is not None:
            hit = look.hit
            outcome.text, outcome.finish_reason, outcome.tool_calls = hit.text, hit.finish_reason, hit.tool_calls
            self.budgets.settle(reservation, 0, 0.0)
            return await self._answer(call, outcome, saved=(hit.prompt_tokens + hit.completion_tokens, hit.cost))

        body = self._backend_body(call, sent)
        prefix_hash = short_hash([info.system_hash, call.tools, call.response_format])
        if route.shadow_version_id and route.shadow_version_id != info.version_id:
            self._spawn(self._shadow(call, route.shadow_version_id, sent))
        if not req.stream:
            try:
                await self._call(info, body, prefix_hash, outcome, call.tenant)
            except Upstream as e:
                outcome.status, outcome.error = "error", e.kind
                self._settle(reservation, info, outcome)
                row = self._book(call, outcome)
                self._measure(call, outcome)
                try:
                    await self._audit(call, outcome, row)
                except Exception:
                    log.exception("audit of a failed interaction")
                return _err(e.status, e.message, trace=trace, code=e.kind)
            self._settle(reservation, info, outcome, sent)
            self._remember(call, look, outcome)
            return await self._answer(call, outcome)

        # Streaming: relay the backend's chunks as they come; the trail is written before [DONE].
        try:
            url = self.picker.pick(self.backend_urls(info), prefix_hash, spec.backend.affinity_slack)
        except Upstream as e:
            self.budgets.settle(reservation, 0, 0.0)
            return _err(e.status, e.message, trace=trace, code=e.kind)
        resp = web.StreamResponse(headers=_sse_headers(call, outcome))
        self.picker.in_flight[url] = self.picker.in_flight.get(url, 0) + 1
        try:
            await self._relay(request, resp, info, url, body, call.cid, call.created, outcome, call.tenant)
        finally:
            self.picker.in_flight[url] -= 1
        self._settle(reservation, info, outcome, sent)
        if outcome.status == "ok":
            self._remember(call, look, outcome)
        self._measure(call, outcome)
        row = self._book(call, outcome)
        try:
            await self._audit(call, outcome, row)
        except Exception as e:
            self.gw.rejected[(req.model, "audit_unavailable")] += 1
            error = protocol.error_body(f"the audit log could not record this interaction: {e}", kind="server_error")
            await _write(resp, b"data: " + orjson.dumps(error) + b"\n\n")
            await _close(resp)
            return resp
        if outcome.status == "ok":
            usage = protocol.usage_of(outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens)
            tail = {"tether": self._meta(call, outcome, row)}
            usage_or_none = usage if req.include_usage else None
            await _write(resp, protocol.chunk(call.cid, req.model, call.created, usage=usage_or_none, extra=tail))
            await _write(resp, protocol.DONE)
        await _close(resp)
        return resp

    async def _look_up(self, call: Call, outcome: Outcome) -> CacheLookup:
        """The exact cache, then the semantic cache (single-turn unless the version allows more)."""
        info, spec, req = call.info, call.info.spec, call.req
        look = CacheLookup()
        look.cacheable = call.decoding["temperature"] == 0 or spec.cache.allow_sampled
        look.exact_key = canonical_key(
            tenant=call.tenant,
            version=info.version_id,
            messages=call.messages,
            tools=call.tools,
            response_format=call.response_format,
            decoding=call.decoding,
        )
        if not look.cacheable:
            return look
        if spec.cache.exact:
            look.hit = self.exact.get(look.exact_key, spec.cache.ttl_s)
            if look.hit is not None:
                outcome.cache = "exact"
                return look
        turns = [m for m in req.messages if m["role"] not in ("system", "developer")]
        if not spec.cache.semantic or (len(turns) != 1 and not spec.cache.semantic_multi_turn):
            return look
        look.query = "\n".join(m["content"] for m in turns)
        look.partition = (
            call.tenant,
            info.version_id,
            info.system_hash,
            short_hash([call.tools, call.response_format, call.decoding]),
        )
        emb = self.embedder()
        look.vector = await asyncio.to_thread(emb.one, look.query)
        assert self.semantic is not None
        found = await asyncio.to_thread(
            self.semantic.lookup_near,
            look.partition,
            look.query,
            look.vector,
            info.calibrator.threshold,
            spec.cache.ttl_s,
            self._word_similarity,
        )
        if found.hit is not None:
            look.hit = found.hit.entry
            outcome.cache, outcome.similarity = "semantic", found.hit.similarity
            if random.random() < spec.cache.calibration_rate:
                self._spawn(self._calibrate(call, found.hit.entry, found.hit.similarity))
        elif found.near is not None:
            look.near = (found.near.entry, found.near.similarity)
        return look

    async def _shadow(self, call: Call, version_id: str, sent: list[dict[str, Any]]) -> None:
        """A copy for the shadow version (fire and forget: it never changes the answer), measured on its arm."""
        started = time.perf_counter()
        outcome = Outcome()
        try:
            info = self.versions.get(version_id)
            if info is None:
                info = await asyncio.to_thread(self.version, version_id)
            body = self._backend_body(call, sent)
            body["model"] = info.spec.backend.model or info.name
            body["stream"] = False
            body.pop("stream_options", None)
            await self._call(
                info, body, short_hash([info.system_hash, call.tools, call.response_format]), outcome, call.tenant
            )
        except Upstream as e:
            outcome.error = None if e.kind in NOT_THE_VERSIONS else e.kind
        except Exception:  # a shadow can never affect the live path
            outcome.error = "shadow_failure"
        self.gw.metrics.record_request(
            call.req.model,
            version_id,
            "shadow",
            call.now,
            latency=time.perf_counter() - started,
            service=outcome.service,
            records=0,
            error=outcome.error,
        )

    def _backend_body(self, call: Call, sent: list[dict[str, Any]]) -> dict[str, Any]:
        d = call.decoding
        body: dict[str, Any] = {
            "model": call.info.spec.backend.model or call.info.name,
            "messages": sent,
            "max_tokens": d["max_tokens"],
            "temperature": d["temperature"],
            "top_p": d["top_p"],
            "stream": call.req.stream,
        }
        for k in ("seed", "stop"):
            if d[k]:
                body[k] = d[k]
        if call.tools:
            body["tools"] = call.tools
            if call.req.tool_choice is not None:
                body["tool_choice"] = call.req.tool_choice
        if call.response_format:
            body["response_format"] = call.response_format
        if call.req.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    # -- backend calls --------------------------------------------------------------------------------------
    def _headers(self, info: VersionInfo, tenant: str | None = None) -> dict[str, str]:
        import os

        h = {"Content-Type": "application/json"}
        if tenant is not None:  # the tenant's partition of the engine's prefix cache (see tether.llm.kvcache)
            h["X-Tether-Cache-Salt"] = hashlib.sha256(b"tether-tenant:" + tenant.encode()).hexdigest()[:32]
        env = info.spec.backend.api_key_env
        if env and os.environ.get(env):
            h["Authorization"] = f"Bearer {os.environ[env]}"
        return h

    async def _call(
        self, info: VersionInfo, body: dict[str, Any], prefix_hash: str, outcome: Outcome, tenant: str | None = None
    ) -> None:
        url = self.picker.pick(self.backend_urls(info), prefix_hash, info.spec.backend.affinity_slack)
        self.picker.in_flight[url] = self.picker.in_flight.get(url, 0) + 1
        timeout = aiohttp.ClientTimeout(total=info.spec.backend.timeout_s)
        try:
            async with self.gw.session.post(
                url + "/chat/completions", data=orjson.dumps(body), headers=self._headers(info, tenant), timeout=timeout
            ) as r:
                raw = await r.read()
                outcome.service = _seconds(r.headers.get(SERVICE_HEADER))
                if r.status != 200:
                    raise upstream_error(url, r.status, raw)
            answer = orjson.loads(raw)
            choice = answer["choices"][0]
            msg = choice.get("message") or {}
        except TimeoutError:
            raise Upstream(504, f"the backend {url} did not answer within {timeout.total} s", "timeout") from None
        except aiohttp.ClientError as e:
            raise Upstream(502, f"the backend {url} is unreachable: {type(e).__name__}", "backend_down") from None
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise Upstream(
                502, f"the backend {url} sent an answer that is not a chat completion: {e}", "backend_protocol"
            ) from None
        finally:
            self.picker.in_flight[url] -= 1
        outcome.text = msg.get("content") or ""
        outcome.tool_calls = msg.get("tool_calls")
        outcome.finish_reason = choice.get("finish_reason") or "stop"
        usage = answer.get("usage") or {}
        outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
        outcome.cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)

    async def _relay(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        info: VersionInfo,
        url: str,
        body: dict[str, Any],
        cid: str,
        created: int,
        outcome: Outcome,
        tenant: str | None = None,
    ) -> None:
        timeout = aiohttp.ClientTimeout(total=info.spec.backend.timeout_s)
        model = body["model"]
        parts: list[str] = []
        try:
            async with self.gw.session.post(
                url + "/chat/completions", data=orjson.dumps(body), headers=self._headers(info, tenant), timeout=timeout
            ) as r:
                if r.status != 200:
                    raise upstream_error(url, r.status, await r.read())
                await resp.prepare(request)
                done = False
                async for line in r.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    event = orjson.loads(data)
                    if "error" in event:
                        raise Upstream(502, f"the backend {url} failed mid-stream: {event['error']}", "broken_stream")
                    if event.get("usage"):
                        u = event["usage"]
                        outcome.prompt_tokens = int(u.get("prompt_tokens") or 0)
                        outcome.completion_tokens = int(u.get("completion_tokens") or 0)
                        outcome.cached_tokens = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
                    for ch in event.get("choices") or []:
                        delta = ch.get("delta") or {}
                        if delta.get("content"):
                            parts.append(delta["content"])
                        if ch.get("finish_reason"):
                            outcome.finish_reason = ch["finish_reason"]
                        await resp.write(
                            protocol.chunk(cid, model, created, delta=delta, finish=ch.get("finish_reason"))
                        )
                if not done:
                    raise Upstream(502, f"the backend {url} closed the stream before it finished", "broken_stream")
        except (Upstream, TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, ConnectionResetError) as e:
            kind = (
                e.kind if isinstance(e, Upstream) else ("timeout" if isinstance(e, TimeoutError) else "broken_stream")
            )
            message = (
                e.message
                if isinstance(e, Upstream)
                else f"the backend {url} broke the stream before it finished ({type(e).__name__})"
            )
            outcome.status, outcome.error, outcome.finish_reason = ("partial" if parts else "error"), kind, "error"
            outcome.text = "".join(parts)
            if not resp.prepared:
                await resp.prepare(request)
            err = protocol.error_body(message, kind="server_error", code=kind)
            await _write(resp, b"data: " + orjson.dumps(err) + b"\n\n")
            return
        outcome.text = "".join(parts)

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def _settle(
        self, reservation: Any, info: VersionInfo, outcome: Outcome, sent: list[dict[str, Any]] | None = None
    ) -> None:
        if sent is not None and not outcome.prompt_tokens and outcome.status == "ok":
            outcome.prompt_tokens = info.count(sent)  # the backend sent no usage: count with the tokenizer
        if sent is not None and not outcome.completion_tokens and outcome.text:
            outcome.completion_tokens = info.count_text(outcome.text)
        cost = info.spec.prices.cost(outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens)
        self.budgets.settle(reservation, outcome.prompt_tokens + outcome.completion_tokens, cost)

    def _remember(self, call: Call, look: CacheLookup, outcome: Outcome) -> None:
        info, c = call.info, call.info.spec.cache
        if (
            not look.cacheable
            or outcome.status != "ok"
            or outcome.finish_reason not in ("stop", "length", "tool_calls")
        ):
            return
        entry = Cached(
            outcome.text,
            outcome.finish_reason,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            info.spec.prices.cost(outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens),
            time.time(),
            info.version_id,
            look.query,
            outcome.tool_calls,
        )
        if c.exact:
            self.exact.max_entries = c.max_entries
            self.exact.put(look.exact_key, entry)
        if look.vector is not None and self.semantic is not None:
            self.semantic.put(look.partition, look.vector, entry)
            if look.near is not None and random.random() < c.calibration_rate:
                # A calibration sample at no extra model call: the nearest cached answer the guard lets pass, below
                # the threshold; the model has just answered the same prompt. Sampled at the same rate as hits, so
                # that the samples weigh every similarity as the lookups do (see Calibrator).
                self._spawn(self._judge(info, look.near[0].text, outcome.text, look.near[1]))

    async def _calibrate(self, call: Call, hit: Cached, sim: float) -> None:
        """A sampled semantic hit is also answered by the model, off the request path, and the answers compared."""
        body = self._backend_body(call, call.messages)
        body["stream"] = False
        body.pop("stream_options", None)
        fresh = Outcome()
        try:
            await self._call(
                call.info,
                body,
                short_hash([call.info.system_hash, call.tools, call.response_format]),
                fresh,
                call.tenant,
            )
        except Upstream:
            return
        await self._judge(call.info, hit.text, fresh.text, sim)

    async def _judge(self, info: VersionInfo, cached: str, fresh: str, sim: float) -> None:
        same = _normal(cached) == _normal(fresh)
        if not same:
            vecs = await asyncio.to_thread(self.embedder().encode, [cached, fresh])
            same = float(vecs[0] @ vecs[1]) >= ANSWER_AGREEMENT
        self.calibration_samples += 1
        info.calibrator.add(sim, not same)

    def _word_similarity(self, a: str, b: str) -> float:
        v = self.embedder().encode([a, b])
        return float(v[0] @ v[1])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _book(self, call: Call, outcome: Outcome, saved: tuple[int, float] = (0, 0.0)) -> dict[str, Any]:
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

    def _measure(self, call: Call, outcome: Outcome) -> None:
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
        )

    def _meta(self, call: Call, outcome: Outcome, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "trace_id": call.trace,
            "version": call.info.version_id,
            "cache": outcome.cache,
            "similarity": None if outcome.similarity is None else round(outcome.similarity, 4),
            "context": call.report.to_json(),
            "ledger": {k: row[k] for k in LEDGER_FIELDS},
        }

    async def _audit(self, call: Call, outcome: Outcome, row: dict[str, Any]) -> None:
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
        output = {"text": outcome.text, "tool_calls": outcome.tool_calls, "finish_reason": outcome.finish_reason}
        payload = {
            "input": request,
            "output": output,
            "status": outcome.status,
            "cache": outcome.cache,
            "ledger": _jsonable(row),
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
        )
        await sink.record(rec)

    async def audit_invalidation(self, model_versions: list[tuple[str, int]], reason: str) -> None:
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

    async def _answer(self, call: Call, outcome: Outcome, saved: tuple[int, float] = (0, 0.0)) -> web.StreamResponse:
        """Answer a cache hit or a plain backend answer, once its record is on the audit trail."""
        req = call.req
        row = self._book(call, outcome, saved)
        self._measure(call, outcome)
        try:
            await self._audit(call, outcome, row)
        except Exception as e:
            self.gw.rejected[(req.model, "audit_unavailable")] += 1
            return _err(503, f"the audit log could not record this interaction: {e}", trace=call.trace)
        meta = self._meta(call, outcome, row)
        billed = outcome.cache == "none"
        usage = protocol.usage_of(
            outcome.prompt_tokens if billed else 0,
            outcome.completion_tokens if billed else 0,
            outcome.cached_tokens if billed else 0,
        )
        headers = _headers(call, outcome)
        if not req.stream:
            body = protocol.completion(
                call.cid,
                req.model,
                outcome.text,
                outcome.finish_reason,
                usage,
                created=call.created,
                tool_calls=outcome.tool_calls,
                extra={"tether": meta},
            )
            return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)
        resp = web.StreamResponse(headers=_sse_headers(call, outcome))
        await resp.prepare(call.request)
        cid, model, created = call.cid, req.model, call.created
        await resp.write(protocol.chunk(cid, model, created, delta={"role": "assistant", "content": ""}))
        if outcome.text:
            await resp.write(protocol.chunk(cid, model, created, delta={"content": outcome.text}))
        if outcome.tool_calls:
            calls = [{**c, "index": i} for i, c in enumerate(outcome.tool_calls)]
            await resp.write(protocol.chunk(cid, model, created, delta={"tool_calls": calls}))
        await resp.write(protocol.chunk(cid, model, created, delta={}, finish=outcome.finish_reason))
        usage_or_none = usage if req.include_usage else None
        await resp.write(protocol.chunk(cid, model, created, usage=usage_or_none, extra={"tether": meta}))
        await resp.write(protocol.DONE)
        await resp.write_eof()
        return resp


def _headers(call: Call, outcome: Outcome) -> dict[str, str]:
    return {"X-Tether-Trace": call.trace, "X-Tether-Version": call.info.version_id, "X-Tether-Cache": outcome.cache}


def _sse_headers(call: Call, outcome: Outcome) -> dict[str, str]:
    return {**_headers(call, outcome), "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def _write(resp: web.StreamResponse, data: bytes) -> None:
    """Write to a stream whose client may have gone: the interaction is recorded all the same."""
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write(data)


async def _close(resp: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _err(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    trace: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    body = protocol.error_body(
        message, kind=protocol.ERROR_TYPES.get(status, "invalid_request_error"), param=param, code=code
    )
    if extra:
        body["error"].update(extra)
    h = dict(headers or {})
    if trace:
        h["X-Tether-Trace"] = trace
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=h)
