import re
from pathlib import Path

import pytest

from tether.core import (
    IntegrityError,
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
    Settings,
    SigningKey,
    TetherError,
    verify_signature,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for k in ("TETHER_HOME", "TETHER_DATABASE_URL", "TETHER_BLOB_URL"):
        monkeypatch.delenv(k, raising=False)
    s = Settings()
    assert s.home == Path(".tether")
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / '.tether' / 'tether.db')}"
    assert s.resolved_blob_url == str(tmp_path / ".tether" / "blobs")
    assert s.resolved_signing_key == Path(".tether/keys/signing.ed25519")


def test_precedence_is_arguments_then_environment_then_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tether.toml").write_text('home = "from-file"\nactor = "file-actor"\nhash_workers = 3\n')
    monkeypatch.setenv("TETHER_HOME", "from-env")
    s = Settings()
    assert (s.home, s.actor, s.hash_workers) == (Path("from-env"), "file-actor", 3)
    assert Settings(home=Path("from-arg")).home == Path("from-arg")


def test_empty_database_url_means_the_embedded_default(monkeypatch):
    monkeypatch.setenv("TETHER_DATABASE_URL", "postgresql://x@y/z")
    assert Settings(database_url="").database_url is None


def test_every_setting_is_documented():
    text = DOCS.read_text()
    for name in Settings.model_fields:
        assert f"TETHER_{name.upper()}" in text, f"TETHER_{name.upper()} is missing from docs/settings.md"


def test_errors_say_what_and_what_to_do():
    e = InvalidInputError("dataset not found: /x", hint="check the path")
    assert str(e) == "dataset not found: /x; check the path"
    assert e.exit_code == 2 and e.http_status == 422
    assert NotFoundError("x").http_status == 404
    ie = IntegrityError("weights digest mismatch", expected="a" * 64, actual="b" * 64)
    assert ie.fields["expected"] == "a" * 64
    assert isinstance(ie, TetherError)
    m = MissingExtraError("ONNX models", "onnxruntime", "onnx")
    assert "pip install 'tether[onnx]'" in str(m)


def test_signing_round_trip_and_tamper(tmp_path):
    key = SigningKey.generate()
    sig = key.sign(b"manifest")
    verify_signature(key.public_key_hex, b"manifest", sig, what="test")
    with pytest.raises(IntegrityError, match="signature check failed"):
        verify_signature(key.public_key_hex, b"manifest!", sig, what="test")
    path = tmp_path / "keys" / "k"
    key.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert SigningKey.load(path).public_key_hex == key.public_key_hex
    assert re.fullmatch(r"[0-9a-f]{64}", path.with_name("k.pub").read_text().strip())


def test_bad_key_files_say_what_to_do(tmp_path):
    with pytest.raises(NotFoundError, match="tether init"):
        SigningKey.load(tmp_path / "none")
    (tmp_path / "short").write_bytes(b"abc")
    with pytest.raises(InvalidInputError, match="32-byte"):
        SigningKey.load(tmp_path / "short")
