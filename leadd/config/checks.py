"""Settings that load but probably do not do what was meant: warnings, never errors."""

from __future__ import annotations

from urllib.parse import urlparse

from leadd.config.model import Config


def warnings(cfg: Config) -> list[str]:
    """Valid but probably unintended settings, for `check-config` and the start-up log."""
    out = []
    if not cfg.shopmonkey.webhook_secrets:
        out.append(
            "shopmonkey.webhook_secrets is empty: every order webhook will be rejected (401)"
        )
    if cfg.shopmonkey.accept_legacy_signature:
        out.append(
            "shopmonkey.accept_legacy_signature is on: X-Shopmonkey-Signature has no timestamp, "
            "so a captured delivery can be replayed; replays are recognised for 7 days only"
        )
    host = urlparse(cfg.http.public_url).hostname or ""
    if (cfg.twilio.live or cfg.sendgrid.live) and host in ("127.0.0.1", "localhost", "::1"):
        out.append(
            f"http.public_url is {cfg.http.public_url}: providers cannot reach it, so inbound "
            "SMS, status callbacks and unsubscribe links will not work; set the public URL"
        )
    if cfg.demo_mode:
        out.append(
            "demo_mode is on: only test contacts (+1555..., test/demo e-mails) are processed"
        )
    return out
