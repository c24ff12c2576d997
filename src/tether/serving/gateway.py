"""The gateway hot path: authenticate, parse, validate, route, forward, shadow, measure, respond.

    POST /v1/models/{name}/predict   {"records": [...], "entity_key": "optional"}  -> {"outputs": [...]}
    POST /v1/feedback                {"trace_id": "...", "labels": [0, 1, ...]}     -> delayed labels
    GET  /metrics                    Prometheus text
    GET  /healthz

Every response carries ``X-Tether-Trace``; predictions also ``X-Tether-Version``. Bad input gets a 4xx that
names what was wrong (400 malformed JSON, 413 too large, 404 unknown model, 422 schema violation naming the
record, field and rule); a backend that is down gets a 502/503/504; every such event is counted and the
gateway keeps serving. Shadow copies go fire-and-forget and never change a response.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from tether.audit.log import AuditRecord
from tether.audit.sink import AuditSink
from tether.core.clock import Clock, SystemClock
from tether.core.ids import TraceIdGenerator
from tether.monitor.live import LiveProfiler
from tether.registry import Registry
from tether.serving import feedback
from tether.serving import table as routing_table
from tether.serving.auth import ApiKey, KeyRing
from tether.serving.contract import InputValidator
from tether.serving.exposition import exposition
from tether.serving.routing import Route, RoutingTable
from tether.serving.runtime import Runtime
from tether.serving.sketch import LatencySketch
from tether.serving.switchboard import Switchboard
from tether.serving.traces import TraceMemory
from tether.serving.upstream import Upstream
from tether.serving.window import MetricStore

log = logging.getLogger("tether.gateway")

MAX_RECORDS = 10_000
#: Error kinds that are not the version's failures: no instance is up yet (starting; a crash is reported by
#: itself), or the pooled worker that serves it beside other versions could not be reached (the infrastructure's
#: failure: a kill -9 of a worker must not count against every version it held). See docs/operations.md, "what
#: counts against a version".
NOT_THE_VERSIONS = frozenset({"unavailable", "worker_down"})
WARMUP_REQUESTS = 20
TRACE_MEMORY = 200_000


class Gateway:
    def __init__(
        self,
        registry: Registry,
        metrics: MetricStore,
        runtime: Runtime,
        *,
        keys: KeyRing | None = None,
        clock: Clock | None = None,
        profiler: LiveProfiler | None = None,
        audit: AuditSink | None = None,
        max_body_bytes: int = 4 << 20,
        timeout: float = 10.0,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.runtime = runtime
        self.keys = keys
        self.clock = clock or SystemClock()
        self.profiler = profiler
        self.audit = audit
        self._triads: dict[str, tuple[str, str, str]] = {}
        self.ids = TraceIdGenerator(self.clock)
        self.max_body_bytes = max_body_bytes
        #: The routing tables: desired (the database's) and effective (what serves each model now).
        self.switch = Switchboard(runtime)
        self.upstream = Upstream(runtime, timeout)
        self.validators: dict[str, InputValidator] = {}
        self.rejected: Counter[tuple[str, str]] = Counter()
        self.shadow_tasks: set[asyncio.Task[None]] = set()
        #: Requests each instance serves before its evidence counts (see `_arm`).
        self.warmup_requests = WARMUP_REQUESTS
        self._served: dict[tuple[str, int | None, str], int] = {}
        self._mirroring: set[str] = set()  # canaries with a mirror copy in flight
        self.chat_only: set[str] = set()  # models served by /v1/chat/completions (tether.llm sets it)
        #: Which version answered each recent trace, for delayed labels (shared through Redis when scaled out).
        self.traces: TraceMemory = TraceMemory(TRACE_MEMORY)
        #: What the process around the gateway adds to /healthz and /metrics (its role, lease, routing state).
        self.health_extra: Callable[[], dict[str, Any]] | None = None
        #: What the server is still loading before it calls itself ready (``/healthz`` answers 503 meanwhile).
        self.warming: set[str] = set()
        self.metrics_extra: Callable[[], list[str]] | None = None
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._errors])
        self.app.router.add_post("/v1/models/{name}/predict", self.predict, expect_handler=self.expect)
        self.app.router.add_post("/v1/feedback", functools.partial(feedback.labels, self), expect_handler=self.expect)
        self.app.router.add_get("/metrics", self.prometheus)
        self.app.router.add_get("/healthz", self.health)
        self.app.on_cleanup.append(self._close)

    # -- state --------------------------------------------------------------------------------------------
    @property
    def tables(self) -> dict[str, RoutingTable]:
        """What serves each model now (`Switchboard.tables`)."""
        return self.switch.tables

    @property
    def desired(self) -> dict[str, RoutingTable]:
        return self.switch.desired

    @property
    def holding(self) -> dict[str, str]:
        return self.switch.holding

    @property
    def revisions(self) -> dict[str, int]:
        return self.switch.revisions

    def set_desired(self, changed: dict[str, RoutingTable], gone: set[str], revisions: dict[str, int]) -> set[str]:
        return self.switch.set_desired(changed, gone, revisions)

    def apply(self, models: set[str] | None = None) -> set[str]:
        return self.switch.apply(models)

    def serving_versions(self) -> set[str]:
        return self.switch.serving_versions()

    def readiness(self) -> tuple[list[str], dict[str, str]]:
        waiting, unready = self.switch.readiness()
        return waiting + sorted(self.warming), unready

    def refresh_routing(self) -> dict[str, RoutingTable]:
        """Re-read the routing tables (cheap: one query); returns the tables that changed."""
        with self.registry.store.db.connect() as conn:
            current = routing_table.read_all(conn)
        changed = {m: t for m, (t, rev) in current.items() if self.revisions.get(m) != rev}
        gone = set(self.desired) - set(current)
        self.set_desired(changed, gone, {m: rev for m, (_t, rev) in current.items()})
        return changed

    def validator(self, version_id: str) -> InputValidator:
        v = self.validators.get(version_id)
        if v is None:
            v = self.validators[version_id] = InputValidator(self.registry.get(version_id).input_schema)
        return v

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled client every call to an instance or an LLM backend goes through."""
        return self.upstream.session

    @property
    def cold_loads(self) -> Counter[str]:
        return self.upstream.cold_loads

    @property
    def cold_load_seconds(self) -> LatencySketch:
        return self.upstream.cold_load_seconds

    async def _close(self, _app: web.Application) -> None:
        for task in list(self.shadow_tasks):
            task.cancel()
        await self.upstream.close()

    # -- middleware ---------------------------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Malformed input is a 4xx in the route's own error shape, whatever the handler was doing when it met
        it (an oversized body, a Content-Encoding the body does not have); anything else unexpected is a JSON
        500 naming the trace id, with the traceback in the log only."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPRequestEntityTooLarge:
            self.rejected[(request.match_info.get("name", "-"), "too_large")] += 1
            resp = self.error_response(
                request, 413, f"request body over the limit of {self.max_body_bytes} bytes; send smaller batches"
            )
            resp.force_close()  # the rest of the body is never read: the connection cannot be reused
            return resp
        except RequestPayloadError as e:
            self.rejected[(request.match_info.get("name", "-"), "bad_body")] += 1
            why = str(e).split("message:", 1)[-1].strip() or "the body could not be read"
            resp = self.error_response(
                request, 400, f"{why}; send the body as it is, or with the Content-Encoding it really has"
            )
            resp.force_close()
            return resp
        except web.HTTPException:
            raise
        except Exception:
            trace = self.ids.new()
            log.exception("unexpected error on %s %s (trace %s)", request.method, request.path, trace)
            return self.error_response(request, 500, f"internal error in the tether gateway (trace {trace})", trace)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: a body declared over the limit is refused before it is sent (413)."""
        if request.version != aiohttp.HttpVersion11:
            return None
        if request.headers.get("Expect", "").lower() != "100-continue":
            return self.error_response(request, 417, "only 'Expect: 100-continue' is understood")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            self.rejected[(request.match_info.get("name", "-"), "too_large")] += 1
            return self.error_response(
                request, 413, f"request body over the limit of {self.max_body_bytes} bytes; send smaller batches"
            )
        request.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
        return None

    def error_response(self, request: web.Request, status: int, message: str, trace: str | None = None) -> web.Response:
        """An error in the shape of the route: OpenAI's for the OpenAI-compatible routes, tether's elsewhere."""
        if request.path.startswith(("/v1/chat/", "/v1/models")) and not request.path.endswith("/predict"):
            kind = {400: "invalid_request_error", 413: "invalid_request_error"}.get(status, "server_error")
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
            headers = {"X-Tether-Trace": trace} if trace else {}
            return web.Response(
                status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
            )
        return _error(status, message, trace)

    def authenticate(
        self, request: web.Request, action: str, model: str | None = None
    ) -> ApiKey | tuple[int, str] | None:
        """The caller's key (None with auth off), or (status, message) when it may not do ``action``; refusals
        are counted per model. Every route of the process checks keys here and only formats the refusal."""
        if self.keys is None:
            return None
        result = self.keys.check(request.headers.get("Authorization"), action)
        if isinstance(result, tuple):
            self.rejected[(model or request.match_info.get("name", "-"), f"auth_{result[0]}")] += 1
        return result

    def _deny(self, request: web.Request, action: str) -> web.Response | None:
        result = self.authenticate(request, action)
        return _error(*result) if isinstance(result, tuple) else None

    # -- handlers -----------------------------------------------------------------------------------------
    async def predict(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        model = request.match_info["name"]
        trace = self.ids.new()
        caller = self.authenticate(request, "predict")
        if isinstance(caller, tuple):
            return _error(*caller)
        tenant = caller.tenant if caller is not None else ""  # whose record it is on the trail
        table = self.tables.get(model)
        if table is None:
            self.rejected[(model, "unknown_model")] += 1
            return _error(404, f"unknown model {model!r}; deployed: {sorted(self.tables)}", trace)
        if model in self.chat_only:
            self.rejected[(model, "bad_request")] += 1
            return _error(400, f"{model!r} is an LLM: send OpenAI chat requests to POST /v1/chat/completions", trace)
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            self.rejected[(model, "malformed_json")] += 1
            return _error(400, f"malformed JSON: {e}", trace)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records or len(records) > MAX_RECORDS:
            self.rejected[(model, "bad_request")] += 1
            return _error(400, f'send {{"records": [...]}} with 1 to {MAX_RECORDS} records', trace)
        key = body.get("entity_key") or request.headers.get("X-Tether-Entity") or trace
        route = table.route(str(key))
        if route.arm == "canary" and self.runtime.instance(route.version_id) is None:
            # Traffic moves to a canary only once it is up (as Argo Rollouts and Flagger do): until then, or
            # while it restarts after a crash (reported as the crash it is), its share goes to the champion.
            self.rejected[(model, "canary_not_ready")] += 1
            route = Route(table.champion, "champion", route.shadow_version_id)
        now = self.clock.now()
        violations = self.validator(route.version_id).validate(records)
        if violations:
            # A request the champion's contract refuses too is the client's error, whichever arm it reached (a
            # client that picks its arm cannot push a canary's rate up with bad payloads); one only the canary
            # refuses is the canary's incompatibility, and counts against it.
            if route.arm == "canary" and not self.validator(table.champion).validate(records):
                self.metrics.record_request(
                    model, route.version_id, route.arm, now, records=len(records), schema_violation=True
                )
            else:
                self.rejected[(model, "schema_violation")] += 1
            shown = [str(v) for v in violations[:20]]
            return _error(
                422,
                f"{len(violations)} schema violation(s): {'; '.join(shown)}",
                trace,
                version=route.version_id,
                extra={"violations": shown},
            )
        if self.profiler is not None:
            # Drift watch: a list append here; the profiling runs in the background (tether.monitor.live).
            self.profiler.observe(model, route.version_id, records)
        # The instance reads only "records": the body goes on as it came, with no re-encoding (bench/gateway.py).
        payload = raw
        status, result, error, service, loaded = await self.upstream.forward(route.version_id, payload, model)
        # A cold load is the pool's cost, recorded apart (`cold_loads`): the version is judged on serving.
        latency = time.perf_counter() - started - loaded
        if error in NOT_THE_VERSIONS:
            self.rejected[(model, error or "")] += 1  # the gateway's own unavailability: not the version's
        else:
            self.metrics.record_request(
                model,
                route.version_id,
                self._arm(route.version_id, route.arm),
                now,
                latency=latency,
                service=service,
                records=len(records),
                error=error,
            )
        for copy, arm in ((route.shadow_version_id, "shadow"), (route.mirror_version_id, "mirror")):
            if not copy or copy == route.version_id:
                continue
            if arm == "mirror":
                # One mirror copy in flight per canary at most: the copies keep its instance busy when live
                # traffic leaves it idle, and never queue live canary requests behind them.
                if copy in self._mirroring:
                    continue
                self._mirroring.add(copy)
            task = asyncio.create_task(self._shadow(model, copy, payload, now, arm))
            self.shadow_tasks.add(task)
            task.add_done_callback(self.shadow_tasks.discard)
            if arm == "mirror":
                task.add_done_callback(functools.partial(_discard, self._mirroring, copy))
        if error is not None:
            if self.audit is not None:
                try:  # the failure and its detail go on the trail; the answer does not wait on a broken log
                    await self._audit(
                        trace, model, route.version_id, now, records, None, error=str(result), tenant=tenant
                    )
                except Exception:
                    log.exception("audit of a failed prediction (trace %s)", trace)
            message = (
                f"version {route.version_id[:12]}… failed on this request; its error is in the gateway's log and "
                f"on the audit trail under trace {trace}"
                if error == "backend_status"
                else str(result)
            )
            return _error(status, message, trace, version=route.version_id)
        if self.audit is not None:
            try:
                await self._audit(trace, model, route.version_id, now, records, result, tenant=tenant)
            except Exception as e:  # not on disk: the answer is not given either
                self.rejected[(model, "audit_unavailable")] += 1
                return _error(503, f"the audit log could not record this prediction: {e}", trace)
        self._remember(trace, model, route.version_id, route.arm, now, result)
        # Splice the instance's {"outputs": [...]} into the answer instead of decoding and re-encoding it.
        head = b'{"trace_id":"' + trace.encode() + b'","version":"' + route.version_id.encode() + b'",'
        return web.Response(
            body=head + result[1:],
            content_type="application/json",
            headers={"X-Tether-Trace": trace, "X-Tether-Version": route.version_id},
        )

    async def _shadow(self, model: str, version_id: str, payload: bytes, at: datetime, arm: str = "shadow") -> None:
        started = time.perf_counter()
        service, loaded = None, 0.0
        try:
            _, _, error, service, loaded = await self.upstream.forward(version_id, payload, model)
        except Exception:  # a shadow can never affect the live path
            error = "shadow_failure"
        if error in NOT_THE_VERSIONS:
            return
        self.metrics.record_request(
            model,
            version_id,
            self._arm(version_id, arm),
            at,
            latency=time.perf_counter() - started - loaded,
            service=service,
            records=0,
            error=error,
        )

    def _arm(self, version_id: str, arm: str) -> str:
        """``arm``, or ``arm:warmup`` for the first `warmup_requests` an instance serves after it (re)started: a
        cold process is slower, and a rollout judges instances warm, like with like (rollout windows read the
        plain arms only; `MetricStore.streak` still counts warm-up failures, so a broken canary is caught)."""
        inst = self.runtime.instance(version_id)
        if inst is None or self.warmup_requests <= 0:
            return arm
        ident = (version_id, inst.pid, inst.url)
        n = self._served.get(ident, 0)
        if n >= self.warmup_requests:
            return arm
        self._served[ident] = n + 1
        return f"{arm}:warmup"

    async def _audit(
        self,
        trace: str,
        model: str,
        version_id: str,
        at: datetime,
        records: list[Any],
        result: bytes | None,
        *,
        error: str | None = None,
        tenant: str = "",
    ) -> int:
        assert self.audit is not None
        triad = self._triads.get(version_id)
        if triad is None:
            mv = self.registry.get(version_id)
            triad = self._triads[version_id] = (mv.code.digest, mv.data.digest, mv.weights.digest)
        outputs = orjson.loads(result)["outputs"] if result is not None else None
        body: dict[str, Any] = {"input": records, "output": outputs}
        if error is not None:
            body["error"] = error
        rec = AuditRecord(
            kind="prediction",
            trace_id=trace,
            at=at,
            model=model,
            version_id=version_id,
            code_digest=triad[0],
            data_digest=triad[1],
            weights_digest=triad[2],
            input_digest=self.audit.digest(records),
            output_digest=self.audit.digest(outputs),
            payload=self.audit.payload(body),
            tenant=tenant,
        )
        return await self.audit.record(rec)

    def _remember(self, trace: str, model: str, version: str, arm: str, at: datetime, outputs: bytes) -> None:
        # The raw answer is kept and decoded only if feedback arrives (most predictions never get a label).
        self.traces.remember(trace, (model, version, arm, at, outputs))

    async def health(self, _request: web.Request) -> web.Response:
        """200 once every deployed model's champion can answer (or has failed to start: it is named, and the others
        serve) and the warm-up is done; 503 (status "starting", naming what it waits for) before."""
        waiting, unready = self.readiness()
        status = "starting" if waiting else ("degraded" if unready else "ok")
        body: dict[str, Any] = {"status": status, "models": len(self.tables)}
        if waiting:
            body["waiting_for"] = waiting[:100]
        if unready:
            body["unready"] = dict(sorted(unready.items())[:100])
            body["unready_count"] = len(unready)
        if self.profiler is not None and self.profiler.write_failures:
            body["drift_watch"] = {"write_failures": self.profiler.write_failures, "last": self.profiler.last_error}
        if self.health_extra is not None:
            body.update(self.health_extra())
        return web.json_response(body, status=503 if waiting else 200)

    async def prometheus(self, request: web.Request) -> web.Response:
        if (denied := self._deny(request, "read")) is not None:
            return denied
        epoch = datetime.fromtimestamp(0, tz=self.clock.now().tzinfo)
        lines = exposition(self.metrics, self.rejected, epoch)
        if self.metrics_extra is not None:
            lines += self.metrics_extra()
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def _discard(items: set[str], item: str, _task: object) -> None:
    items.discard(item)


def _error(
    status: int,
    message: str,
    trace: str | None = None,
    *,
    version: str | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    headers = {"X-Tether-Trace": trace} if trace else {}
    if version:
        headers["X-Tether-Version"] = version
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message, **(extra or {})}),
        content_type="application/json",
        headers=headers,
    )
