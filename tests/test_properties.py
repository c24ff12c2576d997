"""Property-based tests (hypothesis) of the parsers and proofs hostile input reaches first:

* Merkle proofs: every inclusion and consistency proof of every tree verifies, and a proof with any byte
  changed, for another index, or against another root never does;
* payload validation: any JSON value as a record gives violations or none, never an exception, and a record
  the schema accepts has only fields the schema names, of the types it names;
* the LLM protocol parser: any JSON body is a `ChatRequest` or a `RequestError` (a 400 that says what was
  wrong), never anything else.
"""

from __future__ import annotations

import itertools
import math

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra (make test installs it)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tether.audit.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion  # noqa: E402
from tether.llm.protocol import RequestError, parse_chat  # noqa: E402
from tether.serving.contract import InputValidator  # noqa: E402

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _tree(leaves: list[bytes]) -> MerkleTree:
    t = MerkleTree()
    for leaf in leaves:
        t.append(leaf)
    return t


@FAST
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_inclusion_proof_verifies_and_no_altered_one_does(leaves, data):
    t = _tree(leaves)
    size = data.draw(st.integers(1, len(leaves)))
    index = data.draw(st.integers(0, size - 1))
    root = t.root(size)
    proof = t.inclusion_proof(index, size)
    leaf = leaf_hash(leaves[index])
    assert verify_inclusion(index, size, leaf, proof, root)
    assert not verify_inclusion(index, size, leaf_hash(leaves[index] + b"x"), proof, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [bytes([p[0] ^ 1]) + p[1:] if i == k else p for i, p in enumerate(proof)]
        assert not verify_inclusion(index, size, leaf, bad, root)
    other = data.draw(st.integers(0, size - 1))
    if leaf_hash(leaves[other]) != leaf:
        assert not verify_inclusion(other, size, leaf, proof, root)


@FAST
@given(st.lists(st.binary(max_size=8), min_size=2, max_size=40), st.data())
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(leaves, data):
    t = _tree(leaves)
    second = data.draw(st.integers(2, len(leaves)))
    first = data.draw(st.integers(1, second - 1))
    proof = t.consistency_proof(first, second)
    assert verify_consistency(first, second, proof, t.root(first), t.root(second))
    rewritten = _tree([b"rewritten", *leaves[1:]])  # the same sizes, the first record changed
    assert not verify_consistency(first, second, proof, rewritten.root(first), t.root(second))


SCHEMA = {
    "fields": [
        {"name": "amount", "type": "float", "minimum": 0},
        {"name": "country", "type": "string", "enum": ["DE", "FR"]},
        {"name": "hour", "type": "integer", "minimum": 0, "maximum": 23, "required": False},
        {"name": "new", "type": "boolean", "required": False},
    ]
}


@FAST
@given(st.lists(json_values, max_size=5))
def test_the_validator_never_raises_and_what_it_accepts_fits_the_schema(records):
    v = InputValidator(SCHEMA)
    problems = v.validate(records)
    bad = {p.record for p in problems}
    for i, rec in enumerate(records):
        if i in bad:
            continue
        assert isinstance(rec, dict) and set(rec) <= {"amount", "country", "hour", "new"}
        amount = rec["amount"]
        assert isinstance(amount, int | float) and not isinstance(amount, bool)
        assert math.isfinite(amount) and amount >= 0
        assert rec["country"] in ("DE", "FR")
        hour = rec.get("hour")
        if hour is not None:  # an integer, or a float with no fraction (JSON has one number type)
            assert isinstance(hour, int | float) and not isinstance(hour, bool) and float(hour).is_integer()
            assert 0 <= hour <= 23
        if rec.get("new") is not None:
            assert isinstance(rec["new"], bool)


messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool", "developer", "nobody"]),
            "content": json_values,
        }
    ),
    max_size=4,
)
bodies = json_values | st.fixed_dictionaries(
    {"model": st.text(max_size=10) | st.none(), "messages": messages | json_values},
    optional={
        "temperature": json_values,
        "max_tokens": json_values,
        "stream": json_values,
        "tools": json_values,
        "response_format": json_values,
        "top_p": json_values,
    },
)


