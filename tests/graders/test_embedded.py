"""The embedded grader on the real MiniLM: relevance, grounding, repetition order answers the way a reader would."""

from tether.graders.embedded import Embedded, non_repetition
from tether.graders.interaction import Interaction


def it(prompt: str, answer: str, **kw) -> Interaction:
    return Interaction("t", ({"role": "user", "content": prompt},), answer, **kw)


def by_metric(scores):
    return {s.metric: s for s in scores}


def test_relevance_ranks_an_on_topic_answer_above_an_off_topic_one():
    g = Embedded("g", {})
    on, off = g.grade(
        [
            it("How do I reset my password?", "Open Settings, choose Security and press Reset password."),
            it("How do I reset my password?", "The Eiffel Tower was finished in 1889 for the World's Fair."),
        ]
    )
    assert by_metric(on)["relevance"].value > by_metric(off)["relevance"].value + 0.3
    assert by_metric(on)["grounding"].value is None  # no context, no reference: does not apply


def test_grounding_in_supplied_context():
    ctx = "Refunds are issued within 5 business days. Orders ship from Lyon. Support is open Monday to Friday."
    g = Embedded("g", {"metrics": ["grounding"]})
    grounded, invented = g.grade(
        [
            it("When do I get my refund?", "Refunds are issued within 5 business days.", context=ctx),
            it("When do I get my refund?", "Your refund arrives by drone within an hour.", context=ctx),
        ]
    )
    assert grounded[0].value > invented[0].value + 0.2
    assert invented[0].detail["least_grounded"].startswith("Your refund arrives by drone")


def test_repetition_and_degeneration():
    fine, _ = non_repetition("The parcel left Lyon on Monday and reaches you on Wednesday by noon.")
    loop, detail = non_repetition("I can help. I can help. I can help. I can help.")
    stutter, _ = non_repetition("the the the the the the the the the the the the")
    assert fine == 1.0 and loop == 0.0 and detail["times"] == 4 and stutter < 0.3


def test_the_embedder_keeps_torch_to_its_thread_budget(monkeypatch):
    import pytest
    import torch

    from tether.core import Settings
    from tether.graders.embed import Embedder, limit_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("TETHER_EMBED_THREADS", "1")
        Embedder()
        assert torch.get_num_threads() == 1  # background grading leaves the other cores to the event loop
        torch.set_num_threads(2)
        limit_threads(0)  # 0: torch's own default stays
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("TETHER_EMBED_THREADS", "-1")
        with pytest.raises(ValueError, match="embed_threads"):
            Settings()
    finally:
        torch.set_num_threads(before)
