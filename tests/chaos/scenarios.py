"""The chaos scenarios, each a real `leadd run` process against real PostgreSQL and the fake
providers over sockets. tests/chaos runs them at CI size; bench/chaos.py at full size.

A scenario asserts its promises itself (so the bench checks what CI checks) and returns the
numbers it measured. Waiting is on conditions (`wait_until`); the only sleeps are the faults
themselves (how long PostgreSQL stays down, how long a storm lasts) and the pacing of load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.harness import (
    ACK_AND_MAIL,
    SECRET,
    SHOPMONKEY_KEY,
    Daemon,
    Http,
    LocalPostgres,
    Person,
    all_touch_points_done,
    daemon_config,
    http_client,
    metric,
    order,
    people,
    scalar,
    sql,
    stored_order_ids,
    touch_point_states,
    wait_until,
)
from tests.chaos.pii import PiiScanner
from tests.conftest import free_port
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.shopmonkey import FakeShopmonkey
from tests.fakes.twilio import FakeTwilio
from tests.helpers import wait_for

Numbers = dict[str, Any]


@dataclass
class Chaos:
    """One scenario's world: its daemons, its HTTP client and the leak scanner that sees
    every response body, every daemon log and every value the fakes served."""

    scanner: PiiScanner
    http: Http
    daemons: list[Daemon] = field(default_factory=list)
    fakes: list[Any] = field(default_factory=list)

    def start(self, config: dict[str, Any], name: str = "leadd") -> Daemon:
        daemon = Daemon(config, self.scanner, name)
        self.daemons.append(daemon)
        return daemon.start()  # type: ignore[return-value]

    def watch(self, *fakes: Any) -> None:
        """Fakes whose served values (and credentials) the scanner must look for."""
        self.fakes.extend(fakes)

    def crowd(self, n: int, *, seed: int, offset: int = 0, tricky_every: int = 0) -> list[Person]:
        crowd = people(n, seed=seed, offset=offset, tricky_every=tricky_every)
        for p in crowd:
            self.scanner.add_name(p.first)
            self.scanner.add_name(p.last)
            self.scanner.add_phone(p.phone)
            self.scanner.add_email(p.email)
        return crowd

    def finish(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        for fake in self.fakes:
            if isinstance(fake, FakeTwilio):
                self.scanner.add_served(twilio=fake)
            elif isinstance(fake, FakeSendGrid):
                self.scanner.add_served(sendgrid=fake)
            elif isinstance(fake, FakeShopmonkey):
                self.scanner.add_served(shopmonkey=fake)


@asynccontextmanager
async def chaos_world(scanner: PiiScanner) -> AsyncIterator[Chaos]:
    scanner.add_secret(SECRET)
    scanner.add_secret(SHOPMONKEY_KEY)
    async with http_client(scanner) as http:
        world = Chaos(scanner, http)
        try:
            yield world
        finally:
            world.finish()


async def _deliver_all(
    chaos: Chaos,
    base: str,
    orders: list[dict[str, Any]],
    answers: dict[str, int],
    width: int,
    rate: float | None = None,
) -> None:
    """POST every order (signed), at most `width` at a time and, with `rate`, on a fixed
    schedule of `rate` per second (a burst that lasts, so a kill can land inside it)."""
    gate = asyncio.Semaphore(width)
    start = time.monotonic()

    async def one(i: int, data: dict[str, Any]) -> None:
        if rate:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))  # the schedule
        async with gate:
            answers[data["id"]] = (await chaos.http.post_order(base, data)).status

    await asyncio.gather(*(one(i, o) for i, o in enumerate(orders)))


# =========================================================================== 1. kill -9


async def kill9_burst(
    chaos: Chaos, database_url: str, *, leads: int = 500, fast_forward: bool = True
) -> Numbers:
    """SIGKILL during a burst of signed webhooks, while acknowledgements are in flight at
    Twilio; restart; Shopmonkey redelivers what was not answered 200.

    Promises: every order answered 200 is stored (checked before the restart, so nothing
    redelivered can hide a loss); after the restart every order is one lead and every phone
    got its instant acknowledgement exactly once, counted at the fake Twilio, with the sends
    left in doubt by the kill resolved from Twilio's message list (reconciliation).

    `fast_forward`: the dead daemon's leases (touch points 30 s, enrichment 60 s) are moved
    to now before the restart, as if they had run out; the bench waits them out for real.
    """
    crowd = chaos.crowd(leads, seed=1)
    async with FakeTwilio() as twilio:
        chaos.watch(twilio)
        twilio.delay = 0.2  # Twilio has the message at once, answers 200 ms later
        port = free_port()
        cfg = daemon_config(database_url, port=port, twilio=twilio)
        first = chaos.start(cfg, "kill9-first")
        await first.wait_ready()

        orders = [order(p) for p in crowd]
        answers: dict[str, int] = {}
        rate = max(50.0, leads / 5)  # the burst lasts 5 s
        burst = asyncio.create_task(_deliver_all(chaos, first.url, orders, answers, 32, rate))

        def mid_burst_and_mid_send() -> bool:
            # Half the burst answered and acknowledgements going out; on a machine so busy
            # that sending has not begun, still kill before the burst ends.
            ok = sum(1 for s in answers.values() if s == 200)
            return (ok >= leads * 0.5 and len(twilio.messages) >= 5) or ok >= leads * 0.9

        await wait_for(mid_burst_and_mid_send, timeout=120, interval=0.005)
        first.kill()
        await burst
        ok_before = {oid for oid, s in answers.items() if s == 200}
        unanswered = [o for o in orders if answers.get(o["id"]) != 200]
        stored = await stored_order_ids(database_url)
        lost = ok_before - stored
        assert not lost, f"{len(lost)} orders answered 200 before the kill are not stored"
        in_doubt = await sql(
            database_url, "SELECT recipient FROM touch_points WHERE state = 'sending'"
        )
        accepted_in_doubt = sum(
            1 for r in in_doubt if r["recipient"] in twilio.counts_by_recipient()
        )
        sent_before = len(twilio.messages)
        if fast_forward:
            await sql(
                database_url,
                "UPDATE touch_points SET lease_until = now() WHERE state = 'sending'",
            )
            await sql(
                database_url,
                "UPDATE leads SET enrich_after = now() WHERE enrichment_status = 'pending'",
            )

        twilio.delay = 0.02
        restarted_at = time.monotonic()
        second = chaos.start(cfg, "kill9-second")
        await second.wait_ready()
        redelivered: dict[str, int] = {}
        await _deliver_all(chaos, second.url, unanswered, redelivered, 32)
        assert set(redelivered.values()) <= {200}, f"redelivery answers: {redelivered}"
        assert unanswered, "the kill did not land during the burst"

        async def everything_sent() -> bool:
            return await all_touch_points_done(database_url, leads)

        await wait_until(everything_sent, timeout=240 if not fast_forward else 120)
        drained = time.monotonic() - restarted_at

    assert await stored_order_ids(database_url) == {o["id"] for o in orders}
    counts = twilio.counts_by_recipient()
    twice = {p: n for p, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} phones texted more than once: {list(twice.items())[:5]}"
    missing = {p.phone for p in crowd} - set(counts)
    assert not missing, f"{len(missing)} phones never got their acknowledgement"
    assert await touch_point_states(database_url) == {"sent": leads}
    reconciled = await scalar(
        database_url, "SELECT count(*) FROM message_attempts WHERE outcome = 'reconciled'"
    )
    assert len(in_doubt) > 0, "the kill did not land while sends were in flight"
    assert reconciled == accepted_in_doubt, (reconciled, accepted_in_doubt)
    return {
        "leads": leads,
        "answered_200_before_kill": len(ok_before),
        "not_answered_200_by_the_first_daemon": len(unanswered),
        "sms_at_twilio_before_kill": sent_before,
        "sending_at_kill": len(in_doubt),
        "accepted_by_twilio_but_unrecorded": accepted_in_doubt,
        "reconciled_from_twilio_list": reconciled,
        "restart_to_all_sent_s": round(drained, 1),
        "sms_total": len(twilio.messages),
        "duplicates": 0,
    }


# =========================================================================== 2. PostgreSQL down


async def postgres_outage(
    chaos: Chaos, *, outage: float = 6.0, rate: float = 20.0, poll_interval: str = "1s"
) -> Numbers:
    """A PostgreSQL server of the test's own is stopped for `outage` seconds while signed
    webhooks keep arriving (each order is in the fake Shopmonkey once its webhook was
    answered, as in production where the order exists before its webhook).

    Promises: while it is down every webhook is a 503 (never a 200: every 200'd order is
    stored, and stored by its webhook, not later by the poller), the process stays up,
    /healthz answers 200 and /readyz 503 naming the database; once it is back the poller
    catches every order whose webhook was refused, and /readyz is 200 again.
    """
    pg = await asyncio.to_thread(LocalPostgres().init)
    try:
        url = await pg.create_database("leadd")
        async with FakeShopmonkey(api_key=SHOPMONKEY_KEY) as shop:
            chaos.watch(shop)
            cfg = daemon_config(url, shopmonkey=shop, poll_interval=poll_interval)
            daemon = chaos.start(cfg, "outage")
            await daemon.wait_ready()
            return await _outage(chaos, pg, url, shop, daemon, outage, rate)
    finally:
        await asyncio.to_thread(pg.destroy)


async def _outage(
    chaos: Chaos,
    pg: LocalPostgres,
    url: str,
    shop: FakeShopmonkey,
    daemon: Daemon,
    outage: float,
    rate: float,
) -> Numbers:
    crowd = chaos.crowd(int(rate * (outage + 30)) + 100, seed=2)
    posts: list[tuple[float, str, int, float]] = []  # (sent at, order id, status, answered at)
    probes: list[tuple[float, str, int, str]] = []  # (at, path, status, body)
    stop = asyncio.Event()

    async def load() -> None:
        for person in crowd:
            if stop.is_set():
                return
            data = order(person)
            started = time.monotonic()
            reply = await chaos.http.post_order(daemon.url, data)
            posts.append((started, data["id"], reply.status, time.monotonic()))
            shop.add_order(data)  # Shopmonkey has the order whatever its webhook got
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.0, 1 / rate - (time.monotonic() - started))
                )
        raise AssertionError("the load generator ran out of people")

    async def probe() -> None:
        while not stop.is_set():
            for path in ("/readyz", "/healthz"):
                reply = await chaos.http.get(daemon.url + path)
                probes.append((time.monotonic(), path, reply.status, reply.text))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def ok_count() -> int:
        return sum(1 for p in posts if p[2] == 200)

    tasks = [asyncio.create_task(load()), asyncio.create_task(probe())]
    await wait_for(lambda: ok_count() >= 20, timeout=60)
    await asyncio.to_thread(pg.stop, "fast")
    down_at = time.monotonic()
    await asyncio.sleep(outage)  # the fault: PostgreSQL stays down this long
    alive_during = daemon.alive()
    restarting_at = time.monotonic()
    await asyncio.to_thread(pg.start)
    up_at = time.monotonic()
    before = ok_count()
    await wait_for(lambda: ok_count() >= before + 20, timeout=120)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)

    async def caught_up() -> bool:
        return set(shop.orders) <= await stored_order_ids(url)

    await wait_until(caught_up, timeout=120 + outage)
    caught_up_after = time.monotonic() - up_at

    async def ready() -> bool:
        return (await chaos.http.get(daemon.url + "/readyz")).status == 200

    await wait_for(ready, timeout=90)
    assert alive_during and daemon.alive(), f"leadd died during the outage:\n{daemon.log()[-3000:]}"

    by_source = {
        r[0]: r[1] for r in await sql(url, "SELECT shopmonkey_order_id, source FROM leads")
    }
    answered = [p for p in posts if p[2] == 200]
    not_by_webhook = [p[1] for p in answered if by_source.get(p[1]) != "webhook"]
    assert not not_by_webhook, f"200 without storing: {not_by_webhook[:5]}"
    during = [p for p in posts if down_at < p[0] and p[3] < restarting_at]
    statuses_during = {p[2] for p in during}
    assert during and statuses_during == {503}, f"answers while down: {statuses_during}"
    refused = [p for p in posts if p[2] != 200]
    assert all(by_source.get(p[1]) == "poll" for p in refused), "gap not polled"

    ready_down = [p for p in probes if p[1] == "/readyz" and down_at < p[0] < restarting_at]
    assert ready_down and all(p[2] == 503 for p in ready_down), [p[2] for p in ready_down]
    assert all("database" in p[3] for p in ready_down), ready_down[-1][3]
    healthz = [p[2] for p in probes if p[1] == "/healthz"]
    assert healthz and set(healthz) == {200}, set(healthz)
    samples = await daemon.metrics(chaos.http)
    return {
        "outage_s": outage,
        "webhooks_200": len(answered),
        "webhooks_503_while_down": len(during),
        "webhooks_refused_total": len(refused),
        "orders_caught_by_poller": len(refused),
        "postgres_back_to_every_order_stored_s": round(caught_up_after, 1),
        "readyz_while_down": ready_down[-1][3][:300],
        "task_restarts": metric(samples, "leadd_task_restarts_total"),
    }


# =========================================================================== 3. storms


async def twilio_and_sendgrid_storm(
    chaos: Chaos,
    database_url: str,
    *,
    leads: int = 60,
    storm: float = 4.0,
    long_retry_after: float | None = None,
) -> Numbers:
    """Every lead gets an SMS and an e-mail while Twilio answers a storm of 429s (with
    Retry-After), JSON 500s, a proxy's HTML 503s and "accepted, then 500" (and its message
    list is down too, so reconciliation cannot look), and SendGrid answers 500/503/429.

    Promises: nothing dropped (every phone one SMS, every address one e-mail), nothing
    duplicated (the "accepted, then 500" sends are found by reconciliation, not resent),
    backoff visible in /metrics (leadd_messages_total{outcome="retry"} per channel), and once
    both recover the queue drains within the bound the config implies (stated in the result).

    `long_retry_after`: the storm opens with one 429 asking to wait that long (Twilio has sent
    a day); no answer may hold the queue longer than the 60 s cap issue 7 asks for.
    """
    crowd = chaos.crowd(leads, seed=3)
    async with FakeTwilio() as twilio, FakeSendGrid() as sendgrid:
        chaos.watch(twilio, sendgrid)
        # A lease as long as production's: an ambiguous send must not wait for it (issue 11).
        lease, interval, reconcile_delay = 60, 1, 1
        # Reconciliation gives up on a send in doubt after 8 failed lookups spaced by the
        # retry backoff (about an hour with production's 30 s -> 1 h). Twilio's message list
        # is down for the whole storm here, so the backoff is scaled to the storm: 8 lookups
        # span more than it (4 s storm: 200 ms -> 2 s, over 9 s; 30 s: 1.2 s -> 10 s, 45 s).
        retry_base, retry_cap = max(0.2, storm / 25), max(2.0, storm / 3)
        tp = {
            "lease": f"{lease}s",
            "interval": f"{interval}s",
            "retry_base": f"{round(retry_base * 1000)}ms",
            "retry_cap": f"{round(retry_cap * 1000)}ms",
            "reconcile_delay": f"{reconcile_delay}s",
        }
        cfg = daemon_config(
            database_url, twilio=twilio, sendgrid=sendgrid, sequences=ACK_AND_MAIL, touchpoints=tp
        )
        daemon = chaos.start(cfg, "storm")
        await daemon.wait_ready()
        retry_after = 1.0
        if long_retry_after is not None:
            twilio.fail_next(1, status=429, retry_after=long_retry_after)
        twilio.storm(
            ("429", "500", "503-html", "500-accepted"), retry_after=retry_after, lists=("503-html",)
        )
        sendgrid.storm((500, 503, 429), reset_in=1)
        answers: dict[str, int] = {}
        await _deliver_all(chaos, daemon.url, [order(p) for p in crowd], answers, 16)
        assert set(answers.values()) == {200}
        await asyncio.sleep(storm)  # the fault: both providers refuse this long
        twilio.calm(lists=False)
        sendgrid.calm()
        sends_back = time.monotonic()
        # Sends go through again, but Twilio's message list stays down until reconciliation
        # of the ambiguous sends has tried to look once more (and must not guess), unless
        # none is left in doubt (their lookups during the storm found what they needed).
        held = 60 + (60 if long_retry_after else 0)  # + the Retry-After cap
        looked = twilio.storm_answers["GET 503-html"]

        async def looked_again() -> bool:
            if twilio.storm_answers["GET 503-html"] > looked:
                return True
            return (await touch_point_states(database_url)).get("sending", 0) == 0

        try:
            await wait_for(looked_again, timeout=held)
        except AssertionError:
            raise AssertionError(
                f"no reconciliation within {held} s of the sends recovering: the send loop is"
                " still"
                " held (by a provider answer?); touch points: "
                f"{await touch_point_states(database_url)}"
            ) from None
        twilio.calm()

        async def drained() -> bool:
            return await all_touch_points_done(database_url, 2 * leads)

        # The bound (RELIABILITY.md, "drain bound"): once the providers answer again a row
        # waits at most the longest of its retry backoff (retry_cap), its sender's pause
        # (Retry-After), a lookup not yet made (reconcile_delay) or one that failed while
        # the list was down (its backoff, up to retry_cap); then one interval for the loop to
        # find it due and one more for a lookup's resend; then the sending itself (5 s here:
        # 120 messages at 1,000/s, with room for a loaded machine). Never the lease.
        wait = max(retry_cap, retry_after, reconcile_delay) + (60 if long_retry_after else 0)
        bound = wait + 2 * interval + 5
        drain = await wait_until(drained, timeout=bound)
        since_sends_back = time.monotonic() - sends_back
        samples = await daemon.metrics(chaos.http)

    sms, mails = twilio.counts_by_recipient(), sendgrid.counts_by_recipient()
    states = await touch_point_states(database_url)
    assert {p: n for p, n in sms.items() if n != 1} == {}, "an SMS was sent twice"
    assert set(sms) == {p.phone for p in crowd}, f"an SMS was dropped: {states}"
    assert {a: n for a, n in mails.items() if n != 1} == {}, "an e-mail was sent twice"
    assert set(mails) == {p.email for p in crowd}, "an e-mail was dropped"
    assert await touch_point_states(database_url) == {"sent": 2 * leads}
    sms_retries = metric(samples, "leadd_messages_total", channel="sms", outcome="retry")
    mail_retries = metric(samples, "leadd_messages_total", channel="email", outcome="retry")
    assert sms_retries > 0 and mail_retries > 0, (sms_retries, mail_retries)
    reconciled = await scalar(
        database_url, "SELECT count(*) FROM message_attempts WHERE outcome = 'reconciled'"
    )
    accepted_then_500 = twilio.storm_answers["POST 500-accepted"]
    assert reconciled == accepted_then_500, (reconciled, accepted_then_500)
    return {
        "leads": leads,
        "storm_s": storm,
        "twilio_storm_answers": dict(twilio.storm_answers),
        "sendgrid_storm_answers": dict(sendgrid.storm_answers),
        "sms_retries_metric": sms_retries,
        "email_retries_metric": mail_retries,
        "reconciled_after_accepted_then_500": reconciled,
        "drain_after_recovery_s": round(drain, 1),
        "drain_bound_s": bound,
        "drained_after_sends_recovered_s": round(since_sends_back, 1),
    }


async def shopmonkey_storm(
    chaos: Chaos, database_url: str, *, leads: int = 40, storm: float = 4.0
) -> Numbers:
    """Shopmonkey answers every request (list, customer, services) with Cloudflare's HTML
    403 block page, an HTML 429 without Retry-After and a JSON 429 with Retry-After, while
    half the orders exist only in Shopmonkey (the poller must find them) and half arrive by
    webhook without their customer (enrichment must fetch it).

    Promises: every order becomes one lead with the phone Shopmonkey holds, every phone gets
    one acknowledgement, the client backs off (visible in the log and in /metrics), and
    once Shopmonkey recovers everything is done within the stated bound.
    """
    crowd = chaos.crowd(leads, seed=4)
    async with FakeShopmonkey(api_key=SHOPMONKEY_KEY) as shop, FakeTwilio() as twilio:
        chaos.watch(shop, twilio)
        cfg = daemon_config(database_url, shopmonkey=shop, twilio=twilio, poll_interval="1s")
        daemon = chaos.start(cfg, "sm-storm")
        await daemon.wait_ready()
        shop.storm(("html403", "429", "429-retry-after"))
        orders = []
        for i, person in enumerate(crowd):
            data = order(person, embed=False)
            shop.add_customer(person.customer(data["customerId"]))
            shop.add_order(data)
            orders.append(data)
            if i % 2:
                reply = await chaos.http.post_order(daemon.url, data)
                assert reply.status == 200, reply
        await asyncio.sleep(storm)  # the fault: Shopmonkey refuses everything this long
        shop.calm()

        async def done() -> bool:
            rows = await sql(
                database_url,
                "SELECT phone FROM leads WHERE enrichment_status = 'done' AND phone IS NOT NULL",
            )
            return len(rows) == leads and await all_touch_points_done(database_url, leads)

        # The client's pending backoff when the storm ends (exponential from 1 s, jittered by
        # 20 %, so at most 1.2 x the storm so far), one poll interval, one enrichment retry
        # (2 s) and time to send.
        bound = 1.2 * (storm + 1) + 1 + 2 + 10
        drain = await wait_until(done, timeout=bound)
        samples = await daemon.metrics(chaos.http)
        retries_logged = sum(1 for e in daemon.log_events() if e.get("event") == "shopmonkey.retry")

    rows = await sql(database_url, "SELECT shopmonkey_order_id, phone FROM leads")
    assert {r[0] for r in rows} == {o["id"] for o in orders} and len(rows) == leads
    assert {r[1] for r in rows} == {p.phone for p in crowd}
    counts = twilio.counts_by_recipient()
    assert set(counts) == {p.phone for p in crowd} and set(counts.values()) == {1}, counts
    assert all(shop.storm_answers[k] > 0 for k in ("html403", "429", "429-retry-after"))
    assert retries_logged > 0
    poll_errors = metric(samples, "leadd_poll_cycles_total", status="error")
    # Backoff must be visible in /metrics, not only in the log.
    backoff = metric(samples, "leadd_provider_retries_total", provider="shopmonkey")
    numbers = {
        "leads": leads,
        "storm_s": storm,
        "shopmonkey_storm_answers": dict(shop.storm_answers),
        "client_retries_logged": retries_logged,
        "poll_cycles_error_metric": poll_errors,
        "provider_retries_metric": backoff,
        "drain_after_recovery_s": round(drain, 1),
        "drain_bound_s": bound,
    }
    assert backoff > 0, (
        f"no Shopmonkey backoff in /metrics (leadd_provider_retries_total): {numbers}"
    )
    return numbers


# =========================================================================== 4. two daemons


async def two_daemons(
    chaos: Chaos, database_url: str, *, leads: int = 300, fast_forward: bool = True
) -> Numbers:
    """Two `leadd run` processes on one database share the webhooks (some orders are sent
    to both at once), one poller lease and the touch points; the poll leader is killed with
    SIGKILL mid-send.

    Promises: zero duplicate sends (every phone one SMS); every order one lead, including
    those that exist only in Shopmonkey and appear after the kill; one poller at a time (the
    follower's poll cycles are all `skipped` while the leader lives, and no two
    job_executions overlap); the survivor takes the poller over within one lease period of
    the kill, and the dead daemon's in-flight sends within one touch-point lease.

    `fast_forward`: the poller lease (at least 60 s) is expired by hand after the kill; the
    bench waits it out and measures the real takeover.
    """
    crowd = chaos.crowd(leads, seed=5)
    webhook_people = crowd[: int(leads * 0.7)]
    polled_before = crowd[int(leads * 0.7) : int(leads * 0.85)]
    polled_after = crowd[int(leads * 0.85) :]
    async with FakeTwilio() as twilio, FakeShopmonkey(api_key=SHOPMONKEY_KEY) as shop:
        chaos.watch(twilio, shop)
        twilio.delay = 0.05
        tp = {"lease": "6s", "concurrency": 10}
        a = chaos.start(
            daemon_config(database_url, twilio=twilio, shopmonkey=shop, touchpoints=tp), "a"
        )
        b = chaos.start(
            daemon_config(database_url, twilio=twilio, shopmonkey=shop, touchpoints=tp), "b"
        )
        await asyncio.gather(a.wait_ready(), b.wait_ready())

        gate = asyncio.Semaphore(24)

        async def deliver(i: int, person: Person) -> None:
            data = order(person)
            async with gate:
                if i % 10 == 0:  # the same order at both daemons at once
                    replies = await asyncio.gather(
                        chaos.http.post_order(a.url, data), chaos.http.post_order(b.url, data)
                    )
                else:
                    replies = [await chaos.http.post_order((a, b)[i % 2].url, data)]
            assert {r.status for r in replies} == {200}, replies
            assert len({r.json()["leadId"] for r in replies}) == 1, replies
            shop.add_order(data)

        for person in polled_before:
            shop.add_order(order(person))
        await asyncio.gather(*(deliver(i, p) for i, p in enumerate(webhook_people)))

        async def sent_at_least(n: int) -> bool:
            return (await touch_point_states(database_url)).get("sent", 0) >= n

        await wait_for(lambda: sent_at_least(leads // 4), timeout=120)
        holder = await scalar(
            database_url, "SELECT holder FROM leases WHERE name = 'shopmonkey.poll'"
        )
        leader, follower = (a, b) if f":{a.pid}:" in holder else (b, a)
        assert f":{leader.pid}:" in holder, holder
        follower_before = await follower.metrics(chaos.http)
        leader_before = await leader.metrics(chaos.http)

        leader.kill()
        killed_at = time.monotonic()
        dead_sending = await scalar(
            database_url,
            "SELECT count(*) FROM touch_points WHERE state = 'sending' AND claimed_by = $1",
            holder,
        )
        lease_left = await scalar(
            database_url,
            "SELECT extract(epoch FROM expires_at - now()) FROM leases WHERE name = 'shopmonkey.poll'",
        )
        if fast_forward:
            await sql(
                database_url, "UPDATE leases SET expires_at = now() WHERE name = 'shopmonkey.poll'"
            )
        for person in polled_after:
            shop.add_order(order(person))

        async def poller_taken_over() -> bool:
            now_holder = await scalar(
                database_url, "SELECT holder FROM leases WHERE name = 'shopmonkey.poll'"
            )
            return f":{follower.pid}:" in now_holder

        async def dead_rows_released() -> bool:
            n = await scalar(
                database_url,
                "SELECT count(*) FROM touch_points WHERE state = 'sending' AND claimed_by = $1",
                holder,
            )
            return n == 0

        async def since_kill(predicate: Any, timeout: float) -> float:
            await wait_for(predicate, timeout, 0.1)
            return time.monotonic() - killed_at

        poll_takeover, rows_takeover = await asyncio.gather(
            since_kill(poller_taken_over, 120), since_kill(dead_rows_released, 60)
        )

        async def all_done() -> bool:
            return await all_touch_points_done(database_url, leads)

        await wait_until(all_done, timeout=180)
        survivor = await follower.metrics(chaos.http)

    assert await stored_order_ids(database_url) == set(shop.orders) and len(shop.orders) == leads
    counts = twilio.counts_by_recipient()
    assert {p: n for p, n in counts.items() if n != 1} == {}, "duplicate sends"
    assert set(counts) == {p.phone for p in crowd}, "an acknowledgement was dropped"
    assert metric(follower_before, "leadd_poll_cycles_total", status="ok") == 0
    assert metric(follower_before, "leadd_poll_cycles_total", status="skipped") > 0
    assert metric(leader_before, "leadd_poll_cycles_total", status="ok") > 0
    assert metric(survivor, "leadd_poll_cycles_total", status="ok") > 0
    overlaps = await scalar(
        database_url,
        """SELECT count(*) FROM job_executions x JOIN job_executions y ON x.id < y.id
           WHERE x.started_at < coalesce(y.finished_at, y.started_at)
             AND y.started_at < coalesce(x.finished_at, x.started_at)""",
    )
    assert overlaps == 0, f"{overlaps} overlapping poll cycles"
    lease_period = 60.0  # leadd.loops.poll: max(poll_interval * 3, 60 s)
    if not fast_forward:
        assert poll_takeover <= lease_period + 1 + 5, poll_takeover
    assert rows_takeover <= 6 + 1 + 5, rows_takeover
    return {
        "leads": leads,
        "sms_total": len(twilio.messages),
        "duplicates": 0,
        "leader_sending_at_kill": dead_sending,
        "poll_lease_left_at_kill_s": round(float(lease_left), 1),
        "poller_takeover_after_kill_s": round(poll_takeover, 1),
        "poller_takeover_fast_forwarded": fast_forward,
        "inflight_rows_takeover_after_kill_s": round(rows_takeover, 1),
        "overlapping_poll_cycles": overlaps,
    }
