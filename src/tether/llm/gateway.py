"""The OpenAI-compatible LLM routes of `tether serve`.

    GET  /v1/models              the deployed LLMs (every routing table whose champion is an llm version)
    POST /v1/chat/completions    plain and SSE streaming
    GET  /v1/llm/stats           caches, calibration, prefix routing, budgets, grading queue (role read)

One request runs through the stages of ``tether.llm.call``: ``intake`` (authenticate, parse, route, template,
trim, reserve the budget), ``lookup`` (exact cache, then semantic cache), ``dispatch`` (a backend replica chosen
by prefix affinity; shadow copies), ``record`` (settle the budget, the ledger row, the metric window the rollout
controller reads, the audit record: awaited before the answer, or before ``[DONE]`` when streaming) and
``sampler`` (a sampled copy for the graders, queued off the request path after the answer is recorded).

Errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``. A backend that breaks a stream
half-way gets the stream closed with an error event (never a silent truncation), and the partial answer is
recorded in the ledger and the audit trail with status ``partial``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from tether.llm import protocol
from tether.llm.cache import ExactCache, SemanticCache, short_hash
from tether.llm.call import (
    Call,
    Outcome,
    Upstream,
    VersionInfo,
    close_quietly,
    error_response,
    sse_headers,
    write_quietly,
)
from tether.llm.call import answer_headers as _headers
from tether.llm.dispatch import Dispatcher, ReplicaPicker
from tether.llm.grading import GradingLoop
from tether.llm.intake import Intake
from tether.llm.ledger import Budgets, LedgerWriter, Limits, read_limits, seed_from_ledger
from tether.llm.lookup import CacheStage
from tether.llm.record import Recorder
from tether.llm.sampler import Sampler
from tether.llm.shared_budgets import RedisBudgets
from tether.llm.spec import LLMSpec
from tether.monitor.llm_config import LLMEvalConfig
from tether.serving.auth import ApiKey
from tether.serving.gateway import Gateway

log = logging.getLogger("tether.llm")

TOKENIZER_FILES = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "chat_template", "config")
__all__ = ["LLMGateway", "ReplicaPicker"]
DEFAULT_EVALS = LLMEvalConfig()
#: How often shared budgets re-read their seeds from the ledger: what a Redis restart can forget at most.
RESEED_SECONDS = 2.0


class LLMGateway:
    def __init__(
        self,
        gateway: Gateway,
        *,
        ledger_flush_seconds: float = 0.5,
        evals: Callable[[str], LLMEvalConfig] | None = None,
    ) -> None:
        self.gw = gateway
        self.registry = gateway.registry
        self.db = gateway.registry.store.db
        self.versions: dict[str, VersionInfo] = {}
        settings = gateway.registry.settings
        self.budgets: Budgets = (
            RedisBudgets(
                settings.redis_url,
                fallback=settings.budget_fallback,
                replicas=settings.gateway_replicas,
                prefix=f"{settings.redis_namespace}:budget:",
            )
            if settings.redis_url
            else Budgets()
        )
        self.ledger = LedgerWriter(self.db)
        self.flush_seconds = ledger_flush_seconds
        self.background: set[asyncio.Task[Any]] = set()
        self.llm_models: set[str] = set()
        self._served_versions: set[str] = set()
        self._specs: dict[str, tuple[LLMSpec | None, str]] = {}
        self._loading = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix="tether-llm-gw-"))
        # The stages of one request, in order (see the module's docstring).
        self.dispatch = Dispatcher(gateway, self.load)
        self.caches = CacheStage(self.dispatch, self._spawn)
        self.intake = Intake(gateway, self.budgets, self.load, self.embedder, lambda: self.llm_models)
        self.recorder = Recorder(gateway, self.budgets, self.ledger)
        config_for = evals or (lambda model: DEFAULT_EVALS)
        self.sampler = Sampler(config_for)
        self.grading = GradingLoop(self.registry.store, self.sampler, config_for, gateway.clock, embedder=self.embedder)
        app = gateway.app
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat, expect_handler=gateway.expect)

    @property
    def exact(self) -> ExactCache:
        return self.caches.exact

    @property
    def semantic(self) -> SemanticCache | None:
        return self.caches.semantic

    @property
    def picker(self) -> ReplicaPicker:
        return self.dispatch.picker

    def embedder(self) -> Any:
        return self.caches.embedder()

    async def load(self, version_id: str) -> VersionInfo:
        """A version's spec and tokenizer; the first request for a version loads them off the event loop."""
        info = self.versions.get(version_id)
        return info if info is not None else await asyncio.to_thread(self.version, version_id)

    # -- state ----------------------------------------------------------------------------------------------
    def refresh(self, limits: dict[str, Limits] | None = None) -> list[tuple[str, int]]:
        """After the routing tables changed: note the LLM models, take the budgets' limits when they changed
        (``limits``), and invalidate the cache entries of versions no table serves any more. Returns (version,
        entries dropped) for each."""
        models = set()
        served: set[str] = set()
        for name, table in self.gw.tables.items():
            vids = [v for v in (table.champion, table.canary, table.shadow) if v]
            if vids and self._is_llm(vids[0]):
                models.add(name)
                served.update(vids)
        self.llm_models = models
        self.gw.chat_only = models
        if limits is not None:
            self.budgets.set_limits(limits)
        dropped = []
        for vid in self._served_versions - served:
            dropped.append((vid, self.caches.invalidate(vid)))
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

    def not_llm(self, version_id: str, name: str) -> None:
        """Note a version of another flavor, read in bulk with the routing (no query per version on the loop)."""
        self._specs.setdefault(version_id, (None, name))

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
        self.grading.start()
        self.refresh(read_limits(self.db))

    def warm(self) -> list[str]:
        """Load what the first requests of the served LLM versions would otherwise load in the serving process
        mid-traffic: each version's spec and tokenizer, the embedder when a semantic cache needs it, and the
        graders of every model whose evaluation is on. Loading MiniLM imports torch and transformers, seconds of
        work that holds the GIL: the event loop, waiting for it, served with a p99 of +30-50 ms while it ran
        (bench/llm_gateway.py). `Server.start` runs this off the loop and ``/healthz`` says "starting" until it is
        done. Returns what could not be loaded (that part loads on first use, as before)."""
        failed = []
        for vid in sorted(self._served_versions):
            try:
                info = self.version(vid)
                if info.spec.cache.semantic:
                    self.embedder()
            except Exception as e:
                failed.append(f"version {vid[:12]}: {e}")
        for model in sorted(self.llm_models):
            cfg = self.grading.config_for(model)
            for ref in cfg.graders if cfg.enabled else []:
                try:
                    self.grading.grader(ref)
                except Exception as e:
                    failed.append(f"grader {ref} of {model}: {e}")
        for why in failed:
            log.warning("warm-up: %s (it loads on first use)", why)
        return failed

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
            self.caches.attach(info)
            return info

    async def run(self) -> None:
        """Flush the ledger in batches; with shared budgets, re-read their seeds from it every few seconds."""
        reseed = getattr(self.budgets, "reseed", None)
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await asyncio.to_thread(self.ledger.flush)
            except Exception:
                log.exception("ledger flush failed (kept for the next one)")
            if reseed is not None and time.monotonic() - last >= RESEED_SECONDS:
                last = time.monotonic()
                try:
                    await asyncio.to_thread(reseed, self.db, self.gw.clock.now())
                except Exception:
                    log.exception("could not re-read the budgets' seeds from the ledger (the last ones hold)")

    async def close(self) -> None:
        for t in list(self.background):
            t.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await asyncio.to_thread(self.ledger.flush)
        await self.grading.close()  # the check rows not yet written
        await asyncio.to_thread(self.caches.close)
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

    def stats(self) -> dict[str, Any]:
        """Caches, calibration, prefix routing, budgets, ledger and grading counters (on the event loop)."""
        now = self.gw.clock.now()
        body = {
            "exact_cache": {
                "entries": None if self.exact.shared else len(self.exact),
                "shared": self.exact.shared,
                "hits": self.exact.hits,
                "misses": self.exact.misses,
            },
            "semantic_cache": None
            if self.semantic is None
            else {
                "entries": len(self.semantic),
                "shared": self.semantic.shared,
                "hits": self.semantic.hits,
                "misses": self.semantic.misses,
                "refused_by_meaning_guard": self.semantic.guarded,
            },
            "calibration": {v.name + "/" + vid[:12]: v.calibrator.state() for vid, v in self.versions.items()},
            "calibration_samples": self.caches.calibration_samples,
            "prefix_routing": {"affine": self.picker.affine, "fallback": self.picker.fallback},
            "budgets": {s: self.budgets.usage(s, now) for s in sorted(self.budgets.limits)},
            "ledger_rows_written": self.ledger.written,
            "grading": self.grading.stats(),
        }
        return body

    def _auth(self, request: web.Request) -> web.Response | ApiKey | None:
        result = self.gw.authenticate(request, "predict", model="llm")
        if isinstance(result, tuple):  # OpenAI's error shape for the serving gateway's own check
            return error_response(result[0], result[1], code="invalid_api_key" if result[0] == 401 else None)
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
            return error_response(
                500, f"internal error in the tether gateway (trace {trace})", code="internal_error", trace=trace
            )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        trace = self.gw.ids.new()
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        admitted = await self.intake.admit(request, trace, started, auth)
        if isinstance(admitted, web.Response):
            return admitted
        call, route, reservation = admitted.call, admitted.route, admitted.reservation
        info, req, sent = call.info, call.req, call.sent

        outcome = Outcome()
        look = await self.caches.look_up(call, outcome)
        if look.hit is not None:
            hit = look.hit
            outcome.text, outcome.finish_reason, outcome.tool_calls = hit.text, hit.finish_reason, hit.tool_calls
            self.budgets.settle(reservation, 0, 0.0)
            return await self._answer(call, outcome, saved=(hit.prompt_tokens + hit.completion_tokens, hit.cost))

        body = self.dispatch.body(call, sent)
        prefix_hash = short_hash([info.system_hash, call.tools, call.response_format])
        if route.shadow_version_id and route.shadow_version_id != info.version_id:
            self._spawn(self.dispatch.shadow(call, route.shadow_version_id, sent))
        if not req.stream:
            try:
                await self.dispatch.call(info, body, prefix_hash, outcome, call.tenant)
            except Upstream as e:
                outcome.status, outcome.error = "error", e.kind
                self.recorder.settle(reservation, info, outcome)
                row = self.recorder.book(call, outcome)
                self.recorder.measure(call, outcome)
                try:
                    await self.recorder.audit(call, outcome, row)
                except Exception:
                    log.exception("audit of a failed interaction")
                return error_response(e.status, e.message, trace=trace, code=e.kind)
            self.recorder.settle(reservation, info, outcome, sent)
            self.caches.remember(call, look, outcome)
            return await self._answer(call, outcome)

        # Streaming: relay the backend's chunks as they come; the trail is written before [DONE].
        try:
            url = self.picker.pick(self.dispatch.urls(info), prefix_hash, info.spec.backend.affinity_slack)
        except Upstream as e:
            self.budgets.settle(reservation, 0, 0.0)
            return error_response(e.status, e.message, trace=trace, code=e.kind)
        resp = web.StreamResponse(headers=sse_headers(call, outcome))
        self.picker.in_flight[url] = self.picker.in_flight.get(url, 0) + 1
        try:
            await self.dispatch.relay(request, resp, info, url, body, call.cid, call.created, outcome, call.tenant)
        finally:
            self.picker.in_flight[url] -= 1
        self.recorder.settle(reservation, info, outcome, sent)
        if outcome.status == "ok":
            self.caches.remember(call, look, outcome)
        it, checks = self.sampler.check(call, outcome)
        self.recorder.measure(call, outcome, schema_violation=Sampler.schema_violation(checks))
        row = self.recorder.book(call, outcome)
        try:
            await self.recorder.audit(call, outcome, row)
        except Exception as e:
            self.gw.rejected[(req.model, "audit_unavailable")] += 1
            error = protocol.error_body(f"the audit log could not record this interaction: {e}", kind="server_error")
            await write_quietly(resp, b"data: " + orjson.dumps(error) + b"\n\n")
            await close_quietly(resp)
            return resp
        self.sampler.offer(it, checks, call.now)
        if outcome.status == "ok":
            usage = protocol.usage_of(outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens)
            tail = {"tether": self.recorder.meta(call, outcome, row)}
            usage_or_none = usage if req.include_usage else None
            await write_quietly(
                resp, protocol.chunk(call.cid, req.model, call.created, usage=usage_or_none, extra=tail)
            )
            await write_quietly(resp, protocol.DONE)
        await close_quietly(resp)
        return resp

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def audit_invalidation(self, model_versions: list[tuple[str, int]], reason: str) -> None:
        await self.recorder.invalidation(model_versions, reason)

    async def _answer(self, call: Call, outcome: Outcome, saved: tuple[int, float] = (0, 0.0)) -> web.StreamResponse:
        """Answer a cache hit or a plain backend answer, once its record is on the audit trail."""
        req = call.req
        row = self.recorder.book(call, outcome, saved)
        it, checks = self.sampler.check(call, outcome)
        self.recorder.measure(call, outcome, schema_violation=Sampler.schema_violation(checks))
        try:
            await self.recorder.audit(call, outcome, row)
        except Exception as e:
            self.gw.rejected[(req.model, "audit_unavailable")] += 1
            return error_response(503, f"the audit log could not record this interaction: {e}", trace=call.trace)
        self.sampler.offer(it, checks, call.now)
        meta = self.recorder.meta(call, outcome, row)
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
        resp = web.StreamResponse(headers=sse_headers(call, outcome))
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
