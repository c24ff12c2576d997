"""The embedded engine: a Hugging Face causal LM from a local folder, decoding with prefix KV reuse.

`Engine.generate` renders nothing: it takes token ids and yields `Step`s (the token, the new text, and at the
end why it stopped). Before the prefill it looks the prompt's block chain up in the process-wide
`PrefixCache` (`tether.llm.kvcache`), rebuilds a `DynamicCache` from the longest cached run of blocks and
computes only the rest; the new full blocks are then added to the cache. The last prompt token is never
taken from the cache, since its logits start the decoding.

The model runs in one thread at a time (a lock): on CPU the matrix kernels already use the cores, and
decoding steps of two requests interleaved on one model would only thrash its caches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.core.errors import InvalidInputError
from tether.llm.kvcache import PrefixCache, block_hashes
from tether.registry.flavors.base import require


@dataclass
class Step:
    token: int | None
    text: str
    finish_reason: str | None = None


@dataclass
class Generation:
    prompt_tokens: int
    cached_tokens: int = 0
    output_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"
    first_token_s: float | None = None


class Engine:
    def __init__(self, path: str | Path, *, block_tokens: int = 16, kv_cache_bytes: int = 256 << 20) -> None:
        torch = require("torch", "the embedded LLM engine", "llm")
        transformers = require("transformers", "the embedded LLM engine", "llm")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise InvalidInputError(
                f"{path} is not a Hugging Face model folder (no config.json)",
                hint="register the folder written by save_pretrained() of the model and its tokenizer",
            )
        self.torch = torch
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path)
        self.model.eval()
        cfg = self.model.config
        self.max_positions = int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 0) or 0)
        self.eos = {t for t in (self.tokenizer.eos_token_id,) if t is not None}
        self.prefix = PrefixCache(block_tokens, kv_cache_bytes) if kv_cache_bytes > 0 else None
        self.block_tokens = block_tokens
        self._lock = threading.Lock()
        self._cache_cls = transformers.DynamicCache

    # -- text <-> tokens ----------------------------------------------------------------------------------
    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, add_generation: bool = True
    ) -> str:
        """The prompt text of a conversation, by the tokenizer's chat template (tools passed through)."""
        if self.tokenizer.chat_template:
            text: str = self.tokenizer.apply_chat_template(
                messages, tools=tools or None, add_generation_prompt=add_generation, tokenize=False
            )
            return text
        # No template: plain role-prefixed turns (a base model).
        body = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in messages)
        return body + ("assistant: " if add_generation else "")

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    # -- decoding -----------------------------------------------------------------------------------------
    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        reuse: bool = True,
        info: Generation | None = None,
        salt: bytes = b"",
        shared_tokens: int = 0,
    ) -> Iterator[Step]:
        """Decode up to ``max_tokens`` tokens after ``prompt_ids``; ``info`` (if given) receives the counts.
        ``salt`` partitions the prefix cache beyond the first ``shared_tokens`` (see `block_hashes`)."""
        torch = self.torch
        ids = list(prompt_ids)
        if not ids:
            raise InvalidInputError("the prompt is empty")
        if self.max_positions and len(ids) + max_tokens > self.max_positions:
            raise InvalidInputError(
                f"prompt of {len(ids)} tokens plus max_tokens {max_tokens} exceeds the model's context of "
                f"{self.max_positions} tokens",
                hint="shorten the conversation or lower max_tokens",
            )
        gen = info if info is not None else Generation(prompt_tokens=len(ids))
        gen.prompt_tokens = len(ids)
        started = time.perf_counter()
        generator = None
        if temperature > 0:
            generator = torch.Generator().manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
        with self._lock, torch.inference_mode():
            hashes = block_hashes(ids[: len(ids) - 1], self.block_tokens, salt=salt, shared=shared_tokens)
            cache, cached = self._prefill_cache(hashes, reuse)
            gen.cached_tokens = cached
            out = self.model(input_ids=torch.tensor([ids[cached:]]), cache=cache, use_cache=True)
            if reuse and self.prefix is not None:
                self._store(hashes, cache, cached)
            logits = out.logits[0, -1]
            text = ""
            for _ in range(max_tokens):
                token = self._pick(logits, temperature, top_p, generator)
                if gen.first_token_s is None:
                    gen.first_token_s = time.perf_counter() - started
                if token in self.eos:
                    gen.finish_reason = "stop"
                    break
                gen.output_ids.append(token)
                full = self.tokenizer.decode(gen.output_ids, skip_special_tokens=True)
                if full.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
                    new = ""
                else:
                    new, text = full[len(text) :], full
                hit = next((s for s in stop if s and s in text), None)
                if hit is not None:
                    cut = text.index(hit)
                    new = new[: max(0, len(new) - (len(text) - cut))]
                    text = text[:cut]
                    gen.text, gen.finish_reason = text, "stop"
                    if new:
                        yield Step(token, new)
                    break
                gen.text = text
                yield Step(token, new)
                out = self.model(input_ids=torch.tensor([[token]]), cache=out.cache, use_cache=True)
                logits = out.logits[0, -1]
            else:
                gen.finish_reason = "length"
        yield Step(None, "", gen.finish_reason)

    def complete(self, prompt_ids: Sequence[int], *, info: Generation | None = None, **kwargs: Any) -> Generation:
        gen = info if info is not None else Generation(prompt_tokens=len(prompt_ids))
        for _ in self.generate(prompt_ids, info=gen, **kwargs):
            pass
        return gen

    def _prefill_cache(self, hashes: list[bytes], reuse: bool) -> tuple[Any, int]:
        """``hashes``: the prompt's block chain without its last token, whose logits pick the first output."""
        cache = self._cache_cls()
        if not reuse or self.prefix is None:
            return cache, 0
        blocks = self.prefix.match(hashes)
        if not blocks:
            return cache, 0
        torch = self.torch
        for layer in range(len(blocks[0].keys)):
            cache.update(
                torch.cat([b.keys[layer] for b in blocks], dim=2),
                torch.cat([b.values[layer] for b in blocks], dim=2),
                layer,
            )
        return cache, len(blocks) * self.block_tokens

    def _store(self, hashes: list[bytes], cache: Any, cached: int) -> None:
        assert self.prefix is not None
        first_new = cached // self.block_tokens
        b = self.block_tokens
        new = {}
        for i in range(first_new, len(hashes)):
            keys = [layer.keys[:, :, i * b : (i + 1) * b].clone() for layer in cache.layers]
            values = [layer.values[:, :, i * b : (i + 1) * b].clone() for layer in cache.layers]
            new[i] = (keys, values)
        self.prefix.put_chain(hashes, new)

    def _pick(self, logits: Any, temperature: float, top_p: float, generator: Any) -> int:
        torch = self.torch
        if temperature <= 0:
            return int(torch.argmax(logits).item())
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        if top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p
            sorted_p = sorted_p * keep
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
            probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=generator).item())
