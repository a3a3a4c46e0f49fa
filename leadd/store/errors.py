"""Telling a database that is unavailable from one record it refuses."""

from __future__ import annotations

import asyncpg

# SQLSTATE classes that say "the database is unavailable right now", not "this record cannot
# be stored": connection (08), rollback/serialization (40), resources (53), object in use (55),
# operator intervention (57), system (58), internal (XX).
_TRANSIENT_SQLSTATE = frozenset({"08", "40", "53", "55", "57", "58", "XX"})


def is_transient(exc: BaseException) -> bool:
    """True when storing failed because the database (or the way to it) is unavailable: retry
    the whole delivery or poll cycle later, never skip the record. False when the failure
    belongs to the one record (a value PostgreSQL or the driver refuses, a constraint, or a
    bug its data triggers): contain it to that record."""
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        return False  # the driver refused one of our values: the record's, not the database's
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        return True  # the server cut a pooled connection the pool had not noticed yet
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _TRANSIENT_SQLSTATE
    return False
