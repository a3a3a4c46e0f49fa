"""Transitional: the store moved to leadd/store/; this name goes once every caller uses it."""

from leadd.store.core import Conn, Migration, MigrationError, Q, StoreCore, create_pool, migrate

Database = StoreCore

__all__ = ["Conn", "Database", "Migration", "MigrationError", "Q", "create_pool", "migrate"]
