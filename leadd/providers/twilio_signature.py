"""X-Twilio-Signature: how Twilio signs the webhooks it sends us, and checking it.

Pure functions (no I/O): the HTTP route that receives Twilio's webhooks calls
`validate_signature` with the public URL Twilio posted to and the form it sent. The algorithm
is Twilio's (HMAC-SHA1 over the URL and the sorted form), checked against Twilio's published
vectors and its own RequestValidator in tests/unit/test_twilio.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlparse

SIGNATURE_HEADER = "X-Twilio-Signature"


class _MultiValued(Protocol):
    def getall(self, key: str) -> list[Any]: ...

    def __iter__(self) -> Iterator[str]: ...


def compute_signature(
    auth_token: str, url: str, params: Mapping[str, str] | _MultiValued | None
) -> str:
    """X-Twilio-Signature for a request: base64(HMAC-SHA1(token, url + name+value...)).

    Names in sorted order; each name's distinct values in sorted order (twilio-python drops
    duplicate values, and so must we to agree with Twilio). `params` may be a plain mapping
    or a multi-dict with `getall` (aiohttp's `await request.post()`), so repeated keys such
    as `MediaUrl` are all signed.
    """
    parts = [url]
    if params:
        for name in sorted(set(params)):
            for value in sorted(set(_values(params, name))):
                parts.append(name + value)
    mac = hmac.new(auth_token.encode("utf-8"), "".join(parts).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def validate_signature(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | _MultiValued | None,
    signature: str | None,
) -> bool:
    """True when `signature` matches `url` + `params` under `auth_token`.

    Accepts the URL both with and without its default port, as twilio-python's
    RequestValidator does, because Twilio is not consistent about which one it signs.
    Compares in constant time; a missing signature or a malformed URL is simply False.
    """
    if not signature or not auth_token:
        return False
    try:
        with_port, without_port = _url_variants(url)
    except ValueError:
        return False
    expected = signature.strip().encode("utf-8")
    ok_with = hmac.compare_digest(
        compute_signature(auth_token, with_port, params).encode(), expected
    )
    ok_without = hmac.compare_digest(
        compute_signature(auth_token, without_port, params).encode(), expected
    )
    return ok_with or ok_without


def _url_variants(url: str) -> tuple[str, str]:
    """(url with the scheme's default port added, url with any port removed).

    Built exactly as twilio-python's `add_port`/`remove_port` (urlparse + geturl), so a URL
    canonicalises the same way on both sides.
    """
    parsed = urlparse(url)
    if parsed.port:  # .port raises ValueError on a malformed port
        with_port = parsed.geturl()
        without_port = parsed._replace(netloc=parsed.netloc.split(":")[0]).geturl()
    else:
        default = 443 if parsed.scheme == "https" else 80
        with_port = parsed._replace(netloc=f"{parsed.netloc}:{default}").geturl()
        without_port = parsed.geturl()
    return with_port, without_port


def _values(params: Mapping[str, str] | _MultiValued, name: str) -> Iterable[str]:
    getall = getattr(params, "getall", None)
    if callable(getall):
        return [str(v) for v in getall(name)]
    getlist = getattr(params, "getlist", None)
    if callable(getlist):
        return [str(v) for v in getlist(name)]
    return [str(params[name])]  # type: ignore[index]


__all__ = ["SIGNATURE_HEADER", "compute_signature", "validate_signature"]
