"""TwilioClient against FakeTwilio over real sockets (and aioresponses for odd bodies), and the
X-Twilio-Signature helpers against Twilio's published vectors and its own RequestValidator."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from leadd.providers.twilio import TwilioClient
from leadd.providers.twilio_signature import compute_signature, validate_signature
from leadd.providers.twilio_wire import (
    INVALID_RECIPIENT_CODES,
    OPT_OUT_CODES,
    TwilioError,
    parse_error,
)
from tests.fakes.twilio import FakeTwilio

SID = "AC" + "1" * 32
TOKEN = "secret-token"
TO = "+15125550123"
FROM = "+15125550199"
OTHER_FROM = "+15125550177"
CALLBACK = "https://leadd.example/twilio/status"

# messaging.md §5, from twilio-python tests/unit/test_request_validator.py.
VECTOR_TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_URL_443 = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as f:
        yield f


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(
    session: aiohttp.ClientSession, base_url: str, *, token: str = TOKEN, **kw: float
) -> TwilioClient:
    return TwilioClient(session, base_url=base_url, account_sid=SID, auth_token=token, **kw)


async def send(client: TwilioClient, to: str = TO, from_: str = FROM, body: str = "Hi Jamie"):
    return await client.send_sms(to=to, from_=from_, body=body, status_callback=CALLBACK)


# -- signatures -------------------------------------------------------------------------------


def test_signature_matches_published_vectors() -> None:
    assert (
        compute_signature(VECTOR_TOKEN, VECTOR_URL, VECTOR_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert (
        compute_signature(VECTOR_TOKEN, VECTOR_URL_443, VECTOR_PARAMS)
        == "kvajT1Ptam85bY51eRf/AJRuM3w="
    )


@pytest.mark.parametrize("url", [VECTOR_URL, VECTOR_URL_443])
@pytest.mark.parametrize(
    "signature", ["RSOYDt4T1cUTdK1PDd93/VVr8B8=", "kvajT1Ptam85bY51eRf/AJRuM3w="]
)
def test_validate_accepts_url_with_and_without_default_port(url: str, signature: str) -> None:
    """Twilio signs either form; like RequestValidator we accept both, whichever we see."""
    assert validate_signature(VECTOR_TOKEN, url, VECTOR_PARAMS, signature)
    assert RequestValidator(VECTOR_TOKEN).validate(url, VECTOR_PARAMS, signature)


def test_validate_rejects_tampering() -> None:
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    tampered = {**VECTOR_PARAMS, "Digits": "1235"}
    assert not validate_signature(VECTOR_TOKEN, VECTOR_URL, tampered, good)
    assert not validate_signature("54321", VECTOR_URL, VECTOR_PARAMS, good)
    assert not validate_signature(VECTOR_TOKEN, VECTOR_URL + "&baz=3", VECTOR_PARAMS, good)
    assert not validate_signature(VECTOR_TOKEN, VECTOR_URL, VECTOR_PARAMS, "")
    assert not validate_signature(VECTOR_TOKEN, VECTOR_URL, VECTOR_PARAMS, None)
    assert not validate_signature(VECTOR_TOKEN, "https://h:notaport/x", VECTOR_PARAMS, good)


def _random_params(rng: random.Random) -> MultiDict[str]:
    alphabet = "abcXYZ019 +-_=&?/é✓"
    names = ["MediaUrl", "Body", "From", "To", "NumMedia", "Zeta", "alpha"]
    md: MultiDict[str] = MultiDict()
    for _ in range(rng.randint(0, 8)):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        md.add(rng.choice(names), value)  # repeated names and duplicate values happen
    return md


def _random_url(rng: random.Random) -> str:
    scheme = rng.choice(["http", "https"])
    port = rng.choice(["", ":443", ":80", ":8443"])
    query = rng.choice(["", "?a=1", "?a=1&b=%20x", "?bodyless=true"])
    return f"{scheme}://hooks.leadd.example{port}/twilio/{rng.choice(['sms', 'status'])}{query}"


def test_signature_agrees_with_twilio_sdk_on_random_requests() -> None:
    """Our HMAC and our port handling give RequestValidator's answer, repeated keys included."""
    rng = random.Random(20251125)
    validator = RequestValidator(TOKEN)
    for _ in range(300):
        url, params = _random_url(rng), _random_params(rng)
        ours = compute_signature(TOKEN, url, params)
        assert ours == validator.compute_signature(url, params)
        # Signed over some variant of the URL Twilio might have used...
        signed_url = rng.choice([url, _random_url(rng)])
        signature = validator.compute_signature(signed_url, params)
        assert validate_signature(TOKEN, url, params, signature) == validator.validate(
            url, params, signature
        )
        # ...and a forged one never passes either.
        forged = compute_signature("not-the-token", url, params)
        assert not validate_signature(TOKEN, url, params, forged)
        assert not validator.validate(url, params, forged)


