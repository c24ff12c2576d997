import hashlib
import os
import socket

import pytest

from tether.core import IntegrityError, InvalidInputError, NotFoundError
from tether.store import BlobStore


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(str(tmp_path / "blobs"))


def test_put_and_get_round_trip_verified(blobs, tmp_path):
    data = os.urandom(3 * (1 << 20) + 5)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    digest, size = blobs.put_file(src)
    assert digest == hashlib.sha256(data).hexdigest() and size == len(data)
    assert blobs.put_bytes(data) == digest  # idempotent
    blobs.get_file(digest, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert blobs.get_bytes(digest) == data


def test_blobs_are_content_addressed_and_read_only(blobs):
    d = blobs.put_bytes(b"hello")
    assert blobs.path(d).endswith(f"sha256/{d[:2]}/{d[2:]}")
    assert (os.stat(blobs.path(d)).st_mode & 0o222) == 0


def test_reads_refuse_changed_content_and_leave_nothing_behind(blobs, tmp_path):
    d = blobs.put_bytes(b"original content")
    path = blobs.path(d)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"tampered content")
    with pytest.raises(IntegrityError, match="digest mismatch") as err:
        blobs.get_file(d, tmp_path / "out.bin")
    assert err.value.expected == d
    assert not (tmp_path / "out.bin").exists()
    assert not list(tmp_path.glob(".out.bin*"))
    with pytest.raises(IntegrityError):
        blobs.get_bytes(d)
    with pytest.raises(IntegrityError):
        blobs.verify(d)


def test_missing_and_malformed_digests(blobs):
    with pytest.raises(NotFoundError, match="missing from the store"):
        blobs.get_bytes("0" * 64)
    with pytest.raises(InvalidInputError, match="not a SHA-256 digest"):
        blobs.path("../../etc/passwd")


def test_no_temporary_files_survive_writes(blobs, tmp_path):
    for i in range(5):
        (tmp_path / f"f{i}").write_bytes(os.urandom(1000))
        blobs.put_file(tmp_path / f"f{i}")
    assert blobs.leftover_temp_files() == []


def test_interrupted_local_write_leaves_no_blob(blobs, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 10_000)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        blobs.put_file(src)
    monkeypatch.undo()
    assert not blobs.exists(hashlib.sha256(b"x" * 10_000).hexdigest())
    assert blobs.leftover_temp_files() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 test")
    pytest.importorskip("s3fs", reason="s3fs is needed for s3:// blob stores (extra 's3')")
    import boto3

    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    ).create_bucket(Bucket="models")
    yield url
    server.stop()


@pytest.mark.s3
def test_s3_compatible_endpoint(s3_endpoint, tmp_path):
    opts = {
        "endpoint_url": s3_endpoint,
        "key": "k",
        "secret": "s",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    blobs = BlobStore("s3://models/tether", options=opts)
    data = os.urandom(200_000)
    (tmp_path / "w.bin").write_bytes(data)
    digest, _ = blobs.put_file(tmp_path / "w.bin")
    assert blobs.exists(digest)
    blobs.get_file(digest, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data
    # Overwrite the object behind tether's back: the read must refuse it.
    blobs.fs.pipe_file(blobs.path(digest), b"evil")
    with pytest.raises(IntegrityError):
        blobs.get_bytes(digest)
