"""Staff sign-in: passwords (Argon2id), sessions, CSRF tokens, and the slowdown after failures.

- An unknown e-mail and a wrong password get the same answer, after the same work (a dummy
  hash is verified for an unknown e-mail), and count against the same limits.
- Failures are counted per account (the e-mail typed, known or not) and per client address,
  in the database (every daemon sees them). Past the limit, each further attempt must wait
  twice as long as the last, up to MAX_DELAY; a count is forgotten after FAILURE_WINDOW
  without failures, and a success clears the account's count.
- A session is a random 256-bit cookie value; the database keeps its sha256. The CSRF token of
  every form is an HMAC of the cookie value, so it needs no storage and a page from another
  site cannot know it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from leadd.config import StaffUser
from leadd.logs import get_logger
from leadd.runtime import Runtime

log = get_logger(__name__)

SESSION_TTL = dt.timedelta(hours=12)
FAILURE_WINDOW = dt.timedelta(minutes=15)  # quiet time after which failures are forgotten
ACCOUNT_LIMIT = 5  # failures per e-mail before the slowdown
ADDRESS_LIMIT = 20  # per client address (a proxy in front puts all staff behind one)
BASE_DELAY = dt.timedelta(seconds=30)
MAX_DELAY = dt.timedelta(minutes=15)
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # Argon2id with argon2-cffi's recommended parameters


def hash_password(password: str) -> str:
    """An Argon2id hash for `staff[].password_hash` (`leadd hash-password`)."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"use at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


@cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def csrf_token(secret: str) -> str:
    """The token forms carry, bound to a cookie value the page's JavaScript cannot read."""
    return hmac.new(secret.encode(), b"leadd csrf", hashlib.sha256).hexdigest()[:32]


def csrf_ok(secret: str | None, given: object) -> bool:
    return (
        bool(secret)
        and isinstance(given, str)
        and hmac.compare_digest(csrf_token(str(secret)), given)
    )


def lockout_until(failures: int, last_at: dt.datetime, limit: int) -> dt.datetime | None:
    """When the next attempt may be made after `failures` (None: now)."""
    if failures < limit:
        return None
    delay: dt.timedelta = min(BASE_DELAY * 2 ** min(failures - limit, 16), MAX_DELAY)
    return last_at + delay


@dataclass(frozen=True)
class SignIn:
    user: StaffUser | None = None
    session: str | None = None  # the cookie value, on success
    retry_at: dt.datetime | None = None  # slowed down: nothing was checked


def _keys(email: str, address: str) -> tuple[str, str]:
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    place = hashlib.sha256(address.encode()).hexdigest()
    return f"account:{account}", f"address:{place}"


async def sign_in(rt: Runtime, email: str, password: str, address: str) -> SignIn:
    """Check a sign-in. An empty SignIn: wrong e-mail or password (the same answer for both)."""
    store, now = rt.store, rt.clock()
    account, place = _keys(email, address)
    failures = await store.signin_failures(keys=[account, place], window_start=now - FAILURE_WINDOW)
    waits = [
        lockout_until(f.failures, f.last_at, ACCOUNT_LIMIT if f.key == account else ADDRESS_LIMIT)
        for f in failures
    ]
    retry_at = max((w for w in waits if w is not None), default=None)
    if retry_at is not None and retry_at > now:
        log.warning("staff.signin_slowed", retry_in=round((retry_at - now).total_seconds()))
        return SignIn(retry_at=retry_at)
    user = rt.config.staff_user(email)
    # Verified off the event loop (tens of milliseconds by design), and for an unknown e-mail
    # too, so neither the answer nor its timing tells whether the account exists.
    ok = await asyncio.to_thread(
        _verify, user.password_hash if user else _dummy_hash(), password[:1024]
    )
    if user is None or not ok:
        await store.record_signin_failure(
            keys=[account, place], now=now, window_start=now - FAILURE_WINDOW
        )
        log.info("staff.signin_failed")
        return SignIn()
    await store.clear_signin_failures(keys=[account])
    session = new_token()
    await store.create_staff_session(
        token_hash=token_hash(session), email=user.email, now=now, expires_at=now + SESSION_TTL
    )
    log.info("staff.signed_in", role=user.role)
    return SignIn(user=user, session=session)


async def current_user(rt: Runtime, session: str | None) -> StaffUser | None:
    """The person a session cookie belongs to: signed in, not expired, still in the config."""
    if not session or len(session) > 128:
        return None
    email = await rt.store.staff_session(token_hash=token_hash(session), now=rt.clock())
    return rt.config.staff_user(email) if email else None


async def sign_out(rt: Runtime, session: str) -> None:
    await rt.store.delete_staff_session(token_hash=token_hash(session), now=rt.clock())
