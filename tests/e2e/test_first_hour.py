"""What a new user hits in the first hour, tried the way they would: a port already taken,
`send-test-lead` run twice, the example config's e-mail."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
import yaml

from leadd.testlead import send_test_lead
from tests.conftest import ROOT, base_config
from tests.e2e.outreach_support import order_payload, outreach_config, post_order, sql
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio
from tests.helpers import DaemonProcess, base_url, running_daemon, wait_for


async def test_a_port_in_use_is_one_clear_error_line_and_exit_1(
    database_url: str, tmp_path: Path
) -> None:
    """Another program holds http.port: `leadd run` exits 1 with one error record naming the
    address and what to do; no traceback, no second and contradictory `leadd.stopped`."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = base_config()
        config["database"] = {"url": database_url}
        config["http"] = {"host": "127.0.0.1", "port": port}
        proc = DaemonProcess(config, tmp_path).start()
        try:
            assert proc.proc is not None
            code = await asyncio.to_thread(proc.proc.wait, 30)
        finally:
            proc.kill()
    output = proc.log()
    assert code == 1, output
    assert "Traceback" not in output
    events = proc.log_events()
    errors = [e for e in events if e["level"] == "error"]
    assert len(errors) == 1, output
    [error] = errors
    assert error["event"] == "leadd.stopped" and error["status"] == "fatal"
    assert error["error"] == (
        f"cannot listen on 127.0.0.1:{port}: the port is in use (another leadd, or another "
        "program): stop it or set http.port"
    )
    assert [e["event"] for e in events].count("leadd.stopped") == 1
    assert "database.ready" not in [e["event"] for e in events]  # it stopped before that


async def test_send_test_lead_twice_makes_two_people_and_both_get_their_sms(
    database_url: str, twilio: FakeTwilio, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run twice within the dedupe window: two leads, neither attached to the other, and an
    SMS for each (a fixed demo phone made the second one "the same person": nothing sent)."""
    cfg = outreach_config(database_url, twilio, demo_mode=True, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        url = base_url(daemon)
        assert await send_test_lead(daemon.config, url) == 0
        assert await send_test_lead(daemon.config, url) == 0
        await wait_for(lambda: len(twilio.messages) == 2)
    leads = await sql(database_url, "SELECT phone, email, attached_to FROM leads")
    assert len(leads) == 2
    assert [lead["attached_to"] for lead in leads] == [None, None]
    assert len({lead["phone"] for lead in leads}) == 2
    assert len({lead["email"] for lead in leads}) == 2
    assert {m["to"] for m in twilio.messages} == {lead["phone"] for lead in leads}
    out = capsys.readouterr().out
    for lead in leads:
        assert f"new demo customer, {lead['phone']} {lead['email']}" in out


async def test_the_example_config_email_carries_address_and_unsubscribe_once(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """config.example.yaml's estimate e-mail through the real send path: the sender appends
    the address and the unsubscribe link; the template must not repeat them."""
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    async with FakeSendGrid() as sendgrid:
        cfg = outreach_config(
            database_url,
            twilio,
            sendgrid,
            sequences=example["sequences"],
            chat=example["chat"],
            touchpoints={"interval": "1h"},
        )
        async with running_daemon(cfg) as daemon:
            await post_order(http, base_url(daemon), order_payload(email="jamie@example.com"))
            await wait_for(lambda: sendgrid.mails)
    [mail] = sendgrid.mails
    [text] = [c["value"] for c in mail["body"]["content"] if c["type"] == "text/plain"]
    address = cfg.locations[0].address
    assert text.count(address) == 1, text
    assert text.count("/unsubscribe/") == 1, text
    assert text.count("Unsubscribe") == 1, text
    assert "chat with us: https://leads.example.com/c/" in text  # the page leadd serves
