"""Shopmonkey webhook signatures: verification (with what makes a delivery recognisable if
it is replayed) and signing (for `leadd send-test-lead`, the tests and the benchmarks).

Shopmonkey documents Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`); the legacy `X-Shopmonkey-Signature` hex HMAC has no timestamp and is
accepted only when configured. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WEBHOOK_TOLERANCE_SECONDS = 300
LEGACY_SIGNATURE_HEADER = "X-Shopmonkey-Signature"
# How long a legacy-signed body is remembered. Its signature never expires, so this bounds
# only the table; a replay after it is still ordered by meta.version/updatedDate (not newer:
# no change) and at worst re-runs an ingestion that was already done.
LEGACY_REPLAY_MEMORY = 7 * 86400.0
_WHSEC_PREFIX = "whsec_"
# Unix seconds; bounded so int() stays cheap (Python refuses over 4,300 digits: a 500).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookSignatureError(Exception):
    """A webhook failed verification; `reason` is short and safe to log or return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedDelivery:
    """A delivery whose signature passed, and what to remember so that a replay of it is
    recognised: `digest` (of the webhook-id, or of a legacy-signed body) until `expires_at`
    (unix time), after which the same signature no longer passes (Standard Webhooks) or
    after LEGACY_REPLAY_MEMORY (legacy signatures carry no timestamp)."""

    digest: bytes
    expires_at: float
    legacy: bool = False


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
    allow_legacy: bool = False,
) -> VerifiedDelivery:
    """Raise WebhookSignatureError unless `body` was signed with one of `secrets`; return
    what identifies this delivery for replay detection.

    Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
    are what Shopmonkey documents; when they are present they are the only thing
    checked, because they carry the timestamp that stops replays. The legacy
    `X-Shopmonkey-Signature` hex HMAC is accepted only when they are absent, and only with
    `allow_legacy`: it has no timestamp, so a captured body could be replayed forever; the
    caller can only remember its digest for LEGACY_REPLAY_MEMORY.

    Every secret is tried so a secret can be rotated without dropping deliveries. For
    the key, both readings seen in the wild are accepted: the secret's UTF-8 bytes
    (what partners verified) and, for `whsec_` secrets, the base64-decoded bytes
    (the Standard Webhooks spec).
    """
    keys = [k for s in secrets if s for k in _secret_keys(s)]
    if not keys:
        raise WebhookSignatureError("no webhook secret configured")

    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signature = _header(headers, "webhook-signature")
    if msg_id is not None or timestamp is not None or signature is not None:
        if not msg_id or not timestamp or not signature:
            raise WebhookSignatureError("missing signature headers")
        _verify_standard(msg_id, timestamp, signature, body, keys, now=now, tolerance=tolerance)
        # The id is signed, so a replay carries the same one. Its signature passes while the
        # signed timestamp is within `tolerance` of the clock, and that timestamp is within
        # `tolerance` of now: remembering it for 2 x tolerance outlives every replay.
        digest = hashlib.sha256(b"webhook-id\x00" + msg_id.encode("utf-8", "replace")).digest()
        return VerifiedDelivery(digest, now + 2 * tolerance)

    legacy = _header(headers, LEGACY_SIGNATURE_HEADER)
    if legacy is None:
        raise WebhookSignatureError("missing signature headers")
    if not allow_legacy:
        raise WebhookSignatureError(
            f"{LEGACY_SIGNATURE_HEADER} is not accepted (no timestamp, so replayable); "
            "sign with webhook-id/-timestamp/-signature or set "
            "shopmonkey.accept_legacy_signature"
        )
    _verify_legacy(legacy, body, keys)
    digest = hashlib.sha256(b"legacy-body\x00" + body).digest()
    return VerifiedDelivery(digest, now + LEGACY_REPLAY_MEMORY, legacy=True)


def sign_webhook(body: bytes, secret: str, *, msg_id: str, timestamp: int) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, as Shopmonkey would send them.

    A `whsec_` secret is used the Standard Webhooks way (decoded bytes); any other
    secret as UTF-8 bytes. `verify_webhook` accepts both.
    """
    key = _secret_keys(secret)[-1]
    digest = _hmac(key, f"{msg_id}.{timestamp}.".encode() + body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def _verify_standard(
    msg_id: str,
    timestamp: str,
    signature: str,
    body: bytes,
    keys: list[bytes],
    *,
    now: float,
    tolerance: int,
) -> None:
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookSignatureError("invalid timestamp")
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookSignatureError("timestamp outside tolerance")

    candidates: list[bytes] = []
    for entry in signature.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not candidates:
        raise WebhookSignatureError("malformed signature header")

    signed = f"{msg_id}.{timestamp}.".encode() + body
    if not _any_match(keys, signed, candidates):
        raise WebhookSignatureError("no signature matched")


def _verify_legacy(value: str, body: bytes, keys: list[bytes]) -> None:
    value = value.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:]
    try:
        candidate = bytes.fromhex(value)
    except ValueError:
        raise WebhookSignatureError("malformed signature header") from None
    if not _any_match(keys, body, [candidate]):
        raise WebhookSignatureError("no signature matched")


def _any_match(keys: list[bytes], signed: bytes, candidates: list[bytes]) -> bool:
    # No early exit: the time taken must not hint at which key or entry came close.
    matched = False
    for key in keys:
        expected = _hmac(key, signed)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _secret_keys(secret: str) -> list[bytes]:
    keys = [secret.encode("utf-8")]
    if secret.startswith(_WHSEC_PREFIX):
        with contextlib.suppress(binascii.Error, ValueError):
            keys.append(base64.b64decode(secret[len(_WHSEC_PREFIX) :], validate=True))
    return keys


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for aiohttp's CIMultiDictProxy and plain dicts."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None
