"""The embedded engine: prefix KV reuse gives exactly the tokens decoding without it gives."""

import torch

from tether.llm.engine import Engine
from tether.llm.kvcache import PrefixCache, block_hashes


def test_block_hash_chain_names_the_whole_prefix():
    a = block_hashes(list(range(40)), 16)
    assert len(a) == 2  # the trailing 8 tokens are no block
    b = block_hashes([99, *range(1, 40)], 16)
    assert a[0] != b[0] and a[1] != b[1]  # a change in block 0 renames every later block
    c = block_hashes([*range(20), 7, *range(21, 40)], 16)
    assert a[0] == c[0] and a[1] != c[1]


def _block(nbytes_floats: int):
    t = torch.zeros(nbytes_floats // 4 // 2, dtype=torch.float32)
    return [t], [t.clone()]


def test_lru_is_bounded_by_bytes_and_evicts_leaves_before_parents():
    cache = PrefixCache(block_tokens=2, max_bytes=4 * 1024)
    chain = block_hashes(list(range(8)), 2)  # four blocks
    cache.put_chain(chain, {i: _block(1024) for i in range(4)})
    assert len(cache) == 4 and cache.bytes == 4096
    other = block_hashes([50, 51, 52, 53], 2)
    cache.put_chain(other, {0: _block(1024)})  # over the cap: the oldest entry goes
    assert cache.bytes <= 4096
    found = cache.match(chain)
    # The chain's first block is always more recent than its descendants: what is left is still a prefix.
    assert len(found) >= 1
    assert cache.evictions == 1
    assert len(cache.match(chain)) == len(found)


def test_reuse_gives_the_same_tokens(tiny_model):
    engine = Engine(tiny_model, block_tokens=16)
    system = "You are the support assistant. Answer briefly and politely. " * 12
    questions = ["How do I reset my password?", "How do I cancel the refund?", "How do I renew my order?"]
    for q in questions:
        ids = engine.encode(engine.render([{"role": "system", "content": system}, {"role": "user", "content": q}]))
        plain = engine.complete(ids, max_tokens=24, reuse=False)
        reused = engine.complete(ids, max_tokens=24)
        again = engine.complete(ids, max_tokens=24)
        assert plain.output_ids == reused.output_ids == again.output_ids, q
        assert again.cached_tokens >= len(ids) - 16 - 1  # all full blocks but the last token's
        sampled = engine.complete(ids, max_tokens=24, temperature=0.9, seed=5, reuse=False)
        assert engine.complete(ids, max_tokens=24, temperature=0.9, seed=5).output_ids == sampled.output_ids
    # The system prompt's blocks are shared by the three questions.
    stats = engine.prefix.stats()
    assert stats["hits"] > 0 and stats["blocks"] < 3 * (len(ids) // 16)


def test_stop_sequences_and_length(tiny_model):
    engine = Engine(tiny_model)
    ids = engine.encode(engine.render([{"role": "user", "content": "How do I reset my password?"}]))
    full = engine.complete(ids, max_tokens=40)
    assert full.finish_reason == "stop" and full.text
    word = full.text.split()[2]
    cut = engine.complete(ids, max_tokens=40, stop=[word])
    assert cut.text == full.text[: full.text.index(word)] and cut.finish_reason == "stop"
    short = engine.complete(ids, max_tokens=2)
    assert short.finish_reason == "length" and len(short.output_ids) == 2