def test_repeated_keys_are_all_signed() -> None:
    """A dropped MediaUrl must change the signature (multi-dict values all count)."""
    both = MultiDict([("MediaUrl", "https://a"), ("MediaUrl", "https://b")])
    one = MultiDict([("MediaUrl", "https://a")])
    assert compute_signature(TOKEN, VECTOR_URL, both) != compute_signature(TOKEN, VECTOR_URL, one)


# -- sending ---------------------------------------------------------------------------------


async def test_send_success_records_sid(fake: FakeTwilio, session: aiohttp.ClientSession) -> None:
    result = await send(make_client(session, fake.url))

    assert result.outcome == "sent" and result.ok
    assert result.http_status == 201
    assert len(fake.messages) == 1
    msg = fake.messages[0]
    assert result.provider_id == msg["sid"] and msg["sid"].startswith("SM")
    assert (msg["to"], msg["from"], msg["body"], msg["status_callback"]) == (
        TO,
        FROM,
        "Hi Jamie",
        CALLBACK,
    )
    assert result.latency > 0 and not result.dry_run and not result.opted_out


async def test_status_callback_omitted_when_none(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, fake.url)
    result = await client.send_sms(to=TO, from_=FROM, body="x", status_callback=None)
    assert result.outcome == "sent"
    assert fake.messages[0]["status_callback"] is None


