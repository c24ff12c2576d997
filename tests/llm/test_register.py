"""LLM versions in the registry: locked like the triad, validated before anything is written."""

import pytest

from tests.llm.conftest import register_llm
from tether.core.errors import ConflictError, InvalidInputError

SPEC = {"prompt": {"version": "1", "system": "You are the support assistant."}, "decoding": {"max_tokens": 12}}


def test_register_local_llm_version(registry, llm_code, tiny_model):
    mv = register_llm(registry, "helpdesk", llm_code, tiny_model, SPEC)
    assert mv.flavor == "llm" and mv.flavor_config["spec"]["prompt"]["system"] == SPEC["prompt"]["system"]
    assert [f["name"] for f in mv.output_schema["fields"]] == ["text", "finish_reason"]
    assert register_llm(registry, "helpdesk", llm_code, tiny_model, SPEC).id == mv.id  # same triad, same id
    other = register_llm(registry, "helpdesk", llm_code, tiny_model, {**SPEC, "prompt": {"version": "2"}})
    assert other.id != mv.id and other.number == 2  # a new prompt version is a new version
    model = registry.load(mv.ref)  # verified weights, the embedded engine, greedy: deterministic
    out = model.predict([{"prompt": "How do I reset my password?"}])
    assert out["text"][0] and out.equals(model.predict([{"prompt": "How do I reset my password?"}]))


def test_the_gate_rule_applies(registry, llm_code, tiny_model):
    mv = register_llm(registry, "helpdesk", llm_code, tiny_model, SPEC)
    registry.set_alias("helpdesk", "champion", mv.ref, reason="first", force=True)
    other = register_llm(registry, "helpdesk", llm_code, tiny_model, {**SPEC, "decoding": {"temperature": 0.5}})
    with pytest.raises(ConflictError, match="helpdesk has no gate policy"):
        registry.set_alias("helpdesk", "champion", other.ref, reason="no gate")


def test_bad_specs_are_refused_before_anything_is_stored(registry, llm_code, tiny_model, tmp_path):
    with pytest.raises(InvalidInputError, match="decoding.max_tokens"):
        register_llm(registry, "helpdesk", llm_code, tiny_model, {"decoding": {"max_tokens": 0}})
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    with pytest.raises(InvalidInputError, match="Hugging Face model folder"):
        register_llm(registry, "helpdesk", llm_code, notes, {})
    assert registry.versions() == []
