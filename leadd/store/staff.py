"""Staff sign-in state kept in the database so that every daemon behind one address shares it:
sessions (by the hash of the cookie's value) and failed sign-ins (by hashed key)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from leadd.store.chat_models import SigninFailures
from leadd.store.core import StoreCore


class StaffStore(StoreCore):
    async def create_staff_session(
        self, *, token_hash: bytes, email: str, now: dt.datetime, expires_at: dt.datetime
    ) -> None:
        await self._execute("staff_create_session", token_hash, email, now, expires_at)

    async def staff_session(self, *, token_hash: bytes, now: dt.datetime) -> str | None:
        """The signed-in e-mail for a session cookie's hash, unless expired."""
        email: str | None = await self._fetchval("staff_session", token_hash, now)
        return email

    async def delete_staff_session(self, *, token_hash: bytes, now: dt.datetime) -> None:
        await self._execute("staff_delete_session", token_hash, now)

    async def signin_failures(
        self, *, keys: Sequence[str], window_start: dt.datetime
    ) -> list[SigninFailures]:
        rows = await self._fetch("staff_signin_failures", list(keys), window_start)
        return [SigninFailures.from_row(r) for r in rows]

    async def record_signin_failure(
        self, *, keys: Sequence[str], now: dt.datetime, window_start: dt.datetime
    ) -> None:
        await self._execute("staff_record_signin_failure", list(keys), now, window_start)

    async def clear_signin_failures(self, *, keys: Sequence[str]) -> None:
        await self._execute("staff_clear_signin_failures", list(keys))
