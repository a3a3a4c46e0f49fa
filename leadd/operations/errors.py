"""Why a use case refused: each adapter maps these to its answer (HTTP status, exit code).
`reason` is safe to show to the caller; `extra` adds fields to the answer (e.g. current_state)."""

from __future__ import annotations

from typing import Any


class OpsError(Exception):
    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.extra = extra


class BadRequest(OpsError):
    """A parameter is malformed or unknown; `parameter` names it."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}", parameter=parameter)


class NotFound(OpsError):
    """No such thing for this tenant (or an id that cannot be one)."""


class Forbidden(OpsError):
    """Nobody may do this (not a question of the caller's role)."""


class Conflict(OpsError):
    """The thing's current state forbids it."""


class Unprocessable(OpsError):
    """Well-formed, but the lead lacks what it needs (e.g. no phone to text)."""
