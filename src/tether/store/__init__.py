"""Storage: the metadata database (SQLAlchemy + Alembic) and the content-addressed blob store (fsspec)."""

from tether.store.blobs import BlobStore
from tether.store.database import Database, DatabaseUnavailableError, is_immutability_violation, normalise_url
from tether.store.store import Store

__all__ = [
    "BlobStore",
    "Database",
    "DatabaseUnavailableError",
    "Store",
    "is_immutability_violation",
    "normalise_url",
]
