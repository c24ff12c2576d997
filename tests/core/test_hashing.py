import hashlib
import os
import subprocess
import sys

import pytest

from tether.core import InvalidInputError, Manifest, hash_file, hash_tree, sha256_bytes
from tether.core.hashing import ManifestEntry, digest_json, hash_stream


def test_sha256_matches_published_vector():
    # FIPS 180-2 example "abc".
    assert sha256_bytes(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_hash_file_equals_hashlib_across_chunk_boundaries(tmp_path):
    for size in (0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7):
        data = os.urandom(size)
        p = tmp_path / f"f{size}"
        p.write_bytes(data)
        assert hash_file(p) == hashlib.sha256(data).hexdigest()


def test_manifest_root_digest_is_sha256_of_the_documented_text(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "b" / "c.bin").write_bytes(b"\x00\x01")
    two = b"\x00\x01"
    text = (
        "tether-manifest-v1\n"
        f"{hashlib.sha256(b'hello').hexdigest()} 5 a.txt\n"
        f"{hashlib.sha256(two).hexdigest()} 2 b/c.bin\n"
    )
    m = hash_tree(tmp_path)
    assert m.canonical_bytes() == text.encode()
    assert m.root_digest == hashlib.sha256(text.encode()).hexdigest()


def test_a_file_and_a_folder_holding_it_have_the_same_root(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "model.bin").write_bytes(b"weights")
    assert hash_tree(tmp_path / "d" / "model.bin").root_digest == hash_tree(tmp_path / "d").root_digest


def test_parallel_and_serial_hashing_agree(tmp_path):
    for i in range(20):
        (tmp_path / f"{i:02d}.bin").write_bytes(os.urandom(1000 * i))
    assert hash_tree(tmp_path, workers=1) == hash_tree(tmp_path, workers=4)


def test_manifest_round_trips_through_its_canonical_bytes(tmp_path):
    (tmp_path / "with space.txt").write_bytes(b"x")
    (tmp_path / "é.txt").write_bytes(b"y")
    m = hash_tree(tmp_path)
    assert Manifest.from_canonical_bytes(m.canonical_bytes()) == m
    assert Manifest.from_json(m.to_json()) == m


def test_diff_names_missing_unexpected_and_changed_files():
    a = Manifest((ManifestEntry("x", 1, "0" * 64), ManifestEntry("y", 1, "1" * 64)))
    b = Manifest((ManifestEntry("y", 1, "2" * 64), ManifestEntry("z", 1, "3" * 64)))
    assert a.diff(b) == [
        "missing: x",
        "unexpected: z",
        "changed: y (expected 111111111111, found 222222222222)",
    ]


def test_symlinks_are_refused_with_a_clear_error(tmp_path):
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(InvalidInputError, match="symbolic link"):
        hash_tree(tmp_path)


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        hash_tree(tmp_path / "nope")
    with pytest.raises(InvalidInputError, match="not found"):
        hash_file(tmp_path / "nope")


def test_progress_reports_every_byte(tmp_path):
    (tmp_path / "f").write_bytes(b"z" * 3_000_000)
    seen = []
    hash_tree(tmp_path, progress=seen.append)
    assert sum(seen) == 3_000_000


def test_digest_json_is_key_order_independent():
    assert digest_json({"a": 1, "b": [1, 2]}) == digest_json({"b": [1, 2], "a": 1})


def test_hash_stream_works_without_readinto():
    class Reader:
        def __init__(self):
            self.parts = [b"ab", b"c", b""]

        def read(self, n):
            return self.parts.pop(0)

    assert hash_stream(Reader()) == (sha256_bytes(b"abc"), 3)


@pytest.mark.slow
def test_multi_gigabyte_sparse_file_hashes_with_flat_memory(tmp_path):
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(3 * (1 << 30))
        f.seek(2 * (1 << 30))
        f.write(b"tail")
    script = (
        "import resource, sys\n"
        "from tether.core.hashing import hash_tree\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "m = hash_tree(sys.argv[1])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(m.entries[0].size, m.entries[0].digest, after - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(big)], capture_output=True, text=True, check=True)
    size, digest, grown_kib = out.stdout.split()
    assert int(size) == 3 * (1 << 30)
    expected = subprocess.run(["sha256sum", str(big)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert digest == expected
    assert int(grown_kib) < 64 * 1024, f"hashing 3 GiB grew the process by {int(grown_kib) // 1024} MiB"
