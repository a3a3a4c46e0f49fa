"""What the benchmarks share: scratch databases, the daemon as a subprocess, signed order
webhooks, test phone numbers, percentiles and a description of the machine.

The scripts run from a fresh clone with only the virtualenv (`.venv/bin/python bench/X.py`) and
as modules (`python -m bench.X`). Run as a file, a script puts the repository root on
`sys.path` before importing this module; `leadd` must be importable (the venv's editable
install, or PYTHONPATH). Nothing here imports `tests`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
SECRET = "bench-secret"
TENANT = "6f1c1c53-3f3e-4d0a-9d7e-0a6b1b1e0b03"
WEBHOOK_PATH = "/webhooks/shopmonkey/order"
SM_LOCATION = "loc-sm-1"
# Illinois area codes: one time zone and no state rule, so compliance never holds a send back.
AREA_CODES = ("312", "773", "872")

T = TypeVar("T")


def database_server() -> str:
    """The PostgreSQL server to make scratch databases on."""
    return os.environ.get("LEADD_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def admin(url: str, *statements: str) -> None:
    """Run statements on one connection (CREATE/DROP DATABASE cannot run in a transaction)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def fetch_value(url: str, sql: str, *args: Any) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database(server: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty database on `server` for one run; its URL. Dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield with_db(server, name)
    finally:
        await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until `url` answers 200 (e.g. /readyz); fail if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready within {timeout}s")


def machine() -> str:
    """One line: CPUs, CPU model, RAM, Python, and the load average right now (the machine
    may be shared; the load says how busy it was when the numbers were taken)."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, CPU {model!r}, RAM {mem_kb / 1048576:.1f} GiB, "
        f"Python {platform.python_version()}, load average {load}"
    )


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank on the sorted values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def phone_numbers(n: int, skip: int = 0) -> list[str]:
    """`n` distinct valid US numbers (E.164) in Illinois, after the first `skip`."""
    from leadd import phones

    out: list[str] = []
    seen = 0
    for area in AREA_CODES:
        for line in range(10000):
            number = phones.normalize(f"+1{area}555{line:04d}")
            if not number:
                continue
            seen += 1
            if seen > skip:
                out.append(number)
                if len(out) == n:
                    return out
    raise SystemExit(f"only {len(out)} valid test numbers after the first {skip}")


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order(
    *,
    order_id: str,
    customer_id: str,
    vehicle_id: str | None,
    customer: Mapping[str, Any] | None = None,
    location: str = SM_LOCATION,
) -> dict[str, Any]:
    """An order row as Shopmonkey's webhook and list API carry it: ids only (customer,
    vehicle and services must be fetched), unless `customer` is given to embed."""
    now = iso_now()
    data: dict[str, Any] = {
        "id": order_id,
        "number": 1000,
        "name": None,
        "createdDate": now,
        "updatedDate": now,
        "companyId": "co-1",
        "locationId": location,
        "customerId": customer_id,
        "vehicleId": vehicle_id,
        "workflowStatusId": "wf-estimate",
        "authorized": False,
        "invoiced": False,
        "paid": False,
        "archived": False,
        "deleted": False,
        "totalCostCents": 45900,
        "complaint": "Brakes squeal when stopping",
        "generatedVehicleName": "2016 Honda Civic",
        "generatedCustomerName": "Jamie Rivera",
        "appointmentDates": [],
        "meta": {"version": 1},
    }
    if customer is not None:
        data["customer"] = dict(customer)
    return data


def customer(customer_id: str, phone: str, first_name: str = "Jamie") -> dict[str, Any]:
    return {
        "id": customer_id,
        "firstName": first_name,
        "lastName": "Rivera",
        "phoneNumbers": [{"number": phone, "primary": True}],
        "emails": [],
    }


def webhook_body(data: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {"apiVersion": "3", "operation": "INSERT", "table": "order", "data": data}
    ).encode()


async def post_webhook(http: aiohttp.ClientSession, base_url: str, body: bytes) -> int:
    """POST one freshly signed order webhook; the HTTP status."""
    from leadd.providers.shopmonkey_webhook import sign_webhook

    headers = sign_webhook(
        body, SECRET, msg_id=f"msg_{uuid.uuid4().hex}", timestamp=int(time.time())
    )
    headers["Content-Type"] = "application/json"
    async with http.post(base_url + WEBHOOK_PATH, data=body, headers=headers) as r:
        await r.read()
        return r.status


def daemon_config(
    *,
    port: int,
    database_url: str,
    state_dir: Path,
    sequence: list[dict[str, Any]],
    shopmonkey: Mapping[str, Any] | None = None,
    twilio: Mapping[str, Any] | None = None,
    touchpoints: Mapping[str, Any] | None = None,
    log_level: str = "warning",
) -> dict[str, Any]:
    """A daemon config for the outreach benchmarks: one location, sending allowed all day
    (quiet hours 00:00-24:00), the pool and touch-point settings of bench/outreach.py."""
    return {
        "tenant": {"id": TENANT, "name": "Bench Auto"},
        "state_dir": str(state_dir),
        "database": {"url": database_url, "pool_min": 5, "pool_max": 40},
        "http": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"},
        "shopmonkey": {"webhook_secrets": [SECRET], "api_key": "", **(shopmonkey or {})},
        "twilio": dict(twilio or {}),
        "touchpoints": {
            "interval": "1s",
            "concurrency": 200,
            "batch_size": 100,
            "lease": "60s",
            **(touchpoints or {}),
        },
        "compliance": {"quiet_hours": "00:00-24:00"},
        "logging": {"level": log_level, "format": "json"},
        "sequences": {"bench": sequence},
        "locations": [
            {
                "id": "main",
                "name": "Bench Auto",
                "timezone": "America/Chicago",
                "phone": "+15125550100",
                "shopmonkey_location_id": SM_LOCATION,
                "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
                "services": [{"name": "Brake inspection", "price": 459.0}],
                "sequence": "bench",
            }
        ],
    }


class Daemon:
    """`python -m leadd run --config <file>` as a child process; its log in `workdir`.

    PYTHONPATH puts this checkout first, so the daemon runs the code next to the benchmark
    even when the venv's editable install points at another checkout.
    """

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "leadd") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.port = int(config["http"]["port"])
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Daemon:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leadd", "run", "--config", str(self.config_path)],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": path},
            )
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise SystemExit(f"leadd exited before it was ready; log: {self.log_path}")
                try:
                    async with http.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)  # nothing to wait on but the socket
        raise SystemExit(f"leadd not ready within {timeout}s; log: {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed (as the daemon runs), so the load
    generator and the fakes cost as little CPU as they can on a shared machine."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
