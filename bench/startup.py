"""Start-up-to-ready time and idle memory of `leadd run`, external and embedded PostgreSQL.

    .venv/bin/python bench/startup.py [--runs 5] [--idle 10] [--database-url URL]

Start-up-to-ready is the wall time from spawning `python -m leadd run` to the first 200 from
/readyz (HTTP bound, database reached, schema applied, config mirrored). Idle RSS is VmRSS from
/proc/<pid>/status after `--idle` seconds of being ready; for embedded PostgreSQL the server's
processes are reported separately, as summed RSS (counts shared buffers once per process) and
summed PSS (shared pages divided among the processes that map them).

The external server defaults to $LEADD_TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test; a scratch database `leadd_bench` is created on it.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/<file>.py

from bench.common import database_server, free_port, with_db

BENCH_DB = "leadd_bench"


def config(state_dir: Path, database_url: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "tenant": {"id": "6f1c1c53-3f3e-4d0a-9d7e-0a6b1b1e0b00", "name": "Bench Auto"},
        "state_dir": str(state_dir),
        "http": {"host": "127.0.0.1", "port": free_port()},
        "logging": {"level": "warning", "format": "json"},
        "locations": [
            {
                "id": "main",
                "name": "Bench Auto",
                "timezone": "America/Chicago",
                "phone": "+15125550100",
                "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
                "services": [{"name": "Oil change", "price": 49.99}],
            }
        ],
    }
    if database_url:
        cfg["database"] = {"url": database_url}
    return cfg


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Run:
    """One `leadd run`: spawned, timed to ready, stopped with SIGTERM."""

    def __init__(self, workdir: Path, cfg: dict[str, Any]) -> None:
        self.port = cfg["http"]["port"]
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        with (workdir / "leadd.log").open("ab") as log:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leadd", "run", "--config", str(path)],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.log = workdir / "leadd.log"

    def wait_ready(self, timeout: float = 120.0) -> float:
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"leadd exited {self.proc.returncode}:\n{self.log.read_text()}")
            if ready(self.port):
                return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError(f"not ready within {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        if code != 0:
            raise RuntimeError(f"leadd exited {code}:\n{self.log.read_text()}")


def proc_kib(pid: int, file: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster serving `pgdata` (found by its -D argument) and all its descendants."""
    children: dict[int, list[int]] = {}
    postmaster = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        if str(pgdata).encode() in cmdline and any(b"postgres" in a for a in cmdline[:1]):
            postmaster = int(entry.name)
    if postmaster is None:
        return []
    out, todo = [], [postmaster]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


async def scratch_database(url: str, *, create: bool) -> str:
    """(Re)create, or drop, the scratch database on the server at `url`; return its URL."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await conn.close()
    return with_db(url, BENCH_DB)


def fmt(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.0f} | {min(ms):.0f} | {max(ms):.0f}"


def measure(label: str, runs: int, idle: float, database_url: str | None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"leadd-bench-{label}-"))
    state = workdir / "state"
    cfg = lambda: config(state, database_url)  # noqa: E731 - fresh port per run
    cold = None
    if database_url is None:  # the first embedded start runs initdb: report it on its own
        first = Run(workdir, cfg())
        cold = first.wait_ready()
        first.stop()
    times = []
    for _ in range(runs):
        run = Run(workdir, cfg())
        times.append(run.wait_ready())
        run.stop()
    run = Run(workdir, cfg())
    run.wait_ready()
    time.sleep(idle)
    rss = proc_kib(run.proc.pid, "status", "VmRSS")
    pg = postgres_pids(state / "postgres") if database_url is None else []
    pg_rss = sum(proc_kib(p, "status", "VmRSS") for p in pg)
    pg_pss = sum(proc_kib(p, "smaps_rollup", "Pss") for p in pg)
    run.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "label": label,
        "cold": cold,
        "times": times,
        "rss": rss,
        "pg": (len(pg), pg_rss, pg_pss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--database-url", default=database_server())
    args = parser.parse_args()
    external = asyncio.run(scratch_database(args.database_url, create=True))
    try:
        results = [
            measure("external", args.runs, args.idle, external),
            measure("embedded", args.runs, args.idle, None),
        ]
    finally:
        asyncio.run(scratch_database(args.database_url, create=False))
    print(f"python {platform.python_version()}, {args.runs} runs per mode, idle {args.idle:g} s\n")
    print("| database | ready: median ms | min ms | max ms | leadd idle RSS | PostgreSQL idle |")
    print("|---|---|---|---|---|---|")
    for r in results:
        n, pg_rss, pg_pss = r["pg"]
        pg = (
            f"{n} processes: RSS {pg_rss / 1024:.1f} MiB, PSS {pg_pss / 1024:.1f} MiB"
            if n
            else "external (not measured)"
        )
        print(f"| {r['label']} | {fmt(r['times'])} | {r['rss'] / 1024:.1f} MiB | {pg} |")
    for r in results:
        if r["cold"] is not None:
            print(
                f"\nFirst {r['label']} start (initdb of a new data directory): {r['cold'] * 1000:.0f} ms"
            )
        print(f"{r['label']} runs (ms): " + ", ".join(f"{t * 1000:.0f}" for t in r["times"]))


if __name__ == "__main__":
    main()
