"""The promotion rule cannot be routed around: a gate policy per model, and aliases only from their history."""

import pytest
from sqlalchemy import text

from tests.gate.test_run import SPEC, _train_register, gated, gold_frame  # noqa: F401  (fixtures)
from tether.core import ConflictError, IntegrityError, PermissionDeniedError
from tether.gate import Verdict, load_spec, run_gate, set_policy

LAX = {**SPEC, "min_rows": 10, "metrics": [{"name": "auc", "margin": 0.9, "floor": 0.0}], "slices": []}


def test_a_lax_spec_passes_but_cannot_move_the_champion_and_a_policy_fail_is_not_outweighed(gated):  # noqa: F811
    registry, project, spec = gated
    v1 = project.register(registry)
    assert run_gate(registry, spec, v1.ref).verdict is Verdict.PASS
    registry.set_alias("fraud", "champion", v1.ref, reason="first")
    bad = _train_register(registry, project, "bad", "--label-noise", "BR:0.3")
    lax = load_spec(LAX)
    lax._base = project.root
    ad_hoc = run_gate(registry, lax, bad.ref)
    assert ad_hoc.verdict is Verdict.PASS and ad_hoc.body["policy"]["in_force"] is False
    with pytest.raises(ConflictError, match="has no PASS gate report .* under the gate policy"):
        registry.set_alias("fraud", "champion", bad.ref, reason="the lax spec passed it")
    assert run_gate(registry, spec, bad.ref).verdict is Verdict.FAIL
    with pytest.raises(ConflictError, match="a PASS elsewhere does not outweigh it"):
        registry.set_alias("fraud", "champion", bad.ref, reason="try again")
    # A rollout follows the same rule.
    from tether.rollout.controller import Controller
    from tether.serving.window import MetricStore

    ctrl = Controller(registry, MetricStore())
    ctrl.deploy("fraud", v1.ref, reason="serve")
    with pytest.raises(ConflictError, match="cannot start: .* does not outweigh"):
        ctrl.start("fraud", bad.ref)
    assert registry.get("fraud@champion").id == v1.id


def test_only_an_admin_sets_a_policy_and_every_change_is_kept(gated):  # noqa: F811
    registry, project, spec = gated
    lax = load_spec(LAX)
    lax._base = project.root
    with pytest.raises(PermissionDeniedError, match="role 'deployer' may not change the gate policy"):
        set_policy(registry, lax, reason="faster", role="deployer")
    with pytest.raises(ConflictError, match="already runs under policy"):
        set_policy(registry, spec, reason="again", role="admin")
    first = registry.gate_policy("fraud")
    second = set_policy(registry, lax, reason="experiment", role="admin", actor="carol")
    history = registry.gate_policy_history("fraud")
    assert [p.digest for p in history] == [first.digest, second.digest]
    assert second.previous_digest == first.digest and history[-1].actor == "carol"
    assert registry.gate_policy_spec(second)["min_rows"] == 10
    with pytest.raises(Exception, match="rows are immutable"), registry.store.db.begin() as conn:
        conn.execute(text("UPDATE gate_policies SET reason = 'x'"))


def test_aliases_are_derived_from_their_history_and_a_forged_move_is_refused(gated):  # noqa: F811
    registry, project, spec = gated
    v1 = project.register(registry)
    run_gate(registry, spec, v1.ref)
    registry.set_alias("fraud", "champion", v1.ref, reason="first")
    v2 = _train_register(registry, project, "v2", "--label-noise", "BR:0.3")
    with registry.store.db.begin() as conn, pytest.raises(Exception, match="no such table|does not exist"):
        conn.execute(text("UPDATE aliases SET version_id = :v"), {"v": v2.id})
    with registry.store.db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alias_events (model_name, alias, version_id, previous_version_id, actor, reason, at, "
                "forced) VALUES ('fraud', 'champion', :v, :p, 'mallory', 'quiet swap', '2026-01-01 00:00:00', false)"
            ),
            {"v": v2.id, "p": v1.id},
        )
    with pytest.raises(IntegrityError, match="without a PASS gate report"):
        registry.get("fraud@champion")
    with pytest.raises(IntegrityError, match="without a PASS gate report"):
        registry.alias_history("fraud")


