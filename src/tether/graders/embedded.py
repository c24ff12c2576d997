"""The embedded grading model: scores from the bundled MiniLM, offline, a batch at a time.

    relevance       cosine of the prompt's and the answer's embeddings, floored at 0: an answer about something
                    else scores near 0, an on-topic one 0.4 and up
    grounding       for each sentence of the answer, its best cosine to a sentence of the supplied context (or
                    the reference answer); the mean over the answer's sentences, with the least grounded
                    sentence in the detail. Not applicable without context or reference
    non_repetition  1 minus the share of repeated word 3-grams, and 0 for an answer that repeats a sentence
                    three times or more: the loops and stutters of a degenerating model (no embedding needed)

All texts of a batch go through the embedder in one call (the expensive part), so throughput grows with the
batch; ``bench/llm_evals.py`` measures interactions per second on one core.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from tether.graders.interaction import Interaction, Score

METRICS = ("relevance", "grounding", "non_repetition")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")
MAX_SENTENCES = 24  # per side: grounding of a long answer looks at its first sentences


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) >= 3][:MAX_SENTENCES]


def non_repetition(text: str) -> tuple[float, dict[str, Any]]:
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < 6:
        return 1.0, {}
    grams = list(zip(words, words[1:], words[2:], strict=False))
    repeated = 1.0 - len(set(grams)) / len(grams)
    top = Counter(s.lower() for s in sentences(text)).most_common(1)
    if top and top[0][1] >= 3:
        return 0.0, {"repeated_sentence": top[0][0][:120], "times": top[0][1]}
    return round(1.0 - repeated, 6), {"repeated_3gram_share": round(repeated, 4)}


class Embedded:
    def __init__(self, grader_id: str, config: dict[str, Any], embedder: Any = None) -> None:
        self.grader_id = grader_id
        self.enabled = tuple(config.get("metrics") or METRICS)
        self._embedder = embedder

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from tether.graders.embed import shared

            self._embedder = shared()
        return self._embedder

    def metrics(self) -> list[str]:
        return list(self.enabled)

    def grade(self, items: list[Interaction]) -> list[list[Score]]:
        texts: dict[str, int] = {}

        def idx(t: str) -> int:
            return texts.setdefault(t, len(texts))

        plan = []
        for it in items:
            p, a = idx(it.prompt or it.system), idx(it.answer)
            support = it.context or it.reference
            a_sents = [idx(s) for s in sentences(it.answer)] if support and "grounding" in self.enabled else []
            c_sents = [idx(s) for s in sentences(support)] if a_sents and support else []
            plan.append((p, a, a_sents, c_sents))
        names = list(texts)
        vecs = self.embedder.encode(names) if names else np.zeros((0, 384), dtype=np.float32)
        out = []
        for it, (p, a, a_sents, c_sents) in zip(items, plan, strict=True):
            scores = []
            if "relevance" in self.enabled:
                if not it.answer.strip():
                    scores.append(Score(self.grader_id, "relevance", 0.0, detail={"reason": "empty answer"}))
                else:
                    cos = float(vecs[p] @ vecs[a])
                    scores.append(Score(self.grader_id, "relevance", round(max(0.0, min(1.0, cos)), 6)))
            if "grounding" in self.enabled:
                if not (it.context or it.reference):
                    scores.append(Score(self.grader_id, "grounding", None))
                elif not a_sents or not c_sents:
                    scores.append(Score(self.grader_id, "grounding", 0.0, detail={"reason": "nothing to compare"}))
                else:
                    sims = vecs[a_sents] @ vecs[c_sents].T
                    best = np.clip(sims.max(axis=1), 0.0, 1.0)
                    worst = int(best.argmin())
                    detail = {"least_grounded": names[a_sents[worst]][:160], "its_support": float(best[worst])}
                    scores.append(Score(self.grader_id, "grounding", round(float(best.mean()), 6), detail=detail))
            if "non_repetition" in self.enabled:
                v, detail = non_repetition(it.answer)
                scores.append(Score(self.grader_id, "non_repetition", v, detail=detail))
            out.append(scores)
        return out
