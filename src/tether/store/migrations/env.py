"""Alembic environment: tether always passes a live connection in ``config.attributes['connection']``."""

from __future__ import annotations

from alembic import context

from tether.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by running the alembic CLI by hand
    raise RuntimeError("run migrations through tether (tether.store.Database), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
