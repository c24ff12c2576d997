"""The meaning guard of the semantic cache: a change of meaning that an embedding glosses over.

Two prompts close in embedding space may still ask different things: a negation on one side only ("can I" /
"can't I"), different numbers, a content word replaced by one of another meaning ("password" / "email"), or the
same content words in another order ("Paris to London" / "London to Paris"). `meaning_guard` names the first such
change it finds, or returns None; the semantic cache serves a neighbour only when it returns None.
"""

from __future__ import annotations

import re
from collections.abc import Callable

WORD_AGREEMENT = 0.75

_NEG = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "without", "cannot"}
_CONTRACTIONS = re.compile(r"\b(\w+)n['’]t\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?|\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000, "million": 10**6}
_STOP = set(
    [
        "a",
        "an",
        "the",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "our",
        "us",
        "you",
        "your",
        "yours",
        "he",
        "she",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "to",
        "of",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "into",
        "about",
        "over",
        "under",
        "up",
        "down",
        "out",
        "off",
        "than",
        "then",
        "so",
        "if",
        "or",
        "and",
        "but",
        "how",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "whose",
        "there",
        "here",
        "please",
        "pls",
        "any",
        "some",
        "all",
        "just",
        "also",
        "very",
        "really",
        "much",
        "many",
        "more",
        "most",
        "less",
        "least",
        "own",
        "same",
        "such",
        "too",
        "get",
        "got",
        "way",
        "ways",
        "tell",
        "know",
        "want",
        "need",
        "like",
        "let",
        "s",
        "t",
        "d",
        "ll",
        "ve",
        "re",
        "m",
        "o",
        "y",
    ]
)


def _words(text: str) -> tuple[list[str], set[str], list[str], dict[str, str]]:
    """(content word stems in order, negation markers, numbers, stem -> a word it came from)."""
    expanded = _CONTRACTIONS.sub(
        lambda m: f"{m.group(1)} not",
        text.replace("can't", "can not")
        .replace("won't", "will not")
        .replace("Can't", "Can not")
        .replace("Won't", "Will not"),
    )
    tokens = _WORD.findall(expanded)
    content: list[str] = []
    neg: set[str] = set()
    nums: list[str] = []
    surface: dict[str, str] = {}
    for tok in tokens:
        low = tok.lower()
        if low in _NEG:
            neg.add("not")
        elif tok[0].isdigit():
            nums.append(tok.replace(",", ""))
        elif low in _NUMBER_WORDS:
            nums.append(str(_NUMBER_WORDS[low]))
        elif low not in _STOP and len(low) > 1:
            stem = _stem(low)
            content.append(stem)
            surface.setdefault(stem, low)
    return content, neg, nums, surface


def _stem(w: str) -> str:
    """A crude suffix stripper, enough for "changing" ~ "change" and "shipping" ~ "ship" (a full stemmer would be
    a dependency for four rules)."""
    for suf in ("ing", "ed", "es", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: -len(suf)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # shipp -> ship
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]  # change -> chang, like changing
    return w


def meaning_guard(a: str, b: str, similar: Callable[[str, str], float] | None = None) -> str | None:
    """Why two near-identical prompts may still ask different things, or None if no reason is found.

    ``similar(w1, w2)`` is a word similarity (MiniLM on single words in the gateway); without it any content
    word replaced by another counts as a change of meaning.
    """
    ca, na, ma, wa = _words(a)
    cb, nb, mb, wb = _words(b)
    if na != nb:
        return "negation"
    if sorted(ma) != sorted(mb):
        return "numbers"
    sa, sb = set(ca), set(cb)
    only_a, only_b = sa - sb, sb - sa
    if only_a and only_b:
        # A substitution: every replaced word must have a counterpart of the same meaning on the other side.
        def best(w: str, others: set[str], mine: dict[str, str], theirs: dict[str, str]) -> float:
            return max((similar(mine[w], theirs[v]) if similar else 0.0) for v in others)

        for w in only_a:
            if best(w, only_b, wa, wb) < WORD_AGREEMENT:
                return f"content word {wa[w]!r}"
        for v in only_b:
            if best(v, only_a, wb, wa) < WORD_AGREEMENT:
                return f"content word {wb[v]!r}"
    shared = [w for w in ca if w in sb]
    shared_b = [w for w in cb if w in sa]
    if len(set(shared)) >= 2 and _dedupe(shared) != _dedupe(shared_b):
        return "word order"
    return None


def _dedupe(ws: list[str]) -> list[str]:
    seen: set[str] = set()
    return [w for w in ws if not (w in seen or seen.add(w))]  # type: ignore[func-returns-value]
