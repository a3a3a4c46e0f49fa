"""Chat link tokens: derived, never stored. Used by outreach and enrichment (composing and
creating links) and by the chat page (looking them up). A rule: no I/O; the secret is the
config's, which the daemon completes at start-up from a key file when none is configured
(config/chat_key.py).

token = base64url(HMAC-SHA256(chat.secret, context | tenant id | lead id)): 256 bits that
nobody can guess without the secret (a random 32-byte key). The database keeps only
sha256(token) with an expiry, so a copy of it opens no one's conversation, while any later
message can still carry the same link: the daemon composing it derives the token again. A
daemon whose secret differs from the one that made a lead's session cannot, and leaves the
link out (logged) instead of sending a dead one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

from leadd.config import Config
from leadd.logs import get_logger

log = get_logger(__name__)

_CONTEXT = b"leadd chat link v1\x00"
# What a token looks like (today's are 43 characters; sessions made before hashing had 32).
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def chat_token(secret: str, tenant_id: uuid.UUID, lead_id: uuid.UUID) -> str:
    mac = hmac.new(secret.encode(), _CONTEXT + tenant_id.bytes + lead_id.bytes, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def token_hash(token: str) -> bytes:
    """What the database stores and looks up (sha256 of the token's text)."""
    return hashlib.sha256(token.encode()).digest()


def session_hash(config: Config, lead_id: uuid.UUID) -> bytes:
    """The hash to store when a lead's chat session is created."""
    return token_hash(chat_token(config.chat.secret, config.tenant.id, lead_id))


def link_token(config: Config, lead_id: uuid.UUID, stored_hash: bytes | None) -> str | None:
    """The token to put in a message about `lead_id`, or None when it has no session or this
    daemon's secret did not make it."""
    if stored_hash is None or not config.chat.secret:
        return None
    token = chat_token(config.chat.secret, config.tenant.id, lead_id)
    if not hmac.compare_digest(token_hash(token), bytes(stored_hash)):
        log.warning(
            "chat.link_left_out",
            lead_id=str(lead_id),
            reason="the lead's chat session was made with another chat.secret "
            "(daemons sharing a database must share chat.secret)",
        )
        return None
    return token
