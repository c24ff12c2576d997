"""The OpenAI chat-completions wire format: request validation, answers, stream chunks and error bodies.

Validation is by hand (not pydantic) because it sits on the request path and because every message must say
which field broke which rule, as OpenAI's own errors do (``param`` names the field).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES = 2048


class RequestError(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def error_body(
    message: str, *, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "timeout_error",
}


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    #: OpenAI's ``metadata`` (string values). tether reads ``context`` (documents the answer should stay within)
    #: and ``reference`` (a reference answer) for the graders' grounding score.
    metadata: dict[str, str] | None = None


#: OpenAI allows 16 metadata keys; tether allows longer values than its 512 characters (retrieved context).
MAX_METADATA_KEYS = 16
MAX_METADATA_VALUE = 32_768


def text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def parse_chat(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required: the name of a deployed LLM (GET /v1/models lists them)", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
    if len(messages) > MAX_MESSAGES:
        raise RequestError(f"'messages' has {len(messages)} entries; at most {MAX_MESSAGES}", "messages")
    clean = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", where)
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role is {role!r}; use one of {', '.join(ROLES)}", f"{where}.role")
        content = m.get("content")
        if content is None and not (role == "assistant" and m.get("tool_calls")):
            raise RequestError(f"{where}.content is missing", f"{where}.content")
        if content is not None and not isinstance(content, str | list):
            raise RequestError(f"{where}.content must be a string or a list of content parts", f"{where}.content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise RequestError(
                        f"{where}.content[{j}] must be {{'type': 'text', 'text': ...}} (only text is supported)",
                        f"{where}.content[{j}]",
                    )
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise RequestError(f"{where} is a tool message without 'tool_call_id'", f"{where}.tool_call_id")
        out = {"role": role, "content": text_of(content)}
        for key in ("name", "tool_calls", "tool_call_id"):
            if key in m and m[key] is not None:
                out[key] = m[key]
        clean.append(out)
    req = ChatRequest(model=model, messages=clean)
    req.stream = _bool(body, "stream")
    opts = body.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise RequestError("'stream_options' must be an object", "stream_options")
        req.include_usage = bool(opts.get("include_usage"))
    req.temperature = _number(body, "temperature", 0, 2)
    req.top_p = _number(body, "top_p", 0, 1, low_open=True)
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    if mt is not None:
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise RequestError(f"'max_tokens' must be a positive integer, got {mt!r}", "max_tokens")
        req.max_tokens = mt
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("'seed' must be an integer", "seed")
    req.seed = seed
    n = body.get("n", 1)
    if n != 1:
        raise RequestError("'n' other than 1 is not supported; send separate requests", "n")
    stop = body.get("stop")
    if isinstance(stop, str):
        req.stop = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        req.stop = stop
    elif stop is not None:
        raise RequestError("'stop' must be a string or a list of up to 4 strings", "stop")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(
            isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict) for t in tools
        ):
            raise RequestError("'tools' must be a list of {'type': 'function', 'function': {...}}", "tools")
        req.tools = tools
    req.tool_choice = body.get("tool_choice")
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise RequestError("'response_format.type' must be text, json_object or json_schema", "response_format")
        req.response_format = rf
    user = body.get("user")
    req.user = user if isinstance(user, str) else None
    meta = body.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise RequestError("'metadata' must be an object of string keys and string values", "metadata")
        if len(meta) > MAX_METADATA_KEYS:
            raise RequestError(f"'metadata' has {len(meta)} keys; at most {MAX_METADATA_KEYS}", "metadata")
        for k, v in meta.items():
            if len(k) > 64 or len(v) > MAX_METADATA_VALUE:
                raise RequestError(
                    f"metadata[{k[:64]!r}] is too long (keys up to 64 characters, values up to {MAX_METADATA_VALUE})",
                    "metadata",
                )
        req.metadata = meta
    return req


def _bool(body: dict[str, Any], key: str) -> bool:
    v = body.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise RequestError(f"'{key}' must be true or false", key)
    return v


def _number(body: dict[str, Any], key: str, low: float, high: float, low_open: bool = False) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool) or v > high or v < low or (low_open and v == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise RequestError(f"'{key}' must be a number in {bound}, got {v!r}", key)
    return float(v)


def completion(
    cid: str,
    model: str,
    text: str,
    finish: str,
    usage: dict[str, Any],
    *,
    created: int | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body = {
        "id": cid,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }
    if extra:
        body.update(extra)
    return body


def chunk(
    cid: str,
    model: str,
    created: int,
    *,
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    choices = (
        []
        if delta is None and finish is None
        else [{"index": 0, "delta": delta or {}, "finish_reason": finish, "logprobs": None}]
    )
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    if extra:
        body.update(extra)
    return b"data: " + orjson.dumps(body) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def usage_of(prompt: int, completion_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
