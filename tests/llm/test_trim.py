"""Context trimming: pinned prefix untouched, latest turns kept, the least relevant middle dropped."""

import pytest

from tether.graders.embed import shared
from tether.llm.trim import TrimError, trim


def count(msgs):
    return sum(len(m["content"].split()) + 4 for m in msgs)


def conversation():
    msgs = [{"role": "system", "content": "You are the support assistant. " * 5}]
    topics = [
        "my invoice is wrong",
        "the weather is nice today",
        "refund for the invoice please",
        "what is your favourite colour",
        "billing history shows two invoices",
        "tell me a joke",
    ]
    for t in topics:
        msgs.append({"role": "user", "content": t})
        msgs.append({"role": "assistant", "content": f"About {t}: " + "details " * 6})
    msgs.append({"role": "user", "content": "Why was my invoice charged twice?"})
    return msgs


def test_nothing_to_trim():
    msgs = conversation()[:3]
    out, report = trim(msgs, budget=1000, keep_last=2, block_tokens=4, count=count)
    assert out == msgs and not report.trimmed and report.tokens_after == report.tokens_before


def test_drops_least_relevant_middle_keeps_pinned_and_latest():
    msgs = conversation()
    emb = shared()
    out, report = trim(msgs, budget=120, keep_last=2, block_tokens=4, count=count, embed=emb.encode)
    assert report.trimmed and report.tokens_after <= 120
    assert out[0] == msgs[0] and out[-1] == msgs[-1] and out[-2] == msgs[-2]
    kept = {m["content"] for m in out}
    # Relevance to "invoice charged twice": invoice turns survive, the weather and the joke go first.
    assert "the weather is nice today" not in kept and "tell me a joke" not in kept
    assert any("invoice" in c for c in kept - {msgs[-1]["content"]})
    assert report.pinned_blocks == count([msgs[0]]) // 4
    assert all(msgs[i] not in out for i in report.dropped)


def test_tool_calls_go_with_their_answers():
    msgs = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "look up order 1 " * 10},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "order", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "order data " * 10},
        {"role": "user", "content": "thanks, and my invoice?"},
    ]
    out, report = trim(msgs, budget=30, keep_last=1, block_tokens=4, count=count)
    assert (2 in report.dropped) == (3 in report.dropped)


def test_refuses_what_cannot_fit():
    msgs = [{"role": "system", "content": "x " * 50}, {"role": "user", "content": "hello"}]
    with pytest.raises(TrimError, match="needs at least"):
        trim(msgs, budget=40, keep_last=2, block_tokens=4, count=count)
