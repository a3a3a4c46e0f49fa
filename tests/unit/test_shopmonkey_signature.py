"""Webhook signature vectors for `verify_webhook` / `sign_webhook`.

Expected signatures are computed here with hmac/hashlib directly, independent of the
code under test, so a bug shared by signer and verifier cannot make the tests pass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from leadd.providers.shopmonkey_webhook import (
    LEGACY_REPLAY_MEMORY,
    WebhookSignatureError,
    sign_webhook,
    verify_webhook,
)

SECRET = "s3cret-webhook-key"
BODY = b'{"apiVersion":"3","operation":"INSERT","table":"order","data":{"id":"o-1"}}'
MSG_ID = "msg_2e13e5ed"
TS = 1_764_079_200  # 2025-11-25T14:00:00Z


def _b64_sig(key: bytes, msg_id: str, ts: int | str, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _headers(sig: str, *, msg_id: str = MSG_ID, ts: int | str = TS) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def _reason(
    headers: dict[str, str], body: bytes = BODY, secrets=(SECRET,), now=TS, allow_legacy=True
) -> str:
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook(headers, body, secrets, now=now, allow_legacy=allow_legacy)
    return info.value.reason


def test_valid_signature_passes() -> None:
    headers = _headers("v1," + _b64_sig(SECRET.encode(), MSG_ID, TS, BODY))
    verify_webhook(headers, BODY, [SECRET], now=TS)


def test_sign_webhook_matches_independent_hmac() -> None:
    """sign_webhook produces the Standard Webhooks headers Shopmonkey documents."""
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TS),
        "webhook-signature": "v1," + _b64_sig(SECRET.encode(), MSG_ID, TS, BODY),
    }
    verify_webhook(headers, BODY, [SECRET], now=TS)


def test_wrong_secret_is_rejected() -> None:
    headers = _headers("v1," + _b64_sig(b"another-secret", MSG_ID, TS, BODY))
    assert _reason(headers) == "no signature matched"


def test_tampered_body_is_rejected() -> None:
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    assert _reason(headers, body=BODY.replace(b"INSERT", b"DELETE")) == "no signature matched"


def test_tampered_id_is_rejected() -> None:
    """The id is part of the signed content, so it cannot be swapped to dodge dedupe."""
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    headers["webhook-id"] = "msg_other"
    assert _reason(headers) == "no signature matched"


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_timestamp_at_tolerance_boundary_passes(offset: int) -> None:
    """Exactly 300 s away, in either direction, is still accepted."""
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    verify_webhook(headers, BODY, [SECRET], now=TS - offset)


@pytest.mark.parametrize(
    "now", [TS + 301, TS - 301, TS + 86_400], ids=["stale", "future", "day-old"]
)
def test_timestamp_beyond_tolerance_is_rejected(now: int) -> None:
    """Stale (replayed) and future-dated deliveries fail even with a valid signature."""
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    assert _reason(headers, now=now) == "timestamp outside tolerance"


def test_custom_tolerance_is_honoured() -> None:
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    verify_webhook(headers, BODY, [SECRET], now=TS + 500, tolerance=600)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(headers, BODY, [SECRET], now=TS + 61, tolerance=60)


@pytest.mark.parametrize("ts", ["1764079200.5", "abc", "-1764079200", "", "1e9"])
def test_non_integer_timestamp_is_rejected(ts: str) -> None:
    headers = _headers("v1," + _b64_sig(SECRET.encode(), MSG_ID, ts, BODY), ts=ts)
    expected = "missing signature headers" if ts == "" else "invalid timestamp"
    assert _reason(headers) == expected


def test_rotated_secret_second_of_two_matches() -> None:
    """During rotation both secrets are configured; a delivery signed with either passes."""
    headers = sign_webhook(BODY, "new-secret", msg_id=MSG_ID, timestamp=TS)
    verify_webhook(headers, BODY, ["old-secret", "new-secret"], now=TS)
    assert _reason(headers, secrets=["old-secret", "unrelated"]) == "no signature matched"


def test_one_valid_among_several_signatures() -> None:
    good = _b64_sig(SECRET.encode(), MSG_ID, TS, BODY)
    bad = _b64_sig(b"nope", MSG_ID, TS, BODY)
    headers = _headers(f"v1,{bad} v2,{good} v1,not-base64!! v1,{good}")
    verify_webhook(headers, BODY, [SECRET], now=TS)


def test_valid_signature_under_wrong_version_is_ignored() -> None:
    """Only `v1,` entries count: a correct digest labelled v2 must not pass."""
    good = _b64_sig(SECRET.encode(), MSG_ID, TS, BODY)
    assert _reason(_headers(f"v2,{good}")) == "malformed signature header"


def test_whsec_secret_accepts_decoded_and_raw_keys() -> None:
    """Standard Webhooks keys on the base64-decoded bytes; partners saw the raw string
    used. Both are accepted for a `whsec_` secret."""
    raw_key = b"\x01\x02 binary key material \xff"
    secret = "whsec_" + base64.b64encode(raw_key).decode()
    decoded = _headers("v1," + _b64_sig(raw_key, MSG_ID, TS, BODY))
    as_text = _headers("v1," + _b64_sig(secret.encode(), MSG_ID, TS, BODY))
    verify_webhook(decoded, BODY, [secret], now=TS)
    verify_webhook(as_text, BODY, [secret], now=TS)
    assert sign_webhook(BODY, secret, msg_id=MSG_ID, timestamp=TS) == decoded
    assert _reason(decoded, secrets=["plain-secret"]) == "no signature matched"


@pytest.mark.parametrize("prefix", ["", "sha256=", "SHA256="])
def test_legacy_hex_header(prefix: str) -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    headers = {"X-Shopmonkey-Signature": prefix + digest}
    verify_webhook(headers, BODY, [SECRET], now=TS, allow_legacy=True)


def test_legacy_signature_is_refused_unless_allowed() -> None:
    """The legacy header carries no timestamp: a body captured once could be replayed
    forever. Off by default, with a reason that says how to turn it on."""
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    reason = _reason({"X-Shopmonkey-Signature": digest}, allow_legacy=False)
    assert "not accepted" in reason and "accept_legacy_signature" in reason
    with pytest.raises(WebhookSignatureError):
        verify_webhook({"X-Shopmonkey-Signature": digest}, BODY, [SECRET], now=TS)


# --------------------------------------------------------------------------- replay keys


def test_a_standard_delivery_is_remembered_by_its_id_past_its_last_valid_replay() -> None:
    """The replay key is the signed webhook-id (a replay carries the same one), not the
    body: two different deliveries of one body are two deliveries. It is remembered until
    no replay of it can pass the timestamp check any more."""
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    first = verify_webhook(headers, BODY, [SECRET], now=TS)
    replay = verify_webhook(headers, BODY, [SECRET], now=TS + 299)
    assert first.digest == replay.digest and not first.legacy
    other = verify_webhook(
        sign_webhook(BODY, SECRET, msg_id="msg_other", timestamp=TS), BODY, [SECRET], now=TS
    )
    assert other.digest != first.digest
    # Signed at TS, first seen at TS - 300: replays pass until TS + 300 = seen + 600.
    early = verify_webhook(headers, BODY, [SECRET], now=TS - 300)
    assert early.expires_at >= TS + 300
    assert first.expires_at <= TS + 600  # bounded: the table does not grow forever


def test_a_legacy_delivery_is_remembered_by_its_body_for_a_bounded_time() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    headers = {"X-Shopmonkey-Signature": digest}
    one = verify_webhook(headers, BODY, [SECRET], now=TS, allow_legacy=True)
    later = verify_webhook(headers, BODY, [SECRET], now=TS + 86400, allow_legacy=True)
    assert one.legacy and one.digest == later.digest
    assert one.expires_at == TS + LEGACY_REPLAY_MEMORY
    other_body = BODY.replace(b"o-1", b"o-2")
    other = hmac.new(SECRET.encode(), other_body, hashlib.sha256).hexdigest()
    assert (
        verify_webhook(
            {"X-Shopmonkey-Signature": other}, other_body, [SECRET], now=TS, allow_legacy=True
        ).digest
        != one.digest
    )


def test_legacy_hex_header_rejects_wrong_digest_and_garbage() -> None:
    wrong = hmac.new(b"other", BODY, hashlib.sha256).hexdigest()
    assert _reason({"x-shopmonkey-signature": "sha256=" + wrong}) == "no signature matched"
    assert _reason({"x-shopmonkey-signature": "zz-not-hex"}) == "malformed signature header"


def test_legacy_header_not_used_when_standard_headers_present() -> None:
    """A valid legacy hex (no replay protection) cannot rescue a stale standard delivery."""
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    headers["X-Shopmonkey-Signature"] = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert _reason(headers, now=TS + 3600) == "timestamp outside tolerance"


@pytest.mark.parametrize(
    "drop", [("webhook-id",), ("webhook-timestamp",), ("webhook-signature",), "all"]
)
def test_missing_headers_are_rejected(drop: tuple[str, ...] | str) -> None:
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    names = tuple(headers) if drop == "all" else drop
    for name in names:
        del headers[name]
    assert _reason(headers) == "missing signature headers"


def test_no_secret_configured_is_rejected() -> None:
    headers = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    assert _reason(headers, secrets=[]) == "no webhook secret configured"
    assert _reason(headers, secrets=[""]) == "no webhook secret configured"


def test_case_insensitive_headers_like_aiohttp() -> None:
    """aiohttp hands the handler a CIMultiDictProxy; mixed-case names must still work."""
    signed = sign_webhook(BODY, SECRET, msg_id=MSG_ID, timestamp=TS)
    proxy = CIMultiDictProxy(CIMultiDict({k.title(): v for k, v in signed.items()}))
    verify_webhook(proxy, BODY, [SECRET], now=TS)
    plain = {k.upper(): v for k, v in signed.items()}
    verify_webhook(plain, BODY, [SECRET], now=TS)


def test_error_carries_reason_attribute() -> None:
    err = WebhookSignatureError("no signature matched")
    assert err.reason == "no signature matched"
    assert str(err) == "no signature matched"
