"""Prompt drift on real MiniLM embeddings of seeded prompt streams: the false-alarm rate of stable streams over
many null runs, and detection of a topic shift at the default 30-day budget's level."""

import numpy as np
import pytest

from tether.graders.embed import shared
from tether.llm.scenarios import SHIFTED, prompts
from tether.monitor import prompt_drift
from tether.monitor.llm_config import PromptDrift

pytest.importorskip("sentence_transformers", reason="the llm extra is not installed")


@pytest.fixture(scope="module")
def emb():
    return shared()


def test_stable_streams_alarm_at_most_at_their_level(emb):
    alpha = 0.02
    p_values = []
    for s in range(150):
        r = prompt_drift.two_sample(emb.encode(prompts(100 + s, 150)), emb.encode(prompts(9000 + s, 150)), seed=s)
        p_values.append(r.p_value)
        assert r.statistic < PromptDrift().min_shift  # null MMD^2 stays under the effect that matters
    assert np.mean(np.array(p_values) < alpha) <= 2 * alpha  # 150 runs: the level with its sampling error


def test_a_topic_shift_is_found_at_the_default_level_with_examples_and_named_topics(emb):
    d = PromptDrift()
    alpha = 1.0 / (30 * 86400 / d.check_seconds)  # the default budget, one stream
    for s in range(10):
        texts = prompts(500 + s, 120, SHIFTED)
        r = prompt_drift.two_sample(emb.encode(prompts(300 + s, 150)), emb.encode(texts), live_texts=texts, seed=s)
        assert r.p_value < alpha and r.statistic >= d.min_shift, (s, r.p_value, r.statistic)
    moved = " ".join(e["prompt"] for e in r.examples).lower() + " ".join(t["name"] for t in r.topics).lower()
    assert any(w in moved for w in ("bitcoin", "ethereum", "usdc", "crypto", "down", "outage", "error", "loads"))
    assert all(not any(w in e["prompt"].lower() for w in ("password", "refund")) for e in r.examples)
