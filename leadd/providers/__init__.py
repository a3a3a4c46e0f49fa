"""One client per external API: Shopmonkey (REST + webhook signing), Twilio, SendGrid."""

from __future__ import annotations

import aiohttp

from leadd.config import Config
from leadd.providers.sendgrid import SendGridClient
from leadd.providers.shopmonkey import ShopmonkeyClient
from leadd.providers.twilio import TwilioClient


def build_clients(
    c: Config, session: aiohttp.ClientSession | None
) -> tuple[ShopmonkeyClient, TwilioClient, SendGridClient]:
    """The provider clients, sharing one aiohttp session; empty credentials mean dry-run."""
    shopmonkey = ShopmonkeyClient(
        session,
        base_url=c.shopmonkey.base_url,
        api_key=c.shopmonkey.api_key,
        requests_per_second=c.shopmonkey.requests_per_second,
    )
    twilio = TwilioClient(
        session,
        base_url=c.twilio.base_url,
        account_sid=c.twilio.account_sid,
        auth_token=c.twilio.auth_token,
        messages_per_second=c.twilio.messages_per_second,
    )
    sendgrid = SendGridClient(
        session,
        base_url=c.sendgrid.base_url,
        api_key=c.sendgrid.api_key,
        from_email=c.sendgrid.from_email,
        from_name=c.sendgrid.from_name or c.tenant.name,
    )
    return shopmonkey, twilio, sendgrid
