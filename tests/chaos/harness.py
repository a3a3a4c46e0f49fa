"""What the chaos scenarios share: `leadd run` processes, an HTTP client that keeps every
response body for the leak scanner, a PostgreSQL server of our own that can be stopped,
distinctive people, signed orders, and readers for /metrics, /proc and the database.

Used by tests/chaos (small sizes, assertions) and by bench/ (full sizes, numbers).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from leadd import phones as phonemod
from leadd.providers.shopmonkey_webhook import sign_webhook
from leadd.providers.twilio_signature import compute_signature
from tests.chaos.pii import PiiScanner
from tests.conftest import base_config, free_port
from tests.helpers import DaemonProcess, wait_for

SECRET = "chaos-webhook-secret-7f3a9c"
SHOPMONKEY_KEY = "sm-chaos-api-key-5be1d0"
SMS_FROM = "+15125550199"
AREA_CODES = ("312", "773", "872")  # Illinois: one time zone, no state rule


# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    phone: str
    email: str

    def customer(self, customer_id: str | None = None) -> dict[str, Any]:
        """As Shopmonkey returns a customer (GET /customer/{id}, or embedded in an order)."""
        return {
            "id": customer_id or str(uuid.uuid4()),
            "firstName": self.first,
            "lastName": self.last,
            "phoneNumbers": [{"number": self.phone, "primary": True}],
            "emails": [{"email": self.email, "primary": True}],
        }


_SYLLABLES = ("zor", "vex", "quil", "dra", "mon", "tav", "rik", "sel", "bru", "pha", "nyx", "lud")


def people(n: int, *, seed: int = 7, offset: int = 0, tricky_every: int = 0) -> list[Person]:
    """`n` people with valid Illinois mobile-shaped numbers and names no log line would
    contain by chance (so the scanner can treat any occurrence as a leak). With
    `tricky_every=k`, every k-th e-mail has an apostrophe or ends in a non-ASCII letter, the
    addresses masks get wrong."""
    rng = random.Random(seed)
    numbers = phone_numbers(n + offset)[offset:]
    out = []
    for i, phone in enumerate(numbers):
        first = "".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()
        last = "".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()
        local = f"{first.lower()}.{last.lower()}{i}"
        if tricky_every and i % tricky_every == 0:
            local = f"{first.lower()}'{last.lower()}{i}"
        elif tricky_every and i % tricky_every == tricky_every // 2:
            local = f"{first.lower()}{i}é"
        out.append(Person(first, last, phone, f"{local}@chaos.example"))
    return out


def phone_numbers(n: int) -> list[str]:
    out: list[str] = []
    for area in AREA_CODES:
        for line in range(10000):
            number = phonemod.normalize(f"+1{area}555{line:04d}")
            if number:
                out.append(number)
                if len(out) == n:
                    return out
    raise ValueError(f"only {len(out)} valid test numbers")


# --------------------------------------------------------------------------- orders


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order(person: Person | None, *, embed: bool = True, **changes: Any) -> dict[str, Any]:
    """A Shopmonkey order (the webhook's `data`, or a row of GET /order) created now.
    `embed`: the customer is embedded (no API call to enrich); else only `customerId`."""
    now = iso(dt.datetime.now(dt.UTC))
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "number": random.randint(1000, 99999),
        "locationId": "loc-sm-1",
        "customerId": str(uuid.uuid4()),
        "createdDate": now,
        "updatedDate": now,
        "meta": {"version": 1},
        "generatedVehicleName": "2016 Honda Civic",
    }
    if person is not None and embed:
        data["customer"] = person.customer(data["customerId"])
        data["vehicle"] = {"year": 2016, "make": "Honda", "model": "Civic"}
        data["services"] = [{"name": "Oil change", "totalCents": 9999}]
    data.update(changes)
    return data


def webhook(data: dict[str, Any], operation: str = "INSERT") -> dict[str, Any]:
    return {"apiVersion": "3", "operation": operation, "table": "order", "data": data}


def signed_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    headers = sign_webhook(
        body, secret, msg_id=f"msg_{uuid.uuid4().hex}", timestamp=int(time.time())
    )
    return {**headers, "Content-Type": "application/json"}


class SendGridSigner:
    """A P-256 key pair: the public half goes in `sendgrid.event_webhook_public_key`, the
    private half signs event batches the way SendGrid does (timestamp + raw body)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        ts = timestamp or str(int(time.time()))
        signature = self.key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        }


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Reply:
    status: int
    text: str

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None


