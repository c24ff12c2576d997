"""The whole registry on an S3-compatible blob store (a moto server on 127.0.0.1)."""

import pytest

from tests.store.test_blobs import s3_endpoint  # noqa: F401  (fixture)
from tether.core import Settings
from tether.registry import Registry


@pytest.mark.s3
def test_register_load_and_reproduce_on_s3(s3_endpoint, project, tmp_path):  # noqa: F811
    settings = Settings(
        home=tmp_path / "home",
        database_url="",
        blob_url="s3://models/tether",
        blob_options={"endpoint_url": s3_endpoint, "key": "k", "secret": "s"},
    )
    with Registry.open(settings) as reg:
        v = project.register(reg)
        assert reg.store.blobs.exists(v.weights.digest)
        assert not (tmp_path / "home" / "blobs").exists()
        reg.load("fraud/1").close()
        assert reg.reproduce("fraud/1", tmp_path / "out").verified
