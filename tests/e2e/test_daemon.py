"""The real daemon: supervision, /readyz, /metrics, HTTP errors, signals, sd_notify, start-up.

In-process tests use `running_daemon` (same event loop); the signal and start-up tests run
`python -m leadd run` as a child process, the way systemd does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

import leadd.loops.poll
from leadd.backoff import Backoff
from leadd.daemon import Daemon
from leadd.runtime import Runtime
from leadd.web import shopmonkey as shopmonkey_routes
from tests.conftest import base_config, free_port, make_config
from tests.helpers import DaemonProcess, base_url, running_daemon, system_tool, wait_for

# `leadd run` with no config file binds the demo default port; nothing else may hold it.
DEMO_PORT = 3000
SHUTDOWN_PHASES = (
    "loops: finish current batch",
    "http: stop accepting, finish in-flight requests",
    "close pool and clients",
)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


def metric_families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def restarts_total(text: str, task: str) -> float:
    family = metric_families(text)["leadd_task_restarts"]
    return next(s.value for s in family.samples if s.labels == {"task": task})


# --------------------------------------------------------------------------- supervision


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    """A fast, jitter-free backoff that remembers which attempt numbers it was asked for."""

    attempts: list[int] = field(default_factory=list)

    def delay(self, attempt: int, rng: Any = None) -> float:
        self.attempts.append(attempt)
        return super().delay(attempt, rng)


async def test_crashing_task_restarts_with_backoff_and_shows_in_readyz_and_metrics(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = asyncio.Event()
    calls = 0

    async def flaky_poll(rt: Runtime, *, shutdown: asyncio.Event, beat: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await crash.wait()
            raise RuntimeError("injected poll failure")
        if calls == 2:
            raise RuntimeError("injected again")  # a consecutive crash: the delay doubles
        await shutdown.wait()

    monkeypatch.setattr(leadd.loops.poll, "run", flaky_poll)
    async with running_daemon(make_config(database_url)) as daemon:
        backoff = RecordingBackoff(base=0.4, cap=5.0, jitter=0.0)
        daemon.supervisor.backoff = backoff
        url = base_url(daemon)
        status, _ = await get(f"{url}/readyz")
        assert status == 200
        _, before = await get(f"{url}/metrics")

        crash.set()

        async def crashed() -> Any:
            status, body = await get(f"{url}/readyz")
            return body if status == 503 else None

        body = await wait_for(crashed, timeout=10, interval=0.02)
        assert "task:poll" in body["problems"]
        assert "restarts=" in body["problems"]["task:poll"]
        # Named by type; the message (it may quote customer data) only goes to the log.
        assert "RuntimeError" in body["problems"]["task:poll"]
        assert "injected" not in json.dumps(body)
        assert body["tasks"]["poll"]["running"] is False
        assert body["tasks"]["poll"]["restarts"] >= 1
        assert body["tasks"]["poll"]["retry_in"] is not None
        assert "database" not in body["problems"]

        async def recovered() -> bool:
            return (await get(f"{url}/readyz"))[0] == 200

        await wait_for(recovered, timeout=10)
        _, after = await get(f"{url}/metrics")
        assert calls == 3
        assert backoff.attempts == [0, 1]
        assert daemon.supervisor.tasks["poll"].restarts == 2
        assert restarts_total(after, "poll") - restarts_total(before, "poll") == 2
        assert restarts_total(after, "touchpoints") == restarts_total(before, "touchpoints")


async def test_a_task_added_before_run_is_supervised(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks added to daemon.supervisor before run() are restarted like the built-in ones."""
    starts = 0
    started_again = asyncio.Event()
    original_init = Daemon.__init__

    async def fragile(daemon: Daemon) -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise ValueError("first run fails")
        started_again.set()
        await daemon.shutdown.wait()

    def init(self: Daemon, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.supervisor.backoff = Backoff(base=0.05, cap=0.05, jitter=0.0)
        self.supervisor.add("fragile", lambda: fragile(self))

    monkeypatch.setattr(Daemon, "__init__", init)
    async with running_daemon(make_config(database_url)) as daemon:
        await asyncio.wait_for(started_again.wait(), 10)
        state = daemon.supervisor.tasks["fragile"]
        assert state.restarts == 1 and state.running
        # The type and a fixed description; the message (it may quote data) is only logged.
        assert state.last_error is not None and state.last_error.startswith("ValueError: ")
        assert "first run fails" not in state.last_error


# --------------------------------------------------------------------------- /metrics and HTTP


async def test_metrics_parse_and_contain_the_core_families(database_url: str) -> None:
    async with running_daemon(make_config(database_url)) as daemon:
        url = base_url(daemon)
        assert (await get(f"{url}/readyz"))[0] == 200
        async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    families = metric_families(text)
    build = families["leadd_build_info"]
    assert build.samples[0].labels["version"]
    assert families["leadd_task_restarts"].type == "counter"
    assert {s.labels["task"] for s in families["leadd_task_restarts"].samples} >= {
        "http",
        "poll",
        "touchpoints",
    }
    hist = families["leadd_http_request_duration_seconds"]
    assert hist.type == "histogram"
    readyz = [s for s in hist.samples if s.labels.get("route") == "/readyz"]
    assert any(s.name.endswith("_count") and s.value >= 1 for s in readyz)
    assert any(s.name.endswith("_bucket") and s.labels["le"] == "+Inf" for s in readyz)
    pool = families["leadd_db_pool_connections"]
    assert pool.type == "gauge" and pool.samples[0].value >= 1
    assert families["leadd_db_pool_connections_in_use"].type == "gauge"
    assert "leadd_task_up" in families


async def test_promtool_accepts_the_metrics(database_url: str) -> None:
    promtool = system_tool("promtool", "prometheus")
    async with running_daemon(make_config(database_url)) as daemon:
        await get(f"{base_url(daemon)}/healthz")  # so the histogram has a series
        _, text = await get(f"{base_url(daemon)}/metrics")
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # no lint findings at all


async def test_oversized_body_gets_413_json_and_unknown_route_404_json(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http.max_body_bytes is enforced on any route that reads its body, with a JSON error."""
    real_setup = shopmonkey_routes.setup_routes

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"size": len(await request.read())})

    def setup_routes(app: web.Application) -> None:
        real_setup(app)
        app.router.add_post("/_test/echo", echo)

    monkeypatch.setattr(shopmonkey_routes, "setup_routes", setup_routes)
    http = {"host": "127.0.0.1", "port": 0, "max_body_bytes": 1024}
    async with running_daemon(make_config(database_url, http=http)) as daemon:
        url = base_url(daemon)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{url}/_test/echo", data=b"x" * 1000) as r:
                assert r.status == 200 and (await r.json()) == {"size": 1000}
            async with s.post(f"{url}/_test/echo", data=b"x" * 4096) as r:
                assert r.status == 413
                assert await r.json() == {
                    "success": False,
                    "error": "request body larger than 1024 bytes",
                }
            async with s.get(f"{url}/no/such/route") as r:
                assert r.status == 404
                assert r.content_type == "application/json"
                assert (await r.json())["success"] is False
            async with s.delete(f"{url}/healthz") as r:
                assert r.status == 405
                assert (await r.json())["success"] is False
            async with s.get(f"{url}/healthz") as r:
                assert r.status == 200


# --------------------------------------------------------------------------- subprocess


def process_config(database_url: str | None, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(**overrides)
    cfg["http"] = {"host": "127.0.0.1", "port": free_port()}
    if database_url:
        cfg["database"] = {"url": database_url}
    return cfg


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Started DaemonProcesses are killed at the end, even when the test fails midway."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()


async def test_sigterm_shuts_down_cleanly_in_phases(
    database_url: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    proc = DaemonProcess(process_config(database_url), tmp_path).start()
    daemons.append(proc)
    body = await proc.wait_ready()
    assert body["status"] == "ready"
    code = await asyncio.to_thread(proc.terminate, signal.SIGTERM, 20)
    assert code == 0, proc.log()
    events = proc.log_events()
    names = [e["event"] for e in events]
    assert "leadd.ready" in names
    phases = [e["phase"] for e in events if e["event"] == "shutdown.phase"]
    assert set(SHUTDOWN_PHASES) <= set(phases), phases
    assert phases.index("loops: finish current batch") < phases.index("close pool and clients")
    assert names.index("shutdown.requested") < names.index("leadd.stopped")
    assert events[names.index("leadd.stopped")]["status"] == "ok"
    assert "Traceback" not in proc.log()


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    """A unix datagram socket standing in for systemd's $NOTIFY_SOCKET (short path: 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="leadd-sd-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(directory, "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


async def receive_until(
    sock: socket.socket, seen: list[str], wanted: str, timeout: float, start: int = 0
) -> None:
    """Append datagrams to `seen` until one from index `start` on carries the line `wanted`."""
    loop = asyncio.get_running_loop()

    async def go() -> None:
        while not any(wanted in m.split("\n") for m in seen[start:]):
            seen.append((await loop.sock_recv(sock, 4096)).decode())

    try:
        await asyncio.wait_for(go(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {wanted} within {timeout}s; got {seen}") from None


async def test_sd_notify_ready_watchdog_stopping(
    database_url: str,
    tmp_path: Path,
    notify_socket: socket.socket,
    daemons: list[DaemonProcess],
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "1000000"}
    proc = DaemonProcess(process_config(database_url), tmp_path, env=env).start()
    daemons.append(proc)
    seen: list[str] = []
    await receive_until(notify_socket, seen, "READY=1", 30)
    assert (await proc.wait_ready())["status"] == "ready"
    ready_at = len(seen)
    await receive_until(notify_socket, seen, "WATCHDOG=1", 10, start=ready_at)
    assert seen.count("WATCHDOG=1") >= 1  # and it keeps coming while serving
    assert not any("STOPPING=1" in m for m in seen)

    code = await asyncio.to_thread(proc.terminate, signal.SIGTERM, 20)
    assert code == 0, proc.log()
    await receive_until(notify_socket, seen, "STOPPING=1", 5)
    ready = next(i for i, m in enumerate(seen) if "READY=1" in m.split("\n"))
    stopping = next(i for i, m in enumerate(seen) if "STOPPING=1" in m.split("\n"))
    assert ready < stopping
    assert sum("READY=1" in m.split("\n") for m in seen) == 1


async def test_unreachable_database_keeps_the_process_up_and_not_ready(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    closed = free_port()  # nothing listens here
    cfg = process_config(f"postgresql://postgres@127.0.0.1:{closed}/leadd")
    cfg["database"]["connect_timeout"] = "2s"
    proc = DaemonProcess(cfg, tmp_path).start()
    daemons.append(proc)

    async def healthy() -> bool:
        assert proc.proc and proc.proc.poll() is None, proc.log()
        try:
            return (await get(f"{proc.url}/healthz"))[0] == 200
        except aiohttp.ClientError:
            return False

    await wait_for(healthy, timeout=30, interval=0.1)
    status, body = await get(f"{proc.url}/readyz")
    assert status == 503
    assert "database" in body["problems"]

    def retries() -> int:
        return sum(e["event"] == "database.unavailable" for e in proc.log_events())

    await wait_for(lambda: retries() >= 2, timeout=15, interval=0.1)  # it keeps retrying
    assert proc.proc and proc.proc.poll() is None
    status, body = await get(f"{proc.url}/readyz")
    assert status == 503
    assert "retrying in" in body["problems"]["database"]  # the reason, and that it retries
    assert (await get(f"{proc.url}/healthz"))[0] == 200

    code = await asyncio.to_thread(proc.terminate, signal.SIGTERM, 20)
    assert code == 0, proc.log()
    assert "Traceback" not in proc.log()


def spawn(
    args: list[str], *, cwd: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """`python -m leadd <args>` with stdout and stderr going to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "leadd", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_demo_run_without_config_uses_embedded_postgres_on_port_3000(
    tmp_path: Path,
) -> None:
    """`leadd run` in an empty directory: demo defaults, embedded PostgreSQL, ready on :3000.

    Binds the fixed demo port 3000: fails (does not skip) when something else holds it.
    """
    assert port_is_free(DEMO_PORT), f"port {DEMO_PORT} is busy: stop whatever holds it"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LEADD_", "NOTIFY_", "WATCHDOG_"))
    }
    log_path = tmp_path / "leadd.log"
    proc = spawn(["run"], cwd=tmp_path, env=env, log_path=log_path)
    try:

        async def ready() -> Any:
            assert proc.poll() is None, log_path.read_text()
            try:
                status, body = await get(f"http://127.0.0.1:{DEMO_PORT}/readyz")
            except aiohttp.ClientError:
                return None
            return body if status == 200 else None

        body = await wait_for(ready, timeout=90, interval=0.2)
        assert body["providers"]["twilio"] == "dry-run"
        pgdata = tmp_path / "var" / "leadd" / "postgres"
        assert (pgdata / "PG_VERSION").exists()
        assert (pgdata / "postmaster.pid").exists()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        output = log_path.read_text()
        assert code == 0, output
        assert "config.demo_defaults" in output
        assert "embedded_postgres.started" in output
        assert "embedded_postgres.stopped" in output
        assert not (pgdata / "postmaster.pid").exists()  # the embedded server stopped too
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
