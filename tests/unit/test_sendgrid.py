"""SendGridClient against FakeSendGrid over real sockets, and the Event Webhook signature check
against SendGrid's own test vector and sendgrid-python's EventWebhook."""

from __future__ import annotations

import base64
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sendgrid.helpers.eventwebhook import EventWebhook

from leadd.providers import sendgrid as sg
from leadd.providers.sendgrid import SendGridClient, first_error_message, verify_event_signature
from tests.fakes.sendgrid import FakeSendGrid

API_KEY = "SG.unit-test-key"
TO = "jamie.rivera@example.com"
FROM_EMAIL = "service@acme-auto.example"
FROM_NAME = "Acme Auto Care"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSendGrid]:
    async with FakeSendGrid(api_key=API_KEY) as f:
        yield f


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(
    session: aiohttp.ClientSession, base_url: str, *, api_key: str = API_KEY, timeout: float = 5.0
) -> SendGridClient:
    return SendGridClient(
        session,
        base_url=base_url,
        api_key=api_key,
        from_email=FROM_EMAIL,
        from_name=FROM_NAME,
        timeout=timeout,
    )


async def send(client: SendGridClient, **overrides: object):
    kwargs: dict[str, object] = {
        "to": TO,
        "to_name": "Jamie Rivera",
        "subject": "Your brake inspection estimate",
        "text": "Hi Jamie, your estimate is ready.",
        "html": "<p>Hi Jamie, your estimate is ready.</p>",
        "custom_args": {"lead_id": "L1", "touch_point_id": "T1"},
    }
    kwargs.update(overrides)
    return await client.send_email(**kwargs)  # type: ignore[arg-type]


# -- sending ---------------------------------------------------------------------------------


async def test_202_returns_message_id_and_sends_the_documented_body(
    fake: FakeSendGrid, session: aiohttp.ClientSession
) -> None:
    lead_id = uuid.uuid4()
    result = await send(
        make_client(session, fake.url),
        custom_args={"lead_id": lead_id, "attempt": 3, "empty": "", "none": None},
        headers={
            "List-Unsubscribe": "<https://leadd.example/u/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )

    assert result.outcome == "sent" and result.http_status == 202
    assert len(fake.mails) == 1
    mail = fake.mails[0]
    assert result.provider_id == mail["message_id"]
    assert mail["headers"]["Authorization"] == f"Bearer {API_KEY}"
    body = mail["body"]
    assert body["from"] == {"email": FROM_EMAIL, "name": FROM_NAME}
    assert body["subject"] == "Your brake inspection estimate"
    [personalization] = body["personalizations"]
    assert personalization["to"] == [{"email": TO, "name": "Jamie Rivera"}]
    # Strings only, and empty values dropped: SendGrid would 400 the whole mail otherwise.
    assert personalization["custom_args"] == {"lead_id": str(lead_id), "attempt": "3"}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_text_only_mail_has_no_html_part(
    fake: FakeSendGrid, session: aiohttp.ClientSession
) -> None:
    result = await send(make_client(session, fake.url), html=None, to_name=None, custom_args={})
    assert result.outcome == "sent"
    body = fake.mails[0]["body"]
    assert body["content"] == [{"type": "text/plain", "value": "Hi Jamie, your estimate is ready."}]
    assert body["personalizations"] == [{"to": [{"email": TO}]}]
    assert "headers" not in body


async def test_429_is_retry_with_reset(fake: FakeSendGrid, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, status=429, reset_in=30)
    result = await send(make_client(session, fake.url))
    assert (result.outcome, result.http_status, result.error_code) == ("retry", 429, "http_429")
    assert result.retry_after is not None and 28 <= result.retry_after <= 31
    assert result.error_message == "too many requests"
    assert not fake.mails


async def test_429_with_a_reset_a_day_away_pauses_mail_a_minute_at_most(
    fake: FakeSendGrid, session: aiohttp.ClientSession
) -> None:
    """A reset header far in the future pauses every e-mail for at most MAX_PAUSE."""
    fake.fail_next(1, status=429, reset_in=86_400)
    client = make_client(session, fake.url)
    result = await send(client)
    assert result.outcome == "retry"
    assert 50 < client.paused_for() <= sg.MAX_PAUSE


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "The from address does not match a verified Sender Identity."),
        (403, "The from address does not match a verified Sender Identity."),
        (413, "Payload too large"),
    ],
)
async def test_4xx_is_permanent_with_first_error_message(
    fake: FakeSendGrid, session: aiohttp.ClientSession, status: int, message: str
) -> None:
    fake.fail_next(1, status=status, message=message)
    result = await send(make_client(session, fake.url))
    assert (result.outcome, result.http_status, result.error_code) == (
        "failed",
        status,
        f"http_{status}",
    )
    assert result.error_message == message and result.retry_after is None


async def test_wrong_key_is_permanent(fake: FakeSendGrid, session: aiohttp.ClientSession) -> None:
    result = await send(make_client(session, fake.url, api_key="SG.wrong"))
    assert (result.outcome, result.http_status) == ("failed", 401)
    assert result.error_message and "authorization grant" in result.error_message


async def test_5xx_is_retry(fake: FakeSendGrid, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, status=503)
    result = await send(make_client(session, fake.url))
    assert (result.outcome, result.http_status, result.error_code) == ("retry", 503, "http_503")