@FAST
@given(bodies)
def test_the_chat_parser_returns_a_request_or_a_400_never_anything_else(body):
    try:
        req = parse_chat(body)
    except RequestError as e:
        assert str(e)  # it says what was wrong
        return
    assert req.messages and all(m["role"] in ("user", "system", "assistant", "tool", "developer") for m in req.messages)


# -- the gate spec parser ----------------------------------------------------------------------------------------
metric_entries = st.fixed_dictionaries(
    {"name": st.sampled_from(["auc", "recall", "false_positive_rate", "schema_valid", "nope"]) | json_values},
    optional={"margin": json_values, "min": json_values, "max": json_values, "direction": json_values},
)
gate_specs = json_values | st.fixed_dictionaries(
    {"model": st.text(max_size=8) | json_values},
    optional={
        "task": st.sampled_from(["classification", "llm", "regression"]) | json_values,
        "gold": st.lists(st.text(max_size=8), max_size=2) | json_values,
        "metrics": st.lists(metric_entries, max_size=3) | json_values,
        "slices": json_values,
        "fairness": json_values,
        "edge_cases": json_values,
        "alpha": json_values,
        "bootstrap": json_values,
        "min_rows": json_values,
        "min_class_rows": json_values,
        "label": json_values,
    },
)


@FAST
@given(gate_specs)
def test_the_gate_spec_parser_returns_a_spec_or_an_error_that_names_the_problem(data):
    from tether.core import InvalidInputError
    from tether.gate.spec import GateSpec, load_spec

    try:
        spec = load_spec(data) if isinstance(data, dict) else load_spec({"wrapped": data})
    except InvalidInputError as e:
        assert str(e) and ("gate spec" in str(e))  # says which document, and (from pydantic) which field
        return
    assert isinstance(spec, GateSpec) and spec.model


# -- profile merging (what replicas publish and the controller sums) ---------------------------------------------
numbers = st.lists(
    st.floats(allow_nan=True, allow_infinity=True, width=64) | st.integers(-(10**6), 10**6) | st.none(), max_size=60
)


@FAST
@given(numbers, st.lists(st.integers(0, 60), max_size=4))
def test_profiles_merged_from_any_split_equal_the_profile_of_the_whole(values, cuts):
    """However the rows are split over replicas (and sent as JSON), the merged profile has the whole's counts,
    mean and variance, its categorical counts sum to its count, and merging an empty profile changes nothing."""
    import numpy as np
    import pandas as pd

    from tether.monitor.profile import DatasetProfile

    frame = pd.DataFrame({"x": pd.array(values, dtype="object"), "c": [str(v)[:3] for v in values]})
    whole = DatasetProfile.for_kinds({"x": "numeric", "c": "categorical"}, cap=8)
    whole.observe(frame)
    bounds = sorted({0, len(values), *[min(c, len(values)) for c in cuts]})
    merged = DatasetProfile.for_kinds({"x": "numeric", "c": "categorical"}, cap=8)
    for lo, hi in itertools.pairwise(bounds):
        part = DatasetProfile.for_kinds({"x": "numeric", "c": "categorical"}, cap=8)
        part.observe(frame.iloc[lo:hi])
        merged.merge(DatasetProfile.from_json(part.to_json()))
    merged.merge(DatasetProfile.for_kinds({"x": "numeric", "c": "categorical"}, cap=8))
    wx, mx = whole.features["x"], merged.features["x"]
    assert (mx.count, mx.missing) == (wx.count, wx.missing)
    if wx.count:
        assert np.isclose(mx.mean, wx.mean, rtol=1e-9, atol=1e-6 * max(1.0, abs(wx.mean)))
        scale = max(1.0, wx.m2)
        assert abs(mx.m2 - wx.m2) <= 1e-6 * scale + 1e-6
    wc, mc = whole.features["c"], merged.features["c"]
    assert (mc.count, mc.missing) == (wc.count, wc.missing)
    assert sum(mc.counts.values()) == mc.count and len(mc.counts) <= mc.cap + 1


def test_merging_profiles_of_different_kinds_is_refused_by_name():
    from tether.core import InvalidInputError
    from tether.monitor.profile import DatasetProfile

    numeric = DatasetProfile.for_kinds({"x": "numeric"})
    with pytest.raises(InvalidInputError, match="'x'.*numeric.*categorical"):
        numeric.merge(DatasetProfile.for_kinds({"x": "categorical"}))
