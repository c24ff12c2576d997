"""The offline dependency check (tools/advisories.py) that CI runs in place of pip-audit.

It must fail on a known-vulnerable pin and on a dependency floor that admits one, evaluate OSV ranges as the
schema says, read the PyPA database's YAML layout and osv.dev's zip export alike, and refuse bad input with
exit status 2 and a message that names the file.
"""

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from tools.advisories import Database, in_range, main

ROOT = Path(__file__).resolve().parent.parent
PROTOBUF = [
    {"introduced": "0"},
    {"fixed": "4.25.8"},
    {"introduced": "5.26.0rc1"},
    {"fixed": "5.29.5"},
    {"introduced": "6.30.0rc1"},
    {"fixed": "6.31.1"},
]


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("3.20.3", True),
        ("4.25.7", True),
        ("4.25.8", False),  # fixed: the fix itself is not affected
        ("5.0.0", False),  # between the ranges
        ("5.26.0rc1", True),  # a pre-release that opens a range
        ("5.29.4", True),
        ("6.31.1", False),
        ("7.36.2", False),
    ],
)
def test_ranges_are_walked_in_version_order_as_the_osv_schema_says(version, affected):
    assert in_range(Version(version), PROTOBUF) is affected
    assert in_range(Version(version), list(reversed(PROTOBUF))) is affected  # the record's order does not matter


def test_last_affected_closes_after_its_version_and_unorderable_events_claim_nothing():
    events = [{"introduced": "1.0"}, {"last_affected": "1.4"}]
    assert in_range(Version("1.4"), events) and not in_range(Version("1.4.1"), events)
    assert not in_range(Version("0.9"), events)
    assert not in_range(Version("2.0"), [{"introduced": "not-a-version"}])
    assert in_range(Version("9.9"), [{"introduced": "0"}])  # no fix yet: every version


def _record(vid, name, fixed, **extra):
    return {
        "id": vid,
        "aliases": [f"CVE-{vid}"],
        "summary": f"{name} flaw",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                "versions": ["0.1"],
            }
        ],
        **extra,
    }


def test_a_known_vulnerable_pin_fails_and_names_the_advisory_and_its_fix(tmp_path, capsys):
    pins = tmp_path / "pins.txt"
    pins.write_text("aiohttp==3.14.0  # below two fixes in the vendored records\nrequests==2.34.2\n")
    assert main(["--requirements", str(pins)]) == 1
    err = capsys.readouterr().err
    assert "aiohttp 3.14.0 (pinned): PYSEC-2026-2113" in err and "fixed in 3.14.1" in err
    assert "PYSEC-2026-3547" in err and "fixed in 3.14.2" in err
    assert "requests" not in err.split("\n", 1)[1]

    # An ignored advisory is skipped by its id or any alias; the other still fails the check.
    assert main(["--requirements", str(pins), "--ignore-vuln", "CVE-2026-54280"]) == 1
    assert "PYSEC-2026-2113" not in capsys.readouterr().err
    both = ["--ignore-vuln", "PYSEC-2026-2113", "--ignore-vuln", "GHSA-mq44-7p77-q5h7"]
    assert main(["--requirements", str(pins), *both]) == 0


def test_a_dependency_floor_that_admits_a_vulnerable_version_fails(tmp_path, capsys):
    project = tmp_path / "pyproject.toml"
    project.write_text('[project]\nname = "x"\ndependencies = ["aiohttp>=3.9", "numpy>=1.26"]\n')
    assert main(["--requirements", str(_empty(tmp_path)), "--floors", str(project)]) == 1
    assert "aiohttp 3.9 (lowest version allowed): PYSEC-2024-26" in capsys.readouterr().err
    # tether's own floors admit no version with an advisory on record.
    assert main(["--requirements", str(_empty(tmp_path)), "--floors", str(ROOT / "pyproject.toml")]) == 0


def _empty(tmp_path):
    p = tmp_path / "none.txt"
    p.write_text("")
    return p


def test_pypa_yaml_layout_and_osv_zip_export_read_alike_and_count_each_record_once(tmp_path):
    tree = tmp_path / "advisory-database" / "vulns" / "leftpad"
    tree.mkdir(parents=True)
    (tree / "PYSEC-1.yaml").write_text(yaml.safe_dump(_record("PYSEC-1", "LeftPad", "2.0")))
    (tree / "PYSEC-2.yaml").write_text(yaml.safe_dump(_record("PYSEC-2", "leftpad", "3.0", withdrawn="2026-01-01")))
    export = tmp_path / "all.zip"
    with zipfile.ZipFile(export, "w") as z:
        z.writestr("PYSEC-1.json", json.dumps(_record("PYSEC-1", "leftpad", "2.0")))
        z.writestr("GHSA-x.json", json.dumps({**_record("GHSA-x", "other", "1.0"), "affected": [
            {"package": {"ecosystem": "npm", "name": "leftpad"}, "ranges": []}]}))  # fmt: skip

    db = Database()
    db.load(tmp_path / "advisory-database")
    db.load(export)
    assert [a.id for a in db.by_package["leftpad"]] == ["PYSEC-1"]  # withdrawn and npm records are not PyPI's
    assert db.by_package["leftpad"][0].affects("leftpad", Version("1.9"))
    assert db.by_package["leftpad"][0].affects("leftpad", Version("0.1"))  # in the versions list
    assert not db.by_package["leftpad"][0].affects("leftpad", Version("2.0"))


def test_bad_input_is_exit_2_with_a_message_that_names_the_file(tmp_path, capsys):
    broken = tmp_path / "db"
    broken.mkdir()
    (broken / "x.json").write_text("{not json")
    assert main(["--db", str(broken)]) == 2
    assert "x.json is not a readable OSV record" in capsys.readouterr().err
    assert main(["--db", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    loose = tmp_path / "loose.txt"
    loose.write_text("aiohttp>=3\n")
    assert main(["--requirements", str(loose)]) == 2
    assert "loose.txt:1: 'aiohttp>=3' is not pinned: write name==version" in capsys.readouterr().err


def test_every_vendored_record_is_a_pypi_osv_record_with_its_source():
    files = sorted((ROOT / "tools" / "advisory-db").rglob("*.json"))
    assert len(files) >= 20
    for f in files:
        record = json.loads(f.read_text())
        assert f.stem == record["id"] and f.parent.name == record["affected"][0]["package"]["name"]
        assert record["database_specific"]["copied_from"].endswith(f"vulns/{f.parent.name}/{f.stem}.yaml")
        assert all(e["package"]["ecosystem"] == "PyPI" for e in record["affected"])
