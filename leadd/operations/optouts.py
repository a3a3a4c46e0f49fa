"""Use cases on opt-outs: list them; lift an e-mail one (never an SMS STOP)."""

from __future__ import annotations

from dataclasses import dataclass

from leadd.operations import params
from leadd.operations.deps import OpsDeps
from leadd.operations.errors import BadRequest, Forbidden, NotFound
from leadd.store.models import OptOut

CHANNELS = ("sms", "email")
MAX_ADDRESS = 320  # the longest e-mail address RFC 5321 allows


@dataclass(frozen=True)
class OptOutList:
    opt_outs: tuple[OptOut, ...]
    next_cursor: str | None


async def list_opt_outs(
    deps: OpsDeps,
    *,
    channel: str | None = None,
    cursor: str | None = None,
    limit: int = params.DEFAULT_LIMIT,
) -> OptOutList:
    if channel is not None and channel not in CHANNELS:
        raise BadRequest("channel", f"expected sms or email, got {channel[:20]!r}")
    if not 1 <= limit <= params.MAX_LIMIT:
        raise BadRequest("limit", f"expected an integer from 1 to {params.MAX_LIMIT}")
    page = await deps.store.list_opt_outs(
        channel=channel,
        cursor=params.decode_opt_out_cursor(cursor) if cursor is not None else None,
        limit=limit,
    )
    nxt = params.encode_opt_out_cursor(page.next_cursor) if page.next_cursor else None
    return OptOutList(page.opt_outs, nxt)


async def lift_opt_out(deps: OpsDeps, *, channel: str, address: str, actor: str) -> OptOut:
    """Re-subscribe an e-mail address at an operator's request. An SMS STOP is the customer's
    revocation of consent (TCPA): only their own START lifts it, never an operator."""
    if channel == "sms":
        raise Forbidden(
            "an SMS opt-out (STOP) is lifted only by the customer texting START; "
            "operators can lift e-mail opt-outs only"
        )
    if channel != "email":
        raise BadRequest("channel", f"expected email, got {channel[:20]!r}")
    address = params.text("address", address, MAX_ADDRESS).lower()
    lifted = await deps.store.delete_email_opt_out(address, actor=actor)
    if lifted is None:
        raise NotFound("no e-mail opt-out for that address")
    return lifted
