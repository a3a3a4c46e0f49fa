"""A fake SendGrid v3 Mail Send endpoint on a real local socket, for unit and e2e tests.

    async with FakeSendGrid(api_key="SG.test") as fake:
        client = SendGridClient(session, base_url=fake.url, api_key=fake.api_key, ...)
        ...
        assert fake.mails[0]["body"]["personalizations"][0]["to"][0]["email"] == "a@b.example"

It checks what SendGrid checks and the client could get wrong (Bearer key, one JSON body,
text/plain before text/html, string custom_args) and answers with SendGrid's shapes: 202 with
`X-Message-Id` and an empty body, `{"errors": [{message, field, help}]}` otherwise, and
`X-RateLimit-*` headers on 429. `storm(...)` answers every send with failures until `calm()`;
`counts_by_recipient()` tells how many mails each address received.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

from tests.fakes.base import FakeServer

RATE_LIMIT = 600


@dataclass(frozen=True)
class _CannedFailure:
    status: int
    reset_in: float
    message: str


def _errors(status: int, message: str, field: str | None = None, **headers: str) -> web.Response:
    return web.json_response(
        {"errors": [{"message": message, "field": field, "help": None}]},
        status=status,
        headers=headers or None,
    )


class FakeSendGrid(FakeServer):
    """Records every accepted mail in `mails` as {"body", "headers", "message_id", "received_at"}.

    Like FakeTwilio, an accepted mail is recorded before the `delay`, so a client timeout
    means "SendGrid has it, the client does not know".
    """

    def __init__(self, *, api_key: str = "SG.test-key", host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key = api_key
        self.mails: list[dict[str, Any]] = []
        self._failures: deque[_CannedFailure] = deque()
        self._storm: Iterator[_CannedFailure] | None = None
        self.storm_answers: Counter[int] = Counter()  # status -> answers given by storms

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/mail/send", self._send)

    def fail_next(
        self, n: int = 1, *, status: int = 429, reset_in: float = 1, message: str | None = None
    ) -> None:
        """Answer the next `n` sends with this status. A 429 carries X-RateLimit-Reset
        `reset_in` seconds from now, as SendGrid's rate-limited endpoints do."""
        text = message or _default_message(status)
        for _ in range(n):
            self._failures.append(_CannedFailure(status, reset_in, text))

    def storm(self, statuses: Sequence[int] = (500, 503), *, reset_in: float = 1) -> None:
        """Until `calm()`, refuse every send with the next of `statuses` in turn (nothing is
        recorded: SendGrid did not take the mail). A 429 carries X-RateLimit-Reset."""
        if not statuses:
            raise ValueError("a storm needs at least one status")
        failures = [_CannedFailure(s, reset_in, _default_message(s)) for s in statuses]
        self._storm = itertools.cycle(failures)

    def calm(self) -> None:
        self._storm = None

    def counts_by_recipient(self) -> Counter[str]:
        """Accepted mails per recipient address (lower-cased)."""
        return Counter(
            str(to["email"]).lower()
            for mail in self.mails
            for p in mail["body"].get("personalizations", [])
            for to in p.get("to", [])
        )

    async def _send(self, request: web.Request) -> web.StreamResponse:
        received_at = time.monotonic()
        if request.headers.get(hdrs.AUTHORIZATION) != f"Bearer {self.api_key}":
            return _errors(401, "The provided authorization grant is invalid, expired, or revoked")
        if self._failures:
            failure = self._failures.popleft()
            await self._wait_delay()
            return self._canned(failure)
        if self._storm is not None:
            failure = next(self._storm)
            self.storm_answers[failure.status] += 1
            await self._wait_delay()
            return self._canned(failure)
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return _errors(415, "Invalid UTF-8 in request")
        except ValueError:
            return _errors(400, "Bad Request", None)
        problem = _validate(body)
        if problem is not None:
            return _errors(400, problem[1], problem[0])
        message_id = secrets.token_urlsafe(16)
        self.mails.append(
            {
                "body": body,
                "headers": dict(request.headers),
                "message_id": message_id,
                "received_at": received_at,
            }
        )
        await self._wait_delay()
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    def _canned(self, failure: _CannedFailure) -> web.Response:
        if failure.status == 429:
            return _errors(
                429,
                failure.message,
                **{
                    "X-RateLimit-Limit": str(RATE_LIMIT),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time() + failure.reset_in)),
                },
            )
        return _errors(failure.status, failure.message)


def _default_message(status: int) -> str:
    return {
        429: "too many requests",
        400: "Bad Request",
        401: "The provided authorization grant is invalid, expired, or revoked",
        403: "The from address does not match a verified Sender Identity.",
    }.get(status, "Internal server error")


def _validate(body: Any) -> tuple[str | None, str] | None:
    """(field, message) for the mistakes SendGrid rejects with 400, else None."""
    if not isinstance(body, dict):
        return None, "Bad Request"
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return "personalizations", "The personalizations field is required."
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict) or not p.get("to"):
            return f"personalizations.{i}.to", "The to array is required."
        for key, value in (p.get("custom_args") or {}).items():
            if not isinstance(value, str) or not value:
                return (
                    f"personalizations.{i}.custom_args.{key}",
                    "Custom args values must be non-empty strings.",
                )
    sender = body.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        return "from.email", "The from email does not contain a valid address."
    if not body.get("subject") and not body.get("template_id"):
        return "subject", "The subject is required."
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return "content", "Unless a valid template_id is provided, content is required."
    if content[0].get("type") != "text/plain" and any(
        c.get("type") == "text/plain" for c in content
    ):
        return "content.0.type", "The text/plain content type must be first."
    return None
