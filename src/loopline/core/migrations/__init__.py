"""Alembic migrations of the metadata store, applied automatically on open."""
