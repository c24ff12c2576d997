"""The environment lock is read once per process and again when an installation changes."""

import sys

from tether.registry import environment_lock


def test_the_lock_is_read_again_when_a_distribution_is_installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    before = environment_lock()
    assert environment_lock() == before  # cached: the same answer
    environment_lock()["packages"].append("mutated==1")  # a caller's copy: the cache is not changed through it
    assert "mutated==1" not in environment_lock()["packages"]
    dist = site / "tether_probe-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tether-probe\nVersion: 1.2\n")
    assert "tether-probe==1.2" in environment_lock()["packages"]
