"""The deterministic checks: each property, and that a check that does not apply says so (None), not 'passed'."""

import orjson
import pytest

from tether.graders.checks import Checks
from tether.graders.interaction import Interaction

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
            "required": ["city", "population"],
            "additionalProperties": False,
        },
    },
}
TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        },
    },
)


def it(answer: str = "fine", **kw) -> Interaction:
    return Interaction("t", ({"role": "user", "content": "q"},), answer, **kw)


def scores(x: Interaction, guardrails=None) -> dict:
    return {s.metric: s for s in Checks("g", {}).one(x, guardrails)}


def test_schema_compliance_against_the_response_format():
    ok = scores(it('{"city": "Paris", "population": 2100000}', response_format=SCHEMA))["schema_valid"]
    assert ok.value == 1.0
    bad_type = scores(it('{"city": "Paris", "population": "many"}', response_format=SCHEMA))["schema_valid"]
    assert bad_type.value == 0.0 and "population" in bad_type.detail["reason"]
    not_json = scores(it("Paris has 2.1M people", response_format=SCHEMA))["schema_valid"]
    assert not_json.value == 0.0 and "not JSON" in not_json.detail["reason"]
    extra = scores(it('{"city": "Paris", "population": 1, "x": 1}', response_format=SCHEMA))["schema_valid"]
    assert extra.value == 0.0
    assert scores(it("[1]", response_format={"type": "json_object"}))["schema_valid"].value == 0.0
    assert scores(it("plain text"))["schema_valid"].value is None  # no schema asked for: does not apply


def test_tool_calls_name_and_arguments_are_checked_against_the_declared_tools():
    def call(name: str, args: str) -> tuple:
        return ({"id": "c1", "type": "function", "function": {"name": name, "arguments": args}},)

    good = it("", tools=TOOLS, tool_calls=call("lookup_order", orjson.dumps({"id": "A1"}).decode()))
    assert scores(good)["tool_calls_valid"].value == 1.0
    unknown = scores(it("", tools=TOOLS, tool_calls=call("delete_everything", "{}")))["tool_calls_valid"]
    assert unknown.value == 0.0 and "not a declared tool" in unknown.detail["reason"]
    assert scores(it("", tools=TOOLS, tool_calls=call("lookup_order", "{id:")))["tool_calls_valid"].value == 0.0
    missing = scores(it("", tools=TOOLS, tool_calls=call("lookup_order", "{}")))["tool_calls_valid"]
    assert missing.value == 0.0 and "id" in missing.detail["reason"]
    assert scores(it("no call"))["tool_calls_valid"].value is None
    assert scores(it("", finish_reason="tool_calls"))["tool_calls_valid"].value == 0.0


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I cannot assist with creating malware.", True),
        ("As an AI language model, I do not have opinions.", True),
        ("Your order A1 ships tomorrow.", False),
        ("I can help with that: the refund takes 5 days.", False),
    ],
)
def test_refusal_detection(answer, refused):
    assert scores(it(answer))["refused"].value == (1.0 if refused else 0.0)


def test_guard_rails_of_the_version_and_length_bounds():
    g = {
        "rules": [
            {"name": "no-email", "pattern": r"[\w.]+@[\w.]+", "must": "not_match"},
            {"name": "signs-off", "pattern": r"thanks", "must": "match"},
        ],
        "max_chars": 40,
    }
    s = scores(it("Write to bob@example.com. Thanks"), g)
    assert s["rule:no-email"].value == 0.0 and s["rule:signs-off"].value == 1.0 and s["length_ok"].value == 1.0
    s = scores(it("x" * 41), g)
    assert s["length_ok"].value == 0.0 and s["rule:signs-off"].value == 0.0
    assert scores(it("short"))["length_ok"].value is None  # no bounds in the spec


def test_empty_and_truncated_answers_are_incomplete():
    assert scores(it(""))["complete"].value == 0.0
    assert scores(it("The answer is", finish_reason="length"))["complete"].value == 0.0
    assert scores(it("half", status="partial"))["complete"].value == 0.0
    assert scores(it("A whole answer."))["complete"].value == 1.0


def test_a_broken_schema_in_a_version_is_named_not_counted_as_failures_silently():
    broken = {"type": "json_schema", "json_schema": {"schema": {"type": "no-such-type"}}}
    s = scores(it("{}", response_format=broken))["schema_valid"]
    assert s.value == 0.0 and "not a JSON Schema" in s.detail["reason"]
