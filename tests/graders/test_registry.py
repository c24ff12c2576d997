"""Grader versions: the spec, the code and the weights are in the id; rows cannot change; bad specs are named."""

import random

import pytest
from sqlalchemy import text

from tether.core.errors import IntegrityError, InvalidInputError
from tether.graders.interaction import Interaction
from tether.graders.registry import Graders
from tether.graders.spec import GraderSpec


@pytest.fixture
def graders(any_registry):
    return Graders(any_registry.store)


def test_the_same_spec_is_the_same_version_and_a_changed_one_is_new(graders):
    spec = GraderSpec.parse({"name": "checks", "kind": "checks"})
    a, new_a = graders.register(spec, actor="ana")
    b, new_b = graders.register(GraderSpec.parse({"name": "checks", "kind": "checks", "config": {}}))
    assert new_a and not new_b and a.id == b.id and a.number == 1
    c, _ = graders.register(
        GraderSpec.parse({"name": "checks", "kind": "checks", "config": {"refusal_patterns": ["nope"]}})
    )
    assert c.id != a.id and c.number == 2
    assert graders.get("checks").id == c.id and graders.get("checks/1").id == a.id and graders.get(a.id[:10]) == a
    assert [g.number for g in graders.list("checks")] == [1, 2]
    assert graders.load(a).grade([Interaction("t", (), "I'm sorry, but I cannot help with that.")])


def test_a_changed_row_is_refused_and_rows_cannot_be_updated(graders):
    gv, _ = graders.register(GraderSpec.parse({"name": "minilm", "kind": "embedded"}))
    with pytest.raises(Exception, match="immutable"), graders.store.db.begin() as conn:
        conn.execute(text("UPDATE grader_versions SET config = '{}'"))
    with pytest.raises(Exception, match="immutable"), graders.store.db.begin() as conn:
        conn.execute(text("DELETE FROM grader_versions"))
    assert graders.get(gv.id) == gv


def test_a_hand_inserted_row_under_a_false_id_is_refused(graders):
    gv, _ = graders.register(GraderSpec.parse({"name": "minilm", "kind": "embedded"}))
    with graders.store.db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO grader_versions (id, name, number, kind, config, code_digest, report, created_at, "
                'created_by) SELECT :fake, name, 2, kind, \'{"metrics": ["relevance"]}\', code_digest, report, '
                "created_at, created_by FROM grader_versions WHERE id = :id"
            ),
            {"fake": "f" * 64, "id": gv.id},
        )
    with pytest.raises(IntegrityError, match="no longer hashes"):
        graders.get("minilm")


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ({"name": "x", "kind": "oracle"}, "kind"),
        ({"name": "x", "kind": "checks", "config": {"enabled": ["schema_valid", "vibes"]}}, "config.enabled"),
        ({"name": "x", "kind": "checks", "config": {"refusal_patterns": ["(unclosed"]}}, "refusal_patterns"),
        ({"name": "x", "kind": "embedded", "config": {"metrics": ["truth"]}}, "config.metrics"),
        ({"name": "x", "kind": "judge", "config": {"model": "m"}}, "config.endpoint"),
        ({"name": "x", "kind": "judge", "config": {"endpoint": "ftp://h", "model": "m"}}, "config.endpoint"),
        (
            {"name": "x", "kind": "judge", "config": {"endpoint": "http://h/v1", "model": "m", "schema": {"type": 5}}},
            "schema",
        ),
        (
            {
                "name": "x",
                "kind": "judge",
                "config": {
                    "endpoint": "http://h/v1",
                    "model": "m",
                    "schema": {"type": "object", "properties": {"grade": {"type": "number"}}},
                },
            },
            "score field",
        ),
        (
            {"name": "x", "kind": "judge", "config": {"endpoint": "http://h/v1", "model": "m", "temperature": 1}},
            "config.temperature",
        ),
        ({"name": "bad name!", "kind": "checks"}, "name"),
    ],
)
def test_bad_specs_name_the_field_and_write_nothing(graders, spec, names):
    with pytest.raises(InvalidInputError, match=names.replace(".", r"\.")):
        graders.register(GraderSpec.parse(spec))
    assert graders.list() == []


def test_a_head_needs_weights_and_only_a_head_has_them(graders):
    with pytest.raises(InvalidInputError, match="needs weights"):
        graders.register(GraderSpec.parse({"name": "h", "kind": "head"}))
    with pytest.raises(InvalidInputError, match="only a head"):
        graders.register(GraderSpec.parse({"name": "c", "kind": "checks"}), weights=b"x")


def test_the_head_is_fitted_registered_with_its_data_and_distils_the_labels(graders):
    rng = random.Random(0)
    topics = [
        ("How do I reset my password?", "Open Settings, then Security, then Reset password."),
        ("Where is my parcel?", "Your parcel left the Lyon depot and arrives on Wednesday."),
        ("How do I cancel my plan?", "Go to Billing and press Cancel plan; it ends at the period's close."),
        ("Can I change my delivery address?", "Yes: open the order and edit the address before it ships."),
    ]
    off = ["Bananas are rich in potassium.", "The Moon orbits the Earth.", "Paris is in France.", "lorem ipsum"]
    rows = []
    for i in range(60):
        q, a = topics[i % 4]
        rows.append({"prompt": q, "answer": a, "label": 1})
        rows.append({"prompt": q, "answer": rng.choice(off), "label": 0})
    import orjson

    data = b"\n".join(orjson.dumps(r) for r in rows)
    spec = GraderSpec.parse({"name": "helpful", "kind": "head"})
    gv, new = graders.fit_head(spec, data)
    assert new and gv.weights_digest and gv.data_digest and gv.report["rows"] == 120
    assert gv.report["cv_accuracy"] > 0.9
    assert graders.store.blobs.get_bytes(gv.data_digest).count(b"\n") == 120
    head = graders.load(gv)
    [[good], [bad]] = head.grade(
        [
            Interaction("a", ({"role": "user", "content": "Where is my parcel?"},), "It arrives Wednesday from Lyon."),
            Interaction("b", ({"role": "user", "content": "Where is my parcel?"},), "Bananas are yellow."),
        ]
    )
    assert good.value > 0.5 > bad.value
    again, new_again = graders.fit_head(spec, data)
    assert again.id == gv.id and not new_again  # same data, same seed: the same version
    with pytest.raises(InvalidInputError, match="at least 20"):
        graders.fit_head(GraderSpec.parse({"name": "tiny", "kind": "head"}), b"\n".join(data.split(b"\n")[:30]))
    with pytest.raises(InvalidInputError, match=r"labelled row \d+:"):
        graders.fit_head(spec, data[:300])
    assert [g.name for g in graders.list()] == ["helpful"]
