"""What a grader reads (an ``Interaction``) and what it writes (a ``Score``).

An interaction is one LLM exchange as the gateway recorded it: the messages the model saw, the answer, how it
finished, the tools and response schema in force, and optionally supplied context and a reference answer (for
grounding). A score is one metric of one grader version on one interaction: a value in [0, 1] where higher is
better, or an error. An error is never a score: a grader that timed out or returned malformed output leaves
``value`` empty and says why in ``error``, and every rate tether reports counts such rows apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Interaction:
    trace_id: str
    messages: tuple[dict[str, Any], ...]
    answer: str
    finish_reason: str = "stop"
    tool_calls: tuple[dict[str, Any], ...] | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    response_format: dict[str, Any] | None = None
    context: str | None = None  # supplied context (retrieved documents) the answer should stay within
    reference: str | None = None  # a reference answer, for factual compliance
    model: str = ""
    version_id: str = ""
    tenant: str = "default"
    cache: str = "none"
    arm: str = "champion"
    status: str = "ok"

    @property
    def prompt(self) -> str:
        """The user's side of the exchange: the user turns, newest last (system and tool turns left out)."""
        return "\n".join(str(m.get("content") or "") for m in self.messages if m.get("role") == "user")

    @property
    def system(self) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages if m.get("role") in ("system", "developer"))

    @classmethod
    def from_record(cls, trace_id: str, payload: dict[str, Any], **meta: Any) -> Interaction:
        """From an ``llm`` audit record's payload (``input``/``output`` as the gateway writes them)."""
        inp, out = payload.get("input") or {}, payload.get("output") or {}
        sent = inp.get("sent") or inp.get("messages") or []
        tools = inp.get("tools")
        calls = out.get("tool_calls")
        return cls(
            trace_id=trace_id,
            messages=tuple(sent),
            answer=str(out.get("text") or ""),
            finish_reason=str(out.get("finish_reason") or "stop"),
            tool_calls=tuple(calls) if calls else None,
            tools=tuple(tools) if tools else None,
            response_format=inp.get("response_format"),
            context=(inp.get("metadata") or {}).get("context"),
            reference=(inp.get("metadata") or {}).get("reference"),
            status=str(payload.get("status") or "ok"),
            cache=str(payload.get("cache") or "none"),
            **meta,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "messages": list(self.messages),
            "answer": self.answer,
            "finish_reason": self.finish_reason,
            "tool_calls": list(self.tool_calls) if self.tool_calls else None,
            "tools": list(self.tools) if self.tools else None,
            "response_format": self.response_format,
            "context": self.context,
            "reference": self.reference,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], **meta: Any) -> Interaction:
        """From an anchor-set or golden-set row: ``messages`` (or a bare ``prompt``) and ``answer``."""
        if not isinstance(d, dict):
            raise ValueError(f"an interaction must be a JSON object, got {type(d).__name__}")
        messages = d.get("messages")
        if messages is None:
            if not isinstance(d.get("prompt"), str):
                raise ValueError("an interaction needs 'messages' (a list of chat turns) or 'prompt' (a string)")
            messages = [{"role": "user", "content": d["prompt"]}]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError("'messages' must be a list of objects with a 'role' and a 'content'")
        return cls(
            trace_id=str(d.get("trace_id") or d.get("id") or ""),
            messages=tuple(messages),
            answer=str(d.get("answer") or ""),
            finish_reason=str(d.get("finish_reason") or "stop"),
            tool_calls=tuple(d["tool_calls"]) if d.get("tool_calls") else None,
            tools=tuple(d["tools"]) if d.get("tools") else None,
            response_format=d.get("response_format"),
            context=d.get("context"),
            reference=d.get("reference"),
            **meta,
        )


@dataclass(frozen=True)
class Score:
    grader_id: str
    metric: str
    value: float | None  # in [0, 1], higher is better; None with an error, or when the metric does not apply
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def applies(self) -> bool:
        return self.value is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "grader_id": self.grader_id,
            "metric": self.metric,
            "value": self.value,
            "error": self.error,
            "detail": self.detail,
        }


class GraderError(Exception):
    """A grader could not produce a score (a judge that did not answer, malformed output): never a low score."""
