"""Context trimming: fit a conversation into its version's input-token budget without touching what is pinned.

Pinned: the leading system/developer messages (the version's system prompt first), the tools and the response
schema. Kept: the latest ``keep_last_turns`` messages (fewer only if they alone overflow; never fewer than the
latest user message). The middle is ranked by the cosine similarity of each message's embedding to the latest
user message and dropped, least relevant first, until the rest fits. An assistant message that called tools
and the tool answers to it go or stay together, so the trimmed conversation is still valid for any backend.

The pinned prefix is never modified, so its token blocks (``block_tokens``) keep their chain hashes and stay
in the prefix KV cache and in the backend's own prefix cache; ``pinned_blocks`` in the report says how many
whole blocks that is. A conversation that cannot fit even with everything optional dropped is refused
(`TrimError`), never sent truncated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

Count = Callable[[list[dict[str, Any]]], int]
Embed = Callable[[list[str]], np.ndarray]


class TrimError(Exception):
    pass


@dataclass
class TrimReport:
    tokens_before: int
    tokens_after: int
    budget: int
    pinned_tokens: int
    pinned_blocks: int
    dropped: list[int] = field(default_factory=list)  # indices into the request's messages

    @property
    def trimmed(self) -> bool:
        return bool(self.dropped)

    def to_json(self) -> dict[str, Any]:
        return {
            "trimmed": self.trimmed,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "budget": self.budget,
            "pinned_tokens": self.pinned_tokens,
            "pinned_blocks": self.pinned_blocks,
            "dropped_messages": self.dropped,
        }


def _units(messages: list[dict[str, Any]], start: int) -> list[list[int]]:
    """Indices from ``start`` grouped so that an assistant tool call and its tool answers stay together."""
    units: list[list[int]] = []
    for i in range(start, len(messages)):
        if messages[i]["role"] == "tool" and units and messages[units[-1][0]].get("tool_calls"):
            units[-1].append(i)
        else:
            units.append([i])
    return units


def trim(
    messages: list[dict[str, Any]],
    *,
    budget: int,
    keep_last: int,
    block_tokens: int,
    count: Count,
    extra_tokens: int = 0,
    embed: Embed | None = None,
) -> tuple[list[dict[str, Any]], TrimReport]:
    """``count(msgs)`` gives the tokens of a list of messages; ``extra_tokens`` the tools and schema."""
    pinned_n = 0
    while pinned_n < len(messages) and messages[pinned_n]["role"] in ("system", "developer"):
        pinned_n += 1
    sizes = [count([m]) for m in messages]
    pinned_tokens = sum(sizes[:pinned_n]) + extra_tokens
    total = pinned_tokens + sum(sizes[pinned_n:])
    report = TrimReport(total, total, budget, pinned_tokens, pinned_tokens // block_tokens)
    if total <= budget:
        return messages, report
    units = _units(messages, pinned_n)
    if not units:
        raise TrimError(
            f"the pinned system prompt, tools and schema alone take {pinned_tokens} tokens; the version allows {budget}"
        )
    last_user = max((u for u in units if messages[u[0]]["role"] == "user"), key=lambda u: u[0], default=units[-1])
    # The latest turns, as many of `keep_last` as fit (always the latest user message and what follows it).
    tail_start = units.index(last_user)
    kept_tail = units[tail_start:]
    floor_tokens = pinned_tokens + sum(sizes[i] for u in kept_tail for i in u)
    if floor_tokens > budget:
        raise TrimError(
            f"the conversation needs at least {floor_tokens} tokens (pinned prefix {pinned_tokens} + the latest "
            f"user message and what follows it); the version allows {budget}"
        )
    body = units[:tail_start]
    # Extend the kept tail backwards up to keep_last messages while it fits.
    while body and sum(len(u) for u in kept_tail) < keep_last:
        cand = body[-1]
        extra = sum(sizes[i] for i in cand)
        if floor_tokens + extra > budget:
            break
        kept_tail.insert(0, body.pop())
        floor_tokens += extra
    # Rank the middle by relevance to the latest user message; keep the most relevant that fit.
    if body:
        query = messages[last_user[0]]["content"] or ""
        texts = [" ".join(_text(messages[i]) for i in u) for u in body]
        if embed is not None:
            vecs = embed([query, *texts])
            scores = (vecs[1:] @ vecs[0]).tolist()
        else:  # no embedder: prefer the most recent
            scores = [float(k) for k in range(len(body))]
        # Drop the least relevant first until the rest fits.
        order = sorted(range(len(body)), key=lambda k: scores[k])
        over = floor_tokens + sum(sizes[i] for u in body for i in u) - budget
        keep = set(range(len(body)))
        for k in order:
            if over <= 0:
                break
            keep.discard(k)
            over -= sum(sizes[i] for i in body[k])
        dropped = [i for k, u in enumerate(body) if k not in keep for i in u]
    else:
        dropped = []
    out = [m for i, m in enumerate(messages) if i not in set(dropped)]
    report.dropped = dropped
    report.tokens_after = pinned_tokens + sum(sizes[i] for i in range(pinned_n, len(messages)) if i not in dropped)
    return out, report


def _text(m: dict[str, Any]) -> str:
    text = str(m.get("content") or "")
    if m.get("tool_calls"):
        text += " " + orjson.dumps(m["tool_calls"]).decode()
    return text
