"""Time to first token with and without prefix KV reuse, at 256, 1,000 and 2,000-token static prefixes.

The embedded engine (`tether.llm.engine`) on a GPT-2 built here offline (6 layers, 384 wide, 4,096
positions: small enough for a 2-core CPU, big enough that the prefill dominates). For each prefix length,
a system prompt of that many tokens is followed by 12 different user questions; each question is decoded once
with reuse off and once with reuse on (after the prefix has been seen once), alternating, in the same process.
Printed: median time to first token, the ratio, the prompt tokens taken from the cache, and a check that
greedy decoding gave the same tokens both ways.

    .venv/bin/python bench/prefix.py [--layers 6] [--width 384]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tether.llm.engine import Engine
from tether.llm.tiny import build_tiny_gpt2

QUESTIONS = [
    f"How do I {v} {s}?"
    for v in ("reset", "cancel", "renew", "update")
    for s in ("my order", "the invoice", "my password")
]


def system_prompt(engine: Engine, tokens: int) -> str:
    unit = "Answer as the support assistant, politely, citing the policy section and the account state. "
    text = ""
    while engine.count(text) < tokens:
        text += unit
    ids = engine.encode(text)[:tokens]
    return str(engine.tokenizer.decode(ids))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--max-tokens", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_gpt2(Path(tmp) / "m", n_layer=args.layers, n_embd=args.width, n_head=6, train_steps=0)
        engine = Engine(path, block_tokens=16, kv_cache_bytes=512 << 20)
        print(f"model: GPT-2 {args.layers} layers x {args.width}, CPU, block 16 tokens")
        print(f"{'prefix':>7} {'TTFT off':>10} {'TTFT on':>10} {'ratio':>7} {'cached':>8}  same tokens")
        for n in (256, 1000, 2000):
            system = system_prompt(engine, n)
            off, on, cached, same = [], [], [], True
            warm = [{"role": "system", "content": system}, {"role": "user", "content": "hello"}]
            engine.complete(engine.encode(engine.render(warm)), max_tokens=1)  # the prefix is seen once
            for q in QUESTIONS:
                ids = engine.encode(
                    engine.render([{"role": "system", "content": system}, {"role": "user", "content": q}])
                )
                a = engine.complete(ids, max_tokens=args.max_tokens, reuse=False)
                b = engine.complete(ids, max_tokens=args.max_tokens, reuse=True)
                off.append(a.first_token_s or 0.0)
                on.append(b.first_token_s or 0.0)
                cached.append(b.cached_tokens)
                same &= a.output_ids == b.output_ids
            m_off, m_on = statistics.median(off), statistics.median(on)
            print(
                f"{n:>7} {m_off * 1000:>8.1f}ms {m_on * 1000:>8.1f}ms {m_off / m_on:>6.1f}x "
                f"{statistics.median(cached):>8.0f}  {same}"
            )
        print("prefix cache:", engine.prefix.stats() if engine.prefix else None)


if __name__ == "__main__":
    main()
