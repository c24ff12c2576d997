"""Structured audit search over many segments: each page equals the brute-force answer over every record, the
summaries only narrow what is read, and a segment changed after it was summarised is still refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tether.audit.log import AuditLog, AuditRecord
from tether.audit.search import Filters, search
from tether.core import IntegrityError, InvalidInputError

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        kind="prediction" if i % 5 else "alias",
        trace_id=f"{i:032x}",
        at=T0 + timedelta(seconds=i),
        model=("fraud", "churn", "fraud")[i % 3],
        version_id=("a1" if i < 120 else "b2") + "0" * 62,
        payload={"i": i},
    )


@pytest.fixture
def log(settings):
    with AuditLog(settings) as log:
        for start in range(0, 300, 25):  # 12 segments
            log.append_many([_record(i) for i in range(start, start + 25)])
            log.seal()
        yield log


def _brute(log, f: Filters) -> list[int]:
    _, rows = log.query('SELECT seq, kind, model, version_id, trace_id, "at" FROM records ORDER BY seq DESC')
    out = []
    for seq, kind, model, version, trace, at in rows:
        if (f.model and model != f.model) or (f.kind and kind != f.kind) or (f.trace and trace != f.trace):
            continue
        if (
            (f.version and not version.startswith(f.version))
            or (f.since and at < f.since)
            or (f.until and at > f.until)
        ):
            continue
        out.append(seq)
    return out


@pytest.mark.parametrize(
    "f",
    [
        Filters(),
        Filters(model="fraud"),
        Filters(model="churn", kind="alias"),
        Filters(version="b2"),
        Filters(model="fraud", version="a1"),
        Filters(trace=f"{77:032x}"),
        Filters(since=T0 + timedelta(seconds=100), until=T0 + timedelta(seconds=160)),
        Filters(model="nobody"),
    ],
)
def test_every_page_matches_the_brute_force_answer(log, f):
    want = _brute(log, f)
    for limit, offset in ((7, 0), (7, 7), (50, 20), (500, 0), (10, len(want)), (3, max(0, len(want) - 2))):
        rows, total = search(log, f, limit=limit, offset=offset)
        assert total == len(want), (f, limit, offset)
        assert [r["seq"] for r in rows] == want[offset : offset + limit], (f, limit, offset)


def test_a_segment_changed_after_its_summary_is_refused(log):
    search(log, Filters(model="fraud"))  # summaries and digests cached
    seg = log.segments()[3]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 1
    seg.chmod(0o644)
    seg.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="changed after it was sealed"):
        search(log, Filters(model="fraud"))
    with pytest.raises(IntegrityError):
        log.trace(f"{80:032x}")


def test_bad_filters_are_named(log):
    with pytest.raises(InvalidInputError, match="unknown record kind"):
        search(log, Filters(kind="nope"))
    with pytest.raises(InvalidInputError, match="time zone"):
        search(log, Filters(since=datetime(2026, 1, 1)))
    with pytest.raises(InvalidInputError, match="after until"):
        search(log, Filters(since=T0 + timedelta(days=1), until=T0))