def test_a_forged_pass_report_row_is_refused(gated):  # noqa: F811
    registry, project, spec = gated
    v1 = project.register(registry)
    run_gate(registry, spec, v1.ref)
    registry.set_alias("fraud", "champion", v1.ref, reason="first")
    bad = _train_register(registry, project, "bad", "--label-noise", "BR:0.3")
    real = run_gate(registry, spec, bad.ref)
    assert real.verdict is Verdict.FAIL
    pol = registry.gate_policy("fraud")
    # A copy of an earlier PASS row, re-pointed at the bad candidate: its blob says otherwise.
    with registry.store.db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gate_reports (id, model_name, candidate_id, champion_id, spec_digest, gold_digests, "
                "verdict, report_blob, html_blob, created_at, created_by, policy_digest) SELECT :id, model_name, "
                ":c, :ch, spec_digest, gold_digests, 'PASS', report_blob, html_blob, created_at, 'mallory', "
                "policy_digest FROM gate_reports WHERE candidate_id = :v1"
            ),
            {"id": "f" * 64, "c": v1.id, "ch": None, "v1": v1.id},
        )
    v3 = _train_register(registry, project, "v3", "--learning-rate", "0.3")
    with registry.store.db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gate_reports (id, model_name, candidate_id, champion_id, spec_digest, gold_digests, "
                "verdict, report_blob, html_blob, created_at, created_by, policy_digest) SELECT :id, model_name, "
                ":c, :ch, spec_digest, gold_digests, 'PASS', report_blob, html_blob, created_at, 'mallory', "
                "policy_digest FROM gate_reports WHERE id = :real"
            ),
            {"id": "e" * 64, "c": v3.id, "ch": v1.id, "real": real.id},
        )
    with pytest.raises(IntegrityError, match="says FAIL for other versions"):
        registry.set_alias("fraud", "champion", v3.ref, reason="forged")
    assert pol.digest == registry.gate_policy("fraud").digest


def test_a_changed_or_deleted_version_is_reported_by_the_listing(registry, project):
    v1 = project.register(registry)
    project.train("--learning-rate", "0.3")
    v2 = project.register(registry)
    project.train("--learning-rate", "0.2")
    v3 = project.register(registry)
    with registry.store.db.begin() as conn:
        for t in ("model_versions",):
            conn.execute(text(f"DROP TRIGGER {t}_no_update"))
            conn.execute(text(f"DROP TRIGGER {t}_no_delete"))
        conn.execute(text("UPDATE model_versions SET metrics = '{\"auc\": 0.99}' WHERE id = :v"), {"v": v3.id})
        conn.execute(text("DELETE FROM model_versions WHERE id = :v"), {"v": v2.id})
    listed, problems = registry.check_versions("fraud")
    assert [v.id for v in listed] == [v1.id]
    assert any("fraud/3" in p and "changed" in p for p in problems)
    assert any("fraud/2 are missing" in p for p in problems)
    with pytest.raises(IntegrityError, match="2 problem"):
        registry.versions("fraud")


def test_the_training_snapshot_as_gold_is_warned_about(gated):  # noqa: F811
    registry, project, _ = gated
    v1 = project.register(registry)
    own = load_spec({**SPEC, "gold": [str(project.data)]})
    report = run_gate(registry, own, v1.ref)
    assert any("is the training snapshot of fraud/1" in n for n in report.body["notes"]), report.body["notes"]


def test_moves_made_before_gate_policies_existed_still_read(registry, project, gold_frame):  # noqa: F811
    """A store from the release before policies: its champion moved on a plain PASS, which still reads."""
    gold_frame.to_parquet(project.root / "data" / "gold.parquet", index=False)
    spec = load_spec(SPEC)
    spec._base = project.root
    v1 = project.register(registry)
    report = run_gate(registry, spec, v1.ref)  # no policy: an ad-hoc report, as every report was then
    assert report.verdict is Verdict.PASS and not report.body["policy"]["in_force"]
    with registry.store.db.begin() as conn:  # the alias move as the previous release wrote it
        conn.execute(
            text(
                "INSERT INTO alias_events (model_name, alias, version_id, previous_version_id, actor, reason, at, "
                "gate_report_id, forced) VALUES ('fraud', 'champion', :v, NULL, 'old', 'first', :at, :r, false)"
            ),
            {"v": v1.id, "r": report.id, "at": "2026-01-01 00:00:00.000000"},
        )
    assert registry.get("fraud@champion").id == v1.id
    set_policy(registry, spec, reason="policies arrive", role="admin")
    assert registry.get("fraud@champion").id == v1.id  # still: it was made under the rule of its time