async def test_timeout_is_retry(fake: FakeSendGrid, session: aiohttp.ClientSession) -> None:
    fake.delay = 2.0
    result = await send(make_client(session, fake.url, timeout=0.2))
    assert (result.outcome, result.error_code, result.http_status) == ("retry", "timeout", None)
    assert len(fake.mails) == 1  # SendGrid has it: why custom_args carry a dedupe id


async def test_connection_error_is_retry(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await send(make_client(session, f"http://127.0.0.1:{port}"))
    assert (result.outcome, result.error_code) == ("retry", "connection")


async def test_dry_run_makes_no_request(fake: FakeSendGrid) -> None:
    requests: list[str] = []

    async def on_request_start(_s: object, _c: object, params: aiohttp.TraceRequestStartParams):
        requests.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = make_client(session, fake.url, api_key="")
        assert client.dry_run
        result = await send(client)
    assert requests == [] and not fake.mails
    assert result.outcome == "sent" and result.dry_run
    assert result.provider_id and re.fullmatch(r"DRY[0-9a-f]{32}", result.provider_id)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"errors":[{"message":"first","field":"x"},{"message":"second"}]}', "first"),
        ('{"errors":[{"field":null}]}', None),
        ('{"errors": "nope"}', None),
        ("<html>gateway</html>", "<html>gateway</html>"),
        ("", None),
    ],
)
def test_first_error_message_is_defensive(text: str, expected: str | None) -> None:
    assert first_error_message(text) == expected


# -- event webhook signature -----------------------------------------------------------------

# sendgrid-python test/unit/test_eventwebhook.py: the body includes its trailing CRLF.
SDK_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SDK_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SDK_TIMESTAMP = "1600112502"
SDK_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()


def test_sdk_vector_verifies_only_with_exact_raw_body() -> None:
    assert verify_event_signature(SDK_PUBLIC_KEY, SDK_PAYLOAD, SDK_SIGNATURE, SDK_TIMESTAMP)
    assert not verify_event_signature(
        SDK_PUBLIC_KEY, SDK_PAYLOAD.rstrip(b"\r\n"), SDK_SIGNATURE, SDK_TIMESTAMP
    )
    assert not verify_event_signature(SDK_PUBLIC_KEY, SDK_PAYLOAD, SDK_SIGNATURE, "1600112503")


def _public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _sign(key: ec.EllipticCurvePrivateKey, timestamp: str, payload: bytes) -> str:
    signature = key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def _sdk_verify(public_key: str, payload: bytes, signature: str, timestamp: str) -> bool:
    """sendgrid-python's verdict; it raises on non-base64 input, which means "invalid"."""
    try:
        return bool(
            EventWebhook(public_key).verify_signature(payload.decode(), signature, timestamp)
        )
    except ValueError:
        return False


EVENTS = (
    b'[{"email":"jamie.rivera@example.com","event":"delivered","lead_id":"L1",'
    b'"sg_event_id":"ZGVsaXZlcmVkLTA","timestamp":1764086400}]\r\n'
)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("valid", True),
        ("tampered", False),
        ("wrong_key", False),
        ("garbage", False),
        ("not_b64", False),
    ],
)
def test_event_signature_agrees_with_sendgrid_sdk(case: str, expected: bool) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public_key = _public_key_b64(key)
    timestamp = "1764086401"
    payload = EVENTS
    signature = _sign(key, timestamp, EVENTS)
    if case == "tampered":
        payload = EVENTS.replace(b"delivered", b"bounce")
    elif case == "wrong_key":
        public_key = _public_key_b64(ec.generate_private_key(ec.SECP256R1()))
    elif case == "garbage":
        signature = base64.b64encode(b"definitely not a DER signature").decode()
    elif case == "not_b64":
        signature = "%%% not base64 %%%"

    ours = verify_event_signature(public_key, payload, signature, timestamp)
    assert ours is expected
    assert _sdk_verify(public_key, payload, signature, timestamp) is expected


@pytest.mark.parametrize(
    ("public_key", "signature", "timestamp"),
    [
        ("", SDK_SIGNATURE, SDK_TIMESTAMP),
        ("not a key", SDK_SIGNATURE, SDK_TIMESTAMP),
        (base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), SDK_SIGNATURE, SDK_TIMESTAMP),
        (SDK_PUBLIC_KEY, "", SDK_TIMESTAMP),
        (SDK_PUBLIC_KEY, SDK_SIGNATURE, ""),
    ],
)
def test_event_signature_malformed_input_is_false(
    public_key: str, signature: str, timestamp: str
) -> None:
    assert verify_event_signature(public_key, SDK_PAYLOAD, signature, timestamp) is False


def test_event_signature_rejects_non_ec_key() -> None:
    """An RSA key from the wrong settings page must fail closed, not raise."""

    rsa_der = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    public_key = base64.b64encode(rsa_der).decode()
    assert verify_event_signature(public_key, SDK_PAYLOAD, SDK_SIGNATURE, SDK_TIMESTAMP) is False


def test_event_signature_accepts_pem_armoured_key() -> None:
    pem = "-----BEGIN PUBLIC KEY-----\n" + SDK_PUBLIC_KEY + "\n-----END PUBLIC KEY-----\n"
    assert verify_event_signature(pem, SDK_PAYLOAD, SDK_SIGNATURE, SDK_TIMESTAMP)
