import pytest

from tether.core.errors import InvalidInputError
from tether.llm.spec import LLMSpec


def test_defaults_are_strict_and_complete():
    spec = LLMSpec.parse({})
    assert spec.backend.kind == "local"
    assert spec.decoding.temperature == 0
    assert spec.cache.false_hit_budget == 0.01
    assert not spec.cache.allow_sampled and not spec.cache.semantic_multi_turn


def test_errors_name_the_field_and_the_rule(tmp_path):
    with pytest.raises(InvalidInputError, match=r"decoding.temperature: .*less than or equal to 2"):
        LLMSpec.parse({"decoding": {"temperature": 3}})
    with pytest.raises(InvalidInputError, match=r"backend.*endpoints"):
        LLMSpec.parse({"backend": {"kind": "openai"}})
    with pytest.raises(InvalidInputError, match=r"cache.semantc"):
        LLMSpec.parse({"cache": {"semantc": True}})
    with pytest.raises(InvalidInputError, match=r"prompt.tools\[0\]"):
        LLMSpec.parse({"prompt": {"tools": [{"name": "x"}]}})
    with pytest.raises(InvalidInputError, match="not found"):
        LLMSpec.parse(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: [1, 2\n")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        LLMSpec.parse(bad)


def test_prices():
    p = LLMSpec.parse({"prices": {"input_per_1k": 1.0, "cached_input_per_1k": 0.5, "output_per_1k": 2.0}}).prices
    assert p.cost(1000, 400, 500) == pytest.approx(0.6 + 0.2 + 1.0)
