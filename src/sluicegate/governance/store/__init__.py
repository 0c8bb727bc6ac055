"""Database access for keys, teams and spend: SQLite by default, PostgreSQL with `database_url: postgresql://...`."""

from __future__ import annotations

from sluicegate.errors import ConfigurationError
from sluicegate.governance.store.base import AlreadyExists, Store, StoreUnavailable

__all__ = ["DEFAULT_DATABASE_URL", "AlreadyExists", "Store", "StoreUnavailable", "open_store"]

DEFAULT_DATABASE_URL = "sqlite:///sluicegate.db"


def open_store(url: str) -> Store:
    """The store for `url`; nothing is connected until `await store.open()`."""
    if url.startswith("sqlite:"):
        from sluicegate.governance.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from sluicegate.governance.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigurationError("database_url must start with sqlite:/// or postgresql://")
