"""Memory under stalled uploads: RSS of `leadd run` before, during and after N clients each
send headers and most of a ~1 MiB body to the Shopmonkey webhook, then stop sending.

    .venv/bin/python bench/stalled_uploads.py [--clients 400] [--body-bytes 1000000]
                                              [--database-url URL] [--unlimited]
                                              [--glibc-default]

leadd runs as a subprocess against real PostgreSQL (default $LEADD_TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test) on a fresh scratch database, with the HTTP limits
of config.example.yaml (header_timeout 30s, body_timeout 30s, max_connections 256) unless
`--unlimited`, which sets a cap and timeouts no client reaches: the behaviour before the limits
(issue 7, defect 5). Like the systemd units, it runs leadd with MALLOC_MMAP_THRESHOLD_=131072
unless `--glibc-default`. Each client sends `body-bytes - 1000` bytes and stalls; the bench records
what each got back (503 refused at the cap, 408 cut at body_timeout, nothing), samples VmRSS
from /proc/<pid>/status every 0.25 s, times /healthz on a fresh connection during the stall,
and reads RSS again 5 s after every client is answered (with `--unlimited`: after the bench
closes them, at the same moment relative to the stall). Prints a markdown table row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/<file>.py

from bench.common import ROOT, admin, database_server, free_port, with_db
from bench.common import wait_http_ok as wait_ready

TENANT = "6f1c1c53-3f3e-4d0a-9d7e-0a6b1b1e0b02"
PATH = "/webhooks/shopmonkey/order"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def stalled_client(port: int, body_bytes: int, release: asyncio.Event) -> str:
    """Send headers and all but 1,000 bytes of the body, then wait: what came back?"""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "connect failed"
    try:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_bytes}\r\n\r\n"
        ).encode()
        writer.write(head + b" " * (body_bytes - 1000))
        try:
            await writer.drain()
        except ConnectionError:
            return "reset while sending"
        read = asyncio.create_task(reader.read(200))
        stop = asyncio.create_task(release.wait())
        done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        if read in done:
            try:
                first = read.result()
            except ConnectionError:
                return "reset"
            return first.split(b"\r\n", 1)[0].decode(errors="replace") or "closed, no answer"
        read.cancel()
        return "still open (closed by the bench)"
    finally:
        writer.close()


async def healthz_ms(port: int) -> str:
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    except (OSError, TimeoutError) as exc:
        return f"failed ({type(exc).__name__})"
    status = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return f"{(time.perf_counter() - start) * 1000:.0f} ms ({status})"


async def run(args: argparse.Namespace, port: int, pid: int, body_timeout: float) -> dict[str, Any]:
    samples: list[float] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            samples.append(rss_mib(pid))
            await asyncio.sleep(0.25)

    before = rss_mib(pid)
    sampler = asyncio.create_task(sample())
    release = asyncio.Event()
    clients = [
        asyncio.create_task(stalled_client(port, args.body_bytes, release))
        for _ in range(args.clients)
    ]
    await asyncio.sleep(3)  # let every client send what it will send
    during = await healthz_ms(port)
    # Give the limits the time they need (body_timeout, from the last headers) plus margin;
    # without limits, release the clients at that same moment.
    done, pending = await asyncio.wait(clients, timeout=body_timeout + 5)
    if pending:
        release.set()
        await asyncio.gather(*pending)
    outcomes = Counter(t.result() for t in clients)
    await asyncio.sleep(5)
    after = rss_mib(pid)
    sampling = False
    await sampler
    return {
        "before": before,
        "peak": max(samples),
        "after": after,
        "healthz": during,
        "outcomes": dict(outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=400)
    parser.add_argument("--body-bytes", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=database_server())
    parser.add_argument("--unlimited", action="store_true", help="limits no client reaches")
    parser.add_argument(
        "--glibc-default", action="store_true", help="without the units' MALLOC_MMAP_THRESHOLD_"
    )
    args = parser.parse_args()

    name = f"leadd_bench_stall_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(args.database_url, f'CREATE DATABASE "{name}"'))
    workdir = Path(tempfile.mkdtemp(prefix="leadd-bench-stall-"))
    port = free_port()
    http: dict[str, Any] = {"host": "127.0.0.1", "port": port}
    if args.unlimited:
        http.update(header_timeout="1h", body_timeout="1h", max_connections=100_000)
    config = {
        "tenant": {"id": TENANT, "name": "Bench Auto"},
        "state_dir": str(workdir / "state"),
        "database": {"url": with_db(args.database_url, name)},
        "http": http,
        "shopmonkey": {"webhook_secrets": ["bench-secret"]},
        "logging": {"level": "warning", "format": "json"},
        "locations": [
            {
                "id": "main",
                "name": "Bench Auto",
                "timezone": "America/Chicago",
                "hours": {"mon": "08:00-18:00"},
            }
        ],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    malloc = {} if args.glibc_default else {"MALLOC_MMAP_THRESHOLD_": "131072"}
    inherited = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    with (workdir / "leadd.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leadd", "run", "--config", str(workdir / "config.yaml")],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**inherited, "PYTHONPATH": str(ROOT), **malloc},
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        time.sleep(3)  # settle after start-up
        body_timeout = 30.0  # the default; --unlimited waits the same before releasing
        result = asyncio.run(run(args, port, proc.pid, body_timeout))
    finally:
        proc.terminate()
        proc.wait(30)
        asyncio.run(admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    mode = "no limits (before)" if args.unlimited else "defaults"
    mode += ", glibc default" if args.glibc_default else ", MALLOC_MMAP_THRESHOLD_=131072"
    print(
        "| limits | clients | RSS before | peak | 5 s after | /healthz during the stall | outcomes |"
    )
    print("|---|---|---|---|---|---|---|")
    outcomes = ", ".join(f"{v} x {k}" for k, v in sorted(result["outcomes"].items()))
    print(
        f"| {mode} | {args.clients} x {args.body_bytes - 1000:,} B | {result['before']:.1f} MiB "
        f"| {result['peak']:.1f} MiB | {result['after']:.1f} MiB | {result['healthz']} "
        f"| {outcomes} |"
    )


if __name__ == "__main__":
    main()
