"""The audit trail detects what an auditor fears most: rollback, gaps, edited metadata, a record proven from a
stored column instead of its content. Checkpoints are C2SP signed notes, chained and numbered."""

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.audit.test_log import _filled, _record, keyed  # noqa: F401  (fixture)
from tether.audit import checkpoint as ckpt
from tether.audit.log import AuditLog
from tether.core import IntegrityError, SigningKey, TetherError


def _three_seals(settings):
    return _filled(settings, n=60, seals=(20, 40, 60))


def test_checkpoints_are_c2sp_signed_notes(keyed):  # noqa: F811
    root = _three_seals(keyed)
    pub = SigningKey.load(keyed.resolved_signing_key).public_key_hex
    with AuditLog(keyed) as log:
        cps = log.checkpoints()
    note = cps[-1]["note"]
    body, _, sig = note.partition("\n\n")
    lines = body.split("\n")
    assert lines[0] == f"tether.audit/{pub[:16]}" and lines[1] == "60"
    assert base64.b64decode(lines[2]).hex() == cps[-1]["root"]
    assert lines[3] == "index 2" and lines[4].startswith("previous ")
    dash, name, b64 = sig.strip().split(" ")
    assert dash == "\u2014" and name == lines[0]
    raw = base64.b64decode(b64)
    assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x01" + bytes.fromhex(pub)).digest()[:4]
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub)).verify(raw[4:], (body + "\n").encode())
    assert [c["index"] for c in cps] == [0, 1, 2]
    assert root.exists()


def test_removing_the_newest_segment_and_its_checkpoint_is_caught_by_a_held_checkpoint(keyed, tmp_path):  # noqa: F811
    root = _three_seals(keyed)
    with AuditLog(keyed) as log:
        held = log.checkpoints()[-1]["note"]
    (tmp_path / "kept.checkpoint").write_text(held)
    newest = sorted((root / "segments").glob("*.parquet"))[-1]
    newest.unlink()
    sorted((root / "checkpoints").glob("*.json"))[-1].unlink()
    with AuditLog(keyed) as log:
        assert log.verify().ok  # on its own, a clean truncation is indistinguishable from a shorter log
        report = log.verify(held=[held])
    assert any("rollback: a held checkpoint covers 60 records but the log now holds 40" in p for p in report.problems)


def test_a_witness_folder_receives_every_note_and_catches_a_rollback(settings, tmp_path):
    witness = tmp_path / "witness"
    s = settings.model_copy(update={"audit_witness": str(witness)})
    SigningKey.generate().save(s.resolved_signing_key)
    root = _three_seals(s)
    assert len(list(witness.glob("*.checkpoint"))) == 3
    sorted((root / "segments").glob("*.parquet"))[-1].unlink()
    sorted((root / "checkpoints").glob("*.json"))[-1].unlink()
    with AuditLog(s) as log:
        report = log.verify()
    assert any(p.startswith("rollback") for p in report.problems), report.problems


def test_a_missing_middle_checkpoint_is_a_named_gap(keyed):  # noqa: F811
    root = _three_seals(keyed)
    sorted((root / "checkpoints").glob("*.json"))[1].unlink()
    with AuditLog(keyed) as log:
        report = log.verify()
    assert any("checkpoint(s) 1 are missing" in p for p in report.problems), report.problems


def test_a_rewritten_and_resigned_history_is_caught_by_a_held_checkpoint(keyed, tmp_path):  # noqa: F811
    root = _three_seals(keyed)
    with AuditLog(keyed) as log:
        held = log.checkpoints()[0]["note"]
    for sub in ("segments", "checkpoints"):
        for p in (root / sub).iterdir():
            p.unlink()
    with AuditLog(keyed) as log:  # the insider rebuilds the log with other records, signed with the same key
        for i in range(60):
            log.append(_record(i + 1000))
        log.seal()
        assert log.verify().ok
        report = log.verify(held=[held])
    assert any(p.startswith("history rewritten") for p in report.problems), report.problems


def test_an_edited_segment_footer_cannot_hide_records_from_query_or_trace(keyed):  # noqa: F811
    root = _three_seals(keyed)
    seg = sorted((root / "segments").glob("*.parquet"))[0]
    data = bytearray(seg.read_bytes())
    data[-20] ^= 0xFF  # inside the footer's metadata (statistics), before the length and the magic bytes
    seg.write_bytes(bytes(data))
    with AuditLog(keyed) as log:
        with pytest.raises(IntegrityError, match="was changed after it was sealed"):
            log.query("SELECT count(*) FROM records")
        with pytest.raises(IntegrityError, match="was changed after it was sealed"):
            log.trace("trace-00003")
        report = log.verify()
    assert any("was changed after it was sealed" in p for p in report.problems)


def test_trace_after_a_deleted_segment_is_one_clear_error(keyed):  # noqa: F811
    root = _three_seals(keyed)
    sorted((root / "segments").glob("*.parquet"))[1].unlink()
    with AuditLog(keyed) as log, pytest.raises(TetherError):
        log.trace("trace-00045")


def test_trace_recomputes_the_leaf_from_the_record(keyed, monkeypatch):  # noqa: F811
    _three_seals(keyed)
    import pyarrow.parquet as pq

    real = pq.read_table

    def forged(*a, **k):  # a reader that returns changed content beside the original leaf column
        t = real(*a, **k)
        if "filters" in k and t.num_rows:
            import pyarrow as pa

            i = t.schema.get_field_index("payload")
            t = t.set_column(i, "payload", pa.array(['{"input": {"amount": 1}}'] * t.num_rows))
        return t

    with AuditLog(keyed) as log:
        monkeypatch.setattr(pq, "read_table", forged)
        found = log.trace("trace-00007")
    assert not found["stored_leaf_matches"] and not found["proof_verifies"]
    assert Path(ckpt.__file__).exists()


def test_an_http_witness_receives_every_signed_note(settings):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got: list[str] = []

    class Witness(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Witness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        s = settings.model_copy(update={"audit_witness": f"http://127.0.0.1:{server.server_port}/add-checkpoint"})
        SigningKey.generate().save(s.resolved_signing_key)
        _three_seals(s)
    finally:
        server.shutdown()
    pub = SigningKey.load(s.resolved_signing_key).public_key_hex
    assert [ckpt.parse(n, pub).size for n in got] == [20, 40, 60]
