"""Immutability in the storage layer, and detection of anything changed behind tether's back."""

import os

import pytest
from sqlalchemy import text

from tether.core import IntegrityError


def _flip_last_byte(path):
    os.chmod(path, 0o644)
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 1
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("table", ["model_versions", "code_refs", "data_snapshots", "weights_artifacts"])
def test_direct_sql_cannot_change_or_delete_registered_rows(any_registry, project, table):
    project.register(any_registry)
    column = {"model_versions": "flavor", "code_refs": "subdir"}.get(table, "created_at")
    value = "'x'" if column != "created_at" else "created_at"
    for stmt in (f"UPDATE {table} SET {column} = {value}", f"DELETE FROM {table}"):
        with pytest.raises(Exception, match="rows are immutable"), any_registry.store.db.begin() as conn:
            conn.execute(text(stmt))
    assert any_registry.get("fraud/1").flavor == "sklearn"


def test_a_row_changed_with_the_triggers_dropped_is_detected(registry, project):
    v = project.register(registry)
    with registry.store.db.begin() as conn:
        conn.execute(text("DROP TRIGGER model_versions_no_update"))
        conn.execute(text("UPDATE model_versions SET metrics = '{\"auc\": 0.99}'"))
    with pytest.raises(IntegrityError, match="no longer hashes to its id") as err:
        registry.get("fraud/1")
    assert err.value.expected == v.id


def test_a_changed_code_row_is_detected(registry, project):
    project.register(registry)
    with registry.store.db.begin() as conn:
        conn.execute(text("DROP TRIGGER code_refs_no_update"))
        conn.execute(text("UPDATE code_refs SET commit_sha = 'deadbeef'"))
    with pytest.raises(IntegrityError, match="code record"):
        registry.get("fraud/1")


def test_loading_tampered_weights_is_refused(registry, project):
    v = project.register(registry)
    entry = registry.manifest(v.weights.digest, "weights").entries[0]
    _flip_last_byte(registry.store.blobs.path(entry.digest))
    with pytest.raises(IntegrityError, match="weights of fraud/1: model.pkl digest mismatch"):
        registry.load("fraud/1")
    assert list((registry.settings.tmp_dir).iterdir()) == []


def test_a_tampered_manifest_is_refused(registry, project):
    v = project.register(registry)
    _flip_last_byte(registry.store.blobs.path(v.weights.digest))
    with pytest.raises(IntegrityError, match="weights manifest digest mismatch"):
        registry.load("fraud/1")


def test_signed_weights_verify_and_a_forged_signature_is_refused(registry, project):
    from tether.core import SigningKey

    SigningKey.generate().save(registry.settings.resolved_signing_key)
    v = project.register(registry, sign=True)
    assert v.weights.signature and v.weights.public_key
    registry.load("fraud/1").close()
    forged = SigningKey.generate().sign(b"something else")
    with registry.store.db.begin() as conn:
        conn.execute(text("DROP TRIGGER weights_artifacts_no_update"))
        conn.execute(text("UPDATE weights_artifacts SET signature = :s"), {"s": forged})
    with pytest.raises(IntegrityError, match="signature check failed"):
        registry.load("fraud/1")


def test_signing_without_a_key_says_to_run_init(registry, project):
    from tether.core import NotFoundError

    with pytest.raises(NotFoundError, match="tether init"):
        project.register(registry, sign=True)
