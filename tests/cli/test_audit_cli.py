import json

from tests.cli.test_cli import tether  # noqa: F401  (fixture)
from tether.audit.log import AuditLog, AuditRecord
from tether.core import Settings


def test_audit_commands(tether, tmp_path):  # noqa: F811
    from datetime import UTC, datetime

    settings = Settings(home=tmp_path / "home", database_url="", blob_url="")
    tether("init")
    with AuditLog(settings) as log:
        for i in range(30):
            log.append(AuditRecord(kind="alias", trace_id=f"t{i}", at=datetime.now(UTC), payload={"i": i}))
    out = tether("audit", "verify")
    assert "30 records in 1 segments" in out and "the audit log verifies" in out
    rows = json.loads(tether("audit", "query", "SELECT count(*) AS n FROM records", "--json"))
    assert rows == [{"n": 30}]
    assert "inclusion proof: 5 hashes, verifies: True" in tether("audit", "trace", "t7")
    assert "no sealed audit record" in tether("audit", "trace", "nope", expect=2)
    assert "only predictions and LLM calls replay" in tether("audit", "replay", "t7", expect=2)
    assert "the audit query failed" in tether("audit", "query", "SELEC 1", expect=2)
    assert "sealed 0 record(s); the log holds 30" in tether("audit", "seal")
    with AuditLog(settings) as log:
        for i in range(10):
            log.append(AuditRecord(kind="alias", trace_id=f"u{i}", at=datetime.now(UTC)))
        log.seal()
    out = tether("audit", "consistency", "30")
    assert "checkpoint 30" in out and "-> 40" in out and "verifies: True" in out
    assert "no checkpoint at tree size 31" in tether("audit", "consistency", "31", expect=2)
    cp = sorted((settings.home / "audit" / "checkpoints").glob("*.json"))[0]
    cp.write_text(cp.read_text().replace('"tree_size": 30', '"tree_size": 29'))
    bad = tether("audit", "verify", expect=1)
    assert "FAIL" in bad and "signature does not match" in bad
