"""Provider fakes for the speed benchmarks, in the benchmark's own process.

- `FakeTwilio`: the Messages resource, just enough for leadd's client (create, list). Every
  create is recorded with its arrival time *before* the configurable latency, as if Twilio
  accepted the message and only the answer was slow: "provider accepted" is that moment.
- `FakeShopmonkey`: the API fake of the tests (tests/fakes/shopmonkey.py: the live API's
  quirks, paging, filters), loaded from its file so `tests` need not be importable, plus a
  latency on every answer and the arrival and answer time of every request.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import importlib.util
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from aiohttp import web

from bench.common import ROOT

API_VERSION = "2010-04-01"
SHOPMONKEY_KEY = "bench-shopmonkey-key"


@dataclass(frozen=True)
class Sent:
    to: str
    body: str
    received_at: float  # time.monotonic() when the create request arrived


class FakeTwilio:
    def __init__(
        self,
        latency: float = 0.2,
        *,
        account_sid: str = "AC" + "b" * 32,
        auth_token: str = "bench-auth-token",
    ) -> None:
        self.latency = latency
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[Sent] = []
        self.url = ""
        self._auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._runner: web.AppRunner | None = None
        self._created: dict[str, dict[str, Any]] = {}

    def client_config(self, messages_per_second: float = 1000.0) -> dict[str, Any]:
        """The daemon's `twilio:` section pointing at this fake."""
        return {
            "base_url": self.url,
            "account_sid": self.account_sid,
            "auth_token": self.auth_token,
            "from_number": "+15125550199",
            "messages_per_second": messages_per_second,
        }

    async def start(self) -> FakeTwilio:
        app = web.Application()
        path = f"/{API_VERSION}/Accounts/{{sid}}/Messages.json"
        app.router.add_post(path, self._create)
        app.router.add_get(path, self._list)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float) -> bool:
        """True once `count` messages in all have arrived; False after `timeout` seconds."""
        if len(self.messages) >= count:
            return True
        waiter = (count, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter[1], timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def reset(self) -> None:
        self.messages.clear()
        self._created.clear()

    async def _create(self, request: web.Request) -> web.Response:
        received_at = time.monotonic()
        if request.headers.get("Authorization") != self._auth:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        form = await request.post()
        to, from_, body = (
            str(form.get("To", "")),
            str(form.get("From", "")),
            str(form.get("Body", "")),
        )
        self.messages.append(Sent(to, body, received_at))
        for waiter in [w for w in self._waiters if len(self.messages) >= w[0]]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(None)
        resource = self._resource(to, from_, body)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return web.json_response(resource, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        """One page, newest first, filtered by To/From: enough for a reconciliation."""
        if request.headers.get("Authorization") != self._auth:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        q = request.query
        found = [
            m
            for m in reversed(self._created.values())
            if q.get("To", m["to"]) == m["to"] and q.get("From", m["from"]) == m["from"]
        ]
        return web.json_response(
            {"messages": found, "next_page_uri": None, "page": 0, "page_size": len(found)}
        )

    def _resource(self, to: str, from_: str, body: str) -> dict[str, Any]:
        sid = f"SM{len(self._created):032x}"
        created = email.utils.formatdate(usegmt=True)
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": from_,
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "date_created": created,
            "date_sent": created,
            "date_updated": created,
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
        }
        self._created[sid] = resource
        return resource


def _load_test_fake() -> ModuleType:
    """tests/fakes/shopmonkey.py, loaded from its file (it imports only aiohttp)."""
    name = "_bench_fake_shopmonkey"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "tests" / "fakes" / "shopmonkey.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the Shopmonkey fake from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise SystemExit(
            f"{path} now imports something outside aiohttp and the standard library ({exc}); "
            "the benchmarks load it from its file and need it self-contained"
        ) from exc
    return module


_test_fake = _load_test_fake()


@dataclass(frozen=True)
class ApiCall:
    path: str
    arrived: float  # time.monotonic()
    answered: float


class FakeShopmonkey(_test_fake.FakeShopmonkey):  # type: ignore[misc,name-defined]
    """The tests' fake with a `latency` before every answer and every call's timing."""

    def __init__(self, latency: float) -> None:
        super().__init__(api_key=SHOPMONKEY_KEY)
        self.latency = latency
        self.calls: list[ApiCall] = []

    def client_config(self, requests_per_second: float, poll_interval: str) -> dict[str, Any]:
        """The daemon's `shopmonkey:` section (without webhook secrets) for this fake."""
        return {
            "base_url": self.url,
            "api_key": SHOPMONKEY_KEY,
            "requests_per_second": requests_per_second,
            "poll_interval": poll_interval,
        }

    def add_lead(self, data: dict[str, Any], person: dict[str, Any]) -> None:
        """An order with its customer, vehicle and one service, as the API will serve them."""
        self.add_order(data)
        self.add_customer(person)
        if data.get("vehicleId"):
            self.add_vehicle(
                {"id": data["vehicleId"], "year": 2016, "make": "Honda", "model": "Civic"}
            )
        self.add_service(data["id"], {"id": f"svc-{data['id']}", "name": "Brake inspection"})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        arrived = time.monotonic()
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        response: web.StreamResponse = await super()._middleware(request, handler)
        self.calls.append(ApiCall(request.path, arrived, time.monotonic()))
        return response

    def busiest_second(self) -> int:
        """The most requests that arrived within any one second (the budget, as seen here)."""
        times = sorted(c.arrived for c in self.calls)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best
