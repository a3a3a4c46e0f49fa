"""The typed gateway to PostgreSQL (issue 8's target shape): the only code that runs SQL.

`OpsStore` serves the ops API and CLI; the rest of leadd still uses leadd/db.py until it is
moved here.
"""

import asyncpg

from leadd.store.ops import OpsStore

# What a lost, refused or failing database raises through the store. InternalClientError:
# asyncpg's protocol when the server cut a pooled connection that the pool had not noticed.
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)

__all__ = ["DB_ERRORS", "OpsStore"]
