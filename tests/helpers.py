"""Run the real daemon for tests: in-process (same event loop) or as a `leadd run` subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from leadd.config import Config
from leadd.daemon import Daemon
from leadd.runtime import Clock, utcnow


@asynccontextmanager
async def running_daemon(
    cfg: Config, *, ready: bool = True, clock: Clock = utcnow
) -> AsyncIterator[Daemon]:
    """Start Daemon(cfg) in this loop (no signal handlers); wait for HTTP (and DB if `ready`).
    `clock` is its runtime's clock (what is due, quiet hours, caps)."""
    daemon = Daemon(cfg, env={}, clock=clock)
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        waits = [daemon.http_ready.wait()] + ([daemon.db_ready.wait()] if ready else [])
        await asyncio.wait_for(asyncio.gather(*waits), 30)
        yield daemon
    finally:
        daemon.shutdown.set()
        code = await asyncio.wait_for(task, 30)
        assert code == 0, f"daemon exited {code}"


def base_url(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.http_port}"


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Await `predicate()` (sync or async) until truthy; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last={last!r})")


class DaemonProcess:
    """`python -m leadd run --config <file>` as a child process, with its log captured."""

    def __init__(
        self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.port = config["http"]["port"]
        self.log_path = workdir / "leadd.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> DaemonProcess:
        # The child gets its own copy of the descriptor; ours is closed at once (no leak).
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leadd", "run", "--config", str(self.config_path), *args],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s:

            async def ready() -> dict[str, Any] | None:
                assert self.proc and self.proc.poll() is None, f"daemon exited:\n{self.log()}"
                try:
                    async with s.get(f"{self.url}/readyz") as r:
                        return await r.json() if r.status == 200 else None
                except aiohttp.ClientError:
                    return None

            result: dict[str, Any] = await wait_for(ready, timeout, 0.1)
            return result

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def system_tool(name: str, package: str) -> str:
    """Path of a Debian tool a test runs (promtool, systemd-analyze). Missing: the test fails
    in CI (.ci/run installs the package), and is skipped on a developer's machine."""
    import shutil

    import pytest

    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: .ci/run installs the Debian package {package}")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return found