async def test_429_is_retry_with_retry_after_and_pauses_only_that_sender(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """Retry-After comes back to the caller, and the sender's limiter holds its next send."""
    client = make_client(session, fake.url, messages_per_second=100.0)
    fake.fail_next(1, status=429, code=20429, retry_after=0.4)

    throttled = await send(client)
    assert throttled.outcome == "retry"
    assert throttled.http_status == 429 and throttled.error_code == "20429"
    assert throttled.retry_after == pytest.approx(0.4)
    assert not fake.messages

    await send(client, from_=OTHER_FROM)  # another sender is not held back...
    await send(client)  # ...while this one waits out the pause
    assert [m["from"] for m in fake.messages] == [OTHER_FROM, FROM]
    assert fake.messages[1]["received_at"] - fake.messages[0]["received_at"] >= 0.2


@pytest.mark.parametrize("header", ["86400", "Wed, 21 Oct 2099 07:28:00 GMT"])
async def test_retry_after_is_capped_so_one_answer_cannot_park_a_sender(
    fake: FakeTwilio, session: aiohttp.ClientSession, header: str
) -> None:
    """Defect 7: `Retry-After: 86400` (or a date far ahead) must not park the sender, and so
    every other lead's first SMS, for a day: the pause and the caller's delay are capped."""
    client = make_client(session, fake.url, messages_per_second=100.0)
    fake.respond_next(
        status=429,
        body=json.dumps({"code": 20429, "message": "Too Many Requests", "status": 429}),
        headers={"Retry-After": header},
    )
    throttled = await send(client)
    assert throttled.outcome == "retry" and throttled.retry_after == 60.0
    assert 59.0 < client.limiter(FROM).paused_for() <= 60.0


async def test_the_gate_runs_after_the_wait_for_a_slot_and_can_stop_the_send(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """The sender is paused by a 429; the gate of the next send runs only once the pause is
    over (nothing left to wait for between the gate and the POST), and a gate that says no
    means no request at all."""
    client = make_client(session, fake.url, messages_per_second=100.0)
    fake.fail_next(1, status=429, code=20429, retry_after=0.3)
    await send(client)
    seen: list[float] = []

    async def gate(answer: bool) -> bool:
        seen.append(client.limiter(FROM).paused_for())
        return answer

    refused = await client.send_sms(
        to=TO, from_=FROM, body="x", status_callback=None, gate=lambda: gate(False)
    )
    assert refused is None and fake.messages == [] and seen == [0.0]
    sent = await client.send_sms(
        to=TO, from_=FROM, body="y", status_callback=None, gate=lambda: gate(True)
    )
    assert sent is not None and sent.outcome == "sent"
    assert [m["body"] for m in fake.messages] == ["y"]


async def test_dry_run_still_asks_the_gate(fake: FakeTwilio) -> None:
    async with aiohttp.ClientSession() as session:
        client = make_client(session, fake.url, token="")
        calls: list[str] = []

        async def gate() -> bool:
            calls.append("gate")
            return False

        assert (
            await client.send_sms(to=TO, from_=FROM, body="x", status_callback=None, gate=gate)
            is None
        )
    assert calls == ["gate"] and fake.messages == []


async def test_20429_in_body_without_429_status_is_retry(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    fake.respond_next(
        status=400, body=json.dumps({"status": 400, "message": "Too many", "code": 20429})
    )
    result = await send(make_client(session, fake.url))
    assert result.outcome == "retry" and result.error_code == "20429"
    assert result.retry_after is None  # Twilio said nothing; the caller's backoff decides


async def test_opted_out_recipient(fake: FakeTwilio, session: aiohttp.ClientSession) -> None:
    fake.opted_out.add(TO)
    result = await send(make_client(session, fake.url))
    assert result.outcome == "failed" and result.opted_out
    assert result.error_code == "21610" and int(result.error_code) in OPT_OUT_CODES
    assert result.http_status == 400
    assert result.error_message == "Attempt to send to unsubscribed recipient"
    assert not fake.messages


async def test_invalid_recipient_is_permanent(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    fake.invalid.add(TO)
    result = await send(make_client(session, fake.url))
    assert result.outcome == "failed" and not result.opted_out
    assert result.error_code == "21211" and 21211 in INVALID_RECIPIENT_CODES
    assert result.error_message and "Invalid 'To'" in result.error_message


async def test_wrong_credentials_is_permanent(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    result = await send(make_client(session, fake.url, token="wrong"))
    assert (result.outcome, result.http_status, result.error_code) == ("failed", 401, "20003")


@pytest.mark.parametrize(
    ("status", "code", "expected_code"), [(500, None, "http_500"), (503, 20503, "20503")]
)
async def test_server_errors_are_retry(
    fake: FakeTwilio,
    session: aiohttp.ClientSession,
    status: int,
    code: int | None,
    expected_code: str,
) -> None:
    """5xx is transient whether the body is Twilio JSON or a proxy's HTML page."""
    fake.fail_next(1, status=status, code=code)
    result = await send(make_client(session, fake.url))
    assert (result.outcome, result.http_status, result.error_code) == (
        "retry",
        status,
        expected_code,
    )
    assert result.retry_after is None


async def test_queue_overflow_21611_is_retry(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, status=400, code=21611, retry_after=0)
    result = await send(make_client(session, fake.url))
    assert result.outcome == "retry" and result.error_code == "21611"


async def test_timeout_is_retry_and_find_sent_resolves_it(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """The ambiguous case: Twilio took the message but we timed out. Reconciliation finds it."""
    since = dt.datetime.now(dt.UTC)
    client = make_client(session, fake.url, timeout=0.2)
    fake.delay = 2.0

    result = await send(client, body="Your brakes are ready")
    assert (result.outcome, result.error_code, result.http_status) == ("retry", "timeout", None)
    assert len(fake.messages) == 1

    fake.delay = 0.0
    sid = await client.find_sent(to=TO, from_=FROM, since=since, body="Your brakes are ready")
    assert sid == fake.messages[0]["sid"]


async def test_connection_error_is_retry(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await send(make_client(session, f"http://127.0.0.1:{port}"))
    assert (result.outcome, result.error_code, result.http_status) == ("retry", "connection", None)


async def test_dry_run_makes_no_request(fake: FakeTwilio) -> None:
    requests: list[str] = []

    async def on_request_start(_s: object, _c: object, params: aiohttp.TraceRequestStartParams):
        requests.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = make_client(session, fake.url, token="")
        assert client.dry_run
        result = await send(client)
        assert await client.find_sent(to=TO, from_=FROM, since=dt.datetime.now(dt.UTC)) is None
    assert requests == []
    assert result.outcome == "sent" and result.dry_run
    assert result.provider_id and re.fullmatch(r"DRY[0-9a-f]{32}", result.provider_id)
    assert not fake.messages


async def test_rate_limit_spaces_sends_per_sender(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """At 5 msg/s one sender's second message waits ~0.2 s; another sender goes at once."""
    client = make_client(session, fake.url, messages_per_second=5.0)
    await asyncio.gather(
        send(client, body="first"), send(client, body="second"), send(client, from_=OTHER_FROM)
    )
    same = sorted((m for m in fake.messages if m["from"] == FROM), key=lambda m: m["received_at"])
    other = next(m for m in fake.messages if m["from"] == OTHER_FROM)
    assert len(same) == 2
    assert same[1]["received_at"] - same[0]["received_at"] >= 0.18
    assert other["received_at"] < same[1]["received_at"]


# -- error parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (
            400,
            '{"code": 21211, "message": "Invalid To", "more_info": "u", "status": 400}',
            ("21211", "Invalid To"),
        ),
        (
            429,
            '{"status":429,"message":"Too many requests","code":20429,"moreInfo":"u"}',
            ("20429", "Too many requests"),
        ),
        (
            400,
            '{"type":"t","title":"Bad","status":400,"code":"60200","detail":"Nope"}',
            ("60200", "Nope"),
        ),
        (502, "<html>Bad gateway</html>", ("http_502", "<html>Bad gateway</html>")),
        (400, "[1, 2]", ("http_400", "[1, 2]")),
        (400, '{"code": true, "message": 5}', ("http_400", None)),
        (500, "", ("http_500", None)),
    ],
)
def test_parse_error_is_defensive(status: int, text: str, expected: tuple[str, str | None]) -> None:
    assert parse_error(status, text) == expected


async def test_camelcase_error_through_send(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    fake.respond_next(
        status=400, body='{"status":400,"code":21610,"message":"Unsubscribed","moreInfo":"x"}'
    )
    result = await send(make_client(session, fake.url))
    assert result.outcome == "failed" and result.opted_out and result.error_code == "21610"


async def test_2xx_without_sid_is_still_sent(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """Twilio accepted (and billed) it: resending because the body was odd would duplicate."""
    fake.respond_next(status=201, body="not json", content_type="text/plain")
    result = await send(make_client(session, fake.url))
    assert result.outcome == "sent" and result.provider_id is None


# -- reconciliation --------------------------------------------------------------------------

SINCE = dt.datetime(2025, 11, 25, 16, 0, 0, tzinfo=dt.UTC)


async def test_find_sent_matches_recipient_sender_time_and_body(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, fake.url)
    fake.add_message(to=TO, from_=FROM, body="old", date_created=SINCE - dt.timedelta(minutes=5))
    fake.add_message(to=TO, from_=OTHER_FROM, body="hello", date_created=SINCE)
    target = fake.add_message(
        to=TO, from_=FROM, body="hello", date_created=SINCE - dt.timedelta(seconds=30)
    )

    assert await client.find_sent(to=TO, from_=FROM, since=SINCE, body="hello") == target["sid"]
    assert await client.find_sent(to=TO, from_=FROM, since=SINCE) == target["sid"]
    assert await client.find_sent(to=TO, from_=FROM, since=SINCE, body="other") is None
    # "old" is more than 60 s before `since`: not a match.
    assert await client.find_sent(to=TO, from_=FROM, since=SINCE, body="old") is None
    assert await client.find_sent(to="+15125550100", from_=FROM, since=SINCE) is None

    first = fake.list_requests[0]
    assert first == {"To": TO, "From": FROM, "DateSent>": "2025-11-25", "PageSize": "50"}


async def test_find_sent_follows_pages(fake: FakeTwilio, session: aiohttp.ClientSession) -> None:
    client = make_client(session, fake.url)
    target = fake.add_message(to=TO, from_=FROM, body="wanted", date_created=SINCE)
    for i in range(120):  # newer messages listed first push the target to page 3
        fake.add_message(
            to=TO, from_=FROM, body=f"n{i}", date_created=SINCE + dt.timedelta(seconds=i + 1)
        )

    assert await client.find_sent(to=TO, from_=FROM, since=SINCE, body="wanted") == target["sid"]
    assert [r.get("Page") for r in fake.list_requests] == [None, "1", "2"]

    fake.list_requests.clear()
    assert await client.find_sent(to=TO, from_=FROM, since=SINCE, body="absent") is None
    # Filtered by DateSent, then (for still-queued messages) the unfiltered newest-first list.
    assert ["DateSent>" in r for r in fake.list_requests] == [True] * 3 + [False] * 3


async def test_find_sent_finds_a_message_still_queued_at_twilio(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """A message waiting in Twilio's sender queue has no date_sent, so the DateSent filter
    misses it; without the second scan a crash right after Twilio accepted it would resend."""
    client = make_client(session, fake.url)
    for i in range(60):  # an older history, before the cutoff
        fake.add_message(
            to=TO, from_=FROM, body=f"old{i}", date_created=SINCE - dt.timedelta(hours=1, seconds=i)
        )
    queued = fake.add_message(to=TO, from_=FROM, body="hello", date_created=SINCE, queued=True)

    assert await client.find_sent(to=TO, from_=FROM, since=SINCE, body="hello") == queued["sid"]

    fake.list_requests.clear()
    assert await client.find_sent(to=TO, from_=FROM, since=SINCE, body="absent") is None
    # The unfiltered scan stops at the first page reaching before the cutoff (the filtered
    # one has day resolution, so it pages through the whole day).
    assert ["DateSent>" in r for r in fake.list_requests] == [True, True, False]


async def test_find_sent_raises_instead_of_guessing(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(TwilioError) as info:
        await make_client(session, fake.url, token="wrong").find_sent(
            to=TO, from_=FROM, since=SINCE
        )
    assert info.value.http_status == 401 and info.value.code == "20003"

    client = make_client(session, fake.url)
    fake.respond_next(status=500, body="oops", content_type="text/plain", method="GET")
    with pytest.raises(TwilioError) as info:
        await client.find_sent(to=TO, from_=FROM, since=SINCE)
    assert info.value.http_status == 500

    fake.respond_next(status=200, body='{"unexpected": true}', method="GET")
    with pytest.raises(TwilioError):
        await client.find_sent(to=TO, from_=FROM, since=SINCE)

    page = {"messages": [], "next_page_uri": "https://evil.example/steal"}
    fake.respond_next(status=200, body=json.dumps(page), method="GET")
    with pytest.raises(TwilioError):
        await client.find_sent(to=TO, from_=FROM, since=SINCE)

    with pytest.raises(ValueError):
        await client.find_sent(to=TO, from_=FROM, since=SINCE.replace(tzinfo=None))


async def test_client_without_session_owns_and_closes_one(fake: FakeTwilio) -> None:
    async with TwilioClient(None, base_url=fake.url, account_sid=SID, auth_token=TOKEN) as client:
        result = await send(client)
        owned = client._session
    assert result.outcome == "sent"
    assert owned is not None and owned.closed