class Http:
    """An aiohttp client whose every response body goes to the leak scanner. A transport
    error (refused, reset: the daemon was killed) is a Reply with status 0."""

    def __init__(self, scanner: PiiScanner, session: aiohttp.ClientSession) -> None:
        self.scanner = scanner
        self.session = session

    async def request(self, method: str, url: str, **kwargs: Any) -> Reply:
        kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=30))
        try:
            async with self.session.request(method, url, **kwargs) as r:
                text = await r.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Reply(0, f"{type(exc).__name__}")
        self.scanner.record(f"{method} {url.split('/', 3)[-1]} -> {r.status}", text)
        return Reply(r.status, text)

    async def get(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("GET", url, **kwargs)

    async def post_order(self, base: str, data: dict[str, Any], operation: str = "INSERT") -> Reply:
        body = json.dumps(webhook(data, operation)).encode()
        return await self.request(
            "POST",
            f"{base}/webhooks/shopmonkey/order",
            data=body,
            headers=signed_headers(body),
        )

    async def post_twilio(self, base: str, path: str, form: dict[str, str], token: str) -> Reply:
        """A form POST signed as Twilio signs it (the daemon's public_url is `base`)."""
        signature = compute_signature(token, base + path, form)
        return await self.request(
            "POST", base + path, data=form, headers={"X-Twilio-Signature": signature}
        )

    async def post_sendgrid(self, base: str, events: list[Any], signer: SendGridSigner) -> Reply:
        body = json.dumps(events).encode()
        return await self.request(
            "POST", f"{base}/webhooks/sendgrid/events", data=body, headers=signer.headers(body)
        )


@asynccontextmanager
async def http_client(scanner: PiiScanner, connections: int = 64) -> AsyncIterator[Http]:
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Http(scanner, session)


# --------------------------------------------------------------------------- daemons


def daemon_config(
    database_url: str,
    *,
    port: int | None = None,
    twilio: Any = None,
    sendgrid: Any = None,
    shopmonkey: Any = None,
    poll_interval: str = "1s",
    sequences: dict[str, Any] | None = None,
    touchpoints: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A `leadd run` config wired to the fakes (None: that provider is dry-run/disabled)."""
    port = port or free_port()
    sm: dict[str, Any] = {"webhook_secrets": [SECRET], "api_key": ""}
    if shopmonkey is not None:
        sm.update(
            api_key=shopmonkey.api_key,
            base_url=shopmonkey.url,
            poll_interval=poll_interval,
            requests_per_second=50,
        )
    data = base_config(shopmonkey=sm, **overrides)
    data["database"] = {"url": database_url, **data.get("database", {})}
    data["http"] = {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"}
    data["leads"] = {"enrichment_retry": "2s", **data.get("leads", {})}
    if twilio is not None:
        data["twilio"] = {
            "base_url": twilio.url,
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from_number": SMS_FROM,
            "messages_per_second": 1000,
        }
    if sendgrid is not None:
        data["sendgrid"] = {
            "base_url": sendgrid.url,
            "api_key": sendgrid.api_key,
            "from_email": "service@acme.example",
        }
    tp = {"interval": "1s", "concurrency": 20, "batch_size": 50, "lease": "30s"}
    tp.update({"retry_base": "200ms", "retry_cap": "2s", "max_attempts": 20})
    data["touchpoints"] = {**tp, **(touchpoints or {})}
    data["sequences"] = sequences or ACK_ONLY
    return data


ACK = {
    "name": "ack",
    "channel": "sms",
    "delay": "0s",
    "after": "created",
    "template": "Hi {{ customer.first_name }}, thanks for your request! {{ location.name }}",
}
MAIL = {
    "name": "estimate",
    "channel": "email",
    "delay": "0s",
    "after": "created",
    "subject": "Your estimate, {{ customer.first_name }}",
    "template": "Hi {{ customer.first_name }}, about your {{ vehicle.description }}.",
}
ACK_ONLY = {"default": [ACK]}
ACK_AND_MAIL = {"default": [ACK, MAIL]}


class Daemon(DaemonProcess):
    """A `leadd run` child process plus what the chaos cases read from it."""

    def __init__(self, config: dict[str, Any], scanner: PiiScanner, name: str = "leadd") -> None:
        workdir = Path(tempfile.mkdtemp(prefix=f"leadd-chaos-{name}-"))
        super().__init__(config, workdir, env={"PYTHONUNBUFFERED": "1"})
        self.scanner = scanner
        self.name = name
        self._logged = False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def metrics(self, http: Http) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        reply = await http.get(f"{self.url}/metrics")
        assert reply.status == 200, reply
        return parse_metrics(reply.text)

    async def task_restarts(self, http: Http) -> float:
        return metric(await self.metrics(http), "leadd_task_restarts_total")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def hand_log_to_scanner(self) -> None:
        if not self._logged:
            self._logged = True
            self.scanner.record_log(self.log_path)

    def stop(self) -> None:
        """SIGTERM if still running (or SIGKILL after 15 s); then the log goes to the scanner."""
        if self.alive():
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()
        self.hand_log_to_scanner()


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


# --------------------------------------------------------------------------- database


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def scalar(url: str, query: str, *args: Any) -> Any:
    rows = await sql(url, query, *args)
    return rows[0][0] if rows else None


async def stored_order_ids(url: str) -> set[str]:
    return {r[0] for r in await sql(url, "SELECT shopmonkey_order_id FROM leads")}


async def touch_point_states(url: str) -> dict[str, int]:
    rows = await sql(url, "SELECT state, count(*) FROM touch_points GROUP BY state")
    return {r[0]: r[1] for r in rows}


async def all_touch_points_done(url: str, expected: int) -> bool:
    """Every one of `expected` touch points reached a final state."""
    states = await touch_point_states(url)
    return sum(states.values()) == expected and not {"scheduled", "sending"} & {
        s for s, n in states.items() if n
    }


async def connections_to(url: str, database: str) -> int:
    """Server connections to `database` (leadd's pool), from pg_stat_activity."""
    return int(
        await scalar(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    )


async def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> float:
    """`tests.helpers.wait_for` that returns how long it took (seconds)."""
    started = time.monotonic()
    await wait_for(predicate, timeout, interval)
    return time.monotonic() - started


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    explicit = os.environ.get("LEADD_CHAOS_PG_BIN")
    if explicit:
        return Path(explicit)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    if versions:
        return versions[0].parent
    from pgserver._commands import POSTGRES_BIN_PATH  # the wheel leadd embeds

    return Path(POSTGRES_BIN_PATH)


class LocalPostgres:
    """A PostgreSQL server of our own on a free loopback port, which a test may stop and
    start again: never the machine's shared server. As root the server runs as `postgres`
    (PostgreSQL refuses to run as root), or as pgserver's user when there is none."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="leadd-chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.bindir = _pg_bindir()
        self.user: str | None = None
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
                self.user = "postgres"
            except KeyError:
                from pgserver.utils import ensure_user_exists

                ensure_user_exists("pgserver")
                self.user = "pgserver"
            shutil.chown(self.root, self.user)
            self.root.chmod(0o755)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout, cwd=self.root)

    def init(self) -> LocalPostgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self.start()

    def start(self) -> LocalPostgres:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
            " -c max_connections=60 -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    async def create_database(self, name: str = "leadd") -> str:
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """A fresh, empty database on $LEADD_TEST_DATABASE_URL's server (the bench's; the daemon
    applies the schema itself), dropped afterwards."""
    server = os.environ.get("LEADD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = server.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def bench_database(prefix: str, *, own_server: bool) -> AsyncIterator[str]:
    """A fresh database for a bench run: on $LEADD_TEST_DATABASE_URL's server, or with
    `own_server` on a PostgreSQL of the run's own (a shared server may be short of
    connections, and then every number is about the neighbours)."""
    if not own_server:
        async with scratch_database(prefix) as url:
            yield url
        return
    pg = await asyncio.to_thread(LocalPostgres().init)
    try:
        yield await pg.create_database(prefix)
    finally:
        await asyncio.to_thread(pg.destroy)


def cancel_on_sigterm() -> None:
    """SIGTERM/SIGINT cancel the running task, so a bench run stopped early still stops its
    daemons and drops its database (the default SIGTERM skips every `finally`)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
