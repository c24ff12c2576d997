"""The LLM judge behind a real OpenAI-compatible HTTP server: structured scores, malformed output as an error
(never a low score), bounded retries, repeats near the threshold with their agreement."""

import asyncio
import socket

from tether.graders.interaction import Interaction
from tether.graders.judge import Judge

IT = Interaction("t1", ({"role": "user", "content": "Where is my parcel?"},), "It ships tomorrow from Lyon.")


def judge(url: str, **kw) -> Judge:
    return Judge("jid", {"endpoint": url, "model": "judge-1", **kw})


def run(j: Judge, items=(IT,)):
    return asyncio.run(j.grade(list(items)))


def test_a_structured_score_is_mapped_to_the_unit_interval_and_the_schema_is_sent(judge_server):
    judge_server.script = lambda body, n: '{"score": 4, "reason": "helpful"}'
    [[s]] = run(judge(judge_server.url))
    assert s.value == 0.75 and s.error is None
    sent = judge_server.requests[0]
    assert sent["response_format"]["type"] == "json_schema" and sent["temperature"] == 0.0
    assert "It ships tomorrow" in sent["messages"][1]["content"]


def test_malformed_output_is_retried_then_recorded_as_an_error_never_a_score(judge_server):
    judge_server.script = lambda body, n: "I think it deserves a 4"
    j = judge(judge_server.url, retries=2)
    [[s]] = run(j)
    assert s.value is None and s.error.startswith("malformed") and len(judge_server.requests) == 3
    judge_server.requests.clear()
    judge_server.script = lambda body, n: '{"score": 9, "reason": "off the scale"}'  # breaks the schema's maximum
    [[s]] = run(judge(judge_server.url, retries=1))
    assert s.value is None and "rubric schema" in s.error and len(judge_server.requests) == 2
    # A malformed first answer and a good retry: the retry's score.
    judge_server.requests.clear()
    judge_server.script = lambda body, n: "nonsense" if n == 1 else '{"score": 5, "reason": "ok"}'
    [[s]] = run(judge(judge_server.url))
    assert s.value == 1.0


def test_an_endpoint_that_does_not_answer_is_a_grader_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    j = judge(f"http://127.0.0.1:{port}/v1", timeout_s=2)
    [[s]] = run(j)
    assert s.value is None and s.error.startswith("unavailable") and j.usage.errors == 1


def test_repeats_near_the_threshold_report_their_agreement(judge_server):
    answers = iter(['{"score": 3, "reason": "a"}', '{"score": 4, "reason": "b"}', '{"score": 2, "reason": "c"}'])
    judge_server.script = lambda body, n: next(answers)
    [[s]] = run(judge(judge_server.url, repeats=3, near=0.2, threshold=0.5))
    assert s.detail["repeats"] == [0.5, 0.75, 0.25] and s.value == 0.5
    assert abs(s.detail["agreement"] - 2 / 3) < 1e-3
    assert [r["temperature"] for r in judge_server.requests] == [0.0, 0.7, 0.7]
    # Far from the threshold: judged once.
    judge_server.requests.clear()
    judge_server.script = lambda body, n: '{"score": 5, "reason": "clear"}'
    [[s]] = run(judge(judge_server.url, repeats=3, near=0.2))
    assert len(judge_server.requests) == 1 and "repeats" not in s.detail
