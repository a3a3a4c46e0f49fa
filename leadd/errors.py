"""Exceptions in words fit for an unauthenticated endpoint or a stored reason.

An exception's message may quote what caused it: asyncpg's "invalid input for query argument
$3: 'Jamie'", a connection string, a customer's phone. `describe_error` keeps the exception
type and a fixed description of its kind, never the message; the log gets the message.
"""

from __future__ import annotations

import asyncpg

# Most specific first: asyncpg's connection errors are PostgresErrors, ConnectionError an OSError.
_DESCRIPTIONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (
        (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError),
        "the database refused the credentials",
    ),
    (asyncpg.PostgresConnectionError, "the database connection failed"),
    (asyncpg.InvalidCatalogNameError, "the database does not exist"),
    (asyncpg.DataError, "the database refused a value"),
    (asyncpg.IntegrityConstraintViolationError, "the database refused a row (constraint)"),
    (asyncpg.PostgresError, "the database refused a statement"),
    (asyncpg.exceptions._base.DataError, "the database driver refused a value"),
    (asyncpg.InterfaceError, "database client error"),
    (TimeoutError, "timed out"),
    (ConnectionError, "connection refused or reset"),
    (OSError, "network or file system error"),
    (UnicodeError, "text that cannot be encoded"),
    (ValueError, "invalid value"),
    (TypeError, "value of the wrong type"),
    (LookupError, "missing key or index"),
    (ArithmeticError, "number out of range"),
)


def describe_error(exc: BaseException) -> str:
    """`"CheckViolationError: the database refused a row (constraint)"`: the type and a fixed
    description, never the exception's message."""
    for types, text in _DESCRIPTIONS:
        if isinstance(exc, types):
            return f"{type(exc).__name__}: {text}"
    return f"{type(exc).__name__}: unexpected error"
