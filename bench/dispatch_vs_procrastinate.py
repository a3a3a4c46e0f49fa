"""End-to-end dispatch, leadd against procrastinate, side by side in one run (issue 11).

    .venv/bin/pip install -e '.[bench]'      # procrastinate + psycopg: benchmark only
    .venv/bin/python bench/dispatch_vs_procrastinate.py [--leads 2000] [--twilio-latency 0.2]
        [--concurrency 100] [--post-concurrency 32] [--enrichment embedded|api] [--rounds 1]

Every system sends the same SMS ("Hi Jamie, thanks for your request at Bench Auto. ...") to
--leads distinct numbers at the same fake Twilio in this process, which records each create
on arrival ("provider accepted") and answers after --twilio-latency. Each system gets its
own fresh scratch database on $LEADD_TEST_DATABASE_URL (else
postgresql://postgres@127.0.0.1:5432/test) and runs as child processes with a 40-connection
pool (leadd's `database.pool_max` here, procrastinate's psycopg pool `max_size`).

- procrastinate (PsycopgConnector, a worker process with `concurrency` --concurrency, a task
  that POSTs the SMS with aiohttp):
  - pre-built: the jobs are deferred first (one batch), then the worker is started;
    rate = (sends - 1) / (last arrival - first arrival) at the fake.
  - counting its enqueue: the worker is idle and listening; the bench defers one job per
    send with --post-concurrency defers in flight; rate = sends / (last arrival - first
    defer began).
- leadd, one daemon: one signed order webhook per send, --post-concurrency in flight;
  rate = sends / (last arrival - first webhook began). With --enrichment embedded (default)
  the webhook carries the customer, so the input is the same as procrastinate's (who and
  what); with `api` it carries ids only and the daemon fetches customer, vehicle and
  services from a fake Shopmonkey answering in 50 ms with no budget limit.
- leadd, two daemons on one database: the webhooks alternate between them; same rate, and
  duplicates (a number texted twice) counted at the fake.

Ratios printed: leadd / procrastinate (counting its enqueue), two daemons / one daemon, each
taken within one round (the same minute on the same machine) and, with --rounds N, the median
over the rounds; every other round runs the systems in reverse order, and each row shows the
load average before it, since a shared machine moves these numbers a lot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/<file>.py

from bench import common
from bench.fakes import FakeShopmonkey, FakeTwilio

ACK = (
    "Hi {{ customer.first_name }}, thanks for your request at {{ location.name }}. "
    "Reply STOP to opt out."
)
BODY = "Hi Jamie, thanks for your request at Bench Auto. Reply STOP to opt out."
FROM = "+15125550199"
POOL_MIN, POOL_MAX = 5, 40
QUEUE = "sms"
TASK = "send_sms"
SYSTEMS = ("procrastinate", "leadd 1", "leadd 2")


# --------------------------------------------------------------------------- procrastinate


def procrastinate_app(db_url: str) -> Any:
    try:
        import procrastinate
    except ImportError:
        raise SystemExit(
            "procrastinate is not installed: .venv/bin/pip install -e '.[bench]'"
        ) from None
    # "App is instantiated in the main Python module": intended here (tasks found by name).
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    connector = procrastinate.PsycopgConnector(
        conninfo=db_url, min_size=POOL_MIN, max_size=POOL_MAX
    )
    return procrastinate.App(connector=connector)


def procrastinate_worker(
    db_url: str, twilio_url: str, sid: str, token: str, concurrency: int
) -> None:
    """The worker process: one task that POSTs the SMS to (fake) Twilio."""
    logging.basicConfig(level=logging.WARNING)
    app = procrastinate_app(db_url)
    url = f"{twilio_url}/2010-04-01/Accounts/{sid}/Messages.json"
    auth = aiohttp.BasicAuth(sid, token)
    http: list[aiohttp.ClientSession] = []

    @app.task(name=TASK, queue=QUEUE)
    async def send_sms(to: str, body: str) -> None:
        if not http:
            http.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)))
        form = {"To": to, "From": FROM, "Body": body}
        async with http[0].post(url, data=form, auth=auth) as r:
            await r.read()
            if r.status != 201:
                raise RuntimeError(f"Twilio answered {r.status}")

    async def work() -> None:
        async with app.open_async():
            await app.run_worker_async(queues=[QUEUE], concurrency=concurrency, wait=True)
        for session in http:
            await session.close()

    common.run(work())


async def run_procrastinate(
    args: argparse.Namespace, twilio: FakeTwilio, numbers: list[str], workdir: Path
) -> list[dict[str, Any]]:
    async with common.scratch_database(common.database_server(), "bench_pq") as db_url:
        app = procrastinate_app(db_url)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            deferrer = app.configure_task(name=TASK, queue=QUEUE)
            twilio.reset()
            await deferrer.batch_defer_async(*({"to": n, "body": BODY} for n in numbers))
            with (workdir / "procrastinate.log").open("ab") as log:
                worker = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--procrastinate-worker",
                    db_url,
                    twilio.url,
                    twilio.account_sid,
                    twilio.auth_token,
                    str(args.concurrency),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                done = await twilio.wait_for(len(numbers), args.timeout)
                prebuilt = measure("procrastinate", "pre-built jobs", twilio, None, done)
                # Counting its enqueue: the worker is idle and listening now.
                twilio.reset()
                sem = asyncio.Semaphore(args.post_concurrency)
                began: list[float] = []

                async def defer(number: str) -> None:
                    async with sem:
                        began.append(time.monotonic())
                        await deferrer.defer_async(to=number, body=BODY)

                await asyncio.gather(*(defer(n) for n in numbers))
                enqueued = time.monotonic() - min(began)
                done = await twilio.wait_for(len(numbers), args.timeout)
                e2e = measure("procrastinate", "counting its enqueue", twilio, min(began), done)
                e2e["enqueue_rate"] = round(len(numbers) / enqueued, 1)
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(worker.wait(), 30)
                except TimeoutError:
                    worker.kill()
                    await worker.wait()
    return [prebuilt, e2e]


# --------------------------------------------------------------------------- leadd


async def run_leadd(
    args: argparse.Namespace,
    twilio: FakeTwilio,
    numbers: list[str],
    workdir: Path,
    daemons: int,
) -> dict[str, Any]:
    async with common.scratch_database(common.database_server(), "bench_dispatch") as db_url:
        api: FakeShopmonkey | None = None
        shopmonkey: dict[str, Any] = {}
        if args.enrichment == "api":
            api = FakeShopmonkey(0.05)
            await api.start()
            shopmonkey = api.client_config(100_000.0, "30s")
        procs = []
        for i in range(daemons):
            cfg = common.daemon_config(
                port=common.free_port(),
                database_url=db_url,
                state_dir=workdir / f"state{i}",
                sequence=[
                    {
                        "name": "ack",
                        "channel": "sms",
                        "delay": "0s",
                        "after": "created",
                        "template": ACK,
                    }
                ],
                shopmonkey=shopmonkey,
                twilio=twilio.client_config(),
                log_level=args.log_level,
            )
            procs.append(common.Daemon(cfg, workdir / f"leadd{daemons}", name=f"leadd{i}").start())
        try:
            for proc in procs:
                await proc.wait_ready()
            twilio.reset()
            sem = asyncio.Semaphore(args.post_concurrency)
            began: list[float] = []
            failed = 0
            connector = aiohttp.TCPConnector(limit=args.post_concurrency)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def post(i: int, number: str) -> None:
                    nonlocal failed
                    person = common.customer(str(uuid.uuid4()), number)
                    data = common.order(
                        order_id=str(uuid.uuid4()),
                        customer_id=person["id"],
                        vehicle_id=str(uuid.uuid4()) if api else None,
                        customer=None if api else person,
                    )
                    if api:
                        api.add_lead(data, person)
                    body = common.webhook_body(data)
                    async with sem:
                        began.append(time.monotonic())
                        status = await common.post_webhook(http, procs[i % daemons].url, body)
                        failed += status != 200

                await asyncio.gather(*(post(i, n) for i, n in enumerate(numbers)))
            posted = time.monotonic() - min(began)
            done = await twilio.wait_for(len(numbers), args.timeout)
            what = f"{daemons} daemon{'s' if daemons > 1 else ''}, enrichment {args.enrichment}"
            result = measure("leadd", what, twilio, min(began), done)
            result["webhook_rate"] = round(len(numbers) / posted, 1)
            result["webhooks_not_200"] = failed
        finally:
            for proc in procs:
                proc.stop()
            if api:
                await api.stop()
    return result


# --------------------------------------------------------------------------- measuring


def measure(
    system: str, what: str, twilio: FakeTwilio, began: float | None, complete: bool
) -> dict[str, Any]:
    """Rate at the fake: from `began` (or the first arrival) to the last arrival."""
    times = sorted(m.received_at for m in twilio.messages)
    per_number = Counter(m.to for m in twilio.messages)
    if began is None:
        span = times[-1] - times[0]
        rate = (len(times) - 1) / span if span > 0 else 0.0
    else:
        span = times[-1] - began
        rate = len(times) / span
    return {
        "system": system,
        "what": what,
        "sends": len(times),
        "distinct_numbers": len(per_number),
        "duplicates": len(times) - len(per_number),
        "complete": complete,
        "seconds": round(span, 2),
        "rate": round(rate, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| system | measured | sends | duplicates | seconds | sends/s | load before |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        extra = ""
        if "enqueue_rate" in r:
            extra = f" (enqueue alone {r['enqueue_rate']:,}/s)"
        if "webhook_rate" in r:
            extra = f" (webhooks {r['webhook_rate']:,}/s)"
        sends = f"{r['sends']:,}" + ("" if r["complete"] else " (timed out)")
        out.append(
            f"| {r['system']} | {r['what']}{extra} | {sends} | {r['duplicates']} "
            f"| {r['seconds']} | {r['rate']:,} | {r.get('load', '')} |"
        )
    return "\n".join(out)


def ratios(rounds: list[dict[str, dict[str, Any]]]) -> str:
    """Each ratio within each round (same minute, same load), then the median over rounds."""

    def ratio(top: str, bottom: str) -> str:
        each = [r[top]["rate"] / r[bottom]["rate"] for r in rounds]
        rounds_text = f" (rounds: {', '.join(f'{x:.2f}' for x in each)})" if len(each) > 1 else ""
        return f"{statistics.median(each):.2f}x{rounds_text}"

    duplicates = sum(r[k]["duplicates"] for r in rounds for k in r)
    return (
        f"- leadd (one daemon) / procrastinate counting its enqueue: "
        f"{ratio('leadd 1', 'procrastinate e2e')} (target >= 1.3)\n"
        f"- leadd (one daemon) / procrastinate pre-built jobs: "
        f"{ratio('leadd 1', 'procrastinate pre-built')}\n"
        f"- two daemons / one daemon: {ratio('leadd 2', 'leadd 1')} (target >= 1.7)\n"
        f"- duplicates at the fake, all runs: {duplicates}"
    )


async def main(args: argparse.Namespace) -> list[dict[str, dict[str, Any]]]:
    print(f"machine: {common.machine()}", file=sys.stderr)
    numbers = common.phone_numbers(args.leads)
    workdir = Path(tempfile.mkdtemp(prefix="leadd-bench-dispatch-"))
    twilio = await FakeTwilio(args.twilio_latency).start()
    rounds = []
    try:
        for n in range(args.rounds):
            this: dict[str, dict[str, Any]] = {}
            # Every other round in reverse order, so a drift in the machine's load does not
            # always favour the same system.
            for system in SYSTEMS if n % 2 == 0 else SYSTEMS[::-1]:
                load = round(os.getloadavg()[0], 2)
                if system == "procrastinate":
                    pre, e2e = await run_procrastinate(args, twilio, numbers, workdir)
                    this["procrastinate pre-built"], this["procrastinate e2e"] = pre, e2e
                    pre["load"] = e2e["load"] = load
                else:
                    daemons = int(system[-1])
                    this[system] = await run_leadd(args, twilio, numbers, workdir, daemons)
                    this[system]["load"] = load
            rounds.append(this)
            print(f"round {n + 1}:\n{table(list(this.values()))}\n")
    finally:
        await twilio.stop()
    print(ratios(rounds))
    print(f"\nlogs: {workdir}")
    return rounds


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--procrastinate-worker":
        db, twilio_url, sid, token, concurrency = sys.argv[2:7]
        procrastinate_worker(db, twilio_url, sid, token, int(concurrency))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--twilio-latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=100, help="procrastinate's")
    parser.add_argument(
        "--post-concurrency", type=int, default=32, help="webhooks/defers in flight"
    )
    parser.add_argument("--enrichment", choices=["embedded", "api"], default="embedded")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for the sends")
    parser.add_argument("--log-level", default="warning", help="the daemon's logging.level")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    out = common.run(main(args))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
