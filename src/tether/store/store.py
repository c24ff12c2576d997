"""`Store`: the database and the blob store opened together from `Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from tether.core.settings import Settings
from tether.store.blobs import BlobStore
from tether.store.database import Database


@dataclass
class Store:
    settings: Settings
    db: Database
    blobs: BlobStore

    @classmethod
    def open(cls, settings: Settings | None = None) -> Store:
        settings = settings or Settings()
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        blobs = BlobStore(settings.resolved_blob_url, options=settings.blob_options)
        return cls(settings=settings, db=db, blobs=blobs)

    def close(self) -> None:
        self.db.dispose()
