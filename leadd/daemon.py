"""The leadd process: start-up, the supervised tasks, and shutdown in phases.

Start-up: HTTP listens first (so /healthz answers and /readyz can say why we are not ready),
then the database is reached with backoff (embedded PostgreSQL when no URL is configured),
the schema applied and the YAML mirrored; then READY=1 and the loops begin.

Shutdown (first SIGTERM/SIGINT; a second one forces exit): STOPPING=1, stop accepting HTTP,
let the loops finish their current batch, wait up to `shutdown_timeout`, cancel the rest,
close the pool, stop the embedded server.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import signal
import socket
import time
import uuid
from contextlib import suppress
from typing import Any

import aiohttp
from aiohttp import web

from leadd import metrics
from leadd.backoff import Backoff
from leadd.config import Config
from leadd.config import warnings as config_warnings
from leadd.config.chat_key import with_secret
from leadd.embedded import EmbeddedPostgres
from leadd.errors import describe_error
from leadd.logs import get_logger
from leadd.runtime import Clock, ProviderHealth, Runtime, Wakeup, utcnow
from leadd.sdnotify import Notifier
from leadd.store import DB_ERRORS, Store
from leadd.store import core as dbmod
from leadd.store.events import Wake
from leadd.supervisor import Supervisor

log = get_logger(__name__)

DB_RETRY = Backoff(base=1.0, cap=30.0, jitter=0.2)


class Daemon:
    def __init__(
        self, config: Config, *, env: dict[str, str] | None = None, clock: Clock = utcnow
    ) -> None:
        self.config = with_secret(config)  # chat links need chat.secret (or the key file)
        self.clock = clock  # the runtime's clock: due-ness, quiet hours, caps (tests pin it)
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.shutdown = asyncio.Event()
        self.supervisor = Supervisor(self.shutdown)
        self.notifier = Notifier(env)
        self.db: Store | None = None
        self.runtime: Runtime | None = None  # what services need, once the database is ready
        self.db_problem: str | None = "connecting"
        self.db_ready = asyncio.Event()
        self.http_ready = asyncio.Event()
        self.http_port: int | None = None
        self.embedded: EmbeddedPostgres | None = None
        self.session: aiohttp.ClientSession | None = None
        self.wake_touchpoints = asyncio.Event()  # set when a touch point may be due: send now
        self.wake_enrichment = asyncio.Event()  # set when a lead arrives: enrich it now
        self.health = ProviderHealth()
        self.provider_problems = self.health.problems
        self.fatal: str | None = None  # why start-up cannot go on (e.g. the port is taken)
        self._signals = 0
        self._build_services()

    # ------------------------------------------------------------------ wiring

    def _build_services(self) -> None:
        self.supervisor.add("http", self._serve_http, critical=True)
        for loop in ("poll", "enrichment", "touchpoints", "wakes"):
            self.supervisor.add(loop, functools.partial(self._loop, loop))
        if self.notifier.watchdog_interval:
            self.supervisor.add("watchdog", self._watchdog)

    async def _loop(self, name: str) -> None:
        """A periodic loop once the database is ready; enrichment and sending are two lanes."""
        from leadd.loops import enrichment, poll, touchpoints

        if await self.wait_db() is None or self.runtime is None:
            return  # shutting down before the database was ready
        rt = self.runtime
        beat = functools.partial(self.supervisor.beat, name)
        if name == "poll":
            await poll.run(rt, shutdown=self.shutdown, beat=beat)
        elif name == "wakes":  # other daemons' wake-ups (LISTEN), for both lanes
            await rt.store.listen_wakes(self._heard, self.shutdown)
        elif name == "enrichment":
            await enrichment.run(
                rt, shutdown=self.shutdown, wake_event=self.wake_enrichment, beat=beat
            )
        else:
            await touchpoints.run(
                rt, shutdown=self.shutdown, wake_event=self.wake_touchpoints, beat=beat
            )

    async def _notify(self, lane: str) -> None:
        if self.db is not None:
            await self.db.notify_wake(lane, sender=self.instance_id)

    def _heard(self, wake: Wake | None) -> None:
        lanes = {"send": self.wake_touchpoints, "enrichment": self.wake_enrichment}
        if wake is None:  # the listener reconnected: what was said meanwhile was not heard
            for event in lanes.values():
                event.set()
        elif wake.sender != self.instance_id and wake.lane in lanes:
            lanes[wake.lane].set()

    async def _serve_http(self) -> None:
        from leadd.web import GUARD, create_app
        from leadd.web.connections import GuardedSite, ServerLog

        app = create_app(
            self.config,
            runtime=lambda: self.runtime,
            readiness=self.readiness,
            runtime_ready=self.db_ready,  # chat (issue 10): the live listener starts then
        )
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=self.config.shutdown_timeout,
            # Providers never compress requests; a compressed body could expand far past
            # max_body_bytes inside aiohttp's parser before any handler sees it.
            auto_decompress=False,
            logger=ServerLog(),
        )
        await runner.setup()
        try:
            guard = app[GUARD]
            site = GuardedSite(runner, self.config.http.host, self.config.http.port, guard)
            try:
                await site.start()
            except OSError as exc:
                # A start-up condition, not a crash: one line saying what to change, no trace.
                self.fatal = _listen_error(self.config.http.host, self.config.http.port, exc)
                self.shutdown.set()
                return
            self.http_port = site.port
            log.info(
                "http.listening",
                host=self.config.http.host,
                port=self.http_port,
                max_connections=guard.max_connections,
            )
            self.http_ready.set()
            await self.shutdown.wait()
            log.info("shutdown.phase", phase="http: stop accepting, finish in-flight requests")
        finally:
            await runner.cleanup()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 only while the loops make progress, not merely while the process exists."""
        assert self.notifier.watchdog_interval
        period = self.notifier.watchdog_interval / 2
        while not self.shutdown.is_set():
            if self.loops_alive():
                self.notifier.watchdog()
            else:
                log.warning("watchdog.withheld", problems=self.supervisor.problems())
            with suppress(TimeoutError):
                await asyncio.wait_for(self.shutdown.wait(), period)

    def loops_alive(self) -> bool:
        now = time.monotonic()
        limits = {
            "poll": self.config.shopmonkey.poll_interval * 2 + 60,
            "touchpoints": self.config.touchpoints.interval * 2 + 60,
            "enrichment": self.config.touchpoints.interval * 2 + 60,
        }
        for name, limit in limits.items():
            t = self.supervisor.tasks[name]
            if not t.running:
                return False
            if self.db_ready.is_set() and t.heartbeat is not None and now - t.heartbeat > limit:
                return False
        return True

    # ------------------------------------------------------------------ readiness

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /readyz: ready, and a body saying in words what is wrong (no payload values)."""
        problems = await self.readiness_problems()
        body = {
            "status": "ready" if not problems else "not ready",
            "problems": problems,
            "tasks": {n: t.as_json() for n, t in self.supervisor.tasks.items()},
            "providers": self.config.providers_summary(),
        }
        return not problems, body

    async def readiness_problems(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        if self.db is None:
            problems["database"] = self.db_problem or "not connected"
        else:
            try:
                await self.db.ping()
            except DB_ERRORS as exc:  # also a pooled connection the server just cut
                log.warning("database.ping_failed", error=f"{type(exc).__name__}: {exc}")
                problems["database"] = f"unreachable: {describe_error(exc)}"
        for name, text in self.supervisor.problems().items():
            problems[f"task:{name}"] = text
        problems.update(self.provider_problems)
        return problems

    async def wait_db(self) -> Store | None:
        """For loops: wait until the database is ready; None when shutting down first."""
        waiter = asyncio.create_task(self.db_ready.wait())
        stopper = asyncio.create_task(self.shutdown.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
        return self.db if self.db_ready.is_set() and not self.shutdown.is_set() else None

    # ------------------------------------------------------------------ database

    async def _connect_db(self) -> None:
        attempt = 0
        while not self.shutdown.is_set():
            try:
                url = self.config.database.url
                if url is None:
                    if self.embedded is None:
                        self.embedded = EmbeddedPostgres(self.config.state_dir)
                    url = await self.embedded.start()
                pool = await dbmod.create_pool(
                    url,
                    min_size=self.config.database.pool_min,
                    max_size=self.config.database.pool_max,
                    timeout=self.config.database.connect_timeout,
                )
                try:
                    async with pool.acquire() as conn:
                        await dbmod.migrate(conn)
                    database = Store(pool, self.config.tenant.id)
                    await database.sync_config(self.config)
                except BaseException:
                    await pool.close()
                    raise
                self.db, self.db_problem = database, None
                self.runtime = Runtime(
                    config=self.config,
                    store=database,
                    shopmonkey=self.shopmonkey,
                    twilio=self.twilio,
                    sendgrid=self.sendgrid,
                    instance_id=self.instance_id,
                    clock=self.clock,
                    wake=Wakeup("send", self.wake_touchpoints.set, self._notify),
                    wake_enrichment=Wakeup("enrichment", self.wake_enrichment.set, self._notify),
                    health=self.health,
                )
                metrics.POOL.source = database.pool_stats
                self.db_ready.set()
                log.info("database.ready", embedded=self.config.database.url is None)
                return
            except Exception as exc:
                # Unreachable server, auth failure, a migration error: none of these should
                # become a crash loop. /readyz shows the reason while we retry with backoff.
                delay = DB_RETRY.delay(attempt)
                attempt += 1
                # Our own words for a schema problem; anything else may carry the URL or user.
                what = str(exc) if isinstance(exc, dbmod.MigrationError) else describe_error(exc)
                self.db_problem = f"{what}; retrying in {delay:.0f}s"
                log.error(
                    "database.unavailable",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(delay, 1),
                )
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.shutdown.wait(), delay)

    # ------------------------------------------------------------------ run

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("shutdown.requested", signal=signal.Signals(signum).name)
            self.shutdown.set()
        else:
            log.warning("shutdown.forced", signal=signal.Signals(signum).name)
            os._exit(1)

    async def run(self, *, install_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self.session = aiohttp.ClientSession()
        from leadd.providers import build_clients

        self.shopmonkey, self.twilio, self.sendgrid = build_clients(self.config, self.session)
        metrics.start(
            touchpoints_interval=self.config.touchpoints.interval,
            poll_interval=self.config.shopmonkey.poll_interval if self.shopmonkey.enabled else None,
            shopmonkey_auth_failed=lambda: self.shopmonkey.last_auth_error is not None,
        )
        log.info(
            "leadd.starting",
            tenant=self.config.tenant.name,
            config=self.config.source,
            providers=self.config.providers_summary(),
            database="external" if self.config.database.url else "embedded",
            demo_mode=self.config.demo_mode,
        )
        for warning in config_warnings(self.config):
            log.warning("config.warning", warning=warning)
        sup = asyncio.create_task(self.supervisor.run(), name="supervisor")
        try:
            await _first(self.http_ready.wait(), self.shutdown.wait())
            if self.http_ready.is_set() and not self.shutdown.is_set():
                await _first(self._connect_db(), self.shutdown.wait())
            if self.db_ready.is_set() and not self.shutdown.is_set():
                self.notifier.ready()
                log.info("leadd.ready", port=self.http_port)
            await self.shutdown.wait()
            self.notifier.stopping()
            log.info("shutdown.phase", phase="loops: finish current batch")
            try:
                await asyncio.wait_for(asyncio.shield(sup), self.config.shutdown_timeout)
            except TimeoutError:
                log.warning("shutdown.phase", phase="timeout: cancelling remaining tasks")
                sup.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await sup
        finally:
            if not sup.done():
                sup.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await sup
            await self._close()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if self.fatal is None and self.supervisor.fatal is not None:
            self.fatal = str(self.supervisor.fatal)
        if self.fatal is not None:
            log.error("leadd.stopped", status="fatal", error=self.fatal)
            return 1
        log.info("leadd.stopped", status="ok")
        return 0

    async def _close(self) -> None:
        log.info("shutdown.phase", phase="close pool and clients")
        if self.session is not None:
            await self.session.close()
        if self.db is not None:
            with suppress(Exception):
                await asyncio.wait_for(self.db.close(), 5)
            metrics.POOL.source = None
        if self.embedded is not None:
            await self.embedded.stop()


def _listen_error(host: str, port: int, exc: OSError) -> str:
    reason = {
        errno.EADDRINUSE: "the port is in use (another leadd, or another program): stop it "
        "or set http.port",
        errno.EACCES: "permission denied (ports below 1024 need root): set http.port",
        errno.EADDRNOTAVAIL: "no such address on this machine: set http.host",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"cannot listen on {host}:{port}: {reason}"


async def _first(*aws: Any) -> None:
    """Await whichever finishes first; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
                with suppress(asyncio.CancelledError):
                    await t
