"""One chat request on its way through the LLM gateway, and what every stage shares.

The request path is a line of stages, each in a module named by its noun: ``intake`` (parse, route, template,
trim, reserve), ``lookup`` (the exact and semantic caches), ``dispatch`` (a backend replica, plain or streamed,
and shadow copies), ``record`` (settle the budget, the ledger row, the metric window, the audit record) and
``sampler`` (a copy for grading, off the request path). ``gateway`` runs them in order. The ``Call`` travels
through all of them; the ``Outcome`` is what the model (or a cache) answered.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from tether.llm import protocol
from tether.llm.cache import Cached, Calibrator, short_hash
from tether.llm.spec import LLMSpec
from tether.llm.trim import TrimReport

log = logging.getLogger("tether.llm")


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


def answer_headers(call: Call, outcome: Outcome) -> dict[str, str]:
    return {"X-Tether-Trace": call.trace, "X-Tether-Version": call.info.version_id, "X-Tether-Cache": outcome.cache}


def sse_headers(call: Call, outcome: Outcome) -> dict[str, str]:
    return {**answer_headers(call, outcome), "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def write_quietly(resp: web.StreamResponse, data: bytes) -> None:
    """Write to a stream whose client may have gone: the interaction is recorded all the same."""
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write(data)


async def close_quietly(resp: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()


def normal_text(text: str) -> str:
    return " ".join(text.lower().split())


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def error_response(
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
