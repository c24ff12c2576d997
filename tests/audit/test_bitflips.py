"""Any byte of a sealed segment changed is reported by verify, by name: never a crash, never a pass."""

from datetime import UTC, datetime

from tether.audit.log import AuditLog, AuditRecord


def test_a_flipped_byte_anywhere_in_a_segment_is_reported(settings):
    root = settings.home / "audit"
    with AuditLog(settings) as log:
        log.append_many(
            [
                AuditRecord(kind="prediction", trace_id=f"t{i}", at=datetime.now(UTC), model="m", payload={"i": i})
                for i in range(50)
            ]
        )
        log.seal()
    seg = next((root / "segments").glob("*.parquet"))
    original = seg.read_bytes()
    positions = sorted({int(len(original) * k / 97) for k in range(97)} | {len(original) - 9, 4})
    for pos in positions:
        data = bytearray(original)
        data[pos] ^= 0x20
        seg.write_bytes(bytes(data))
        with AuditLog(settings) as log:
            report = log.verify()
        assert not report.ok, f"a flipped byte at {pos} of {len(original)} went unnoticed"
        assert any(seg.name in p for p in report.problems), (pos, report.problems)
    seg.write_bytes(original)
    with AuditLog(settings) as log:
        assert log.verify().ok
